/* gate.h - the policy side of tlsgated: what each inspected flow may do.
 *
 * For every flow the gate gathers what decide() needs - direction (the
 * client on the inside interface: outbound), secure mode of the sender (by
 * source address from the policy, later by envelope domain), secure-mode
 * recipients (inbound), the destination's MX name (store: learned from the
 * probe or DNS), its TLS history and lock, its DANE state (the probe's
 * newest verdict for that address) - and asks decide() at each decision
 * point: every client segment that completes MAIL, RCPT, DATA or BDAT in
 * the plaintext dialog, the judged TLS handshake, and a bound reached.
 *
 * Acting on the verdict is the caller's packet path (gate_segment's return
 * value) plus what the gate does itself: SMTP refusal and server reset
 * (enforce.h) for blocks in the plaintext dialog, resets of both sides for
 * blocks after TLS began, PASS/BLOCK in the kernel flow map, TLS history
 * records and locks, and one event (store row + one log line) for every
 * block and every first-seen destination.
 *
 * Policy: signed files (policy.h) applied all or nothing - the parsed
 * policy, the kernel's secure-source prefixes, a copy in the state
 * directory and the store's serial - by gate_policy_apply(). The copy is
 * loaded again at start, so the last good policy survives restarts; an
 * expired copy stays in force (loudly) until a new one is applied.
 *
 * Without a policy key (--policy-key) no policy can be applied: secure mode
 * is off and said so at start and in the stats. */
#ifndef TLSGATE_GATE_H
#define TLSGATE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "datapath.h"
#include "flow.h"
#include "flowkey.h"
#include "session.h"

#define GATE_FAILCLOSED_MS_DEFAULT 3000
/* Flows whose content is handed to the kernel after one batch; more: at once. */
#define GATE_CONTENT_PENDING_MAX 1024

struct gate_config {
	const char *store_path;      /* SQLite file (created) */
	const char *state_dir;       /* last good policy copy */
	const char *policy_key_path; /* minisign public key; NULL: no policy */
	const char *policy_path;     /* applied at start and on SIGHUP; may be NULL */
	const char *policy_dir;      /* drop directory: DIR/policy.json (+ .minisig)
					is applied when it changes; may be NULL */
	uint32_t failclosed_ms;      /* heartbeat age after which secure sources fail closed */
	int inside_ifindex[DATAPATH_MAX_IFACES];
	size_t n_inside;
	/* Probes a domain (or MX host) now; NULL: no probes. */
	int (*schedule_probe)(void *arg, const char *target);
	void *probe_arg;
	/* Raw sockets opened before privileges were dropped (socket() checks
	 * CAP_NET_RAW, sendto() does not); NULL: opened here. The gate owns
	 * and closes it either way. */
	struct enforce *enforce;
};
/* Longest a client's STARTTLS is withheld while the DANE state of a first
 * contacted MX is looked up (RFC 7672: no answer is no "no DANE"). */
#define GATE_DANE_WAIT_S 20

struct gate_stats {
	uint64_t blocked_temp, blocked_perm, passed_plaintext, passed_tls;
	uint64_t refusals_injected, resets_injected, inject_errors;
	uint64_t first_seen, locks, policy_applied, policy_refused;
	uint64_t content_handovers, content_returns;
	uint64_t by_reason[32];
	/* Flows passed although the dialog could not be followed (nothing
	 * could be required of them), by decide_reason. */
	uint64_t blind_passed[32];
	uint64_t withheld_ahead; /* client segments sent ahead of a reply, withheld */
	uint64_t dane_waits, dane_wait_timeouts; /* STARTTLS held for a DANE lookup */
};

struct gate;

/* Opens the store and raw sockets, loads the last good policy. NULL on
 * error (logged). */
struct gate *gate_open(const struct gate_config *cfg, struct datapath *dp);
void gate_close(struct gate *g); /* accepts NULL */

/* Called once per new flow, with its first packet and the interface it
 * arrived on. Allocates the flow's gate state (f->gate, a flat block that
 * flow_remove() frees). */
void gate_flow_start(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		     uint32_t indev);
/* Call right before session_segment() for f with its packet p: the
 * session's command callback judges commands against this flow, and a
 * flow whose content the kernel held is taken back (the session skips
 * what passed there). copy: p's copy from the reply ring (NULL: queued);
 * p passed already, so a refusal it calls for cannot withhold it, and
 * both sides are reset instead. A copy at which the program turned the
 * entry PASS (TLSGATE_REPLY_PASSED) spares the offload's write. */
void gate_before_segment(struct gate *g, struct flow *f, const struct flowkey_packet *p,
			 const struct tlsgate_reply_event *copy);

/* True when p is a client segment of a flow whose refusal waits for the
 * server's owed replies: drop it without feeding the session. */
bool gate_withholds(const struct flow *f, const struct flowkey_packet *p);
/* A flow whose content the kernel held: the session skips what passed
 * there (gate_before_segment() does this too). */
void gate_content_sync(struct gate *g, struct flow *f, const struct flowkey_packet *p);
/* A packet of a flow already blocked (dropped, or a copy that passed
 * before the block took effect in the kernel): when the block came at a
 * segment that had passed, the resets are sent again at this packet's
 * sequence numbers, which the endpoints expect now. */
void gate_blocked_packet(struct gate *g, struct flow *f, const struct flowkey_packet *p,
			 bool copied);
/* The client has used BDAT (RFC 3030): a command may then start where a
 * chunk ends, not after a line end. */
bool gate_chunking(const struct flow *f);
/* A refusal of the flow waits for replies the server owes. */
bool gate_refusal_waits(const struct flow *f);
/* A refusal that has waited 10 s for the server's owed replies is given
 * anyway, after what the server sent. Call for inspected flows now and
 * then (now_ns: CLOCK_MONOTONIC). */
void gate_deferred_timeout(struct gate *g, struct flow *f, uint64_t now_ns);

/* Judges one segment after the session consumed it. Returns the NFQUEUE
 * verdict (NF_ACCEPT or NF_DROP). May set f->verdict to PASS or BLOCK (and
 * free f->session); the caller removes the flow on SESSION_CLOSED. */
int gate_segment(struct gate *g, struct flow *f, const struct flowkey_packet *p,
		 enum session_action action, bool no_offload);

/* Injects the refusals of segments withheld during this batch of queued
 * packets and hands the message content of the flows that got ready in it
 * to the kernel. Call after each batch, once its verdicts are sent. */
void gate_content_flush(struct gate *g, struct flow_table *flows);

/* Writes the queued TLS-history observations in one transaction (it is
 * called every second). */
void gate_flush(struct gate *g);
/* The same when one of them is news - a destination first seen, a level
 * or TLS version above the known one: call after each batch of queued
 * packets. Repeats of what is known wait for the next second, so that a
 * busy destination costs no write transaction per flow. */
void gate_flush_news(struct gate *g);

/* Secure-mode source prefixes of the policy in force (0: none). */
size_t gate_secure_sources(const struct gate *g);
/* Marks the daemon as gone in the kernel: secure-mode sources fail closed
 * now. For a stop that leaves the tagger attached. */
void gate_stop_failclosed(struct gate *g);

/* Every second: heartbeat for the fail-closed timer; every 5 s the policy
 * drop directory (a changed DIR/policy.json is applied; a refused one is
 * reported once per change). */
void gate_tick(struct gate *g);

/* Applies a signed policy (sig_path NULL: json_path + ".minisig"). On
 * error the old policy stays in force and err says why in one line. */
int gate_policy_apply(struct gate *g, const char *json_path, const char *sig_path, char *err,
		      size_t errlen);
/* SIGHUP: re-applies cfg->policy_path when its serial is newer. */
void gate_reload(struct gate *g);

/* The store the gate writes (shared with dnslearn). */
struct store *gate_store(struct gate *g);

/* Releases a history lock (operator or API). 0, -ENOENT, -EIO. */
int gate_release(struct gate *g, const char *mx, const char *by);

/* JSON object with the gate's counters and policy state (malloc'd text
 * of a JSON object, for the control socket's "stats"). */
struct json_t;
void gate_stats_json(struct gate *g, struct json_t *obj);

#endif
