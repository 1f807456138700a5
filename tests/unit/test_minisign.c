/* test_minisign.c - minisign verification against signatures made by the
 * real minisign tool (keys generated at test time), plus hostile input. */
#include <errno.h>
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
#include <wolfssl/wolfcrypt/blake2.h>

#include "minisign.h"

struct fixture {
	char dir[64];
	struct minisign_pubkey pk1, pk2;
	char *pk1_text;
	size_t pk1_len;
	char *msg;
	size_t msg_len;
	char *sig_hashed; /* by key 1, prehashed */
	size_t sig_hashed_len;
	char *sig_legacy; /* by key 1, legacy */
	size_t sig_legacy_len;
	char *sig_key2; /* by key 2, prehashed */
	size_t sig_key2_len;
};

static char err[256];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[256];
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (minisign_file_read(path, 1 << 20, &buf, len, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return NULL;
	}
	return buf;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[256];
	FILE *fp;
	int i;

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/tlsgate-minisign-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	if (run("cd %s && minisign -G -W -p k1.pub -s k1.key >/dev/null 2>&1 && "
		"minisign -G -W -p k2.pub -s k2.key >/dev/null 2>&1", f->dir) != 0) {
		fprintf(stderr, "minisign -G failed: is minisign installed (tests/lib/deps.sh)?\n");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/msg", f->dir);
	fp = fopen(path, "w");
	if (!fp)
		return -1;
	for (i = 0; i < 40; i++)
		fprintf(fp, "line %d of a signed message\n", i);
	fclose(fp);
	if (run("cd %s && minisign -S -s k1.key -m msg -x msg.hashed -t 'serial:7 expires:2030-01-01T00:00:00Z' >/dev/null 2>&1 && "
		"minisign -S -l -s k1.key -m msg -x msg.legacy >/dev/null 2>&1 && "
		"minisign -S -s k2.key -m msg -x msg.key2 >/dev/null 2>&1", f->dir) != 0)
		return -1;
	f->pk1_text = slurp(f->dir, "k1.pub", &f->pk1_len);
	f->msg = slurp(f->dir, "msg", &f->msg_len);
	f->sig_hashed = slurp(f->dir, "msg.hashed", &f->sig_hashed_len);
	f->sig_legacy = slurp(f->dir, "msg.legacy", &f->sig_legacy_len);
	f->sig_key2 = slurp(f->dir, "msg.key2", &f->sig_key2_len);
	if (!f->pk1_text || !f->msg || !f->sig_hashed || !f->sig_legacy || !f->sig_key2)
		return -1;
	snprintf(path, sizeof(path), "%s/k1.pub", f->dir);
	if (minisign_pubkey_load(path, &f->pk1, err, sizeof(err)) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/k2.pub", f->dir);
	if (minisign_pubkey_load(path, &f->pk2, err, sizeof(err)) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	run("rm -rf %s", f->dir);
	free(f->pk1_text);
	free(f->msg);
	free(f->sig_hashed);
	free(f->sig_legacy);
	free(f->sig_key2);
	free(f);
	return 0;
}

/* parse + verify in one step, as policy_load does */
static int check(const struct minisign_pubkey *pk, const char *sig_text, size_t sig_len,
		 const void *msg, size_t msg_len)
{
	struct minisign_sig sig;
	int rc;

	rc = minisign_sig_parse(sig_text, sig_len, &sig, err, sizeof(err));
	if (rc < 0)
		return rc;
	return minisign_verify(pk, &sig, msg, msg_len, err, sizeof(err));
}

static void hex_to_bytes(const char *hex, uint8_t *out)
{
	size_t i;

	for (i = 0; hex[2 * i]; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

/* minisign's prehashed mode depends on wolfSSL's BLAKE2b-512: RFC 7693
 * Appendix A ("abc") and the well-known digest of the empty string. */
static void test_blake2b_known_answers(void **state)
{
	static const struct {
		const char *in, *hex;
	} kat[] = {
		{ "abc", "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
			 "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923" },
		{ "", "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419"
		      "d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce" },
		{ "The quick brown fox jumps over the lazy dog",
		  "a8add4bdddfd93e4877d2746e62817b116364a1fa7bc148d95090bc7333b3673"
		  "f82401cf7aa2e4cb1ecd90296e3f14cb5413f8ed77be73045b13914cdcd6a918" },
	};
	size_t i;

	for (i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
		uint8_t want[64], got[64];
		Blake2b b;

		hex_to_bytes(kat[i].hex, want);
		assert_int_equal(wc_InitBlake2b(&b, 64), 0);
		assert_int_equal(wc_Blake2bUpdate(&b, (const byte *)kat[i].in, strlen(kat[i].in)), 0);
		assert_int_equal(wc_Blake2bFinal(&b, got, 64), 0);
		assert_memory_equal(got, want, 64);
	}
}

static void test_good_signatures(void **state)
{
	struct fixture *f = *state;
	struct minisign_sig sig;

	assert_int_equal(minisign_sig_parse(f->sig_hashed, f->sig_hashed_len, &sig, err, sizeof(err)), 0);
	assert_true(sig.prehashed);
	assert_string_equal(sig.trusted_comment, "serial:7 expires:2030-01-01T00:00:00Z");
	assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)f->msg, f->msg_len, err, sizeof(err)), 0);

	assert_int_equal(minisign_sig_parse(f->sig_legacy, f->sig_legacy_len, &sig, err, sizeof(err)), 0);
	assert_false(sig.prehashed);
	assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)f->msg, f->msg_len, err, sizeof(err)), 0);

	assert_int_equal(check(&f->pk2, f->sig_key2, f->sig_key2_len, f->msg, f->msg_len), 0);
}

static void test_key_id_matches_minisign(void **state)
{
	struct fixture *f = *state;
	char id[17], *line_end, *hex;

	minisign_key_id_format(f->pk1.key_id, id, sizeof(id));
	line_end = strchr(f->pk1_text, '\n');
	assert_non_null(line_end);
	/* "untrusted comment: minisign public key <ID>"; minisign prints the id
	 * with %PRIX64, without leading zeros, so compare the numbers. */
	hex = strrchr(f->pk1_text, ' ');
	assert_true(hex != NULL && hex < line_end);
	assert_int_equal(strtoull(hex + 1, NULL, 16), strtoull(id, NULL, 16));
}

static void test_bare_pubkey_line(void **state)
{
	struct fixture *f = *state;
	struct minisign_pubkey pk;
	const char *b64 = strchr(f->pk1_text, '\n') + 1;

	assert_int_equal(minisign_pubkey_parse(b64, strlen(b64), &pk, err, sizeof(err)), 0);
	assert_memory_equal(&pk, &f->pk1, sizeof(pk));
}

static void test_wrong_key_id(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->pk1, f->sig_key2, f->sig_key2_len, f->msg, f->msg_len),
			 -EKEYREJECTED);
	assert_non_null(strstr(err, "unknown key"));
	assert_int_equal(check(&f->pk2, f->sig_hashed, f->sig_hashed_len, f->msg, f->msg_len),
			 -EKEYREJECTED);
}

/* Same key id, other key: the id is a label, not a proof. */
static void test_same_id_other_key(void **state)
{
	struct fixture *f = *state;
	struct minisign_pubkey forged = f->pk2;

	memcpy(forged.key_id, f->pk1.key_id, MINISIGN_KEY_ID_LEN);
	assert_int_equal(check(&forged, f->sig_hashed, f->sig_hashed_len, f->msg, f->msg_len),
			 -EBADMSG);
	assert_int_equal(check(&forged, f->sig_legacy, f->sig_legacy_len, f->msg, f->msg_len),
			 -EBADMSG);
}

static void test_flipped_bit_in_file(void **state)
{
	struct fixture *f = *state;
	char *m = malloc(f->msg_len);
	size_t i;
	int bit;

	assert_non_null(m);
	for (i = 0; i < f->msg_len; i += 37) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(m, f->msg, f->msg_len);
			m[i] ^= (char)(1 << bit);
			assert_int_equal(check(&f->pk1, f->sig_hashed, f->sig_hashed_len, m, f->msg_len), -EBADMSG);
			assert_int_equal(check(&f->pk1, f->sig_legacy, f->sig_legacy_len, m, f->msg_len), -EBADMSG);
		}
	}
	/* truncated and extended file */
	assert_int_equal(check(&f->pk1, f->sig_hashed, f->sig_hashed_len, f->msg, f->msg_len - 1), -EBADMSG);
	assert_int_equal(check(&f->pk1, f->sig_legacy, f->sig_legacy_len, f->msg, f->msg_len - 1), -EBADMSG);
	free(m);
}

static void test_flipped_bit_in_signatures(void **state)
{
	struct fixture *f = *state;
	struct minisign_sig good, sig;
	size_t i;
	int bit;

	assert_int_equal(minisign_sig_parse(f->sig_hashed, f->sig_hashed_len, &good, err, sizeof(err)), 0);
	for (i = 0; i < MINISIGN_SIG_LEN; i++) {
		for (bit = 0; bit < 8; bit += 3) {
			sig = good;
			sig.sig[i] ^= (uint8_t)(1 << bit);
			assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)f->msg, f->msg_len, err, sizeof(err)), -EBADMSG);
			sig = good;
			sig.global_sig[i] ^= (uint8_t)(1 << bit);
			assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)f->msg, f->msg_len, err, sizeof(err)), -EBADMSG);
			assert_non_null(strstr(err, "trusted comment"));
		}
	}
	/* the algorithm byte is covered too: "ED" signature read as "Ed" */
	sig = good;
	sig.prehashed = false;
	assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)f->msg, f->msg_len, err, sizeof(err)), -EBADMSG);
}

static void test_altered_trusted_comment(void **state)
{
	struct fixture *f = *state;
	char *t = malloc(f->sig_hashed_len + 2);
	char *p;

	assert_non_null(t);
	memcpy(t, f->sig_hashed, f->sig_hashed_len);
	p = strstr(t, "serial:7");
	assert_non_null(p);
	p[7] = '8'; /* serial:8 */
	assert_int_equal(check(&f->pk1, t, f->sig_hashed_len, f->msg, f->msg_len), -EBADMSG);
	assert_non_null(strstr(err, "trusted comment"));
	/* a trailing space is a change too */
	memcpy(t, f->sig_hashed, f->sig_hashed_len);
	p = strstr(t, "2030-01-01T00:00:00Z\n");
	assert_non_null(p);
	memmove(p + 21, p + 20, f->sig_hashed_len - (size_t)(p + 20 - t));
	p[20] = ' ';
	assert_int_equal(check(&f->pk1, t, f->sig_hashed_len + 1, f->msg, f->msg_len), -EBADMSG);
	free(t);
}

/* Every strict prefix of a signature file fails, except the one that only
 * drops the final newline. */
static void test_truncated_signature_every_byte(void **state)
{
	struct fixture *f = *state;
	size_t n;

	for (n = 0; n < f->sig_hashed_len; n++) {
		int rc = check(&f->pk1, f->sig_hashed, n, f->msg, f->msg_len);

		if (n == f->sig_hashed_len - 1)
			assert_int_equal(rc, 0);
		else
			assert_true(rc < 0);
	}
	for (n = 0; n + 1 < f->pk1_len; n++) {
		struct minisign_pubkey pk;
		int rc = minisign_pubkey_parse(f->pk1_text, n, &pk, err, sizeof(err));

		assert_true(rc < 0 || memcmp(&pk, &f->pk1, sizeof(pk)) != 0);
	}
}

static void test_crlf_and_trailing_blank_lines(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	size_t i, o = 0;

	for (i = 0; i < f->sig_legacy_len; i++) {
		if (f->sig_legacy[i] == '\n')
			buf[o++] = '\r';
		buf[o++] = f->sig_legacy[i];
	}
	memcpy(buf + o, "\n\r\n\n", 4);
	o += 4;
	assert_int_equal(check(&f->pk1, buf, o, f->msg, f->msg_len), 0);
}

static void test_bad_lines(void **state)
{
	struct fixture *f = *state;
	char buf[4096];
	size_t len = f->sig_hashed_len;
	struct minisign_sig sig;
	char *p;

	/* extra non-empty line */
	memcpy(buf, f->sig_hashed, len);
	memcpy(buf + len, "extra\n", 6);
	assert_int_equal(minisign_sig_parse(buf, len + 6, &sig, err, sizeof(err)), -EINVAL);
	/* no untrusted comment prefix */
	memcpy(buf, f->sig_hashed, len);
	buf[0] = 'U';
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
	/* no trusted comment prefix */
	memcpy(buf, f->sig_hashed, len);
	p = strstr(buf, "trusted comment: serial");
	assert_non_null(p);
	p[0] = 'T';
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
	/* a character outside the base64 alphabet in line 2 */
	memcpy(buf, f->sig_hashed, len);
	p = strchr(buf, '\n') + 5;
	*p = '*';
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
	/* NUL byte */
	memcpy(buf, f->sig_hashed, len);
	buf[3] = '\0';
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
	/* lines swapped */
	assert_int_equal(minisign_sig_parse("untrusted comment: x\ntrusted comment: y\n"
					    "AAAA\nAAAA\n", 40, &sig, err, sizeof(err)), -EINVAL);
	/* unknown algorithm: "EX" */
	{
		struct minisign_pubkey pk;

		assert_int_equal(minisign_pubkey_parse("RVgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
						       56, &pk, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "algorithm"));
		assert_int_equal(minisign_pubkey_parse("RWQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
						       56, &pk, err, sizeof(err)), 0);
	}
	/* non-zero padding bits in line 4: a second spelling of the same bytes */
	memcpy(buf, f->sig_hashed, len);
	p = strstr(buf, "==\n");
	assert_non_null(p);
	p[-1] = p[-1] == 'A' ? 'B' : p[-1] == 'Q' ? 'R' : p[-1] == 'g' ? 'h' : 'x';
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
	/* missing padding */
	memcpy(buf, f->sig_hashed, len);
	p = strstr(buf, "==\n");
	memcpy(p, "\n\n\n", 3);
	assert_int_equal(minisign_sig_parse(buf, len, &sig, err, sizeof(err)), -EINVAL);
}

static void test_oversized(void **state)
{
	struct fixture *f = *state;
	size_t big = MINISIGN_SIG_MAX_BYTES + 1, tc = MINISIGN_COMMENT_MAX + 1;
	char *buf = malloc(big + tc + 512);
	struct minisign_sig sig;
	char path[256];
	const char *l2 = strchr(f->sig_hashed, '\n') + 1;
	const char *l3 = strchr(l2, '\n') + 1;
	const char *l4 = strchr(l3, '\n') + 1;
	char *bufp;
	FILE *fp;

	assert_non_null(buf);
	memset(buf, '\n', big);
	memcpy(buf, f->sig_hashed, f->sig_hashed_len);
	assert_int_equal(minisign_sig_parse(buf, big, &sig, err, sizeof(err)), -EFBIG);
	/* trusted comment over minisign's limit */
	bufp = buf;
	memcpy(bufp, f->sig_hashed, (size_t)(l3 - f->sig_hashed));
	bufp += l3 - f->sig_hashed;
	bufp += sprintf(bufp, "trusted comment: ");
	memset(bufp, 'x', tc);
	bufp += tc;
	*bufp++ = '\n';
	memcpy(bufp, l4, strlen(l4));
	bufp += strlen(l4);
	assert_int_equal(minisign_sig_parse(buf, (size_t)(bufp - buf), &sig, err, sizeof(err)), -EFBIG);
	/* a signed message over the bound is not hashed at all */
	assert_int_equal(minisign_sig_parse(f->sig_hashed, f->sig_hashed_len, &sig, err, sizeof(err)), 0);
	assert_int_equal(minisign_verify(&f->pk1, &sig, (uint8_t *)buf, MINISIGN_MSG_MAX_BYTES + 1,
					 err, sizeof(err)), -EFBIG);
	free(buf);
	/* file reading stops at the bound */
	snprintf(path, sizeof(path), "%s/big", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, MINISIGN_PUBKEY_MAX_BYTES, SEEK_SET), 0);
	fputc('x', fp);
	fclose(fp);
	{
		struct minisign_pubkey pk;

		assert_int_equal(minisign_pubkey_load(path, &pk, err, sizeof(err)), -EFBIG);
		assert_non_null(strstr(err, "larger than"));
		assert_int_equal(minisign_pubkey_load("/nonexistent/k.pub", &pk, err, sizeof(err)), -ENOENT);
		assert_int_equal(minisign_pubkey_load("/tmp", &pk, err, sizeof(err)), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blake2b_known_answers),
		cmocka_unit_test(test_good_signatures),
		cmocka_unit_test(test_key_id_matches_minisign),
		cmocka_unit_test(test_bare_pubkey_line),
		cmocka_unit_test(test_wrong_key_id),
		cmocka_unit_test(test_same_id_other_key),
		cmocka_unit_test(test_flipped_bit_in_file),
		cmocka_unit_test(test_flipped_bit_in_signatures),
		cmocka_unit_test(test_altered_trusted_comment),
		cmocka_unit_test(test_truncated_signature_every_byte),
		cmocka_unit_test(test_crlf_and_trailing_blank_lines),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_oversized),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
