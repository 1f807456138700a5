/* fuzz_gate - secure-mode dialogs, cut into TCP segments the way an active
 * attacker on the path would deliver them, through exactly the steps of
 * tlsgated's daemon_segment() (flow table, gate_before_segment,
 * session_segment, gate_segment) against a model of the receiving server.
 *
 * Promise checked (DESIGN.md threat model, rules 1-3): the server
 * application never reads, in the plaintext dialog, a MAIL FROM naming a
 * secure-mode sender domain (outbound) or a RCPT TO naming a secure-mode
 * recipient domain (inbound). The server reads only what the gate let
 * through: a segment the gate NF_ACCEPTed while inspecting, everything
 * after an offload (PASS: the kernel passes the rest), nothing after a
 * block. A secure command the model server reads therefore means the gate
 * offloaded the flow before that command or accepted the segment that
 * completed it: abort().
 *
 * The gate is real (gate_open on a temporary SQLite store, a signed policy
 * with secure_mode sender_domains secure.example.org (+ subdomains) and
 * recipient_domains vault.example.org); the kernel datapath and the raw
 * sockets are stand-ins (linked with --wrap, see FUZZ_WRAP_fuzz_gate in the
 * Makefile): no packet leaves this process, no CAP_NET_RAW is needed. Left
 * out of daemon_segment(): the kernel's copy ring (every segment is
 * queued) and the content handover (content stays in the session).
 *
 * Input: byte 0 (options), byte 1 (transactions), per transaction one
 * byte, then the segment plan (2 bytes per segment; missing bytes are 0):
 *   byte 0: bit 0 inbound (client outside, the server is ours); bits 1-2
 *     STARTTLS: 0 not offered, 1 offered not issued, 2 issued and refused
 *     (454), 3 issued, 220, then a TLS 1.3 handshake; bit 3 PIPELINING
 *     offered (and used); bit 4 CHUNKING offered; bit 5 mid-stream (no
 *     handshake seen); bit 6 data on the SYN; bit 7 the server takes the
 *     SYN's data (TFO-like: its SYN-ACK acknowledges it, the application
 *     reads it).
 *   byte 1: bits 0-1 transactions - 1 (1..4, capped at 3); bit 2 junk
 *     lines the MTAs tolerate; bit 3 bare LF line ends; bit 4 retransmit
 *     lost segments at the end of their turn (else at the very end); bit 5
 *     no QUIT; bits 6-7 maximum segment size class.
 *   per transaction: bits 0-2 sender (outbound) / recipient (inbound)
 *     spelling; bit 3 second recipient; bits 4-5 body: DATA, DATA whose
 *     content holds an ambiguous dot and a MAIL FROM after it, BDAT, DATA
 *     with a command-like content line; bit 6 RSET first; bit 7 swap the
 *     secure and the normal spelling.
 *   plan, per segment: [len][op]: len: payload bytes (1 + len % mss); op
 *     low nibble: 0-4 plain, 5 duplicate, 6 reorder (held until after the
 *     next packet), 7 overlap with the same bytes (a longer copy from
 *     earlier), 8 overlap with other bytes before, 9 the same after, 10 a
 *     decoy with a bad checksum first (dropped before the gate and the
 *     receiver, as tlsgated does), 11 URG (pointer from the high nibble),
 *     12 RST at a wrong sequence number first, 13 RST at the right one
 *     after, 14 lost (hole; retransmitted later), 15 IP fragments (the
 *     tagger drops them: lost, retransmitted later); op high nibble:
 *     parameter (decoy kind, overlap distance, urgent pointer, RST
 *     offset); on server segments: op 12-13 make the server's ACK claim
 *     more than it has (an acknowledged hole).
 *
 * Oracle: model receivers (Linux-like: in-order delivery; an out-of-order
 * byte either keeps its first copy or takes the last one; the urgent byte
 * (at seq + urgent pointer - 1) is removed or kept; an RST counts only at
 * the exact next sequence number; a later SYN is ignored; data on the
 * first SYN only when the server acknowledged it), each read by a model
 * SMTP server: lines end at LF; MAIL FROM/RCPT TO/DATA/BDAT/RSET/QUIT/
 * STARTTLS; DATA content after a transaction with a recipient, ended by
 * <CRLF>.<CRLF> (strict) or also by <LF>.<LF>, <LF>.<CRLF>, <CRLF>.<LF>
 * (lenient); a BDAT chunk is skipped whatever the transaction; QUIT ends
 * the reading; STARTTLS ends it when the server answers 220. Every
 * combination (2 x 2 x 2) is checked. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/netfilter.h>

#include "datapath.h"
#include "enforce.h"
#include "flow.h"
#include "flowkey.h"
#include "gate.h"
#include "log.h"
#include "policy.h"
#include "session.h"

/* ---- stand-ins: the kernel datapath and the raw sockets ----------------- */

static unsigned long n_set_verdict, n_injected;

int __wrap_datapath_heartbeat(struct datapath *dp, uint32_t ms) { return 0; }
int __wrap_datapath_heartbeat_stopped(struct datapath *dp, uint32_t ms) { return 0; }
int __wrap_datapath_set_secure_sources(struct datapath *dp, const struct tlsgate_lpm_key *keys,
				       size_t n)
{
	return 0;
}
int __wrap_datapath_set_rcpt_domains(struct datapath *dp, const uint64_t *hashes, size_t n)
{
	return 0;
}
int __wrap_datapath_set_verdict(struct datapath *dp, const struct tlsgate_flow_key *key,
				enum tlsgate_verdict verdict)
{
	n_set_verdict++;
	return 0;
}
int __wrap_datapath_set_content(struct datapath *dp, const struct tlsgate_flow_key *key,
				uint32_t seq, bool line_end, const uint32_t *chunk_end, uint8_t copy)
{
	return 0;
}
int __wrap_datapath_lookup(struct datapath *dp, const struct tlsgate_flow_key *key,
			   struct tlsgate_flow_value *val)
{
	return -ENOENT;
}
static char enforce_stand_in;
struct enforce *__wrap_enforce_open(void) { return (struct enforce *)&enforce_stand_in; }
void __wrap_enforce_close(struct enforce *e) {}
int __wrap_enforce_refuse_at(struct enforce *e, const struct flowkey_packet *p,
			     const struct enforce_verbs *v, const char *refusal, uint32_t server_seq)
{
	n_injected++;
	return 0;
}
int __wrap_enforce_answer(struct enforce *e, const struct flowkey_packet *p,
			  const struct enforce_verbs *v, const char *reply)
{
	n_injected++;
	return 0;
}
int __wrap_enforce_reset(struct enforce *e, const struct flowkey_packet *p)
{
	n_injected++;
	return 0;
}
void __wrap_enforce_tick(struct enforce *e) {}
uint64_t __wrap_enforce_repeated(const struct enforce *e) { return 0; }
int __wrap_datapath_set_secure_domains(struct datapath *dp, const uint64_t *hashes,
				       const uint32_t *flags, size_t n, uint32_t ready_flags,
				       uint32_t failclosed_ms)
{
	return 0;
}

/* ---- the signed policy ------------------------------------------------ */

static const char policy_json[] =
	"{\"policy_version\": 1, \"serial\": 1, \"expires\": \"2099-01-01T00:00:00Z\",\n"
	" \"comment\": \"fuzz_gate\",\n"
	" \"secure_mode\": {\"sender_domains\": [{\"domain\": \"secure.example.org\", \"subdomains\": true}],\n"
	"                 \"recipient_domains\": [{\"domain\": \"vault.example.org\", \"subdomains\": false}]}}\n";
static const char policy_sig[] =
	"untrusted comment: signature from minisign secret key\n"
	"RUTk5UA17cg9LznDu0ZrDahW9QDkrRo/ChGQ6+fyit9qC1eJKYdJP8hc77jm9WdvoQ2vU0otyy70zz3PpM4cpl68KUDoTIOAbwg=\n"
	"trusted comment: serial:1 expires:2099-01-01T00:00:00Z\n"
	"rURT5sEheGHs7k/8yU8g89Qnv26dphfWza6/BMUmNJYYQOPdEOCIcrh6bQ9r6wRcz0AdZyKgZQm27uPMA2mnBg==\n";
static const char policy_pub[] = "untrusted comment: minisign public key 2F3DC8ED3540E5E4\n"
				 "RWTk5UA17cg9L+eafJfaGJZT0HygqNGQRHJkSvQytrHhRyDRy4A2xuab\n";

/* ---- the daemon's part ------------------------------------------------- */

#define IF_INSIDE 1
#define IF_OUTSIDE 2

static struct gate *g;
static struct flow_table *flows, *no_flows;
static struct port_set ports;
static char workdir[64];

static void write_file(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", workdir, name);
	FILE *fp = fopen(path, "w");
	if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0) {
		fprintf(stderr, "fuzz_gate: cannot write %s\n", path);
		abort();
	}
}

static void cleanup(void)
{
	char cmd[128];
	gate_close(g);
	g = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
	if (workdir[0])
		(void)!system(cmd);
}

static void setup(void)
{
	char store[128], state[128], key[128], pol[128], err[POLICY_ERR_MAX];

	log_open("fuzz_gate", getenv("FUZZ_GATE_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR, false);
	/* tmpfs where there is one: every block writes an event row */
	snprintf(workdir, sizeof(workdir), "%s/fuzz_gate-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(workdir)) {
		fprintf(stderr, "fuzz_gate: mkdtemp failed\n");
		abort();
	}
	atexit(cleanup);
	write_file("k.pub", policy_pub);
	write_file("policy.json", policy_json);
	write_file("policy.json.minisig", policy_sig);
	snprintf(store, sizeof(store), "%s/tlsgate.db", workdir);
	snprintf(state, sizeof(state), "%s/state", workdir);
	snprintf(key, sizeof(key), "%s/k.pub", workdir);
	snprintf(pol, sizeof(pol), "%s/policy.json", workdir);
	struct gate_config cfg = {
		.store_path = store,
		.state_dir = state,
		.policy_key_path = key,
		.failclosed_ms = GATE_FAILCLOSED_MS_DEFAULT,
		.inside_ifindex = { IF_INSIDE },
		.n_inside = 1,
	};
	static char dp_stand_in; /* never dereferenced: the datapath is stood in for */
	g = gate_open(&cfg, (struct datapath *)&dp_stand_in);
	if (!g) {
		fprintf(stderr, "fuzz_gate: gate_open failed\n");
		abort();
	}
	if (gate_policy_apply(g, pol, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_gate: policy not applied: %s\n", err);
		abort();
	}
	flows = flow_table_new(64, NULL, NULL);
	no_flows = flow_table_new(1, NULL, NULL);
	port_set_add(&ports, 25);
}

/* daemon_segment() for a queued segment (no copy ring, no content in the
 * kernel): the NFQUEUE verdict. */
static int daemon_segment(const uint8_t *pkt, size_t len, uint32_t indev)
{
	struct flowkey_packet p;

	if (flowkey_from_ip(pkt, len, &ports, &p) < 0)
		return NF_DROP;
	struct flow *f = flow_lookup(flows, &p.key);
	bool opening = p.dir == TLSGATE_DIR_TO_SERVER && (p.flags & SESSION_TCP_SYN) &&
		       !(p.flags & SESSION_TCP_ACK);
	if (f && opening &&
	    !(f->syn_seen && f->syn_seq == p.seq && f->verdict == TLSGATE_INSPECT &&
	      session_in_handshake(f->session))) {
		flow_remove(flows, f);
		f = NULL;
	}
	if (!f) {
		if (!(p.flags & SESSION_TCP_SYN) && p.payload_len == 0)
			return NF_ACCEPT;
		f = flow_insert(flows, &p.key, 1);
		bool src_is_lo = memcmp(p.saddr, p.key.addr_lo, 16) == 0 &&
				 p.sport == ntohs(p.key.port_lo);
		f->client_is_lo = (p.dir == TLSGATE_DIR_TO_SERVER) == src_is_lo;
		f->midstream = !opening;
		f->syn_seen = opening;
		f->syn_seq = p.seq;
		f->session = session_new(NULL, f->midstream);
		if (!f->session) {
			flow_remove(flows, f);
			return NF_ACCEPT;
		}
		gate_flow_start(g, f, &p, indev);
	}
	if (f->verdict == TLSGATE_PASS)
		return NF_ACCEPT;
	if (f->verdict == TLSGATE_BLOCK) {
		gate_blocked_packet(g, f, &p, false);
		return NF_DROP;
	}
	if (!f->session)
		return NF_DROP;
	struct tcp_segment seg = {
		.dir = p.dir, .seq = p.seq, .ack = p.ack, .flags = p.flags,
		.window = p.window, .payload = p.payload, .len = p.payload_len, .ts_ns = 1,
	};
	if (gate_withholds(f, &p))
		return NF_DROP;
	gate_before_segment(g, f, &p, NULL);
	enum session_action action = session_segment(f->session, &seg);
	int verdict = gate_segment(g, f, &p, action, false);
	/* The content handover is left out: what gate_segment() queued for
	 * it is flushed against an empty table (the flow stays inspected). */
	gate_content_flush(g, no_flows);
	if (f->verdict == TLSGATE_INSPECT && action == SESSION_CLOSED)
		flow_remove(flows, f);
	return verdict;
}

/* ---- the dialog ---------------------------------------------------------- */

#define STREAM_MAX 8192
#define TURNS_MAX 64

struct turn {
	int dir; /* 0 client, 1 server */
	size_t off, len;
};

struct dialog {
	bool inbound, starttls220;
	uint8_t c[STREAM_MAX], decoy[STREAM_MAX], s[STREAM_MAX];
	size_t clen, slen;
	struct turn turns[TURNS_MAX];
	size_t n_turns;
};

static void put(struct dialog *d, int dir, const char *text, size_t n)
{
	uint8_t *buf = dir ? d->s : d->c;
	size_t *len = dir ? &d->slen : &d->clen;
	if (n > STREAM_MAX - *len)
		n = STREAM_MAX - *len;
	if (!n)
		return;
	if (d->n_turns && d->turns[d->n_turns - 1].dir == dir &&
	    d->turns[d->n_turns - 1].off + d->turns[d->n_turns - 1].len == *len)
		d->turns[d->n_turns - 1].len += n;
	else if (d->n_turns < TURNS_MAX)
		d->turns[d->n_turns++] = (struct turn){ dir, *len, n };
	else
		d->turns[d->n_turns - 1].len += n; /* cannot happen with the limits below */
	memcpy(buf + *len, text, n);
	*len += n;
}

/* raw client bytes (message content) */
static void puts0(struct dialog *d, const char *text)
{
	put(d, 0, text, strlen(text));
}

static bool bare_lf;
static void line(struct dialog *d, int dir, const char *text)
{
	put(d, dir, text, strlen(text));
	put(d, dir, bare_lf && dir == 0 ? "\n" : "\r\n", bare_lf && dir == 0 ? 1 : 2);
}
/* a client line and its reply */
static void cmd(struct dialog *d, const char *c, const char *reply)
{
	line(d, 0, c);
	line(d, 1, reply);
}

static const char *const secure_senders[8] = {
	"MAIL FROM:<alice@secure.example.org>",
	"MAIL FROM:<Alice@SECURE.Example.ORG> BODY=8BITMIME",
	"mail from:<bob@mx.secure.example.org>",
	"MAIL FROM: <alice@secure.example.org>",
	"MAIL FROM:<@relay.example.net:alice@secure.example.org>",
	"MAIL FROM:<\"a b\"@secure.example.org> SIZE=100",
	"Mail From:<x@secure.example.org>",
	"MAIL FROM:<alice@secure.example.org> BODY=7BIT",
};
static const char *const normal_senders[8] = {
	"MAIL FROM:<alice@normal.example>",
	"MAIL FROM:<>",
	"mail from:<bob@xsecure.example.org>",
	"MAIL FROM:<alice@secure.example.org.evil>",
	"MAIL FROM:<alice@example.org>",
	"MAIL FROM:<carol@normal.example> BODY=8BITMIME",
	"MAIL FROM:<x@secure-example.org>",
	"MAIL FROM:<alice@normal.example> SIZE=5",
};
static const char *const secure_rcpts[8] = {
	"RCPT TO:<v@vault.example.org>",
	"RCPT TO:<V@VAULT.Example.Org>",
	"rcpt to:<v@vault.example.org>",
	"RCPT TO: <v@vault.example.org>",
	"RCPT TO:<v@vault.example.org> NOTIFY=NEVER",
	"RCPT TO:<\"v w\"@vault.example.org>",
	"Rcpt To:<x@vault.example.org>",
	"RCPT TO:<@relay.example.net:v@vault.example.org>",
};
static const char *const normal_rcpts[8] = {
	"RCPT TO:<bob@normal.example>",
	"RCPT TO:<bob@sub.vault.example.org>",
	"rcpt to:<bob@vault.example.org.evil>",
	"RCPT TO:<bob@xvault.example.org>",
	"RCPT TO:<postmaster>",
	"RCPT TO:<bob@normal.example> NOTIFY=NEVER",
	"RCPT TO:<bob@example.org>",
	"RCPT TO:<bob@vault-example.org>",
};

/* A TLS 1.3 ClientHello and ServerHello (supported_versions 0x0304). */
static const uint8_t client_hello[] = {
	0x16, 0x03, 0x01, 0x00, 0x36, 0x01, 0x00, 0x00, 0x32, 0x03, 0x03,
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
	0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x07, 0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04,
};
static const uint8_t server_hello[] = {
	0x16, 0x03, 0x03, 0x00, 0x32, 0x02, 0x00, 0x00, 0x2e, 0x03, 0x03,
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
	0x00, 0x13, 0x01, 0x00, 0x00, 0x06, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04,
};

/* The decoy: the same bytes with the secure names turned normal and the
 * verbs broken (same length), for overlaps with other bytes. */
static void make_decoy(struct dialog *d)
{
	static const char *const from[] = { "secure", "SECURE", "vault", "VAULT", "MAIL", "mail",
					    "RCPT", "rcpt", "DATA", "\r\n.\r\n" };
	static const char *const to[] = { "sexure", "SEXURE", "vaulx", "VAULX", "MAIX", "maix",
					  "RCPX", "rcpx", "DATX", "\r\n,\r\n" };
	memcpy(d->decoy, d->c, d->clen);
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		size_t n = strlen(from[i]);
		for (size_t j = 0; j + n <= d->clen; j++)
			if (!memcmp(d->c + j, from[i], n))
				memcpy(d->decoy + j, to[i], n);
	}
}

struct reader {
	const uint8_t *p;
	size_t n;
};
static uint8_t next_byte(struct reader *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static void build_dialog(struct dialog *d, struct reader *r, uint8_t o0)
{
	uint8_t o1 = next_byte(r);
	int tls = (o0 >> 1) & 3;
	bool pipelining = o0 & 0x08, chunking = o0 & 0x10, junk = o1 & 0x04;
	char buf[256];

	d->inbound = o0 & 1;
	bare_lf = o1 & 0x08;
	line(d, 1, "220 mx.example.net ESMTP");
	if (junk)
		cmd(d, "XJUNK nothing", "502 5.5.2 Error: command not recognized");
	line(d, 0, "EHLO client.example.com");
	line(d, 1, "250-mx.example.net");
	if (tls)
		line(d, 1, "250-STARTTLS");
	if (pipelining)
		line(d, 1, "250-PIPELINING");
	if (chunking)
		line(d, 1, "250-CHUNKING");
	line(d, 1, "250 8BITMIME");
	if (tls == 2) {
		cmd(d, "STARTTLS", "454 4.7.0 TLS not available due to local problem");
	} else if (tls == 3) {
		cmd(d, "STARTTLS", "220 2.0.0 Ready to start TLS");
		d->starttls220 = true;
		put(d, 0, (const char *)client_hello, sizeof(client_hello));
		put(d, 1, (const char *)server_hello, sizeof(server_hello));
		/* the encrypted rest: opaque application data records */
		put(d, 0, "\x17\x03\x03\x00\x05" "abcde", 10);
		put(d, 1, "\x17\x03\x03\x00\x05" "fghij", 10);
		put(d, 0, "\x17\x03\x03\x00\x05" "klmno", 10);
	}
	unsigned int n_tx = 1 + (o1 & 3);
	if (n_tx > 3)
		n_tx = 3;
	for (unsigned int t = 0; t < n_tx && tls != 3; t++) {
		uint8_t x = next_byte(r);
		bool secure = (x & 0x80) ? !(t & 1) : (t & 1);
		int body = (x >> 4) & 3;
		const char *mail, *rcpt;
		if (d->inbound) {
			mail = normal_senders[x & 7];
			rcpt = secure ? secure_rcpts[x & 7] : normal_rcpts[x & 7];
		} else {
			mail = secure ? secure_senders[x & 7] : normal_senders[x & 7];
			rcpt = normal_rcpts[(x + 3) & 7];
		}
		if (x & 0x40)
			cmd(d, "RSET", "250 2.0.0 Ok");
		if (junk && (x & 1))
			cmd(d, "NOOP", "250 2.0.0 Ok");
		const char *rcpt2 = (x & 8) ? (d->inbound ? secure_rcpts[(x + 1) & 7]
							  : normal_rcpts[(x + 1) & 7])
					    : NULL;
		bool bdat = body == 2;
		if (pipelining) {
			line(d, 0, mail);
			line(d, 0, rcpt);
			if (rcpt2)
				line(d, 0, rcpt2);
			if (!bdat)
				line(d, 0, "DATA");
			line(d, 1, "250 2.1.0 Ok");
			line(d, 1, "250 2.1.5 Ok");
			if (rcpt2)
				line(d, 1, "250 2.1.5 Ok");
			if (!bdat)
				line(d, 1, "354 End data with <CR><LF>.<CR><LF>");
		} else {
			cmd(d, mail, "250 2.1.0 Ok");
			cmd(d, rcpt, "250 2.1.5 Ok");
			if (rcpt2)
				cmd(d, rcpt2, "250 2.1.5 Ok");
			if (!bdat)
				cmd(d, "DATA", "354 End data with <CR><LF>.<CR><LF>");
		}
		switch (body) {
		case 0:
			puts0(d, "Subject: hi\r\n\r\nhello\r\n..dot\r\n.\r\n");
			break;
		case 1: /* smuggling: ends data for lenient servers only */
			snprintf(buf, sizeof(buf), "Subject: x\r\n\r\nhi\n.\n%s\r\n%s\r\nDATA\r\n", t & 1 ? normal_senders[0] : secure_senders[0],
				 d->inbound ? secure_rcpts[0] : normal_rcpts[0]);
			put(d, 0, buf, strlen(buf));
			puts0(d, "more\r\n.\r\n");
			break;
		case 2: {
			static const char chunk[] = "Subject: b\r\n\r\nMAIL FROM:<a@secure.example.org>\r\n";
			snprintf(buf, sizeof(buf), "BDAT %zu LAST\r\n", sizeof(chunk) - 1);
			put(d, 0, buf, strlen(buf));
			put(d, 0, chunk, sizeof(chunk) - 1);
			break;
		}
		default:
			puts0(d, "Subject: c\r\n\r\nMAIL FROM:<a@secure.example.org>\r\n"
				 "RCPT TO:<v@vault.example.org>\r\n.\r\n");
			break;
		}
		line(d, 1, "250 2.0.0 Ok: queued");
	}
	if (!(o1 & 0x20) && tls != 3)
		cmd(d, "QUIT", "221 2.0.0 Bye");
	make_decoy(d);
}

/* ---- the receiving server (model) ---------------------------------------- */

#define RX_LAST 1   /* out-of-order overlaps: the last copy wins */
#define RX_URG_OUT 2 /* the urgent byte is taken out of the stream */
#define RX_LENIENT 4 /* lenient end of data */
#define RX_VARIANTS 8

struct rx {
	uint8_t byte[STREAM_MAX];
	bool have[STREAM_MAX], urgent[STREAM_MAX];
	size_t nxt;
	bool reset;
};
static struct rx rxs[RX_VARIANTS];
static bool rx_syn_done;

struct wire {
	int dir;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t urp;
	const uint8_t *payload;
	size_t len;
};

static uint32_t c_isn, s_isn;
static uint8_t c_addr[4], s_addr[4];
static uint16_t c_port;

static void rx_deliver(const struct wire *w, bool syn_accept)
{
	bool syn = w->flags & SESSION_TCP_SYN;
	if (syn && rx_syn_done)
		return; /* RFC 5961: challenge ACK, the segment is ignored */
	for (int v = 0; v < RX_VARIANTS; v++) {
		struct rx *x = &rxs[v];
		if (x->reset)
			continue;
		uint32_t base = c_isn + 1;
		if (w->flags & SESSION_TCP_RST) {
			if (w->seq == base + (uint32_t)x->nxt)
				x->reset = true;
			continue;
		}
		uint32_t start = syn ? w->seq + 1 : w->seq;
		if (syn && !syn_accept)
			continue;
		for (size_t i = 0; i < w->len; i++) {
			uint32_t off = start + (uint32_t)i - base;
			if (off >= STREAM_MAX || off < x->nxt)
				continue;
			if (!x->have[off] || (v & RX_LAST)) {
				x->byte[off] = w->payload[i];
				x->have[off] = true;
			}
		}
		if ((w->flags & SESSION_TCP_URG) && w->urp && (v & RX_URG_OUT)) {
			uint32_t off = w->seq + w->urp - 1 - base;
			if (off < STREAM_MAX && off >= x->nxt)
				x->urgent[off] = true;
		}
		while (x->nxt < STREAM_MAX && x->have[x->nxt])
			x->nxt++;
	}
	if (syn)
		rx_syn_done = true;
}

/* What the server application reads of variant v. */
static size_t rx_stream(int v, uint8_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < rxs[v].nxt; i++)
		if (!rxs[v].urgent[i])
			out[n++] = rxs[v].byte[i];
	return n;
}

/* The domain of a MAIL FROM/RCPT TO path after the colon: after the last
 * '@' up to '>', space or the end; lowercased, one trailing dot off. */
static void path_domain(const char *s, char *dom, size_t size)
{
	const char *end = s + strcspn(s, ">");
	const char *at = NULL;
	for (const char *c = s; c < end; c++)
		if (*c == '@')
			at = c;
	dom[0] = '\0';
	if (!at)
		return;
	size_t n = 0;
	for (const char *c = at + 1; c < end && *c != ' ' && *c != '\t' && n + 1 < size; c++)
		dom[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
	if (n && dom[n - 1] == '.')
		n--;
	dom[n] = '\0';
}

static bool suffix(const char *dom, const char *zone)
{
	size_t n = strlen(dom), z = strlen(zone);
	return !strcmp(dom, zone) || (n > z && dom[n - z - 1] == '.' && !strcmp(dom + n - z, zone));
}

/* The model server reads stream s: the secure command it reads in the
 * plaintext dialog (its line, in why), or false. */
static bool smtp_reads_secure(const struct dialog *d, const uint8_t *s, size_t n, bool lenient,
			      char *why, size_t whylen)
{
	size_t i = 0;
	bool txn = false, rcpt = false;
	char l[1024], dom[256];

	while (i < n) {
		const uint8_t *lf = memchr(s + i, '\n', n - i);
		if (!lf)
			return false; /* an incomplete line is not read */
		size_t len = (size_t)(lf - (s + i)), end = len;
		if (end && s[i + end - 1] == '\r')
			end--;
		if (end >= sizeof(l))
			end = sizeof(l) - 1;
		memcpy(l, s + i, end);
		l[end] = '\0';
		/* A NUL ends the command as Postfix's smtpd reads it (a C
		 * string): "MAIL<NUL>FROM:<...>" is a bare MAIL, refused 501. */
		i += len + 1;
		if (!strncasecmp(l, "MAIL FROM:", 10)) {
			path_domain(l + 10, dom, sizeof(dom));
			if (!d->inbound && suffix(dom, "secure.example.org")) {
				snprintf(why, whylen, "%s", l);
				return true;
			}
			txn = true;
			rcpt = false;
		} else if (!strncasecmp(l, "RCPT TO:", 8)) {
			path_domain(l + 8, dom, sizeof(dom));
			if (d->inbound && !strcmp(dom, "vault.example.org")) {
				snprintf(why, whylen, "%s", l);
				return true;
			}
			rcpt = txn;
		} else if (!strcasecmp(l, "RSET")) {
			txn = rcpt = false;
		} else if (!strcasecmp(l, "QUIT")) {
			return false;
		} else if (!strcasecmp(l, "STARTTLS")) {
			if (d->starttls220)
				return false;
		} else if (!strncasecmp(l, "BDAT ", 5)) {
			char *e;
			unsigned long k = strtoul(l + 5, &e, 10);
			if (e == l + 5)
				continue;
			if (k > n - i)
				return false;
			i += k;
			txn = rcpt = false;
		} else if (!strcasecmp(l, "DATA") && txn && rcpt) {
			/* content up to the end of data; i is at a line start */
			size_t j = i;
			bool found = false;
			for (; j < n && !found; j++) {
				if (s[j] != '.')
					continue;
				bool lf_start = j == i || s[j - 1] == '\n';
				bool cr_start = j > i && s[j - 1] == '\r';
				bool crlf_before = j == i || (s[j - 1] == '\n' && j >= 2 && s[j - 2] == '\r');
				bool crlf_after = j + 2 < n && s[j + 1] == '\r' && s[j + 2] == '\n';
				bool lf_after = j + 1 < n && s[j + 1] == '\n';
				if (crlf_before && crlf_after)
					found = true;
				else if (lenient && (lf_start || cr_start) && (crlf_after || lf_after))
					found = true;
				if (found)
					j += crlf_after ? 2 : 1; /* at the LF; the loop steps past it */
			}
			if (!found)
				return false;
			i = j;
			txn = rcpt = false;
		}
	}
	return false;
}

/* ---- the wire ------------------------------------------------------------ */

static uint8_t pkt_buf[STREAM_MAX + 64];
static int gate_accepts, gate_drops;
static bool syn_accept;
static struct dialog dlg;
static char trace[262144];
static size_t trace_len;
static bool verbose, no_gate;

static void tracef(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tracef(const char *fmt, ...)
{
	va_list ap;
	if (trace_len >= sizeof(trace) - 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(trace + trace_len, sizeof(trace) - trace_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		trace_len += (size_t)n;
	if (trace_len >= sizeof(trace))
		trace_len = sizeof(trace) - 1;
}

/* Builds the IPv4 packet for w and runs it through the daemon; an
 * accepted client segment reaches the model server. bad_csum: dropped
 * before both (tlsgated checks it, the receiver drops it). */
static void send_wire(const struct wire *w, bool bad_csum)
{
	const char *verdict;
	if (bad_csum) {
		verdict = "bad-csum";
	} else {
		uint8_t *p = pkt_buf;
		size_t total = 40 + w->len;
		memset(p, 0, 40);
		p[0] = 0x45;
		p[2] = (uint8_t)(total >> 8);
		p[3] = (uint8_t)total;
		p[6] = 0x40; /* DF */
		p[8] = 64;
		p[9] = 6;
		memcpy(p + 12, w->dir ? s_addr : c_addr, 4);
		memcpy(p + 16, w->dir ? c_addr : s_addr, 4);
		uint16_t sport = w->dir ? 25 : c_port, dport = w->dir ? c_port : 25;
		p[20] = (uint8_t)(sport >> 8);
		p[21] = (uint8_t)sport;
		p[22] = (uint8_t)(dport >> 8);
		p[23] = (uint8_t)dport;
		for (int k = 0; k < 4; k++) {
			p[24 + k] = (uint8_t)(w->seq >> (24 - 8 * k));
			p[28 + k] = (uint8_t)(w->ack >> (24 - 8 * k));
		}
		p[32] = 0x50;
		p[33] = w->flags;
		p[34] = 0xff;
		p[35] = 0xff;
		p[38] = (uint8_t)(w->urp >> 8);
		p[39] = (uint8_t)w->urp;
		if (w->len)
			memcpy(p + 40, w->payload, w->len);
		bool client_inside = !dlg.inbound;
		uint32_t indev = (w->dir == 0) == client_inside ? IF_INSIDE : IF_OUTSIDE;
		/* FUZZ_GATE_NO_GATE: everything passes (checks that the oracle
		 * catches what a missing gate lets through) */
		int v = no_gate ? NF_ACCEPT : daemon_segment(p, total, indev);
		if (v == NF_ACCEPT) {
			gate_accepts++;
			verdict = "accept";
			if (w->dir == 0)
				rx_deliver(w, syn_accept);
		} else {
			gate_drops++;
			verdict = "drop";
		}
	}
	if (verbose) {
		tracef("%s seq=+%d ack=+%d fl=%02x urp=%u len=%zu %s |", w->dir ? "S>C" : "C>S",
		       (int)(w->seq - (w->dir ? s_isn : c_isn)), (int)(w->ack - (w->dir ? c_isn : s_isn)),
		       w->flags, w->urp, w->len, verdict);
		for (size_t i = 0; i < w->len && i < 60; i++)
			tracef("%c", w->payload[i] >= 32 && w->payload[i] < 127 ? w->payload[i] : '.');
		tracef("|\n");
	}
}

/* A packet held for reordering (one per direction), and lost ones. */
struct held {
	bool used;
	struct wire w;
};
static struct held held[2];
#define LOST_MAX 64
static struct wire lost[LOST_MAX];
static size_t n_lost;

static uint32_t server_sent; /* server stream bytes sent so far (for client acks) */

static uint32_t server_ack(void)
{
	/* the server acknowledges what it has in order (the same in every
	 * variant: overlaps and urgent bytes do not move it) */
	return c_isn + 1 + (uint32_t)rxs[0].nxt;
}

static void emit(struct wire *w, bool bad_csum)
{
	send_wire(w, bad_csum);
	for (int d = 0; d < 2; d++)
		if (held[d].used && &held[d].w != w) {
			held[d].used = false;
			struct wire h = held[d].w;
			if (h.dir == 1)
				h.ack = server_ack();
			send_wire(&h, false);
		}
}

static void release_lost(void)
{
	for (size_t i = 0; i < n_lost; i++) {
		if (lost[i].dir == 1)
			lost[i].ack = server_ack();
		send_wire(&lost[i], false);
	}
	n_lost = 0;
}

static void release_server(void)
{
	size_t k = 0;
	if (held[1].used) {
		held[1].used = false;
		held[1].w.ack = server_ack();
		send_wire(&held[1].w, false);
	}
	for (size_t i = 0; i < n_lost; i++) {
		if (lost[i].dir == 1) {
			lost[i].ack = server_ack();
			send_wire(&lost[i], false);
		} else {
			lost[k++] = lost[i];
		}
	}
	n_lost = k;
}

static void send_segment(int dir, size_t off, size_t len, uint8_t op)
{
	const uint8_t *stream = dir ? dlg.s : dlg.c;
	uint32_t isn = dir ? s_isn : c_isn;
	struct wire w = {
		.dir = dir, .seq = isn + 1 + (uint32_t)off,
		.ack = dir ? server_ack() : s_isn + 1 + server_sent,
		.flags = SESSION_TCP_ACK | SESSION_TCP_PSH, .payload = stream + off, .len = len,
	};
	uint8_t kind = op & 15, par = op >> 4;
	if (dir == 1 && (kind == 12 || kind == 13)) {
		w.ack += 1 + par; /* an acknowledged hole */
		kind = 0;
	}
	switch (kind) {
	case 5:
		emit(&w, false);
		emit(&w, false);
		break;
	case 6:
		if (!held[dir].used) {
			held[dir].used = true;
			held[dir].w = w;
			break;
		}
		emit(&w, false);
		break;
	case 7: {
		struct wire o = w;
		size_t back = par % 8 + 1;
		if (back > off)
			back = off;
		o.seq -= (uint32_t)back;
		o.payload -= back;
		o.len += back;
		emit(&w, false);
		emit(&o, false);
		break;
	}
	case 8:
	case 9: {
		struct wire o = w;
		if (dir == 0 && (par & 1))
			o.payload = dlg.decoy + off;
		else
			o.payload = NULL; /* one byte changed, below */
		static uint8_t flip[STREAM_MAX];
		if (!o.payload) {
			memcpy(flip, w.payload, len);
			flip[(par >> 1) % len] ^= 0x20;
			o.payload = flip;
		}
		if (kind == 8) {
			emit(&o, false);
			emit(&w, false);
		} else {
			emit(&w, false);
			emit(&o, false);
		}
		break;
	}
	case 10: {
		struct wire o = w;
		o.payload = dir ? w.payload : dlg.decoy + off;
		emit(&o, true);
		emit(&w, false);
		break;
	}
	case 11:
		w.flags |= SESSION_TCP_URG;
		w.urp = (uint16_t)(par % (len + 2) + 1);
		emit(&w, false);
		break;
	case 12: {
		struct wire r = w;
		r.flags = SESSION_TCP_RST | SESSION_TCP_ACK;
		r.len = 0;
		r.seq += (uint32_t)(par + 1) * (par & 8 ? 0xfffff000u : 1u);
		emit(&r, false);
		emit(&w, false);
		break;
	}
	case 13: {
		emit(&w, false);
		struct wire r = w;
		r.flags = SESSION_TCP_RST | SESSION_TCP_ACK;
		r.len = 0;
		r.seq += (uint32_t)len;
		if (par)
			r.seq += (uint32_t)par;
		emit(&r, false);
		break;
	}
	case 14:
	case 15:
		if (n_lost < LOST_MAX)
			lost[n_lost++] = w;
		break;
	default:
		emit(&w, false);
		break;
	}
	if (dir == 1)
		server_sent = (uint32_t)(off + len) > server_sent ? (uint32_t)(off + len) : server_sent;
}

static bool was_secure_command_read(char *why, size_t whylen, int *variant)
{
	static uint8_t s[STREAM_MAX];
	for (int v = 0; v < RX_VARIANTS; v++) {
		size_t n = rx_stream(v, s);
		if (smtp_reads_secure(&dlg, s, n, v & RX_LENIENT, why, whylen)) {
			*variant = v;
			return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static uint32_t counter;
	if (!ready) {
		setup();
		verbose = getenv("FUZZ_GATE_VERBOSE") != NULL;
		no_gate = getenv("FUZZ_GATE_NO_GATE") != NULL;
		ready = true;
	}
	struct reader r = { data, size };
	uint8_t o0 = next_byte(&r);

	memset(&dlg, 0, sizeof(dlg));
	memset(rxs, 0, sizeof(rxs));
	memset(held, 0, sizeof(held));
	rx_syn_done = false;
	n_lost = 0;
	server_sent = 0;
	trace_len = 0;
	trace[0] = '\0';
	build_dialog(&dlg, &r, o0);
	uint8_t o1 = size > 1 ? data[1] : 0;
	bool retransmit_per_turn = o1 & 0x10;
	size_t mss = (size_t[]){ 8, 32, 200, 1400 }[o1 >> 6];

	/* a fresh connection each time: nothing carries over in the store */
	counter++;
	uint8_t ca[4] = { 10, 1, (uint8_t)(counter >> 8), (uint8_t)counter };
	uint8_t sa[4] = { 10, 2, (uint8_t)(counter >> 16), (uint8_t)(counter >> 8) };
	sa[3] = (uint8_t)counter;
	memcpy(c_addr, ca, 4);
	memcpy(s_addr, sa, 4);
	c_port = (uint16_t)(1024 + counter % 60000);
	c_isn = 0xfffffff0u - (uint32_t)(o0 & 0x7f); /* wrap early */
	s_isn = 0x7ffffff0u;
	syn_accept = (o0 & 0x80) && (o0 & 0x40);

	size_t client_from = 0; /* client stream bytes already on the SYN */
	if (!(o0 & 0x20)) {
		struct wire syn = { .dir = 0, .seq = c_isn, .flags = SESSION_TCP_SYN };
		if (o0 & 0x40) {
			/* data on the SYN: the first client line */
			syn.payload = dlg.c;
			syn.len = dlg.turns[1].dir == 0 ? dlg.turns[1].len : 0;
			if (syn.len > 40)
				syn.len = 40;
		}
		send_wire(&syn, false);
		struct wire sa_w = { .dir = 1, .seq = s_isn, .flags = SESSION_TCP_SYN | SESSION_TCP_ACK,
				     .ack = c_isn + 1 + (syn_accept ? (uint32_t)syn.len : 0) };
		send_wire(&sa_w, false);
		struct wire ack = { .dir = 0, .seq = c_isn + 1, .ack = s_isn + 1,
				    .flags = SESSION_TCP_ACK };
		send_wire(&ack, false);
		c_isn += 0; /* the client's data starts at c_isn + 1 either way */
		if (syn_accept)
			client_from = syn.len;
	} else {
		/* mid-stream: the SYN's sequence numbers as if seen */
		s_isn += 0;
	}
	/* the SYN-ACK counts the server's SYN; its data starts at s_isn + 1 */

	for (size_t t = 0; t < dlg.n_turns; t++) {
		struct turn *tu = &dlg.turns[t];
		size_t off = tu->off, end = tu->off + tu->len;
		/* Outbound, the client is ours: it speaks only after it has read
		 * the server's replies, which pass the gate. What the server sent
		 * and the path held back comes first (the client waits for it). */
		if (tu->dir == 0 && !dlg.inbound)
			release_server();
		if (tu->dir == 0 && off < client_from)
			off = client_from < end ? client_from : end;
		while (off < end) {
			size_t len = 1 + next_byte(&r) % mss;
			uint8_t op = next_byte(&r);
			if (len > end - off)
				len = end - off;
			send_segment(tu->dir, off, len, op);
			off += len;
		}
		if (retransmit_per_turn)
			release_lost();
	}
	for (int d = 0; d < 2; d++)
		if (held[d].used) {
			held[d].used = false;
			send_wire(&held[d].w, false);
		}
	release_lost();

	char why[1100];
	int variant = 0;
	if (was_secure_command_read(why, sizeof(why), &variant)) {
		fprintf(stderr,
			"fuzz_gate: VIOLATION: the server (receiver variant %d: overlap %s, urgent byte "
			"%s, %s end of data) read \"%s\" in the plaintext dialog (%s); the gate "
			"accepted %d segments and dropped %d\n",
			variant, variant & RX_LAST ? "last wins" : "first wins",
			variant & RX_URG_OUT ? "removed" : "kept", variant & RX_LENIENT ? "lenient" : "strict",
			why, dlg.inbound ? "inbound" : "outbound", gate_accepts, gate_drops);
		if (verbose)
			fprintf(stderr, "%s", trace);
		abort();
	}
	/* the flow is gone before the next input */
	flow_table_free(flows);
	flows = flow_table_new(64, NULL, NULL);
	gate_accepts = gate_drops = 0;
	return 0;
}
