/* tlsgatectl - operator CLI for tlsgated.
 *
 *   tlsgatectl [--control PATH] [--web ADDR:PORT] [--json] COMMAND [ARGS]
 *
 * What changes state (history release, probe, policy apply) and the live
 * counters (stats) go over the local control socket (root only: that is the
 * authorization); what reads the store goes over the daemon's HTTP API on
 * the management address (plain HTTP/1.1, one request per connection).
 * Each command reads from one channel, so one daemon: `status` and `flows`
 * need the store too (destinations; why a flow was blocked), so they read
 * everything from the API, and only when it cannot be reached fall back to
 * the control socket alone; their first line says which daemon answered.
 * Human output by default, the daemon's JSON with --json.
 *
 * Exit status: 0 ok, 1 the daemon could not be reached or answered with an
 * error, 2 usage. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "control_client.h"
#include "log.h"
#include "tls_parse.h"
#include "web.h"
#include "web_store.h"

#define CTL_HTTP_TIMEOUT_MS 10000
#define CTL_HTTP_MAX (64u * 1024 * 1024)

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tlsgatectl [--control PATH] [--web ADDR:PORT] [--json] COMMAND [ARGS]\n"
		"commands:\n"
		"  status                 counters, destinations by class, locks, policy\n"
		"  stats                  flows by state, queue vs kernel-only packets and bytes, drops\n"
		"  flows                  every tracked or offloaded flow: counters, TLS, why blocked\n"
		"  check ADDRESS...       how mail to each recipient is protected\n"
		"  destinations           every known domain and MX with its class\n"
		"  events [N]             the newest N events (default 50)\n"
		"  history show HOST      TLS history of an MX host\n"
		"  history release HOST   release a locked MX (after a possible downgrade)\n"
		"  policy show            the applied policy and the last refused one\n"
		"  policy apply FILE      apply a signed policy (FILE.minisig beside it)\n"
		"  probe DOMAIN           probe a domain's MX hosts now\n"
		"options:\n"
		"  -s, --control PATH     control socket (default " CONTROL_SOCKET_DEFAULT "):\n"
		"                         stats and what changes state; status and flows\n"
		"                         only when the API cannot be reached\n"
		"  -w, --web ADDR:PORT    the daemon's HTTP API (default $TLSGATE_WEB, else\n"
		"                         " WEB_LISTEN_DEFAULT ")\n"
		"  -j, --json             print the daemon's JSON\n"
		"  -h, --help\n");
}

static long long num(json_t *obj, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = obj;
	for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur;
	     t = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, t);
	return cur ? (long long)json_integer_value(cur) : -1;
}

static void human_bytes(long long b, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void print_stats(json_t *root)
{
	char b1[32], b2[32], b3[32];
	printf("flows     tracked %lld: inspecting %lld, offloaded %lld, blocked %lld\n",
	       num(root, "flows.tracked"), num(root, "flows.inspecting"),
	       num(root, "flows.offloaded"), num(root, "flows.blocked"));
	printf("          since start: %lld seen, %lld offloaded, %lld closed while inspected,\n"
	       "          %lld expired, %lld evicted at the bound, %lld adopted, %lld at a limit\n",
	       num(root, "flows.total"), num(root, "flows.offloaded_total"),
	       num(root, "flows.closed"), num(root, "flows.expired"), num(root, "flows.evicted"),
	       num(root, "flows.adopted"), num(root, "flows.limit"));
	human_bytes(num(root, "queue.bytes"), b1, sizeof(b1));
	printf("queue     %lld packets (%s) through NFQUEUE, %lld verdicts, %lld verdict errors\n",
	       num(root, "queue.packets"), b1, num(root, "queue.verdicts"),
	       num(root, "queue.verdict_errors"));
	printf("          kernel drops: %lld queue full (dropped, resent by TCP), %lld socket overrun; "
	       "%lld unparsed accepted\n",
	       num(root, "queue.drops"), num(root, "queue.user_drops"),
	       num(root, "queue.unparsed"));
	human_bytes(num(root, "kernel.inspect.bytes"), b1, sizeof(b1));
	human_bytes(num(root, "kernel.pass.bytes"), b2, sizeof(b2));
	human_bytes(num(root, "kernel.block.bytes"), b3, sizeof(b3));
	printf("kernel    marked for inspection %lld packets (%s)\n"
	       "          kernel-only (offloaded) %lld packets (%s)\n"
	       "          dropped (blocked)       %lld packets (%s)\n"
	       "          pure ACKs of inspected flows kept in the kernel %lld\n"
	       "          fragments %lld, unparseable %lld (both inspected)\n",
	       num(root, "kernel.inspect.packets"), b1, num(root, "kernel.pass.packets"), b2,
	       num(root, "kernel.block.packets"), b3, num(root, "kernel.ack_skipped.packets"),
	       num(root, "kernel.fragment.packets"),
	       num(root, "kernel.unparsed.packets"));
}

/* A flow's TLS value as the daemon gives it ("0x0303", or a number); 0
 * when absent or not a value. */
static unsigned flow_u16(json_t *f, const char *key)
{
	json_t *v = json_object_get(f, key);
	if (json_is_integer(v))
		return (unsigned)json_integer_value(v) & 0xffff;
	const char *t = json_string_value(v);
	char *end;
	if (!t || !*t)
		return 0;
	unsigned long n = strtoul(t, &end, 0);
	return *end || n > 0xffff ? 0 : (unsigned)n;
}

/* "TLSv1.3" as the API and the status page spell it (web_store.c); "-"
 * for no TLS. */
static const char *flow_version(unsigned v, char *buf, size_t len)
{
	static const char *const names[] = { "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3" };
	if (!v)
		return "-";
	if (v >= 0x0300 && v <= 0x0304)
		return names[v - 0x0300];
	return tls_version_format((uint16_t)v, buf, len);
}

/* The IANA name of the cipher suite, its value when the table has none,
 * "-" without TLS. */
static const char *flow_cipher(unsigned version, unsigned cipher, char *buf, size_t len)
{
	if (!version)
		return "-";
	const char *n = tls_cipher_name((uint16_t)cipher);
	if (n)
		return n;
	snprintf(buf, len, "0x%04x", cipher);
	return buf;
}

/* The newest block event of this flow (events newest first), or NULL. */
static json_t *flow_block_event(json_t *f, json_t *events)
{
	const char *client = json_string_value(json_object_get(f, "client"));
	const char *server = json_string_value(json_object_get(f, "server"));
	size_t i;
	json_t *e;
	if (!client || !server)
		return NULL;
	json_array_foreach(events, i, e)
	{
		const char *k = json_string_value(json_object_get(e, "kind"));
		const char *c = json_string_value(json_object_get(e, "client"));
		const char *sv = json_string_value(json_object_get(e, "server"));
		if (k && c && sv && !strcmp(k, "block") && !strcmp(c, client) && !strcmp(sv, server))
			return e;
	}
	return NULL;
}

/* flows: the daemon's array; events: its newest events (NULL when not
 * known, no_events says why). A blocked flow gets a line saying why. */
static void print_flows(json_t *arr, json_t *events, const char *no_events)
{
	size_t i;
	json_t *f;
	printf("%-24s %-24s %-8s %8s %10s %10s %12s %-8s %s\n", "CLIENT", "SERVER", "VERDICT",
	       "QUEUED", "Q-BYTES", "K-PACKETS", "K-BYTES", "TLS", "CIPHER");
	json_array_foreach(arr, i, f)
	{
		char vb[32], cb[16];
		unsigned v = flow_u16(f, "tls_version"), c = flow_u16(f, "tls_cipher");
		const char *verdict = json_string_value(json_object_get(f, "verdict"));
		printf("%-24s %-24s %-8s %8lld %10lld %10lld %12lld %-8s %s%s\n",
		       json_string_value(json_object_get(f, "client")) ?: "-",
		       json_string_value(json_object_get(f, "server")) ?: "-", verdict ?: "-",
		       num(f, "queued_packets"), num(f, "queued_bytes"), num(f, "kernel_packets"),
		       num(f, "kernel_bytes"), flow_version(v, vb, sizeof(vb)),
		       flow_cipher(v, c, cb, sizeof(cb)),
		       json_is_true(json_object_get(f, "adopted")) ? " (adopted)" : "");
		if (!verdict || strcmp(verdict, "block"))
			continue;
		const char *own = json_string_value(json_object_get(f, "reason"));
		json_t *e = own ? NULL : flow_block_event(f, events);
		if (own)
			printf("    why blocked: %s\n", own);
		else if (e)
			printf("    why blocked: %s [rule %s, %s]\n",
			       json_string_value(json_object_get(e, "reason")) ?: "-",
			       json_string_value(json_object_get(e, "rule")) ?: "-",
			       json_string_value(json_object_get(e, "verdict")) ?: "-");
		else
			printf("    why blocked: not known (%s)\n",
			       events ? "no block event of this flow among the newest events"
				      : no_events);
	}
	printf("%zu flow(s)\n", json_array_size(arr));
}

/* ---- HTTP to the daemon's API ------------------------------------------ */

/* NULL when port is 1..65535 in decimal, else the rule (getaddrinfo()
 * takes 99999 and wraps it). */
static const char *web_port_check(const char *port)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(port, &end, 10);
	if (!*port || *end || errno || port[0] == '-' || port[0] == '+' || v == 0 || v > 65535)
		return "the port is not 1..65535";
	return NULL;
}

/* "host:port" or "[v6]:port" with a good port: NULL, else the rule. */
static const char *web_addr_check(const char *addr)
{
	const char *port;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':')
			return "not ADDR:PORT or [ADDR6]:PORT";
		port = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || colon == addr)
			return "not ADDR:PORT or [ADDR6]:PORT";
		port = colon + 1;
	}
	return web_port_check(port);
}

/* A bad option, argument or command: one line that names it, status 2. */
static int __attribute__((format(printf, 1, 2))) bad_usage(const char *fmt, ...)
{
	va_list ap;
	fputs("tlsgatectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see tlsgatectl --help)\n", stderr);
	return 2;
}

/* GET path from addr ("host:port" or "[v6]:port"); returns the body
 * (malloc'd) and the status in *status, or NULL with a message on stderr.
 * With unreachable non-NULL, a daemon that cannot be reached (no address,
 * no connection) sets it and prints nothing: the caller says what it does
 * instead. */
static char *http_get_or(const char *addr, const char *path, int *status, bool *unreachable)
{
	char host[256];
	const char *port;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':' || (size_t)(end - addr) > sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(end - addr - 1), addr + 1);
		port = end + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (!colon || (size_t)(colon - addr) >= sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		port = colon + 1;
	}
	const char *bad_port = web_port_check(port);
	if (bad_port) {
		fprintf(stderr, "tlsgatectl: %s: %s\n", addr, bad_port);
		return NULL;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		if (unreachable)
			*unreachable = true;
		else
			fprintf(stderr, "tlsgatectl: %s: %s\n", addr, gai_strerror(rc));
		return NULL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (unreachable)
			*unreachable = true;
		else
			fprintf(stderr, "tlsgatectl: cannot reach the tlsgated API at %s: %s\n",
				addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return NULL;
	}
	freeaddrinfo(ai);
	char req[8192];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
			 "User-Agent: tlsgatectl\r\nConnection: close\r\n\r\n",
			 path, addr);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		fprintf(stderr, "tlsgatectl: request too long\n");
		close(fd);
		return NULL;
	}
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		fprintf(stderr, "tlsgatectl: send: %s\n", strerror(errno));
		close(fd);
		return NULL;
	}
	size_t cap = 65536, used = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, CTL_HTTP_TIMEOUT_MS) <= 0) {
			fprintf(stderr, "tlsgatectl: no answer from %s\n", addr);
			goto fail;
		}
		if (used + 1 >= cap) {
			if (cap >= CTL_HTTP_MAX) {
				fprintf(stderr, "tlsgatectl: answer too large\n");
				goto fail;
			}
			buf = xrealloc(buf, cap *= 2);
		}
		ssize_t r = recv(fd, buf + used, cap - used - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "tlsgatectl: recv: %s\n", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		used += (size_t)r;
	}
	close(fd);
	buf[used] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (!body || sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
		fprintf(stderr, "tlsgatectl: not an HTTP answer from %s\n", addr);
		free(buf);
		return NULL;
	}
	body += 4;
	memmove(buf, body, strlen(body) + 1);
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
bad:
	fprintf(stderr, "tlsgatectl: bad --web address '%s' (want ADDR:PORT)\n", addr);
	return NULL;
}

static char *http_get(const char *addr, const char *path, int *status)
{
	return http_get_or(addr, path, status, NULL);
}

/* Percent-encodes s for a query string into buf (size >= 3 * strlen + 1). */
static void url_encode(const char *s, char *buf)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*buf++ = (char)c;
		} else {
			*buf++ = '%';
			*buf++ = hex[c >> 4];
			*buf++ = hex[c & 15];
		}
	}
	*buf = '\0';
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static const char *when(json_t *o, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) == 0)
		return "-";
	time_t t = (time_t)json_integer_value(v);
	struct tm tm;
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
	return buf;
}

static void mx_names(json_t *d, char *buf, size_t len)
{
	size_t i, o = 0;
	json_t *m;
	buf[0] = '\0';
	json_array_foreach(json_object_get(d, "mx"), i, m)
	{
		int n = snprintf(buf + o, len - o, "%s%s", i ? "," : "", jstr(m, "name"));
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

static void print_check(json_t *root)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(root, "recipients"), i, r)
	{
		char mx[512];
		mx_names(r, mx, sizeof(mx));
		printf("%-8s %s\n", jstr(r, "label"), jstr(r, "address"));
		printf("         domain %s, MX %s\n", jstr(r, "domain"), mx);
		if (json_is_string(json_object_get(r, "tls_version")))
			printf("         last TLS %s %s\n", jstr(r, "tls_version"), jstr(r, "cipher"));
		printf("         DNSSEC %s, TLSA %s%s\n", jstr(r, "dnssec"),
		       json_is_string(json_object_get(r, "tlsa")) ? jstr(r, "tlsa") : "not checked",
		       json_is_true(json_object_get(r, "locked"))
			       ? "; LOCKED after a possible downgrade"
			       : "");
		if (!strcmp(jstr(r, "probe"), "scheduled"))
			printf("         a probe is scheduled: ask again in a moment\n");
	}
}

static void print_destinations(json_t *root)
{
	size_t i;
	json_t *d;
	char t[32], mx[512], tls[96];
	json_t *arr = json_object_get(root, "destinations");
	printf("%-8s %-32s %-40s %-34s %s\n", "CLASS", "DOMAIN", "MX", "TLS", "LAST SEEN");
	json_array_foreach(arr, i, d)
	{
		mx_names(d, mx, sizeof(mx));
		snprintf(tls, sizeof(tls), "%s %s", jstr(d, "tls_version"), jstr(d, "cipher"));
		printf("%-8s %-32s %-40s %-34s %s%s\n", jstr(d, "label"),
		       json_is_string(json_object_get(d, "domain")) ? jstr(d, "domain") : "-", mx,
		       tls[1] ? tls : "-", when(d, "checked", t, sizeof(t)),
		       json_is_true(json_object_get(d, "locked")) ? "  LOCKED" : "");
	}
	printf("%zu destination(s)\n", json_array_size(arr));
}

static void print_events(json_t *root)
{
	size_t i;
	json_t *e;
	char t[32];
	json_t *arr = json_object_get(root, "events");
	printf("%-19s %-12s %-22s %-28s %s\n", "TIME", "KIND", "RULE", "MX", "REASON");
	json_array_foreach(arr, i, e)
	printf("%-19s %-12s %-22s %-28s %s\n", when(e, "time", t, sizeof(t)), jstr(e, "kind"),
	       jstr(e, "rule"), *jstr(e, "mx") ? jstr(e, "mx") : jstr(e, "server"),
	       jstr(e, "reason"));
	printf("%zu event(s)\n", json_array_size(arr));
}

static void print_history(json_t *root)
{
	json_t *m = json_object_get(root, "mx"), *d;
	char t[32];
	size_t i;
	printf("mx          %s\nclass       %s\n", jstr(m, "name"), jstr(m, "label"));
	printf("last TLS    %s %s (best version %s)\n", jstr(m, "tls_version"), jstr(m, "cipher"),
	       jstr(m, "best_version"));
	printf("seen        %lld TLS, %lld plaintext; first %s, ",
	       (long long)json_integer_value(json_object_get(m, "tls_count")),
	       (long long)json_integer_value(json_object_get(m, "plain_count")),
	       when(m, "first_seen", t, sizeof(t)));
	printf("last %s\n", when(m, "last_seen", t, sizeof(t)));
	printf("DNSSEC      %s, TLSA %s\n", jstr(m, "dnssec"),
	       json_is_string(json_object_get(m, "tlsa")) ? jstr(m, "tlsa") : "not checked");
	if (json_is_true(json_object_get(m, "locked")))
		printf("LOCKED      %s\n", jstr(m, "lock_reason"));
	printf("domains    ");
	json_array_foreach(json_object_get(root, "domains"), i, d)
	printf(" %s", json_string_value(d));
	printf("\n");
}

static void print_policy(json_t *root)
{
	json_t *a = json_object_get(root, "applied"), *r = json_object_get(root, "last_refused");
	char t[32];
	if (json_is_object(a)) {
		printf("serial      %lld\nsigner key  %s\napplied at  %s\n",
		       (long long)json_integer_value(json_object_get(a, "serial")), jstr(a, "key_id"),
		       when(a, "applied_at", t, sizeof(t)));
		printf("expires     %s\nsha256      %s\n", when(a, "expires", t, sizeof(t)),
		       jstr(a, "sha256"));
	} else {
		printf("no signed policy applied\n");
	}
	if (json_is_object(r))
		printf("last refused %s: %s\n", when(r, "time", t, sizeof(t)), jstr(r, "reason"));
}

/* ---- commands ------------------------------------------------------------ */

/* Runs one API GET; prints the JSON or calls print. 0 or 1. */
static int api_command(const char *web, const char *path, bool json, void (*print)(json_t *))
{
	int status = 0;
	char *body = http_get(web, path, &status);
	if (!body)
		return 1;
	json_error_t err;
	json_t *root = json_loads(body, 0, &err);
	int rc = 0;
	if (!root) {
		fprintf(stderr, "tlsgatectl: bad answer from tlsgated (HTTP %d): %s\n", status,
			err.text);
		rc = 1;
	} else if (status != 200) {
		fprintf(stderr, "tlsgatectl: %s\n",
			json_string_value(json_object_get(root, "error")) ?: "request failed");
		rc = 1;
	} else if (json) {
		printf("%s", body);
	} else {
		print(root);
	}
	json_decref(root);
	free(body);
	return rc;
}

/* Sends a control command; prints the JSON or print(root). 0 or 1. */
static int control_command(const char *path, const char *cmd, bool json, void (*print)(json_t *))
{
	char *answer = control_request(path, cmd);
	if (!answer) {
		fprintf(stderr, "tlsgatectl: cannot reach tlsgated at %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	json_error_t err;
	json_t *root = json_loads(answer, 0, &err);
	if (!root) {
		fprintf(stderr, "tlsgatectl: bad answer from tlsgated: %s\n", err.text);
		free(answer);
		return 1;
	}
	int status = 0;
	json_t *e = json_object_get(root, "error");
	if (json_is_object(root) && (e || json_is_false(json_object_get(root, "ok")))) {
		fprintf(stderr, "tlsgatectl: %s\n", json_string_value(e) ?: "command failed");
		status = 1;
	} else if (json) {
		printf("%s%s", answer, answer[0] && answer[strlen(answer) - 1] == '\n' ? "" : "\n");
	} else {
		print(root);
	}
	json_decref(root);
	free(answer);
	return status;
}


static void print_ok(json_t *root)
{
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v)
	{
		if (json_is_string(v))
			printf("%s: %s\n", k, json_string_value(v));
	}
}

/* GET path as JSON from the API: the document, or NULL with *why set
 * ("not reachable", or the error); *unreachable when it cannot be reached
 * at all. */
static json_t *api_json(const char *web, const char *path, bool *unreachable, char *why,
			size_t whylen)
{
	int status = 0;
	char *body = http_get_or(web, path, &status, unreachable);
	if (!body) {
		snprintf(why, whylen, "%s", *unreachable ? "not reachable" : "no answer");
		return NULL;
	}
	json_t *root = json_loads(body, 0, NULL);
	free(body);
	if (root && status == 200)
		return root;
	snprintf(why, whylen, "HTTP %d: %s", status,
		 json_string_value(json_object_get(root, "error")) ?: "bad answer");
	json_decref(root);
	return NULL;
}

/* The control socket's answer to cmd as JSON, or NULL (a message printed). */
static json_t *control_json(const char *ctl, const char *cmd)
{
	char *answer = control_request(ctl, cmd);
	if (!answer) {
		fprintf(stderr, "tlsgatectl: cannot reach tlsgated at %s: %s\n", ctl,
			strerror(errno));
		return NULL;
	}
	json_error_t err;
	json_t *root = json_loads(answer, 0, &err);
	free(answer);
	if (!root)
		fprintf(stderr, "tlsgatectl: bad answer from tlsgated at %s: %s\n", ctl, err.text);
	return root;
}

static void print_json(json_t *j)
{
	char *out = json_dumps(j, JSON_INDENT(2));
	printf("%s\n", out ? out : "null");
	free(out);
}

/* flows: the flows and the block events from one daemon's API; only when
 * the API cannot be reached, the control socket's flows (then nobody can
 * say why one was blocked). --json prints the daemon's array of flows. */
static int cmd_flows(const char *ctl, const char *web, bool json)
{
	bool unreachable = false;
	char why[512];
	json_t *root = api_json(web, "/api/v1/flows", &unreachable, why, sizeof(why));
	json_t *flows = json_object_get(root, "flows");
	json_t *events = NULL, *evroot = NULL, *fallback = NULL;
	char no_events[600];
	if (!root && !unreachable) {
		fprintf(stderr, "tlsgatectl: flows from the tlsgated API at %s: %s\n", web, why);
		return 1;
	}
	if (root && !json_is_array(flows)) {
		fprintf(stderr, "tlsgatectl: bad answer from the tlsgated API at %s\n", web);
		json_decref(root);
		return 1;
	}
	if (!root) {
		fallback = control_json(ctl, "flows");
		if (!fallback)
			return 1;
		if (!json_is_array(fallback)) {
			fprintf(stderr, "tlsgatectl: %s\n",
				json_string_value(json_object_get(fallback, "error")) ?:
					"bad answer to flows");
			json_decref(fallback);
			return 1;
		}
		flows = fallback;
		snprintf(no_events, sizeof(no_events),
			 "block events are read from the API at %s, not reachable", web);
	}
	if (json) {
		print_json(flows);
	} else {
		if (root) {
			printf("tlsgated at %s (web API)\n", web);
			/* Only a blocked flow needs its events. */
			size_t i;
			json_t *f;
			bool blocked = false;
			json_array_foreach(flows, i, f)
			blocked |= !strcmp(jstr(f, "verdict"), "block");
			char path[64];
			snprintf(path, sizeof(path), "/api/v1/events?limit=%d", WEB_EVENTS_MAX);
			if (blocked && !(evroot = api_json(web, path, &unreachable, why, sizeof(why))))
				snprintf(no_events, sizeof(no_events), "events: %s", why);
			events = json_object_get(evroot, "events");
		} else {
			printf("tlsgated at %s (control socket; the web API at %s is not reachable)\n",
			       ctl, web);
		}
		print_flows(flows, events, no_events);
	}
	json_decref(root);
	json_decref(evroot);
	json_decref(fallback);
	return 0;
}

/* check: one lookup of all the addresses. A refused lookup names the bad
 * address; a daemon whose answer does not is asked nothing more: the
 * address is found here with the same parser. */
static int cmd_check(const char *web, const char *const *args, int nargs, bool json)
{
	size_t cap = 32;
	for (int i = 0; i < nargs; i++)
		cap += 9 + 3 * strlen(args[i]);
	char *q = xmalloc(cap);
	strcpy(q, "/api/v1/recipient?");
	for (int i = 0; i < nargs; i++) {
		strcat(q, i ? "&address=" : "address=");
		url_encode(args[i], q + strlen(q));
	}
	int status = 0;
	char *body = http_get(web, q, &status);
	free(q);
	if (!body)
		return 1;
	json_t *root = json_loads(body, 0, NULL);
	int rc = 0;
	if (status == 400 && json_is_object(root)) {
		const char *why = jstr(root, "error");
		if (json_is_integer(json_object_get(root, "position"))) {
			fprintf(stderr, "tlsgatectl: check: %s\n", why);
		} else {
			struct web_address *list = xcalloc(WEB_ADDRESSES_MAX, sizeof(*list));
			struct web_address_bad bad = { 0 };
			const char *local = NULL;
			size_t n = 0;
			for (int i = 0; i < nargs; i++)
				if (web_addresses_add_at(args[i], list, &n, WEB_ADDRESSES_MAX, &local,
							 &bad) < 0)
					break;
			if (bad.position)
				fprintf(stderr, "tlsgatectl: check: address %zu \"%s\": %s\n",
					bad.position, bad.text, why);
			else
				fprintf(stderr, "tlsgatectl: check: %s\n", why);
			free(list);
		}
		rc = 1;
	} else if (!root || status != 200) {
		fprintf(stderr, "tlsgatectl: check: %s (HTTP %d)\n",
			json_string_value(json_object_get(root, "error")) ?: "bad answer", status);
		rc = 1;
	} else if (json) {
		printf("%s", body);
	} else {
		print_check(root);
	}
	json_decref(root);
	free(body);
	return rc;
}

/* The classes of web_store.h, in the order status counts them. */
static const char *const status_classes[] = { "dane", "tls", "plaintext", "unknown",
					      "dane-failing", "locked" };
#define STATUS_CLASSES (sizeof(status_classes) / sizeof(status_classes[0]))

/* Counts destinations by class into counts[STATUS_CLASSES + 1] (the last:
 * a class this tlsgatectl does not know). */
static void status_count(json_t *dests, size_t *counts)
{
	size_t i;
	json_t *x;
	memset(counts, 0, (STATUS_CLASSES + 1) * sizeof(*counts));
	json_array_foreach(dests, i, x)
	{
		size_t k = 0;
		while (k < STATUS_CLASSES && strcmp(jstr(x, "class"), status_classes[k]))
			k++;
		counts[k]++;
	}
}

/* status: counters, destinations by class and the policy, all from one
 * daemon's API; only when the API cannot be reached, the counters from
 * the control socket (destinations and policy then unknown: exit 1). */
static int cmd_status(const char *ctl, const char *web, bool json)
{
	bool unreachable = false;
	char why[512] = "";
	int rc = 0;
	json_t *s = api_json(web, "/api/v1/stats", &unreachable, why, sizeof(why));
	json_t *d = NULL, *p = NULL;
	const char *via = "web API";
	if (s) {
		d = api_json(web, "/api/v1/destinations", &unreachable, why, sizeof(why));
		if (d)
			p = api_json(web, "/api/v1/policy", &unreachable, why, sizeof(why));
		if (!d || !p)
			rc = 1;
	} else if (unreachable) {
		via = "control socket";
		s = control_json(ctl, "stats");
		rc = 1;
		if (!s)
			return 1;
	} else {
		fprintf(stderr, "tlsgatectl: status from the tlsgated API at %s: %s\n", web, why);
		return 1;
	}
	json_t *dests = json_object_get(d, "destinations");
	size_t counts[STATUS_CLASSES + 1];
	status_count(dests, counts);
	if (json) {
		json_t *cls = json_object();
		for (size_t k = 0; d && k < STATUS_CLASSES; k++)
			json_object_set_new(cls, status_classes[k], json_integer((json_int_t)counts[k]));
		json_t *o = json_pack("{s:{s:s,s:s},s:O?,s:O?,s:o,s:O?}", "daemon", "via", via, "at",
				      strcmp(via, "web API") ? ctl : web, "stats", s, "destinations",
				      dests, "classes", d ? cls : json_null(), "policy", p);
		if (!d)
			json_decref(cls);
		print_json(o);
		json_decref(o);
	} else {
		printf("tlsgated    running, at %s (%s)\n", strcmp(via, "web API") ? ctl : web, via);
		printf("flows       %lld seen, %lld offloaded, %lld being inspected; "
		       "%lld packets dropped at a full queue\n",
		       num(s, "flows.total"), num(s, "flows.offloaded_total"),
		       num(s, "flows.inspecting"), num(s, "queue.drops"));
		if (d) {
			printf("destinations");
			for (size_t k = 0; k < STATUS_CLASSES; k++)
				printf("%s %zu %s", k ? "," : "", counts[k],
				       web_store_label(status_classes[k]));
			if (counts[STATUS_CLASSES])
				printf(", %zu other", counts[STATUS_CLASSES]);
			printf("\n");
		} else if (strcmp(via, "web API")) {
			printf("destinations unknown (the web API at %s is not reachable)\n", web);
		} else {
			printf("destinations unknown (%s)\n", why);
		}
		if (p) {
			json_t *a = json_object_get(p, "applied");
			if (json_is_object(a))
				printf("policy      serial %lld by key %s\n",
				       (long long)json_integer_value(json_object_get(a, "serial")),
				       jstr(a, "key_id"));
			else
				printf("policy      none applied\n");
		} else if (d) {
			printf("policy      unknown (%s)\n", why);
		}
	}
	json_decref(s);
	json_decref(d);
	json_decref(p);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 's' },
		{ "web", required_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = CONTROL_SOCKET_DEFAULT;
	const char *web = getenv("TLSGATE_WEB");
	bool json = false;
	int c;

	if (!web || !*web)
		web = WEB_LISTEN_DEFAULT;
	log_open("tlsgatectl", LOG_LEVEL_WARN, false);
	opterr = 0; /* one line of our own instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, "+:s:w:jh", opts, NULL)) != -1) {
		const char *arg = argv[optind - 1], *rule;
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'w':
			if ((rule = web_addr_check(optarg)))
				return bad_usage("--web '%s': %s", optarg, rule);
			web = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			if (!strncmp(arg, "--", 2))
				return bad_usage("option %s needs a value", arg);
			return bad_usage("option -%c needs a value", optopt);
		default:
			if (!strncmp(arg, "--", 2))
				return bad_usage("unknown option %.*s", (int)strcspn(arg, "="), arg);
			return bad_usage("unknown option -%c", optopt);
		}
	}
	if (optind >= argc)
		return bad_usage("no command given");
	const char *cmd = argv[optind++];
	/* Options may also follow the command: tlsgatectl stats --json */
	const char *args[WEB_ADDRESSES_MAX + 1];
	int nargs = 0;
	for (; optind < argc; optind++) {
		if (!strcmp(argv[optind], "--json") || !strcmp(argv[optind], "-j")) {
			json = true;
		} else if (nargs < WEB_ADDRESSES_MAX) {
			args[nargs++] = argv[optind];
		} else {
			fprintf(stderr, "tlsgatectl: too many arguments\n");
			return 2;
		}
	}
	char line[CONTROL_LINE_MAX];
	if (!strcmp(cmd, "stats")) {
		if (nargs)
			goto extra;
		return control_command(path, cmd, json, print_stats);
	}
	if (!strcmp(cmd, "flows")) {
		if (nargs)
			goto extra;
		return cmd_flows(path, web, json);
	}
	if (!strcmp(cmd, "status")) {
		if (nargs)
			goto extra;
		return cmd_status(path, web, json);
	}
	if (!strcmp(cmd, "check")) {
		if (!nargs) {
			fprintf(stderr, "tlsgatectl: check needs at least one address\n");
			return 2;
		}
		return cmd_check(web, args, nargs, json);
	}
	if (!strcmp(cmd, "destinations")) {
		if (nargs)
			goto extra;
		return api_command(web, "/api/v1/destinations", json, print_destinations);
	}
	if (!strcmp(cmd, "events")) {
		char q[64];
		long n = 50;
		if (nargs > 1)
			goto extra;
		if (nargs == 1) {
			char *end;
			n = strtol(args[0], &end, 10);
			if (*end || n < 1 || n > WEB_EVENTS_MAX) {
				fprintf(stderr, "tlsgatectl: events: N must be 1..%d\n", WEB_EVENTS_MAX);
				return 2;
			}
		}
		snprintf(q, sizeof(q), "/api/v1/events?limit=%ld", n);
		return api_command(web, q, json, print_events);
	}
	if (!strcmp(cmd, "history") && nargs == 2 && !strcmp(args[0], "show")) {
		char enc[3 * 256 + 1], q[1024];
		if (strlen(args[1]) > 255)
			goto extra;
		url_encode(args[1], enc);
		snprintf(q, sizeof(q), "/api/v1/history?mx=%s", enc);
		return api_command(web, q, json, print_history);
	}
	if (!strcmp(cmd, "history") && nargs == 2 && !strcmp(args[0], "release")) {
		snprintf(line, sizeof(line), "release %s", args[1]);
		return control_command(path, line, json, print_ok);
	}
	if (!strcmp(cmd, "policy") && nargs == 1 && !strcmp(args[0], "show"))
		return api_command(web, "/api/v1/policy", json, print_policy);
	if (!strcmp(cmd, "policy") && nargs == 2 && !strcmp(args[0], "apply")) {
		char *abs = realpath(args[1], NULL);
		if (!abs) {
			fprintf(stderr, "tlsgatectl: %s: %s\n", args[1], strerror(errno));
			return 1;
		}
		snprintf(line, sizeof(line), "policy-apply %s", abs);
		free(abs);
		return control_command(path, line, json, print_ok);
	}
	if (!strcmp(cmd, "probe") && nargs == 1) {
		snprintf(line, sizeof(line), "probe %s", args[0]);
		return control_command(path, line, json, print_ok);
	}
	static const char *const known[] = { "status", "stats",	 "flows",  "check", "destinations",
					     "events", "history", "policy", "probe" };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(cmd, known[i]))
			return bad_usage("%s: wrong arguments", cmd);
	return bad_usage("unknown command '%s'", cmd);
extra:
	fprintf(stderr, "tlsgatectl: unexpected arguments for '%s'\n", cmd);
	return 2;
}
