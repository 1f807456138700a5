/* minisign.h - verification of minisign (Ed25519) signatures with wolfSSL.
 *
 * Formats (as written by minisign 0.11; see policy/README.md):
 *   public key file:  "untrusted comment: <text>\n"
 *                     base64(sig_alg "Ed" | key_id[8] | pk[32]) "\n"
 *   signature file:   "untrusted comment: <text>\n"
 *                     base64(sig_alg | key_id[8] | sig[64]) "\n"
 *                     "trusted comment: <text>\n"
 *                     base64(global_sig[64]) "\n"
 * sig_alg "Ed" (legacy) signs the file itself, "ED" (prehashed, the default
 * since minisign 0.10) signs BLAKE2b-512 of the file. The global signature
 * covers sig[64] || trusted comment text, so the trusted comment cannot be
 * changed without the secret key. Lines may end in "\n" or "\r\n"; trailing
 * empty lines are accepted, any other extra line is refused.
 *
 * Bounds: a public key file is at most MINISIGN_PUBKEY_MAX_BYTES, a
 * signature file at most MINISIGN_SIG_MAX_BYTES, a trusted comment at most
 * MINISIGN_COMMENT_MAX bytes (minisign's own limit), a signed message at
 * most MINISIGN_MSG_MAX_BYTES.
 *
 * Every function returns 0 or -errno and, on failure, writes a one-line
 * reason (no newline) into err (errlen bytes, may be 0), and leaves its
 * output unspecified. Error codes: -EINVAL malformed input, -EFBIG over a
 * bound, -EKEYREJECTED key id of the signature is not the public key's,
 * -EBADMSG a signature does not verify, -ENOMEM, or the errno of a failed
 * read. Nothing here allocates memory the caller must free, except
 * minisign_file_read(). */
#ifndef TLSGATE_MINISIGN_H
#define TLSGATE_MINISIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MINISIGN_KEY_ID_LEN 8
#define MINISIGN_PK_LEN 32
#define MINISIGN_SIG_LEN 64
#define MINISIGN_COMMENT_MAX 8192
#define MINISIGN_PUBKEY_MAX_BYTES 4096
#define MINISIGN_SIG_MAX_BYTES (MINISIGN_COMMENT_MAX + 2048)
#define MINISIGN_MSG_MAX_BYTES (4u * 1024 * 1024)

struct minisign_pubkey {
	uint8_t key_id[MINISIGN_KEY_ID_LEN];
	uint8_t pk[MINISIGN_PK_LEN];
};

struct minisign_sig {
	bool prehashed; /* "ED": signature over BLAKE2b-512 of the message */
	uint8_t key_id[MINISIGN_KEY_ID_LEN];
	uint8_t sig[MINISIGN_SIG_LEN];
	char trusted_comment[MINISIGN_COMMENT_MAX + 1]; /* NUL-terminated */
	size_t trusted_comment_len;
	uint8_t global_sig[MINISIGN_SIG_LEN];
};

/* Parses a public key: the two-line file, or the bare base64 line (as
 * given to minisign -P). */
int minisign_pubkey_parse(const char *text, size_t len, struct minisign_pubkey *pk,
			  char *err, size_t errlen);
int minisign_pubkey_load(const char *path, struct minisign_pubkey *pk, char *err,
			 size_t errlen);

/* Parses a signature file. Does not verify anything. */
int minisign_sig_parse(const char *text, size_t len, struct minisign_sig *sig, char *err,
		       size_t errlen);

/* Verifies sig over msg with pk: key id pinned (-EKEYREJECTED), the file
 * signature, then the global signature over the trusted comment. 0 only
 * when all three hold. */
int minisign_verify(const struct minisign_pubkey *pk, const struct minisign_sig *sig,
		    const uint8_t *msg, size_t msg_len, char *err, size_t errlen);

/* Key id as minisign prints it ("CAB871874613147F"); buf >= 17 bytes. */
void minisign_key_id_format(const uint8_t key_id[MINISIGN_KEY_ID_LEN], char *buf,
			    size_t buflen);

/* Reads a whole regular file of at most max bytes into a new NUL-terminated
 * buffer (*buf, freed by the caller with free()); -EFBIG when larger. On
 * failure *buf is NULL. */
int minisign_file_read(const char *path, size_t max, char **buf, size_t *len, char *err,
		       size_t errlen);

#endif
