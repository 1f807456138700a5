/* minisign.c - minisign signature parsing and verification (wolfSSL
 * Ed25519 and BLAKE2b-512). Contract in minisign.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/blake2.h>
#include <wolfssl/wolfcrypt/ed25519.h>

#include "minisign.h"
#include "log.h"

#define UNTRUSTED_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "

/* sig_alg(2) key_id(8) pk(32) and sig_alg(2) key_id(8) sig(64) */
#define PUBKEY_BLOB_LEN (2 + MINISIGN_KEY_ID_LEN + MINISIGN_PK_LEN)
#define SIG_BLOB_LEN (2 + MINISIGN_KEY_ID_LEN + MINISIGN_SIG_LEN)


static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict base64 (RFC 4648, standard alphabet, padded, no whitespace) that
 * must decode to exactly want bytes. Unused bits must be zero, so each
 * value has one encoding only. */
static int b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
	size_t i, o = 0, pad = 0;
	uint32_t acc;

	if (len == 0 || len % 4 != 0 || len / 4 * 3 < want || len / 4 * 3 - want > 2)
		return -1;
	if (s[len - 1] == '=')
		pad++;
	if (s[len - 2] == '=')
		pad++;
	if (len / 4 * 3 - pad != want)
		return -1;
	for (i = 0; i < len; i += 4) {
		int v[4], k;
		bool last = i + 4 == len;

		for (k = 0; k < 4; k++) {
			if (last && k >= 4 - (int)pad) {
				v[k] = 0;
				continue;
			}
			v[k] = b64_value((unsigned char)s[i + k]);
			if (v[k] < 0)
				return -1;
		}
		acc = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		if (last && pad == 2 && (acc & 0xffff))
			return -1;
		if (last && pad == 1 && (acc & 0xff))
			return -1;
		out[o++] = acc >> 16;
		if (o < want)
			out[o++] = acc >> 8;
		if (o < want)
			out[o++] = acc;
	}
	return o == want ? 0 : -1;
}

struct line {
	const char *p;
	size_t len;
};

/* Splits text into lines (without "\n" / "\r\n") and returns how many
 * there are up to the last non-empty one, or -1 when a non-empty line comes
 * after max lines or a NUL byte occurs. */
static int split_lines(const char *text, size_t len, struct line *lines, int max)
{
	size_t pos = 0;
	int n = 0, last = 0;

	if (memchr(text, '\0', len))
		return -1;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		size_t l = end - pos;

		if (l > 0 && text[pos + l - 1] == '\r')
			l--;
		if (l) {
			if (n >= max)
				return -1;
			last = n + 1;
		}
		if (n < max) {
			lines[n].p = text + pos;
			lines[n].len = l;
		}
		n++;
		pos = end + 1;
	}
	return last;
}

static bool has_prefix(const struct line *l, const char *prefix)
{
	size_t n = strlen(prefix);

	return l->len >= n && memcmp(l->p, prefix, n) == 0;
}

void minisign_key_id_format(const uint8_t key_id[MINISIGN_KEY_ID_LEN], char *buf,
			    size_t buflen)
{
	uint64_t v = 0;
	int i;

	/* minisign prints the id as a little-endian 64-bit number */
	for (i = MINISIGN_KEY_ID_LEN - 1; i >= 0; i--)
		v = v << 8 | key_id[i];
	snprintf(buf, buflen, "%016" PRIX64, v);
}

int minisign_pubkey_parse(const char *text, size_t len, struct minisign_pubkey *pk,
			  char *err, size_t errlen)
{
	struct line lines[2];
	const struct line *b64;
	uint8_t blob[PUBKEY_BLOB_LEN];
	int n;

	if (len > MINISIGN_PUBKEY_MAX_BYTES)
		return err_line(err, errlen, -EFBIG, "public key: larger than %d bytes",
			    MINISIGN_PUBKEY_MAX_BYTES);
	n = split_lines(text, len, lines, 2);
	if (n < 1)
		return err_line(err, errlen, -EINVAL, "public key: empty or more than two lines");
	if (n == 2) {
		if (!has_prefix(&lines[0], UNTRUSTED_PREFIX))
			return err_line(err, errlen, -EINVAL,
				    "public key: first line is not an \"untrusted comment:\"");
		b64 = &lines[1];
	} else {
		b64 = &lines[0];
	}
	if (b64_decode_exact(b64->p, b64->len, blob, sizeof(blob)) < 0)
		return err_line(err, errlen, -EINVAL,
			    "public key: key line is not base64 of %d bytes", PUBKEY_BLOB_LEN);
	if (blob[0] != 'E' || blob[1] != 'd')
		return err_line(err, errlen, -EINVAL,
			    "public key: unsupported algorithm (only Ed25519 \"Ed\")");
	memcpy(pk->key_id, blob + 2, MINISIGN_KEY_ID_LEN);
	memcpy(pk->pk, blob + 2 + MINISIGN_KEY_ID_LEN, MINISIGN_PK_LEN);
	return 0;
}

int minisign_sig_parse(const char *text, size_t len, struct minisign_sig *sig, char *err,
		       size_t errlen)
{
	struct line lines[4];
	uint8_t blob[SIG_BLOB_LEN];
	size_t tlen, plen = strlen(TRUSTED_PREFIX);
	int n;

	if (len > MINISIGN_SIG_MAX_BYTES)
		return err_line(err, errlen, -EFBIG, "signature: larger than %d bytes",
			    MINISIGN_SIG_MAX_BYTES);
	n = split_lines(text, len, lines, 4);
	if (n < 0)
		return err_line(err, errlen, -EINVAL,
			    "signature: more than four lines or a NUL byte");
	if (n < 4)
		return err_line(err, errlen, -EINVAL,
			    "signature: truncated (%d of 4 lines)", n);
	if (!has_prefix(&lines[0], UNTRUSTED_PREFIX))
		return err_line(err, errlen, -EINVAL,
			    "signature: line 1 is not an \"untrusted comment:\"");
	if (b64_decode_exact(lines[1].p, lines[1].len, blob, sizeof(blob)) < 0)
		return err_line(err, errlen, -EINVAL,
			    "signature: line 2 is not base64 of %d bytes", SIG_BLOB_LEN);
	if (blob[0] == 'E' && blob[1] == 'd')
		sig->prehashed = false;
	else if (blob[0] == 'E' && blob[1] == 'D')
		sig->prehashed = true;
	else
		return err_line(err, errlen, -EINVAL,
			    "signature: unsupported algorithm (only \"Ed\" and \"ED\")");
	memcpy(sig->key_id, blob + 2, MINISIGN_KEY_ID_LEN);
	memcpy(sig->sig, blob + 2 + MINISIGN_KEY_ID_LEN, MINISIGN_SIG_LEN);
	if (!has_prefix(&lines[2], TRUSTED_PREFIX))
		return err_line(err, errlen, -EINVAL,
			    "signature: line 3 is not a \"trusted comment:\"");
	tlen = lines[2].len - plen;
	if (tlen > MINISIGN_COMMENT_MAX)
		return err_line(err, errlen, -EFBIG, "signature: trusted comment longer than %d bytes",
			    MINISIGN_COMMENT_MAX);
	memcpy(sig->trusted_comment, lines[2].p + plen, tlen);
	sig->trusted_comment[tlen] = '\0';
	sig->trusted_comment_len = tlen;
	if (b64_decode_exact(lines[3].p, lines[3].len, sig->global_sig, MINISIGN_SIG_LEN) < 0)
		return err_line(err, errlen, -EINVAL,
			    "signature: line 4 is not base64 of %d bytes", MINISIGN_SIG_LEN);
	return 0;
}

static int ed25519_check(const uint8_t pk[MINISIGN_PK_LEN], const uint8_t sig[MINISIGN_SIG_LEN],
			 const uint8_t *msg, size_t len)
{
	ed25519_key key;
	int res = 0, rc;

	if (wc_ed25519_init(&key) != 0)
		return -ENOMEM;
	rc = wc_ed25519_import_public(pk, MINISIGN_PK_LEN, &key);
	if (rc == 0)
		rc = wc_ed25519_verify_msg(sig, MINISIGN_SIG_LEN, msg, (word32)len, &res, &key);
	wc_ed25519_free(&key);
	/* the verify call can fail (bad point) or succeed with res == 0 */
	return rc == 0 && res == 1 ? 0 : -EBADMSG;
}

int minisign_verify(const struct minisign_pubkey *pk, const struct minisign_sig *sig,
		    const uint8_t *msg, size_t msg_len, char *err, size_t errlen)
{
	uint8_t hash[64];
	uint8_t global[MINISIGN_SIG_LEN + MINISIGN_COMMENT_MAX];
	char want[17], got[17];
	Blake2b b2;

	if (memcmp(pk->key_id, sig->key_id, MINISIGN_KEY_ID_LEN) != 0) {
		minisign_key_id_format(pk->key_id, want, sizeof(want));
		minisign_key_id_format(sig->key_id, got, sizeof(got));
		return err_line(err, errlen, -EKEYREJECTED,
			    "signature: made with unknown key %s (trusted key is %s)", got, want);
	}
	if (msg_len > MINISIGN_MSG_MAX_BYTES)
		return err_line(err, errlen, -EFBIG, "signed file larger than %u bytes",
			    MINISIGN_MSG_MAX_BYTES);
	if (sig->prehashed) {
		if (wc_InitBlake2b(&b2, sizeof(hash)) != 0 ||
		    wc_Blake2bUpdate(&b2, msg, (word32)msg_len) != 0 ||
		    wc_Blake2bFinal(&b2, hash, sizeof(hash)) != 0)
			return err_line(err, errlen, -EINVAL, "signature: BLAKE2b-512 failed");
		if (ed25519_check(pk->pk, sig->sig, hash, sizeof(hash)) != 0)
			return err_line(err, errlen, -EBADMSG,
				    "signature does not match the file (altered or truncated)");
	} else if (ed25519_check(pk->pk, sig->sig, msg, msg_len) != 0) {
		return err_line(err, errlen, -EBADMSG,
			    "signature does not match the file (altered or truncated)");
	}
	if (sig->trusted_comment_len > MINISIGN_COMMENT_MAX)
		return err_line(err, errlen, -EINVAL, "signature: trusted comment too long");
	memcpy(global, sig->sig, MINISIGN_SIG_LEN);
	memcpy(global + MINISIGN_SIG_LEN, sig->trusted_comment, sig->trusted_comment_len);
	if (ed25519_check(pk->pk, sig->global_sig, global,
			  MINISIGN_SIG_LEN + sig->trusted_comment_len) != 0)
		return err_line(err, errlen, -EBADMSG,
			    "signature: trusted comment was altered (global signature invalid)");
	return 0;
}

int minisign_file_read(const char *path, size_t max, char **buf, size_t *len, char *err,
		       size_t errlen)
{
	struct stat st;
	char *b;
	size_t got = 0;
	int fd, rc;

	*buf = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		return err_line(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_line(err, errlen, -EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return err_line(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, max);
	}
	b = malloc(max + 1);
	if (!b) {
		close(fd);
		return err_line(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	/* read up to max + 1 so a file that grows after fstat is still caught */
	for (;;) {
		ssize_t r = read(fd, b + got, max + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			free(b);
			close(fd);
			return err_line(err, errlen, rc, "%s: %s", path, strerror(-rc));
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > max) {
			free(b);
			close(fd);
			return err_line(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, max);
		}
	}
	close(fd);
	b[got] = '\0';
	*buf = b;
	*len = got;
	return 0;
}

int minisign_pubkey_load(const char *path, struct minisign_pubkey *pk, char *err,
			 size_t errlen)
{
	char *buf;
	size_t len;
	int rc;

	rc = minisign_file_read(path, MINISIGN_PUBKEY_MAX_BYTES, &buf, &len, err, errlen);
	if (rc < 0)
		return rc;
	rc = minisign_pubkey_parse(buf, len, pk, err, errlen);
	free(buf);
	return rc;
}
