/* tlsgated.h - what tlsgated's parent (tlsgated.c) and its packet
 * inspector (inspector.c) share: the configuration, the daemon's state
 * (each process uses its part, see struct daemon) and the messages between
 * them. The rights each process runs with: privsep.h. */
#ifndef TLSGATE_TLSGATED_H
#define TLSGATE_TLSGATED_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <bpf/libbpf.h>

#include "control.h"
#include "datapath.h"
#include "dnslearn.h"
#include "flow.h"
#include "gate.h"
#include "log.h"
#include "netfilter.h"
#include "nfq.h"
#include "privsep.h"
#include "probe_queue.h"
#include "session.h"
#include "web.h"

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
#define PARENT_USER_DEFAULT "tlsgate-parent"
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
	const char *parent_user; /* after the start; NULL: PARENT_USER_DEFAULT */
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
	bool prepare_files; /* --prepare-files: owners and modes of the children's files, exit */
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
	int web_stop_fd;           /* parent's end of a pipe: closed, the web stops */
	/* Probes run as child processes (tlsgate-probe --db), bounded, as
	 * an unprivileged user without capabilities (probe_child). */
	struct probe_queue *probes;
	struct privsep_user probe_user, insp_user, web_user, parent_user;
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

/* Messages between the inspector and the parent (SOCK_SEQPACKET, one per
 * datagram). The parent trusts none of it beyond what it asks for: a
 * probe of a name it normalizes again, a count, a readiness. */
enum ipc_type {
	IPC_READY = 1,	    /* inspector: started, serving */
	IPC_ALIVE,	    /* inspector, each tick: value = secure-mode source prefixes */
	IPC_PROBE,	    /* inspector: probe domain, value = enum probe_class */
	IPC_PARENT_STATE, /* parent, each tick: probe queue, web pid, restarts */
	IPC_RELOAD,	    /* parent: re-read the policy (its SIGHUP) */
	IPC_STOP,	    /* parent: stop (its SIGTERM); no signal, so no CAP_KILL */
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

/* In both processes. */
uint64_t now_ns(void);
/* The signals both loops take through a signalfd (blocked in main()). */
void daemon_signals(sigset_t *mask);
int ipc_send(int fd, const struct ipc_msg *m);

/* The inspector's side (inspector.c), called by the parent before the fork
 * to set up what the inspector will serve. */
int daemon_packet(void *arg, const uint8_t *pkt, size_t len, uint32_t indev,
		  enum nfqueue_csum csum);
char *daemon_control(void *arg, const char *command);
int daemon_schedule_probe(void *arg, const char *domain);
/* The inspector, right after fork(): never returns. */
void __attribute__((noreturn)) inspector_main(struct daemon *d);

#endif
