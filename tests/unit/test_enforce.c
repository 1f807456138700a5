/* test_enforce.c - the refusal the gateway injects: one reply per pipelined
 * command, and TCP segments (IPv4 and IPv6) that parse back to what was
 * meant with valid checksums. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "enforce.h"
#include "flowkey.h"
#include "smtp_parse.h"

#define REFUSAL "550 5.7.4 Security features not supported: secure-mode sender, no TLS to mx.example.net"

/* Replies for a segment read line by line (as for a segment the session
 * did not parse). */
static int replies_for_lines(const char *payload, size_t len, char *out, size_t size)
{
	static uint16_t verbs[ENFORCE_VERBS_MAX];
	bool over;
	struct enforce_verbs v = { verbs, 0 };
	v.n = enforce_verbs_from_lines((const uint8_t *)payload, len, verbs, ENFORCE_VERBS_MAX,
				       &over);
	assert_false(over);
	return enforce_build_replies(&v, REFUSAL, out, size);
}

static void test_replies_single_command(void **state)
{
	char out[512];
	const char *cmd = "MAIL FROM:<a@secure.example.org>\r\n";
	int n = replies_for_lines(cmd, strlen(cmd), out, sizeof(out));
	assert_int_equal(n, strlen(REFUSAL) + 2);
	assert_string_equal(out, REFUSAL "\r\n");
}

static void test_replies_pipelined_group(void **state)
{
	char out[1024];
	const char *cmd = "MAIL FROM:<a@secure.example.org>\r\nrcpt TO:<b@example.net>\r\n"
			  "RCPT TO:<c@example.net>\r\nDATA\r\n";
	int n = replies_for_lines(cmd, strlen(cmd), out, sizeof(out));
	assert_true(n > 0);
	assert_string_equal(out, REFUSAL "\r\n"
				 "503 5.5.1 Error: need MAIL command\r\n"
				 "503 5.5.1 Error: need MAIL command\r\n"
				 "554 5.5.1 Error: no valid recipients\r\n");
}

static void test_replies_partial_line_and_bare_lf(void **state)
{
	char out[1024];
	const char *cmd = "MAIL FROM:<a@x>\nQUIT\nRCPT TO:<b"; /* last line incomplete */
	int n = replies_for_lines(cmd, strlen(cmd), out, sizeof(out));
	assert_true(n > 0);
	assert_string_equal(out, REFUSAL "\r\n221 2.0.0 Bye\r\n");
	/* Nothing complete at all: the refusal still goes out once. */
	n = replies_for_lines("MAIL FR", 7, out, sizeof(out));
	assert_string_equal(out, REFUSAL "\r\n");
}

/* RFC 2920: the end of a message's content may lead a pipelined group.
 * What the session parsed is what gets replies: the content none, the end
 * of data a temporary 451 (that message never reached the server), the
 * refused MAIL the refusal. */
static void test_replies_end_of_data_first(void **state)
{
	char out[1024];
	const uint16_t verbs[] = { SMTP_VERB_END_OF_DATA, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
				   SMTP_VERB_DATA };
	struct enforce_verbs v = { verbs, 4 };
	assert_true(enforce_build_replies(&v, REFUSAL, out, sizeof(out)) > 0);
	assert_true(strncmp(out, "451 4.3.0 ", 10) == 0);
	const char *rest = strstr(out, "\r\n");
	assert_non_null(rest);
	assert_string_equal(rest + 2, REFUSAL "\r\n"
				      "503 5.5.1 Error: need MAIL command\r\n"
				      "554 5.5.1 Error: no valid recipients\r\n");
	/* An end of data with no command after it gets the refusal itself. */
	v.n = 1;
	assert_true(enforce_build_replies(&v, REFUSAL, out, sizeof(out)) > 0);
	assert_string_equal(out, REFUSAL "\r\n");
	/* BDAT (RFC 3030): the end of a chunk, the last chunk, then the
	 * refused MAIL: both chunks 451, then as above. */
	const uint16_t bdat[] = { SMTP_VERB_END_OF_DATA, SMTP_VERB_BDAT, SMTP_VERB_MAIL,
				  SMTP_VERB_RCPT, SMTP_VERB_BDAT };
	struct enforce_verbs vb = { bdat, 5 };
	assert_true(enforce_build_replies(&vb, REFUSAL, out, sizeof(out)) > 0);
	const char *p = out;
	for (int i = 0; i < 2; i++) {
		assert_true(strncmp(p, "451 4.3.0 ", 10) == 0);
		p = strstr(p, "\r\n") + 2;
	}
	assert_string_equal(p, REFUSAL "\r\n"
			       "503 5.5.1 Error: need MAIL command\r\n"
			       "554 5.5.1 Error: no valid recipients\r\n");
	/* A refused BDAT with no MAIL in the segment (a secure recipient)
	 * gets the refusal itself. */
	vb.verb = bdat + 4;
	vb.n = 1;
	assert_true(enforce_build_replies(&vb, REFUSAL, out, sizeof(out)) > 0);
	assert_string_equal(out, REFUSAL "\r\n");
}

static void test_replies_bounded(void **state)
{
	char out[64];
	const char *cmd = "MAIL FROM:<a@x>\r\n";
	assert_int_equal(replies_for_lines(cmd, strlen(cmd), out, sizeof(out)), -ENOSPC);
	/* Hundreds of pipelined RCPTs: one reply each, within the bound. */
	static char big[8192] = "MAIL FROM:<a@x>\r\n";
	size_t rcpts = 0;
	while (strlen(big) < sizeof(big) - 32) {
		strcat(big, "RCPT TO:<b@y>\r\n");
		rcpts++;
	}
	static char out2[ENFORCE_REPLY_MAX];
	int n = replies_for_lines(big, strlen(big), out2, sizeof(out2));
	assert_int_equal(n, strlen(REFUSAL) + 2 + rcpts * strlen("503 5.5.1 Error: need MAIL command\r\n"));
	/* More commands than recorded: flagged (the daemon resets instead). */
	static char huge[ENFORCE_VERBS_MAX * 6 + 16];
	huge[0] = '\0';
	for (size_t i = 0; i <= ENFORCE_VERBS_MAX; i++)
		strcat(huge, "NOOP\r\n");
	static uint16_t verbs[ENFORCE_VERBS_MAX];
	bool over;
	assert_int_equal(enforce_verbs_from_lines((const uint8_t *)huge, strlen(huge), verbs,
						  ENFORCE_VERBS_MAX, &over),
			 ENFORCE_VERBS_MAX);
	assert_true(over);
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t sum16(const uint8_t *p, size_t len)
{
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)(p[len - 1] << 8);
	return s;
}

static void roundtrip(int family, const char *src, const char *dst)
{
	uint8_t sa[16] = { 0 }, da[16] = { 0 }, pkt[ENFORCE_PACKET_MAX];
	if (family == AF_INET) {
		sa[10] = sa[11] = da[10] = da[11] = 0xff;
		inet_pton(AF_INET, src, sa + 12);
		inet_pton(AF_INET, dst, da + 12);
	} else {
		inet_pton(AF_INET6, src, sa);
		inet_pton(AF_INET6, dst, da);
	}
	const char *reply = "451 4.7.5 test\r\n";
	int n = enforce_build_segment(family, sa, 25, da, 40000, 0xfffffff0u, 1234, 0x19, reply,
				      strlen(reply), pkt, sizeof(pkt));
	assert_true(n > 0);
	struct port_set ports;
	port_set_clear(&ports);
	port_set_add(&ports, 25);
	struct flowkey_packet p;
	assert_int_equal(flowkey_from_ip(pkt, (size_t)n, &ports, &p), 0);
	assert_int_equal(p.family, family);
	assert_int_equal(p.dir, TLSGATE_DIR_TO_CLIENT);
	assert_memory_equal(p.saddr, sa, 16);
	assert_memory_equal(p.daddr, da, 16);
	assert_int_equal(p.sport, 25);
	assert_int_equal(p.dport, 40000);
	assert_int_equal(p.seq, 0xfffffff0u);
	assert_int_equal(p.ack, 1234);
	assert_int_equal(p.flags, 0x19);
	assert_int_equal(p.payload_len, strlen(reply));
	assert_memory_equal(p.payload, reply, strlen(reply));
	/* Checksums verify: the one's complement sum over header (IPv4) and
	 * pseudo-header + segment is all ones. */
	size_t iphl = family == AF_INET ? 20 : 40, tcplen = (size_t)n - iphl;
	uint32_t s = family == AF_INET ? sum16(pkt + 12, 8) : sum16(pkt + 8, 32);
	s += IPPROTO_TCP + (uint32_t)tcplen + sum16(pkt + iphl, tcplen);
	assert_int_equal(fold(s), 0xffff);
	if (family == AF_INET)
		assert_int_equal(fold(sum16(pkt, 20)), 0xffff);
}

static void test_segment_ipv4(void **state) { roundtrip(AF_INET, "198.51.100.20", "192.0.2.10"); }
static void test_segment_ipv6(void **state) { roundtrip(AF_INET6, "2001:db8:2::20", "2001:db8:1::10"); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies_single_command),
		cmocka_unit_test(test_replies_pipelined_group),
		cmocka_unit_test(test_replies_partial_line_and_bare_lf),
		cmocka_unit_test(test_replies_end_of_data_first),
		cmocka_unit_test(test_replies_bounded),
		cmocka_unit_test(test_segment_ipv4),
		cmocka_unit_test(test_segment_ipv6),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
