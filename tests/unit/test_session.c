/* test_session.c - the engine over whole dialogs, fed in hostile ways:
 * every split point, single bytes, swapped pieces, duplicates; STARTTLS
 * accepted / refused / injected, TLS 1.3, TLS 1.2 with a certificate
 * spanning records, HRR, alerts, bogus records, bounds, mid-stream pickup,
 * non-SMTP and implicit TLS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "reasm.h"
#include "session.h"
#include "summary.h"
#include "test_certs.h"
#include "smtp_parse.h"
#include "tls_build.h"

#define CL TLSGATE_DIR_TO_SERVER
#define SV TLSGATE_DIR_TO_CLIENT

struct step {
	int dir;
	const uint8_t *p;
	size_t len;
};

enum feed_mode { WHOLE, SPLIT, BYTES, SWAP, DUP };

struct run {
	struct session *s;
	enum session_action last;
	enum session_action max; /* "strongest" action seen */
	uint32_t seq[2];
};

static void seg(struct run *r, int dir, uint32_t seq, const uint8_t *p, size_t n, uint8_t flags)
{
	struct tcp_segment g = { .dir = dir, .seq = seq, .flags = flags, .payload = p, .len = n };

	r->last = session_segment(r->s, &g);
	if (r->last > r->max)
		r->max = r->last;
}

static void run_start(struct run *r, const struct session_limits *lim, bool midstream)
{
	memset(r, 0, sizeof(*r));
	r->s = session_new(lim, midstream);
	assert_non_null(r->s);
	r->seq[CL] = 0xfffffff0u; /* wraps during the dialog */
	r->seq[SV] = 5000;
	if (!midstream) {
		seg(r, CL, r->seq[CL]++, NULL, 0, SESSION_TCP_SYN);
		seg(r, SV, r->seq[SV]++, NULL, 0, SESSION_TCP_SYN | SESSION_TCP_ACK);
	}
}

static void feed_step(struct run *r, const struct step *st, enum feed_mode mode, size_t cut)
{
	uint32_t s0 = r->seq[st->dir];
	size_t i, k = cut < st->len ? cut : st->len;

	switch (mode) {
	case WHOLE:
		seg(r, st->dir, s0, st->p, st->len, SESSION_TCP_ACK);
		break;
	case SPLIT:
		seg(r, st->dir, s0, st->p, k, SESSION_TCP_ACK);
		seg(r, st->dir, s0 + (uint32_t)k, st->p + k, st->len - k, SESSION_TCP_ACK);
		break;
	case BYTES:
		for (i = 0; i < st->len; i++)
			seg(r, st->dir, s0 + (uint32_t)i, st->p + i, 1, SESSION_TCP_ACK);
		break;
	case SWAP:
		seg(r, st->dir, s0 + (uint32_t)k, st->p + k, st->len - k, SESSION_TCP_ACK);
		seg(r, st->dir, s0, st->p, k, SESSION_TCP_ACK);
		break;
	case DUP:
		seg(r, st->dir, s0, st->p, k, SESSION_TCP_ACK);
		seg(r, st->dir, s0, st->p, st->len, SESSION_TCP_ACK);
		seg(r, st->dir, s0, st->p, st->len, SESSION_TCP_ACK);
		break;
	}
	r->seq[st->dir] += (uint32_t)st->len;
}

static void run_steps(struct run *r, const struct step *steps, size_t n, enum feed_mode mode, size_t cut)
{
	size_t i;

	for (i = 0; i < n; i++)
		feed_step(r, &steps[i], mode, cut);
}

#define TXT(d, s) { d, (const uint8_t *)(s), sizeof(s) - 1 }

static const struct step dialog_head[] = {
	TXT(SV, "220 mx.example.net ESMTP\r\n"),
	TXT(CL, "EHLO client.example.org\r\n"),
	TXT(SV, "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 CHUNKING\r\n"),
	TXT(CL, "STARTTLS\r\n"),
};

static uint8_t ch_rec[600], sh13_rec[200];
static size_t ch_len, sh13_len;

static void build_tls13(void)
{
	uint8_t m[512];
	size_t n;

	n = tb_client_hello(m, "mx.example.net", true);
	ch_len = tb_record(ch_rec, 22, 0x0301, m, n);
	n = tb_server_hello(m, 0x1302, 0x0304, false);
	sh13_len = tb_record(sh13_rec, 22, 0x0303, m, n);
}

static size_t max_step(const struct step *steps, size_t n)
{
	size_t i, m = 0;

	for (i = 0; i < n; i++)
		if (steps[i].len > m)
			m = steps[i].len;
	return m;
}

static void check_tls13(const struct run *r)
{
	const struct session_info *i = session_info(r->s);

	assert_int_equal(r->last, SESSION_OFFLOAD);
	assert_int_equal(i->phase, SESSION_PHASE_TLS);
	assert_string_equal(i->ehlo_name, "client.example.org");
	assert_true(i->starttls_offered);
	assert_true(i->starttls_issued);
	assert_true(i->starttls_accepted);
	assert_int_equal(i->starttls_reply, 220);
	assert_int_equal(i->tls_version, 0x0304);
	assert_int_equal(i->tls_cipher, 0x1302);
	assert_string_equal(i->sni, "mx.example.net");
	assert_true(i->tls_judged);
	assert_false(i->tls_failed);
	assert_int_equal(i->anomalies, 0);
}

static void test_starttls_tls13_all_segmentations(void **state)
{
	struct step steps[7];
	enum feed_mode mode;
	size_t cut, maxlen;

	build_tls13();
	memcpy(steps, dialog_head, sizeof(dialog_head));
	steps[4] = (struct step)TXT(SV, "220 2.0.0 Ready to start TLS\r\n");
	steps[5] = (struct step){ CL, ch_rec, ch_len };
	steps[6] = (struct step){ SV, sh13_rec, sh13_len };
	maxlen = max_step(steps, 7);
	for (mode = WHOLE; mode <= DUP; mode++) {
		for (cut = 0; cut <= (mode == WHOLE || mode == BYTES ? 0 : maxlen); cut++) {
			struct run r;

			run_start(&r, NULL, false);
			run_steps(&r, steps, 6, mode, cut);
			/* Before the ServerHello nothing is judged. */
			assert_int_equal(r.last, SESSION_CONTINUE);
			run_steps(&r, steps + 6, 1, mode, cut);
			check_tls13(&r);
			session_free(r.s);
		}
	}
}

static void test_tls12_certificate_across_records(void **state)
{
	uint8_t msgs[4096], rec[4096];
	size_t n = 0, cut;

	n += tb_server_hello(msgs + n, 0xc02f, 0, false);
	n += tb_certificate(msgs + n, test_cert_der, sizeof(test_cert_der), 2);
	n += tb_server_hello_done(msgs + n);
	build_tls13();
	/* The flight cut into two records at every byte. */
	for (cut = 1; cut < n; cut++) {
		struct run r;
		struct step steps[7];
		size_t rl = 0, len;
		const uint8_t *der;
		const struct session_info *i;

		memcpy(steps, dialog_head, sizeof(dialog_head));
		steps[4] = (struct step)TXT(SV, "220 go ahead\r\n");
		steps[5] = (struct step){ CL, ch_rec, ch_len };
		rl += tb_record(rec + rl, 22, 0x0303, msgs, cut);
		rl += tb_record(rec + rl, 22, 0x0303, msgs + cut, n - cut);
		steps[6] = (struct step){ SV, rec, rl };
		run_start(&r, NULL, false);
		run_steps(&r, steps, 7, SPLIT, cut % 300);
		i = session_info(r.s);
		assert_int_equal(r.last, SESSION_OFFLOAD);
		assert_int_equal(i->tls_version, 0x0303);
		assert_int_equal(i->tls_cipher, 0xc02f);
		assert_int_equal(i->cert_count, 2);
		der = session_cert_der(r.s, 1, &len);
		assert_non_null(der);
		assert_int_equal(len, sizeof(test_cert_der));
		assert_memory_equal(der, test_cert_der, len);
		assert_null(session_cert_der(r.s, 2, &len));
		session_free(r.s);
	}
}

static void test_tls12_not_judged_before_server_hello_done(void **state)
{
	uint8_t msgs[2048], rec[2048];
	size_t n = 0, rl;
	struct run r;
	struct step steps[6];

	n += tb_server_hello(msgs + n, 0xc02f, 0, false);
	n += tb_certificate(msgs + n, test_cert_der, sizeof(test_cert_der), 1);
	build_tls13();
	memcpy(steps, dialog_head, sizeof(dialog_head));
	steps[4] = (struct step)TXT(SV, "220 go ahead\r\n");
	steps[5] = (struct step){ CL, ch_rec, ch_len };
	run_start(&r, NULL, false);
	run_steps(&r, steps, 6, WHOLE, 0);
	rl = tb_record(rec, 22, 0x0303, msgs, n);
	seg(&r, SV, r.seq[SV], rec, rl, SESSION_TCP_ACK);
	r.seq[SV] += (uint32_t)rl;
	/* The certificate is there, but the flight is not complete. */
	assert_int_equal(r.last, SESSION_CONTINUE);
	assert_int_equal(session_info(r.s)->cert_count, 1);
	n = tb_server_hello_done(msgs);
	rl = tb_record(rec, 22, 0x0303, msgs, n);
	seg(&r, SV, r.seq[SV], rec, rl, SESSION_TCP_ACK);
	assert_int_equal(r.last, SESSION_OFFLOAD);
	session_free(r.s);
}

static json_t *summary(const struct session *s)
{
	json_t *o = session_summary_json(s, NULL);

	assert_non_null(o);
	return o;
}

static bool has_anomaly(const struct session *s, unsigned int bit)
{
	return (session_info(s)->anomalies & bit) != 0;
}

static void test_refused_then_plaintext_transaction(void **state)
{
	static const struct step tail[] = {
		TXT(SV, "454 4.7.0 TLS not available due to local problem\r\n"),
		TXT(CL, "MAIL FROM:<\"john >doe\"@example.org> SIZE=100\r\nRCPT TO:<a@example.net>\r\n"
			"rcpt to:<b@example.net> NOTIFY=NEVER\r\nDATA\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
		TXT(CL, "Subject: x\r\n\r\nMAIL FROM:<not@envelope>\r\n..dot\r\n.\r\n"),
		TXT(SV, "250 queued\r\n"),
		TXT(CL, "MAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\nQUIT\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n221 bye\r\n"),
	};
	enum feed_mode mode;
	size_t cut;

	for (mode = WHOLE; mode <= DUP; mode++) {
		for (cut = 0; cut <= (mode == WHOLE || mode == BYTES ? 0 : 80); cut += 1) {
			struct run r;
			const struct session_info *i;
			json_t *o, *mf, *rt;

			run_start(&r, NULL, false);
			run_steps(&r, dialog_head, 4, mode, cut);
			run_steps(&r, tail, 7, mode, cut);
			i = session_info(r.s);
			assert_int_equal(r.max, SESSION_CONTINUE);
			assert_int_equal(i->phase, SESSION_PHASE_SMTP);
			assert_int_equal(i->starttls_reply, 454);
			assert_true(i->starttls_issued);
			assert_false(i->starttls_accepted);
			o = summary(r.s);
			mf = json_object_get(o, "mailfrom");
			rt = json_object_get(o, "rcptto");
			assert_int_equal(json_array_size(mf), 2);
			assert_string_equal(json_string_value(json_array_get(mf, 0)), "\"john >doe\"@example.org");
			assert_string_equal(json_string_value(json_array_get(mf, 1)), "");
			assert_int_equal(json_array_size(rt), 3);
			assert_string_equal(json_string_value(json_array_get(rt, 1)), "b@example.net");
			assert_string_equal(json_string_value(json_object_get(o, "end")), "quit");
			assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
			json_decref(o);
			session_free(r.s);
		}
	}
}

static void test_starttls_injection(void **state)
{
	struct run r;

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 3, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(CL, "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_STARTTLS_INJECTION));
	/* The injected command is not part of the plaintext envelope. */
	assert_true(session_info(r.s)->starttls_accepted);
	session_free(r.s);
}

static void test_server_speaks_early(void **state)
{
	struct run r;

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	build_tls13();
	/* 220 and a ServerHello before any ClientHello. */
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step){ SV, sh13_rec, sh13_len }, WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_SERVER_EARLY));
	session_free(r.s);
}

static void test_overlap_with_different_bytes(void **state)
{
	struct run r;
	const char *a = "MAIL FROM:<good@example.org>\r\n", *b = "MAIL FROM:<evil@example.org>\r\n";

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 3, WHOLE, 0);
	/* Second half first, then the whole line with other bytes. */
	seg(&r, CL, r.seq[CL] + 10, (const uint8_t *)a + 10, strlen(a) - 10, SESSION_TCP_ACK);
	seg(&r, CL, r.seq[CL], (const uint8_t *)b, strlen(b), SESSION_TCP_ACK);
	assert_true(has_anomaly(r.s, SESSION_ANOM_OVERLAP_CONFLICT));
	session_free(r.s);
}

static void test_oversized_line_then_more(void **state)
{
	struct run r;
	char line[3000];
	json_t *o;

	memset(line, 'A', sizeof(line));
	memcpy(line, "NOOP ", 5);
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 3, WHOLE, 0);
	seg(&r, CL, r.seq[CL], (const uint8_t *)line, sizeof(line), SESSION_TCP_ACK);
	r.seq[CL] += sizeof(line);
	feed_step(&r, &(struct step)TXT(CL, "\r\nMAIL FROM:<a@example.org>\r\n"), WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_LINE_TOO_LONG));
	assert_int_not_equal(r.max, SESSION_LIMIT);
	o = summary(r.s);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "mailfrom"), 0)), "a@example.org");
	json_decref(o);
	assert_true(session_memory(r.s) < 3 * SESSION_DIALOG_BYTES_DEFAULT + 16384);
	session_free(r.s);
}

static void test_fatal_alert(void **state)
{
	static const uint8_t alert[] = { 21, 3, 3, 0, 2, 2, 40 };
	struct run r;

	build_tls13();
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	feed_step(&r, &(struct step){ SV, alert, sizeof(alert) }, BYTES, 0);
	assert_int_equal(r.last, SESSION_OFFLOAD);
	assert_true(session_info(r.s)->tls_failed);
	assert_false(session_info(r.s)->tls_established);
	assert_true(has_anomaly(r.s, SESSION_ANOM_TLS_FATAL_ALERT));
	session_free(r.s);
}

static void test_bogus_records(void **state)
{
	static const uint8_t oversized[] = { 22, 3, 3, 0xff, 0xff, 2 };
	static const uint8_t zero_len[] = { 22, 3, 3, 0, 0 };
	static const uint8_t plaintext[] = "EHLO again\r\n";
	struct run r;

	build_tls13();
	/* Zero-length handshake records are tolerated. */
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step){ CL, zero_len, sizeof(zero_len) }, WHOLE, 0);
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	assert_int_equal(r.last, SESSION_CONTINUE);
	/* A record longer than TLS allows: judged failed, not buffered. The
	 * client's hello, held until the server's first bytes say TLS, is
	 * read first. */
	feed_step(&r, &(struct step){ SV, oversized, sizeof(oversized) }, WHOLE, 0);
	assert_string_equal(session_info(r.s)->sni, "mx.example.net");
	assert_int_equal(r.last, SESSION_OFFLOAD);
	assert_true(session_info(r.s)->tls_failed);
	assert_true(has_anomaly(r.s, SESSION_ANOM_TLS_RECORD_OVERSIZED));
	session_free(r.s);

	/* Plaintext SMTP where the client must start TLS. */
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step){ CL, plaintext, sizeof(plaintext) - 1 }, WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS));
	/* The client went back to SMTP: its commands are read, the flow is
	 * not offloaded as a failed handshake. */
	assert_false(session_info(r.s)->tls_judged);
	assert_int_equal(r.last, SESSION_CONTINUE);
	assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
	assert_string_equal(session_info(r.s)->ehlo_name, "again");
	session_free(r.s);
}

static void test_hello_retry_request(void **state)
{
	uint8_t m[512], hrr[256];
	size_t n, hl;
	struct run r;

	build_tls13();
	n = tb_server_hello(m, 0x1301, 0x0304, true);
	hl = tb_record(hrr, 22, 0x0303, m, n);
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	feed_step(&r, &(struct step){ SV, hrr, hl }, WHOLE, 0);
	/* A HelloRetryRequest is not the verdict: the real hello follows. */
	assert_int_equal(r.last, SESSION_CONTINUE);
	assert_true(session_info(r.s)->tls_hrr);
	feed_step(&r, &(struct step){ CL, (const uint8_t *)"\x14\x03\x03\x00\x01\x01", 6 }, WHOLE, 0);
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	feed_step(&r, &(struct step){ SV, sh13_rec, sh13_len }, WHOLE, 0);
	assert_int_equal(r.last, SESSION_OFFLOAD);
	assert_int_equal(session_info(r.s)->tls_version, 0x0304);
	session_free(r.s);
}

static void test_close(void **state)
{
	struct run r;

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 2, WHOLE, 0);
	seg(&r, CL, r.seq[CL], NULL, 0, SESSION_TCP_FIN | SESSION_TCP_ACK);
	assert_int_equal(r.last, SESSION_CONTINUE);
	seg(&r, SV, r.seq[SV], NULL, 0, SESSION_TCP_FIN | SESSION_TCP_ACK);
	assert_int_equal(r.last, SESSION_CLOSED);
	session_free(r.s);

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 2, WHOLE, 0);
	seg(&r, SV, r.seq[SV], NULL, 0, SESSION_TCP_RST);
	assert_int_equal(r.last, SESSION_CLOSED);
	assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_CLOSED);
	session_free(r.s);
}

static void test_limit_before_verdict(void **state)
{
	struct session_limits lim = { 256, 1024 };
	uint8_t flood[400];
	struct run r;

	memset(flood, 'x', sizeof(flood));
	run_start(&r, &lim, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	/* STARTTLS pending: the client floods; the window fills. */
	seg(&r, CL, r.seq[CL], flood, sizeof(flood), SESSION_TCP_ACK);
	assert_int_equal(r.last, SESSION_LIMIT);
	assert_true(session_memory(r.s) < 256 * 4 + 16384);
	session_free(r.s);

	/* A certificate flight larger than tls_bytes. */
	{
		uint8_t msgs[8192], rec[9000];
		size_t n = 0, rl = 0;

		build_tls13();
		n += tb_server_hello(msgs + n, 0xc02f, 0, false);
		n += tb_certificate(msgs + n, test_cert_der, sizeof(test_cert_der), 12);
		rl += tb_record(rec + rl, 22, 0x0303, msgs, 900);
		rl += tb_record(rec + rl, 22, 0x0303, msgs + 900, n - 900);
		run_start(&r, &lim, false);
		run_steps(&r, dialog_head, 4, WHOLE, 0);
		feed_step(&r, &(struct step)TXT(SV, "220 go\r\n"), WHOLE, 0);
		feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
		feed_step(&r, &(struct step){ SV, rec, rl }, WHOLE, 0);
		assert_int_equal(r.last, SESSION_LIMIT);
		session_free(r.s);
	}
}

static void test_pipelining_and_bdat(void **state)
{
	static const struct step steps[] = {
		TXT(SV, "220 mx ESMTP\r\n"),
		TXT(CL, "EHLO c\r\n"),
		TXT(SV, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
		TXT(CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 12\r\nRCPT TO:<no>\r\nBDAT 5 LAST\r\n"
			"QUIT\r\nMAIL FROM:<after@quit>\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n"),
	};
	size_t cut;

	for (cut = 0; cut <= 120; cut++) {
		struct run r;
		json_t *o;

		run_start(&r, NULL, false);
		run_steps(&r, steps, 5, SPLIT, cut);
		o = summary(r.s);
		/* The chunk content "RCPT TO:<no>" is data, not a command. */
		assert_int_equal(json_array_size(json_object_get(o, "rcptto")), 1);
		assert_true(json_is_true(json_object_get(json_array_get(json_object_get(o, "transactions"), 0), "bdat")));
		assert_int_equal(session_info(r.s)->smtp_caps & 0x6, 0x6); /* PIPELINING | CHUNKING */
		json_decref(o);
		session_free(r.s);
	}
}

/* The command callback sees every command once, in order, with its path,
 * at every split point; message content is never reported as commands,
 * its end is. */
struct cmd_log {
	char text[512];
};

static void log_command(void *arg, int verb, const char *addr)
{
	struct cmd_log *l = arg;
	size_t n = strlen(l->text);
	snprintf(l->text + n, sizeof(l->text) - n, "%d:%s;", verb, addr);
}

static void test_command_callback(void **state)
{
	static const struct step steps[] = {
		TXT(SV, "220 mx ESMTP\r\n"),
		TXT(CL, "EHLO c\r\n"),
		TXT(SV, "250-mx\r\n250 PIPELINING\r\n"),
		TXT(CL, "MAIL FROM:<a@secure.example.org> SIZE=10\r\nRCPT TO:<\"x y\"@example.net>\r\n"
			"RCPT TO:<b@example.com>\r\nDATA\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
		TXT(CL, "MAIL FROM:<not@a.command>\r\n.\r\nQUIT\r\n"),
	};
	char want[256];
	size_t cut;

	snprintf(want, sizeof(want), "%d:;%d:a@secure.example.org;%d:\"x y\"@example.net;%d:b@example.com;%d:;%d:;%d:;",
		 SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_RCPT, SMTP_VERB_DATA,
		 SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT);
	for (cut = 0; cut <= 100; cut++) {
		struct run r;
		struct cmd_log l = { "" };

		run_start(&r, NULL, false);
		session_set_command_cb(r.s, log_command, &l);
		run_steps(&r, steps, 6, SPLIT, cut);
		assert_string_equal(l.text, want);
		session_free(r.s);
	}
}

static void test_midstream_pickup(void **state)
{
	struct run r;
	json_t *o;

	run_start(&r, NULL, true);
	feed_step(&r, &(struct step)TXT(SV, "ext-of-a-line\r\n250 OK\r\n"), WHOLE, 0);
	feed_step(&r, &(struct step)TXT(CL, "t of a command\r\nMAIL FROM:<x@example.org>\r\n"), WHOLE, 0);
	o = summary(r.s);
	assert_int_equal(json_array_size(json_object_get(o, "mailfrom")), 1);
	assert_true(session_info(r.s)->midstream);
	json_decref(o);
	session_free(r.s);

	/* Picked up inside TLS: nothing left to judge. */
	run_start(&r, NULL, true);
	feed_step(&r, &(struct step){ SV, (const uint8_t *)"\x17\x03\x03\x00\x02xy", 7 }, WHOLE, 0);
	assert_int_equal(r.last, SESSION_OFFLOAD);
	session_free(r.s);
}

static void test_not_smtp(void **state)
{
	struct run r;

	run_start(&r, NULL, false);
	feed_step(&r, &(struct step)TXT(SV, "* OK IMAP4rev1 ready\r\n"), WHOLE, 0);
	assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_NOT_SMTP);
	session_free(r.s);

	/* Implicit TLS: a ClientHello where SMTP is expected, answered in
	 * TLS (the server's first bytes tell; the hello waits for them). */
	build_tls13();
	run_start(&r, NULL, false);
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, SPLIT, 2);
	assert_int_equal(r.last, SESSION_CONTINUE);
	feed_step(&r, &(struct step){ SV, sh13_rec, sh13_len }, WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_TLS_NOT_SMTP));
	assert_true(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
	assert_string_equal(session_info(r.s)->sni, "mx.example.net");
	assert_int_equal(r.last, SESSION_OFFLOAD);
	session_free(r.s);
}

static void test_sslv2_hello(void **state)
{
	/* SSLv2 CLIENT-HELLO (2-byte header), version 2, one cipher spec. */
	static const uint8_t v2[] = { 0x80, 0x1c, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10,
				      0x07, 0x00, 0xc0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
	struct run r;

	/* SSLv2 SERVER-HELLO (type 4): the server answers in SSL. */
	static const uint8_t v2s[] = { 0x80, 0x06, 0x04, 0x00, 0x01, 0x00, 0x02, 0x00 };
	run_start(&r, NULL, false);
	feed_step(&r, &(struct step){ CL, v2, sizeof(v2) }, BYTES, 0);
	feed_step(&r, &(struct step){ SV, v2s, sizeof(v2s) }, BYTES, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_SSLV2));
	session_free(r.s);
}

/* A client line that starts like an SSLv2 hello (high bit, type 1) but
 * whose fourth byte is no SSL version is not TLS: with the hello's first
 * three bytes in a segment of their own the session must wait for the
 * fourth, as it reads the line when it comes whole (fuzz_smtp seed
 * small-window-split). */
static void test_sslv2_lookalike_any_split(void **state)
{
	static const uint8_t line[] = { 0xa8, 0x00, 0x01, 0xfa, 'x', 'y', '\r', '\n' };
	const struct step steps[] = {
		TXT(SV, "220 mx.example.net ESMTP\r\n"),
		{ CL, line, sizeof(line) },
		TXT(SV, "500 5.5.2 Error: bad syntax\r\n"),
		TXT(CL, "EHLO client.example.org\r\n"),
	};
	enum feed_mode modes[] = { SPLIT, BYTES, SWAP };
	struct run r;
	size_t m, cut;

	for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		for (cut = 1; cut < sizeof(line); cut++) {
			run_start(&r, NULL, false);
			run_steps(&r, steps, 4, modes[m], cut);
			assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
			assert_false(has_anomaly(r.s, SESSION_ANOM_TLS_NOT_SMTP));
			assert_string_equal(session_info(r.s)->ehlo_name, "client.example.org");
			session_free(r.s);
		}
	/* A whole line of three bytes whose third is not 1 cannot become a
	 * hello: it is read at once, before the server's answer to it. */
	static const uint8_t short_line[] = { 0x80, '\r', '\n' };
	const struct step short_steps[] = {
		TXT(SV, "220 mx.example.net ESMTP\r\n"),
		{ CL, short_line, sizeof(short_line) },
		TXT(SV, "500 5.5.2 Error: bad syntax\r\n"),
	};
	run_start(&r, NULL, false);
	run_steps(&r, short_steps, 3, WHOLE, 0);
	assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
	assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
	session_free(r.s);
}

static void test_memory_bounded_long_dialog(void **state)
{
	struct run r;
	char line[64];
	int i;
	size_t peak = 0;

	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 3, WHOLE, 0);
	feed_step(&r, &(struct step)TXT(CL, "MAIL FROM:<a@example.org>\r\n"), WHOLE, 0);
	for (i = 0; i < 5000; i++) {
		int n = snprintf(line, sizeof(line), "RCPT TO:<user%d@example.net>\r\n", i);

		feed_step(&r, &(struct step){ CL, (const uint8_t *)line, (size_t)n }, WHOLE, 0);
		if (session_memory(r.s) > peak)
			peak = session_memory(r.s);
	}
	assert_true(has_anomaly(r.s, SESSION_ANOM_ENVELOPE_TRUNCATED));
	assert_true(peak < 64 * 1024);
	session_free(r.s);
}

/* ---- message content in the kernel: session_content_ready / _skip ---- */

static const struct step data_head[] = {
	TXT(SV, "220 mx.example.net ESMTP\r\n"),
	TXT(CL, "EHLO client.example.org\r\n"),
	TXT(SV, "250-mx.example.net\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
	TXT(CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n"),
	TXT(SV, "250 ok\r\n250 ok\r\n354 go\r\n"),
};

/* Handshake from client ISN isn, then the dialog up to the 354. */
static void content_start(struct run *r, uint32_t isn, struct cmd_log *l)
{
	memset(r, 0, sizeof(*r));
	r->s = session_new(NULL, false);
	assert_non_null(r->s);
	if (l)
		session_set_command_cb(r->s, log_command, l);
	r->seq[CL] = isn;
	r->seq[SV] = 5000;
	seg(r, CL, r->seq[CL]++, NULL, 0, SESSION_TCP_SYN);
	seg(r, SV, r->seq[SV]++, NULL, 0, SESSION_TCP_SYN | SESSION_TCP_ACK);
	run_steps(r, data_head, 5, WHOLE, 0);
}

static void say(struct run *r, int dir, const char *text)
{
	feed_step(r, &(struct step){ dir, (const uint8_t *)text, strlen(text) }, WHOLE, 0);
}

/* The kernel passed n client bytes, the last one a line end or not. */
static void kernel_passed(struct run *r, uint32_t n, bool line_end)
{
	r->seq[CL] += n;
	session_content_skip(r->s, r->seq[CL], line_end);
}

static bool content_ready(const struct run *r)
{
	uint32_t seq;
	bool line_end;

	return session_content_ready(r->s, &seq, &line_end);
}

static void assert_content_ready(const struct run *r, uint32_t want_seq, bool want_line_end)
{
	uint32_t seq = ~want_seq;
	bool line_end = !want_line_end;

	assert_true(session_content_ready(r->s, &seq, &line_end));
	assert_int_equal(seq, want_seq);
	assert_int_equal(line_end, want_line_end);
}

/* Commands of data_head, then the verbs given (0 ends), addr for MAIL. */
static void want_commands(char *want, size_t size, const char *addr, ...)
{
	va_list ap;
	size_t n;
	int verb;

	n = (size_t)snprintf(want, size, "%d:;%d:a@example.org;%d:r@example.net;%d:;", SMTP_VERB_EHLO,
			     SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA);
	va_start(ap, addr);
	while ((verb = va_arg(ap, int)) != 0 && n < size)
		n += (size_t)snprintf(want + n, size - n, "%d:%s;", verb, verb == SMTP_VERB_MAIL ? addr : "");
	va_end(ap);
}

static void test_content_ready_in_data(void **state)
{
	enum feed_mode mode;
	uint32_t seq = 0;
	bool line_end = false;
	size_t cut;
	struct run r;

	assert_false(session_content_ready(NULL, &seq, &line_end));
	session_content_skip(NULL, 1, true);
	/* Not before the 354, ready right after it, at every segmentation. */
	for (mode = WHOLE; mode <= DUP; mode++) {
		for (cut = 0; cut <= (mode == WHOLE || mode == BYTES ? 0 : 60); cut++) {
			run_start(&r, NULL, false);
			assert_false(content_ready(&r));
			run_steps(&r, data_head, 4, mode, cut);
			assert_false(content_ready(&r)); /* DATA sent, no reply yet */
			run_steps(&r, data_head + 4, 1, mode, cut);
			assert_content_ready(&r, r.seq[CL], true);
			assert_int_equal(r.max, SESSION_CONTINUE);
			session_free(r.s);
		}
	}
	/* next_seq follows the content; line_end the byte before it. */
	content_start(&r, 0xfffffff0u, NULL);
	say(&r, CL, "Subject: x\r\n\r\nab");
	assert_content_ready(&r, r.seq[CL], false);
	say(&r, CL, "c\r");
	assert_content_ready(&r, r.seq[CL], true);
	say(&r, CL, "\n..dot\nbare\r\n");
	assert_content_ready(&r, r.seq[CL], true);
	say(&r, CL, ".\r\n");
	assert_false(content_ready(&r)); /* the end of data */
	say(&r, SV, "250 queued\r\n");
	assert_false(content_ready(&r));
	say(&r, CL, "QUIT\r\n");
	assert_false(content_ready(&r));
	session_free(r.s);

	/* Not after the client's FIN, nor after a reset. */
	content_start(&r, 1, NULL);
	assert_content_ready(&r, r.seq[CL], true);
	seg(&r, CL, r.seq[CL], NULL, 0, SESSION_TCP_FIN | SESSION_TCP_ACK);
	assert_false(content_ready(&r));
	session_free(r.s);
	content_start(&r, 1, NULL);
	seg(&r, SV, r.seq[SV], NULL, 0, SESSION_TCP_RST);
	assert_false(content_ready(&r));
	session_free(r.s);
}

static void test_content_not_ready_outside_data(void **state)
{
	struct run r;

	/* BDAT: the chunks are skipped by size, never handed over. */
	run_start(&r, NULL, false);
	run_steps(&r, data_head, 3, WHOLE, 0);
	say(&r, CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\n");
	say(&r, SV, "250 ok\r\n250 ok\r\n");
	say(&r, CL, "BDAT 10\r\n0123");
	assert_false(content_ready(&r));
	say(&r, CL, "456789");
	assert_false(content_ready(&r));
	say(&r, SV, "250 ok\r\n");
	say(&r, CL, "BDAT 5 LAST\r\n12");
	assert_false(content_ready(&r));
	say(&r, CL, "345");
	assert_false(content_ready(&r));
	session_free(r.s);

	/* DATA refused. */
	run_start(&r, NULL, false);
	run_steps(&r, data_head, 4, WHOLE, 0);
	say(&r, SV, "250 ok\r\n250 ok\r\n554 no\r\n");
	assert_false(content_ready(&r));
	session_free(r.s);

	/* STARTTLS dialog, TLS. */
	build_tls13();
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	assert_false(content_ready(&r));
	say(&r, SV, "220 go\r\n");
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	assert_false(content_ready(&r));
	session_free(r.s);
}

/* BDAT: once the chunk's line is parsed, the chunk bytes not yet arrived
 * may pass in the kernel; the command after the chunk is parsed again. */
static void assert_chunk_ready(const struct run *r, uint32_t want_seq, uint32_t want_end)
{
	uint32_t seq = ~want_seq, end = ~want_end;

	assert_true(session_chunk_ready(r->s, &seq, &end));
	assert_int_equal(seq, want_seq);
	assert_int_equal(end, want_end);
}

static void test_chunk_ready(void **state)
{
	struct cmd_log l = { 0 };
	uint32_t seq, end;
	struct run r;

	run_start(&r, NULL, false);
	session_set_command_cb(r.s, log_command, &l);
	run_steps(&r, data_head, 3, WHOLE, 0);
	say(&r, CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\n");
	assert_false(session_chunk_ready(r.s, &seq, &end));
	say(&r, SV, "250 ok\r\n250 ok\r\n");
	say(&r, CL, "BDAT 10\r\n0123");
	assert_chunk_ready(&r, r.seq[CL], r.seq[CL] + 6);
	assert_false(content_ready(&r)); /* not DATA */
	say(&r, CL, "456789");
	assert_false(session_chunk_ready(r.s, &seq, &end)); /* the chunk is in */
	say(&r, SV, "250 ok\r\n");
	say(&r, CL, "BDAT 5000 LAST\r\n12");
	assert_chunk_ready(&r, r.seq[CL], r.seq[CL] + 4998);
	/* The kernel passed the rest; the next segment is a command. */
	kernel_passed(&r, 4998, false);
	assert_false(session_chunk_ready(r.s, &seq, &end));
	say(&r, SV, "250 ok\r\n");
	say(&r, CL, "MAIL FROM:<b@example.org>\r\n");
	assert_non_null(strstr(l.text, "b@example.org"));
	session_free(r.s);

	/* Out of order inside the chunk: not ready (a hole is held). */
	run_start(&r, NULL, false);
	run_steps(&r, data_head, 3, WHOLE, 0);
	say(&r, CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.net>\r\n");
	say(&r, SV, "250 ok\r\n250 ok\r\n");
	say(&r, CL, "BDAT 100 LAST\r\n");
	assert_chunk_ready(&r, r.seq[CL], r.seq[CL] + 100);
	seg(&r, CL, r.seq[CL] + 150, (const uint8_t *)"QUIT\r\n", 6, SESSION_TCP_ACK);
	assert_false(session_chunk_ready(r.s, &seq, &end));
	session_free(r.s);
}

static void test_content_not_ready_out_of_order(void **state)
{
	struct run r;

	content_start(&r, 0xfffffff8u, NULL);
	/* "abc" missing before "def\r\n". */
	seg(&r, CL, r.seq[CL] + 3, (const uint8_t *)"def\r\n", 5, SESSION_TCP_ACK);
	assert_false(content_ready(&r));
	seg(&r, CL, r.seq[CL], (const uint8_t *)"abc", 3, SESSION_TCP_ACK);
	r.seq[CL] += 8;
	assert_content_ready(&r, r.seq[CL], true);
	/* In-order bytes held, then a hole, then an island. */
	seg(&r, CL, r.seq[CL], (const uint8_t *)"gh", 2, SESSION_TCP_ACK);
	assert_content_ready(&r, r.seq[CL] + 2, false);
	seg(&r, CL, r.seq[CL] + 5, (const uint8_t *)"kl\r\n", 4, SESSION_TCP_ACK);
	assert_false(content_ready(&r));
	seg(&r, CL, r.seq[CL] + 2, (const uint8_t *)"ij", 2, SESSION_TCP_ACK);
	assert_false(content_ready(&r)); /* one byte still missing */
	seg(&r, CL, r.seq[CL] + 4, (const uint8_t *)"x", 1, SESSION_TCP_ACK);
	r.seq[CL] += 9;
	assert_content_ready(&r, r.seq[CL], true);
	session_free(r.s);
}

static void test_content_not_ready_on_leading_dot(void **state)
{
	struct cmd_log l = { "" };
	char want[512];
	struct run r;

	/* A held "." may still be (or not be) the end of data; ".x" cannot. */
	content_start(&r, 100, NULL);
	say(&r, CL, ".");
	assert_false(content_ready(&r));
	say(&r, CL, "x");
	assert_content_ready(&r, r.seq[CL], false);
	say(&r, CL, "\r\n");
	assert_content_ready(&r, r.seq[CL], true);
	session_free(r.s);

	content_start(&r, 100, &l);
	say(&r, CL, "line\r\n.");
	assert_false(content_ready(&r));
	say(&r, CL, "\r");
	assert_false(content_ready(&r));
	say(&r, CL, "\nQUIT\r\n");
	assert_false(content_ready(&r));
	want_commands(want, sizeof(want), "", SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT, 0);
	assert_string_equal(l.text, want);
	session_free(r.s);

	/* A partial line that does not start with '.' is fine. */
	content_start(&r, 100, NULL);
	say(&r, CL, "abc");
	assert_content_ready(&r, r.seq[CL], false);
	say(&r, CL, "\r");
	assert_content_ready(&r, r.seq[CL], true);
	session_free(r.s);
}

/* After the kernel passed content, "." and the next MAIL FROM are seen. */
static void test_content_skip_then_resume(void **state)
{
	static const uint32_t isns[] = { 0xfffffff0u, 0xffff0000u, 0x7fffff00u, 0 };
	static const uint32_t passed[] = { 1, 1000, 5000, 0x20000, 64 * 1024 * 1024 };
	char want[512];
	size_t i, j;
	int partial;

	want_commands(want, sizeof(want), "b@example.org", SMTP_VERB_END_OF_DATA, SMTP_VERB_MAIL, 0);
	for (i = 0; i < sizeof(isns) / sizeof(isns[0]); i++) {
		for (j = 0; j < sizeof(passed) / sizeof(passed[0]); j++) {
			for (partial = 0; partial < 2; partial++) {
				struct cmd_log l = { "" };
				struct run r;
				json_t *o, *mf;

				content_start(&r, isns[i], &l);
				/* With a partial line held: the kernel passed its end. */
				if (partial) {
					say(&r, CL, "Subject: x\r\n\r\nbody");
					assert_content_ready(&r, r.seq[CL], false);
				} else {
					assert_content_ready(&r, r.seq[CL], true);
				}
				kernel_passed(&r, passed[j], true);
				say(&r, CL, ".\r\nMAIL FROM:<b@example.org>\r\n");
				say(&r, SV, "250 ok\r\n250 ok\r\n");
				assert_string_equal(l.text, want);
				assert_false(content_ready(&r));
				assert_int_equal(r.max, SESSION_CONTINUE);
				assert_int_equal(session_info(r.s)->anomalies, 0);
				o = summary(r.s);
				mf = json_object_get(o, "mailfrom");
				assert_int_equal(json_array_size(mf), 2);
				assert_string_equal(json_string_value(json_array_get(mf, 1)), "b@example.org");
				json_decref(o);
				session_free(r.s);
			}
		}
	}
}

/* The kernel passed the content and its end (TLSGATE_CONTENT_ENDED): the
 * session is back in commands and owes the server's reply to the end of
 * data, which it does not report as a command (nothing was withheld). A
 * second message in the same session is read as usual. */
static void test_content_ended_in_kernel(void **state)
{
	static const uint32_t isns[] = { 0xfffffff0u, 0x7fffff00u, 0 };
	char want[512];

	/* the first DATA has no END_OF_DATA after it */
	snprintf(want, sizeof(want), "%d:;%d:a@example.org;%d:r@example.net;%d:;%d:b@example.org;"
		 "%d:c@example.net;%d:;%d:;%d:;", SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
		 SMTP_VERB_DATA, SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA,
		 SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT);
	for (size_t i = 0; i < sizeof(isns) / sizeof(isns[0]); i++) {
		struct cmd_log l = { "" };
		struct run r;
		json_t *o;

		content_start(&r, isns[i], &l);
		assert_content_ready(&r, r.seq[CL], true);
		kernel_passed(&r, 3000, true);
		session_content_ended(r.s);
		assert_false(content_ready(&r));
		assert_int_equal(session_replies_owed(r.s), 1);
		say(&r, SV, "250 2.0.0 queued\r\n");
		assert_int_equal(session_replies_owed(r.s), 0);
		say(&r, CL, "MAIL FROM:<b@example.org>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
		say(&r, SV, "250 ok\r\n250 ok\r\n354 go\r\n");
		assert_content_ready(&r, r.seq[CL], true);
		say(&r, CL, "x\r\n.\r\nQUIT\r\n");
		say(&r, SV, "250 queued\r\n221 bye\r\n");
		assert_string_equal(l.text, want);
		assert_int_equal(session_info(r.s)->anomalies, 0);
		o = summary(r.s);
		assert_int_equal(json_array_size(json_object_get(o, "mailfrom")), 2);
		assert_string_equal(json_string_value(json_object_get(o, "end")), "quit");
		json_decref(o);
		/* not in content: nothing happens */
		session_content_ended(r.s);
		assert_int_equal(session_replies_owed(r.s), 0);
		session_free(r.s);
	}
	session_content_ended(NULL);
}

/* session_await_stage(): with both streams read to their ends, the reply
 * to DATA (354) or to RCPT (REPLY) the one owed, or nothing owed (DATA). */
#define A354 TLSGATE_AWAIT_354
#define AREPLY TLSGATE_AWAIT_REPLY
#define AIDLE TLSGATE_AWAIT_DATA
static void assert_awaits_skip(const struct run *r, int want, unsigned int want_skip)
{
	uint32_t c = 0, sv = 0;
	unsigned int skip = 99;

	assert_int_equal(session_await_stage(r->s, &c, &sv, &skip), want);
	assert_int_equal(skip, want_skip);
	if (want) {
		assert_int_equal(c, r->seq[CL]);
		assert_int_equal(sv, r->seq[SV]);
	}
}

static void assert_awaits(const struct run *r, int want)
{
	assert_awaits_skip(r, want, 0);
}

static void test_await_stage(void **state)
{
	struct run r;

	/* one command at a time (the client wraps its sequence numbers) */
	run_start(&r, NULL, false);
	assert_awaits(&r, 0);
	say(&r, SV, "220 mx ESMTP\r\n");
	assert_awaits(&r, AIDLE);
	say(&r, CL, "EHLO c.example.org\r\n");
	assert_awaits(&r, 0);
	say(&r, SV, "250-mx\r\n250 PIPELINING\r\n");
	say(&r, CL, "MAIL FROM:<a@example.org>\r\n");
	assert_awaits(&r, AREPLY);
	say(&r, SV, "250 ok\r\n");
	assert_awaits(&r, AIDLE);
	say(&r, CL, "RCPT TO:<b@example.net>\r\n");
	assert_awaits(&r, AREPLY);
	say(&r, SV, "250 ok\r\n");
	assert_awaits(&r, AIDLE);
	say(&r, CL, "DATA\r\n");
	assert_awaits(&r, A354);
	say(&r, SV, "354 go\r\n");
	assert_awaits(&r, 0);
	say(&r, CL, "x\r\n.\r\n");
	assert_awaits(&r, 0);
	say(&r, SV, "250 queued\r\n");
	assert_awaits(&r, AIDLE);
	/* pipelined: DATA's reply after MAIL's and RCPT's */
	say(&r, CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	assert_awaits_skip(&r, A354, 2);
	say(&r, SV, "250 ok\r\n");
	assert_awaits_skip(&r, A354, 1);
	say(&r, SV, "250 ok\r\n");
	assert_awaits(&r, A354);
	/* a reply begun, not ended: its line, or its lines */
	say(&r, SV, "35");
	assert_awaits(&r, 0);
	say(&r, SV, "4-go\r\n");
	assert_awaits(&r, 0);
	say(&r, SV, "354 go\r\n");
	assert_awaits(&r, 0);
	say(&r, CL, "y\r\n.\r\n");
	say(&r, SV, "250 queued\r\n");
	/* a command begun, not ended */
	say(&r, CL, "RCPT TO:<b@exa");
	assert_awaits(&r, 0);
	say(&r, CL, "mple.net>\r\n");
	assert_awaits(&r, AREPLY);
	say(&r, SV, "503 no\r\n");
	/* the client sent more than DATA, or closed */
	say(&r, CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubj");
	say(&r, SV, "250 ok\r\n250 ok\r\n");
	assert_awaits(&r, 0);
	session_free(r.s);

	run_start(&r, NULL, false);
	say(&r, SV, "220 mx ESMTP\r\n");
	say(&r, CL, "HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	assert_awaits_skip(&r, A354, 3);
	say(&r, SV, "250 mx\r\n250 ok\r\n250 ok\r\n");
	assert_awaits(&r, A354);
	seg(&r, CL, r.seq[CL], NULL, 0, SESSION_TCP_FIN | SESSION_TCP_ACK);
	assert_awaits(&r, 0);
	session_free(r.s);
	/* not after EHLO (its reply is many lines); up to 8 commands */
	run_start(&r, NULL, false);
	say(&r, SV, "220 mx ESMTP\r\n");
	say(&r, CL, "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	assert_awaits(&r, 0);
	say(&r, SV, "250-mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\nx");
	say(&r, CL, ".\r\nRSET\r\nNOOP\r\nNOOP\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\n"
		    "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
	assert_awaits(&r, 0);
	say(&r, SV, "\r\n250 queued\r\n");
	assert_awaits_skip(&r, A354, 7);
	say(&r, SV, "250 ok\r\n354 go\r\n");
	say(&r, CL, "NOOP\r\n");
	assert_awaits(&r, 0);
	session_free(r.s);
	run_start(&r, NULL, false);
	say(&r, SV, "220 mx ESMTP\r\n");
	say(&r, CL, "RSET\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\n"
		    "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
	assert_awaits(&r, 0); /* 9 */
	session_free(r.s);
	assert_int_equal(session_await_stage(NULL, &(uint32_t){ 0 }, &(uint32_t){ 0 },
					     &(unsigned int){ 0 }),
			 0);
}

/* The kernel stopped inside a line: its rest is content. */
static void test_content_skip_mid_line(void **state)
{
	static const char *const resumed[] = {
		"tail.\r\n.\r\nQUIT\r\n",
		".\r\nMAIL FROM:<x@example.org>\r\n.\r\nQUIT\r\n", /* the "." ends a line */
		"\r\n.\r\nQUIT\r\n",
	};
	char want[512];
	size_t i, cut;

	want_commands(want, sizeof(want), "", SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT, 0);
	for (i = 0; i < sizeof(resumed) / sizeof(resumed[0]); i++) {
		for (cut = 0; cut <= strlen(resumed[i]); cut++) {
			struct step st = { CL, (const uint8_t *)resumed[i], strlen(resumed[i]) };
			struct cmd_log l = { "" };
			struct run r;
			json_t *o;

			content_start(&r, 0xfffffff0u, &l);
			/* A held partial line, then the rest passed without a line end. */
			if (cut & 1)
				say(&r, CL, "abc");
			kernel_passed(&r, 700, false);
			feed_step(&r, &st, SPLIT, cut);
			say(&r, SV, "250 queued\r\n221 bye\r\n");
			assert_string_equal(l.text, want);
			assert_false(content_ready(&r));
			assert_int_equal(session_info(r.s)->anomalies, 0);
			o = summary(r.s);
			assert_int_equal(json_array_size(json_object_get(o, "mailfrom")), 1);
			assert_string_equal(json_string_value(json_object_get(o, "end")), "quit");
			json_decref(o);
			session_free(r.s);
		}
	}
}

/* A seq at or before what the session holds changes nothing. */
static void test_content_skip_backwards(void **state)
{
	struct cmd_log l = { "" };
	char want[512];
	struct run r;
	uint32_t x;

	content_start(&r, 0xfffffff0u, &l);
	say(&r, CL, "abc");
	x = r.seq[CL];
	session_content_skip(r.s, x, true);
	session_content_skip(r.s, x - 2, true);
	session_content_skip(r.s, x - 200, false);
	session_content_skip(r.s, x + 0x80000000u, true); /* half the space: behind */
	assert_content_ready(&r, x, false);
	say(&r, CL, "def\r\n");
	assert_content_ready(&r, r.seq[CL], true);
	/* A held "." survives: with the "\r\n" after it, it ends the data. */
	say(&r, CL, ".");
	x = r.seq[CL];
	session_content_skip(r.s, x, true);
	session_content_skip(r.s, x - 1, false);
	assert_false(content_ready(&r));
	say(&r, CL, "\r\nQUIT\r\n");
	want_commands(want, sizeof(want), "", SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT, 0);
	assert_string_equal(l.text, want);
	assert_false(has_anomaly(r.s, SESSION_ANOM_OVERLAP_CONFLICT));
	session_free(r.s);

	/* Nothing received yet (mid-stream): nothing to skip. */
	r.s = session_new(NULL, true);
	assert_non_null(r.s);
	session_content_skip(r.s, 12345, true);
	assert_false(content_ready(&r));
	assert_int_equal(session_info(r.s)->anomalies, SESSION_ANOM_MIDSTREAM);
	session_free(r.s);
}

/* Hostile skips: bounded, never a crash. */
/* The client's next sequence number as the daemon's copy check needs it:
 * after what arrived without a hole - in order, or filled in since - and
 * not beyond a hole. */
static void test_client_next(void **state)
{
	struct run r;
	uint32_t next, isn;
	const uint8_t *a = (const uint8_t *)"EHLO a\r\n", *b = (const uint8_t *)"NOOP\r\n",
		      *c = (const uint8_t *)"QUIT\r\n";

	assert_false(session_client_next(NULL, &next));
	run_start(&r, NULL, false);
	isn = r.seq[CL];
	assert_true(session_client_next(r.s, &next));
	assert_int_equal(next, isn); /* after the SYN */
	seg(&r, SV, r.seq[SV], (const uint8_t *)"220 x\r\n", 7, 0);
	seg(&r, CL, isn, a, 8, 0);
	assert_true(session_client_next(r.s, &next));
	assert_int_equal(next, isn + 8);
	/* c ahead of b: the hole holds next back */
	seg(&r, CL, isn + 14, c, 6, 0);
	assert_true(session_client_next(r.s, &next));
	assert_int_equal(next, isn + 8);
	/* b fills it: next is after c (the wrap of the ISN included) */
	seg(&r, CL, isn + 8, b, 6, 0);
	assert_true(session_client_next(r.s, &next));
	assert_int_equal(next, isn + 20);
	/* a retransmission moves nothing */
	seg(&r, CL, isn, a, 8, 0);
	assert_true(session_client_next(r.s, &next));
	assert_int_equal(next, isn + 20);
	session_free(r.s);
}

static void test_content_skip_hostile(void **state)
{
	static const uint32_t deltas[] = { REASM_MAX_SKIP, REASM_MAX_SKIP + 1, 0x7fffffffu, 0x80000000u,
					   0xffffffffu };
	struct run r;
	size_t i, k;

	for (i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		for (k = 0; k < 2; k++) {
			uint32_t x, seq;
			bool line_end;

			content_start(&r, 0xfffffff0u, NULL);
			say(&r, CL, "abc");
			x = seq = r.seq[CL];
			session_content_skip(r.s, x + deltas[i], k);
			session_content_ready(r.s, &seq, &line_end);
			/* The client goes on where the kernel would have been. */
			seg(&r, CL, x + deltas[i], (const uint8_t *)".\r\nQUIT\r\n", 9, SESSION_TCP_ACK);
			session_content_ready(r.s, &seq, &line_end);
			session_content_skip(r.s, seq + deltas[i], !k);
			seg(&r, CL, x, (const uint8_t *)"\r\n.\r\n", 5, SESSION_TCP_ACK);
			say(&r, SV, "250 ok\r\n");
			session_content_ready(r.s, &seq, &line_end);
			assert_true(session_memory(r.s) < 64 * 1024);
			session_free(r.s);
		}
	}

	/* Many skips around the whole sequence space. */
	content_start(&r, 0, NULL);
	for (i = 0; i < 64; i++) {
		uint32_t seq = r.seq[CL];
		bool line_end;

		session_content_ready(r.s, &seq, &line_end);
		session_content_skip(r.s, seq + 0x7fffffffu, i & 1);
		seg(&r, CL, seq + (uint32_t)i * 0x12345677u, (const uint8_t *)"x\r\n.\r\n", 6, SESSION_TCP_ACK);
	}
	assert_true(session_memory(r.s) < 64 * 1024);
	session_free(r.s);

	/* Outside DATA content the kernel saw what the session did not. */
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 3, WHOLE, 0);
	session_content_skip(r.s, r.seq[CL] + 10, true);
	assert_true(has_anomaly(r.s, SESSION_ANOM_OVERLAP_CONFLICT));
	session_free(r.s);

	/* In TLS: the records are off, the session copes. */
	build_tls13();
	run_start(&r, NULL, false);
	run_steps(&r, dialog_head, 4, WHOLE, 0);
	say(&r, SV, "220 go\r\n");
	session_content_skip(r.s, r.seq[CL] + 3, false);
	r.seq[CL] += 3;
	feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
	assert_false(content_ready(&r));
	session_free(r.s);
}

/* ---- the dialog as real MTAs read it (issue 17: 1, 7, 8, 10) ---- */

/* Feeds steps in every way: whole, split at every cut, byte by byte. */
#define EACH_FEED(mode, cut, maxcut)                                                     \
	for (mode = WHOLE; mode <= BYTES; mode++)                                        \
		for (cut = 0; cut <= (mode == SPLIT ? (maxcut) : 0); cut++)

static bool logged(const struct cmd_log *l, int verb, const char *addr)
{
	char w[300];

	snprintf(w, sizeof(w), "%d:%s;", verb, addr);
	return strstr(l->text, w) != NULL;
}

/* Junk where the greeting or a reply line is due: Postfix's client skips
 * what is not a reply (smtp_chat_resp()) and reads on, in plaintext. */
static void test_junk_before_greeting(void **state)
{
	static const char *const greetings[] = {
		"X\r\n220 mx ESMTP\r\n",
		"\r\n220 mx ESMTP\r\n",
		"hello there\n \r\n2200 no\r\n220x\r\n220 mx ESMTP\r\n",
		"220-mx\r\njunk inside\r\n220-more\r\n220 ESMTP\r\n",
		"220 mx\r\r\n", /* every CR before the LF stripped */
		"XYZ\r\n554 5.7.1 go away\r\n",
	};
	enum feed_mode mode;
	size_t g, cut;

	for (g = 0; g < sizeof(greetings) / sizeof(greetings[0]); g++) {
		const struct step steps[] = {
			{ SV, (const uint8_t *)greetings[g], strlen(greetings[g]) },
			TXT(CL, "EHLO c\r\n"),
			TXT(SV, "250-mx\r\nnot a reply\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
			TXT(CL, "MAIL FROM:<a@secure.example.org>\r\nRCPT TO:<b@example.net>\r\n"),
			TXT(SV, "garbage\r\n250 ok\r\n250 ok\r\n"),
		};
		EACH_FEED(mode, cut, 80) {
			struct cmd_log l = { "" };
			struct run r;
			const struct session_info *i;

			run_start(&r, NULL, false);
			session_set_command_cb(r.s, log_command, &l);
			run_steps(&r, steps, 5, mode, cut);
			i = session_info(r.s);
			assert_int_equal(i->phase, SESSION_PHASE_SMTP);
			assert_false(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
			assert_true(has_anomaly(r.s, SESSION_ANOM_BAD_REPLY) || g == 4);
			assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
			assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
			assert_true(logged(&l, SMTP_VERB_RCPT, "b@example.net"));
			assert_int_equal(i->smtp_caps & (SMTP_CAP_PIPELINING | SMTP_CAP_CHUNKING),
					 SMTP_CAP_PIPELINING | SMTP_CAP_CHUNKING);
			assert_int_equal(session_replies_owed(r.s), 0);
			session_free(r.s);
		}
	}
}

/* A client that talks before the greeting: its lines are commands the
 * server answers after its greeting (plain smtpd), an unknown one too. */
static void test_client_talks_first(void **state)
{
	static const struct step steps[] = {
		TXT(CL, "XYZZY\r\nEHLO c\r\nMAIL FROM:<a@secure.example.org>\r\n"),
		TXT(SV, "220 mx ESMTP\r\n502 5.5.2 Error: command not recognized\r\n"
			"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n250 2.1.0 Ok\r\n"),
		TXT(CL, "RCPT TO:<b@example.net>\r\n"),
		TXT(SV, "250 ok\r\n"),
	};
	enum feed_mode mode;
	size_t cut;

	EACH_FEED(mode, cut, 100) {
		struct cmd_log l = { "" };
		struct run r;
		json_t *o;

		run_start(&r, NULL, false);
		session_set_command_cb(r.s, log_command, &l);
		run_steps(&r, steps, 4, mode, cut);
		assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
		assert_false(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
		assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
		assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
		assert_true(logged(&l, SMTP_VERB_RCPT, "b@example.net"));
		/* the EHLO reply answered EHLO, not the greeting */
		assert_true(session_info(r.s)->starttls_offered);
		o = summary(r.s);
		assert_int_equal(json_integer_value(json_object_get(
					 json_array_get(json_object_get(o, "transactions"), 0), "mail_reply")),
				 250);
		json_decref(o);
		session_free(r.s);
	}
}

/* What still is not SMTP: the server's first bytes another protocol's. */
static void test_not_smtp_banners(void **state)
{
	static const char *const banners[] = {
		"SSH-2.0-OpenSSH_9.2p1\r\n", "HTTP/1.1 400 Bad Request\r\n", "+OK POP3 ready\r\n",
		"* OK [CAPABILITY IMAP4rev1] ready\r\n",
	};
	size_t b;
	struct run r;

	for (b = 0; b < sizeof(banners) / sizeof(banners[0]); b++) {
		run_start(&r, NULL, false);
		say(&r, SV, banners[b]);
		assert_true(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
		assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_NOT_SMTP);
		session_free(r.s);
	}
	/* the server's first bytes a TLS record */
	build_tls13();
	run_start(&r, NULL, false);
	feed_step(&r, &(struct step){ SV, sh13_rec, sh13_len }, WHOLE, 0);
	assert_true(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
	assert_true(has_anomaly(r.s, SESSION_ANOM_TLS_NOT_SMTP));
	session_free(r.s);
	/* a client hello first, answered by an SMTP greeting: junk command
	 * lines to the server, the dialog goes on */
	{
		struct cmd_log l = { "" };

		run_start(&r, NULL, false);
		session_set_command_cb(r.s, log_command, &l);
		feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
		say(&r, SV, "220 mx ESMTP\r\n");
		say(&r, CL, "\r\nMAIL FROM:<a@secure.example.org>\r\n");
		assert_false(has_anomaly(r.s, SESSION_ANOM_NOT_SMTP));
		assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
		assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
		session_free(r.s);
	}
}

/* STARTTLS, a 220 the client did not read (bad checksum) and the real
 * 454, or a client that goes back to plaintext: the plaintext dialog is
 * read on, its MAIL FROM reported like any other. */
static void test_plaintext_after_starttls(void **state)
{
	static const char *const server_after[] = {
		"220 2.0.0 Ready\r\n454 4.7.0 TLS not available\r\n",
		"220 2.0.0 Ready\r\njunk\r\n454-4.7.0 TLS\r\nmore junk\r\n454 4.7.0 not available\r\n",
	};
	enum feed_mode mode;
	size_t k, cut;

	for (k = 0; k < sizeof(server_after) / sizeof(server_after[0]); k++) {
		const struct step steps[] = {
			{ SV, (const uint8_t *)server_after[k], strlen(server_after[k]) },
			TXT(CL, "MAIL FROM:<a@secure.example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"),
			TXT(SV, "250 ok\r\n250 ok\r\n354 go\r\n"),
			TXT(CL, "RCPT TO:<content@example.net>\r\n.\r\nQUIT\r\n"),
			TXT(SV, "250 queued\r\n221 bye\r\n"),
		};
		EACH_FEED(mode, cut, 90) {
			struct cmd_log l = { "" };
			struct run r;
			const struct session_info *i;

			run_start(&r, NULL, false);
			session_set_command_cb(r.s, log_command, &l);
			run_steps(&r, dialog_head, 4, mode, cut);
			run_steps(&r, steps, 5, mode, cut);
			i = session_info(r.s);
			assert_true(r.max < SESSION_OFFLOAD); /* never offloaded */
			assert_false(i->tls_judged);
			assert_int_equal(i->phase, SESSION_PHASE_SMTP);
			assert_int_equal(i->starttls_reply, 454);
			assert_false(i->starttls_accepted);
			assert_true(has_anomaly(r.s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS));
			assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
			assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
			assert_true(logged(&l, SMTP_VERB_END_OF_DATA, ""));
			assert_false(logged(&l, SMTP_VERB_RCPT, "content@example.net"));
			assert_true(logged(&l, SMTP_VERB_QUIT, ""));
			session_free(r.s);
		}
	}
	/* The client read the 220 and sent its hello; the server reads it as
	 * junk lines and answers; the client's plaintext after is read. */
	{
		struct cmd_log l = { "" };
		struct run r;

		build_tls13();
		run_start(&r, NULL, false);
		session_set_command_cb(r.s, log_command, &l);
		run_steps(&r, dialog_head, 4, WHOLE, 0);
		say(&r, SV, "220 go\r\n");
		feed_step(&r, &(struct step){ CL, ch_rec, ch_len }, WHOLE, 0);
		say(&r, SV, "454 4.7.0 no\r\n500 5.5.2 Error\r\n");
		say(&r, CL, "\r\nMAIL FROM:<a@secure.example.org>\r\n");
		assert_int_equal(session_info(r.s)->phase, SESSION_PHASE_SMTP);
		assert_false(session_info(r.s)->tls_judged);
		assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
		session_free(r.s);
	}
	/* The client goes back to plaintext after a 220: reported at once. */
	EACH_FEED(mode, cut, 40) {
		static const struct step tail[] = {
			TXT(SV, "220 go\r\n"),
			TXT(CL, "MAIL FROM:<a@secure.example.org>\r\n"),
		};
		struct cmd_log l = { "" };
		struct run r;

		run_start(&r, NULL, false);
		session_set_command_cb(r.s, log_command, &l);
		run_steps(&r, dialog_head, 4, mode, cut);
		run_steps(&r, tail, 2, mode, cut);
		assert_true(logged(&l, SMTP_VERB_MAIL, "a@secure.example.org"));
		assert_true(has_anomaly(r.s, SESSION_ANOM_PLAINTEXT_AFTER_STARTTLS));
		assert_true(r.max < SESSION_OFFLOAD);
		session_free(r.s);
	}
}

/* BDAT where the server did not offer CHUNKING (finding 7): an unknown
 * command, the "chunk" is command lines. */
static void test_bdat_without_chunking(void **state)
{
	static const char *const ehlo_replies[] = {
		"250-mx\r\n250 PIPELINING\r\n",
		/* offered once, then a successful EHLO without it */
		"250-mx\r\n250 CHUNKING\r\n",
	};
	enum feed_mode mode;
	size_t k, cut;

	for (k = 0; k < 2; k++) {
		const struct step steps[] = {
			TXT(SV, "220 mx ESMTP\r\n"),
			TXT(CL, "EHLO c\r\n"),
			{ SV, (const uint8_t *)ehlo_replies[k], strlen(ehlo_replies[k]) },
			TXT(CL, "EHLO c\r\n"),
			{ SV, (const uint8_t *)(k ? "250-mx\r\n250 PIPELINING\r\n" : "250 mx\r\n"), k ? 24 : 8 },
			TXT(CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 27\r\n"
				"RCPT TO:<hidden@example.net>\r\n"),
			TXT(SV, "250 ok\r\n250 ok\r\n502 5.5.2 unknown\r\n250 ok\r\n"),
		};
		EACH_FEED(mode, cut, 90) {
			struct cmd_log l = { "" };
			struct run r;

			run_start(&r, NULL, false);
			session_set_command_cb(r.s, log_command, &l);
			run_steps(&r, steps, 7, mode, cut);
			assert_true(logged(&l, SMTP_VERB_RCPT, "hidden@example.net"));
			assert_int_equal(session_replies_owed(r.s), 0);
			assert_false(has_anomaly(r.s, SESSION_ANOM_UNSOLICITED_REPLY));
			session_free(r.s);
		}
	}
	/* Offered, then a failed EHLO (501): still offered; a refused BDAT's
	 * chunk is read all the same (RFC 3030, Postfix skip_bdat()). */
	{
		static const struct step steps[] = {
			TXT(SV, "220 mx ESMTP\r\n"),
			TXT(CL, "EHLO c\r\n"),
			TXT(SV, "250-mx\r\n250 CHUNKING\r\n"),
			TXT(CL, "EHLO\r\n"),
			TXT(SV, "501 5.5.4 Syntax: EHLO hostname\r\n"),
			TXT(CL, "BDAT 28\r\nRCPT TO:<chunk@example.net>\r\nRSET\r\n"),
			TXT(SV, "503 5.5.1 Error: need RCPT command\r\n250 ok\r\n"),
		};
		EACH_FEED(mode, cut, 60) {
			struct cmd_log l = { "" };
			struct run r;

			run_start(&r, NULL, false);
			session_set_command_cb(r.s, log_command, &l);
			run_steps(&r, steps, 7, mode, cut);
			assert_false(logged(&l, SMTP_VERB_RCPT, "chunk@example.net"));
			assert_true(logged(&l, SMTP_VERB_RSET, ""));
			assert_true(session_info(r.s)->smtp_caps & SMTP_CAP_CHUNKING);
			assert_int_equal(session_replies_owed(r.s), 0);
			session_free(r.s);
		}
	}
}

/* SMTP smuggling (finding 8): an end of data that servers disagree on is
 * flagged in the segment that completes it and ends nothing. */
static void test_ambiguous_end_of_data(void **state)
{
	static const struct {
		const char *seq; /* after "body" */
		size_t at;       /* bytes of it that make it ambiguous */
	} cases[] = {
		{ "\n.\n", 3 },        { "\n.\r\n", 3 },     { "\r\n.\n", 4 },
		{ "\r.\r\n", 3 },      { "\r.\n", 3 },       { "\r\n.\r\r\n", 5 },
		{ "\r\n.\rX\r\n", 5 }, { "\n.\rX\r\n", 3 },  { "\r\n\r.\r\n", 5 },
	};
	static const char smuggled[] = "MAIL FROM:<smuggled@example.org>\r\nRCPT TO:<x@example.net>\r\n";
	size_t k, cut;

	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char content[512];
		size_t pre, total;

		pre = (size_t)snprintf(content, sizeof(content), "Subject: x\r\n\r\nbody");
		total = pre + (size_t)snprintf(content + pre, sizeof(content) - pre, "%s%s\r\n.\r\nQUIT\r\n",
					       cases[k].seq, smuggled);
		for (cut = 1; cut < total; cut++) {
			struct cmd_log l = { "" };
			char want[512];
			struct run r;
			bool done = cut >= pre + cases[k].at;

			content_start(&r, 0xfffffff0u, &l);
			seg(&r, CL, r.seq[CL], (const uint8_t *)content, cut, SESSION_TCP_ACK);
			/* raised with the byte that completes it, not before */
			if (has_anomaly(r.s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA) != done)
				print_message("case %zu cut %zu\n", k, cut);
			assert_int_equal(has_anomaly(r.s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA), done);
			if (!done)
				assert_false(content_ready(&r) && cut == pre + cases[k].at - 1 &&
					     content[cut - 1] == '.');
			seg(&r, CL, r.seq[CL] + (uint32_t)cut, (const uint8_t *)content + cut, total - cut,
			    SESSION_TCP_ACK);
			r.seq[CL] += (uint32_t)total;
			say(&r, SV, "250 queued\r\n221 bye\r\n");
			assert_true(has_anomaly(r.s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA));
			/* no transaction invented: content up to CRLF.CRLF */
			want_commands(want, sizeof(want), "", SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT, 0);
			assert_string_equal(l.text, want);
			session_free(r.s);
		}
	}
	/* Not ready for the kernel while a held '.' may still be one. */
	{
		static const char *const held[] = { "abc\r.", "abc\r", ".", ".\r" };
		static const bool ready[] = { false, true, false, false };
		struct run r;

		for (k = 0; k < 4; k++) {
			content_start(&r, 7, NULL);
			say(&r, CL, held[k]);
			assert_int_equal(content_ready(&r), ready[k]);
			session_free(r.s);
		}
	}
	/* The unambiguous end, and dot-stuffed lines: no anomaly. */
	{
		struct cmd_log l = { "" };
		char want[512];
		struct run r;

		content_start(&r, 7, &l);
		say(&r, CL, "..\r\n.x\r\n\r\n. \r\n..\n\r\n.\r\nQUIT\r\n");
		want_commands(want, sizeof(want), "", SMTP_VERB_END_OF_DATA, SMTP_VERB_QUIT, 0);
		assert_string_equal(l.text, want);
		assert_false(has_anomaly(r.s, SESSION_ANOM_AMBIGUOUS_END_OF_DATA));
		session_free(r.s);
	}
}

/* A rejected EHLO (finding 10) keeps the envelope and the capabilities;
 * a successful one, and RSET's 250, reset what was open when it was sent. */
static void test_failed_ehlo_keeps_envelope(void **state)
{
	static const struct step steps[] = {
		TXT(SV, "220 mx ESMTP\r\n"),
		TXT(CL, "EHLO c\r\n"),
		TXT(SV, "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"),
		TXT(CL, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nEHLO\r\nHELO\r\n"
			"RCPT TO:<c@example.net>\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n501 5.5.4 Syntax: EHLO hostname\r\n"
			"501 5.5.4 Syntax: HELO hostname\r\n250 ok\r\n"),
		/* pipelined: RSET's reply comes after the next MAIL */
		TXT(CL, "RSET\r\nMAIL FROM:<d@example.org>\r\nRCPT TO:<e@example.net>\r\n"),
		TXT(SV, "250 ok\r\n250 ok\r\n250 ok\r\n"),
		TXT(CL, "EHLO c\r\n"),
		TXT(SV, "250 mx\r\n"),
		TXT(CL, "RCPT TO:<f@example.net>\r\n"),
		TXT(SV, "503 5.5.1 Error: need MAIL command\r\n"),
	};
	enum feed_mode mode;
	size_t cut;

	EACH_FEED(mode, cut, 120) {
		struct run r;
		json_t *o, *t;

		run_start(&r, NULL, false);
		run_steps(&r, steps, 7, mode, cut);
		assert_false(has_anomaly(r.s, SESSION_ANOM_RCPT_WITHOUT_MAIL));
		assert_true(session_info(r.s)->smtp_caps & SMTP_CAP_CHUNKING);
		o = summary(r.s);
		t = json_object_get(o, "transactions");
		assert_int_equal(json_array_size(t), 2);
		assert_int_equal(json_array_size(json_object_get(json_array_get(t, 0), "rcptto")), 2);
		assert_int_equal(json_array_size(json_object_get(json_array_get(t, 1), "rcptto")), 1);
		json_decref(o);
		/* a successful EHLO ends the transaction; its caps replace */
		run_steps(&r, steps + 7, 4, mode, cut);
		assert_true(has_anomaly(r.s, SESSION_ANOM_RCPT_WITHOUT_MAIL));
		assert_int_equal(session_info(r.s)->smtp_caps, 0);
		session_free(r.s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_starttls_tls13_all_segmentations),
		cmocka_unit_test(test_tls12_certificate_across_records),
		cmocka_unit_test(test_tls12_not_judged_before_server_hello_done),
		cmocka_unit_test(test_refused_then_plaintext_transaction),
		cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_server_speaks_early),
		cmocka_unit_test(test_overlap_with_different_bytes),
		cmocka_unit_test(test_oversized_line_then_more),
		cmocka_unit_test(test_fatal_alert),
		cmocka_unit_test(test_bogus_records),
		cmocka_unit_test(test_hello_retry_request),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_limit_before_verdict),
		cmocka_unit_test(test_pipelining_and_bdat),
		cmocka_unit_test(test_command_callback),
		cmocka_unit_test(test_midstream_pickup),
		cmocka_unit_test(test_not_smtp),
		cmocka_unit_test(test_sslv2_hello),
		cmocka_unit_test(test_sslv2_lookalike_any_split),
		cmocka_unit_test(test_memory_bounded_long_dialog),
		cmocka_unit_test(test_content_ready_in_data),
		cmocka_unit_test(test_content_not_ready_outside_data),
		cmocka_unit_test(test_chunk_ready),
		cmocka_unit_test(test_content_not_ready_out_of_order),
		cmocka_unit_test(test_content_not_ready_on_leading_dot),
		cmocka_unit_test(test_content_skip_then_resume),
		cmocka_unit_test(test_content_skip_mid_line),
		cmocka_unit_test(test_content_ended_in_kernel),
		cmocka_unit_test(test_await_stage),
		cmocka_unit_test(test_content_skip_backwards),
		cmocka_unit_test(test_content_skip_hostile),
		cmocka_unit_test(test_client_next),
		cmocka_unit_test(test_junk_before_greeting),
		cmocka_unit_test(test_client_talks_first),
		cmocka_unit_test(test_not_smtp_banners),
		cmocka_unit_test(test_plaintext_after_starttls),
		cmocka_unit_test(test_bdat_without_chunking),
		cmocka_unit_test(test_ambiguous_end_of_data),
		cmocka_unit_test(test_failed_ehlo_keeps_envelope),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
