/* web_store.c - see web_store.h for the contract. */
#include "web_store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "log.h"
#include "tls_parse.h"

#define WS_MX_MAX 32       /* MX hosts described per domain */
#define WS_ROWS_MAX 256    /* rows read per domain query */
#define WS_LOCKS_MAX 1000

struct web_store {
	char *path;
	sqlite3 *db;
	time_t last_warn;
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

static int ws_connect(struct web_store *ws)
{
	if (ws->db)
		return 0;
	if (sqlite3_open_v2(ws->path, &ws->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
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

const char *web_store_label(const char *cls)
{
	if (!strcmp(cls, "dane"))
		return "DANE ok";
	if (!strcmp(cls, "tls"))
		return "TLS";
	if (!strcmp(cls, "plaintext"))
		return "no TLS";
	return "TLS?";
}

static const char *ws_level_class(int level)
{
	switch (level) {
	case STORE_LEVEL_DANE:
		return "dane";
	case STORE_LEVEL_TLS:
		return "tls";
	case STORE_LEVEL_PLAINTEXT:
		return "plaintext";
	default:
		return "unknown";
	}
}

static int ws_class_level(const char *cls)
{
	if (!cls)
		return STORE_LEVEL_NONE;
	if (!strcmp(cls, "dane"))
		return STORE_LEVEL_DANE;
	if (!strcmp(cls, "tls") || !strcmp(cls, "tls-unauthenticated"))
		return STORE_LEVEL_TLS;
	if (!strcmp(cls, "plaintext"))
		return STORE_LEVEL_PLAINTEXT;
	return STORE_LEVEL_NONE;
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

/* ---- one domain ---------------------------------------------------------- */

struct ws_mx {
	char name[STORE_NAME_MAX];
	json_t *addrs;     /* array of address strings (addr_mx) */
	int dns_rows, dns_secure;
	json_t *probe;     /* array of probe rows for this MX, or NULL */
	int probe_level;
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
		/* The best any address of the MX reached: one address that
		 * cannot be reached says nothing about the others. */
		int lvl = ws_class_level(ws_text(st, 2));
		if (lvl > m->probe_level)
			m->probe_level = lvl;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static const char *ws_dnssec(int rows, int secure)
{
	if (rows == 0)
		return "unknown";
	return secure == rows ? "secure" : "insecure";
}

/* Fills one MX object; returns its level, or -EIO. *checked and *tls_at
 * rise to the newest evidence; *version and *cipher take the newest TLS. */
static int ws_describe_mx(struct web_store *ws, struct ws_mx *m, json_t *o, int64_t *checked,
			  int64_t *tls_at, json_t **version, json_t **cipher, bool *locked)
{
	sqlite3_stmt *st;
	int level = STORE_LEVEL_NONE;
	int rc = ws_prepare(ws, &st,
			    "SELECT level, best_version, last_version, last_cipher, first_seen,"
			    " last_seen, first_tls, last_tls, tls_count, plain_count, locked,"
			    " lock_reason FROM tls_history WHERE mx = ?1",
			    "s", m->name);
	if (rc == -EIO)
		return rc;
	json_object_set_new(o, "name", ws_string(m->name));
	json_object_set_new(o, "addresses", json_incref(m->addrs));
	json_object_set_new(o, "dnssec", json_string(ws_dnssec(m->dns_rows, m->dns_secure)));
	rc = st ? ws_step(ws, st) : SQLITE_DONE;
	if (rc == SQLITE_ROW) {
		level = sqlite3_column_int(st, 0);
		uint16_t lv = (uint16_t)sqlite3_column_int(st, 2);
		uint16_t lc = (uint16_t)sqlite3_column_int(st, 3);
		int64_t last_seen = sqlite3_column_int64(st, 5);
		int64_t last_tls = sqlite3_column_int64(st, 7);
		bool lk = sqlite3_column_int(st, 10) != 0;
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
		if (last_seen > *checked)
			*checked = last_seen;
		if (lv && last_tls > *tls_at) {
			*tls_at = last_tls;
			json_decref(*version);
			json_decref(*cipher);
			*version = ws_version(lv);
			*cipher = ws_cipher(lv, lc);
		}
		*locked |= lk;
	} else {
		json_object_set_new(o, "tls_version", json_null());
		json_object_set_new(o, "cipher", json_null());
		json_object_set_new(o, "last_seen", json_null());
		json_object_set_new(o, "locked", json_false());
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
	}
	json_object_set_new(o, "tlsa", m->tlsa ? json_string(m->tlsa) : json_null());
	json_object_set_new(o, "probe", m->probe ? json_incref(m->probe) : json_null());
	if (m->probe_level > level)
		level = m->probe_level;
	const char *cls = ws_level_class(level);
	json_object_set_new(o, "class", json_string(cls));
	json_object_set_new(o, "label", json_string(web_store_label(cls)));
	return level;
}

/* Describes a domain (mx_only NULL) or a lone MX host (domain NULL). */
static json_t *ws_describe(struct web_store *ws, const char *domain, const char *mx_only,
			   int64_t now, bool *needs_probe)
{
	struct ws_domain d = { .n = 0 };
	json_t *version = NULL, *cipher = NULL, *mxs = json_array();
	int64_t checked = 0, tls_at = 0;
	bool locked = false;
	int min_level = STORE_LEVEL_DANE + 1;
	json_t *out = NULL;

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
	bool any_history = false;
	for (size_t i = 0; i < d.n; i++) {
		json_t *o = json_object();
		int lvl = ws_describe_mx(ws, &d.mx[i], o, &checked, &tls_at, &version, &cipher,
					 &locked);
		if (lvl < 0) {
			json_decref(o);
			goto done;
		}
		/* The implicit MX with nothing recorded is no real MX. */
		if (domain && d.n == 1 && !strcmp(d.mx[i].name, domain) && lvl == 0 &&
		    !d.mx[i].dns_rows && !d.mx[i].probe) {
			json_decref(o);
			break;
		}
		any_history = true;
		if (lvl < min_level)
			min_level = lvl;
		json_array_append_new(mxs, o);
	}
	if (d.probe_time > checked)
		checked = d.probe_time;
	int level = any_history ? min_level : STORE_LEVEL_NONE;
	/* An MX that flows never reached: the probe's verdict on the domain
	 * (it saw every MX) stands in for it. */
	if (level == STORE_LEVEL_NONE && d.probe_time)
		level = ws_class_level(d.probe_class);
	const char *cls = ws_level_class(level);

	int dns_rows = 0, dns_secure = 0;
	const char *tlsa = NULL;
	for (size_t i = 0; i < d.n; i++) {
		dns_rows += d.mx[i].dns_rows > 0;
		dns_secure += d.mx[i].dns_rows > 0 && d.mx[i].dns_secure == d.mx[i].dns_rows;
		if (!tlsa)
			tlsa = d.mx[i].tlsa;
	}
	bool stale = checked == 0 || now - checked > WEB_STORE_STALE_SECONDS;
	if (needs_probe)
		*needs_probe = level == STORE_LEVEL_NONE || stale;

	out = json_object();
	json_object_set_new(out, "domain", domain ? ws_string(domain) : json_null());
	json_object_set_new(out, "class", json_string(cls));
	json_object_set_new(out, "label", json_string(web_store_label(cls)));
	json_object_set_new(out, "tls_version", version ? version : json_null());
	json_object_set_new(out, "cipher", cipher ? cipher : json_null());
	version = cipher = NULL;
	json_object_set_new(out, "dnssec", json_string(ws_dnssec(dns_rows, dns_secure)));
	json_object_set_new(out, "tlsa", tlsa ? json_string(tlsa) : json_null());
	json_object_set_new(out, "locked", json_boolean(locked));
	json_object_set_new(out, "checked", checked ? json_integer(checked) : json_null());
	json_object_set_new(out, "stale", json_boolean(stale));
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
		json_object_set_new(r, "level", json_string(ws_level_class(lvl)));
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
