/* session.c - the passive inspection engine for one connection: TCP
 * reassembly per direction, the SMTP dialog as a state machine over both
 * directions, STARTTLS and the TLS handshake. See session.h.
 * DESIGN.md threat model, rule 2: the dialog is read as leniently as the
 * most lenient real MTA reads it (each such place names the MTA); where
 * receivers would read the same bytes as different commands (the end of
 * data, urgent data), the flow is flagged and blocked where anything can
 * be required of it (gate.c, rule 1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <strings.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "session_int.h"
#include "smtp_parse.h"

#define C TLSGATE_DIR_TO_SERVER /* client -> server */
#define S TLSGATE_DIR_TO_CLIENT /* server -> client */

/* Pending-reply entry for the end of message content ("."). */
#define PEND_DATA_END 200

/* An overlong line is dropped once this many bytes hold no line end. */
#define LINE_GIVE_UP 1024

static const char *const anomaly_names[SESSION_ANOM_COUNT] = {
	"overlap_conflict", "starttls_injection", "server_early",
	"tls_where_smtp_expected", "line_too_long", "bare_lf", "bad_reply",
	"unsolicited_reply", "pipeline_overflow", "rcpt_without_mail",
	"tls_garbage", "tls_fatal_alert", "sslv2", "sslv3",
	"tls_record_oversized", "reassembly_gap", "envelope_truncated",
	"not_smtp", "plaintext_after_starttls", "midstream", "http_connect",
	"urgent_data", "unseen_data", "ambiguous_end_of_data",
};

const char *session_anomaly_name(unsigned int bit)
{
	unsigned int i;

	for (i = 0; i < SESSION_ANOM_COUNT; i++)
		if (bit == 1u << i)
			return anomaly_names[i];
	return NULL;
}

static void flag(struct session *s, unsigned int a)
{
	s->info.anomalies |= a;
}

/* ---- the end of message content ----
 *
 * Servers disagree on where DATA ends (SMTP smuggling): RFC 5321 and the
 * strict ones (Exim since 4.97.1, Postfix 3.9 with smtpd_forbid_bare_newline
 * normalize or reject) only at <CR><LF>.<CR><LF>; Postfix before 3.9 (and
 * later with the setting "no") ends lines at a bare LF and strips every CR
 * before it (smtp_stream.c, smtp_get()), so <LF>.<LF>, <LF>.<CR><LF>,
 * <CR><LF>.<LF> and <CR><LF>.<CR><CR><LF> end it there; others take a bare
 * CR as a line end too (<CR>.<CR><LF>, <CR><LF>.<CR>x). A '.' between two
 * line breaks of any of these kinds other than the one every server honours
 * is ambiguous: the session cannot know where the server's data ended. It
 * raises SESSION_ANOM_AMBIGUOUS_END_OF_DATA as soon as the bytes make the
 * sequence, never ends the data there, and reads on up to
 * <CR><LF>.<CR><LF>. */
enum data_brk {
	BRK_NONE, /* inside a line */
	BRK_CRLF, /* after CR LF, or at the start of the content */
	BRK_LF,   /* after a bare LF */
	BRK_CR,   /* after a bare CR */
};

enum { DATA_PLAIN, DATA_END, DATA_AMBIGUOUS, DATA_UNDECIDED };

/* Scans content bytes p[0..n) - at most one line, its LF last if it has
 * one - that follow brk. DATA_END: the line is "." CRLF after CRLF, the
 * end of data; DATA_AMBIGUOUS: a '.' that only some servers take as the
 * end; DATA_UNDECIDED: it may be either once more bytes come, the
 * undecided tail is the last *keep bytes; DATA_PLAIN otherwise. */
static int data_scan(const uint8_t *p, size_t n, int brk, size_t *keep)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int prev;

		if (p[i] != '.')
			continue;
		prev = i == 0 ? brk : p[i - 1] == '\r' ? BRK_CR : BRK_NONE;
		if (prev == BRK_NONE)
			continue;
		if (i + 1 >= n)
			goto undecided;
		if (p[i + 1] == '\n')
			return DATA_AMBIGUOUS;
		if (p[i + 1] != '\r')
			continue;
		if (prev != BRK_CRLF)
			return DATA_AMBIGUOUS; /* ".<CR>" after a bare CR or LF */
		if (i + 2 >= n)
			goto undecided;
		return p[i + 2] == '\n' ? DATA_END : DATA_AMBIGUOUS;
undecided:
		if (keep)
			*keep = n - i;
		return DATA_UNDECIDED;
	}
	return DATA_PLAIN;
}

struct session *session_new(const struct session_limits *limits, bool midstream)
{
	struct session *s = calloc(1, sizeof(*s));
	int i;

	if (!s)
		return NULL;
	s->lim.dialog_bytes = limits && limits->dialog_bytes ? limits->dialog_bytes : SESSION_DIALOG_BYTES_DEFAULT;
	s->lim.tls_bytes = limits && limits->tls_bytes ? limits->tls_bytes : SESSION_TLS_BYTES_DEFAULT;
	for (i = 0; i < 2; i++) {
		reasm_init(&s->d[i].r, s->lim.dialog_bytes);
		tls_hs_buf_init(&s->d[i].hs, s->lim.tls_bytes);
		s->d[i].mode = DIR_SMTP;
	}
	s->info.phase = SESSION_PHASE_START;
	s->info.midstream = midstream;
	s->info.ehlo_name = "";
	s->info.sni = "";
	if (midstream)
		flag(s, SESSION_ANOM_MIDSTREAM);
	s->last_alert = -1;
	return s;
}

static void free_txns(struct session *s)
{
	unsigned int i, j;

	if (!s->txns)
		return;
	for (i = 0; i < s->n_txns; i++) {
		free(s->txns[i].mailfrom);
		for (j = 0; j < s->txns[i].n_rcpt; j++)
			free(s->txns[i].rcpt[j]);
	}
	free(s->txns);
}

void session_free(struct session *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < 2; i++) {
		reasm_release(&s->d[i].r);
		tls_hs_buf_release(&s->d[i].hs);
	}
	free_txns(s);
	free(s->chain);
	free(s->tls);
	if (s->info.ehlo_name[0])
		free((char *)s->info.ehlo_name);
	free(s);
}

const struct session_info *session_info(const struct session *s)
{
	return &s->info;
}

size_t session_memory(const struct session *s)
{
	size_t m = sizeof(*s) + s->env_bytes + s->chain_len + strlen(s->info.ehlo_name);
	int i;

	if (s->tls)
		m += sizeof(*s->tls);
	for (i = 0; i < 2; i++)
		m += reasm_memory(&s->d[i].r) + s->d[i].hs.cap;
	if (s->txns)
		m += SESSION_MAX_TXNS * sizeof(struct session_txn);
	return m;
}

const uint8_t *session_cert_der(const struct session *s, unsigned int i, size_t *len)
{
	if (i >= s->n_certs || !s->chain)
		return NULL;
	*len = s->tls->cert[i].len;
	return s->chain + s->tls->cert[i].off;
}

bool session_content_ready(const struct session *s, uint32_t *next_seq, bool *line_end)
{
	const struct session_dir *d;
	const uint8_t *p;
	size_t n;

	if (!s || s->info.phase != SESSION_PHASE_SMTP)
		return false;
	d = &s->d[C];
	if (d->mode != DIR_DATA || d->fin || !d->r.started || !reasm_in_order(&d->r))
		return false;
	p = reasm_peek(&d->r, &n);
	if (n && data_scan(p, n, d->data_brk, NULL) == DATA_UNDECIDED)
		return false; /* a '.' that may end the data for some server:
				 wait for the bytes after it */
	*next_seq = d->r.base + (uint32_t)n;
	/* Whole lines are consumed up to their LF: with nothing held, the
	 * last byte was one, unless an overlong line is being dropped. */
	*line_end = n ? (p[n - 1] == '\r' || p[n - 1] == '\n') : !d->skipping_line;
	return true;
}

bool session_server_next(const struct session *s, uint32_t *seq)
{
	if (!s || !s->d[S].rcv_started)
		return false;
	*seq = s->d[S].rcv_next;
	return true;
}

bool session_client_next(const struct session *s, uint32_t *seq)
{
	const struct session_dir *d;
	size_t n = 0;

	if (!s)
		return false;
	d = &s->d[C];
	if (!d->r.started && !d->rcv_started)
		return false;
	*seq = d->rcv_next;
	if (d->r.started) {
		/* in order from the reassembly's base on: what arrived ahead
		 * and has been filled in since counts too */
		reasm_peek(&d->r, &n);
		if (!d->rcv_started || (int32_t)(d->r.base + (uint32_t)n - *seq) > 0)
			*seq = d->r.base + (uint32_t)n;
	}
	return true;
}

unsigned int session_replies_owed(const struct session *s)
{
	return s ? s->pend_n : 0;
}

bool session_chunk_pending(const struct session *s, uint32_t *chunk_end)
{
	const struct session_dir *d;

	if (!s || s->info.phase != SESSION_PHASE_SMTP)
		return false;
	d = &s->d[C];
	/* The BDAT line is parsed and its chunk skipped ahead: the
	 * reassembly's base is beyond what has arrived in order. */
	if (d->mode != DIR_SMTP || !d->r.started || !d->rcv_started ||
	    (int32_t)(d->r.base - d->rcv_next) <= 0)
		return false;
	*chunk_end = d->r.base;
	return true;
}

bool session_chunk_ready(const struct session *s, uint32_t *next_seq, uint32_t *chunk_end)
{
	if (!session_chunk_pending(s, chunk_end) || s->d[C].fin || s->d[C].r.n_isl)
		return false; /* nothing may be held beyond a hole */
	*next_seq = s->d[C].rcv_next;
	return true;
}

static void pend_push(struct session *s, int v);

/* The client's end of data: commands follow, the server owes a reply. */
static void data_end(struct session *s)
{
	s->d[C].mode = DIR_SMTP;
	s->txn_open = false;
	pend_push(s, PEND_DATA_END);
}

bool session_in_data(const struct session *s)
{
	return s && s->d[C].mode == DIR_DATA;
}

void session_content_ended(struct session *s)
{
	if (!s || s->d[C].mode != DIR_DATA || s->info.phase != SESSION_PHASE_SMTP)
		return;
	data_end(s);
}

void session_content_skip(struct session *s, uint32_t seq, bool after_lf)
{
	struct session_dir *d;
	size_t n;

	if (!s)
		return;
	d = &s->d[C];
	/* What the kernel returns may arrive out of order (two CPUs, GRO
	 * aggregates of 64 KiB): a window of 4 * tls_bytes keeps it. */
	reasm_set_limit(&d->r, 4 * s->lim.tls_bytes);
	if (d->rcv_started && (int32_t)(seq - d->rcv_next) > 0)
		d->rcv_next = seq;
	reasm_peek(&d->r, &n);
	if (!d->r.started || (int32_t)(seq - (d->r.base + (uint32_t)n)) <= 0)
		return; /* nothing passed that the session has not seen (a
			   BDAT chunk is skipped ahead already) */
	if (d->mode != DIR_DATA)
		flag(s, SESSION_ANOM_OVERLAP_CONFLICT); /* the kernel saw content, we did not */
	d->bytes += (uint32_t)(seq - (d->r.base + (uint32_t)n));
	/* In steps the reassembly takes without calling them a loss. */
	for (uint32_t left = seq - d->r.base; left;) {
		uint32_t step = left > REASM_MAX_SKIP ? REASM_MAX_SKIP : left;
		reasm_skip(&d->r, step);
		left -= step;
	}
	d->skipping_line = !after_lf;
	/* What the kernel passed is not seen here: taken as well formed
	 * (an LF after a CR; no CR last when it was no LF). */
	d->data_brk = after_lf ? BRK_CRLF : BRK_NONE;
	if (d->r.flags & REASM_F_LOST) {
		flag(s, SESSION_ANOM_REASM_LOST);
		if (!s->info.tls_judged)
			s->limit_hit = true;
	}
}

void session_set_client_tap(struct session *s,
			    void (*fn)(void *arg, const uint8_t *p, size_t n, uint64_t unseen),
			    void *arg)
{
	if (!s)
		return;
	s->d[C].r.tap = fn;
	s->d[C].r.tap_arg = arg;
}

bool session_client_waiting(const struct session *s, uint32_t *held_from)
{
	size_t n;

	if (!s || s->d[C].mode != DIR_WAIT || !s->d[C].r.started)
		return false;
	reasm_peek(&s->d[C].r, &n);
	if (!n && reasm_in_order(&s->d[C].r))
		return false;
	*held_from = s->d[C].r.base;
	return true;
}

bool session_in_handshake(const struct session *s)
{
	return s && !s->d[C].seen_data && !s->d[S].seen_data && !s->d[C].fin && !s->d[S].fin &&
	       !s->rst && s->info.phase != SESSION_PHASE_CLOSED;
}

void session_mark_timeout(struct session *s)
{
	s->timeout = true;
}

void session_mark_unseen(struct session *s)
{
	flag(s, SESSION_ANOM_UNSEEN_DATA);
}

/* ---- envelope ---- */

static char *env_strdup(struct session *s, const char *a)
{
	size_t n = strlen(a) + 1;
	char *p;

	if (s->env_bytes + n > SESSION_ENVELOPE_BYTES)
		return NULL;
	p = malloc(n);
	if (!p)
		return NULL;
	memcpy(p, a, n);
	s->env_bytes += n;
	return p;
}

static struct session_txn *txn_new(struct session *s)
{
	s->txn_count++;
	if (!s->txns) {
		s->txns = calloc(SESSION_MAX_TXNS, sizeof(*s->txns));
		if (!s->txns)
			return NULL;
	}
	if (s->n_txns >= SESSION_MAX_TXNS) {
		s->txns_dropped++;
		flag(s, SESSION_ANOM_ENVELOPE_TRUNCATED);
		return NULL;
	}
	s->txn_open = true;
	return &s->txns[s->n_txns++];
}

static struct session_txn *txn_cur(struct session *s)
{
	if (!s->txn_open || !s->n_txns)
		return NULL;
	return &s->txns[s->n_txns - 1];
}

static void sanitize(char *dst, size_t size, const char *src, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < size; i++)
		dst[o++] = ((unsigned char)src[i] >= 0x20 && (unsigned char)src[i] < 0x7f) ? src[i] : '?';
	dst[o] = '\0';
}

/* The name of the last HELO/EHLO/LHLO, exactly as long as it is (most
 * sessions have one, few send a second): on the heap when not empty, else
 * the literal "" (also without memory for it). */
static void set_ehlo_name(struct session *s, const char *arg, size_t len)
{
	char clean[256];
	size_t n;
	char *p;

	sanitize(clean, sizeof(clean), arg, len);
	if (s->info.ehlo_name[0])
		free((char *)s->info.ehlo_name);
	s->info.ehlo_name = "";
	n = strlen(clean);
	if (n && (p = malloc(n + 1))) {
		memcpy(p, clean, n + 1);
		s->info.ehlo_name = p;
	}
}

static void on_mail(struct session *s, const char *arg, size_t len)
{
	char addr[256], clean[256];
	const char *params;
	size_t plen;
	bool trunc;
	struct session_txn *t;

	if (smtp_path_parse(arg, len, "FROM:", addr, sizeof(addr), &trunc, &params, &plen))
		return;
	sanitize(clean, sizeof(clean), addr, strlen(addr));
	t = txn_new(s);
	if (!t)
		return;
	t->mailfrom = env_strdup(s, clean);
	if (!t->mailfrom)
		flag(s, SESSION_ANOM_ENVELOPE_TRUNCATED);
}

static void on_rcpt(struct session *s, const char *arg, size_t len)
{
	char addr[256], clean[256];
	const char *params;
	size_t plen;
	bool trunc;
	struct session_txn *t;

	if (smtp_path_parse(arg, len, "TO:", addr, sizeof(addr), &trunc, &params, &plen))
		return;
	sanitize(clean, sizeof(clean), addr, strlen(addr));
	t = txn_cur(s);
	if (!t) {
		flag(s, SESSION_ANOM_RCPT_WITHOUT_MAIL);
		t = txn_new(s);
		if (!t)
			return;
	}
	if (t->n_rcpt >= SESSION_MAX_RCPTS) {
		s->rcpts_dropped++;
		flag(s, SESSION_ANOM_ENVELOPE_TRUNCATED);
		return;
	}
	t->rcpt[t->n_rcpt] = env_strdup(s, clean);
	if (t->rcpt[t->n_rcpt])
		t->n_rcpt++;
	else
		flag(s, SESSION_ANOM_ENVELOPE_TRUNCATED);
}

/* ---- pending commands ---- */

static void pend_push(struct session *s, int v)
{
	if (s->pend_n == SESSION_MAX_PENDING) {
		flag(s, SESSION_ANOM_PIPELINE_OVERFLOW);
		s->pend_head = (s->pend_head + 1) % SESSION_MAX_PENDING;
		s->pend_n--;
	}
	s->pending[(s->pend_head + s->pend_n) % SESSION_MAX_PENDING] = (uint8_t)v;
	s->pend_txn[(s->pend_head + s->pend_n) % SESSION_MAX_PENDING] = s->txn_count;
	s->pend_n++;
}

/* Puts v back as the next command to be answered. */
static void pend_unshift(struct session *s, int v, uint32_t txn)
{
	if (s->pend_n == SESSION_MAX_PENDING) {
		flag(s, SESSION_ANOM_PIPELINE_OVERFLOW);
		s->pend_n--;
	}
	s->pend_head = (s->pend_head + SESSION_MAX_PENDING - 1) % SESSION_MAX_PENDING;
	s->pending[s->pend_head] = (uint8_t)v;
	s->pend_txn[s->pend_head] = txn;
	s->pend_n++;
}

static int pend_peek(const struct session *s)
{
	return s->pend_n ? s->pending[s->pend_head] : -1;
}

static int pend_pop(struct session *s, uint32_t *txn)
{
	int v;

	if (!s->pend_n)
		return -1;
	v = s->pending[s->pend_head];
	*txn = s->pend_txn[s->pend_head];
	s->pend_head = (s->pend_head + 1) % SESSION_MAX_PENDING;
	s->pend_n--;
	return v;
}

int session_await_stage(const struct session *s, uint32_t *client_next, uint32_t *server_next,
			unsigned int *skip)
{
	unsigned int i;
	int verb;
	size_t n;

	*skip = 0;
	if (!s || s->info.phase != SESSION_PHASE_SMTP || !s->greeted || s->in_reply ||
	    s->http_server || s->pend_n > TLSGATE_AWAIT_SKIP_MAX)
		return 0;
	for (i = 0; i < 2; i++) {
		const struct session_dir *d = &s->d[i];
		if (!d->rcv_started || d->fin || d->skipping_line || d->r.n_isl)
			return 0;
		if (d->r.started) {
			reasm_peek(&d->r, &n);
			if (n || d->r.base != d->rcv_next)
				return 0;
		}
	}
	*client_next = s->d[C].rcv_next;
	*server_next = s->d[S].rcv_next;
	if (!s->pend_n)
		return s->d[C].mode == DIR_SMTP ? TLSGATE_AWAIT_DATA : 0;
	verb = s->pending[(s->pend_head + s->pend_n - 1) % SESSION_MAX_PENDING];
	if (verb == SMTP_VERB_DATA && s->d[C].mode == DIR_WAIT) {
		for (i = 0; i + 1 < s->pend_n; i++)
			switch (s->pending[(s->pend_head + i) % SESSION_MAX_PENDING]) {
			case SMTP_VERB_MAIL:
			case SMTP_VERB_RCPT:
			case SMTP_VERB_RSET:
			case SMTP_VERB_NOOP:
			case SMTP_VERB_HELO:
				break;
			default:
				return 0;
			}
		*skip = s->pend_n - 1;
		return TLSGATE_AWAIT_354;
	}
	if (s->pend_n == 1 && (verb == SMTP_VERB_MAIL || verb == SMTP_VERB_RCPT) &&
	    s->d[C].mode == DIR_SMTP)
		return TLSGATE_AWAIT_REPLY;
	return 0;
}

/* ---- TLS ---- */

static void enter_tls(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];

	d->mode = DIR_TLS;
	d->skipping_line = false;
	reasm_set_limit(&d->r, s->lim.tls_bytes);
}

static void judge(struct session *s, bool ok)
{
	if (s->info.tls_judged)
		return;
	s->info.tls_judged = true;
	if (!ok)
		s->info.tls_failed = true;
	if (s->info.phase == SESSION_PHASE_TLS_HANDSHAKE)
		s->info.phase = SESSION_PHASE_TLS;
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[SESSION_FP_LEN])
{
	if (wc_Sha256Hash(p, (word32)n, out))
		memset(out, 0, SESSION_FP_LEN);
}

struct cert_walk {
	struct session *s;
	const uint8_t *base;
	bool client;
};

static void on_cert(void *ctx, const uint8_t *der, size_t len)
{
	struct cert_walk *w = ctx;
	struct session *s = w->s;
	const uint8_t *spki;
	size_t spki_len;
	unsigned int i;
	struct session_tls *t = s->tls; /* on_handshake() allocated it */

	if (w->client) {
		if (s->n_client_certs < SESSION_MAX_CERTS)
			sha256(der, len, t->client_cert_fp[s->n_client_certs++]);
		return;
	}
	if (s->n_certs >= SESSION_MAX_CERTS)
		return;
	i = s->n_certs++;
	t->cert[i].off = (uint32_t)(der - w->base);
	t->cert[i].len = (uint32_t)len;
	sha256(der, len, t->cert_fp[i]);
	t->spki_ok[i] = !tls_cert_spki(der, len, &spki, &spki_len);
	if (t->spki_ok[i])
		sha256(spki, spki_len, t->spki_fp[i]);
}

static bool is_tls13(uint16_t v)
{
	return v == 0x0304 || (v >> 8) == 0x7f || v == 0xfb1a || v == 0x7e02;
}

static void server_hello(struct session *s, const uint8_t *body, size_t len)
{
	struct tls_server_hello sh;

	if (tls_server_hello_parse(body, len, &sh)) {
		flag(s, SESSION_ANOM_TLS_GARBAGE);
		judge(s, false);
		return;
	}
	s->info.tls_cipher = sh.cipher;
	if (sh.hrr) {
		s->info.tls_hrr = true;
		return;
	}
	s->sh_seen = true;
	s->info.tls_version = sh.version;
	if (sh.version == 0x0300)
		flag(s, SESSION_ANOM_SSLV3);
	if (is_tls13(sh.version)) {
		s->tls13 = true;
		s->d[C].encrypted = true;
		s->d[S].encrypted = true;
		judge(s, true);
	} else if (sh.session_id_len && sh.session_id_len == s->tls->client_sid_len &&
		   !memcmp(sh.session_id, s->tls->client_sid, sh.session_id_len)) {
		s->info.tls_resumed = true;
	}
}

static void client_hello(struct session *s, const uint8_t *body, size_t len)
{
	struct session_tls *t = s->tls;
	struct tls_client_hello ch;

	if (tls_client_hello_parse(body, len, &ch)) {
		flag(s, SESSION_ANOM_TLS_GARBAGE);
		return;
	}
	s->ch_seen = true;
	if (ch.sni[0])
		memcpy(t->sni, ch.sni, sizeof(t->sni));
	memcpy(t->alpn, ch.alpn, sizeof(t->alpn) - 1);
	t->alpn[sizeof(t->alpn) - 1] = '\0';
	/* The session id follows version and random, for resumption. */
	if (len >= 35 && body[34] <= 32 && len >= 35 + (size_t)body[34]) {
		memcpy(t->client_sid, body + 35, body[34]);
		t->client_sid_len = body[34];
	}
}

/* The handshake's state, allocated at its first message. Without memory
 * for it the handshake cannot be followed: a bound, as for its bytes. */
static struct session_tls *tls_state(struct session *s)
{
	if (s->tls)
		return s->tls;
	s->tls = calloc(1, sizeof(*s->tls));
	if (!s->tls) {
		if (!s->info.tls_judged)
			s->limit_hit = true;
		return NULL;
	}
	s->info.sni = s->tls->sni;
	return s->tls;
}

static int on_handshake(void *ctx, uint8_t type, const uint8_t *body, size_t len)
{
	struct cert_walk *w = ctx;
	struct session *s = w->s;
	bool server = !w->client;

	if (!tls_state(s))
		return 0;
	switch (type) {
	case TLS_HS_CLIENT_HELLO:
		if (!server)
			client_hello(s, body, len);
		break;
	case TLS_HS_SERVER_HELLO:
		if (server)
			server_hello(s, body, len);
		break;
	case TLS_HS_CERTIFICATE:
		if (server && !s->chain && len <= s->lim.tls_bytes) {
			s->chain = malloc(len ? len : 1);
			if (!s->chain)
				break;
			memcpy(s->chain, body, len);
			s->chain_len = len;
			w->base = s->chain;
			if (tls_certificate_parse(s->chain, len, s->tls13, on_cert, w) < 0)
				flag(s, SESSION_ANOM_TLS_GARBAGE);
			s->info.cert_count = s->n_certs;
		} else if (!server && !s->n_client_certs) {
			w->base = body;
			tls_certificate_parse(body, len, s->tls13, on_cert, w);
		}
		break;
	case TLS_HS_SERVER_HELLO_DONE:
		if (server && s->sh_seen)
			judge(s, !s->fatal_alert);
		break;
	default:
		break;
	}
	return 0;
}

static void on_alert(struct session *s, int dir, const uint8_t *p, size_t n)
{
	if (n < 2)
		return;
	s->last_alert_level = p[0];
	s->last_alert = p[1];
	if (p[0] == TLS_ALERT_FATAL) {
		s->fatal_alert = true;
		flag(s, SESSION_ANOM_TLS_FATAL_ALERT);
		judge(s, false);
	}
}

static void on_record(struct session *s, int dir, const struct tls_record *rec, const uint8_t *frag)
{
	struct session_dir *d = &s->d[dir];
	struct cert_walk w = { s, NULL, dir == C };
	int rc;

	if (rec->version == 0x0300 && !s->info.tls_version)
		flag(s, SESSION_ANOM_SSLV3);
	switch (rec->type) {
	case TLS_CT_CHANGE_CIPHER_SPEC:
		/* In TLS 1.3 (and around a HelloRetryRequest) CCS is only
		 * middlebox compatibility; encryption follows the hellos. */
		if (s->sh_seen && !s->tls13) {
			d->ccs = true;
			d->encrypted = true;
			if (s->d[C].ccs && s->d[S].ccs && !s->fatal_alert)
				s->info.tls_established = true;
		}
		/* Resumption: the server changes cipher right after its hello. */
		if (dir == S && s->sh_seen && !s->info.tls_judged && !s->n_certs) {
			s->info.tls_resumed = true;
			judge(s, true);
		}
		break;
	case TLS_CT_ALERT:
		if (!d->encrypted || (s->tls13 && rec->length == 2))
			on_alert(s, dir, frag, rec->length);
		break;
	case TLS_CT_HANDSHAKE:
		if (d->encrypted)
			break;
		rc = tls_hs_buf_feed(&d->hs, frag, rec->length, on_handshake, &w);
		if (rc == -ENOSPC || rc == -ENOMEM) {
			if (!s->info.tls_judged)
				s->limit_hit = true;
			d->mode = DIR_SKIP;
		}
		break;
	case TLS_CT_APPLICATION_DATA:
		if (s->tls13 && !s->fatal_alert)
			s->info.tls_established = true;
		break;
	default:
		break;
	}
}

static bool sslv2_hello(struct session *s, int dir, const uint8_t *p, size_t n)
{
	uint8_t mt;
	size_t h, rl;
	uint16_t v;

	if (tls_sslv2_parse(p, n, &mt, &h, &rl))
		return false;
	if (n < h + rl)
		return false; /* wait for the whole record */
	v = tls_sslv2_version(p + h, rl, mt);
	if (mt == 1 && dir == C) {
		s->ch_seen = true;
		if (v == 0x0002)
			flag(s, SESSION_ANOM_SSLV2);
	} else if (mt == 4 && dir == S) {
		s->info.tls_version = v;
		s->sh_seen = true;
		flag(s, SESSION_ANOM_SSLV2);
		judge(s, true);
		s->d[C].encrypted = s->d[S].encrypted = true;
		/* The rest of SSLv2 is opaque to us. */
		s->d[C].mode = DIR_SKIP;
		s->d[S].mode = DIR_SKIP;
	} else {
		return false;
	}
	reasm_skip(&s->d[dir].r, h + rl);
	return true;
}

/* Parses TLS records of one direction. Returns true on progress. */
static bool process_tls(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	bool progress = false;

	for (;;) {
		struct tls_record rec;
		size_t n;
		const uint8_t *p = reasm_peek(&d->r, &n);
		int rc;

		if (d->mode != DIR_TLS || !n)
			break;
		if (!d->tls_seen) {
			size_t held = 0;

			/* (the client's first bytes may be held, tls_classify()) */
			if (s->d[C].r.started)
				reasm_peek(&s->d[C].r, &held);
			if (dir == S && !s->d[C].tls_seen && !held && !s->info.midstream)
				flag(s, SESSION_ANOM_SERVER_EARLY);
			if ((p[0] & 0x80) && !d->sslv2_checked) {
				if (n < 3)
					break;
				if (sslv2_hello(s, dir, p, n)) {
					d->tls_seen = true;
					progress = true;
					continue;
				}
				if (tls_sslv2_parse(p, n, &(uint8_t){ 0 }, &(size_t){ 0 }, &(size_t){ 0 }) == 0)
					break; /* SSLv2 record not complete yet */
			}
			d->sslv2_checked = true;
		}
		rc = tls_record_parse(p, n, &rec);
		if (rc == -EAGAIN)
			break;
		if (rc) {
			if (n >= 5 && p[0] >= 20 && p[0] <= 24 && p[1] == 3)
				flag(s, SESSION_ANOM_TLS_RECORD_OVERSIZED);
			else if (!d->tls_seen && dir == C && s->info.starttls_accepted)
				flag(s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS);
			flag(s, SESSION_ANOM_TLS_GARBAGE);
			judge(s, false);
			d->mode = DIR_SKIP;
			progress = true;
			break;
		}
		d->tls_seen = true;
		if (rec.type == TLS_CT_APPLICATION_DATA || (d->encrypted && rec.type == TLS_CT_HANDSHAKE)) {
			/* Not needed: skip without buffering. */
			on_record(s, dir, &rec, NULL);
			reasm_skip(&d->r, TLS_RECORD_HEADER + (size_t)rec.length);
			progress = true;
			continue;
		}
		if (n < TLS_RECORD_HEADER + (size_t)rec.length) {
			if (reasm_full(&d->r) && !s->info.tls_judged)
				s->limit_hit = true;
			break;
		}
		on_record(s, dir, &rec, p + TLS_RECORD_HEADER);
		reasm_skip(&d->r, TLS_RECORD_HEADER + (size_t)rec.length);
		progress = true;
	}
	return progress;
}

/* Not SMTP: look for the start of a TLS hello (ClientHello from the
 * client, ServerHello from the server) anywhere in the stream, as after
 * an IMAP, POP3 or XMPP STARTTLS; skip everything else. */
static bool process_scan(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	size_t n, i;
	const uint8_t *p = reasm_peek(&d->r, &n);
	uint8_t want = dir == C ? TLS_HS_CLIENT_HELLO : TLS_HS_SERVER_HELLO;

	if (!n)
		return false;
	for (i = 0; i + 6 <= n; i++) {
		if (p[i] == TLS_CT_HANDSHAKE && p[i + 1] == 3 && p[i + 2] <= 4 && p[i + 5] == want) {
			reasm_skip(&d->r, i);
			enter_tls(s, dir);
			return true;
		}
	}
	/* Keep the last 5 bytes: a header may span segments. */
	if (n > 5) {
		reasm_skip(&d->r, n - 5);
		return true;
	}
	return false;
}

/* ---- SMTP ---- */

static void start_tls(struct session *s)
{
	size_t n;
	const uint8_t *p = reasm_peek(&s->d[C].r, &n);

	s->info.phase = SESSION_PHASE_TLS_HANDSHAKE;
	enter_tls(s, C);
	enter_tls(s, S);
	/* Which side's first bytes are TLS is seen next (tls_classify()). */
	s->tls_tentative = true;
	s->d[C].tls_first = true;
	s->d[S].tls_first = true;
	/* Anything the client sent after STARTTLS before the 220 was seen:
	 * a server in TLS discards it (Postfix's smtpd purges it,
	 * CVE-2011-0411), a server that refused reads it as commands. Held
	 * until the server's first bytes tell which. */
	if (n && !tls_looks_like_tls(p, n)) {
		flag(s, SESSION_ANOM_STARTTLS_INJECTION);
		s->inject_held = true;
		s->inject_end = s->d[C].r.base + (uint32_t)n;
	}
}

static void not_smtp(struct session *s)
{
	flag(s, SESSION_ANOM_NOT_SMTP);
	s->info.phase = SESSION_PHASE_NOT_SMTP;
	s->pend_n = 0;
	s->d[C].mode = s->d[C].mode == DIR_TLS ? DIR_TLS : DIR_SCAN;
	s->d[S].mode = s->d[S].mode == DIR_TLS ? DIR_TLS : DIR_SCAN;
}

/* The server's first bytes are TLS: not SMTP. */
static void implicit_tls(struct session *s)
{
	flag(s, SESSION_ANOM_TLS_NOT_SMTP);
	not_smtp(s);
	enter_tls(s, C);
	enter_tls(s, S);
}

/* The client's first bytes are TLS before the server said anything: an
 * implicit TLS client, or a hello that an SMTP server reads as junk
 * command lines. The server's first bytes tell (tls_classify()). */
static void implicit_tls_tentative(struct session *s)
{
	enter_tls(s, C);
	enter_tls(s, S);
	s->tls_tentative = true;
	s->tls_implicit = true;
	s->d[C].tls_first = true;
	s->d[S].tls_first = true;
}

/* One side's first bytes after TLS began: 1 TLS, 0 not, -EAGAIN too
 * few to tell (the answer must not depend on where segments split). */
static int tls_start(int dir, const uint8_t *p, size_t n)
{
	if (!n)
		return -EAGAIN;
	if (p[0] & 0x80) {
		/* SSLv2: CLIENT-HELLO (type 1) from the client, SERVER-HELLO
		 * (type 4) from the server. */
		if (n < 3 || (n == 3 && p[2] == 1))
			return -EAGAIN;
		if (dir == S)
			return p[2] == 4;
		return tls_looks_like_tls(p, n);
	}
	if (p[0] >= TLS_CT_CHANGE_CIPHER_SPEC && p[0] <= TLS_CT_HEARTBEAT) {
		if (n < 3)
			return -EAGAIN;
		return p[1] == 3 && p[2] <= 4;
	}
	return 0;
}

/* This side reads plaintext lines again from its next byte. */
static void plaintext_again(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];

	d->tls_first = false;
	d->lines_seen = true; /* its first bytes are judged: TLS is not
				 looked for again */
	d->skipping_line = false;
	if (d->mode == DIR_TLS)
		d->mode = DIR_SMTP;
}

/* TLS began (STARTTLS's 220, or the client's first bytes): each side's
 * first bytes after it. The server decides how the client's bytes are
 * read: its first bytes TLS, it reads them as TLS; plaintext (a 220 it
 * never sent, as one in a segment with a bad checksum, then its real 454;
 * a client hello on an SMTP server), as command lines. The client's TLS
 * bytes wait for that; its plaintext (it went back to SMTP after the 220)
 * is read as commands at once and reported like any other. Returns true
 * on progress. */
static bool tls_classify(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	size_t n;
	const uint8_t *p = reasm_peek(&d->r, &n);
	int t = tls_start(dir, p, n);

	if (t < 0)
		return false;
	if (dir == C) {
		if (t || s->inject_held) {
			if (s->tls_tentative)
				return false; /* the server's first bytes tell */
			d->tls_first = false; /* the server speaks TLS */
			return true;
		}
		flag(s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS);
		plaintext_again(s, C);
		if (s->info.phase == SESSION_PHASE_TLS_HANDSHAKE)
			s->info.phase = SESSION_PHASE_SMTP;
		return true;
	}
	s->tls_tentative = false;
	d->tls_first = false;
	if (t) {
		/* The server speaks TLS: it read the client's bytes as TLS. */
		if (s->inject_held) {
			/* discarded by the server, not TLS: skip them */
			size_t cn;
			reasm_peek(&s->d[C].r, &cn);
			if ((int32_t)(s->inject_end - s->d[C].r.base) > 0 &&
			    (size_t)(s->inject_end - s->d[C].r.base) <= cn)
				reasm_skip(&s->d[C].r, s->inject_end - s->d[C].r.base);
			s->inject_held = false;
		}
		if (s->tls_implicit) {
			s->tls_implicit = false;
			flag(s, SESSION_ANOM_TLS_NOT_SMTP);
			not_smtp(s);
		} else if (s->info.phase == SESSION_PHASE_SMTP) {
			s->info.phase = SESSION_PHASE_TLS_HANDSHAKE;
		}
		/* The client's held bytes come first (its hello before the
		 * server's answer to it). */
		if (s->d[C].mode == DIR_TLS && s->d[C].tls_first)
			tls_classify(s, C);
		if (s->d[C].mode == DIR_TLS && !s->d[C].tls_first)
			process_tls(s, C);
		return true;
	}
	/* The server speaks plaintext: so is the dialog, both ways. */
	plaintext_again(s, S);
	s->inject_held = false;
	if (s->tls_implicit) {
		/* the client's hello is junk command lines to it */
		s->tls_implicit = false;
		plaintext_again(s, C);
		return true;
	}
	/* The 220 the session saw is not the reply the client read: the
	 * server's reply to STARTTLS is still to come. */
	flag(s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS);
	s->info.starttls_accepted = false;
	s->info.starttls_reply = 0;
	pend_unshift(s, SMTP_VERB_STARTTLS, s->txn_count);
	if (s->d[C].mode == DIR_TLS) {
		/* its bytes wait for that reply */
		plaintext_again(s, C);
		s->d[C].mode = DIR_WAIT;
		s->info.phase = SESSION_PHASE_STARTTLS;
	} else {
		s->info.phase = SESSION_PHASE_SMTP;
	}
	s->d[C].tls_first = false;
	return true;
}

static void on_reply(struct session *s, int code)
{
	uint32_t txn;
	int cmd;

	if (!s->greeted) {
		/* The first reply is the greeting, whatever the client sent
		 * before it: Postfix's smtpd (without postscreen) reads the
		 * commands after it sends its greeting, and answers them in
		 * order. */
		s->greeted = true;
		return;
	}
	cmd = pend_pop(s, &txn);
	if (cmd < 0) {
		if (s->d[C].seen_data && !s->info.midstream)
			flag(s, SESSION_ANOM_UNSOLICITED_REPLY);
		return;
	}
	switch (cmd) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_LHLO:
		/* RFC 5321 4.1.4: a successful HELO/EHLO resets the state (the
		 * transaction the client had when it sent it, not one it
		 * opened after); a failed one changes nothing, and only a
		 * successful EHLO's reply replaces the capabilities. */
		if (code / 100 != 2)
			break;
		if (txn == s->txn_count)
			s->txn_open = false;
		if (cmd != SMTP_VERB_HELO) {
			s->info.smtp_caps = s->ehlo_caps;
			s->info.starttls_offered = (s->ehlo_caps & SMTP_CAP_STARTTLS) != 0;
		}
		break;
	case SMTP_VERB_RSET:
		if (code / 100 == 2 && txn == s->txn_count)
			s->txn_open = false;
		break;
	case SMTP_VERB_STARTTLS:
		s->info.starttls_reply = code;
		if (code == 220) {
			s->info.starttls_accepted = true;
			start_tls(s);
		} else {
			s->info.phase = SESSION_PHASE_SMTP;
			if (s->d[C].mode == DIR_WAIT)
				s->d[C].mode = DIR_SMTP;
		}
		break;
	case SMTP_VERB_MAIL:
		if (txn_cur(s))
			txn_cur(s)->mail_reply = code;
		break;
	case SMTP_VERB_DATA:
		if (txn_cur(s))
			txn_cur(s)->data_reply = code;
		if (s->d[C].mode == DIR_WAIT) {
			if (code == 354) {
				s->d[C].mode = DIR_DATA;
				s->d[C].data_line_start = true;
				s->d[C].data_brk = BRK_CRLF;
			} else {
				/* Refused: the transaction goes on (the client
				 * may add recipients and try again). */
				s->d[C].mode = DIR_SMTP;
			}
		}
		break;
	case SMTP_VERB_QUIT:
		s->quit = true;
		break;
	default:
		break;
	}
}

/* The first line of a server that speaks another protocol. */
static bool other_protocol(const char *line, size_t len)
{
	static const char *const banners[] = {
		"SSH-", "HTTP/", "* OK", "* PREAUTH", "* BYE", "+OK", "-ERR", "<?xml", "<stream:",
	};
	size_t i, k;

	for (i = 0; i < sizeof(banners) / sizeof(banners[0]); i++) {
		k = strlen(banners[i]);
		if (len >= k && !memcmp(line, banners[i], k))
			return true;
	}
	return false;
}

/* One server line. */
static void server_line(struct session *s, const char *line, size_t len)
{
	struct smtp_reply_line rl;

	if (s->http_server) {
		if (!s->http_status) {
			s->http_status = true;
			if (len < 12 || memcmp(line, "HTTP/1.", 7) || memcmp(line + 8, " 200", 4)) {
				s->http_server = false;
				not_smtp(s);
			}
		} else if (!len) {
			s->http_server = false;
		}
		return;
	}
	/* Postfix's client strips every CR before the LF (smtp_get()). */
	while (len && line[len - 1] == '\r')
		len--;
	if (smtp_reply_parse(line, len, &rl)) {
		/* Another protocol's banner as the server's first line: not
		 * SMTP (flagged, for the policy). */
		if (!s->d[S].lines_seen && !s->greeted && other_protocol(line, len)) {
			not_smtp(s);
			return;
		}
		/* Postfix's client skips a line that is not a reply - before
		 * the greeting, between a reply's lines, anywhere - and reads
		 * on (smtp_chat.c, smtp_chat_resp()); stricter clients give up. */
		flag(s, SESSION_ANOM_BAD_REPLY);
		return;
	}
	if (s->info.phase == SESSION_PHASE_START)
		s->info.phase = SESSION_PHASE_SMTP;
	if (!s->in_reply) {
		s->in_reply = true;
		s->reply_lines = 0;
		if (pend_peek(s) == SMTP_VERB_EHLO || pend_peek(s) == SMTP_VERB_LHLO)
			s->ehlo_caps = 0;
	} else if (rl.code != s->reply_code) {
		flag(s, SESSION_ANOM_BAD_REPLY);
	}
	/* The code is the last line's, as Postfix's client reads it. */
	s->reply_code = rl.code;
	if (s->reply_lines++ > 0 && (pend_peek(s) == SMTP_VERB_EHLO || pend_peek(s) == SMTP_VERB_LHLO))
		s->ehlo_caps |= smtp_ehlo_keyword(rl.text, rl.text_len);
	if (rl.last) {
		s->in_reply = false;
		on_reply(s, s->reply_code);
	}
}

/* Hands one client command to the caller's callback. */
static void report_command(struct session *s, const struct smtp_command *cmd)
{
	char addr[256] = "";
	const char *params;
	size_t plen;
	bool trunc;

	if (cmd->verb == SMTP_VERB_MAIL || cmd->verb == SMTP_VERB_RCPT) {
		if (smtp_path_parse(cmd->arg, cmd->arg_len,
				    cmd->verb == SMTP_VERB_MAIL ? "FROM:" : "TO:", addr, sizeof(addr),
				    &trunc, &params, &plen))
			addr[0] = '\0';
	}
	s->command_cb(s->command_arg, (int)cmd->verb, addr);
}

void session_set_command_cb(struct session *s, session_command_fn fn, void *arg)
{
	s->command_cb = fn;
	s->command_arg = arg;
}

/* One client command line. */
static void client_line(struct session *s, const char *line, size_t len)
{
	struct smtp_command cmd;
	struct session_dir *d = &s->d[C];
	uint64_t size;
	bool last;

	if (s->http_client) {
		/* Request headers of an HTTP CONNECT, up to the blank line. */
		if (!len)
			s->http_client = false;
		return;
	}
	if (smtp_command_parse(line, len, &cmd))
		return;
	if (s->info.phase == SESSION_PHASE_START && !s->greeted && len > 17 && !memcmp(line, "CONNECT ", 8) &&
	    !memcmp(line + len - 9, " HTTP/1.", 8) && !s->http_server) {
		/* SMTP through an HTTP proxy tunnel: the dialog starts after
		 * the proxy's 200 reply. */
		flag(s, SESSION_ANOM_HTTP_CONNECT);
		s->http_client = true;
		s->http_server = true;
		return;
	}
	/* The client spoke first (before the greeting, one-sided capture,
	 * mid-stream pickup): its lines are commands, as the server reads
	 * them after its greeting, an unknown one too (answered 500). */
	if (s->info.phase == SESSION_PHASE_START)
		s->info.phase = SESSION_PHASE_SMTP;
	if (len + 2 > SMTP_COMMAND_LINE_MAX)
		flag(s, SESSION_ANOM_LINE_TOO_LONG);
	if (s->command_cb)
		report_command(s, &cmd);
	switch (cmd.verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_LHLO:
		/* the envelope is reset by its 2xx reply (on_reply()) */
		set_ehlo_name(s, cmd.arg, cmd.arg_len);
		break;
	case SMTP_VERB_MAIL:
		on_mail(s, cmd.arg, cmd.arg_len);
		break;
	case SMTP_VERB_RCPT:
		on_rcpt(s, cmd.arg, cmd.arg_len);
		break;
	case SMTP_VERB_QUIT:
		s->quit = true;
		break;
	case SMTP_VERB_STARTTLS:
		s->info.starttls_issued = true;
		s->info.phase = SESSION_PHASE_STARTTLS;
		d->mode = DIR_WAIT;
		break;
	case SMTP_VERB_DATA:
		/* Without the server side (one-sided capture) assume 354. */
		if (s->d[S].seen_data) {
			d->mode = DIR_WAIT;
		} else {
			d->mode = DIR_DATA;
			d->data_line_start = true;
		}
		break;
	case SMTP_VERB_BDAT:
		/* A chunk follows only where the server offered CHUNKING in
		 * its last successful EHLO reply. Elsewhere BDAT is an unknown
		 * command to the server (500/502, Postfix: 521 and hang up)
		 * and the bytes after it are command lines.
		 * Offered, the chunk is skipped whatever the reply: RFC 3030
		 * (section 2) has the server read a chunk's octets also when
		 * it refuses the BDAT, and Postfix's smtpd does (smtpd.c,
		 * bdat_cmd() and skip_bdat(): "need RCPT", "no valid
		 * recipients", a chunk over the size limit, after an earlier
		 * error); only a malformed BDAT line (Postfix: 521 and hang
		 * up) has no chunk here. */
		if ((s->info.smtp_caps & SMTP_CAP_CHUNKING) &&
		    smtp_bdat_parse(cmd.arg, cmd.arg_len, &size, &last) == 0) {
			struct session_txn *t = txn_cur(s);

			if (t)
				t->bdat = true;
			pend_push(s, cmd.verb);
			/* The chunk follows the command line: skip it. The
			 * caller consumes the line first, so skip afterwards. */
			d->skipping_line = false;
			s->bdat_pending = size;
			if (last)
				s->txn_open = false;
			return;
		}
		break;
	default:
		break;
	}
	pend_push(s, cmd.verb);
}

/* Message content from p[0..n) (n > 0): one line, or the part of an
 * overlong one that can go. Returns true when bytes were consumed. */
static bool data_line(struct session *s, struct session_dir *d, const uint8_t *p, size_t n)
{
	size_t ll, total, keep = 0, give_up;
	bool bare;
	int r, brk;

	if (smtp_line_next(p, n, &ll, &total, &bare)) {
		/* A partial line may hold an ambiguous end already (".<CR>x"):
		 * a server that ends lines at a CR reads on after it now. */
		r = data_scan(p, n, d->data_brk, &keep);
		if (r == DATA_AMBIGUOUS)
			flag(s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA);
		give_up = d->r.limit < LINE_GIVE_UP ? d->r.limit : LINE_GIVE_UP;
		if (n < give_up)
			return false;
		/* Overlong: drop it but an undecided tail ('.', ".<CR>"). */
		if (r != DATA_UNDECIDED || keep >= n)
			keep = 0;
		d->data_brk = p[n - keep - 1] == '\r' ? BRK_CR : BRK_NONE;
		reasm_skip(&d->r, n - keep);
		d->skipping_line = true;
		return true;
	}
	r = data_scan(p, total, d->data_brk, NULL);
	if (bare)
		flag(s, SESSION_ANOM_BARE_LF);
	if (total >= 2)
		brk = p[total - 2] == '\r' ? BRK_CRLF : BRK_LF;
	else
		brk = d->data_brk == BRK_CR ? BRK_CRLF : BRK_LF;
	reasm_skip(&d->r, total);
	d->skipping_line = false;
	d->data_brk = (uint8_t)brk;
	if (r == DATA_END) {
		data_end(s);
		if (s->command_cb)
			s->command_cb(s->command_arg, SMTP_VERB_END_OF_DATA, "");
		return true;
	}
	if (r == DATA_AMBIGUOUS)
		flag(s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA);
	if (ll + 2 > SMTP_TEXT_LINE_MAX)
		flag(s, SESSION_ANOM_LINE_TOO_LONG);
	return true;
}

static bool process_lines(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	bool progress = false;

	for (;;) {
		size_t n, ll, total;
		bool bare;
		const uint8_t *p;

		if (d->mode != DIR_SMTP && d->mode != DIR_DATA)
			break;
		p = reasm_peek(&d->r, &n);
		if (!n)
			break;
		if (d->mode == DIR_DATA) {
			if (!data_line(s, d, p, n))
				break;
			progress = true;
			continue;
		}
		/* TLS where SMTP is expected, at a side's first bytes only: the
		 * server's is not SMTP; the client's, before the server said
		 * anything, waits for the server's first bytes. Anywhere else
		 * the receiver reads such bytes as junk lines. */
		if (!d->skipping_line && !d->lines_seen &&
		    (dir == S || (!s->d[S].lines_seen && !s->greeted)) &&
		    (s->info.phase == SESSION_PHASE_START || s->info.phase == SESSION_PHASE_SMTP)) {
			/* Too short to tell TLS from SMTP: a record header
			 * needs 3 bytes, an SSLv2 hello 4 when its third is
			 * 1 (the fourth is the version). The answer must not
			 * depend on where segments split. */
			if ((n < 3 && ((p[0] >= 20 && p[0] <= 24) || p[0] & 0x80)) ||
			    (n == 3 && p[0] & 0x80 && p[2] == 1))
				break;
			if (tls_looks_like_tls(p, n)) {
				if (dir == S)
					implicit_tls(s);
				else
					implicit_tls_tentative(s);
				progress = true;
				break;
			}
		}
		/* Another protocol's banner as the server's first bytes, also
		 * one without a line end (XMPP): not SMTP, flagged. */
		if (dir == S && !d->lines_seen && !d->skipping_line && !s->greeted && !s->http_server &&
		    other_protocol((const char *)p, n)) {
			not_smtp(s);
			progress = true;
			break;
		}
		if (smtp_line_next(p, n, &ll, &total, &bare)) {
			size_t give_up = d->r.limit < LINE_GIVE_UP ? d->r.limit : LINE_GIVE_UP;

			if (n < give_up)
				break;
			flag(s, SESSION_ANOM_LINE_TOO_LONG);
			reasm_skip(&d->r, n);
			d->skipping_line = true;
			d->lines_seen = true;
			progress = true;
			continue;
		}
		progress = true;
		if (d->skipping_line) {
			d->skipping_line = false;
			reasm_skip(&d->r, total);
			continue;
		}
		if (bare)
			flag(s, SESSION_ANOM_BARE_LF);
		if (dir == S) {
			if (ll + 2 > SMTP_REPLY_LINE_MAX)
				flag(s, SESSION_ANOM_LINE_TOO_LONG);
			server_line(s, (const char *)p, ll);
		} else {
			client_line(s, (const char *)p, ll);
		}
		/* Not SMTP after all: the scanner looks at these bytes
		 * again (a TLS hello may start inside this "line"). */
		if (d->mode == DIR_SCAN)
			continue;
		d->lines_seen = true;
		reasm_skip(&d->r, total);
		if (s->bdat_pending) {
			reasm_skip(&d->r, s->bdat_pending);
			s->bdat_pending = 0;
		}
	}
	return progress;
}

/* Mid-stream pickup: find where to start parsing this direction. */
static void midstream_sync(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	size_t n, ll, total;
	bool bare;
	const uint8_t *p = reasm_peek(&d->r, &n);
	struct tls_record rec;
	struct smtp_reply_line rl;
	struct smtp_command cmd;

	if (!n)
		return;
	if (n >= 5 && tls_record_parse(p, n, &rec) == 0) {
		d->synced = true;
		if (s->info.phase == SESSION_PHASE_START || s->info.phase == SESSION_PHASE_SMTP)
			s->info.phase = SESSION_PHASE_TLS_HANDSHAKE;
		enter_tls(s, C);
		enter_tls(s, S);
		/* Encrypted data already: there is nothing left to judge. */
		if (rec.type == TLS_CT_APPLICATION_DATA)
			judge(s, true);
		return;
	}
	if (smtp_line_next(p, n, &ll, &total, &bare)) {
		if (reasm_full(&d->r))
			reasm_skip(&d->r, n);
		return;
	}
	d->synced = true;
	s->greeted = true;
	if (dir == S ? smtp_reply_parse((const char *)p, ll, &rl) == 0
		     : (smtp_command_parse((const char *)p, ll, &cmd) == 0 && cmd.verb != SMTP_VERB_UNKNOWN))
		return; /* starts at a line: keep it */
	reasm_skip(&d->r, total);
}

static bool process_dir(struct session *s, int dir)
{
	struct session_dir *d = &s->d[dir];
	size_t n;

	if (s->info.midstream && !d->synced && d->mode == DIR_SMTP) {
		midstream_sync(s, dir);
		if (!d->synced)
			return false;
	}
	switch (d->mode) {
	case DIR_SMTP:
	case DIR_DATA:
		return process_lines(s, dir);
	case DIR_TLS:
		if (d->tls_first)
			return tls_classify(s, dir);
		return process_tls(s, dir);
	case DIR_SCAN:
		return process_scan(s, dir);
	case DIR_SKIP:
		reasm_peek(&d->r, &n);
		if (n)
			reasm_skip(&d->r, n);
		return false;
	case DIR_WAIT:
	default:
		return false;
	}
}

static void drive(struct session *s)
{
	int i;

	for (i = 0; i < 64; i++) {
		bool progress = process_dir(s, C);

		progress |= process_dir(s, S);
		if (!progress)
			break;
	}
}

/* What the caller must do after this segment. */
static enum session_action session_action_now(const struct session *s)
{
	if (s->info.phase == SESSION_PHASE_CLOSED)
		return SESSION_CLOSED;
	if (s->info.tls_judged)
		return SESSION_OFFLOAD;
	if (s->limit_hit)
		return SESSION_LIMIT;
	return SESSION_CONTINUE;
}

/* What arrived ahead and is in order now (a hole filled) counts as
 * received. Not when the reassembly skipped ahead of what arrived (a
 * BDAT chunk yet to come: its base is beyond rcv_next). */
static void rcv_next_filled(struct session_dir *d)
{
	size_t n = 0;

	if (!d->r.started || (int32_t)(d->r.base - d->rcv_next) > 0)
		return;
	reasm_peek(&d->r, &n);
	if ((int32_t)(d->r.base + (uint32_t)n - d->rcv_next) > 0)
		d->rcv_next = d->r.base + (uint32_t)n;
}

/* RFC 5961 3.2 as Linux applies it (tcp_validate_incoming): a reset
 * counts at exactly the sequence number the receiver expects next. Once
 * the receiver holds this side's FIN, that is the number after the FIN,
 * and the FIN's own number counts as well (CLOSE_WAIT, LAST_ACK, CLOSING:
 * tcp_reset_check): the reset a Linux peer sends when data reaches it
 * after its close, numbered from the ACK that data carried, sent before
 * the FIN arrived. Any other reset is answered with a challenge ACK and
 * ignored, and so it is here: a spoofed RST must not end the inspection
 * while the receiver goes on. (Linux also takes a reset at the end of its
 * rightmost SACK block; the session then stays open, which passes
 * nothing.) Unknown sequence: nothing to follow. */
static bool rst_accepted(const struct session_dir *d, uint32_t seq)
{
	if (!d->rcv_started || seq == d->rcv_next)
		return true;
	/* after the FIN, which counts only with no hole before it */
	return d->fin_seq_known && d->rcv_next == d->fin_next - 1 && seq == d->fin_next;
}

enum session_action session_segment(struct session *s, const struct tcp_segment *seg)
{
	struct session_dir *d;
	uint32_t seq;
	unsigned int fl, i;

	if (!s || !seg || (seg->dir != C && seg->dir != S))
		return SESSION_CONTINUE;
	d = &s->d[seg->dir];
	struct session_dir *peer = &s->d[seg->dir == C ? S : C];
	seq = seg->seq;
	/* The peer's first ACK after this side's SYN data says whether it
	 * read that data (TCP Fast Open) or dropped it. */
	if (peer->syn_data && (seg->flags & SESSION_TCP_ACK)) {
		peer->syn_data = false;
		if ((int32_t)(seg->ack - peer->syn_data_end) >= 0)
			flag(s, SESSION_ANOM_UNSEEN_DATA);
	}
	/* Urgent data: Linux takes the urgent byte out of the stream (unless
	 * SO_OOBINLINE), other stacks keep it; which the receiver does is not
	 * known here. */
	if (seg->flags & SESSION_TCP_URG)
		flag(s, SESSION_ANOM_URGENT_DATA);
	if (seg->flags & SESSION_TCP_SYN) {
		reasm_start(&d->r, seq + 1);
		if (!d->rcv_started) {
			d->rcv_started = true;
			d->rcv_next = seq + 1;
		}
		seq++;
		if (seg->len) {
			d->syn_data = true;
			d->syn_data_end = seq + (uint32_t)seg->len;
		}
	}
	if (seg->flags & SESSION_TCP_RST) {
		if (rst_accepted(d, seq)) {
			s->rst = true;
			s->info.phase = SESSION_PHASE_CLOSED;
		}
		return session_action_now(s);
	}
	if (seg->len && seg->payload && !(seg->flags & SESSION_TCP_SYN) &&
	    s->info.phase != SESSION_PHASE_CLOSED) {
		const uint8_t *pl = seg->payload;
		size_t left = seg->len;
		uint32_t sq = seq;

		d->seen_data = true;
		d->bytes += seg->len;
		if (!d->rcv_started) {
			d->rcv_started = true;
			d->rcv_next = seq;
		}
		if ((int32_t)(seq - d->rcv_next) <= 0 &&
		    (int32_t)(seq + (uint32_t)seg->len - d->rcv_next) > 0)
			d->rcv_next = seq + (uint32_t)seg->len;
		/* A segment larger than the window (TSO/GRO captures, big
		 * content) is fed in pieces, parsing in between, so message
		 * content and encrypted records pass without buffering. */
		while (left) {
			size_t chunk = d->r.limit > 1 ? d->r.limit / 2 : 1;

			if (chunk > left)
				chunk = left;
			fl = reasm_add(&d->r, sq, pl, chunk);
			rcv_next_filled(d);
			if (fl & REASM_F_CONFLICT)
				flag(s, SESSION_ANOM_OVERLAP_CONFLICT);
			if (fl & REASM_F_LOST) {
				flag(s, SESSION_ANOM_REASM_LOST);
				if (!s->info.tls_judged)
					s->limit_hit = true;
			}
			pl += chunk;
			sq += (uint32_t)chunk;
			left -= chunk;
			if (left)
				drive(s);
		}
	}
	if (seg->flags & SESSION_TCP_FIN) {
		reasm_add_fin(&d->r, seq + (uint32_t)seg->len);
		d->fin = true;
		d->fin_seq_known = true;
		d->fin_next = seq + (uint32_t)seg->len + 1;
	}
	if (s->info.phase != SESSION_PHASE_CLOSED) {
		drive(s);
		for (i = 0; i < 2; i++)
			if (reasm_full(&s->d[i].r) && !s->info.tls_judged &&
			    s->info.phase != SESSION_PHASE_NOT_SMTP)
				s->limit_hit = true;
		if (s->d[C].fin && s->d[S].fin)
			s->info.phase = SESSION_PHASE_CLOSED;
	}
	return session_action_now(s);
}
