/* decide.h - the verdict of the DESIGN.md table as a pure function.
 *
 * decide() looks only at its input (no I/O, no globals, no allocation,
 * no clock): the caller gathers sender mode, destination knowledge (DANE,
 * TLS history, policy override) and what the connection did so far, and
 * calls it again whenever something that can change the verdict was seen.
 * It never fails; every input combination has a verdict.
 *
 * When to call (phase):
 *   CONNECT  flow start: addresses and destination known, nothing said.
 *   MAIL     the client sends MAIL FROM while the dialog is plaintext
 *            (sender domain known): the point where plaintext transfer
 *            would begin, so "STARTTLS not offered / refused (454) / not
 *            issued" is judged here from the starttls_* fields.
 *   RCPT     the client sends RCPT TO in plaintext (inbound: recipient).
 *   DATA     the client sends DATA or BDAT in plaintext.
 *   TLS      the TLS handshake was judged (version, cipher, certificate).
 * A block in CONNECT..DATA is answered in SMTP (reply_in_smtp, smtp_reply:
 * withhold the client's command, inject the reply, reset the server side);
 * a block in TLS resets both sides (smtp_reply empty).
 *
 * Outbound, destination knowledge makes TLS required: DANE (usable TLSA:
 * certificate must match; unusable TLSA: TLS without authentication, RFC
 * 7672 section 2.2), TLS history (level reached before, never less
 * afterwards: a connection below it is blocked temporarily and the
 * destination locked, lock_destination), or the policy override.
 * allow_plaintext lifts history requirements and locks, never DANE and
 * never secure mode. Inbound, the server is ours: destination knowledge is
 * ignored, only secure-mode recipients (and a sender mode the caller set)
 * count.
 *
 * Secure mode without any destination requirement blocks plaintext (or
 * TLS below the policy's minimum or with a banned cipher) permanently
 * (550 5.7.4); with a requirement the failure is temporary like for
 * everyone (451). Temporary codes: 451 4.7.4 (security features not
 * supported: STARTTLS missing, weak TLS, history), 451 4.7.5
 * (cryptographic failure: DANE certificate mismatch, DANE lookup bogus,
 * TLSA missing where required, TLS 1.3 to a DANE host without a fresh
 * verifying probe).
 *
 * TLS 1.3 (and TLS 1.2 resumption) hides the server certificate: for DANE
 * the probe's verification of the same MX address within the policy's
 * dane_probe_max_age decides; none or stale gives a temporary block and
 * want_probe.
 *
 * Limitation: once TLS runs, MAIL FROM and RCPT TO are encrypted, so a
 * secure-mode sender *domain* or recipient cannot be recognised on a weak
 * TLS connection; only secure mode by source address is seen there. */
#ifndef TLSGATE_DECIDE_H
#define TLSGATE_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

#define DECIDE_REPLY_MAX 512 /* RFC 5321 reply line, CRLF included */
#define DECIDE_TEXT_MAX 400

enum decide_action {
	DECIDE_CONTINUE,   /* keep inspecting: the verdict may still change */
	DECIDE_PASS,       /* final: offload the flow */
	DECIDE_BLOCK_TEMP, /* final: 451, the sender retries later */
	DECIDE_BLOCK_PERM, /* final: 550, the sender bounces */
};

enum decide_direction { DECIDE_OUTBOUND, DECIDE_INBOUND };

enum decide_sender {
	DECIDE_SENDER_NORMAL,
	DECIDE_SENDER_SECURE_DOMAIN, /* envelope sender domain in secure mode */
	DECIDE_SENDER_SECURE_SOURCE, /* source address in secure mode */
};

/* DANE state of the MX from the resolver (unbound's three answers kept
 * apart: secure with records, insecure or none, bogus). */
enum decide_dane {
	DECIDE_DANE_NONE,     /* no TLSA, or zone not DNSSEC-signed */
	DECIDE_DANE_USABLE,   /* DNSSEC-valid TLSA with usable records */
	DECIDE_DANE_UNUSABLE, /* DNSSEC-valid TLSA, none usable: TLS required */
	DECIDE_DANE_FAILED,   /* lookup bogus or failed: defer (RFC 7672 2.1.1) */
};

/* Ordered: a higher level is better protection. */
enum decide_level {
	DECIDE_LEVEL_UNKNOWN = 0,
	DECIDE_LEVEL_PLAINTEXT,
	DECIDE_LEVEL_TLS,
	DECIDE_LEVEL_DANE,
};

enum decide_phase {
	DECIDE_PHASE_CONNECT,
	DECIDE_PHASE_MAIL,
	DECIDE_PHASE_RCPT,
	DECIDE_PHASE_DATA,
	DECIDE_PHASE_TLS,
};

/* Certificate against TLSA, as seen on the wire (TLS <= 1.2 only). */
enum decide_cert { DECIDE_CERT_UNSEEN, DECIDE_CERT_MATCH, DECIDE_CERT_MISMATCH };

/* The probe's own DANE verification of this MX address. */
enum decide_probe { DECIDE_PROBE_NONE, DECIDE_PROBE_VERIFIED, DECIDE_PROBE_FAILED };

/* What happened (or what is still awaited). */
enum decide_reason {
	DECIDE_REASON_PENDING,              /* nothing decisive yet */
	DECIDE_REASON_PLAINTEXT_ALLOWED,    /* no requirement, normal sender */
	DECIDE_REASON_WEAK_TLS_ALLOWED,     /* weak TLS counted as plaintext */
	DECIDE_REASON_TLS_OK,
	DECIDE_REASON_DANE_VERIFIED,        /* certificate matched on the wire */
	DECIDE_REASON_DANE_VERIFIED_BY_PROBE,
	DECIDE_REASON_STARTTLS_NOT_OFFERED,
	DECIDE_REASON_STARTTLS_REFUSED,
	DECIDE_REASON_STARTTLS_NOT_ISSUED,
	DECIDE_REASON_TLS_VERSION_LOW,
	DECIDE_REASON_CIPHER_BANNED,
	DECIDE_REASON_DANE_MISMATCH,
	DECIDE_REASON_DANE_PROBE_MISMATCH,
	DECIDE_REASON_DANE_UNVERIFIED,      /* cert hidden, no fresh probe */
	DECIDE_REASON_DANE_LOOKUP_FAILED,
	DECIDE_REASON_DANE_MISSING,         /* required DANE but no usable TLSA */
	DECIDE_REASON_HISTORY_DOWNGRADE,    /* below the remembered level/version */
	DECIDE_REASON_HISTORY_LOCKED,
	DECIDE_REASON_LIMIT,                /* a bound was reached, or data was lost */
	/* The gateway cannot follow the dialog as both endpoints will read it
	 * (DESIGN.md, threat model rule 1): set as decide_input.blind. */
	DECIDE_REASON_NOT_SMTP,             /* the dialog stopped being SMTP */
	DECIDE_REASON_OVERLAP_CONFLICT,     /* retransmitted bytes differ */
	DECIDE_REASON_INJECTION,            /* bytes around STARTTLS out of turn */
	DECIDE_REASON_TLS_FAILED,           /* handshake failed, dialog not followed */
	DECIDE_REASON_URGENT_DATA,          /* TCP urgent data (receivers differ) */
	DECIDE_REASON_AMBIGUOUS_DATA_END,   /* servers disagree where DATA ends */
	DECIDE_REASON_UNSEEN_DATA,          /* the receiver may read bytes not seen */
	DECIDE_REASON_MIDSTREAM,            /* plaintext dialog picked up mid-stream:
					       its earlier commands are unseen */
	DECIDE_REASON_MAX,
};

/* Why it mattered: the rule that made the verdict. */
enum decide_rule {
	DECIDE_RULE_NONE,
	DECIDE_RULE_DANE,
	DECIDE_RULE_HISTORY,
	DECIDE_RULE_POLICY_REQUIRE_TLS,
	DECIDE_RULE_POLICY_REQUIRE_DANE,
	DECIDE_RULE_SECURE_SENDER_DOMAIN,
	DECIDE_RULE_SECURE_SENDER_SOURCE,
	DECIDE_RULE_SECURE_RECIPIENT,
	DECIDE_RULE_MIN_VERSION,
	DECIDE_RULE_BANNED_CIPHER,
	DECIDE_RULE_MAX,
};

struct decide_input {
	enum decide_direction direction;
	enum decide_sender sender;
	bool recipient_secure;        /* inbound: a recipient so far is secure-mode */
	const char *sender_domain;    /* for the text; may be NULL */
	const char *recipient_domain; /* for the text; may be NULL */

	/* destination (the server side of the connection) */
	const char *mx_name; /* may be NULL or "" (address only) */
	int af;              /* AF_INET or AF_INET6 */
	uint8_t addr[16];    /* network order; IPv4 in the first 4 bytes */
	enum decide_dane dane;
	enum decide_level history_level; /* highest level seen before */
	uint16_t history_version;        /* best TLS version seen, 0 unknown */
	bool history_locked;             /* locked by an earlier downgrade */
	struct policy_override override; /* all false: none */
	const struct policy *policy;     /* minimum version, ciphers; NULL: defaults */

	/* the connection so far */
	enum decide_phase phase;
	bool starttls_offered;
	bool starttls_issued;
	int starttls_reply;   /* reply code to STARTTLS, 0 if none */
	uint16_t tls_version; /* 0x0303 = TLS 1.2 */
	uint16_t tls_cipher;
	enum decide_cert cert;
	enum decide_probe probe;
	uint64_t probe_age_s;
	bool must_judge; /* a bound was reached: CONTINUE is not an answer */
	/* Not PENDING: the gateway can no longer follow the dialog, for this
	 * reason (one of LIMIT .. UNSEEN_DATA). A flow that could still carry
	 * a requirement - the destination's, the sender's or recipient's
	 * secure mode, or one a later command could name under the policy -
	 * is blocked temporarily and reset (no SMTP reply: the framing is
	 * not known); only a flow for which nothing can be required passes. */
	enum decide_reason blind;
};

struct decision {
	enum decide_action action;
	enum decide_reason reason;
	enum decide_rule rule;
	enum decide_level observed; /* level this connection reached, for history */
	bool lock_destination;      /* below the history level: lock until released */
	bool want_probe;            /* schedule a probe of this MX */
	bool reply_in_smtp;         /* block while plaintext: inject smtp_reply */
	char smtp_reply[DECIDE_REPLY_MAX]; /* "451 4.7.4 ...\r\n" or "" */
	char text[DECIDE_TEXT_MAX];        /* one line naming the MX and the rule */
};

struct decision decide(const struct decide_input *in);
/* True when something could still be required of this flow: the
 * destination's DANE, history or policy, secure mode, or a command still
 * to come under the policy (the flows DESIGN.md's threat model says fail
 * closed). */
bool decide_may_require(const struct decide_input *in);

/* Stable names for logs and events ("starttls-not-offered", "tls-history"). */
const char *decide_action_name(enum decide_action a);
const char *decide_reason_name(enum decide_reason r);
const char *decide_rule_name(enum decide_rule r);
const char *decide_level_name(enum decide_level l);

#endif
