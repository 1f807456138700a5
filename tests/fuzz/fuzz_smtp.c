/* fuzz_smtp - the engine over arbitrary two-sided dialogs, plus the SMTP
 * line parsers on every line of the input.
 *
 * Input: byte 0 selects options (bit 0 mid-stream, bits 1-2 small limits);
 * then chunks of [hdr][bytes]: hdr bit 7 = direction (1 = server), bit 6 =
 * deliver out of order (held back until the next chunk of that direction),
 * bits 0-5 = length. Sequence numbers start near 2^32 to exercise wrap.
 *
 * Message content in the kernel: hdr 0x40 (an empty client chunk out of
 * order) is a control, followed by [ctl]. ctl bit 7: hand the content over
 * when session_content_ready() says so; a model of the kernel then passes
 * in-order client chunks without a '.' after CR or LF, and not ending with
 * a CR or a bare LF, and the first other segment makes the session skip to
 * where it stopped, as the daemon does (after_lf: the passed bytes ended
 * with CR LF, TLSGATE_CONTENT_LF). A segment that ends with CRLF "." CRLF
 * (or is "." CRLF after CRLF) and holds no other such dot passes as the
 * end of data (COPY_END_OF_DATA): the session skips past it and is told
 * the data ended (session_content_ended()), as the daemon does.
 * ctl bit 6 (bit 7 clear) turns on and off the kernel's own handover at
 * the 354 (struct tlsgate_await): after each chunk, the daemon's awaits
 * entry as daemon_await() writes it from session_await_stage(); before
 * the session sees a chunk, the tagger's moves on it (the reply to RCPT,
 * the client's DATA alone, the 354, each where and when the entry says;
 * other server data there removes it). At a switch the session must read
 * content from the same byte on. Not with the small limits (bits 1-2 of
 * byte 0): a dialog window under a reply line's 512 bytes is not the
 * daemon's.
 * Otherwise a raw skip: bit 0 line_end, bits 1-2 the width of the
 * little-endian delta that follows (1, 2 or 4 bytes; 3: none, delta 0),
 * bit 3 backwards. A forward skip moves the client's later chunks after
 * the skipped bytes.
 *
 * A second session sees every byte. While only handovers are used and no
 * reassembly bound is hit, both must report the same commands, and
 * session_content_ready() must match the stream (next seq, line end).
 *
 * Command copies (TLSGATE_COPY_COMMANDS): a model of the tagger's rule says
 * which client chunks would pass as copies; no line that the command parser
 * reads as MAIL, RCPT or STARTTLS may end (its LF) in such a chunk, since
 * the daemon withholds the segment that completes the line; but for a
 * RCPT TO line alone that the model of tagger_rcpt_unruled() clears
 * (rcpt_domains holding FUZZ_RULED), whose domain as the daemon reads it
 * must then not be one it refuses. The tagger moves the awaits entry on
 * at such a RCPT, as at DATA. (The tagger no longer turns the flow PASS
 * at a QUIT after an end of data it passed: issue 17, finding 13.) */
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"
#include "session.h"
#include "smtp_parse.h"
#include "summary.h"

#define C TLSGATE_DIR_TO_SERVER
#define CONTENT_CTL 0x40
#define FUZZ_RULED "secure.test" /* the one refusing domain of the model */

/* The domain d (n bytes, any case) is FUZZ_RULED or under it. */
static bool ruled(const char *d, size_t n)
{
	size_t r = strlen(FUZZ_RULED);

	return n >= r && !strncasecmp(d + n - r, FUZZ_RULED, r) && (n == r || d[n - r - 1] == '.');
}

/* tagger_rcpt_unruled(): p[0..n) is one line "RCPT TO:<local@domain>"
 * CRLF in the plainest syntax and the domain is not ruled(). */
static bool rcpt_model(const uint8_t *p, size_t n)
{
	static const char atext[] = "!#$%&'*+-/=?^_`{|}~.";
	size_t i, at = 0, end = 0;
	int part = 0;

	if (n < 15 || n > 512 || strncasecmp((const char *)p, "RCPT TO:<", 9) ||
	    p[n - 2] != '\r' || p[n - 1] != '\n')
		return false;
	for (i = 9; i < n - 2; i++) {
		uint8_t c = p[i], prev = p[i - 1];
		bool alnum = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');

		if (part == 0) {
			if (c == '@' && i > 9) {
				part = 1;
				at = i;
			} else if (!alnum && (!c || !strchr(atext, c))) {
				return false;
			}
		} else if (part == 1) {
			if (c == '>' && prev != '@' && prev != '.') {
				part = 2;
				end = i;
			} else if (c == '.' ? prev == '@' || prev == '.'
					    : !(alnum || c == '-' || c == '_')) {
				return false;
			}
		} else if ((i == end + 1 && c != ' ') || c < 0x20 || c > 0x7e) {
			return false;
		}
	}
	return part == 2 && end - 9 <= 255 && !ruled((const char *)p + at + 1, end - at - 1);
}

static void parse_lines(const uint8_t *data, size_t size)
{
	size_t ll, total;
	bool bare;

	while (size && !smtp_line_next(data, size, &ll, &total, &bare)) {
		struct smtp_command c;
		struct smtp_reply_line r;
		char addr[64];
		const char *params;
		size_t plen;
		bool trunc, last;
		uint64_t sz;

		if (!smtp_command_parse((const char *)data, ll, &c)) {
			smtp_path_parse(c.arg, c.arg_len, "FROM:", addr, sizeof(addr), &trunc, &params, &plen);
			smtp_path_parse(c.arg, c.arg_len, "TO:", addr, sizeof(addr), &trunc, &params, &plen);
			smtp_bdat_parse(c.arg, c.arg_len, &sz, &last);
		}
		if (!smtp_reply_parse((const char *)data, ll, &r))
			smtp_ehlo_keyword(r.text, r.text_len);
		data += total;
		size -= total;
	}
}

/* The commands a session reported, as a running hash. */
struct cmd_digest {
	uint64_t h;
	unsigned int n;
	int last; /* the last verb */
};

static void digest_command(void *arg, int verb, const char *addr)
{
	struct cmd_digest *d = arg;

	d->last = verb;
	d->h = (d->h ^ (uint64_t)(unsigned int)verb) * 0x100000001b3ull;
	for (; *addr; addr++)
		d->h = (d->h ^ (uint8_t)*addr) * 0x100000001b3ull;
	d->h = (d->h ^ 0x100) * 0x100000001b3ull;
	d->n++;
}

struct fuzz {
	struct session *s;   /* behind the kernel model */
	struct session *ref; /* sees every byte */
	struct cmd_digest cmds, ref_cmds;
	uint32_t seq[2];
	struct { const uint8_t *p; size_t n; uint32_t seq; bool held; } held[2];
	uint8_t last_c;      /* the client byte before seq[C] */
	/* Kernel model: the flow is TLSGATE_CONTENT from content_seq on. */
	bool content;
	uint32_t content_seq;
	bool content_line_end;
	bool content_lf;     /* the bytes before content_seq are CR LF (or the
				content starts there: the switch at the 354) */
	bool passed;         /* passed bytes in this handover */
	/* Where s and ref may legitimately differ. */
	bool raw_skip;
	/* The tagger's view for the handover at the 354: its switch is on;
	 * the next seq after the last client / server chunk with data, bit 32
	 * set (client: that chunk ended with LF). */
	bool switch354, small_limits;
	uint64_t client_state, server_state;
	int aw_stage; /* the awaits entry (0: none) */
	bool aw_moved; /* the tagger moved it at this chunk (AWAIT_MOVED) */
	unsigned int aw_skip;
	uint32_t aw_client, aw_server;
	/* The kernel passed an end of data: the entry is INSPECT, ENDED at
	 * ended_seq, until content is handed over again. */
	bool ended;
	uint32_t ended_seq;
};

/* tagger_reply_lines(): the number of lines, plus 0x100 when the last is
 * a 354, or 0. */
static unsigned int reply_lines(const struct tcp_segment *g)
{
	const uint8_t *p = g->payload;
	unsigned int lines = 0;
	size_t start = 0, last = 0, i;

	if (g->len < 4 || g->len > TLSGATE_REPLY_LINE_MAX)
		return 0;
	for (i = 0; i < g->len; i++) {
		size_t ll = i - start;
		if (p[i] != '\n')
			continue;
		if (ll < 3 || p[start] < '1' || p[start] > '5' || p[start + 1] < '0' ||
		    p[start + 1] > '9' || p[start + 2] < '0' || p[start + 2] > '9' ||
		    (ll > 3 && p[start + 3] != ' ' && (ll != 4 || p[start + 3] != '\r')))
			return 0;
		last = start;
		lines++;
		start = i + 1;
	}
	if (start != g->len || !lines)
		return 0;
	return lines | (!memcmp(p + last, "354", 3) ? 0x100 : 0);
}

/* The tagger's moves on the awaits entry at a chunk with data, before the
 * session sees it; true when it switched to content at this 354. */
static bool tagger_await(struct fuzz *f, const struct tcp_segment *g)
{
	uint64_t before = g->dir == C ? f->client_state : f->server_state;
	unsigned int r, lines;

	if (!f->aw_stage)
		return false;
	if (g->dir == C) {
		if (f->aw_stage != TLSGATE_AWAIT_DATA || g->seq != f->aw_client ||
		    before != ((uint64_t)g->seq | 1ull << 32) ||
		    f->server_state != ((uint64_t)f->aw_server | 1ull << 32))
			return false;
		if (g->len == 6 && !strncasecmp((const char *)g->payload, "DATA\r\n", 6)) {
			f->aw_stage = TLSGATE_AWAIT_354;
			f->aw_skip = 0;
			f->aw_client += 6;
			f->aw_moved = true;
		} else if (rcpt_model(g->payload, g->len)) {
			f->aw_stage = TLSGATE_AWAIT_REPLY;
			f->aw_skip = 0;
			f->aw_client += (uint32_t)g->len;
			f->aw_moved = true;
		}
		return false;
	}
	if (before == ((uint64_t)g->seq | 1ull << 32) && g->seq == f->aw_server &&
	    f->aw_stage != TLSGATE_AWAIT_DATA && (r = reply_lines(g)) != 0) {
		lines = r & 0xff;
		if (f->aw_stage == TLSGATE_AWAIT_REPLY && lines == 1) {
			f->aw_stage = TLSGATE_AWAIT_DATA;
			f->aw_server += (uint32_t)g->len;
			f->aw_moved = true;
			return false;
		}
		if (f->aw_stage == TLSGATE_AWAIT_354 && lines <= f->aw_skip) {
			f->aw_skip -= lines;
			f->aw_server += (uint32_t)g->len;
			f->aw_moved = true;
			return false;
		}
		if (f->aw_stage == TLSGATE_AWAIT_354 && lines == f->aw_skip + 1 && (r & 0x100) &&
		    f->client_state == ((uint64_t)f->aw_client | 1ull << 32)) {
			f->aw_stage = 0;
			return true;
		}
	}
	if ((int32_t)(g->seq + (uint32_t)g->len - f->aw_server) > 0)
		f->aw_stage = 0;
	return false;
}

/* daemon_await() after a chunk: the kernel's entry is kept when it is at
 * the same plan or further on. */
static void daemon_await_model(struct fuzz *f, bool moved)
{
	uint32_t c = 0, sv = 0;
	unsigned int skip = 0;
	int stage = f->switch354 && !f->content ? session_await_stage(f->s, &c, &sv, &skip) : 0;

	int32_t dc = (int32_t)(f->aw_client - c), ds = (int32_t)(f->aw_server - sv);

	if (stage == TLSGATE_AWAIT_DATA)
		return;
	if (stage && moved)
		return; /* the tagger's move said where it is */
	if (stage && f->aw_stage && dc >= 0 && ds >= 0 &&
	    (dc > 0 || ds > 0 || (f->aw_stage == stage && f->aw_skip <= skip)))
		return;
	f->aw_stage = stage;
	f->aw_skip = skip;
	f->aw_client = c;
	f->aw_server = sv;
}

/* tagger_content(): true when the segment passes in the kernel; *ended
 * when it passed as the end of data (TLSGATE_COPY_END_OF_DATA). */
static bool kernel_passes(struct fuzz *f, const struct tcp_segment *g, bool *ended)
{
	bool line_end = f->content_line_end;
	size_t i, n = g->len;

	*ended = false;
	if (g->flags & (SESSION_TCP_SYN | SESSION_TCP_FIN | SESSION_TCP_RST))
		return false;
	if (!g->len)
		return true;
	if (g->dir != C || g->seq != f->content_seq)
		return false;
	/* CRLF "." CRLF at the end: the rest is scanned */
	if ((n >= 5 && !memcmp(g->payload + n - 5, "\r\n.\r\n", 5)) ||
	    (n == 3 && f->content_lf && !memcmp(g->payload, ".\r\n", 3))) {
		*ended = true;
		n -= 3;
	}
	for (i = 0; i < n; i++) {
		bool next_eol = i + 1 == g->len || g->payload[i + 1] == '\r' ||
				g->payload[i + 1] == '\n';
		if (g->payload[i] == '.' && line_end && next_eol)
			return false;
		line_end = g->payload[i] == '\r' || g->payload[i] == '\n';
	}
	if (*ended) {
		f->content_seq += (uint32_t)g->len;
		return true;
	}
	/* a CR, or an LF without a CR before it, last: back */
	n = g->len;
	if (g->payload[n - 1] == '\r' ||
	    (g->payload[n - 1] == '\n' && (n < 2 || g->payload[n - 2] != '\r')))
		return false;
	f->content_seq += (uint32_t)g->len;
	f->content_line_end = line_end;
	f->content_lf = line_end;
	f->passed = true;
	return true;
}

static void check_memory(const struct session *s)
{
	if (session_memory(s) > 8 * 65536 + 65536)
		__builtin_trap(); /* the documented bound */
}

/* A return from the kernel widens the session's client window (see
 * session_content_skip()); ref gets the same, with nothing skipped, before
 * it sees the segment that s sees after the return, so that both read it
 * with the same window (and feed it in the same pieces). */
static void ref_window(struct fuzz *f)
{
	uint32_t next;

	if (session_client_next(f->ref, &next))
		session_content_skip(f->ref, next, true);
}

static bool reasm_lost(const struct fuzz *f)
{
	return (session_info(f->s)->anomalies | session_info(f->ref)->anomalies) & SESSION_ANOM_REASM_LOST;
}

static void deliver(struct fuzz *f, const struct tcp_segment *g)
{
	uint32_t seq, cn = f->aw_client;
	bool line_end, data = g->len && !(g->flags & (SESSION_TCP_SYN | SESSION_TCP_FIN |
						   SESSION_TCP_RST));
	bool await, moved, passes = false, ended = false;

	f->aw_moved = false;
	await = data && !f->content && tagger_await(f, g);
	moved = f->aw_moved;
	if (data && g->dir == C)
		f->client_state = (uint32_t)(g->seq + g->len) |
				  (uint64_t)(g->payload[g->len - 1] == '\n') << 32;
	else if (data)
		f->server_state = (uint32_t)(g->seq + g->len) | 1ull << 32;
	if (f->content) {
		passes = kernel_passes(f, g, &ended);
		if (!passes || ended)
			ref_window(f); /* as s's, before ref sees the segment */
	}
	session_segment(f->ref, g);
	session_content_ready(f->ref, &seq, &line_end);
	check_memory(f->ref);
	if (f->content) {
		if (passes) {
			if (ended) {
				/* back to INSPECT after it, as gate_content_return() */
				f->content = false;
				f->ended = true;
				f->ended_seq = f->content_seq;
				session_content_skip(f->s, f->content_seq, true);
				session_content_ended(f->s);
				/* not reported (nothing was withheld); ref saw the "." */
				digest_command(&f->cmds, SMTP_VERB_END_OF_DATA, "");
			}
			return;
		}
		/* Back to userspace: first skip what passed in the kernel. */
		f->content = false;
		session_content_skip(f->s, f->content_seq, f->passed && f->content_lf);
	}
	session_segment(f->s, g);
	session_content_ready(f->s, &seq, &line_end);
	check_memory(f->s);
	if (await) {
		/* The kernel turned CONTENT at this 354: the session must read
		 * the client's next byte as content too (daemon_content_switched()). */
		if (!session_content_ready(f->s, &seq, &line_end) || seq != cn || !line_end)
			__builtin_trap();
		f->content = true;
		f->ended = false;
		f->content_seq = cn;
		f->content_line_end = true;
		f->content_lf = true;
		f->passed = false;
	}
	daemon_await_model(f, moved);
}

/* With every client byte delivered, the session's next seq is the
 * client's, and line_end says whether the byte before it ends a line (a
 * CR may read as mid-line when an overlong line was dropped). */
static void check_ready(const struct fuzz *f)
{
	uint32_t seq;
	bool line_end, eol = f->last_c == '\r' || f->last_c == '\n';

	if (!session_content_ready(f->s, &seq, &line_end) || f->content || f->raw_skip || reasm_lost(f) ||
	    (f->held[C].held && f->held[C].n))
		return;
	if (seq != f->seq[C] || (line_end && !eol) || (!line_end && eol && f->last_c != '\r'))
		__builtin_trap();
}

/* A control chunk; returns the input bytes it used. */
static size_t control(struct fuzz *f, const uint8_t *p, size_t n)
{
	uint32_t delta = 0, seq;
	size_t width, i;
	bool line_end;
	uint8_t ctl;

	if (!n)
		return 0;
	ctl = p[0];
	if (ctl & 0x80) {
		if (!f->content && session_content_ready(f->s, &seq, &line_end)) {
			f->content = true;
			f->ended = false;
			f->content_seq = seq;
			f->content_line_end = line_end;
			f->content_lf = false; /* as datapath_set_content() writes it */
			f->passed = false;
		}
		return 1;
	}
	if (ctl & 0x40) {
		f->switch354 = !f->switch354 && !f->small_limits;
		return 1;
	}
	width = (ctl >> 1) & 3;
	width = width == 3 ? 0 : (size_t)1 << width;
	if (width > n - 1)
		width = n - 1;
	for (i = 0; i < width; i++)
		delta |= (uint32_t)p[1 + i] << (8 * i);
	f->raw_skip = true;
	if (ctl & 8) {
		session_content_skip(f->s, f->seq[C] - delta, ctl & 1);
	} else {
		f->seq[C] += delta;
		session_content_skip(f->s, f->seq[C], ctl & 1);
	}
	session_content_ready(f->s, &seq, &line_end);
	return 1 + width;
}

/* The tagger's command-copy rule, for a client segment p[0..n) that follows
 * the stream's byte prev (or starts it: prev '\n'). */
static bool command_copy_model(const uint8_t *p, size_t n, uint8_t prev)
{
	size_t i;

	if (!n || prev != '\n')
		return false;
	for (i = 0; i < n; i++) {
		uint8_t c = p[i], f = c | 0x20;
		bool start = i == 0 || p[i - 1] == '\r' || p[i - 1] == '\n';
		if (start && (f == 'm' || f == 'r' || f == 's' || f == 'b' || c == ' ' || c == '\t' ||
			      c == '\v' || c == '\f'))
			return rcpt_model(p, n);
	}
	return true;
}

/* stream[0..len): the client's bytes in order; chunk_of[i]: the client
 * chunk byte i came in; copied[k]: the model's answer for chunk k. */
static void check_command_copies(const uint8_t *stream, size_t len, const size_t *chunk_of,
				 const bool *copied)
{
	size_t start = 0, i;

	for (i = 0; i < len; i++) {
		struct smtp_command c;
		size_t ll = i - start;

		if (stream[i] != '\n')
			continue;
		if (ll && stream[i - 1] == '\r')
			ll--;
		if (!smtp_command_parse((const char *)stream + start, ll, &c) &&
		    (c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT ||
		     c.verb == SMTP_VERB_STARTTLS) &&
		    copied[chunk_of[i]]) {
			/* A RCPT TO whose domain, as the daemon reads it
			 * (report_command(), gate_on_command()), it lets pass. */
			char addr[256], norm[256];
			const char *params, *at;
			size_t plen;
			bool trunc;

			if (c.verb != SMTP_VERB_RCPT ||
			    (!smtp_path_parse(c.arg, c.arg_len, "TO:", addr, sizeof(addr), &trunc,
					      &params, &plen) &&
			     (at = strrchr(addr, '@')) != NULL &&
			     !policy_domain_normalize(at + 1, norm, sizeof(norm)) &&
			     ruled(norm, strlen(norm))))
				__builtin_trap(); /* would reach the server unjudged */
		}
		start = i + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_limits lim = { 0, 0 };
	struct fuzz f = { .seq = { 0xffffff00u, 0x7fffff00u } };
	size_t i;
	json_t *o;

	if (!size)
		return 0;
	parse_lines(data, size);
	if (data[0] & 2)
		lim.dialog_bytes = 64;
	if (data[0] & 4)
		lim.tls_bytes = 256;
	f.small_limits = (data[0] & 6) != 0;
	f.s = session_new(&lim, data[0] & 1);
	f.ref = session_new(&lim, data[0] & 1);
	if (!f.s || !f.ref)
		goto out;
	session_set_command_cb(f.s, digest_command, &f.cmds);
	session_set_command_cb(f.ref, digest_command, &f.ref_cmds);
	if (!(data[0] & 1)) {
		struct tcp_segment syn = { .dir = C, .seq = f.seq[0]++, .flags = SESSION_TCP_SYN };
		struct tcp_segment sa = { .dir = TLSGATE_DIR_TO_CLIENT, .seq = f.seq[1]++,
					  .flags = SESSION_TCP_SYN | SESSION_TCP_ACK };

		deliver(&f, &syn);
		deliver(&f, &sa);
	}
	uint8_t *stream = malloc(size);
	size_t *chunk_of = malloc(size * sizeof(*chunk_of)), slen = 0, nchunks = 0;
	bool *copied = malloc(size * sizeof(*copied));
	if (!stream || !chunk_of || !copied)
		goto out_free;
	for (i = 1; i < size;) {
		int dir = data[i] >> 7;
		bool ooo = data[i] & 0x40;
		size_t n = data[i] & 0x3f;
		struct tcp_segment g = { .dir = (enum tlsgate_dir)dir, .flags = SESSION_TCP_ACK };

		if (data[i++] == CONTENT_CTL) {
			i += control(&f, data + i, size - i);
			continue;
		}
		if (n > size - i)
			n = size - i;
		if (dir == C && n) {
			copied[nchunks] = command_copy_model(data + i, n, slen ? stream[slen - 1] : '\n');
			for (size_t k = 0; k < n; k++) {
				chunk_of[slen] = nchunks;
				stream[slen++] = data[i + k];
			}
			nchunks++;
		}
		if (ooo && !f.held[dir].held) {
			f.held[dir].p = data + i;
			f.held[dir].n = n;
			f.held[dir].seq = f.seq[dir];
			f.held[dir].held = true;
		} else {
			g.seq = f.seq[dir];
			g.payload = data + i;
			g.len = n;
			deliver(&f, &g);
			if (f.held[dir].held) {
				g.seq = f.held[dir].seq;
				g.payload = f.held[dir].p;
				g.len = f.held[dir].n;
				deliver(&f, &g);
				f.held[dir].held = false;
			}
		}
		f.seq[dir] += (uint32_t)n;
		if (dir == C && n)
			f.last_c = data[i + n - 1];
		i += n;
		check_ready(&f);
	}
	/* The kernel hides content only: the commands are the same. */
	if (!f.raw_skip && !reasm_lost(&f) &&
	    (f.cmds.h != f.ref_cmds.h || f.cmds.n != f.ref_cmds.n))
		__builtin_trap();
	if (!f.raw_skip)
		check_command_copies(stream, slen, chunk_of, copied);
	o = session_summary_json(f.s, NULL);
	json_decref(o);
out_free:
	free(stream);
	free(chunk_of);
	free(copied);
out:
	session_free(f.s);
	session_free(f.ref);
	return 0;
}
