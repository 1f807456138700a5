/* test_decide.c - every row of the DESIGN.md verdict table, outbound and
 * inbound, each run over IPv4 and IPv6 (the family must not matter). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "decide.h"

/* policies: 0 none (defaults), 1 banned cipher + min 1.2, 2 secure sender
 * and recipient domains (so plaintext cannot be offloaded early), 3 a domain
 * that requires TLS */
static struct policy *pols[4];
static char err[POLICY_ERR_MAX];

#define TLS12 0x0303
#define TLS13 0x0304
#define GOOD_CIPHER 0xC02F /* TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 */
#define BANNED_CIPHER 0x000A /* TLS_RSA_WITH_3DES_EDE_CBC_SHA */

static int setup(void **state)
{
	static const char *j1 =
		"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\","
		" \"tls\": {\"banned_ciphers\": [\"TLS_RSA_WITH_3DES_EDE_CBC_SHA\"]},"
		" \"dane_probe_max_age\": 3600}";
	static const char *j2 =
		"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\","
		" \"secure_mode\": {\"sender_domains\": [{\"domain\": \"secure.example.org\", \"subdomains\": false}],"
		" \"recipient_domains\": [{\"domain\": \"vault.example.org\", \"subdomains\": false}]}}";

	static const char *j3 =
		"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\","
		" \"domains\": {\"strict.example.com\": {\"require_tls\": true}}}";

	if (policy_parse(j1, strlen(j1), &pols[1], err, sizeof(err)) < 0 ||
	    policy_parse(j2, strlen(j2), &pols[2], err, sizeof(err)) < 0 ||
	    policy_parse(j3, strlen(j3), &pols[3], err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	policy_free(pols[1]);
	policy_free(pols[2]);
	policy_free(pols[3]);
	return 0;
}

/* connection shapes */
#define PLAIN_NO_OFFER .phase = DECIDE_PHASE_MAIL
#define PLAIN_REFUSED .phase = DECIDE_PHASE_MAIL, .starttls_offered = true, .starttls_issued = true, .starttls_reply = 454
#define PLAIN_NOT_ISSUED .phase = DECIDE_PHASE_MAIL, .starttls_offered = true
#define TLS_OK(v) .phase = DECIDE_PHASE_TLS, .starttls_offered = true, .starttls_issued = true, \
		  .starttls_reply = 220, .tls_version = (v), .tls_cipher = GOOD_CIPHER
#define TLS_CIPHER(v, c) .phase = DECIDE_PHASE_TLS, .starttls_offered = true, .starttls_issued = true, \
		  .starttls_reply = 220, .tls_version = (v), .tls_cipher = (c)
#define SECURE_DOM .sender = DECIDE_SENDER_SECURE_DOMAIN, .sender_domain = "secure.example.org"
#define SECURE_SRC .sender = DECIDE_SENDER_SECURE_SOURCE
#define INBOUND .direction = DECIDE_INBOUND

struct row {
	const char *name;
	int pol;
	struct decide_input in;
	enum decide_action action;
	enum decide_reason reason;
	enum decide_rule rule;
	const char *reply; /* "" none, else the code prefix */
	enum decide_level observed;
	bool lock;
	bool probe;
};

#define ROW(n, p, action_, reason_, rule_, reply_, obs_, lock_, probe_, ...) \
	{ n, p, { __VA_ARGS__ }, DECIDE_##action_, DECIDE_REASON_##reason_, DECIDE_RULE_##rule_, \
	  reply_, DECIDE_LEVEL_##obs_, lock_, probe_ }

static const struct row rows[] = {
	/* row 1: DANE, STARTTLS, certificate matches TLSA -> pass, both modes */
	ROW("dane match, normal", 0, PASS, DANE_VERIFIED, DANE, "", DANE, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MATCH),
	ROW("dane match, secure domain", 0, PASS, DANE_VERIFIED, DANE, "", DANE, false, false,
	    SECURE_DOM, .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MATCH),
	ROW("dane match, secure source", 0, PASS, DANE_VERIFIED, DANE, "", DANE, false, false,
	    SECURE_SRC, .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MATCH),
	ROW("dane tls1.3 fresh probe, normal", 1, PASS, DANE_VERIFIED_BY_PROBE, DANE, "", DANE, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13), .probe = DECIDE_PROBE_VERIFIED, .probe_age_s = 3600),
	ROW("dane tls1.3 fresh probe, secure", 1, PASS, DANE_VERIFIED_BY_PROBE, DANE, "", DANE, false, false,
	    SECURE_DOM, .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13), .probe = DECIDE_PROBE_VERIFIED),
	ROW("dane tls1.2 resumed (cert unseen), fresh probe", 0, PASS, DANE_VERIFIED_BY_PROBE, DANE, "", DANE, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .probe = DECIDE_PROBE_VERIFIED, .probe_age_s = 10),

	/* row 2: DANE, TLS but certificate mismatch -> block temporary */
	ROW("dane mismatch, normal", 0, BLOCK_TEMP, DANE_MISMATCH, DANE, "", TLS, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MISMATCH),
	ROW("dane mismatch, secure", 0, BLOCK_TEMP, DANE_MISMATCH, DANE, "", TLS, false, false,
	    SECURE_SRC, .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MISMATCH),
	ROW("dane mismatch wins over a verifying probe", 0, BLOCK_TEMP, DANE_MISMATCH, DANE, "", TLS, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12), .cert = DECIDE_CERT_MISMATCH, .probe = DECIDE_PROBE_VERIFIED),
	ROW("dane tls1.3 probe mismatch", 1, BLOCK_TEMP, DANE_PROBE_MISMATCH, DANE, "", TLS, false, false,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13), .probe = DECIDE_PROBE_FAILED, .probe_age_s = 60),
	ROW("dane tls1.3 no probe", 1, BLOCK_TEMP, DANE_UNVERIFIED, DANE, "", TLS, false, true,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13)),
	ROW("dane tls1.3 stale probe", 1, BLOCK_TEMP, DANE_UNVERIFIED, DANE, "", TLS, false, true,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13), .probe = DECIDE_PROBE_VERIFIED, .probe_age_s = 3601),
	ROW("dane tls1.3 stale failed probe", 1, BLOCK_TEMP, DANE_UNVERIFIED, DANE, "", TLS, false, true,
	    .dane = DECIDE_DANE_USABLE, TLS_OK(TLS13), .probe = DECIDE_PROBE_FAILED, .probe_age_s = 3601),

	/* row 3: DANE / history / policy require, no STARTTLS -> block temp */
	ROW("dane, not offered", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    .dane = DECIDE_DANE_USABLE, PLAIN_NO_OFFER),
	ROW("dane, refused 454", 0, BLOCK_TEMP, STARTTLS_REFUSED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    .dane = DECIDE_DANE_USABLE, PLAIN_REFUSED),
	ROW("dane, not issued", 0, BLOCK_TEMP, STARTTLS_NOT_ISSUED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    .dane = DECIDE_DANE_USABLE, PLAIN_NOT_ISSUED),
	ROW("dane, not offered, secure", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    SECURE_DOM, .dane = DECIDE_DANE_USABLE, PLAIN_NO_OFFER),
	ROW("dane unusable TLSA, not offered", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    .dane = DECIDE_DANE_UNUSABLE, PLAIN_NO_OFFER),
	ROW("history tls, not offered", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, HISTORY, "451 4.7.4", PLAINTEXT, true, false,
	    .history_level = DECIDE_LEVEL_TLS, PLAIN_NO_OFFER),
	ROW("history tls, refused 454", 0, BLOCK_TEMP, STARTTLS_REFUSED, HISTORY, "451 4.7.4", PLAINTEXT, true, false,
	    .history_level = DECIDE_LEVEL_TLS, PLAIN_REFUSED),
	ROW("history tls, not issued", 0, BLOCK_TEMP, STARTTLS_NOT_ISSUED, HISTORY, "451 4.7.4", PLAINTEXT, true, false,
	    .history_level = DECIDE_LEVEL_TLS, PLAIN_NOT_ISSUED),
	ROW("history tls, not offered, secure", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, HISTORY, "451 4.7.4", PLAINTEXT, true, false,
	    SECURE_SRC, .history_level = DECIDE_LEVEL_TLS, PLAIN_NO_OFFER),
	ROW("policy require_tls, not offered", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, POLICY_REQUIRE_TLS, "451 4.7.4", PLAINTEXT, false, false,
	    .override = { .require_tls = true }, PLAIN_NO_OFFER),
	ROW("policy require_tls, refused, secure", 0, BLOCK_TEMP, STARTTLS_REFUSED, POLICY_REQUIRE_TLS, "451 4.7.4", PLAINTEXT, false, false,
	    SECURE_DOM, .override = { .require_tls = true }, PLAIN_REFUSED),
	ROW("policy require_tls, not issued, at DATA", 0, BLOCK_TEMP, STARTTLS_NOT_ISSUED, POLICY_REQUIRE_TLS, "451 4.7.4", PLAINTEXT, false, false,
	    .override = { .require_tls = true }, .phase = DECIDE_PHASE_DATA, .starttls_offered = true),

	/* row 4: TLS below the minimum or a banned cipher: as plaintext / block */
	ROW("tls1.1, normal, no requirement", 1, PASS, WEAK_TLS_ALLOWED, MIN_VERSION, "", PLAINTEXT, false, false,
	    TLS_OK(0x0302)),
	ROW("banned cipher, normal, no requirement", 1, PASS, WEAK_TLS_ALLOWED, BANNED_CIPHER, "", PLAINTEXT, false, false,
	    TLS_CIPHER(TLS12, BANNED_CIPHER)),
	/* The envelope is hidden in TLS: with secure-mode domains (or domains
	 * requiring TLS) in the policy, a weak handshake may carry their mail
	 * (issue 18, item 6): reset, so the MTA retries where it is seen. */
	ROW("tls1.1, normal, secure domains in the policy", 2, BLOCK_TEMP, TLS_VERSION_LOW,
	    SECURE_SENDER_DOMAIN, "", PLAINTEXT, false, false, TLS_OK(0x0302)),
	ROW("tls1.1, inbound, secure recipients in the policy", 2, BLOCK_TEMP, TLS_VERSION_LOW,
	    SECURE_RECIPIENT, "", PLAINTEXT, false, false, INBOUND, TLS_OK(0x0302)),
	ROW("tls1.1, normal, a domain requiring TLS in the policy", 3, BLOCK_TEMP, TLS_VERSION_LOW,
	    POLICY_REQUIRE_TLS, "", PLAINTEXT, false, false, TLS_OK(0x0302)),
	ROW("tls1.1, secure domain", 1, BLOCK_PERM, TLS_VERSION_LOW, SECURE_SENDER_DOMAIN, "", PLAINTEXT, false, false,
	    SECURE_DOM, TLS_OK(0x0302)),
	ROW("banned cipher, secure source", 1, BLOCK_PERM, CIPHER_BANNED, SECURE_SENDER_SOURCE, "", PLAINTEXT, false, false,
	    SECURE_SRC, TLS_CIPHER(TLS12, BANNED_CIPHER)),
	ROW("tls1.0, normal, history tls", 1, BLOCK_TEMP, TLS_VERSION_LOW, HISTORY, "", PLAINTEXT, true, false,
	    .history_level = DECIDE_LEVEL_TLS, TLS_OK(0x0301)),
	ROW("banned cipher, normal, policy require_tls", 1, BLOCK_TEMP, CIPHER_BANNED, POLICY_REQUIRE_TLS, "", PLAINTEXT, false, false,
	    .override = { .require_tls = true }, TLS_CIPHER(TLS12, BANNED_CIPHER)),
	ROW("tls1.1, secure, dane", 1, BLOCK_TEMP, TLS_VERSION_LOW, DANE, "", PLAINTEXT, false, false,
	    SECURE_DOM, .dane = DECIDE_DANE_USABLE, TLS_OK(0x0302), .cert = DECIDE_CERT_MATCH),

	/* row 5: no requirement, plaintext: normal pass (recorded), secure 550 */
	ROW("plaintext, normal", 0, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    PLAIN_NO_OFFER),
	ROW("plaintext not issued, normal", 1, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    PLAIN_NOT_ISSUED),
	ROW("plaintext, normal, secure domains exist", 2, CONTINUE, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    PLAIN_NO_OFFER),
	ROW("plaintext, secure domain", 2, BLOCK_PERM, STARTTLS_NOT_OFFERED, SECURE_SENDER_DOMAIN, "550 5.7.4", PLAINTEXT, false, false,
	    SECURE_DOM, PLAIN_NO_OFFER),
	ROW("plaintext refused, secure domain", 2, BLOCK_PERM, STARTTLS_REFUSED, SECURE_SENDER_DOMAIN, "550 5.7.4", PLAINTEXT, false, false,
	    SECURE_DOM, PLAIN_REFUSED),
	ROW("plaintext not issued, secure source", 0, BLOCK_PERM, STARTTLS_NOT_ISSUED, SECURE_SENDER_SOURCE, "550 5.7.4", PLAINTEXT, false, false,
	    SECURE_SRC, PLAIN_NOT_ISSUED),
	ROW("history plaintext only, plaintext", 0, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    .history_level = DECIDE_LEVEL_PLAINTEXT, PLAIN_NO_OFFER),

	/* row 6: STARTTLS + acceptable TLS -> pass, recorded in history */
	ROW("tls1.2, normal", 1, PASS, TLS_OK, NONE, "", TLS, false, false, TLS_OK(TLS12)),
	ROW("tls1.3, normal", 1, PASS, TLS_OK, NONE, "", TLS, false, false, TLS_OK(TLS13)),
	ROW("tls1.2, secure domain", 1, PASS, TLS_OK, NONE, "", TLS, false, false, SECURE_DOM, TLS_OK(TLS12)),
	ROW("tls1.3, secure source", 1, PASS, TLS_OK, NONE, "", TLS, false, false, SECURE_SRC, TLS_OK(TLS13)),
	ROW("tls1.2, history tls", 1, PASS, TLS_OK, HISTORY, "", TLS, false, false,
	    .history_level = DECIDE_LEVEL_TLS, .history_version = TLS12, TLS_OK(TLS12)),
	ROW("tls1.2, dane unusable TLSA", 1, PASS, TLS_OK, DANE, "", TLS, false, false,
	    .dane = DECIDE_DANE_UNUSABLE, TLS_OK(TLS12)),
	ROW("tls1.2, policy require_tls", 1, PASS, TLS_OK, POLICY_REQUIRE_TLS, "", TLS, false, false,
	    .override = { .require_tls = true }, TLS_OK(TLS12)),

	/* row 7: inbound to a secure-mode recipient, plaintext -> 550 */
	ROW("inbound plaintext to secure recipient", 2, BLOCK_PERM, STARTTLS_NOT_OFFERED, SECURE_RECIPIENT, "550 5.7.4", PLAINTEXT, false, false,
	    INBOUND, .recipient_secure = true, .recipient_domain = "vault.example.org",
	    .phase = DECIDE_PHASE_RCPT),
	ROW("inbound not issued to secure recipient", 2, BLOCK_PERM, STARTTLS_NOT_ISSUED, SECURE_RECIPIENT, "550 5.7.4", PLAINTEXT, false, false,
	    INBOUND, .recipient_secure = true, .phase = DECIDE_PHASE_RCPT, .starttls_offered = true),
	ROW("inbound plaintext, other recipient, more may follow", 2, CONTINUE, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    INBOUND, .phase = DECIDE_PHASE_RCPT),
	ROW("inbound plaintext, no secure recipients in policy", 1, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    INBOUND, .phase = DECIDE_PHASE_MAIL),
	ROW("inbound tls to secure recipient", 2, PASS, TLS_OK, NONE, "", TLS, false, false,
	    INBOUND, .recipient_secure = true, TLS_OK(TLS12)),
	ROW("inbound ignores destination knowledge", 0, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    INBOUND, .dane = DECIDE_DANE_USABLE, .history_level = DECIDE_LEVEL_TLS, .history_locked = true,
	    .override = { .require_tls = true }, PLAIN_NO_OFFER),

	/* before anything is said */
	ROW("connect, nothing known", 0, CONTINUE, PENDING, NONE, "", UNKNOWN, false, false,
	    .phase = DECIDE_PHASE_CONNECT),
	ROW("connect, secure source still waits for STARTTLS", 0, CONTINUE, PENDING, NONE, "", UNKNOWN, false, false,
	    SECURE_SRC, .phase = DECIDE_PHASE_CONNECT),
	ROW("connect, history locked", 0, BLOCK_TEMP, HISTORY_LOCKED, HISTORY, "451 4.7.4", UNKNOWN, false, false,
	    .history_level = DECIDE_LEVEL_TLS, .history_locked = true, .phase = DECIDE_PHASE_CONNECT),
	ROW("tls, history locked", 0, BLOCK_TEMP, HISTORY_LOCKED, HISTORY, "", UNKNOWN, false, false,
	    .history_level = DECIDE_LEVEL_TLS, .history_locked = true, TLS_OK(TLS13)),
	ROW("connect, dane lookup bogus", 0, BLOCK_TEMP, DANE_LOOKUP_FAILED, DANE, "451 4.7.5", UNKNOWN, false, false,
	    .dane = DECIDE_DANE_FAILED, .phase = DECIDE_PHASE_CONNECT),
	ROW("connect, policy require_dane without TLSA", 0, BLOCK_TEMP, DANE_MISSING, POLICY_REQUIRE_DANE, "451 4.7.5", UNKNOWN, false, false,
	    .override = { .require_dane = true, .require_tls = true }, .phase = DECIDE_PHASE_CONNECT),
	ROW("tls, policy require_dane with TLSA match", 0, PASS, DANE_VERIFIED, DANE, "", DANE, false, false,
	    .override = { .require_dane = true, .require_tls = true }, .dane = DECIDE_DANE_USABLE, TLS_OK(TLS12),
	    .cert = DECIDE_CERT_MATCH),
	ROW("connect, history dane but TLSA gone", 0, BLOCK_TEMP, DANE_MISSING, HISTORY, "451 4.7.5", UNKNOWN, true, false,
	    .history_level = DECIDE_LEVEL_DANE, .phase = DECIDE_PHASE_CONNECT),
	ROW("tls1.2 after tls1.3 in history", 0, BLOCK_TEMP, HISTORY_DOWNGRADE, HISTORY, "", TLS, true, false,
	    .history_level = DECIDE_LEVEL_TLS, .history_version = TLS13, TLS_OK(TLS12)),
	ROW("allow_plaintext lifts history and lock", 0, PASS, PLAINTEXT_ALLOWED, NONE, "", PLAINTEXT, false, false,
	    .override = { .allow_plaintext = true }, .history_level = DECIDE_LEVEL_TLS, .history_locked = true,
	    PLAIN_NO_OFFER),
	ROW("allow_plaintext never lifts DANE", 0, BLOCK_TEMP, STARTTLS_NOT_OFFERED, DANE, "451 4.7.4", PLAINTEXT, false, false,
	    .override = { .allow_plaintext = true }, .dane = DECIDE_DANE_USABLE, PLAIN_NO_OFFER),
	ROW("allow_plaintext never lifts secure mode", 0, BLOCK_PERM, STARTTLS_NOT_OFFERED, SECURE_SENDER_DOMAIN, "550 5.7.4", PLAINTEXT, false, false,
	    SECURE_DOM, .override = { .allow_plaintext = true }, PLAIN_NO_OFFER),
	ROW("tls phase, handshake not judged", 0, CONTINUE, PENDING, NONE, "", UNKNOWN, false, false,
	    .phase = DECIDE_PHASE_TLS, .starttls_offered = true, .starttls_issued = true, .starttls_reply = 220),

	/* a bound was reached: must judge now */
	ROW("limit at connect, no requirement", 0, PASS, LIMIT, NONE, "", UNKNOWN, false, false,
	    .phase = DECIDE_PHASE_CONNECT, .must_judge = true),
	ROW("limit at connect, history", 0, BLOCK_TEMP, LIMIT, HISTORY, "451 4.7.4", UNKNOWN, false, false,
	    .history_level = DECIDE_LEVEL_TLS, .phase = DECIDE_PHASE_CONNECT, .must_judge = true),
	ROW("limit at connect, secure source", 0, BLOCK_TEMP, LIMIT, SECURE_SENDER_SOURCE, "451 4.7.4", UNKNOWN, false, false,
	    SECURE_SRC, .phase = DECIDE_PHASE_CONNECT, .must_judge = true),
	/* A fresh probe mismatch is known at STARTTLS: refused in SMTP
	 * there (issue 18 item 9), not reset after the handshake. */
	ROW("starttls, fresh probe found a DANE mismatch", 1, BLOCK_TEMP, DANE_PROBE_MISMATCH, DANE,
	    "451 4.7.5", UNKNOWN, false, false, .dane = DECIDE_DANE_USABLE,
	    .probe = DECIDE_PROBE_FAILED, .probe_age_s = 10, .phase = DECIDE_PHASE_CONNECT),
	ROW("starttls, stale probe mismatch: the handshake decides", 1, CONTINUE, PENDING, NONE, "",
	    UNKNOWN, false, false, .dane = DECIDE_DANE_USABLE, .probe = DECIDE_PROBE_FAILED,
	    .probe_age_s = 7200, .phase = DECIDE_PHASE_CONNECT),
	/* A bound reached after an allowed plaintext MAIL FROM: a later MAIL
	 * FROM could still name a secure-mode sender (issue 17, finding 2). */
	ROW("limit after allowed plaintext, secure domains in the policy", 2, BLOCK_TEMP, LIMIT,
	    SECURE_SENDER_DOMAIN, "451 4.7.4", PLAINTEXT, false, false, PLAIN_NO_OFFER, .must_judge = true),
	ROW("limit after allowed plaintext, inbound, secure recipients", 2, BLOCK_TEMP, LIMIT,
	    SECURE_RECIPIENT, "451 4.7.4", PLAINTEXT, false, false, INBOUND, PLAIN_NO_OFFER,
	    .must_judge = true),
	ROW("limit at connect, secure domains in the policy", 2, BLOCK_TEMP, LIMIT,
	    SECURE_SENDER_DOMAIN, "451 4.7.4", UNKNOWN, false, false, .phase = DECIDE_PHASE_CONNECT,
	    .must_judge = true),
	/* Threat model rule 1: a dialog the gateway cannot follow blocks
	 * (reset: no SMTP framing to answer in) whatever could carry a
	 * requirement, and passes only what nothing can be required of. */
	ROW("not smtp, nothing required", 0, PASS, NOT_SMTP, NONE, "", UNKNOWN, false, false,
	    .phase = DECIDE_PHASE_DATA, .blind = DECIDE_REASON_NOT_SMTP),
	ROW("not smtp, secure domains in the policy", 2, BLOCK_TEMP, NOT_SMTP, SECURE_SENDER_DOMAIN, "",
	    UNKNOWN, false, false, .phase = DECIDE_PHASE_DATA, .blind = DECIDE_REASON_NOT_SMTP),
	ROW("not smtp, inbound, secure recipients", 2, BLOCK_TEMP, NOT_SMTP, SECURE_RECIPIENT, "",
	    UNKNOWN, false, false, INBOUND, .phase = DECIDE_PHASE_DATA,
	    .blind = DECIDE_REASON_NOT_SMTP),
	ROW("not smtp, inbound, only secure senders", 1, PASS, NOT_SMTP, NONE, "", UNKNOWN, false,
	    false, INBOUND, .phase = DECIDE_PHASE_DATA, .blind = DECIDE_REASON_NOT_SMTP),
	ROW("overlap conflict, secure source", 0, BLOCK_TEMP, OVERLAP_CONFLICT, SECURE_SENDER_SOURCE, "",
	    UNKNOWN, false, false, SECURE_SRC, .phase = DECIDE_PHASE_DATA,
	    .blind = DECIDE_REASON_OVERLAP_CONFLICT),
	ROW("overlap conflict, nothing required", 0, PASS, OVERLAP_CONFLICT, NONE, "", UNKNOWN, false,
	    false, .phase = DECIDE_PHASE_DATA, .blind = DECIDE_REASON_OVERLAP_CONFLICT),
	ROW("starttls injection, tls history", 0, BLOCK_TEMP, INJECTION, HISTORY, "", UNKNOWN, false,
	    false, .history_level = DECIDE_LEVEL_TLS, TLS_OK(TLS12),
	    .blind = DECIDE_REASON_INJECTION),
	ROW("tls failed, dane", 0, BLOCK_TEMP, TLS_FAILED, DANE, "", UNKNOWN, false, false,
	    .dane = DECIDE_DANE_USABLE, .phase = DECIDE_PHASE_TLS, .blind = DECIDE_REASON_TLS_FAILED),
	ROW("tls failed, secure domain sender", 2, BLOCK_TEMP, TLS_FAILED, SECURE_SENDER_DOMAIN, "",
	    UNKNOWN, false, false, .phase = DECIDE_PHASE_TLS, .blind = DECIDE_REASON_TLS_FAILED),
	ROW("urgent data, policy require_tls domains", 3, BLOCK_TEMP, URGENT_DATA,
	    POLICY_REQUIRE_TLS, "", UNKNOWN, false, false, .phase = DECIDE_PHASE_DATA,
	    .blind = DECIDE_REASON_URGENT_DATA),
	ROW("ambiguous end of data, secure source", 0, BLOCK_TEMP, AMBIGUOUS_DATA_END,
	    SECURE_SENDER_SOURCE, "", UNKNOWN, false, false, SECURE_SRC, .phase = DECIDE_PHASE_DATA,
	    .blind = DECIDE_REASON_AMBIGUOUS_DATA_END),
	ROW("unseen data, nothing required", 1, PASS, UNSEEN_DATA, NONE, "", UNKNOWN, false, false,
	    .phase = DECIDE_PHASE_CONNECT, .blind = DECIDE_REASON_UNSEEN_DATA),
	ROW("plaintext picked up mid-stream, secure domains in the policy", 2, BLOCK_TEMP, MIDSTREAM,
	    SECURE_SENDER_DOMAIN, "", UNKNOWN, false, false, .phase = DECIDE_PHASE_DATA,
	    .blind = DECIDE_REASON_MIDSTREAM),
	ROW("unseen data, history", 0, BLOCK_TEMP, UNSEEN_DATA, HISTORY, "", UNKNOWN, false, false,
	    .history_level = DECIDE_LEVEL_TLS, .phase = DECIDE_PHASE_CONNECT,
	    .blind = DECIDE_REASON_UNSEEN_DATA),
};

static struct decision run_row(const struct row *r, int af, const char *addr, const char *mx)
{
	struct decide_input in = r->in;

	in.policy = pols[r->pol];
	in.af = af;
	assert_int_equal(inet_pton(af, addr, in.addr), 1);
	in.mx_name = mx;
	return decide(&in);
}

static void check_row(const struct row *r, const struct decision *d, const char *addr)
{
	bool ok = d->action == r->action && d->reason == r->reason && d->rule == r->rule &&
		  d->observed == r->observed && d->lock_destination == r->lock &&
		  d->want_probe == r->probe;

	if (!ok)
		fail_msg("%s [%s]: got %s/%s/%s observed %s lock %d probe %d; want %s/%s/%s observed %s lock %d probe %d",
			 r->name, addr, decide_action_name(d->action), decide_reason_name(d->reason),
			 decide_rule_name(d->rule), decide_level_name(d->observed), d->lock_destination,
			 d->want_probe, decide_action_name(r->action), decide_reason_name(r->reason),
			 decide_rule_name(r->rule), decide_level_name(r->observed), r->lock, r->probe);
	if (r->reply[0]) {
		size_t n = strlen(d->smtp_reply);

		if (!d->reply_in_smtp || strncmp(d->smtp_reply, r->reply, strlen(r->reply)) != 0 ||
		    d->smtp_reply[strlen(r->reply)] != ' ')
			fail_msg("%s: reply \"%s\", want \"%s ...\"", r->name, d->smtp_reply, r->reply);
		assert_true(n >= 4 && n <= 512);
		assert_string_equal(d->smtp_reply + n - 2, "\r\n");
		assert_null(memchr(d->smtp_reply, '\r', n - 2));
		assert_null(memchr(d->smtp_reply, '\n', n - 1));
	} else {
		assert_false(d->reply_in_smtp);
		assert_string_equal(d->smtp_reply, "");
	}
	/* the reason text names the MX and, for blocks, the rule */
	assert_non_null(strstr(d->text, "mx1.example.net"));
	assert_non_null(strstr(d->text, addr));
	if (d->action >= DECIDE_BLOCK_TEMP)
		assert_non_null(strstr(d->text, decide_rule_name(d->rule)));
	if (d->reply_in_smtp)
		assert_non_null(strstr(d->smtp_reply, d->text));
}

/* Every row over IPv4 and IPv6; the verdict must not depend on the family
 * (the text differs only in the address). */
static void test_verdict_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct decision d4 = run_row(&rows[i], AF_INET, "192.0.2.25", "mx1.example.net");
		struct decision d6 = run_row(&rows[i], AF_INET6, "2001:db8::25", "mx1.example.net");
		struct decision dm = run_row(&rows[i], AF_INET6, "::ffff:192.0.2.25", "mx1.example.net");
		char *p;

		check_row(&rows[i], &d4, "192.0.2.25");
		check_row(&rows[i], &d6, "2001:db8::25");
		/* IPv4-mapped (as in the flow key) reads as IPv4 */
		assert_string_equal(dm.text, d4.text);
		p = strstr(d6.text, "2001:db8::25");
		assert_non_null(p);
		memmove(p, "192.0.2.25", 10);
		memmove(p + 10, p + 12, strlen(p + 12) + 1);
		assert_string_equal(d6.text, d4.text);
	}
	print_message("%zu rows x 3 address forms\n", i);
}

/* Each verdict-table row appears with each sender mode and both
 * directions somewhere above; this checks coverage so a deleted row is
 * noticed. */
static void test_table_covers_every_row(void **state)
{
	bool seen_reason[DECIDE_REASON_MAX] = { 0 };
	int actions[4] = { 0 }, inbound = 0, secure[3] = { 0 };
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		seen_reason[rows[i].reason] = true;
		actions[rows[i].action]++;
		inbound += rows[i].in.direction == DECIDE_INBOUND;
		secure[rows[i].in.sender]++;
	}
	for (i = 0; i < DECIDE_REASON_MAX; i++)
		if (!seen_reason[i])
			fail_msg("reason %s has no row", decide_reason_name((enum decide_reason)i));
	for (i = 0; i < 4; i++)
		assert_true(actions[i] > 0);
	assert_true(inbound >= 5);
	assert_true(secure[1] >= 5 && secure[2] >= 5);
}

/* A hostile MX name (from DNS or the wire) cannot break the reply line. */
static void test_hostile_names(void **state)
{
	struct decide_input in = { .history_level = DECIDE_LEVEL_TLS, PLAIN_NO_OFFER, .af = AF_INET,
				   .sender = DECIDE_SENDER_SECURE_DOMAIN };
	char longname[1000];
	struct decision d;

	in.mx_name = "mx.example.net\r\n250 OK\r\nDATA";
	in.sender_domain = "x\r\ny";
	d = decide(&in);
	assert_int_equal(d.action, DECIDE_BLOCK_TEMP);
	assert_null(strchr(d.text, '\r'));
	assert_null(strchr(d.text, '\n'));
	assert_int_equal(strstr(d.smtp_reply, "\r\n") - d.smtp_reply, (long)strlen(d.smtp_reply) - 2);

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	in.mx_name = longname;
	d = decide(&in);
	assert_true(strlen(d.smtp_reply) <= 512);
	assert_string_equal(d.smtp_reply + strlen(d.smtp_reply) - 2, "\r\n");
	assert_memory_equal(d.smtp_reply, "451 4.7.4 ", 10);

	/* no name, no policy, no family: still a verdict and a text */
	memset(&in, 0, sizeof(in));
	in.phase = DECIDE_PHASE_MAIL;
	in.sender = DECIDE_SENDER_SECURE_SOURCE;
	d = decide(&in);
	assert_int_equal(d.action, DECIDE_BLOCK_PERM);
	assert_non_null(strstr(d.text, "secure-sender-source"));
	assert_memory_equal(d.smtp_reply, "550 5.7.4 ", 10);
}

/* The secure-domain text names the sender domain; the verdict is the same
 * whatever the MX name. */
static void test_text_names_rule_and_domain(void **state)
{
	struct decide_input in = { SECURE_DOM, PLAIN_NO_OFFER, .af = AF_INET };
	struct decision a, b;

	inet_pton(AF_INET, "198.51.100.7", in.addr);
	in.mx_name = "mx.example.com";
	a = decide(&in);
	assert_non_null(strstr(a.text, "secure-sender-domain"));
	assert_non_null(strstr(a.text, "secure.example.org"));
	assert_non_null(strstr(a.text, "STARTTLS not offered"));
	in.mx_name = NULL;
	b = decide(&in);
	assert_int_equal(a.action, b.action);
	assert_int_equal(a.reason, b.reason);
	assert_non_null(strstr(b.text, "[198.51.100.7]"));
}

/* A policy whose only rules are per-domain overrides: a plaintext MAIL FROM
 * must not be final, since the RCPT TO that follows may name a domain that
 * requires TLS. Overrides that only allow plaintext change nothing. */
static void test_required_domain_keeps_watching(void **state)
{
	static const char *jreq =
		"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\","
		" \"domains\": {\"partner.example.com\": {\"require_tls\": true}}}";
	static const char *jallow =
		"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2027-01-01T00:00:00Z\","
		" \"domains\": {\"legacy.example.com\": {\"allow_plaintext\": true}}}";
	struct policy *req = NULL, *allow = NULL;
	struct decide_input in = { .direction = DECIDE_OUTBOUND, PLAIN_NOT_ISSUED, .af = AF_INET };
	struct decision d;

	assert_int_equal(policy_parse(jreq, strlen(jreq), &req, err, sizeof(err)), 0);
	assert_int_equal(policy_parse(jallow, strlen(jallow), &allow, err, sizeof(err)), 0);
	in.policy = req;
	d = decide(&in);
	assert_int_equal(d.action, DECIDE_CONTINUE);
	in.phase = DECIDE_PHASE_RCPT;
	in.recipient_domain = "partner.example.com";
	assert_true(policy_domain_override(req, in.recipient_domain, &in.override));
	d = decide(&in);
	assert_int_equal(d.action, DECIDE_BLOCK_TEMP);
	assert_int_equal(d.rule, DECIDE_RULE_POLICY_REQUIRE_TLS);
	/* inbound: recipient overrides are for outbound mail only */
	memset(&in.override, 0, sizeof(in.override));
	in.direction = DECIDE_INBOUND;
	in.phase = DECIDE_PHASE_MAIL;
	in.recipient_domain = NULL;
	assert_int_equal(decide(&in).action, DECIDE_PASS);

	in.direction = DECIDE_OUTBOUND;
	in.policy = allow;
	assert_int_equal(decide(&in).action, DECIDE_PASS);
	policy_free(req);
	policy_free(allow);
}

/* decide() depends on its input only: the same input twice gives the same
 * answer, and names exist for every enum value. */
/* Which flows fail closed (decide_may_require): what the gate withholds
 * and blocks on when it cannot follow the dialog. */
static void test_may_require(void **state)
{
	struct decide_input in = { .direction = DECIDE_OUTBOUND, .phase = DECIDE_PHASE_MAIL };

	in.policy = pols[0];
	assert_false(decide_may_require(&in));
	in.policy = pols[1]; /* cipher rules only */
	assert_false(decide_may_require(&in));
	in.policy = pols[2]; /* secure sender and recipient domains */
	assert_true(decide_may_require(&in));
	in.policy = pols[3]; /* a domain that requires TLS */
	assert_true(decide_may_require(&in));
	in.policy = pols[0];
	in.history_level = DECIDE_LEVEL_TLS;
	assert_true(decide_may_require(&in));
	in.override.allow_plaintext = true; /* lifts history, not DANE */
	assert_false(decide_may_require(&in));
	in.dane = DECIDE_DANE_USABLE;
	assert_true(decide_may_require(&in));
	in = (struct decide_input){ .direction = DECIDE_OUTBOUND, .policy = pols[0],
				    .sender = DECIDE_SENDER_SECURE_SOURCE };
	assert_true(decide_may_require(&in));
	/* inbound: only secure-mode recipients count, not the destination */
	in = (struct decide_input){ .direction = DECIDE_INBOUND, .policy = pols[0],
				    .history_level = DECIDE_LEVEL_TLS, .dane = DECIDE_DANE_USABLE };
	assert_false(decide_may_require(&in));
	in.policy = pols[2];
	assert_true(decide_may_require(&in));
}

static void test_pure_and_named(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct decision a = run_row(&rows[i], AF_INET, "203.0.113.5", "mx1.example.net");
		struct decision b = run_row(&rows[i], AF_INET, "203.0.113.5", "mx1.example.net");

		assert_memory_equal(&a, &b, sizeof(a));
	}
	for (i = 0; i < DECIDE_REASON_MAX; i++)
		assert_string_not_equal(decide_reason_name((enum decide_reason)i), "?");
	for (i = 0; i < DECIDE_RULE_MAX; i++)
		assert_string_not_equal(decide_rule_name((enum decide_rule)i), "?");
	assert_string_equal(decide_reason_name(DECIDE_REASON_MAX), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdict_table),
		cmocka_unit_test(test_table_covers_every_row),
		cmocka_unit_test(test_hostile_names),
		cmocka_unit_test(test_text_names_rule_and_domain),
		cmocka_unit_test(test_required_domain_keeps_watching),
		cmocka_unit_test(test_may_require),
		cmocka_unit_test(test_pure_and_named),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
