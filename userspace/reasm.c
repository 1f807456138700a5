/* reasm.c - TCP stream reassembly for one direction; see reasm.h. */
#include <stdlib.h>
#include <string.h>

#include "reasm.h"

void reasm_init(struct reasm *r, size_t limit)
{
	memset(r, 0, sizeof(*r));
	r->limit = limit ? limit : 1;
}

void reasm_release(struct reasm *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
	r->n_isl = 0;
	free(r->hist);
	r->hist = NULL;
	r->hist_len = r->hist_cap = 0;
}

void reasm_start(struct reasm *r, uint32_t next_seq)
{
	if (r->started)
		return;
	r->started = true;
	r->base = next_seq;
}

static size_t ready_len(const struct reasm *r)
{
	if (r->n_isl && r->isl[0].lo == 0)
		return r->isl[0].hi;
	return 0;
}

static size_t buffered_end(const struct reasm *r)
{
	return r->n_isl ? r->isl[r->n_isl - 1].hi : 0;
}

void reasm_set_limit(struct reasm *r, size_t limit)
{
	size_t end = buffered_end(r);

	if (limit < end)
		limit = end;
	r->limit = limit ? limit : 1;
}

/* Grows the buffer to hold `end` bytes; end <= limit. Returns false when
 * memory is short (the data is then dropped as at any other bound). */
static bool ensure_cap(struct reasm *r, size_t end)
{
	size_t ncap;
	uint8_t *nbuf;

	if (end <= r->cap)
		return true;
	ncap = r->cap ? r->cap : 512;
	while (ncap < end)
		ncap *= 2;
	if (ncap > r->limit)
		ncap = r->limit;
	nbuf = realloc(r->buf, ncap);
	if (!nbuf)
		return false;
	r->buf = nbuf;
	r->cap = ncap;
	return true;
}

/* Compares old (already consumed) bytes with the history. o is the offset
 * of data[0] relative to base (negative), n the number of old bytes. */
static unsigned int check_history(const struct reasm *r, int64_t o, const uint8_t *data, size_t n)
{
	int64_t hist_lo = -(int64_t)r->hist_len;
	int64_t lo = o, hi = o + (int64_t)n;

	if (lo < hist_lo)
		lo = hist_lo;
	if (hi > 0)
		hi = 0;
	if (lo < hi && memcmp(r->hist + (r->hist_len + lo), data + (lo - o), (size_t)(hi - lo)))
		return REASM_F_CONFLICT;
	return REASM_F_RETRANS;
}

static unsigned int insert_island(struct reasm *r, uint32_t lo, uint32_t hi)
{
	struct reasm_island out[REASM_MAX_HOLES + 1];
	unsigned int n = 0, i;
	bool placed = false;

	for (i = 0; i < r->n_isl; i++) {
		struct reasm_island c = r->isl[i];

		if (c.hi < lo) {
			out[n++] = c;
		} else if (c.lo > hi) {
			if (!placed) {
				out[n++] = (struct reasm_island){ lo, hi };
				placed = true;
			}
			out[n++] = c;
		} else {
			if (c.lo < lo)
				lo = c.lo;
			if (c.hi > hi)
				hi = c.hi;
		}
		if (n > REASM_MAX_HOLES)
			return REASM_F_LOST;
	}
	if (!placed)
		out[n++] = (struct reasm_island){ lo, hi };
	if (n > REASM_MAX_HOLES)
		return REASM_F_LOST;
	memcpy(r->isl, out, n * sizeof(out[0]));
	r->n_isl = n;
	return 0;
}

unsigned int reasm_add(struct reasm *r, uint32_t seq, const uint8_t *data, size_t len)
{
	unsigned int fl = 0, i;
	int32_t d;
	size_t off, end, pos;

	if (!len)
		return 0;
	if (!r->started)
		reasm_start(r, seq);
	d = (int32_t)(seq - r->base);
	if (d < 0) {
		uint64_t k = (uint64_t)(-(int64_t)d);
		size_t nold = len < k ? len : (size_t)k;

		fl |= check_history(r, d, data, nold);
		if (len <= k) {
			r->flags |= fl;
			return fl;
		}
		data += k;
		len -= k;
		d = 0;
	}
	off = (size_t)d;
	if (off >= r->limit) {
		r->flags |= fl | REASM_F_LOST;
		return fl | REASM_F_LOST;
	}
	end = off + len;
	if (end > r->limit) {
		fl |= REASM_F_LOST;
		end = r->limit;
	}
	if (!ensure_cap(r, end)) {
		r->flags |= fl | REASM_F_LOST;
		return fl | REASM_F_LOST;
	}
	/* First copy wins: fill the gaps, compare the overlaps. */
	pos = off;
	for (i = 0; i < r->n_isl && pos < end; i++) {
		size_t lo = r->isl[i].lo, hi = r->isl[i].hi, ohi;

		if (hi <= pos)
			continue;
		if (lo >= end)
			break;
		if (pos < lo) {
			memcpy(r->buf + pos, data + (pos - off), lo - pos);
			pos = lo;
		}
		ohi = hi < end ? hi : end;
		if (memcmp(r->buf + pos, data + (pos - off), ohi - pos))
			fl |= REASM_F_CONFLICT;
		else
			fl |= REASM_F_RETRANS;
		pos = ohi;
	}
	if (pos < end)
		memcpy(r->buf + pos, data + (pos - off), end - pos);
	fl |= insert_island(r, (uint32_t)off, (uint32_t)end);
	r->flags |= fl;
	return fl;
}

void reasm_add_fin(struct reasm *r, uint32_t seq)
{
	if (!r->started)
		reasm_start(r, seq);
	if (!r->fin) {
		r->fin = true;
		r->fin_seq = seq;
	}
}

const uint8_t *reasm_peek(const struct reasm *r, size_t *len)
{
	static const uint8_t none[1];

	*len = ready_len(r);
	return r->buf ? r->buf : none;
}

/* Room for `want` bytes of history (at most REASM_HISTORY). Without it
 * the history is forgotten and the stream marked LOST: a retransmission
 * that differs from consumed bytes could no longer be noticed. */
static bool hist_room(struct reasm *r, size_t want)
{
	size_t ncap = r->hist_cap ? r->hist_cap : 128;
	uint8_t *nh;

	if (want > REASM_HISTORY)
		want = REASM_HISTORY;
	if (want <= r->hist_cap)
		return true;
	while (ncap < want)
		ncap *= 2;
	if (ncap > REASM_HISTORY)
		ncap = REASM_HISTORY;
	nh = realloc(r->hist, ncap);
	if (!nh) {
		r->hist_len = 0;
		r->flags |= REASM_F_LOST;
		return false;
	}
	r->hist = nh;
	r->hist_cap = ncap;
	return true;
}

static void hist_append(struct reasm *r, const uint8_t *p, size_t n)
{
	if (!hist_room(r, r->hist_len + n))
		return;
	if (n >= REASM_HISTORY) {
		memcpy(r->hist, p + (n - REASM_HISTORY), REASM_HISTORY);
		r->hist_len = REASM_HISTORY;
		return;
	}
	if (r->hist_len + n > REASM_HISTORY) {
		size_t drop = r->hist_len + n - REASM_HISTORY;

		memmove(r->hist, r->hist + drop, r->hist_len - drop);
		r->hist_len -= drop;
	}
	memcpy(r->hist + r->hist_len, p, n);
	r->hist_len += n;
}

void reasm_skip(struct reasm *r, uint64_t n)
{
	size_t ready = ready_len(r);
	unsigned int i, j;

	if (!n)
		return;
	if (n > REASM_MAX_SKIP) {
		r->flags |= REASM_F_LOST;
		n = REASM_MAX_SKIP;
	}
	if (n <= ready)
		hist_append(r, r->buf, (size_t)n);
	else
		r->hist_len = 0; /* history must end exactly at base */
	if (r->tap)
		r->tap(r->tap_arg, r->buf, n <= ready ? (size_t)n : ready,
		       n <= ready ? 0 : n - ready);
	for (i = 0, j = 0; i < r->n_isl; i++) {
		struct reasm_island c = r->isl[i];

		if (c.hi <= n)
			continue;
		c.lo = c.lo > n ? c.lo - (uint32_t)n : 0;
		c.hi -= (uint32_t)n;
		r->isl[j++] = c;
	}
	r->n_isl = j;
	if (!j) {
		/* Nothing held: the buffer goes until bytes come again (an
		 * idle dialog holds none). */
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	} else if (n < r->cap) {
		memmove(r->buf, r->buf + n, r->cap - (size_t)n);
	}
	r->base += (uint32_t)n;
	r->consumed += n;
}

bool reasm_in_order(const struct reasm *r)
{
	return r->n_isl == 0 || (r->n_isl == 1 && r->isl[0].lo == 0);
}

bool reasm_eof(const struct reasm *r)
{
	return r->fin && (int32_t)(r->base - r->fin_seq) >= 0;
}

bool reasm_full(const struct reasm *r)
{
	return ready_len(r) >= r->limit;
}

size_t reasm_memory(const struct reasm *r)
{
	return r->cap + r->hist_cap;
}
