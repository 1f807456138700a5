/* tls_parse.c - stateless TLS handshake parsing; see tls_parse.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_parse.h"

/* A bounds-checked read cursor. Every get fails once the input is short,
 * and stays failed, so callers check c.ok once at the end. */
struct cur {
	const uint8_t *p;
	size_t len;
	bool ok;
};

static struct cur cur_make(const uint8_t *p, size_t len)
{
	return (struct cur){ p, len, true };
}

static uint32_t get_n(struct cur *c, size_t n)
{
	uint32_t v = 0;
	size_t i;

	if (!c->ok || c->len < n) {
		c->ok = false;
		c->len = 0;
		return 0;
	}
	for (i = 0; i < n; i++)
		v = (v << 8) | c->p[i];
	c->p += n;
	c->len -= n;
	return v;
}

/* Takes a sub-cursor of n bytes. */
static struct cur get_sub(struct cur *c, size_t n)
{
	struct cur s = { NULL, 0, false };

	if (!c->ok || c->len < n) {
		c->ok = false;
		c->len = 0;
		return s;
	}
	s = cur_make(c->p, n);
	c->p += n;
	c->len -= n;
	return s;
}

int tls_record_parse(const uint8_t *p, size_t len, struct tls_record *rec)
{
	if (len >= 1 && (p[0] < TLS_CT_CHANGE_CIPHER_SPEC || p[0] > TLS_CT_HEARTBEAT))
		return -EINVAL;
	if (len >= 2 && p[1] != 3)
		return -EINVAL;
	if (len < TLS_RECORD_HEADER)
		return -EAGAIN;
	rec->type = p[0];
	rec->version = (uint16_t)(p[1] << 8 | p[2]);
	rec->length = (uint16_t)(p[3] << 8 | p[4]);
	if (rec->length > TLS_RECORD_MAX)
		return -EINVAL;
	return 0;
}

int tls_sslv2_parse(const uint8_t *p, size_t len, uint8_t *msg_type, size_t *hdr_len, size_t *rec_len)
{
	size_t h, n;

	if (len < 3)
		return -EAGAIN;
	if (p[0] & 0x80) {
		h = 2;
		n = (size_t)(p[0] & 0x7f) << 8 | p[1];
	} else {
		if (p[0] & 0x40) /* escape bit: not a hello */
			return -EINVAL;
		h = 3;
		n = (size_t)(p[0] & 0x3f) << 8 | p[1];
		if (len < 4)
			return -EAGAIN;
	}
	if (p[h] != 1 && p[h] != 4)
		return -EINVAL;
	if (n < 3)
		return -EINVAL;
	*msg_type = p[h];
	*hdr_len = h;
	*rec_len = n;
	return 0;
}

uint16_t tls_sslv2_version(const uint8_t *body, size_t len, uint8_t msg_type)
{
	if (msg_type == 1 && len >= 3)
		return (uint16_t)(body[1] << 8 | body[2]);
	if (msg_type == 4 && len >= 5)
		return (uint16_t)(body[3] << 8 | body[4]);
	return 0;
}

bool tls_looks_like_tls(const uint8_t *p, size_t len)
{
	if (len < 3)
		return false;
	if (p[0] >= TLS_CT_CHANGE_CIPHER_SPEC && p[0] <= TLS_CT_HEARTBEAT && p[1] == 3 && p[2] <= 4)
		return true;
	/* SSLv2 CLIENT-HELLO with a 2-byte header, version 2.0 or 3.x. */
	return (p[0] & 0x80) && p[2] == 1 && (len < 4 || p[3] == 0 || p[3] == 3);
}

static void copy_str(char *dst, size_t size, const uint8_t *src, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < size; i++)
		dst[o++] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
	dst[o] = '\0';
}

static void ch_extension(struct tls_client_hello *ch, uint16_t type, struct cur e)
{
	switch (type) {
	case 0: { /* server_name */
		struct cur list = get_sub(&e, get_n(&e, 2));

		while (list.ok && list.len) {
			uint8_t nt = (uint8_t)get_n(&list, 1);
			struct cur name = get_sub(&list, get_n(&list, 2));

			if (list.ok && nt == 0 && !ch->sni[0]) {
				copy_str(ch->sni, sizeof(ch->sni), name.p, name.len);
				break;
			}
		}
		break;
	}
	case 16: { /* ALPN */
		struct cur list = get_sub(&e, get_n(&e, 2));
		struct cur proto = get_sub(&list, get_n(&list, 1));

		if (proto.ok)
			copy_str(ch->alpn, sizeof(ch->alpn), proto.p, proto.len);
		break;
	}
	case 43: { /* supported_versions */
		struct cur list = get_sub(&e, get_n(&e, 1));

		while (list.ok && list.len >= 2 && ch->n_versions < TLS_VERSIONS_MAX)
			ch->versions[ch->n_versions++] = (uint16_t)get_n(&list, 2);
		break;
	}
	case 0xfe0d: /* encrypted_client_hello */
		ch->has_ech = true;
		break;
	default:
		break;
	}
}

int tls_client_hello_parse(const uint8_t *body, size_t len, struct tls_client_hello *ch)
{
	struct cur c = cur_make(body, len), ext;
	size_t ncs;

	memset(ch, 0, sizeof(*ch));
	ch->legacy_version = (uint16_t)get_n(&c, 2);
	get_sub(&c, 32);
	get_sub(&c, get_n(&c, 1));
	ncs = get_n(&c, 2);
	get_sub(&c, ncs);
	ch->n_ciphers = (unsigned int)(ncs / 2);
	get_sub(&c, get_n(&c, 1));
	if (!c.ok)
		return -EINVAL;
	if (!c.len)
		return 0; /* no extensions */
	ext = get_sub(&c, get_n(&c, 2));
	while (ext.ok && ext.len) {
		uint16_t type = (uint16_t)get_n(&ext, 2);
		struct cur e = get_sub(&ext, get_n(&ext, 2));

		if (ext.ok)
			ch_extension(ch, type, e);
	}
	return ext.ok ? 0 : -EINVAL;
}

static const uint8_t hrr_random[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

int tls_server_hello_parse(const uint8_t *body, size_t len, struct tls_server_hello *sh)
{
	struct cur c = cur_make(body, len), random, sid, ext;

	memset(sh, 0, sizeof(*sh));
	sh->legacy_version = (uint16_t)get_n(&c, 2);
	random = get_sub(&c, 32);
	sid = get_sub(&c, get_n(&c, 1));
	sh->cipher = (uint16_t)get_n(&c, 2);
	get_n(&c, 1); /* compression */
	if (!c.ok || sid.len > 32)
		return -EINVAL;
	sh->hrr = !memcmp(random.p, hrr_random, 32);
	sh->session_id_len = (uint8_t)sid.len;
	memcpy(sh->session_id, sid.p, sid.len);
	sh->version = sh->legacy_version;
	if (!c.len)
		return 0;
	ext = get_sub(&c, get_n(&c, 2));
	while (ext.ok && ext.len) {
		uint16_t type = (uint16_t)get_n(&ext, 2);
		struct cur e = get_sub(&ext, get_n(&ext, 2));

		if (ext.ok && type == 43 && e.len == 2)
			sh->version = (uint16_t)get_n(&e, 2);
	}
	return ext.ok ? 0 : -EINVAL;
}

int tls_certificate_parse(const uint8_t *body, size_t len, bool tls13, tls_cert_cb cb, void *ctx)
{
	struct cur c = cur_make(body, len), list;
	int n = 0;

	if (tls13)
		get_sub(&c, get_n(&c, 1));
	list = get_sub(&c, get_n(&c, 3));
	while (list.ok && list.len) {
		struct cur der = get_sub(&list, get_n(&list, 3));

		if (tls13)
			get_sub(&list, get_n(&list, 2));
		if (!list.ok)
			break;
		if (cb)
			cb(ctx, der.p, der.len);
		n++;
	}
	return list.ok ? n : -EINVAL;
}

/* Reads one DER TLV header: tag, definite length (up to 4 length bytes).
 * On success *hdr is the header size and the value fits in the input. */
static int der_tlv(const uint8_t *p, size_t len, uint8_t *tag, size_t *hdr, size_t *vlen)
{
	size_t n, i, v = 0;

	if (len < 2)
		return -EINVAL;
	*tag = p[0];
	if ((p[0] & 0x1f) == 0x1f) /* multi-byte tags do not occur here */
		return -EINVAL;
	if (!(p[1] & 0x80)) {
		v = p[1];
		n = 0;
	} else {
		n = p[1] & 0x7f;
		if (n == 0 || n > 4 || len < 2 + n)
			return -EINVAL;
		for (i = 0; i < n; i++)
			v = (v << 8) | p[2 + i];
	}
	*hdr = 2 + n;
	if (v > len - *hdr)
		return -EINVAL;
	*vlen = v;
	return 0;
}

int tls_cert_spki(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len)
{
	const uint8_t *p;
	size_t h, v, rest;
	uint8_t tag;
	int i;

	/* Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { ... } ... } */
	if (der_tlv(der, len, &tag, &h, &v) || tag != 0x30)
		return -EINVAL;
	p = der + h;
	rest = v;
	if (der_tlv(p, rest, &tag, &h, &v) || tag != 0x30)
		return -EINVAL;
	p += h;
	rest = v;
	/* [0] version (optional), serial, signature, issuer, validity,
	 * subject, subjectPublicKeyInfo. */
	if (der_tlv(p, rest, &tag, &h, &v))
		return -EINVAL;
	if (tag == 0xa0) {
		p += h + v;
		rest -= h + v;
	}
	for (i = 0; i < 5; i++) {
		static const uint8_t want[5] = { 0x02, 0x30, 0x30, 0x30, 0x30 };

		if (der_tlv(p, rest, &tag, &h, &v) || tag != want[i])
			return -EINVAL;
		p += h + v;
		rest -= h + v;
	}
	if (der_tlv(p, rest, &tag, &h, &v) || tag != 0x30)
		return -EINVAL;
	*spki = p;
	*spki_len = h + v;
	return 0;
}

const char *tls_version_format(uint16_t version, char *buf, size_t size)
{
	const char *n = tls_version_name(version);

	if (n)
		snprintf(buf, size, "%s", n);
	else if ((version >> 8) == 0x7f)
		snprintf(buf, size, "TLSv13-draft%d", version & 0xff);
	else
		snprintf(buf, size, "unknown-0x%04x", version);
	return buf;
}

void tls_hs_buf_init(struct tls_hs_buf *hb, size_t limit)
{
	memset(hb, 0, sizeof(*hb));
	hb->limit = limit;
}

void tls_hs_buf_release(struct tls_hs_buf *hb)
{
	free(hb->buf);
	hb->buf = NULL;
	hb->len = hb->cap = 0;
}

static int hb_append(struct tls_hs_buf *hb, const uint8_t *p, size_t n)
{
	if (hb->len + n > hb->limit)
		return -ENOSPC;
	if (hb->len + n > hb->cap) {
		size_t ncap = hb->cap ? hb->cap : 1024;
		uint8_t *nb;

		while (ncap < hb->len + n)
			ncap *= 2;
		if (ncap > hb->limit)
			ncap = hb->limit;
		nb = realloc(hb->buf, ncap);
		if (!nb)
			return -ENOMEM;
		hb->buf = nb;
		hb->cap = ncap;
	}
	memcpy(hb->buf + hb->len, p, n);
	hb->len += n;
	return 0;
}

static size_t hs_msg_len(const uint8_t *h)
{
	return (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
}

int tls_hs_buf_feed(struct tls_hs_buf *hb, const uint8_t *frag, size_t len, tls_hs_cb cb, void *ctx)
{
	int rc;

	while (len) {
		size_t need, take;

		if (!hb->len && len >= 4 && len - 4 >= hs_msg_len(frag)) {
			/* Whole message inside the fragment: no copy. */
			size_t m = hs_msg_len(frag);

			rc = cb(ctx, frag[0], frag + 4, m);
			if (rc)
				return rc;
			frag += 4 + m;
			len -= 4 + m;
			continue;
		}
		if (hb->len < 4) {
			take = 4 - hb->len < len ? 4 - hb->len : len;
			rc = hb_append(hb, frag, take);
			if (rc)
				return rc;
			frag += take;
			len -= take;
			if (hb->len < 4)
				return 0;
		}
		need = 4 + hs_msg_len(hb->buf);
		if (need > hb->limit)
			return -ENOSPC;
		take = need - hb->len < len ? need - hb->len : len;
		rc = hb_append(hb, frag, take);
		if (rc)
			return rc;
		frag += take;
		len -= take;
		if (hb->len == need) {
			hb->len = 0;
			rc = cb(ctx, hb->buf[0], hb->buf + 4, need - 4);
			if (rc)
				return rc;
		}
	}
	return 0;
}
