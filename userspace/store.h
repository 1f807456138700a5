/* store.h - tlsgate's persistent state in SQLite (WAL), shared by tlsgated,
 * tlsgate-probe and the web page.
 *
 * What survives restarts: TLS history per MX (by name, or by address when no
 * name is known), which address belongs to which MX and recipient domain,
 * events (blocks and notable flows), and the applied policy. Every write is
 * one transaction; readers never see half a write. Strings are bounded by
 * the field sizes below and truncated (never overflowed) when longer.
 *
 * All functions return 0 or a negative errno-style code (-EIO for SQLite
 * errors, which are also logged); lookups return -ENOENT when nothing is
 * stored. Nothing is built from input as SQL: every value is bound.
 *
 * Concurrency (see store.c): several processes write the file. Every write
 * is a BEGIN IMMEDIATE transaction that waits for the write lock (busy
 * timeout) and is retried a bounded number of times under contention; a
 * write that still fails is logged once, naming what was lost, and returns
 * -EIO. Nothing is dropped silently. */
#ifndef TLSGATE_STORE_H
#define TLSGATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_NAME_MAX 256 /* DNS name incl. NUL */
#define STORE_ADDR_MAX 48  /* IPv6 text incl. NUL */
#define STORE_TEXT_MAX 512

/* Ordered: a higher level is stronger protection. */
enum store_level {
	STORE_LEVEL_NONE = 0,      /* nothing recorded */
	STORE_LEVEL_PLAINTEXT = 1, /* only plaintext seen */
	STORE_LEVEL_TLS = 2,       /* STARTTLS + TLS handshake seen */
	STORE_LEVEL_DANE = 3,      /* TLS with a DANE-verified certificate */
};
const char *store_level_name(enum store_level level); /* "none", "plaintext", ... */

struct store_history {
	char mx[STORE_NAME_MAX];
	enum store_level level;  /* highest ever reached */
	uint16_t best_version;   /* highest TLS version seen (0x0303 = 1.2) */
	uint16_t last_version;
	uint16_t last_cipher;
	int64_t first_seen, last_seen; /* unix seconds */
	int64_t first_tls, last_tls;   /* 0 when never */
	int64_t tls_count, plain_count;
	bool locked; /* possible downgrade seen: blocked until released */
	char lock_reason[STORE_TEXT_MAX];
	int64_t locked_at;
};

struct store_event {
	int64_t time;
	const char *kind;      /* "block", "first-seen", "release", "policy", ... */
	const char *client;    /* "192.0.2.10:40000", may be NULL */
	const char *server;
	const char *mx;
	const char *sender;
	const char *recipient;
	const char *rule;      /* reason code, e.g. "history-downgrade" */
	const char *verdict;   /* "pass", "block-temporary", ... */
	const char *reason;    /* human-readable */
};

struct store;

/* Opens (creating the file and schema when absent) path. readonly opens an
 * existing store for reading only. NULL on error, logged. */
struct store *store_open(const char *path, bool readonly);
void store_close(struct store *s); /* accepts NULL */

/* How long one write waits for the lock (ms) and how many attempts it
 * gets; store_open() sets 5000 ms and 4. For tests and tools. */
void store_set_patience(struct store *s, int busy_ms, int tries);

/* One write transaction around several calls (BEGIN IMMEDIATE / COMMIT):
 * atomic, and one wait for the write lock instead of one per call. Return
 * 0 or -EIO. When store_begin() fails (after its retries) the calls that
 * follow are written as transactions of their own and store_commit()
 * returns 0; when store_commit() fails the transaction's writes are lost,
 * logged, and it returns -EIO. */
int store_begin(struct store *s);
int store_commit(struct store *s);

/* Records one observation for mx. The level only ever rises; versions and
 * counts are updated. An observation *below* the stored level does not
 * lower it (the caller decides whether that is a downgrade). */
int store_history_record(struct store *s, const char *mx, enum store_level level,
			 uint16_t version, uint16_t cipher, int64_t now);
int store_history_get(struct store *s, const char *mx, struct store_history *out);
/* Locks mx (possible downgrade). Idempotent; the first reason is kept. */
int store_history_lock(struct store *s, const char *mx, const char *reason, int64_t now);
/* Releases a lock; by names who released it (operator, policy serial).
 * Writes a "release" event. -ENOENT when mx is not locked. */
int store_history_release(struct store *s, const char *mx, const char *by, int64_t now);

/* Address -> MX name and recipient domain, learned from DNS (hints) or the
 * resolver (secure = DNSSEC-validated), valid until expires. */
int store_addr_mx_set(struct store *s, const char *addr, const char *mx, const char *domain,
		      bool secure, int64_t expires);
/* Newest unexpired mapping for addr. */
int store_addr_mx_get(struct store *s, const char *addr, int64_t now, char mx[STORE_NAME_MAX],
		      char domain[STORE_NAME_MAX], bool *secure);

/* The name the address goes by, for judging a flow to it. Rows naming the
 * bare address itself are no name (an RCPT hint for an unnamed address
 * writes one). Preferred, in order: an unexpired validated mapping; a name
 * with history (level or lock), so that a hint never replaces a name that
 * has history; a name once validated; an unexpired mapping; the newest
 * expiry. Expired rows count: an address keeps its last known name after
 * the DNS TTL (addr_mx rows are never deleted for this reason, and for
 * store_history_get_any()). *current: the row is unexpired. secure,
 * domain and current may be NULL. -ENOENT: no name was ever known. */
int store_addr_mx_name(struct store *s, const char *addr, int64_t now, char mx[STORE_NAME_MAX],
		       char domain[STORE_NAME_MAX], bool *secure, bool *current);
/* The strictest history of one destination over all its identities: the
 * name mx, the address addr (history of a flow seen without a name), and
 * every name addr was ever mapped to (addr_mx, expired rows included).
 * level and best_version: the highest; locked: when any is locked, with
 * that row's reason and time; counts summed, times widened. out->mx names
 * the row that decides: the locked one, else the highest level. mx or
 * addr may be NULL. -ENOENT when none has history. */
int store_history_get_any(struct store *s, const char *mx, const char *addr,
			  struct store_history *out);

int store_event_add(struct store *s, const struct store_event *ev);
/* Events are kept bounded: rows beyond max_rows (oldest first) are deleted. */
int store_event_trim(struct store *s, int64_t max_rows);

/* The applied policy (serial, SHA-256 of the file, signer key id, expiry). */
int store_policy_set(struct store *s, uint64_t serial, const char *sha256, const char *key_id,
		     int64_t applied_at, int64_t expires, const char *body);
int store_policy_serial(struct store *s, uint64_t *serial);

/* One probe result row (tlsgate-probe --db): the domain's class with one
 * row per MX address (mx/addr NULL for a domain-level result such as a
 * failed MX lookup). detail is free text or JSON, stored verbatim. domain
 * and cls are required (-EINVAL otherwise); the others may be NULL. */
struct store_probe {
	int64_t time;
	const char *domain;  /* or the address probed */
	const char *cls;     /* "dane", "tls", "plaintext", "unknown" */
	const char *mx;
	const char *addr;
	const char *verdict; /* per address: "dane", "tls", "dane-fail", ... */
	const char *tls_version;
	const char *cipher;
	const char *dane;    /* dane_result_str(), or NULL when not checked */
	const char *reason;
	const char *detail;
};
int store_probe_add(struct store *s, const struct store_probe *p);
/* The newest probe verdict for one MX address ("dane", "dane-fail", "tls",
 * ...; see tlsgate-probe) and its time. -ENOENT when never probed. */
int store_probe_addr_latest(struct store *s, const char *addr, char verdict[32], int64_t *time);
/* The DNSSEC-validated TLSA RRset of an MX host (written by the probe from
 * a secure answer only), replaced as a whole, valid until expires. */
#define STORE_TLSA_MAX 16
#define STORE_TLSA_DATA_MAX 1024 /* bytes of one record's data kept */
struct store_tlsa {
	uint8_t usage, selector, mtype;
	size_t len;
	uint8_t data[STORE_TLSA_DATA_MAX];
};
/* recs: n records (usage, selector, mtype, data, len). */
int store_tlsa_set(struct store *s, const char *mx, const struct store_tlsa *recs, size_t n,
		   int64_t expires);
/* Up to max unexpired records of mx into out; returns how many (0: none or
 * expired), or -EIO. */
int store_tlsa_get(struct store *s, const char *mx, int64_t now, struct store_tlsa *out,
		   size_t max);
/* The class of the newest result for domain, and its time (may be NULL). */
int store_probe_latest(struct store *s, const char *domain, char cls[32], int64_t *time);

#endif
