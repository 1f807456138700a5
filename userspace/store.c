/* store.c - see store.h for the contract.
 *
 * Concurrency: who writes, and why nothing is lost.
 *
 * Three kinds of process share the file: tlsgated (one long-lived
 * connection: packet-path writes and gate_flush() batches), up to four
 * tlsgate-probe processes at once (each opens the store, writes one
 * target's result in one transaction, closes) and the web page (a
 * read-only connection, web_store.c).
 *
 * "One writer" here means one write transaction at a time, not one writing
 * process: SQLite in WAL mode already serializes writers on its write lock,
 * and readers never block it nor are blocked by it. So:
 *   - every write transaction starts with BEGIN IMMEDIATE, which takes the
 *     write lock up front and, while another connection holds it, waits in
 *     the busy handler (sqlite3_busy_timeout, STORE_BUSY_MS). Never a
 *     deferred transaction that reads and then writes: its upgrade fails
 *     with SQLITE_BUSY at once, without the busy handler, when another
 *     connection committed in between. That is how store_open()'s schema
 *     transaction failed for about half of the probes started together,
 *     and their results were lost (issue 18);
 *   - a write that still fails with SQLITE_BUSY or SQLITE_LOCKED (busy
 *     timeout expired, WAL recovery) is rolled back and retried, up to
 *     STORE_WRITE_TRIES attempts with growing pauses; when it finally
 *     fails it is logged once, naming what was lost, and returned as -EIO
 *     to the caller: never dropped silently;
 *   - a caller's own transaction (store_begin ... store_commit) holds the
 *     write lock from its BEGIN IMMEDIATE on, so the writes inside cannot
 *     meet SQLITE_BUSY; store_begin() retries like any write, and when it
 *     finally fails the writes that follow run as their own (retried)
 *     transactions instead of being lost.
 * Handing the probe's results to the daemon to write (one writing process)
 * would add a protocol and a new way to lose them (daemon restarting or
 * busy) for what SQLite already serializes; write transactions here last
 * milliseconds, so waiting for the lock is short. */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* How long one attempt waits for the write lock, and how many attempts a
 * write gets. Together a bound (about 20 s) on how long a writer can stall,
 * reached only when another connection keeps the lock that long. */
#define STORE_BUSY_MS 5000
#define STORE_WRITE_TRIES 4

struct store {
	sqlite3 *db;
	struct store_stmt cache[STORE_STMT_CACHE];
	int busy_ms, tries;
	bool retrying;	   /* in store_write(): busy errors are logged there, once */
	int err;	   /* SQLite's extended code of the last failure */
	int tx_writes;	   /* writes in the caller's open transaction (store_begin) */
	unsigned int seed; /* backoff jitter */
};

static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_commit[] = "COMMIT";
static const char sql_rollback[] = "ROLLBACK";

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

static bool store_busy(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* Records the connection's last error; logs it unless it is contention met
 * inside store_write(), which retries and logs only what it finally loses. */
static int store_fail(struct store *s, const char *what)
{
	s->err = sqlite3_extended_errcode(s->db);
	if (!(s->retrying && store_busy(s->err)))
		log_warnx("store: %s: %s", what, sqlite3_errmsg(s->db));
	return -EIO;
}

/* sqlite3_exec() for the few statements run once per connection; returns
 * SQLite's code, logs nothing. */
static int store_exec_rc(struct store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		s->err = sqlite3_extended_errcode(s->db);
	return rc;
}

/* A pause before attempt n (1, 2, ...): about 10, 40, 160 ms, jittered so
 * that processes which collided do not collide again. */
static void store_backoff(struct store *s, int attempt)
{
	long ms = 10L << (2 * (attempt - 1 < 8 ? attempt - 1 : 8));
	ms += (long)(rand_r(&s->seed) % (unsigned int)(ms / 2 + 1));
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int store_run(struct store *s, const char *sql);

/* Runs fn (its writes) as one write transaction: BEGIN IMMEDIATE, fn,
 * COMMIT. Contention (SQLITE_BUSY/SQLITE_LOCKED after the busy timeout)
 * rolls back and tries again, up to s->tries attempts; when the last one
 * fails, "what key" is logged as lost and -EIO returned. Inside the
 * caller's transaction (store_begin) fn just runs: that transaction holds
 * the write lock already. fn's own results other than -EIO (-ENOENT,
 * -EINVAL) roll back and are returned as they are, without a retry. */
static int store_write(struct store *s, const char *what, const char *key,
		       int (*fn)(struct store *s, const void *arg), const void *arg)
{
	if (!sqlite3_get_autocommit(s->db)) {
		s->tx_writes++;
		return fn(s, arg);
	}
	int rc = -EIO;
	s->retrying = true;
	for (int attempt = 0; attempt < s->tries; attempt++) {
		if (attempt)
			store_backoff(s, attempt);
		s->err = SQLITE_OK;
		if (store_run(s, sql_begin) != SQLITE_OK) {
			rc = -EIO;
			if (store_busy(s->err))
				continue;
			break;
		}
		rc = fn(s, arg);
		if (rc == 0 && store_run(s, sql_commit) == SQLITE_OK) {
			s->retrying = false;
			return 0;
		}
		int err = s->err;
		if (!sqlite3_get_autocommit(s->db))
			store_run(s, sql_rollback);
		s->err = err;
		if (rc != 0 && rc != -EIO)
			break; /* fn's own answer, not a failure */
		rc = -EIO;
		if (!store_busy(err))
			break;
	}
	s->retrying = false;
	if (rc == -EIO)
		log_warnx("store: %s %s lost after %s: %s", what, key ? key : "",
			  store_busy(s->err) ? "retries" : "an error", sqlite3_errstr(s->err));
	return rc;
}

static int store_create_schema(struct store *s, const void *arg)
{
	(void)arg;
	char sql[128];
	snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '%d')",
		 STORE_SCHEMA_VERSION);
	if (store_exec_rc(s, store_schema) != SQLITE_OK || store_exec_rc(s, sql) != SQLITE_OK)
		return store_fail(s, "schema");
	return 0;
}

struct store *store_open(const char *path, bool readonly)
{
	struct store *s = xcalloc(1, sizeof(*s));
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	s->busy_ms = STORE_BUSY_MS;
	s->tries = STORE_WRITE_TRIES;
	s->seed = (unsigned int)getpid() ^ (unsigned int)time(NULL);
	if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		log_warnx("store: open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "no memory");
		goto fail;
	}
	/* The daemon, the probes and the web page share the file: wait for
	 * the write lock rather than fail (readers in WAL mode rarely wait). */
	sqlite3_busy_timeout(s->db, s->busy_ms);
	if (!readonly) {
		/* WAL: readers and the one writer do not block each other. Once
		 * set it stays with the file; switching needs a moment alone. */
		int rc = SQLITE_BUSY;
		for (int attempt = 0; attempt < s->tries && store_busy(rc); attempt++) {
			if (attempt)
				store_backoff(s, attempt);
			rc = store_exec_rc(s, "PRAGMA journal_mode=WAL");
		}
		if (rc != SQLITE_OK || store_exec_rc(s, "PRAGMA synchronous=NORMAL") != SQLITE_OK) {
			log_warnx("store: open %s: WAL mode: %s", path, sqlite3_errmsg(s->db));
			goto fail;
		}
		if (store_write(s, "schema of", path, store_create_schema, NULL) < 0)
			goto fail;
	}
	return s;
fail:
	store_close(s);
	return NULL;
}

void store_set_patience(struct store *s, int busy_ms, int tries)
{
	s->busy_ms = busy_ms > 0 ? busy_ms : 0;
	s->tries = tries > 0 ? tries : 1;
	sqlite3_busy_timeout(s->db, s->busy_ms);
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
	int ret = rc == SQLITE_DONE ? 0 : store_fail(s, what);
	store_release(s, st);
	return ret;
}

/* BEGIN IMMEDIATE, COMMIT, ROLLBACK: SQLite's code (s->err set), logs
 * nothing. */
static int store_run(struct store *s, const char *sql)
{
	sqlite3_stmt *st = store_stmt(s, sql);
	if (!st) {
		s->err = sqlite3_extended_errcode(s->db);
		return s->err ? s->err : SQLITE_ERROR;
	}
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		s->err = sqlite3_extended_errcode(s->db);
	store_release(s, st);
	return rc == SQLITE_DONE ? SQLITE_OK : (s->err ? s->err : rc);
}

static void store_copy(char *dst, size_t size, const unsigned char *src)
{
	snprintf(dst, size, "%s", src ? (const char *)src : "");
}

struct history_args {
	const char *mx;
	enum store_level level;
	uint16_t version, cipher;
	int64_t now;
};

static int history_record(struct store *s, const void *arg)
{
	const struct history_args *a = arg;
	const char *mx = a->mx;
	enum store_level level = a->level;
	uint16_t version = a->version, cipher = a->cipher;
	int64_t now = a->now;
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

int store_history_record(struct store *s, const char *mx, enum store_level level,
			 uint16_t version, uint16_t cipher, int64_t now)
{
	struct history_args a = { mx, level, version, cipher, now };
	return store_write(s, "TLS history of", mx, history_record, &a);
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

struct lock_args {
	const char *mx, *reason;
	int64_t now;
};

static int history_lock(struct store *s, const void *arg)
{
	const struct lock_args *a = arg;
	const char *mx = a->mx, *reason = a->reason;
	int64_t now = a->now;
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

int store_history_lock(struct store *s, const char *mx, const char *reason, int64_t now)
{
	struct lock_args a = { mx, reason, now };
	return store_write(s, "lock of", mx, history_lock, &a);
}

struct release_args {
	const char *mx, *by;
	int64_t now;
};

static int history_release(struct store *s, const void *arg)
{
	const struct release_args *a = arg;
	const char *mx = a->mx, *by = a->by;
	int64_t now = a->now;
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
	return rc;
}

int store_history_release(struct store *s, const char *mx, const char *by, int64_t now)
{
	struct release_args a = { mx, by, now };
	return store_write(s, "release of", mx, history_release, &a);
}

struct addr_mx_args {
	const char *addr, *mx, *domain;
	bool secure;
	int64_t expires;
};

static int addr_mx_set(struct store *s, const void *arg)
{
	const struct addr_mx_args *a = arg;
	const char *addr = a->addr, *mx = a->mx, *domain = a->domain;
	bool secure = a->secure;
	int64_t expires = a->expires;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO addr_mx(addr, mx, domain, secure, expires) VALUES(?1, ?2, ?3, ?4, ?5)"
		" ON CONFLICT(addr, mx, domain) DO UPDATE SET secure = ?4, expires = ?5",
		"sssii", addr, mx, domain ? domain : "", (int64_t)secure, expires);
	return store_step_done(s, st, "addr_mx set");
}

int store_addr_mx_set(struct store *s, const char *addr, const char *mx, const char *domain,
		      bool secure, int64_t expires)
{
	struct addr_mx_args a = { addr, mx, domain, secure, expires };
	return store_write(s, "MX mapping of", addr, addr_mx_set, &a);
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

/* The name an address goes by (see store.h): rows naming the bare address
 * itself are not names; expired rows are the address's last known names. */
int store_addr_mx_name(struct store *s, const char *addr, int64_t now, char mx[STORE_NAME_MAX],
		       char domain[STORE_NAME_MAX], bool *secure, bool *current)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"SELECT a.mx, a.domain, a.secure, a.expires > ?2,"
		" EXISTS(SELECT 1 FROM tls_history h WHERE h.mx = a.mx AND (h.level > 0 OR h.locked))"
		" AS known FROM addr_mx a WHERE a.addr = ?1 AND a.mx != ?1 AND a.mx != ''"
		" ORDER BY (a.secure AND a.expires > ?2) DESC, known DESC, a.secure DESC,"
		" a.expires > ?2 DESC, a.expires DESC, a.mx LIMIT 1",
		"si", addr, now);
	if (!st)
		return -EIO;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		store_copy(mx, STORE_NAME_MAX, sqlite3_column_text(st, 0));
		if (domain)
			store_copy(domain, STORE_NAME_MAX, sqlite3_column_text(st, 1));
		if (secure)
			*secure = sqlite3_column_int(st, 2) != 0;
		if (current)
			*current = sqlite3_column_int(st, 3) != 0;
	}
	store_release(s, st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : store_fail(s, "addr_mx name");
}

/* The strictest history over every identity of one destination (see
 * store.h). Rows come strictest first, so the first one names it. */
int store_history_get_any(struct store *s, const char *mx, const char *addr,
			  struct store_history *out)
{
	sqlite3_stmt *st = store_prepare(
		s,
		"SELECT mx, level, best_version, last_version, last_cipher, first_seen, last_seen,"
		" first_tls, last_tls, tls_count, plain_count, locked, lock_reason, locked_at"
		" FROM tls_history WHERE mx = ?1 OR mx = ?2"
		" OR mx IN (SELECT mx FROM addr_mx WHERE addr = ?2)"
		" ORDER BY locked DESC, level DESC, best_version DESC, last_seen DESC, mx",
		"ss", mx ? mx : "", addr ? addr : "");
	if (!st)
		return -EIO;
	int rc, rows = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		enum store_level level = (enum store_level)sqlite3_column_int(st, 1);
		uint16_t best = (uint16_t)sqlite3_column_int(st, 2);
		int64_t first_seen = sqlite3_column_int64(st, 5), last_seen = sqlite3_column_int64(st, 6);
		int64_t first_tls = sqlite3_column_int64(st, 7), last_tls = sqlite3_column_int64(st, 8);
		if (rows++ == 0) {
			memset(out, 0, sizeof(*out));
			store_copy(out->mx, sizeof(out->mx), sqlite3_column_text(st, 0));
			out->level = level;
			out->best_version = best;
			out->last_version = (uint16_t)sqlite3_column_int(st, 3);
			out->last_cipher = (uint16_t)sqlite3_column_int(st, 4);
			out->first_seen = first_seen;
			out->last_seen = last_seen;
			out->first_tls = first_tls;
			out->last_tls = last_tls;
			out->locked = sqlite3_column_int(st, 11) != 0;
			store_copy(out->lock_reason, sizeof(out->lock_reason),
				   sqlite3_column_text(st, 12));
			out->locked_at = sqlite3_column_int64(st, 13);
		} else {
			if (level > out->level)
				out->level = level;
			if (best > out->best_version)
				out->best_version = best;
			if (first_seen < out->first_seen)
				out->first_seen = first_seen;
			if (last_seen > out->last_seen)
				out->last_seen = last_seen;
			if (first_tls && (!out->first_tls || first_tls < out->first_tls))
				out->first_tls = first_tls;
			if (last_tls > out->last_tls)
				out->last_tls = last_tls;
		}
		out->tls_count += sqlite3_column_int64(st, 9);
		out->plain_count += sqlite3_column_int64(st, 10);
	}
	store_release(s, st);
	if (rc != SQLITE_DONE)
		return store_fail(s, "history get any");
	return rows ? 0 : -ENOENT;
}

static int event_add(struct store *s, const void *arg)
{
	const struct store_event *ev = arg;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO events(time, kind, client, server, mx, sender, recipient, rule,"
		" verdict, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
		"isssssssss", ev->time, ev->kind, ev->client, ev->server, ev->mx, ev->sender,
		ev->recipient, ev->rule, ev->verdict, ev->reason);
	return store_step_done(s, st, "event add");
}

int store_event_add(struct store *s, const struct store_event *ev)
{
	return store_write(s, "event", ev->kind, event_add, ev);
}

static int event_trim(struct store *s, const void *arg)
{
	sqlite3_stmt *st = store_prepare(
		s, "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1", "i",
		*(const int64_t *)arg);
	return store_step_done(s, st, "event trim");
}

int store_event_trim(struct store *s, int64_t max_rows)
{
	return store_write(s, "trim of", "events", event_trim, &max_rows);
}

struct policy_args {
	uint64_t serial;
	const char *sha256, *key_id;
	int64_t applied_at, expires;
	const char *body;
};

static int policy_set(struct store *s, const void *arg)
{
	const struct policy_args *a = arg;
	uint64_t serial = a->serial;
	const char *sha256 = a->sha256, *key_id = a->key_id, *body = a->body;
	int64_t applied_at = a->applied_at, expires = a->expires;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT OR REPLACE INTO policy_applied(serial, sha256, key_id, applied_at,"
		" expires, body) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
		"issiis", (int64_t)serial, sha256, key_id, applied_at, expires, body);
	return store_step_done(s, st, "policy set");
}

int store_policy_set(struct store *s, uint64_t serial, const char *sha256, const char *key_id,
		     int64_t applied_at, int64_t expires, const char *body)
{
	struct policy_args a = { serial, sha256, key_id, applied_at, expires, body };
	return store_write(s, "applied policy", sha256, policy_set, &a);
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

static int probe_add(struct store *s, const void *arg)
{
	const struct store_probe *p = arg;
	sqlite3_stmt *st = store_prepare(
		s,
		"INSERT INTO probe_results(time, domain, class, mx, addr, verdict, tls_version,"
		" cipher, dane, reason, detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
		"issssssssss", p->time, p->domain, p->cls, p->mx, p->addr, p->verdict,
		p->tls_version, p->cipher, p->dane, p->reason, p->detail);
	return store_step_done(s, st, "probe add");
}

int store_probe_add(struct store *s, const struct store_probe *p)
{
	if (!p->domain || !p->cls)
		return -EINVAL;
	return store_write(s, "probe result for", p->domain, probe_add, p);
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

struct tlsa_args {
	const char *mx;
	const struct store_tlsa *recs;
	size_t n;
	int64_t expires;
};

static int tlsa_set(struct store *s, const void *arg)
{
	const struct tlsa_args *a = arg;
	const char *mx = a->mx;
	const struct store_tlsa *recs = a->recs;
	size_t n = a->n;
	int64_t expires = a->expires;
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
	return rc;
}

int store_tlsa_set(struct store *s, const char *mx, const struct store_tlsa *recs, size_t n,
		   int64_t expires)
{
	struct tlsa_args a = { mx, recs, n, expires };
	return store_write(s, "TLSA records of", mx, tlsa_set, &a);
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
	if (!sqlite3_get_autocommit(s->db)) {
		log_warnx("store: begin: a transaction is already open");
		return -EIO;
	}
	for (int attempt = 0; attempt < s->tries; attempt++) {
		if (attempt)
			store_backoff(s, attempt);
		if (store_run(s, sql_begin) == SQLITE_OK) {
			s->tx_writes = 0;
			return 0;
		}
		if (!store_busy(s->err))
			break;
	}
	/* The writes that follow run as transactions of their own, each
	 * retried and reported: slower, but nothing is lost. */
	log_warnx("store: begin: %s; writing without a common transaction",
		  sqlite3_errstr(s->err));
	return -EIO;
}

int store_commit(struct store *s)
{
	if (sqlite3_get_autocommit(s->db))
		return 0; /* store_begin() failed: every write was committed alone */
	/* Holding the write lock, COMMIT meets no other writer; a busy answer
	 * (a reader in rollback-journal mode) keeps the transaction open. */
	for (int attempt = 0; attempt < s->tries; attempt++) {
		if (attempt)
			store_backoff(s, attempt);
		if (store_run(s, sql_commit) == SQLITE_OK)
			return 0;
		if (!store_busy(s->err) || sqlite3_get_autocommit(s->db))
			break;
	}
	int err = s->err;
	if (!sqlite3_get_autocommit(s->db))
		store_run(s, sql_rollback);
	log_warnx("store: commit: %d writes lost: %s", s->tx_writes, sqlite3_errstr(err));
	return -EIO;
}
