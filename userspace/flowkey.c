/* flowkey.c - userspace twin of the tagger's parser and flow key; see
 * flowkey.h for the contract. Kept deliberately parallel to
 * bpf/tagger.bpf.c: a rule changed in one must change in the other. */
#include "flowkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define IP_FLAG_MF 0x2000
#define IP_FRAG_OFFSET 0x1fff
#define TCP_HDR_MIN 20

void port_set_clear(struct port_set *ps)
{
	memset(ps, 0, sizeof(*ps));
}

int port_set_add(struct port_set *ps, uint16_t port)
{
	if (port == 0)
		return -EINVAL;
	ps->bits[port / 64] |= UINT64_C(1) << (port % 64);
	return 0;
}

bool port_set_contains(const struct port_set *ps, uint16_t port)
{
	return (ps->bits[port / 64] >> (port % 64)) & 1;
}

int port_set_next(const struct port_set *ps, int after)
{
	int p;

	for (p = after < 0 ? 0 : after + 1; p <= 65535; p++) {
		if (port_set_contains(ps, (uint16_t)p))
			return p;
	}
	return -1;
}

size_t port_set_count(const struct port_set *ps)
{
	size_t i, n = 0;

	for (i = 0; i < sizeof(ps->bits) / sizeof(ps->bits[0]); i++)
		n += (size_t)__builtin_popcountll(ps->bits[i]);
	return n;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Same order as tagger_cmp(): address bytes, then port as a number. */
static int addr_port_cmp(const uint8_t *a, uint16_t pa, const uint8_t *b, uint16_t pb)
{
	int c = memcmp(a, b, 16);

	if (c)
		return c;
	return (pa > pb) - (pa < pb);
}

void flowkey_make(struct tlsgate_flow_key *key, const uint8_t saddr[16], uint16_t sport,
		  const uint8_t daddr[16], uint16_t dport)
{
	memset(key, 0, sizeof(*key));
	key->proto = IPPROTO_TCP;
	if (addr_port_cmp(saddr, sport, daddr, dport) <= 0) {
		memcpy(key->addr_lo, saddr, 16);
		memcpy(key->addr_hi, daddr, 16);
		key->port_lo = htons(sport);
		key->port_hi = htons(dport);
	} else {
		memcpy(key->addr_lo, daddr, 16);
		memcpy(key->addr_hi, saddr, 16);
		key->port_lo = htons(dport);
		key->port_hi = htons(sport);
	}
}

static void map_v4(uint8_t out[16], const uint8_t *v4)
{
	memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	memcpy(out + 12, v4, 4);
}

static bool is_skipped_ext(int nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_AH;
}

/* Sets *l4 and *end (end of the IP payload) and returns the upper-layer
 * protocol, or a negative errno as flowkey_from_ip(). */
static int parse_ipv4(const uint8_t *pkt, size_t len, struct flowkey_packet *out, size_t *l4,
		      size_t *end)
{
	size_t ihl, tot;
	uint16_t frag;

	if (len < 20 || pkt[0] >> 4 != 4)
		return -EINVAL;
	ihl = (size_t)(pkt[0] & 0x0f) * 4;
	tot = get_be16(pkt + 2);
	if (ihl < 20 || ihl > len || tot < ihl || tot > len)
		return -EINVAL;
	if (pkt[9] != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	frag = get_be16(pkt + 6);
	if (frag & (IP_FLAG_MF | IP_FRAG_OFFSET))
		return -EMSGSIZE;
	out->family = AF_INET;
	map_v4(out->saddr, pkt + 12);
	map_v4(out->daddr, pkt + 16);
	*l4 = ihl;
	*end = tot;
	return IPPROTO_TCP;
}

static int parse_ipv6(const uint8_t *pkt, size_t len, struct flowkey_packet *out, size_t *l4,
		      size_t *end)
{
	size_t off = 40, hlen;
	int nh, i;

	if (len < 40 || pkt[0] >> 4 != 6)
		return -EINVAL;
	/* Payload length 0 is a jumbogram (RFC 2675): not for SMTP here. */
	*end = 40 + (size_t)get_be16(pkt + 4);
	if (*end == 40 || *end > len)
		return -EINVAL;
	nh = pkt[6];
	for (i = 0; i < FLOWKEY_MAX_EXT && is_skipped_ext(nh); i++) {
		if (off + 2 > *end)
			return -EINVAL;
		if (nh == IPPROTO_AH)
			hlen = ((size_t)pkt[off + 1] + 2) * 4;
		else
			hlen = ((size_t)pkt[off + 1] + 1) * 8;
		if (hlen > *end - off)
			return -EINVAL;
		nh = pkt[off];
		off += hlen;
	}
	if (is_skipped_ext(nh))
		return -EINVAL;
	if (nh == IPPROTO_FRAGMENT) {
		if (off + 8 > *end)
			return -EINVAL;
		nh = pkt[off];
		/* As tagger_frag_may_be_tcp(). */
		if (nh == IPPROTO_TCP || is_skipped_ext(nh) || nh == IPPROTO_FRAGMENT)
			return -EMSGSIZE;
		return -EPROTONOSUPPORT;
	}
	if (nh != IPPROTO_TCP)
		return -EPROTONOSUPPORT;
	out->family = AF_INET6;
	memcpy(out->saddr, pkt + 8, 16);
	memcpy(out->daddr, pkt + 24, 16);
	*l4 = off;
	return IPPROTO_TCP;
}

int flowkey_from_ip(const uint8_t *pkt, size_t len, const struct port_set *ports,
		    struct flowkey_packet *out)
{
	const uint8_t *th;
	size_t l4 = 0, end = 0, doff;
	int rc;

	if (!pkt || len < 1)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	switch (pkt[0] >> 4) {
	case 4:
		rc = parse_ipv4(pkt, len, out, &l4, &end);
		break;
	case 6:
		rc = parse_ipv6(pkt, len, out, &l4, &end);
		break;
	default:
		return -EINVAL;
	}
	if (rc < 0)
		return rc;

	if (l4 + TCP_HDR_MIN > end)
		return -EINVAL;
	th = pkt + l4;
	doff = (size_t)(th[12] >> 4) * 4;
	if (doff < TCP_HDR_MIN || doff > end - l4)
		return -EINVAL;

	out->sport = get_be16(th);
	out->dport = get_be16(th + 2);
	if (port_set_contains(ports, out->dport))
		out->dir = TLSGATE_DIR_TO_SERVER;
	else if (port_set_contains(ports, out->sport))
		out->dir = TLSGATE_DIR_TO_CLIENT;
	else
		return -ENOENT;

	out->seq = get_be32(th + 4);
	out->ack = get_be32(th + 8);
	out->flags = th[13];
	out->window = get_be16(th + 14);
	out->l4_offset = l4;
	out->payload = th + doff;
	out->payload_len = end - l4 - doff;
	flowkey_make(&out->key, out->saddr, out->sport, out->daddr, out->dport);
	return 0;
}

static void format_side(char *buf, size_t size, const uint8_t addr[16], uint16_t port)
{
	static const uint8_t v4_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char a[INET6_ADDRSTRLEN];

	if (memcmp(addr, v4_prefix, sizeof(v4_prefix)) == 0) {
		inet_ntop(AF_INET, addr + 12, a, sizeof(a));
		snprintf(buf, size, "%s:%u", a, port);
	} else {
		inet_ntop(AF_INET6, addr, a, sizeof(a));
		snprintf(buf, size, "[%s]:%u", a, port);
	}
}

char *flowkey_format(const struct tlsgate_flow_key *key, const struct port_set *ports,
		     char *buf, size_t size)
{
	char lo[INET6_ADDRSTRLEN + 10], hi[INET6_ADDRSTRLEN + 10];
	uint16_t plo = ntohs(key->port_lo), phi = ntohs(key->port_hi);
	bool hi_first = false;

	if (size == 0)
		return buf;
	format_side(lo, sizeof(lo), key->addr_lo, plo);
	format_side(hi, sizeof(hi), key->addr_hi, phi);
	if (ports)
		hi_first = port_set_contains(ports, phi) && !port_set_contains(ports, plo);
	snprintf(buf, size, "%s <-> %s", hi_first ? hi : lo, hi_first ? lo : hi);
	return buf;
}

uint64_t flowkey_domain_hash(const char *domain)
{
	uint64_t h = TLSGATE_FNV_BASIS;

	for (size_t i = strlen(domain); i > 0; i--)
		h = TLSGATE_DOMAIN_HASH_STEP(h, domain[i - 1]);
	return h;
}
