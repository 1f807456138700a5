/* store.c - see store.h for the contract. */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

#define STORE_SCHEMA_VERSION 1

static const char store_schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE IF NOT EXISTS tls_history("
	"  mx TEXT PRIMARY KEY, level INTEGER NOT NULL DEFAULT 0,"
	"  best_version INTEGER NOT NULL DEFAULT 0, last_version INTEGER NOT NULL DEFAULT 0,"
	"  last_cipher INTEGER NOT NULL DEFAULT 0,"
	"  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
	"  first_tls INTEGER NOT NULL DEFAULT 0, last_tls INTEGER NOT NULL DEFAULT 0,"
	"  tls_count INTEGER NOT NULL DEFAULT 0, plain_count INTEGER NOT NULL DEFAULT 0,"
	"  locked INTEGER NOT NULL DEFAULT 0, lock_reason TEXT NOT NULL DEFAULT '',"
	"  locked_at INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS addr_mx("
	"  addr TEXT NOT NULL, mx TEXT NOT NULL, domain TEXT NOT NULL DEFAULT '',"
	"  secure INTEGER NOT NULL DEFAULT 0, expires INTEGER NOT NULL,"
	"  PRIMARY KEY(addr, mx, domain));"
	"CREATE TABLE IF NOT EXISTS events("
	"  id INTEGER PRIMARY KEY, time INTEGER NOT NULL, kind TEXT NOT NULL,"
	"  client TEXT, server TEXT, mx TEXT, sender TEXT, recipient TEXT,"
	"  rule TEXT, verdict TEXT, reason TEXT);"
	"CREATE INDEX IF NOT EXISTS events_time ON events(time);"
	"CREATE TABLE IF NOT EXISTS tlsa("
	"  mx TEXT NOT NULL, usage INTEGER NOT NULL, selector INTEGER NOT NULL,"
	"  mtype INTEGER NOT NULL, data BLOB NOT NULL, expires INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS tlsa_mx ON tlsa(mx);"
	"CREATE TABLE IF NOT EXISTS policy_applied("
	"  serial INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, key_id TEXT NOT NULL,"
	"  applied_at INTEGER NOT NULL, expires INTEGER NOT NULL, body TEXT);"
	"CREATE TABLE IF NOT EXISTS probe_results("
	"  id INTEGER PRIMARY KEY, time INTEGER NOT NULL, domain TEXT NOT NULL,"
	"  class TEXT NOT NULL, mx TEXT, addr TEXT, verdict TEXT, tls_version TEXT,"
	"  cipher TEXT, dane TEXT, reason TEXT, detail TEXT);"
	"CREATE INDEX IF NOT EXISTS probe_results_domain ON probe_results(domain, time);";

/* Prepared statements kept per SQL text (the callers' string literals, so
 * the pointer is the key): the packet path runs the same few statements
 * thousands of times a second, and parsing them was most of SQLite's cost. */
#define STORE_STMT_CACHE 32
struct store_stmt {
	const char *sql;
	sqlite3_stmt *st;
	bool busy;
};

struct store {
	sqlite3 *db;
	struct store_stmt cache[STORE_STMT_CACHE];
};

const char *store_level_name(enum store_level level)
{
	switch (level) {
	case STORE_LEVEL_PLAINTEXT:
		return "plaintext";
	case STORE_LEVEL_TLS:
		return "tls";
	case STORE_LEVEL_DANE:
		return "dane";
	default:
		return "none";
	}
}

static int store_fail(struct store *s, const char *what)
{
	log_warnx("store: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

static int store_exec(struct store *s, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
		log_warnx("store: %s", err ? err : "exec failed");
		sqlite3_free(err);
		return -EIO;
	}
	return 0;
}

struct store *store_open(const char *path, bool readonly)
{
	struct store *s = xcalloc(1, sizeof(*s));
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		log_warnx("store: open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "no memory");
		goto fail;
	}
	/* Readers (web page, probe) and the daemon share the file. */
	sqlite3_busy_timeout(s->db, 2000);
	if (!readonly) {
		if (store_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;") < 0 ||
		    store_exec(s, "BEGIN") < 0)
			goto fail;
		if (store_exec(s, store_schema) < 0) {
			store_exec(s, "ROLLBACK");
			goto fail;
		}
		char sql[128];
		snprintf(sql, sizeof(sql),
			 "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '%d'); COMMIT",
			 STORE_SCHEMA_VERSION);
		if (store_exec(s, sql) < 0)
			goto fail;
	}
	return s;
fail:
	store_close(s);
	return NULL;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < STORE_STMT_CACHE; i++)
		sqlite3_finalize(s->cache[i].st);
	sqlite3_close(s->db);
	free(s);
}

/* Gives a statement from store_prepare() back: reset for the next use when
 * it is a cached one, finalized otherwise. */
static void store_release(struct store *s, sqlite3_stmt *st)
{
	for (size_t i = 0; i < STORE_STMT_CACHE; i++) {
		if (s->cache[i].st == st && st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			s->cache[i].busy = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

/* A prepared statement for sql (a string literal): the cached one when it
 * is free, else a new one, cached when there is room. */
static sqlite3_stmt *store_stmt(struct store *s, const char *sql)
{
	struct store_stmt *slot = NULL;
	sqlite3_stmt *st;
	for (size_t i = 0; i < STORE_STMT_CACHE; i++) {
		if (s->cache[i].sql == sql) {
			if (s->cache[i].busy) {
				slot = NULL; /* in use further up: a one-off */
				break;
			}
			s->cache[i].busy = true;
			return s->cache[i].st;
		}
		if (!slot && !s->cache[i].sql)
			slot = &s->cache[i];
	}
	if (sqlite3_prepare_v3(s->db, sql, -1, slot ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) !=
	    SQLITE_OK) {
		store_fail(s, "prepare");
		return NULL;
	}
	if (slot)
		*slot = (struct store_stmt){ .sql = sql, .st = st, .busy = true };
	return st;
}

/* Prepares sql; binds text/int64 arguments described by fmt ('s' text, may
 * be NULL; 'i' int64); the caller steps and gives it back (store_release). */
static sqlite3_stmt *store_prepare(struct store *s, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st = store_stmt(s, sql);
	if (!st)
		return NULL;
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		int rc;
		if (fmt[i] == 's') {
			const char *v = va_arg(ap, const char *);
			rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(st, i + 1);
		} else {
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		}
		if (rc != SQLITE_OK) {
			va_end(ap);
			store_fail(s, "bind");
			store_release(s, st);
			return NULL;
		}
	}
	va_end(ap);
	return st;
}

/* Runs a statement that returns no rows. */
static int store_step_done(struct store *s, sqlite3_stmt *st, const char *what)
{
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	store_release(s, st);
	return rc == SQLITE_DONE ? 0 : store_fail(s, what);
}

static void store_copy(char *dst, size_t size, const unsigned char *src)
{
	snprintf(dst, size, "%s", src ? (const char *)src : "");
}

int store_history_record(struct store *s, const char *mx, enum store_level level,
			 uint16_t version, uint16_t cipher, int64_t now)
{
	bool tls = level >= STORE_LEVEL_TLS;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO tls_history(mx, level, best_version, last_version, last_cipher,"
		" first_seen, last_seen, first_tls, last_tls, tls_count, plain_count)"
		" VALUES(?1, ?2, ?3, ?3, ?4, ?5, ?5, ?6, ?6, ?7, ?8)"
		" ON CONFLICT(mx) DO UPDATE SET level = max(level, ?2),"
		"  best_version = max(best_version, ?3),"
		"  last_version = ?3, last_cipher = ?4, last_seen = ?5,"
		"  first_tls = CASE WHEN first_tls = 0 THEN ?6 ELSE first_tls END,"
		"  last_tls = CASE WHEN ?6 != 0 THEN ?6 ELSE last_tls END,"
		"  tls_count = tls_count + ?7, plain_count = plain_count + ?8",
		"siiiiiii", mx, (int64_t)level, (int64_t)version, (int64_t)cipher, now,
		tls ? now : (int64_t)0, (int64_t)(tls ? 1 : 0), (int64_t)(tls ? 0 : 1));
	return store_step_done(s, st, "history record");
}

int store_history_get(struct store *s, const char *mx, struct store_history *out)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"SELECT mx, level, best_version, last_version, last_cipher, first_seen, last_seen,"
		" first_tls, last_tls, tls_count, plain_count, locked, lock_reason, locked_at"
		" FROM tls_history WHERE mx = ?1",
		"s", mx);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		memset(out, 0, sizeof(*out));
		store_copy(out->mx, sizeof(out->mx), sqlite3_column_text(st, 0));
		out->level = (enum store_level)sqlite3_column_int(st, 1);
		out->best_version = (uint16_t)sqlite3_column_int(st, 2);
		out->last_version = (uint16_t)sqlite3_column_int(st, 3);
		out->last_cipher = (uint16_t)sqlite3_column_int(st, 4);
		out->first_seen = sqlite3_column_int64(st, 5);
		out->last_seen = sqlite3_column_int64(st, 6);
		out->first_tls = sqlite3_column_int64(st, 7);
		out->last_tls = sqlite3_column_int64(st, 8);
		out->tls_count = sqlite3_column_int64(st, 9);
		out->plain_count = sqlite3_column_int64(st, 10);
		out->locked = sqlite3_column_int(st, 11) != 0;
		store_copy(out->lock_reason, sizeof(out->lock_reason), sqlite3_column_text(st, 12));
		out->locked_at = sqlite3_column_int64(st, 13);
	}
	store_release(s, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_fail(s, "history get");
}

int store_history_lock(struct store *s, const char *mx, const char *reason, int64_t now)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO tls_history(mx, first_seen, last_seen, locked, lock_reason, locked_at)"
		" VALUES(?1, ?3, ?3, 1, ?2, ?3)"
		" ON CONFLICT(mx) DO UPDATE SET"
		"  lock_reason = CASE WHEN locked THEN lock_reason ELSE ?2 END,"
		"  locked_at = CASE WHEN locked THEN locked_at ELSE ?3 END, locked = 1",
		"ssi", mx, reason, now);
	return store_step_done(s, st, "history lock");
}

int store_history_release(struct store *s, const char *mx, const char *by, int64_t now)
{
	if (store_exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	sqlite3_stmt *st = store_prepare(
		s, "UPDATE tls_history SET locked = 0, lock_reason = '' WHERE mx = ?1 AND locked",
		"s", mx);
	int rc = store_step_done(s, st, "history release");
	if (rc == 0 && sqlite3_changes(s->db) == 0)
		rc = -ENOENT;
	if (rc == 0) {
		char reason[STORE_TEXT_MAX];
		snprintf(reason, sizeof(reason), "lock on %s released by %s", mx, by);
		struct store_event ev = { .time = now, .kind = "release", .mx = mx,
					  .rule = "history-release", .reason = reason };
		rc = store_event_add(s, &ev);
	}
	if (store_exec(s, rc == 0 ? "COMMIT" : "ROLLBACK") < 0 && rc == 0)
		rc = -EIO;
	return rc;
}

int store_addr_mx_set(struct store *s, const char *addr, const char *mx, const char *domain,
		      bool secure, int64_t expires)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES(?1, ?2, ?3, ?4, ?5)"
		" ON CONFLICT(addr, mx, domain) DO UPDATE SET secure = ?4, expires = ?5",
		"sssii", addr, mx, domain ? domain : "", (int64_t)secure, expires);
	return store_step_done(s, st, "addr_mx set");
}

int store_addr_mx_get(struct store *s, const char *addr, int64_t now, char mx[STORE_NAME_MAX],
		      char domain[STORE_NAME_MAX], bool *secure)
{
	sqlite3_stmt *st = store_prepare(s,
					 "SELECT mx, domain, secure FROM addr_mx"
					 " WHERE addr = ?1 AND expires > ?2"
					 " ORDER BY secure DESC, expires DESC LIMIT 1",
					 "si", addr, now);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_copy(mx, STORE_NAME_MAX, sqlite3_column_text(st, 0));
		store_copy(domain, STORE_NAME_MAX, sqlite3_column_text(st, 1));
		*secure = sqlite3_column_int(st, 2) != 0;
	}
	store_release(s, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_fail(s, "addr_mx get");
}

int store_event_add(struct store *s, const struct store_event *ev)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO events(time, kind, client, server, mx, sender, recipient, rule,"
		" verdict, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
		"isssssssss", ev->time, ev->kind, ev->client, ev->server, ev->mx, ev->sender,
		ev->recipient, ev->rule, ev->verdict, ev->reason);
	return store_step_done(s, st, "event add");
}

int store_event_trim(struct store *s, int64_t max_rows)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1", "i", max_rows);
	return store_step_done(s, st, "event trim");
}

int store_policy_set(struct store *s, uint64_t serial, const char *sha256, const char *key_id,
		     int64_t applied_at, int64_t expires, const char *body)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT OR REPLACE INTO policy_applied(serial, sha256, key_id, applied_at,"
		" expires, body) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
		"issiis", (int64_t)serial, sha256, key_id, applied_at, expires, body);
	return store_step_done(s, st, "policy set");
}

int store_policy_serial(struct store *s, uint64_t *serial)
{
	sqlite3_stmt *st = store_prepare(s, "SELECT max(serial) FROM policy_applied", "");
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	bool have = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
	if (have)
		*serial = (uint64_t)sqlite3_column_int64(st, 0);
	store_release(s, st);
	if (rc != SQLITE_ROW)
		return store_fail(s, "policy serial");
	return have ? 0 : -ENOENT;
}

int store_probe_add(struct store *s, const struct store_probe *p)
{
	if (!p->domain || !p->cls)
		return -EINVAL;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO probe_results(time, domain, class, mx, addr, verdict, tls_version,"
		" cipher, dane, reason, detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
		"issssssssss", p->time, p->domain, p->cls, p->mx, p->addr, p->verdict,
		p->tls_version, p->cipher, p->dane, p->reason, p->detail);
	return store_step_done(s, st, "probe add");
}

int store_probe_latest(struct store *s, const char *domain, char cls[32], int64_t *time)
{
	sqlite3_stmt *st = store_prepare(s,
					 "SELECT class, time FROM probe_results WHERE domain = ?1"
					 " ORDER BY time DESC, id DESC LIMIT 1",
					 "s", domain);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_copy(cls, 32, sqlite3_column_text(st, 0));
		if (time)
			*time = sqlite3_column_int64(st, 1);
	}
	store_release(s, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_fail(s, "probe latest");
}

int store_probe_addr_latest(struct store *s, const char *addr, char verdict[32], int64_t *time)
{
	sqlite3_stmt *st = store_prepare(s,
					 "SELECT verdict, time FROM probe_results WHERE addr = ?1"
					 " AND verdict IS NOT NULL ORDER BY time DESC, id DESC LIMIT 1",
					 "s", addr);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_copy(verdict, 32, sqlite3_column_text(st, 0));
		if (time)
			*time = sqlite3_column_int64(st, 1);
	}
	store_release(s, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_fail(s, "probe addr latest");
}

int store_tlsa_set(struct store *s, const char *mx, const struct store_tlsa *recs, size_t n,
		   int64_t expires)
{
	if (store_exec(s, "BEGIN IMMEDIATE") < 0)
		return -EIO;
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM tlsa WHERE mx = ?1", "s", mx);
	int rc = store_step_done(s, st, "tlsa delete");
	for (size_t i = 0; rc == 0 && i < n && i < STORE_TLSA_MAX; i++) {
		st = store_prepare(s,
				   "INSERT INTO tlsa(mx, usage, selector, mtype, data, expires)"
				   " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
				   "siiii", mx, (int64_t)recs[i].usage, (int64_t)recs[i].selector,
				   (int64_t)recs[i].mtype, (int64_t)0);
		if (!st) {
			rc = -EIO;
			break;
		}
		size_t len = recs[i].len < STORE_TLSA_DATA_MAX ? recs[i].len : STORE_TLSA_DATA_MAX;
		if (sqlite3_bind_blob(st, 5, recs[i].data, (int)len, SQLITE_TRANSIENT) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 6, expires) != SQLITE_OK) {
			store_release(s, st);
			rc = store_fail(s, "tlsa bind");
			break;
		}
		rc = store_step_done(s, st, "tlsa insert");
	}
	if (store_exec(s, rc == 0 ? "COMMIT" : "ROLLBACK") < 0 && rc == 0)
		rc = -EIO;
	return rc;
}

int store_tlsa_get(struct store *s, const char *mx, int64_t now, struct store_tlsa *out,
		   size_t max)
{
	sqlite3_stmt *st = store_prepare(s,
					 "SELECT usage, selector, mtype, data FROM tlsa"
					 " WHERE mx = ?1 AND expires > ?2 ORDER BY rowid",
					 "si", mx, now);
	if (!st)
		return -EIO;
	size_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
		out[n].usage = (uint8_t)sqlite3_column_int(st, 0);
		out[n].selector = (uint8_t)sqlite3_column_int(st, 1);
		out[n].mtype = (uint8_t)sqlite3_column_int(st, 2);
		int len = sqlite3_column_bytes(st, 3);
		const void *blob = sqlite3_column_blob(st, 3);
		out[n].len = len > 0 && len <= STORE_TLSA_DATA_MAX ? (size_t)len : 0;
		if (out[n].len)
			memcpy(out[n].data, blob, out[n].len);
		n++;
	}
	store_release(s, st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_fail(s, "tlsa get");
	return (int)n;
}

int store_begin(struct store *s)
{
	return store_step_done(s, store_prepare(s, "BEGIN IMMEDIATE", ""), "begin");
}

int store_commit(struct store *s)
{
	return store_step_done(s, store_prepare(s, "COMMIT", ""), "commit");
}
