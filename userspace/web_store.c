/* web_store.c - see web_store.h for the contract. */
#include "web_store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "tls_parse.h"

#define WS_MX_MAX 32       /* MX hosts described per domain */
#define WS_ROWS_MAX 256    /* rows read per domain query */
#define WS_LOCKS_MAX 1000

/* Per-MX summaries of a table, see ws_blocks(). */
struct ws_cache {
	json_t *map; /* MX name -> object */
	int64_t max_id;
	int64_t built_ms;
};

struct web_store {
	char *path;
	sqlite3 *db;
	time_t last_warn;
	struct ws_cache blocks, probe_recs;
};

struct web_store *web_store_new(const char *path)
{
	struct web_store *ws = xcalloc(1, sizeof(*ws));
	ws->path = xstrdup(path ? path : "");
	return ws;
}

void web_store_free(struct web_store *ws)
{
	if (!ws)
		return;
	sqlite3_close(ws->db);
	json_decref(ws->blocks.map);
	json_decref(ws->probe_recs.map);
	free(ws->path);
	free(ws);
}

/* One line every 10 s at most: a page polled every few seconds against a
 * missing store must not flood the log. */
static void ws_warn(struct web_store *ws, const char *what, const char *detail)
{
	time_t now = time(NULL);
	if (now - ws->last_warn < 10)
		return;
	ws->last_warn = now;
	log_warnx("web store %s: %s: %s", ws->path, what, detail);
}

/* Whether path+suffix exists. */
static bool ws_exists(const char *path, const char *suffix)
{
	char name[4096];
	struct stat st;
	if ((size_t)snprintf(name, sizeof(name), "%s%s", path, suffix) >= sizeof(name))
		return false;
	return lstat(name, &st) == 0;
}

/* "file:PATH?readonly_shm=1" with PATH's URI characters escaped. */
static char *ws_readonly_uri(const char *path)
{
	size_t len = strlen(path);
	char *uri = xmalloc(3 * len + 32), *o = uri;
	o += sprintf(o, "file:%s", path[0] == '/' ? "//" : "");
	for (const char *p = path; *p; p++)
		o += strchr("%?#", *p) ? sprintf(o, "%%%02x", (unsigned char)*p) : sprintf(o, "%c", *p);
	strcpy(o, "?readonly_shm=1");
	return uri;
}

/* A process that cannot write the store (the web process) must create
 * nothing next to it: a -wal or -shm of its own would be the writer's
 * wal-index, one it could corrupt and an unprivileged inspector could not
 * open. So it opens only once the writer has made both (a reader keeps
 * them from being removed) and opens the -shm read-only (readonly_shm),
 * which SQLite then reads without ever writing it. */
static int ws_connect(struct web_store *ws)
{
	if (ws->db)
		return 0;
	bool reader = faccessat(AT_FDCWD, ws->path, W_OK, AT_EACCESS) < 0;
	if (reader && (!ws_exists(ws->path, "-wal") || !ws_exists(ws->path, "-shm"))) {
		ws_warn(ws, "open", "no -wal and -shm yet: waiting for the daemon to open the store");
		return -EAGAIN;
	}
	if (!reader && geteuid() != 0)
		ws_warn(ws, "open", "this process may write the store: it should only read it");
	char *uri = reader ? ws_readonly_uri(ws->path) : NULL;
	int rc = sqlite3_open_v2(uri ? uri : ws->path, &ws->db,
				 SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
	free(uri);
	if (rc != SQLITE_OK) {
		ws_warn(ws, "open", ws->db ? sqlite3_errmsg(ws->db) : "no memory");
		sqlite3_close(ws->db);
		ws->db = NULL;
		return -EIO;
	}
	sqlite3_busy_timeout(ws->db, 500);
	sqlite3_exec(ws->db, "PRAGMA query_only=1", NULL, NULL, NULL);
	return 0;
}

/* After an I/O-level error the connection is dropped and reopened on the
 * next request (the daemon may have recreated the file). */
static void ws_reset(struct web_store *ws, int rc)
{
	int prim = rc & 0xff;
	if (prim == SQLITE_CORRUPT || prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN ||
	    prim == SQLITE_NOTADB) {
		sqlite3_close(ws->db);
		ws->db = NULL;
	}
}

/* Prepares sql and binds fmt ('s' text, may be NULL; 'i' int64). Returns
 * 0, -ENOENT when a table or column is missing (a module that writes it
 * has not run yet), or -EIO. */
static int ws_prepare(struct web_store *ws, sqlite3_stmt **out, const char *sql, const char *fmt,
		      ...)
{
	*out = NULL;
	if (ws_connect(ws) < 0)
		return -EIO;
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(ws->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		const char *msg = sqlite3_errmsg(ws->db);
		if (!strncmp(msg, "no such table", 13) || !strncmp(msg, "no such column", 14))
			return -ENOENT;
		ws_warn(ws, "prepare", msg);
		ws_reset(ws, rc);
		return -EIO;
	}
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		if (fmt[i] == 's') {
			const char *v = va_arg(ap, const char *);
			rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(st, i + 1);
		} else {
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		}
		if (rc != SQLITE_OK) {
			va_end(ap);
			ws_warn(ws, "bind", sqlite3_errmsg(ws->db));
			sqlite3_finalize(st);
			return -EIO;
		}
	}
	va_end(ap);
	*out = st;
	return 0;
}

/* sqlite3_step; SQLITE_ROW or SQLITE_DONE, anything else logged. */
static int ws_step(struct web_store *ws, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		ws_warn(ws, "step", sqlite3_errmsg(ws->db));
		ws_reset(ws, rc);
	}
	return rc;
}

/* A JSON string that is always valid: bytes that are not UTF-8 (the store
 * keeps whatever the wire had) become '?'. */
static json_t *ws_string(const char *s)
{
	if (!s)
		return json_null();
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

static json_t *ws_column(sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, i));
	case SQLITE_NULL:
		return json_null();
	default:
		return ws_string((const char *)sqlite3_column_text(st, i));
	}
}

static const char *ws_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? (const char *)t : "";
}

/* "TLSv1.2" as wolfSSL and posttls-finger spell it; NULL for 0. */
static json_t *ws_version(uint16_t v)
{
	static const char *const names[] = { "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3" };
	if (v == 0)
		return json_null();
	if (v >= 0x0300 && v <= 0x0304)
		return json_string(names[v - 0x0300]);
	char buf[32];
	return json_string(tls_version_format(v, buf, sizeof(buf)));
}

static json_t *ws_cipher(uint16_t version, uint16_t cipher)
{
	if (version == 0)
		return json_null();
	const char *n = tls_cipher_name(cipher);
	if (n)
		return json_string(n);
	char buf[16];
	snprintf(buf, sizeof(buf), "0x%04x", cipher);
	return json_string(buf);
}

/* ---- classes (web_store.h has the table) ----------------------------------- */

static const char *const ws_class_names[] = {
	[WEB_CLASS_UNKNOWN] = "unknown",	 [WEB_CLASS_PLAINTEXT] = "plaintext",
	[WEB_CLASS_TLS] = "tls",		 [WEB_CLASS_DANE] = "dane",
	[WEB_CLASS_DANE_FAILING] = "dane-failing", [WEB_CLASS_LOCKED] = "locked",
};
static const char *const ws_class_labels[] = {
	[WEB_CLASS_UNKNOWN] = "TLS?",		 [WEB_CLASS_PLAINTEXT] = "no TLS",
	[WEB_CLASS_TLS] = "TLS",		 [WEB_CLASS_DANE] = "DANE ok",
	[WEB_CLASS_DANE_FAILING] = "DANE failing", [WEB_CLASS_LOCKED] = "locked",
};

const char *web_class_name(enum web_class c)
{
	return (unsigned)c <= WEB_CLASS_LOCKED ? ws_class_names[c] : "unknown";
}

const char *web_class_label(enum web_class c)
{
	return (unsigned)c <= WEB_CLASS_LOCKED ? ws_class_labels[c] : "TLS?";
}

const char *web_store_label(const char *cls)
{
	for (int c = 0; c <= WEB_CLASS_LOCKED; c++)
		if (cls && !strcmp(cls, ws_class_names[c]))
			return ws_class_labels[c];
	return "TLS?";
}

static enum web_class ws_level_class(int level)
{
	switch (level) {
	case STORE_LEVEL_DANE:
		return WEB_CLASS_DANE;
	case STORE_LEVEL_TLS:
		return WEB_CLASS_TLS;
	case STORE_LEVEL_PLAINTEXT:
		return WEB_CLASS_PLAINTEXT;
	default:
		return WEB_CLASS_UNKNOWN;
	}
}

/* One MX host, in the order of the table in web_store.h. */
static enum web_class ws_classify_mx(const struct web_mx_facts *f)
{
	if (f->locked)
		return WEB_CLASS_LOCKED;
	/* The newest DANE verification: the probe's when it said anything
	 * about DANE, a wire mismatch at or after it. */
	int64_t probe_dane_at = f->probe_dane != WEB_DANE_UNSEEN ? f->probe_time : 0;
	if (f->probe_dane == WEB_DANE_FAIL ||
	    (f->wire_mismatch_at && f->wire_mismatch_at >= probe_dane_at))
		return WEB_CLASS_DANE_FAILING;
	if (f->probe_dane == WEB_DANE_MATCH)
		return WEB_CLASS_DANE;
	int level = f->history_level > f->probe_level ? (int)f->history_level : (int)f->probe_level;
	/* A DANE history whose newest probe finds DANE no longer applies
	 * (no validated TLSA now): protected by TLS, not verified. */
	if (level == STORE_LEVEL_DANE && f->probe_dane == WEB_DANE_NOT_APPLICABLE)
		level = STORE_LEVEL_TLS;
	return ws_level_class(level);
}

/* How pressing a class is for the destination: the lowest rank wins. */
static int ws_class_rank(enum web_class c)
{
	switch (c) {
	case WEB_CLASS_LOCKED:
		return 0;
	case WEB_CLASS_DANE_FAILING:
		return 1;
	case WEB_CLASS_PLAINTEXT:
		return 2;
	case WEB_CLASS_UNKNOWN:
		return 3;
	case WEB_CLASS_TLS:
		return 4;
	default:
		return 5;
	}
}

enum web_class web_store_classify(const struct web_mx_facts *mx, size_t n,
				  enum web_class *per_mx)
{
	enum web_class worst = WEB_CLASS_UNKNOWN;
	for (size_t i = 0; i < n; i++) {
		enum web_class c = ws_classify_mx(&mx[i]);
		if (per_mx)
			per_mx[i] = c;
		if (i == 0 || ws_class_rank(c) < ws_class_rank(worst))
			worst = c;
	}
	return worst;
}

static int ws_verdict_level(const char *v)
{
	if (!strcmp(v, "dane"))
		return STORE_LEVEL_DANE;
	if (!strcmp(v, "tls") || !strcmp(v, "tls-unauthenticated"))
		return STORE_LEVEL_TLS;
	if (!strcmp(v, "plaintext"))
		return STORE_LEVEL_PLAINTEXT;
	return STORE_LEVEL_NONE;
}

static enum web_dane_seen ws_verdict_dane(const char *v)
{
	if (!strcmp(v, "dane-fail"))
		return WEB_DANE_FAIL;
	if (!strcmp(v, "dane"))
		return WEB_DANE_MATCH;
	if (!strcmp(v, "tls") || !strcmp(v, "tls-unauthenticated") || !strcmp(v, "plaintext"))
		return WEB_DANE_NOT_APPLICABLE;
	return WEB_DANE_UNSEEN;
}

/* FAIL over MATCH over NOT_APPLICABLE over UNSEEN: one failing address is
 * enough for mail to be deferred. */
static enum web_dane_seen ws_dane_merge(enum web_dane_seen a, enum web_dane_seen b)
{
	static const int prio[] = { [WEB_DANE_UNSEEN] = 0, [WEB_DANE_NOT_APPLICABLE] = 1,
				    [WEB_DANE_MATCH] = 2, [WEB_DANE_FAIL] = 3 };
	return prio[b] > prio[a] ? b : a;
}

/* ---- what the events and the probe results say per MX ------------------------ */

/* Per-MX summaries over whole tables that have no index by MX (events,
 * probe_results), rebuilt by one GROUP BY when the table's newest id has
 * changed, at most once a second: a lookup must not scan 100,000 events. */

static int64_t ws_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0, with *rebuild true when the cache was emptied to be rebuilt; -ENOENT when the table
 * does not exist yet; -EIO. */
static int ws_cache_stale(struct web_store *ws, struct ws_cache *c, const char *max_sql,
			  bool *rebuild)
{
	sqlite3_stmt *st;
	*rebuild = false;
	int rc = ws_prepare(ws, &st, max_sql, "");
	if (rc < 0)
		return rc;
	rc = ws_step(ws, st);
	int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return -EIO;
	int64_t now = ws_mono_ms();
	if (c->map && (id == c->max_id || now - c->built_ms < 1000))
		return 0;
	json_decref(c->map);
	c->map = json_object();
	c->max_id = id;
	c->built_ms = now;
	*rebuild = true;
	return 0;
}

static json_t *ws_cache_entry(struct ws_cache *c, const char *mx)
{
	json_t *o = json_object_get(c->map, mx);
	if (!o) {
		o = json_object();
		json_object_set_new(c->map, mx, o);
	}
	return o;
}

/* Block events per MX: {"n", "time", "rule", "verdict", "reason"} of the
 * newest, and "mismatch"/"mismatch_reason": the newest block because the
 * certificate did not match the DANE TLSA records on the wire. Events keep
 * decide.c's text, not its reason code, so the two DANE mismatch texts are
 * matched ("certificate does not match the DANE TLSA records of", "recent
 * probe found a certificate not matching the DANE TLSA records of"). */
static json_t *ws_blocks(struct web_store *ws)
{
	bool rebuild;
	int rc = ws_cache_stale(ws, &ws->blocks, "SELECT coalesce(max(id), 0) FROM events", &rebuild);
	if (rc == -ENOENT)
		return NULL;
	if (rc < 0)
		return NULL;
	if (!rebuild)
		return ws->blocks.map;
	sqlite3_stmt *st;
	/* SQLite: with a single max(), the bare columns come from its row. */
	rc = ws_prepare(ws, &st,
			"SELECT mx, count(*), max(id), time, rule, verdict, reason FROM events"
			" WHERE kind = 'block' AND mx IS NOT NULL AND mx != '' GROUP BY mx",
			"");
	while (st && (rc = ws_step(ws, st)) == SQLITE_ROW) {
		json_t *o = ws_cache_entry(&ws->blocks, ws_text(st, 0));
		json_object_set_new(o, "n", json_integer(sqlite3_column_int64(st, 1)));
		json_object_set_new(o, "time", ws_column(st, 3));
		json_object_set_new(o, "rule", ws_column(st, 4));
		json_object_set_new(o, "verdict", ws_column(st, 5));
		json_object_set_new(o, "reason", ws_column(st, 6));
	}
	if (st)
		sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		ws->blocks.max_id = -1; /* read again next time */
		return NULL;
	}
	rc = ws_prepare(ws, &st,
			"SELECT mx, max(time), reason FROM events WHERE kind = 'block'"
			" AND mx IS NOT NULL AND mx != ''"
			" AND (reason LIKE '%does not match the DANE TLSA%'"
			"  OR reason LIKE '%not matching the DANE TLSA%') GROUP BY mx",
			"");
	while (st && (rc = ws_step(ws, st)) == SQLITE_ROW) {
		json_t *o = ws_cache_entry(&ws->blocks, ws_text(st, 0));
		json_object_set_new(o, "mismatch", json_integer(sqlite3_column_int64(st, 1)));
		json_object_set_new(o, "mismatch_reason", ws_column(st, 2));
	}
	if (st)
		sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		ws->blocks.max_id = -1; /* read again next time */
		return NULL;
	}
	return ws->blocks.map;
}

/* History records the probe wrote per MX (one per address that reached
 * TLS or plaintext: tlsgate-probe's db_record), to tell them from flows:
 * {"n"}. */
static json_t *ws_probe_records(struct web_store *ws)
{
	bool rebuild;
	int rc = ws_cache_stale(ws, &ws->probe_recs,
				"SELECT coalesce(max(id), 0) FROM probe_results", &rebuild);
	if (rc < 0)
		return NULL;
	if (!rebuild)
		return ws->probe_recs.map;
	sqlite3_stmt *st;
	rc = ws_prepare(ws, &st,
			"SELECT coalesce(mx, addr), count(*) FROM probe_results"
			" WHERE coalesce(mx, addr) IS NOT NULL"
			" AND (tls_version IS NOT NULL OR verdict = 'plaintext') GROUP BY 1",
			"");
	while (st && (rc = ws_step(ws, st)) == SQLITE_ROW)
		json_object_set_new(ws_cache_entry(&ws->probe_recs, ws_text(st, 0)), "n",
				    json_integer(sqlite3_column_int64(st, 1)));
	if (st)
		sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		ws->probe_recs.max_id = -1;
		return NULL;
	}
	return ws->probe_recs.map;
}

/* ---- one domain ---------------------------------------------------------- */

struct ws_mx {
	char name[STORE_NAME_MAX];
	json_t *addrs;     /* array of address strings (addr_mx) */
	int dns_rows, dns_secure;
	json_t *probe;     /* array of probe rows for this MX, or NULL */
	int probe_level;
	enum web_dane_seen probe_dane;
	bool probe_tlsa_secure; /* a verdict that needs validated TLSA */
	bool probe_bogus;       /* a lookup the validator found bogus */
	const char *dane_reason; /* borrowed from probe rows */
	const char *tlsa;  /* borrowed from probe rows */
};

struct ws_domain {
	struct ws_mx mx[WS_MX_MAX];
	size_t n;
	int64_t probe_time;
	char probe_class[32];
	json_t *probe_reason; /* domain-level probe row reason */
};

static struct ws_mx *ws_mx_get(struct ws_domain *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->mx[i].name, name))
			return &d->mx[i];
	if (d->n == WS_MX_MAX || !name[0])
		return NULL;
	struct ws_mx *m = &d->mx[d->n++];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->addrs = json_array();
	return m;
}

static void ws_domain_free(struct ws_domain *d)
{
	for (size_t i = 0; i < d->n; i++) {
		json_decref(d->mx[i].addrs);
		json_decref(d->mx[i].probe);
	}
	json_decref(d->probe_reason);
}

static int ws_load_dns(struct web_store *ws, struct ws_domain *d, const char *domain)
{
	sqlite3_stmt *st;
	int rc = ws_prepare(ws, &st,
			    "SELECT mx, addr, secure FROM addr_mx WHERE domain = ?1"
			    " ORDER BY mx, addr LIMIT ?2",
			    "si", domain, (int64_t)WS_ROWS_MAX);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	while ((rc = ws_step(ws, st)) == SQLITE_ROW) {
		struct ws_mx *m = ws_mx_get(d, ws_text(st, 0));
		if (!m)
			continue;
		json_array_append_new(m->addrs, ws_string(ws_text(st, 1)));
		m->dns_rows++;
		m->dns_secure += sqlite3_column_int(st, 2) != 0;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* The validator's word as tlsgate-probe keeps it: resolver.c's failure
 * text says "bogus" when DNSSEC validation failed. */
static bool ws_reason_bogus(const char *reason)
{
	return reason && strstr(reason, "bogus");
}

/* The newest probe of domain: every row written at that time. */
static int ws_load_probe(struct web_store *ws, struct ws_domain *d, const char *domain)
{
	sqlite3_stmt *st;
	int rc = ws_prepare(ws, &st,
			    "SELECT time, class FROM probe_results WHERE domain = ?1"
			    " ORDER BY time DESC, id DESC LIMIT 1",
			    "s", domain);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	rc = ws_step(ws, st);
	if (rc == SQLITE_ROW) {
		d->probe_time = sqlite3_column_int64(st, 0);
		snprintf(d->probe_class, sizeof(d->probe_class), "%s", ws_text(st, 1));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? 0 : -EIO;

	rc = ws_prepare(ws, &st,
			"SELECT mx, addr, verdict, tls_version, cipher, dane, reason"
			" FROM probe_results WHERE domain = ?1 AND time = ?2 ORDER BY id LIMIT ?3",
			"sii", domain, d->probe_time, (int64_t)WS_ROWS_MAX);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	while ((rc = ws_step(ws, st)) == SQLITE_ROW) {
		if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
			json_decref(d->probe_reason);
			d->probe_reason = ws_column(st, 6);
			continue;
		}
		struct ws_mx *m = ws_mx_get(d, ws_text(st, 0));
		if (!m)
			continue;
		if (!m->probe)
			m->probe = json_array();
		json_t *row = json_object();
		json_object_set_new(row, "addr", ws_column(st, 1));
		json_object_set_new(row, "verdict", ws_column(st, 2));
		json_object_set_new(row, "tls_version", ws_column(st, 3));
		json_object_set_new(row, "cipher", ws_column(st, 4));
		json_object_set_new(row, "tlsa", ws_column(st, 5));
		json_object_set_new(row, "reason", ws_column(st, 6));
		json_array_append_new(m->probe, row);
		const char *v = ws_text(st, 2);
		/* The best any address of the MX reached: one address that
		 * cannot be reached says nothing about the others. */
		int lvl = ws_verdict_level(v);
		if (lvl > m->probe_level)
			m->probe_level = lvl;
		enum web_dane_seen ds = ws_verdict_dane(v);
		if (ds != m->probe_dane && ws_dane_merge(m->probe_dane, ds) == ds)
			m->dane_reason = json_string_value(json_object_get(row, "reason"));
		m->probe_dane = ws_dane_merge(m->probe_dane, ds);
		/* dane, dane-fail and tls-unauthenticated exist only for a
		 * DNSSEC-secure TLSA RRset (probe.h). */
		m->probe_tlsa_secure |= !strcmp(v, "dane") || !strcmp(v, "dane-fail") ||
					!strcmp(v, "tls-unauthenticated");
		m->probe_bogus |= !strcmp(v, "dns-fail") && ws_reason_bogus(ws_text(st, 6));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* DNSSEC of one MX host, derived from what the store keeps (the probe
 * stores no per-zone validation state): bogus when the newest probe's
 * lookup for it failed validation; secure when it saw validated TLSA
 * (a DANE verdict), validated TLSA records are stored for it, or an
 * address of it was recorded from a validated answer; unknown otherwise.
 * "insecure" is never derived: an addr_mx row with secure = 0 may be a
 * hint from the gateway written over the probe's validated row. */
static const char *ws_mx_dnssec(struct web_store *ws, const struct ws_mx *m, int64_t now,
				const char **basis)
{
	if (m->probe_bogus) {
		*basis = "probe: DNSSEC validation failed (bogus)";
		return "bogus";
	}
	if (m->probe_tlsa_secure) {
		*basis = "probe: DNSSEC-validated TLSA records";
		return "secure";
	}
	sqlite3_stmt *st;
	if (ws_prepare(ws, &st, "SELECT 1 FROM tlsa WHERE mx = ?1 AND expires > ?2 LIMIT 1", "si",
		       m->name, now) == 0) {
		int rc = ws_step(ws, st);
		sqlite3_finalize(st);
		if (rc == SQLITE_ROW) {
			*basis = "stored DNSSEC-validated TLSA records";
			return "secure";
		}
	}
	if (m->dns_secure > 0) {
		*basis = "probe: DNSSEC-validated address records";
		return "secure";
	}
	*basis = m->dns_rows || m->probe ? "no DNSSEC-validated answer stored for it"
					 : "nothing resolved for it";
	return "unknown";
}

/* The per-MX JSON beside the facts the class needs. */
struct ws_mx_out {
	json_t *o;
	struct web_mx_facts f;
	const char *dnssec, *dnssec_basis;
	int64_t flows, blocks, last_block;
	json_t *last_block_obj; /* borrowed from the cache */
	json_t *mismatch_reason; /* borrowed */
	char lock_reason[STORE_TEXT_MAX];
};

/* Fills one MX object and its facts; returns 0 or -EIO. *checked and
 * *tls_at rise to the newest evidence; *version and *cipher take the
 * newest TLS. */
static int ws_describe_mx(struct web_store *ws, struct ws_mx *m, struct ws_mx_out *mo,
			  int64_t probe_time, int64_t now, int64_t *checked, int64_t *tls_at,
			  json_t **version, json_t **cipher)
{
	sqlite3_stmt *st;
	json_t *o = mo->o;
	int rc = ws_prepare(ws, &st,
			    "SELECT level, best_version, last_version, last_cipher, first_seen,"
			    " last_seen, first_tls, last_tls, tls_count, plain_count, locked,"
			    " lock_reason FROM tls_history WHERE mx = ?1",
			    "s", m->name);
	if (rc == -EIO)
		return rc;
	json_object_set_new(o, "name", ws_string(m->name));
	json_object_set_new(o, "addresses", json_incref(m->addrs));
	int64_t records = 0;
	rc = st ? ws_step(ws, st) : SQLITE_DONE;
	if (rc == SQLITE_ROW) {
		mo->f.history_level = (enum store_level)sqlite3_column_int(st, 0);
		uint16_t lv = (uint16_t)sqlite3_column_int(st, 2);
		uint16_t lc = (uint16_t)sqlite3_column_int(st, 3);
		int64_t last_seen = sqlite3_column_int64(st, 5);
		int64_t last_tls = sqlite3_column_int64(st, 7);
		bool lk = sqlite3_column_int(st, 10) != 0;
		records = sqlite3_column_int64(st, 8) + sqlite3_column_int64(st, 9);
		json_object_set_new(o, "best_version",
				    ws_version((uint16_t)sqlite3_column_int(st, 1)));
		json_object_set_new(o, "tls_version", ws_version(lv));
		json_object_set_new(o, "cipher", ws_cipher(lv, lc));
		json_object_set_new(o, "first_seen", ws_column(st, 4));
		json_object_set_new(o, "last_seen", ws_column(st, 5));
		json_object_set_new(o, "first_tls", ws_column(st, 6));
		json_object_set_new(o, "last_tls", ws_column(st, 7));
		json_object_set_new(o, "tls_count", ws_column(st, 8));
		json_object_set_new(o, "plain_count", ws_column(st, 9));
		json_object_set_new(o, "locked", json_boolean(lk));
		json_object_set_new(o, "lock_reason", lk ? ws_column(st, 11) : json_null());
		if (lk)
			snprintf(mo->lock_reason, sizeof(mo->lock_reason), "%s", ws_text(st, 11));
		mo->f.locked = lk;
		if (last_seen > *checked)
			*checked = last_seen;
		if (lv && last_tls > *tls_at) {
			*tls_at = last_tls;
			json_decref(*version);
			json_decref(*cipher);
			*version = ws_version(lv);
			*cipher = ws_cipher(lv, lc);
		}
	} else {
		json_object_set_new(o, "tls_version", json_null());
		json_object_set_new(o, "cipher", json_null());
		json_object_set_new(o, "last_seen", json_null());
		json_object_set_new(o, "locked", json_false());
		json_object_set_new(o, "lock_reason", json_null());
	}
	if (st)
		sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -EIO;
	/* A probe result fills in what flows have not shown (yet). */
	if (m->probe) {
		json_t *row;
		size_t i;
		json_array_foreach(m->probe, i, row)
		{
			json_t *pv = json_object_get(row, "tls_version");
			if (json_is_null(json_object_get(o, "tls_version")) && json_is_string(pv)) {
				json_object_set(o, "tls_version", pv);
				json_object_set(o, "cipher", json_object_get(row, "cipher"));
			}
			if (json_is_string(json_object_get(row, "tlsa")) && !m->tlsa)
				m->tlsa = json_string_value(json_object_get(row, "tlsa"));
		}
		if (*version == NULL && json_is_string(json_object_get(o, "tls_version"))) {
			*version = json_incref(json_object_get(o, "tls_version"));
			*cipher = json_incref(json_object_get(o, "cipher"));
		}
		mo->f.probe_time = probe_time;
		mo->f.probe_level = (enum store_level)m->probe_level;
		mo->f.probe_dane = m->probe_dane;
	}
	/* Flows: history records less those the probe wrote. */
	json_t *pr = json_object_get(ws_probe_records(ws), m->name);
	int64_t flows = records - json_integer_value(json_object_get(pr, "n"));
	mo->flows = flows > 0 ? flows : 0;
	json_t *bl = json_object_get(ws_blocks(ws), m->name);
	mo->blocks = json_integer_value(json_object_get(bl, "n"));
	mo->last_block = json_integer_value(json_object_get(bl, "time"));
	mo->last_block_obj = bl && mo->blocks ? bl : NULL;
	mo->f.wire_mismatch_at = json_integer_value(json_object_get(bl, "mismatch"));
	mo->mismatch_reason = json_object_get(bl, "mismatch_reason");
	mo->dnssec = ws_mx_dnssec(ws, m, now, &mo->dnssec_basis);

	json_object_set_new(o, "flows", json_integer(mo->flows));
	json_object_set_new(o, "blocks", json_integer(mo->blocks));
	json_object_set_new(o, "dnssec", json_string(mo->dnssec));
	json_object_set_new(o, "dnssec_basis", json_string(mo->dnssec_basis));
	json_object_set_new(o, "tlsa", m->tlsa ? json_string(m->tlsa) : json_null());
	json_object_set_new(o, "probe", m->probe ? json_incref(m->probe) : json_null());
	/* The newest DANE verification, as ws_classify_mx reads it. */
	const struct web_mx_facts *f = &mo->f;
	json_t *dane = json_null();
	int64_t probe_dane_at = f->probe_dane != WEB_DANE_UNSEEN ? f->probe_time : 0;
	if (f->wire_mismatch_at && f->wire_mismatch_at >= probe_dane_at &&
	    f->probe_dane != WEB_DANE_FAIL)
		dane = json_pack("{s:s,s:I,s:s,s:O}", "result", "fail", "time",
				 (json_int_t)f->wire_mismatch_at, "source", "wire", "reason",
				 mo->mismatch_reason ? mo->mismatch_reason : json_null());
	else if (f->probe_dane == WEB_DANE_FAIL || f->probe_dane == WEB_DANE_MATCH)
		dane = json_pack("{s:s,s:I,s:s,s:s?}", "result",
				 f->probe_dane == WEB_DANE_FAIL ? "fail" : "match", "time",
				 (json_int_t)f->probe_time, "source", "probe", "reason",
				 m->dane_reason);
	else if (f->history_level == STORE_LEVEL_DANE && f->probe_dane == WEB_DANE_UNSEEN)
		dane = json_pack("{s:s,s:n,s:s,s:s}", "result", "match", "time", "source",
				 "history", "reason",
				 "a flow or probe verified the certificate (TLS history)");
	json_object_set_new(o, "dane", dane);
	return 0;
}

/* Why an MX has its class, or NULL when the class says it all. */
static json_t *ws_why(enum web_class c, const struct ws_mx_out *mo)
{
	json_t *dane = json_object_get(mo->o, "dane");
	switch (c) {
	case WEB_CLASS_LOCKED:
		return json_string(mo->lock_reason[0] ? mo->lock_reason
						      : "locked after a possible downgrade");
	case WEB_CLASS_DANE_FAILING: {
		json_t *r = json_object_get(dane, "reason");
		if (json_is_string(r))
			return json_incref(r);
		return json_string("the certificate did not match the DANE TLSA records");
	}
	case WEB_CLASS_DANE:
		return json_string(!strcmp(json_string_value(json_object_get(dane, "source")) ?: "",
					   "probe")
					   ? "the probe verified the certificate against the TLSA records"
					   : "a flow was verified against the TLSA records (TLS history)");
	case WEB_CLASS_TLS:
		if (mo->f.history_level == STORE_LEVEL_DANE)
			return json_string("DANE once verified; the newest probe found no usable "
					   "DNSSEC-validated TLSA records");
		return json_null();
	default:
		return json_null();
	}
}

/* Describes a domain (mx_only NULL) or a lone MX host (domain NULL). */
static json_t *ws_describe(struct web_store *ws, const char *domain, const char *mx_only,
			   int64_t now, bool *needs_probe)
{
	struct ws_domain d = { .n = 0 };
	struct ws_mx_out *mos = NULL;
	json_t *version = NULL, *cipher = NULL, *mxs = json_array();
	int64_t checked = 0, tls_at = 0;
	json_t *out = NULL;
	size_t n = 0;

	if (domain) {
		if (ws_load_dns(ws, &d, domain) < 0 || ws_load_probe(ws, &d, domain) < 0)
			goto done;
		/* No MX known: mail goes to the domain's own address (RFC 5321
		 * implicit MX), which is how history then names it. */
		if (d.n == 0)
			ws_mx_get(&d, domain);
	} else {
		ws_mx_get(&d, mx_only);
	}
	mos = xcalloc(d.n ? d.n : 1, sizeof(*mos));
	struct web_mx_facts facts[WS_MX_MAX];
	for (size_t i = 0; i < d.n; i++) {
		struct ws_mx_out *mo = &mos[n];
		mo->o = json_object();
		if (ws_describe_mx(ws, &d.mx[i], mo, d.probe_time, now, &checked, &tls_at,
				   &version, &cipher) < 0)
			goto done; /* mo->o freed there */
		/* The implicit MX with nothing recorded is no real MX. */
		if (domain && d.n == 1 && !strcmp(d.mx[i].name, domain) &&
		    json_is_null(json_object_get(mo->o, "last_seen")) && !d.mx[i].dns_rows &&
		    !d.mx[i].probe && !mo->blocks) {
			json_decref(mo->o);
			mo->o = NULL;
			break;
		}
		facts[n++] = mo->f;
	}
	enum web_class per_mx[WS_MX_MAX];
	enum web_class cls = web_store_classify(facts, n, per_mx);
	if (d.probe_time > checked)
		checked = d.probe_time;

	/* The destination's DNSSEC: bogus if any lookup was; secure if every
	 * MX is; else unknown (web_store.h, ws_mx_dnssec). */
	const char *dnssec = n ? "secure" : "unknown", *basis = "nothing resolved for it";
	const char *tlsa = NULL;
	int64_t flows = 0, blocks = 0;
	json_t *last_block = NULL;
	int64_t last_block_at = 0;
	bool locked = false, wire_news = false;
	json_t *why = json_null();
	if (n)
		basis = "every MX host: DNSSEC-validated records stored";
	for (size_t i = 0; i < n; i++) {
		struct ws_mx_out *mo = &mos[i];
		if (!strcmp(mo->dnssec, "bogus") && strcmp(dnssec, "bogus")) {
			dnssec = "bogus";
			basis = mo->dnssec_basis;
		} else if (!strcmp(mo->dnssec, "unknown") && !strcmp(dnssec, "secure")) {
			dnssec = "unknown";
			basis = mo->dnssec_basis;
		}
		if (!tlsa)
			tlsa = d.mx[i].tlsa;
		flows += mo->flows;
		blocks += mo->blocks;
		if (mo->last_block_obj && mo->last_block > last_block_at) {
			last_block_at = mo->last_block;
			last_block = mo->last_block_obj;
		}
		locked |= mo->f.locked;
		wire_news |= mo->f.wire_mismatch_at > mo->f.probe_time;
		json_object_set_new(mo->o, "class", json_string(web_class_name(per_mx[i])));
		json_object_set_new(mo->o, "label", json_string(web_class_label(per_mx[i])));
		json_t *w = ws_why(per_mx[i], mo);
		json_object_set_new(mo->o, "why", w);
		if (per_mx[i] == cls && json_is_null(why))
			why = json_incref(w);
		json_array_append_new(mxs, mo->o);
		mo->o = NULL;
	}
	if (d.probe_reason && ws_reason_bogus(json_string_value(d.probe_reason))) {
		dnssec = "bogus";
		basis = "probe: DNSSEC validation failed (bogus)";
	}
	bool stale = checked == 0 || now - checked > WEB_STORE_STALE_SECONDS;
	if (needs_probe)
		*needs_probe = cls == WEB_CLASS_UNKNOWN || stale || wire_news;

	out = json_object();
	json_object_set_new(out, "domain", domain ? ws_string(domain) : json_null());
	json_object_set_new(out, "class", json_string(web_class_name(cls)));
	json_object_set_new(out, "label", json_string(web_class_label(cls)));
	json_object_set_new(out, "why", why);
	json_object_set_new(out, "tls_version", version ? version : json_null());
	json_object_set_new(out, "cipher", cipher ? cipher : json_null());
	version = cipher = NULL;
	json_object_set_new(out, "dnssec", json_string(dnssec));
	json_object_set_new(out, "dnssec_basis", json_string(basis));
	json_object_set_new(out, "tlsa", tlsa ? json_string(tlsa) : json_null());
	json_object_set_new(out, "locked", json_boolean(locked));
	json_object_set_new(out, "checked", checked ? json_integer(checked) : json_null());
	json_object_set_new(out, "stale", json_boolean(stale));
	/* mail: the gateway saw flows to (or blocked flows to) its MX hosts;
	 * looked-up: only the probe (a lookup, the API) reached it; dns: only
	 * DNS answers the MTAs received name it. */
	json_object_set_new(out, "seen", json_string(flows + blocks > 0 ? "mail"
						     : d.probe_time   ? "looked-up"
								      : "dns"));
	json_object_set_new(out, "blocks", json_integer(blocks));
	json_object_set_new(out, "last_block",
			    last_block ? json_pack("{s:O,s:O,s:O,s:O}", "time",
						   json_object_get(last_block, "time"), "rule",
						   json_object_get(last_block, "rule"), "verdict",
						   json_object_get(last_block, "verdict"), "reason",
						   json_object_get(last_block, "reason"))
				       : json_null());
	if (d.probe_time) {
		json_object_set_new(out, "probed", json_pack("{s:I,s:s,s:O}", "time",
							     (json_int_t)d.probe_time, "class",
							     d.probe_class, "reason",
							     d.probe_reason ? d.probe_reason
									    : json_null()));
	} else {
		json_object_set_new(out, "probed", json_null());
	}
	json_object_set_new(out, "mx", mxs);
	mxs = NULL;
done:
	json_decref(version);
	json_decref(cipher);
	json_decref(mxs);
	for (size_t i = 0; mos && i < d.n; i++)
		json_decref(mos[i].o);
	free(mos);
	ws_domain_free(&d);
	return out;
}

json_t *web_store_domain(struct web_store *ws, const char *domain, int64_t now, bool *needs_probe)
{
	if (needs_probe)
		*needs_probe = false;
	return ws_describe(ws, domain, NULL, now, needs_probe);
}

/* ---- lists ----------------------------------------------------------------- */

json_t *web_store_destinations(struct web_store *ws, int64_t now, int limit)
{
	sqlite3_stmt *st;
	json_t *names = json_array(), *out = NULL;
	int rc = ws_prepare(ws, &st,
			    "SELECT domain FROM addr_mx WHERE domain != ''"
			    " UNION SELECT domain FROM probe_results ORDER BY 1 LIMIT ?1",
			    "i", (int64_t)limit);
	if (rc == -ENOENT) /* no probe results table yet */
		rc = ws_prepare(ws, &st,
				"SELECT DISTINCT domain FROM addr_mx WHERE domain != ''"
				" ORDER BY 1 LIMIT ?1",
				"i", (int64_t)limit);
	if (rc == -EIO)
		goto fail;
	while (st && (rc = ws_step(ws, st)) == SQLITE_ROW)
		json_array_append_new(names, ws_string(ws_text(st, 0)));
	if (st)
		sqlite3_finalize(st);
	if (st && rc != SQLITE_DONE)
		goto fail;

	out = json_array();
	json_t *n;
	size_t i;
	json_array_foreach(names, i, n)
	{
		json_t *o = ws_describe(ws, json_string_value(n), NULL, now, NULL);
		if (!o)
			goto fail;
		json_array_append_new(out, o);
	}
	/* MX hosts (or addresses) with history but no known domain. */
	int left = limit - (int)json_array_size(out);
	if (left <= 0)
		goto done;
	rc = ws_prepare(ws, &st,
			"SELECT mx FROM tls_history WHERE mx NOT IN"
			" (SELECT mx FROM addr_mx WHERE domain != '')"
			" AND mx NOT IN (SELECT domain FROM addr_mx)"
			" ORDER BY mx LIMIT ?1",
			"i", (int64_t)left);
	if (rc == -ENOENT)
		rc = ws_prepare(ws, &st, "SELECT mx FROM tls_history ORDER BY mx LIMIT ?1", "i",
				(int64_t)left);
	if (rc == -EIO)
		goto fail;
	json_array_clear(names);
	while (st && (rc = ws_step(ws, st)) == SQLITE_ROW)
		json_array_append_new(names, ws_string(ws_text(st, 0)));
	if (st)
		sqlite3_finalize(st);
	if (st && rc != SQLITE_DONE)
		goto fail;
	json_array_foreach(names, i, n)
	{
		json_t *o = ws_describe(ws, NULL, json_string_value(n), now, NULL);
		if (!o)
			goto fail;
		json_array_append_new(out, o);
	}
done:
	json_decref(names);
	return out;
fail:
	json_decref(names);
	json_decref(out);
	return NULL;
}

/* Runs a query whose rows become objects with the given keys. A missing
 * table is an empty list. */
static json_t *ws_rows(struct web_store *ws, const char *sql, const char *const *keys,
		       int64_t limit)
{
	sqlite3_stmt *st;
	int rc = ws_prepare(ws, &st, sql, "i", limit);
	if (rc == -ENOENT)
		return json_array();
	if (rc < 0)
		return NULL;
	json_t *out = json_array();
	while ((rc = ws_step(ws, st)) == SQLITE_ROW) {
		json_t *o = json_object();
		for (int i = 0; keys[i]; i++)
			json_object_set_new(o, keys[i], ws_column(st, i));
		json_array_append_new(out, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(out);
		return NULL;
	}
	return out;
}

json_t *web_store_events(struct web_store *ws, int limit)
{
	static const char *const keys[] = { "id",	 "time",      "kind", "client",
					    "server",	 "mx",	      "sender", "recipient",
					    "rule",	 "verdict",   "reason", NULL };
	return ws_rows(ws,
		       "SELECT id, time, kind, client, server, mx, sender, recipient, rule,"
		       " verdict, reason FROM events ORDER BY id DESC LIMIT ?1",
		       keys, limit);
}

json_t *web_store_locks(struct web_store *ws)
{
	static const char *const keys[] = { "mx", "reason", "locked_at", "level", NULL };
	json_t *rows = ws_rows(ws,
			       "SELECT mx, lock_reason, locked_at, level FROM tls_history"
			       " WHERE locked ORDER BY locked_at DESC, mx LIMIT ?1",
			       keys, WS_LOCKS_MAX);
	json_t *r;
	size_t i;
	json_array_foreach(rows, i, r)
	{
		int lvl = (int)json_integer_value(json_object_get(r, "level"));
		json_object_set_new(r, "level", json_string(web_class_name(ws_level_class(lvl))));
	}
	return rows;
}

json_t *web_store_policy(struct web_store *ws)
{
	static const char *const pkeys[] = { "serial", "sha256", "key_id", "applied_at", "expires",
					     NULL };
	static const char *const rkeys[] = { "time", "reason", NULL };
	json_t *applied = ws_rows(ws,
				  "SELECT serial, sha256, key_id, applied_at, expires"
				  " FROM policy_applied ORDER BY serial DESC LIMIT ?1",
				  pkeys, 1);
	json_t *refused = ws_rows(ws,
				  "SELECT time, reason FROM events WHERE kind = 'policy-refused'"
				  " OR (kind = 'policy' AND verdict = 'refused')"
				  " ORDER BY id DESC LIMIT ?1",
				  rkeys, 1);
	if (!applied || !refused) {
		json_decref(applied);
		json_decref(refused);
		return NULL;
	}
	json_t *a = json_array_get(applied, 0), *r = json_array_get(refused, 0);
	json_t *out = json_pack("{s:O,s:O}", "applied", a ? a : json_null(), "last_refused",
				r ? r : json_null());
	json_decref(applied);
	json_decref(refused);
	return out;
}

json_t *web_store_blocks_by_rule(struct web_store *ws)
{
	sqlite3_stmt *st;
	int rc = ws_prepare(ws, &st,
			    "SELECT coalesce(rule, ''), count(*) FROM events WHERE kind = 'block'"
			    " GROUP BY 1 ORDER BY 1 LIMIT ?1",
			    "i", (int64_t)WS_ROWS_MAX);
	if (rc == -ENOENT)
		return json_object();
	if (rc < 0)
		return NULL;
	json_t *out = json_object();
	while ((rc = ws_step(ws, st)) == SQLITE_ROW) {
		const char *rule = ws_text(st, 0);
		json_object_set_new(out, rule[0] ? rule : "unknown",
				    json_integer(sqlite3_column_int64(st, 1)));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		json_decref(out);
		return NULL;
	}
	return out;
}
