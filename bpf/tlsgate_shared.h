/* tlsgate_shared.h - the structs and constants that the BPF programs and
 * userspace share. Only __u / __be types, explicit padding, sizes pinned by
 * _Static_assert: both sides must agree byte for byte, and both rebuild when
 * this file changes. Nothing here that only one side uses. */
#ifndef TLSGATE_SHARED_H
#define TLSGATE_SHARED_H

#include <linux/types.h>

/* skb->mark bits that send a packet to NFQUEUE (one iptables rule matches
 * mark/mask). Userspace may override the value through rodata. */
#define TLSGATE_MARK_INSPECT 0x7e500000u
#define TLSGATE_MARK_MASK 0xfff00000u

/* Map bounds. At the bound the LRU flow map evicts the least recently used
 * entry: an evicted PASS/BLOCK flow falls back to inspection (never to a
 * silent pass). */
#define TLSGATE_MAX_FLOWS 65536
#define TLSGATE_MAX_PORTS 16

/* Secure-mode source prefixes (LPM trie) and the daemon's heartbeat: when
 * the daemon has not written the heartbeat for failclosed_after_ms, flows
 * from (or to) a secure-mode source that are not already offloaded are
 * dropped in the program (fail-closed); everything else fails open. */
#define TLSGATE_MAX_SECURE_PREFIXES 4096

struct tlsgate_lpm_key {
	__u32 prefixlen; /* IPv4: 96 + IPv4 prefix length (IPv4-mapped) */
	__u8 addr[16];
};
_Static_assert(sizeof(struct tlsgate_lpm_key) == 20, "lpm key layout");

struct tlsgate_daemon_state {
	__u64 heartbeat_ns;     /* CLOCK_MONOTONIC of the daemon's last tick */
	__u32 failclosed_after_ms;
	__u32 pad;
};
_Static_assert(sizeof(struct tlsgate_daemon_state) == 16, "daemon state layout");

/* DNS messages seen on the wire, UDP or a TCP segment: answers (from port
 * 53) and queries (to port 53), with where they were seen, are copied into
 * the dns_events ring buffer. The daemon learns which MX name and recipient
 * domain an address belongs to only from an answer that matches a query
 * seen leaving the inside (userspace/dnslearn.h). Messages longer than
 * TLSGATE_DNS_COPY_MAX are truncated (len says how much was copied, orig_len
 * the payload length); a full ring buffer drops the copy (counted). */
#define TLSGATE_DNS_COPY_MAX 2048 /* a power of two (see the copy) */
#define TLSGATE_DNS_RING_BYTES (512 * 1024)

struct tlsgate_dns_event {
	__u32 len;      /* bytes in data */
	__u32 orig_len; /* the UDP/TCP payload length on the wire */
	__u8 proto;     /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 ipver;     /* 4 or 6 */
	__u8 pad[2];
	__u32 ifindex;  /* skb->ingress_ifindex: where it arrived */
	__u8 saddr[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u8 daddr[16];
	__u16 sport;    /* host byte order */
	__u16 dport;
	__u32 pad2;
	__u8 data[TLSGATE_DNS_COPY_MAX];
};
_Static_assert(sizeof(struct tlsgate_dns_event) == 56 + TLSGATE_DNS_COPY_MAX, "dns event layout");

/* smtp_ports map: key __u16 port in host byte order, value __u8 (1). */

/* Names under the pin directory (default /sys/fs/bpf/tlsgate). */
/* Segments of a flow with copy flags: the IP packet (at most
 * TLSGATE_REPLY_COPY_MAX bytes; a larger one is marked) goes to the daemon
 * through a ring buffer and the segment itself passes at once. The daemon
 * reads the ring before each queued packet, so a reply is always seen
 * before the client segment that answers it.
 *   REPLIES:  the server's segments other than FIN/RST with data, and
 *             the client's FIN or RST without data (nothing to withhold).
 *   COMMANDS: the client's segments other than SYN/FIN/RST that follow,
 *             in sequence, a client segment that ended with LF (so no
 *             command line continues into them; see client_state) and in
 *             which no line - the payload's start, or after a CR or LF -
 *             begins with M, R, S or B (either case: MAIL, RCPT, STARTTLS,
 *             and BDAT, after whose chunk the daemon stops these copies),
 *             or with white space (" MAIL" is a MAIL to Postfix). Others
 *             may have to be withheld, and are marked; but for a RCPT TO
 *             line alone that rcpt_domains clears (see there).
 *   END_OF_DATA: (CONTENT entries) a client segment that ends with the end
 *             of data - CRLF "." CRLF, exactly: within the segment, or "."
 *             CRLF alone after content that ended with CRLF
 *             (TLSGATE_CONTENT_LF) - and holds no other '.' alone between
 *             line ends passes too; the entry turns back to INSPECT with
 *             TLSGATE_CONTENT_ENDED and client_state after it. Nothing
 *             servers disagree on (LF "." CRLF, CR "." CRLF, CRLF "." LF:
 *             SMTP smuggling) ends here: such a '.' is between line ends,
 *             so its segment comes back.
 * A copied client segment that ends with a line "DATA" wakes the daemon,
 * so that it can write the flow's awaits entry before the server answers
 * (see struct tlsgate_await), unless that entry moved on at it; a copied
 * server segment that starts with "354" too, unless the content was handed
 * over there: the daemon hands it over sooner (the copies wake nobody
 * else). */
#define TLSGATE_COPY_REPLIES 0x01
#define TLSGATE_COPY_COMMANDS 0x02
#define TLSGATE_COPY_END_OF_DATA 0x04
#define TLSGATE_REPLY_COPY_MAX 2048 /* a power of two (see the copy) */
#define TLSGATE_REPLY_RING_BYTES (1024 * 1024)

struct tlsgate_reply_event {
	__u32 len; /* bytes of pkt: the IP packet */
	__u32 ifindex;
	__u32 flags;       /* TLSGATE_REPLY_* */
	__u32 content_seq; /* REPLY_CONTENT: where the content starts;
			      REPLY_ENDED: where the content ended */
	__u64 passed_ns;   /* REPLY_PASSED: bpf_ktime_get_ns() when the entry
			      turned PASS (CLOCK_MONOTONIC) */
	__u8 pkt[TLSGATE_REPLY_COPY_MAX];
};
_Static_assert(sizeof(struct tlsgate_reply_event) == 24 + TLSGATE_REPLY_COPY_MAX, "reply event layout");
/* The program turned the entry CONTENT at this segment (awaits map). */
#define TLSGATE_REPLY_CONTENT 0x01
/* The program moved the flow's awaits entry on at this segment (to where
 * the daemon's session will be after it): nothing for the daemon to write. */
#define TLSGATE_REPLY_AWAIT_MOVED 0x02
/* The entry was INSPECT with TLSGATE_CONTENT_ENDED when this segment was
 * copied: the content the kernel carried ended at content_seq (the
 * daemon learns it from the copy, not from a lookup). */
#define TLSGATE_REPLY_ENDED 0x04
/* No longer set: the program used to turn the entry PASS at a client
 * segment "QUIT" CRLF alone right after an end of data it passed. Removed
 * (issue 17, finding 13): a QUIT (or that end of data) the server drops -
 * a bad checksum, outside its window, a TTL that ends at the gateway -
 * leaves its sequence numbers free for other bytes (MAIL FROM, RCPT TO,
 * DATA, content) that would then pass unseen. The daemon offloads at
 * QUIT itself. Kept for the daemon's code that reads it. */
#define TLSGATE_REPLY_PASSED 0x08

/* awaits map (key: the flow key): the daemon's word on where the reply to
 * DATA will start, so that the program hands the message content over at
 * that 354 itself, as the daemon would when it reads it. Written for an
 * INSPECT flow with REPLIES and COMMANDS copies, by the daemon when its
 * session has read both streams to their ends, in one of two stages:
 *   AWAIT_354: the session owes the server replies to skip commands (MAIL,
 *     RCPT, RSET, NOOP, HELO: one line each), then to DATA, the last the
 *     client sent. Copied server segments that start at server_seq, right
 *     after the server segment before it (server_state), and are whole
 *     final reply lines ("ddd " or "ddd" CRLF at each line start, the last
 *     byte LF, TLSGATE_REPLY_LINE_MAX bytes at most: lines the daemon's
 *     session reads as one reply each), count down skip. The segment
 *     whose lines reach past it, by one, with that line "354", while
 *     the segment acknowledges client_seq and client_state is client_seq
 *     after an LF (the client sent nothing since DATA), turns the entry
 *     CONTENT at client_seq; the awaits entry goes. The copy says so
 *     (TLSGATE_REPLY_CONTENT).
 *   AWAIT_REPLY: the session owes one reply, to MAIL or RCPT (the daemon
 *     reads the copies late, so waiting for DATA would often be too late).
 *     The program moves it on itself:
 *       - to AWAIT_DATA at a server segment as above that is one line;
 *       then, at a copied client segment at client_seq after an LF, while
 *       the server has sent nothing after server_seq:
 *       - "DATA" CRLF alone: to AWAIT_354 (skip 0), client_seq after it;
 *       - a RCPT TO line copied for its domain (see rcpt_domains): back to
 *         AWAIT_REPLY, client_seq after it.
 * Any other server data at or past server_seq removes the entry. state
 * holds stage, skip and server_seq, changed together by compare-and-swap;
 * client_seq is written before the change that makes it count. A separate
 * map, so that writing it does not reset the flow entry's server_state. */
struct tlsgate_await {
	__u64 state;      /* TLSGATE_AWAIT_STATE(stage, skip, server_seq) */
	__u32 client_seq; /* the client's byte after its last command */
	__u32 pad;
};
_Static_assert(sizeof(struct tlsgate_await) == 16, "await layout");
#define TLSGATE_AWAIT_STATE(stage, skip, server_seq) \
	((__u64)(__u8)(stage) | ((__u64)(__u8)(skip) << 8) | ((__u64)(__u32)(server_seq) << 32))
#define TLSGATE_AWAIT_STAGE(st) ((__u8)(st))
#define TLSGATE_AWAIT_SKIP(st) ((__u8)((st) >> 8))
#define TLSGATE_AWAIT_SERVER(st) ((__u32)((st) >> 32))
#define TLSGATE_AWAIT_REPLY 1
#define TLSGATE_AWAIT_DATA 2
#define TLSGATE_AWAIT_354 3
#define TLSGATE_AWAIT_SKIP_MAX 8
#define TLSGATE_MAX_AWAITS 16384 /* LRU: an evicted entry only means no switch */
#define TLSGATE_REPLY_LINE_MAX 512

/* rcpt_domains map (key: TLSGATE_DOMAIN_HASH of a domain, value __u8 1):
 * every domain for which the daemon may refuse a RCPT TO - the policy's
 * require_tls and require_dane overrides and its secure-mode recipient
 * domains - each standing here for its subdomains too. A client segment
 * of a flow with COMMANDS copies that is one line "RCPT TO:<local@domain>"
 * in its plainest form (see tagger_rcpt_unruled()), whose domain and each
 * parent of it are absent, is copied instead of marked: the daemon would
 * let it pass. Only while key TLSGATE_RCPT_READY is present (written by
 * the daemon after the rest, removed while it rewrites them); without it
 * every RCPT is marked. A hash collision only marks one more. */
#define TLSGATE_MAX_RCPT_DOMAINS 20480 /* two policy lists of 10,000 */
#define TLSGATE_RCPT_READY 0ull
/* FNV-1a (64 bits) over the lowercase domain's bytes from the last to the
 * first, so that the program has each parent's hash on its way. */
#define TLSGATE_FNV_BASIS 0xcbf29ce484222325ull
#define TLSGATE_FNV_PRIME 0x100000001b3ull
#define TLSGATE_DOMAIN_HASH_STEP(h, c) (((h) ^ (__u8)(c)) * TLSGATE_FNV_PRIME)

/* secure_domains map (key: TLSGATE_DOMAIN_HASH of a domain, as
 * rcpt_domains; value struct tlsgate_sd_ready, for a domain flags
 * TLSGATE_SD_SENDER... and failclosed_ms 0): the policy's secure-mode
 * sender domains and secure-mode recipient domains, for the daemon's
 * absence. Key TLSGATE_SD_READY (0) holds flags TLSGATE_SD_DOMAINS... and
 * the heartbeat age at which the program stops trusting the daemon, and the
 * policy's fail_mode.normal, written last. The daemon adds a new set
 * before it removes what is stale, so that while it rewrites the map
 * the set is the old and the new one together (never less closed). While the heartbeat
 * (daemon_state) is older than failclosed_ms, every client segment with
 * data of a flow that is not PASS or BLOCK (no entry, INSPECT, CONTENT
 * that came back) is scanned in the program (see tagger_secure_domains()):
 * a MAIL FROM naming a secure sender domain, a RCPT TO naming a secure
 * recipient domain, or such a command line the segment does not end, is
 * dropped and the flow turned BLOCK. With TLSGATE_SD_NORMAL_CLOSED
 * (fail_mode.normal "closed") every packet of such a flow is dropped. */
/* two policy lists of 10,000, twice (old and new set while the daemon
 * rewrites it), and READY */
#define TLSGATE_MAX_SECURE_DOMAINS (4 * 10000 + 1)
#define TLSGATE_SD_READY 0ull
#define TLSGATE_SD_SENDER 0x01        /* the sender domain itself */
#define TLSGATE_SD_SENDER_SUB 0x02    /* ... and its subdomains */
#define TLSGATE_SD_RECIPIENT 0x04     /* the recipient domain itself */
#define TLSGATE_SD_RECIPIENT_SUB 0x08 /* ... and its subdomains */
struct tlsgate_sd_ready {
	__u32 flags;         /* TLSGATE_SD_NORMAL_CLOSED, TLSGATE_SD_DOMAINS */
	__u32 failclosed_ms; /* 0: never stale */
};
_Static_assert(sizeof(struct tlsgate_sd_ready) == 8, "sd ready layout");
#define TLSGATE_SD_DOMAINS 0x01       /* some secure domain is in the map */
#define TLSGATE_SD_NORMAL_CLOSED 0x02 /* fail_mode.normal "closed" */

#define TLSGATE_PIN_DIR_DEFAULT "/sys/fs/bpf/tlsgate"

enum tlsgate_verdict {
	TLSGATE_INSPECT = 0, /* mark: userspace decides */
	TLSGATE_PASS = 1,    /* verdict final: stays in the kernel */
	TLSGATE_BLOCK = 2,   /* verdict final: dropped in the program */
	TLSGATE_CONTENT = 3, /* inside message content (DATA after 354; a BDAT
				chunk: see content_chunk): a client
				segment passes in the kernel when it starts at
				content_seq, holds no '.' between a CR or LF
				and a CR or LF (so no end of data, whatever line
				ending the server honours; a '.' ending the
				segment counts as followed by one), does not
				end with a CR or a bare LF (content_lf can say
				"CRLF" or "no line end" only) and has no URG.
				A retransmission of bytes the program passed
				(TLSGATE_CONTENT_UNSEEN) passes if it is safe
				whichever copy the server reads, else it is
				dropped (see tagger_stale_ok()). Anything else
				- another sequence number, such a '.', server
				data, SYN/FIN/RST/URG - turns the entry back to
				INSPECT in the program and is marked. */
};

/* Largest payload a CONTENT segment may have to be scanned (GRO/GSO
 * aggregates included); a larger one is returned to userspace. */
#define TLSGATE_CONTENT_SCAN_MAX 65536

/* Normalised 5-tuple: both directions of a connection give the same key.
 * Addresses are IPv6 or IPv4-mapped IPv6 (::ffff:a.b.c.d), network order.
 * The (addr, port) pair that compares lower as bytes comes first. */
struct tlsgate_flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__be16 port_lo;
	__be16 port_hi;
	__u8 proto; /* IPPROTO_TCP */
	__u8 pad[3];
};
_Static_assert(sizeof(struct tlsgate_flow_key) == 40, "flow key layout");

/* Value of the flow map. Userspace creates entries (with zero counters);
 * the program bumps the counters of existing entries and, for CONTENT,
 * advances content_seq or turns the verdict back to INSPECT. */
struct tlsgate_flow_value {
	__u8 verdict; /* enum tlsgate_verdict */
	/* CONTENT only, written by userspace when it hands the content over
	 * and by the program as segments pass: */
	__u8 content_line_end; /* the byte before content_seq is CR or LF */
	__u8 content_lf;       /* TLSGATE_CONTENT_LF: the bytes before
				  content_seq are CR LF (or the content starts
				  there); clear: the byte before is no CR or LF,
				  unless userspace wrote the entry (then
				  content_line_end says);
				  TLSGATE_CONTENT_UNSEEN: the program passed
				  content bytes before content_seq that the
				  daemon did not see;
				  TLSGATE_CONTENT_ENDED: back to INSPECT after
				  passing the end of data (content_seq is after
				  its CRLF) */
	__u8 content_chunk;    /* a BDAT chunk: bytes before content_end pass
				  unscanned, a segment reaching past it returns */
	__u32 content_seq;     /* the client's next sequence number (host order) */
	__u64 packets; /* seen by the program since the entry was written */
	__u64 bytes;
	__u64 verdict_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at verdict */
	__u32 content_end; /* content_chunk: the chunk's end (host order) */
	__u32 copy; /* TLSGATE_COPY_*, INSPECT (and CONTENT): segments that
		       pass in the program with a copy to the daemon
		       (reply_events) instead of the queue; set by the daemon
		       for the plaintext dialog only; the program clears
		       COMMANDS at a BDAT line */
	/* COPY_COMMANDS: the client's next sequence number after the last
	 * client segment the program saw (low 32 bits), and bit 32 set when
	 * that segment ended with LF. Written by the daemon at the SYN and by
	 * the program for each client segment; one word, so it is read whole. */
	__u64 client_state;
	/* COPY_REPLIES: the server's next sequence number after the last
	 * server segment with data the program saw, with bit 32 set (the
	 * daemon writes 0: unknown). */
	__u64 server_state;
};
_Static_assert(sizeof(struct tlsgate_flow_value) == 56, "flow value layout");
#define TLSGATE_CLIENT_STATE(next, lf) ((__u64)(__u32)(next) | ((__u64)!!(lf) << 32))
#define TLSGATE_SERVER_STATE(next) ((__u64)(__u32)(next) | (1ull << 32))
/* CR LF, exactly: a bare LF or CR before content_seq is never recorded
 * (the program does not pass a segment that ends so), so userspace's
 * session_content_skip(after_lf) reads the line state exactly. */
#define TLSGATE_CONTENT_LF 0x01
#define TLSGATE_CONTENT_UNSEEN 0x02
#define TLSGATE_CONTENT_ENDED 0x04

/* Direction of a packet relative to the SMTP session. */
enum tlsgate_dir {
	TLSGATE_DIR_TO_SERVER = 0, /* destination port is an SMTP port */
	TLSGATE_DIR_TO_CLIENT = 1,
};

/* Index into the per-CPU counter array. */
enum tlsgate_counter {
	TLSGATE_CNT_INSPECT_TO_SERVER = 0, /* marked for NFQUEUE */
	TLSGATE_CNT_INSPECT_TO_CLIENT,
	TLSGATE_CNT_PASS_TO_SERVER, /* offloaded: kernel only */
	TLSGATE_CNT_PASS_TO_CLIENT,
	TLSGATE_CNT_BLOCK_TO_SERVER, /* dropped in the program */
	TLSGATE_CNT_BLOCK_TO_CLIENT,
	TLSGATE_CNT_UNPARSED,  /* not safely parseable, may be TCP: dropped */
	TLSGATE_CNT_FRAGMENT,  /* IPv4/IPv6 fragment that may be TCP: dropped */
	TLSGATE_CNT_ACK_SKIPPED, /* pure ACK of a flow under inspection: carries
				    nothing to inspect, stays in the kernel */
	TLSGATE_CNT_FAILCLOSED, /* while the daemon is gone: a secure-mode source, a
				   secure domain (secure_domains), or any flow
				   under fail_mode.normal "closed": dropped */
	TLSGATE_CNT_DNS_COPIED,  /* DNS answers copied to the daemon */
	TLSGATE_CNT_DNS_DROPPED, /* DNS answers not copied: ring buffer full */
	TLSGATE_CNT_CONTENT_PASSED,   /* CONTENT segments (and ACKs) passed in the kernel */
	TLSGATE_CNT_CONTENT_RETURNED, /* CONTENT entries turned back to INSPECT */
	TLSGATE_CNT_REPLY_COPIED,  /* server segments passed, a copy to the daemon */
	TLSGATE_CNT_REPLY_QUEUED,  /* ... not copied (ring full): marked instead */
	TLSGATE_CNT_COMMAND_COPIED, /* client segments passed, a copy to the daemon */
	TLSGATE_CNT_CONTENT_ENDED,  /* end-of-data segments passed (CONTENT_ENDED) */
	TLSGATE_CNT_CONTENT_SWITCHED, /* entries the program turned CONTENT at a 354 */
	TLSGATE_CNT_RCPT_COPIED, /* RCPT TO lines judged by domain here, copied */
	TLSGATE_CNT_QUIT_PASSED, /* always 0: the rule is gone (TLSGATE_REPLY_PASSED) */
	TLSGATE_CNT_STALE_DROPPED, /* client retransmissions of bytes passed unseen
				      that the server could read differently: dropped */
	TLSGATE_CNT_MAX,
};

struct tlsgate_counter_value {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct tlsgate_counter_value) == 16, "counter layout");

#endif
