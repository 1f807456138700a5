/* x509.c - certificate facts for DANE, see x509.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include "x509.h"

#define DER_SEQUENCE 0x30
#define DER_INTEGER 0x02
#define DER_BITSTRING 0x03
#define DER_OID 0x06
#define DER_UTCTIME 0x17
#define DER_GENTIME 0x18
#define DER_CTX0 0xa0
#define DNS_NAME_LEN_MAX 253

struct x509_cert {
	uint8_t *der;
	size_t der_len;
	size_t spki_off, spki_len;
	size_t issuer_off, issuer_len;
	size_t subject_off, subject_len;
	int64_t not_before, not_after;
	int key_oid;
	bool is_ca;
	/* Names copied out of wolfSSL's DecodedCert, NUL-terminated. */
	char **dns_names;
	size_t n_dns_names;
	char *cn;
};

/* One DER TLV at buf[*off..end): tag, header and value length. Definite
 * lengths only, at most 4 length octets, must fit in `end`. */
struct der_tlv {
	uint8_t tag;
	size_t start; /* offset of the tag */
	size_t val;   /* offset of the value */
	size_t len;   /* value length */
	size_t end;   /* offset just after the TLV */
};

static int der_next(const uint8_t *buf, size_t off, size_t end, struct der_tlv *t)
{
	size_t len, n, i;

	if (off >= end || end - off < 2)
		return -EBADMSG;
	t->start = off;
	t->tag = buf[off++];
	if ((t->tag & 0x1f) == 0x1f)
		return -EBADMSG; /* multi-byte tags do not occur in certificates */
	len = buf[off++];
	if (len & 0x80) {
		n = len & 0x7f;
		if (n == 0 || n > 4 || end - off < n)
			return -EBADMSG;
		len = 0;
		for (i = 0; i < n; i++)
			len = (len << 8) | buf[off++];
	}
	if (len > end - off)
		return -EBADMSG;
	t->val = off;
	t->len = len;
	t->end = off + len;
	return 0;
}

static int days_from_civil(int64_t y, unsigned m, unsigned d, int64_t *days)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01, proleptic Gregorian. */
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	*days = era * 146097 + (int64_t)doe - 719468;
	return 0;
}

static int digits(const uint8_t *p, size_t n, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EBADMSG;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

/* UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 4.1.2.5). */
static int der_time(const uint8_t *buf, const struct der_tlv *t, int64_t *out)
{
	const uint8_t *p = buf + t->val;
	unsigned y, mo, d, h, mi, s;
	int64_t days, year;
	size_t yl;

	if (t->tag == DER_UTCTIME && t->len == 13)
		yl = 2;
	else if (t->tag == DER_GENTIME && t->len == 15)
		yl = 4;
	else
		return -EBADMSG;
	if (p[t->len - 1] != 'Z')
		return -EBADMSG;
	if (digits(p, yl, &y) || digits(p + yl, 2, &mo) || digits(p + yl + 2, 2, &d) ||
	    digits(p + yl + 4, 2, &h) || digits(p + yl + 6, 2, &mi) || digits(p + yl + 8, 2, &s))
		return -EBADMSG;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -EBADMSG;
	year = yl == 2 ? (y >= 50 ? 1900 + y : 2000 + y) : y;
	days_from_civil(year, mo, d, &days);
	*out = days * 86400 + h * 3600 + mi * 60 + s;
	return 0;
}

/* Walks Certificate -> TBSCertificate and records where the names, the
 * validity and the SPKI are. */
static int walk_cert(struct x509_cert *c)
{
	const uint8_t *b = c->der;
	struct der_tlv cert, tbs, t, nb, na;
	size_t off;

	if (der_next(b, 0, c->der_len, &cert) || cert.tag != DER_SEQUENCE || cert.end != c->der_len)
		return -EBADMSG;
	if (der_next(b, cert.val, cert.end, &tbs) || tbs.tag != DER_SEQUENCE)
		return -EBADMSG;
	off = tbs.val;
	if (der_next(b, off, tbs.end, &t))
		return -EBADMSG;
	if (t.tag == DER_CTX0) { /* version */
		off = t.end;
		if (der_next(b, off, tbs.end, &t))
			return -EBADMSG;
	}
	if (t.tag != DER_INTEGER) /* serialNumber */
		return -EBADMSG;
	if (der_next(b, t.end, tbs.end, &t) || t.tag != DER_SEQUENCE) /* signature */
		return -EBADMSG;
	if (der_next(b, t.end, tbs.end, &t) || t.tag != DER_SEQUENCE) /* issuer */
		return -EBADMSG;
	c->issuer_off = t.start;
	c->issuer_len = t.end - t.start;
	if (der_next(b, t.end, tbs.end, &t) || t.tag != DER_SEQUENCE) /* validity */
		return -EBADMSG;
	if (der_next(b, t.val, t.end, &nb) || der_next(b, nb.end, t.end, &na) || na.end != t.end)
		return -EBADMSG;
	if (der_time(b, &nb, &c->not_before) || der_time(b, &na, &c->not_after))
		return -EBADMSG;
	if (der_next(b, t.end, tbs.end, &t) || t.tag != DER_SEQUENCE) /* subject */
		return -EBADMSG;
	c->subject_off = t.start;
	c->subject_len = t.end - t.start;
	if (der_next(b, t.end, tbs.end, &t) || t.tag != DER_SEQUENCE) /* subjectPublicKeyInfo */
		return -EBADMSG;
	c->spki_off = t.start;
	c->spki_len = t.end - t.start;
	return 0;
}

struct key_alg {
	const uint8_t *oid;
	size_t len;
	int key_oid;
};

static const uint8_t oid_rsa[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };
static const uint8_t oid_ec[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const uint8_t oid_ed25519[] = { 0x2b, 0x65, 0x70 };
static const uint8_t oid_ed448[] = { 0x2b, 0x65, 0x71 };

static const struct key_alg key_algs[] = {
	{ oid_rsa, sizeof(oid_rsa), RSAk },
	{ oid_ec, sizeof(oid_ec), ECDSAk },
	{ oid_ed25519, sizeof(oid_ed25519), ED25519k },
	{ oid_ed448, sizeof(oid_ed448), ED448k },
};

int x509_spki_key_oid(const uint8_t *spki, size_t len)
{
	struct der_tlv top, alg, oid, bits;
	size_t i;

	if (!spki || len == 0)
		return -EBADMSG;
	if (der_next(spki, 0, len, &top) || top.tag != DER_SEQUENCE || top.end != len)
		return -EBADMSG;
	if (der_next(spki, top.val, top.end, &alg) || alg.tag != DER_SEQUENCE)
		return -EBADMSG;
	if (der_next(spki, alg.val, alg.end, &oid) || oid.tag != DER_OID)
		return -EBADMSG;
	if (der_next(spki, alg.end, top.end, &bits) || bits.tag != DER_BITSTRING ||
	    bits.end != top.end || bits.len < 2)
		return -EBADMSG;
	for (i = 0; i < sizeof(key_algs) / sizeof(key_algs[0]); i++)
		if (oid.len == key_algs[i].len && !memcmp(spki + oid.val, key_algs[i].oid, oid.len))
			return key_algs[i].key_oid;
	return -ENOTSUP;
}

static char *dup_name(const char *s, int len)
{
	char *p;

	/* A length that disagrees with strlen() means an embedded NUL: such a
	 * name must never match anything. */
	if (!s || len <= 0 || len > DNS_NAME_LEN_MAX + 1 || strnlen(s, (size_t)len + 1) != (size_t)len)
		return NULL;
	p = malloc((size_t)len + 1);
	if (p) {
		memcpy(p, s, (size_t)len);
		p[len] = '\0';
	}
	return p;
}

static int copy_names(struct x509_cert *c, DecodedCert *dc)
{
	DNS_entry *e;
	size_t n = 0;

	for (e = dc->altNames; e; e = e->next)
		if (e->type == ASN_DNS_TYPE)
			n++;
	if (n) {
		c->dns_names = calloc(n, sizeof(*c->dns_names));
		if (!c->dns_names)
			return -ENOMEM;
	}
	for (e = dc->altNames; e; e = e->next) {
		if (e->type != ASN_DNS_TYPE)
			continue;
		/* NULL entries stay in the list: they count as "has a dNSName"
		 * (so CN is not consulted) but match nothing. */
		c->dns_names[c->n_dns_names++] = dup_name(e->name, e->len);
	}
	if (dc->subjectCN && dc->subjectCNLen > 0)
		c->cn = dup_name(dc->subjectCN, dc->subjectCNLen);
	return 0;
}

int x509_cert_parse(const uint8_t *der, size_t len, struct x509_cert **out)
{
	struct x509_cert *c;
	DecodedCert dc;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!der || len == 0 || len > X509_DER_MAX)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->der = malloc(len);
	if (!c->der) {
		free(c);
		return -ENOMEM;
	}
	memcpy(c->der, der, len);
	c->der_len = len;
	rc = walk_cert(c);
	if (rc) {
		x509_cert_free(c);
		return rc;
	}
	InitDecodedCert(&dc, c->der, (word32)len, NULL);
	/* NO_VERIFY: no signature or date check here; the matcher decides
	 * which of those apply (none for DANE-EE). */
	if (ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL) != 0) {
		FreeDecodedCert(&dc);
		x509_cert_free(c);
		return -EBADMSG;
	}
	c->key_oid = (int)dc.keyOID;
	c->is_ca = dc.isCA;
	rc = copy_names(c, &dc);
	FreeDecodedCert(&dc);
	if (rc) {
		x509_cert_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void x509_cert_free(struct x509_cert *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_dns_names; i++)
		free(c->dns_names[i]);
	free(c->dns_names);
	free(c->cn);
	free(c->der);
	free(c);
}

const uint8_t *x509_cert_der(const struct x509_cert *c, size_t *len)
{
	*len = c->der_len;
	return c->der;
}

const uint8_t *x509_cert_spki(const struct x509_cert *c, size_t *len)
{
	*len = c->spki_len;
	return c->der + c->spki_off;
}

int x509_cert_key_oid(const struct x509_cert *c)
{
	return c->key_oid;
}

bool x509_cert_issuer_is(const struct x509_cert *child, const struct x509_cert *issuer)
{
	return child->issuer_len == issuer->subject_len &&
	       !memcmp(child->der + child->issuer_off, issuer->der + issuer->subject_off,
		       child->issuer_len);
}

int x509_cert_verify_sig(const struct x509_cert *child, const uint8_t *spki, size_t spki_len,
			 int key_oid)
{
	if (!spki || spki_len == 0 || spki_len > X509_DER_MAX || key_oid <= 0)
		return -EBADMSG;
	if (wc_CheckCertSigPubKey(child->der, (word32)child->der_len, NULL, spki,
				  (word32)spki_len, key_oid) != 0)
		return -EBADMSG;
	return 0;
}

bool x509_cert_is_ca(const struct x509_cert *c)
{
	return c->is_ca;
}

bool x509_cert_valid_at(const struct x509_cert *c, time_t now)
{
	return c->not_before <= (int64_t)now && (int64_t)now <= c->not_after;
}

/* Copies `name` without one trailing dot; false when empty or too long. */
static bool name_norm(const char *name, char *buf, size_t size)
{
	size_t n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n >= size)
		return false;
	memcpy(buf, name, n);
	buf[n] = '\0';
	return true;
}

static bool name_match_one(const char *pattern, const char *ref)
{
	char p[DNS_NAME_LEN_MAX + 2], r[DNS_NAME_LEN_MAX + 2];
	const char *rdot, *prest;

	if (!pattern || !name_norm(pattern, p, sizeof(p)) || !name_norm(ref, r, sizeof(r)))
		return false;
	if (p[0] != '*')
		return strchr(p, '*') == NULL && strcasecmp(p, r) == 0;
	/* Wildcard: "*." then at least two labels, no further '*'. */
	if (p[1] != '.' || strchr(p + 1, '*'))
		return false;
	prest = p + 1; /* ".example.com" */
	if (!strchr(prest + 1, '.') || prest[1] == '\0')
		return false;
	rdot = strchr(r, '.');
	if (!rdot || rdot == r) /* the wildcard must stand for one non-empty label */
		return false;
	return strcasecmp(rdot, prest) == 0;
}

bool x509_cert_matches_name(const struct x509_cert *c, const char *name)
{
	size_t i;

	if (!name)
		return false;
	if (c->n_dns_names) {
		for (i = 0; i < c->n_dns_names; i++)
			if (name_match_one(c->dns_names[i], name))
				return true;
		return false;
	}
	return c->cn && name_match_one(c->cn, name);
}
