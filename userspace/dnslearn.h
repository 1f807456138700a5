/* dnslearn.h - passive learning from the DNS answers the MTAs receive.
 *
 * The tagger copies DNS answers (UDP, or single TCP segments, from port 53)
 * into a ring buffer. dnslearn parses each (dns_parse.h) and learns, as
 * *hints*: recipient domain -> MX host names (MX answers) and MX host name
 * -> addresses (A/AAAA answers, following CNAMEs in the same message).
 * When an address of a known MX host is seen, the mapping address -> MX
 * name and domain is stored (store_addr_mx_set, secure = false, valid for
 * the record's TTL, at most DNSLEARN_TTL_MAX) so that flows to that address
 * get history under the MX name. Each newly seen domain is handed to the
 * probe callback once per DNSLEARN_PROBE_INTERVAL: the probe resolves it
 * again itself with DNSSEC validation, and only its validated results make
 * a destination DANE-protected.
 *
 * Bounds: DNSLEARN_HOSTS MX host names remembered (the oldest is replaced);
 * messages are at most TLSGATE_DNS_COPY_MAX bytes (longer ones are
 * truncated by the tagger and then usually refused by the parser: counted).
 * Nothing here fails the daemon: bad messages are counted and dropped. */
#ifndef TLSGATE_DNSLEARN_H
#define TLSGATE_DNSLEARN_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define DNSLEARN_HOSTS 4096
#define DNSLEARN_TTL_MAX 86400
#define DNSLEARN_PROBE_INTERVAL 3600

struct dnslearn_stats {
	uint64_t messages;  /* events read */
	uint64_t malformed; /* refused by the parser */
	uint64_t truncated; /* longer than the copy */
	uint64_t mx_learned;
	uint64_t addr_learned;
	uint64_t probes_requested;
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
/* Learns from one DNS message (exposed for tests and the fuzzer). now is
 * unix time. */
void dnslearn_message(struct dnslearn *l, const uint8_t *msg, size_t len, int64_t now);
const struct dnslearn_stats *dnslearn_stats(const struct dnslearn *l);

#endif
