/* probe_store.c - see probe_store.h. */
#include "probe_store.h"

#include <string.h>

#include "dane.h"
#include "resolver.h"

/* Keeps the first error. */
static void keep(int *err, int rc)
{
	if (rc < 0 && *err == 0)
		*err = rc;
}

int probe_store_record(struct store *db, const struct probe_target *t)
{
	int err = 0;
	struct store_probe p = { .time = t->started, .domain = t->input,
				 .cls = probe_class_str(t->cls) };
	size_t i, j, rows = 0;

	/* One transaction: tlsgated sees the whole result or none of it, and
	 * the probe waits for the write lock once. When it cannot be had the
	 * writes below go one by one, each retried (store.h). */
	store_begin(db);

	for (i = 0; i < t->n_mx; i++) {
		const struct probe_mx *mx = &t->mx[i];
		const char *mxname = mx->host ? mx->host->name : NULL;

		p.mx = mxname;
		/* The validated TLSA RRset, for tlsgated's on-the-wire check
		 * of certificates it sees (TLS <= 1.2). Secure answers only. */
		if (mx->host && mxname &&
		    (mx->host->dane == RESOLVER_DANE_USABLE ||
		     mx->host->dane == RESOLVER_DANE_UNUSABLE)) {
			struct store_tlsa recs[STORE_TLSA_MAX];
			size_t n = 0;
			for (size_t k = 0; k < mx->host->n_tlsa && n < STORE_TLSA_MAX; k++) {
				const struct dane_tlsa *r = &mx->host->tlsa[k];
				if (r->len > STORE_TLSA_DATA_MAX)
					continue;
				recs[n].usage = r->usage;
				recs[n].selector = r->selector;
				recs[n].mtype = r->mtype;
				recs[n].len = r->len;
				memcpy(recs[n].data, r->data, r->len);
				n++;
			}
			keep(&err, store_tlsa_set(db, mxname, recs, n,
				       t->started + (mx->host->ttl ? mx->host->ttl : 300)));
		}
		if (mx->n_addrs == 0) {
			p.addr = NULL;
			p.verdict = probe_verdict_str(mx->verdict);
			p.reason = mx->reason;
			p.tls_version = p.cipher = p.dane = NULL;
			keep(&err, store_probe_add(db, &p));
			rows++;
			continue;
		}
		for (j = 0; j < mx->n_addrs; j++) {
			const struct probe_addr *pa = &mx->addrs[j];
			enum store_level lvl = STORE_LEVEL_NONE;

			p.addr = pa->addr;
			p.verdict = probe_verdict_str(pa->verdict);
			p.reason = pa->reason;
			p.tls_version = pa->tls ? pa->tls_version : NULL;
			p.cipher = pa->tls ? pa->cipher : NULL;
			p.dane = pa->dane_checked ? dane_result_str(pa->dane.result) : NULL;
			keep(&err, store_probe_add(db, &p));
			rows++;
			/* TLS history: a probe that saw TLS counts like a flow that did. */
			if (pa->verdict == PROBE_DANE)
				lvl = STORE_LEVEL_DANE;
			else if (pa->tls)
				lvl = STORE_LEVEL_TLS;
			else if (pa->verdict == PROBE_PLAINTEXT)
				lvl = STORE_LEVEL_PLAINTEXT;
			if (lvl != STORE_LEVEL_NONE)
				keep(&err, store_history_record(db, mxname ? mxname : pa->addr, lvl,
								0, 0, t->started));
			if (mx->host)
				keep(&err, store_addr_mx_set(
						   db, pa->addr, mxname, t->is_addr ? NULL : t->input,
						   mx->host->addr_status == RESOLVER_RR_SECURE,
						   t->started + (mx->host->ttl ? mx->host->ttl : 300)));
		}
	}
	if (rows == 0) {
		p.mx = p.addr = NULL;
		p.reason = t->reason;
		keep(&err, store_probe_add(db, &p));
	}
	keep(&err, store_commit(db));
	return err;
}
