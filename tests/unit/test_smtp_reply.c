/* test_smtp_reply.c - the probe's SMTP reply reader on hostile input: split
 * at every byte boundary, truncated, oversized, mixed codes, and bytes that
 * follow a reply (the STARTTLS injection case) left for the caller. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../probe/smtp_reply.h" /* probe/ is not on the include path */

static const char ehlo[] = "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";

/* Feeds s in two pieces split at `at`; returns the first reply's rc and
 * the bytes consumed in total up to it. */
static int feed_split(const char *s, size_t len, size_t at, struct smtp_reply *r, size_t *total)
{
	struct smtp_reader rd;
	size_t used;
	int rc;

	smtp_reader_init(&rd);
	rc = smtp_reader_feed(&rd, (const uint8_t *)s, at, &used, r);
	*total = used;
	if (rc != 0)
		return rc;
	rc = smtp_reader_feed(&rd, (const uint8_t *)s + at, len - at, &used, r);
	*total += used;
	return rc;
}

static void test_multiline_split_everywhere(void **state)
{
	size_t len = strlen(ehlo), at, total;
	struct smtp_reply *r = malloc(sizeof(*r));
	char line[64];

	for (at = 0; at <= len; at++) {
		assert_int_equal(feed_split(ehlo, len, at, r, &total), 1);
		assert_int_equal(total, len);
		assert_int_equal(r->code, 250);
		assert_int_equal(r->n_lines, 4);
		assert_true(smtp_reply_line(r, 0, line, sizeof(line)));
		assert_string_equal(line, "mx.example.org");
		assert_true(smtp_reply_line(r, 3, line, sizeof(line)));
		assert_string_equal(line, "STARTTLS");
		assert_false(smtp_reply_line(r, 4, line, sizeof(line)));
	}
	free(r);
}

static void test_truncated_needs_more(void **state)
{
	struct smtp_reader rd;
	struct smtp_reply *r = malloc(sizeof(*r));
	size_t used, len = strlen(ehlo), n;

	/* Every proper prefix: no reply yet, everything taken. */
	for (n = 0; n < len; n++) {
		smtp_reader_init(&rd);
		assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)ehlo, n, &used, r), 0);
		assert_int_equal(used, n);
	}
	free(r);
}

static void test_following_bytes_left_for_caller(void **state)
{
	/* A 220 to STARTTLS followed by injected plaintext or a TLS record. */
	static const char s[] = "220 2.0.0 Ready\r\n250 injected\r\n";
	struct smtp_reader rd;
	struct smtp_reply *r = malloc(sizeof(*r));
	size_t used;

	smtp_reader_init(&rd);
	assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)s, strlen(s), &used, r), 1);
	assert_int_equal(used, strlen("220 2.0.0 Ready\r\n"));
	assert_int_equal(r->code, 220);
	assert_false(smtp_reader_busy(&rd));
	free(r);
}

static void test_bare_lf_and_code_only(void **state)
{
	static const char s[] = "421-a\n421\n";
	struct smtp_reply *r = malloc(sizeof(*r));
	size_t total;

	assert_int_equal(feed_split(s, strlen(s), 3, r, &total), 1);
	assert_int_equal(r->code, 421);
	assert_int_equal(r->n_lines, 2);
	free(r);
}

static void test_malformed_refused_and_sticky(void **state)
{
	static const char *const bad[] = {
		"250-a\r\n251 b\r\n", /* codes differ within one reply */
		"199 too low\r\n", "600 too high\r\n", "25 short\r\n", "2x0 digits\r\n",
		"250xfoo\r\n",	     /* neither ' ' nor '-' */
		"250 nul\0here\r\n", /* embedded NUL */
	};
	static const size_t lens[] = { 14, 13, 14, 10, 12, 9, 14 };
	struct smtp_reader rd;
	struct smtp_reply *r = malloc(sizeof(*r));
	size_t i, used;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		smtp_reader_init(&rd);
		assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)bad[i], lens[i], &used, r),
				 -EBADMSG);
		/* Errors are final. */
		assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)"250 ok\r\n", 8, &used, r),
				 -EBADMSG);
	}
	free(r);
}

static void test_oversized(void **state)
{
	struct smtp_reader rd;
	struct smtp_reply *r = malloc(sizeof(*r));
	char *big = malloc(SMTP_REPLY_LINE_MAX + 16);
	size_t used, i;

	/* A line of exactly the maximum is fine, one byte more is not. */
	memset(big, 'x', SMTP_REPLY_LINE_MAX + 16);
	memcpy(big, "250 ", 4);
	memcpy(big + SMTP_REPLY_LINE_MAX, "\r\n", 2);
	smtp_reader_init(&rd);
	assert_int_equal(smtp_reader_feed(&rd, (uint8_t *)big, SMTP_REPLY_LINE_MAX + 2, &used, r), 1);
	memset(big, 'x', SMTP_REPLY_LINE_MAX + 16);
	memcpy(big, "250 ", 4);
	memcpy(big + SMTP_REPLY_LINE_MAX + 1, "\r\n", 2);
	smtp_reader_init(&rd);
	assert_int_equal(smtp_reader_feed(&rd, (uint8_t *)big, SMTP_REPLY_LINE_MAX + 3, &used, r),
			 -EBADMSG);
	/* An endless line without a line end is refused once over the bound. */
	smtp_reader_init(&rd);
	memset(big, 'x', SMTP_REPLY_LINE_MAX + 16);
	assert_int_equal(smtp_reader_feed(&rd, (uint8_t *)big, SMTP_REPLY_LINE_MAX + 16, &used, r),
			 -EBADMSG);
	/* Too many lines in one reply. */
	smtp_reader_init(&rd);
	for (i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)"250-x\r\n", 7, &used, r), 0);
	assert_int_equal(smtp_reader_feed(&rd, (const uint8_t *)"250 x\r\n", 7, &used, r), -EBADMSG);
	free(big);
	free(r);
}

static void test_reordered_replies_one_at_a_time(void **state)
{
	static const char s[] = "220 hi\r\n250-a\r\n250 b\r\n354 go\r\n";
	static const int codes[] = { 220, 250, 354 };
	struct smtp_reader rd;
	struct smtp_reply *r = malloc(sizeof(*r));
	size_t off = 0, used, k = 0, len = strlen(s);

	smtp_reader_init(&rd);
	while (off < len) {
		int rc = smtp_reader_feed(&rd, (const uint8_t *)s + off, len - off, &used, r);

		assert_true(rc >= 0);
		off += used;
		if (rc == 1)
			assert_int_equal(r->code, codes[k++]);
	}
	assert_int_equal(k, 3);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_multiline_split_everywhere),
		cmocka_unit_test(test_truncated_needs_more),
		cmocka_unit_test(test_following_bytes_left_for_caller),
		cmocka_unit_test(test_bare_lf_and_code_only),
		cmocka_unit_test(test_malformed_refused_and_sticky),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_reordered_replies_one_at_a_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
