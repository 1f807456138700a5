/* web.c - see web.h for the contract.
 *
 * libmicrohttpd runs its own thread (HTTP parsing and the store's read
 * queries happen there, at nice WEB_THREAD_NICE, so a flood of lookups
 * takes what CPU the mail path leaves). The hooks are not thread-safe, so
 * every hook call is handed to the daemon's thread: the web thread queues
 * it, wakes the daemon through an eventfd (web_fd) and waits;
 * web_process() runs it. Answers are built whole (they are small) and
 * handed to MHD to free. */
#include "web.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <idn2.h>
#include <jansson.h>
#include <microhttpd.h>

#include "log.h"
#include "metrics.h"
#include "web_assets.h"
#include "web_store.h"

#define WEB_SAMPLE_INTERVAL 60 /* seconds between samples of the last hour */
#define WEB_SAMPLES 60
#define WEB_PROBE_SLOTS 256    /* remembered recently scheduled probes */
#define WEB_PROBE_HOLDOFF 60   /* seconds before the same domain is asked again */
/* The web thread's nice value: mail comes first. A burst of lookups takes
 * the CPU the packet path leaves, not a share of the packet path's. */
#define WEB_THREAD_NICE 10
#define WEB_DESTINATIONS_MAX 2000
#define WEB_EVENTS_DEFAULT 50
#define WEB_CALL_TIMEOUT 5     /* seconds the web thread waits for the daemon */

enum web_call_kind { WEB_CALL_STATS, WEB_CALL_FLOWS, WEB_CALL_PROBE, WEB_CALL_RELEASE };

/* One hook call handed from the web thread to the daemon's thread. */
struct web_call {
	enum web_call_kind kind;
	const char *a, *b;
	char *text; /* stats, flows: malloc'd answer or NULL */
	int rc;     /* probe, release */
	bool taken, done;
	struct web_call *next;
};

struct web_sample {
	int64_t time;
	json_int_t flows, offloaded, blocked, failopen, queued;
};

struct web_probe_slot {
	char domain[STORE_NAME_MAX];
	int64_t at;
};

struct web {
	struct MHD_Daemon *mhd;
	int efd;
	pthread_mutex_t lock; /* calls, closing, samples */
	pthread_cond_t cond;
	struct web_call *calls;
	bool closing;
	struct web_store *sample_store; /* the daemon thread's own connection */
	int port;
	char *token, *cors_origin;
	char *listen;                 /* for the Host header check */
	char *hosts[WEB_HOSTS_MAX];   /* --web-host names */
	size_t n_hosts;
	struct web_hooks hooks;
	struct web_store *store;
	struct metrics_web counters;
	struct web_sample samples[WEB_SAMPLES];
	size_t n_samples, next_sample;
	int64_t sample_due;
	struct web_probe_slot probes[WEB_PROBE_SLOTS];
	/* Pacing: a token bucket of rate per second. A request that finds
	 * it empty, or others waiting, waits suspended in paced (first come,
	 * first answered) until the pacer thread resumes it. */
	unsigned rate;
	pthread_mutex_t pace_lock; /* all below */
	pthread_cond_t pace_cond;
	pthread_t pacer;
	bool pacer_started, pace_stop;
	double tokens;
	struct timespec tokens_at;
	struct MHD_Connection *paced[WEB_CONNECTIONS_MAX]; /* one per connection at most */
	size_t paced_head, paced_len;
};

/* Per request: the POST body collected across MHD callbacks. */
struct web_request {
	char body[WEB_BODY_MAX + 1];
	size_t len;
	bool too_big;
	bool paced; /* web_pace() has taken it in */
};

static int64_t web_now(void)
{
	return (int64_t)time(NULL);
}

/* ---- addresses --------------------------------------------------------- */

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
static bool web_utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3, cp = c & 0x07;
		} else {
			return false;
		}
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* A host name in A-label form: LDH labels of 1..63, no leading or trailing
 * hyphen, at least two labels, 253 bytes at most. */
static bool web_hostname_valid(const char *d)
{
	size_t len = strlen(d), label = 0, labels = 1;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = d[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || d[i - 1] == '-' || d[i - label] == '-')
				return false;
			if (c == '.')
				labels++;
			label = 0;
			continue;
		}
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-'))
			return false;
		label++;
	}
	return labels >= 2;
}

/* Converts a domain (UTF-8 U-labels and/or A-labels, any case) to
 * lower-case A-labels in out. */
static int web_domain_normalize(const char *in, char out[STORE_NAME_MAX], const char **why)
{
	char buf[STORE_NAME_MAX];
	size_t len = strlen(in);
	if (len == 0) {
		*why = "empty domain";
		return -EINVAL;
	}
	if (len >= sizeof(buf)) {
		*why = "domain too long";
		return -E2BIG;
	}
	memcpy(buf, in, len + 1);
	if (buf[len - 1] == '.')
		buf[--len] = '\0';
	if (buf[0] == '[') {
		*why = "address literals are not supported";
		return -EINVAL;
	}
	bool ascii = true;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)buf[i] >= 0x80)
			ascii = false;
		else
			buf[i] = (char)tolower((unsigned char)buf[i]);
	}
	if (!ascii) {
		char *alabel = NULL;
		int rc = idn2_lookup_u8((const uint8_t *)buf, (uint8_t **)&alabel,
					IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK) {
			*why = "domain is not a valid internationalized name";
			return -EINVAL;
		}
		if (strlen(alabel) >= STORE_NAME_MAX) {
			idn2_free(alabel);
			*why = "domain too long";
			return -E2BIG;
		}
		snprintf(buf, sizeof(buf), "%s", alabel);
		idn2_free(alabel);
	}
	if (!web_hostname_valid(buf)) {
		*why = "domain is not a valid host name";
		return -EINVAL;
	}
	/* A-labels given as such must decode: "xn--" with garbage is no name. */
	if (strstr(buf, "xn--")) {
		char *u = NULL;
		if (idn2_to_unicode_8z8z(buf, &u, 0) != IDN2_OK) {
			*why = "domain has an invalid A-label";
			return -EINVAL;
		}
		idn2_free(u);
	}
	memcpy(out, buf, strlen(buf) + 1);
	return 0;
}

int web_address_parse(const char *in, struct web_address *out, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	while (*in == ' ' || *in == '\t')
		in++;
	size_t len = strlen(in);
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t'))
		len--;
	/* "<user@example.net>" as a composer may pass it. */
	if (len >= 2 && in[0] == '<' && in[len - 1] == '>') {
		in++;
		len -= 2;
	}
	if (len == 0) {
		*why = "empty address";
		return -EINVAL;
	}
	if (len > WEB_ADDRESS_MAX) {
		*why = "address too long";
		return -E2BIG;
	}
	memcpy(out->address, in, len);
	out->address[len] = '\0';
	if (!web_utf8_valid((const unsigned char *)out->address, len)) {
		*why = "address is not valid UTF-8";
		return -EINVAL;
	}
	char *at = strchr(out->address, '@');
	if (!at || strchr(at + 1, '@')) {
		*why = "address needs exactly one '@'";
		return -EINVAL;
	}
	size_t local = (size_t)(at - out->address);
	if (local == 0 || local > 64) {
		*why = "local part empty or longer than 64 bytes";
		return -EINVAL;
	}
	for (size_t i = 0; i < local; i++) {
		unsigned char c = (unsigned char)out->address[i];
		if (c <= 0x20 || c == 0x7f || c == ',' || c == '<' || c == '>') {
			*why = "local part has a blank or control character";
			return -EINVAL;
		}
	}
	return web_domain_normalize(at + 1, out->domain, why);
}

/* One UTF-8 character's length at s (at most n bytes), 0 when s does not
 * start a valid one. */
static size_t web_utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	return k <= n && web_utf8_valid(s, k) ? k : 0;
}

void web_address_quote(const char *in, size_t len, char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (size < 8) {
		if (size)
			buf[0] = '\0';
		return;
	}
	for (size_t i = 0; i < len;) {
		const unsigned char *c = (const unsigned char *)in + i;
		size_t k = web_utf8_len(c, len - i);
		bool plain = k > 1 || (k == 1 && c[0] >= 0x20 && c[0] < 0x7f && c[0] != '\\');
		size_t need = plain ? k : 4;
		if (o + need + 4 > size) { /* room for "..." and the NUL */
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (plain) {
			memcpy(buf + o, c, k);
		} else {
			buf[o] = '\\';
			buf[o + 1] = 'x';
			buf[o + 2] = hex[c[0] >> 4];
			buf[o + 3] = hex[c[0] & 15];
		}
		o += need;
		i += plain ? k : 1;
	}
	buf[o] = '\0';
}

int web_addresses_add_at(const char *value, struct web_address *out, size_t *n, size_t max,
			 const char **why, struct web_address_bad *bad)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	if (bad)
		bad->position = 0, bad->text[0] = '\0';
	if (strlen(value) > max * (WEB_ADDRESS_MAX + 1)) {
		*why = "parameter too long";
		return -E2BIG;
	}
	const char *p = value;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char one[WEB_ADDRESS_MAX + 8];
		int rc = 0;
		bool blank = strspn(p, " \t") >= len;
		/* Blanks around a longer address still make it too long. */
		if (len >= sizeof(one)) {
			*why = "address too long";
			rc = -E2BIG;
		} else if (!blank) {
			memcpy(one, p, len);
			one[len] = '\0';
			if (*n >= max) {
				*why = "too many addresses";
				rc = -E2BIG;
			} else {
				rc = web_address_parse(one, &out[*n], why);
			}
		}
		if (rc < 0) {
			if (bad) {
				bad->position = *n + 1;
				web_address_quote(p, len, bad->text, sizeof(bad->text));
			}
			return rc;
		}
		if (!blank)
			(*n)++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int web_addresses_add(const char *value, struct web_address *out, size_t *n, size_t max,
		      const char **why)
{
	return web_addresses_add_at(value, out, n, max, why, NULL);
}

/* ---- answers ----------------------------------------------------------- */

static enum MHD_Result web_send(struct web *w, struct MHD_Connection *c, unsigned status,
				const char *type, char *body, size_t len, bool copy)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_MUST_FREE);
	if (!r) {
		if (!copy)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	if (w->cors_origin) {
		const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
		if (origin && !strcmp(origin, w->cors_origin)) {
			MHD_add_response_header(r, "Access-Control-Allow-Origin", w->cors_origin);
			MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, OPTIONS");
			MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type");
			MHD_add_response_header(r, "Access-Control-Max-Age", "600");
		}
		MHD_add_response_header(r, "Vary", "Origin");
	}
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"tlsgate\"");
	w->counters.requests++;
	if (status >= 400)
		w->counters.errors++;
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Sends root (reference stolen) as JSON. */
static enum MHD_Result web_json(struct web *w, struct MHD_Connection *c, unsigned status,
				json_t *root)
{
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (!s)
		return web_send(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
				"{\"error\":\"internal error\"}", 26, true);
	size_t len = strlen(s);
	/* A trailing newline for people using curl. */
	s = xrealloc(s, len + 2);
	s[len] = '\n';
	s[len + 1] = '\0';
	return web_send(w, c, status, "application/json", s, len + 1, false);
}

static enum MHD_Result web_error(struct web *w, struct MHD_Connection *c, unsigned status,
				 const char *msg)
{
	return web_json(w, c, status, json_pack("{s:s}", "error", msg));
}

static enum MHD_Result web_unavailable(struct web *w, struct MHD_Connection *c)
{
	return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "store unavailable");
}

/* A hook call that did not reach the daemon (web.h, struct web_hooks), or
 * that the daemon's thread did not take up (web_call). */
static bool web_unreachable(int rc)
{
	return rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EAGAIN || rc == -ESHUTDOWN;
}

/* In the daemon's thread. */
static void web_call_run(struct web *w, struct web_call *c)
{
	const struct web_hooks *h = &w->hooks;
	switch (c->kind) {
	case WEB_CALL_STATS:
		c->text = h->stats_json ? h->stats_json(h->arg) : NULL;
		break;
	case WEB_CALL_FLOWS:
		c->text = h->flows_json ? h->flows_json(h->arg) : NULL;
		break;
	case WEB_CALL_PROBE:
		c->rc = h->schedule_probe ? h->schedule_probe(h->arg, c->a) : -ENOSYS;
		break;
	case WEB_CALL_RELEASE:
		c->rc = h->release ? h->release(h->arg, c->a, c->b) : -ENOSYS;
		break;
	}
}

/* In the web thread: runs c in the daemon's thread and waits for it, at
 * most WEB_CALL_TIMEOUT unless the daemon has already started it. 0, or
 * -ETIMEDOUT / -ESHUTDOWN with nothing run. */
static int web_call(struct web *w, struct web_call *c)
{
	pthread_mutex_lock(&w->lock);
	if (w->closing) {
		pthread_mutex_unlock(&w->lock);
		return -ESHUTDOWN;
	}
	c->next = w->calls;
	w->calls = c;
	pthread_mutex_unlock(&w->lock);
	uint64_t one = 1;
	if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("web: eventfd");
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WEB_CALL_TIMEOUT;
	int rc = 0;
	pthread_mutex_lock(&w->lock);
	while (!c->done) {
		if (c->taken) { /* running now: it will finish */
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		int err = w->closing ? ESHUTDOWN : pthread_cond_timedwait(&w->cond, &w->lock, &until);
		if ((err == ESHUTDOWN || err == ETIMEDOUT) && !c->taken && !c->done) {
			/* Not started: take it back out of the queue. */
			for (struct web_call **p = &w->calls; *p; p = &(*p)->next)
				if (*p == c) {
					*p = c->next;
					break;
				}
			rc = -err;
			break;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

/* A hook's JSON answer, parsed; NULL when the hook is missing or failed. */
static json_t *web_hook_json(struct web *w, enum web_call_kind kind)
{
	struct web_call c = { .kind = kind };
	if (web_call(w, &c) < 0 || !c.text)
		return NULL;
	json_t *j = json_loads(c.text, 0, NULL);
	free(c.text);
	return j;
}

/* ---- samples of the last hour ----------------------------------------- */

static json_int_t web_num(json_t *root, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(json_object_get(root, a), b);
	if (c)
		v = json_object_get(v, c);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static void web_sample_fill(struct web_store *store, json_t *stats, struct web_sample *s)
{
	s->time = web_now();
	s->flows = web_num(stats, "flows", "total", NULL);
	s->offloaded = web_num(stats, "flows", "offloaded_total", NULL);
	s->failopen = web_num(stats, "queue", "drops", NULL);
	s->queued = web_num(stats, "queue", "packets", NULL);
	s->blocked = 0;
	/* Blocks: the daemon's own counter when it has one, else the events. */
	json_t *blocks = json_object_get(stats, "blocks");
	if (!json_is_object(blocks))
		blocks = json_object_get(json_object_get(stats, "verdicts"), "blocked_by_reason");
	bool own = json_is_object(blocks);
	if (!own)
		blocks = web_store_blocks_by_rule(store);
	const char *k;
	json_t *v;
	json_object_foreach(blocks, k, v)
	s->blocked += json_integer_value(v);
	if (!own)
		json_decref(blocks);
}

/* In the daemon's thread (hooks called directly). */
static void web_sample_take(struct web *w)
{
	char *text = w->hooks.stats_json ? w->hooks.stats_json(w->hooks.arg) : NULL;
	json_t *stats = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	if (!stats)
		return;
	struct web_sample s;
	web_sample_fill(w->sample_store, stats, &s);
	json_decref(stats);
	pthread_mutex_lock(&w->lock);
	w->samples[w->next_sample] = s;
	w->next_sample = (w->next_sample + 1) % WEB_SAMPLES;
	if (w->n_samples < WEB_SAMPLES)
		w->n_samples++;
	pthread_mutex_unlock(&w->lock);
}

static json_t *web_sample_json(const struct web_sample *s)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "time", (json_int_t)s->time, "flows",
			 s->flows, "offloaded", s->offloaded, "blocked", s->blocked, "failopen",
			 s->failopen, "queued", s->queued);
}

/* Oldest first, then the live values as the last point. */
static json_t *web_history_json(struct web *w, json_t *stats)
{
	json_t *arr = json_array();
	pthread_mutex_lock(&w->lock);
	size_t start = (w->next_sample + WEB_SAMPLES - w->n_samples) % WEB_SAMPLES;
	for (size_t i = 0; i < w->n_samples; i++)
		json_array_append_new(arr, web_sample_json(&w->samples[(start + i) % WEB_SAMPLES]));
	pthread_mutex_unlock(&w->lock);
	struct web_sample now;
	web_sample_fill(w->store, stats, &now);
	json_array_append_new(arr, web_sample_json(&now));
	return json_pack("{s:i,s:o}", "interval", WEB_SAMPLE_INTERVAL, "samples", arr);
}

/* ---- probes ------------------------------------------------------------ */

static uint32_t web_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* "scheduled", or "failed"/"unavailable". One request per domain and
 * holdoff: a composer polling for an unknown domain must not start a
 * probe per keystroke. */
static const char *web_probe(struct web *w, const char *domain, bool force)
{
	if (!w->hooks.schedule_probe)
		return "unavailable";
	struct web_probe_slot *slot = &w->probes[web_hash(domain) % WEB_PROBE_SLOTS];
	int64_t now = web_now();
	if (!force && !strcmp(slot->domain, domain) && now - slot->at < WEB_PROBE_HOLDOFF)
		return "scheduled";
	struct web_call c = { .kind = WEB_CALL_PROBE, .a = domain };
	int rc = web_call(w, &c);
	if (rc == 0)
		rc = c.rc;
	if (rc < 0 && rc != -EALREADY && rc != -EEXIST) {
		log_debug("web: probe %s: %s", domain, strerror(-rc));
		return "failed";
	}
	snprintf(slot->domain, sizeof(slot->domain), "%s", domain);
	slot->at = now;
	w->counters.probes++;
	return "scheduled";
}

/* ---- routes ------------------------------------------------------------ */

struct web_args {
	struct web_address *list;
	size_t n;
	int rc;
	const char *why;
	struct web_address_bad bad; /* which address, when rc < 0 */
};

static enum MHD_Result web_collect_address(void *cls, enum MHD_ValueKind kind, const char *key,
					   size_t key_size, const char *value, size_t value_size)
{
	struct web_args *a = cls;
	if (strcmp(key, "address") || a->rc < 0)
		return MHD_YES;
	if (!value) {
		a->rc = -EINVAL;
		a->why = "empty address";
		a->bad.position = a->n + 1;
		a->bad.text[0] = '\0';
		return MHD_NO;
	}
	if (value_size != strlen(value)) {
		/* A NUL byte: the addresses before the one that holds it are
		 * checked first (the first bad one is named), then that one. */
		size_t nul = strlen(value), start = nul, end = nul;
		while (start > 0 && value[start - 1] != ',')
			start--;
		while (end < value_size && value[end] != ',')
			end++;
		char *head = xmalloc(start + 1);
		memcpy(head, value, start);
		head[start] = '\0';
		a->rc = web_addresses_add_at(head, a->list, &a->n, WEB_ADDRESSES_MAX, &a->why,
					     &a->bad);
		free(head);
		if (a->rc == 0) {
			a->rc = -EINVAL;
			a->why = "address contains a NUL byte";
			a->bad.position = a->n + 1;
			web_address_quote(value + start, end - start, a->bad.text,
					  sizeof(a->bad.text));
		}
		return MHD_NO;
	}
	a->rc = web_addresses_add_at(value, a->list, &a->n, WEB_ADDRESSES_MAX, &a->why, &a->bad);
	return a->rc < 0 ? MHD_NO : MHD_YES;
}

/* The 400 of a lookup: the reason, and which address when one is at fault
 * ({"error", "address": as given, "position": 1-based}). */
static json_t *web_address_error(const struct web_args *a)
{
	const char *why = a->why ? a->why : "bad address";
	if (!a->bad.position || !strcmp(why, "too many addresses"))
		return json_pack("{s:s}", "error", why);
	char msg[sizeof(a->bad.text) + 160];
	snprintf(msg, sizeof(msg), "address %zu \"%s\": %s", a->bad.position, a->bad.text, why);
	return json_pack("{s:s,s:s,s:I}", "error", msg, "address", a->bad.text, "position",
			 (json_int_t)a->bad.position);
}

static enum MHD_Result web_recipient(struct web *w, struct MHD_Connection *c)
{
	struct web_address *list = xcalloc(WEB_ADDRESSES_MAX, sizeof(*list));
	struct web_args a = { .list = list };
	MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, web_collect_address, &a);
	if (a.rc == 0 && a.n == 0)
		a.rc = -EINVAL, a.why = "no address given (?address=user@example.net)";
	if (a.rc < 0) {
		free(list);
		return web_json(w, c, MHD_HTTP_BAD_REQUEST, web_address_error(&a));
	}
	json_t *out = json_array();
	int64_t now = web_now();
	for (size_t i = 0; i < a.n; i++) {
		bool needs_probe = false;
		json_t *d = web_store_domain(w->store, list[i].domain, now, &needs_probe);
		if (!d) {
			json_decref(out);
			free(list);
			return web_unavailable(w, c);
		}
		json_object_set_new(d, "address", json_string(list[i].address));
		json_object_set_new(d, "probe", json_string(needs_probe ? web_probe(w, list[i].domain,
										     false)
									: "none"));
		json_array_append_new(out, d);
		w->counters.lookups++;
	}
	free(list);
	return web_json(w, c, MHD_HTTP_OK, json_pack("{s:o}", "recipients", out));
}

/* ?name=N, 1..max, or def when absent. -1 when malformed. */
static long web_int_arg(struct MHD_Connection *c, const char *name, long def, long max)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	if (!v)
		return def;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 1 || n > max)
		return -1;
	return n;
}

static enum MHD_Result web_history_show(struct web *w, struct MHD_Connection *c)
{
	const char *mx = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mx");
	char norm[STORE_NAME_MAX];
	const char *why = "mx missing";
	struct in6_addr a6;
	if (!mx)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, why);
	/* History is kept by MX name, or by address when no name is known. */
	if (inet_pton(AF_INET, mx, &a6) == 1 || inet_pton(AF_INET6, mx, &a6) == 1)
		snprintf(norm, sizeof(norm), "%s", mx);
	else if (web_domain_normalize(mx, norm, &why) < 0)
		return web_error(w, c, MHD_HTTP_BAD_REQUEST, why);
	json_t *all = web_store_destinations(w->store, web_now(), WEB_DESTINATIONS_MAX);
	if (!all)
		return web_unavailable(w, c);
	/* Every destination this MX serves, and the MX itself. */
	json_t *hit = NULL, *dest, *m;
	size_t i, j;
	json_array_foreach(all, i, dest)
	{
		json_array_foreach(json_object_get(dest, "mx"), j, m)
		{
			if (!strcmp(json_string_value(json_object_get(m, "name")) ?: "", norm)) {
				if (!hit) {
					hit = json_pack("{s:O,s:[]}", "mx", m, "domains");
				}
				if (!json_is_null(json_object_get(dest, "domain")))
					json_array_append(json_object_get(hit, "domains"),
							  json_object_get(dest, "domain"));
			}
		}
	}
	json_decref(all);
	if (!hit)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, "no history for this MX");
	return web_json(w, c, MHD_HTTP_OK, hit);
}

static enum MHD_Result web_stats(struct web *w, struct MHD_Connection *c)
{
	json_t *stats = web_hook_json(w, WEB_CALL_STATS);
	if (!stats)
		return web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "daemon statistics unavailable");
	json_t *recent = web_store_blocks_by_rule(w->store);
	json_object_set_new(stats, "recent_blocks", recent ? recent : json_null());
	json_object_set_new(stats, "history", web_history_json(w, stats));
	json_object_set_new(stats, "web",
			    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "requests",
				      (json_int_t)w->counters.requests, "errors",
				      (json_int_t)w->counters.errors, "lookups",
				      (json_int_t)w->counters.lookups, "probes",
				      (json_int_t)w->counters.probes, "paced",
				      (json_int_t)w->counters.paced, "rate", (json_int_t)w->rate));
	return web_json(w, c, MHD_HTTP_OK, stats);
}

static enum MHD_Result web_metrics(struct web *w, struct MHD_Connection *c)
{
	json_t *stats = web_hook_json(w, WEB_CALL_STATS);
	json_t *recent = web_store_blocks_by_rule(w->store);
	char *text = metrics_render(stats, recent, &w->counters);
	json_decref(stats);
	json_decref(recent);
	return web_send(w, c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
			strlen(text), false);
}

/* Constant time: the token must not leak through timing. */
static bool web_token_ok(struct web *w, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	size_t a = strlen(h), b = strlen(w->token);
	unsigned char diff = a != b;
	for (size_t i = 0; i < a; i++)
		diff |= (unsigned char)(h[i] ^ w->token[i % (b ? b : 1)]);
	return diff == 0;
}

/* {"key": "string"} from the body; NULL with an error sent otherwise. */
static const char *web_body_string(struct web_request *rq, const char *key, json_t **root)
{
	*root = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, NULL);
	json_t *v = json_object_get(*root, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void web_client_name(struct MHD_Connection *c, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char host[INET6_ADDRSTRLEN] = "?";
	if (ci && ci->client_addr)
		getnameinfo(ci->client_addr,
			    ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
								   : sizeof(struct sockaddr_in),
			    host, sizeof(host), NULL, 0, NI_NUMERICHOST);
	snprintf(buf, size, "web %s", host);
}

static enum MHD_Result web_post(struct web *w, struct MHD_Connection *c, const char *url,
				struct web_request *rq)
{
	bool release = !strcmp(url, "/api/v1/history/release");
	if (!release && strcmp(url, "/api/v1/probe"))
		return web_error(w, c, MHD_HTTP_NOT_FOUND, "no such endpoint");
	if (!w->token)
		return web_error(w, c, MHD_HTTP_FORBIDDEN,
				 "no token configured: state-changing requests are disabled");
	if (!web_token_ok(w, c))
		return web_error(w, c, MHD_HTTP_UNAUTHORIZED, "bearer token missing or wrong");
	if (rq->too_big)
		return web_error(w, c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
	json_t *root;
	const char *what = web_body_string(rq, release ? "mx" : "domain", &root);
	char norm[STORE_NAME_MAX];
	const char *why = release ? "body must be {\"mx\": NAME}" : "body must be {\"domain\": NAME}";
	struct in6_addr a6;
	enum MHD_Result ret;
	if (!what) {
		ret = web_error(w, c, MHD_HTTP_BAD_REQUEST, why);
	} else if (release) {
		if (inet_pton(AF_INET, what, &a6) == 1 || inet_pton(AF_INET6, what, &a6) == 1)
			snprintf(norm, sizeof(norm), "%s", what);
		else if (web_domain_normalize(what, norm, &why) < 0)
			goto bad;
		if (!w->hooks.release) {
			ret = web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "release unavailable");
			goto out;
		}
		char by[96];
		web_client_name(c, by, sizeof(by));
		struct web_call call = { .kind = WEB_CALL_RELEASE, .a = norm, .b = by };
		int rc = web_call(w, &call);
		if (rc == 0)
			rc = call.rc;
		if (rc == -ENOENT)
			ret = web_error(w, c, MHD_HTTP_NOT_FOUND, "this MX is not locked");
		else if (web_unreachable(rc))
			ret = web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "daemon unavailable");
		else if (rc < 0)
			ret = web_error(w, c, MHD_HTTP_INTERNAL_SERVER_ERROR, strerror(-rc));
		else
			ret = web_json(w, c, MHD_HTTP_OK, json_pack("{s:s}", "released", norm));
		log_info("web: release of %s by %s: %s", norm, by, rc < 0 ? strerror(-rc) : "ok");
	} else {
		if (web_domain_normalize(what, norm, &why) < 0)
			goto bad;
		const char *st = web_probe(w, norm, true);
		ret = web_json(w, c,
			       strcmp(st, "scheduled") ? MHD_HTTP_SERVICE_UNAVAILABLE
						       : MHD_HTTP_ACCEPTED,
			       json_pack("{s:s,s:s}", "domain", norm, "probe", st));
	}
out:
	json_decref(root);
	return ret;
bad:
	ret = web_error(w, c, MHD_HTTP_BAD_REQUEST, why);
	goto out;
}

static enum MHD_Result web_get(struct web *w, struct MHD_Connection *c, const char *url)
{
	if (!strcmp(url, "/api/v1/recipient"))
		return web_recipient(w, c);
	if (!strcmp(url, "/api/v1/destinations")) {
		json_t *d = web_store_destinations(w->store, web_now(), WEB_DESTINATIONS_MAX);
		return d ? web_json(w, c, MHD_HTTP_OK, json_pack("{s:o}", "destinations", d))
			 : web_unavailable(w, c);
	}
	if (!strcmp(url, "/api/v1/events")) {
		long n = web_int_arg(c, "limit", WEB_EVENTS_DEFAULT, WEB_EVENTS_MAX);
		if (n < 0)
			return web_error(w, c, MHD_HTTP_BAD_REQUEST, "limit must be 1..1000");
		json_t *e = web_store_events(w->store, (int)n);
		return e ? web_json(w, c, MHD_HTTP_OK, json_pack("{s:o}", "events", e))
			 : web_unavailable(w, c);
	}
	if (!strcmp(url, "/api/v1/locks")) {
		json_t *l = web_store_locks(w->store);
		return l ? web_json(w, c, MHD_HTTP_OK, json_pack("{s:o}", "locks", l))
			 : web_unavailable(w, c);
	}
	if (!strcmp(url, "/api/v1/policy")) {
		json_t *p = web_store_policy(w->store);
		return p ? web_json(w, c, MHD_HTTP_OK, p) : web_unavailable(w, c);
	}
	if (!strcmp(url, "/api/v1/history"))
		return web_history_show(w, c);
	if (!strcmp(url, "/api/v1/stats"))
		return web_stats(w, c);
	if (!strcmp(url, "/api/v1/flows")) {
		json_t *f = web_hook_json(w, WEB_CALL_FLOWS);
		return f ? web_json(w, c, MHD_HTTP_OK, json_pack("{s:o}", "flows", f))
			 : web_error(w, c, MHD_HTTP_SERVICE_UNAVAILABLE, "flows unavailable");
	}
	if (!strcmp(url, "/metrics"))
		return web_metrics(w, c);
	const struct web_asset *a = web_asset_find(url);
	if (!a)
		return web_error(w, c, MHD_HTTP_NOT_FOUND, "not found");
	struct MHD_Response *r = MHD_create_response_from_buffer(a->len, (void *)a->data,
								 MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", a->content_type);
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'none'; script-src 'self'; style-src 'self';"
				" connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
	w->counters.requests++;
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Lowers the calling thread's priority once (MHD's thread has no option). */
static void web_thread_lower(void)
{
	static __thread bool lowered;
	if (lowered)
		return;
	lowered = true;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), WEB_THREAD_NICE) < 0)
		log_warn("web: cannot lower the web thread's priority");
}

/* Adds the tokens earned since the last call (pace_lock held): rate a
 * second, at most a burst of a tenth of the rate and at least 20 (a page
 * and its assets). */
static void web_refill(struct web *w, const struct timespec *now)
{
	double burst = w->rate / 10.0 < 20 ? 20 : w->rate / 10.0;
	w->tokens += ((double)(now->tv_sec - w->tokens_at.tv_sec) +
		      (double)(now->tv_nsec - w->tokens_at.tv_nsec) / 1e9) * w->rate;
	if (w->tokens > burst)
		w->tokens = burst;
	w->tokens_at = *now;
}

/* A request read whole (web thread): answered now if a token is left and
 * nobody waits, else suspended at the end of the line, which the pacer
 * thread resumes in order. A flood is answered more slowly, never
 * refused, and every connection in it in turn: a wait is about the
 * connections ahead divided by the rate (WEB_CONNECTIONS_MAX at most). */
static bool web_pace(struct web *w, struct MHD_Connection *c)
{
	struct timespec now;
	bool waits = false;
	if (!w->rate)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&w->pace_lock);
	web_refill(w, &now);
	if (!w->paced_len && w->tokens >= 1) {
		w->tokens -= 1;
	} else if (!w->pace_stop && w->paced_len < WEB_CONNECTIONS_MAX) {
		w->paced[(w->paced_head + w->paced_len) % WEB_CONNECTIONS_MAX] = c;
		if (!w->paced_len++)
			pthread_cond_signal(&w->pace_cond); /* the pacer waits untimed while none wait */
		MHD_suspend_connection(c); /* before the lock goes: the pacer resumes after */
		w->counters.paced++;
		waits = true;
	}
	pthread_mutex_unlock(&w->pace_lock);
	return waits;
}

/* Resumes waiting requests as tokens come: 100 ms worth at a time, so
 * that MHD answers them in one pass of its loop (measured at 200/s under
 * a flood: 172 us of the daemon's CPU per request, 243 us with 20 ms
 * batches; 262 us one at a time at 500/s). At close, resumes
 * all: MHD then answers them and stops. */
static void *web_pacer(void *arg)
{
	struct web *w = arg;
	double refill = w->rate / 10.0 < 1 ? 1 : w->rate / 10.0;
	struct timespec now;

	pthread_mutex_lock(&w->pace_lock);
	for (;;) {
		if (!w->paced_len && !w->pace_stop) {
			pthread_cond_wait(&w->pace_cond, &w->pace_lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		web_refill(w, &now);
		while (w->paced_len && (w->tokens >= 1 || w->pace_stop)) {
			MHD_resume_connection(w->paced[w->paced_head]);
			w->paced_head = (w->paced_head + 1) % WEB_CONNECTIONS_MAX;
			w->paced_len--;
			w->tokens -= 1;
		}
		if (w->pace_stop)
			break;
		if (!w->paced_len)
			continue;
		double wait = (refill - w->tokens) / w->rate;
		long ns = now.tv_nsec + (long)((wait - (double)(time_t)wait) * 1e9);
		struct timespec until = { .tv_sec = now.tv_sec + (time_t)wait + ns / 1000000000,
					  .tv_nsec = ns % 1000000000 };
		while (!w->pace_stop &&
		       pthread_cond_timedwait(&w->pace_cond, &w->pace_lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&w->pace_lock);
	return NULL;
}

/* ---- Host header (DNS rebinding) -------------------------------------- */

/* The host part of "NAME[:PORT]" or "[ADDR6][:PORT]"; false when malformed
 * (empty, a bad port, junk after the bracket). */
static bool web_host_split(const char *in, const char **h, size_t *hlen, bool *bracketed)
{
	const char *port = NULL;
	if (in[0] == '[') {
		const char *end = strchr(in, ']');
		if (!end)
			return false;
		*h = in + 1;
		*hlen = (size_t)(end - in - 1);
		*bracketed = true;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return false;
	} else {
		const char *colon = strchr(in, ':');
		*h = in;
		*hlen = colon ? (size_t)(colon - in) : strlen(in);
		*bracketed = false;
		if (colon)
			port = colon + 1;
	}
	if (port) {
		size_t n = strlen(port);
		if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atol(port) < 1 ||
		    atol(port) > 65535)
			return false;
	}
	return *hlen > 0;
}

/* An IPv4 or IPv6 literal of len bytes at s, as 16 bytes (IPv4 in the first 4). */
static bool web_host_literal(const char *s, size_t len, int *af, unsigned char addr[16])
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1)
		*af = AF_INET;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		*af = AF_INET6;
	else
		return false;
	return true;
}

static bool web_host_name_is(const char *h, size_t len, const char *name)
{
	size_t n = strlen(name);
	if (n && name[n - 1] == '.')
		n--;
	return n == len && !strncasecmp(h, name, len);
}

bool web_host_allowed(const char *host, const char *listen, const char *const *hosts,
		      size_t n_hosts)
{
	const char *h;
	size_t len;
	bool br;
	int af;
	unsigned char a[16];
	if (!host)
		return true; /* HTTP/1.0 without Host: not a browser */
	if (!web_host_split(host, &h, &len, &br))
		return false;
	if (web_host_literal(h, len, &af, a)) {
		/* An address names no one's zone: nothing to rebind. */
		static const unsigned char lo6[16] = { [15] = 1 }, any[16] = { 0 };
		if (br != (af == AF_INET6))
			return false;
		if ((af == AF_INET && a[0] == 127) || (af == AF_INET6 && !memcmp(a, lo6, 16)))
			return true;
		const char *lh;
		size_t llen;
		bool lbr;
		int laf;
		unsigned char la[16];
		if (listen && web_host_split(listen, &lh, &llen, &lbr) &&
		    web_host_literal(lh, llen, &laf, la))
			return !memcmp(la, any, 16) || (laf == af && !memcmp(la, a, 16));
		return false;
	}
	if (br)
		return false;
	if (h[len - 1] == '.')
		len--;
	if (web_host_name_is(h, len, "localhost"))
		return true;
	for (size_t i = 0; i < n_hosts; i++)
		if (hosts[i] && web_host_name_is(h, len, hosts[i]))
			return true;
	return false;
}

static enum MHD_Result web_misdirected(struct web *w, struct MHD_Connection *c, const char *host)
{
	char quoted[WEB_BAD_TEXT_MAX], msg[WEB_BAD_TEXT_MAX + 256];
	web_address_quote(host, strlen(host), quoted, sizeof(quoted));
	snprintf(msg, sizeof(msg),
		 "Host \"%s\" is not a name of this gateway: ask for it by its address, "
		 "localhost or a name given to tlsgated with --web-host (DNS rebinding protection)",
		 quoted);
	return web_json(w, c, 421, json_pack("{s:s}", "error", msg));
}

static enum MHD_Result web_handler(void *cls, struct MHD_Connection *c, const char *url,
				   const char *method, const char *version,
				   const char *upload_data, size_t *upload_data_size,
				   void **con_cls)
{
	struct web *w = cls;
	struct web_request *rq = *con_cls;
	web_thread_lower();
	if (!rq) {
		*con_cls = xcalloc(1, sizeof(*rq));
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		if (rq->len + n > WEB_BODY_MAX)
			rq->too_big = true;
		else
			memcpy(rq->body + rq->len, upload_data, n), rq->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* The whole request is read: it waits here for its turn (MHD calls
	 * again when the pacer resumes it). */
	if (!rq->paced) {
		/* Before its turn: a refused request costs no token. */
		const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
		if (!web_host_allowed(host, w->listen, (const char *const *)w->hosts, w->n_hosts))
			return web_misdirected(w, c, host);
		rq->paced = true;
		if (web_pace(w, c))
			return MHD_YES;
	}
	if (!strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD))
		return web_get(w, c, url);
	if (!strcmp(method, MHD_HTTP_METHOD_POST))
		return web_post(w, c, url, rq);
	if (!strcmp(method, MHD_HTTP_METHOD_OPTIONS))
		return web_send(w, c, MHD_HTTP_NO_CONTENT, "text/plain", "", 0, true);
	return web_error(w, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
}

static void web_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	free(*con_cls);
	*con_cls = NULL;
}

static void web_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[256];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	static struct log_ratelimit rl;
	log_warnx_rl(&rl, "web: %s", buf);
}

/* ---- life cycle ---------------------------------------------------------- */

/* "host:port" or "[v6]:port" into ss. */
static int web_parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');
		if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, listen + 1, (size_t)(end - listen - 1));
		host[end - listen - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= sizeof(host))
			return -EINVAL;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
		port = colon + 1;
	}
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	if (!*port || getaddrinfo(host, port, &hints, &ai) != 0)
		return -EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int web_listen_socket(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int one = 1;
	if (!addr)
		addr = WEB_LISTEN_DEFAULT;
	if (web_parse_listen(addr, &ss, &sslen) < 0) {
		log_warnx("web: bad listen address '%s' (want ADDR:PORT or [ADDR6]:PORT)", addr);
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 64) < 0) {
		int err = -errno;
		log_warn("web: cannot listen on %s", addr);
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

struct web *web_open(const struct web_config *cfg, const struct web_hooks *hooks)
{
	const char *listen = cfg->listen ? cfg->listen : WEB_LISTEN_DEFAULT;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int lfd = cfg->listen_fd > 0 ? cfg->listen_fd : -1;
	if (lfd >= 0 && getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0) {
		log_warn("web: listening socket %d", lfd);
		return NULL;
	}
	if (lfd < 0 && web_parse_listen(listen, &ss, &sslen) < 0) {
		log_warnx("web: bad listen address '%s' (want ADDR:PORT or [ADDR6]:PORT)", listen);
		return NULL;
	}
	/* The parent's socket, or the address to bind. */
	struct MHD_OptionItem where[] = {
		lfd >= 0 ? (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, lfd, NULL }
			 : (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, &ss },
		{ MHD_OPTION_END, 0, NULL },
	};
	struct web *w = xcalloc(1, sizeof(*w));
	if (hooks)
		w->hooks = *hooks;
	w->token = cfg->token && cfg->token[0] ? xstrdup(cfg->token) : NULL;
	w->cors_origin = cfg->cors_origin ? xstrdup(cfg->cors_origin) : NULL;
	w->listen = xstrdup(listen);
	for (size_t i = 0; i < cfg->n_hosts && i < WEB_HOSTS_MAX; i++)
		if (cfg->hosts[i])
			w->hosts[w->n_hosts++] = xstrdup(cfg->hosts[i]);
	w->rate = cfg->rate;
	w->tokens = 20;
	clock_gettime(CLOCK_MONOTONIC, &w->tokens_at);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->pace_lock, NULL);
	pthread_cond_init(&w->pace_cond, &ca);
	pthread_condattr_destroy(&ca);
	w->store = web_store_new(cfg->store_path);
	w->sample_store = web_store_new(cfg->store_path);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		log_warn("web: eventfd");
		web_close(w);
		return NULL;
	}
	if (w->rate) {
		int err = pthread_create(&w->pacer, NULL, web_pacer, w);
		if (err) {
			log_warnx("web: cannot start the pacing thread: %s", strerror(err));
			web_close(w);
			return NULL;
		}
		w->pacer_started = true;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 MHD_ALLOW_SUSPEND_RESUME;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	w->mhd = MHD_start_daemon(
		flags, 0, NULL, NULL, web_handler, w, MHD_OPTION_EXTERNAL_LOGGER, web_mhd_log, w,
		MHD_OPTION_ARRAY, where,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned)WEB_CONNECTIONS_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)0,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_NOTIFY_COMPLETED,
		web_completed, w, MHD_OPTION_END);
	if (!w->mhd) {
		log_warnx("web: cannot listen on %s", listen);
		web_close(w);
		return NULL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_BIND_PORT);
	w->port = di ? di->port : 0;
	w->sample_due = web_now();
	log_info("web: status page on %s (port %d)", listen, w->port);
	return w;
}

void web_close(struct web *w)
{
	if (!w)
		return;
	/* Requests waiting for the daemon's thread give up now. */
	pthread_mutex_lock(&w->lock);
	w->closing = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	/* Requests waiting their turn are resumed first (MHD stops only
	 * without suspended connections); none waits after this. */
	if (w->pacer_started) {
		pthread_mutex_lock(&w->pace_lock);
		w->pace_stop = true;
		pthread_cond_signal(&w->pace_cond);
		pthread_mutex_unlock(&w->pace_lock);
		pthread_join(w->pacer, NULL);
	}
	if (w->mhd)
		MHD_stop_daemon(w->mhd);
	if (w->efd >= 0)
		close(w->efd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->pace_cond);
	pthread_mutex_destroy(&w->pace_lock);
	web_store_free(w->sample_store);
	web_store_free(w->store);
	free(w->token);
	free(w->cors_origin);
	free(w->listen);
	for (size_t i = 0; i < w->n_hosts; i++)
		free(w->hosts[i]);
	free(w);
}

int web_fd(const struct web *w)
{
	return w->efd;
}

int web_port(const struct web *w)
{
	return w->port;
}

void web_process(struct web *w)
{
	uint64_t n;
	while (read(w->efd, &n, sizeof(n)) > 0)
		;
	pthread_mutex_lock(&w->lock);
	struct web_call *list = w->calls;
	w->calls = NULL;
	for (struct web_call *c = list; c; c = c->next)
		c->taken = true;
	pthread_mutex_unlock(&w->lock);
	while (list) {
		struct web_call *next = list->next;
		web_call_run(w, list);
		pthread_mutex_lock(&w->lock);
		list->done = true; /* list belongs to its waiter from here on */
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		list = next;
	}
	int64_t now = web_now();
	if (now >= w->sample_due) {
		web_sample_take(w);
		w->sample_due = now + WEB_SAMPLE_INTERVAL;
	}
}
