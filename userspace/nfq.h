/* nfq.h - the NFQUEUE side of tlsgated (libnetfilter_queue over libmnl).
 *
 * One queue, bound without fail-open (a packet that finds the queue full is
 * dropped) and with GSO (packets arrive unsegmented, checksums may be
 * partial). nfqueue_receive() reads one batch of packets, hands each to the
 * callback, and sends all their verdicts in one batched sendmsg. Every packet
 * gets exactly one verdict: the callback's, or NF_DROP when a message cannot
 * be parsed. A verdict send that fails is retried NFQUEUE_VERDICT_RETRIES
 * times; after that the queue fills and drops. A verdict the kernel refuses
 * (EPERM: the sender lacks CAP_NET_ADMIN) ends nfqueue_receive() with -EPERM:
 * nothing can pass any more, the caller must stop. */
#ifndef TLSGATE_NFQUEUE_H
#define TLSGATE_NFQUEUE_H

#include <stddef.h>
#include <stdint.h>

#define NFQUEUE_VERDICT_RETRIES 3
#define NFQUEUE_QUEUE_MAXLEN_DEFAULT 4096
#define NFQUEUE_RCVBUF_DEFAULT (8 * 1024 * 1024)

struct nfqueue_stats {
	uint64_t packets;        /* packets received from the queue */
	uint64_t bytes;          /* their payload bytes */
	uint64_t verdicts;       /* verdicts sent */
	uint64_t verdict_errors; /* verdict batches that could not be sent */
	uint64_t malformed;      /* queue messages without id or payload */
	uint64_t truncated;      /* payload shorter than the packet (cap_len) */
	uint64_t stale_dropped_batches; /* nfqueue_drop_stale() batches sent */
};

/* Kernel's own view of the queue, /proc/net/netfilter/nfnetlink_queue. */
struct nfqueue_kernel_stats {
	uint64_t queue_total;  /* packets waiting now */
	uint64_t queue_dropped; /* dropped (or failed open) because the queue was full */
	uint64_t user_dropped;  /* netlink buffer overrun: could not be sent to us */
};

/* What the kernel says of a packet's checksum (NFQA_SKB_INFO). */
enum nfqueue_csum {
	NFQUEUE_CSUM_VERIFIED,     /* checked by the NIC or the stack */
	NFQUEUE_CSUM_NOT_VERIFIED, /* as received: a receiver checks it */
	NFQUEUE_CSUM_NOT_READY,    /* to be filled in on the way out (local
				      sender, GSO): right by construction */
};

/* Returns the verdict (NF_ACCEPT or NF_DROP) for one packet starting at the
 * IP header; indev is the interface it arrived on (0 if unknown). The
 * payload is only valid during the call. */
typedef int (*nfqueue_packet_fn)(void *arg, const uint8_t *pkt, size_t len, uint32_t indev,
				 enum nfqueue_csum csum);

struct nfqueue;

/* Binds queue `queue_num`. On error NULL is returned, a warning is logged and
 * nothing is left bound. */
struct nfqueue *nfqueue_open(uint16_t queue_num, uint32_t queue_maxlen, int rcvbuf,
		     nfqueue_packet_fn fn, void *arg);
void nfqueue_close(struct nfqueue *q); /* accepts NULL */
int nfqueue_fd(const struct nfqueue *q);

/* Processes what is waiting on the socket (non-blocking). Returns the number
 * of packets handled, 0 when nothing was waiting, or -errno. */
int nfqueue_receive(struct nfqueue *q);
/* For a process that takes over a bound queue whose previous reader died:
 * at the next packet, every packet still queued with an earlier id (read
 * by the dead one, never given a verdict; they would hold their queue
 * slots until the queue is unbound) is dropped in one batch verdict. TCP
 * sends them again. */
void nfqueue_drop_stale(struct nfqueue *q);

const struct nfqueue_stats *nfqueue_stats(const struct nfqueue *q);
/* Reads the kernel's counters for this queue. Returns 0 or -errno. */
int nfqueue_kernel_stats(const struct nfqueue *q, struct nfqueue_kernel_stats *out);

#endif
