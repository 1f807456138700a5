/* inspector.c - tlsgated's packet inspector: the process that reads the
 * network (queued and copied packets: SMTP, TLS, X.509, DNS) and the
 * control socket. It runs as --user (default tlsgate) with CAP_NET_ADMIN
 * only (queue verdicts), under a seccomp filter (privsep.h); it holds what
 * the root parent opened (queue, maps, raw sockets, control socket) and
 * opens the store and the policy itself.
 *
 * Per packet (from NFQUEUE, starting at the IP header): find or create the
 * flow, feed the segment to its inspection session, and act on the result:
 * offload (PASS in the kernel map, session freed) once the handshake is
 * judged or nothing more can change the verdict; block (SMTP refusal while
 * plaintext, reset after) when the gate says so. Packets that cannot be
 * judged are dropped (DESIGN.md threat model, rule 3). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <grp.h>
#include <pwd.h>
#include <net/if.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <jansson.h>
#include <linux/capability.h>
#include <linux/netfilter.h>

#include "control.h"
#include "csum.h"
#include "datapath.h"
#include "dnslearn.h"
#include "enforce.h"
#include "flow.h"
#include "flowkey.h"
#include "gate.h"
#include "log.h"
#include "netfilter.h"
#include "policy.h"
#include "privsep.h"
#include "probe_queue.h"
#include "nfq.h"
#include "session.h"
#include "web.h"
#include "web_proc.h"
#include "tlsgated.h"

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *verdict_name(uint8_t v)
{
	switch (v) {
	case TLSGATE_PASS:
		return "pass";
	case TLSGATE_BLOCK:
		return "block";
	default:
		return "inspect";
	}
}

/* "192.0.2.10:40000" or "[2001:db8::10]:40000" for one side of a key. */
static void flow_side(const struct tlsgate_flow_key *key, bool lo, char *buf, size_t len)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *addr = lo ? key->addr_lo : key->addr_hi;
	char a[INET6_ADDRSTRLEN];
	unsigned int port = ntohs(lo ? key->port_lo : key->port_hi);
	if (memcmp(addr, v4mapped, 12) == 0) {
		inet_ntop(AF_INET, addr + 12, a, sizeof(a));
		snprintf(buf, len, "%s:%u", a, port);
	} else {
		inet_ntop(AF_INET6, addr, a, sizeof(a));
		snprintf(buf, len, "[%s]:%u", a, port);
	}
}

static void flow_endpoints(const struct flow *f, char *client, char *server, size_t len)
{
	flow_side(&f->key, f->client_is_lo, client, len);
	flow_side(&f->key, !f->client_is_lo, server, len);
}

/* ---- per packet -------------------------------------------------------- */

/* A flow the daemon stops tracking while it is inspected: an entry it wrote
 * for the flow (reply copies, content) goes too. */
static void daemon_forget(struct daemon *d, struct flow *f)
{
	if (f->await_stage)
		datapath_clear_await(d->dp, &f->key);
	if (f->copy || f->content)
		datapath_delete(d->dp, &f->key);
	flow_remove(d->flows, f);
}

static void daemon_read_replies(struct daemon *d);

/* The plaintext dialog's segments that are never withheld are copied, not
 * queued (see TLSGATE_COPY_*): from the client's SYN until the session
 * leaves the dialog (STARTTLS, not SMTP, closed). The entry is written
 * while the segment that changes it is still queued, so the server cannot
 * answer that segment before the kernel knows. A refusal that waits for
 * the server's replies wants each at once (the copies wake nobody, the
 * queue does) and withholds all the client says: queued meanwhile. */
static void daemon_copy_flags(struct daemon *d, struct flow *f)
{
	/* Not while the kernel holds the content (it advances that entry);
	 * a handover still to come writes f->copy as set here. */
	if (!f->session || f->verdict != TLSGATE_INSPECT || f->content)
		return;
	uint8_t want = 0;
	uint32_t next = 0;
	if (d->replies && !d->cfg.no_offload && !f->midstream &&
	    session_info(f->session)->phase <= SESSION_PHASE_SMTP && !gate_refusal_waits(f) &&
	    session_client_next(f->session, &next))
		want = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS | TLSGATE_COPY_END_OF_DATA;
	/* After a BDAT chunk the next command starts where the chunk ends,
	 * after any byte: the tagger's line rule no longer finds it. The BDAT
	 * line itself is queued (it starts with B). */
	if (gate_chunking(f))
		want &= (uint8_t)~TLSGATE_COPY_COMMANDS;
	/* Inside content the daemon reads (returned by the kernel), lines
	 * that start with B make the tagger stop command copies: restored
	 * once commands follow, not for each such segment. */
	if (session_in_data(f->session))
		want = (uint8_t)((want & ~TLSGATE_COPY_COMMANDS) | (f->copy & TLSGATE_COPY_COMMANDS));
	if (want == f->copy)
		return;
	/* At the SYN the client's stream is at a line start; later (a write
	 * that failed before) the kernel learns it from the next segment. */
	bool fresh = f->queued_packets + f->copied_packets <= 1;
	int err = datapath_set_inspect(d->dp, &f->key, want, TLSGATE_CLIENT_STATE(next, fresh));
	f->entry_written_ns = now_ns();
	if (err < 0) {
		log_warnx_rl(&d->rl, "cannot %s copies for a flow: %s", want ? "start" : "stop",
			     strerror(-err));
		if (want)
			return; /* queued as before */
	}
	f->copy = want;
	if (!want)
		daemon_read_replies(d); /* copies made before the change */
}

/* The kernel may hand the content over itself at the 354 (see struct
 * tlsgate_await): the handover from here comes only once this 354 is
 * read, and often after the client's first content segment. The awaits
 * entry follows the session after each segment: written when it owes
 * MAIL's or RCPT's reply or DATA's (after others), left alone while
 * nothing is owed (the kernel moves it on itself, ahead of the copies
 * read here) and when the kernel is at the same plan or ahead on it, else
 * removed. */
static void daemon_await(struct daemon *d, struct flow *f, bool kernel_moved)
{
	const uint8_t both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	uint32_t client_next = 0, server_next = 0;
	unsigned int skip = 0;
	int stage = 0;

	if (f->session && f->verdict == TLSGATE_INSPECT && !f->content && (f->copy & both) == both)
		stage = session_await_stage(f->session, &client_next, &server_next, &skip);
	if (stage == TLSGATE_AWAIT_DATA)
		return;
	/* The kernel moved its entry on at this copy: it is where the
	 * session is now (no syscall to find that out). */
	if (stage && kernel_moved)
		goto done;
	if (stage == f->await_stage && f->await_skip == skip &&
	    (!stage || (f->await_client == client_next && f->await_server == server_next)))
		return;
	struct tlsgate_await cur = { 0 };
	struct tlsgate_flow_value v;
	if (stage && f->await_stage) {
		/* The kernel moves the entry on by itself (at replies, RCPT TO
		 * and DATA), ahead of the copies read here. */
		int got = datapath_get_await(d->dp, &f->key, &cur);
		int32_t dc = (int32_t)(cur.client_seq - client_next);
		int32_t ds = (int32_t)(TLSGATE_AWAIT_SERVER(cur.state) - server_next);
		if (got == 0 && dc >= 0 && ds >= 0 &&
		    (dc > 0 || ds > 0 ||
		     (TLSGATE_AWAIT_STAGE(cur.state) == stage && TLSGATE_AWAIT_SKIP(cur.state) <= skip)))
			goto done; /* the kernel is there, or further on */
		/* Switched at a 354 whose copy is still unread, or that content
		 * has even ended in the kernel since. */
		if (got == -ENOENT && datapath_lookup(d->dp, &f->key, &v) == 0 &&
		    (v.verdict == TLSGATE_CONTENT ||
		     ((v.content_lf & TLSGATE_CONTENT_ENDED) &&
		      (int32_t)(v.content_seq - client_next) > 0))) {
			stage = 0;
			goto done;
		}
	}
	int err = stage ? datapath_set_await(d->dp, &f->key, (uint8_t)stage, (uint8_t)skip,
					     client_next, server_next)
			: datapath_clear_await(d->dp, &f->key);
	if (err < 0) {
		log_warnx_rl(&d->rl, "cannot %s a flow's awaited reply: %s", stage ? "set" : "clear",
			     strerror(-err));
		if (stage)
			return;
	}
	if (stage)
		d->awaits_set++;
done:
	f->await_stage = (uint8_t)stage;
	f->await_skip = (uint8_t)skip;
	f->await_client = client_next;
	f->await_server = server_next;
}

/* The tagger turned the entry CONTENT at the server's 354 just read (see
 * struct tlsgate_await): the content is the kernel's from seq on, as
 * after a handover from here. */
static void daemon_content_switched(struct daemon *d, struct flow *f, uint32_t seq)
{
	uint32_t want;
	bool line_end;

	/* The program removed the entry. One written since from copies read
	 * late (rare, see daemon_await()) stays: it can never match again,
	 * as server_state is past it. */
	f->await_stage = 0;
	if (!f->session || f->verdict != TLSGATE_INSPECT)
		return; /* judged at this segment: the verdict replaced it */
	if (!session_content_ready(f->session, &want, &line_end) || want != seq) {
		/* Not as the session read the dialog. When the content
		 * returns, what passed is skipped (nothing past an end of
		 * data passes in the kernel). */
		d->content_unexpected++;
		log_warnx_rl(&d->rl, "the kernel took message content the session did not expect "
				     "(at %u)", seq);
	}
	f->content = true;
	f->content_from = seq;
	f->content_wanted = false;
}

/* The reply ring's positions (read-only mappings of its first two pages). */
static uint64_t ring_pos(const void *page)
{
	return page ? __atomic_load_n((const unsigned long *)page, __ATOMIC_ACQUIRE) : 0;
}

static bool daemon_client_behind(struct flow *f, const struct flowkey_packet *p)
{
	uint32_t next;
	return f->session && f->verdict == TLSGATE_INSPECT &&
	       session_client_next(f->session, &next) && (int32_t)(p->seq - next) > 0;
}

/* A queued client segment that starts beyond what the session has. If the
 * bytes before it were a copy, judging it without them could let a
 * command line reach the server unjudged. The tagger reserves a copy's
 * place in the ring before the segment after it can be marked, so every
 * copy that may be missing sits before the ring's producer position now:
 * once the ring is read up to there, what is still missing was queued (or
 * lost) and the segment is taken as before - held by the reassembly until
 * the hole is filled. True only if that does not happen within a bound
 * (the segment is dropped; the client sends it again). */
static bool daemon_client_gap(struct daemon *d, struct flow *f, const struct flowkey_packet *p)
{
	gate_content_sync(d->gate, f, p);
	if (!daemon_client_behind(f, p))
		return false;
	uint64_t upto = ring_pos(d->ring_prod);
	for (int i = 0; i < DAEMON_GAP_TRIES; i++) {
		daemon_read_replies(d);
		gate_content_sync(d->gate, f, p);
		if (!daemon_client_behind(f, p) || (int64_t)(ring_pos(d->ring_cons) - upto) >= 0)
			return false;
		struct timespec ts = { 0, 1000 };
		nanosleep(&ts, NULL);
	}
	return true;
}

static int daemon_segment(struct daemon *d, const uint8_t *pkt, size_t len, uint32_t indev,
			  const struct tlsgate_reply_event *copy);

static int daemon_reply_copy(void *arg, void *data, size_t size)
{
	struct daemon *d = arg;
	const struct tlsgate_reply_event *e = data;

	if (d->replies_stale)
		return 0;
	if (size < offsetof(struct tlsgate_reply_event, pkt) ||
	    e->len > TLSGATE_REPLY_COPY_MAX || e->len > size - offsetof(struct tlsgate_reply_event, pkt)) {
		d->replies_bad++;
		return 0;
	}
	d->replies_read++;
	daemon_segment(d, e->pkt, e->len, e->ifindex, e);
	return 0;
}

/* Copies the tagger made before now: read before any queued packet, so
 * the server's reply is always known before the client's answer to it;
 * also once a second and when the tagger wakes us (ring half full). Not
 * from within a copy's own handling (the ring would hand it out again). */
static void daemon_read_replies(struct daemon *d)
{
	if (!d->replies || d->reading_replies)
		return;
	d->reading_replies = true;
	if (ring_buffer__consume(d->replies) < 0)
		log_warnx_rl(&d->rl, "reading the reply ring failed");
	d->reading_replies = false;
}

/* Outside the queue's batches (control commands, stats): the copies made
 * so far are read, and acted on as after a batch. */
static void daemon_catch_up(struct daemon *d)
{
	daemon_read_replies(d);
	gate_content_flush(d->gate, d->flows);
	gate_flush_news(d->gate);
}

int daemon_packet(void *arg, const uint8_t *pkt, size_t len, uint32_t indev,
			 enum nfqueue_csum csum)
{
	struct daemon *d = arg;
	struct flowkey_packet p;

	/* A segment whose checksum the receiver will find wrong is dropped
	 * there: believing it would judge bytes the receiver never reads
	 * (a decoy MAIL FROM ahead of the real one). Dropped here too. */
	if (csum == NFQUEUE_CSUM_NOT_VERIFIED && flowkey_from_ip(pkt, len, &d->ports, &p) == 0 &&
	    !csum_tcp_ok(pkt, len, &p)) {
		d->stats.bad_checksum++;
		log_warnx_rl(&d->rl, "dropped a queued segment with a bad TCP checksum");
		return NF_DROP;
	}
	daemon_read_replies(d);
	return daemon_segment(d, pkt, len, indev, NULL);
}

/* --judged-dir: what the session consumed of the client's stream, for a
 * test to compare byte for byte with what the server application read. */
static void daemon_judged_tap(void *arg, const uint8_t *p, size_t n, uint64_t unseen)
{
	struct flow *f = arg;
	char mark[64];

	if (n && write(f->judged_fd1 - 1, p, n) < 0)
		return;
	if (unseen) {
		int m = snprintf(mark, sizeof(mark), "\n[tlsgated: %llu bytes unseen]\n",
				 (unsigned long long)unseen);
		if (write(f->judged_fd1 - 1, mark, (size_t)m) < 0)
			return;
	}
}

static void daemon_judged_open(struct daemon *d, struct flow *f, const struct flowkey_packet *p)
{
	char client[INET6_ADDRSTRLEN], path[4096];
	const uint8_t *a = p->dir == TLSGATE_DIR_TO_SERVER ? p->saddr : p->daddr;
	uint16_t port = p->dir == TLSGATE_DIR_TO_SERVER ? p->sport : p->dport;

	if (p->family == AF_INET)
		inet_ntop(AF_INET, a + 12, client, sizeof(client));
	else
		inet_ntop(AF_INET6, a, client, sizeof(client));
	snprintf(path, sizeof(path), "%s/%s-%u.judged", d->cfg.judged_dir, client, port);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warnx_rl(&d->rl, "--judged-dir: %s: %s", path, strerror(errno));
		return;
	}
	f->judged_fd1 = fd + 1;
	session_set_client_tap(f->session, daemon_judged_tap, f);
}

/* A client segment at which the tagger clears COPY_COMMANDS: one it does
 * not scan (over TLSGATE_CONTENT_SCAN_MAX), or with a line (the payload's
 * start, or after a CR or LF) that starts with b or B. Lines after a bare
 * CR are not looked at: missing one only delays restoring the copies. */
static bool tagger_stops_commands(const uint8_t *p, size_t n)
{
	if (n > TLSGATE_CONTENT_SCAN_MAX)
		return true;
	if (n && (p[0] | 0x20) == 'b')
		return true;
	for (const uint8_t *lf = memchr(p, '\n', n); lf && lf + 1 < p + n;
	     lf = memchr(lf + 1, '\n', (size_t)(p + n - lf - 1)))
		if ((lf[1] | 0x20) == 'b')
			return true;
	return false;
}

/* One segment, queued (the verdict is returned) or copied (copy: already
 * passed, the verdict is ignored; what the gate decides acts on the flow). */
static int daemon_segment(struct daemon *d, const uint8_t *pkt, size_t len, uint32_t indev,
			  const struct tlsgate_reply_event *copy)
{
	struct flowkey_packet p;
	bool copied = copy != NULL;

	if (flowkey_from_ip(pkt, len, &d->ports, &p) < 0) {
		/* The tagger drops fragments and what it cannot parse; what
		 * still comes here unparsed passes no more than it would
		 * there (DESIGN.md threat model, rule 3). */
		d->stats.unparsed++;
		log_warnx_rl(&d->rl, "dropped a queued packet that cannot be parsed (%zu bytes)",
			     len);
		return NF_DROP;
	}
	uint64_t now = now_ns();
	struct flow *f = flow_lookup(d->flows, &p.key);
	if (copied && !csum_tcp_ok(pkt, len, &p) && !csum_tcp_partial(pkt, len, &p)) {
		/* The kernel passed a segment its receiver drops. Read, it
		 * would be judged though never read; left out, the kernel's
		 * pass state (moved on at it) is ahead of the receiver. Either
		 * way the dialog is not followed: blind (gate_blind). */
		d->stats.copies_bad_checksum++;
		log_warnx_rl(&d->rl, "a segment passed in the kernel has a bad TCP checksum: its "
				     "flow is no longer followed");
		if (f && f->session)
			session_mark_unseen(f->session);
		return NF_ACCEPT;
	}
	bool opening = p.dir == TLSGATE_DIR_TO_SERVER && (p.flags & SESSION_TCP_SYN) &&
		       !(p.flags & SESSION_TCP_ACK);
	if (f && opening &&
	    !(f->syn_seen && f->syn_seq == p.seq && f->verdict == TLSGATE_INSPECT &&
	      session_in_handshake(f->session))) {
		/* Not a retransmission of the SYN this flow began with (that
		 * needs the same sequence number and a flow still in its
		 * handshake): a new connection on the same addresses and
		 * ports, the old one closed unseen (its close passed in the
		 * kernel), even with the same initial sequence number. The old
		 * entry may say PASS or BLOCK; the new connection is judged
		 * from the start. */
		d->stats.reopened++;
		if (f->await_stage)
			datapath_clear_await(d->dp, &f->key);
		datapath_delete(d->dp, &f->key);
		flow_remove(d->flows, f);
		f = NULL;
	}
	if (!f) {
		/* A bare ACK, FIN or RST of a flow we do not know carries
		 * nothing to inspect (e.g. the last ACK after a close). */
		if (!(p.flags & SESSION_TCP_SYN) && p.payload_len == 0)
			return NF_ACCEPT;
		/* Bounds (DESIGN.md threat model, rule 3; a SYN flood): a full
		 * table or the sessions' memory over the budget refuse the new
		 * flow - its packet is dropped and TCP sends it again - rather
		 * than evict a dialog under inspection or pass unseen. */
		if (flow_count(d->flows) >= d->cfg.max_flows) {
			d->stats.refused_full++;
			log_warnx_rl(&d->rl, "flow table full (%zu): a new connection's packet is "
					     "dropped", d->cfg.max_flows);
			return NF_DROP;
		}
		if (d->session_bytes >= (uint64_t)d->cfg.max_memory_mib << 20) {
			d->stats.refused_memory++;
			log_warnx_rl(&d->rl, "inspection memory over --max-memory (%u MiB): a new "
					     "connection's packet is dropped", d->cfg.max_memory_mib);
			return NF_DROP;
		}
		/* The MTA resolved the MX just before it connected: its DNS
		 * answer's copy may still be in the ring. Read it first, so
		 * the new flow starts with its MX name (DANE, history). */
		if (d->dns)
			dnslearn_process(d->dns);
		f = flow_insert(d->flows, &p.key, now);
		bool src_is_lo = memcmp(p.saddr, p.key.addr_lo, 16) == 0 &&
				 p.sport == ntohs(p.key.port_lo);
		f->client_is_lo = (p.dir == TLSGATE_DIR_TO_SERVER) == src_is_lo;
		f->midstream = !opening;
		f->syn_seen = opening;
		f->syn_seq = p.seq;
		f->session = session_new(&d->limits, f->midstream);
		d->stats.flows_total++;
		if (!f->session) {
			log_warnx_rl(&d->rl, "out of memory for a new session: flow accepted");
			flow_remove(d->flows, f);
			return NF_ACCEPT;
		}
		gate_flow_start(d->gate, f, &p, indev);
		if (d->cfg.judged_dir)
			daemon_judged_open(d, f, &p);
	}
	flow_touch(d->flows, f, now);
	if (copied) {
		f->copied_packets++;
		f->copied_bytes += len;
	} else {
		f->queued_packets++;
		f->queued_bytes += len;
		if (p.dir == TLSGATE_DIR_TO_SERVER && p.payload_len &&
		    (f->copy & TLSGATE_COPY_COMMANDS) && daemon_client_gap(d, f, &p)) {
			d->gap_drops++;
			log_warnx_rl(&d->rl, "a client segment queued ahead of one copied is dropped "
					     "(the client sends it again)");
			return NF_DROP;
		}
	}
	if (f->verdict == TLSGATE_PASS)
		return NF_ACCEPT; /* queued before the offload took effect */
	if (f->verdict == TLSGATE_BLOCK) {
		gate_blocked_packet(d->gate, f, &p, copied);
		return NF_DROP;
	}
	if (!f->session)
		return NF_DROP;

	struct tcp_segment seg = {
		.dir = p.dir,
		.seq = p.seq,
		.ack = p.ack,
		.flags = p.flags,
		.window = p.window,
		.payload = p.payload,
		.len = p.payload_len,
		.ts_ns = now,
	};
	if (!copied && p.dir == TLSGATE_DIR_TO_SERVER && (f->copy & TLSGATE_COPY_COMMANDS) &&
	    tagger_stops_commands(p.payload, p.payload_len))
		f->copy &= (uint8_t)~TLSGATE_COPY_COMMANDS; /* as the tagger did */
	if (gate_withholds(f, &p))
		return NF_DROP;
	gate_before_segment(d->gate, f, &p, copy);
	enum session_action action = session_segment(f->session, &seg);
	if (copy && (copy->flags & TLSGATE_REPLY_CONTENT))
		daemon_content_switched(d, f, copy->content_seq);
	uint8_t was = f->verdict;
	int verdict = gate_segment(d->gate, f, &p, action, d->cfg.no_offload);
	if (copied && p.dir == TLSGATE_DIR_TO_SERVER && was != TLSGATE_BLOCK &&
	    f->verdict == TLSGATE_BLOCK) {
		/* It reached the server already (a policy applied after the
		 * kernel copied a RCPT TO under the one before: the ring is read
		 * before each apply, so only a copy made during it): both sides
		 * are reset, the client retries later. */
		d->copied_refused++;
		log_warnx_rl(&d->rl, "a client segment the kernel let pass was judged a refusal: "
				     "the flow is reset");
	}
	if (copy && (copy->flags & TLSGATE_REPLY_PASSED) && f->verdict == TLSGATE_INSPECT &&
	    f->session) {
		/* The program passed the rest at a QUIT the session does not
		 * take as the end: the entry is written back below. */
		d->quit_unexpected++;
		log_warnx_rl(&d->rl, "the kernel offloaded a flow at a QUIT the session still "
				     "inspects: inspecting it again");
		f->copy = (uint8_t)~0u;
	}
	if (action == SESSION_LIMIT)
		d->stats.limit++;
	if (f->verdict == TLSGATE_PASS) {
		d->stats.offloaded++;
		/* the idle clock starts now, not at boot (the entry's
		 * counters start at zero) */
		f->kernel_packets = f->kernel_bytes = 0;
		f->kernel_change_ns = now;
	} else if (f->verdict == TLSGATE_BLOCK)
		d->stats.blocked++;
	else if (action == SESSION_CLOSED) {
		d->stats.closed++;
		daemon_forget(d, f);
		return verdict;
	}
	daemon_copy_flags(d, f);
	daemon_await(d, f, copy && (copy->flags & TLSGATE_REPLY_AWAIT_MOVED));
	/* The tagger queues a client's SYN whatever the entry says: one left
	 * by an old connection the daemon forgot (evicted from its table)
	 * must not pass the new one on its verdict. Copies write over it;
	 * without them it goes. */
	if (opening && !copied && !f->copy && f->verdict == TLSGATE_INSPECT)
		datapath_delete(d->dp, &f->key);
	return verdict;
}

/* ---- timers ------------------------------------------------------------ */

/* A connection whose handshake has not finished after this long is
 * forgotten (a spoofed SYN holds a slot no longer); a late packet of a
 * real one starts it again. */
#define HANDSHAKE_TIMEOUT_S 10

struct expire_ctx {
	struct daemon *d;
	uint64_t now;
	bool scan_kernel;
	uint64_t session_bytes; /* summed over the flows kept */
};

static int daemon_expire_one(void *arg, struct flow *f)
{
	struct expire_ctx *x = arg;
	struct daemon *d = x->d;

	if (f->session) {
		struct tlsgate_flow_value cv;
		gate_deferred_timeout(d->gate, f, x->now);
		if (!f->session)
			return 0; /* refused and blocked just now */
		/* Content passing in the kernel keeps the flow alive. */
		if (f->content && x->scan_kernel && datapath_lookup(d->dp, &f->key, &cv) == 0 &&
		    cv.packets != f->kernel_packets) {
			f->kernel_packets = cv.packets;
			f->last_ns = x->now;
		}
		if (x->now - f->last_ns > (uint64_t)d->cfg.idle_timeout * 1000000000ull) {
			d->stats.expired++;
			daemon_forget(d, f);
		} else if (session_in_handshake(f->session) &&
			   x->now - f->last_ns > HANDSHAKE_TIMEOUT_S * 1000000000ull) {
			d->stats.handshake_expired++;
			daemon_forget(d, f);
		} else {
			x->session_bytes += session_memory(f->session) + sizeof(*f);
		}
		return 0;
	}
	if (!x->scan_kernel)
		return 0;
	struct tlsgate_flow_value val;
	if (datapath_lookup(d->dp, &f->key, &val) < 0) {
		flow_remove(d->flows, f); /* evicted from the LRU map */
		return 0;
	}
	if (val.packets != f->kernel_packets) {
		f->kernel_packets = val.packets;
		f->kernel_bytes = val.bytes;
		f->kernel_change_ns = x->now;
	} else if (x->now - f->kernel_change_ns >
		   (uint64_t)d->cfg.offload_timeout * 1000000000ull) {
		/* Idle: forget it. If the connection was only quiet, its next
		 * packet is picked up mid-stream and judged again. */
		datapath_delete(d->dp, &f->key);
		d->stats.expired++;
		flow_remove(d->flows, f);
	}
	return 0;
}

static void daemon_tick(struct daemon *d)
{
	struct expire_ctx x = { .d = d, .now = now_ns() };
	if (x.now - d->last_kernel_scan_ns >= KERNEL_SCAN_INTERVAL_NS) {
		x.scan_kernel = true;
		d->last_kernel_scan_ns = x.now;
	}
	flow_for_each(d->flows, daemon_expire_one, &x);
	d->session_bytes = x.session_bytes;
}

/* ---- adoption ---------------------------------------------------------- */

static int daemon_adopt_one(void *arg, const struct tlsgate_flow_key *key,
			    const struct tlsgate_flow_value *val)
{
	struct daemon *d = arg;
	if (val->verdict != TLSGATE_PASS && val->verdict != TLSGATE_BLOCK)
		return 0;
	if (flow_count(d->flows) >= d->cfg.max_flows)
		return 1; /* the rest stay in the kernel with their verdicts */
	struct flow *f = flow_insert(d->flows, key, now_ns());
	f->verdict = val->verdict;
	f->adopted = true;
	/* Which side is the client: the one whose port is an SMTP port is
	 * the server. */
	f->client_is_lo = port_set_contains(&d->ports, ntohs(key->port_hi));
	f->kernel_packets = val->packets;
	f->kernel_bytes = val->bytes;
	f->kernel_change_ns = now_ns();
	d->stats.adopted++;
	return 0;
}

/* ---- control ----------------------------------------------------------- */

static json_t *counter_json(const struct tlsgate_counter_value *a,
			    const struct tlsgate_counter_value *b)
{
	return json_pack("{s:I,s:I}", "packets",
			 (json_int_t)(a->packets + (b ? b->packets : 0)), "bytes",
			 (json_int_t)(a->bytes + (b ? b->bytes : 0)));
}

struct count_ctx {
	size_t inspecting, pass, block;
};

static int count_one(void *arg, struct flow *f)
{
	struct count_ctx *c = arg;
	if (f->session)
		c->inspecting++;
	else if (f->verdict == TLSGATE_PASS)
		c->pass++;
	else if (f->verdict == TLSGATE_BLOCK)
		c->block++;
	return 0;
}

static char *daemon_stats_json(struct daemon *d)
{
	struct tlsgate_counter_value k[TLSGATE_CNT_MAX];
	struct nfqueue_kernel_stats ks = { 0 };
	struct count_ctx c = { 0 };
	const struct nfqueue_stats *qs = nfqueue_stats(d->queue);

	/* What the kernel copied counts (offloads at a QUIT it passed, ...). */
	daemon_catch_up(d);
	if (datapath_counters(d->dp, k) < 0)
		memset(k, 0, sizeof(k));
	/* false: the kernel's drop counter is unknown (not "no drops"). */
	bool kernel_counters = nfqueue_kernel_stats(d->queue, &ks) == 0;
	flow_for_each(d->flows, count_one, &c);
	json_t *root = json_pack(
		"{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
		" s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b},"
		" s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}}",
		"flows", "tracked", (json_int_t)flow_count(d->flows), "inspecting",
		(json_int_t)c.inspecting, "offloaded", (json_int_t)c.pass, "blocked",
		(json_int_t)c.block, "total", (json_int_t)d->stats.flows_total,
		"offloaded_total", (json_int_t)d->stats.offloaded, "closed",
		(json_int_t)d->stats.closed, "reopened", (json_int_t)d->stats.reopened,
		"evicted", (json_int_t)flow_evicted(d->flows),
		"expired", (json_int_t)d->stats.expired, "adopted",
		(json_int_t)d->stats.adopted, "limit", (json_int_t)d->stats.limit,
		"queue", "packets", (json_int_t)qs->packets, "bytes", (json_int_t)qs->bytes,
		"verdicts", (json_int_t)qs->verdicts, "verdict_errors",
		(json_int_t)qs->verdict_errors, "drops", (json_int_t)ks.queue_dropped,
		"user_drops", (json_int_t)ks.user_dropped, "waiting",
		(json_int_t)ks.queue_total, "unparsed", (json_int_t)d->stats.unparsed,
		"bad_checksum", (json_int_t)d->stats.bad_checksum, "copies_bad_checksum",
		(json_int_t)d->stats.copies_bad_checksum, "kernel_counters", kernel_counters,
		"kernel", "inspect",
		counter_json(&k[TLSGATE_CNT_INSPECT_TO_SERVER], &k[TLSGATE_CNT_INSPECT_TO_CLIENT]),
		"pass", counter_json(&k[TLSGATE_CNT_PASS_TO_SERVER], &k[TLSGATE_CNT_PASS_TO_CLIENT]),
		"block",
		counter_json(&k[TLSGATE_CNT_BLOCK_TO_SERVER], &k[TLSGATE_CNT_BLOCK_TO_CLIENT]),
		"pass_to_server", counter_json(&k[TLSGATE_CNT_PASS_TO_SERVER], NULL),
		"pass_to_client", counter_json(&k[TLSGATE_CNT_PASS_TO_CLIENT], NULL),
		"inspect_to_server", counter_json(&k[TLSGATE_CNT_INSPECT_TO_SERVER], NULL),
		"unparsed", counter_json(&k[TLSGATE_CNT_UNPARSED], NULL), "fragment",
		counter_json(&k[TLSGATE_CNT_FRAGMENT], NULL), "ack_skipped",
		counter_json(&k[TLSGATE_CNT_ACK_SKIPPED], NULL));
	if (root) {
		json_t *kern = json_object_get(root, "kernel");
		json_object_set_new(kern, "content",
				    counter_json(&k[TLSGATE_CNT_CONTENT_PASSED], NULL));
	json_t *fl = json_object_get(root, "flows");
	if (fl) {
		json_object_set_new(fl, "refused_full", json_integer((json_int_t)d->stats.refused_full));
		json_object_set_new(fl, "refused_memory",
				    json_integer((json_int_t)d->stats.refused_memory));
		json_object_set_new(fl, "handshake_expired",
				    json_integer((json_int_t)d->stats.handshake_expired));
		json_object_set_new(fl, "memory_bytes", json_integer((json_int_t)d->session_bytes));
	}
		json_object_set_new(kern, "content_returned",
				    counter_json(&k[TLSGATE_CNT_CONTENT_RETURNED], NULL));
		json_object_set_new(kern, "reply_copied",
				    counter_json(&k[TLSGATE_CNT_REPLY_COPIED], NULL));
		json_object_set_new(kern, "reply_queued",
				    counter_json(&k[TLSGATE_CNT_REPLY_QUEUED], NULL));
		json_object_set_new(kern, "command_copied",
				    counter_json(&k[TLSGATE_CNT_COMMAND_COPIED], NULL));
		json_object_set_new(kern, "content_ended",
				    counter_json(&k[TLSGATE_CNT_CONTENT_ENDED], NULL));
		json_object_set_new(kern, "content_switched",
				    counter_json(&k[TLSGATE_CNT_CONTENT_SWITCHED], NULL));
		json_object_set_new(kern, "rcpt_copied",
				    counter_json(&k[TLSGATE_CNT_RCPT_COPIED], NULL));
		json_object_set_new(kern, "quit_passed",
				    counter_json(&k[TLSGATE_CNT_QUIT_PASSED], NULL));
		json_object_set_new(kern, "stale_dropped",
				    counter_json(&k[TLSGATE_CNT_STALE_DROPPED], NULL));
		json_object_set_new(root, "replies",
				    json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "enabled",
					      d->replies != NULL, "read", (json_int_t)d->replies_read,
					      "malformed", (json_int_t)d->replies_bad, "gap_drops",
					      (json_int_t)d->gap_drops, "awaits_set",
					      (json_int_t)d->awaits_set, "content_unexpected",
					      (json_int_t)d->content_unexpected, "copied_refused",
					      (json_int_t)d->copied_refused, "quit_unexpected",
					      (json_int_t)d->quit_unexpected));
	}
	if (!root)
		return NULL;
	json_object_set_new(json_object_get(root, "flows"), "blocked_total",
			    json_integer((json_int_t)d->stats.blocked));
	gate_stats_json(d->gate, root);
	const struct dnslearn_stats *ds = dnslearn_stats(d->dns);
	json_object_set_new(root, "dns",
			    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "messages",
				      (json_int_t)ds->messages, "malformed", (json_int_t)ds->malformed,
				      "truncated", (json_int_t)ds->truncated, "mx_learned",
				      (json_int_t)ds->mx_learned, "addr_learned",
				      (json_int_t)ds->addr_learned, "probes_requested",
				      (json_int_t)ds->probes_requested, "copied",
				      counter_json(&k[TLSGATE_CNT_DNS_COPIED], NULL), "dropped",
				      counter_json(&k[TLSGATE_CNT_DNS_DROPPED], NULL)));
	{
		/* Totals as before, and per class (probe_queue.h). */
		const struct probe_queue_stats ps = d->probe_stats; /* the parent's */
		json_t *p = json_pack(
			"{s:I,s:I,s:I,s:I}", "started",
			(json_int_t)(ps.started[PROBE_MAIL] + ps.started[PROBE_API]), "queued",
			(json_int_t)(ps.queued[PROBE_MAIL] + ps.queued[PROBE_API]), "refused",
			(json_int_t)(ps.refused[PROBE_MAIL] + ps.refused[PROBE_API]), "running",
			(json_int_t)(ps.running[PROBE_MAIL] + ps.running[PROBE_API]));
		for (int pc = 0; pc < PROBE_CLASSES; pc++)
			json_object_set_new(p, probe_class_name((enum probe_class)pc),
					    json_pack("{s:I,s:I,s:I,s:I}", "started",
						      (json_int_t)ps.started[pc], "queued",
						      (json_int_t)ps.queued[pc], "refused",
						      (json_int_t)ps.refused[pc], "running",
						      (json_int_t)ps.running[pc]));
		json_object_set_new(p, "user", d->probe_user.drop ? json_integer(d->probe_user.uid)
							     : json_null());
		json_object_set_new(root, "probes", p);
	}
	json_object_set_new(root, "processes",
			    json_pack("{s:i,s:i,s:o,s:I}", "parent", (int)getppid(), "inspector",
				      (int)getpid(),
				      "web", d->web_pid > 0 ? json_integer(d->web_pid) : json_null(),
				      "inspector_restarts", (json_int_t)d->restarts));
	if (d->ctl) {
		size_t clients;
		uint64_t timed_out, evicted;
		control_counts(d->ctl, &clients, &timed_out, &evicted);
		json_object_set_new(root, "control",
				    json_pack("{s:I,s:I,s:I}", "clients", (json_int_t)clients,
					      "timed_out", (json_int_t)timed_out, "evicted",
					      (json_int_t)evicted));
	}
	char *s = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	return s;
}

static int flow_json_one(void *arg, struct flow *f)
{
	struct daemon *d = ((void **)arg)[0];
	json_t *arr = ((void **)arg)[1];
	char client[64], server[64];
	flow_endpoints(f, client, server, sizeof(client));
	uint16_t ver = f->tls_version, cipher = f->tls_cipher;
	if (f->session) {
		ver = session_info(f->session)->tls_version;
		cipher = session_info(f->session)->tls_cipher;
	}
	struct tlsgate_flow_value val = { 0 };
	if (!f->session)
		datapath_lookup(d->dp, &f->key, &val);
	char vs[8], cs[8];
	snprintf(vs, sizeof(vs), "0x%04x", ver);
	snprintf(cs, sizeof(cs), "0x%04x", cipher);
	json_array_append_new(
		arr, json_pack("{s:s,s:s,s:s,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:s}", "client", client,
			       "server", server, "verdict",
			       f->session ? (f->content ? "content" : "inspect") : verdict_name(f->verdict), "adopted",
			       f->adopted, "midstream", f->midstream, "queued_packets",
			       (json_int_t)f->queued_packets, "queued_bytes",
			       (json_int_t)f->queued_bytes, "copied_packets",
			       (json_int_t)f->copied_packets, "copied_bytes",
			       (json_int_t)f->copied_bytes, "kernel_packets",
			       (json_int_t)val.packets, "kernel_bytes", (json_int_t)val.bytes,
			       "tls_version", vs, "tls_cipher", cs));
	return 0;
}

static char *daemon_flows_json(struct daemon *d)
{
	daemon_catch_up(d);
	json_t *arr = json_array();
	void *ctx[2] = { d, arr };
	flow_for_each(d->flows, flow_json_one, ctx);
	char *s = json_dumps(arr, JSON_INDENT(2));
	json_decref(arr);
	return s;
}

static char *json_answer(bool ok, const char *key, const char *text)
{
	json_t *o = json_pack("{s:b,s:s}", "ok", ok, key, text);
	char *s = json_dumps(o, 0);
	json_decref(o);
	return s;
}

static int daemon_schedule_probe_api(void *arg, const char *domain);
static int daemon_run(struct daemon *d);
static int daemon_release(void *arg, const char *mx, const char *by);
static int inspector_ask_probe(struct daemon *d, const char *domain, enum probe_class cls);

char *daemon_control(void *arg, const char *command)
{
	struct daemon *d = arg;
	char err[256];
	if (strncmp(command, "policy-apply ", 13) == 0) {
		/* Copies the kernel passed under the policy in force are judged
		 * under it, not under the new one (that would reset the flow). */
		daemon_catch_up(d);
		int rc = gate_policy_apply(d->gate, command + 13, NULL, err, sizeof(err));
		if (rc == -EALREADY)
			return json_answer(true, "unchanged", err);
		if (rc < 0)
			return json_answer(false, "error", err);
		return json_answer(true, "applied", command + 13);
	}
	if (strncmp(command, "release ", 8) == 0) {
		int rc = daemon_release(d, command + 8,
					control_peer_limited(d->ctl) ? "status page API"
								      : "operator (tlsgatectl)");
		if (rc < 0)
			return json_answer(false, "error",
					   rc == -ENOENT ? "not locked" : strerror(-rc));
		return json_answer(true, "released", command + 8);
	}
	if (strncmp(command, "probe ", 6) == 0 || strncmp(command, "probe-api ", 10) == 0) {
		int rc = command[5] == ' ' ? daemon_schedule_probe(d, command + 6)
					   : daemon_schedule_probe_api(d, command + 10);
		if (rc < 0)
			return json_answer(false, "error", strerror(-rc));
		return json_answer(true, "probe", "scheduled");
	}
	if (strcmp(command, "stats") == 0)
		return daemon_stats_json(d);
	if (strcmp(command, "flows") == 0)
		return daemon_flows_json(d);
	if (strcmp(command, "ping") == 0)
		return xstrdup("{\"ok\":true}\n");
	return NULL;
}

/* Mail's probes: the gate (a named MX's DANE state), DNS learning and the
 * operator (tlsgatectl probe). */
int daemon_schedule_probe(void *arg, const char *domain)
{
	return inspector_ask_probe(arg, domain, PROBE_MAIL);
}

/* The web API's: their own queue and share (probe_queue.h). */
static int daemon_schedule_probe_api(void *arg, const char *domain)
{
	return inspector_ask_probe(arg, domain, PROBE_API);
}

static int daemon_release(void *arg, const char *mx, const char *by)
{
	struct daemon *d = arg;
	return gate_release(d->gate, mx, by);
}

/* The signals the event loop takes through its signalfd. Blocked in main()
 * before any thread starts (the web server has one), so that no thread
 * takes SIGTERM's default action and dies without cleaning up. */
void daemon_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
	sigaddset(mask, SIGCHLD);
}

/* The reply ring (server segments the tagger copies): what a previous run
 * left is drained unread; without the ring's position pages a copy cannot
 * be told from a queued segment, so then there are no copies at all. */
static void daemon_replies_open(struct daemon *d)
{
	if (d->cfg.no_offload)
		return;
	d->replies = ring_buffer__new(datapath_reply_ring_fd(d->dp), daemon_reply_copy, d, NULL);
	if (!d->replies) {
		log_warnx("server segments are queued, not copied: reply ring: %s", strerror(errno));
		return;
	}
	d->replies_stale = true;
	ring_buffer__consume(d->replies);
	d->replies_stale = false;
	long ps = sysconf(_SC_PAGESIZE);
	int rfd = datapath_reply_ring_fd(d->dp);
	d->ring_cons = mmap(NULL, (size_t)ps, PROT_READ, MAP_SHARED, rfd, 0);
	d->ring_prod = mmap(NULL, (size_t)ps, PROT_READ, MAP_SHARED, rfd, ps);
	if (d->ring_cons == MAP_FAILED || d->ring_prod == MAP_FAILED) {
		log_warn("server segments are queued, not copied: reply ring positions");
		ring_buffer__free(d->replies);
		d->replies = NULL;
		d->ring_cons = d->ring_prod = NULL;
	}
}

int ipc_send(int fd, const struct ipc_msg *m)
{
	if (fd < 0)
		return -ENOTCONN;
	return send(fd, m, sizeof(*m), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(*m) ? 0
											: -errno;
}

/* Inspector: asks the parent for a probe (it has the probe user's rights
 * to give; this process has none). */
static int inspector_ask_probe(struct daemon *d, const char *domain, enum probe_class cls)
{
	struct ipc_msg m = { .type = IPC_PROBE, .value = cls };
	if (policy_domain_normalize(domain, m.domain, sizeof(m.domain)) < 0)
		return -EINVAL;
	int rc = ipc_send(d->ipc_fd, &m);
	return rc == -EAGAIN ? -EBUSY : rc;
}

/* No RELOADING=1/READY=1 around it: with Type=notify and ExecReload=
 * kill -HUP, systemd (252) left the unit inactive after those. */
static void inspector_reload(struct daemon *d, const char *why)
{
	log_info("inspector: re-reading the policy (%s)", why);
	daemon_catch_up(d);
	gate_reload(d->gate);
}

static void inspector_read_parent(struct daemon *d)
{
	struct ipc_msg m;
	for (;;) {
		ssize_t n = recv(d->ipc_fd, &m, sizeof(m), MSG_DONTWAIT);
		if (n == 0) {
			log_warnx("the parent process is gone: stopping");
			d->stop = true;
			return;
		}
		if (n < 0)
			return;
		if (n != (ssize_t)sizeof(m))
			continue;
		if (m.type == IPC_PARENT_STATE) {
			d->probe_stats = m.probes;
			d->web_pid = m.web_pid;
			d->restarts = m.restarts;
		} else if (m.type == IPC_RELOAD) {
			inspector_reload(d, "asked by the parent");
		} else if (m.type == IPC_STOP) {
			log_info("inspector: stop asked by the parent");
			d->stop = true;
		}
	}
}

/* The inspector, right after fork(): drops root (keeping CAP_NET_ADMIN for
 * queue verdicts), opens what it writes (the store, the state), installs
 * its seccomp filter and runs the packet loop. What it inherited from the
 * parent: the queue, the maps, the raw sockets, the listening sockets.
 * Never returns. */
void __attribute__((noreturn)) inspector_main(struct daemon *d)
{
	const char *step;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != d->parent_pid)
		_exit(INSPECTOR_EXIT_START);
	close(d->parent_ep);
	close(d->parent_sfd);
	if (d->web_stop_fd >= 0)
		close(d->web_stop_fd); /* only the parent's closing may stop the web */
	close(d->parent_tfd);
	if (d->web_fd > 0)
		close(d->web_fd); /* the web's, not this process's to serve */
	if (privsep_drop(&d->insp_user, 1ull << CAP_NET_ADMIN, &step) < 0) {
		log_warn("cannot start the inspector: cannot %s", step);
		_exit(INSPECTOR_EXIT_START);
	}
	/* The uid change cleared the death signal: set again, and check
	 * the parent did not die in between. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != d->parent_pid)
		_exit(INSPECTOR_EXIT_START);
	d->gcfg.enforce = d->enforce;
	d->gcfg.probe_arg = d;
	d->gate = gate_open(&d->gcfg, d->dp);
	if (!d->gate) {
		log_warnx("cannot start: the store or the policy could not be opened");
		_exit(INSPECTOR_EXIT_START);
	}
	d->dns = dnslearn_open(datapath_dns_ring_fd(d->dp), gate_store(d->gate),
			       d->cfg.learn_probe ? daemon_schedule_probe : NULL, d);
	if (!d->dns) {
		log_warnx("cannot start: the DNS answer ring could not be opened");
		_exit(INSPECTOR_EXIT_START);
	}
	{
		/* queries count only from the inside, answers only from outside */
		uint32_t inside[DATAPATH_MAX_IFACES];
		for (size_t i = 0; i < d->gcfg.n_inside; i++)
			inside[i] = (uint32_t)d->gcfg.inside_ifindex[i];
		dnslearn_set_inside(d->dns, inside, d->gcfg.n_inside);
	}
	daemon_replies_open(d);
	if (d->restarts > 0)
		nfqueue_drop_stale(d->queue);
	/* Flows the kernel judged (an earlier run, or this inspector's
	 * predecessor): adopted. Those still being inspected are picked up
	 * mid-stream at their next packet. */
	if (datapath_adopted(d->dp) || d->restarts > 0) {
		size_t n = datapath_for_each_flow(d->dp, daemon_adopt_one, d);
		log_info("adopted %llu offloaded flow(s) of %zu in the pinned map %s",
			 (unsigned long long)d->stats.adopted, n, d->cfg.pin_dir);
	}
	if (d->insp_user.drop && privsep_seccomp(PRIVSEP_INSPECTOR) < 0)
		_exit(INSPECTOR_EXIT_START);
	struct ipc_msg ready = { .type = IPC_READY };
	ipc_send(d->ipc_fd, &ready);
	int rc = daemon_run(d);
	/* A deliberate stop with secure-mode sources in the policy leaves the
	 * tagger attached (the parent does), so that those sources stay
	 * refused in the kernel (fail-closed) while no daemon runs. */
	size_t secure = rc == 0 ? gate_secure_sources(d->gate) : 0;
	dnslearn_close(d->dns);
	ring_buffer__free(d->replies);
	flow_table_free(d->flows);
	if (secure)
		gate_stop_failclosed(d->gate);
	gate_close(d->gate);
	_exit(rc < 0 ? 1 : secure ? INSPECTOR_EXIT_KEEP : 0);
}

static int daemon_run(struct daemon *d)
{
	sigset_t mask;
	daemon_signals(&mask);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || tfd < 0 || ep < 0) {
		log_warn("event loop set-up");
		return -1;
	}
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	timerfd_settime(tfd, 0, &its, NULL);
	int fds[] = { nfqueue_fd(d->queue), sfd, tfd, control_fd(d->ctl),
		      -1, d->dns ? dnslearn_fd(d->dns) : -1,
		      d->replies ? ring_buffer__epoll_fd(d->replies) : -1, d->ipc_fd };
	for (int i = 0; i < 8; i++) {
		if (fds[i] < 0)
			continue;
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
			log_warn("epoll_ctl");
			return -1;
		}
	}
	log_info("ready: queue %u, %zu interface(s), %zu SMTP port(s), control %s",
		 d->cfg.queue_num, d->cfg.n_ifaces, d->cfg.n_ports, d->cfg.control_path);
	while (!d->stop) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("epoll_wait");
			return -1;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == fds[0]) {
				int rc = nfqueue_receive(d->queue);
				if (rc == -EPERM) {
					log_warnx("the kernel refuses this process's queue verdicts "
						  "(EPERM): the inspector needs CAP_NET_ADMIN");
					return -1;
				}
				if (rc < 0)
					log_warnx_rl(&d->rl, "queue receive: %s", strerror(-rc));
				gate_content_flush(d->gate, d->flows);
				gate_flush_news(d->gate);
			} else if (fd == sfd) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						inspector_reload(d, "SIGHUP");
						continue;
					}
					if (si.ssi_signo == SIGCHLD)
						continue;
					log_info("signal %u: shutting down", si.ssi_signo);
					d->stop = true;
				}
			} else if (fd == tfd) {
				uint64_t ticks;
				if (read(tfd, &ticks, sizeof(ticks)) == sizeof(ticks)) {
					daemon_read_replies(d);
					gate_content_flush(d->gate, d->flows);
					daemon_tick(d);
					gate_tick(d->gate);
					struct ipc_msg alive = {
						.type = IPC_ALIVE,
						.value = (uint32_t)gate_secure_sources(d->gate)
					};
					ipc_send(d->ipc_fd, &alive); /* the parent's watchdog */
					control_serve(d->ctl); /* deadlines */
				}
			} else if (fd == fds[3]) {
				control_serve(d->ctl);
			} else if (fd == fds[5]) {
				dnslearn_process(d->dns);
			} else if (fd == fds[7]) {
				inspector_read_parent(d);
			} else if (fd == fds[6]) {
				daemon_read_replies(d);
				gate_content_flush(d->gate, d->flows);
				gate_flush_news(d->gate);
			}
		}
	}
	close(ep);
	close(tfd);
	close(sfd);
	return 0;
}
