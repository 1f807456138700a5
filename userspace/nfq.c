/* nfq.c - see nfq.h for the contract. */
#include "nfq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "log.h"

/* Largest packet (GSO super-packet) plus netlink overhead. */
#define NFQUEUE_COPY_RANGE 0xffff
#define NFQUEUE_RECV_BUF (NFQUEUE_COPY_RANGE + MNL_SOCKET_BUFFER_SIZE)
/* Verdicts collected before one batched send. */
#define NFQUEUE_BATCH_BYTES (MNL_SOCKET_BUFFER_SIZE * 2)
/* Through self/: the unit's ProcSubset=pid hides /proc/net. */
#define NFQUEUE_PROC_STATS "/proc/self/net/netfilter/nfnetlink_queue"

struct nfqueue {
	struct mnl_socket *nl;
	unsigned int portid;
	uint16_t queue_num;
	nfqueue_packet_fn fn;
	void *arg;
	char *recv_buf;
	char *batch_buf;
	struct mnl_nlmsg_batch *batch;
	struct nfqueue_stats stats;
	struct log_ratelimit rl;
	bool drop_stale; /* nfqueue_drop_stale(): at the next packet */
	int stats_fd;	 /* NFQUEUE_PROC_STATS (root 0440), or -1 */
};

static int nfqueue_send_config(struct nfqueue *q, struct nlmsghdr *nlh)
{
	if (mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	/* The config request is acked; read the ack for a clear error. */
	char buf[MNL_SOCKET_BUFFER_SIZE];
	ssize_t n = mnl_socket_recvfrom(q->nl, buf, sizeof(buf));
	if (n < 0)
		return -errno;
	if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, q->portid, NULL, NULL) < 0)
		return -errno;
	return 0;
}

struct nfqueue *nfqueue_open(uint16_t queue_num, uint32_t queue_maxlen, int rcvbuf,
		     nfqueue_packet_fn fn, void *arg)
{
	struct nfqueue *q = xcalloc(1, sizeof(*q));
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;
	int one = 1, err;

	q->queue_num = queue_num;
	q->fn = fn;
	q->arg = arg;
	q->recv_buf = xmalloc(NFQUEUE_RECV_BUF);
	q->batch_buf = xmalloc(NFQUEUE_BATCH_BYTES + MNL_SOCKET_BUFFER_SIZE);
	q->batch = mnl_nlmsg_batch_start(q->batch_buf, NFQUEUE_BATCH_BYTES);
	/* Opened now, while root: the file is mode 0440 root, and the
	 * unprivileged inspector reads the kernel's drop counter through it. */
	q->stats_fd = open(NFQUEUE_PROC_STATS, O_RDONLY | O_CLOEXEC);
	if (q->stats_fd < 0)
		log_warn("nfq: %s: the kernel's queue drop counter is not reported",
			 NFQUEUE_PROC_STATS);

	q->nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!q->nl) {
		log_warn("nfq: netlink socket");
		goto fail;
	}
	if (mnl_socket_bind(q->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		log_warn("nfq: netlink bind");
		goto fail;
	}
	q->portid = mnl_socket_get_portid(q->nl);

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = 1;
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	if ((err = nfqueue_send_config(q, nlh)) < 0) {
		errno = -err;
		log_warn("nfq: bind queue %u (is another tlsgated running?)", queue_num);
		goto fail;
	}

	nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_num);
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = 2;
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, NFQUEUE_COPY_RANGE);
	/* No NFQA_CFG_F_FAIL_OPEN: a packet that finds the queue full is
	 * dropped (the sender's TCP resends it), never passed unseen - it
	 * may carry a secure-mode MAIL FROM (DESIGN.md threat model, rule 3). */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	nfq_nlmsg_cfg_put_qmaxlen(nlh, queue_maxlen);
	if ((err = nfqueue_send_config(q, nlh)) < 0) {
		errno = -err;
		log_warn("nfq: configure queue %u", queue_num);
		goto fail;
	}

	int fd = mnl_socket_get_fd(q->nl);
	/* Overruns are counted by the kernel (user_dropped); we keep reading
	 * instead of handling ENOBUFS. */
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		log_warn("nfq: receive buffer of %d bytes", rcvbuf);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("nfq: non-blocking socket");
		goto fail;
	}
	return q;
fail:
	nfqueue_close(q);
	return NULL;
}

void nfqueue_close(struct nfqueue *q)
{
	if (!q)
		return;
	if (q->nl) {
		char buf[MNL_SOCKET_BUFFER_SIZE];
		struct nlmsghdr *nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q->queue_num);
		nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND);
		mnl_socket_sendto(q->nl, nlh, nlh->nlmsg_len);
		mnl_socket_close(q->nl);
	}
	if (q->batch)
		mnl_nlmsg_batch_stop(q->batch);
	if (q->stats_fd >= 0)
		close(q->stats_fd);
	free(q->batch_buf);
	free(q->recv_buf);
	free(q);
}

int nfqueue_fd(const struct nfqueue *q)
{
	return mnl_socket_get_fd(q->nl);
}

const struct nfqueue_stats *nfqueue_stats(const struct nfqueue *q)
{
	return &q->stats;
}

/* Sends the collected verdicts; retried a bounded number of times. */
static void nfqueue_flush_verdicts(struct nfqueue *q)
{
	size_t len = mnl_nlmsg_batch_size(q->batch);
	if (len == 0)
		return;
	for (int attempt = 0; attempt < NFQUEUE_VERDICT_RETRIES; attempt++) {
		ssize_t n = mnl_socket_sendto(q->nl, mnl_nlmsg_batch_head(q->batch), len);
		if (n >= 0)
			goto done;
		if (errno != EINTR && errno != EAGAIN && errno != ENOBUFS)
			break;
	}
	q->stats.verdict_errors++;
	log_warnx_rl(&q->rl, "nfq: sending %zu bytes of verdicts failed: %s", len,
		     strerror(errno));
done:
	mnl_nlmsg_batch_reset(q->batch);
}

static void nfqueue_put_verdict(struct nfqueue *q, uint32_t id, int verdict)
{
	struct nlmsghdr *nlh = nfq_nlmsg_put(mnl_nlmsg_batch_current(q->batch),
					     NFQNL_MSG_VERDICT, q->queue_num);
	nfq_nlmsg_verdict_put(nlh, id, verdict);
	q->stats.verdicts++;
	if (!mnl_nlmsg_batch_next(q->batch))
		nfqueue_flush_verdicts(q); /* batch full: the current one stays */
}

void nfqueue_drop_stale(struct nfqueue *q)
{
	q->drop_stale = true;
}

/* One batch verdict: NF_DROP for every packet still queued whose id is
 * before id (packet ids rise per queue; the kernel compares them across
 * the wrap). */
static void nfqueue_drop_before(struct nfqueue *q, uint32_t id)
{
	struct nlmsghdr *nlh = nfq_nlmsg_put(mnl_nlmsg_batch_current(q->batch),
					     NFQNL_MSG_VERDICT_BATCH, q->queue_num);
	nfq_nlmsg_verdict_put(nlh, (int)(id - 1), NF_DROP);
	q->stats.stale_dropped_batches++;
	log_info("nfq: dropping the packets a dead reader left without a verdict (ids before %u)",
		 id);
	if (!mnl_nlmsg_batch_next(q->batch))
		nfqueue_flush_verdicts(q);
}

static int nfqueue_message(const struct nlmsghdr *nlh, void *data)
{
	struct nfqueue *q = data;
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) {
		q->stats.malformed++;
		log_warnx_rl(&q->rl, "nfq: queue message without packet header");
		return MNL_CB_OK; /* no id: nothing we could give a verdict to */
	}
	struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	uint32_t id = ntohl(ph->packet_id);
	if (q->drop_stale) {
		q->drop_stale = false;
		nfqueue_drop_before(q, id);
	}
	int verdict = NF_ACCEPT;

	/* A packet that cannot be judged is not passed (DESIGN.md threat
	 * model, rule 3): without its bytes, or cut short. */
	if (!attr[NFQA_PAYLOAD]) {
		q->stats.malformed++;
		verdict = NF_DROP;
		goto out;
	}
	const uint8_t *pkt = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
	size_t len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
	if (attr[NFQA_CAP_LEN] && ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN])) > len) {
		/* Never happens with a 64 KiB copy range; if it does, the
		 * packet is incomplete and must not be fed to reassembly. */
		q->stats.truncated++;
		log_warnx_rl(&q->rl, "nfq: packet %u truncated to %zu bytes: dropped", id, len);
		verdict = NF_DROP;
		goto out;
	}
	q->stats.packets++;
	q->stats.bytes += len;
	uint32_t indev = attr[NFQA_IFINDEX_INDEV] ? ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV])) : 0;
	enum nfqueue_csum csum = NFQUEUE_CSUM_VERIFIED;
	if (attr[NFQA_SKB_INFO]) {
		uint32_t info = ntohl(mnl_attr_get_u32(attr[NFQA_SKB_INFO]));
		if (info & (NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO))
			csum = NFQUEUE_CSUM_NOT_READY;
		else if (info & NFQA_SKB_CSUM_NOTVERIFIED)
			csum = NFQUEUE_CSUM_NOT_VERIFIED;
	}
	verdict = q->fn(q->arg, pkt, len, indev, csum);
out:
	nfqueue_put_verdict(q, id, verdict);
	return MNL_CB_OK;
}

/* An error the kernel sent back for one of this socket's messages. The
 * batch verdict for what a dead reader left finds nothing when it left
 * nothing (ENOENT): said at info, not as a bad message. */
static int nfqueue_error(const struct nlmsghdr *nlh, void *data)
{
	(void)data;
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err))) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	if (err->error == 0)
		return MNL_CB_STOP; /* an acknowledgement */
	if (err->error == -ENOENT && NFNL_MSG_TYPE(err->msg.nlmsg_type) == NFQNL_MSG_VERDICT_BATCH) {
		log_info("nfq: no packet was left without a verdict");
		return MNL_CB_OK;
	}
	errno = err->error < 0 ? -err->error : err->error;
	return MNL_CB_ERROR;
}

int nfqueue_receive(struct nfqueue *q)
{
	static mnl_cb_t ctl[NLMSG_MIN_TYPE] = { [NLMSG_ERROR] = nfqueue_error };

	int handled = 0;
	/* Bounded: at most 64 reads per call so timers and the control
	 * socket are served under load too. */
	for (int round = 0; round < 64; round++) {
		ssize_t n = mnl_socket_recvfrom(q->nl, q->recv_buf, NFQUEUE_RECV_BUF);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			nfqueue_flush_verdicts(q);
			return -errno;
		}
		uint64_t before = q->stats.verdicts;
		if (mnl_cb_run2(q->recv_buf, (size_t)n, 0, q->portid, nfqueue_message, q, ctl,
				NLMSG_MIN_TYPE) < 0) {
			/* The kernel refused a verdict (the sender lacks
			 * CAP_NET_ADMIN): its packets stay queued, and so
			 * would every later one. */
			if (errno == EPERM) {
				nfqueue_flush_verdicts(q);
				return -EPERM;
			}
			log_warnx_rl(&q->rl, "nfq: bad netlink message: %s", strerror(errno));
		}
		handled += (int)(q->stats.verdicts - before);
	}
	nfqueue_flush_verdicts(q);
	return handled;
}

int nfqueue_kernel_stats(const struct nfqueue *q, struct nfqueue_kernel_stats *out)
{
	/* A descriptor of its own each time, rewound (the offset is shared
	 * with the one opened at start; a seq file is made anew at 0). */
	int fd = q->stats_fd >= 0 ? fcntl(q->stats_fd, F_DUPFD_CLOEXEC, 0)
				  : open(NFQUEUE_PROC_STATS, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	FILE *f = lseek(fd, 0, SEEK_SET) == 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		int err = -errno;
		close(fd);
		return err;
	}
	char line[256];
	int rc = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		unsigned int num, portid, copy_mode, copy_range;
		unsigned long long total, qdrop, udrop;
		if (sscanf(line, "%u %u %llu %u %u %llu %llu", &num, &portid, &total,
			   &copy_mode, &copy_range, &qdrop, &udrop) == 7 &&
		    num == q->queue_num) {
			out->queue_total = total;
			out->queue_dropped = qdrop;
			out->user_dropped = udrop;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}
