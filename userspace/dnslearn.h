/* dnslearn.h - passive learning from the DNS answers the MTAs receive.
 *
 * The tagger copies DNS messages seen on the wire into a ring buffer:
 * answers (UDP, or single TCP segments, from port 53) and queries (to port
 * 53), each with where it was seen (addresses, ports, the interface it
 * arrived on: struct dnslearn_event_v2). An answer is learned from only
 * when it matches a query seen leaving the inside (issue 18.4): the same
 * client address and port, server address, transport, DNS id and question
 * (name, case-insensitive; type; class), within DNSLEARN_QUERY_TTL seconds;
 * the query is then forgotten, so one query admits one answer. Every other
 * answer (no query, wrong id, port, address or question, a second answer,
 * a query that arrived from the outside, an answer that arrived where its
 * query did) is counted and ignored. Events without addresses (the
 * tagger's older layout, answers only) cannot be matched: counted, ignored.
 *
 * A matched answer is still unauthenticated (an on-path attacker who sees
 * the query can answer first). So what it teaches is a *hint*: recipient
 * domain -> MX host names (MX answers) and MX host name -> addresses
 * (A/AAAA answers, following CNAMEs in the same message), stored as
 * address -> MX name and domain (store_addr_mx_set, secure = false, valid
 * for the record's TTL, at most DNSLEARN_TTL_MAX). It never lowers what a
 * destination requires: history and locks apply by name and by address,
 * the strictest wins (store_history_get_any), and a hint never replaces a
 * name that has history (store_addr_mx_name). Each newly seen domain is
 * handed to the probe callback once per DNSLEARN_PROBE_INTERVAL: the probe
 * resolves it again itself with DNSSEC validation, and its validated
 * results (secure mappings, TLSA) confirm or override the hint.
 *
 * Which queries come from the inside: when dnslearn_set_inside() named the
 * inside interfaces, a query must have arrived on one of them and its
 * answer on another interface; without it, the answer must have arrived on
 * another interface than its query (an outside attacker cannot make both a
 * "query" and its answer arrive on the inside).
 *
 * Bounds: DNSLEARN_HOSTS MX host names remembered (the oldest is replaced);
 * DNSLEARN_QUERIES outstanding queries (expired ones first, else the
 * oldest is replaced: counted); messages are at most TLSGATE_DNS_COPY_MAX
 * bytes (longer ones are truncated by the tagger and then usually refused
 * by the parser: counted). Nothing here fails the daemon: bad messages are
 * counted and dropped. */
#ifndef TLSGATE_DNSLEARN_H
#define TLSGATE_DNSLEARN_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define DNSLEARN_HOSTS 4096
#define DNSLEARN_TTL_MAX 86400
#define DNSLEARN_PROBE_INTERVAL 3600
#define DNSLEARN_QUERIES 1024
#define DNSLEARN_QUERY_TTL 8 /* seconds an answer may take */
#define DNSLEARN_INSIDE_MAX 8

struct dnslearn_stats {
	uint64_t messages;  /* events read */
	uint64_t malformed; /* refused by the parser */
	uint64_t truncated; /* longer than the copy */
	uint64_t mx_learned;
	uint64_t addr_learned;
	uint64_t probes_requested;
	uint64_t queries;	  /* queries remembered */
	uint64_t queries_evicted; /* replaced while outstanding (table full) */
	uint64_t queries_ignored; /* not from the inside, or malformed as a query */
	uint64_t answers_matched;
	uint64_t answers_unmatched; /* no outstanding query: ignored */
	uint64_t no_endpoints;	    /* events without addresses: ignored */
};

/* The tagger's event with the endpoints (proposed layout of struct
 * tlsgate_dns_event in bpf/tlsgate_shared.h; dnslearn also accepts the
 * older 16-byte header, without endpoints, and ignores what it carries). */
struct dnslearn_event_v2 {
	uint32_t len;	   /* bytes in data */
	uint32_t orig_len; /* the UDP/TCP payload length on the wire */
	uint8_t proto;	   /* IPPROTO_UDP or IPPROTO_TCP */
	uint8_t ipver;	   /* 4 or 6 */
	uint8_t pad[2];
	uint32_t ifindex;  /* skb->ingress_ifindex */
	uint8_t saddr[16]; /* IPv4 as ::ffff:a.b.c.d */
	uint8_t daddr[16];
	uint16_t sport, dport; /* host byte order */
	uint32_t pad2;
	uint8_t data[]; /* TLSGATE_DNS_COPY_MAX */
};

/* Where one DNS message was seen. */
struct dnslearn_wire {
	int family; /* AF_INET or AF_INET6 */
	uint8_t saddr[16], daddr[16]; /* IPv4 as ::ffff:a.b.c.d */
	uint16_t sport, dport; /* host byte order */
	uint32_t ifindex; /* the interface it arrived on */
	uint8_t proto; /* IPPROTO_UDP or IPPROTO_TCP */
};

typedef int (*dnslearn_probe_fn)(void *arg, const char *domain);

struct dnslearn;

/* ring_fd: the dns_events ring buffer map. NULL on error (logged). */
struct dnslearn *dnslearn_open(int ring_fd, struct store *store, dnslearn_probe_fn probe,
			       void *arg);
void dnslearn_close(struct dnslearn *l); /* accepts NULL */
int dnslearn_fd(const struct dnslearn *l); /* for epoll */
/* Reads what is waiting; never blocks. */
void dnslearn_process(struct dnslearn *l);
/* The inside interfaces (at most DNSLEARN_INSIDE_MAX; see above). */
void dnslearn_set_inside(struct dnslearn *l, const uint32_t *ifindex, size_t n);
/* One DNS message (a UDP payload, or one TCP message without its length
 * prefix) as seen on the wire: a query is remembered, an answer learned
 * from when it matches one (exposed for tests and the fuzzer). now is unix
 * time. */
void dnslearn_packet(struct dnslearn *l, const struct dnslearn_wire *w, const uint8_t *msg,
		     size_t len, int64_t now);
const struct dnslearn_stats *dnslearn_stats(const struct dnslearn *l);

#endif
