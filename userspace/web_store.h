/* web_store.h - the read queries behind the status page and the JSON API,
 * on a read-only SQLite connection of their own.
 *
 * Tables written by others (tls_history, addr_mx, events, policy_applied,
 * probe_results; see store.c) are read defensively: a table or column that
 * does not exist yet reads as empty, not as an error. Every value from a
 * request is bound, never built into SQL.
 *
 * Each query returns a new jansson reference the caller owns (json_decref),
 * or NULL when the store cannot be read (not there yet, locked too long,
 * corrupt); the reason is logged at most every few seconds. */
#ifndef TLSGATE_WEB_STORE_H
#define TLSGATE_WEB_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

/* A domain whose newest evidence (flow or probe) is older than this is
 * stale: the lookup answers from the store and schedules a probe. */
#define WEB_STORE_STALE_SECONDS (24 * 3600)

struct web_store;

/* Remembers path; the file is opened read-only on first use and reopened
 * after a failure, so the web server can start before the store exists.
 * Never NULL. */
struct web_store *web_store_new(const char *path);
void web_store_free(struct web_store *ws); /* accepts NULL */

/* ---- classes ------------------------------------------------------------
 *
 * The one definition of what the page, the API and tlsgatectl show for a
 * destination (DESIGN.md "How well is mail to this recipient protected"):
 *
 *   class         label          meaning, per MX host
 *   locked        "locked"       tls_history.locked: a possible downgrade
 *                                was blocked; mail waits for an operator
 *                                (whatever else is known)
 *   dane-failing  "DANE failing" DANE applies, and the newest DANE
 *                                verification did not match: the newest
 *                                probe said dane-fail on an address, or a
 *                                flow was blocked on the wire because the
 *                                certificate did not match the TLSA records
 *                                at or after that probe. Mail is deferred.
 *   dane          "DANE ok"      the newest DANE verification matched: the
 *                                newest probe said dane (no address
 *                                failing), or, with no probe that spoke
 *                                about DANE, the TLS history reached DANE
 *                                (a verified flow) and no mismatch since
 *   tls           "TLS"          STARTTLS with acceptable TLS seen (flows or
 *                                probe; weak TLS is recorded as plaintext);
 *                                also a DANE history whose newest probe
 *                                says DANE no longer applies
 *   plaintext     "no TLS"       only plaintext seen
 *   unknown       "TLS?"         nothing known (a probe is scheduled)
 *
 * A destination (domain) takes the most pressing state of its MX hosts:
 * locked before dane-failing, then the weakest protection (plaintext <
 * unknown < tls < dane), since mail may go to any of them. */
enum web_class {
	WEB_CLASS_UNKNOWN = 0,
	WEB_CLASS_PLAINTEXT,
	WEB_CLASS_TLS,
	WEB_CLASS_DANE,
	WEB_CLASS_DANE_FAILING,
	WEB_CLASS_LOCKED,
};

/* What the newest probe of an MX said about DANE (its addresses' verdicts:
 * any dane-fail is FAIL, else any dane is MATCH, else tls, tls-
 * unauthenticated or plaintext is NOT_APPLICABLE; failures to connect or
 * resolve say nothing, UNSEEN). */
enum web_dane_seen {
	WEB_DANE_UNSEEN = 0,
	WEB_DANE_MATCH,
	WEB_DANE_FAIL,
	WEB_DANE_NOT_APPLICABLE,
};

/* The store's facts about one MX host that the class depends on. */
struct web_mx_facts {
	enum store_level history_level; /* tls_history.level, highest ever */
	bool locked;                    /* tls_history.locked */
	int64_t probe_time;             /* the newest probe's time, 0 none */
	enum store_level probe_level;   /* best level its addresses reached */
	enum web_dane_seen probe_dane;  /* what it said about DANE */
	int64_t wire_mismatch_at;       /* newest block event: certificate
					 * not matching TLSA, 0 none */
};

/* The class of each of n MX hosts into per_mx (may be NULL) and the
 * destination's class as the table above says; n == 0 is unknown. */
enum web_class web_store_classify(const struct web_mx_facts *mx, size_t n,
				  enum web_class *per_mx);
/* "dane", "tls", "plaintext", "unknown", "dane-failing", "locked" and
 * "DANE ok", "TLS", "no TLS", "TLS?", "DANE failing", "locked". */
const char *web_class_name(enum web_class c);
const char *web_class_label(enum web_class c);

/* The description of one recipient domain (A-label, lower case):
 *   {"domain", "class" (above), "label", "why" (what made the class, or
 *    null), "tls_version", "cipher" (last seen, or null),
 *    "dnssec": "secure"|"bogus"|"unknown" (never "insecure", which the
 *    store cannot tell: web_store.c ws_mx_dnssec), "dnssec_basis" (the
 *    stored fact it was derived from), "tlsa" (probe's DANE result or
 *    null), "locked", "checked" (unix time of the newest evidence, or
 *    null), "stale", "seen": "mail"|"looked-up"|"dns", "blocks" (block
 *    events for its MX hosts), "last_block" ({time, rule, verdict,
 *    reason} or null), "probed",
 *    "mx": [per MX: "name", "class", "label", "why", "addresses",
 *    "tls_version", "cipher", "best_version", "first_seen", "last_seen",
 *    "first_tls", "last_tls", "tls_count", "plain_count", "flows",
 *    "locked", "lock_reason", "dnssec", "dnssec_basis", "dane" (the
 *    newest DANE verification {result, time, source} or null), "blocks",
 *    "probe": [...] or null]}
 * *needs_probe is set when the class is unknown, the evidence is stale,
 * or a wire mismatch is newer than the newest probe. */
json_t *web_store_domain(struct web_store *ws, const char *domain, int64_t now,
			 bool *needs_probe);

/* Every known destination: the domains of addr_mx and probe_results, each
 * as web_store_domain() describes it, then MX hosts with history but no
 * known domain (domain null). Bounded to limit entries. */
json_t *web_store_destinations(struct web_store *ws, int64_t now, int limit);

/* The newest limit events, newest first: {"id", "time", "kind", "client",
 * "server", "mx", "sender", "recipient", "rule", "verdict", "reason"}. */
json_t *web_store_events(struct web_store *ws, int limit);

/* Locked destinations: [{"mx", "reason", "locked_at", "level"}]. */
json_t *web_store_locks(struct web_store *ws);

/* The applied policy (highest serial): {"serial", "sha256", "key_id",
 * "applied_at", "expires"} or JSON null when none; plus "last_refused":
 * the newest event of kind "policy-refused" ({"time", "reason"}) or null. */
json_t *web_store_policy(struct web_store *ws);

/* Block events counted by rule: {"rule": n, ...} over the kept events. */
json_t *web_store_blocks_by_rule(struct web_store *ws);

/* The label of a class name (web_class_name), "TLS?" for any other. */
const char *web_store_label(const char *cls);

#endif
