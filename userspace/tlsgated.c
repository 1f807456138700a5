/* tlsgated - the tlsgate daemon: this file is its root parent.
 *
 * Start-up (root): load and attach the tagger (datapath), bind the queue
 * (nfq), add the NFQUEUE rule (netfilter), open the raw sockets, the control
 * socket and the status page's socket. Then it forks the packet inspector
 * (inspector.c, --user with CAP_NET_ADMIN only) and the status page
 * (web_proc.c, --web-user, no capability), and only waits: it restarts a
 * child that dies, starts the probes the inspector asks for (as
 * --probe-user), passes SIGHUP on, keeps the systemd watchdog and checks
 * its rule. It parses no network input. Rights per process: privsep.h.
 *
 * SIGTERM/SIGINT: stop the children, remove the rule, detach, unpin, exit 0
 * (the tagger stays when the policy names secure-mode sources). SIGKILL
 * takes the children with it (PR_SET_PDEATHSIG) and leaves the kernel side
 * in place (queue bypass keeps ordinary mail flowing; a restarted daemon
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
#include <sys/fsuid.h>
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
	if (privsep_user_resolve(d->cfg.parent_user, PARENT_USER_DEFAULT, &d->parent_user, why,
				 sizeof(why)) < 0)
		fatalx("--parent-user: %s", why);
	if (!d->insp_user.drop) {
		log_info("not root (uid %d): the inspector, the status page and probes run as "
			 "this user",
			 (int)geteuid());
		return;
	}
	uid_t parent = d->parent_user.uid;
	if (d->insp_user.uid == d->probe_user.uid || parent == d->insp_user.uid ||
	    parent == d->probe_user.uid ||
	    (d->cfg.web_listen && (d->web_user.uid == d->insp_user.uid ||
				   d->web_user.uid == d->probe_user.uid || d->web_user.uid == parent)))
		fatalx("--user %s, --probe-user %s, --web-user %s and --parent-user %s must be "
		       "different users (each may do what the others may not)",
		       d->insp_user.name, d->probe_user.name, d->web_user.name,
		       d->parent_user.name);
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
	const char *slash = strrchr(d->cfg.store_path, '/');
	const char *state_names[] = { "policy.json", slash ? slash + 1 : d->cfg.store_path, NULL };
	if (privsep_own_dir(d->cfg.state_dir, uid, gid, state_names, why, sizeof(why)) < 0)
		fatalx("--state-dir: %s", why);
	const char *judged_names[] = { NULL };
	if (d->cfg.judged_dir &&
	    privsep_own_dir(d->cfg.judged_dir, uid, gid, judged_names, why, sizeof(why)) < 0)
		fatalx("--judged-dir: %s", why);
	char *copy = xstrdup(d->cfg.store_path);
	int rc = privsep_share_store(dirname(copy), d->cfg.store_path, uid, gid,
				     d->cfg.web_listen ? d->web_user.gid : (gid_t)-1, why,
				     sizeof(why));
	free(copy);
	if (rc < 0)
		fatalx("--store: %s", why);
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
		"      --prepare-files       as root: give the state directory and the store to the\n"
		"                            inspector's and the web's users, then exit (so that\n"
		"                            the daemon itself can run without CAP_CHOWN)\n"
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
		"      --parent-user USER    the parent's user once it has started, keeping the\n"
		"                            capabilities its children and the stop need\n"
		"                            (default tlsgate-parent)\n"
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
		   !strcmp(name, "web-user") || !strcmp(name, "parent-user")) {
		if (!*value)
			config_bad(name, value, "empty user name");
		*(!strcmp(name, "parent-user") ? &cfg->parent_user
		  : name[0] == 'p'	       ? &cfg->probe_user
		  : name[0] == 'u'	       ? &cfg->user
					       : &cfg->web_user) = value;
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
	} else if (!strcmp(name, "prepare-files")) {
		cfg->prepare_files = true;
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
		{ "prepare-files", no_argument, NULL, 1 },
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
		{ "parent-user", required_argument, NULL, 1 },
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




/* ---- processes: parent and inspector (privsep.h, docs/privsep.md) ------ */






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
static void __attribute__((noreturn)) web_main(struct daemon *d, int stop_fd)
{
	const char *step;
	/* Above what they become first, so that neither dup2 closes the
	 * other's source. */
	int listen_fd = fcntl(d->web_fd, F_DUPFD, 10);
	stop_fd = fcntl(stop_fd, F_DUPFD, 10);
	if (listen_fd < 0 || stop_fd < 0 || dup2(listen_fd, 3) < 0 || dup2(stop_fd, 4) < 0 ||
	    syscall(SYS_close_range, 5u, ~0u, 0u) < 0) {
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
	_exit(web_proc_run(&wcfg, d->cfg.control_path, 4));
}

static int web_start(struct daemon *d)
{
	int stop[2];
	if (pipe2(stop, O_CLOEXEC) < 0) {
		log_warn("status page: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("status page: fork");
		close(stop[0]);
		close(stop[1]);
		return -1;
	}
	if (pid == 0)
		web_main(d, stop[0]);
	close(stop[0]);
	d->web_stop_fd = stop[1];
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
			if (d->web_stop_fd >= 0)
				close(d->web_stop_fd);
			d->web_stop_fd = -1;
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

/* By their channels, not by signals: they run as other users, and the
 * unit gives the parent no CAP_KILL. */
static void parent_stop_children(struct daemon *d)
{
	d->stop = true;
	if (d->inspector_pid > 0) {
		struct ipc_msg m = { .type = IPC_STOP };
		ipc_send(d->ipc_fd, &m);
	}
	if (d->web_stop_fd >= 0)
		close(d->web_stop_fd);
	d->web_stop_fd = -1;
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
						struct ipc_msg m = { .type = IPC_RELOAD };
						if (d->inspector_pid > 0)
							ipc_send(d->ipc_fd, &m);
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
							/* CAP_KILL, where the parent has it
							 * (the unit kills the cgroup) */
							if (kill(left[k], SIGKILL) == 0)
								log_warnx("process %d did not stop: killed",
									  (int)left[k]);
							else
								log_warnx_rl(&d->rl,
									     "process %d did not stop: %s",
									     (int)left[k],
									     strerror(errno));
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
	if (d.cfg.prepare_files) {
		/* As root with CAP_CHOWN (the unit's ExecStartPre=+): the files
		 * the children write and read, so that the daemon itself needs
		 * no CAP_CHOWN. */
		if (geteuid() != 0)
			fatalx("--prepare-files: needs root");
		daemon_share_files(&d);
		log_info("files prepared: %s, %s%s%s", d.cfg.state_dir, d.cfg.store_path,
			 d.cfg.judged_dir ? ", " : "", d.cfg.judged_dir ? d.cfg.judged_dir : "");
		flow_table_free(d.flows);
		probe_queue_free(d.probes);
		return 0;
	}

	struct datapath_config dcfg = {
		.pin_dir = d.cfg.pin_dir,
		/* The parent unpins at a stop, after its drop. */
		.pin_uid = d.parent_user.drop ? d.parent_user.uid : (uid_t)-1,
		.pin_gid = d.parent_user.gid,
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
	/* Just added: the first check RULE_CHECK_NS from now (each runs
	 * iptables and ip6tables, tens of milliseconds of CPU). */
	d.rule_checked_ns = now_ns();
	/* In a directory of the parent's user (the unit's runtime directory)
	 * the socket is made as that user: root is just another user there
	 * without CAP_DAC_OVERRIDE, and the parent removes it at the stop. */
	char *dir = xstrdup(d.cfg.control_path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	} else if (slash) {
		slash[1] = '\0';
	}
	struct stat dst;
	bool as_parent = d.parent_user.drop && stat(slash ? dir : ".", &dst) == 0 &&
			 dst.st_uid == d.parent_user.uid;
	free(dir);
	if (as_parent)
		setfsuid(d.parent_user.uid);
	d.ctl = control_open(d.cfg.control_path, daemon_control, &d);
	/* The web may send its few commands, nothing else. */
	bool to_web = !d.ctl || !d.cfg.web_listen || !d.web_user.drop ||
		      (control_limit_uid(d.ctl, d.web_user.uid, WEB_PROC_COMMANDS) == 0 &&
		       control_allow_group(d.ctl, d.web_user.gid) == 0);
	if (as_parent)
		setfsuid(0);
	START_STEP(d.ctl, "the control socket could not be opened");
	START_STEP(to_web, "the control socket could not be opened to the status page");
	if (d.cfg.web_listen) {
		d.web_fd = web_listen_socket(d.cfg.web_listen);
		if (d.web_fd < 0)
			log_warnx("web: %s: %s", d.cfg.web_listen, strerror(-d.web_fd));
		START_STEP(d.web_fd > 0, "the status page could not listen");
	}
	daemon_share_files(&d);
	/* Everything that needed more is open: from here the parent is its
	 * own user and keeps what its children's starts and the stop need. */
	if (d.insp_user.drop) {
		const char *step;
		int rc = privsep_parent_drop(&d.parent_user, PRIVSEP_PARENT_CAPS,
					     PRIVSEP_PARENT_AMBIENT, &step);
		if (rc < 0)
			log_warn("parent: %s", step);
		START_STEP(rc == 0, "the parent could not give up root and the capabilities it no "
				    "longer needs");
		log_info("parent: runs as %s (uid %d) from now on", d.parent_user.name,
			 (int)d.parent_user.uid);
	}
#undef START_STEP
	log_hold(false);
	d.ipc_fd = -1;
	d.web_stop_fd = -1;
	if (parent_run(&d) == 0)
		status = 0;
out:
	log_hold(false);
	daemon_teardown(&d);
	log_info("stopped");
	return status;
}
