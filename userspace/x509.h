/* x509.h - the few X.509 facts the DANE matcher needs, from DER.
 *
 * A certificate is parsed by wolfSSL (ParseCert: structure, key type,
 * subjectAltName, common name); a small bounded DER walker finds the exact
 * bytes that DANE hashes and compares (the SubjectPublicKeyInfo TLV, the raw
 * issuer and subject names) and the validity dates, because wolfSSL keeps an
 * RSA key as PKCS#1 rather than as the SPKI that selector 1 names.
 * Signatures are checked by wolfSSL (wc_CheckCertSigPubKey).
 *
 * Ownership: x509_cert_parse() copies the DER; the returned object owns
 * everything it points to and is released with x509_cert_free() (NULL ok).
 * Pointers returned by accessors live as long as the object.
 *
 * Bounds: a certificate is at most X509_DER_MAX bytes; DER lengths use at
 * most 4 length octets; indefinite lengths are refused. Nothing here
 * allocates more than the input size plus a constant. */
#ifndef TLSGATE_X509_H
#define TLSGATE_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define X509_DER_MAX (64 * 1024)

struct x509_cert;

/* Parses one DER certificate. Returns 0 and sets *out, or -EINVAL (NULL
 * argument, empty or larger than X509_DER_MAX), -EBADMSG (not a certificate
 * wolfSSL and the DER walker both accept), -ENOMEM. On error *out is NULL. */
int x509_cert_parse(const uint8_t *der, size_t len, struct x509_cert **out);
void x509_cert_free(struct x509_cert *cert);

/* The whole certificate, as given (what selector 0 hashes). */
const uint8_t *x509_cert_der(const struct x509_cert *cert, size_t *len);
/* The SubjectPublicKeyInfo TLV (what selector 1 hashes). */
const uint8_t *x509_cert_spki(const struct x509_cert *cert, size_t *len);
/* wolfSSL key type sum (RSAk, ECDSAk, ED25519k, ...). */
int x509_cert_key_oid(const struct x509_cert *cert);

/* True when the raw issuer name of `child` equals the raw subject name of
 * `issuer` (byte comparison of the DER). */
bool x509_cert_issuer_is(const struct x509_cert *child, const struct x509_cert *issuer);

/* Checks the signature of `child` with the public key given as an SPKI DER
 * blob of wolfSSL key type `key_oid`. Returns 0 when it verifies, -EBADMSG
 * when it does not (or the key cannot be used). */
int x509_cert_verify_sig(const struct x509_cert *child, const uint8_t *spki, size_t spki_len,
			 int key_oid);

/* Validates that `spki` is one complete SubjectPublicKeyInfo of a key type
 * wolfSSL can verify with. Returns its wolfSSL key type sum (> 0), or
 * -EBADMSG (malformed, trailing bytes) or -ENOTSUP (unknown algorithm). */
int x509_spki_key_oid(const uint8_t *spki, size_t len);

/* True when basicConstraints says cA (may issue certificates). */
bool x509_cert_is_ca(const struct x509_cert *cert);

/* True when notBefore <= now <= notAfter. */
bool x509_cert_valid_at(const struct x509_cert *cert, time_t now);

/* Name check per RFC 6125: the certificate's subjectAltName dNSName entries
 * are matched against `name` (case-insensitive, trailing dot ignored); the
 * subject common name is used only when there is no dNSName at all. A
 * wildcard is accepted only as the complete left-most label ("*.example.com")
 * with at least two labels after it, and matches exactly one label. Names
 * with embedded NULs never match. */
bool x509_cert_matches_name(const struct x509_cert *cert, const char *name);

#endif
