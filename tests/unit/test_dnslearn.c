/* test_dnslearn.c - learning address -> MX name -> domain from DNS answers
 * as the MTAs receive them: MX with glue, A answers in a later message,
 * CNAMEs, null MX, queries (not answers), errors, hostile bytes. */
#include <arpa/inet.h>
#include <errno.h>
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
static void header(struct w *w, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ar)
{
	w->n = 0;
	put16(w, 0x1234);
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

static char db_path[64];
static struct store *st;
static struct dnslearn *dl;
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
	dnslearn_message(dl, w.b, w.n, NOW);
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
	dnslearn_message(dl, w.b, w.n, NOW);
	expect_mx("203.0.113.9", NULL, NULL);
	/* The MTA then asks for the A record: a CNAME chain to the host. */
	header(&w, ANSWER, 1, 3, 0);
	question(&w, "mail.example.org", 1);
	rr_cname(&w, "mail.example.org", "relay.example.org");
	rr_cname(&w, "relay.example.org", "box.hoster.example");
	rr_addr(&w, "box.hoster.example", "203.0.113.9", 600);
	dnslearn_message(dl, w.b, w.n, NOW + 1);
	expect_mx("203.0.113.9", "mail.example.org", "example.org");
	/* An address of a host that is not an MX is not learned. */
	header(&w, ANSWER, 1, 1, 0);
	question(&w, "www.example.org", 1);
	rr_addr(&w, "www.example.org", "203.0.113.10", 600);
	dnslearn_message(dl, w.b, w.n, NOW + 2);
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
	dnslearn_message(dl, w.b, w.n, NOW);
	header(&w, 0x8183, 1, 2, 0);
	question(&w, "evil.example", 15);
	rr_mx(&w, "evil.example", 10, "mx.evil.example", 3600);
	rr_addr(&w, "mx.evil.example", "192.0.2.66", 300);
	dnslearn_message(dl, w.b, w.n, NOW);
	header(&w, ANSWER, 1, 1, 0);
	question(&w, "nomail.example", 15);
	rr_mx(&w, "nomail.example", 0, "", 3600);
	dnslearn_message(dl, w.b, w.n, NOW);
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
	dnslearn_message(dl, w.b, w.n, NOW);
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
	for (size_t cut = 0; cut < w.n; cut++)
		dnslearn_message(dl, w.b, cut, NOW);
	for (size_t i = 0; i < w.n; i++) {
		uint8_t copy[2048];
		memcpy(copy, w.b, w.n);
		copy[i] ^= 0xff;
		dnslearn_message(dl, copy, w.n, NOW);
	}
	assert_true(dnslearn_stats(dl)->malformed > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mx_with_glue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_in_a_later_answer_and_cname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_bounds_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_bytes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
