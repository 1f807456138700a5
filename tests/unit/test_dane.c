/* test_dane.c - the DANE matcher against OpenSSL's DANE suite, plus hostile
 * input. The suite is read from $TLSGATE_VECTORS/openssl-dane, else from
 * ../shared/vectors next to the repository; when neither exists the vector
 * test is reported as skipped with the reason, never as passed. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/sha512.h>

#include "dane.h"
#include "x509.h"

/* Fixtures made with openssl for these tests (not from the vectors):
 * pem_san: self-signed, CN=cn.example.com, SAN DNS:*.example.net, DNS:mx.example.org.
 * pem_nosan: self-signed, CN=mx.example.com, no subjectAltName.
 * pem_chain_leaf <- pem_chain_int <- pem_chain_root: RSA leaf for
 * mx.example.org (SAN), P-256 issuer and root with CA:TRUE, valid 100 years
 * from their creation. */
#include "test_dane_fixtures.inc"

#define MAX_CERTS 8
#define MAX_RECS 8

struct blob {
	uint8_t *p;
	size_t len;
};

struct vcase {
	char file[64];
	int number;
	int n_tlsa, n_certs, no_name_checks, expect_code, expect_depth;
	struct dane_tlsa tlsa[MAX_RECS];
	struct blob certs[MAX_CERTS];
	const char *name;
};

static struct vcase *cases;
static size_t n_cases;
static char vector_skip_reason[512];

/* ---------- helpers ---------- */

static struct blob pem_to_der(const char *pem, size_t len)
{
	struct blob b = { malloc(len), 0 };
	int n;

	assert_non_null(b.p);
	n = wc_CertPemToDer((const unsigned char *)pem, (int)len, b.p, (int)len, CERT_TYPE);
	assert_true(n > 0);
	b.len = (size_t)n;
	return b;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static uint8_t *unhex(const char *s, size_t *len)
{
	size_t n = strlen(s), i;
	uint8_t *p;

	if (n % 2)
		return NULL;
	p = malloc(n / 2 + 1);
	for (i = 0; i < n / 2; i++) {
		int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);

		if (h < 0 || l < 0) {
			free(p);
			return NULL;
		}
		p[i] = (uint8_t)(h << 4 | l);
	}
	*len = n / 2;
	return p;
}

static const char *vectors_dir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("TLSGATE_VECTORS");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		snprintf(dir, sizeof(dir), "%s/openssl-dane", env);
		return dir;
	}
	/* Relative to the repository root: the runner starts us there; also
	 * try from the binary's place (build/tests/). */
	if (access("../shared/vectors/openssl-dane/danetest.in", R_OK) == 0)
		return "../shared/vectors/openssl-dane";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		snprintf(dir, sizeof(dir), "%.*s/../../../shared/vectors/openssl-dane",
			 (int)(strrchr(exe, '/') - exe), exe);
		if (access(dir, R_OK) == 0)
			return dir;
	}
	return NULL;
}

/* Reads the next line that is neither blank nor a comment. */
static char *next_line(FILE *f, char *buf, size_t size)
{
	while (fgets(buf, (int)size, f)) {
		char *p = buf;

		buf[strcspn(buf, "\r\n")] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != '#')
			return p;
	}
	return NULL;
}

static int load_file(const char *dir, const char *file, const char *name)
{
	char path[PATH_MAX + 64], line[8192], pem[16384];
	FILE *f;
	char *l;
	int number = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while ((l = next_line(f, line, sizeof(line)))) {
		struct vcase *c;
		int i;

		cases = realloc(cases, (n_cases + 1) * sizeof(*cases));
		c = &cases[n_cases];
		memset(c, 0, sizeof(*c));
		snprintf(c->file, sizeof(c->file), "%s", file);
		c->number = ++number;
		c->name = name;
		if (sscanf(l, "%d %d %d %d %d", &c->n_tlsa, &c->n_certs, &c->no_name_checks,
			   &c->expect_code, &c->expect_depth) != 5 ||
		    c->n_tlsa < 1 || c->n_tlsa > MAX_RECS || c->n_certs < 1 || c->n_certs > MAX_CERTS)
			goto bad;
		for (i = 0; i < c->n_tlsa; i++) {
			unsigned u, s, m;
			char hex[8192];

			l = next_line(f, line, sizeof(line));
			if (!l || sscanf(l, "%u %u %u %8191s", &u, &s, &m, hex) != 4)
				goto bad;
			c->tlsa[i].usage = (uint8_t)u;
			c->tlsa[i].selector = (uint8_t)s;
			c->tlsa[i].mtype = (uint8_t)m;
			c->tlsa[i].data = unhex(hex, &c->tlsa[i].len);
			if (!c->tlsa[i].data)
				goto bad;
		}
		for (i = 0; i < c->n_certs; i++) {
			size_t used = 0;

			while ((l = next_line(f, line, sizeof(line))) &&
			       strcmp(l, "-----BEGIN CERTIFICATE-----"))
				;
			if (!l)
				goto bad;
			do {
				used += (size_t)snprintf(pem + used, sizeof(pem) - used, "%s\n", l);
				if (!strcmp(l, "-----END CERTIFICATE-----"))
					break;
			} while ((l = next_line(f, line, sizeof(line))) && used < sizeof(pem) - 100);
			if (!l)
				goto bad;
			c->certs[i] = pem_to_der(pem, used);
		}
		n_cases++;
	}
	fclose(f);
	return 0;
bad:
	fclose(f);
	return -EBADMSG;
}

static enum dane_result map_openssl(int code)
{
	switch (code) {
	case 0:
		return DANE_MATCH;
	case 20:
		return DANE_NO_ISSUER;
	case 62:
		return DANE_NAME_MISMATCH;
	case 65:
		return DANE_NO_MATCH;
	}
	fail_msg("unknown OpenSSL code %d in the vectors", code);
	return DANE_CERT_ERROR;
}

static int run_case(const struct vcase *c, struct dane_verdict *v)
{
	const uint8_t *chain[MAX_CERTS];
	size_t lens[MAX_CERTS];
	const char *names[1] = { c->name };
	struct dane_input in = {
		.tlsa = c->tlsa, .n_tlsa = (size_t)c->n_tlsa,
		.chain = chain, .chain_len = lens, .n_chain = (size_t)c->n_certs,
		.names = names, .n_names = 1,
		.no_name_checks = c->no_name_checks != 0,
	};
	int i;

	for (i = 0; i < c->n_certs; i++) {
		chain[i] = c->certs[i].p;
		lens[i] = c->certs[i].len;
	}
	return dane_verify(&in, v);
}

/* ---------- the OpenSSL suite: one test per case ---------- */

static void test_vector(void **state)
{
	const struct vcase *c = *state;
	struct dane_verdict v;
	bool has_dane = false;
	int i;

	for (i = 0; i < c->n_tlsa; i++)
		if (c->tlsa[i].usage == DANE_USAGE_DANE_TA || c->tlsa[i].usage == DANE_USAGE_DANE_EE)
			has_dane = true;
	assert_int_equal(run_case(c, &v), 0);
	if (!has_dane) {
		/* PKIX-TA/PKIX-EE only: unusable for SMTP (RFC 7672 3.1.3);
		 * TLS stays mandatory, the peer is not authenticated. We do not
		 * emulate OpenSSL's PKIX result here, by design. */
		print_message("# %s case %d: usages 0/1 only, OpenSSL says %d/%d, tlsgate says unusable for SMTP\n",
			      c->file, c->number, c->expect_code, c->expect_depth);
		assert_int_equal(v.result, DANE_UNUSABLE);
		assert_int_equal(v.depth, -1);
		return;
	}
	if (v.result != map_openssl(c->expect_code) || v.depth != c->expect_depth)
		print_message("# %s case %d: expected %d depth %d, got %s depth %d\n", c->file,
			      c->number, c->expect_code, c->expect_depth, dane_result_str(v.result),
			      v.depth);
	assert_int_equal(v.result, map_openssl(c->expect_code));
	assert_int_equal(v.depth, c->expect_depth);
	if (v.result == DANE_MATCH || v.result == DANE_NAME_MISMATCH) {
		assert_true(v.record >= 0 && v.record < c->n_tlsa);
		assert_true(v.usage == DANE_USAGE_DANE_TA || v.usage == DANE_USAGE_DANE_EE);
	}
}

static void test_vectors_missing(void **state)
{
	print_message("# SKIP: %s\n", vector_skip_reason);
	skip();
}

/* ---------- hostile and rule tests on the suite's own chain ---------- */

static struct blob own_chain[3];

static void load_own_chain(void)
{
	own_chain[0] = pem_to_der(pem_chain_leaf, strlen(pem_chain_leaf));
	own_chain[1] = pem_to_der(pem_chain_int, strlen(pem_chain_int));
	own_chain[2] = pem_to_der(pem_chain_root, strlen(pem_chain_root));
}

struct fix {
	const uint8_t *chain[DANE_CHAIN_MAX + 2];
	size_t lens[DANE_CHAIN_MAX + 2];
	size_t n;
	struct dane_tlsa tlsa[DANE_TLSA_MAX + 1];
	uint8_t dig[4][64];
	const char *names[2];
	struct dane_input in;
};

static void digest_of(const uint8_t *p, size_t len, int mtype, uint8_t *out)
{
	if (mtype == 1)
		assert_int_equal(wc_Sha256Hash(p, (word32)len, out), 0);
	else
		assert_int_equal(wc_Sha512Hash(p, (word32)len, out), 0);
}

static struct fix *fix_new(void)
{
	struct fix *f;
	size_t i;

	if (!own_chain[0].p)
		load_own_chain();
	f = calloc(1, sizeof(*f));
	for (i = 0; i < 3; i++) {
		f->chain[i] = own_chain[i].p;
		f->lens[i] = own_chain[i].len;
	}
	f->n = 3;
	f->names[0] = "mx.example.org";
	f->in = (struct dane_input){ .tlsa = f->tlsa, .chain = f->chain, .chain_len = f->lens,
				     .n_chain = 3, .names = f->names, .n_names = 1,
				     .no_name_checks = true };
	return f;
}

/* A record for chain[idx] computed here, not copied from the vectors. */
static void set_rec(struct fix *f, size_t slot, int usage, int sel, int mtype, size_t idx)
{
	struct x509_cert *x;
	const uint8_t *p;
	size_t len;

	assert_int_equal(x509_cert_parse(f->chain[idx], f->lens[idx], &x), 0);
	p = sel == 0 ? x509_cert_der(x, &len) : x509_cert_spki(x, &len);
	f->tlsa[slot] = (struct dane_tlsa){ (uint8_t)usage, (uint8_t)sel, (uint8_t)mtype, NULL, 0 };
	if (mtype == 0) {
		uint8_t *copy = malloc(len);

		memcpy(copy, p, len);
		f->tlsa[slot].data = copy; /* leaked on purpose: test process */
		f->tlsa[slot].len = len;
	} else {
		digest_of(p, len, mtype, f->dig[slot % 4]);
		f->tlsa[slot].data = f->dig[slot % 4];
		f->tlsa[slot].len = mtype == 1 ? 32 : 64;
	}
	x509_cert_free(x);
	if (f->in.n_tlsa < slot + 1)
		f->in.n_tlsa = slot + 1;
}

static struct dane_verdict verify(struct fix *f, int want_rc)
{
	struct dane_verdict v;

	assert_int_equal(dane_verify(&f->in, &v), want_rc);
	return v;
}

static void test_ee_and_ta_basics(void **state)
{
	struct fix *f = fix_new();
	struct dane_verdict v;

	set_rec(f, 0, 3, 1, 1, 0);
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_MATCH);
	assert_int_equal(v.depth, 0);
	set_rec(f, 0, 2, 0, 2, 2);
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_MATCH);
	assert_int_equal(v.depth, 2);
	assert_int_equal(v.usage, 2);
	/* DANE-TA never matches the leaf itself. */
	set_rec(f, 0, 2, 0, 1, 0);
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_NO_MATCH);
	free(f);
}

static void test_bad_lengths_unusable(void **state)
{
	struct fix *f = fix_new();
	static const uint8_t zeros[65];
	static const size_t bad[][2] = { { 1, 31 }, { 1, 33 }, { 1, 64 }, { 2, 32 }, { 2, 63 }, { 2, 65 }, { 0, 0 } };
	struct dane_verdict v;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f->tlsa[0] = (struct dane_tlsa){ 3, 1, (uint8_t)bad[i][0], zeros, bad[i][1] };
		f->in.n_tlsa = 1;
		v = verify(f, 0);
		assert_int_equal(v.result, DANE_UNUSABLE);
		assert_int_equal(v.n_usable, 0);
	}
	/* Unknown usage, selector, matching type; NULL data. */
	f->tlsa[0] = (struct dane_tlsa){ 4, 1, 1, zeros, 32 };
	f->tlsa[1] = (struct dane_tlsa){ 3, 2, 1, zeros, 32 };
	f->tlsa[2] = (struct dane_tlsa){ 3, 1, 3, zeros, 32 };
	f->tlsa[3] = (struct dane_tlsa){ 3, 1, 1, NULL, 32 };
	f->in.n_tlsa = 4;
	assert_int_equal(verify(f, 0).result, DANE_UNUSABLE);
	/* Full data that does not parse as a certificate or SPKI. */
	f->tlsa[0] = (struct dane_tlsa){ 2, 0, 0, zeros, 65 };
	f->tlsa[1] = (struct dane_tlsa){ 2, 1, 0, zeros, 65 };
	f->tlsa[2] = (struct dane_tlsa){ 3, 0, 0, zeros, 1 };
	f->in.n_tlsa = 3;
	assert_int_equal(verify(f, 0).result, DANE_UNUSABLE);
	/* A bad record next to a good one: the good one decides. */
	f->tlsa[0] = (struct dane_tlsa){ 3, 1, 2, zeros, 63 };
	set_rec(f, 1, 3, 1, 1, 0);
	f->in.n_tlsa = 2;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_MATCH);
	assert_int_equal(v.record, 1);
	assert_int_equal(v.n_usable, 1);
	free(f);
}

static void test_digest_agility(void **state)
{
	struct fix *f = fix_new();
	static uint8_t wrong512[64] = { 1 };
	struct dane_verdict v;

	/* A matching SHA-256 record is ignored when a SHA-512 one for the
	 * same usage and selector exists, even one that does not match. */
	set_rec(f, 0, 3, 1, 1, 0);
	f->tlsa[1] = (struct dane_tlsa){ 3, 1, 2, wrong512, 64 };
	f->in.n_tlsa = 2;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_NO_MATCH);
	assert_int_equal(v.n_usable, 1);
	/* Another selector is a separate family. */
	f->tlsa[1] = (struct dane_tlsa){ 3, 0, 2, wrong512, 64 };
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	/* Full records are not digests: always used. */
	set_rec(f, 0, 3, 1, 0, 0);
	f->tlsa[1] = (struct dane_tlsa){ 3, 1, 2, wrong512, 64 };
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	/* Same for DANE-TA. */
	set_rec(f, 0, 2, 1, 1, 1);
	f->tlsa[1] = (struct dane_tlsa){ 2, 1, 2, wrong512, 64 };
	assert_int_equal(verify(f, 0).result, DANE_NO_MATCH);
	free(f);
}

static void test_chain_errors(void **state)
{
	struct fix *f = fix_new();
	static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	uint8_t *cut;
	size_t len, i;

	set_rec(f, 0, 3, 0, 1, 0);
	f->in.n_chain = 0;
	assert_int_equal(verify(f, 0).result, DANE_CERT_ERROR);
	/* Bounded chain: DANE_CHAIN_MAX copies pass, one more does not. */
	for (i = 1; i < DANE_CHAIN_MAX + 1; i++) {
		f->chain[i] = f->chain[1];
		f->lens[i] = f->lens[1];
	}
	f->in.n_chain = DANE_CHAIN_MAX;
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	f->in.n_chain = DANE_CHAIN_MAX + 1;
	assert_int_equal(verify(f, 0).result, DANE_CERT_ERROR);
	/* An unparseable intermediate fails the chain even when the leaf matches. */
	f->chain[1] = junk;
	f->lens[1] = sizeof(junk);
	f->in.n_chain = 2;
	assert_int_equal(verify(f, 0).result, DANE_CERT_ERROR);
	/* The leaf cut at every length never matches, never crashes. The
	 * record is the digest of the whole leaf. */
	f->in.n_chain = 1;
	len = f->lens[0];
	for (i = 0; i < len; i++) {
		const uint8_t *orig = f->chain[0];

		cut = malloc(i ? i : 1);
		memcpy(cut, orig, i);
		f->chain[0] = cut;
		f->lens[0] = i;
		assert_int_equal(verify(f, 0).result, DANE_CERT_ERROR);
		f->chain[0] = orig;
		f->lens[0] = len;
		free(cut);
	}
	/* Every single-byte corruption of the leaf: never a match. */
	for (i = 0; i < len; i++) {
		uint8_t *bad = malloc(len);
		enum dane_result r;

		memcpy(bad, f->chain[0], len);
		bad[i] ^= 0x01;
		f->chain[0] = bad;
		r = verify(f, 0).result;
		assert_true(r == DANE_CERT_ERROR || r == DANE_NO_MATCH);
		f->chain[0] = own_chain[0].p;
		free(bad);
	}
	free(f);
}

static void test_bounds_and_args(void **state)
{
	struct fix *f = fix_new();
	struct dane_verdict v;
	size_t i;

	for (i = 0; i < DANE_TLSA_MAX; i++)
		f->tlsa[i] = (struct dane_tlsa){ 3, 1, 1, f->dig[0], 32 };
	f->in.n_tlsa = DANE_TLSA_MAX;
	assert_int_equal(verify(f, 0).result, DANE_NO_MATCH);
	f->in.n_tlsa = DANE_TLSA_MAX + 1;
	v = verify(f, -E2BIG);
	assert_int_equal(v.result, DANE_NO_MATCH); /* fails closed */
	f->in.n_tlsa = 0;
	assert_int_equal(verify(f, 0).result, DANE_NO_RECORDS);
	assert_int_equal(dane_verify(NULL, &v), -EINVAL);
	assert_int_equal(dane_verify(&f->in, NULL), -EINVAL);
	f->in.n_tlsa = 1;
	f->in.tlsa = NULL;
	assert_int_equal(dane_verify(&f->in, &v), -EINVAL);
	free(f);
}

static void test_ta_path(void **state)
{
	struct fix *f = fix_new();
	struct dane_verdict v;
	uint8_t *bad;
	size_t len;

	set_rec(f, 0, 2, 0, 1, 2); /* root */
	/* Sent order does not matter. */
	f->chain[1] = own_chain[2].p, f->lens[1] = own_chain[2].len;
	f->chain[2] = own_chain[1].p, f->lens[2] = own_chain[1].len;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_MATCH);
	assert_int_equal(v.depth, 2);
	/* Missing intermediate: the root is sent but out of reach. */
	f->in.n_chain = 2;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_NO_ISSUER);
	/* A broken signature on the intermediate breaks the path. */
	len = own_chain[1].len;
	bad = malloc(len);
	memcpy(bad, own_chain[1].p, len);
	bad[len - 3] ^= 0x01; /* inside the ECDSA signature value */
	f->chain[2] = bad, f->lens[2] = len;
	f->in.n_chain = 3;
	assert_int_equal(verify(f, 0).result, DANE_NO_ISSUER);
	free(bad);
	free(f);
}

static void test_ta_names_and_dates(void **state)
{
	struct fix *f = fix_new();
	struct dane_verdict v;

	set_rec(f, 0, 2, 1, 2, 1);
	f->names[0] = "mx.example.net";
	f->names[1] = "MX.EXAMPLE.ORG.";
	f->in.n_names = 2;
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	f->in.n_names = 1;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_NAME_MISMATCH);
	assert_int_equal(v.depth, 1);
	/* No reference name at all: DANE-TA fails closed. */
	f->in.n_names = 0;
	assert_int_equal(verify(f, 0).result, DANE_NAME_MISMATCH);
	/* Dates: 2015-01-01 is before the chain's notBefore; 2200 after
	 * its notAfter. */
	f->names[0] = "mx.example.org";
	f->in.n_names = 1;
	f->in.now = 1420070400;
	v = verify(f, 0);
	assert_int_equal(v.result, DANE_EXPIRED);
	assert_int_equal(v.depth, 1);
	f->in.now = 7258118400;
	assert_int_equal(verify(f, 0).result, DANE_EXPIRED);
	f->in.now = 0;
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	f->in.now = 1420070400;
	/* DANE-EE: no date check. */
	set_rec(f, 0, 3, 1, 1, 0);
	assert_int_equal(verify(f, 0).result, DANE_MATCH);
	free(f);
}

static void test_name_rules(void **state)
{
	struct x509_cert *san, *nosan;
	struct blob a = pem_to_der(pem_san, strlen(pem_san));
	struct blob b = pem_to_der(pem_nosan, strlen(pem_nosan));

	assert_int_equal(x509_cert_parse(a.p, a.len, &san), 0);
	assert_int_equal(x509_cert_parse(b.p, b.len, &nosan), 0);
	assert_true(x509_cert_matches_name(san, "mx.example.org"));
	assert_true(x509_cert_matches_name(san, "MX.Example.Org."));
	assert_true(x509_cert_matches_name(san, "a.example.net"));
	assert_false(x509_cert_matches_name(san, "example.net"));
	assert_false(x509_cert_matches_name(san, "a.b.example.net"));
	assert_false(x509_cert_matches_name(san, ".example.net"));
	assert_false(x509_cert_matches_name(san, "cn.example.com")); /* CN ignored with SAN */
	assert_false(x509_cert_matches_name(san, "xmx.example.org"));
	assert_false(x509_cert_matches_name(san, ""));
	assert_true(x509_cert_matches_name(nosan, "mx.example.com")); /* CN fallback */
	assert_false(x509_cert_matches_name(nosan, "example.com"));
	x509_cert_free(san);
	x509_cert_free(nosan);
	x509_cert_free(NULL);
	free(a.p);
	free(b.p);
}

static void test_spki_parse(void **state)
{
	static const uint8_t junk[] = { 0x30, 0x00 };
	struct x509_cert *x;
	const uint8_t *spki;
	uint8_t *longer;
	size_t len;

	if (!own_chain[0].p)
		load_own_chain();
	assert_int_equal(x509_cert_parse(own_chain[0].p, own_chain[0].len, &x), 0);
	spki = x509_cert_spki(x, &len);
	assert_true(x509_spki_key_oid(spki, len) > 0);
	assert_int_equal(x509_spki_key_oid(spki, len - 1), -EBADMSG);
	longer = malloc(len + 1);
	memcpy(longer, spki, len);
	longer[len] = 0;
	assert_int_equal(x509_spki_key_oid(longer, len + 1), -EBADMSG);
	x509_cert_free(x);
	assert_int_equal(x509_spki_key_oid(junk, sizeof(junk)), -EBADMSG);
	assert_int_equal(x509_cert_parse(junk, sizeof(junk), &x), -EBADMSG);
	assert_null(x);
	free(longer);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_ee_and_ta_basics),
		cmocka_unit_test(test_bad_lengths_unusable),
		cmocka_unit_test(test_digest_agility),
		cmocka_unit_test(test_chain_errors),
		cmocka_unit_test(test_bounds_and_args),
		cmocka_unit_test(test_ta_path),
		cmocka_unit_test(test_ta_names_and_dates),
		cmocka_unit_test(test_name_rules),
		cmocka_unit_test(test_spki_parse),
	};
	const size_t n_fixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests;
	const char *dir = vectors_dir();
	size_t i, n = 0;
	int rc;

	if (!dir) {
		snprintf(vector_skip_reason, sizeof(vector_skip_reason),
			 "OpenSSL DANE vectors not found ($TLSGATE_VECTORS unset, no ../shared/vectors/openssl-dane)");
	} else if ((rc = load_file(dir, "danetest.in", "example.com")) ||
		   (rc = load_file(dir, "dane-cross.in", "server.example"))) {
		fprintf(stderr, "cannot read vectors in %s: %s\n", dir, strerror(-rc));
		return 1; /* present but unreadable: a failure, not a skip */
	}
	tests = calloc(n_cases + n_fixed + 1, sizeof(*tests));
	for (i = 0; i < n_cases; i++) {
		char *name = malloc(96);

		snprintf(name, 96, "openssl-dane %s case %d", cases[i].file, cases[i].number);
		tests[n++] = (struct CMUnitTest){ .name = name, .test_func = test_vector,
						  .initial_state = &cases[i] };
	}
	if (!dir)
		tests[n++] = (struct CMUnitTest){ .name = "openssl-dane vectors",
						  .test_func = test_vectors_missing };
	for (i = 0; i < n_fixed; i++)
		tests[n++] = fixed[i];
	return _cmocka_run_group_tests("dane", tests, n, NULL, NULL);
}
