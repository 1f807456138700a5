/* test_dns_parse.c - the DNS message parser on hand-built messages: real
 * looking answers, then every kind of lie a hostile packet can tell. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dns_parse.h"

/* ---------- a small message writer ---------- */

struct w {
	uint8_t b[70000];
	size_t n;
};

static void w8(struct w *w, uint8_t v)
{
	w->b[w->n++] = v;
}

static void w16(struct w *w, uint16_t v)
{
	w8(w, v >> 8);
	w8(w, v & 0xff);
}

static void w32(struct w *w, uint32_t v)
{
	w16(w, v >> 16);
	w16(w, v & 0xffff);
}

static void wbytes(struct w *w, const void *p, size_t n)
{
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

/* Dotted name, uncompressed. Returns its offset. */
static size_t wname(struct w *w, const char *name)
{
	size_t at = w->n;
	const char *p = name, *dot;

	while (*p) {
		dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		w8(w, (uint8_t)l);
		wbytes(w, p, l);
		p += l + (dot ? 1 : 0);
	}
	w8(w, 0);
	return at;
}

static void wptr(struct w *w, size_t target)
{
	w16(w, (uint16_t)(0xc000 | target));
}

static void whdr(struct w *w, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
	w->n = 0;
	w16(w, 0x1234);
	w16(w, 0x8180); /* response, RD, RA */
	w16(w, qd);
	w16(w, an);
	w16(w, ns);
	w16(w, ar);
}

/* RR fixed part with a placeholder rdlength; returns where it is. */
static size_t wrr(struct w *w, uint16_t type, uint32_t ttl)
{
	w16(w, type);
	w16(w, DNS_CLASS_IN);
	w32(w, ttl);
	w16(w, 0);
	return w->n - 2;
}

static void wrdlen(struct w *w, size_t at)
{
	uint16_t l = (uint16_t)(w->n - at - 2);

	w->b[at] = l >> 8;
	w->b[at + 1] = l & 0xff;
}

static int parse(const struct w *w, struct dns_msg **m, struct dns_parse_error *e)
{
	return dns_msg_parse(w->b, w->n, m, e);
}

static const uint8_t tlsa_digest[32] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8,
					 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
					 21, 22, 23, 24, 25, 26, 27, 28 };

/* example.org MX: two MX (compressed against the question), glue A/AAAA,
 * and a TLSA for mx1 whose owner is compressed against mx1's name. */
static void build_mx_answer(struct w *w)
{
	size_t q, mx1, at;
	struct in6_addr a6;

	whdr(w, 1, 2, 0, 3);
	q = wname(w, "example.org");
	w16(w, DNS_TYPE_MX);
	w16(w, DNS_CLASS_IN);

	wptr(w, q);
	at = wrr(w, DNS_TYPE_MX, 3600);
	w16(w, 10);
	mx1 = w->n;
	w8(w, 3);
	wbytes(w, "mx1", 3);
	wptr(w, q);
	wrdlen(w, at);

	wptr(w, q);
	at = wrr(w, DNS_TYPE_MX, 3600);
	w16(w, 20);
	w8(w, 3);
	wbytes(w, "mx2", 3);
	wptr(w, q);
	wrdlen(w, at);

	wptr(w, mx1);
	at = wrr(w, DNS_TYPE_A, 300);
	w8(w, 192), w8(w, 0), w8(w, 2), w8(w, 25);
	wrdlen(w, at);

	wptr(w, mx1);
	at = wrr(w, DNS_TYPE_AAAA, 300);
	inet_pton(AF_INET6, "2001:db8::25", &a6);
	wbytes(w, &a6, 16);
	wrdlen(w, at);

	/* _25._tcp, then a pointer to mx1's labels inside the first MX. */
	w8(w, 3);
	wbytes(w, "_25", 3);
	w8(w, 4);
	wbytes(w, "_tcp", 4);
	wptr(w, mx1);
	at = wrr(w, DNS_TYPE_TLSA, 600);
	w8(w, 3), w8(w, 1), w8(w, 1);
	wbytes(w, tlsa_digest, sizeof(tlsa_digest));
	wrdlen(w, at);
}

/* ---------- tests ---------- */

static void test_real_answer(void **state)
{
	struct w *w = calloc(1, sizeof(*w));
	struct dns_msg *m;
	char a6[64];

	build_mx_answer(w);
	assert_int_equal(parse(w, &m, NULL), 0);
	assert_int_equal(m->id, 0x1234);
	assert_true(m->qr && m->rd && m->ra && !m->tc && !m->aa);
	assert_int_equal(m->rcode, 0);
	assert_int_equal(m->n_qd, 1);
	assert_string_equal(m->qd[0].name, "example.org");
	assert_int_equal(m->qd[0].qtype, DNS_TYPE_MX);
	assert_int_equal(m->n_rr, 5);
	assert_int_equal(m->trailing, 0);

	assert_int_equal(m->rr[0].section, DNS_SECTION_ANSWER);
	assert_string_equal(m->rr[0].name, "example.org");
	assert_int_equal(m->rr[0].u.mx.preference, 10);
	assert_string_equal(m->rr[0].u.mx.exchange, "mx1.example.org");
	assert_int_equal(m->rr[0].ttl, 3600);
	assert_string_equal(m->rr[1].u.mx.exchange, "mx2.example.org");

	assert_int_equal(m->rr[2].section, DNS_SECTION_ADDITIONAL);
	assert_string_equal(m->rr[2].name, "mx1.example.org");
	assert_string_equal(inet_ntoa(m->rr[2].u.a), "192.0.2.25");
	inet_ntop(AF_INET6, &m->rr[3].u.aaaa, a6, sizeof(a6));
	assert_string_equal(a6, "2001:db8::25");

	assert_string_equal(m->rr[4].name, "_25._tcp.mx1.example.org");
	assert_int_equal(m->rr[4].type, DNS_TYPE_TLSA);
	assert_int_equal(m->rr[4].u.tlsa.usage, 3);
	assert_int_equal(m->rr[4].u.tlsa.selector, 1);
	assert_int_equal(m->rr[4].u.tlsa.mtype, 1);
	assert_int_equal(m->rr[4].u.tlsa.len, 32);
	assert_memory_equal(m->rr[4].u.tlsa.data, tlsa_digest, 32);
	assert_true(dns_name_equal(m->rr[4].name, "_25._TCP.MX1.Example.Org"));
	dns_msg_free(m);
	dns_msg_free(NULL);
	free(w);
}

static void test_truncated_everywhere(void **state)
{
	struct w *w = calloc(1, sizeof(*w));
	struct dns_parse_error e;
	struct dns_msg *m;
	size_t full, i;

	build_mx_answer(w);
	full = w->n;
	for (i = 0; i < full; i++) {
		w->n = i;
		assert_int_equal(parse(w, &m, &e), -EBADMSG);
		assert_null(m);
		assert_true(e.code == DNS_E_TRUNCATED || e.code == DNS_E_RDLENGTH);
	}
	/* Extra bytes after the last record are tolerated and counted. */
	w->n = full;
	w8(w, 0xff);
	assert_int_equal(parse(w, &m, &e), 0);
	assert_int_equal(m->trailing, 1);
	dns_msg_free(m);
	free(w);
}

static void test_compression_loops(void **state)
{
	struct w w;
	struct dns_parse_error e;
	struct dns_msg *m;
	size_t q;

	/* Pointer to itself. */
	whdr(&w, 1, 0, 0, 0);
	wptr(&w, 12);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_PTR_FORWARD);
	/* Pointer into the name's own labels: backwards from the pointer, but
	 * not from the sequence's start - the loop case. */
	whdr(&w, 1, 0, 0, 0);
	w8(&w, 1), w8(&w, 'a'), w8(&w, 1), w8(&w, 'b');
	wptr(&w, 14);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_PTR_FORWARD);
	/* Two names pointing at each other: the second jump goes forward. */
	whdr(&w, 2, 0, 0, 0);
	q = w.n;
	w8(&w, 1), w8(&w, 'a');
	wptr(&w, 22); /* forward, into the second question */
	w16(&w, 1), w16(&w, 1);
	w8(&w, 1), w8(&w, 'b');
	wptr(&w, q);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_PTR_FORWARD);
	/* Forward pointer past the end. */
	whdr(&w, 1, 0, 0, 0);
	wptr(&w, 0x3fff);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_PTR_FORWARD);
	/* Pointer into the header is backwards and legal bytes-wise, but the
	 * header bytes make a bad label type there (0x81 flags byte). */
	whdr(&w, 1, 0, 0, 0);
	wptr(&w, 2);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_LABEL_TYPE);
}

static void test_pointer_hops_bound(void **state)
{
	struct w w;
	struct dns_parse_error e;
	struct dns_msg *m;
	size_t at, base, last, k, hops;

	for (hops = DNS_PTR_HOPS_MAX; hops <= DNS_PTR_HOPS_MAX + 1; hops++) {
		/* An opaque record holds a root name and a chain of pointers,
		 * each to the previous one; the second record's owner jumps
		 * onto the chain's end: `hops` jumps in all. */
		whdr(&w, 0, 2, 0, 0);
		w8(&w, 0);
		at = wrr(&w, 65280, 0);
		base = w.n;
		w8(&w, 0);
		last = base;
		for (k = 0; k + 1 < hops; k++) {
			size_t here = w.n;

			wptr(&w, last);
			last = here;
		}
		wrdlen(&w, at);
		wptr(&w, last);
		at = wrr(&w, 65280, 0);
		wrdlen(&w, at);
		if (hops <= DNS_PTR_HOPS_MAX) {
			assert_int_equal(parse(&w, &m, &e), 0);
			assert_string_equal(m->rr[1].name, ".");
			dns_msg_free(m);
		} else {
			assert_int_equal(parse(&w, &m, &e), -EBADMSG);
			assert_int_equal(e.code, DNS_E_PTR_HOPS);
		}
	}
}

static void test_name_lengths(void **state)
{
	char l63[64], l61[62], l62[63], name[400];
	struct w w;
	struct dns_parse_error e;
	struct dns_msg *m;
	size_t q, at;

	memset(l63, 'a', 63), l63[63] = 0;
	memset(l61, 'b', 61), l61[61] = 0;
	memset(l62, 'c', 62), l62[62] = 0;
	/* Exactly 255 bytes on the wire: 3 x (1+63) + (1+61) + 1. */
	snprintf(name, sizeof(name), "%s.%s.%s.%s", l63, l63, l63, l61);
	whdr(&w, 1, 0, 0, 0);
	wname(&w, name);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), 0);
	assert_string_equal(m->qd[0].name, name);
	dns_msg_free(m);
	/* 256 bytes. */
	snprintf(name, sizeof(name), "%s.%s.%s.%s", l63, l63, l63, l62);
	whdr(&w, 1, 0, 0, 0);
	wname(&w, name);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_NAME_TOO_LONG);
	/* Too long only once decompressed: 2 x 64 + pointer to 3 x 64 + 1. */
	snprintf(name, sizeof(name), "%s.%s.%s", l63, l63, l63);
	whdr(&w, 1, 1, 0, 0);
	q = wname(&w, name);
	w16(&w, 1), w16(&w, 1);
	w8(&w, 63), wbytes(&w, l63, 63);
	w8(&w, 63), wbytes(&w, l63, 63);
	wptr(&w, q);
	at = wrr(&w, 1, 0);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_NAME_TOO_LONG);
	/* Length byte 64 is the 0x40 label type. */
	whdr(&w, 1, 0, 0, 0);
	w8(&w, 64);
	memset(w.b + w.n, 'x', 64), w.n += 64;
	w8(&w, 0);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_LABEL_TYPE);
}

static void test_escapes(void **state)
{
	struct w w;
	struct dns_msg *m;

	whdr(&w, 1, 0, 0, 0);
	w8(&w, 5), wbytes(&w, "a.b\\ ", 5);
	w8(&w, 2), w8(&w, 0), w8(&w, 0xff);
	w8(&w, 0);
	w16(&w, 1), w16(&w, 1);
	assert_int_equal(parse(&w, &m, NULL), 0);
	assert_string_equal(m->qd[0].name, "a\\.b\\\\\\032.\\000\\255");
	dns_msg_free(m);
	/* Root. */
	whdr(&w, 1, 0, 0, 0);
	w8(&w, 0);
	w16(&w, 2), w16(&w, 1);
	assert_int_equal(parse(&w, &m, NULL), 0);
	assert_string_equal(m->qd[0].name, ".");
	dns_msg_free(m);
}

static void test_counts_that_lie(void **state)
{
	struct w *w = calloc(1, sizeof(*w));
	struct dns_parse_error e;
	struct dns_msg *m;

	build_mx_answer(w);
	w->b[7] = 3; /* ancount 2 -> 3: records run out */
	assert_int_equal(parse(w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_TRUNCATED);
	w->b[7] = 1; /* fewer: the rest moves to later sections, still parses */
	assert_int_equal(parse(w, &m, &e), 0);
	assert_int_equal(m->rr[1].section, DNS_SECTION_ADDITIONAL);
	dns_msg_free(m);
	w->b[6] = 0xff, w->b[7] = 0xff; /* 65535 answers */
	assert_int_equal(parse(w, &m, &e), -E2BIG);
	assert_int_equal(e.code, DNS_E_TOO_MANY);
	/* Within the record bound but more than the bytes can hold. */
	w->b[6] = 0x03, w->b[7] = 0x00;
	assert_int_equal(parse(w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_TRUNCATED);
	w->b[6] = 0, w->b[7] = 2;
	w->b[4] = 0, w->b[5] = DNS_QD_MAX + 1;
	assert_int_equal(parse(w, &m, &e), -E2BIG);
	free(w);
}

static void test_rdata_shapes(void **state)
{
	struct w w;
	struct dns_parse_error e;
	struct dns_msg *m;
	size_t q, at;

	/* RDLENGTH past the end. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	w16(&w, DNS_TYPE_A), w16(&w, 1), w32(&w, 0), w16(&w, 200);
	w8(&w, 1), w8(&w, 2), w8(&w, 3), w8(&w, 4);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_RDLENGTH);
	/* A of 5 bytes, AAAA of 4. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_A, 0);
	w32(&w, 1), w8(&w, 0);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_RDATA);
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_AAAA, 0);
	w32(&w, 1);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_RDATA);
	/* MX name running past RDLENGTH into the next bytes. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_MX, 0);
	w16(&w, 10), w8(&w, 2), w8(&w, 'm'), w8(&w, 'x');
	wrdlen(&w, at);
	w8(&w, 0); /* the terminator outside RDATA */
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_RDATA);
	/* MX name shorter than RDLENGTH. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_MX, 0);
	w16(&w, 10), wname(&w, "mx"), w8(&w, 0);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_RDATA);
	/* CNAME with a legal backwards pointer, TLSA with empty data. */
	whdr(&w, 1, 2, 0, 0);
	q = wname(&w, "www.example.net");
	w16(&w, 1), w16(&w, 1);
	wptr(&w, q);
	at = wrr(&w, DNS_TYPE_CNAME, 60);
	w8(&w, 4), wbytes(&w, "host", 4), wptr(&w, q + 4);
	wrdlen(&w, at);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_TLSA, 60);
	w8(&w, 2), w8(&w, 0), w8(&w, 1);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), 0);
	assert_string_equal(m->rr[0].u.target, "host.example.net");
	assert_int_equal(m->rr[1].u.tlsa.len, 0);
	dns_msg_free(m);
	/* TLSA shorter than its fixed part. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	at = wrr(&w, DNS_TYPE_TLSA, 0);
	w8(&w, 3), w8(&w, 1);
	wrdlen(&w, at);
	assert_int_equal(parse(&w, &m, &e), -EBADMSG);
	assert_int_equal(e.code, DNS_E_BAD_RDATA);
	/* Other classes stay opaque: an A of 3 bytes in class CH is fine. */
	whdr(&w, 0, 1, 0, 0);
	w8(&w, 0);
	w16(&w, DNS_TYPE_A), w16(&w, 3), w32(&w, 0), w16(&w, 3), w8(&w, 1), w8(&w, 2), w8(&w, 3);
	assert_int_equal(parse(&w, &m, &e), 0);
	assert_int_equal(m->rr[0].rdlength, 3);
	dns_msg_free(m);
}

static void test_sizes_and_args(void **state)
{
	static uint8_t big[DNS_MSG_MAX + 1];
	struct dns_parse_error e;
	struct dns_msg *m;

	assert_int_equal(dns_msg_parse(big, sizeof(big), &m, &e), -E2BIG);
	assert_int_equal(e.code, DNS_E_TOO_BIG);
	assert_int_equal(dns_msg_parse(big, 11, &m, &e), -EBADMSG);
	assert_int_equal(dns_msg_parse(big, 12, &m, &e), 0); /* empty header-only message */
	dns_msg_free(m);
	assert_int_equal(dns_msg_parse(NULL, 12, &m, &e), -EINVAL);
	assert_int_equal(dns_msg_parse(big, 12, NULL, &e), -EINVAL);
}

static void test_tcp_framing(void **state)
{
	struct w *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint8_t stream[2 * sizeof(a->b)];
	const uint8_t *msg;
	size_t n = 0, msg_len, consumed, cut, alen;
	struct dns_msg *m;
	int rc;

	build_mx_answer(a);
	whdr(b, 1, 0, 0, 0);
	wname(b, "example.com");
	w16(b, 1), w16(b, 1);
	stream[n++] = (uint8_t)(a->n >> 8), stream[n++] = (uint8_t)a->n;
	memcpy(stream + n, a->b, a->n), n += a->n;
	stream[n++] = 0, stream[n++] = (uint8_t)b->n;
	memcpy(stream + n, b->b, b->n), n += b->n;
	alen = a->n + 2;
	/* The stream split at every byte: incomplete until the first
	 * message is whole, then exactly that message. */
	for (cut = 0; cut <= n; cut++) {
		rc = dns_tcp_next(stream, cut, &msg, &msg_len, &consumed);
		if (cut < alen) {
			assert_int_equal(rc, -EAGAIN);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(consumed, alen);
		assert_int_equal(msg_len, a->n);
		assert_memory_equal(msg, a->b, a->n);
		rc = dns_tcp_next(stream + consumed, cut - consumed, &msg, &msg_len, &consumed);
		assert_int_equal(rc, cut == n ? 0 : -EAGAIN);
	}
	assert_int_equal(dns_tcp_next(stream + alen, n - alen, &msg, &msg_len, &consumed), 0);
	assert_int_equal(dns_msg_parse(msg, msg_len, &m, NULL), 0);
	assert_string_equal(m->qd[0].name, "example.com");
	dns_msg_free(m);
	/* A length shorter than a header is not DNS. */
	stream[0] = 0, stream[1] = 11;
	assert_int_equal(dns_tcp_next(stream, n, &msg, &msg_len, &consumed), -EBADMSG);
	assert_int_equal(dns_tcp_next(NULL, 5, &msg, &msg_len, &consumed), -EINVAL);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_answer),
		cmocka_unit_test(test_truncated_everywhere),
		cmocka_unit_test(test_compression_loops),
		cmocka_unit_test(test_pointer_hops_bound),
		cmocka_unit_test(test_name_lengths),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_counts_that_lie),
		cmocka_unit_test(test_rdata_shapes),
		cmocka_unit_test(test_sizes_and_args),
		cmocka_unit_test(test_tcp_framing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
