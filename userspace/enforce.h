/* enforce.h - acting on a block verdict on the wire: answer the client in
 * SMTP and reset the server, for IPv4 and IPv6.
 *
 * While the dialog is plaintext the daemon withholds the client's offending
 * segment (NF_DROP) and calls enforce_refuse() with what the session parsed
 * in it (enum smtp_verb, in order): it injects, as if from the server, one
 * SMTP reply per command (pipelined commands get theirs too: the first gets
 * the refusal, RCPT after a refused MAIL "503 5.5.1", DATA "554 5.5.1",
 * QUIT "221 2.0.0"; what belongs to the transaction before the refused
 * MAIL - the end of its DATA, its last BDAT chunk - "451 4.3.0": that
 * message never reached the server, the client keeps it and retries),
 * acknowledging the withheld bytes, in segments of at most
 * ENFORCE_SEGMENT_PAYLOAD bytes, the last with FIN; then a RST to the server
 * at the sequence number it expects. The caller then blocks the flow in the
 * BPF map. Message content in the segment gets no reply of its own.
 * enforce_answer() answers a withheld STARTTLS and leaves the connection
 * open. After TLS has begun, enforce_reset() resets both sides.
 *
 * A refusal is sent again 1 and 3 s later (enforce_tick, from the 1 s
 * tick: so 1-2 and 3-4 s), as the server's TCP would retransmit a reply
 * the client did not acknowledge: a client whose copy was lost, or that
 * dropped it because it acknowledged bytes the client had not sent yet
 * (an injected copy of its segment came first), gets it then; the flow is
 * blocked in the kernel, so the client's own retransmission never reaches
 * the daemon to be answered. For a client that has it, the copies are
 * duplicates. ENFORCE_REPEAT_SLOTS refusals are kept (more: the oldest
 * goes), each up to ENFORCE_REPEAT_BYTES (larger: sent once).
 *
 * Packets are built here (checksums included) and sent through raw IP
 * sockets, so the kernel routes them; they leave through OUTPUT, never
 * through the tagger or NFQUEUE again. */
#ifndef TLSGATE_ENFORCE_H
#define TLSGATE_ENFORCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flowkey.h"

#define ENFORCE_REPLY_MAX 65536 /* bytes of injected SMTP replies */
#define ENFORCE_SEGMENT_PAYLOAD 1200 /* per injected segment: below any MTU here */
#define ENFORCE_PACKET_MAX (60 + 20 + ENFORCE_SEGMENT_PAYLOAD)
/* The daemon's record of one segment's commands. More than this: the
 * caller resets instead of answering (a reply short would hang the client). */
#define ENFORCE_VERBS_MAX 1024
#define ENFORCE_REPEAT_SLOTS 64
#define ENFORCE_REPEAT_BYTES 4096
#define ENFORCE_REPEAT_PACKETS 8

struct enforce;

/* Opens the raw sockets. NULL on error (needs CAP_NET_RAW), logged. */
struct enforce *enforce_open(void);
void enforce_close(struct enforce *e); /* accepts NULL */

/* What a withheld segment held: the commands the session parsed in it, in
 * order (enum smtp_verb, SMTP_VERB_END_OF_DATA included). */
struct enforce_verbs {
	const uint16_t *verb;
	size_t n;
};

/* p: the withheld client->server segment, v: its commands. refusal: one
 * reply line without CRLF, e.g. "451 4.7.5 ...". Returns 0 or -errno. */
int enforce_refuse(struct enforce *e, const struct flowkey_packet *p,
		   const struct enforce_verbs *v, const char *refusal);
/* The same, when earlier client bytes were withheld too: the server still
 * expects server_seq, so its RST carries that. */
int enforce_refuse_at(struct enforce *e, const struct flowkey_packet *p,
		      const struct enforce_verbs *v, const char *refusal, uint32_t server_seq);
/* Answers the withheld segment p as enforce_refuse() does (reply first),
 * but keeps the connection open: the client goes on, the server never saw
 * p. Used for a STARTTLS the gateway refuses. */
int enforce_answer(struct enforce *e, const struct flowkey_packet *p,
		   const struct enforce_verbs *v, const char *reply);
/* Resets both sides of the connection p belongs to (p may go either way). */
int enforce_reset(struct enforce *e, const struct flowkey_packet *p);

/* Sends the refusals due again (see above); call it about once a second. */
void enforce_tick(struct enforce *e);
/* How many refusals were sent again. */
uint64_t enforce_repeated(const struct enforce *e);

/* The commands of payload read line by line (complete lines only), for a
 * segment the session did not parse (the client's words after a STARTTLS
 * the gateway answered). Returns how many were stored in verb (at most
 * max); *over is set when there were more. */
size_t enforce_verbs_from_lines(const uint8_t *payload, size_t len, uint16_t *verb, size_t max,
				bool *over);
/* Builds the replies for the commands v (see above) into out; with none,
 * the refusal once. Returns the length, or -ENOSPC. Exposed for tests. */
int enforce_build_replies(const struct enforce_verbs *v, const char *refusal, char *out,
			  size_t size);

/* Builds an IPv4 or IPv6 TCP segment (family of p) from (saddr,sport) to
 * (daddr,dport) with checksums into out. Returns its length, or -ENOSPC.
 * Exposed for tests. */
int enforce_build_segment(int family, const uint8_t saddr[16], uint16_t sport,
			  const uint8_t daddr[16], uint16_t dport, uint32_t seq, uint32_t ack,
			  uint8_t flags, const void *payload, size_t len, uint8_t *out,
			  size_t size);

#endif
