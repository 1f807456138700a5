// SPDX-License-Identifier: GPL-2.0
/* tagger.bpf.c - TC (clsact) ingress program on the gateway's inside and
 * outside interfaces. For TCP on an SMTP port (smtp_ports) it looks the
 * connection up in the flow map, keyed the same way in both directions:
 *   no entry / INSPECT -> set the inspection mark (one netfilter rule sends
 *                         marked packets to NFQUEUE), TC_ACT_OK; so is a
 *                         client's SYN whatever the entry (a new connection)
 *   PASS               -> TC_ACT_OK untouched; the entry's counters grow
 *   BLOCK              -> TC_ACT_SHOT; the entry's counters grow
 *   CONTENT            -> message content: a client segment at the expected
 *                         sequence number without a '.' alone between line
 *                         ends, not ending with a CR or a bare LF (a BDAT
 *                         chunk: within the chunk) passes (TC_ACT_OK,
 *                         counters grow); a copy of bytes passed so that
 *                         the server could read otherwise is dropped
 *                         (tagger_stale_ok()); anything else turns the
 *                         entry to INSPECT here and is marked
 * An INSPECT (or returned CONTENT) entry with copy flags: a server segment
 * other than FIN/RST with data (COPY_REPLIES), a client segment without a
 * line the daemon may have to withhold (COPY_COMMANDS), a client FIN or RST
 * without data (COPY_REPLIES) is copied to reply_events and passes; the
 * daemon reads the copy. Anything else is marked as usual.
 * What may be SMTP but cannot be judged is dropped (TC_ACT_SHOT), counted,
 * never passed and never marked: the daemon cannot parse it either, and
 * the queue bypass would let it through while the daemon is down (DESIGN,
 * threat model rule 3: defragment or drop).
 *   FRAGMENT: every IPv4 fragment of TCP, first or not (each carries the
 *     protocol), and every IPv6 fragment whose fragment header's next
 *     header is TCP or a header TCP may follow (extension, AH, another
 *     fragment header): a later fragment has no ports, so any TCP
 *     fragment. Linux TCP sends with DF (path-MTU discovery), so TCP
 *     fragments are rare; the gateway cannot judge bytes it does not
 *     reassemble exactly as the receiver will, and what passes unseen would
 *     leave a hole the receiver fills. Fragments of UDP (DNS) and of
 *     other protocols pass as before.
 *   UNPARSED: an IPv4 or IPv6 header that is cut or malformed (version,
 *     IHL), an IPv6 extension chain longer than PARSE_IPV6_MAX_EXT or cut,
 *     a TCP header cut or with doff < 5 (TCP to any port: the ports may
 *     not be readable), and a third VLAN tag that carries IP or yet another
 *     tag. These drop whatever protocol they carry, since it cannot be
 *     determined (the kernel's IP layer drops a bad IP header anyway); a
 *     third tag that carries something else (ARP) is left alone.
 * Frames too short for an Ethernet header, frames that are not IP, and IP
 * that is not TCP on an SMTP port are left alone, uncounted.
 *
 * While the daemon misses its heartbeat (daemon_state), flows of secure-mode
 * sources (secure_sources, an LPM trie written from the policy) that are
 * not offloaded are dropped: secure mode fails closed, the rest fails open
 * through the NFQUEUE rule's queue bypass. The check comes first for every
 * flow that is not PASS or BLOCK (no entry, INSPECT, CONTENT, unknown, a
 * client's SYN), before anything of it may pass: content, copies, ACKs; so
 * does fail_mode.normal "closed" (secure_domains READY), which drops all of
 * them. Secure-mode domains (secure_domains) fail closed too: a client
 * segment with data of such a flow that the program would mark or copy
 * (not content it passes as such) and that may hold a MAIL FROM naming a
 * secure sender domain or a RCPT TO naming a secure recipient domain, or
 * such a line unfinished, is dropped and the flow turned BLOCK (see
 * tagger_secure_domains()). A
 * pure ACK (no payload, no SYN/FIN/RST) of a flow under inspection is then
 * not marked: it carries nothing the inspection needs, and about a fifth of
 * a plaintext dialog's packets are such ACKs.
 *
 * The key (struct tlsgate_flow_key) must equal what userspace/flowkey.c
 * computes; tests/unit/test_tagger.c checks both against each other. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parsing_helpers.h"
#include "tlsgate_shared.h"

#ifndef READ_ONCE
#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#endif
#ifndef WRITE_ONCE
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#endif

#define PARSE_TCP_FIN 0x01
#define PARSE_TCP_SYN 0x02
#define PARSE_TCP_RST 0x04
#define PARSE_TCP_ACK 0x10
#define PARSE_TCP_URG 0x20

/* Set through rodata by the loader before load. */
const volatile __u32 inspect_mark = TLSGATE_MARK_INSPECT;
const volatile __u32 inspect_mask = TLSGATE_MARK_MASK;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tlsgate_flow_key);
	__type(value, struct tlsgate_flow_value);
	__uint(max_entries, TLSGATE_MAX_FLOWS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

/* Not pinned: the daemon rewrites it as its sessions go (see
 * struct tlsgate_await). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tlsgate_flow_key);
	__type(value, struct tlsgate_await);
	__uint(max_entries, TLSGATE_MAX_AWAITS);
} awaits SEC(".maps");

/* Not pinned: written from the policy at each start (see
 * TLSGATE_RCPT_READY). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u8);
	__uint(max_entries, TLSGATE_MAX_RCPT_DOMAINS);
} rcpt_domains SEC(".maps");

/* Not pinned: written from the policy at each start (see
 * TLSGATE_SD_READY). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct tlsgate_sd_ready);
	__uint(max_entries, TLSGATE_MAX_SECURE_DOMAINS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} secure_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, __u8);
	__uint(max_entries, TLSGATE_MAX_PORTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} smtp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TLSGATE_DNS_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dns_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TLSGATE_REPLY_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reply_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct tlsgate_lpm_key);
	__type(value, __u8);
	__uint(max_entries, TLSGATE_MAX_SECURE_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} secure_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tlsgate_daemon_state);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} daemon_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct tlsgate_counter_value);
	__uint(max_entries, TLSGATE_CNT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

/* Scratch for scanning message content, one chunk at a time. */
#define CONTENT_CHUNK 512 /* a power of two, a multiple of 8 */
#define CONTENT_BLOCK 32  /* bytes per scan callback: four words */

struct content_chunk {
	/* + LFs after the payload (a block's worth), + the next chunk's
	 * first byte */
	__u8 b[CONTENT_CHUNK + CONTENT_BLOCK + 1];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct content_chunk);
	__uint(max_entries, 1);
} content_scratch SEC(".maps");

/* Scratch for the secure-domain scan while the daemon is gone (see
 * tagger_secure_domains()). */
#define SD_CHUNK 512   /* payload bytes loaded at a time; a power of two */
#define SD_DOMAIN 256  /* a domain's last bytes hashed; a power of two */
#define SD_MAX_AT 128  /* domains checked per segment; a power of two */

/* The scan's state, in the scratch map rather than on the stack: the
 * verifier then reads it as any number, and checks each callback once
 * instead of once for every combination of values it could track. */
struct sd_state {
	__u32 state; /* SD_* */
	__u32 kind;  /* SD_KIND_* of the line */
	__u32 idx;
	__u32 dom;   /* in a domain (SD_PATH): its first byte + 1, else 0 */
	__u32 nat;   /* domains recorded */
	__u32 hit;   /* drop the segment and block the flow */
	__u32 first; /* on the payload's first line */
	__u32 amb;   /* ... and it has held only white space and the
			letters of "mail from" and "rcpt to" */
	/* pass 2 */
	__u32 pos;   /* bytes of the current domain in d, not yet hashed */
	__u32 trail; /* still in the domain's trailing dots */
	__u32 whole; /* d holds the whole domain, from its first byte */
	__u32 mask;  /* TLSGATE_SD_* flags that count at a parent */
	__u32 emask; /* ... for the domain itself */
	__u32 pad;
	__u64 hash;
};

struct sd_scratch {
	struct sd_state st;
	struct tlsgate_flow_value nv; /* a BLOCK entry to write (not on the stack) */
	__u8 b[SD_CHUNK];
	__u8 d[SD_DOMAIN];
	__u32 start[SD_MAX_AT]; /* a domain's first byte (payload offset) | kind << 24 */
	__u32 end[SD_MAX_AT];   /* after its last byte */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sd_scratch);
	__uint(max_entries, 1);
} sd_scratch SEC(".maps");

/* Headers we want in the linear area: Ethernet, two VLAN tags, IPv6 and a
 * few extension headers, TCP with options. A driver may leave part of them
 * in page fragments, which would otherwise end as UNPARSED. */
#define TAGGER_PULL_LEN 256

static __always_inline void tagger_count(struct __sk_buff *skb, __u32 idx)
{
	struct tlsgate_counter_value *c;

	c = bpf_map_lookup_elem(&counters, &idx);
	if (!c)
		return;
	/* Per-CPU and TC runs with migration disabled: plain adds suffice. */
	c->packets += 1;
	c->bytes += skb->len;
}

static __always_inline int tagger_mark(struct __sk_buff *skb, __u32 idx)
{
	skb->mark = (skb->mark & ~inspect_mask) | inspect_mark;
	tagger_count(skb, idx);
	return TC_ACT_OK;
}

/* What may be TCP but cannot be judged: dropped, counted (see the top). */
static __always_inline int tagger_drop(struct __sk_buff *skb, __u32 idx)
{
	tagger_count(skb, idx);
	return TC_ACT_SHOT;
}

/* Returns <0, 0, >0 as (a, pa) compares to (b, pb): address bytes first,
 * then the port as a number. */
static __always_inline int tagger_cmp(const __u8 *a, __be16 pa, const __u8 *b,
				      __be16 pb)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	}
	if (pa == pb)
		return 0;
	return bpf_ntohs(pa) < bpf_ntohs(pb) ? -1 : 1;
}

/* True when the daemon has missed its heartbeat and addr (the client side
 * of the flow) is a secure-mode source: the flow must fail closed. */
static __always_inline int tagger_fail_closed(const __u8 *addr)
{
	struct tlsgate_daemon_state *st;
	struct tlsgate_lpm_key lk;
	__u32 zero = 0;
	__u64 now;

	st = bpf_map_lookup_elem(&daemon_state, &zero);
	if (!st || !st->failclosed_after_ms)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - st->heartbeat_ns <= (__u64)st->failclosed_after_ms * 1000000ull)
		return 0;
	lk.prefixlen = 128;
	__builtin_memcpy(lk.addr, addr, 16);
	return bpf_map_lookup_elem(&secure_sources, &lk) != NULL;
}

/* The secure_domains READY entry's flags when the daemon has missed its
 * heartbeat for longer than the failclosed_ms written there (0: the daemon
 * is alive, or no policy is in the map). */
static __always_inline __u32 tagger_domains_stale(void)
{
	struct tlsgate_daemon_state *st;
	struct tlsgate_sd_ready *r;
	__u64 ready = TLSGATE_SD_READY;
	__u32 zero = 0, flags;

	r = bpf_map_lookup_elem(&secure_domains, &ready);
	if (!r)
		return 0;
	flags = READ_ONCE(r->flags);
	if (!flags || !r->failclosed_ms)
		return 0;
	st = bpf_map_lookup_elem(&daemon_state, &zero);
	if (!st)
		return 0; /* never written: the loader has not started a daemon */
	if (bpf_ktime_get_ns() - READ_ONCE(st->heartbeat_ns) <=
	    (__u64)r->failclosed_ms * 1000000ull)
		return 0;
	return flags;
}

/* True when a plain IPv4 or IPv6 TCP segment's headers all lie in the
 * linear area: a local socket and GRO build them so, with the payload in
 * page fragments. Such a packet needs no pull, which for a cloned skb (a
 * TCP transmission) copies its head. Anything else is pulled as before. */
static __always_inline int tagger_tcp_headers_linear(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct tcphdr *th;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);
		if ((void *)(iph + 1) > data_end || iph->protocol != IPPROTO_TCP)
			return 0;
		th = (void *)iph + (iph->ihl & 0xf) * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);
		if ((void *)(ip6h + 1) > data_end || ip6h->nexthdr != IPPROTO_TCP)
			return 0;
		th = (void *)(ip6h + 1);
	} else {
		return 0;
	}
	if ((void *)(th + 1) > data_end)
		return 0;
	return (void *)th + th->doff * 4 <= data_end;
}

/* Byte offset of p in the frame, as a plain bounded number. The barrier
 * keeps clang from folding later arithmetic back into pointer arithmetic
 * with unbounded registers, which older verifiers (6.1, 6.12) refuse. */
static __always_inline __u32 tagger_off(void *p, void *data)
{
	long off = p - data;

	asm volatile("" : "+r"(off));
	return (__u32)off & 0xffff;
}

/* Where a DNS message was seen: addresses (IPv4 as ::ffff:a.b.c.d), ports
 * in host byte order, IP version. */
struct dns_where {
	__u8 saddr[16], daddr[16];
	__u16 sport, dport;
	__u8 ipver;
};

/* Copies a DNS message (UDP or TCP payload from or to port 53 at byte
 * offset off of the frame, len bytes) with where it was seen to the
 * daemon. Never changes the packet's fate. */
static __always_inline void tagger_copy_dns(struct __sk_buff *skb, __u32 off, __u32 len,
					    __u8 proto, const struct dns_where *w)
{
	struct tlsgate_dns_event *e;
	__u32 n = len;

	if (n == 0)
		return;
	if (n > TLSGATE_DNS_COPY_MAX)
		n = TLSGATE_DNS_COPY_MAX;
	e = bpf_ringbuf_reserve(&dns_events, sizeof(*e), 0);
	if (!e) {
		tagger_count(skb, TLSGATE_CNT_DNS_DROPPED);
		return;
	}
	e->orig_len = len;
	e->proto = proto;
	e->ipver = w->ipver;
	e->pad[0] = e->pad[1] = 0;
	e->pad2 = 0;
	e->ifindex = skb->ingress_ifindex;
	__builtin_memcpy(e->saddr, w->saddr, 16);
	__builtin_memcpy(e->daddr, w->daddr, 16);
	e->sport = w->sport;
	e->dport = w->dport;
	/* n is 1..TLSGATE_DNS_COPY_MAX already; the mask (a power of two)
	 * makes that visible to the verifier whatever clang does. */
	n = ((n - 1) & (TLSGATE_DNS_COPY_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, e->data, n) < 0) {
		bpf_ringbuf_discard(e, 0);
		tagger_count(skb, TLSGATE_CNT_DNS_DROPPED);
		return;
	}
	e->len = n;
	bpf_ringbuf_submit(e, 0);
	tagger_count(skb, TLSGATE_CNT_DNS_COPIED);
}

/* A UDP datagram from or to port 53 at the cursor (an answer or a query):
 * copy its payload. saddr/daddr: the packet's addresses as in flow keys. */
static __always_inline int tagger_dns(struct __sk_buff *skb, struct hdr_cursor *nh,
				      void *data, void *data_end, __u32 l3_end,
				      const __u8 *saddr, const __u8 *daddr, __u8 ipver)
{
	struct udphdr *uh = nh->pos;
	struct dns_where w;
	__u32 hdr_end;

	if ((void *)(uh + 1) > data_end ||
	    (uh->source != bpf_htons(53) && uh->dest != bpf_htons(53)))
		return TC_ACT_OK;
	__builtin_memcpy(w.saddr, saddr, 16);
	__builtin_memcpy(w.daddr, daddr, 16);
	w.sport = bpf_ntohs(uh->source);
	w.dport = bpf_ntohs(uh->dest);
	w.ipver = ipver;
	hdr_end = tagger_off(uh + 1, data);
	if (l3_end > hdr_end)
		tagger_copy_dns(skb, hdr_end, l3_end - hdr_end, IPPROTO_UDP, &w);
	return TC_ACT_OK;
}

/* A TCP segment from or to port 53: hdr_end is the end of the TCP header
 * in the frame, l3_end where the IP length says the packet ends. */
static __always_inline void tagger_copy_tcp_dns(struct __sk_buff *skb, __u32 hdr_end, __u32 l3_end,
						const __u8 *saddr, const __u8 *daddr,
						__u16 sport, __u16 dport, __u8 ipver)
{
	struct dns_where w;

	__builtin_memcpy(w.saddr, saddr, 16);
	__builtin_memcpy(w.daddr, daddr, 16);
	w.sport = sport;
	w.dport = dport;
	w.ipver = ipver;
	if (l3_end > hdr_end)
		tagger_copy_dns(skb, hdr_end, l3_end - hdr_end, IPPROTO_TCP, &w);
}

/* May the upper layer after an IPv6 fragment header be TCP? Also behind
 * the headers the receiver reads after it: extension headers, AH, a
 * fragment header again (Linux reassembles once more). */
static __always_inline int tagger_frag_may_be_tcp(int nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return 1;
	}
	return 0;
}

/* ---- message content (TLSGATE_CONTENT) --------------------------------- */

struct content_scan {
	struct __sk_buff *skb;
	struct content_chunk *buf; /* the scratch buffer, looked up once */
	__u32 off; /* payload start in the frame */
	__u32 len; /* payload bytes */
	__u8 line_end; /* the byte before the next one is CR or LF */
	__u8 stop;     /* a '.' alone between line ends, or a load failure */
	__u8 bdat;     /* commands: a line starts with B (BDAT) */
};

/* 1 when c == v, else 0, without a branch. */
static __always_inline __u32 content_is(__u32 c, __u32 v)
{
	return (((c ^ v) - 1) >> 8) & 1;
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the content scan reads 8 bytes as a little-endian word"
#endif
#define CONTENT_LOW7 0x7f7f7f7f7f7f7f7full
#define CONTENT_BYTES(c) (0x0101010101010101ull * (c))

/* The high bit of each byte of w that equals c, exactly (no carries across
 * bytes). Branch-free: a branch per byte or word would give the verifier
 * 2^n paths to walk. */
static __always_inline __u64 content_bytes_eq(__u64 w, __u64 c)
{
	__u64 x = w ^ CONTENT_BYTES(c);

	return ~(((x & CONTENT_LOW7) + CONTENT_LOW7) | x | CONTENT_LOW7);
}

/* The scratch buffer for the payload's 32-byte block i of a scan (loading
 * the next chunk at each chunk start), *at its place there; NULL to stop:
 * past the payload, or a load failed (cs->stop). */
static __always_inline struct content_chunk *content_block(__u64 i, struct content_scan *cs,
							   __u32 *at)
{
	struct content_chunk *buf = cs->buf;
	__u32 off, n;

	off = (__u32)i * CONTENT_BLOCK;
	if (off >= cs->len)
		return NULL;
	*at = off & (CONTENT_CHUNK - 1);
	if (!buf) {
		cs->stop = 1;
		return NULL;
	}
	if (*at == 0) {
		n = cs->len - off;
		if (n > CONTENT_CHUNK)
			n = CONTENT_CHUNK;
		/* n is 1..CONTENT_CHUNK; the mask shows the verifier as much. */
		n = ((n - 1) & (CONTENT_CHUNK - 1)) + 1;
		if (bpf_skb_load_bytes(cs->skb, cs->off + off, buf->b, n) < 0) {
			cs->stop = 1;
			return NULL;
		}
		/* After the payload, LFs: no stale byte of an earlier chunk in
		 * the last block, and a '.' that ends the payload counts as
		 * followed by a line end (returned: the next byte is unknown).
		 * Within the payload, the byte after the chunk is loaded. */
		__builtin_memset(&buf->b[n], '\n', CONTENT_BLOCK);
		if (cs->len - off > CONTENT_CHUNK &&
		    bpf_skb_load_bytes(cs->skb, cs->off + off + CONTENT_CHUNK,
				       &buf->b[CONTENT_CHUNK], 1) < 0) {
			cs->stop = 1;
			return NULL;
		}
	}
	return buf;
}

/* bpf_loop callbacks over the payload's 32-byte blocks. Returns 1 to stop.
 * Branch-free within a word (the dots' scan skips words without a dot);
 * the calls cost a quarter of one per word. The word loops stay loops:
 * unrolled, their spills took 272 bytes of stack, and with a caller's
 * frames the chain passed the 512 bytes the verifier allows. Two
 * callbacks, not one with a mode: content, the bulk of what is scanned,
 * tests three byte values per word, commands eight. */

/* Message content: the dots between line ends - the previous byte (the
 * byte below, or the last one of the word before) and the next one (the
 * byte above, or the first one of the word after) CR or LF. Only such a
 * line can end the data, whatever line ending the server honours; a
 * dot-led line ("..", ".x") cannot. */
static long content_scan_dots(__u64 i, void *arg)
{
	struct content_scan *cs = arg;
	struct content_chunk *buf;
	__u32 at = 0, w, next;
	__u64 word, eol, next_eol, hits = 0, line_end, starts, dots;

	buf = content_block(i, cs, &at);
	if (!buf)
		return 1;
	line_end = cs->line_end;
#pragma clang loop unroll(disable)
	for (w = 0; w < CONTENT_BLOCK / 8; w++) {
		word = *(__u64 *)&buf->b[at + w * 8];
		dots = content_bytes_eq(word, '.');
		if (!dots) {
			/* most words (none in base64): only the last byte */
			next = (__u32)(word >> 56);
			line_end = content_is(next, '\r') | content_is(next, '\n');
			continue;
		}
		next = buf->b[at + w * 8 + 8];
		eol = content_bytes_eq(word, '\r') | content_bytes_eq(word, '\n');
		next_eol = (__u64)(content_is(next, '\r') | content_is(next, '\n')) << 63;
		starts = (eol << 8) | (line_end << 7);
		hits |= dots & starts & ((eol >> 8) | next_eol);
		line_end = eol >> 63;
	}
	if (hits) {
		cs->stop = 1;
		return 1;
	}
	cs->line_end = line_end;
	return 0;
}

/* Commands (see TLSGATE_COPY_COMMANDS): a line to withhold is one that
 * starts (after a CR or LF, or at the payload's start) with m, r, s or b
 * in either case (OR 0x20 folds only 'M' onto 'm', and so on) or with
 * white space. The LFs after the payload start no such line. The whole
 * payload is read, for a BDAT line after others. */
static long content_scan_commands(__u64 i, void *arg)
{
	struct content_scan *cs = arg;
	struct content_chunk *buf;
	__u32 at = 0, w;
	__u64 word, eol, hits = 0, line_end, starts, folded, lead, bhits = 0;

	buf = content_block(i, cs, &at);
	if (!buf)
		return 1;
	line_end = cs->line_end;
#pragma clang loop unroll(disable)
	for (w = 0; w < CONTENT_BLOCK / 8; w++) {
		word = *(__u64 *)&buf->b[at + w * 8];
		eol = content_bytes_eq(word, '\r') | content_bytes_eq(word, '\n');
		starts = (eol << 8) | (line_end << 7);
		folded = word | CONTENT_BYTES(0x20);
		lead = content_bytes_eq(folded, 'm') | content_bytes_eq(folded, 'r') |
		       content_bytes_eq(folded, 's') | content_bytes_eq(folded, 'b') |
		       content_bytes_eq(word, ' ') |
		       content_bytes_eq(word, '\t') | content_bytes_eq(word, '\v') |
		       content_bytes_eq(word, '\f');
		hits |= lead & starts;
		bhits |= content_bytes_eq(folded, 'b') & starts;
		line_end = eol >> 63;
	}
	cs->bdat |= bhits != 0;
	if (hits)
		cs->stop = 1;
	cs->line_end = line_end;
	return 0;
}

/* The first 8 bytes of a flow value - verdict, content_line_end,
 * content_lf, content_chunk, content_seq - change together, by
 * compare-and-swap: a segment passes only if nothing changed them while
 * it was scanned (another CPU passing the segment before it, or turning
 * the entry back), so what the entry says is exactly what passed. */
_Static_assert(__builtin_offsetof(struct tlsgate_flow_value, content_line_end) == 1 &&
		       __builtin_offsetof(struct tlsgate_flow_value, content_lf) == 2 &&
		       __builtin_offsetof(struct tlsgate_flow_value, content_chunk) == 3 &&
		       __builtin_offsetof(struct tlsgate_flow_value, content_seq) == 4,
	       "the flow state word");
#define STATE_VERDICT(s) ((__u8)(s))
#define STATE_LINE_END(s) ((__u8)((s) >> 8))
#define STATE_CHUNK(s) ((__u8)((s) >> 24))
#define STATE_SEQ(s) ((__u32)((s) >> 32))
#define STATE(seq, chunk, lf, line_end, verdict)                                   \
	(((__u64)(seq) << 32) | ((__u64)(chunk) << 24) | ((__u64)(lf) << 16) |       \
	 ((__u64)(line_end) << 8) | (__u64)(verdict))

/* 1 when the payload (len bytes at off) ends with CR LF "." CR LF, the
 * one end of data every server honours: all of it in the payload, or "."
 * CRLF alone when the bytes before it were CR LF (crlf: TLSGATE_CONTENT_LF,
 * which never stands for a bare LF). An LF or CR alone before the '.', or
 * a '.' line ended otherwise, is no end here (servers disagree on it: SMTP
 * smuggling); the scan finds that '.' between line ends and the segment
 * comes back. */
static __always_inline int tagger_content_end(struct __sk_buff *skb, __u32 off, long len,
					      int crlf)
{
	__u8 tail[5];

	if (len >= 5) {
		if (bpf_skb_load_bytes(skb, off + (__u32)len - 5, tail, 5) < 0)
			return 0;
	} else if (len == 3 && crlf) {
		tail[0] = '\r';
		tail[1] = '\n';
		if (bpf_skb_load_bytes(skb, off, &tail[2], 3) < 0)
			return 0;
	} else {
		return 0;
	}
	return tail[0] == '\r' && tail[1] == '\n' && tail[2] == '.' && tail[3] == '\r' &&
	       tail[4] == '\n';
}

/* A segment's place in the frame, for the functions the verifier checks
 * on their own (global: once, not for every path that calls them). */
struct tagger_seg {
	__u32 seq;    /* TCP sequence number (host order) */
	__u32 l3_off; /* the IP header's offset */
	__u32 l3_len; /* the IP packet's length */
	__u32 off;    /* the payload's offset */
	long len;     /* payload bytes */
	__u32 dir;    /* enum tlsgate_dir */
	__u8 tcp_flags;
};

#define STATE_LF(s) ((__u8)((s) >> 16))

/* A client segment that starts before content_seq (c, in the state word
 * s0) of an entry whose bytes before c the program passed unseen
 * (TLSGATE_CONTENT_UNSEEN): a retransmission, a duplicate, or other bytes
 * for the same sequence numbers. The server reads these bytes only if it
 * dropped the copy that passed (a bad checksum, outside its window, a TTL
 * that ends at the gateway: the program cannot tell), and then may read
 * any mix of the copies, segment by segment. 1 when that is safe, so that
 * the daemon's view holds whichever copy the server reads:
 *   - the bytes before c hold no '.' between line ends, counting the
 *     segment's start and its end (at c or before) as line ends: no end of
 *     data in them, whatever comes before or after;
 *   - the line state at c is the entry's: when the segment holds the byte
 *     before c, it is no CR or LF (entry: no line end), or CR LF with the
 *     CR in the segment too (entry: TLSGATE_CONTENT_LF); a segment that
 *     ends at c - 1 ends with CR when the entry says CR LF.
 * With TLSGATE_CONTENT_ENDED, an end of data CRLF "." CRLF that ends at c
 * may be sent again: it ends the data at the same place.
 * 0: dropped (the daemon could not know which copy the server reads; the
 * segment never reaches it). The same client's honest retransmission
 * repeats bytes that passed the in-order scan and passes here (but for a
 * segment that starts with a '.' right before a line end). Global:
 * verified once. */
__attribute__((noinline)) int tagger_stale_ok(struct __sk_buff *skb, const struct tagger_seg *seg,
					      __u64 s0)
{
	struct content_scan cs;
	__u32 c, old, zero = 0;
	__u8 lf, b[5];
	long len;

	if (!seg)
		return 0;
	len = seg->len;
	if (len <= 0 || len > TLSGATE_CONTENT_SCAN_MAX)
		return 0;
	c = STATE_SEQ(s0);
	old = c - seg->seq;
	if (old == 0 || old > 0x7fffffff)
		return 0; /* not before c */
	if (old > (__u32)len)
		old = (__u32)len;
	lf = STATE_LF(s0);
	cs.skb = skb;
	cs.buf = bpf_map_lookup_elem(&content_scratch, &zero);
	cs.off = seg->off;
	cs.len = old;
	cs.line_end = 1; /* the byte before it: any copy's */
	cs.stop = 0;
	cs.bdat = 0;
	if (seg->seq + old == c) {
		/* it holds the byte before c */
		if (lf & TLSGATE_CONTENT_LF) {
			if (old < 2 || bpf_skb_load_bytes(skb, seg->off + old - 2, b, 2) < 0 ||
			    b[0] != '\r' || b[1] != '\n')
				return 0;
			if ((lf & TLSGATE_CONTENT_ENDED) && old >= 5 &&
			    bpf_skb_load_bytes(skb, seg->off + old - 5, b, 5) == 0 && b[0] == '\r' &&
			    b[1] == '\n' && b[2] == '.' && b[3] == '\r' && b[4] == '\n')
				cs.len = old - 3; /* the same end of data */
		} else if (STATE_LINE_END(s0)) {
			return 0; /* a line end the program did not write */
		} else if (bpf_skb_load_bytes(skb, seg->off + old - 1, b, 1) < 0 || b[0] == '\r' ||
			   b[0] == '\n') {
			return 0;
		}
	} else if (seg->seq + old == c - 1 && (lf & TLSGATE_CONTENT_LF)) {
		if (bpf_skb_load_bytes(skb, seg->off + old - 1, b, 1) < 0 || b[0] != '\r')
			return 0;
	}
	bpf_loop((cs.len + CONTENT_BLOCK - 1) / CONTENT_BLOCK, content_scan_dots, &cs, 0);
	return !cs.stop;
}

/* A segment of a CONTENT flow: 1 when it may pass in the kernel (and the
 * entry has advanced past it, or it repeats bytes passed before), 2 when
 * it is dropped (see tagger_stale_ok()), 0 when it goes to userspace.
 * Global: the verifier checks it once, not on every path to it (the
 * scan's loop made this the bulk of the program's verification).
 *
 * Why each way of passing is safe against reordering and retransmission
 * (issue 17, finding 13). The daemon hands the content over (or the
 * program switches at the 354) when the session has every client byte
 * before content_seq in order and nothing beyond it; from then on
 * content_seq moves only here, by compare-and-swap, by exactly the
 * payload of a segment that started at it. So the bytes from the
 * handover to content_seq are the segments that passed, each once, end
 * to end, scanned with the exact line state before it:
 *   - a segment that starts elsewhere never passes as new content: after
 *     content_seq (a hole before it) it goes to the daemon with the flow,
 *     which then sees every later byte; before it, it repeats passed
 *     bytes: tagger_stale_ok() or dropped (before the program passed any:
 *     the daemon's own bytes, which it compares with what it read);
 *   - a segment that starts at content_seq but overlaps nothing passed
 *     (content_seq is the end of all that passed), and what it holds is
 *     scanned here, whole;
 *   - a '.' after a line end of any kind (CR, LF, the segment's start
 *     after either) and before one (CR, LF, the segment's end) comes
 *     back: every end of data any server honours, and every ambiguous
 *     one (SMTP smuggling) is such a '.';
 *   - it may not end with a CR or with an LF without a CR before it: the
 *     entry records only "CR LF" (TLSGATE_CONTENT_LF) or "no line end",
 *     which is what the daemon's session takes from it when the content
 *     comes back (session_content_skip(after_lf)), so the session reads
 *     the next '.' as the server does;
 *   - the end-of-data shortcut (COPY_END_OF_DATA) passes CRLF "." CRLF
 *     only, at the segment's end, nothing ambiguous before it;
 *   - a BDAT chunk's bytes are data whatever they hold and its end is a
 *     count: a copy of them with other bytes changes no command; a
 *     segment that reaches past the end comes back;
 *   - SYN, FIN, RST and URG come back (the session reads them: URG may
 *     take a byte out of the server's stream);
 *   - an ACK without data passes: it carries no client byte. */
__attribute__((noinline)) int tagger_content(struct __sk_buff *skb, struct tlsgate_flow_value *val,
					     const struct tagger_seg *seg)
{
	__u64 *state, s0, s1;
	struct content_scan cs;
	__u32 seq, off, zero = 0;
	__u8 last[2];
	long len;
	int ended, crlf;

	if (!val || !seg ||
	    (seg->tcp_flags & (PARSE_TCP_SYN | PARSE_TCP_FIN | PARSE_TCP_RST | PARSE_TCP_URG)))
		return 0;
	state = (__u64 *)val;
	off = seg->off;
	len = seg->len;
	if (len == 0)
		return 1; /* an ACK, either way */
	if (seg->dir != TLSGATE_DIR_TO_SERVER || len < 0 || len > TLSGATE_CONTENT_SCAN_MAX)
		return 0;
	s0 = READ_ONCE(*state);
	seq = seg->seq;
	if (STATE_VERDICT(s0) != TLSGATE_CONTENT)
		return 0;
	if (seq != STATE_SEQ(s0)) {
		/* Out of order, retransmitted, overlapping. Before content_seq,
		 * over bytes passed here unseen: see tagger_stale_ok(). A
		 * retransmission that also reaches past content_seq goes to the
		 * daemon, which reads on from content_seq. */
		if (STATE_CHUNK(s0) || !(STATE_LF(s0) & TLSGATE_CONTENT_UNSEEN) ||
		    (__s32)(seq - STATE_SEQ(s0)) > 0)
			return 0;
		if (!tagger_stale_ok(skb, seg, s0))
			return 2;
		if ((__s32)(seq + (__u32)len - STATE_SEQ(s0)) > 0)
			return 0;
		/* what the entry says held while it was checked */
		return __sync_val_compare_and_swap(state, s0, s0) == s0;
	}
	if (STATE_CHUNK(s0)) {
		/* BDAT: the chunk's bytes are data whatever they hold; what
		 * follows its end is the next command. */
		if ((__s32)(seq + (__u32)len - val->content_end) > 0)
			return 0;
		s1 = STATE(seq + (__u32)len, 1, 0, 0, TLSGATE_CONTENT);
	} else {
		cs.skb = skb;
		cs.buf = bpf_map_lookup_elem(&content_scratch, &zero);
		cs.off = off;
		cs.len = (__u32)len;
		cs.line_end = STATE_LINE_END(s0);
		cs.stop = 0;
		cs.bdat = 0;
		/* END_OF_DATA: a segment that ends with the end of data - CRLF
		 * "." CRLF in it, or "." CRLF alone after CRLF - and holds no
		 * other passes; the rest of it is scanned. */
		ended = (READ_ONCE(val->copy) & TLSGATE_COPY_END_OF_DATA) &&
			tagger_content_end(skb, off, len, STATE_LF(s0) & TLSGATE_CONTENT_LF);
		if (ended)
			cs.len -= 3;
		bpf_loop((cs.len + CONTENT_BLOCK - 1) / CONTENT_BLOCK, content_scan_dots, &cs, 0);
		if (cs.stop)
			return 0;
		if (ended) {
			s1 = STATE(seq + (__u32)len, 0,
				   TLSGATE_CONTENT_LF | TLSGATE_CONTENT_UNSEEN | TLSGATE_CONTENT_ENDED, 1,
				   TLSGATE_INSPECT);
			if (__sync_val_compare_and_swap(state, s0, s1) != s0)
				return 0;
			/* The next client segment is a command again. */
			__sync_lock_test_and_set(&val->client_state,
						 TLSGATE_CLIENT_STATE(seq + (__u32)len, 1));
			tagger_count(skb, TLSGATE_CNT_CONTENT_ENDED);
			return 1;
		}
		/* What the next segment starts after: the last bytes (the last
		 * word may be partial). A CR, or an LF without a CR before it
		 * in the segment, comes back: the entry cannot say so. */
		if (len >= 2) {
			if (bpf_skb_load_bytes(skb, off + (__u32)len - 2, last, 2) < 0)
				return 0;
		} else {
			last[0] = 0;
			if (bpf_skb_load_bytes(skb, off, &last[1], 1) < 0)
				return 0;
		}
		if (last[1] == '\r' || (last[1] == '\n' && last[0] != '\r'))
			return 0;
		crlf = last[1] == '\n';
		s1 = STATE(seq + (__u32)len, 0, crlf | TLSGATE_CONTENT_UNSEEN, crlf,
			   TLSGATE_CONTENT);
	}
	return __sync_val_compare_and_swap(state, s0, s1) == s0;
}

/* Reads the IP packet (l3_len bytes from l3_off, 1..TLSGATE_REPLY_COPY_MAX)
 * into a reserved copy; discards the copy when it cannot be read (0). */
static __always_inline int tagger_copy_load(struct __sk_buff *skb, struct tlsgate_reply_event *e,
					    __u32 l3_off, __u32 l3_len)
{
	/* The mask (a power of two) shows the verifier the bound. */
	__u32 n = ((l3_len - 1) & (TLSGATE_REPLY_COPY_MAX - 1)) + 1;

	if (bpf_skb_load_bytes(skb, l3_off, e->pkt, n) < 0) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	e->len = n;
	e->ifindex = skb->ingress_ifindex;
	e->flags = 0;
	e->content_seq = 0;
	e->passed_ns = 0;
	return 1;
}

/* Where the content the kernel carried ended, when the entry says so (see
 * TLSGATE_REPLY_ENDED): for a copy the program did not switch at. */
static __always_inline void tagger_copy_ended(struct tlsgate_reply_event *e,
					      struct tlsgate_flow_value *val)
{
	__u64 s = READ_ONCE(*(__u64 *)val);

	if (STATE_VERDICT(s) == TLSGATE_INSPECT && ((__u8)(s >> 16) & TLSGATE_CONTENT_ENDED)) {
		e->flags |= TLSGATE_REPLY_ENDED;
		e->content_seq = STATE_SEQ(s);
	}
}

/* Submits a loaded copy. No wake-up per copy (an interrupt each): the
 * daemon reads the ring before every queued packet and once a second, and
 * is woken when the ring is half full, or when wake asks for it. */
static __always_inline int tagger_copy_submit(struct tlsgate_reply_event *e, int wake)
{
	bpf_ringbuf_submit(e, wake || bpf_ringbuf_query(&reply_events, BPF_RB_AVAIL_DATA) >
					      TLSGATE_REPLY_RING_BYTES / 2
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP);
	return 1;
}

struct reply_scan {
	__u32 n;     /* payload bytes in the scratch buffer */
	__u32 start; /* where the current line starts */
	__u32 last;  /* where the last whole line started */
	__u32 lines;
	__u32 bad;
};

/* bpf_loop callback: byte i of the payload in the scratch buffer; at an LF
 * checks the line it ends (see tagger_reply_lines()). Returns 1 to stop. */
static long reply_scan_byte(__u64 i, void *arg)
{
	struct reply_scan *rs = arg;
	struct content_chunk *buf;
	__u32 zero = 0, at = (__u32)i & (TLSGATE_REPLY_LINE_MAX - 1), start, ll;

	if (i >= rs->n)
		return 1;
	buf = bpf_map_lookup_elem(&content_scratch, &zero);
	if (!buf) {
		rs->bad = 1;
		return 1;
	}
	if (buf->b[at] != '\n')
		return 0;
	start = rs->start & (TLSGATE_REPLY_LINE_MAX - 1);
	ll = at - start; /* bytes before the LF */
	if (at < start || ll < 3 || buf->b[start] < '1' || buf->b[start] > '5' ||
	    buf->b[start + 1] < '0' || buf->b[start + 1] > '9' || buf->b[start + 2] < '0' ||
	    buf->b[start + 2] > '9' ||
	    (ll > 3 && buf->b[start + 3] != ' ' && (ll != 4 || buf->b[start + 3] != '\r'))) {
		rs->bad = 1;
		return 1;
	}
	rs->last = start;
	rs->lines++;
	rs->start = at + 1;
	return 0;
}

/* The payload (len bytes at off) as whole final reply lines, each read by
 * the daemon's session as one reply: "ddd " or "ddd" CRLF (or LF) at each
 * line start (the first digit 1-5), the last byte LF, at most
 * TLSGATE_REPLY_LINE_MAX bytes. Returns the number of lines, plus 0x100
 * when the last one is a 354; 0 when it is not such a payload. Global:
 * verified once. */
__attribute__((noinline)) int tagger_reply_lines(struct __sk_buff *skb, __u32 off, __u32 len)
{
	struct content_chunk *buf;
	struct reply_scan rs = { 0 };
	__u32 zero = 0, last;

	if (len < 4 || len > TLSGATE_REPLY_LINE_MAX)
		return 0;
	buf = bpf_map_lookup_elem(&content_scratch, &zero);
	if (!buf)
		return 0;
	rs.n = ((len - 1) & (TLSGATE_REPLY_LINE_MAX - 1)) + 1; /* the bound, for the verifier */
	if (bpf_skb_load_bytes(skb, off, buf->b, rs.n) < 0)
		return 0;
	bpf_loop(rs.n, reply_scan_byte, &rs, 0);
	if (rs.bad || rs.start != rs.n || !rs.lines)
		return 0;
	last = rs.last & (TLSGATE_REPLY_LINE_MAX - 1);
	return (int)(rs.lines | (buf->b[last] == '3' && buf->b[last + 1] == '5' &&
					 buf->b[last + 2] == '4') << 8);
}

/* ---- RCPT TO judged by its domain (rcpt_domains) ---------------------- */

#define RCPT_PREFIX 9 /* "RCPT TO:<" */
#define RCPT_LINE_MAX 512 /* a power of two; RFC 5321's command line */

struct rcpt_scan {
	__u32 n;    /* line bytes in the scratch buffer, CRLF included */
	__u32 at;   /* the '@' */
	__u32 end;  /* the '>' */
	__u32 part; /* 0 local part, 1 domain, 2 after the '>' */
	__u32 bad;
	__u32 ruled;
	__u64 hash;
};

/* An atext character of RFC 5322 or a dot: what a local part without
 * quotes or escapes is made of. */
static __always_inline int rcpt_local_char(__u8 c)
{
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return 1;
	if (c >= '0' && c <= '9')
		return 1;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'':
	case '*': case '+': case '-': case '/': case '=': case '?':
	case '^': case '_': case '`': case '{': case '|': case '}':
	case '~': case '.':
		return 1;
	}
	return 0;
}

/* bpf_loop callback: byte RCPT_PREFIX + i of the line, before its CRLF.
 * Returns 1 to stop. */
static long rcpt_syntax_byte(__u64 i, void *arg)
{
	struct rcpt_scan *rs = arg;
	struct content_chunk *buf;
	__u32 zero = 0, at = (__u32)(RCPT_PREFIX + i), prev;
	__u8 c, p;

	if (at + 2 >= rs->n)
		return 1;
	buf = bpf_map_lookup_elem(&content_scratch, &zero);
	if (!buf) {
		rs->bad = 1;
		return 1;
	}
	at &= RCPT_LINE_MAX - 1;
	prev = (at - 1) & (RCPT_LINE_MAX - 1);
	c = buf->b[at];
	p = buf->b[prev];
	if (rs->part == 0) {
		if (c == '@' && at > RCPT_PREFIX) {
			rs->part = 1;
			rs->at = at;
		} else if (!rcpt_local_char(c)) {
			rs->bad = 1;
		}
	} else if (rs->part == 1) {
		/* what policy_domain_normalize() accepts, without the
		 * trailing dot it would strip */
		if (c == '>' && p != '@' && p != '.') {
			rs->part = 2;
			rs->end = at;
		} else if (c == '.' ? p == '@' || p == '.'
				    : !(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
					(c >= '0' && c <= '9') || c == '-' || c == '_')) {
			rs->bad = 1;
		}
	} else if ((at == rs->end + 1 && c != ' ') || c < 0x20 || c > 0x7e) {
		rs->bad = 1; /* parameters: printable, after a space */
	}
	return rs->bad;
}

/* bpf_loop callback: the domain's byte i from its end; looks up each
 * parent's hash at the dot before it. Returns 1 to stop. */
static long rcpt_domain_byte(__u64 i, void *arg)
{
	struct rcpt_scan *rs = arg;
	struct content_chunk *buf;
	__u32 zero = 0, at = rs->end - 1 - (__u32)i;
	__u8 c;

	if (at <= rs->at)
		return 1;
	buf = bpf_map_lookup_elem(&content_scratch, &zero);
	if (!buf) {
		rs->bad = 1;
		return 1;
	}
	c = buf->b[at & (RCPT_LINE_MAX - 1)];
	if (c == '.' && bpf_map_lookup_elem(&rcpt_domains, &rs->hash)) {
		rs->ruled = 1;
		return 1;
	}
	if (c >= 'A' && c <= 'Z')
		c |= 0x20;
	rs->hash = TLSGATE_DOMAIN_HASH_STEP(rs->hash, c);
	return 0;
}

/* 1 when the payload (len bytes at off) is one line "RCPT TO:<local@domain>"
 * CRLF, "RCPT TO:" in either case, optionally with parameters after a
 * space (printable ASCII), the local part atext and dots, the domain
 * letters, digits, '-', '_' and inner dots, and neither the domain nor a
 * parent of it is in rcpt_domains (ready): the daemon's session reads the
 * same domain there and would not refuse it. 0 for anything else (quotes,
 * source routes, brackets, a second '@', other white space, non-ASCII):
 * the daemon judges those. Global: verified once. */
__attribute__((noinline)) int tagger_rcpt_unruled(struct __sk_buff *skb, __u32 off, __u32 len)
{
	static const char verb[RCPT_PREFIX] = "rcpt to:<";
	struct content_chunk *buf;
	struct rcpt_scan rs = { 0 };
	__u64 ready = TLSGATE_RCPT_READY;
	__u32 zero = 0, i;

	if (len < RCPT_PREFIX + 6 || len > RCPT_LINE_MAX ||
	    !bpf_map_lookup_elem(&rcpt_domains, &ready))
		return 0;
	buf = bpf_map_lookup_elem(&content_scratch, &zero);
	if (!buf)
		return 0;
	rs.n = ((len - 1) & (RCPT_LINE_MAX - 1)) + 1; /* the bound, for the verifier */
	if (bpf_skb_load_bytes(skb, off, buf->b, rs.n) < 0)
		return 0;
	for (i = 0; i < RCPT_PREFIX; i++) {
		__u8 c = buf->b[i];

		if ((i < 4 || (i > 4 && i < 7) ? c | 0x20 : c) != verb[i])
			return 0;
	}
	if (buf->b[(rs.n - 2) & (RCPT_LINE_MAX - 1)] != '\r' ||
	    buf->b[(rs.n - 1) & (RCPT_LINE_MAX - 1)] != '\n')
		return 0;
	bpf_loop(rs.n - RCPT_PREFIX - 2, rcpt_syntax_byte, &rs, 0);
	/* the session reads at most 255 bytes of an address */
	if (rs.bad || rs.part != 2 || rs.end >= rs.n || rs.end <= rs.at + 1 ||
	    rs.end - RCPT_PREFIX > 255)
		return 0;
	rs.hash = TLSGATE_FNV_BASIS;
	bpf_loop(rs.end - rs.at - 1, rcpt_domain_byte, &rs, 0);
	if (rs.bad || rs.ruled || bpf_map_lookup_elem(&rcpt_domains, &rs.hash))
		return 0;
	return 1;
}

/* ---- secure domains while the daemon is gone (secure_domains) ------------ */

/* The command line states of the scan: a line's first bytes are read as
 * Postfix's smtpd and the daemon's session read them (white space before
 * the verb and between the words, "FROM" and ':' apart or not). */
#define SD_LEAD 0   /* at a line start, before the verb */
#define SD_VERB 1   /* in "mail" or "rcpt" (idx letters matched) */
#define SD_SEP 2    /* after the verb: white space, at least one */
#define SD_WORD 3   /* in "from" or "to" (idx letters matched) */
#define SD_COLON 4  /* after the word: white space, then ':' */
#define SD_PATH 5   /* after the ':', to the line's end */
#define SD_OTHER 6  /* any other line, to its end */

#define SD_KIND_MAIL 1
#define SD_KIND_RCPT 2
#define SD_KIND_BOTH 3

/* "mail", "rcpt", "from", "to" as little-endian words: letter idx of a
 * word is (w >> 8 * idx) & 0xff. */
#define SD_W_MAIL 0x6c69616du
#define SD_W_RCPT 0x74706372u
#define SD_W_FROM 0x6d6f7266u
#define SD_W_TO 0x6f74u

struct sd_scan {
	struct __sk_buff *skb;
	__u32 off;  /* payload start in the frame */
	__u32 len;  /* payload bytes */
	__u32 fail; /* a load failed: not judged */
};

/* What ends a domain in a path: anything but letters, digits, '-', '_',
 * '.' and non-ASCII bytes (an IDNA U-label's UTF-8 stays in the domain). */
static __always_inline int sd_domain_char(__u8 c)
{
	__u8 l = c | 0x20;

	return (l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
	       c == '.' || c >= 0x80;
}

/* smtpd's white space within a line (CR and LF end it). */
static __always_inline int sd_space(__u8 c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

/* The letters of "mail from" and "rcpt to", folded: all a line may hold
 * before its ':' when the server may have read the start of that line
 * from an earlier segment. */
static __always_inline int sd_verb_letter(__u8 l)
{
	return l == 'm' || l == 'a' || l == 'i' || l == 'l' || l == 'f' || l == 'r' || l == 'o' ||
	       l == 'c' || l == 'p' || l == 't';
}

/* Records the domain that ends at byte at (exclusive). */
static __always_inline void sd_record(struct sd_state *ss, struct sd_scratch *s, __u32 at)
{
	__u32 n = ss->nat;

	if (ss->dom) {
		if (n >= SD_MAX_AT) {
			ss->hit = 1; /* more than can be checked: not judged, dropped */
		} else {
			s->start[n & (SD_MAX_AT - 1)] = (ss->dom - 1) | (ss->kind << 24);
			s->end[n & (SD_MAX_AT - 1)] = at;
			ss->nat = n + 1;
		}
		ss->dom = 0;
	}
}

/* bpf_loop callback, pass 1: payload byte i through the line states;
 * records each domain after an '@' on a MAIL FROM or RCPT TO line.
 * Returns 1 to stop. */
static long sd_scan_byte(__u64 i, void *arg)
{
	struct sd_scan *fs = arg;
	struct sd_scratch *s;
	struct sd_state *ss;
	__u32 zero = 0, at = (__u32)i, n, st, w, wl;
	__u8 c, l;
	int ws;

	if (at >= fs->len)
		return 1;
	s = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!s) {
		fs->fail = 1;
		return 1;
	}
	ss = &s->st;
	if (ss->hit)
		return 1;
	if ((at & (SD_CHUNK - 1)) == 0) {
		n = fs->len - at;
		if (n > SD_CHUNK)
			n = SD_CHUNK;
		n = ((n - 1) & (SD_CHUNK - 1)) + 1; /* 1..SD_CHUNK, for the verifier */
		if (bpf_skb_load_bytes(fs->skb, fs->off + at, s->b, n) < 0) {
			fs->fail = 1;
			return 1;
		}
	}
	c = s->b[at & (SD_CHUNK - 1)];
	st = ss->state;
	if (st == SD_PATH && ss->dom && !sd_domain_char(c))
		sd_record(ss, s, at);
	if (c == '\r' || c == '\n') {
		/* either ends a line for some server: the next one starts */
		ss->state = SD_LEAD;
		ss->first = 0;
		return 0;
	}
	ws = sd_space(c);
	l = c | 0x20;
	wl = ss->kind == SD_KIND_MAIL ? 4 : 2; /* "from", "to" */
	if (st != SD_PATH && c == ':' && !(st == SD_WORD && ss->idx == wl) && st != SD_COLON) {
		/* A ':' the command syntax does not expect: on the first line
		 * after nothing but the letters of the two commands, it may end
		 * a command the server began to read from an earlier segment. */
		if (ss->first && ss->amb) {
			ss->state = SD_PATH;
			ss->kind = SD_KIND_BOTH;
		} else {
			ss->state = SD_OTHER;
		}
		return 0;
	}
	if (!ws && !sd_verb_letter(l))
		ss->amb = 0;
	switch (st) {
	case SD_LEAD:
		if (ws)
			break;
		ss->idx = 1;
		if (l == 'm') {
			ss->kind = SD_KIND_MAIL;
			ss->state = SD_VERB;
		} else if (l == 'r') {
			ss->kind = SD_KIND_RCPT;
			ss->state = SD_VERB;
		} else {
			ss->state = SD_OTHER;
		}
		break;
	case SD_VERB:
		w = ss->kind == SD_KIND_MAIL ? SD_W_MAIL : SD_W_RCPT;
		if (ss->idx < 4 && l == ((w >> (8 * (ss->idx & 3))) & 0xff))
			ss->idx++;
		else if (ss->idx == 4 && ws)
			ss->state = SD_SEP;
		else
			ss->state = SD_OTHER;
		break;
	case SD_SEP:
		if (ws)
			break;
		w = ss->kind == SD_KIND_MAIL ? SD_W_FROM : SD_W_TO;
		if (l == (w & 0xff)) {
			ss->idx = 1;
			ss->state = SD_WORD;
		} else {
			ss->state = SD_OTHER;
		}
		break;
	case SD_WORD:
		w = ss->kind == SD_KIND_MAIL ? SD_W_FROM : SD_W_TO;
		if (ss->idx < wl && l == ((w >> (8 * (ss->idx & 3))) & 0xff))
			ss->idx++;
		else if (ss->idx == wl && c == ':')
			ss->state = SD_PATH;
		else if (ss->idx == wl && ws)
			ss->state = SD_COLON;
		else
			ss->state = SD_OTHER;
		break;
	case SD_COLON:
		if (c == ':')
			ss->state = SD_PATH;
		else if (!ws)
			ss->state = SD_OTHER;
		break;
	case SD_PATH:
		/* Every '@' of the path counts: the domain's, a source
		 * route's, a quoted local part's (more, never fewer). */
		if (c == '@')
			ss->dom = at + 2;
		break;
	}
	return 0;
}

/* bpf_loop callback, pass 2: recorded domain i >> 8, its byte i & 255
 * counted from its end (trailing dots skipped); the hash of each parent
 * is looked up at the dot before it, the whole domain's after its first
 * byte, as in rcpt_domain_byte(). Returns 1 to stop. */
static long sd_domain_byte(__u64 i, void *arg)
{
	struct sd_scan *fs = arg;
	struct tlsgate_sd_ready *v;
	struct sd_scratch *s;
	struct sd_state *ss;
	__u32 zero = 0, e = (__u32)(i >> 8), j = (__u32)i & (SD_DOMAIN - 1), start, end, n, kind;
	__u8 c;

	s = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!s) {
		fs->fail = 1;
		return 1;
	}
	ss = &s->st;
	if (e >= ss->nat || ss->hit)
		return 1;
	if (j == 0) {
		start = s->start[e & (SD_MAX_AT - 1)];
		kind = start >> 24;
		start &= 0xffffff;
		end = s->end[e & (SD_MAX_AT - 1)];
		ss->mask = (kind & SD_KIND_MAIL ? TLSGATE_SD_SENDER_SUB : 0) |
			   (kind & SD_KIND_RCPT ? TLSGATE_SD_RECIPIENT_SUB : 0);
		ss->emask = ss->mask | (kind & SD_KIND_MAIL ? TLSGATE_SD_SENDER : 0) |
			    (kind & SD_KIND_RCPT ? TLSGATE_SD_RECIPIENT : 0);
		ss->pos = 0;
		if (end <= start || end > fs->len)
			return 0; /* an '@' with nothing after it */
		/* The last SD_DOMAIN - 1 bytes: a longer name is no policy's,
		 * but its parents may be. */
		n = end - start;
		ss->whole = n < SD_DOMAIN;
		if (n >= SD_DOMAIN)
			n = SD_DOMAIN - 1;
		n = ((n - 1) & (SD_DOMAIN - 1)) + 1; /* the bound, for the verifier */
		if (bpf_skb_load_bytes(fs->skb, fs->off + end - n, s->d, n) < 0) {
			fs->fail = 1;
			return 1;
		}
		ss->pos = n;
		ss->trail = 1;
		ss->hash = TLSGATE_FNV_BASIS;
	}
	if (j > ss->pos)
		return 0; /* this domain is done */
	if (j == ss->pos) {
		if (!ss->trail && ss->whole) {
			v = bpf_map_lookup_elem(&secure_domains, &ss->hash);
			if (v && (v->flags & ss->emask))
				ss->hit = 1;
		}
		return 0;
	}
	c = s->d[(ss->pos - 1 - j) & (SD_DOMAIN - 1)];
	if (c == '.' && ss->trail)
		return 0;
	if (c == '.' && !ss->trail) {
		v = bpf_map_lookup_elem(&secure_domains, &ss->hash);
		if (v && (v->flags & ss->mask)) {
			ss->hit = 1;
			return 1;
		}
	}
	ss->trail = 0;
	if (c >= 'A' && c <= 'Z')
		c |= 0x20;
	ss->hash = TLSGATE_DOMAIN_HASH_STEP(ss->hash, c);
	return 0;
}

/* While the daemon is gone: 1 when a client segment (payload len bytes at
 * off) must be dropped and its flow blocked, because the server may read in
 * it a MAIL FROM naming a secure-mode sender domain or a RCPT TO naming a
 * secure-mode recipient domain (secure_domains, each domain itself and, as
 * the policy says, its subdomains; case-insensitive; trailing dots
 * ignored), or such a command line it does not end (not judged). Lines
 * start at the payload's start and after every CR or LF; the verb, the word
 * and the ':' may have white space before and between them as smtpd allows.
 * The payload's first line may continue a line the program did not see
 * start (a split "MAIL FR" + "OM:<...>", a segment the server trims to what
 * it lacks): any first line with a ':' after nothing but the letters of
 * "mail from" and "rcpt to" and white space counts as both. Every '@' of a
 * path to the line's end is checked (source routes, quoted local parts),
 * its domain ending at the first byte that is none of letters, digits,
 * '-', '_', '.', non-ASCII. Global: verified once. */
__attribute__((noinline)) int tagger_secure_domains(struct __sk_buff *skb, __u32 off, __u32 len)
{
	struct sd_scan fs = { 0 };
	struct sd_scratch *s;
	struct sd_state *ss;
	__u32 zero = 0;

	if (len == 0)
		return 0;
	if (len > TLSGATE_CONTENT_SCAN_MAX)
		return 1; /* not scanned: not passed */
	s = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!s)
		return 1;
	ss = &s->st;
	__builtin_memset(ss, 0, sizeof(*ss));
	ss->state = SD_LEAD;
	ss->first = 1;
	ss->amb = 1;
	fs.skb = skb;
	fs.off = off;
	fs.len = len;
	bpf_loop(len, sd_scan_byte, &fs, 0);
	/* The scratch again: the callbacks' writes are not this pointer's
	 * to the verifier. */
	s = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!s || fs.fail)
		return 1;
	ss = &s->st;
	if (ss->hit)
		return 1;
	if (ss->state == SD_PATH) {
		/* a MAIL FROM or RCPT TO line the segment does not end: the rest
		 * (its domain, or the part that makes it one) is not seen */
		return 1;
	}
	if (ss->nat)
		bpf_loop((ss->nat & (2 * SD_MAX_AT - 1)) * SD_DOMAIN, sd_domain_byte, &fs, 0);
	s = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!s || fs.fail)
		return 1;
	return s->st.hit != 0;
}

/* Turns the flow BLOCK (val, or a new entry for key) after a segment
 * that tagger_secure_domains() refused: nothing more of it passes,
 * whatever the server or a forger answers to the dropped segment. Inline:
 * a global function may not be passed a NULL val on 6.1. */
static __always_inline void tagger_block_flow(struct tlsgate_flow_value *val,
					      struct tlsgate_flow_key *key)
{
	struct sd_scratch *sc;
	__u32 zero = 0;
	__u64 s0;
	int i;

	if (val) {
		for (i = 0; i < 8; i++) {
			s0 = READ_ONCE(*(__u64 *)val);
			if (STATE_VERDICT(s0) == TLSGATE_BLOCK ||
			    __sync_val_compare_and_swap((__u64 *)val, s0,
							(s0 & ~0xffull) | TLSGATE_BLOCK) == s0)
				return;
		}
		val->verdict = TLSGATE_BLOCK; /* eight races lost in a row */
		return;
	}
	sc = bpf_map_lookup_elem(&sd_scratch, &zero);
	if (!sc)
		return; /* cannot be: the segment is dropped all the same */
	__builtin_memset(&sc->nv, 0, sizeof(sc->nv));
	sc->nv.verdict = TLSGATE_BLOCK;
	sc->nv.verdict_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&flows, key, &sc->nv, BPF_ANY);
}

/* A copied server segment with data (payload len bytes at off, sequence
 * number seq; in_order: it starts where the server segment before it
 * ended) against the flow's awaits entry (struct tlsgate_await): counts
 * the replies it awaits down (2), turns the entry CONTENT at the 354 to
 * DATA (1, with *content_seq: the copy is loaded, its submission cannot
 * fail, so the daemon learns of it), and removes the awaits entry at any
 * other data at or past where a reply is awaited (0). */
static __always_inline int tagger_await_server(struct __sk_buff *skb,
					       struct tlsgate_flow_value *val,
					       struct tlsgate_flow_key *key, struct tcphdr *tcph,
					       __u32 off, long len, int in_order,
					       __u32 *content_seq)
{
	const __u32 both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	struct tlsgate_await *a;
	__u32 seq, cseq, sseq, lines, skip;
	__u64 st, s0;
	int r;

	if (len <= 0)
		return 0;
	a = bpf_map_lookup_elem(&awaits, key);
	if (!a)
		return 0;
	seq = bpf_ntohl(tcph->seq);
	st = READ_ONCE(a->state);
	sseq = TLSGATE_AWAIT_SERVER(st);
	skip = TLSGATE_AWAIT_SKIP(st);
	if (!in_order || seq != sseq || (READ_ONCE(val->copy) & both) != both ||
	    TLSGATE_AWAIT_STAGE(st) == TLSGATE_AWAIT_DATA)
		goto other;
	r = tagger_reply_lines(skb, off, (__u32)len);
	lines = (__u32)r & 0xff;
	if (!lines)
		goto other;
	if (TLSGATE_AWAIT_STAGE(st) == TLSGATE_AWAIT_REPLY) {
		if (lines != 1)
			goto other;
		return __sync_val_compare_and_swap(
			       &a->state, st,
			       TLSGATE_AWAIT_STATE(TLSGATE_AWAIT_DATA, 0, seq + (__u32)len)) == st
			       ? 2
			       : 0;
	}
	if (TLSGATE_AWAIT_STAGE(st) != TLSGATE_AWAIT_354)
		goto other;
	if (lines <= skip)
		return __sync_val_compare_and_swap(&a->state, st,
						   TLSGATE_AWAIT_STATE(TLSGATE_AWAIT_354, skip - lines,
								       seq + (__u32)len)) == st
			       ? 2
			       : 0;
	cseq = READ_ONCE(a->client_seq);
	/* Safe against the client's reordering and retransmission (issue 17,
	 * finding 13): the 354 acknowledges exactly cseq, so the server has
	 * every client byte before it (no copy of them can change what it
	 * read), and the last client segment the program saw ended there,
	 * after an LF (any later, earlier or overlapping one moved
	 * client_state elsewhere): the content starts at a line start, and
	 * nothing the client sent after DATA passed unscanned. The entry's
	 * TLSGATE_CONTENT_LF stands for that start, where ".\r\n" ends the
	 * data for every server. The server's side is trusted as the daemon
	 * trusts it (a forged 354 fools both). */
	if (lines != skip + 1 || !(r & 0x100) || bpf_ntohl(tcph->ack_seq) != cseq ||
	    READ_ONCE(val->client_state) != TLSGATE_CLIENT_STATE(cseq, 1))
		goto other; /* not DATA's 354, or the client sent more */
	s0 = READ_ONCE(*(__u64 *)val);
	if (STATE_VERDICT(s0) != TLSGATE_INSPECT ||
	    __sync_val_compare_and_swap((__u64 *)val, s0,
					STATE(cseq, 0, TLSGATE_CONTENT_LF, 1, TLSGATE_CONTENT)) != s0)
		goto other;
	bpf_map_delete_elem(&awaits, key);
	*content_seq = cseq;
	tagger_count(skb, TLSGATE_CNT_CONTENT_SWITCHED);
	return 1;
other:
	/* Server data where (or after where) a reply is awaited, and not
	 * that one: what the daemon expected is not what happens. */
	if ((__s32)(seq + (__u32)len - sseq) > 0)
		bpf_map_delete_elem(&awaits, key);
	return 0;
}

/* A copied client command alone (len bytes at seq, after an LF): "DATA"
 * CRLF, or a RCPT TO copied for its domain. An AWAIT_DATA there, with
 * nothing from the server since its reply, moves on to stage (AWAIT_354
 * or AWAIT_REPLY) after it (1). Only a copy (which starts where the last
 * client segment ended, see tagger_copy_command()) at exactly the
 * client_seq the entry holds moves it; what the server then does with it
 * is checked at the 354 (its ACK number). */
static __always_inline int tagger_await_command(struct tlsgate_flow_value *val,
						struct tlsgate_flow_key *key, __u32 seq, __u32 len,
						__u8 stage)
{
	struct tlsgate_await *a = bpf_map_lookup_elem(&awaits, key);
	__u64 st;

	if (!a)
		return 0;
	st = READ_ONCE(a->state);
	if (TLSGATE_AWAIT_STAGE(st) != TLSGATE_AWAIT_DATA || READ_ONCE(a->client_seq) != seq ||
	    READ_ONCE(val->server_state) != TLSGATE_SERVER_STATE(TLSGATE_AWAIT_SERVER(st)))
		return 0;
	WRITE_ONCE(a->client_seq, seq + len);
	return __sync_val_compare_and_swap(&a->state, st,
					   TLSGATE_AWAIT_STATE(stage, 0,
							       TLSGATE_AWAIT_SERVER(st))) == st;
}

/* A server segment of a flow whose replies are copied (payload len bytes
 * at off; 0 for the client's FIN or RST): the IP packet (l3_len bytes from
 * l3_off) into reply_events. False when it cannot be (too long, ring
 * full): the segment is then marked like any other. */
static __always_inline int tagger_copy_reply(struct __sk_buff *skb, struct tlsgate_flow_value *val,
					     struct tlsgate_flow_key *key, struct tcphdr *tcph,
					     __u32 l3_off, __u32 l3_len, __u32 off, long len,
					     int in_order)
{
	struct tlsgate_reply_event *e;
	__u32 content_seq = 0;
	__u8 head[3];
	int moved;

	if (l3_len == 0 || l3_len > TLSGATE_REPLY_COPY_MAX)
		return 0;
	e = bpf_ringbuf_reserve(&reply_events, sizeof(*e), 0);
	if (!e) {
		tagger_count(skb, TLSGATE_CNT_REPLY_QUEUED);
		return 0;
	}
	if (!tagger_copy_load(skb, e, l3_off, l3_len))
		return 0;
	moved = tagger_await_server(skb, val, key, tcph, off, len, in_order, &content_seq);
	if (moved == 1) {
		e->flags = TLSGATE_REPLY_CONTENT;
		e->content_seq = content_seq;
		return tagger_copy_submit(e, 0); /* nothing for the daemon to hurry for */
	}
	if (moved)
		e->flags = TLSGATE_REPLY_AWAIT_MOVED;
	tagger_copy_ended(e, val);
	/* A 354, most likely to DATA: the daemon hands the content over when
	 * it reads this, which had better be before the content comes. Only a
	 * hint (the daemon judges what it reads). */
	return tagger_copy_submit(e, len >= 3 && bpf_skb_load_bytes(skb, off, head, 3) == 0 &&
					     head[0] == '3' && head[1] == '5' && head[2] == '4');
}

/* Turns a CONTENT entry back to INSPECT, keeping where the content got to. */
static __always_inline void tagger_content_return(struct tlsgate_flow_value *val)
{
	__u64 *state = (__u64 *)val, s0;
	int i;

	for (i = 0; i < 8; i++) {
		s0 = READ_ONCE(*state);
		if (STATE_VERDICT(s0) != TLSGATE_CONTENT ||
		    __sync_val_compare_and_swap(state, s0, (s0 & ~0xffull) | TLSGATE_INSPECT) == s0)
			return;
	}
	val->verdict = TLSGATE_INSPECT; /* eight races lost in a row: cannot happen */
}

/* 1 when the payload (len bytes at off) ends with a line "DATA" CRLF,
 * either case: alone, or after an LF. */
static __always_inline int tagger_ends_with_data(struct __sk_buff *skb, __u32 off, long len)
{
	__u8 b[7];

	if (len == 6) {
		b[0] = '\n';
		if (bpf_skb_load_bytes(skb, off, &b[1], 6) < 0)
			return 0;
	} else if (len < 6 || bpf_skb_load_bytes(skb, off + (__u32)len - 7, b, 7) < 0) {
		return 0;
	}
	return b[0] == '\n' && (b[1] | 0x20) == 'd' && (b[2] | 0x20) == 'a' && (b[3] | 0x20) == 't' &&
	       (b[4] | 0x20) == 'a' && b[5] == '\r' && b[6] == '\n';
}


/* A client segment of a flow whose commands are copied: copied and passed
 * when it continues no line (the client segment before it in sequence
 * ended with LF) and no line in it may be one the daemon must withhold
 * (and the copy can be made); else marked. Either way it becomes the
 * segment the next one is checked against.
 *
 * Why this is safe against reordering and retransmission (issue 17,
 * finding 13): a copy starts exactly where the last client segment the
 * program saw ended (client_state, exchanged by every client segment with
 * data, marked ones included), after an LF. So a copy never overlaps
 * bytes the segment before it covered, and any segment that starts
 * elsewhere - a retransmission, other bytes for copied sequence numbers,
 * the filler of a hole left by a segment that ends after it - is marked,
 * and queued behind every copy made before it (the ring is read first,
 * daemon_client_gap()). A copy beyond a hole is not read by the server
 * before that hole is filled, and the filler is queued: the daemon judges
 * it having read the copies, and withholds it (and so everything after
 * it) if it completes a MAIL, RCPT or STARTTLS line. Copies of the same
 * bytes that differ are compared in the daemon's reassembly (first copy
 * wins, a conflict is flagged, as for queued segments). An LF that ends
 * the segment before may be replaced, for the server, only by another
 * copy of that byte: marked, compared. URG is marked (the daemon flags
 * it): it may take a byte out of the server's stream.
 * Left to the daemon: a copy the server drops (bad checksum, outside its
 * window) is believed by the daemon, and its replacement is compared only
 * within the reassembly's history (REASM_HISTORY bytes back). */
static __always_inline int tagger_copy_command(struct __sk_buff *skb,
					       struct tlsgate_flow_value *val,
					       struct tlsgate_flow_key *key,
					       const struct tagger_seg *seg)
{
	struct tlsgate_reply_event *e;
	struct content_scan cs;
	__u32 seq, l3_off, l3_len, off, zero = 0;
	__u64 st, next;
	long len;
	__u8 last;
	int data, rcpt;

	seq = seg->seq;
	l3_off = seg->l3_off;
	l3_len = seg->l3_len;
	off = seg->off;
	len = seg->len;

	if (len <= 0 || len > TLSGATE_CONTENT_SCAN_MAX ||
	    bpf_skb_load_bytes(skb, off + (__u32)len - 1, &last, 1) < 0) {
		/* not scanned: it may hold a BDAT line */
		WRITE_ONCE(val->copy, READ_ONCE(val->copy) & ~(__u32)TLSGATE_COPY_COMMANDS);
		return 0;
	}
	cs.skb = skb;
	cs.buf = bpf_map_lookup_elem(&content_scratch, &zero);
	cs.off = off;
	cs.len = (__u32)len;
	cs.line_end = 1; /* the payload's start counts as a line's */
	cs.stop = 0;
	cs.bdat = 0;
	bpf_loop((cs.len + CONTENT_BLOCK - 1) / CONTENT_BLOCK, content_scan_commands, &cs, 0);
	/* A RCPT TO that the daemon would let pass, whatever its place. Only
	 * a segment that is that one line alone, under the same rule of
	 * place as any copy (above): the whole line is in it, from a line
	 * start to its LF, so no byte of another segment changes what the
	 * server reads as this command. */
	rcpt = cs.stop && !cs.bdat && last == '\n' && tagger_rcpt_unruled(skb, off, (__u32)len);
	if (rcpt)
		cs.stop = 0;
	/* After a BDAT chunk a command starts after any byte, where the line
	 * rule cannot see it: no more command copies for the flow. Cleared
	 * before the state exchange below, so a later segment that matches
	 * the new state reads it cleared (see the check after its exchange). */
	if (cs.bdat)
		WRITE_ONCE(val->copy, READ_ONCE(val->copy) & ~(__u32)TLSGATE_COPY_COMMANDS);
	next = TLSGATE_CLIENT_STATE(seq + (__u32)len, last == '\n');
	if (cs.stop || l3_len > TLSGATE_REPLY_COPY_MAX) {
		__sync_lock_test_and_set(&val->client_state, next);
		return 0;
	}
	/* The copy is reserved before the state moves on (an exchange, fully
	 * ordered): whoever sees the new state - a later segment, marked and
	 * queued - finds this copy's place in the ring taken already, so the
	 * daemon knows to wait for it (see daemon_client_gap()). The pointer
	 * is tested once (the 6.1 verifier loses a reference tested twice). */
	e = bpf_ringbuf_reserve(&reply_events, sizeof(*e), 0);
	if (!e) {
		tagger_count(skb, TLSGATE_CNT_REPLY_QUEUED);
		__sync_lock_test_and_set(&val->client_state, next);
		return 0;
	}
	st = __sync_lock_test_and_set(&val->client_state, next);
	if ((__u32)st != seq || !(st >> 32) || !(READ_ONCE(val->copy) & TLSGATE_COPY_COMMANDS)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	if (!tagger_copy_load(skb, e, l3_off, l3_len))
		return 0;
	/* It follows an LF (checked above): a "DATA" at its end starts a line.
	 * It wakes the daemon to write the awaits entry, unless the entry
	 * moved on here already. */
	data = last == '\n' && tagger_ends_with_data(skb, off, len);
	if (data && len == 6 && tagger_await_command(val, key, seq, 6, TLSGATE_AWAIT_354)) {
		data = 0;
		e->flags = TLSGATE_REPLY_AWAIT_MOVED;
	}
	if (rcpt) {
		tagger_count(skb, TLSGATE_CNT_RCPT_COPIED);
		if (tagger_await_command(val, key, seq, (__u32)len, TLSGATE_AWAIT_REPLY))
			e->flags = TLSGATE_REPLY_AWAIT_MOVED;
	}
	tagger_copy_ended(e, val);
	/* No QUIT turns the entry PASS here any more (see
	 * TLSGATE_REPLY_PASSED): the server may not have the QUIT, nor the
	 * end of data before it, and what it reads instead at those sequence
	 * numbers would pass unseen. */
	return tagger_copy_submit(e, data);
}

SEC("tc")
int tlsgate_tagger(struct __sk_buff *skb)
{
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value *val;
	struct parse_ipv6_frag_hdr *fh;
	struct hdr_cursor nh;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	struct tcphdr *tcph;
	__u8 saddr[16], daddr[16];
	__u8 ipver = 0;
	void *data, *data_end;
	__u32 want, dir, l3_len, l3_end, l4_end;
	void *l3;
	long payload;
	__u16 sport, dport;
	__u8 tcp_flags;
	struct tagger_seg seg;
	int reopen, in_order, ret;
	__u8 verdict;
	int proto;

	/* Rarely taken; the only helper that moves packet data, so data and
	 * data_end are read after it. The payload is read with
	 * bpf_skb_load_bytes(), wherever it lies. */
	want = skb->len < TAGGER_PULL_LEN ? skb->len : TAGGER_PULL_LEN;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + want > data_end && !tagger_tcp_headers_linear(data, data_end))
		bpf_skb_pull_data(skb, want);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;

	nh.pos = data;
	if (data + sizeof(struct ethhdr) > data_end)
		return TC_ACT_OK; /* cannot be IP at all */
	proto = parse_ethhdr_vlan(&nh, data_end, &eth);
	if (proto == PARSE_FAIL)
		return tagger_drop(skb, TLSGATE_CNT_UNPARSED); /* a tag cut */
	if (parse_is_vlan(proto)) {
		/* A third tag: dropped when it carries IP or another tag. */
		struct parse_vlan_hdr *vlh = nh.pos;

		if ((void *)(vlh + 1) > data_end || vlh->encap_proto == bpf_htons(ETH_P_IP) ||
		    vlh->encap_proto == bpf_htons(ETH_P_IPV6) || parse_is_vlan(vlh->encap_proto))
			return tagger_drop(skb, TLSGATE_CNT_UNPARSED);
		return TC_ACT_OK;
	}

	__builtin_memset(saddr, 0, sizeof(saddr));
	__builtin_memset(daddr, 0, sizeof(daddr));
	if (proto == bpf_htons(ETH_P_IP)) {
		proto = parse_iphdr(&nh, data_end, &iph);
		if (proto == PARSE_FAIL)
			return tagger_drop(skb, TLSGATE_CNT_UNPARSED);
		l3 = iph;
		l3_len = bpf_ntohs(iph->tot_len);
		l3_end = tagger_off(l3, data) + l3_len;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return TC_ACT_OK;
		if (iph->frag_off & bpf_htons(PARSE_IP_MF | PARSE_IP_OFFSET))
			return proto == IPPROTO_TCP ? tagger_drop(skb, TLSGATE_CNT_FRAGMENT)
						    : TC_ACT_OK;
		saddr[10] = 0xff;
		saddr[11] = 0xff;
		daddr[10] = 0xff;
		daddr[11] = 0xff;
		__builtin_memcpy(&saddr[12], &iph->saddr, 4);
		__builtin_memcpy(&daddr[12], &iph->daddr, 4);
		ipver = 4;
		if (proto == IPPROTO_UDP)
			return tagger_dns(skb, &nh, data, data_end, l3_end, saddr, daddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		proto = parse_ip6hdr(&nh, data_end, &ip6h);
		if (proto == PARSE_FAIL)
			return tagger_drop(skb, TLSGATE_CNT_UNPARSED);
		l3 = ip6h;
		l3_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		l3_end = tagger_off(l3, data) + l3_len;
		proto = parse_ip6_ext(&nh, data_end, proto);
		if (proto == PARSE_FAIL)
			return tagger_drop(skb, TLSGATE_CNT_UNPARSED); /* too long, or cut */
		if (proto == IPPROTO_FRAGMENT) {
			proto = parse_ip6_frag(&nh, data_end, &fh);
			if (proto == PARSE_FAIL)
				return tagger_drop(skb, TLSGATE_CNT_UNPARSED);
			if (!tagger_frag_may_be_tcp(proto))
				return TC_ACT_OK;
			return tagger_drop(skb, TLSGATE_CNT_FRAGMENT);
		}
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return TC_ACT_OK;
		__builtin_memcpy(saddr, &ip6h->saddr, 16);
		__builtin_memcpy(daddr, &ip6h->daddr, 16);
		ipver = 6;
		if (proto == IPPROTO_UDP)
			return tagger_dns(skb, &nh, data, data_end, l3_end, saddr, daddr, 6);
	} else {
		return TC_ACT_OK;
	}

	if (parse_tcphdr(&nh, data_end, &tcph) == PARSE_FAIL)
		return tagger_drop(skb, TLSGATE_CNT_UNPARSED);

	sport = bpf_ntohs(tcph->source);
	dport = bpf_ntohs(tcph->dest);

	if (bpf_map_lookup_elem(&smtp_ports, &dport))
		dir = TLSGATE_DIR_TO_SERVER;
	else if (bpf_map_lookup_elem(&smtp_ports, &sport))
		dir = TLSGATE_DIR_TO_CLIENT;
	else if (sport == 53 || dport == 53) {
		/* DNS over TCP, answers and queries (only when no SMTP port is
		 * involved: port 53 must not exempt an SMTP flow from
		 * inspection). */
		tagger_copy_tcp_dns(skb, tagger_off(nh.pos, data), l3_end, saddr, daddr, sport,
				    dport, ipver);
		return TC_ACT_OK;
	} else
		return TC_ACT_OK;

	__builtin_memset(&key, 0, sizeof(key));
	key.proto = IPPROTO_TCP;
	if (tagger_cmp(saddr, tcph->source, daddr, tcph->dest) <= 0) {
		__builtin_memcpy(key.addr_lo, saddr, 16);
		__builtin_memcpy(key.addr_hi, daddr, 16);
		key.port_lo = tcph->source;
		key.port_hi = tcph->dest;
	} else {
		__builtin_memcpy(key.addr_lo, daddr, 16);
		__builtin_memcpy(key.addr_hi, saddr, 16);
		key.port_lo = tcph->dest;
		key.port_hi = tcph->source;
	}

	tcp_flags = ((__u8 *)tcph)[13];
	val = bpf_map_lookup_elem(&flows, &key);
	/* Read once: what is checked below is what decides. */
	verdict = val ? READ_ONCE(val->verdict) : TLSGATE_INSPECT;
	/* A client's SYN opens a new connection, whatever the entry says of
	 * an old one on the same addresses and ports (it closed unseen:
	 * offloaded, blocked, or forgotten by the daemon): the daemon judges
	 * the new one from the start. */
	reopen = val && dir == TLSGATE_DIR_TO_SERVER && (tcp_flags & PARSE_TCP_SYN) &&
		 !(tcp_flags & PARSE_TCP_ACK);
	/* Fail-closed first: nothing of a flow that is not offloaded or
	 * blocked - content, copies, ACKs included - passes from (or to) a
	 * secure-mode source while the daemon is gone. */
	if ((!val || reopen || (verdict != TLSGATE_PASS && verdict != TLSGATE_BLOCK)) &&
	    tagger_fail_closed(dir == TLSGATE_DIR_TO_SERVER ? saddr : daddr)) {
		tagger_count(skb, TLSGATE_CNT_FAILCLOSED);
		return TC_ACT_SHOT;
	}
	/* fail_mode.normal "closed": the same for every such flow while the
	 * daemon is gone (see secure_domains). */
	if ((!val || reopen || (verdict != TLSGATE_PASS && verdict != TLSGATE_BLOCK)) &&
	    (tagger_domains_stale() & TLSGATE_SD_NORMAL_CLOSED)) {
		tagger_count(skb, TLSGATE_CNT_FAILCLOSED);
		return TC_ACT_SHOT;
	}
	if (val && verdict == TLSGATE_CONTENT) {
		l4_end = tagger_off(nh.pos, data);
		seg.seq = bpf_ntohl(tcph->seq);
		seg.off = l4_end;
		seg.len = (long)l3_end - (long)l4_end;
		seg.dir = dir;
		seg.tcp_flags = tcp_flags;
		ret = tagger_content(skb, val, &seg);
		if (ret == 1) {
			__sync_fetch_and_add(&val->packets, 1);
			__sync_fetch_and_add(&val->bytes, skb->len);
			tagger_count(skb, TLSGATE_CNT_CONTENT_PASSED);
			return TC_ACT_OK;
		}
		if (ret == 2)
			return tagger_drop(skb, TLSGATE_CNT_STALE_DROPPED);
		/* Back to userspace from this segment on. */
		tagger_content_return(val);
		tagger_count(skb, TLSGATE_CNT_CONTENT_RETURNED);
		verdict = TLSGATE_INSPECT;
	}
	if (!val || reopen || verdict == TLSGATE_INSPECT || verdict > TLSGATE_CONTENT) {
		/* nh.pos is the end of the TCP header; the payload ends
		 * where the IP length says (Ethernet padding excluded). */
		l4_end = tagger_off(nh.pos, data);
		payload = (long)l3_end - (long)l4_end;
		/* A pure ACK passes here only after the fail-closed check,
		 * like the copies below. Safe whatever its sequence numbers:
		 * it carries no byte of either stream; an ACK number only
		 * acknowledges, and what the daemon needs of the server's
		 * acknowledgements arrives on its data. Not with URG: an
		 * urgent pointer may point into data to come and take a byte
		 * out of the receiver's stream (the session flags it). */
		/* While the daemon is gone, a client segment that may carry a
		 * secure domain's MAIL FROM or RCPT TO: dropped, and the flow
		 * with it (content the program passes as such is not read:
		 * CONTENT above). Before any copy or mark: the queue's bypass
		 * would pass it. */
		if (dir == TLSGATE_DIR_TO_SERVER && payload > 0 &&
		    (tagger_domains_stale() & TLSGATE_SD_DOMAINS) &&
		    tagger_secure_domains(skb, l4_end, (__u32)payload)) {
			tagger_block_flow(val, &key);
			tagger_count(skb, TLSGATE_CNT_FAILCLOSED);
			return TC_ACT_SHOT;
		}
		if (payload == 0 && !(((__u8 *)tcph)[13] & (PARSE_TCP_SYN | PARSE_TCP_FIN |
							     PARSE_TCP_RST | PARSE_TCP_URG))) {
			tagger_count(skb, TLSGATE_CNT_ACK_SKIPPED);
			return TC_ACT_OK;
		}
		/* A client segment over bytes passed here unseen (the entry
		 * went back to INSPECT after content, the end of data
		 * included, and the daemon has not written it since): as in
		 * CONTENT, dropped unless safe whichever copy the server reads
		 * (tagger_stale_ok()); the daemon, which did not see those
		 * bytes, could not compare. */
		if (val && !reopen && dir == TLSGATE_DIR_TO_SERVER && payload > 0) {
			__u64 st = READ_ONCE(*(__u64 *)val);

			if (STATE_VERDICT(st) == TLSGATE_INSPECT &&
			    (STATE_LF(st) & TLSGATE_CONTENT_UNSEEN) &&
			    (__s32)(bpf_ntohl(tcph->seq) - STATE_SEQ(st)) < 0) {
				seg.seq = bpf_ntohl(tcph->seq);
				seg.off = l4_end;
				seg.len = payload;
				seg.dir = dir;
				seg.tcp_flags = tcp_flags;
				if (!tagger_stale_ok(skb, &seg, st))
					return tagger_drop(skb, TLSGATE_CNT_STALE_DROPPED);
			}
		}
		/* Where the server's stream got to (see struct tlsgate_await):
		 * this segment is the first server data since one that ended
		 * where it starts. */
		in_order = 0;
		if (val && dir == TLSGATE_DIR_TO_CLIENT && payload > 0 &&
		    (READ_ONCE(val->copy) & TLSGATE_COPY_REPLIES))
			in_order = __sync_lock_test_and_set(
					   &val->server_state,
					   TLSGATE_SERVER_STATE(bpf_ntohl(tcph->seq) + (__u32)payload)) ==
				   TLSGATE_SERVER_STATE(bpf_ntohl(tcph->seq));
		/* The server's side of the plaintext dialog (and its SYN-ACK):
		 * nothing in it is ever withheld, so the daemon reads a copy
		 * while the segment goes on; so are the client's segments that
		 * hold no line the daemon may have to withhold, and a FIN or
		 * RST without data either way. FIN or RST with data is queued. */
		if (val && READ_ONCE(val->verdict) == TLSGATE_INSPECT && val->copy &&
		    !(tcp_flags & PARSE_TCP_URG) &&
		    (payload == 0 || !(tcp_flags & (PARSE_TCP_FIN | PARSE_TCP_RST)))) {
			seg.seq = bpf_ntohl(tcph->seq);
			seg.l3_off = tagger_off(l3, data);
			seg.l3_len = l3_len;
			seg.off = l4_end;
			seg.len = payload;
			if ((dir == TLSGATE_DIR_TO_CLIENT ||
			     (payload == 0 && !(tcp_flags & PARSE_TCP_SYN))) &&
			    (val->copy & TLSGATE_COPY_REPLIES) &&
			    tagger_copy_reply(skb, val, &key, tcph, tagger_off(l3, data), l3_len,
					      l4_end, dir == TLSGATE_DIR_TO_CLIENT ? payload : 0,
					      in_order)) {
				__sync_fetch_and_add(&val->packets, 1);
				__sync_fetch_and_add(&val->bytes, skb->len);
				tagger_count(skb, dir == TLSGATE_DIR_TO_CLIENT
							  ? TLSGATE_CNT_REPLY_COPIED
							  : TLSGATE_CNT_COMMAND_COPIED);
				return TC_ACT_OK;
			}
			if (dir == TLSGATE_DIR_TO_SERVER && (val->copy & TLSGATE_COPY_COMMANDS) &&
			    !(((__u8 *)tcph)[13] & PARSE_TCP_SYN) &&
			    tagger_copy_command(skb, val, &key, &seg)) {
				__sync_fetch_and_add(&val->packets, 1);
				__sync_fetch_and_add(&val->bytes, skb->len);
				tagger_count(skb, TLSGATE_CNT_COMMAND_COPIED);
				return TC_ACT_OK;
			}
		}
		return tagger_mark(skb, TLSGATE_CNT_INSPECT_TO_SERVER + dir);
	}

	__sync_fetch_and_add(&val->packets, 1);
	__sync_fetch_and_add(&val->bytes, skb->len);
	if (verdict == TLSGATE_BLOCK) {
		tagger_count(skb, TLSGATE_CNT_BLOCK_TO_SERVER + dir);
		return TC_ACT_SHOT;
	}
	tagger_count(skb, TLSGATE_CNT_PASS_TO_SERVER + dir);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
