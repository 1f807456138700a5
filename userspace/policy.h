/* policy.h - the signed tlsgate policy: loading (minisign signature, no
 * rollback, no expired policy, strict JSON schema) and lookups.
 *
 * The schema (every field, default and an example) is in policy/README.md.
 *
 * Loading is all or nothing: policy_load() either returns a complete new
 * policy or an error and nothing else; the caller keeps its previous
 * policy in force on error. Every refusal writes one line (no newline) to
 * err, naming the file and the rule that refused it. Order of checks:
 * sizes, signature syntax, key id, signature, trusted comment ("serial:N
 * expires:YYYY-MM-DDTHH:MM:SSZ", other tokens ignored), rollback (serial
 * must be greater than the applied one), expiry, JSON syntax and schema,
 * and finally that the JSON's serial and expires equal the signed ones.
 * Return values: 0, -EFBIG (file over its bound), -EKEYREJECTED (signed by
 * another key), -EBADMSG (signature invalid), -ESTALE (rollback),
 * -EKEYEXPIRED (expired), -EINVAL (malformed, unknown field, value out of
 * range, serial/expiry mismatch), -ENOMEM, or a read errno.
 *
 * Bounds: the JSON file at most POLICY_MAX_BYTES, each list at most
 * POLICY_MAX_ENTRIES entries, at most POLICY_MAX_CIPHERS banned ciphers.
 *
 * Lookups are pure reads, safe from any thread once loaded, and accept a
 * NULL policy, which means the defaults (nothing in secure mode, no
 * overrides, minimum TLS 1.2, no banned ciphers). Domain names compare
 * case-insensitively, one trailing dot is ignored, and "user@domain" is
 * taken as its domain. A domain entry matches its subdomains only when it
 * says "subdomains": true; the most specific match wins. */
#ifndef TLSGATE_POLICY_H
#define TLSGATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "minisign.h"

#define POLICY_MAX_BYTES (1024 * 1024)
#define POLICY_MAX_ENTRIES 10000
#define POLICY_MAX_CIPHERS 512
#define POLICY_ERR_MAX 256
#define POLICY_SCHEMA_VERSION 1

#define POLICY_TLS_1_0 0x0301
#define POLICY_TLS_1_1 0x0302
#define POLICY_TLS_1_2 0x0303
#define POLICY_TLS_1_3 0x0304
#define POLICY_DANE_PROBE_MAX_AGE_DEFAULT 86400

enum policy_fail_mode {
	POLICY_FAIL_OPEN,   /* flows pass when the daemon is gone */
	POLICY_FAIL_CLOSED, /* flows are refused when the daemon is gone */
};

/* Per-domain override for a recipient domain (outbound) */
struct policy_override {
	bool require_tls;     /* STARTTLS with an acceptable version/cipher */
	bool require_dane;    /* usable, matching TLSA; implies require_tls */
	bool allow_plaintext; /* lifts the TLS-history requirement and lock
				 (never DANE, never secure mode) */
};

struct policy_prefix {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network order; IPv4 in the first 4 bytes */
	uint8_t len;      /* prefix length in bits */
};

struct policy;

int policy_load(const char *path_json, const char *path_sig, const struct minisign_pubkey *pk,
		uint64_t applied_serial, time_t now, struct policy **out, char *err,
		size_t errlen);
/* The same from memory; name is used in error messages. */
int policy_load_mem(const char *name, const char *json, size_t json_len, const char *sig,
		    size_t sig_len, const struct minisign_pubkey *pk, uint64_t applied_serial,
		    time_t now, struct policy **out, char *err, size_t errlen);
/* Parses and validates JSON only (no signature, no rollback or expiry
 * check): for `policy check` and the fuzzer. */
int policy_parse(const char *json, size_t len, struct policy **out, char *err, size_t errlen);
void policy_free(struct policy *p); /* accepts NULL */

/* "serial:N expires:T" (tokens separated by blanks, in any order, others
 * ignored, each of the two exactly once). */
int policy_trusted_comment_parse(const char *tc, uint64_t *serial, time_t *expires, char *err,
				 size_t errlen);
/* "YYYY-MM-DDTHH:MM:SSZ" only. */
int policy_time_parse(const char *s, time_t *out);
/* IANA cipher suite name ("TLS_RSA_WITH_3DES_EDE_CBC_SHA") or "0xHHHH". */
int policy_cipher_from_name(const char *name, uint16_t *value);
/* IANA name of a cipher suite value, or NULL when not in the table. */
const char *policy_cipher_name(uint16_t value);

uint64_t policy_serial(const struct policy *p);
time_t policy_expires(const struct policy *p);
uint16_t policy_min_tls_version(const struct policy *p);
bool policy_cipher_banned(const struct policy *p, uint16_t cipher);
bool policy_sender_domain_secure(const struct policy *p, const char *domain);
/* af AF_INET (4 bytes) or AF_INET6 (16 bytes; IPv4-mapped addresses are
 * matched against the IPv4 prefixes). */
bool policy_sender_address_secure(const struct policy *p, int af, const void *addr);
bool policy_recipient_domain_secure(const struct policy *p, const char *domain);
/* Fills *ov and returns true when the policy has an override for domain. */
bool policy_domain_override(const struct policy *p, const char *domain,
			    struct policy_override *ov);
bool policy_has_secure_sender_domains(const struct policy *p);
bool policy_has_secure_recipient_domains(const struct policy *p);
/* Some override requires TLS or DANE for a recipient domain: a later RCPT
 * TO of a plaintext session may still have to be refused. */
bool policy_has_required_domains(const struct policy *p);
/* The sender source prefixes (for the BPF LPM map); valid while p lives. */
size_t policy_sender_prefixes(const struct policy *p, const struct policy_prefix **list);
/* The domains for which a RCPT TO may be refused (overrides that require
 * TLS or DANE, secure-mode recipient domains), each covering subdomains
 * or not: up to max names (normalised) into names; returns how many.
 * 2 * POLICY_MAX_ENTRIES is always enough. */
size_t policy_refusing_domains(const struct policy *p, const char **names, size_t max);
/* The secure-mode sender domains, then the secure-mode recipient domains
 * (normalised), with POLICY_SECURE_* flags: up to max into names and
 * flags; returns how many. 2 * POLICY_MAX_ENTRIES is always enough. A
 * domain may be in both lists (twice here). */
#define POLICY_SECURE_SENDER 0x1
#define POLICY_SECURE_RECIPIENT 0x2
#define POLICY_SECURE_SUBDOMAINS 0x4 /* the entry covers subdomains */
size_t policy_secure_domains(const struct policy *p, const char **names, unsigned int *flags,
			     size_t max);
/* History releases: host names (lower case, no trailing dot) or address
 * literals; valid while p lives. */
size_t policy_history_releases(const struct policy *p, const char *const **hosts);
/* fail_mode.normal: "closed" drops every flow not yet judged while the
 * daemon is gone (in the kernel, see bpf/tlsgate_shared.h secure_domains). */
enum policy_fail_mode policy_fail_mode_normal(const struct policy *p);
/* Always POLICY_FAIL_CLOSED: "open" is refused at parse time. */
enum policy_fail_mode policy_fail_mode_secure(const struct policy *p);
uint32_t policy_dane_probe_max_age(const struct policy *p);

/* Lower-cases domain into buf (bufsz >= 254), drops "user@" and one
 * trailing dot, and checks it is a host name (labels of 1-63 letters,
 * digits, '-' or '_', 253 bytes at most). Returns 0 or -EINVAL. */
int policy_domain_normalize(const char *domain, char *buf, size_t bufsz);

#endif
