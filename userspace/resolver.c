/* resolver.c - libunbound queries with a TTL cache, and the RFC 7672
 * MX/A/AAAA/TLSA walk for one domain. See resolver.h for the contract. */
#include "resolver.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "dns_parse.h"
#include "log.h"

struct query {
	struct resolver *r;
	struct query *prev, *next;
	int async_id;
	char name[RESOLVER_NAME_MAX];
	uint16_t type;
	uint64_t deadline_ms;
	resolver_cb cb;
	void *arg;
};

struct cache_entry {
	char key[RESOLVER_NAME_MAX];
	uint16_t type;
	uint64_t expires_ms;
	struct resolver_answer ans; /* rdata owned here */
};

struct resolver {
	struct ub_ctx *ctx;
	unsigned int timeout_ms;
	struct query *queries; /* outstanding, oldest last */
	size_t n_queries;
	struct cache_entry *cache;
	size_t n_cache, cache_max;
	uint64_t hits, misses;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Lower case, no trailing dot (except the root): the cache key form. */
static int name_key(const char *name, char out[RESOLVER_NAME_MAX])
{
	size_t n = strlen(name), i;

	if (n == 0 || n >= RESOLVER_NAME_MAX)
		return -EINVAL;
	if (n > 1 && name[n - 1] == '.')
		n--;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= ' ' || c >= 0x7f)
			return -EINVAL;
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	return 0;
}

static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = src ? strnlen(src, size - 1) : 0;

	if (n)
		memmove(dst, src, n);
	dst[n] = '\0';
}

static void answer_clear(struct resolver_answer *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->rdata[i]);
	a->n = 0;
}

static void answer_copy(struct resolver_answer *dst, const struct resolver_answer *src)
{
	size_t i;

	*dst = *src;
	for (i = 0; i < src->n; i++) {
		dst->rdata[i] = xmalloc(src->rdlen[i] ? src->rdlen[i] : 1);
		memcpy(dst->rdata[i], src->rdata[i], src->rdlen[i]);
	}
}

/* ---- resolver --------------------------------------------------------- */

struct resolver *resolver_new(const struct resolver_config *cfg)
{
	struct resolver_config def = { 0 };
	struct resolver *r;
	const char *ta;
	int err;

	if (!cfg)
		cfg = &def;
	r = xcalloc(1, sizeof(*r));
	r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : RESOLVER_DEFAULT_TIMEOUT_MS;
	r->cache_max = cfg->cache_max ? cfg->cache_max : RESOLVER_DEFAULT_CACHE_MAX;
	r->cache = xcalloc(r->cache_max, sizeof(*r->cache));
	r->ctx = ub_ctx_create();
	if (!r->ctx) {
		log_warnx("resolver: ub_ctx_create failed");
		goto fail;
	}
	/* Threads, not a forked helper process: nothing left behind on exit. */
	if ((err = ub_ctx_async(r->ctx, 1)) != 0)
		goto ub_fail;
	/* No /etc/hosts, no search list: only DNS answers count. */
	ta = cfg->trust_anchor ? cfg->trust_anchor : RESOLVER_DEFAULT_TRUST_ANCHOR;
	if (access(ta, R_OK) != 0) {
		log_warn("resolver: trust anchor %s", ta);
		goto fail;
	}
	if ((err = ub_ctx_add_ta_file(r->ctx, ta)) != 0)
		goto ub_fail;
	if (cfg->root_hints && (err = ub_ctx_set_option(r->ctx, "root-hints:", cfg->root_hints)) != 0)
		goto ub_fail;
	if (cfg->forwarders) {
		char *list = xstrdup(cfg->forwarders), *save = NULL, *tok;

		for (tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
			if ((err = ub_ctx_set_fwd(r->ctx, tok)) != 0) {
				log_warnx("resolver: forwarder %s: %s", tok, ub_strerror(err));
				free(list);
				goto fail;
			}
		}
		free(list);
	}
	/* Last: adding a zone finalizes the configuration. */
	for (const char *const *z = cfg->transparent_zones; z && *z; z++) {
		if ((err = ub_ctx_zone_add(r->ctx, *z, "transparent")) != 0) {
			log_warnx("resolver: zone %s: %s", *z, ub_strerror(err));
			goto fail;
		}
	}
	return r;
ub_fail:
	log_warnx("resolver: libunbound: %s", ub_strerror(err));
fail:
	resolver_free(r);
	return NULL;
}

void resolver_free(struct resolver *r)
{
	size_t i;

	if (!r)
		return;
	while (r->queries) {
		struct query *q = r->queries;

		r->queries = q->next;
		if (r->ctx)
			ub_cancel(r->ctx, q->async_id);
		free(q);
	}
	if (r->ctx)
		ub_ctx_delete(r->ctx);
	for (i = 0; i < r->n_cache; i++)
		answer_clear(&r->cache[i].ans);
	free(r->cache);
	free(r);
}

int resolver_fd(const struct resolver *r)
{
	return ub_fd(r->ctx);
}

size_t resolver_pending(const struct resolver *r)
{
	return r->n_queries;
}

void resolver_cache_stats(const struct resolver *r, size_t *entries, uint64_t *hits,
			  uint64_t *misses)
{
	if (entries)
		*entries = r->n_cache;
	if (hits)
		*hits = r->hits;
	if (misses)
		*misses = r->misses;
}

static void query_unlink(struct query *q)
{
	struct resolver *r = q->r;

	if (q->prev)
		q->prev->next = q->next;
	else
		r->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	r->n_queries--;
}

static struct cache_entry *cache_find(struct resolver *r, const char *key, uint16_t type)
{
	uint64_t now = now_ms();
	size_t i;

	for (i = 0; i < r->n_cache; i++) {
		struct cache_entry *e = &r->cache[i];

		if (e->type != type || strcmp(e->key, key) != 0)
			continue;
		if (e->expires_ms > now)
			return e;
		/* Expired: drop it (the last entry takes its place). */
		answer_clear(&e->ans);
		*e = r->cache[--r->n_cache];
		return NULL;
	}
	return NULL;
}

static void cache_put(struct resolver *r, const char *key, const struct resolver_answer *a)
{
	struct cache_entry *e;
	uint64_t now = now_ms();
	size_t i, victim = 0;

	if (a->ttl == 0 || a->security == RESOLVER_BOGUS || a->error != RESOLVER_OK)
		return;
	if (cache_find(r, key, a->qtype))
		return;
	if (r->n_cache < r->cache_max) {
		e = &r->cache[r->n_cache++];
	} else {
		/* Full: evict the entry that expires first (expired ones first). */
		for (i = 1; i < r->n_cache; i++)
			if (r->cache[i].expires_ms < r->cache[victim].expires_ms)
				victim = i;
		e = &r->cache[victim];
		answer_clear(&e->ans);
	}
	copy_str(e->key, sizeof(e->key), key);
	e->type = a->qtype;
	e->expires_ms = now + (uint64_t)a->ttl * 1000;
	answer_copy(&e->ans, a);
}

/* Fills a (pointing into result: valid while result lives). */
static void answer_from_ub(struct resolver_answer *a, const char *qname, uint16_t qtype, int err,
			   struct ub_result *res)
{
	size_t i;

	memset(a, 0, sizeof(*a));
	copy_str(a->qname, sizeof(a->qname), qname);
	a->qtype = qtype;
	a->rcode = -1;
	if (err != 0 || !res) {
		a->error = RESOLVER_E_INTERNAL;
		snprintf(a->why_bogus, sizeof(a->why_bogus), "%s", ub_strerror(err));
		return;
	}
	a->rcode = res->rcode;
	a->nxdomain = res->nxdomain != 0;
	a->error = (res->rcode == 0 || res->rcode == 3) ? RESOLVER_OK : RESOLVER_E_SERVFAIL;
	if (res->bogus)
		a->security = RESOLVER_BOGUS;
	else if (res->secure)
		a->security = RESOLVER_SECURE;
	else
		a->security = RESOLVER_INSECURE;
	a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
	if (res->canonname && res->qname) {
		char k1[RESOLVER_NAME_MAX], k2[RESOLVER_NAME_MAX];

		if (name_key(res->canonname, k1) == 0 && name_key(res->qname, k2) == 0 &&
		    strcmp(k1, k2) != 0)
			copy_str(a->canonname, sizeof(a->canonname), k1);
	}
	if (res->why_bogus)
		copy_str(a->why_bogus, sizeof(a->why_bogus), res->why_bogus);
	if (res->havedata && a->security != RESOLVER_BOGUS) {
		for (i = 0; res->data[i] && a->n < RESOLVER_RDATA_MAX; i++) {
			if (res->len[i] < 0 || res->len[i] > 65535)
				continue;
			a->rdata[a->n] = (uint8_t *)res->data[i];
			a->rdlen[a->n] = (uint16_t)res->len[i];
			a->n++;
		}
	}
}

static void ub_done(void *mydata, int err, struct ub_result *res)
{
	struct query *q = mydata;
	struct resolver *r = q->r;
	struct resolver_answer a;
	char key[RESOLVER_NAME_MAX];

	query_unlink(q);
	answer_from_ub(&a, q->name, q->type, err, res);
	if (name_key(q->name, key) == 0)
		cache_put(r, key, &a);
	q->cb(q->arg, &a);
	/* a's rdata point into res: release only after the callback. */
	ub_resolve_free(res);
	free(q);
}

int resolver_process(struct resolver *r)
{
	int err = ub_process(r->ctx);

	if (err != 0) {
		log_warnx("resolver: ub_process: %s", ub_strerror(err));
		return -EIO;
	}
	return 0;
}

void resolver_expire(struct resolver *r)
{
	uint64_t now = now_ms();
	struct query *q, *next;

	/* A callback may add or end queries: restart the walk after each. */
again:
	for (q = r->queries; q; q = next) {
		struct resolver_answer a;

		next = q->next;
		if (q->deadline_ms > now)
			continue;
		query_unlink(q);
		ub_cancel(r->ctx, q->async_id);
		memset(&a, 0, sizeof(a));
		copy_str(a.qname, sizeof(a.qname), q->name);
		a.qtype = q->type;
		a.error = RESOLVER_E_TIMEOUT;
		a.rcode = -1;
		q->cb(q->arg, &a);
		free(q);
		goto again;
	}
}

int resolver_next_timeout_ms(const struct resolver *r)
{
	uint64_t now = now_ms(), min = UINT64_MAX;
	const struct query *q;

	for (q = r->queries; q; q = q->next)
		if (q->deadline_ms < min)
			min = q->deadline_ms;
	if (min == UINT64_MAX)
		return -1;
	return min <= now ? 0 : (int)(min - now);
}

int resolver_query(struct resolver *r, const char *name, uint16_t type, resolver_cb cb, void *arg)
{
	char key[RESOLVER_NAME_MAX];
	struct cache_entry *e;
	struct query *q;
	int err;

	if (!r || !name || !cb || name_key(name, key) != 0)
		return -EINVAL;
	e = cache_find(r, key, type);
	if (e) {
		struct resolver_answer a;
		uint64_t now = now_ms();

		r->hits++;
		answer_copy(&a, &e->ans);
		/* The remaining lifetime, as a resolver would answer. */
		a.ttl = (uint32_t)((e->expires_ms - now + 999) / 1000);
		cb(arg, &a);
		answer_clear(&a);
		return 0;
	}
	r->misses++;
	q = xcalloc(1, sizeof(*q));
	q->r = r;
	copy_str(q->name, sizeof(q->name), key);
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->deadline_ms = now_ms() + r->timeout_ms;
	q->next = r->queries;
	if (q->next)
		q->next->prev = q;
	r->queries = q;
	r->n_queries++;
	err = ub_resolve_async(r->ctx, key, type, 1 /* IN */, q, ub_done, &q->async_id);
	if (err != 0) {
		log_warnx("resolver: %s/%u: %s", key, type, ub_strerror(err));
		query_unlink(q);
		free(q);
		return -EIO;
	}
	return 0;
}

/* ---- statuses --------------------------------------------------------- */

const char *resolver_rrstatus_str(enum resolver_rrstatus s)
{
	switch (s) {
	case RESOLVER_RR_SECURE:
		return "secure";
	case RESOLVER_RR_INSECURE:
		return "insecure";
	case RESOLVER_RR_NONE_SECURE:
		return "none-secure";
	case RESOLVER_RR_NONE:
		return "none";
	case RESOLVER_RR_FAIL:
		return "fail";
	}
	return "fail";
}

const char *resolver_dane_str(enum resolver_dane d)
{
	switch (d) {
	case RESOLVER_DANE_NONE:
		return "none";
	case RESOLVER_DANE_USABLE:
		return "usable";
	case RESOLVER_DANE_UNUSABLE:
		return "unusable";
	case RESOLVER_DANE_TEMPFAIL:
		return "tempfail";
	}
	return "tempfail";
}

static enum resolver_rrstatus rrstatus(const struct resolver_answer *a)
{
	if (a->error != RESOLVER_OK || a->security == RESOLVER_BOGUS)
		return RESOLVER_RR_FAIL;
	if (a->n == 0)
		return a->security == RESOLVER_SECURE ? RESOLVER_RR_NONE_SECURE : RESOLVER_RR_NONE;
	return a->security == RESOLVER_SECURE ? RESOLVER_RR_SECURE : RESOLVER_RR_INSECURE;
}

static bool rr_secure(enum resolver_rrstatus s)
{
	return s == RESOLVER_RR_SECURE || s == RESOLVER_RR_NONE_SECURE;
}

static void answer_why(char *dst, size_t size, const struct resolver_answer *a)
{
	const char *what;

	if (a->error == RESOLVER_E_TIMEOUT)
		what = "timeout";
	else if (a->security == RESOLVER_BOGUS)
		what = "bogus";
	else if (a->error == RESOLVER_E_INTERNAL)
		what = "resolver error";
	else
		what = "SERVFAIL";
	snprintf(dst, size, "%s/%s: %s%s%s", a->qname,
		 a->qtype == DNS_TYPE_TLSA ? "TLSA" : a->qtype == DNS_TYPE_MX ? "MX"
				: a->qtype == DNS_TYPE_A ? "A" : "AAAA",
		 what, a->why_bogus[0] ? ": " : "", a->why_bogus);
}

/* ---- the RFC 7672 walk ------------------------------------------------ */

struct domain_job;

struct host_job {
	struct domain_job *job;
	size_t idx;
	int waiting; /* address answers still to come */
	struct resolver_answer a_ans, aaaa_ans; /* copies kept: CNAME and status */
	bool a_done, aaaa_done;
	bool tlsa_tried_original;
};

struct domain_job {
	struct resolver *r;
	resolver_domain_cb cb;
	void *arg;
	int pending; /* queries outstanding + 1 while starting */
	bool mx_secure;
	struct resolver_domain res;
	struct host_job hj[RESOLVER_MX_MAX];
};

static void host_free(struct resolver_host *h)
{
	free(h->tlsa_blob);
	h->tlsa_blob = NULL;
}

void resolver_domain_free(struct resolver_domain *res)
{
	size_t i;

	if (!res)
		return;
	for (i = 0; i < res->n_hosts; i++)
		host_free(&res->hosts[i]);
	free(res);
}

struct resolver_domain *resolver_domain_dup(const struct resolver_domain *res)
{
	struct resolver_domain *d;
	size_t i, j;

	if (!res)
		return NULL;
	d = xmalloc(sizeof(*d));
	*d = *res;
	for (i = 0; i < d->n_hosts; i++) {
		struct resolver_host *h = &d->hosts[i];
		const struct resolver_host *s = &res->hosts[i];

		if (!s->tlsa_blob)
			continue;
		h->tlsa_blob = xmalloc(s->tlsa_blob_len ? s->tlsa_blob_len : 1);
		memcpy(h->tlsa_blob, s->tlsa_blob, s->tlsa_blob_len);
		for (j = 0; j < h->n_tlsa; j++)
			h->tlsa[j].data = h->tlsa_blob + (s->tlsa[j].data - s->tlsa_blob);
	}
	return d;
}

static void job_unref(struct domain_job *job)
{
	size_t i;

	if (--job->pending > 0)
		return;
	job->cb(job->arg, &job->res);
	for (i = 0; i < job->res.n_hosts; i++) {
		host_free(&job->res.hosts[i]);
		answer_clear(&job->hj[i].a_ans);
		answer_clear(&job->hj[i].aaaa_ans);
	}
	free(job);
}

static void ttl_min(struct resolver_host *h, uint32_t ttl)
{
	if (ttl && (h->ttl == 0 || ttl < h->ttl))
		h->ttl = ttl;
}

static void tlsa_start(struct host_job *hj, const char *host);

static void tlsa_done(void *arg, const struct resolver_answer *a)
{
	struct host_job *hj = arg;
	struct resolver_host *h = &hj->job->res.hosts[hj->idx];
	enum resolver_rrstatus st = rrstatus(a);
	size_t i, total = 0, off = 0;

	if (st == RESOLVER_RR_NONE_SECURE && h->final_name[0] && !hj->tlsa_tried_original) {
		/* RFC 7672 2.2.3: nothing at the expanded name, try the original. */
		hj->tlsa_tried_original = true;
		tlsa_start(hj, h->name);
		job_unref(hj->job);
		return;
	}
	h->tlsa_status = st;
	copy_str(h->tlsa_name, sizeof(h->tlsa_name), a->qname);
	ttl_min(h, a->ttl);
	switch (st) {
	case RESOLVER_RR_FAIL:
		/* The host is secure: a failed TLSA lookup defers, never plaintext. */
		h->dane = RESOLVER_DANE_TEMPFAIL;
		answer_why(h->error, sizeof(h->error), a);
		break;
	case RESOLVER_RR_SECURE:
		for (i = 0; i < a->n; i++)
			total += a->rdlen[i] >= 3 ? a->rdlen[i] - 3u : 0;
		h->tlsa_blob = xmalloc(total ? total : 1);
		h->tlsa_blob_len = total;
		h->dane = RESOLVER_DANE_UNUSABLE;
		for (i = 0; i < a->n; i++) {
			struct dane_tlsa *t = &h->tlsa[h->n_tlsa];

			if (a->rdlen[i] < 3)
				continue; /* malformed: not a record we can use */
			t->usage = a->rdata[i][0];
			t->selector = a->rdata[i][1];
			t->mtype = a->rdata[i][2];
			t->len = a->rdlen[i] - 3u;
			memcpy(h->tlsa_blob + off, a->rdata[i] + 3, t->len);
			t->data = h->tlsa_blob + off;
			off += t->len;
			h->n_tlsa++;
			if (dane_tlsa_usable(t))
				h->dane = RESOLVER_DANE_USABLE;
		}
		break;
	default:
		/* Insecure TLSA, or provably none: DANE does not apply. */
		h->dane = RESOLVER_DANE_NONE;
		break;
	}
	job_unref(hj->job);
}

static void tlsa_start(struct host_job *hj, const char *host)
{
	char qname[RESOLVER_NAME_MAX + 16];
	struct resolver_host *h = &hj->job->res.hosts[hj->idx];

	snprintf(qname, sizeof(qname), "_25._tcp.%s", host);
	hj->job->pending++;
	if (strlen(qname) >= RESOLVER_NAME_MAX ||
	    resolver_query(hj->job->r, qname, DNS_TYPE_TLSA, tlsa_done, hj) != 0) {
		h->tlsa_status = RESOLVER_RR_FAIL;
		h->dane = RESOLVER_DANE_TEMPFAIL;
		snprintf(h->error, sizeof(h->error), "%s/TLSA: query failed", host);
		job_unref(hj->job);
	}
}

static void addrs_done(struct host_job *hj)
{
	struct resolver_host *h = &hj->job->res.hosts[hj->idx];
	enum resolver_rrstatus s4 = rrstatus(&hj->a_ans), s6 = rrstatus(&hj->aaaa_ans);
	size_t i;

	for (i = 0; i < hj->a_ans.n && h->n_v4 < RESOLVER_ADDR_MAX; i++)
		if (hj->a_ans.rdlen[i] == 4)
			memcpy(&h->v4[h->n_v4++], hj->a_ans.rdata[i], 4);
	for (i = 0; i < hj->aaaa_ans.n && h->n_v6 < RESOLVER_ADDR_MAX; i++)
		if (hj->aaaa_ans.rdlen[i] == 16)
			memcpy(&h->v6[h->n_v6++], hj->aaaa_ans.rdata[i], 16);
	ttl_min(h, hj->a_ans.ttl);
	ttl_min(h, hj->aaaa_ans.ttl);
	if (hj->a_ans.canonname[0])
		copy_str(h->final_name, sizeof(h->final_name), hj->a_ans.canonname);
	else if (hj->aaaa_ans.canonname[0])
		copy_str(h->final_name, sizeof(h->final_name), hj->aaaa_ans.canonname);

	if (s4 == RESOLVER_RR_FAIL || s6 == RESOLVER_RR_FAIL) {
		/* A failed family is a temporary failure for this host, but the
		 * addresses of the other one are kept for the report. */
		h->addr_status = RESOLVER_RR_FAIL;
		answer_why(h->error, sizeof(h->error), s4 == RESOLVER_RR_FAIL ? &hj->a_ans : &hj->aaaa_ans);
	} else if (h->n_v4 + h->n_v6 == 0) {
		h->addr_status = rr_secure(s4) && rr_secure(s6) ? RESOLVER_RR_NONE_SECURE : RESOLVER_RR_NONE;
	} else {
		h->addr_status = rr_secure(s4) && rr_secure(s6) ? RESOLVER_RR_SECURE : RESOLVER_RR_INSECURE;
	}
	h->tlsa_status = RESOLVER_RR_NONE;
	h->dane = RESOLVER_DANE_NONE;
	/* DANE needs a secure MX RRset and secure address records. */
	if (hj->job->mx_secure && h->addr_status == RESOLVER_RR_SECURE)
		tlsa_start(hj, h->final_name[0] ? h->final_name : h->name);
}

static void addr_done(void *arg, const struct resolver_answer *a)
{
	struct host_job *hj = arg;

	answer_copy(a->qtype == DNS_TYPE_A ? &hj->a_ans : &hj->aaaa_ans, a);
	if (--hj->waiting == 0)
		addrs_done(hj);
	job_unref(hj->job);
}

static void host_start(struct domain_job *job, size_t idx)
{
	struct host_job *hj = &job->hj[idx];
	const char *name = job->res.hosts[idx].name;
	uint16_t types[2] = { DNS_TYPE_A, DNS_TYPE_AAAA };
	int i;

	hj->job = job;
	hj->idx = idx;
	hj->waiting = 2;
	for (i = 0; i < 2; i++) {
		job->pending++;
		if (resolver_query(job->r, name, types[i], addr_done, hj) != 0) {
			struct resolver_answer a = { .qtype = types[i], .error = RESOLVER_E_INTERNAL,
						     .rcode = -1 };

			copy_str(a.qname, sizeof(a.qname), name);
			addr_done(hj, &a);
		}
	}
}

static int mx_cmp(const void *a, const void *b)
{
	const struct resolver_host *x = a, *y = b;

	return (int)x->preference - (int)y->preference;
}

static void mx_done(void *arg, const struct resolver_answer *a)
{
	struct domain_job *job = arg;
	struct resolver_domain *res = &job->res;
	enum resolver_rrstatus st = rrstatus(a);
	size_t i, j;

	res->mx_status = st;
	job->mx_secure = rr_secure(st);
	if (st == RESOLVER_RR_FAIL) {
		answer_why(res->error, sizeof(res->error), a);
		goto out;
	}
	if (a->nxdomain) {
		res->nxdomain = true;
		snprintf(res->error, sizeof(res->error), "%s: no such domain", res->domain);
		goto out;
	}
	for (i = 0; i < a->n; i++) {
		struct resolver_host *h;
		char name[DNS_NAME_TEXT_MAX];
		size_t next;

		if (a->rdlen[i] < 3 || dns_name_read(a->rdata[i], a->rdlen[i], 2, name, &next) != DNS_OK ||
		    next != a->rdlen[i] || strlen(name) >= RESOLVER_NAME_MAX)
			continue;
		if (strcmp(name, ".") == 0) {
			/* RFC 7505: "0 ." alone is a null MX; beside others it is ignored. */
			if (a->n == 1)
				res->null_mx = true;
			continue;
		}
		for (j = 0; j < res->n_hosts; j++)
			if (dns_name_equal(res->hosts[j].name, name))
				break;
		if (j < res->n_hosts || res->n_hosts == RESOLVER_MX_MAX)
			continue;
		h = &res->hosts[res->n_hosts++];
		copy_str(h->name, sizeof(h->name), name);
		h->preference = (uint16_t)(a->rdata[i][0] << 8 | a->rdata[i][1]);
	}
	if (a->n == 0) {
		/* No MX: the domain itself is the implicit MX (RFC 5321 5.1). */
		struct resolver_host *h = &res->hosts[res->n_hosts++];

		copy_str(h->name, sizeof(h->name), res->domain);
		h->implicit = true;
	}
	qsort(res->hosts, res->n_hosts, sizeof(res->hosts[0]), mx_cmp);
	for (i = 0; i < res->n_hosts; i++)
		host_start(job, i);
out:
	job_unref(job);
}

int resolver_lookup_domain(struct resolver *r, const char *domain, resolver_domain_cb cb, void *arg)
{
	struct domain_job *job;
	char key[RESOLVER_NAME_MAX];

	if (!r || !domain || !cb || name_key(domain, key) != 0)
		return -EINVAL;
	job = xcalloc(1, sizeof(*job));
	job->r = r;
	job->cb = cb;
	job->arg = arg;
	copy_str(job->res.domain, sizeof(job->res.domain), key);
	/* One reference held while starting, so an answer from the cache
	 * cannot finish the job under our feet. */
	job->pending = 2;
	if (resolver_query(r, key, DNS_TYPE_MX, mx_done, job) != 0) {
		free(job);
		return -ENOMEM;
	}
	job_unref(job);
	return 0;
}
