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

/* The class of one recipient domain (A-label, lower case):
 *   {"domain", "class": "dane"|"tls"|"plaintext"|"unknown", "label",
 *    "tls_version", "cipher" (last seen, or null), "dnssec":
 *    "secure"|"insecure"|"unknown", "tlsa" (probe's DANE result or null),
 *    "locked", "checked" (unix time of the newest evidence, or null),
 *    "stale", "mx": [per MX: "name", "class", "label", "addresses",
 *    "tls_version", "cipher", "best_version", "first_seen", "last_seen",
 *    "first_tls", "last_tls", "tls_count", "plain_count", "locked",
 *    "lock_reason", "dnssec", "probe": {...} or null]}
 * The domain's class is the weakest of its MX hosts (mail may go to any
 * of them); an MX with nothing recorded makes it "unknown" unless a probe
 * classified the domain. *needs_probe is set when the class is unknown or
 * the evidence is stale. */
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

/* "DANE ok", "TLS", "no TLS", "TLS?" for a class name. */
const char *web_store_label(const char *cls);

#endif
