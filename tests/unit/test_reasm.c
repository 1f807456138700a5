/* test_reasm.c - TCP reassembly under hostile segmentation: every split
 * point, reordering, duplicates, overlaps with different bytes, sequence
 * wrap-around, window and island bounds, skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reasm.h"

static const char msg[] = "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n";
#define MSG_LEN (sizeof(msg) - 1)

/* Drains everything contiguous into out; returns bytes drained. */
static size_t drain(struct reasm *r, char *out, size_t cap)
{
	size_t n, got = 0;
	const uint8_t *p;

	while ((p = reasm_peek(r, &n)) && n) {
		assert_true(got + n <= cap);
		memcpy(out + got, p, n);
		got += n;
		reasm_skip(r, n);
	}
	return got;
}

static void split_everywhere(uint32_t isn)
{
	size_t cut;

	for (cut = 0; cut <= MSG_LEN; cut++) {
		struct reasm r;
		char out[256];
		size_t got = 0;

		reasm_init(&r, 4096);
		reasm_start(&r, isn);
		assert_int_equal(reasm_add(&r, isn, (const uint8_t *)msg, cut) & REASM_F_LOST, 0);
		got += drain(&r, out + got, sizeof(out) - got);
		reasm_add(&r, isn + (uint32_t)cut, (const uint8_t *)msg + cut, MSG_LEN - cut);
		got += drain(&r, out + got, sizeof(out) - got);
		assert_int_equal(got, MSG_LEN);
		assert_memory_equal(out, msg, MSG_LEN);
		assert_int_equal(r.flags & (REASM_F_CONFLICT | REASM_F_LOST), 0);
		reasm_release(&r);
	}
}

static void test_split_every_byte(void **state)
{
	split_everywhere(1000);
}

static void test_wraparound(void **state)
{
	/* Every split point again, with the ISN a few bytes before 2^32. */
	split_everywhere(0xffffffe0u);
}

static void test_reversed_single_bytes(void **state)
{
	struct reasm r;
	char out[256];
	size_t i;

	reasm_init(&r, 4096);
	reasm_start(&r, 7);
	/* Last byte first: everything but the first byte is out of order,
	 * which needs one island at most (they merge as they come). */
	for (i = MSG_LEN; i-- > 0;) {
		size_t n;

		reasm_add(&r, 7 + (uint32_t)i, (const uint8_t *)msg + i, 1);
		reasm_peek(&r, &n);
		assert_int_equal(n, i == 0 ? MSG_LEN : 0);
	}
	assert_int_equal(drain(&r, out, sizeof(out)), MSG_LEN);
	assert_memory_equal(out, msg, MSG_LEN);
	assert_int_equal(r.flags & (REASM_F_CONFLICT | REASM_F_LOST), 0);
	reasm_release(&r);
}

static void test_duplicates_same_bytes(void **state)
{
	struct reasm r;
	char out[256];

	reasm_init(&r, 4096);
	reasm_start(&r, 1);
	reasm_add(&r, 1, (const uint8_t *)msg, 30);
	reasm_add(&r, 1, (const uint8_t *)msg, 30);		/* exact duplicate */
	reasm_add(&r, 11, (const uint8_t *)msg + 10, 40);	/* overlapping, same bytes */
	reasm_add(&r, 1, (const uint8_t *)msg, MSG_LEN);
	assert_int_equal(drain(&r, out, sizeof(out)), MSG_LEN);
	assert_memory_equal(out, msg, MSG_LEN);
	assert_true(r.flags & REASM_F_RETRANS);
	assert_false(r.flags & REASM_F_CONFLICT);
	/* Retransmission of consumed bytes, same content: not a conflict. */
	assert_false(reasm_add(&r, 1, (const uint8_t *)msg, 20) & REASM_F_CONFLICT);
	reasm_release(&r);
}

static void test_overlap_different_bytes_buffered(void **state)
{
	struct reasm r;
	char out[256], evil[MSG_LEN];
	unsigned int fl;

	memcpy(evil, msg, MSG_LEN);
	memcpy(evil + 26, "evil", 4); /* inside MAIL FROM */
	reasm_init(&r, 4096);
	reasm_start(&r, 100);
	/* Out of order first copy, then a different overlapping copy. */
	reasm_add(&r, 120, (const uint8_t *)msg + 20, 30);
	fl = reasm_add(&r, 100, (const uint8_t *)evil, 40);
	assert_true(fl & REASM_F_CONFLICT);
	reasm_add(&r, 150, (const uint8_t *)msg + 50, MSG_LEN - 50);
	assert_int_equal(drain(&r, out, sizeof(out)), MSG_LEN);
	/* The first copy is kept, the conflict is flagged. */
	assert_memory_equal(out, msg, MSG_LEN);
	reasm_release(&r);
}

static void test_overlap_different_bytes_consumed(void **state)
{
	struct reasm r;
	char out[256];

	reasm_init(&r, 4096);
	reasm_start(&r, 100);
	reasm_add(&r, 100, (const uint8_t *)msg, MSG_LEN);
	drain(&r, out, sizeof(out));
	/* Consumed already: checked against the history. */
	assert_true(reasm_add(&r, 105, (const uint8_t *)"XXXX", 4) & REASM_F_CONFLICT);
	reasm_release(&r);
}

static void test_window_bound(void **state)
{
	struct reasm r;
	uint8_t big[300];
	size_t n;

	memset(big, 'a', sizeof(big));
	reasm_init(&r, 256);
	reasm_start(&r, 0);
	/* Beyond the window: dropped and flagged, never silently. */
	assert_true(reasm_add(&r, 0, big, sizeof(big)) & REASM_F_LOST);
	reasm_peek(&r, &n);
	assert_int_equal(n, 256);
	assert_true(reasm_full(&r));
	assert_true(reasm_memory(&r) <= 256);
	reasm_release(&r);

	reasm_init(&r, 256);
	reasm_start(&r, 0);
	/* Out of order beyond the window (a hole in front). */
	assert_true(reasm_add(&r, 1000, big, 10) & REASM_F_LOST);
	reasm_release(&r);
}

static void test_island_bound(void **state)
{
	struct reasm r;
	unsigned int i, fl = 0;

	reasm_init(&r, 4096);
	reasm_start(&r, 0);
	/* Every other byte: one island each, until the bound. */
	for (i = 0; i < 2 * (REASM_MAX_HOLES + 4); i += 2)
		fl |= reasm_add(&r, 1 + i, (const uint8_t *)"x", 1);
	assert_true(fl & REASM_F_LOST);
	assert_true(r.n_isl <= REASM_MAX_HOLES);
	reasm_release(&r);
}

static void test_skip_ahead(void **state)
{
	struct reasm r;
	const uint8_t *p;
	size_t n;

	reasm_init(&r, 64);
	reasm_start(&r, 10);
	reasm_add(&r, 10, (const uint8_t *)"BDAT 5\r\n", 8);
	reasm_skip(&r, 8);
	/* The chunk has not arrived yet: skip it as it comes. */
	reasm_skip(&r, 5);
	reasm_add(&r, 18, (const uint8_t *)"abcdeQUIT\r\n", 11);
	p = reasm_peek(&r, &n);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "QUIT\r\n", 6);
	reasm_skip(&r, REASM_MAX_SKIP + 1ull);
	assert_true(r.flags & REASM_F_LOST);
	reasm_release(&r);
}

static void test_fin(void **state)
{
	struct reasm r;
	size_t n;

	reasm_init(&r, 64);
	reasm_start(&r, 0);
	reasm_add(&r, 0, (const uint8_t *)"QUIT\r\n", 6);
	reasm_add_fin(&r, 6);
	assert_false(reasm_eof(&r));
	reasm_peek(&r, &n);
	reasm_skip(&r, n);
	assert_true(reasm_eof(&r));
	reasm_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_wraparound),
		cmocka_unit_test(test_reversed_single_bytes),
		cmocka_unit_test(test_duplicates_same_bytes),
		cmocka_unit_test(test_overlap_different_bytes_buffered),
		cmocka_unit_test(test_overlap_different_bytes_consumed),
		cmocka_unit_test(test_window_bound),
		cmocka_unit_test(test_island_bound),
		cmocka_unit_test(test_skip_ahead),
		cmocka_unit_test(test_fin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
