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
 * certificate flight.
 *
 * dialog_bytes bounds the reassembly window of each direction while the
 * dialog is plaintext (buffered, not yet parsed bytes incl. out-of-order
 * data); from STARTTLS 220 (or implicit TLS) on, the window is tls_bytes.
 * Message content and encrypted records are skipped, never buffered. In
 * TLS, one incomplete handshake message per direction may hold up to
 * tls_bytes more (a certificate spanning records), and the server's
 * Certificate message is kept (up to tls_bytes) for DANE. The envelope is
 * bounded: 16 transactions, 32 recipients each, 4 KiB of
 * addresses (more are flagged, not stored). Total: about 2 * dialog_bytes
 * + 11 KiB in plaintext, at most 5 * tls_bytes + 16 KiB with TLS (336 KiB
 * with the defaults, typically a few KiB: buffers grow only as needed).
 * At a bound, before the verdict, the session returns SESSION_LIMIT. */
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
#define SESSION_TCP_URG 0x20

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
	const char *ehlo_name;  /* last HELO/EHLO/LHLO name, at most 255 chars */
	bool starttls_offered;  /* in the EHLO reply */
	bool starttls_issued;   /* client sent STARTTLS */
	bool starttls_accepted; /* server answered 220 */
	int starttls_reply;     /* reply code to STARTTLS, 0 if none */
	uint16_t tls_version;   /* negotiated, e.g. 0x0304; 0 if unknown */
	uint16_t tls_cipher;    /* IANA value; 0 if unknown */
	const char *sni;        /* at most 255 characters */
	bool tls_established;   /* handshake completed without fatal alert */
	/* Extensions (engine round 1): */
	bool tls_judged;        /* the server's handshake flight is complete
				   (TLS 1.3: ServerHello; <= 1.2: ServerHelloDone,
				   or ChangeCipherSpec when resumed) or failed:
				   what a verdict may rely on. tls_established
				   (Zeek's sense: encrypted data flowed both ways
				   after the handshake) usually follows later. */
	bool tls_failed;        /* fatal alert, or not TLS after STARTTLS 220 */
	bool tls_hrr;           /* HelloRetryRequest seen */
	bool tls_resumed;       /* abbreviated handshake (session resumption) */
	unsigned int smtp_caps; /* enum smtp_cap bits of the last EHLO reply */
	unsigned int anomalies; /* enum session_anomaly bits */
	unsigned int cert_count; /* server certificates seen (TLS <= 1.2) */
	/* Engine-specific details (capabilities, envelope, certificate chain,
	 * anomalies, end reason) are in the full summary: session_summary_json */
};

/* Anomalies: flagged, never acted upon by the engine (policy decides). */
enum session_anomaly {
	SESSION_ANOM_OVERLAP_CONFLICT = 1u << 0,  /* retransmission with different bytes */
	SESSION_ANOM_STARTTLS_INJECTION = 1u << 1, /* client bytes after STARTTLS before its reply */
	SESSION_ANOM_SERVER_EARLY = 1u << 2,      /* server data before the client's STARTTLS
						     was answered / before the ClientHello */
	SESSION_ANOM_TLS_NOT_SMTP = 1u << 3,      /* TLS where SMTP is expected (implicit TLS) */
	SESSION_ANOM_LINE_TOO_LONG = 1u << 4,     /* line over the RFC 5321 limit */
	SESSION_ANOM_BARE_LF = 1u << 5,           /* line ended by LF alone (tolerated) */
	SESSION_ANOM_BAD_REPLY = 1u << 6,         /* server line that is not a reply
						     (skipped, as Postfix's client does) */
	SESSION_ANOM_UNSOLICITED_REPLY = 1u << 7, /* reply with no command pending */
	SESSION_ANOM_PIPELINE_OVERFLOW = 1u << 8, /* more pending commands than tracked */
	SESSION_ANOM_RCPT_WITHOUT_MAIL = 1u << 9,
	SESSION_ANOM_TLS_GARBAGE = 1u << 10,      /* not TLS where TLS must be */
	SESSION_ANOM_TLS_FATAL_ALERT = 1u << 11,
	SESSION_ANOM_SSLV2 = 1u << 12,
	SESSION_ANOM_SSLV3 = 1u << 13,
	SESSION_ANOM_TLS_RECORD_OVERSIZED = 1u << 14,
	SESSION_ANOM_REASM_LOST = 1u << 15,       /* data dropped at a bound (gap) */
	SESSION_ANOM_ENVELOPE_TRUNCATED = 1u << 16, /* more addresses than recorded */
	SESSION_ANOM_NOT_SMTP = 1u << 17,         /* the dialog is not SMTP: the server's
						     first bytes are TLS or another
						     protocol's banner (SSH, HTTP, IMAP,
						     POP3, XMPP); the session stops
						     reading the dialog */
	SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS = 1u << 18, /* not TLS after STARTTLS's 220
							     (either side): the plaintext
							     dialog is read on */
	SESSION_ANOM_MIDSTREAM = 1u << 19,        /* picked up without the handshake */
	SESSION_ANOM_HTTP_CONNECT = 1u << 20,     /* SMTP inside an HTTP CONNECT tunnel */
	SESSION_ANOM_URGENT_DATA = 1u << 21,      /* TCP URG: receivers differ on the byte */
	SESSION_ANOM_UNSEEN_DATA = 1u << 22,      /* the receiver may read bytes not seen here
						     (data on SYN it acknowledged, a hole
						     acknowledged) */
	SESSION_ANOM_AMBIGUOUS_END_OF_DATA = 1u << 23, /* message content holds a "." that
							  some servers take as the end of
							  data and others not (<LF>.<LF>,
							  <LF>.<CR><LF>, <CR><LF>.<LF>,
							  <CR>.<CR><LF>, ".<CR>x", ...):
							  where the server's data ends is
							  unknown. Raised in the segment
							  that completes the sequence; the
							  session reads on as content up
							  to <CR><LF>.<CR><LF>, the one
							  end every server honours. */
};
#define SESSION_ANOM_COUNT 24
/* Short snake_case name of one anomaly bit, e.g. "starttls_injection". */
const char *session_anomaly_name(unsigned int bit);

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

/* The server's DER certificate chain as sent (TLS <= 1.2 only; leaf
 * first), for DANE. Returns NULL when i >= info.cert_count. The pointer
 * stays valid until session_free(). */
const uint8_t *session_cert_der(const struct session *s, unsigned int i, size_t *len);

/* Called for every client command line the engine parses in the plaintext
 * dialog, in order, from within session_segment(): the policy layer judges
 * MAIL, RCPT and DATA as the segment that completes them arrives, before it
 * is forwarded. verb is an enum smtp_verb; addr is the MAIL FROM / RCPT TO
 * path without angle brackets ("" for <> and for other verbs, and when the
 * path does not parse), valid only during the call. The "." that ends DATA
 * content is reported too, as SMTP_VERB_END_OF_DATA. Nothing is stored, so
 * any number of pipelined commands is reported. fn NULL: no callback. */
typedef void (*session_command_fn)(void *arg, int verb, const char *addr);
void session_set_command_cb(struct session *s, session_command_fn fn, void *arg);

/* Message content in the kernel (TLSGATE_CONTENT). session_content_ready()
 * is true when the client is inside DATA content (after 354, not BDAT),
 * everything it sent so far has arrived in order, and no partial line held
 * here begins with '.': the bytes from *next_seq on may pass unseen until
 * a '.' follows a CR or LF. *line_end says whether the byte before
 * *next_seq is a CR or LF.
 * session_content_skip() then tells the session that the client's bytes
 * up to seq passed as content, the last one an LF or not (after a lone CR
 * the line goes on, as the session's lines end at LF); parsing goes on
 * from seq, at a line start only after an LF. A seq at or before what the
 * session already has changes nothing; more than 2^31 - 1 bytes ahead is
 * taken as behind. A skip the reassembly cannot make is flagged as a loss
 * (SESSION_LIMIT). From the first skip on, the client's reassembly window
 * is 4 * tls_bytes (256 KiB with the defaults, allocated only as
 * out-of-order data needs it): segments the kernel returns can arrive out
 * of order by up to two GRO aggregates. */
bool session_content_ready(const struct session *s, uint32_t *next_seq, bool *line_end);
void session_content_skip(struct session *s, uint32_t seq, bool after_lf);
/* After session_content_skip(): the bytes the kernel passed ended with the
 * end of data (TLSGATE_CONTENT_ENDED). The session is back in commands and
 * owes the server's reply to it; no END_OF_DATA command is reported (the
 * data was not withheld). Nothing unless the session was in content. */
void session_content_ended(struct session *s);
/* The client is inside message content (DATA after 354) as this session
 * reads it. */
bool session_in_data(const struct session *s);
/* The same for a BDAT chunk (RFC 3030): true when the session has parsed a
 * BDAT line and skips its chunk, of which the bytes from *next_seq to
 * *chunk_end have not arrived yet. They may pass in the kernel unseen (and
 * unscanned: a chunk's bytes are data whatever they hold); the segment that
 * reaches past *chunk_end comes back. session_content_skip() then is
 * called as for DATA (the session has skipped ahead already). */
bool session_chunk_ready(const struct session *s, uint32_t *next_seq, uint32_t *chunk_end);
/* With both streams read to their ends and nothing held (no partial line,
 * no hole, no FIN), at *client_next and *server_next, what the server's
 * next bytes are as the client will read them (struct tlsgate_await):
 *   TLSGATE_AWAIT_354: replies to *skip commands of one-line replies (MAIL,
 *     RCPT, RSET, NOOP, HELO; fewer than TLSGATE_AWAIT_SKIP_MAX), then the
 *     reply to DATA, the last command;
 *   TLSGATE_AWAIT_REPLY: the reply to MAIL or RCPT, the one command not
 *     answered;
 *   TLSGATE_AWAIT_DATA: nothing is owed (the client's next command's);
 * 0: none of these. */
int session_await_stage(const struct session *s, uint32_t *client_next, uint32_t *server_next,
			unsigned int *skip);
/* The server's next sequence number after what arrived in order. */
bool session_server_next(const struct session *s, uint32_t *seq);
/* The client's next sequence number after what the session has without a
 * hole (arrived in order, or filled in since). */
bool session_client_next(const struct session *s, uint32_t *seq);
/* The client sent bytes the session cannot read yet: it waits for the
 * server's reply to STARTTLS or DATA (or the greeting) to know whether
 * they are commands, content or TLS. *held_from: the first such byte's
 * sequence number. An honest client sends nothing there before the reply. */
bool session_client_waiting(const struct session *s, uint32_t *held_from);
/* Client commands (and ends of data) the server has not answered yet. */
unsigned int session_replies_owed(const struct session *s);
/* True while a BDAT chunk has not all arrived; *chunk_end is its end. */
bool session_chunk_pending(const struct session *s, uint32_t *chunk_end);
/* True while neither side has sent data, FIN or RST: only then can a SYN
 * with the flow's first sequence number be a retransmission of it. */
bool session_in_handshake(const struct session *s);
/* Diagnostics: fn gets every client byte the session consumed, in stream
 * order - what it judged the server reads (unseen: bytes skipped before
 * they arrived, e.g. a BDAT chunk, counted only). NULL: off. */
void session_set_client_tap(struct session *s,
			    void (*fn)(void *arg, const uint8_t *p, size_t n, uint64_t unseen),
			    void *arg);
/* Records that the caller gave up on the flow (idle timeout): the summary's
 * end becomes "timeout" unless the dialog already ended. */
void session_mark_timeout(struct session *s);
/* The receiver reads something other than what this session was given
 * (e.g. the kernel passed a segment with a bad checksum): flags
 * SESSION_ANOM_UNSEEN_DATA, which the gate reads as blind. */
void session_mark_unseen(struct session *s);

#endif
