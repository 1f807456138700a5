/* enforce.c - see enforce.h for the contract. */
#include "enforce.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "csum.h"
#include "log.h"
#include "smtp_parse.h"

#define TCP_FIN 0x01
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define ENFORCE_WINDOW 512

/* A refusal's packets, kept to be sent again (enforce_tick). */
struct enforce_repeat {
	uint64_t sent_ns; /* 0: a free slot */
	unsigned int done; /* repeats sent */
	bool overflow;     /* more than fits: not repeated */
	int family;
	size_t n, used;
	struct {
		uint8_t daddr[16];
		uint16_t len;
	} pkt[ENFORCE_REPEAT_PACKETS];
	uint8_t bytes[ENFORCE_REPEAT_BYTES];
};

struct enforce {
	int fd4;
	int fd6;
	struct enforce_repeat *recording; /* enforce_send() keeps a copy there */
	struct enforce_repeat repeat[ENFORCE_REPEAT_SLOTS];
	uint64_t repeated;
};

/* The repeats, in milliseconds after the refusal. */
static const unsigned int enforce_repeat_ms[] = { 1000, 3000 };

static uint64_t enforce_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct enforce *enforce_open(void)
{
	struct enforce *e = xcalloc(1, sizeof(*e));
	/* IPPROTO_RAW implies IP_HDRINCL (IPv4) and IPV6_HDRINCL (IPv6). */
	e->fd4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	e->fd6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (e->fd4 < 0 || e->fd6 < 0) {
		log_warn("enforce: raw sockets");
		enforce_close(e);
		return NULL;
	}
	return e;
}

void enforce_close(struct enforce *e)
{
	if (!e)
		return;
	if (e->fd4 >= 0)
		close(e->fd4);
	if (e->fd6 >= 0)
		close(e->fd6);
	free(e);
}

int enforce_build_segment(int family, const uint8_t saddr[16], uint16_t sport,
			  const uint8_t daddr[16], uint16_t dport, uint32_t seq, uint32_t ack,
			  uint8_t flags, const void *payload, size_t len, uint8_t *out,
			  size_t size)
{
	size_t iphl = family == AF_INET ? 20 : 40;
	size_t total = iphl + 20 + len;
	if (total > size || total > 65535)
		return -ENOSPC;
	memset(out, 0, iphl + 20);
	uint8_t *tcp = out + iphl;
	uint32_t sum;
	if (family == AF_INET) {
		out[0] = 0x45;
		out[2] = (uint8_t)(total >> 8);
		out[3] = (uint8_t)total;
		out[6] = 0x40; /* DF */
		out[8] = 64;
		out[9] = IPPROTO_TCP;
		memcpy(out + 12, saddr + 12, 4);
		memcpy(out + 16, daddr + 12, 4);
		uint16_t ipsum = csum_fold(csum_add(0, out, 20));
		out[10] = (uint8_t)(ipsum >> 8);
		out[11] = (uint8_t)ipsum;
		sum = csum_add(0, out + 12, 8);
	} else {
		out[0] = 0x60;
		out[4] = (uint8_t)((20 + len) >> 8);
		out[5] = (uint8_t)(20 + len);
		out[6] = IPPROTO_TCP;
		out[7] = 64;
		memcpy(out + 8, saddr, 16);
		memcpy(out + 24, daddr, 16);
		sum = csum_add(0, out + 8, 32);
	}
	tcp[0] = (uint8_t)(sport >> 8);
	tcp[1] = (uint8_t)sport;
	tcp[2] = (uint8_t)(dport >> 8);
	tcp[3] = (uint8_t)dport;
	uint32_t nseq = htonl(seq), nack = htonl(ack);
	memcpy(tcp + 4, &nseq, 4);
	memcpy(tcp + 8, &nack, 4);
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	tcp[14] = ENFORCE_WINDOW >> 8;
	tcp[15] = ENFORCE_WINDOW & 0xff;
	if (len)
		memcpy(tcp + 20, payload, len);
	sum += IPPROTO_TCP + (uint32_t)(20 + len);
	uint16_t tsum = csum_fold(csum_add(sum, tcp, 20 + len));
	tcp[16] = (uint8_t)(tsum >> 8);
	tcp[17] = (uint8_t)tsum;
	return (int)total;
}

/* Appends one reply line (CRLF added). Returns false when out is full. */
static bool reply_append(char *out, size_t size, size_t *used, const char *line)
{
	int n = snprintf(out + *used, size - *used, "%s\r\n", line);
	if (n < 0 || (size_t)n >= size - *used)
		return false;
	*used += (size_t)n;
	return true;
}

/* What the server says to a command pipelined after a refused MAIL FROM;
 * NULL: the refusal again. */
static const char *reply_after_refusal(uint16_t verb)
{
	switch (verb) {
	case SMTP_VERB_RCPT:
		return "503 5.5.1 Error: need MAIL command";
	case SMTP_VERB_DATA:
	case SMTP_VERB_BDAT:
		return "554 5.5.1 Error: no valid recipients";
	case SMTP_VERB_QUIT:
		return "221 2.0.0 Bye";
	case SMTP_VERB_RSET:
	case SMTP_VERB_NOOP:
		return "250 2.0.0 Ok";
	default:
		return NULL;
	}
}

size_t enforce_verbs_from_lines(const uint8_t *payload, size_t len, uint16_t *verb, size_t max,
				bool *over)
{
	size_t n = 0, i = 0;
	*over = false;
	while (i < len) {
		const uint8_t *nl = memchr(payload + i, '\n', len - i);
		if (!nl)
			break; /* a command still being typed: withheld, no reply */
		size_t end = (size_t)(nl - payload), ll = end - i;
		if (ll && payload[end - 1] == '\r')
			ll--;
		struct smtp_command cmd;
		if (smtp_command_parse((const char *)payload + i, ll, &cmd) < 0)
			cmd.verb = SMTP_VERB_UNKNOWN;
		if (n == max) {
			*over = true;
			break;
		}
		verb[n++] = (uint16_t)cmd.verb;
		i = end + 1;
	}
	return n;
}

int enforce_build_replies(const struct enforce_verbs *v, const char *refusal, char *out,
			  size_t size)
{
	size_t used = 0, last_mail = v->n;
	bool refused = false;
	out[0] = '\0';
	/* What precedes the segment's last MAIL belongs to the transaction
	 * before it (pipelined, RFC 2920): the end of its data, its last
	 * BDAT chunk. Withheld with the refused MAIL, it never reached the
	 * server: not "250" but 451, and the client keeps it and retries. */
	for (size_t i = 0; i < v->n; i++)
		if (v->verb[i] == SMTP_VERB_MAIL)
			last_mail = i;
	if (last_mail == v->n)
		last_mail = 0;
	for (size_t i = 0; i < v->n; i++) {
		const char *line = refusal;
		if (i < last_mail)
			line = "451 4.3.0 tlsgate: not done: a command pipelined after it was "
			       "refused; please try again";
		else if (refused && reply_after_refusal(v->verb[i]))
			line = reply_after_refusal(v->verb[i]);
		if (line == refusal)
			refused = true;
		if (!reply_append(out, size, &used, line))
			return -ENOSPC;
	}
	if (!refused && !reply_append(out, size, &used, refusal))
		return -ENOSPC;
	return (int)used;
}

static int enforce_send(struct enforce *e, int family, const uint8_t *daddr, const uint8_t *pkt,
			size_t len)
{
	ssize_t n;
	if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		memcpy(&sin.sin_addr, daddr + 12, 4);
		n = sendto(e->fd4, pkt, len, 0, (struct sockaddr *)&sin, sizeof(sin));
	} else {
		/* With IPV6_HDRINCL the port field must be 0. */
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		memcpy(&sin6.sin6_addr, daddr, 16);
		n = sendto(e->fd6, pkt, len, 0, (struct sockaddr *)&sin6, sizeof(sin6));
	}
	if (n < 0)
		return -errno;
	struct enforce_repeat *r = e->recording;
	if (r && !r->overflow) {
		if (r->n == ENFORCE_REPEAT_PACKETS || r->used + len > sizeof(r->bytes)) {
			r->overflow = true;
		} else {
			memcpy(r->pkt[r->n].daddr, daddr, 16);
			r->pkt[r->n].len = (uint16_t)len;
			memcpy(r->bytes + r->used, pkt, len);
			r->used += len;
			r->n++;
		}
	}
	return 0;
}

/* A slot to record a refusal in: a free one, else the oldest. */
static struct enforce_repeat *enforce_repeat_slot(struct enforce *e)
{
	struct enforce_repeat *oldest = &e->repeat[0];
	for (size_t i = 0; i < ENFORCE_REPEAT_SLOTS; i++) {
		if (!e->repeat[i].sent_ns)
			return &e->repeat[i];
		if (e->repeat[i].sent_ns < oldest->sent_ns)
			oldest = &e->repeat[i];
	}
	return oldest;
}

void enforce_tick(struct enforce *e)
{
	uint64_t now = enforce_now_ns();
	for (size_t i = 0; e && i < ENFORCE_REPEAT_SLOTS; i++) {
		struct enforce_repeat *r = &e->repeat[i];
		if (!r->sent_ns || now - r->sent_ns < enforce_repeat_ms[r->done] * 1000000ull)
			continue;
		const uint8_t *b = r->bytes;
		for (size_t k = 0; k < r->n; b += r->pkt[k].len, k++)
			enforce_send(e, r->family, r->pkt[k].daddr, b, r->pkt[k].len);
		e->repeated++;
		if (++r->done == sizeof(enforce_repeat_ms) / sizeof(enforce_repeat_ms[0]))
			r->sent_ns = 0;
	}
}

uint64_t enforce_repeated(const struct enforce *e)
{
	return e ? e->repeated : 0;
}

/* To the client, as the server: the replies to the withheld segment p,
 * acknowledging it (the server's next sequence number is the ack the
 * client sent), in segments of at most ENFORCE_SEGMENT_PAYLOAD bytes; the
 * last one carries the extra flags (FIN). */
static int send_replies(struct enforce *e, const struct flowkey_packet *p,
			const struct enforce_verbs *v, const char *refusal, uint8_t flags)
{
	static char replies[ENFORCE_REPLY_MAX]; /* single-threaded daemon */
	uint8_t pkt[ENFORCE_PACKET_MAX];
	int rlen = enforce_build_replies(v, refusal, replies, sizeof(replies));
	if (rlen < 0)
		return rlen;
	uint32_t client_next = p->seq + (uint32_t)p->payload_len;
	for (size_t off = 0; off < (size_t)rlen; off += ENFORCE_SEGMENT_PAYLOAD) {
		size_t len = (size_t)rlen - off;
		bool last = len <= ENFORCE_SEGMENT_PAYLOAD;
		if (!last)
			len = ENFORCE_SEGMENT_PAYLOAD;
		int n = enforce_build_segment(p->family, p->daddr, p->dport, p->saddr, p->sport,
					      p->ack + (uint32_t)off, client_next,
					      TCP_ACK | TCP_PSH | (last ? flags : 0), replies + off,
					      len, pkt, sizeof(pkt));
		if (n < 0)
			return n;
		int rc = enforce_send(e, p->family, p->saddr, pkt, (size_t)n);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int enforce_refuse_once(struct enforce *e, const struct flowkey_packet *p,
			       const struct enforce_verbs *v, const char *refusal,
			       uint32_t server_seq)
{
	uint8_t pkt[ENFORCE_PACKET_MAX];
	int rc = send_replies(e, p, v, refusal, TCP_FIN);
	if (rc < 0)
		return rc;
	/* To the server, as the client: RST at the sequence number it
	 * expects (the withheld bytes never reached it). */
	int n = enforce_build_segment(p->family, p->saddr, p->sport, p->daddr, p->dport, server_seq,
				      0, TCP_RST, NULL, 0, pkt, sizeof(pkt));
	if (n < 0)
		return n;
	return enforce_send(e, p->family, p->daddr, pkt, (size_t)n);
}

int enforce_refuse_at(struct enforce *e, const struct flowkey_packet *p,
		      const struct enforce_verbs *v, const char *refusal, uint32_t server_seq)
{
	struct enforce_repeat *r = enforce_repeat_slot(e);
	*r = (struct enforce_repeat){ .family = p->family };
	e->recording = r;
	int rc = enforce_refuse_once(e, p, v, refusal, server_seq);
	e->recording = NULL;
	if (rc == 0 && !r->overflow && r->n)
		r->sent_ns = enforce_now_ns();
	return rc;
}

int enforce_refuse(struct enforce *e, const struct flowkey_packet *p,
		   const struct enforce_verbs *v, const char *refusal)
{
	return enforce_refuse_at(e, p, v, refusal, p->seq);
}

int enforce_answer(struct enforce *e, const struct flowkey_packet *p,
		   const struct enforce_verbs *v, const char *reply)
{
	return send_replies(e, p, v, reply, 0);
}

int enforce_reset(struct enforce *e, const struct flowkey_packet *p)
{
	uint8_t pkt[ENFORCE_PACKET_MAX];
	/* Towards p's destination: it expects p's sequence number. */
	int n = enforce_build_segment(p->family, p->saddr, p->sport, p->daddr, p->dport, p->seq, 0,
				      TCP_RST, NULL, 0, pkt, sizeof(pkt));
	if (n < 0)
		return n;
	int rc = enforce_send(e, p->family, p->daddr, pkt, (size_t)n);
	/* Towards p's source: it expects what p acknowledges. */
	n = enforce_build_segment(p->family, p->daddr, p->dport, p->saddr, p->sport, p->ack, 0,
				  TCP_RST, NULL, 0, pkt, sizeof(pkt));
	if (n < 0)
		return n;
	int rc2 = enforce_send(e, p->family, p->saddr, pkt, (size_t)n);
	return rc < 0 ? rc : rc2;
}
