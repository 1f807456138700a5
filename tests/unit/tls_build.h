/* tls_build.h - builds TLS handshake messages and records for the unit
 * tests, byte by byte as RFC 8446 / 5246 lay them out. */
#ifndef TLSGATE_TLS_BUILD_H
#define TLSGATE_TLS_BUILD_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline size_t put16(uint8_t *p, unsigned int v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

static inline size_t put24(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 16);
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)v;
	return 3;
}

/* Wraps a body into a handshake message (type, 24-bit length). */
static inline size_t tb_handshake(uint8_t *out, uint8_t type, const uint8_t *body, size_t len)
{
	out[0] = type;
	put24(out + 1, len);
	if (len)
		memmove(out + 4, body, len);
	return 4 + len;
}

static inline size_t tb_record(uint8_t *out, uint8_t type, uint16_t version, const uint8_t *frag, size_t len)
{
	out[0] = type;
	put16(out + 1, version);
	put16(out + 3, (unsigned int)len);
	memmove(out + 5, frag, len);
	return 5 + len;
}

/* ClientHello with SNI and, when tls13, supported_versions {1.3, 1.2}. */
static inline size_t tb_client_hello(uint8_t *out, const char *sni, bool tls13)
{
	uint8_t b[512];
	size_t n = 0, ext_at, sn = strlen(sni);

	n += put16(b + n, 0x0303);
	memset(b + n, 0x11, 32);
	n += 32;
	b[n++] = 0; /* session id */
	n += put16(b + n, 4);
	n += put16(b + n, 0x1301);
	n += put16(b + n, 0xc02f);
	b[n++] = 1;
	b[n++] = 0;
	ext_at = n;
	n += 2;
	n += put16(b + n, 0); /* server_name */
	n += put16(b + n, (unsigned int)(sn + 5));
	n += put16(b + n, (unsigned int)(sn + 3));
	b[n++] = 0;
	n += put16(b + n, (unsigned int)sn);
	memcpy(b + n, sni, sn);
	n += sn;
	if (tls13) {
		n += put16(b + n, 43);
		n += put16(b + n, 5);
		b[n++] = 4;
		n += put16(b + n, 0x0304);
		n += put16(b + n, 0x0303);
	}
	put16(b + ext_at, (unsigned int)(n - ext_at - 2));
	return tb_handshake(out, 1, b, n);
}

static const uint8_t tb_hrr_random[32] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/* ServerHello; sv != 0 adds supported_versions = sv. */
static inline size_t tb_server_hello(uint8_t *out, uint16_t cipher, uint16_t sv, bool hrr)
{
	uint8_t b[128];
	size_t n = 0;

	n += put16(b + n, 0x0303);
	if (hrr)
		memcpy(b + n, tb_hrr_random, 32);
	else
		memset(b + n, 0x22, 32);
	n += 32;
	b[n++] = 0;
	n += put16(b + n, cipher);
	b[n++] = 0;
	if (sv) {
		n += put16(b + n, 6);
		n += put16(b + n, 43);
		n += put16(b + n, 2);
		n += put16(b + n, sv);
	}
	return tb_handshake(out, 2, b, n);
}

/* TLS <= 1.2 Certificate with `count` copies of der. */
static inline size_t tb_certificate(uint8_t *out, const uint8_t *der, size_t len, int count)
{
	size_t n = 4 + 3;
	int i;

	for (i = 0; i < count; i++) {
		put24(out + n, len);
		memcpy(out + n + 3, der, len);
		n += 3 + len;
	}
	put24(out + 4, n - 7);
	out[0] = 11;
	put24(out + 1, n - 4);
	return n;
}

static inline size_t tb_server_hello_done(uint8_t *out)
{
	return tb_handshake(out, 14, NULL, 0);
}

#endif
