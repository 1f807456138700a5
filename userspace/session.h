/* session.h - the passive inspection engine for one TCP connection on an
 * SMTP port: TCP reassembly per direction, the SMTP dialog, STARTTLS and the
 * TLS handshake, seen from packets alone exactly as both endpoints see them.
 *
 * Used by tlsgated (one session per tracked flow, fed from NFQUEUE) and by
 * tlsgate-replay (fed from a pcap). The engine never blocks, never allocates
 * beyond its limits, and never calls fatal(): hostile input ends in an
 * anomaly flag or a SESSION_LIMIT action.
 *
 * Contract with the daemon: after every segment the caller looks at the
 * returned action and at session_info(); the policy layer decides from the
 * info, the engine only reports. */
#ifndef TLSGATE_SESSION_H
#define TLSGATE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsgate_shared.h"

/* Per-direction bounds. Defaults: 4 KiB of SMTP dialog, 64 KiB for a TLS
 * certificate flight. */
struct session_limits {
	size_t dialog_bytes;
	size_t tls_bytes;
};
#define SESSION_DIALOG_BYTES_DEFAULT 4096
#define SESSION_TLS_BYTES_DEFAULT (64 * 1024)

/* TCP header flags as on the wire. */
#define SESSION_TCP_FIN 0x01
#define SESSION_TCP_SYN 0x02
#define SESSION_TCP_RST 0x04
#define SESSION_TCP_PSH 0x08
#define SESSION_TCP_ACK 0x10

struct tcp_segment {
	enum tlsgate_dir dir;
	uint32_t seq;
	uint32_t ack;
	uint8_t flags; /* SESSION_TCP_* */
	uint16_t window;
	const uint8_t *payload; /* only valid during session_segment() */
	size_t len;
	uint64_t ts_ns; /* capture or arrival time */
};

enum session_action {
	SESSION_CONTINUE, /* keep sending this flow's packets */
	SESSION_OFFLOAD,  /* nothing more to see: TLS handshake judged (or
			     failed); the flow may stay in the kernel */
	SESSION_LIMIT,    /* a bound was reached before a verdict: the caller
			     must judge the flow now (never a silent pass) */
	SESSION_CLOSED,   /* the connection ended (FIN both ways, or RST) */
};

enum session_phase {
	SESSION_PHASE_START,     /* before the server greeting */
	SESSION_PHASE_SMTP,      /* plaintext dialog */
	SESSION_PHASE_STARTTLS,  /* STARTTLS issued, reply pending */
	SESSION_PHASE_TLS_HANDSHAKE,
	SESSION_PHASE_TLS,       /* handshake done or encrypted from here on */
	SESSION_PHASE_NOT_SMTP,  /* speaks something else (IMAP, implicit TLS, ...) */
	SESSION_PHASE_CLOSED,
};

/* What has been seen so far. Strings are NUL-terminated, empty when not
 * seen; pointers stay valid until the next session_segment() or
 * session_free(). */
struct session_info {
	enum session_phase phase;
	bool midstream; /* picked up without the TCP handshake */
	char ehlo_name[256];
	bool starttls_offered;  /* in the EHLO reply */
	bool starttls_issued;   /* client sent STARTTLS */
	bool starttls_accepted; /* server answered 220 */
	int starttls_reply;     /* reply code to STARTTLS, 0 if none */
	uint16_t tls_version;   /* negotiated, e.g. 0x0304; 0 if unknown */
	uint16_t tls_cipher;    /* IANA value; 0 if unknown */
	char sni[256];
	bool tls_established;   /* handshake completed without fatal alert */
	/* Engine-specific details (capabilities, envelope, certificate chain,
	 * anomalies, end reason) are in the full summary: session_summary_json */
};

struct session;

/* Returns a new session, or NULL on allocation failure. limits may be NULL
 * for the defaults. midstream: the first segment seen is not a SYN. */
struct session *session_new(const struct session_limits *limits, bool midstream);
void session_free(struct session *s); /* accepts NULL */

/* Feeds one TCP segment. Never fails; see enum session_action. */
enum session_action session_segment(struct session *s, const struct tcp_segment *seg);

const struct session_info *session_info(const struct session *s);

/* Bytes of heap the session holds now (for the per-flow memory figure). */
size_t session_memory(const struct session *s);

#endif
