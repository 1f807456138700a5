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
	/* The IDN domain bücher.example in A-label form. */
	assert_int_equal(store_addr_mx_set(s, "198.51.100.20", "mx.tls.example",
					   "xn--bcher-kva.example", false, now + 600), 0);
	assert_int_equal(store_history_lock(s, "mx.tls.example", "STARTTLS missing", now - 5), 0);
	struct store_event ev = { .time = now - 100, .kind = "block", .mx = "mx.tls.example",
				  .rule = "history-downgrade", .verdict = "block-temporary",
				  .reason = "first" };
	assert_int_equal(store_event_add(s, &ev), 0);
	ev.time = now - 50;
	ev.reason = "second \"quoted\" <b>";
	assert_int_equal(store_event_add(s, &ev), 0);
	store_close(s);
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
				  .store_path = db_path };
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
	static const char *const want[][3] = {
		{ "tls.example", "tls", "TLS" },	 { "dane.example", "dane", "DANE ok" },
		{ "plain.example", "plaintext", "no TLS" }, { "mixed.example", "plaintext", "no TLS" },
		{ "xn--bcher-kva.example", "tls", "TLS" },
	};
	assert_int_equal(json_array_size(json_object_get(r.json, "recipients")), 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *o = recipient(&r, i);
		assert_string_equal(str(o, "domain"), want[i][0]);
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
	assert_string_equal(str(mx0, "dnssec"), "insecure");
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
	assert_string_equal(str(recipient(&r, 0), "class"), "tls");
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
			"OPTIONS /api/v1/recipient HTTP/1.1\r\nHost: x\r\n"
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
	/* Five domains from addr_mx plus old.example (history only). */
	assert_int_equal(json_array_size(d), 6);
	size_t i;
	json_t *o;
	int seen_mixed = 0;
	json_array_foreach(d, i, o)
	{
		if (str(o, "domain") && !strcmp(str(o, "domain"), "mixed.example")) {
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
	r = http_raw_to(f, "127.0.0.1", "DELETE /api/v1/locks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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
	struct reply r = http_raw_to(f, "127.0.0.2", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	assert_int_equal(r.status, -ECONNREFUSED);
	struct web_config cfg = { .listen = "127.0.0.1", .store_path = db_path };
	assert_null(web_open(&cfg, NULL));
	cfg.listen = "[::1:0";
	assert_null(web_open(&cfg, NULL));
	cfg.listen = "localhost:8025"; /* numeric only: no resolver at start-up */
	assert_null(web_open(&cfg, NULL));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_parse),
		cmocka_unit_test(test_address_list),
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
