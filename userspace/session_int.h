/* session_int.h - the session's internals, shared by session.c and
 * summary.c only (the JSON summary reads the envelope, chain and
 * capabilities). Everything else goes through session.h. */
#ifndef TLSGATE_SESSION_INT_H
#define TLSGATE_SESSION_INT_H

#include "reasm.h"
#include "session.h"
#include "tls_parse.h"

#define SESSION_MAX_TXNS 16
#define SESSION_MAX_RCPTS 32 /* per transaction */
#define SESSION_ENVELOPE_BYTES 4096
#define SESSION_MAX_CERTS 10
#define SESSION_MAX_PENDING 64
#define SESSION_FP_LEN 32

enum dir_mode {
	DIR_SMTP,     /* command or reply lines */
	DIR_WAIT,     /* client: waiting for the reply to STARTTLS / DATA */
	DIR_DATA,     /* client: message content up to "." */
	DIR_TLS,      /* TLS records */
	DIR_SCAN,     /* not SMTP: looking for a TLS hello, skipping the rest */
	DIR_SKIP,     /* nothing more to parse: bytes are skipped */
};

struct session_txn {
	char *mailfrom; /* NULL: no MAIL FROM in this transaction */
	char *rcpt[SESSION_MAX_RCPTS];
	unsigned int n_rcpt;
	int mail_reply, data_reply; /* reply codes, 0 if none */
	bool bdat;
};

struct session_dir {
	struct reasm r;
	enum dir_mode mode;
	bool skipping_line; /* inside an overlong line, dropping its bytes */
	bool data_line_start;
	uint8_t data_brk;   /* content: what precedes the held bytes (enum data_brk) */
	bool tls_first;     /* STARTTLS 220 / implicit TLS: this side's first
			       bytes are still to tell TLS from plaintext */
	bool lines_seen;    /* a line of this side was read (TLS is looked
			       for at a side's first bytes only) */
	bool seen_data;     /* any payload byte */
	bool fin;
	bool encrypted;     /* TLS: records from here on are protected */
	bool ccs;
	bool tls_seen;      /* at least one TLS record */
	bool sslv2_checked;
	bool synced;        /* mid-stream: found a place to start parsing */
	bool rcv_started;
	uint32_t rcv_next;  /* the sequence number after the bytes received in
			       order (or passed in the kernel) */
	struct tls_hs_buf hs;
	uint64_t bytes;
	/* Data on this side's SYN: held out of the stream (a receiver without
	 * TCP Fast Open drops it, and the sender sends it again); if the
	 * other side's first ACK covers it, the receiver read bytes that
	 * were never parsed here. */
	bool syn_data;
	uint32_t syn_data_end;
	bool fin_seq_known;
	uint32_t fin_next; /* the sequence number after the FIN */
};

/* What the TLS handshake shows, allocated at its first message (most
 * of a session's bytes; a plaintext dialog never needs them). */
struct session_tls {
	char sni[TLS_SNI_MAX + 1]; /* session_info's sni points here */
	char alpn[64];
	uint8_t client_sid[32];
	uint8_t client_sid_len;
	struct { uint32_t off, len; } cert[SESSION_MAX_CERTS];
	uint8_t cert_fp[SESSION_MAX_CERTS][SESSION_FP_LEN];
	uint8_t spki_fp[SESSION_MAX_CERTS][SESSION_FP_LEN];
	bool spki_ok[SESSION_MAX_CERTS];
	uint8_t client_cert_fp[SESSION_MAX_CERTS][SESSION_FP_LEN];
};

struct session {
	struct session_limits lim;
	struct session_info info;
	struct session_dir d[2]; /* index enum tlsgate_dir */
	bool greeted;
	bool http_client, http_server, http_status; /* HTTP CONNECT tunnel */
	/* Multi-line reply in progress. */
	bool in_reply;
	int reply_code;
	unsigned int reply_lines;
	unsigned int ehlo_caps;
	uint64_t bdat_pending; /* chunk bytes to skip after the BDAT line */
	/* TLS begun (STARTTLS's 220, or a client's first bytes TLS) and
	 * the server's first bytes not seen yet: they say how the server
	 * reads the client's (d[].tls_first). */
	bool tls_tentative;
	bool tls_implicit; /* ... begun by the client's first bytes */
	bool inject_held;  /* client bytes sent before STARTTLS's 220 are held */
	uint32_t inject_end; /* ... up to here */
	/* Commands awaiting replies (ring); for HELO/EHLO/LHLO/RSET the
	 * number of MAIL commands when they were sent (pend_txn). */
	uint8_t pending[SESSION_MAX_PENDING];
	uint32_t pend_txn[SESSION_MAX_PENDING];
	uint32_t txn_count; /* MAIL commands so far */
	unsigned int pend_head, pend_n;
	/* Envelope. */
	struct session_txn *txns; /* SESSION_MAX_TXNS, allocated on first MAIL */
	unsigned int n_txns;
	bool txn_open;
	size_t env_bytes;
	unsigned long txns_dropped, rcpts_dropped;
	/* TLS. */
	bool ch_seen, sh_seen, tls13;
	int last_alert; /* description of the last plaintext alert, -1 none */
	int last_alert_level;
	bool fatal_alert;
	struct session_tls *tls; /* NULL until the first handshake message */
	uint8_t *chain;   /* copy of the server Certificate message body */
	size_t chain_len;
	unsigned int n_certs;        /* non-zero only with tls */
	unsigned int n_client_certs; /* ditto */
	/* The caller's command callback (session_set_command_cb). */
	session_command_fn command_cb;
	void *command_arg;
	/* Outcome. */
	bool limit_hit;
	bool rst;
	bool quit;
	bool timeout;
};

#endif
