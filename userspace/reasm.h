/* reasm.h - TCP stream reassembly for one direction of one connection.
 *
 * Bytes are placed by sequence number into a window that starts at the
 * first byte not yet consumed ("base") and is at most `limit` bytes long.
 * The consumer peeks at the contiguous prefix, consumes whole units (a line,
 * a TLS record), or skips bytes it does not need (message content,
 * encrypted records) without buffering them.
 *
 * Bounds: at most `limit` bytes of stream data (allocated on demand, never
 * more, and freed whenever nothing is held), REASM_MAX_HOLES out-of-order
 * islands, REASM_HISTORY bytes of already consumed data kept to check
 * retransmissions. Data that does not
 * fit (beyond the window, too many islands) is dropped and REASM_F_LOST is
 * set: the stream has a gap the endpoint did not have, so the caller must
 * judge the flow, never pass it silently.
 *
 * Overlaps: the first copy of a byte wins (what is buffered is never
 * overwritten); a later copy with different bytes sets REASM_F_CONFLICT
 * (an evasion attempt: endpoints may have seen either version).
 * Sequence numbers wrap: all comparisons are modulo 2^32. */
#ifndef TLSGATE_REASM_H
#define TLSGATE_REASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REASM_MAX_HOLES 16
#define REASM_HISTORY 2048
/* Largest single skip; beyond it REASM_F_LOST (sequence space is 2^32). */
#define REASM_MAX_SKIP (1u << 30)

enum reasm_flags {
	REASM_F_CONFLICT = 1 << 0, /* overlapping copy with different bytes */
	REASM_F_LOST = 1 << 1,     /* data dropped at a bound: stream has a gap */
	REASM_F_RETRANS = 1 << 2,  /* saw a retransmission (same bytes) */
};

struct reasm_island {
	uint32_t lo, hi; /* offsets from base, [lo, hi) */
};

struct reasm {
	bool started;
	uint32_t base;   /* sequence number of buf[0] */
	size_t limit;    /* window size in bytes */
	uint8_t *buf;
	size_t cap;      /* allocated bytes of buf (<= limit) */
	struct reasm_island isl[REASM_MAX_HOLES];
	unsigned int n_isl;
	uint8_t *hist;   /* consumed bytes ending at base; allocated as they
			    come, up to REASM_HISTORY (most dialogs need far
			    less: memory per inspected flow) */
	size_t hist_len, hist_cap;
	bool fin;
	uint32_t fin_seq; /* sequence number of the FIN */
	unsigned int flags; /* enum reasm_flags, sticky */
	uint64_t consumed;  /* bytes consumed or skipped so far */
	/* Diagnostics (NULL: off): every byte consumed, in stream order;
	 * bytes skipped before they arrived are reported as a count only. */
	void (*tap)(void *arg, const uint8_t *p, size_t n, uint64_t unseen);
	void *tap_arg;
};

/* Initialises an empty, unstarted stream. Cannot fail. */
void reasm_init(struct reasm *r, size_t limit);
/* Releases the buffer; the struct may be initialised again. */
void reasm_release(struct reasm *r);
/* Sets the next expected sequence number (ISN + 1 after a SYN), if the
 * stream has not started yet. */
void reasm_start(struct reasm *r, uint32_t next_seq);
/* Changes the window size; never below what is buffered now. */
void reasm_set_limit(struct reasm *r, size_t limit);
/* Adds a segment. The first segment of an unstarted stream starts it
 * (mid-stream pickup). Returns the flags raised by this segment. */
unsigned int reasm_add(struct reasm *r, uint32_t seq, const uint8_t *data, size_t len);
/* Records a FIN at sequence number seq (after the segment's data). */
void reasm_add_fin(struct reasm *r, uint32_t seq);
/* Contiguous bytes available from base; *len set to their number. */
const uint8_t *reasm_peek(const struct reasm *r, size_t *len);
/* Advances base by n bytes; n may exceed what is available (the bytes are
 * skipped as they come). n > REASM_MAX_SKIP sets REASM_F_LOST. */
void reasm_skip(struct reasm *r, uint64_t n);
/* True when every byte held is contiguous from base (no islands beyond a
 * hole): the stream's next byte is base + the peekable length. */
bool reasm_in_order(const struct reasm *r);
/* True when the FIN was reached: every byte before it was consumed. */
bool reasm_eof(const struct reasm *r);
/* True when the window is full of contiguous data (consumer stuck). */
bool reasm_full(const struct reasm *r);
/* Heap bytes held. */
size_t reasm_memory(const struct reasm *r);

#endif
