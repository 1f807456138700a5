/* test_smtp_parse.c - SMTP line parsing: framing (CRLF, bare LF, partial),
 * verbs, replies, paths with quoted local parts and null sender, EHLO
 * keywords, BDAT arguments; truncated and bogus input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_parse.h"

static void test_line_next(void **state)
{
	size_t ll, total;
	bool bare;
	const char *crlf = "EHLO x\r\nrest", *lf = "EHLO x\nrest";

	assert_int_equal(smtp_line_next((const uint8_t *)crlf, strlen(crlf), &ll, &total, &bare), 0);
	assert_int_equal(ll, 6);
	assert_int_equal(total, 8);
	assert_false(bare);
	assert_int_equal(smtp_line_next((const uint8_t *)lf, strlen(lf), &ll, &total, &bare), 0);
	assert_int_equal(ll, 6);
	assert_int_equal(total, 7);
	assert_true(bare);
	/* Every truncation before the LF: no line yet. */
	for (size_t n = 0; n < 7; n++)
		assert_int_equal(smtp_line_next((const uint8_t *)crlf, n, &ll, &total, &bare), -EAGAIN);
}

static void test_command_parse(void **state)
{
	struct smtp_command c;

	assert_int_equal(smtp_command_parse("mail FROM:<a@b>", 15, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_int_equal(c.arg_len, 10);
	assert_memory_equal(c.arg, "FROM:<a@b>", 10);
	assert_int_equal(smtp_command_parse("StartTLS  ", 10, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_STARTTLS);
	assert_int_equal(c.arg_len, 0);
	assert_int_equal(smtp_command_parse("STARTTLSX", 9, &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_UNKNOWN);
	assert_int_equal(smtp_command_parse("   ", 3, &c), -EINVAL);
	assert_int_equal(smtp_command_parse("", 0, &c), -EINVAL);
	/* Whitespace as Postfix's smtpd tokenizer sees it (isspace()): before
	 * the verb and between the words, a MAIL is a MAIL. */
	assert_int_equal(smtp_command_parse(" \tMAIL FROM:<a@b>", strlen(" \tMAIL FROM:<a@b>"), &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_memory_equal(c.arg, "FROM:<a@b>", 10);
	assert_int_equal(smtp_command_parse("\vMail\fFROM:<a@b>\r", strlen("\vMail\fFROM:<a@b>\r"), &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_int_equal(c.arg_len, 10);
	assert_memory_equal(c.arg, "FROM:<a@b>", 10);
	assert_int_equal(smtp_command_parse("\rRCPT\vTO:<a@b>", strlen("\rRCPT\vTO:<a@b>"), &c), 0);
	assert_int_equal(c.verb, SMTP_VERB_RCPT);
	assert_int_equal(smtp_command_parse(" \v\f\r", 4, &c), -EINVAL);
}

static void test_reply_parse(void **state)
{
	struct smtp_reply_line r;

	assert_int_equal(smtp_reply_parse("250-PIPELINING", 14, &r), 0);
	assert_int_equal(r.code, 250);
	assert_false(r.last);
	assert_int_equal(r.text_len, 10);
	assert_int_equal(smtp_reply_parse("220", 3, &r), 0);
	assert_true(r.last);
	assert_int_equal(smtp_reply_parse("454 4.7.0 no", 12, &r), 0);
	assert_int_equal(r.code, 454);
	assert_true(r.last);
	assert_int_equal(smtp_reply_parse("25", 2, &r), -EINVAL);
	assert_int_equal(smtp_reply_parse("2500", 4, &r), -EINVAL);
	/* Any three digits: Postfix's client takes "650 x" as the (failed)
	 * reply, so the next reply answers the next command. */
	assert_int_equal(smtp_reply_parse("650 x", 5, &r), 0);
	assert_int_equal(r.code, 650);
	assert_int_equal(smtp_reply_parse("099-x", 5, &r), 0);
	assert_int_equal(r.code, 99);
	assert_false(r.last);
	assert_int_equal(smtp_reply_parse("250x", 4, &r), -EINVAL);
	assert_int_equal(smtp_reply_parse("SSH-2.0-OpenSSH_9.2", 19, &r), -EINVAL);
	assert_int_equal(smtp_reply_parse("* OK IMAP", 9, &r), -EINVAL);
	assert_int_equal(smtp_reply_parse("+OK", 3, &r), -EINVAL);
}

static int path(const char *arg, const char *prefix, char *addr, size_t size, const char **params)
{
	size_t plen;
	bool trunc;

	return smtp_path_parse(arg, strlen(arg), prefix, addr, size, &trunc, params, &plen);
}

static void test_path_parse(void **state)
{
	char a[64];
	const char *params;
	bool trunc;
	size_t plen;

	assert_int_equal(path("FROM:<a@example.org> SIZE=10", "FROM:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "a@example.org");
	assert_string_equal(params, "SIZE=10");
	assert_int_equal(path("from: <>", "FROM:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "");
	assert_int_equal(path("To:<\"x > y\\\"z\"@example.net> NOTIFY=NEVER", "TO:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "\"x > y\\\"z\"@example.net");
	assert_string_equal(params, "NOTIFY=NEVER");
	assert_int_equal(path("TO : b@example.net", "TO:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "b@example.net");
	assert_int_equal(path("FROM\t:\v<c@example.org>\tSIZE=1", "FROM:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "c@example.org");
	assert_string_equal(params, "SIZE=1");
	assert_int_equal(path("TO:\td@example.net\fNOTIFY=NEVER", "TO:", a, sizeof(a), &params), 0);
	assert_string_equal(a, "d@example.net");
	assert_int_equal(path("FROM:<unterminated", "FROM:", a, sizeof(a), &params), -EINVAL);
	assert_int_equal(path("FROM:<\"quoted>", "FROM:", a, sizeof(a), &params), -EINVAL);
	assert_int_equal(path("TO:<a@b>", "FROM:", a, sizeof(a), &params), -EINVAL);
	assert_int_equal(path("FROM:", "FROM:", a, sizeof(a), &params), -EINVAL);
	/* Truncated to the buffer, and said so. */
	assert_int_equal(smtp_path_parse("FROM:<abcdefghij@example.org>", 29, "FROM:", a, 5, &trunc, &params, &plen), 0);
	assert_true(trunc);
	assert_string_equal(a, "abcd");
}

static void test_ehlo_keywords(void **state)
{
	assert_int_equal(smtp_ehlo_keyword("STARTTLS", 8), SMTP_CAP_STARTTLS);
	assert_int_equal(smtp_ehlo_keyword("starttls", 8), SMTP_CAP_STARTTLS);
	assert_int_equal(smtp_ehlo_keyword("SIZE 10240000", 13), SMTP_CAP_SIZE);
	assert_int_equal(smtp_ehlo_keyword("AUTH=LOGIN", 10), SMTP_CAP_AUTH);
	assert_int_equal(smtp_ehlo_keyword("STARTTLSX", 9), SMTP_CAP_OTHER);
	assert_int_equal(smtp_ehlo_keyword("", 0), 0);
	assert_string_equal(smtp_cap_name(SMTP_CAP_REQUIRETLS), "REQUIRETLS");
}

static void test_bdat_parse(void **state)
{
	uint64_t size;
	bool last;

	assert_int_equal(smtp_bdat_parse("1000 LAST", 9, &size, &last), 0);
	assert_int_equal(size, 1000);
	assert_true(last);
	assert_int_equal(smtp_bdat_parse("0", 1, &size, &last), 0);
	assert_int_equal(size, 0);
	assert_false(last);
	assert_int_equal(smtp_bdat_parse("12 FIRST", 8, &size, &last), -EINVAL);
	assert_int_equal(smtp_bdat_parse("-1", 2, &size, &last), -EINVAL);
	assert_int_equal(smtp_bdat_parse("", 0, &size, &last), -EINVAL);
	assert_int_equal(smtp_bdat_parse("99999999999999999999999", 23, &size, &last), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_next),	  cmocka_unit_test(test_command_parse),
		cmocka_unit_test(test_reply_parse),	  cmocka_unit_test(test_path_parse),
		cmocka_unit_test(test_ehlo_keywords),	  cmocka_unit_test(test_bdat_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
