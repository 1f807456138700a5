/* dane.h - DANE TLSA matching for SMTP (RFC 6698, RFC 7671, RFC 7672).
 *
 * dane_verify() takes a TLSA RRset, the certificate chain a server sent
 * (DER, leaf first, as on the wire) and the reference names, and says
 * whether the chain is authenticated by the RRset. It does no DNS and no
 * I/O: the caller must only pass an RRset that validated as DNSSEC-secure.
 *
 * Which records count (RFC 7672 3.1):
 *  - usage 2 DANE-TA and 3 DANE-EE only; usages 0 (PKIX-TA) and 1 (PKIX-EE)
 *    are unusable for SMTP and ignored. Selector 0 (certificate) or 1 (SPKI);
 *    matching type 0 (full), 1 (SHA-256) or 2 (SHA-512).
 *  - A record is also unusable when its data has the wrong length for its
 *    matching type (32 / 64 bytes), is empty, or, for matching type 0, does
 *    not parse as a certificate (selector 0) or SubjectPublicKeyInfo
 *    (selector 1).
 *  - Digest agility (RFC 7671 9): for each usage and selector, only the
 *    most preferred digest present among the usable records is used, SHA-512
 *    over SHA-256; full (type 0) records are not digests and always used.
 *    This is what OpenSSL and Postfix do.
 *  - Records present but none usable: DANE_UNUSABLE. For SMTP this means TLS
 *    is still mandatory but the peer is not authenticated (RFC 7672 2.2).
 *
 * How a chain is matched:
 *  - DANE-EE first: the leaf (depth 0) against usage-3 records. No date
 *    checks, no chain. Name checks only when `no_name_checks` is false
 *    (SMTP callers set it: RFC 7672 3.1.1; the flag only affects DANE-EE).
 *  - DANE-TA: a path is built from the leaf upwards through the sent
 *    certificates (issuer name equal, issuer has basicConstraints cA, valid
 *    signature, each certificate used once; the sent order does not
 *    matter). At each step the current certificate is compared with the
 *    usage-2 records (depth >= 1). A trust anchor absent from the chain is
 *    accepted when the record carries it in full: with "2 1 0" (bare key) the
 *    depth reported is that of the certificate it signed; with "2 0 0" (full
 *    certificate, whose subject must equal the signed certificate's issuer)
 *    the depth is one above it. The lowest depth wins. Certificates below the
 *    trust anchor must be within their validity at `now`; the trust anchor's
 *    own dates are not checked (RFC 5280 6.1.1). The leaf must match one of
 *    the reference names (see x509_cert_matches_name(): subjectAltName
 *    dNSName, wildcard only as the whole left-most label, CN only without
 *    any dNSName), always for DANE-TA (RFC 7672 3.2.2).
 *
 * Bounds: at most DANE_TLSA_MAX records (more: -E2BIG), at most
 * DANE_CHAIN_MAX certificates (more: DANE_CERT_ERROR), each at most
 * X509_DER_MAX bytes, at most DANE_NAMES_MAX reference names (more: -E2BIG).
 * Work is bounded by records x certificates hashes plus certificates^2
 * signature checks.
 *
 * Ownership: dane_verify() only reads its input and keeps no pointer to it;
 * the verdict holds no pointers. Thread-safe (no global state). */
#ifndef TLSGATE_DANE_H
#define TLSGATE_DANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DANE_TLSA_MAX 256
#define DANE_CHAIN_MAX 16
#define DANE_NAMES_MAX 16

enum dane_usage { DANE_USAGE_PKIX_TA = 0, DANE_USAGE_PKIX_EE = 1, DANE_USAGE_DANE_TA = 2, DANE_USAGE_DANE_EE = 3 };
enum dane_selector { DANE_SELECTOR_CERT = 0, DANE_SELECTOR_SPKI = 1 };
enum dane_mtype { DANE_MTYPE_FULL = 0, DANE_MTYPE_SHA256 = 1, DANE_MTYPE_SHA512 = 2 };

/* One TLSA record; `data` is borrowed for the call. */
struct dane_tlsa {
	uint8_t usage;
	uint8_t selector;
	uint8_t mtype;
	const uint8_t *data;
	size_t len;
};

struct dane_input {
	const struct dane_tlsa *tlsa;
	size_t n_tlsa;
	const uint8_t *const *chain; /* DER certificates, leaf first */
	const size_t *chain_len;
	size_t n_chain;
	const char *const *names; /* MX host name, TLSA base domain, ... */
	size_t n_names;
	bool no_name_checks; /* DANE-EE only; SMTP sets it (RFC 7672 3.1.1) */
	time_t now;	     /* for validity dates; 0 means time(NULL) */
};

enum dane_result {
	DANE_MATCH = 0,	    /* authenticated */
	DANE_NO_RECORDS,    /* empty RRset: DANE does not apply ("not found") */
	DANE_UNUSABLE,	    /* records, but none usable for SMTP: TLS required, unauthenticated */
	DANE_NO_MATCH,	    /* usable records, nothing in the chain matched them */
	DANE_NO_ISSUER,	    /* a DANE-TA record matches a sent certificate the leaf's
			     * chain of valid signatures does not lead to */
	DANE_NAME_MISMATCH, /* a record matched but the leaf does not carry a reference name */
	DANE_EXPIRED,	    /* DANE-TA matched but a certificate below it is outside its dates */
	DANE_CERT_ERROR,    /* empty chain, more than DANE_CHAIN_MAX, or a certificate does not parse */
};

struct dane_verdict {
	enum dane_result result;
	int depth;	/* depth of the matching certificate (0 = leaf), -1 if none;
			 * also set for DANE_NAME_MISMATCH and DANE_EXPIRED */
	int record;	/* index in input->tlsa of the matching record, -1 if none */
	uint8_t usage;	/* usage of that record */
	size_t n_usable; /* records used after the usability and agility rules */
};

/* Verifies. Returns 0 with *out filled, or -EINVAL (NULL pointers, counts
 * with NULL arrays), -E2BIG (too many records or names), -ENOMEM; on error
 * out->result is DANE_NO_MATCH, so a caller that ignores the return value
 * still fails closed. */
int dane_verify(const struct dane_input *in, struct dane_verdict *out);

/* Is this record usable for SMTP (usage, selector, type and length)? Does
 * not parse matching-type-0 data; dane_verify() does. This function can't
 * fail. */
bool dane_tlsa_usable(const struct dane_tlsa *rec);

/* Stable lower-case names for logs and JSON ("match", "no-match", ...). */
const char *dane_result_str(enum dane_result r);

#endif
