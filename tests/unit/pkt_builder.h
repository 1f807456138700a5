/* pkt_builder.h - crafts Ethernet/VLAN/IPv4/IPv6/TCP|UDP frames for the
 * tagger and flowkey tests. Header-only (static inline) test helper.
 *
 * pkt_build() writes one frame into buf and returns its length (0 when buf
 * is too small); *l3 is the offset of the IP header, *hdr_end the offset of
 * the first payload byte (end of the TCP/UDP header). Overrides let a test
 * write malformed fields (IHL, doff, version, lengths). */
#ifndef TLSGATE_TEST_PKT_BUILDER_H
#define TLSGATE_TEST_PKT_BUILDER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PKT_MAX 4096
#define PKT_MAX_EXT 10

struct pkt_spec {
	int family;	    /* 4 or 6 */
	int vlans;	    /* tags, outer 802.1ad then 802.1Q */
	const char *saddr;  /* textual */
	const char *daddr;
	uint16_t sport, dport;
	uint8_t l4;	    /* IPPROTO_TCP (default when 0) or IPPROTO_UDP */
	int ip_opt_len;	    /* IPv4 option bytes (multiple of 4, <= 40) */
	int n_ext;	    /* IPv6 extension headers in ext[] */
	uint8_t ext[PKT_MAX_EXT]; /* IPPROTO_HOPOPTS / ROUTING / DSTOPTS / AH */
	bool v4_mf;	    /* IPv4 more-fragments flag */
	uint16_t v4_frag_off; /* IPv4 fragment offset (8-byte units) */
	bool v6_frag;	    /* IPv6 fragment header after the extensions */
	uint8_t v6_frag_next; /* its next header (default: l4) */
	int tcp_opt_len;    /* TCP option bytes (multiple of 4, <= 40) */
	int ihl_override;   /* 1..15 to write a bad IHL, 0: correct */
	int doff_override;  /* 1..15 to write a bad doff, 0: correct */
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t window;
	const char *payload;
};

static inline void pkt_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void pkt_put32(uint8_t *p, uint32_t v)
{
	pkt_put16(p, (uint16_t)(v >> 16));
	pkt_put16(p + 2, (uint16_t)v);
}

/* Size of one extension header as pkt_build writes it. */
static inline size_t pkt_ext_size(uint8_t type)
{
	switch (type) {
	case IPPROTO_AH:
		return 24; /* hdrlen 4: (4 + 2) * 4, a 12-byte ICV */
	case IPPROTO_DSTOPTS:
		return 16; /* hdrlen 1 */
	default:
		return 8; /* hdrlen 0 */
	}
}

static inline size_t pkt_build(const struct pkt_spec *s, uint8_t *buf, size_t size,
			       size_t *l3, size_t *hdr_end)
{
	uint8_t l4 = s->l4 ? s->l4 : IPPROTO_TCP;
	size_t plen = s->payload ? strlen(s->payload) : 0;
	size_t off = 0, ip_off, l4_off, l4_len, need, ext_total = 0;
	uint8_t *nexthdr_field;
	int i;

	for (i = 0; i < s->n_ext; i++)
		ext_total += pkt_ext_size(s->ext[i]);
	l4_len = l4 == IPPROTO_TCP ? 20 + (size_t)s->tcp_opt_len : 8;
	need = 14 + 4 * (size_t)s->vlans + 40 + ext_total + 8 + (size_t)s->ip_opt_len + l4_len +
	       plen;
	if (need > size)
		return 0;
	memset(buf, 0, need);

	/* Ethernet: locally administered unicast MACs. */
	memcpy(buf, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
	off = 12;
	for (i = 0; i < s->vlans; i++) {
		pkt_put16(buf + off, i == 0 && s->vlans > 1 ? 0x88a8 : 0x8100);
		pkt_put16(buf + off + 2, (uint16_t)(100 + i));
		off += 4;
	}
	pkt_put16(buf + off, s->family == 6 ? 0x86dd : 0x0800);
	off += 2;
	ip_off = off;

	if (s->family == 4) {
		size_t ihl = 20 + (size_t)s->ip_opt_len;
		uint16_t frag = (uint16_t)((s->v4_mf ? 0x2000 : 0) | (s->v4_frag_off & 0x1fff));

		buf[off] = (uint8_t)(0x40 | (s->ihl_override ? s->ihl_override : (int)(ihl / 4)));
		pkt_put16(buf + off + 2, (uint16_t)(ihl + l4_len + plen));
		pkt_put16(buf + off + 4, 0x1234);
		pkt_put16(buf + off + 6, frag);
		buf[off + 8] = 64;
		buf[off + 9] = l4;
		inet_pton(AF_INET, s->saddr, buf + off + 12);
		inet_pton(AF_INET, s->daddr, buf + off + 16);
		/* Options: NOPs ending in an End of Option List. */
		memset(buf + off + 20, 1, (size_t)s->ip_opt_len);
		if (s->ip_opt_len)
			buf[off + ihl - 1] = 0;
		off += ihl;
	} else {
		size_t payload_len;

		buf[off] = 0x60;
		buf[off + 7] = 64;
		inet_pton(AF_INET6, s->saddr, buf + off + 8);
		inet_pton(AF_INET6, s->daddr, buf + off + 24);
		nexthdr_field = buf + off + 6;
		off += 40;
		for (i = 0; i < s->n_ext; i++) {
			size_t n = pkt_ext_size(s->ext[i]);

			*nexthdr_field = s->ext[i];
			nexthdr_field = buf + off;
			if (s->ext[i] == IPPROTO_AH) {
				buf[off + 1] = (uint8_t)(n / 4 - 2);
				pkt_put32(buf + off + 4, 0x1000); /* SPI */
			} else {
				buf[off + 1] = (uint8_t)(n / 8 - 1);
				buf[off + 2] = 1; /* PadN over the rest */
				buf[off + 3] = (uint8_t)(n - 4);
			}
			off += n;
		}
		if (s->v6_frag) {
			*nexthdr_field = IPPROTO_FRAGMENT;
			buf[off] = s->v6_frag_next ? s->v6_frag_next : l4;
			pkt_put16(buf + off + 2, 0x0001); /* offset 0, M set */
			pkt_put32(buf + off + 4, 0xabcd);
			nexthdr_field = NULL;
			off += 8;
		} else {
			*nexthdr_field = l4;
		}
		payload_len = off - ip_off - 40 + l4_len + plen;
		pkt_put16(buf + ip_off + 4, (uint16_t)payload_len);
	}

	l4_off = off;
	pkt_put16(buf + off, s->sport);
	pkt_put16(buf + off + 2, s->dport);
	if (l4 == IPPROTO_TCP) {
		int doff = s->doff_override ? s->doff_override : (int)(l4_len / 4);

		pkt_put32(buf + off + 4, s->seq);
		pkt_put32(buf + off + 8, s->ack);
		buf[off + 12] = (uint8_t)(doff << 4);
		buf[off + 13] = s->flags;
		pkt_put16(buf + off + 14, s->window);
		memset(buf + off + 20, 1, (size_t)s->tcp_opt_len); /* NOPs */
	} else {
		pkt_put16(buf + off + 4, (uint16_t)(8 + plen));
	}
	off += l4_len;
	if (plen)
		memcpy(buf + off, s->payload, plen);
	*l3 = ip_off;
	*hdr_end = l4_off + l4_len;
	return off + plen;
}

/* The same connection seen in the other direction. */
static inline struct pkt_spec pkt_reverse(const struct pkt_spec *s)
{
	struct pkt_spec r = *s;

	r.saddr = s->daddr;
	r.daddr = s->saddr;
	r.sport = s->dport;
	r.dport = s->sport;
	r.seq = s->ack;
	r.ack = s->seq;
	return r;
}

#endif
