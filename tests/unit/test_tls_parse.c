/* test_tls_parse.c - TLS parsing: record headers (bogus lengths, non-TLS),
 * hellos incl. supported_versions and HRR, certificate lists, the DER walk
 * to the SPKI (checked against openssl's answer), handshake messages split
 * across records at every byte, every truncation of a hello. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "test_certs.h"
#include "tls_build.h"
#include "tls_parse.h"

static void test_record_parse(void **state)
{
	struct tls_record r;
	static const uint8_t ok[] = { 22, 3, 1, 0, 5 }, big[] = { 22, 3, 3, 0x48, 0x01 },
			     http[] = { 'G', 'E', 'T', ' ', '/' }, v4[] = { 23, 4, 0, 0, 1 };

	assert_int_equal(tls_record_parse(ok, 5, &r), 0);
	assert_int_equal(r.type, 22);
	assert_int_equal(r.version, 0x0301);
	assert_int_equal(r.length, 5);
	assert_int_equal(tls_record_parse(ok, 4, &r), -EAGAIN);
	assert_int_equal(tls_record_parse(big, 5, &r), -EINVAL);
	assert_int_equal(tls_record_parse(http, 5, &r), -EINVAL);
	assert_int_equal(tls_record_parse(v4, 5, &r), -EINVAL);
	assert_true(tls_looks_like_tls(ok, 3));
	assert_false(tls_looks_like_tls(http, 5));
}

static void test_hellos(void **state)
{
	uint8_t m[512];
	size_t n, cut;
	struct tls_client_hello ch;
	struct tls_server_hello sh;

	n = tb_client_hello(m, "mx.example.net", true);
	assert_int_equal(tls_client_hello_parse(m + 4, n - 4, &ch), 0);
	assert_string_equal(ch.sni, "mx.example.net");
	assert_int_equal(ch.n_versions, 2);
	assert_int_equal(ch.versions[0], 0x0304);
	assert_int_equal(ch.n_ciphers, 2);
	/* Every truncation fails cleanly (or parses without extensions). */
	for (cut = 0; cut < n - 4; cut++) {
		int rc = tls_client_hello_parse(m + 4, cut, &ch);

		assert_true(rc == -EINVAL || (rc == 0 && cut == 43));
	}
	n = tb_server_hello(m, 0x1303, 0x0304, false);
	assert_int_equal(tls_server_hello_parse(m + 4, n - 4, &sh), 0);
	assert_int_equal(sh.version, 0x0304);
	assert_int_equal(sh.legacy_version, 0x0303);
	assert_int_equal(sh.cipher, 0x1303);
	assert_false(sh.hrr);
	n = tb_server_hello(m, 0x1301, 0x0304, true);
	assert_int_equal(tls_server_hello_parse(m + 4, n - 4, &sh), 0);
	assert_true(sh.hrr);
	for (cut = 0; cut < 38; cut++)
		assert_int_equal(tls_server_hello_parse(m + 4, cut, &sh), -EINVAL);
}

struct certs {
	int n;
	size_t len[4];
};

static void count_cert(void *ctx, const uint8_t *der, size_t len)
{
	struct certs *c = ctx;

	if (c->n < 4)
		c->len[c->n] = len;
	c->n++;
}

static void test_certificate_and_spki(void **state)
{
	uint8_t m[2048];
	size_t n, spki_len;
	const uint8_t *spki;
	struct certs c = { 0, { 0 } };

	n = tb_certificate(m, test_cert_der, sizeof(test_cert_der), 3);
	assert_int_equal(tls_certificate_parse(m + 4, n - 4, false, count_cert, &c), 3);
	assert_int_equal(c.len[2], sizeof(test_cert_der));
	/* A list length beyond the message. */
	m[6] ^= 0x40;
	assert_int_equal(tls_certificate_parse(m + 4, n - 4, false, NULL, NULL), -EINVAL);
	assert_int_equal(tls_cert_spki(test_cert_der, sizeof(test_cert_der), &spki, &spki_len), 0);
	assert_int_equal(spki_len, sizeof(test_cert_spki));
	assert_memory_equal(spki, test_cert_spki, spki_len);
	/* Every truncation of the DER fails cleanly. */
	for (n = 0; n < sizeof(test_cert_der); n++)
		assert_int_equal(tls_cert_spki(test_cert_der, n, &spki, &spki_len), -EINVAL);
}

struct seen {
	int n;
	uint8_t types[8];
	size_t lens[8];
};

static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len)
{
	struct seen *s = ctx;

	if (s->n < 8) {
		s->types[s->n] = type;
		s->lens[s->n] = len;
	}
	s->n++;
	return 0;
}

static void test_hs_buf_every_split(void **state)
{
	uint8_t m[2048];
	size_t n = 0, cut;

	n += tb_server_hello(m + n, 0xc02f, 0, false);
	n += tb_certificate(m + n, test_cert_der, sizeof(test_cert_der), 1);
	n += tb_server_hello_done(m + n);
	for (cut = 0; cut <= n; cut++) {
		struct tls_hs_buf hb;
		struct seen s = { 0, { 0 }, { 0 } };

		tls_hs_buf_init(&hb, 65536);
		assert_int_equal(tls_hs_buf_feed(&hb, m, cut, on_msg, &s), 0);
		assert_int_equal(tls_hs_buf_feed(&hb, m + cut, n - cut, on_msg, &s), 0);
		assert_int_equal(s.n, 3);
		assert_int_equal(s.types[0], 2);
		assert_int_equal(s.types[1], 11);
		assert_int_equal(s.types[2], 14);
		assert_int_equal(s.lens[2], 0);
		tls_hs_buf_release(&hb);
	}
}

static void test_hs_buf_bound(void **state)
{
	struct tls_hs_buf hb;
	struct seen s = { 0, { 0 }, { 0 } };
	/* Announces a 1 MiB message: refused at the bound, not buffered. */
	static const uint8_t hdr[] = { 11, 0x10, 0x00, 0x00, 1, 2, 3 };

	tls_hs_buf_init(&hb, 65536);
	assert_int_equal(tls_hs_buf_feed(&hb, hdr, sizeof(hdr), on_msg, &s), -ENOSPC);
	assert_true(hb.cap <= 65536);
	tls_hs_buf_release(&hb);
}

static void test_names(void **state)
{
	char buf[32];

	assert_string_equal(tls_cipher_name(0x1302), "TLS_AES_256_GCM_SHA384");
	assert_string_equal(tls_cipher_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	assert_null(tls_cipher_name(0xeeee));
	assert_string_equal(tls_version_format(0x0303, buf, sizeof(buf)), "TLSv12");
	assert_string_equal(tls_version_format(0x7f17, buf, sizeof(buf)), "TLSv13-draft23");
	assert_string_equal(tls_version_format(0x0002, buf, sizeof(buf)), "SSLv2");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_parse),
		cmocka_unit_test(test_hellos),
		cmocka_unit_test(test_certificate_and_spki),
		cmocka_unit_test(test_hs_buf_every_split),
		cmocka_unit_test(test_hs_buf_bound),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
