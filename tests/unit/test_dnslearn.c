/* test_dnslearn.c - learning address -> MX name -> domain from DNS answers
 * as the MTAs receive them: MX with glue, A answers in a later message,
 * CNAMEs, null MX, queries (not answers), errors, hostile bytes; and only
 * from answers that match a query seen leaving the inside (issue 18.4):
 * an unmatched (forged) answer, or one whose id, port, address, question,
 * transport or interface differs, is ignored; one query admits one
 * answer; the table of outstanding queries is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dnslearn.h"
#include "store.h"

/* A tiny DNS message writer (no compression). */
struct w {
	uint8_t b[2048];
	size_t n;
};

static void put8(struct w *w, uint8_t v) { w->b[w->n++] = v; }
static void put16(struct w *w, uint16_t v) { put8(w, (uint8_t)(v >> 8)); put8(w, (uint8_t)v); }
static void put32(struct w *w, uint32_t v) { put16(w, (uint16_t)(v >> 16)); put16(w, (uint16_t)v); }
static void putname(struct w *w, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		put8(w, (uint8_t)l);
		memcpy(w->b + w->n, name, l);
		w->n += l;
		name += l + (dot ? 1 : 0);
	}
	put8(w, 0);
}
static uint16_t msg_id = 0x1234; /* the id header() writes */
static void header(struct w *w, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ar)
{
	w->n = 0;
	put16(w, msg_id);
	put16(w, flags);
	put16(w, qd);
	put16(w, an);
	put16(w, 0);
	put16(w, ar);
}
static void question(struct w *w, const char *name, uint16_t type)
{
	putname(w, name);
	put16(w, type);
	put16(w, 1);
}
static void rr_mx(struct w *w, const char *name, uint16_t pref, const char *host, uint32_t ttl)
{
	putname(w, name);
	put16(w, 15);
	put16(w, 1);
	put32(w, ttl);
	size_t at = w->n;
	put16(w, 0);
	put16(w, pref);
	putname(w, host);
	uint16_t len = (uint16_t)(w->n - at - 2);
	w->b[at] = (uint8_t)(len >> 8);
	w->b[at + 1] = (uint8_t)len;
}
static void rr_cname(struct w *w, const char *name, const char *target)
{
	putname(w, name);
	put16(w, 5);
	put16(w, 1);
	put32(w, 300);
	size_t at = w->n;
	put16(w, 0);
	putname(w, target);
	uint16_t len = (uint16_t)(w->n - at - 2);
	w->b[at] = (uint8_t)(len >> 8);
	w->b[at + 1] = (uint8_t)len;
}
static void rr_addr(struct w *w, const char *name, const char *addr, uint32_t ttl)
{
	uint8_t a[16];
	bool v6 = strchr(addr, ':') != NULL;
	assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, addr, a), 1);
	putname(w, name);
	put16(w, v6 ? 28 : 1);
	put16(w, 1);
	put32(w, ttl);
	put16(w, v6 ? 16 : 4);
	memcpy(w->b + w->n, a, v6 ? 16 : 4);
	w->n += v6 ? 16 : 4;
}

#define ANSWER 0x8180 /* QR RD RA, NOERROR */
#define NOW 1000000
#define IF_INSIDE 3
#define IF_OUTSIDE 4

/* The sending MTA 192.0.2.10:40000 asks the resolver 203.0.113.10 (the
 * query arrives on the inside interface, the answer on the outside). */
static struct dnslearn_wire wire(const char *src, uint16_t sport, const char *dst, uint16_t dport,
				 uint32_t ifindex)
{
	struct dnslearn_wire x = { .sport = sport, .dport = dport, .ifindex = ifindex,
				   .proto = IPPROTO_UDP };
	bool v6 = strchr(src, ':') != NULL;
	x.family = v6 ? AF_INET6 : AF_INET;
	if (v6) {
		assert_int_equal(inet_pton(AF_INET6, src, x.saddr), 1);
		assert_int_equal(inet_pton(AF_INET6, dst, x.daddr), 1);
	} else {
		x.saddr[10] = x.saddr[11] = x.daddr[10] = x.daddr[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, src, x.saddr + 12), 1);
		assert_int_equal(inet_pton(AF_INET, dst, x.daddr + 12), 1);
	}
	return x;
}
#define QUERY_WIRE wire("192.0.2.10", 40000, "203.0.113.10", 53, IF_INSIDE)
#define ANSWER_WIRE wire("203.0.113.10", 53, "192.0.2.10", 40000, IF_OUTSIDE)

static struct dnslearn *dl;

/* The MTA's query for (name, type) with id msg_id, seen as q. */
static void send_query(const struct dnslearn_wire *q, const char *name, uint16_t type, int64_t now)
{
	struct w w;
	header(&w, 0x0100, 1, 0, 0);
	question(&w, name, type);
	dnslearn_packet(dl, q, w.b, w.n, now);
}

/* The answer a, after the query for its question (read back from a). */
static void exchange(const struct w *a, const char *name, uint16_t type, int64_t now)
{
	struct dnslearn_wire q = QUERY_WIRE, r = ANSWER_WIRE;
	send_query(&q, name, type, now);
	dnslearn_packet(dl, &r, a->b, a->n, now);
}

static char db_path[64];
static struct store *st;
static char probed[1024];

static int on_probe(void *arg, const char *domain)
{
	strncat(probed, domain, sizeof(probed) - strlen(probed) - 2);
	strcat(probed, ";");
	return 0;
}

static int setup(void **state)
{
	snprintf(db_path, sizeof(db_path), "/tmp/test_dnslearn.XXXXXX");
	int fd = mkstemp(db_path);
	close(fd);
	unlink(db_path);
	st = store_open(db_path, false);
	dl = dnslearn_open(-1, st, on_probe, NULL);
	probed[0] = '\0';
	msg_id = 0x1234;
	return st && dl ? 0 : -1;
}

static int teardown(void **state)
{
	char p[96];
	dnslearn_close(dl);
	store_close(st);
	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
	return 0;
}

static void expect_mx(const char *addr, const char *mx, const char *domain)
{
	char m[STORE_NAME_MAX], d[STORE_NAME_MAX];
	bool secure = true;
	if (!mx) {
		assert_int_equal(store_addr_mx_get(st, addr, NOW, m, d, &secure), -ENOENT);
		return;
	}
	assert_int_equal(store_addr_mx_get(st, addr, NOW, m, d, &secure), 0);
	assert_string_equal(m, mx);
	assert_string_equal(d, domain);
	assert_false(secure); /* a hint, never validated */
}

static void test_mx_with_glue(void **state)
{
	struct w w;
	header(&w, ANSWER, 1, 2, 2);
	question(&w, "Example.NET", 15);
	rr_mx(&w, "Example.NET", 10, "MX1.example.net", 3600);
	rr_mx(&w, "example.net", 20, "mx2.example.net.", 3600);
	rr_addr(&w, "mx1.example.net", "198.51.100.7", 300);
	rr_addr(&w, "mx2.example.net", "2001:db8:2::7", 300);
	exchange(&w, "example.net", 15, NOW); /* the question's case may differ */
	expect_mx("198.51.100.7", "mx1.example.net", "example.net");
	expect_mx("2001:db8:2::7", "mx2.example.net", "example.net");
	assert_string_equal(probed, "example.net;"); /* once per interval */
	assert_int_equal(dnslearn_stats(dl)->addr_learned, 2);
}

static void test_address_in_a_later_answer_and_cname(void **state)
{
	struct w w;
	header(&w, ANSWER, 1, 1, 0);
	question(&w, "example.org", 15);
	rr_mx(&w, "example.org", 10, "mail.example.org", 3600);
	exchange(&w, "example.org", 15, NOW);
	expect_mx("203.0.113.9", NULL, NULL);
	/* The MTA then asks for the A record: a CNAME chain to the host. */
	header(&w, ANSWER, 1, 3, 0);
	question(&w, "mail.example.org", 1);
	rr_cname(&w, "mail.example.org", "relay.example.org");
	rr_cname(&w, "relay.example.org", "box.hoster.example");
	rr_addr(&w, "box.hoster.example", "203.0.113.9", 600);
	exchange(&w, "mail.example.org", 1, NOW + 1);
	expect_mx("203.0.113.9", "mail.example.org", "example.org");
	/* An address of a host that is not an MX is not learned. */
	header(&w, ANSWER, 1, 1, 0);
	question(&w, "www.example.org", 1);
	rr_addr(&w, "www.example.org", "203.0.113.10", 600);
	exchange(&w, "www.example.org", 1, NOW + 2);
	expect_mx("203.0.113.10", NULL, NULL);
}

static void test_not_learned(void **state)
{
	struct w w;
	/* A query (QR = 0) carrying records, an NXDOMAIN answer, a null MX. */
	header(&w, 0x0100, 1, 2, 0);
	question(&w, "evil.example", 15);
	rr_mx(&w, "evil.example", 10, "mx.evil.example", 3600);
	rr_addr(&w, "mx.evil.example", "192.0.2.66", 300);
	exchange(&w, "evil.example", 15, NOW);
	header(&w, 0x8183, 1, 2, 0);
	question(&w, "evil.example", 15);
	rr_mx(&w, "evil.example", 10, "mx.evil.example", 3600);
	rr_addr(&w, "mx.evil.example", "192.0.2.66", 300);
	exchange(&w, "evil.example", 15, NOW);
	header(&w, ANSWER, 1, 1, 0);
	question(&w, "nomail.example", 15);
	rr_mx(&w, "nomail.example", 0, "", 3600);
	exchange(&w, "nomail.example", 15, NOW);
	expect_mx("192.0.2.66", NULL, NULL);
	assert_string_equal(probed, "");
}

static void test_ttl_bounds_expiry(void **state)
{
	struct w w;
	header(&w, ANSWER, 1, 2, 0);
	question(&w, "short.example", 15);
	rr_mx(&w, "short.example", 10, "mx.short.example", 3600);
	rr_addr(&w, "mx.short.example", "198.51.100.50", 60);
	exchange(&w, "short.example", 15, NOW);
	char m[STORE_NAME_MAX], d[STORE_NAME_MAX];
	bool secure;
	assert_int_equal(store_addr_mx_get(st, "198.51.100.50", NOW + 59, m, d, &secure), 0);
	assert_int_equal(store_addr_mx_get(st, "198.51.100.50", NOW + 61, m, d, &secure), -ENOENT);
}

static void test_hostile_bytes(void **state)
{
	struct w w;
	header(&w, ANSWER, 1, 2, 1);
	question(&w, "example.net", 15);
	rr_mx(&w, "example.net", 10, "mx1.example.net", 3600);
	rr_addr(&w, "mx1.example.net", "198.51.100.7", 300);
	/* Every truncation and every single-byte change: no crash, and a
	 * truncated message never yields a partial, wrong mapping. */
	struct w cut_w = w;
	for (size_t cut = 0; cut < w.n; cut++) {
		cut_w.n = cut;
		exchange(&cut_w, "example.net", 15, NOW);
	}
	for (size_t i = 0; i < w.n; i++) {
		struct w copy = w;
		copy.b[i] ^= 0xff;
		exchange(&copy, "example.net", 15, NOW);
	}
	assert_true(dnslearn_stats(dl)->malformed > 0);
}

/* An MX answer that sends example.net's mail to 198.51.100.20 under
 * the name fresh.example.net: what a forger would send. */
static void forged_answer(struct w *w)
{
	header(w, ANSWER, 1, 2, 0);
	question(w, "example.net", 15);
	rr_mx(w, "example.net", 10, "fresh.example.net", 86400);
	rr_addr(w, "fresh.example.net", "198.51.100.20", 86400);
}

static void test_unmatched_answer_ignored(void **state)
{
	struct w w;
	struct dnslearn_wire a = ANSWER_WIRE;
	forged_answer(&w);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	expect_mx("198.51.100.20", NULL, NULL);
	assert_string_equal(probed, ""); /* not even a probe */
	assert_int_equal(dnslearn_stats(dl)->answers_unmatched, 1);
	assert_int_equal(dnslearn_stats(dl)->answers_matched, 0);
	assert_int_equal(dnslearn_stats(dl)->mx_learned, 0);
}

static void test_matched_answer_once(void **state)
{
	struct w w;
	struct dnslearn_wire a = ANSWER_WIRE;
	forged_answer(&w);
	exchange(&w, "EXAMPLE.net", 15, NOW); /* 0x20 mixed case in the query */
	expect_mx("198.51.100.20", "fresh.example.net", "example.net");
	assert_int_equal(dnslearn_stats(dl)->answers_matched, 1);
	assert_string_equal(probed, "example.net;");
	/* the same answer again: its query was answered already */
	assert_int_equal(store_addr_mx_set(st, "198.51.100.20", "fresh.example.net", "example.net",
					   false, NOW - 1), 0);
	dnslearn_packet(dl, &a, w.b, w.n, NOW + 1);
	expect_mx("198.51.100.20", NULL, NULL);
	assert_int_equal(dnslearn_stats(dl)->answers_unmatched, 1);
}

/* Each answer differs from the outstanding query in one thing. */
static void test_mismatch_ignored(void **state)
{
	struct w w;
	struct dnslearn_wire q = QUERY_WIRE;
	msg_id = 0x4242;
	send_query(&q, "example.net", 15, NOW);
	struct dnslearn_wire bad[] = {
		wire("203.0.113.10", 53, "192.0.2.10", 40001, IF_OUTSIDE),  /* client port */
		wire("203.0.113.10", 53, "192.0.2.11", 40000, IF_OUTSIDE),  /* client address */
		wire("203.0.113.99", 53, "192.0.2.10", 40000, IF_OUTSIDE),  /* server address */
		wire("203.0.113.10", 5353, "192.0.2.10", 40000, IF_OUTSIDE), /* server port */
		wire("203.0.113.10", 53, "192.0.2.10", 40000, IF_INSIDE),   /* from the inside */
		wire("2001:db8:3::10", 53, "2001:db8:1::10", 40000, IF_OUTSIDE), /* family */
		ANSWER_WIRE,						    /* TCP */
	};
	bad[6].proto = IPPROTO_TCP;
	forged_answer(&w);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		dnslearn_packet(dl, &bad[i], w.b, w.n, NOW);
	struct dnslearn_wire a = ANSWER_WIRE;
	msg_id = 0x4243; /* the id */
	forged_answer(&w);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	msg_id = 0x4242;
	header(&w, ANSWER, 1, 2, 0); /* the question's name */
	question(&w, "example.org", 15);
	rr_mx(&w, "example.net", 10, "fresh.example.net", 86400);
	rr_addr(&w, "fresh.example.net", "198.51.100.20", 86400);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	header(&w, ANSWER, 1, 2, 0); /* the question's type */
	question(&w, "example.net", 1);
	rr_mx(&w, "example.net", 10, "fresh.example.net", 86400);
	rr_addr(&w, "fresh.example.net", "198.51.100.20", 86400);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	header(&w, ANSWER, 0, 2, 0); /* no question */
	rr_mx(&w, "example.net", 10, "fresh.example.net", 86400);
	rr_addr(&w, "fresh.example.net", "198.51.100.20", 86400);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	forged_answer(&w); /* everything right, but too late */
	dnslearn_packet(dl, &a, w.b, w.n, NOW + DNSLEARN_QUERY_TTL);
	expect_mx("198.51.100.20", NULL, NULL);
	assert_int_equal(dnslearn_stats(dl)->answers_unmatched, 12);
	assert_int_equal(dnslearn_stats(dl)->answers_matched, 0);
	assert_string_equal(probed, "");
	/* the query was still outstanding: the right answer in time counts */
	dnslearn_packet(dl, &a, w.b, w.n, NOW + DNSLEARN_QUERY_TTL - 1);
	expect_mx("198.51.100.20", "fresh.example.net", "example.net");
}

/* With the inside interfaces known, a query must come from there: a
 * "query" and its answer both from the outside teach nothing; without
 * them, an answer must come back on another interface than its query. */
static void test_query_from_outside_ignored(void **state)
{
	struct w w;
	uint32_t inside = IF_INSIDE;
	struct dnslearn_wire q = wire("192.0.2.10", 40000, "203.0.113.10", 53, IF_OUTSIDE);
	struct dnslearn_wire a = ANSWER_WIRE;
	forged_answer(&w);
	send_query(&q, "example.net", 15, NOW);
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	expect_mx("198.51.100.20", NULL, NULL);
	dnslearn_set_inside(dl, &inside, 1);
	q.ifindex = IF_INSIDE + 7;
	send_query(&q, "example.net", 15, NOW);
	a.ifindex = IF_INSIDE + 8;
	dnslearn_packet(dl, &a, w.b, w.n, NOW);
	expect_mx("198.51.100.20", NULL, NULL);
	assert_int_equal(dnslearn_stats(dl)->queries_ignored, 1);
	assert_int_equal(dnslearn_stats(dl)->answers_matched, 0);
	exchange(&w, "example.net", 15, NOW);
	expect_mx("198.51.100.20", "fresh.example.net", "example.net");
}

/* At most DNSLEARN_QUERIES outstanding: the oldest goes. */
static void test_query_table_bound(void **state)
{
	struct w w;
	for (unsigned int i = 0; i <= DNSLEARN_QUERIES; i++) {
		struct dnslearn_wire q = QUERY_WIRE;
		q.sport = (uint16_t)(20000 + i);
		msg_id = (uint16_t)i;
		send_query(&q, "example.net", 15, NOW + (i ? 1 : 0));
	}
	assert_int_equal(dnslearn_stats(dl)->queries, DNSLEARN_QUERIES + 1);
	assert_int_equal(dnslearn_stats(dl)->queries_evicted, 1);
	struct dnslearn_wire a = ANSWER_WIRE;
	a.dport = 20000; /* the first query's answer: forgotten */
	msg_id = 0;
	forged_answer(&w);
	dnslearn_packet(dl, &a, w.b, w.n, NOW + 1);
	expect_mx("198.51.100.20", NULL, NULL);
	a.dport = 20000 + DNSLEARN_QUERIES; /* the newest */
	msg_id = DNSLEARN_QUERIES;
	forged_answer(&w);
	dnslearn_packet(dl, &a, w.b, w.n, NOW + 1);
	expect_mx("198.51.100.20", "fresh.example.net", "example.net");
	/* an expired slot is reused before anything outstanding goes */
	struct dnslearn_wire q = QUERY_WIRE;
	send_query(&q, "example.org", 15, NOW + 2 + DNSLEARN_QUERY_TTL);
	assert_int_equal(dnslearn_stats(dl)->queries_evicted, 1);
}

/* A matched answer teaches only about the name it was asked for. */
static void test_other_names_not_learned(void **state)
{
	struct w w;
	header(&w, ANSWER, 1, 3, 1);
	question(&w, "evil.example", 15);
	rr_mx(&w, "evil.example", 10, "mx.evil.example", 3600);
	rr_mx(&w, "victim.example", 10, "mx.evil.example", 3600);
	rr_mx(&w, "victim.example", 10, "fresh.victim.example", 3600);
	rr_addr(&w, "fresh.victim.example", "198.51.100.20", 3600);
	exchange(&w, "evil.example", 15, NOW);
	expect_mx("198.51.100.20", NULL, NULL);
	assert_string_equal(probed, "evil.example;");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mx_with_glue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_in_a_later_answer_and_cname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_bounds_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmatched_answer_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_matched_answer_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_from_outside_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_table_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_names_not_learned, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
