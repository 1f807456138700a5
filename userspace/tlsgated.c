/* tlsgated - the tlsgate daemon.
 *
 * Start-up: load and attach the tagger (datapath), add the NFQUEUE rule
 * (netfilter), bind the queue (nfq), adopt the flows an earlier daemon left
 * in the pinned flow map, open the control socket. Then one epoll loop over
 * the queue, a 1 s timer, signals and the control socket.
 *
 * Per packet (from NFQUEUE, starting at the IP header): find or create the
 * flow, feed the segment to its inspection session, and act on the result:
 * offload (PASS in the kernel map, session freed) once the handshake is
 * judged or nothing more can change the verdict; every packet is accepted
 * unless its flow is blocked. Ordinary mail fails open: unparseable packets
 * and flows at a bound are accepted, counted and logged.
 *
 * SIGTERM/SIGINT: remove the rule, detach, unpin, exit 0. SIGKILL leaves the
 * kernel side in place (queue bypass keeps mail flowing; a restarted daemon
 * adopts the pinned maps). */
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

#define TLSGATED_MAX_PORTS TLSGATE_MAX_PORTS
#define KERNEL_SCAN_INTERVAL_NS (10ull * 1000000000ull)
/* Reads of the reply ring (1 us apart) for a copy a queued client segment
 * must not overtake: a copy is filled within microseconds of its place
 * being taken. */
#define DAEMON_GAP_TRIES 1000

/* Probes: 4 at once, API lookups' probes at most 2 of them; 64 waiting
 * for mail, 32 for the API (probe_queue.h). */
#define PROBE_USER_DEFAULT "tlsgate-probe"
#define INSPECTOR_USER_DEFAULT "tlsgate"
#define WEB_USER_DEFAULT "tlsgate-web"
#define PROBE_EXIT_PRIVS 125 /* the child could not drop its privileges */
#define PROBE_EXIT_EXEC 127  /* the child could not execute the probe */

struct config {
	const char *ifaces[DATAPATH_MAX_IFACES];
	bool iface_inside[DATAPATH_MAX_IFACES];
	size_t n_ifaces;
	const char *store_path;
	const char *state_dir;
	const char *policy_key;
	const char *policy_path;
	const char *policy_dir;
	unsigned int failclosed_ms;
	const char *web_listen; /* NULL: off */
	const char *web_token_file;
	const char *web_cors;
	const char *web_hosts[WEB_HOSTS_MAX]; /* --web-host: names for the Host header */
	size_t n_web_hosts;
	unsigned int web_rate;
	const char *probe_cmd;
	const char *probe_resolver;
	const char *probe_trust_anchor;
	bool learn_probe; /* probe domains learned from DNS answers */
	const char *probe_args[8]; /* extra arguments for tlsgate-probe */
	size_t n_probe_args;
	const char *probe_user; /* NULL: PROBE_USER_DEFAULT */
	const char *user;       /* the inspector's; NULL: INSPECTOR_USER_DEFAULT */
	const char *web_user;   /* NULL: WEB_USER_DEFAULT */
	uint16_t ports[TLSGATED_MAX_PORTS];
	size_t n_ports;
	uint16_t queue_num;
	uint32_t queue_maxlen;
	const char *pin_dir;
	const char *control_path;
	size_t max_flows;
	unsigned int max_memory_mib;  /* sessions' memory before new flows are refused */
	const char *judged_dir;       /* diagnostics: client bytes each session consumed */
	unsigned int idle_timeout;    /* s, flows still being inspected */
	unsigned int offload_timeout; /* s, offloaded flows without packets */
	uint32_t mark, mask;
	bool no_offload; /* diagnostics: inspect everything, never offload */
	bool remove;     /* --remove: take away what a stop left attached, exit */
};

/* How often a child was started again lately (RESTARTS_MAX). */
struct child_restarts {
	unsigned in_window;
	uint64_t window_ns;
};

struct daemon_stats {
	uint64_t flows_total;   /* flows ever created */
	uint64_t offloaded;     /* flows handed to the kernel as PASS */
	uint64_t blocked;       /* flows blocked */
	uint64_t closed;        /* ended while inspected */
	uint64_t reopened;      /* a new connection on a known flow's key */
	uint64_t expired;       /* removed after idle timeout */
	uint64_t adopted;       /* found in the pinned map at start */
	uint64_t limit;         /* judged at a buffer bound */
	uint64_t unparsed;      /* queued packets we could not parse (dropped) */
	uint64_t bad_checksum;  /* queued segments with a wrong TCP checksum (dropped) */
	uint64_t copies_bad_checksum; /* copied (passed) ones: their flows blind */
	uint64_t refused_full;   /* new flows dropped: flow table full */
	uint64_t refused_memory; /* new flows dropped: sessions over --max-memory */
	uint64_t handshake_expired; /* half-open flows forgotten after HANDSHAKE_TIMEOUT_S */
	uint64_t offload_errors;
};

struct daemon {
	struct config cfg;
	struct datapath *dp;
	struct nfqueue *queue;
	struct flow_table *flows;
	struct control *ctl;
	struct gate *gate;
	struct dnslearn *dns;
	struct ring_buffer *replies; /* server segments copied by the tagger */
	bool replies_stale;          /* draining a previous run's copies */
	void *ring_cons, *ring_prod; /* its consumer and producer position pages */
	bool reading_replies;
	uint64_t replies_read, replies_bad, gap_drops;
	uint64_t awaits_set;         /* awaits entries written */
	uint64_t content_unexpected; /* the kernel took content the session did not expect */
	uint64_t copied_refused;     /* a copied client segment judged a refusal */
	uint64_t quit_unexpected;    /* the kernel passed at a QUIT the session did not end at */
	char *web_token;
	int web_fd;                /* the status page's listening socket (parent) */
	/* Probes run as child processes (tlsgate-probe --db), bounded, as
	 * an unprivileged user without capabilities (probe_child). */
	struct probe_queue *probes;
	struct privsep_user probe_user, insp_user, web_user;
	struct enforce *enforce;   /* raw sockets, opened by the parent */
	struct gate_config gcfg;   /* what the inspector opens the gate with */
	/* Processes (privsep.h). In the parent: */
	pid_t inspector_pid;       /* 0: none running */
	struct child_restarts inspector_restarts, web_restarts;
	int parent_ep, parent_sfd, parent_tfd;
	uint64_t alive_ns;         /* the inspector's last message */
	bool ready;                /* the first inspector became ready */
	bool keep_tagger;          /* stopped with secure-mode sources */
	size_t secure_sources;     /* as the inspector last said */
	/* In both: the socket between them (-1: none). */
	int ipc_fd;
	pid_t parent_pid;
	/* In the inspector, as the parent last said: */
	struct probe_queue_stats probe_stats;
	pid_t web_pid;
	uint32_t restarts;         /* inspectors started after the first */
	int fd_max;       /* closed in the child when close_range() is refused */
	uint64_t session_bytes; /* inspection memory, summed every tick */
	struct netfilter_rule rule;
	bool rule_added;
	uint64_t rule_checked_ns;
	struct port_set ports;
	struct session_limits limits;
	struct daemon_stats stats;
	uint64_t last_kernel_scan_ns;
	struct log_ratelimit rl;
	bool stop;
};

static uint64_t now_ns(void)
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

static int daemon_packet(void *arg, const uint8_t *pkt, size_t len, uint32_t indev,
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
	nfqueue_kernel_stats(d->queue, &ks);
	flow_for_each(d->flows, count_one, &c);
	json_t *root = json_pack(
		"{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
		" s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
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
		(json_int_t)d->stats.copies_bad_checksum, "kernel", "inspect",
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

static int daemon_schedule_probe(void *arg, const char *domain);
static int daemon_schedule_probe_api(void *arg, const char *domain);
static int daemon_release(void *arg, const char *mx, const char *by);
static int inspector_ask_probe(struct daemon *d, const char *domain, enum probe_class cls);

static char *daemon_control(void *arg, const char *command)
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

/* ---- systemd readiness (sd_notify protocol, without libsystemd) -------- */

/* Sends one state line ("READY=1", "WATCHDOG=1", ...) to $NOTIFY_SOCKET.
 * Does nothing when not started by systemd. */
static void notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	strcpy(sun.sun_path, path);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0'; /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
	close(fd);
}

/* ---- probes and releases (control socket and web API) ----------------- */

static void probe_reaped(struct daemon *d, pid_t pid, int status)
{
	if (!probe_queue_done(d->probes, pid))
		return;
	/* 70: a result could not be stored (tlsgate-probe(1)) */
	if (WIFEXITED(status) && WEXITSTATUS(status) == 70)
		log_warnx_rl(&d->rl, "a probe's result could not be stored (see its log)");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_EXIT_PRIVS)
		log_warnx_rl(&d->rl, "a probe did not run: it could not give up root and "
				     "its capabilities (see the log above)");
	else if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_EXIT_EXEC)
		log_warnx_rl(&d->rl, "a probe did not run: %s could not be executed",
			     d->cfg.probe_cmd);
	else if (WIFSIGNALED(status))
		log_warnx_rl(&d->rl, "a probe died of signal %d", WTERMSIG(status));
}

/* In the child, between fork() and exec: async-signal-safe calls only. */
static void probe_child_fail(const char *what)
{
	static const char head[] = "tlsgated: probe child: cannot ";
	int e = errno;
	ssize_t rc_ = write(STDERR_FILENO, head, sizeof(head) - 1);
	rc_ = write(STDERR_FILENO, what, strlen(what));
	const char *es = e == EPERM ? ": not permitted\n" : e == EINVAL ? ": invalid\n" : "\n";
	rc_ = write(STDERR_FILENO, es, strlen(es));
	(void)rc_;
	_exit(PROBE_EXIT_PRIVS);
}

/* The child of a probe, before exec: default signal mask, stdout to
 * /dev/null, no descriptor of the daemon's beyond stderr (map, raw socket
 * and queue descriptors are checked when opened, not when used: inherited,
 * they would keep their power). Then, when the daemon is root: no
 * supplementary groups, the probe user's gid and uid (real, effective,
 * saved), an empty bounding set, no ambient, inheritable, permitted or
 * effective capability, and no_new_privs. Any step that fails ends the
 * child (PROBE_EXIT_PRIVS): a probe never runs with more. */
static void __attribute__((noreturn)) probe_child(struct daemon *d, char **argv)
{
	extern char **environ;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, STDOUT_FILENO) < 0)
		probe_child_fail("open /dev/null");
	if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0)
		for (int fd = 3; fd < d->fd_max; fd++)
			close(fd);
	const char *step;
	if (privsep_drop(&d->probe_user, 0, &step) < 0)
		probe_child_fail(step);
	execve(d->cfg.probe_cmd, argv, environ);
	_exit(PROBE_EXIT_EXEC);
}

/* Starts queued probes while slots are free (probe_queue.h: mail first,
 * the API's at most its share). */
static void probe_run_queue(struct daemon *d)
{
	char domain[PROBE_QUEUE_DOMAIN_MAX];
	enum probe_class cls;
	while (probe_queue_take(d->probes, domain, &cls)) {
		char *argv[32];
		int n = 0;
		argv[n++] = (char *)d->cfg.probe_cmd;
		argv[n++] = "--quiet";
		argv[n++] = "--db";
		argv[n++] = (char *)d->cfg.store_path;
		if (d->cfg.probe_resolver) {
			argv[n++] = "--resolver";
			argv[n++] = (char *)d->cfg.probe_resolver;
		}
		if (d->cfg.probe_trust_anchor) {
			argv[n++] = "--trust-anchor";
			argv[n++] = (char *)d->cfg.probe_trust_anchor;
		}
		for (size_t i = 0; i < d->cfg.n_probe_args; i++)
			argv[n++] = (char *)d->cfg.probe_args[i];
		argv[n++] = "--";
		argv[n++] = domain;
		argv[n] = NULL;
		pid_t pid = fork();
		if (pid == 0)
			probe_child(d, argv);
		if (pid < 0) {
			log_warnx_rl(&d->rl, "cannot start %s: %s", d->cfg.probe_cmd,
				     strerror(errno));
			continue;
		}
		probe_queue_running(d->probes, pid, cls);
		log_info("probe of %s started (pid %d, for %s%s)", domain, (int)pid,
			 probe_class_name(cls), d->probe_user.drop ? ", unprivileged" : "");
	}
}

static int probe_schedule(struct daemon *d, const char *domain, enum probe_class cls)
{
	char norm[256];
	if (policy_domain_normalize(domain, norm, sizeof(norm)) < 0)
		return -EINVAL;
	int rc = probe_queue_add(d->probes, norm, cls);
	if (rc < 0)
		return rc;
	probe_run_queue(d);
	return 0;
}

/* Mail's probes: the gate (a named MX's DANE state), DNS learning and the
 * operator (tlsgatectl probe). */
static int daemon_schedule_probe(void *arg, const char *domain)
{
	return inspector_ask_probe(arg, domain, PROBE_MAIL);
}

/* The web API's: their own queue and share (probe_queue.h). */
static int daemon_schedule_probe_api(void *arg, const char *domain)
{
	return inspector_ask_probe(arg, domain, PROBE_API);
}

/* The users of the children (privsep.h); never root. When this process
 * is not root, nothing is switched. */
static void daemon_users_resolve(struct daemon *d)
{
	struct rlimit rl;
	d->fd_max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur
									      : 65536;
	char why[256];
	if (privsep_user_resolve(d->cfg.user, INSPECTOR_USER_DEFAULT, &d->insp_user, why,
				 sizeof(why)) < 0)
		fatalx("--user: %s", why);
	if (privsep_user_resolve(d->cfg.probe_user, PROBE_USER_DEFAULT, &d->probe_user, why,
				 sizeof(why)) < 0)
		fatalx("--probe-user: %s", why);
	if (d->cfg.web_listen && privsep_user_resolve(d->cfg.web_user, WEB_USER_DEFAULT,
						      &d->web_user, why, sizeof(why)) < 0)
		fatalx("--web-user: %s", why);
	if (!d->insp_user.drop) {
		log_info("not root (uid %d): the inspector, the status page and probes run as "
			 "this user",
			 (int)geteuid());
		return;
	}
	if (d->insp_user.uid == d->probe_user.uid ||
	    (d->cfg.web_listen &&
	     (d->web_user.uid == d->insp_user.uid || d->web_user.uid == d->probe_user.uid)))
		fatalx("--user %s, --probe-user %s and --web-user %s must be three different users "
		       "(each may do what the others may not)",
		       d->insp_user.name, d->probe_user.name, d->web_user.name);
	log_info("inspector runs as %s (uid %d) with CAP_NET_ADMIN only; probes as %s (uid %d) "
		 "and the status page as %s without capabilities",
		 d->insp_user.name, (int)d->insp_user.uid, d->probe_user.name,
		 (int)d->probe_user.uid, d->cfg.web_listen ? d->web_user.name : "(off)");
}

/* The inspector writes the store, the state directory and --judged-dir
 * after it dropped root; the probe's group writes the store; the web reads
 * it (privsep.h). */
static void daemon_share_files(struct daemon *d)
{
	if (!d->insp_user.drop)
		return;
	char why[512];
	uid_t uid = d->insp_user.uid;
	gid_t gid = d->probe_user.gid;
	if (privsep_own_dir(d->cfg.state_dir, uid, gid, why, sizeof(why)) < 0)
		fatalx("--state-dir: %s", why);
	if (d->cfg.judged_dir && privsep_own_dir(d->cfg.judged_dir, uid, gid, why, sizeof(why)) < 0)
		fatalx("--judged-dir: %s", why);
	char *copy = xstrdup(d->cfg.store_path);
	int rc = privsep_share_store(dirname(copy), d->cfg.store_path, uid, gid,
				     d->cfg.web_listen ? d->web_user.gid : (gid_t)-1, why,
				     sizeof(why));
	free(copy);
	if (rc < 0)
		fatalx("--store: %s", why);
}

static int daemon_release(void *arg, const char *mx, const char *by)
{
	struct daemon *d = arg;
	return gate_release(d->gate, mx, by);
}

/* ---- configuration ----------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tlsgated --inside IFACE --outside IFACE [options]\n"
		"  -i, --inside IFACE        interface towards the own MTAs\n"
		"  -o, --outside IFACE       interface towards the internet\n"
		"  -p, --ports LIST          SMTP ports, comma separated (default 25)\n"
		"  -q, --queue-num N         NFQUEUE number (default 0)\n"
		"      --queue-maxlen N      packets the kernel queues; more are dropped (default %d)\n"
		"      --pin-dir DIR         BPF pin directory (default %s)\n"
		"  -s, --control PATH        control socket (default %s)\n"
		"      --max-flows N         tracked flows; new ones beyond are dropped (default %d)\n"
		"      --max-memory MIB      inspection memory; new flows beyond are dropped (default 256)\n"
		"      --judged-dir DIR      diagnostics: write the client bytes each inspected flow's\n"
		"                            session consumed to DIR/CLIENT-PORT.judged (tests)\n"
		"      --idle-timeout S      forget an inspected flow idle this long (default 300)\n"
		"      --offload-timeout S   forget an offloaded flow idle this long (default 900)\n"
		"      --mark 0xM/0xMASK     inspection mark (default 0x%x/0x%x)\n"
		"      --no-offload          inspect every packet (diagnostics, benchmarks)\n"
		"      --remove              detach the tagger, delete the NFQUEUE rule and the pins\n"
		"                            that a stop with secure-mode sources left, then exit\n"
		"                            (give the same interfaces and --pin-dir)\n"
		"      --store FILE          SQLite state (default /var/lib/tlsgate/tlsgate.db)\n"
		"      --state-dir DIR       last good policy copy (default /var/lib/tlsgate)\n"
		"      --policy-key FILE     minisign public key that signs policies (none: secure mode off)\n"
		"      --policy FILE         signed policy (FILE.minisig beside it), re-read on SIGHUP\n"
		"      --policy-dir DIR      drop directory: DIR/policy.json (+ .minisig) is applied\n"
		"                            within 5 s of changing\n"
		"      --failclosed-ms N     secure-mode sources are dropped in the kernel when the\n"
		"                            daemon misses its heartbeat this long (default 3000)\n"
		"      --web ADDR:PORT|off   status page and API (default 127.0.0.1:8025)\n"
		"      --web-token-file FILE bearer token for state-changing API requests\n"
		"      --web-cors ORIGIN     webmail origin allowed to call the lookup API\n"
		"      --web-host NAME       a name the status page and API answer to in the Host\n"
		"                            header, besides addresses and localhost (up to %d)\n"
		"      --web-rate N          web requests answered per second; more wait their\n"
		"                            turn (default %u; 0: no pacing)\n"
		"      --probe PATH          tlsgate-probe binary (default: next to tlsgated)\n"
		"      --probe-resolver ADDR forwarder for the probe's validating resolver\n"
		"      --probe-trust-anchor FILE  the probe's DNSSEC trust anchor\n"
		"      --probe-arg ARG       one more argument for tlsgate-probe (up to 8 times)\n"
		"      --user USER           the packet inspector's user; it keeps CAP_NET_ADMIN\n"
		"                            only (default tlsgate)\n"
		"      --web-user USER       the status page's user, no capability (default tlsgate-web)\n"
		"      --probe-user USER     the unprivileged user probes run as, without\n"
		"                            capabilities (default tlsgate-probe)\n"
		"      --probe-learned yes|no  probe each recipient domain learned from DNS\n"
		"                            answers (validates MX/TLSA for DANE; default yes)\n"
		"  -l, --log-level LEVEL     error, warn, info, debug (default info)\n"
		"  -c, --config FILE         read options from FILE (one 'name = value' a line)\n"
		"  -h, --help\n",
		NFQUEUE_QUEUE_MAXLEN_DEFAULT, TLSGATE_PIN_DIR_DEFAULT, CONTROL_SOCKET_DEFAULT,
		TLSGATE_MAX_FLOWS, TLSGATE_MARK_INSPECT, TLSGATE_MARK_MASK, WEB_HOSTS_MAX,
		WEB_RATE_DEFAULT);
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return false;
	*out = v;
	return true;
}

/* Where the option being applied came from: "FILE:LINE" while a
 * configuration file is read, NULL for the command line. */
static const char *config_origin;

/* A bad option or value: one line that names it and the rule, exit 2.
 * Called before anything is attached or opened. */
static void __attribute__((noreturn, format(printf, 1, 2))) config_fail(const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (config_origin)
		fprintf(stderr, "tlsgated: %s: %s\n", config_origin, msg);
	else
		fprintf(stderr, "tlsgated: %s (see tlsgated --help)\n", msg);
	exit(2);
}

/* config_bad(name, value, rule...): "--NAME 'VALUE': RULE" (command line)
 * or "FILE:LINE: NAME = VALUE: RULE" (configuration file). */
#define config_bad(name, value, ...)                                                   \
	do {                                                                           \
		char rule_[256];                                                       \
		snprintf(rule_, sizeof(rule_), __VA_ARGS__);                           \
		if (config_origin)                                                     \
			config_fail("%s = %s: %s", (name), (value), rule_);            \
		else                                                                   \
			config_fail("--%s '%s': %s", (name), (value), rule_);          \
	} while (0)

/* "ADDR:PORT" or "[ADDR6]:PORT" with a numeric address and a port
 * 1..65535 (what web_open() accepts, without the port wrapping at 65536).
 * NULL when good, else the rule broken. */
static const char *web_listen_check(const char *v, char *why, size_t whylen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	unsigned char addr[16];
	unsigned long pv;
	int af = AF_INET;
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		if (!end || end[1] != ':' || (size_t)(end - v - 1) >= sizeof(host))
			return "not ADDR:PORT, [ADDR6]:PORT or off";
		memcpy(host, v + 1, (size_t)(end - v - 1));
		host[end - v - 1] = '\0';
		port = end + 2;
		af = AF_INET6;
	} else {
		const char *colon = strrchr(v, ':');
		if (!colon || (size_t)(colon - v) >= sizeof(host) || memchr(v, ':', (size_t)(colon - v)))
			return "not ADDR:PORT, [ADDR6]:PORT or off";
		memcpy(host, v, (size_t)(colon - v));
		host[colon - v] = '\0';
		port = colon + 1;
	}
	if (inet_pton(af, host, addr) != 1) {
		snprintf(why, whylen, "'%s' is not an IPv%d address", host, af == AF_INET ? 4 : 6);
		return why;
	}
	if (!parse_uint(port, 65535, &pv) || pv == 0) {
		snprintf(why, whylen, "port '%s' is not 1..65535", port);
		return why;
	}
	return NULL;
}

static void config_apply(struct config *cfg, const char *name, const char *value);

static void config_read_file(struct config *cfg, const char *path)
{
	const char *outer = config_origin;
	FILE *f = fopen(path, "re");
	if (!f)
		config_bad("config", path, "%s", strerror(errno));
	char line[512], origin[600];
	unsigned int lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		snprintf(origin, sizeof(origin), "%s:%u", path, lineno);
		config_origin = origin;
		if (!strchr(line, '\n') && !feof(f))
			config_fail("line longer than %zu bytes", sizeof(line) - 2);
		char *s = line + strspn(line, " \t");
		s[strcspn(s, "#\r\n")] = '\0';
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq)
			config_fail("'%s': expected 'name = value'", s);
		char *name = s, *value = eq + 1;
		*eq = '\0';
		name[strcspn(name, " \t")] = '\0';
		value += strspn(value, " \t");
		for (char *e = value + strlen(value); e > value && (e[-1] == ' ' || e[-1] == '\t');)
			*--e = '\0';
		config_apply(cfg, name, xstrdup(value));
	}
	if (ferror(f)) {
		config_origin = outer;
		config_bad("config", path, "%s", strerror(errno));
	}
	fclose(f);
	config_origin = outer;
}

static void config_apply(struct config *cfg, const char *name, const char *value)
{
	unsigned long v;
	if (!strcmp(name, "inside") || !strcmp(name, "outside")) {
		if (cfg->n_ifaces >= DATAPATH_MAX_IFACES)
			config_bad(name, value, "at most %d interfaces in all", DATAPATH_MAX_IFACES);
		if (!*value || strlen(value) >= IF_NAMESIZE || strchr(value, '/'))
			config_bad(name, value, "not an interface name (1..%d characters, no '/')",
				   IF_NAMESIZE - 1);
		for (size_t i = 0; i < cfg->n_ifaces; i++)
			if (!strcmp(cfg->ifaces[i], value))
				config_bad(name, value, "given twice (an interface is inside or outside)");
		cfg->iface_inside[cfg->n_ifaces] = !strcmp(name, "inside");
		cfg->ifaces[cfg->n_ifaces++] = value;
	} else if (!strcmp(name, "store")) {
		cfg->store_path = value;
	} else if (!strcmp(name, "state-dir")) {
		cfg->state_dir = value;
	} else if (!strcmp(name, "policy-key")) {
		cfg->policy_key = value;
	} else if (!strcmp(name, "policy")) {
		cfg->policy_path = value;
	} else if (!strcmp(name, "policy-dir")) {
		cfg->policy_dir = value;
	} else if (!strcmp(name, "failclosed-ms")) {
		if (!parse_uint(value, 600000, &v) || v < 100)
			config_bad(name, value, "not 100..600000 (milliseconds)");
		cfg->failclosed_ms = (unsigned int)v;
	} else if (!strcmp(name, "web")) {
		char why[128];
		const char *rule = strcmp(value, "off") ? web_listen_check(value, why, sizeof(why)) : NULL;
		if (rule)
			config_bad(name, value, "%s", rule);
		cfg->web_listen = !strcmp(value, "off") ? NULL : value;
	} else if (!strcmp(name, "web-token-file")) {
		cfg->web_token_file = value;
	} else if (!strcmp(name, "web-host")) {
		if (cfg->n_web_hosts >= WEB_HOSTS_MAX)
			config_bad(name, value, "at most %d --web-host", WEB_HOSTS_MAX);
		if (!*value || strlen(value) > 253 || strpbrk(value, ":/[]@ \t"))
			config_bad(name, value, "not a host name (no port, no brackets)");
		cfg->web_hosts[cfg->n_web_hosts++] = value;
	} else if (!strcmp(name, "web-cors")) {
		cfg->web_cors = value;
	} else if (!strcmp(name, "web-rate")) {
		if (!parse_uint(value, 1000000, &v))
			config_bad(name, value, "not 0..1000000 (requests a second)");
		cfg->web_rate = (unsigned int)v;
	} else if (!strcmp(name, "probe")) {
		cfg->probe_cmd = value;
	} else if (!strcmp(name, "probe-resolver")) {
		cfg->probe_resolver = value;
	} else if (!strcmp(name, "probe-trust-anchor")) {
		cfg->probe_trust_anchor = value;
	} else if (!strcmp(name, "probe-arg")) {
		if (cfg->n_probe_args >= 8)
			config_bad(name, value, "at most 8 --probe-arg");
		cfg->probe_args[cfg->n_probe_args++] = value;
	} else if (!strcmp(name, "probe-user") || !strcmp(name, "user") ||
		   !strcmp(name, "web-user")) {
		if (!*value)
			config_bad(name, value, "empty user name");
		*(name[0] == 'p' ? &cfg->probe_user : name[0] == 'u' ? &cfg->user : &cfg->web_user) =
			value;
	} else if (!strcmp(name, "probe-learned")) {
		if (strcmp(value, "yes") && strcmp(value, "no"))
			config_bad(name, value, "not yes or no");
		cfg->learn_probe = !strcmp(value, "yes");
	} else if (!strcmp(name, "ports")) {
		char *copy = xstrdup(value), *save = NULL;
		cfg->n_ports = 0;
		for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			if (!parse_uint(t, 65535, &v) || v == 0)
				config_bad(name, value, "'%s' is not a port 1..65535", t);
			if (cfg->n_ports >= TLSGATED_MAX_PORTS)
				config_bad(name, value, "at most %d ports", TLSGATED_MAX_PORTS);
			cfg->ports[cfg->n_ports++] = (uint16_t)v;
		}
		free(copy);
		if (cfg->n_ports == 0)
			config_bad(name, value, "no port in the list");
	} else if (!strcmp(name, "queue-num")) {
		if (!parse_uint(value, 65535, &v))
			config_bad(name, value, "not 0..65535");
		cfg->queue_num = (uint16_t)v;
	} else if (!strcmp(name, "queue-maxlen")) {
		if (!parse_uint(value, 1u << 20, &v) || v == 0)
			config_bad(name, value, "not 1..1048576 (packets)");
		cfg->queue_maxlen = (uint32_t)v;
	} else if (!strcmp(name, "pin-dir")) {
		cfg->pin_dir = value;
	} else if (!strcmp(name, "control")) {
		cfg->control_path = value;
	} else if (!strcmp(name, "max-flows")) {
		if (!parse_uint(value, 1u << 24, &v) || v == 0)
			config_bad(name, value, "not 1..16777216 (flows)");
		cfg->max_flows = v;
	} else if (!strcmp(name, "judged-dir")) {
		cfg->judged_dir = value;
	} else if (!strcmp(name, "max-memory")) {
		if (!parse_uint(value, 1u << 20, &v) || v == 0)
			config_bad(name, value, "not 1..1048576 (MiB)");
		cfg->max_memory_mib = (unsigned int)v;
	} else if (!strcmp(name, "idle-timeout")) {
		if (!parse_uint(value, 86400, &v) || v == 0)
			config_bad(name, value, "not 1..86400 (seconds)");
		cfg->idle_timeout = (unsigned int)v;
	} else if (!strcmp(name, "offload-timeout")) {
		if (!parse_uint(value, 86400, &v) || v == 0)
			config_bad(name, value, "not 1..86400 (seconds)");
		cfg->offload_timeout = (unsigned int)v;
	} else if (!strcmp(name, "mark")) {
		unsigned int m, mask;
		char extra;
		if (sscanf(value, "%i/%i%c", &m, &mask, &extra) != 2 || !mask || (m & ~mask))
			config_bad(name, value, "not MARK/MASK with MARK inside a non-zero MASK");
		cfg->mark = m;
		cfg->mask = mask;
	} else if (!strcmp(name, "remove")) {
		cfg->remove = true;
	} else if (!strcmp(name, "no-offload")) {
		cfg->no_offload = !strcmp(value, "yes") || !strcmp(value, "1") || !*value;
	} else if (!strcmp(name, "log-level")) {
		int level = log_level_parse(value);
		if (level < 0)
			config_bad(name, value, "not error, warn, info or debug");
		log_set_level((enum log_level)level);
	} else if (!strcmp(name, "config")) {
		config_read_file(cfg, value);
	} else {
		config_fail("unknown option '%s'", name);
	}
}

/* getopt_long() found a bad option (c '?') or one without its value
 * (c ':'); arg is the argument it looked at. */
static void __attribute__((noreturn)) config_getopt_fail(const struct option *opts, int c,
							 const char *arg)
{
	if (strncmp(arg, "--", 2) != 0) {
		if (c == ':')
			config_fail("option -%c needs a value", optopt);
		config_fail("unknown option -%c", optopt);
	}
	const char *name = arg + 2;
	size_t len = strcspn(name, "=");
	size_t matches = 0;
	const struct option *exact = NULL;
	for (const struct option *o = opts; o->name; o++) {
		if (!strncmp(o->name, name, len)) {
			matches++;
			if (strlen(o->name) == len)
				exact = o;
		}
	}
	if (c == ':')
		config_fail("option --%.*s needs a value", (int)len, name);
	if (exact || matches == 1) {
		if (name[len] == '=')
			config_fail("option --%.*s takes no value", (int)len, name);
	} else if (matches > 1) {
		config_fail("ambiguous option --%.*s (%zu options start so)", (int)len, name, matches);
	}
	config_fail("unknown option --%.*s", (int)len, name);
}

static void config_parse(struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "inside", required_argument, NULL, 'i' },
		{ "outside", required_argument, NULL, 'o' },
		{ "ports", required_argument, NULL, 'p' },
		{ "queue-num", required_argument, NULL, 'q' },
		{ "queue-maxlen", required_argument, NULL, 1 },
		{ "pin-dir", required_argument, NULL, 1 },
		{ "control", required_argument, NULL, 's' },
		{ "max-flows", required_argument, NULL, 1 },
		{ "max-memory", required_argument, NULL, 1 },
		{ "judged-dir", required_argument, NULL, 1 },
		{ "idle-timeout", required_argument, NULL, 1 },
		{ "offload-timeout", required_argument, NULL, 1 },
		{ "mark", required_argument, NULL, 1 },
		{ "no-offload", no_argument, NULL, 1 },
		{ "remove", no_argument, NULL, 1 },
		{ "store", required_argument, NULL, 1 },
		{ "state-dir", required_argument, NULL, 1 },
		{ "policy-key", required_argument, NULL, 1 },
		{ "policy", required_argument, NULL, 1 },
		{ "policy-dir", required_argument, NULL, 1 },
		{ "failclosed-ms", required_argument, NULL, 1 },
		{ "web", required_argument, NULL, 1 },
		{ "web-token-file", required_argument, NULL, 1 },
		{ "web-cors", required_argument, NULL, 1 },
		{ "web-host", required_argument, NULL, 1 },
		{ "web-rate", required_argument, NULL, 1 },
		{ "probe", required_argument, NULL, 1 },
		{ "probe-resolver", required_argument, NULL, 1 },
		{ "probe-trust-anchor", required_argument, NULL, 1 },
		{ "probe-learned", required_argument, NULL, 1 },
		{ "probe-arg", required_argument, NULL, 1 },
		{ "probe-user", required_argument, NULL, 1 },
		{ "user", required_argument, NULL, 1 },
		{ "web-user", required_argument, NULL, 1 },
		{ "log-level", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	*cfg = (struct config){
		.ports = { 25 },
		.n_ports = 1,
		.queue_maxlen = NFQUEUE_QUEUE_MAXLEN_DEFAULT,
		.pin_dir = TLSGATE_PIN_DIR_DEFAULT,
		.control_path = CONTROL_SOCKET_DEFAULT,
		.max_flows = TLSGATE_MAX_FLOWS,
		.max_memory_mib = 256,
		.idle_timeout = 300,
		.offload_timeout = 900,
		.mark = TLSGATE_MARK_INSPECT,
		.mask = TLSGATE_MARK_MASK,
		.store_path = "/var/lib/tlsgate/tlsgate.db",
		.state_dir = "/var/lib/tlsgate",
		.failclosed_ms = GATE_FAILCLOSED_MS_DEFAULT,
		.web_listen = WEB_LISTEN_DEFAULT,
		.web_rate = WEB_RATE_DEFAULT,
		.learn_probe = true,
	};
	int c, idx = -1;
	opterr = 0; /* one line of our own instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":i:o:p:q:s:l:c:h", opts, &idx)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?' || c == ':')
			config_getopt_fail(opts, c, argv[optind - 1]);
		/* getopt_long() takes an abbreviation that several options
		 * share when they look alike to it (--pol: --policy-key, the
		 * first): refused here. */
		const char *text = argv[optind - (optarg && optarg == argv[optind - 1] ? 2 : 1)];
		if (idx >= 0 && !strncmp(text, "--", 2)) {
			size_t len = strcspn(text + 2, "="), matches = 0;
			for (const struct option *o = opts; o->name; o++)
				matches += !strncmp(o->name, text + 2, len);
			if (len != strlen(opts[idx].name) && matches > 1)
				config_fail("ambiguous option --%.*s (%zu options start so)", (int)len,
					    text + 2, matches);
		}
		const char *name = NULL;
		for (const struct option *o = opts; o->name; o++)
			if ((c == 1 && o == &opts[idx]) || (c != 1 && o->val == c))
				name = o->name;
		config_apply(cfg, name, optarg ? optarg : "");
		idx = -1;
	}
	if (optind < argc)
		config_fail("unexpected argument '%s': tlsgated takes options only", argv[optind]);
	size_t n_inside = 0;
	for (size_t i = 0; i < cfg->n_ifaces; i++)
		n_inside += cfg->iface_inside[i];
	if (cfg->n_ifaces == 0)
		config_fail("no interface given: use --inside IFACE --outside IFACE");
	/* It runs between the two: with one side only it would judge
	 * half the connections (--remove takes whatever was given). */
	if (!cfg->remove && n_inside == 0)
		config_fail("--outside given without --inside IFACE: tlsgated needs both");
	if (!cfg->remove && n_inside == cfg->n_ifaces)
		config_fail("--inside given without --outside IFACE: tlsgated needs both");
	for (size_t i = 0; i < cfg->n_ifaces; i++)
		if (if_nametoindex(cfg->ifaces[i]) == 0)
			config_fail("--%s '%s': no such interface",
				    cfg->iface_inside[i] ? "inside" : "outside", cfg->ifaces[i]);
}

/* ---- main -------------------------------------------------------------- */

/* The NFQUEUE rule for the configured mark and queue. */
static struct netfilter_rule daemon_rule(const struct config *cfg)
{
	return (struct netfilter_rule){ .mark = cfg->mark, .mask = cfg->mask,
					.queue_num = cfg->queue_num, .chain = "FORWARD" };
}

/* The parent's end: the kernel side goes (or, after a stop with
 * secure-mode sources, the tagger stays: fail-closed for them). */
static void daemon_teardown(struct daemon *d)
{
	size_t secure = d->stop && d->keep_tagger ? d->secure_sources : 0;
	free(d->web_token);
	if (d->web_fd > 0)
		close(d->web_fd);
	probe_queue_free(d->probes);
	control_close(d->ctl);
	if (d->rule_added)
		netfilter_remove(&d->rule);
	nfqueue_close(d->queue);
	flow_table_free(d->flows);
	enforce_close(d->enforce);
	if ((secure || d->keep_tagger) && d->dp) {
		log_warnx("stopped with secure-mode source prefix(es) in the policy: the tagger "
			  "stays attached and refuses their new connections until tlsgated runs "
			  "again; other mail passes unchecked. 'tlsgated --remove' with the same "
			  "interfaces and --pin-dir takes it away");
		datapath_close(d->dp, false);
	} else {
		datapath_close(d->dp, true);
	}
}

/* The signals the event loop takes through its signalfd. Blocked in main()
 * before any thread starts (the web server has one), so that no thread
 * takes SIGTERM's default action and dies without cleaning up. */
static void daemon_signals(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGHUP);
	sigaddset(mask, SIGCHLD);
}

static int daemon_run(struct daemon *d);

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

/* ---- processes: parent and inspector (privsep.h, docs/privsep.md) ------ */

/* Messages between the inspector and the parent (SOCK_SEQPACKET, one per
 * datagram). The parent trusts none of it beyond what it asks for: a
 * probe of a name it normalizes again, a count, a readiness. */
enum ipc_type {
	IPC_READY = 1,	    /* inspector: started, serving */
	IPC_ALIVE,	    /* inspector, each tick: value = secure-mode source prefixes */
	IPC_PROBE,	    /* inspector: probe domain, value = enum probe_class */
	IPC_PARENT_STATE, /* parent, each tick: probe queue, web pid, restarts */
};

struct ipc_msg {
	uint32_t type;
	uint32_t value;
	int32_t web_pid;
	uint32_t restarts;
	struct probe_queue_stats probes;
	char domain[PROBE_QUEUE_DOMAIN_MAX];
};

#define INSPECTOR_EXIT_START 2 /* could not start: not restarted */
#define INSPECTOR_EXIT_KEEP 10 /* stopped with secure-mode sources: keep the tagger */
/* A child that dies more often than this is not restarted: the parent
 * stops (and systemd starts the whole service again). */
#define RESTARTS_MAX 5
#define RESTARTS_WINDOW_NS (60ull * 1000000000ull)
#define ALIVE_MAX_NS (5ull * 1000000000ull)
#define STOP_WAIT_NS (8ull * 1000000000ull)
#define RULE_CHECK_NS (10ull * 1000000000ull)

static int ipc_send(int fd, const struct ipc_msg *m)
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
		if (n == (ssize_t)sizeof(m) && m.type == IPC_PARENT_STATE) {
			d->probe_stats = m.probes;
			d->web_pid = m.web_pid;
			d->restarts = m.restarts;
		}
	}
}

/* The inspector, right after fork(): drops root (keeping CAP_NET_ADMIN for
 * queue verdicts), opens what it writes (the store, the state), installs
 * its seccomp filter and runs the packet loop. What it inherited from the
 * parent: the queue, the maps, the raw sockets, the listening sockets.
 * Never returns. */
static void __attribute__((noreturn)) inspector_main(struct daemon *d)
{
	const char *step;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != d->parent_pid)
		_exit(INSPECTOR_EXIT_START);
	close(d->parent_ep);
	close(d->parent_sfd);
	close(d->parent_tfd);
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

static int inspector_start(struct daemon *d)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_warn("inspector: socketpair");
		return -1;
	}
	d->parent_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("inspector: fork");
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		d->ipc_fd = sv[1];
		inspector_main(d);
	}
	close(sv[1]);
	d->ipc_fd = sv[0];
	d->inspector_pid = pid;
	d->alive_ns = now_ns();
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = d->ipc_fd };
	epoll_ctl(d->parent_ep, EPOLL_CTL_ADD, d->ipc_fd, &ev);
	log_info("inspector started (pid %d%s)", (int)pid,
		 d->insp_user.drop ? ", unprivileged" : "");
	return 0;
}

static void parent_read_inspector(struct daemon *d)
{
	struct ipc_msg m;
	ssize_t n;
	while ((n = recv(d->ipc_fd, &m, sizeof(m), MSG_DONTWAIT)) > 0) {
		if (n != (ssize_t)sizeof(m))
			continue;
		switch (m.type) {
		case IPC_READY:
			if (!d->ready) {
				d->ready = true;
				notify("READY=1\nSTATUS=inspecting port-25 flows");
			}
			d->alive_ns = now_ns();
			break;
		case IPC_ALIVE:
			d->alive_ns = now_ns();
			d->secure_sources = m.value;
			break;
		case IPC_PROBE:
			m.domain[sizeof(m.domain) - 1] = '\0';
			if (m.value < PROBE_CLASSES)
				probe_schedule(d, m.domain, (enum probe_class)m.value);
			break;
		}
	}
}

static void parent_send_state(struct daemon *d)
{
	struct ipc_msg m = { .type = IPC_PARENT_STATE, .web_pid = (int32_t)d->web_pid,
			     .restarts = d->restarts };
	probe_queue_stats(d->probes, &m.probes);
	ipc_send(d->ipc_fd, &m);
}

/* The web, right after fork(): only its listening socket and stderr
 * kept, the web user's rights (none), its seccomp filter, then the status
 * page until SIGTERM (web_proc.h). Never returns. */
static void __attribute__((noreturn)) web_main(struct daemon *d)
{
	const char *step;
	if (dup2(d->web_fd, 3) < 0 || syscall(SYS_close_range, 4u, ~0u, 0u) < 0) {
		log_warn("web: cannot close the parent's descriptors");
		_exit(INSPECTOR_EXIT_START);
	}
	if (privsep_drop(&d->web_user, 0, &step) < 0) {
		log_warn("cannot start the status page: cannot %s", step);
		_exit(INSPECTOR_EXIT_START);
	}
	if (d->web_user.drop && privsep_seccomp(PRIVSEP_WEB) < 0)
		_exit(INSPECTOR_EXIT_START);
	struct web_config wcfg = { .listen = d->cfg.web_listen, .listen_fd = 3,
				   .token = d->web_token, .cors_origin = d->cfg.web_cors,
				   .store_path = d->cfg.store_path, .rate = d->cfg.web_rate,
				   .n_hosts = d->cfg.n_web_hosts };
	memcpy(wcfg.hosts, d->cfg.web_hosts, sizeof(wcfg.hosts));
	_exit(web_proc_run(&wcfg, d->cfg.control_path));
}

static int web_start(struct daemon *d)
{
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("status page: fork");
		return -1;
	}
	if (pid == 0)
		web_main(d);
	d->web_pid = pid;
	log_info("status page started (pid %d%s)", (int)pid,
		 d->web_user.drop ? ", unprivileged" : "");
	return 0;
}

/* Another start of a child that died: false once it died more than
 * RESTARTS_MAX times within RESTARTS_WINDOW_NS. */
static bool child_may_restart(struct child_restarts *r, const char *what)
{
	uint64_t now = now_ns();
	if (now - r->window_ns > RESTARTS_WINDOW_NS) {
		r->window_ns = now;
		r->in_window = 0;
	}
	if (++r->in_window <= RESTARTS_MAX)
		return true;
	log_warnx("the %s died %d times within %llu s: not started again", what, RESTARTS_MAX,
		  RESTARTS_WINDOW_NS / 1000000000ull);
	return false;
}

static void child_died(const char *what, pid_t pid, int status)
{
	if (WIFSIGNALED(status))
		log_warnx("the %s (pid %d) died of signal %d", what, (int)pid, WTERMSIG(status));
	else if (WEXITSTATUS(status) == PRIVSEP_EXIT_SECCOMP)
		log_warnx("the %s (pid %d) made a system call outside its seccomp filter", what,
			  (int)pid);
	else
		log_warnx("the %s (pid %d) exited with status %d", what, (int)pid,
			  WEXITSTATUS(status));
}

/* Children that ended: a probe (counted); the web (started again; mail
 * does not wait for it); the inspector (started again unless it could not
 * start, a stop was asked for, or it died too often: then *failed). */
static void parent_reap(struct daemon *d, bool *failed)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == d->web_pid) {
			d->web_pid = 0;
			if (d->stop)
				continue;
			child_died("status page", pid, status);
			if (child_may_restart(&d->web_restarts, "status page"))
				web_start(d);
			continue;
		}
		if (pid != d->inspector_pid) {
			probe_reaped(d, pid, status);
			continue;
		}
		d->inspector_pid = 0;
		epoll_ctl(d->parent_ep, EPOLL_CTL_DEL, d->ipc_fd, NULL);
		close(d->ipc_fd);
		d->ipc_fd = -1;
		if (d->stop) {
			d->keep_tagger = WIFEXITED(status) ? WEXITSTATUS(status) == INSPECTOR_EXIT_KEEP
							   : d->secure_sources > 0;
			continue;
		}
		if (!d->ready || (WIFEXITED(status) && WEXITSTATUS(status) == INSPECTOR_EXIT_START)) {
			*failed = true;
			continue;
		}
		child_died("inspector", pid, status);
		if (!child_may_restart(&d->inspector_restarts, "inspector")) {
			d->keep_tagger = d->secure_sources > 0;
			*failed = true;
			continue;
		}
		d->restarts++;
		if (inspector_start(d) < 0)
			*failed = true;
	}
}

/* The inspector keeps CAP_NET_ADMIN for its verdicts, and with it the
 * queue's socket could change the firewall (docs/privsep.md): every
 * RULE_CHECK_NS the parent puts a missing rule back, loudly. */
static void parent_check_rule(struct daemon *d, uint64_t now)
{
	if (d->stop || !d->rule_added || now - d->rule_checked_ns < RULE_CHECK_NS)
		return;
	d->rule_checked_ns = now;
	if (netfilter_add(&d->rule) > 0)
		log_warnx("the NFQUEUE rule was gone (removed by someone else): put back");
}

static void parent_stop_children(struct daemon *d)
{
	d->stop = true;
	if (d->inspector_pid > 0)
		kill(d->inspector_pid, SIGTERM);
	if (d->web_pid > 0)
		kill(d->web_pid, SIGTERM);
}

/* The parent's loop: signals, the inspector's messages, a 1 s timer for
 * the watchdog and the probes. 0 after a requested stop. */
static int parent_run(struct daemon *d)
{
	sigset_t mask;
	daemon_signals(&mask);
	d->parent_sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	d->parent_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->parent_ep = epoll_create1(EPOLL_CLOEXEC);
	if (d->parent_sfd < 0 || d->parent_tfd < 0 || d->parent_ep < 0) {
		log_warn("event loop set-up");
		return -1;
	}
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	timerfd_settime(d->parent_tfd, 0, &its, NULL);
	int fds[] = { d->parent_sfd, d->parent_tfd };
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };
		epoll_ctl(d->parent_ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	if (inspector_start(d) < 0)
		return -1;
	if (d->web_fd > 0 && web_start(d) < 0)
		return -1;
	parent_send_state(d);
	bool failed = false;
	uint64_t stop_ns = 0;
	while (d->inspector_pid > 0 || d->web_pid > 0 || (!d->stop && !failed)) {
		if (failed && !d->stop) {
			parent_stop_children(d);
			stop_ns = now_ns();
		}
		struct epoll_event evs[4];
		int n = epoll_wait(d->parent_ep, evs, 4, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("epoll_wait");
			return -1;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == d->parent_sfd) {
				struct signalfd_siginfo si;
				while (read(fd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGCHLD) {
						parent_reap(d, &failed);
						probe_run_queue(d);
						parent_send_state(d);
					} else if (si.ssi_signo == SIGHUP) {
						log_info("SIGHUP: re-reading the policy");
						if (d->inspector_pid > 0)
							kill(d->inspector_pid, SIGHUP);
					} else if (!d->stop) {
						log_info("signal %u: shutting down", si.ssi_signo);
						notify("STOPPING=1");
						stop_ns = now_ns();
						d->keep_tagger = d->secure_sources > 0;
						parent_stop_children(d);
					}
				}
			} else if (fd == d->parent_tfd) {
				uint64_t ticks;
				if (read(fd, &ticks, sizeof(ticks)) != sizeof(ticks))
					continue;
				uint64_t now = now_ns();
				if (d->ready && !d->stop && now - d->alive_ns < ALIVE_MAX_NS)
					notify("WATCHDOG=1");
				if (d->stop && now - stop_ns > STOP_WAIT_NS) {
					pid_t left[] = { d->inspector_pid, d->web_pid };
					for (int k = 0; k < 2; k++)
						if (left[k] > 0) {
							log_warnx("process %d did not stop: killed",
								  (int)left[k]);
							kill(left[k], SIGKILL);
						}
				}
				probe_run_queue(d);
				parent_send_state(d);
				parent_check_rule(d, now);
			} else if (fd == d->ipc_fd) {
				parent_read_inspector(d);
			}
		}
	}
	return failed ? -1 : 0;
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
						/* No RELOADING=1/READY=1 around it: with
						 * Type=notify and ExecReload=kill -HUP, systemd
						 * (252) left the unit inactive after those. */
						log_info("SIGHUP: re-reading the policy");
						daemon_catch_up(d);
						gate_reload(d->gate);
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

int main(int argc, char **argv)
{
	struct daemon d = { 0 };

	log_open("tlsgated", LOG_LEVEL_INFO, false);
	sigset_t mask;
	daemon_signals(&mask);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	config_parse(&d.cfg, argc, argv);
	if (!d.cfg.probe_cmd) {
		/* Default: tlsgate-probe next to this binary. */
		static char probe_path[4096];
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = '\0';
			snprintf(probe_path, sizeof(probe_path), "%s/tlsgate-probe", dirname(self));
			d.cfg.probe_cmd = probe_path;
		} else {
			d.cfg.probe_cmd = "tlsgate-probe";
		}
	}
	if (geteuid() != 0)
		log_warnx("not running as root: BPF, netfilter and NFQUEUE will likely fail");

	for (size_t i = 0; i < d.cfg.n_ports; i++)
		port_set_add(&d.ports, d.cfg.ports[i]);
	d.limits = (struct session_limits){ .dialog_bytes = SESSION_DIALOG_BYTES_DEFAULT,
					    .tls_bytes = SESSION_TLS_BYTES_DEFAULT };
	d.flows = flow_table_new(d.cfg.max_flows, NULL, NULL);
	{
		struct probe_queue_limits pl = PROBE_QUEUE_LIMITS_DEFAULT;
		d.probes = probe_queue_new(&pl);
	}
	daemon_users_resolve(&d);

	struct datapath_config dcfg = {
		.pin_dir = d.cfg.pin_dir,
		.n_ifaces = d.cfg.n_ifaces,
		.ports = d.cfg.ports,
		.n_ports = d.cfg.n_ports,
		.inspect_mark = d.cfg.mark,
		.inspect_mask = d.cfg.mask,
	};
	memcpy(dcfg.ifaces, d.cfg.ifaces, sizeof(dcfg.ifaces));
	int status = 1;
	/* Read before anything is attached: a bad token file stops the
	 * start with nothing to undo. */
	if (d.cfg.web_listen && d.cfg.web_token_file) {
		FILE *tf = fopen(d.cfg.web_token_file, "re");
		char tok[256];
		if (!tf)
			fatal("--web-token-file %s", d.cfg.web_token_file);
		if (!fgets(tok, sizeof(tok), tf))
			fatalx("--web-token-file %s: empty", d.cfg.web_token_file);
		fclose(tf);
		tok[strcspn(tok, "\r\n")] = '\0';
		if (strlen(tok) < 16)
			fatalx("--web-token-file %s: the token has %zu characters, at least 16 needed",
			       d.cfg.web_token_file, strlen(tok));
		d.web_token = xstrdup(tok);
	}
	/* Each step that fails logs why as a warning and returns an error:
	 * that line is written as the fatal one (START_STEP). */
#define START_STEP(ok, what)                                              \
	do {                                                              \
		if (!(ok)) {                                              \
			if (!log_hold_fatal()) {                          \
				log_warnx("cannot start: %s", what);      \
				log_hold_fatal();                         \
			}                                                 \
			goto out;                                         \
		}                                                         \
		log_hold_flush();                                         \
	} while (0)
	log_hold(true);
	d.dp = datapath_open(&dcfg);
	START_STEP(d.dp, "the tagger could not be loaded and attached");
	if (d.cfg.remove) {
		log_hold(false);
		/* Attaching (which replaces) and detaching again is the one
		 * way that works whether a stop left anything or not. */
		d.rule = daemon_rule(&d.cfg);
		status = netfilter_remove(&d.rule) < 0;
		datapath_close(d.dp, true);
		log_info("removed: tagger detached from %zu interface(s), NFQUEUE rule deleted, "
			 "%s unpinned",
			 d.cfg.n_ifaces, d.cfg.pin_dir);
		flow_table_free(d.flows);
		return status;
	}
	d.gcfg = (struct gate_config){
		.store_path = d.cfg.store_path,
		.state_dir = d.cfg.state_dir,
		.policy_key_path = d.cfg.policy_key,
		.policy_path = d.cfg.policy_path,
		.policy_dir = d.cfg.policy_dir,
		.failclosed_ms = d.cfg.failclosed_ms,
		.schedule_probe = daemon_schedule_probe,
	};
	for (size_t i = 0; i < d.cfg.n_ifaces; i++)
		if (d.cfg.iface_inside[i])
			d.gcfg.inside_ifindex[d.gcfg.n_inside++] = (int)if_nametoindex(d.cfg.ifaces[i]);
	/* What needs root is opened here, before the inspector is started
	 * and drops it: raw sockets (CAP_NET_RAW at socket()), the queue's
	 * binding, the rule, the control socket's file. */
	d.enforce = enforce_open();
	START_STEP(d.enforce, "the raw sockets could not be opened");
	d.queue = nfqueue_open(d.cfg.queue_num, d.cfg.queue_maxlen, NFQUEUE_RCVBUF_DEFAULT,
			       daemon_packet, &d);
	START_STEP(d.queue, "NFQUEUE could not be bound");
	d.rule = daemon_rule(&d.cfg);
	START_STEP(netfilter_add(&d.rule) >= 0, "the NFQUEUE rule could not be added");
	d.rule_added = true;
	char *dir = xstrdup(d.cfg.control_path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	free(dir);
	d.ctl = control_open(d.cfg.control_path, daemon_control, &d);
	START_STEP(d.ctl, "the control socket could not be opened");
	if (d.cfg.web_listen) {
		d.web_fd = web_listen_socket(d.cfg.web_listen);
		if (d.web_fd < 0)
			log_warnx("web: %s: %s", d.cfg.web_listen, strerror(-d.web_fd));
		START_STEP(d.web_fd > 0, "the status page could not listen");
		/* The web may send its few commands, nothing else. */
		if (d.web_user.drop)
			START_STEP(control_limit_uid(d.ctl, d.web_user.uid, WEB_PROC_COMMANDS) == 0 &&
					   control_allow_group(d.ctl, d.web_user.gid) == 0,
				   "the control socket could not be opened to the status page");
	}
	daemon_share_files(&d);
#undef START_STEP
	log_hold(false);
	d.ipc_fd = -1;
	if (parent_run(&d) == 0)
		status = 0;
out:
	log_hold(false);
	daemon_teardown(&d);
	log_info("stopped");
	return status;
}
