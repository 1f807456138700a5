/* flow.h - the userspace flow table: one entry per port-25 connection that
 * tlsgated inspects, or has judged and offloaded to the kernel.
 *
 * Bounded: at most `max_flows` entries (default 65536). Inserting into a full
 * table evicts the least recently active entry (flow_insert reports it
 * through the evict callback before freeing it). An evicted flow that was
 * still being inspected is picked up again mid-stream if more of its packets
 * arrive, so eviction never turns into a silent pass; an evicted offloaded
 * flow keeps its kernel verdict. Memory: sizeof(struct flow) plus the
 * session's own bounded buffers while inspecting. */
#ifndef TLSGATE_FLOW_H
#define TLSGATE_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsgate_shared.h"

struct session;
struct gate_flow;
/* gate.c: frees a flow's gate state (accepts NULL); flow_remove() calls it. */
void gate_flow_free(struct gate_flow *gf);

struct flow {
	struct tlsgate_flow_key key;
	bool client_is_lo; /* the client is the key's (addr_lo, port_lo) side */
	bool midstream;    /* first packet seen was not a SYN */
	bool adopted;      /* found in the pinned map at start */
	bool syn_seen;     /* began with the client's SYN, sequence syn_seq */
	uint32_t syn_seq;
	uint8_t verdict;   /* enum tlsgate_verdict */
	bool content;      /* inspecting, with the message content handed to the
			      kernel (TLSGATE_CONTENT) until it returns */
	bool content_wanted; /* to be handed over after this batch */
	uint8_t copy; /* TLSGATE_COPY_*, as the kernel entry says: which
			 segments come from the reply ring, not the queue */
	uint8_t await_stage, await_skip; /* the awaits entry written (struct tlsgate_await) */
	uint32_t await_client, await_server;
	uint32_t content_from; /* content: where the kernel took it over */
	/* CLOCK_MONOTONIC after the daemon last wrote the kernel entry while
	 * inspecting: a PASS the program wrote before that is gone. */
	uint64_t entry_written_ns;
	struct session *session; /* non-NULL while inspecting */
	struct gate_flow *gate;  /* gate.c's flat state; freed with the flow */
	uint64_t first_ns, last_ns;
	uint64_t queued_packets, queued_bytes;
	uint64_t copied_packets, copied_bytes; /* read from the reply ring */
	uint16_t tls_version, tls_cipher;
	/* For offloaded flows: the kernel counters as last read, and when they
	 * last changed (idle expiry). */
	uint64_t kernel_packets, kernel_bytes, kernel_change_ns;
	/* --judged-dir (diagnostics): the file the client bytes the session
	 * consumed go to, as its descriptor + 1 (0: none); closed with the flow. */
	int judged_fd1;
	struct flow *hash_next;
	struct flow *lru_prev, *lru_next; /* lru_next: less recently active */
};

struct flow_table;
typedef void (*flow_evict_fn)(void *arg, struct flow *f);

/* Returns the table, or NULL when max_flows is 0. Cannot fail otherwise. */
struct flow_table *flow_table_new(size_t max_flows, flow_evict_fn evict, void *arg);
/* Frees every flow (and its session) and the table; accepts NULL. */
void flow_table_free(struct flow_table *t);

struct flow *flow_lookup(struct flow_table *t, const struct tlsgate_flow_key *key);
/* Inserts a new zeroed flow for key (which must not be present), evicting
 * the least recently active flow when the table is full. Never NULL. */
struct flow *flow_insert(struct flow_table *t, const struct tlsgate_flow_key *key,
			 uint64_t now_ns);
/* Marks f as the most recently active flow. */
void flow_touch(struct flow_table *t, struct flow *f, uint64_t now_ns);
/* Unlinks and frees f (and its session). */
void flow_remove(struct flow_table *t, struct flow *f);

size_t flow_count(const struct flow_table *t);
uint64_t flow_evicted(const struct flow_table *t);

/* Visits flows from least to most recently active; fn may flow_remove() the
 * flow it is given. Stops when fn returns non-zero. */
void flow_for_each(struct flow_table *t, int (*fn)(void *arg, struct flow *f), void *arg);

#endif
