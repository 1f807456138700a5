/* test_tlsgatectl.c - tlsgatectl against a real web server (web.c over a
 * temporary store, hooks with fixed daemon JSON) and a real control socket
 * that answers as ANOTHER daemon would (other counters, other flows):
 *
 * - status and flows read one daemon, the API's, never the control
 *   socket's numbers beside it, and say which daemon answered; with the
 *   API unreachable they fall back to the control socket alone and say so;
 * - flows prints TLS version and cipher names, not hex, and why a blocked
 *   flow was blocked (its block event in the store);
 * - status counts all six destination classes of web_store.h;
 * - a batch lookup with one bad address names it: the API's 400 (address,
 *   position) and tlsgatectl check; web_addresses_add_at itself.
 *
 * tlsgatectl is run as a program ($TLSGATECTL, else tlsgatectl beside the
 * tests directory of this binary); this process serves both sockets
 * meanwhile (web_process, control_serve). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <jansson.h>

#include "control.h"
#include "store.h"
#include "web.h"
#include "web_store.h"

static char dir[64], db_path[128], sock_path[128], ctl_bin[PATH_MAX];
static struct web *w;
static struct control *ctl;
static char web_addr[64];

/* ---- the daemon behind the API, and another one behind the socket ----- */

static char *api_stats(void *arg)
{
	return strdup("{\"flows\":{\"total\":222,\"offloaded_total\":200,\"tracked\":2,"
		      "\"inspecting\":0,\"offloaded\":1,\"blocked\":1},"
		      "\"queue\":{\"packets\":1000,\"bytes\":50000,\"drops\":3}}");
}

static char *api_flows(void *arg)
{
	return strdup(
		"[{\"client\":\"192.0.2.10:40000\",\"server\":\"198.51.100.20:25\","
		"\"verdict\":\"pass\",\"adopted\":false,\"midstream\":false,"
		"\"queued_packets\":9,\"queued_bytes\":900,\"kernel_packets\":50,"
		"\"kernel_bytes\":70000,\"tls_version\":\"0x0304\",\"tls_cipher\":\"0x1302\"},"
		"{\"client\":\"192.0.2.10:40001\",\"server\":\"198.51.100.30:25\","
		"\"verdict\":\"block\",\"adopted\":false,\"midstream\":false,"
		"\"queued_packets\":4,\"queued_bytes\":300,\"kernel_packets\":0,"
		"\"kernel_bytes\":0,\"tls_version\":\"0x0000\",\"tls_cipher\":\"0x0000\"},"
		"{\"client\":\"[2001:db8:1::10]:40002\",\"server\":\"[2001:db8:2::20]:25\","
		"\"verdict\":\"pass\",\"adopted\":false,\"midstream\":false,"
		"\"queued_packets\":5,\"queued_bytes\":500,\"kernel_packets\":6,"
		"\"kernel_bytes\":600,\"tls_version\":\"0x0303\",\"tls_cipher\":\"0xc02f\"}]");
}

/* The other daemon: a control socket whose answers must never show up
 * beside the API's. */
static char *other_daemon(void *arg, const char *command)
{
	if (!strcmp(command, "stats"))
		return strdup("{\"flows\":{\"total\":111,\"offloaded_total\":100,"
			      "\"inspecting\":7},\"queue\":{\"drops\":5}}");
	if (!strcmp(command, "flows"))
		return strdup("[{\"client\":\"192.0.2.99:50000\",\"server\":\"198.51.100.99:25\","
			      "\"verdict\":\"block\",\"queued_packets\":1,\"queued_bytes\":1,"
			      "\"kernel_packets\":0,\"kernel_bytes\":0,"
			      "\"tls_version\":\"0x0303\",\"tls_cipher\":\"0x009c\"}]");
	return NULL;
}

/* What tlsgate-probe --db writes for one address it found not matching
 * its TLSA records (see test_web.c probe_row). */
static void probe_dane_fail(struct store *s, int64_t t)
{
	struct store_probe p = { .time = t, .domain = "mismatch.example", .cls = "unknown",
				 .mx = "mx.mismatch.example", .addr = "198.51.100.40",
				 .verdict = "dane-fail", .tls_version = "TLSv1.2",
				 .cipher = "ECDHE-RSA-AES128-GCM-SHA256", .dane = "no-match",
				 .reason = "DANE verification failed: no-match" };
	assert_int_equal(store_probe_add(s, &p), 0);
	assert_int_equal(store_history_record(s, "mx.mismatch.example", STORE_LEVEL_TLS, 0, 0, t),
			 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.40", "mx.mismatch.example",
					   "mismatch.example", true, t + 3600), 0);
}

/* One destination of each class. */
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
	assert_int_equal(store_history_record(s, "mx.locked.example", STORE_LEVEL_TLS, 0x0303,
					      0xc02f, now - 20), 0);
	assert_int_equal(store_history_lock(s, "mx.locked.example", "STARTTLS missing", now - 5),
			 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.20", "mx.tls.example", "tls.example",
					   false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.21", "mx.dane.example", "dane.example",
					   true, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.30", "mx.plain.example",
					   "plain.example", false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.31", "mx.locked.example",
					   "locked.example", false, now + 600), 0);
	assert_int_equal(store_addr_mx_set(s, "198.51.100.32", "mx.new.example", "new.example",
					   false, now + 600), 0);
	probe_dane_fail(s, now - 20);
	/* The blocked flow's event, an older one of the same endpoints, and a
	 * newer one of another flow. */
	struct store_event ev = { .time = now - 300, .kind = "block",
				  .client = "192.0.2.10:40001", .server = "198.51.100.30:25",
				  .mx = "mx.plain.example", .rule = "secure-sender",
				  .verdict = "block-permanent", .reason = "an older block" };
	assert_int_equal(store_event_add(s, &ev), 0);
	ev.time = now - 100;
	ev.rule = "history-downgrade";
	ev.verdict = "block-temporary";
	ev.reason = "MX mx.plain.example spoke TLS before and offered no STARTTLS now";
	assert_int_equal(store_event_add(s, &ev), 0);
	ev.time = now - 50;
	ev.client = "192.0.2.10:40009";
	ev.rule = "dane";
	ev.reason = "someone else's block";
	assert_int_equal(store_event_add(s, &ev), 0);
	store_close(s);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_tlsgatectl.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(db_path, sizeof(db_path), "%s/tlsgate.db", dir);
	snprintf(sock_path, sizeof(sock_path), "%s/other.sock", dir);
	fill_store();
	struct web_hooks hooks = { .stats_json = api_stats, .flows_json = api_flows };
	struct web_config cfg = { .listen = "127.0.0.1:0", .store_path = db_path };
	w = web_open(&cfg, &hooks);
	assert_non_null(w);
	snprintf(web_addr, sizeof(web_addr), "127.0.0.1:%d", web_port(w));
	ctl = control_open(sock_path, other_daemon, NULL);
	assert_non_null(ctl);

	const char *env = getenv("TLSGATECTL");
	if (env && *env) {
		snprintf(ctl_bin, sizeof(ctl_bin), "%s", env);
	} else {
		char self[PATH_MAX - 16];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		assert_true(n > 0);
		self[n] = '\0';
		*strrchr(self, '/') = '\0'; /* .../build/tests */
		*strrchr(self, '/') = '\0'; /* .../build */
		snprintf(ctl_bin, sizeof(ctl_bin), "%s/tlsgatectl", self);
	}
	if (access(ctl_bin, X_OK) < 0)
		fail_msg("%s: %s (make first, or set TLSGATECTL)", ctl_bin, strerror(errno));
	return 0;
}

static int teardown(void **state)
{
	char p[160];
	web_close(w);
	control_close(ctl);
	for (const char *const *x = (const char *const[]){ "", "-wal", "-shm", NULL }; *x; x++) {
		snprintf(p, sizeof(p), "%s%s", db_path, *x);
		unlink(p);
	}
	rmdir(dir);
	return 0;
}

/* ---- running tlsgatectl ------------------------------------------------- */

struct run {
	int status; /* exit status, -1 when killed */
	char out[65536], err[8192];
};

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, size - 1, f) : 0;
	buf[n] = '\0';
	if (f)
		fclose(f);
}

/* Runs tlsgatectl with the NULL-terminated arguments while serving the
 * web server and the control socket; at most 20 s. */
static void run_ctl(struct run *r, ...)
{
	const char *argv[32] = { ctl_bin };
	size_t n = 1;
	va_list ap;
	va_start(ap, r);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	char out[160], err[160];
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		unsetenv("TLSGATE_WEB");
		execv(ctl_bin, (char *const *)argv);
		_exit(127);
	}
	int st = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid_t got = waitpid(pid, &st, WNOHANG);
		if (got == pid)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			break;
		}
		struct pollfd p[2] = { { .fd = web_fd(w), .events = POLLIN },
				       { .fd = control_fd(ctl), .events = POLLIN } };
		poll(p, 2, 20);
		web_process(w);
		if (p[1].revents & POLLIN)
			control_serve(ctl);
	}
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
	/* TLSGATECTL_SHOW=1: what it printed, as TAP comments. */
	if (getenv("TLSGATECTL_SHOW")) {
		for (size_t i = 1; argv[i]; i++)
			fprintf(stderr, "%s%s", i > 1 ? " " : "# tlsgatectl ", argv[i]);
		fprintf(stderr, " -> %d\n", r->status);
		for (char *s = r->out; *s;) {
			size_t k = strcspn(s, "\n");
			fprintf(stderr, "#   %.*s\n", (int)k, s);
			s += k + (s[k] == '\n');
		}
		for (char *s = r->err; *s;) {
			size_t k = strcspn(s, "\n");
			fprintf(stderr, "#   (stderr) %.*s\n", (int)k, s);
			s += k + (s[k] == '\n');
		}
	}
}

static void has(const char *text, const char *want)
{
	if (!strstr(text, want))
		fail_msg("wanted \"%s\" in:\n%s", want, text);
}

static void lacks(const char *text, const char *unwanted)
{
	if (strstr(text, unwanted))
		fail_msg("did not want \"%s\" in:\n%s", unwanted, text);
}

/* The line of text that contains key (copied into buf), or fails. */
static const char *line_with(const char *text, const char *key, char *buf, size_t size)
{
	const char *p = strstr(text, key);
	if (!p)
		fail_msg("no line with \"%s\" in:\n%s", key, text);
	while (p > text && p[-1] != '\n')
		p--;
	size_t n = strcspn(p, "\n");
	snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p);
	return buf;
}

/* ---- flows -------------------------------------------------------------- */

static void test_flows_names_and_why(void **state)
{
	struct run *r = calloc(1, sizeof(*r));
	char line[1024];
	run_ctl(r, "--control", sock_path, "--web", web_addr, "flows", NULL);
	if (r->status != 0)
		fail_msg("status %d: %s", r->status, r->err);
	/* Which daemon answered, and only that one. */
	line_with(r->out, "tlsgated at", line, sizeof(line));
	has(line, web_addr);
	has(line, "web API");
	lacks(r->out, "192.0.2.99");
	/* Names, not hex. */
	line_with(r->out, "192.0.2.10:40000", line, sizeof(line));
	has(line, "TLSv1.3");
	has(line, "TLS_AES_256_GCM_SHA384");
	line_with(r->out, "[2001:db8:1::10]:40002", line, sizeof(line));
	has(line, "TLSv1.2");
	has(line, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	lacks(r->out, "0x0304");
	lacks(r->out, "0x1302");
	lacks(r->out, "0x0000");
	/* Why the blocked flow was blocked: its newest block event. */
	const char *b = strstr(r->out, "192.0.2.10:40001");
	assert_non_null(b);
	line_with(b, "blocked:", line, sizeof(line));
	has(line, "history-downgrade");
	has(line, "offered no STARTTLS now");
	lacks(r->out, "an older block");
	lacks(r->out, "someone else's block");
	has(r->out, "3 flow(s)");

	/* --json: the daemon's array, as before (names are for people). */
	run_ctl(r, "--control", sock_path, "--web", web_addr, "flows", "--json", NULL);
	assert_int_equal(r->status, 0);
	json_t *j = json_loads(r->out, 0, NULL);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "tls_version")),
			    "0x0304");
	json_decref(j);
	free(r);
}

static void test_flows_fallback_says_so(void **state)
{
	struct run *r = calloc(1, sizeof(*r));
	char line[1024];
	/* Port 1 on loopback: nothing listens, the API is not reachable. */
	run_ctl(r, "--control", sock_path, "--web", "127.0.0.1:1", "flows", NULL);
	if (r->status != 0)
		fail_msg("status %d: %s", r->status, r->err);
	line_with(r->out, "tlsgated at", line, sizeof(line));
	has(line, sock_path);
	has(line, "control socket");
	has(r->out, "192.0.2.99:50000");
	line_with(r->out, "192.0.2.99:50000", line, sizeof(line));
	has(line, "TLSv1.2");
	has(line, "TLS_RSA_WITH_AES_128_GCM_SHA256");
	line_with(r->out, "blocked:", line, sizeof(line));
	has(line, "not known");
	lacks(r->out, "192.0.2.10:40000");
	free(r);
}

/* ---- status ------------------------------------------------------------- */

static void test_status_one_daemon_six_classes(void **state)
{
	struct run *r = calloc(1, sizeof(*r));
	char line[1024];
	run_ctl(r, "--control", sock_path, "--web", web_addr, "status", NULL);
	if (r->status != 0)
		fail_msg("status %d: %s\n%s", r->status, r->err, r->out);
	line_with(r->out, "tlsgated ", line, sizeof(line));
	has(line, web_addr);
	line_with(r->out, "flows ", line, sizeof(line));
	has(line, "222 seen");
	lacks(r->out, "111");

	/* Expected: the API's own classes, counted here. */
	run_ctl(r, "--control", sock_path, "--web", web_addr, "destinations", "--json", NULL);
	assert_int_equal(r->status, 0);
	json_t *j = json_loads(r->out, 0, NULL);
	assert_non_null(j);
	static const char *const cls[] = { "dane", "tls", "plaintext", "unknown", "dane-failing",
					   "locked" };
	size_t counts[6] = { 0 }, i;
	json_t *d;
	json_array_foreach(json_object_get(j, "destinations"), i, d)
	{
		for (size_t k = 0; k < 6; k++)
			counts[k] += !strcmp(json_string_value(json_object_get(d, "class")), cls[k]);
	}
	json_decref(j);
	for (size_t k = 0; k < 6; k++)
		if (!counts[k])
			fail_msg("the store has no destination of class %s", cls[k]);
	char want[512];
	snprintf(want, sizeof(want),
		 "destinations %zu DANE ok, %zu TLS, %zu no TLS, %zu TLS?, %zu DANE failing, "
		 "%zu locked",
		 counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
	run_ctl(r, "--control", sock_path, "--web", web_addr, "status", NULL);
	line_with(r->out, "destinations", line, sizeof(line));
	assert_string_equal(line, want);

	/* --json: the same counts, and which daemon. */
	run_ctl(r, "--control", sock_path, "--web", web_addr, "status", "--json", NULL);
	assert_int_equal(r->status, 0);
	j = json_loads(r->out, 0, NULL);
	assert_non_null(j);
	for (size_t k = 0; k < 6; k++)
		assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "classes"),
								    cls[k])),
				 counts[k]);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "daemon"), "at")),
			    web_addr);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_object_get(j, "stats"), "flows"), "total")),
			 222);
	json_decref(j);

	/* No API: the control socket's daemon alone, said so, exit 1. */
	run_ctl(r, "--control", sock_path, "--web", "127.0.0.1:1", "status", NULL);
	assert_int_equal(r->status, 1);
	line_with(r->out, "tlsgated ", line, sizeof(line));
	has(line, sock_path);
	has(r->out, "111 seen");
	line_with(r->out, "destinations", line, sizeof(line));
	has(line, "not reachable");
	free(r);
}

/* ---- batch lookups with a bad address ----------------------------------- */

static void test_addresses_add_at(void **state)
{
	struct web_address list[WEB_ADDRESSES_MAX];
	struct web_address_bad bad;
	const char *why = NULL;
	size_t n = 0;
	assert_int_equal(web_addresses_add_at("a@tls.example, ,b@tls.example", list, &n,
					      WEB_ADDRESSES_MAX, &why, &bad), 0);
	assert_int_equal(n, 2);
	/* The third address of the request (blanks are not addresses). */
	assert_int_equal(web_addresses_add_at("c@tls.example,,nobody,d@tls.example", list, &n,
					      WEB_ADDRESSES_MAX, &why, &bad), -EINVAL);
	assert_int_equal(bad.position, 4);
	assert_string_equal(bad.text, "nobody");
	assert_non_null(why);
	/* Unprintable and invalid bytes are shown escaped, UTF-8 as it is. */
	n = 0;
	assert_int_equal(web_addresses_add_at("j\xc3\xb6rg@\xff\x01.example", list, &n,
					      WEB_ADDRESSES_MAX, &why, &bad), -EINVAL);
	assert_int_equal(bad.position, 1);
	assert_string_equal(bad.text, "j\xc3\xb6rg@\\xff\\x01.example");
	/* Too long: cut, still printable. */
	char big[400];
	memset(big, 'a', 300);
	strcpy(big + 300, "@tls.example");
	n = 0;
	assert_int_equal(web_addresses_add_at(big, list, &n, WEB_ADDRESSES_MAX, &why, &bad),
			 -E2BIG);
	assert_int_equal(bad.position, 1);
	assert_true(strlen(bad.text) < WEB_BAD_TEXT_MAX);
	assert_non_null(strstr(bad.text, "..."));
}

/* GET path from the web server; the status and the JSON. */
static json_t *api_get(const char *path, int *status)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)web_port(w)) };
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	char req[4096], buf[65536];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	assert_int_equal(send(fd, req, (size_t)n, 0), n);
	size_t used = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 20);
		web_process(w);
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		ssize_t r = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
		if (r <= 0)
			break;
		used += (size_t)r;
	}
	close(fd);
	buf[used] = '\0';
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", status), 1);
	char *body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	return json_loads(body + 4, 0, NULL);
}

static void test_api_names_the_bad_address(void **state)
{
	int status = 0;
	/* The second parameter's second address is the third of the lookup. */
	json_t *j = api_get("/api/v1/recipient?address=a@tls.example"
			    "&address=b@plain.example,bad@@x.example&address=c@tls.example",
			    &status);
	assert_int_equal(status, 400);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "address")), "bad@@x.example");
	assert_int_equal(json_integer_value(json_object_get(j, "position")), 3);
	has(json_string_value(json_object_get(j, "error")), "bad@@x.example");
	has(json_string_value(json_object_get(j, "error")), "address 3");
	json_decref(j);
	/* A NUL byte inside the second address. */
	j = api_get("/api/v1/recipient?address=a@tls.example,x%00y@tls.example", &status);
	assert_int_equal(status, 400);
	assert_int_equal(json_integer_value(json_object_get(j, "position")), 2);
	assert_string_equal(json_string_value(json_object_get(j, "address")), "x\\x00y@tls.example");
	json_decref(j);
	/* Invalid UTF-8 is named escaped (JSON strings are UTF-8). */
	j = api_get("/api/v1/recipient?address=a@%FF.example", &status);
	assert_int_equal(status, 400);
	assert_string_equal(json_string_value(json_object_get(j, "address")), "a@\\xff.example");
	json_decref(j);
}

static void test_check_names_the_bad_address(void **state)
{
	struct run *r = calloc(1, sizeof(*r));
	run_ctl(r, "--control", sock_path, "--web", web_addr, "check", "a@tls.example", "nobody",
		"c@plain.example", NULL);
	assert_int_equal(r->status, 1);
	has(r->err, "\"nobody\"");
	has(r->err, "address 2");
	assert_string_equal(r->out, "");
	/* The good ones alone are answered. */
	run_ctl(r, "--control", sock_path, "--web", web_addr, "check", "a@tls.example",
		"c@plain.example", NULL);
	assert_int_equal(r->status, 0);
	has(r->out, "a@tls.example");
	free(r);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flows_names_and_why),
		cmocka_unit_test(test_flows_fallback_says_so),
		cmocka_unit_test(test_status_one_daemon_six_classes),
		cmocka_unit_test(test_addresses_add_at),
		cmocka_unit_test(test_api_names_the_bad_address),
		cmocka_unit_test(test_check_names_the_bad_address),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
