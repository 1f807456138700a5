/* datapath.h - the kernel half of tlsgated: loads the tagger (bpf/tagger.bpf.c),
 * pins its maps under the pin directory, attaches it to TC ingress of the
 * inside and outside interfaces, and gives typed access to the flow map and
 * the per-CPU counters.
 *
 * Restart safety: maps are pinned by name, so a daemon started again with the
 * same pin directory reuses them (offloaded flows keep their verdicts), and
 * the TC filter is attached with a fixed handle and BPF_TC_F_REPLACE, so a
 * leftover attachment from a crashed daemon is replaced, never duplicated.
 * datapath_close(dp, true) detaches and unpins everything; with false (e.g.
 * on a crash path) the kernel keeps tagging and existing verdicts stay. */
#ifndef TLSGATE_DATAPATH_H
#define TLSGATE_DATAPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tlsgate_shared.h"

#define DATAPATH_MAX_IFACES 8
#define DATAPATH_TC_HANDLE 0x7e5
#define DATAPATH_TC_PRIORITY 1

struct datapath_config {
	const char *pin_dir; /* e.g. TLSGATE_PIN_DIR_DEFAULT */
	uid_t pin_uid;       /* who unpins at a stop, after the parent's drop; */
	gid_t pin_gid;       /* (uid_t)-1: root, and the directory is 0700 */
	const char *ifaces[DATAPATH_MAX_IFACES];
	size_t n_ifaces;
	const uint16_t *ports; /* SMTP ports, host order */
	size_t n_ports;
	uint32_t inspect_mark;
	uint32_t inspect_mask;
};

struct datapath;

/* Mounts bpffs at /sys/fs/bpf when nothing is mounted there, loads and
 * attaches. On error NULL is returned, the reason logged, and whatever was
 * attached by this call is detached again. */
struct datapath *datapath_open(const struct datapath_config *cfg);
void datapath_close(struct datapath *dp, bool teardown); /* accepts NULL */

/* Writes a final verdict for a flow (new entry with zero counters).
 * Returns 0 or -errno. */
int datapath_set_verdict(struct datapath *dp, const struct tlsgate_flow_key *key,
			 enum tlsgate_verdict verdict);
/* Hands a flow's message content to the kernel (TLSGATE_CONTENT): client
 * segments from seq on pass there until one holds a '.' alone between CRs
 * or LFs (line_end: the byte before seq is one); for a BDAT chunk
 * (chunk_end non-NULL), until one reaches past *chunk_end. Returns 0 or
 * -errno. */
int datapath_set_content(struct datapath *dp, const struct tlsgate_flow_key *key, uint32_t seq,
			 bool line_end, const uint32_t *chunk_end, uint8_t copy);
/* A flow under inspection; copy (TLSGATE_COPY_*): the segments that pass in
 * the kernel and are read from the reply ring (datapath_reply_ring_fd);
 * client_state: TLSGATE_CLIENT_STATE(). Returns 0 or -errno. */
int datapath_set_inspect(struct datapath *dp, const struct tlsgate_flow_key *key, uint8_t copy,
			 uint64_t client_state);
/* The flow's awaits entry (struct tlsgate_await; stage TLSGATE_AWAIT_*):
 * set, or removed (ENOENT is not an error). Return 0 or -errno. */
int datapath_set_await(struct datapath *dp, const struct tlsgate_flow_key *key, uint8_t stage,
		       uint8_t skip, uint32_t client_seq, uint32_t server_seq);
int datapath_clear_await(struct datapath *dp, const struct tlsgate_flow_key *key);
int datapath_get_await(struct datapath *dp, const struct tlsgate_flow_key *key,
		       struct tlsgate_await *a);
/* Returns 0 and fills *val, -ENOENT when the flow has no entry, or -errno. */
int datapath_lookup(struct datapath *dp, const struct tlsgate_flow_key *key,
		    struct tlsgate_flow_value *val);
int datapath_delete(struct datapath *dp, const struct tlsgate_flow_key *key);

/* Calls fn for every entry of the flow map; stops when fn returns non-zero.
 * Returns the number of entries visited. */
size_t datapath_for_each_flow(struct datapath *dp,
			      int (*fn)(void *arg, const struct tlsgate_flow_key *key,
					const struct tlsgate_flow_value *val),
			      void *arg);

/* Sums the per-CPU counters. Returns 0 or -errno. */
int datapath_counters(struct datapath *dp, struct tlsgate_counter_value out[TLSGATE_CNT_MAX]);

/* Writes the heartbeat (now) and the fail-closed timeout (0 disables
 * fail-closed). Called at start and on every tick. Returns 0 or -errno. */
int datapath_heartbeat(struct datapath *dp, uint32_t failclosed_after_ms);
/* The daemon stops and leaves the tagger attached: secure-mode sources fail
 * closed at once (no waiting for the heartbeat to age). */
int datapath_heartbeat_stopped(struct datapath *dp, uint32_t failclosed_after_ms);

/* Replaces the secure-mode source prefixes: new ones are added before stale
 * ones are removed, so a prefix present in both sets is never absent.
 * prefixlen for IPv4 entries is 96 + the IPv4 length (IPv4-mapped).
 * Returns 0 or -errno (then the map may hold a mix; call again). */
int datapath_set_secure_sources(struct datapath *dp, const struct tlsgate_lpm_key *keys, size_t n);

/* Replaces the rcpt_domains map's contents with the hashes of the n
 * domains (flowkey_domain_hash): TLSGATE_RCPT_READY is removed first, so
 * that every RCPT TO is marked while the set changes, and written last.
 * Returns 0 or -errno (then READY stays absent: every RCPT is marked). */
int datapath_set_rcpt_domains(struct datapath *dp, const uint64_t *hashes, size_t n);

/* Replaces the secure_domains map's contents: the n domains' hashes
 * (flowkey_domain_hash) with their TLSGATE_SD_SENDER... flags (a hash
 * given twice gets both flags), then the READY entry with ready_flags
 * (TLSGATE_SD_DOMAINS, TLSGATE_SD_NORMAL_CLOSED) and failclosed_ms, the
 * heartbeat age from which the program acts alone. The new set is added
 * before the stale one is removed and READY written last, so that the
 * program never sees less than the old or the new set. ready_flags 0: no
 * policy; READY goes first, then the rest. Returns 0 or -errno (then the
 * map holds a superset of both sets under the old READY: call again). */
int datapath_set_secure_domains(struct datapath *dp, const uint64_t *hashes, const uint32_t *flags,
				size_t n, uint32_t ready_flags, uint32_t failclosed_ms);

/* The fd of the dns_events ring buffer (for dnslearn). */
int datapath_dns_ring_fd(const struct datapath *dp);
int datapath_reply_ring_fd(const struct datapath *dp);

/* True when this start found pinned maps from an earlier daemon. */
bool datapath_adopted(const struct datapath *dp);

#endif
