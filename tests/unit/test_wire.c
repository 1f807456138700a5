/* test_wire.c - the session believes only the bytes a receiver reads
 * (DESIGN.md threat model, rule 1; issue 17 findings 4, 5 and 6): a
 * segment with a bad TCP checksum, a reset out of sequence, data on a
 * SYN, TCP urgent data. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "csum.h"
#include "enforce.h"
#include "flowkey.h"
#include "session.h"
#include "smtp_parse.h"

#define CL TLSGATE_DIR_TO_SERVER
#define SV TLSGATE_DIR_TO_CLIENT

/* ---- checksums ---- */

static void build(int af, const char *payload, uint8_t *out, size_t *len,
		  struct flowkey_packet *p)
{
	uint8_t sa[16] = { 0 }, da[16] = { 0 };
	struct port_set ports;

	if (af == AF_INET) {
		sa[10] = sa[11] = da[10] = da[11] = 0xff;
		inet_pton(AF_INET, "192.0.2.10", sa + 12);
		inet_pton(AF_INET, "198.51.100.25", da + 12);
	} else {
		inet_pton(AF_INET6, "2001:db8::10", sa);
		inet_pton(AF_INET6, "2001:db8:1::25", da);
	}
	int n = enforce_build_segment(af, sa, 40000, da, 25, 1000, 2000, 0x18, payload,
				      strlen(payload), out, 2048);
	assert_true(n > 0);
	*len = (size_t)n;
	port_set_clear(&ports);
	port_set_add(&ports, 25);
	assert_int_equal(flowkey_from_ip(out, *len, &ports, p), 0);
}

static void test_checksum(void **state)
{
	static const int afs[] = { AF_INET, AF_INET6 };
	/* odd and even lengths: the last byte pads */
	static const char *payloads[] = { "MAIL FROM:<a@secure.example.org>\r\n",
					  "MAIL FROM:<a@secure.example.org> \r\n", "" };

	for (size_t a = 0; a < 2; a++)
		for (size_t i = 0; i < 3; i++) {
			uint8_t pkt[2048];
			size_t len;
			struct flowkey_packet p;

			build(afs[a], payloads[i], pkt, &len, &p);
			assert_true(csum_tcp_ok(pkt, len, &p));
			/* any one byte of the TCP segment changed: refused */
			for (size_t k = p.l4_offset; k < len; k++) {
				pkt[k] ^= 0x20;
				assert_false(csum_tcp_ok(pkt, len, &p));
				pkt[k] ^= 0x20;
			}
			/* the pseudo header counts: another address, another sum */
			p.daddr[15] ^= 1;
			assert_false(csum_tcp_ok(pkt, len, &p));
			p.daddr[15] ^= 1;
			/* a full checksum is not "partial" */
			assert_false(csum_tcp_partial(pkt, len, &p));
		}
}

/* What a sender's checksum offload leaves (CHECKSUM_PARTIAL): the field
 * holds the pseudo header's folded sum, as Linux's __tcp_v4_send_check
 * writes it; a receiver on the same host takes it, csum_tcp_ok() does not.
 * Any other wrong value is neither. */
static void test_checksum_partial(void **state)
{
	static const int afs[] = { AF_INET, AF_INET6 };
	for (size_t a = 0; a < 2; a++) {
		uint8_t pkt[2048];
		size_t len;
		struct flowkey_packet p;

		build(afs[a], "RCPT TO:<b@example.net>\r\n", pkt, &len, &p);
		size_t tcp_len = len - p.l4_offset;
		uint32_t sum = afs[a] == AF_INET ? csum_add(csum_add(0, p.saddr + 12, 4), p.daddr + 12, 4)
						 : csum_add(csum_add(0, p.saddr, 16), p.daddr, 16);
		sum += 6 + (uint32_t)tcp_len;
		uint16_t pseudo = (uint16_t)~csum_fold(sum);
		uint8_t *field = pkt + p.l4_offset + 16;
		field[0] = (uint8_t)(pseudo >> 8);
		field[1] = (uint8_t)pseudo;
		assert_false(csum_tcp_ok(pkt, len, &p));
		assert_true(csum_tcp_partial(pkt, len, &p));
		field[1] ^= 0x5a; /* a forged or damaged value */
		assert_false(csum_tcp_ok(pkt, len, &p));
		assert_false(csum_tcp_partial(pkt, len, &p));
		/* too short to hold a TCP header: never */
		assert_false(csum_tcp_partial(pkt, p.l4_offset + 10, &p));
	}
}

/* ---- the session ---- */

struct cmds {
	int verbs[16];
	char addr[16][128];
	int n;
};

static void on_cmd(void *arg, int verb, const char *addr)
{
	struct cmds *c = arg;

	if (c->n < 16) {
		c->verbs[c->n] = verb;
		snprintf(c->addr[c->n], sizeof(c->addr[0]), "%s", addr);
		c->n++;
	}
}

struct run {
	struct session *s;
	struct cmds cmds;
	uint32_t seq[2];
	enum session_action last;
};

static void seg(struct run *r, int dir, uint32_t seq, uint32_t ack, const char *p, uint8_t flags)
{
	size_t n = p ? strlen(p) : 0;
	struct tcp_segment g = { .dir = dir, .seq = seq, .ack = ack, .flags = flags,
				 .payload = (const uint8_t *)p, .len = n };

	r->last = session_segment(r->s, &g);
}

/* Sends p in order from dir. */
static void say(struct run *r, int dir, const char *p)
{
	seg(r, dir, r->seq[dir], r->seq[!dir], p, SESSION_TCP_ACK | SESSION_TCP_PSH);
	r->seq[dir] += (uint32_t)strlen(p);
}

static void start(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->s = session_new(NULL, false);
	assert_non_null(r->s);
	session_set_command_cb(r->s, on_cmd, &r->cmds);
	r->seq[CL] = 0x10000;
	r->seq[SV] = 0x90000;
	seg(r, CL, r->seq[CL]++, 0, NULL, SESSION_TCP_SYN);
	seg(r, SV, r->seq[SV]++, r->seq[CL], NULL, SESSION_TCP_SYN | SESSION_TCP_ACK);
	seg(r, CL, r->seq[CL], r->seq[SV], NULL, SESSION_TCP_ACK);
	say(r, SV, "220 mx.example.net ESMTP\r\n");
	say(r, CL, "EHLO client.example.com\r\n");
	say(r, SV, "250-mx.example.net\r\n250 PIPELINING\r\n");
}

/* A spoofed reset in the middle of a MAIL FROM sent in pieces (small
 * window): Linux answers it with a challenge ACK and reads the whole
 * line; the session must read it too. */
static void test_rst_out_of_sequence_ignored(void **state)
{
	static const uint32_t offsets[] = { 1, 5, 100, 0x7fffffff, 0xffffffff };

	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		struct run r;

		start(&r);
		say(&r, CL, "MAIL FROM:<alice@se");
		seg(&r, CL, r.seq[CL] + offsets[i], 0, NULL, SESSION_TCP_RST);
		assert_int_not_equal(r.last, SESSION_CLOSED);
		seg(&r, SV, r.seq[SV] + offsets[i], 0, NULL, SESSION_TCP_RST | SESSION_TCP_ACK);
		assert_int_not_equal(r.last, SESSION_CLOSED);
		say(&r, CL, "cure.example.org>\r\n");
		assert_int_equal(r.cmds.n, 2); /* EHLO, MAIL */
		assert_int_equal(r.cmds.verbs[1], SMTP_VERB_MAIL);
		assert_string_equal(r.cmds.addr[1], "alice@secure.example.org");
		session_free(r.s);
	}
}

/* A reset exactly where the receiver expects the next byte ends it. */
static void test_rst_in_sequence_closes(void **state)
{
	for (int dir = 0; dir < 2; dir++) {
		struct run r;

		start(&r);
		say(&r, CL, "MAIL FROM:<a@example.com>\r\n");
		seg(&r, dir ? SV : CL, r.seq[dir ? SV : CL], 0, NULL, SESSION_TCP_RST);
		assert_int_equal(r.last, SESSION_CLOSED);
		session_free(r.s);
	}
	/* After a FIN with nothing missing before it: at the FIN's sequence
	 * number plus one, and at the FIN's own number (Linux in CLOSE_WAIT:
	 * a client that closed and then got the server's data resets with
	 * the number that data acknowledged, sent before the FIN arrived). */
	for (uint32_t off = 0; off < 2; off++) {
		struct run r;

		start(&r);
		say(&r, CL, "QUIT\r\n");
		seg(&r, CL, r.seq[CL], r.seq[SV], NULL, SESSION_TCP_FIN | SESSION_TCP_ACK);
		seg(&r, CL, r.seq[CL] - 1, 0, NULL, SESSION_TCP_RST);
		assert_int_not_equal(r.last, SESSION_CLOSED);
		seg(&r, CL, r.seq[CL] + 2, 0, NULL, SESSION_TCP_RST);
		assert_int_not_equal(r.last, SESSION_CLOSED);
		seg(&r, CL, r.seq[CL] + off, 0, NULL, SESSION_TCP_RST);
		assert_int_equal(r.last, SESSION_CLOSED);
		session_free(r.s);
	}
}

/* A FIN behind a hole has not reached the receiver's stream: it expects
 * the hole's first byte, and a reset counts there and nowhere else. */
static void test_rst_after_fin_behind_hole(void **state)
{
	struct run r;
	uint32_t hole = 0;

	start(&r);
	hole = r.seq[CL];
	seg(&r, CL, hole + 5, r.seq[SV], "FROM:<a@secure.example.org>\r\n",
	    SESSION_TCP_ACK | SESSION_TCP_PSH);
	r.seq[CL] = hole + 5 + 29;
	seg(&r, CL, r.seq[CL], r.seq[SV], NULL, SESSION_TCP_FIN | SESSION_TCP_ACK);
	seg(&r, CL, r.seq[CL] + 1, 0, NULL, SESSION_TCP_RST);
	assert_int_not_equal(r.last, SESSION_CLOSED);
	seg(&r, CL, r.seq[CL], 0, NULL, SESSION_TCP_RST);
	assert_int_not_equal(r.last, SESSION_CLOSED);
	/* the hole filled: the FIN is in the stream, the line is read */
	seg(&r, CL, hole, r.seq[SV], "MAIL ", SESSION_TCP_ACK | SESSION_TCP_PSH);
	assert_int_equal(r.cmds.n, 2); /* EHLO, MAIL */
	assert_string_equal(r.cmds.addr[1], "a@secure.example.org");
	seg(&r, CL, r.seq[CL], 0, NULL, SESSION_TCP_RST);
	assert_int_equal(r.last, SESSION_CLOSED);
	session_free(r.s);

	/* before the hole is filled, a reset at its first byte counts */
	start(&r);
	hole = r.seq[CL];
	seg(&r, CL, hole + 5, r.seq[SV], "FROM:<a@secure.example.org>\r\n",
	    SESSION_TCP_ACK | SESSION_TCP_PSH);
	seg(&r, CL, hole + 5 + 29, r.seq[SV], NULL, SESSION_TCP_FIN | SESSION_TCP_ACK);
	seg(&r, CL, hole, 0, NULL, SESSION_TCP_RST);
	assert_int_equal(r.last, SESSION_CLOSED);
	session_free(r.s);
}

/* Data on the client's SYN: a server without TCP Fast Open drops it (its
 * SYN-ACK acknowledges the SYN alone) and the client sends it again; the
 * session must neither read it twice nor read it where the server did
 * not. One that acknowledges the data read bytes the session held out:
 * that is flagged for the policy. */
static void test_syn_data(void **state)
{
	for (int accepted = 0; accepted < 2; accepted++) {
		struct run r;
		const char *decoy = "MAIL FROM:<decoy@example.com>\r\n";

		memset(&r, 0, sizeof(r));
		r.s = session_new(NULL, false);
		session_set_command_cb(r.s, on_cmd, &r.cmds);
		r.seq[CL] = 0x10000;
		r.seq[SV] = 0x90000;
		seg(&r, CL, r.seq[CL]++, 0, decoy, SESSION_TCP_SYN);
		assert_true(session_in_handshake(r.s));
		uint32_t ack = r.seq[CL] + (accepted ? (uint32_t)strlen(decoy) : 0);
		seg(&r, SV, r.seq[SV]++, ack, NULL, SESSION_TCP_SYN | SESSION_TCP_ACK);
		unsigned int anom = session_info(r.s)->anomalies;
		if (accepted) {
			assert_true(anom & SESSION_ANOM_UNSEEN_DATA);
			session_free(r.s);
			continue;
		}
		assert_false(anom & SESSION_ANOM_UNSEEN_DATA);
		say(&r, SV, "220 mx.example.net ESMTP\r\n");
		say(&r, CL, "EHLO c\r\n");
		say(&r, SV, "250 mx.example.net\r\n");
		say(&r, CL, "MAIL FROM:<alice@secure.example.org>\r\n");
		assert_int_equal(r.cmds.n, 2);
		assert_string_equal(r.cmds.addr[1], "alice@secure.example.org");
		assert_false(session_info(r.s)->anomalies & SESSION_ANOM_UNSEEN_DATA);
		session_free(r.s);
	}
}

/* TCP urgent data: which byte the receiver drops depends on its stack. */
static void test_urgent_flagged(void **state)
{
	struct run r;

	start(&r);
	assert_false(session_info(r.s)->anomalies & SESSION_ANOM_URGENT_DATA);
	seg(&r, CL, r.seq[CL], r.seq[SV], "MAIL FROM:<a@vaXult.example.org>\r\n",
	    SESSION_TCP_ACK | SESSION_TCP_URG);
	assert_true(session_info(r.s)->anomalies & SESSION_ANOM_URGENT_DATA);
	session_free(r.s);
}

/* A flow still in its handshake may see its SYN again; one that has
 * carried data may not (issue 17 finding 6: a new connection on the same
 * addresses, ports and initial sequence number is a new flow). */
static void test_in_handshake(void **state)
{
	struct run r;

	start(&r);
	assert_false(session_in_handshake(r.s));
	session_free(r.s);

	struct session *s = session_new(NULL, false);
	struct tcp_segment syn = { .dir = CL, .seq = 7, .flags = SESSION_TCP_SYN };
	session_segment(s, &syn);
	assert_true(session_in_handshake(s));
	struct tcp_segment sa = { .dir = SV, .seq = 70, .ack = 8,
				  .flags = SESSION_TCP_SYN | SESSION_TCP_ACK };
	session_segment(s, &sa);
	assert_true(session_in_handshake(s));
	struct tcp_segment fin = { .dir = CL, .seq = 8, .flags = SESSION_TCP_FIN };
	session_segment(s, &fin);
	assert_false(session_in_handshake(s));
	session_free(s);
	assert_false(session_in_handshake(NULL));
}

/* Picked up mid-stream (evicted, expired, a daemon restart): the session
 * reads on in plaintext, and says so, so that the policy layer knows that
 * a MAIL FROM before the pick-up (or a line cut by it) was never seen. */
static void test_midstream_plaintext(void **state)
{
	struct run r;

	memset(&r, 0, sizeof(r));
	r.s = session_new(NULL, true);
	session_set_command_cb(r.s, on_cmd, &r.cmds);
	r.seq[CL] = 0x10000;
	r.seq[SV] = 0x90000;
	say(&r, CL, "cure.example.org>\r\n");
	say(&r, SV, "250 2.1.0 Ok\r\n");
	say(&r, CL, "RCPT TO:<bob@example.net>\r\n");
	say(&r, SV, "250 2.1.5 Ok\r\n");
	const struct session_info *si = session_info(r.s);
	assert_true(si->anomalies & SESSION_ANOM_MIDSTREAM);
	assert_int_equal(si->phase, SESSION_PHASE_SMTP);
	session_free(r.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_checksum_partial),
		cmocka_unit_test(test_rst_out_of_sequence_ignored),
		cmocka_unit_test(test_rst_in_sequence_closes),
		cmocka_unit_test(test_rst_after_fin_behind_hole),
		cmocka_unit_test(test_syn_data),
		cmocka_unit_test(test_urgent_flagged),
		cmocka_unit_test(test_in_handshake),
		cmocka_unit_test(test_midstream_plaintext),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
