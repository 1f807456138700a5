/* dane.c - DANE TLSA matching for SMTP, see dane.h for the rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/sha512.h>

#include "dane.h"
#include "x509.h"

#define SHA256_LEN 32
#define SHA512_LEN 64

/* Per sent certificate: the parsed form and its four digests. */
struct chain_cert {
	struct x509_cert *x;
	uint8_t d[2][2][SHA512_LEN]; /* [selector][mtype - 1] */
};

/* Per record: whether it takes part, and a trust anchor it carries. */
struct rec_state {
	bool active;
	struct x509_cert *ta_cert; /* "2 0 0" */
	int ta_key_oid;		   /* "2 1 0" with a key wolfSSL can verify with */
};

struct ctx {
	const struct dane_input *in;
	struct chain_cert *chain;
	size_t n_chain;
	struct rec_state *rs;
};

const char *dane_result_str(enum dane_result r)
{
	switch (r) {
	case DANE_MATCH:
		return "match";
	case DANE_NO_RECORDS:
		return "no-records";
	case DANE_UNUSABLE:
		return "unusable";
	case DANE_NO_MATCH:
		return "no-match";
	case DANE_NO_ISSUER:
		return "no-issuer";
	case DANE_NAME_MISMATCH:
		return "name-mismatch";
	case DANE_EXPIRED:
		return "expired";
	case DANE_CERT_ERROR:
		return "cert-error";
	}
	return "unknown";
}

bool dane_tlsa_usable(const struct dane_tlsa *r)
{
	if (!r || (r->usage != DANE_USAGE_DANE_TA && r->usage != DANE_USAGE_DANE_EE))
		return false;
	if (r->selector != DANE_SELECTOR_CERT && r->selector != DANE_SELECTOR_SPKI)
		return false;
	if (!r->data)
		return false;
	switch (r->mtype) {
	case DANE_MTYPE_FULL:
		return r->len > 0 && r->len <= X509_DER_MAX;
	case DANE_MTYPE_SHA256:
		return r->len == SHA256_LEN;
	case DANE_MTYPE_SHA512:
		return r->len == SHA512_LEN;
	}
	return false;
}

/* Usability including parsing full data; fills a trust anchor for usage 2.
 * Returns 1 usable, 0 unusable, -ENOMEM. */
static int rec_prepare(const struct dane_tlsa *r, struct rec_state *st)
{
	int rc;

	if (!dane_tlsa_usable(r))
		return 0;
	if (r->mtype != DANE_MTYPE_FULL)
		return 1;
	if (r->selector == DANE_SELECTOR_CERT) {
		struct x509_cert *x;

		rc = x509_cert_parse(r->data, r->len, &x);
		if (rc == -ENOMEM)
			return rc;
		if (rc)
			return 0;
		if (r->usage == DANE_USAGE_DANE_TA)
			st->ta_cert = x;
		else
			x509_cert_free(x);
		return 1;
	}
	rc = x509_spki_key_oid(r->data, r->len);
	if (rc == -EBADMSG)
		return 0;
	/* An SPKI of an algorithm we cannot verify with still matches by its
	 * bytes; it just cannot act as an absent trust anchor. */
	if (rc > 0 && r->usage == DANE_USAGE_DANE_TA)
		st->ta_key_oid = rc;
	return 1;
}

static int digest(int mtype, const uint8_t *in, size_t len, uint8_t *out)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	if (mtype == DANE_MTYPE_SHA256)
		return wc_Sha256Hash(in, (word32)len, out) ? -EINVAL : 0;
	return wc_Sha512Hash(in, (word32)len, out) ? -EINVAL : 0;
}

static int chain_prepare(struct chain_cert *cc, const uint8_t *der, size_t len)
{
	const uint8_t *p;
	size_t plen;
	int rc, sel;

	rc = x509_cert_parse(der, len, &cc->x);
	if (rc)
		return rc;
	for (sel = 0; sel < 2; sel++) {
		p = sel == DANE_SELECTOR_CERT ? x509_cert_der(cc->x, &plen) : x509_cert_spki(cc->x, &plen);
		if (digest(DANE_MTYPE_SHA256, p, plen, cc->d[sel][0]) ||
		    digest(DANE_MTYPE_SHA512, p, plen, cc->d[sel][1]))
			return -EBADMSG;
	}
	return 0;
}

static bool rec_matches(const struct dane_tlsa *r, const struct chain_cert *cc)
{
	const uint8_t *p;
	size_t plen;

	if (r->mtype == DANE_MTYPE_FULL) {
		p = r->selector == DANE_SELECTOR_CERT ? x509_cert_der(cc->x, &plen)
						      : x509_cert_spki(cc->x, &plen);
		return plen == r->len && !memcmp(p, r->data, plen);
	}
	return !memcmp(cc->d[r->selector][r->mtype - 1], r->data, r->len);
}

/* First active record of `usage` matching `cc`, or -1. */
static int find_match(const struct ctx *c, uint8_t usage, const struct chain_cert *cc)
{
	size_t i;

	for (i = 0; i < c->in->n_tlsa; i++) {
		const struct dane_tlsa *r = &c->in->tlsa[i];

		if (c->rs[i].active && r->usage == usage && rec_matches(r, cc))
			return (int)i;
	}
	return -1;
}

static bool names_match(const struct ctx *c, const struct x509_cert *leaf)
{
	size_t i;

	/* No reference name means nothing to check against: fail closed. */
	for (i = 0; i < c->in->n_names; i++)
		if (x509_cert_matches_name(leaf, c->in->names[i]))
			return true;
	return false;
}

static bool signed_by_cert(const struct x509_cert *child, const struct x509_cert *issuer)
{
	const uint8_t *spki;
	size_t len;

	if (!x509_cert_issuer_is(child, issuer))
		return false;
	spki = x509_cert_spki(issuer, &len);
	return x509_cert_verify_sig(child, spki, len, x509_cert_key_oid(issuer)) == 0;
}

/* Walks from the leaf towards a DANE-TA trust anchor. On success sets
 * *depth, *rec and *below (number of path certificates under the anchor,
 * whose dates must be checked) and path[0..*below-1]. */
static bool ta_walk(const struct ctx *c, size_t *path, int *depth, int *rec, size_t *below)
{
	bool used[DANE_CHAIN_MAX] = { false };
	size_t d, i, j, cur;
	int m;

	path[0] = 0;
	used[0] = true;
	for (d = 0; d < c->n_chain; d++) {
		cur = path[d];
		if (d >= 1 && (m = find_match(c, DANE_USAGE_DANE_TA, &c->chain[cur])) >= 0) {
			*depth = (int)d, *rec = m, *below = d;
			return true;
		}
		for (i = 0; i < c->in->n_tlsa; i++) {
			const struct dane_tlsa *r = &c->in->tlsa[i];

			if (!c->rs[i].active || !c->rs[i].ta_key_oid)
				continue;
			if (x509_cert_verify_sig(c->chain[cur].x, r->data, r->len, c->rs[i].ta_key_oid) == 0) {
				*depth = (int)d, *rec = (int)i, *below = d + 1;
				return true;
			}
		}
		for (i = 0; i < c->in->n_tlsa; i++) {
			if (!c->rs[i].active || !c->rs[i].ta_cert)
				continue;
			if (signed_by_cert(c->chain[cur].x, c->rs[i].ta_cert)) {
				*depth = (int)d + 1, *rec = (int)i, *below = d + 1;
				return true;
			}
		}
		/* Next issuer among the sent certificates, in sent order. */
		for (j = 0; j < c->n_chain; j++) {
			if (used[j] || !x509_cert_is_ca(c->chain[j].x))
				continue;
			if (signed_by_cert(c->chain[cur].x, c->chain[j].x))
				break;
		}
		if (j == c->n_chain || d + 1 >= c->n_chain)
			return false;
		used[j] = true;
		path[d + 1] = j;
	}
	return false;
}

static void verdict(struct dane_verdict *out, enum dane_result r, int depth, int rec,
		    const struct dane_input *in)
{
	out->result = r;
	out->depth = depth;
	out->record = rec;
	out->usage = rec >= 0 ? in->tlsa[rec].usage : 0;
}

static int decide(struct ctx *c, struct dane_verdict *out)
{
	const struct dane_input *in = c->in;
	size_t path[DANE_CHAIN_MAX], below = 0, i, j;
	int m, depth = -1, rec = -1;
	bool have_ta = false;
	time_t now;

	m = find_match(c, DANE_USAGE_DANE_EE, &c->chain[0]);
	if (m >= 0) {
		if (!in->no_name_checks && !names_match(c, c->chain[0].x))
			verdict(out, DANE_NAME_MISMATCH, 0, m, in);
		else
			verdict(out, DANE_MATCH, 0, m, in);
		return 0;
	}
	for (i = 0; i < in->n_tlsa; i++)
		if (c->rs[i].active && in->tlsa[i].usage == DANE_USAGE_DANE_TA)
			have_ta = true;
	if (!have_ta) {
		verdict(out, DANE_NO_MATCH, -1, -1, in);
		return 0;
	}
	if (!ta_walk(c, path, &depth, &rec, &below)) {
		/* Tell "nothing matched" from "matched, but out of reach". */
		for (j = 1; j < c->n_chain; j++) {
			m = find_match(c, DANE_USAGE_DANE_TA, &c->chain[j]);
			if (m >= 0) {
				verdict(out, DANE_NO_ISSUER, -1, m, in);
				return 0;
			}
		}
		verdict(out, DANE_NO_MATCH, -1, -1, in);
		return 0;
	}
	if (!names_match(c, c->chain[0].x)) {
		verdict(out, DANE_NAME_MISMATCH, depth, rec, in);
		return 0;
	}
	now = in->now ? in->now : time(NULL);
	for (i = 0; i < below; i++) {
		if (!x509_cert_valid_at(c->chain[path[i]].x, now)) {
			verdict(out, DANE_EXPIRED, depth, rec, in);
			return 0;
		}
	}
	verdict(out, DANE_MATCH, depth, rec, in);
	return 0;
}

/* Digest agility: per usage and selector keep full records and the
 * records of the most preferred digest present. */
static size_t apply_agility(const struct dane_input *in, struct rec_state *rs)
{
	uint8_t best[4][2] = { { 0 } };
	size_t i, n = 0;

	for (i = 0; i < in->n_tlsa; i++) {
		const struct dane_tlsa *r = &in->tlsa[i];

		if (rs[i].active && r->mtype > best[r->usage][r->selector])
			best[r->usage][r->selector] = r->mtype;
	}
	for (i = 0; i < in->n_tlsa; i++) {
		const struct dane_tlsa *r = &in->tlsa[i];

		if (!rs[i].active)
			continue;
		if (r->mtype != DANE_MTYPE_FULL && r->mtype != best[r->usage][r->selector])
			rs[i].active = false;
		else
			n++;
	}
	return n;
}

int dane_verify(const struct dane_input *in, struct dane_verdict *out)
{
	struct ctx c = { .in = in };
	size_t i, n_usable = 0;
	int rc = 0;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	verdict(out, DANE_NO_MATCH, -1, -1, NULL);
	if (!in || (in->n_tlsa && !in->tlsa) || (in->n_chain && (!in->chain || !in->chain_len)) ||
	    (in->n_names && !in->names))
		return -EINVAL;
	if (in->n_tlsa > DANE_TLSA_MAX || in->n_names > DANE_NAMES_MAX)
		return -E2BIG;
	if (in->n_tlsa == 0) {
		out->result = DANE_NO_RECORDS;
		return 0;
	}
	c.rs = calloc(in->n_tlsa, sizeof(*c.rs));
	if (!c.rs)
		return -ENOMEM;
	for (i = 0; i < in->n_tlsa; i++) {
		rc = rec_prepare(&in->tlsa[i], &c.rs[i]);
		if (rc < 0)
			goto out;
		c.rs[i].active = rc == 1;
		n_usable += rc == 1;
	}
	rc = 0;
	if (n_usable == 0) {
		out->result = DANE_UNUSABLE;
		goto out;
	}
	n_usable = apply_agility(in, c.rs);
	if (in->n_chain == 0 || in->n_chain > DANE_CHAIN_MAX) {
		out->result = DANE_CERT_ERROR;
		out->n_usable = n_usable;
		goto out;
	}
	c.chain = calloc(in->n_chain, sizeof(*c.chain));
	if (!c.chain) {
		rc = -ENOMEM;
		goto out;
	}
	c.n_chain = in->n_chain;
	for (i = 0; i < in->n_chain; i++) {
		rc = chain_prepare(&c.chain[i], in->chain[i], in->chain_len[i]);
		if (rc == -ENOMEM)
			goto out;
		if (rc) {
			/* A sent certificate that does not parse fails the
			 * handshake in any TLS stack; so it does here. */
			rc = 0;
			out->result = DANE_CERT_ERROR;
			out->n_usable = n_usable;
			goto out;
		}
	}
	rc = decide(&c, out);
	out->n_usable = n_usable;
out:
	if (rc < 0)
		verdict(out, DANE_NO_MATCH, -1, -1, NULL);
	for (i = 0; c.chain && i < c.n_chain; i++)
		x509_cert_free(c.chain[i].x);
	free(c.chain);
	for (i = 0; i < in->n_tlsa; i++)
		x509_cert_free(c.rs ? c.rs[i].ta_cert : NULL);
	free(c.rs);
	return rc;
}
