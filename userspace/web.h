/* web.h - tlsgated's management HTTP server: the status page, the JSON API
 * for mail clients and operators, and Prometheus metrics (libmicrohttpd,
 * driven from the daemon's own epoll loop; JSON through jansson).
 *
 * Routes (all answers JSON unless noted):
 *   GET  /                         the status page (embedded, no external assets)
 *   GET  /api/v1/recipient?address=A[&address=B|,B]
 *                                  class of each recipient's domain from the store;
 *                                  unknown or stale domains get a probe scheduled
 *   GET  /api/v1/destinations      every known domain / MX with its class
 *   GET  /api/v1/events?limit=N    newest events first (N <= WEB_EVENTS_MAX)
 *   GET  /api/v1/locks             locked destinations
 *   GET  /api/v1/policy            the applied policy
 *   GET  /api/v1/stats             the daemon's counters, plus the last hour
 *   GET  /api/v1/flows             the daemon's flows
 *   GET  /metrics                  Prometheus text format
 *   POST /api/v1/history/release   {"mx": NAME}       bearer token required
 *   POST /api/v1/probe             {"domain": NAME}   bearer token required
 *
 * Every request must name the gateway in its Host header (DNS rebinding:
 * a page of an attacker's name, resolved to this address, must not reach
 * the API from a browser on the management network or through a tunnel):
 * an IP address literal that is the listening address, a loopback address
 * or any address when listening on the wildcard address; "localhost"; or
 * a name configured as web_config.hosts (tlsgated --web-host). The port is
 * not compared (a tunnel or proxy may change it; rebinding changes the
 * name). Anything else is answered 421 with {"error": ...}; a request
 * without a Host header (HTTP/1.0; no browser sends one) is served.
 *
 * Read endpoints need no authentication (the server listens only on the
 * management address). State-changing requests need "Authorization: Bearer
 * TOKEN"; with no token configured they are refused (403). Bad input is a
 * 400 with {"error": "..."}; nothing from a request is ever built into SQL.
 *
 * Threading: HTTP and the store's read queries run in libmicrohttpd's own
 * thread, so lookups do not compete with the mail path for the daemon's
 * thread. Hooks are never called from there: the daemon adds web_fd() to
 * its epoll set and calls web_process() when it is readable and at least
 * once a second (the per-minute samples of the last hour); the hooks run
 * inside web_process(), in the daemon's thread. A request whose hook call
 * is not taken up within 5 s answers 503. */
#ifndef TLSGATE_WEB_H
#define TLSGATE_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

#define WEB_LISTEN_DEFAULT "127.0.0.1:8025"
#define WEB_ADDRESSES_MAX 50   /* recipients in one lookup */
#define WEB_ADDRESS_MAX 254    /* bytes in one address (RFC 5321 path limit) */
#define WEB_EVENTS_MAX 1000    /* rows in one events answer */
#define WEB_BODY_MAX 4096      /* bytes in a POST body */
#define WEB_CONNECTIONS_MAX 512
#define WEB_HOSTS_MAX 8        /* names in web_config.hosts */

/* The hooks reach the daemon: called in the daemon's thread (tlsgated), or
 * over the control socket from the web process (web_proc.h). A hook that
 * returns -ETIMEDOUT, -ECONNREFUSED or -EAGAIN could not reach the daemon:
 * its endpoint answers 503, as for a missing hook. */
struct web_hooks {
	void *arg;
	char *(*stats_json)(void *arg); /* malloc'd JSON, same as control "stats" */
	char *(*flows_json)(void *arg); /* control "flows" */
	int (*schedule_probe)(void *arg, const char *domain); /* 0 or -errno */
	int (*release)(void *arg, const char *mx, const char *by); /* history lock release:
								     0, -ENOENT (not locked) */
};

struct web_config {
	const char *listen;      /* "127.0.0.1:8025" default; IPv6 "[::1]:8025" */
	const char *token;       /* bearer token for state-changing requests; NULL: those are refused */
	const char *cors_origin; /* webmail origin allowed by CORS, or NULL */
	const char *store_path;  /* SQLite file, opened read-only by web_store */
	unsigned rate;           /* requests per second answered (paced, not
				    refused: see web_pace()); 0: no pacing */
	const char *hosts[WEB_HOSTS_MAX]; /* more names for the Host header (see above) */
	size_t n_hosts;
	int listen_fd;           /* > 0: serve this listening socket (web_listen_socket(),
				    made by a privileged parent) instead of binding
				    listen, which still names the address for the Host
				    check; web_close() closes it. 0: bind listen. */
};
/* The default pace: a status page, monitoring and a webmail's lookups fit
 * in it; a flood of requests waits instead of taking the mail path's CPU. */
#define WEB_RATE_DEFAULT 200

struct web;

/* A listening TCP socket on addr ("ADDR:PORT", "[ADDR6]:PORT"; NULL:
 * WEB_LISTEN_DEFAULT), non-blocking and close-on-exec, for
 * web_config.listen_fd: a root parent makes it before the web process
 * drops its rights. The descriptor, or -errno (logged). */
int web_listen_socket(const char *addr);

/* Binds cfg->listen (NULL: WEB_LISTEN_DEFAULT), or takes cfg->listen_fd,
 * and starts serving. cfg and
 * hooks are copied (strings too); any hook may be NULL (its endpoint then
 * answers 503). A store that cannot be opened yet is retried per request.
 * NULL on error (bad address, bind failure), logged. */
struct web *web_open(const struct web_config *cfg, const struct web_hooks *hooks);
void web_close(struct web *w); /* accepts NULL */
/* An fd for the daemon's epoll set: readable when a request waits for a
 * hook call (an eventfd). */
int web_fd(const struct web *w);
/* Runs the hook calls waiting for the daemon's thread; never blocks. */
void web_process(struct web *w);
/* The bound port (useful when cfg->listen asked for port 0). */
int web_port(const struct web *w);

/* Whether a request with Host header host (NULL: none) is served by a
 * server listening on listen ("ADDR:PORT", "[ADDR6]:PORT") with the extra
 * names hosts[0..n_hosts) (see the rules above). Exposed for tests. */
bool web_host_allowed(const char *host, const char *listen, const char *const *hosts,
		      size_t n_hosts);

/* ---- recipient parameters (exposed for tests and the fuzzer) ---------- */

struct web_address {
	char address[WEB_ADDRESS_MAX + 1]; /* local@domain as given, trimmed */
	char domain[STORE_NAME_MAX];       /* A-label form, lower case, no trailing dot */
};

/* Parses one address: trims blanks, requires exactly one '@' with a
 * non-empty local part of printable non-blank characters, converts the
 * domain (UTF-8 or A-labels) to lower-case A-labels and checks it is a
 * host name (labels 1..63 of [a-z0-9-], not starting or ending with '-',
 * at least two labels, 253 bytes at most). Returns 0, -E2BIG (too long)
 * or -EINVAL; *why (may be NULL) gets a static message on error. */
int web_address_parse(const char *in, struct web_address *out, const char **why);

/* Splits a comma-separated value and appends each non-empty address to
 * out[*n...], up to max in total. Returns 0, -E2BIG (more than max, or an
 * address or the value too long) or -EINVAL (with *why). On error *n may
 * have grown; the caller discards the list. */
int web_addresses_add(const char *value, struct web_address *out, size_t *n, size_t max,
		      const char **why);

/* Which address of a lookup was refused, for the answer to say so. */
#define WEB_BAD_TEXT_MAX 100
struct web_address_bad {
	size_t position; /* 1-based among the request's addresses (repeated
			    parameters and comma-separated alike); 0 when no
			    one address is at fault (the parameter too long) */
	char text[WEB_BAD_TEXT_MAX]; /* that address as given, printable:
					a backslash and bytes that are not
					printable UTF-8 as \xNN; cut with "..." */
};

/* web_addresses_add, and on error, when bad is not NULL, which address
 * (counted from *n + 1 on entry) was refused. */
int web_addresses_add_at(const char *value, struct web_address *out, size_t *n, size_t max,
			 const char **why, struct web_address_bad *bad);

/* len bytes of in as printable text into buf (see web_address_bad.text). */
void web_address_quote(const char *in, size_t len, char *buf, size_t size);

#endif
