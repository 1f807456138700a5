/* parsing_helpers.h - bounds-checked header parsing for the BPF programs.
 *
 * Contract: a struct hdr_cursor points at the next unparsed byte of the
 * packet. Every parse_*() function checks that the whole header it reads
 * (including options or extension length it learns from the header) lies
 * before data_end, and only then reads it, stores a pointer to it through
 * the out parameter and advances the cursor past it. It returns the next
 * protocol (an ETH_P_* value in network byte order for Ethernet, an
 * IPPROTO_* value for IP, the header length for TCP) or PARSE_FAIL when the
 * header is truncated or malformed; on PARSE_FAIL the cursor and the out
 * parameter are unspecified and the caller must not read the packet further.
 * Nothing here writes to the packet or calls a helper, so data/data_end stay
 * valid. All loops are bounded by compile-time constants. */
#ifndef TLSGATE_PARSING_HELPERS_H
#define TLSGATE_PARSING_HELPERS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define PARSE_FAIL (-1)

/* 802.1Q / 802.1ad tags we look through (QinQ). A third tag is reported as
 * the VLAN ethertype: the caller cannot see the payload. */
#define PARSE_VLAN_MAX_DEPTH 2
/* IPv6 extension headers we skip before giving up. */
#define PARSE_IPV6_MAX_EXT 6

/* Not in the uapi headers. */
#define PARSE_IP_MF 0x2000
#define PARSE_IP_OFFSET 0x1fff

struct hdr_cursor {
	void *pos;
};

struct parse_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct parse_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M flag */
	__be32 identification;
};

static __always_inline int parse_is_vlan(__be16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) ||
	       h_proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet header plus up to PARSE_VLAN_MAX_DEPTH VLAN tags. Returns the
 * inner ethertype (network order). */
static __always_inline int parse_ethhdr_vlan(struct hdr_cursor *nh,
					     void *data_end,
					     struct ethhdr **ethhdr)
{
	struct ethhdr *eth = nh->pos;
	struct parse_vlan_hdr *vlh;
	__be16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return PARSE_FAIL;
	nh->pos = eth + 1;
	*ethhdr = eth;
	h_proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < PARSE_VLAN_MAX_DEPTH; i++) {
		if (!parse_is_vlan(h_proto))
			break;
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return PARSE_FAIL;
		h_proto = vlh->encap_proto;
		nh->pos = vlh + 1;
	}
	return h_proto;
}

/* IPv4 header including options (IHL). Rejects version != 4 and IHL < 5.
 * Returns the protocol field; fragments are the caller's business. */
static __always_inline int parse_iphdr(struct hdr_cursor *nh, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = nh->pos;
	int hdrsize;

	if ((void *)(iph + 1) > data_end)
		return PARSE_FAIL;
	if (iph->version != 4 || iph->ihl < 5)
		return PARSE_FAIL;
	hdrsize = iph->ihl * 4;
	if (nh->pos + hdrsize > data_end)
		return PARSE_FAIL;
	nh->pos += hdrsize;
	*iphdr = iph;
	return iph->protocol;
}

/* Fixed IPv6 header. Rejects version != 6. Returns nexthdr. */
static __always_inline int parse_ip6hdr(struct hdr_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return PARSE_FAIL;
	if (ip6h->version != 6)
		return PARSE_FAIL;
	nh->pos = ip6h + 1;
	*ip6hdr = ip6h;
	return ip6h->nexthdr;
}

/* Skips hop-by-hop, routing, destination options and AH headers, at most
 * PARSE_IPV6_MAX_EXT of them, starting with next_hdr. Returns the first
 * protocol that is not one of those: IPPROTO_FRAGMENT leaves the cursor on
 * the fragment header (see parse_ip6_frag). PARSE_FAIL when a header is
 * truncated or the chain is longer than the bound. */
static __always_inline int parse_ip6_ext(struct hdr_cursor *nh, void *data_end,
					 int next_hdr)
{
	struct ipv6_opt_hdr *hdr;
	int i, len;

#pragma unroll
	for (i = 0; i < PARSE_IPV6_MAX_EXT; i++) {
		switch (next_hdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
			break;
		default:
			return next_hdr;
		}
		hdr = nh->pos;
		if ((void *)(hdr + 1) > data_end)
			return PARSE_FAIL;
		if (next_hdr == IPPROTO_AH)
			len = (hdr->hdrlen + 2) * 4; /* RFC 4302: 32-bit words */
		else
			len = (hdr->hdrlen + 1) * 8; /* RFC 8200: 8-octet units */
		if (nh->pos + len > data_end)
			return PARSE_FAIL;
		next_hdr = hdr->nexthdr;
		nh->pos += len;
	}
	switch (next_hdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
		return PARSE_FAIL; /* chain longer than we follow */
	}
	return next_hdr;
}

/* IPv6 fragment header (8 bytes). Returns its nexthdr. */
static __always_inline int parse_ip6_frag(struct hdr_cursor *nh,
					  void *data_end,
					  struct parse_ipv6_frag_hdr **fraghdr)
{
	struct parse_ipv6_frag_hdr *fh = nh->pos;

	if ((void *)(fh + 1) > data_end)
		return PARSE_FAIL;
	nh->pos = fh + 1;
	*fraghdr = fh;
	return fh->nexthdr;
}

/* TCP header including options. Rejects doff < 5. Returns the header
 * length in bytes. */
static __always_inline int parse_tcphdr(struct hdr_cursor *nh, void *data_end,
					struct tcphdr **tcphdr)
{
	struct tcphdr *h = nh->pos;
	int len;

	if ((void *)(h + 1) > data_end)
		return PARSE_FAIL;
	len = h->doff * 4;
	if (len < (int)sizeof(*h))
		return PARSE_FAIL;
	if (nh->pos + len > data_end)
		return PARSE_FAIL;
	nh->pos += len;
	*tcphdr = h;
	return len;
}

#endif
