/* test_web.c - the HTTP layer of the status page and API, against a
 * temporary store filled through store.h and hooks that return fixed JSON
 * (a test of web.c/web_store.c, not a claim about the daemon): recipient
 * classes, IDN and bad input, probes scheduled once, bearer token, CORS,
 * events, the page itself, and the listening address. Requests are real
 * HTTP over TCP to 127.0.0.1; web_process() is driven in between. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "store.h"
#include "web.h"
#include "web_store.h"

static char db_path[64];

struct hooks_state {
	int probes;
	char last_probe[256];
	int releases;
	char last_release[256], last_by[256];
	int release_rc;
	pthread_t daemon_thread; /* hooks must run here (in web_process) */
	int wrong_thread;
};

struct fixture {
	struct web *w;
	struct hooks_state hs;
	int port;
};

static char *stats_json(void *arg)
{
	struct hooks_state *hs = arg;
	hs->wrong_thread += !pthread_equal(pthread_self(), hs->daemon_thread);
	return strdup("{\"flows\":{\"total\":42,\"offloaded_total\":40,\"tracked\":3,"
		      "\"inspecting\":1,\"offloaded\":2,\"blocked\":0},"
		      "\"queue\":{\"packets\":1000,\"bytes\":50000,\"drops\":7},"
		      "\"kernel\":{\"inspect\":{\"packets\":900,\"bytes\":45000},"
		      "\"pass\":{\"packets\":5000,\"bytes\":9000000}},"
		      "\"blocks\":{\"history-downgrade\":2}}");
}

static char *flows_json(void *arg)
{
	struct hooks_state *hs = arg;
	hs->wrong_thread += !pthread_equal(pthread_self(), hs->daemon_thread);
	return strdup("[{\"client\":\"192.0.2.10:40000\",\"server\":\"198.51.100.20:25\"}]");
}

static int schedule_probe(void *arg, const char *domain)
{
	struct hooks_state *hs = arg;
	hs->wrong_thread += !pthread_equal(pthread_self(), hs->daemon_thread);
	hs->probes++;
	snprintf(hs->last_probe, sizeof(hs->last_probe), "%s", domain);
	return 0;
}

static int release(void *arg, const char *mx, const char *by)
{
	struct hooks_state *hs = arg;
	hs->wrong_thread += !pthread_equal(pthread_self(), hs->daemon_thread);
	hs->releases++;
	snprintf(hs->last_release, sizeof(hs->last_release), "%s", mx);
	snprintf(hs->last_by, sizeof(hs->last_by), "%s", by);
	return hs->release_rc;
}

static void fill_store_dane(struct store *s, int64_t now);

static void fill_store(void)
{
	int64_t now = time(NULL);
	struct store *s = store_open(db_path, false);
	assert_non_null(s);
	assert_int_equal(store_history_record(s, "mx.tls.example", STORE_LEVEL_TLS, 0x0304, 0x1302,
					      now - 60), 0);
	assert_int_equal(store_history_record(s, "mx.dane.example", STORE_LEVEL_DANE, 0x0303,
					      0xc02f, now - 30), 0);
	assert_int_equal(store_history_record(s, "mx.plain.example", STORE_LEVEL_PLAINTEXT, 0, 0,
					      now - 10), 0);
	assert_int_equal(store_history_record(s, "old.example", STORE_LEVEL_TLS, 0x0303, 0xc030,
					      now - 3 * 86400), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.20", "mx.tls.example", "tls.example",
					   false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.21", "mx.dane.example", "dane.example",
					   true, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.30", "mx.plain.example",
					   "plain.example", false, now + 600), 0);
	/* A domain with one TLS and one plaintext MX is only as good as the
	 * plaintext one. */
	assert_int_equal(store_addr_mx_set(s, "198.51.100.20", "mx.tls.example", "mixed.example",
					   false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.30", "mx.plain.example",
					   "mixed.example", false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.21", "mx.dane.example", "mixed2.example",
					   true, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.30", "mx.plain.example",
					   "mixed2.example", false, now + 600), 0);
	/* The IDN domain bücher.example in A-label form. */
	assert_int_equal(store_addr_mx_set(s, "198.51.100.20", "mx.tls.example",
					   "xn--bcher-kva.example", false, now + 600), 0);
	assert_int_equal(store_history_lock(s, "mx.tls.example", "STARTTLS missing", now - 5), 0);
	fill_store_dane(s, now);
	struct store_event ev = { .time = now - 100, .kind = "block", .mx = "mx.tls.example",
				  .rule = "history-downgrade", .verdict = "block-temporary",
				  .reason = "first" };
	assert_int_equal(store_event_add(s, &ev), 0);
	ev.time = now - 50;
	ev.reason = "second \"quoted\" <b>";
	assert_int_equal(store_event_add(s, &ev), 0);
	store_close(s);
}

/* What tlsgate-probe --db writes for one address (probe/tlsgate-probe.c
 * db_record): the row, the history record when it saw TLS or plaintext,
 * and the address with its DNSSEC status. */
static void probe_row(struct store *s, int64_t t, const char *domain, const char *cls,
		      const char *mx, const char *addr, const char *verdict, const char *dane,
		      const char *reason, bool secure)
{
	bool tls = strcmp(verdict, "plaintext") && strcmp(verdict, "dns-fail") &&
		   strcmp(verdict, "connect-fail");
	struct store_probe p = { .time = t, .domain = domain, .cls = cls, .mx = mx, .addr = addr,
				 .verdict = verdict, .tls_version = tls ? "TLSv1.2" : NULL,
				 .cipher = tls ? "ECDHE-RSA-AES128-GCM-SHA256" : NULL,
				 .dane = dane, .reason = reason };
	assert_int_equal(store_probe_add(s, &p), 0);
	if (!addr)
		return;
	enum store_level lvl = !strcmp(verdict, "dane") ? STORE_LEVEL_DANE
			       : tls			 ? STORE_LEVEL_TLS
			       : !strcmp(verdict, "plaintext") ? STORE_LEVEL_PLAINTEXT
							      : STORE_LEVEL_NONE;
	if (lvl != STORE_LEVEL_NONE)
		assert_int_equal(store_history_record(s, mx, lvl, 0, 0, t), 0);
	assert_int_equal(store_addr_mx_set(s, addr, mx, domain, secure, t + 3600), 0);
}

/* The daemon's RCPT TO hint for the same address: never validated, it
 * writes secure = 0 over the probe's row (gate.c, store_addr_mx_set). */
static void gate_hint(struct store *s, int64_t now, const char *addr, const char *mx,
		      const char *domain)
{
	assert_int_equal(store_addr_mx_set(s, addr, mx, domain, false, now + 3600), 0);
}

static void wire_block(struct store *s, int64_t t, const char *mx, const char *reason)
{
	struct store_event ev = { .time = t, .kind = "block", .mx = mx, .rule = "dane",
				  .verdict = "block-temp", .reason = reason };
	assert_int_equal(store_event_add(s, &ev), 0);
}

/* DANE destinations, each with the facts that decide its class. */
static void fill_store_dane(struct store *s, int64_t now)
{
	/* The probe found the certificate not matching the TLSA records:
	 * TLS was spoken, so history says TLS; the probe says dane-fail. */
	probe_row(s, now - 20, "mismatch.example", "unknown", "mx.mismatch.example",
		  "198.51.100.40", "dane-fail", "no-match", "DANE verification failed: no-match",
		  true);
	gate_hint(s, now, "198.51.100.40", "mx.mismatch.example", "mismatch.example");
	/* Verified by the probe an hour ago, then a flow's certificate did not
	 * match on the wire. */
	probe_row(s, now - 3600, "wirefail.example", "dane", "mx.wirefail.example",
		  "198.51.100.41", "dane", "match", "certificate matches TLSA 3 1 1 at depth 0",
		  true);
	wire_block(s, now - 60, "mx.wirefail.example",
		   "certificate does not match the DANE TLSA records of MX mx.wirefail.example "
		   "[198.51.100.41]; TLS required by rule dane");
	/* The same, then a newer probe verified it again. */
	probe_row(s, now - 3600, "wirefixed.example", "dane", "mx.wirefixed.example",
		  "198.51.100.42", "dane", "match", "certificate matches", true);
	wire_block(s, now - 600, "mx.wirefixed.example",
		   "recent probe found a certificate not matching the DANE TLSA records of MX "
		   "mx.wirefixed.example [198.51.100.42]; TLS required by rule dane");
	probe_row(s, now - 10, "wirefixed.example", "dane", "mx.wirefixed.example",
		  "198.51.100.42", "dane", "match", "certificate matches", true);
	gate_hint(s, now, "198.51.100.42", "mx.wirefixed.example", "wirefixed.example");
	/* DANE once, and the newest probe finds no validated TLSA any more. */
	probe_row(s, now - 7200, "undane.example", "dane", "mx.undane.example", "198.51.100.43",
		  "dane", "match", "certificate matches", true);
	probe_row(s, now - 30, "undane.example", "tls", "mx.undane.example", "198.51.100.43",
		  "tls", NULL, "TLS; no DNSSEC-validated TLSA records", true);
	/* A signed zone without TLSA whose validated row a hint overwrote. */
	probe_row(s, now - 40, "signed.example", "tls", "mx.signed.example", "198.51.100.44",
		  "tls", NULL, "TLS; no DNSSEC-validated TLSA records", true);
	gate_hint(s, now, "198.51.100.44", "mx.signed.example", "signed.example");
	/* The validator found the MX's addresses bogus. */
	probe_row(s, now - 50, "bogus.example", "unknown", "mx.bogus.example", NULL, "dns-fail",
		  NULL, "address lookup failed: mx.bogus.example/A: bogus: signature expired",
		  false);
}

static int setup_with(void **state, const char *token, const char *origin)
{
	snprintf(db_path, sizeof(db_path), "/tmp/test_web.XXXXXX");
	int fd = mkstemp(db_path);
	assert_true(fd >= 0);
	close(fd);
	unlink(db_path);
	fill_store();
	struct fixture *f = calloc(1, sizeof(*f));
	f->hs.daemon_thread = pthread_self();
	struct web_hooks hooks = { .arg = &f->hs, .stats_json = stats_json,
				   .flows_json = flows_json, .schedule_probe = schedule_probe,
				   .release = release };
	struct web_config cfg = { .listen = "127.0.0.1:0", .token = token, .cors_origin = origin,
				  .store_path = db_path, .hosts = { "gw.example.org" }, .n_hosts = 1 };
	f->w = web_open(&cfg, &hooks);
	assert_non_null(f->w);
	f->port = web_port(f->w);
	assert_true(f->port > 0);
	assert_true(web_fd(f->w) >= 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, "s3cret-token", "https://webmail.example");
}

static int setup_no_token(void **state)
{
	return setup_with(state, NULL, NULL);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[96];
	/* Every hook ran in the thread that calls web_process(). */
	assert_int_equal(f->hs.wrong_thread, 0);
	web_close(f->w);
	free(f);
	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
	return 0;
}

struct reply {
	int status;
	char *headers; /* raw header block */
	char *body;
	json_t *json;
};

static void reply_free(struct reply *r)
{
	free(r->headers);
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* Sends raw (a whole request with Connection: close) to addr:port and
 * serves with web_process() until the server closes. */
static struct reply http_raw_to(struct fixture *f, const char *addr, const char *raw)
{
	struct reply r = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		r.status = -errno;
		return r;
	}
	size_t len = strlen(raw), off = 0;
	while (off < len) {
		ssize_t n = send(fd, raw + off, len - off, MSG_DONTWAIT);
		if (n > 0)
			off += (size_t)n;
		web_process(f->w);
	}
	size_t cap = 1 << 16, used = 0;
	char *buf = malloc(cap);
	for (int i = 0; i < 5000; i++) {
		web_process(f->w);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2) <= 0)
			continue;
		if (used + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = recv(fd, buf + used, cap - used - 1, 0);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	char *sep = strstr(buf, "\r\n\r\n");
	assert_non_null(sep);
	*sep = '\0';
	r.headers = strdup(buf);
	r.body = strdup(sep + 4);
	sscanf(buf, "HTTP/1.1 %d", &r.status);
	r.json = json_loads(r.body, 0, NULL);
	free(buf);
	return r;
}

static struct reply http_get(struct fixture *f, const char *path, const char *extra)
{
	char req[16384];
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
		 path, extra ? extra : "");
	return http_raw_to(f, "127.0.0.1", req);
}

static struct reply http_post(struct fixture *f, const char *path, const char *auth,
			      const char *body)
{
	char req[8192];
	snprintf(req, sizeof(req),
		 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 path, auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "",
		 strlen(body), body);
	return http_raw_to(f, "127.0.0.1", req);
}

static const char *str(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

static json_t *recipient(struct reply *r, size_t i)
{
	return json_array_get(json_object_get(r->json, "recipients"), i);
}

/* ---- address parsing ---------------------------------------------------- */

static void test_address_parse(void **state)
{
	struct web_address a;
	const char *why = NULL;
	assert_int_equal(web_address_parse("  User@Example.NET. ", &a, &why), 0);
	assert_string_equal(a.address, "User@Example.NET.");
	assert_string_equal(a.domain, "example.net");
	assert_int_equal(web_address_parse("<x@tls.example>", &a, &why), 0);
	assert_string_equal(a.domain, "tls.example");
	/* IDN: UTF-8 (NFC and decomposed) and A-labels end up the same. */
	assert_int_equal(web_address_parse("kim@b\xc3\xbc" "cher.example", &a, &why), 0);
	assert_string_equal(a.domain, "xn--bcher-kva.example");
	assert_int_equal(web_address_parse("kim@bu\xcc\x88" "cher.example", &a, &why), 0);
	assert_string_equal(a.domain, "xn--bcher-kva.example");
	assert_int_equal(web_address_parse("kim@XN--BCHER-KVA.example", &a, &why), 0);
	assert_string_equal(a.domain, "xn--bcher-kva.example");
	/* UTF-8 local part (SMTPUTF8) is kept. */
	assert_int_equal(web_address_parse("j\xc3\xb6rg@example.net", &a, &why), 0);

	static const char *const bad[] = {
		"", "   ", "user", "@example.net", "user@", "a@b@example.net", "user@localhost",
		"user@-bad.example", "user@bad-.example", "user@exa_mple.net", "user@ex..ample",
		"us er@example.net", "user@[192.0.2.1]", "user@xn--zz.example",
		"user@\xff.example", "user@\xc3\x28.example", "user@\xed\xa0\x80.example",
		"user@\xe2\x82.example", "user@example.net\x01", "user@.example.net",
		"user@exam ple.net",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		int rc = web_address_parse(bad[i], &a, &why);
		if (rc == 0)
			fail_msg("accepted bad address #%zu '%s'", i, bad[i]);
		assert_int_equal(rc, -EINVAL);
		assert_non_null(why);
	}
	/* Bounds: a 64-byte local part passes, 65 does not; a 63-byte label
	 * passes, 64 does not; longer than WEB_ADDRESS_MAX is -E2BIG. */
	char buf[600];
	memset(buf, 'a', 64);
	strcpy(buf + 64, "@example.net");
	assert_int_equal(web_address_parse(buf, &a, &why), 0);
	memset(buf, 'a', 65);
	strcpy(buf + 65, "@example.net");
	assert_int_equal(web_address_parse(buf, &a, &why), -EINVAL);
	strcpy(buf, "u@");
	memset(buf + 2, 'b', 63);
	strcpy(buf + 65, ".example");
	assert_int_equal(web_address_parse(buf, &a, &why), 0);
	memset(buf + 2, 'b', 64);
	strcpy(buf + 66, ".example");
	assert_int_equal(web_address_parse(buf, &a, &why), -EINVAL);
	strcpy(buf, "u@");
	for (int i = 0; i < 60; i++)
		strcat(buf, "abcd.");
	strcat(buf, "example");
	assert_true(strlen(buf) > WEB_ADDRESS_MAX);
	assert_int_equal(web_address_parse(buf, &a, &why), -E2BIG);
}

static void test_address_list(void **state)
{
	struct web_address list[WEB_ADDRESSES_MAX];
	size_t n = 0;
	const char *why = NULL;
	assert_int_equal(web_addresses_add("a@tls.example, b@dane.example,,", list, &n,
					   WEB_ADDRESSES_MAX, &why), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].domain, "dane.example");
	assert_int_equal(web_addresses_add("c@plain.example", list, &n, WEB_ADDRESSES_MAX, &why), 0);
	assert_int_equal(n, 3);
	assert_int_equal(web_addresses_add("c@plain.example,bad", list, &n, WEB_ADDRESSES_MAX, &why),
			 -EINVAL);
	/* One more than the bound. */
	char big[WEB_ADDRESSES_MAX * 20];
	big[0] = '\0';
	for (int i = 0; i <= WEB_ADDRESSES_MAX; i++)
		strcat(big, "x@tls.example,");
	n = 0;
	assert_int_equal(web_addresses_add(big, list, &n, WEB_ADDRESSES_MAX, &why), -E2BIG);
	assert_int_equal(n, WEB_ADDRESSES_MAX);
}

/* ---- HTTP ------------------------------------------------------------------ */

static void test_recipient_classes(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f,
				  "/api/v1/recipient?address=a@tls.example&address=b@dane.example,"
				  "c@plain.example&address=d%40mixed.example&address=e@b%C3%BCcher.example",
				  NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(r.json);
	/* mx.tls.example is locked: its domains show locked, whatever else. */
	static const char *const want[][3] = {
		{ "tls.example", "locked", "locked" },	 { "dane.example", "dane", "DANE ok" },
		{ "plain.example", "plaintext", "no TLS" }, { "mixed.example", "locked", "locked" },
		{ "xn--bcher-kva.example", "locked", "locked" },
	};
	assert_int_equal(json_array_size(json_object_get(r.json, "recipients")), 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *o = recipient(&r, i);
		assert_string_equal(str(o, "domain"), want[i][0]);
		if (getenv("DEBUG_WEB")) json_dumpf(o, stderr, JSON_INDENT(1));
		assert_string_equal(str(o, "class"), want[i][1]);
		assert_string_equal(str(o, "label"), want[i][2]);
		assert_string_equal(str(o, "probe"), "none");
	}
	json_t *tls = recipient(&r, 0);
	assert_string_equal(str(tls, "tls_version"), "TLSv1.3");
	assert_string_equal(str(tls, "cipher"), "TLS_AES_256_GCM_SHA384");
	assert_true(json_is_true(json_object_get(tls, "locked")));
	json_t *mx0 = json_array_get(json_object_get(tls, "mx"), 0);
	assert_string_equal(str(mx0, "name"), "mx.tls.example");
	assert_string_equal(str(mx0, "lock_reason"), "STARTTLS missing");
	assert_string_equal(str(mx0, "why"), "STARTTLS missing");
	assert_string_equal(str(tls, "why"), "STARTTLS missing");
	/* Only unvalidated hints: nothing says whether its zone is signed. */
	assert_string_equal(str(mx0, "dnssec"), "unknown");
	/* Mail went there (history from flows) and was blocked twice. */
	assert_string_equal(str(tls, "seen"), "mail");
	assert_int_equal(json_integer_value(json_object_get(tls, "blocks")), 2);
	assert_string_equal(str(json_object_get(tls, "last_block"), "reason"),
			    "second \"quoted\" <b>");
	json_t *dane = recipient(&r, 1);
	assert_string_equal(str(dane, "dnssec"), "secure");
	assert_string_equal(str(dane, "cipher"), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	assert_true(json_integer_value(json_object_get(dane, "checked")) > 0);
	assert_int_equal(json_array_size(json_object_get(recipient(&r, 3), "mx")), 2);
	assert_int_equal(f->hs.probes, 0);
	reply_free(&r);
}

static void test_unknown_and_stale_schedule_probe_once(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f, "/api/v1/recipient?address=x@unknown.example", NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(str(recipient(&r, 0), "class"), "unknown");
	assert_string_equal(str(recipient(&r, 0), "label"), "TLS?");
	assert_string_equal(str(recipient(&r, 0), "probe"), "scheduled");
	assert_int_equal(f->hs.probes, 1);
	assert_string_equal(f->hs.last_probe, "unknown.example");
	reply_free(&r);
	/* Asking again at once does not start a second probe. */
	r = http_get(f, "/api/v1/recipient?address=y@unknown.example", NULL);
	assert_string_equal(str(recipient(&r, 0), "probe"), "scheduled");
	assert_int_equal(f->hs.probes, 1);
	reply_free(&r);
	/* Known but three days old (implicit MX): answered, and re-probed. */
	r = http_get(f, "/api/v1/recipient?address=z@old.example", NULL);
	assert_string_equal(str(recipient(&r, 0), "class"), "tls");
	assert_true(json_is_true(json_object_get(recipient(&r, 0), "stale")));
	assert_string_equal(str(recipient(&r, 0), "probe"), "scheduled");
	assert_int_equal(f->hs.probes, 2);
	reply_free(&r);
}

static void test_recipient_bad_input(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"/api/v1/recipient",
		"/api/v1/recipient?address=",
		"/api/v1/recipient?address=nobody",
		"/api/v1/recipient?address=a@tls.example&address=b%40",
		"/api/v1/recipient?address=a%00b@tls.example",
		"/api/v1/recipient?address=a@%FF.example",
		"/api/v1/recipient?address=a@x'%3B%20DROP%20TABLE%20tls_history%3B--.example",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reply r = http_get(f, bad[i], NULL);
		if (r.status != 400)
			fail_msg("%s: status %d", bad[i], r.status);
		assert_non_null(r.json);
		assert_non_null(str(r.json, "error"));
		reply_free(&r);
	}
	/* 51 addresses. */
	char path[8192] = "/api/v1/recipient?address=";
	for (int i = 0; i <= WEB_ADDRESSES_MAX; i++)
		strcat(path, "u@tls.example,");
	struct reply r = http_get(f, path, NULL);
	assert_int_equal(r.status, 400);
	assert_string_equal(str(r.json, "error"), "too many addresses");
	reply_free(&r);
	/* Exactly 50 is fine. */
	strcpy(path, "/api/v1/recipient?address=u@tls.example");
	for (int i = 1; i < WEB_ADDRESSES_MAX; i++)
		strcat(path, "&address=u@tls.example");
	r = http_get(f, path, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "recipients")), WEB_ADDRESSES_MAX);
	reply_free(&r);
	/* The store is intact after the injection attempt. */
	r = http_get(f, "/api/v1/recipient?address=a@tls.example", NULL);
	assert_string_equal(str(recipient(&r, 0), "class"), "locked");
	reply_free(&r);
}

static void test_cors(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f, "/api/v1/recipient?address=a@tls.example",
				  "Origin: https://webmail.example\r\n");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "Access-Control-Allow-Origin: https://webmail.example"));
	reply_free(&r);
	r = http_get(f, "/api/v1/recipient?address=a@tls.example", "Origin: https://evil.example\r\n");
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.headers, "Access-Control-Allow-Origin"));
	reply_free(&r);
	r = http_raw_to(f, "127.0.0.1",
			"OPTIONS /api/v1/recipient HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			"Origin: https://webmail.example\r\nAccess-Control-Request-Method: GET\r\n"
			"Connection: close\r\n\r\n");
	assert_int_equal(r.status, 204);
	assert_non_null(strstr(r.headers, "Access-Control-Allow-Methods: GET"));
	reply_free(&r);
}

static void test_release_needs_token(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_post(f, "/api/v1/history/release", NULL, "{\"mx\":\"mx.tls.example\"}");
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(r.headers, "WWW-Authenticate: Bearer"));
	reply_free(&r);
	r = http_post(f, "/api/v1/history/release", "Bearer s3cret-tokeX", "{\"mx\":\"mx.tls.example\"}");
	assert_int_equal(r.status, 401);
	reply_free(&r);
	r = http_post(f, "/api/v1/history/release", "Bearer s3cret-token-longer",
		      "{\"mx\":\"mx.tls.example\"}");
	assert_int_equal(r.status, 401);
	reply_free(&r);
	assert_int_equal(f->hs.releases, 0);
	r = http_post(f, "/api/v1/history/release", "Bearer s3cret-token", "{\"mx\":\"MX.tls.example\"}");
	assert_int_equal(r.status, 200);
	assert_string_equal(str(r.json, "released"), "mx.tls.example");
	assert_int_equal(f->hs.releases, 1);
	assert_string_equal(f->hs.last_release, "mx.tls.example");
	assert_string_equal(f->hs.last_by, "web 127.0.0.1");
	reply_free(&r);
	f->hs.release_rc = -ENOENT;
	r = http_post(f, "/api/v1/history/release", "Bearer s3cret-token", "{\"mx\":\"mx.dane.example\"}");
	assert_int_equal(r.status, 404);
	reply_free(&r);
	static const char *const bodies[] = { "", "{", "[]", "{\"mx\":5}", "{\"host\":\"a.b\"}",
					      "{\"mx\":\"not a host\"}" };
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		r = http_post(f, "/api/v1/history/release", "Bearer s3cret-token", bodies[i]);
		if (r.status != 400)
			fail_msg("body '%s': status %d", bodies[i], r.status);
		reply_free(&r);
	}
	char big[WEB_BODY_MAX + 100];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r = http_post(f, "/api/v1/history/release", "Bearer s3cret-token", big);
	assert_int_equal(r.status, 413);
	reply_free(&r);
	/* Probe: token too, IDN normalized. */
	r = http_post(f, "/api/v1/probe", NULL, "{\"domain\":\"example.org\"}");
	assert_int_equal(r.status, 401);
	reply_free(&r);
	r = http_post(f, "/api/v1/probe", "Bearer s3cret-token", "{\"domain\":\"b\xc3\xbc" "cher.example\"}");
	assert_int_equal(r.status, 202);
	assert_string_equal(f->hs.last_probe, "xn--bcher-kva.example");
	reply_free(&r);
	/* GET cannot change state. */
	r = http_get(f, "/api/v1/history/release?mx=mx.tls.example", NULL);
	assert_int_equal(r.status, 404);
	reply_free(&r);
}

static void test_no_token_refuses(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_post(f, "/api/v1/history/release", "Bearer ", "{\"mx\":\"mx.tls.example\"}");
	assert_int_equal(r.status, 403);
	reply_free(&r);
	r = http_post(f, "/api/v1/probe", "Bearer anything", "{\"domain\":\"example.org\"}");
	assert_int_equal(r.status, 403);
	reply_free(&r);
	assert_int_equal(f->hs.releases + f->hs.probes, 0);
	/* No CORS without an origin configured. */
	r = http_get(f, "/api/v1/locks", "Origin: https://webmail.example\r\n");
	assert_null(strstr(r.headers, "Access-Control-Allow-Origin"));
	assert_int_equal(json_array_size(json_object_get(r.json, "locks")), 1);
	reply_free(&r);
}

static void test_events_destinations_stats(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f, "/api/v1/events?limit=1", NULL);
	assert_int_equal(r.status, 200);
	json_t *ev = json_object_get(r.json, "events");
	assert_int_equal(json_array_size(ev), 1);
	assert_string_equal(str(json_array_get(ev, 0), "reason"), "second \"quoted\" <b>");
	reply_free(&r);
	static const char *const bad[] = { "0", "-1", "1001", "abc", "5x", "99999999999999999999" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char p[64];
		snprintf(p, sizeof(p), "/api/v1/events?limit=%s", bad[i]);
		r = http_get(f, p, NULL);
		assert_int_equal(r.status, 400);
		reply_free(&r);
	}
	r = http_get(f, "/api/v1/destinations", NULL);
	assert_int_equal(r.status, 200);
	json_t *d = json_object_get(r.json, "destinations");
	/* Six domains from addr_mx, six from probes (five of them in addr_mx
	 * too), plus old.example (history only). */
	assert_int_equal(json_array_size(d), 13);
	size_t i;
	json_t *o;
	int seen_mixed = 0;
	json_array_foreach(d, i, o)
	{
		/* A domain with a DANE and a plaintext MX is only as good as the
		 * plaintext one. */
		if (str(o, "domain") && !strcmp(str(o, "domain"), "mixed2.example")) {
			seen_mixed = 1;
			assert_string_equal(str(o, "class"), "plaintext");
		}
	}
	assert_true(seen_mixed);
	reply_free(&r);
	r = http_get(f, "/api/v1/stats", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "flows"), "total")), 42);
	json_t *samples = json_object_get(json_object_get(r.json, "history"), "samples");
	assert_true(json_array_size(samples) >= 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(samples, json_array_size(samples) - 1), "flows")), 42);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "recent_blocks"), "history-downgrade")), 2);
	reply_free(&r);
	r = http_get(f, "/api/v1/history?mx=mx.tls.example", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "domains")), 3);
	reply_free(&r);
	r = http_get(f, "/api/v1/history?mx=nowhere.example", NULL);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	r = http_get(f, "/api/v1/policy", NULL);
	assert_int_equal(r.status, 200);
	assert_true(json_is_null(json_object_get(r.json, "applied")));
	reply_free(&r);
	r = http_get(f, "/api/v1/flows", NULL);
	assert_int_equal(json_array_size(json_object_get(r.json, "flows")), 1);
	reply_free(&r);
	r = http_get(f, "/nope", NULL);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	r = http_raw_to(f, "127.0.0.1", "DELETE /api/v1/locks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
	assert_int_equal(r.status, 405);
	reply_free(&r);
}

static void test_page_served(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f, "/", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "Content-Type: text/html"));
	assert_non_null(strstr(r.headers, "Content-Security-Policy: default-src 'none'"));
	assert_non_null(strstr(r.body, "<script src=\"app.js\""));
	/* No external assets: nothing is loaded from another origin. */
	assert_null(strstr(r.body, "http://"));
	assert_null(strstr(r.body, "https://"));
	reply_free(&r);
	r = http_get(f, "/app.js", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "/api/v1/stats"));
	assert_null(strstr(r.body, "https://"));
	reply_free(&r);
	r = http_get(f, "/style.css", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "text/css"));
	reply_free(&r);
}

static void test_listens_only_on_configured_address(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_raw_to(f, "127.0.0.2", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
	assert_int_equal(r.status, -ECONNREFUSED);
	struct web_config cfg = { .listen = "127.0.0.1", .store_path = db_path };
	assert_null(web_open(&cfg, NULL));
	cfg.listen = "[::1:0";
	assert_null(web_open(&cfg, NULL));
	cfg.listen = "localhost:8025"; /* numeric only: no resolver at start-up */
	assert_null(web_open(&cfg, NULL));
}

/* ---- Host header (DNS rebinding, issue 19) ------------------------------ */

static struct reply http_get_host(struct fixture *f, const char *path, const char *host)
{
	char req[1024];
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		 path, host);
	return http_raw_to(f, "127.0.0.1", req);
}

static void test_host_header(void **state)
{
	struct fixture *f = *state;
	char with_port[64];
	snprintf(with_port, sizeof(with_port), "127.0.0.1:%d", f->port);
	const char *good[] = { with_port, "127.0.0.1", "localhost", "LocalHost.", "localhost:9000",
			       "[::1]:8025", "127.0.0.2", "gw.example.org", "GW.Example.ORG.:443" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct reply r = http_get_host(f, "/api/v1/events", good[i]);
		if (r.status != 200)
			fail_msg("Host: %s answered %d", good[i], r.status);
		reply_free(&r);
	}
	/* A name the attacker's DNS points at this address: the page, the
	 * API and the metrics all refuse it, saying why. */
	const char *bad[] = { "evil.example", "evil.example:8025", "localhost.evil.example",
			      "127.0.0.1.evil.example", "gw.example.org.evil", "10.9.8.7",
			      "[::2]", "127.0.0.1:0", "127.0.0.1:x", "[::1", "::1" };
	const char *paths[] = { "/", "/api/v1/recipient?address=a@unknown.example",
				"/api/v1/stats", "/metrics" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct reply r = http_get_host(f, paths[i % 4], bad[i]);
		if (r.status != 421)
			fail_msg("Host: '%s' answered %d, not 421", bad[i], r.status);
		if (r.status == 421) {
			assert_non_null(r.json);
			assert_non_null(strstr(str(r.json, "error"), "not a name of this gateway"));
			assert_non_null(strstr(str(r.json, "error"), "--web-host"));
		}
		reply_free(&r);
	}
	assert_int_equal(f->hs.probes, 0); /* the refused lookup scheduled nothing */
	/* A POST with the right token but a foreign Host: refused before it acts. */
	char req[512];
	const char *body = "{\"domain\": \"example.com\"}";
	snprintf(req, sizeof(req),
		 "POST /api/v1/probe HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer "
		 "s3cret-token\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n%s",
		 strlen(body), body);
	struct reply r = http_raw_to(f, "127.0.0.1", req);
	assert_int_equal(r.status, 421);
	assert_int_equal(f->hs.probes, 0);
	reply_free(&r);
	/* HTTP/1.0 without a Host header (no browser sends that): served. */
	r = http_raw_to(f, "127.0.0.1", "GET /api/v1/events HTTP/1.0\r\n\r\n");
	assert_int_equal(r.status, 200);
	reply_free(&r);
}

static void test_host_allowed_rules(void **state)
{
	const char *names[] = { "status.example.org", "gw.example.org." };
	/* Specific listening address: it, loopback, localhost, the names. */
	const char *l = "192.0.2.1:8025";
	assert_true(web_host_allowed(NULL, l, names, 2));
	assert_true(web_host_allowed("192.0.2.1", l, names, 2));
	assert_true(web_host_allowed("192.0.2.1:8025", l, names, 2));
	assert_true(web_host_allowed("192.0.2.1:12345", l, names, 2)); /* a tunnel's port */
	assert_true(web_host_allowed("127.0.0.1:8025", l, names, 2));
	assert_true(web_host_allowed("[::1]", l, names, 2));
	assert_true(web_host_allowed("localhost:8025", l, names, 2));
	assert_true(web_host_allowed("status.example.org:8025", l, names, 2));
	assert_true(web_host_allowed("gw.example.org", l, names, 2));
	assert_false(web_host_allowed("192.0.2.2", l, names, 2));
	assert_false(web_host_allowed("[2001:db8::1]", l, names, 2));
	assert_false(web_host_allowed("example.org", l, names, 2));
	assert_false(web_host_allowed("xstatus.example.org", l, names, 2));
	assert_false(web_host_allowed("status.example.org.evil", l, names, 2));
	assert_false(web_host_allowed("status.example.org:", l, names, 2));
	assert_false(web_host_allowed("status.example.org:70000", l, names, 2));
	assert_false(web_host_allowed("[status.example.org]", l, names, 2));
	assert_false(web_host_allowed("[192.0.2.1]", l, names, 2));
	assert_false(web_host_allowed("192.0.2.1]", l, names, 2));
	assert_false(web_host_allowed("", l, names, 2));
	assert_false(web_host_allowed("localhost", l, NULL, 0) == false);
	assert_false(web_host_allowed("status.example.org", l, NULL, 0));
	/* The wildcard address: any address literal (none can be rebound),
	 * still no foreign name. */
	assert_true(web_host_allowed("198.51.100.9:8025", "0.0.0.0:8025", NULL, 0));
	assert_true(web_host_allowed("[2001:db8::1]:8025", "[::]:8025", NULL, 0));
	assert_false(web_host_allowed("evil.example", "0.0.0.0:8025", NULL, 0));
	/* IPv6 listening address. */
	assert_true(web_host_allowed("[2001:DB8::5]:8025", "[2001:db8::5]:8025", NULL, 0));
	assert_false(web_host_allowed("[2001:db8::6]", "[2001:db8::5]:8025", NULL, 0));
}

/* Prometheus text format rules (what promtool check metrics enforces for
 * syntax): HELP and TYPE before a family's samples, names
 * [a-zA-Z_:][a-zA-Z0-9_:]*, counters end in _total, integer values,
 * label values quoted with escapes, each family once. */
static void test_metrics_format(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f, "/metrics", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "text/plain; version=0.0.4"));
	char *save = NULL, fam[128] = "", type[16] = "";
	char seen[64][128];
	int n_seen = 0, samples = 0;
	for (char *line = strtok_r(r.body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128], rest[256];
		if (sscanf(line, "# HELP %127s %255[^\n]", name, rest) == 2) {
			for (int i = 0; i < n_seen; i++)
				if (!strcmp(seen[i], name))
					fail_msg("family %s twice", name);
			snprintf(seen[n_seen++], sizeof(seen[0]), "%s", name);
			snprintf(fam, sizeof(fam), "%s", name);
			type[0] = '\0';
			continue;
		}
		if (sscanf(line, "# TYPE %127s %15s", name, type) == 2) {
			assert_string_equal(name, fam);
			assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge"));
			if (!strcmp(type, "counter"))
				assert_non_null(strstr(name, "_total"));
			continue;
		}
		assert_true(line[0] != '#');
		size_t nl = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
		assert_true(nl > 0);
		assert_true(strncmp(line, fam, nl) == 0 && strlen(fam) == nl);
		assert_true(type[0]);
		const char *p = line + nl;
		if (*p == '{') {
			const char *q = p + 1;
			while (*q && *q != '}') {
				q += strspn(q, "abcdefghijklmnopqrstuvwxyz_");
				assert_true(q[0] == '=' && q[1] == '"');
				q += 2;
				while (*q && *q != '"')
					q += *q == '\\' ? 2 : 1;
				assert_true(*q == '"');
				q++;
				if (*q == ',')
					q++;
			}
			assert_true(*q == '}');
			p = q + 1;
		}
		assert_true(*p == ' ');
		char *end;
		strtoll(p + 1, &end, 10);
		assert_true(*end == '\0' && end > p + 1);
		samples++;
	}
	assert_true(samples >= 10);
	reply_free(&r);
	r = http_get(f, "/metrics", NULL);
	assert_non_null(strstr(r.body, "\ntlsgate_flows_total 42\n"));
	assert_non_null(strstr(r.body, "\ntlsgate_queue_full_drops_total 7\n"));
	assert_non_null(strstr(r.body, "tlsgate_blocks_total{rule=\"history-downgrade\"} 2\n"));
	assert_non_null(strstr(r.body, "tlsgate_recent_blocks{rule=\"history-downgrade\"} 2\n"));
	assert_non_null(strstr(r.body, "tlsgate_kernel_packets_total{action=\"pass\"} 5000\n"));
	/* Absent from the stats: left out, not 0. */
	assert_null(strstr(r.body, "tlsgate_flows_adopted_total"));
	reply_free(&r);
}


/* ---- classes ---------------------------------------------------------------- */

/* Every state of web_store_classify, one MX at a time, then how a
 * destination combines its MX hosts. */
static void test_classify_function(void **state)
{
	(void)state;
	static const struct {
		struct web_mx_facts f;
		enum web_class want;
	} cases[] = {
		{ { 0 }, WEB_CLASS_UNKNOWN },
		{ { .history_level = STORE_LEVEL_PLAINTEXT }, WEB_CLASS_PLAINTEXT },
		{ { .history_level = STORE_LEVEL_TLS }, WEB_CLASS_TLS },
		/* a verified flow, nothing newer */
		{ { .history_level = STORE_LEVEL_DANE }, WEB_CLASS_DANE },
		/* the probe alone */
		{ { .probe_time = 100, .probe_level = STORE_LEVEL_TLS,
		    .probe_dane = WEB_DANE_NOT_APPLICABLE }, WEB_CLASS_TLS },
		{ { .probe_time = 100, .probe_level = STORE_LEVEL_DANE, .probe_dane = WEB_DANE_MATCH },
		  WEB_CLASS_DANE },
		/* the probe's certificate did not match: TLS was spoken, yet
		 * this is not TLS and not green */
		{ { .history_level = STORE_LEVEL_TLS, .probe_time = 100,
		    .probe_level = STORE_LEVEL_NONE, .probe_dane = WEB_DANE_FAIL },
		  WEB_CLASS_DANE_FAILING },
		/* a DANE history does not outlive a failing probe */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 100,
		    .probe_dane = WEB_DANE_FAIL }, WEB_CLASS_DANE_FAILING },
		/* a mismatch on the wire after the probe verified */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 100,
		    .probe_level = STORE_LEVEL_DANE, .probe_dane = WEB_DANE_MATCH,
		    .wire_mismatch_at = 200 }, WEB_CLASS_DANE_FAILING },
		/* in the same second counts as newer: fail closed */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 200,
		    .probe_level = STORE_LEVEL_DANE, .probe_dane = WEB_DANE_MATCH,
		    .wire_mismatch_at = 200 }, WEB_CLASS_DANE_FAILING },
		/* ... and a newer probe that verified again */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 300,
		    .probe_level = STORE_LEVEL_DANE, .probe_dane = WEB_DANE_MATCH,
		    .wire_mismatch_at = 200 }, WEB_CLASS_DANE },
		/* a probe that reached nothing says nothing about DANE */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 300,
		    .probe_dane = WEB_DANE_UNSEEN, .wire_mismatch_at = 200 },
		  WEB_CLASS_DANE_FAILING },
		{ { .history_level = STORE_LEVEL_DANE, .wire_mismatch_at = 200 },
		  WEB_CLASS_DANE_FAILING },
		/* DANE once; the newest probe finds no validated TLSA now */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 300,
		    .probe_level = STORE_LEVEL_TLS, .probe_dane = WEB_DANE_NOT_APPLICABLE },
		  WEB_CLASS_TLS },
		/* ... which also outdates an older wire mismatch */
		{ { .history_level = STORE_LEVEL_DANE, .probe_time = 300,
		    .probe_level = STORE_LEVEL_TLS, .probe_dane = WEB_DANE_NOT_APPLICABLE,
		    .wire_mismatch_at = 200 }, WEB_CLASS_TLS },
		/* once TLS: a probe that found plaintext does not lower it */
		{ { .history_level = STORE_LEVEL_TLS, .probe_time = 300,
		    .probe_level = STORE_LEVEL_PLAINTEXT, .probe_dane = WEB_DANE_NOT_APPLICABLE },
		  WEB_CLASS_TLS },
		/* locked, whatever else */
		{ { .history_level = STORE_LEVEL_TLS, .locked = true }, WEB_CLASS_LOCKED },
		{ { .history_level = STORE_LEVEL_DANE, .locked = true, .probe_time = 300,
		    .probe_level = STORE_LEVEL_DANE, .probe_dane = WEB_DANE_MATCH },
		  WEB_CLASS_LOCKED },
		{ { .history_level = STORE_LEVEL_DANE, .locked = true, .probe_time = 300,
		    .probe_dane = WEB_DANE_FAIL }, WEB_CLASS_LOCKED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum web_class per;
		enum web_class c = web_store_classify(&cases[i].f, 1, &per);
		if (c != cases[i].want || per != c)
			fail_msg("case %zu: %s, want %s", i, web_class_name(c),
				 web_class_name(cases[i].want));
	}
	/* Names and labels, once. */
	static const char *const names[][2] = {
		{ "unknown", "TLS?" }, { "plaintext", "no TLS" }, { "tls", "TLS" },
		{ "dane", "DANE ok" }, { "dane-failing", "DANE failing" }, { "locked", "locked" },
	};
	for (int c = WEB_CLASS_UNKNOWN; c <= WEB_CLASS_LOCKED; c++) {
		assert_string_equal(web_class_name((enum web_class)c), names[c][0]);
		assert_string_equal(web_class_label((enum web_class)c), names[c][1]);
		assert_string_equal(web_store_label(names[c][0]), names[c][1]);
	}
	/* A destination: locked first, then DANE failing, then the weakest
	 * protection (plaintext < unknown < tls < dane). */
	struct web_mx_facts two[2] = { { .history_level = STORE_LEVEL_DANE },
				       { .history_level = STORE_LEVEL_PLAINTEXT } };
	enum web_class per[2];
	assert_int_equal(web_store_classify(two, 2, per), WEB_CLASS_PLAINTEXT);
	assert_int_equal(per[0], WEB_CLASS_DANE);
	two[1] = (struct web_mx_facts){ 0 };
	assert_int_equal(web_store_classify(two, 2, per), WEB_CLASS_UNKNOWN);
	two[1] = (struct web_mx_facts){ .history_level = STORE_LEVEL_PLAINTEXT };
	two[0].wire_mismatch_at = 5;
	assert_int_equal(web_store_classify(two, 2, per), WEB_CLASS_DANE_FAILING);
	two[1].locked = true;
	assert_int_equal(web_store_classify(two, 2, per), WEB_CLASS_LOCKED);
	assert_int_equal(per[0], WEB_CLASS_DANE_FAILING);
	two[0] = (struct web_mx_facts){ .history_level = STORE_LEVEL_TLS };
	two[1] = (struct web_mx_facts){ 0 };
	assert_int_equal(web_store_classify(two, 2, per), WEB_CLASS_UNKNOWN);
	assert_int_equal(web_store_classify(two, 0, NULL), WEB_CLASS_UNKNOWN);
}

/* The same through the API, from what the probe, the daemon and its
 * events write to the store (fill_store_dane). */
static void test_honest_classes(void **state)
{
	struct fixture *f = *state;
	struct reply r = http_get(f,
				  "/api/v1/recipient?address=a@mismatch.example,b@wirefail.example,"
				  "c@wirefixed.example,d@undane.example,e@signed.example,"
				  "f@bogus.example",
				  NULL);
	assert_int_equal(r.status, 200);
	static const char *const want[][5] = {
		/* domain, class, label, dnssec, seen */
		{ "mismatch.example", "dane-failing", "DANE failing", "secure", "looked-up" },
		{ "wirefail.example", "dane-failing", "DANE failing", "secure", "mail" },
		{ "wirefixed.example", "dane", "DANE ok", "secure", "mail" },
		{ "undane.example", "tls", "TLS", "secure", "looked-up" },
		{ "signed.example", "tls", "TLS", "unknown", "looked-up" },
		{ "bogus.example", "unknown", "TLS?", "bogus", "looked-up" },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		json_t *o = recipient(&r, i);
		assert_string_equal(str(o, "domain"), want[i][0]);
		if (getenv("DEBUG_WEB")) json_dumpf(o, stderr, JSON_INDENT(1));
		if (strcmp(str(o, "class"), want[i][1]) || strcmp(str(o, "label"), want[i][2]) ||
		    strcmp(str(o, "dnssec"), want[i][3]) || strcmp(str(o, "seen"), want[i][4]))
			fail_msg("%s: class %s label %s dnssec %s seen %s, want %s %s %s %s",
				 want[i][0], str(o, "class"), str(o, "label"), str(o, "dnssec"),
				 str(o, "seen"), want[i][1], want[i][2], want[i][3], want[i][4]);
		assert_non_null(str(o, "dnssec_basis"));
	}
	/* Why, and the newest DANE verification with its source. */
	json_t *mm = json_array_get(json_object_get(recipient(&r, 0), "mx"), 0);
	assert_string_equal(str(recipient(&r, 0), "why"), "DANE verification failed: no-match");
	assert_string_equal(str(json_object_get(mm, "dane"), "source"), "probe");
	assert_string_equal(str(json_object_get(mm, "dane"), "result"), "fail");
	json_t *wf = json_array_get(json_object_get(recipient(&r, 1), "mx"), 0);
	assert_string_equal(str(json_object_get(wf, "dane"), "source"), "wire");
	assert_non_null(strstr(str(recipient(&r, 1), "why"), "does not match the DANE TLSA"));
	assert_int_equal(json_integer_value(json_object_get(recipient(&r, 1), "blocks")), 1);
	/* The wire's mismatch is newer than the probe: a probe is asked for;
	 * a probe newer than the mismatch needs none. */
	assert_string_equal(str(recipient(&r, 1), "probe"), "scheduled");
	assert_string_equal(str(recipient(&r, 2), "probe"), "none");
	assert_string_equal(str(json_object_get(json_array_get(json_object_get(recipient(&r, 2), "mx"), 0), "dane"), "source"), "probe");
	/* The probe's history records are no flows: looked up, flows 0. */
	assert_int_equal(json_integer_value(json_object_get(mm, "flows")), 0);
	reply_free(&r);
	/* Locks list the class of what is locked. */
	r = http_get(f, "/api/v1/destinations", NULL);
	size_t i;
	json_t *o;
	int locked = 0;
	json_array_foreach(json_object_get(r.json, "destinations"), i, o)
	{
		if (!strcmp(str(o, "class"), "locked")) {
			locked++;
			assert_true(json_is_true(json_object_get(o, "locked")));
		}
	}
	assert_int_equal(locked, 3); /* tls, mixed, bücher */
	reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_parse),
		cmocka_unit_test(test_address_list),
		cmocka_unit_test(test_classify_function),
		cmocka_unit_test(test_host_allowed_rules),
		cmocka_unit_test_setup_teardown(test_host_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_honest_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recipient_classes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_stale_schedule_probe_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recipient_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_needs_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_token_refuses, setup_no_token, teardown),
		cmocka_unit_test_setup_teardown(test_events_destinations_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_served, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listens_only_on_configured_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_format, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
