/* decide.c - the verdict table of DESIGN.md. Contract in decide.h: pure,
 * no I/O, no globals (only constant tables). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "decide.h"

static const char *const action_names[] = { "continue", "pass", "block-temp", "block-perm" };

static const char *const reason_names[DECIDE_REASON_MAX] = {
	[DECIDE_REASON_PENDING] = "pending",
	[DECIDE_REASON_PLAINTEXT_ALLOWED] = "plaintext-allowed",
	[DECIDE_REASON_WEAK_TLS_ALLOWED] = "weak-tls-allowed",
	[DECIDE_REASON_TLS_OK] = "tls-ok",
	[DECIDE_REASON_DANE_VERIFIED] = "dane-verified",
	[DECIDE_REASON_DANE_VERIFIED_BY_PROBE] = "dane-verified-by-probe",
	[DECIDE_REASON_STARTTLS_NOT_OFFERED] = "starttls-not-offered",
	[DECIDE_REASON_STARTTLS_REFUSED] = "starttls-refused",
	[DECIDE_REASON_STARTTLS_NOT_ISSUED] = "starttls-not-issued",
	[DECIDE_REASON_TLS_VERSION_LOW] = "tls-version-low",
	[DECIDE_REASON_CIPHER_BANNED] = "cipher-banned",
	[DECIDE_REASON_DANE_MISMATCH] = "dane-mismatch",
	[DECIDE_REASON_DANE_PROBE_MISMATCH] = "dane-probe-mismatch",
	[DECIDE_REASON_DANE_UNVERIFIED] = "dane-unverified",
	[DECIDE_REASON_DANE_LOOKUP_FAILED] = "dane-lookup-failed",
	[DECIDE_REASON_DANE_MISSING] = "dane-missing",
	[DECIDE_REASON_HISTORY_DOWNGRADE] = "history-downgrade",
	[DECIDE_REASON_HISTORY_LOCKED] = "history-locked",
	[DECIDE_REASON_LIMIT] = "limit",
	[DECIDE_REASON_NOT_SMTP] = "not-smtp",
	[DECIDE_REASON_OVERLAP_CONFLICT] = "overlap-conflict",
	[DECIDE_REASON_INJECTION] = "starttls-injection",
	[DECIDE_REASON_TLS_FAILED] = "tls-failed",
	[DECIDE_REASON_URGENT_DATA] = "urgent-data",
	[DECIDE_REASON_AMBIGUOUS_DATA_END] = "ambiguous-data-end",
	[DECIDE_REASON_UNSEEN_DATA] = "unseen-data",
	[DECIDE_REASON_MIDSTREAM] = "midstream",
};

static const char *const rule_names[DECIDE_RULE_MAX] = {
	[DECIDE_RULE_NONE] = "none",
	[DECIDE_RULE_DANE] = "dane",
	[DECIDE_RULE_HISTORY] = "tls-history",
	[DECIDE_RULE_POLICY_REQUIRE_TLS] = "policy-require-tls",
	[DECIDE_RULE_POLICY_REQUIRE_DANE] = "policy-require-dane",
	[DECIDE_RULE_SECURE_SENDER_DOMAIN] = "secure-sender-domain",
	[DECIDE_RULE_SECURE_SENDER_SOURCE] = "secure-sender-source",
	[DECIDE_RULE_SECURE_RECIPIENT] = "secure-recipient",
	[DECIDE_RULE_MIN_VERSION] = "min-tls-version",
	[DECIDE_RULE_BANNED_CIPHER] = "banned-cipher",
};

static const char *const level_names[] = { "unknown", "plaintext", "tls", "dane" };

const char *decide_action_name(enum decide_action a)
{
	return (unsigned)a < 4 ? action_names[a] : "?";
}

const char *decide_reason_name(enum decide_reason r)
{
	return (unsigned)r < DECIDE_REASON_MAX ? reason_names[r] : "?";
}

const char *decide_rule_name(enum decide_rule r)
{
	return (unsigned)r < DECIDE_RULE_MAX ? rule_names[r] : "?";
}

const char *decide_level_name(enum decide_level l)
{
	return (unsigned)l < 4 ? level_names[l] : "?";
}

/* Human-readable piece per reason, completed by "MX <name> [<addr>]". */
static const char *what_happened(enum decide_reason r)
{
	switch (r) {
	case DECIDE_REASON_STARTTLS_NOT_OFFERED: return "STARTTLS not offered by";
	case DECIDE_REASON_STARTTLS_REFUSED: return "STARTTLS refused by";
	case DECIDE_REASON_STARTTLS_NOT_ISSUED: return "STARTTLS not used with";
	case DECIDE_REASON_TLS_VERSION_LOW: return "TLS version below the policy minimum with";
	case DECIDE_REASON_CIPHER_BANNED: return "banned TLS cipher suite with";
	case DECIDE_REASON_DANE_MISMATCH: return "certificate does not match the DANE TLSA records of";
	case DECIDE_REASON_DANE_PROBE_MISMATCH: return "recent probe found a certificate not matching the DANE TLSA records of";
	case DECIDE_REASON_DANE_UNVERIFIED: return "TLS 1.3 hides the certificate and no recent probe verified DANE for";
	case DECIDE_REASON_DANE_LOOKUP_FAILED: return "DNSSEC validation of the TLSA records failed for";
	case DECIDE_REASON_DANE_MISSING: return "no usable DANE TLSA records for";
	case DECIDE_REASON_HISTORY_DOWNGRADE: return "weaker protection than seen before (possible downgrade attack) with";
	case DECIDE_REASON_HISTORY_LOCKED: return "destination locked after a possible downgrade attack:";
	case DECIDE_REASON_LIMIT: return "inspection bound reached or data lost before a verdict with";
	case DECIDE_REASON_NOT_SMTP: return "dialog that is no longer SMTP with";
	case DECIDE_REASON_OVERLAP_CONFLICT: return "retransmission with different bytes (receivers differ) to";
	case DECIDE_REASON_INJECTION: return "bytes sent out of turn around STARTTLS with";
	case DECIDE_REASON_TLS_FAILED: return "failed TLS handshake, dialog not followed, with";
	case DECIDE_REASON_URGENT_DATA: return "TCP urgent data (receivers differ) with";
	case DECIDE_REASON_AMBIGUOUS_DATA_END: return "end of DATA that servers read differently with";
	case DECIDE_REASON_UNSEEN_DATA: return "bytes the receiver may read unseen with";
	case DECIDE_REASON_MIDSTREAM: return "plaintext dialog picked up mid-stream (earlier commands unseen) with";
	case DECIDE_REASON_PLAINTEXT_ALLOWED: return "plaintext allowed with";
	case DECIDE_REASON_WEAK_TLS_ALLOWED: return "weak TLS counted as plaintext with";
	case DECIDE_REASON_TLS_OK: return "TLS with";
	case DECIDE_REASON_DANE_VERIFIED: return "DANE verified on the wire with";
	case DECIDE_REASON_DANE_VERIFIED_BY_PROBE: return "DANE verified by a recent probe of";
	default: return "inspecting";
	}
}

/* Copies s keeping only host name characters: names come from DNS and
 * the wire and end up in an SMTP reply, where CR/LF would be injection. */
static void clean_name(const char *s, char *out, size_t outlen)
{
	size_t i = 0;

	if (!s)
		s = "";
	for (; *s && i + 1 < outlen; s++) {
		unsigned char c = (unsigned char)*s;

		out[i++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				   (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ? (char)c : '?';
	}
	out[i] = '\0';
}

static void format_addr(const struct decide_input *in, char *buf, size_t len)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (in->af == AF_INET6 && memcmp(in->addr, mapped, sizeof(mapped)) == 0)
		inet_ntop(AF_INET, in->addr + 12, buf, (socklen_t)len);
	else if (in->af == AF_INET || in->af == AF_INET6)
		inet_ntop(in->af, in->addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "?");
}

static void finish(const struct decide_input *in, struct decision *d)
{
	char mx[96], addr[INET6_ADDRSTRLEN], dom[96] = "";
	const char *code = NULL, *why = "";
	int n;

	clean_name(in->mx_name, mx, sizeof(mx));
	format_addr(in, addr, sizeof(addr));
	if (d->rule == DECIDE_RULE_SECURE_SENDER_DOMAIN && in->sender_domain)
		clean_name(in->sender_domain, dom, sizeof(dom));
	else if (d->rule == DECIDE_RULE_SECURE_RECIPIENT && in->recipient_domain)
		clean_name(in->recipient_domain, dom, sizeof(dom));
	if (d->action == DECIDE_BLOCK_PERM)
		why = "; plaintext refused by rule ";
	else if (d->action == DECIDE_BLOCK_TEMP)
		why = "; TLS required by rule ";
	else if (d->rule != DECIDE_RULE_NONE)
		why = "; rule ";
	n = snprintf(d->text, sizeof(d->text), "%s MX %s%s[%s]%s%s%s%s%s",
		     what_happened(d->reason), mx, mx[0] ? " " : "", addr, why,
		     (d->action >= DECIDE_BLOCK_TEMP || d->rule != DECIDE_RULE_NONE) ? rule_names[d->rule] : "",
		     dom[0] ? " (" : "", dom, dom[0] ? ")" : "");
	(void)n;
	d->reply_in_smtp = d->action >= DECIDE_BLOCK_TEMP && in->phase != DECIDE_PHASE_TLS &&
			   in->blind == DECIDE_REASON_PENDING;
	if (!d->reply_in_smtp)
		return;
	if (d->action == DECIDE_BLOCK_PERM)
		code = "550 5.7.4";
	else if (d->reason == DECIDE_REASON_DANE_MISMATCH || d->reason == DECIDE_REASON_DANE_PROBE_MISMATCH ||
		 d->reason == DECIDE_REASON_DANE_UNVERIFIED || d->reason == DECIDE_REASON_DANE_LOOKUP_FAILED ||
		 d->reason == DECIDE_REASON_DANE_MISSING)
		code = "451 4.7.5";
	else
		code = "451 4.7.4";
	/* leave room for CRLF; the text is truncated, never the line ending */
	n = snprintf(d->smtp_reply, sizeof(d->smtp_reply) - 2, "%s tlsgate: %s; see the tlsgate event log",
		     code, d->text);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(d->smtp_reply) - 3)
		n = (int)sizeof(d->smtp_reply) - 3;
	memcpy(d->smtp_reply + n, "\r\n", 3);
}

static struct decision verdict(const struct decide_input *in, enum decide_action a,
			       enum decide_reason r, enum decide_rule rule, enum decide_level observed)
{
	struct decision d;

	memset(&d, 0, sizeof(d));
	d.action = a;
	d.reason = r;
	d.rule = rule;
	d.observed = observed;
	finish(in, &d);
	return d;
}

/* The rule a later command line could still bring in under the policy
 * (outbound: a secure-mode MAIL FROM, a RCPT TO of a domain that requires
 * TLS; inbound: a secure-mode RCPT TO), or NONE. */
static enum decide_rule later_rule(const struct decide_input *in)
{
	if (in->direction == DECIDE_OUTBOUND) {
		if (policy_has_secure_sender_domains(in->policy))
			return DECIDE_RULE_SECURE_SENDER_DOMAIN;
		if (policy_has_required_domains(in->policy))
			return DECIDE_RULE_POLICY_REQUIRE_TLS;
		return DECIDE_RULE_NONE;
	}
	return policy_has_secure_recipient_domains(in->policy) ? DECIDE_RULE_SECURE_RECIPIENT
							      : DECIDE_RULE_NONE;
}

/* The sender's or recipient's secure mode, or NONE. */
static enum decide_rule secure_rule(const struct decide_input *in)
{
	if (in->sender == DECIDE_SENDER_SECURE_SOURCE)
		return DECIDE_RULE_SECURE_SENDER_SOURCE;
	if (in->sender == DECIDE_SENDER_SECURE_DOMAIN)
		return DECIDE_RULE_SECURE_SENDER_DOMAIN;
	if (in->direction == DECIDE_INBOUND && in->recipient_secure)
		return DECIDE_RULE_SECURE_RECIPIENT;
	return DECIDE_RULE_NONE;
}

/* The history level that binds (outbound, not lifted by allow_plaintext). */
static enum decide_level history_level(const struct decide_input *in)
{
	return in->direction == DECIDE_OUTBOUND && !in->override.allow_plaintext
		       ? in->history_level
		       : DECIDE_LEVEL_UNKNOWN;
}

/* What the destination demands, strongest first, or NONE. */
static enum decide_rule destination_rule(const struct decide_input *in)
{
	bool outbound = in->direction == DECIDE_OUTBOUND;

	if (outbound && (in->dane == DECIDE_DANE_USABLE || in->dane == DECIDE_DANE_UNUSABLE))
		return DECIDE_RULE_DANE;
	if (outbound && in->override.require_dane)
		return DECIDE_RULE_POLICY_REQUIRE_DANE;
	if (outbound && in->override.require_tls)
		return DECIDE_RULE_POLICY_REQUIRE_TLS;
	if (history_level(in) >= DECIDE_LEVEL_TLS)
		return DECIDE_RULE_HISTORY;
	return DECIDE_RULE_NONE;
}

bool decide_may_require(const struct decide_input *in)
{
	bool outbound = in->direction == DECIDE_OUTBOUND;

	/* a lock or a failed DANE lookup blocks before anything is said */
	return secure_rule(in) != DECIDE_RULE_NONE || destination_rule(in) != DECIDE_RULE_NONE ||
	       (outbound && in->dane == DECIDE_DANE_FAILED) ||
	       (outbound && in->history_locked && !in->override.allow_plaintext) ||
	       later_rule(in) != DECIDE_RULE_NONE;
}

struct decision decide(const struct decide_input *in)
{
	bool outbound = in->direction == DECIDE_OUTBOUND;
	bool relax_history = in->override.allow_plaintext;
	enum decide_rule secure = secure_rule(in), req = destination_rule(in);
	enum decide_level hist = history_level(in);
	enum decide_dane dane = outbound ? in->dane : DECIDE_DANE_NONE;
	enum decide_level observed = DECIDE_LEVEL_UNKNOWN;
	enum decide_reason how;
	struct decision d;

	/* Known before anything is said. */
	if (outbound && in->history_locked && !relax_history)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_HISTORY_LOCKED, DECIDE_RULE_HISTORY,
			       observed);
	if (dane == DECIDE_DANE_FAILED)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_LOOKUP_FAILED, DECIDE_RULE_DANE,
			       observed);
	if (outbound && in->override.require_dane && dane != DECIDE_DANE_USABLE)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_MISSING,
			       DECIDE_RULE_POLICY_REQUIRE_DANE, observed);
	/* A fresh probe of this address found a certificate that does not
	 * match: known before the handshake, so said in SMTP (the gateway
	 * answers STARTTLS itself), not as a bare reset after it. */
	if (in->phase == DECIDE_PHASE_CONNECT && dane == DECIDE_DANE_USABLE &&
	    in->probe == DECIDE_PROBE_FAILED &&
	    in->probe_age_s <= policy_dane_probe_max_age(in->policy))
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_PROBE_MISMATCH,
			       DECIDE_RULE_DANE, observed);
	if (hist == DECIDE_LEVEL_DANE && dane != DECIDE_DANE_USABLE) {
		/* TLSA gone where DANE worked before: below the remembered level */
		d = verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_MISSING, DECIDE_RULE_HISTORY,
			    observed);
		d.lock_destination = true;
		return d;
	}

	/* Threat model rule 1: what the gateway cannot follow blocks every
	 * flow that could still carry a requirement; only the others pass. */
	if (in->blind != DECIDE_REASON_PENDING) {
		enum decide_rule r = req != DECIDE_RULE_NONE	 ? req
				     : secure != DECIDE_RULE_NONE ? secure
								  : later_rule(in);
		if (r != DECIDE_RULE_NONE) {
			d = verdict(in, DECIDE_BLOCK_TEMP, in->blind, r, observed);
			return d;
		}
		return verdict(in, DECIDE_PASS, in->blind, DECIDE_RULE_NONE, observed);
	}

	switch (in->phase) {
	case DECIDE_PHASE_CONNECT:
		break;
	case DECIDE_PHASE_MAIL:
	case DECIDE_PHASE_RCPT:
	case DECIDE_PHASE_DATA:
		/* the client starts a transaction without TLS */
		observed = DECIDE_LEVEL_PLAINTEXT;
		if (!in->starttls_offered)
			how = DECIDE_REASON_STARTTLS_NOT_OFFERED;
		else if (in->starttls_issued && in->starttls_reply != 220)
			how = DECIDE_REASON_STARTTLS_REFUSED;
		else
			how = DECIDE_REASON_STARTTLS_NOT_ISSUED;
		if (req != DECIDE_RULE_NONE) {
			d = verdict(in, DECIDE_BLOCK_TEMP, how, req, observed);
			d.lock_destination = hist >= DECIDE_LEVEL_TLS;
			return d;
		}
		if (secure != DECIDE_RULE_NONE)
			return verdict(in, DECIDE_BLOCK_PERM, how, secure, observed);
		/* allowed; final only when no later command line can matter:
		 * a secure-mode MAIL FROM, or (outbound) a RCPT TO of a domain
		 * that requires TLS */
		if (outbound ? !policy_has_secure_sender_domains(in->policy) &&
				       !policy_has_required_domains(in->policy)
			     : !policy_has_secure_recipient_domains(in->policy))
			return verdict(in, DECIDE_PASS, DECIDE_REASON_PLAINTEXT_ALLOWED, DECIDE_RULE_NONE,
				       observed);
		d = verdict(in, DECIDE_CONTINUE, DECIDE_REASON_PLAINTEXT_ALLOWED, DECIDE_RULE_NONE,
			    observed);
		if (in->must_judge) /* a later command could name a requirement */
			d = verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_LIMIT, later_rule(in),
				    observed);
		return d;
	case DECIDE_PHASE_TLS: {
		enum decide_rule weak = DECIDE_RULE_NONE;

		if (in->tls_version == 0)
			break; /* handshake not judged yet */
		if (in->tls_version < policy_min_tls_version(in->policy)) {
			weak = DECIDE_RULE_MIN_VERSION;
			how = DECIDE_REASON_TLS_VERSION_LOW;
		} else if (policy_cipher_banned(in->policy, in->tls_cipher)) {
			weak = DECIDE_RULE_BANNED_CIPHER;
			how = DECIDE_REASON_CIPHER_BANNED;
		}
		if (weak != DECIDE_RULE_NONE) {
			/* "as plaintext" */
			observed = DECIDE_LEVEL_PLAINTEXT;
			if (req != DECIDE_RULE_NONE) {
				d = verdict(in, DECIDE_BLOCK_TEMP, how, req, observed);
				d.lock_destination = hist >= DECIDE_LEVEL_TLS;
				return d;
			}
			if (secure != DECIDE_RULE_NONE)
				return verdict(in, DECIDE_BLOCK_PERM, how, secure, observed);
			/* Inside TLS the envelope is hidden: when the policy
			 * names secure-mode sender (or recipient) domains or
			 * domains that require TLS, a weak handshake may carry
			 * their mail. Reset it: an MTA at "may" retries in
			 * plaintext (Postfix after its backoff), where MAIL FROM
			 * and RCPT TO are judged; one at "encrypt" defers. */
			if (later_rule(in) != DECIDE_RULE_NONE)
				return verdict(in, DECIDE_BLOCK_TEMP, how, later_rule(in), observed);
			return verdict(in, DECIDE_PASS, DECIDE_REASON_WEAK_TLS_ALLOWED, weak, observed);
		}
		observed = DECIDE_LEVEL_TLS;
		if (dane == DECIDE_DANE_USABLE) {
			bool visible = in->tls_version <= POLICY_TLS_1_2 && in->cert != DECIDE_CERT_UNSEEN;
			bool fresh = in->probe_age_s <= policy_dane_probe_max_age(in->policy);

			if (visible && in->cert == DECIDE_CERT_MISMATCH)
				return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_MISMATCH,
					       DECIDE_RULE_DANE, observed);
			if (!visible && in->probe == DECIDE_PROBE_FAILED && fresh)
				return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_PROBE_MISMATCH,
					       DECIDE_RULE_DANE, observed);
			if (!visible && !(in->probe == DECIDE_PROBE_VERIFIED && fresh)) {
				d = verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_DANE_UNVERIFIED,
					    DECIDE_RULE_DANE, observed);
				d.want_probe = true;
				return d;
			}
			observed = DECIDE_LEVEL_DANE;
		}
		if (observed < hist ||
		    (hist >= DECIDE_LEVEL_TLS && in->tls_version < in->history_version)) {
			d = verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_HISTORY_DOWNGRADE,
				    DECIDE_RULE_HISTORY, observed);
			d.lock_destination = true;
			return d;
		}
		if (observed == DECIDE_LEVEL_DANE)
			return verdict(in, DECIDE_PASS,
				       in->tls_version <= POLICY_TLS_1_2 && in->cert == DECIDE_CERT_MATCH
					       ? DECIDE_REASON_DANE_VERIFIED
					       : DECIDE_REASON_DANE_VERIFIED_BY_PROBE,
				       DECIDE_RULE_DANE, observed);
		return verdict(in, DECIDE_PASS, DECIDE_REASON_TLS_OK, req, observed);
	}
	}
	/* nothing decisive seen yet */
	if (!in->must_judge)
		return verdict(in, DECIDE_CONTINUE, DECIDE_REASON_PENDING, DECIDE_RULE_NONE, observed);
	if (req != DECIDE_RULE_NONE)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_LIMIT, req, observed);
	if (secure != DECIDE_RULE_NONE)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_LIMIT, secure, observed);
	if (later_rule(in) != DECIDE_RULE_NONE)
		return verdict(in, DECIDE_BLOCK_TEMP, DECIDE_REASON_LIMIT, later_rule(in), observed);
	return verdict(in, DECIDE_PASS, DECIDE_REASON_LIMIT, DECIDE_RULE_NONE, observed);
}
