/* fdcheck - what a descriptor opened as root still allows after the
 * process has dropped to an unprivileged uid (issue 19: the groundwork of
 * tlsgated's privilege separation). Measures this kernel; it asserts
 * nothing itself: tests/privsep/test_fdcheck.sh compares its lines with the
 * expected ones.
 *
 * Usage (as root, in a network namespace of its own, on the host's bpffs):
 *   fdcheck root|none|net_admin PIN_DIR WORK_DIR QUEUE UDP_PORT
 * As root it opens everything the privileged parent would: BPF maps
 * (array, hash, ring buffer; one pinned root-owned, one pinned and chowned
 * to the new uid), a socket filter that writes each datagram's length to
 * the ring, raw IPv4/IPv6 sockets (IPPROTO_RAW), and NFQUEUE QUEUE bound
 * and configured like userspace/nfq.c. Then it drops to uid/gid 65534 with
 * no capabilities ("none") or only CAP_NET_ADMIN ("net_admin"), via
 * PR_SET_KEEPCAPS, setresuid and capset (then PR_SET_NO_NEW_PRIVS); "root"
 * does not drop: the baseline that shows each check can succeed.
 * The caller adds "-o lo -p udp --dport UDP_PORT -j NFQUEUE --queue-num
 * QUEUE" to OUTPUT, creates PIN_DIR and makes WORK_DIR the new uid's.
 *
 * Output: one line per check, "NAME<TAB>RESULT<TAB>DETAIL", RESULT "ok" or
 * the errno's name (EPERM, EACCES, ...); "ETIMEDOUT" where nothing came
 * back within a second. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <sqlite3.h>

#include "csum.h"

#define NEW_UID 65534
#define WAIT_MS 1000
#define RING_BYTES 16384

static const char *mode;

/* report NAME ERR FMT...: one result line; err 0 is "ok". */
__attribute__((format(printf, 3, 4)))
static void report(const char *name, int err, const char *fmt, ...)
{
	char detail[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	const char *res = err ? strerrorname_np(err) : "ok";
	printf("%s\t%s\t%s\n", name, res ? res : "E?", detail);
	fflush(stdout);
}

/* result NAME ERR: a line without detail. */
static void result(const char *name, int err)
{
	report(name, err, "%s", "");
}

/* rc < 0 -> errno, else 0. */
static int err_of(long rc)
{
	return rc < 0 ? (errno ? errno : EIO) : 0;
}

static void die(const char *what)
{
	fprintf(stderr, "fdcheck %s: %s: %s\n", mode, what, strerror(errno));
	exit(2);
}

/* --- BPF ------------------------------------------------------------------ */

struct ring_seen {
	int records;
	uint64_t last;
};

static int ring_record(void *arg, void *data, size_t len)
{
	struct ring_seen *s = arg;
	if (len >= sizeof(uint64_t)) {
		memcpy(&s->last, data, sizeof(s->last));
		s->records++;
	}
	return 0;
}

/* A socket filter that writes skb->len (8 bytes) to the ring buffer ring_fd
 * and drops the datagram: a kernel-side producer like the tagger. */
static int ring_filter_load(int ring_fd)
{
	struct bpf_insn prog[] = {
		/* r0 = *(u32 *)(r1 + len) */
		{ BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_1, offsetof(struct __sk_buff, len), 0 },
		/* *(u64 *)(r10 - 8) = r0 */
		{ BPF_STX | BPF_MEM | BPF_DW, BPF_REG_10, BPF_REG_0, -8, 0 },
		/* r1 = map (ld_imm64 pseudo map fd) */
		{ BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, ring_fd },
		{ 0, 0, 0, 0, 0 },
		/* r2 = r10 - 8; r3 = 8; r4 = 0 */
		{ BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0 },
		{ BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -8 },
		{ BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, 8 },
		{ BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, 0 },
		{ BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ringbuf_output },
		/* return 0: drop */
		{ BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0 },
		{ BPF_JMP | BPF_EXIT, 0, 0, 0, 0 },
	};
	return bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "fdc_ring", "GPL", prog,
			     sizeof(prog) / sizeof(prog[0]), NULL);
}

/* --- sockets -------------------------------------------------------------- */

static int udp_bound(int family, const char *addr, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		inet_pton(AF_INET, addr, &s->sin_addr);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &s->sin6_addr);
		sl = sizeof(*s);
	}
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0)
		die("udp socket");
	return fd;
}

/* udp_send PORT PAYLOAD LEN: a datagram to 127.0.0.1:PORT. */
static int udp_send(uint16_t port, const void *payload, size_t len)
{
	struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(port) };
	d.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	ssize_t n = sendto(fd, payload, len, 0, (struct sockaddr *)&d, sizeof(d));
	int err = err_of(n);
	close(fd);
	return err;
}

/* True when fd becomes readable within ms. */
static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

/* udp_got FD PAYLOAD LEN: a datagram equal to payload arrives within WAIT_MS. */
static int udp_got(int fd, const void *payload, size_t len)
{
	char buf[512];
	if (!readable(fd, WAIT_MS))
		return ETIMEDOUT;
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return errno;
	return (size_t)n == len && memcmp(buf, payload, len) == 0 ? 0 : EBADMSG;
}

/* raw_send FAMILY FD PORT: an IP+UDP packet built by hand to the loopback
 * address, port PORT, sent on the raw socket fd; 0 when sendto took it. */
static int raw_send(int family, int fd, uint16_t port, const char *payload)
{
	uint8_t pkt[128] = { 0 };
	size_t plen = strlen(payload), iphl = family == AF_INET ? 20 : 40;
	uint8_t *udp = pkt + iphl;
	uint16_t ulen = (uint16_t)(8 + plen);
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;

	udp[0] = 0x9c; /* source port 40000 */
	udp[1] = 0x40;
	udp[2] = port >> 8;
	udp[3] = port & 0xff;
	udp[4] = ulen >> 8;
	udp[5] = ulen & 0xff;
	memcpy(udp + 8, payload, plen);
	if (family == AF_INET) {
		/* The kernel fills in total length, id and header checksum;
		 * UDP over IPv4 may go without a checksum. */
		pkt[0] = 0x45;
		pkt[8] = 64;
		pkt[9] = IPPROTO_UDP;
		inet_pton(AF_INET, "127.0.0.1", pkt + 12);
		inet_pton(AF_INET, "127.0.0.1", pkt + 16);
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, pkt + 16, 4);
		sl = sizeof(*s);
	} else {
		pkt[0] = 0x60;
		pkt[4] = ulen >> 8;
		pkt[5] = ulen & 0xff;
		pkt[6] = IPPROTO_UDP;
		pkt[7] = 64;
		inet_pton(AF_INET6, "::1", pkt + 8);
		inet_pton(AF_INET6, "::1", pkt + 24);
		/* pseudo header: addresses, length, next header */
		uint8_t tail[4] = { 0, 0, 0, IPPROTO_UDP };
		uint32_t sum = csum_add(0, pkt + 8, 32);
		sum += ulen;
		sum = csum_add(sum, tail, sizeof(tail));
		uint16_t c = csum_fold(csum_add(sum, udp, ulen));
		udp[6] = c >> 8;
		udp[7] = c & 0xff;
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, pkt + 24, 16);
		sl = sizeof(*s);
	}
	return err_of(sendto(fd, pkt, iphl + ulen, 0, (struct sockaddr *)&ss, sl));
}

/* --- netlink: NFQUEUE and rtnetlink --------------------------------------- */

static struct mnl_socket *nl_open(int bus)
{
	struct mnl_socket *nl = mnl_socket_open(bus);
	if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl);
		return NULL;
	}
	return nl;
}

/* nl_request NL NLH: sends nlh with NLM_F_ACK and waits for the answer;
 * 0 or the errno of the kernel's error message. Queued packets that
 * arrive meanwhile are passed over. */
static int nl_request(struct mnl_socket *nl, struct nlmsghdr *nlh)
{
	static uint32_t seq = 100;
	char buf[MNL_SOCKET_BUFFER_SIZE];
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = ++seq;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return errno;
	for (;;) {
		if (!readable(mnl_socket_get_fd(nl), WAIT_MS))
			return ETIMEDOUT;
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return errno;
		int r = mnl_cb_run(buf, (size_t)n, seq, mnl_socket_get_portid(nl), NULL, NULL);
		if (r < 0)
			return errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

static int nfq_cmd(struct mnl_socket *nl, uint16_t queue, uint8_t cmd)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, cmd);
	return nl_request(nl, nlh);
}

/* The second config message of nfqueue_open (userspace/nfq.c). */
static int nfq_params(struct mnl_socket *nl, uint16_t queue, uint32_t maxlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
	return nl_request(nl, nlh);
}

static int nfq_maxlen(struct mnl_socket *nl, uint16_t queue, uint32_t maxlen)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
	return nl_request(nl, nlh);
}

static int nfq_packet_id(const struct nlmsghdr *nlh, void *arg)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return MNL_CB_ERROR;
	struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	*(uint32_t *)arg = ntohl(ph->packet_id);
	return MNL_CB_STOP;
}

/* nfq_receive NL ID: the id of the next queued packet within WAIT_MS. */
static int nfq_receive(struct mnl_socket *nl, uint32_t *id)
{
	char buf[0xffff + MNL_SOCKET_BUFFER_SIZE];
	if (!readable(mnl_socket_get_fd(nl), WAIT_MS))
		return ETIMEDOUT;
	ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
	if (n < 0)
		return errno;
	*id = UINT32_MAX;
	if (mnl_cb_run(buf, (size_t)n, 0, mnl_socket_get_portid(nl), nfq_packet_id, id) < 0)
		return errno;
	return *id == UINT32_MAX ? ENOMSG : 0;
}

/* nfq_verdict NL QUEUE ID RECEIVER PAYLOAD: an ACCEPT verdict sent as
 * nfq.c sends it (no ack requested); 0 when the packet then reaches the
 * receiver, else the errno of the kernel's error message (*nl_err) or
 * ETIMEDOUT. */
static int nfq_verdict(struct mnl_socket *nl, uint16_t queue, uint32_t id, int receiver,
		       const char *payload, int *nl_err)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT, queue);
	nfq_nlmsg_verdict_put(nlh, id, NF_ACCEPT);
	*nl_err = 0;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return errno;
	struct pollfd p[2] = { { .fd = receiver, .events = POLLIN },
			       { .fd = mnl_socket_get_fd(nl), .events = POLLIN } };
	while (poll(p, 2, WAIT_MS) > 0) {
		if (p[0].revents)
			return udp_got(receiver, payload, strlen(payload));
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n > 0 && mnl_cb_run(buf, (size_t)n, 0, mnl_socket_get_portid(nl), NULL, NULL) < 0)
			*nl_err = errno;
	}
	return *nl_err ? *nl_err : ETIMEDOUT;
}

static struct nlmsghdr *nfnl_put(struct mnl_nlmsg_batch *b, uint16_t type, uint8_t family,
				 uint16_t res_id)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = htons(res_id);
	return nlh;
}

/* nft_new_table NL NAME: an nf_tables batch that creates table NAME, sent
 * on nl (any NETLINK_NETFILTER socket carries every nfnetlink subsystem);
 * 0 or the errno of the kernel's answer. */
static int nft_new_table(struct mnl_socket *nl, const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE * 2];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, MNL_SOCKET_BUFFER_SIZE);
	nfnl_put(b, NFNL_MSG_BATCH_BEGIN, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)->nlmsg_seq = 1;
	mnl_nlmsg_batch_next(b);
	struct nlmsghdr *nlh = nfnl_put(b, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
					NFPROTO_IPV4, 0);
	nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_ACK;
	nlh->nlmsg_seq = 2;
	mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, name);
	mnl_nlmsg_batch_next(b);
	nfnl_put(b, NFNL_MSG_BATCH_END, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)->nlmsg_seq = 3;
	mnl_nlmsg_batch_next(b);
	ssize_t n = mnl_socket_sendto(nl, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b));
	mnl_nlmsg_batch_stop(b);
	if (n < 0)
		return errno;
	/* the answer: an error for the batch, or the table's ack */
	for (;;) {
		if (!readable(mnl_socket_get_fd(nl), WAIT_MS))
			return ETIMEDOUT;
		n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (n < 0)
			return errno;
		int r = mnl_cb_run(buf, (size_t)n, 0, mnl_socket_get_portid(nl), NULL, NULL);
		if (r < 0)
			return errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

/* rtnl_add_addr IFINDEX ADDR: RTM_NEWADDR ADDR/32 on the interface. */
static int rtnl_add_addr(int ifindex, const char *addr)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl = nl_open(NETLINK_ROUTE);
	if (!nl)
		return errno;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = 32;
	ifa->ifa_scope = RT_SCOPE_HOST;
	ifa->ifa_index = (uint32_t)ifindex;
	struct in_addr a;
	inet_pton(AF_INET, addr, &a);
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(a), &a);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(a), &a);
	int err = nl_request(nl, nlh);
	mnl_socket_close(nl);
	return err;
}

/* --- the drop --------------------------------------------------------------- */

static void drop(int keep_net_admin)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = { { 0 } };
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
	    setresgid(NEW_UID, NEW_UID, NEW_UID) < 0 || setresuid(NEW_UID, NEW_UID, NEW_UID) < 0)
		die("setresuid");
	if (keep_net_admin)
		d[0].effective = d[0].permitted = 1u << CAP_NET_ADMIN;
	if (syscall(SYS_capset, &h, d) < 0 || prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("capset");
}

/* status_field NAME OUT: the value of "NAME:" in /proc/self/status. */
static int status_field(const char *name, char *out, size_t size)
{
	char line[256];
	size_t nl = strlen(name);
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return errno;
	int err = ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
			snprintf(out, size, "%s", line + nl + 1 + strspn(line + nl + 1, " \t"));
			out[strcspn(out, "\n")] = 0;
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

/* --- trivially unprivileged ----------------------------------------------- */

static int check_timer_epoll_signal(void)
{
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	int sfd = sigprocmask(SIG_BLOCK, &set, NULL) < 0 ? -1 : signalfd(-1, &set, SFD_CLOEXEC);
	int err = tfd < 0 || ep < 0 || sfd < 0 ? errno : 0;
	struct itimerspec its = { .it_value = { 0, 1000000 } };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	if (!err && (timerfd_settime(tfd, 0, &its, NULL) < 0 || raise(SIGUSR1) != 0 ||
		     epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0))
		err = errno;
	ev.data.fd = sfd;
	if (!err && epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0)
		err = errno;
	/* both the timer and the signal become ready; each is read once */
	int timer_seen = 0, signal_seen = 0;
	while (!err && !(timer_seen && signal_seen)) {
		struct epoll_event out[2];
		int n = epoll_wait(ep, out, 2, WAIT_MS);
		if (n <= 0) {
			err = n < 0 ? errno : ETIMEDOUT;
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t ticks;
			struct signalfd_siginfo si;
			if (out[i].data.fd == tfd && read(tfd, &ticks, sizeof(ticks)) == sizeof(ticks))
				timer_seen = 1;
			else if (out[i].data.fd == sfd && read(sfd, &si, sizeof(si)) == sizeof(si) &&
				 si.ssi_signo == SIGUSR1)
				signal_seen = 1;
			else
				err = EIO;
		}
	}
	if (tfd >= 0)
		close(tfd);
	if (ep >= 0)
		close(ep);
	if (sfd >= 0)
		close(sfd);
	return err;
}

/* check_sqlite PATH: create, write and read a database owned by the new uid. */
static int check_sqlite(const char *path, char *detail, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open(path, &db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
				  " INSERT INTO t VALUES (1), (2);", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL);
	if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2)
		rc = SQLITE_OK;
	else if (rc == SQLITE_OK)
		rc = SQLITE_ERROR;
	snprintf(detail, size, "%s", rc == SQLITE_OK ? "WAL database, 2 rows" : sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : EIO;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: fdcheck root|none|net_admin PIN_DIR WORK_DIR QUEUE UDP_PORT\n");
		return 2;
	}
	mode = argv[1];
	const char *pin_dir = argv[2], *work_dir = argv[3];
	uint16_t queue = (uint16_t)atoi(argv[4]), qport = (uint16_t)atoi(argv[5]);
	uint16_t ring_port = qport + 1, raw_port = qport + 2;
	int drop_caps = strcmp(mode, "root") != 0;
	int keep_net_admin = strcmp(mode, "net_admin") == 0;
	if (drop_caps && !keep_net_admin && strcmp(mode, "none") != 0) {
		fprintf(stderr, "fdcheck: unknown mode %s\n", mode);
		return 2;
	}
	char path[512], hash_pin[512], own_pin[512], detail[256];

	/* --- as root: what the parent opens --- */
	libbpf_set_print(NULL);
	int array = bpf_map_create(BPF_MAP_TYPE_ARRAY, "fdc_array", 4, 8, 4, NULL);
	int hash = bpf_map_create(BPF_MAP_TYPE_HASH, "fdc_hash", 4, 8, 16, NULL);
	int ring = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "fdc_ring", 0, 0, RING_BYTES, NULL);
	if (array < 0 || hash < 0 || ring < 0)
		die("bpf_map_create");
	snprintf(hash_pin, sizeof(hash_pin), "%s/hash", pin_dir);
	snprintf(own_pin, sizeof(own_pin), "%s/array_owned", pin_dir);
	if (bpf_obj_pin(hash, hash_pin) < 0 || bpf_obj_pin(array, own_pin) < 0 ||
	    chown(own_pin, NEW_UID, NEW_UID) < 0)
		die("bpf_obj_pin");
	int prog = ring_filter_load(ring);
	if (prog < 0)
		die("socket filter load");
	int ring_sock = udp_bound(AF_INET, "127.0.0.1", ring_port);
	if (setsockopt(ring_sock, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)) < 0)
		die("SO_ATTACH_BPF");
	struct ring_seen seen_before = { 0 }, seen_after = { 0 };
	struct ring_buffer *rb_before = ring_buffer__new(ring, ring_record, &seen_before, NULL);
	if (!rb_before)
		die("ring_buffer__new");

	int raw4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	int raw6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (raw4 < 0 || raw6 < 0)
		die("raw sockets");
	int rx4 = udp_bound(AF_INET, "127.0.0.1", raw_port);
	int rx6 = udp_bound(AF_INET6, "::1", raw_port);

	struct mnl_socket *nfq = nl_open(NETLINK_NETFILTER);
	if (!nfq || nfq_cmd(nfq, queue, NFQNL_CFG_CMD_BIND) != 0 || nfq_params(nfq, queue, 1024) != 0)
		die("nfqueue bind");
	int qrx = udp_bound(AF_INET, "127.0.0.1", qport);

	/* --- the drop --- */
	if (drop_caps)
		drop(keep_net_admin);
	char uid[64] = "?", capeff[64] = "?";
	status_field("Uid", uid, sizeof(uid));
	status_field("CapEff", capeff, sizeof(capeff));
	for (char *c = uid; *c; c++)
		if (*c == '\t')
			*c = ' ';
	report("process.ids", 0, "Uid %s, CapEff %s", uid, capeff);
	result("process.setuid_0", err_of(setuid(0)));

	/* 1. BPF maps opened as root */
	uint32_t key = 1;
	uint64_t val = 42, got = 0;
	result("bpf.array.update", err_of(bpf_map_update_elem(array, &key, &val, BPF_ANY)));
	int e = err_of(bpf_map_lookup_elem(array, &key, &got));
	report("bpf.array.lookup", e, "value %llu", (unsigned long long)got);
	report("bpf.array.delete", err_of(bpf_map_delete_elem(array, &key)),
	       "arrays have no delete (EINVAL as root too)");
	result("bpf.hash.update", err_of(bpf_map_update_elem(hash, &key, &val, BPF_ANY)));
	got = 0;
	e = err_of(bpf_map_lookup_elem(hash, &key, &got));
	report("bpf.hash.lookup", e, "value %llu", (unsigned long long)got);
	uint32_t next = 0;
	result("bpf.hash.next_key", err_of(bpf_map_get_next_key(hash, NULL, &next)));
	result("bpf.hash.delete", err_of(bpf_map_delete_elem(hash, &key)));
	int fd = bpf_obj_get(hash_pin);
	report("bpf.obj_get.root_pin", err_of(fd), "pin mode 0600, owner root");
	if (fd >= 0)
		close(fd);
	fd = bpf_obj_get(own_pin);
	report("bpf.obj_get.owned_pin", err_of(fd), "pin chowned to %d before the drop", NEW_UID);
	if (fd >= 0)
		close(fd);
	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "fdc_new", 4, 8, 1, NULL);
	report("bpf.map_create", err_of(fd), "new map after the drop");
	if (fd >= 0)
		close(fd);

	/* ring buffer: one datagram through the filter per consumer */
	static const char zeros[200];
	e = udp_send(ring_port, zeros, 100);
	int n = e ? 0 : ring_buffer__consume(rb_before);
	e = e ? e : n < 0 ? -n : seen_before.records == 1 ? 0 : ENOMSG;
	report("bpf.ringbuf.mmap_before", e, "%d record(s), last %llu", seen_before.records,
	       (unsigned long long)seen_before.last);
	struct ring_buffer *rb_after = ring_buffer__new(ring, ring_record, &seen_after, NULL);
	e = rb_after ? udp_send(ring_port, zeros, 200) : errno;
	n = e ? 0 : ring_buffer__consume(rb_after);
	e = e ? e : n < 0 ? -n : seen_after.records == 1 ? 0 : ENOMSG;
	report("bpf.ringbuf.mmap_after", e, "%d record(s), last %llu", seen_after.records,
	       (unsigned long long)seen_after.last);

	/* 2. raw sockets opened as root */
	e = raw_send(AF_INET, raw4, raw_port, "raw4");
	report("raw.ipv4.sendto", e ? e : udp_got(rx4, "raw4", 4), "IPPROTO_RAW, received on 127.0.0.1");
	e = raw_send(AF_INET6, raw6, raw_port, "raw6");
	report("raw.ipv6.sendto", e ? e : udp_got(rx6, "raw6", 4), "IPPROTO_RAW, received on ::1");
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	report("raw.new_socket", err_of(fd), "new raw socket after the drop");
	if (fd >= 0)
		close(fd);

	/* 3. NFQUEUE bound as root */
	uint32_t id = 0;
	e = udp_send(qport, "queued", 6);
	e = e ? e : nfq_receive(nfq, &id);
	report("nfq.receive", e, "packet id %u", e ? 0 : id);
	if (!e) {
		int nl_err;
		e = nfq_verdict(nfq, queue, id, qrx, "queued", &nl_err);
		if (nl_err)
			report("nfq.verdict", e, "netlink error %s, packet held", strerrorname_np(nl_err));
		else
			report("nfq.verdict", e, "%s", e ? "no answer" : "packet delivered");
	} else {
		report("nfq.verdict", e, "no packet to judge");
	}
	e = nfq_cmd(nfq, queue + 1, NFQNL_CFG_CMD_BIND);
	report("nfq.config.bind_other", e, "bind queue %u on the same socket", queue + 1);
	if (!e)
		nfq_cmd(nfq, queue + 1, NFQNL_CFG_CMD_UNBIND);
	report("nfq.config.maxlen", nfq_maxlen(nfq, queue, 2048), "nfq_nlmsg_cfg_put_qmaxlen");
	report("nfq.socket.nft_newtable", nft_new_table(nfq, "tgpriv"),
	       "nf_tables batch on the queue's socket");
	struct mnl_socket *nl2 = nl_open(NETLINK_NETFILTER);
	e = nl2 ? nfq_cmd(nl2, queue + 2, NFQNL_CFG_CMD_BIND) : errno;
	report("nfq.new_socket.bind", e, "netlink socket opened after the drop, queue %u", queue + 2);
	if (nl2)
		mnl_socket_close(nl2);
	report("rtnl.new_socket.add_addr", rtnl_add_addr(if_nametoindex("lo"), "192.0.2.77"),
	       "RTM_NEWADDR 192.0.2.77/32 on lo");

	/* 4. socket options at run time */
	int nfd = mnl_socket_get_fd(nfq), one = 1, rcvbuf = 4 << 20;
	result("sock.netlink_no_enobufs",
	       err_of(setsockopt(nfd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one))));
	report("sock.so_rcvbuf", err_of(setsockopt(nfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf))),
	       "capped at net.core.rmem_max");
	result("sock.so_rcvbufforce",
	       err_of(setsockopt(nfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf))));

	/* 5. trivially unprivileged */
	char sbuf[64];
	result("misc.proc_self_status", status_field("Name", sbuf, sizeof(sbuf)));
	result("misc.timerfd_signalfd_epoll", check_timer_epoll_signal());
	snprintf(path, sizeof(path), "%s/store-%s.db", work_dir, mode);
	report("misc.sqlite_own_file", check_sqlite(path, detail, sizeof(detail)), "%s", detail);

	ring_buffer__free(rb_before);
	ring_buffer__free(rb_after);
	mnl_socket_close(nfq);
	return 0;
}
