/* test_flowkey.c - the userspace flow parser (userspace/flowkey.c) on well
 * formed and hostile IP packets, the port set and the key formatting. The
 * cross-check against the BPF program is in test_tagger.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "flowkey.h"
#include "pkt_builder.h"

static struct port_set smtp;

static int setup_ports(void **state)
{
	port_set_clear(&smtp);
	return port_set_add(&smtp, 25);
}

static struct pkt_spec spec_v4(void)
{
	struct pkt_spec s = {
		.family = 4, .saddr = "192.0.2.10", .daddr = "198.51.100.20",
		.sport = 40000, .dport = 25, .seq = 0x01020304, .ack = 0xa0b0c0d0,
		.flags = 0x18, .window = 29200, .payload = "EHLO client.example\r\n",
	};
	return s;
}

static struct pkt_spec spec_v6(void)
{
	struct pkt_spec s = {
		.family = 6, .saddr = "2001:db8:1::10", .daddr = "2001:db8:2::25",
		.sport = 40001, .dport = 25, .seq = 7, .ack = 9, .flags = 0x10,
		.window = 512, .payload = "220 mx.example ESMTP\r\n",
	};
	return s;
}

/* Builds s and parses it from the IP header on. */
static int parse_spec(const struct pkt_spec *s, uint8_t *buf, size_t *ip_len,
		      struct flowkey_packet *fp)
{
	size_t l3, hdr_end, n;

	n = pkt_build(s, buf, PKT_MAX, &l3, &hdr_end);
	assert_true(n > 0);
	memmove(buf, buf + l3, n - l3);
	*ip_len = n - l3;
	return flowkey_from_ip(buf, *ip_len, &smtp, fp);
}

static void check_fields(const struct pkt_spec *s, const struct flowkey_packet *fp)
{
	uint8_t a[16] = { 0 };

	if (s->family == 4) {
		a[10] = a[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, s->saddr, a + 12), 1);
		assert_int_equal(fp->family, AF_INET);
	} else {
		assert_int_equal(inet_pton(AF_INET6, s->saddr, a), 1);
		assert_int_equal(fp->family, AF_INET6);
	}
	assert_memory_equal(fp->saddr, a, 16);
	assert_int_equal(fp->sport, s->sport);
	assert_int_equal(fp->dport, s->dport);
	assert_int_equal(fp->seq, s->seq);
	assert_int_equal(fp->ack, s->ack);
	assert_int_equal(fp->flags, s->flags);
	assert_int_equal(fp->window, s->window);
	assert_int_equal(fp->payload_len, strlen(s->payload));
	assert_memory_equal(fp->payload, s->payload, fp->payload_len);
}

static void test_parse_fields(void **state)
{
	struct pkt_spec specs[4] = { spec_v4(), spec_v6(), spec_v4(), spec_v6() };
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;
	int i;

	specs[2].ip_opt_len = 12;
	specs[2].tcp_opt_len = 20;
	specs[3].n_ext = 4;
	memcpy(specs[3].ext,
	       (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_AH, IPPROTO_DSTOPTS }, 4);
	for (i = 0; i < 4; i++) {
		assert_int_equal(parse_spec(&specs[i], buf, &len, &fp), 0);
		check_fields(&specs[i], &fp);
		assert_int_equal(fp.dir, TLSGATE_DIR_TO_SERVER);
		assert_int_equal(fp.payload + fp.payload_len, buf + len);
	}
}

/* Both directions give one key; the lower (address, port) comes first. */
static void test_key_both_directions(void **state)
{
	struct pkt_spec s = spec_v4(), r = pkt_reverse(&s);
	struct flowkey_packet a, b;
	uint8_t buf[PKT_MAX], lo[16] = { 0 };
	size_t len;

	assert_int_equal(parse_spec(&s, buf, &len, &a), 0);
	assert_int_equal(parse_spec(&r, buf, &len, &b), 0);
	assert_int_equal(a.dir, TLSGATE_DIR_TO_SERVER);
	assert_int_equal(b.dir, TLSGATE_DIR_TO_CLIENT);
	assert_memory_equal(&a.key, &b.key, sizeof(a.key));
	lo[10] = lo[11] = 0xff;
	inet_pton(AF_INET, "192.0.2.10", lo + 12);
	assert_memory_equal(a.key.addr_lo, lo, 16);
	assert_int_equal(ntohs(a.key.port_lo), 40000);
	assert_int_equal(ntohs(a.key.port_hi), 25);
	assert_int_equal(a.key.proto, IPPROTO_TCP);

	/* Same address both sides: the port decides, numerically. */
	s.daddr = s.saddr;
	s.sport = 256;	/* 0x0100 */
	s.dport = 25;	/* 0x0019 */
	r = pkt_reverse(&s);
	assert_int_equal(parse_spec(&s, buf, &len, &a), 0);
	assert_int_equal(parse_spec(&r, buf, &len, &b), 0);
	assert_memory_equal(&a.key, &b.key, sizeof(a.key));
	assert_int_equal(ntohs(a.key.port_lo), 25);

	s = spec_v6();
	r = pkt_reverse(&s);
	assert_int_equal(parse_spec(&s, buf, &len, &a), 0);
	assert_int_equal(parse_spec(&r, buf, &len, &b), 0);
	assert_memory_equal(&a.key, &b.key, sizeof(a.key));
	inet_pton(AF_INET6, "2001:db8:1::10", lo);
	assert_memory_equal(a.key.addr_lo, lo, 16);
}

static void test_not_ours(void **state)
{
	struct pkt_spec s = spec_v4();
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;

	s.dport = 587;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -ENOENT);
	s = spec_v4();
	s.l4 = IPPROTO_UDP;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EPROTONOSUPPORT);
	s = spec_v6();
	s.l4 = IPPROTO_UDP;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EPROTONOSUPPORT);
	/* A UDP fragment cannot be SMTP. */
	s.v6_frag = true;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EPROTONOSUPPORT);
}

static void test_fragments(void **state)
{
	struct pkt_spec s = spec_v4();
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;

	s.v4_mf = true;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EMSGSIZE);
	s.v4_mf = false;
	s.v4_frag_off = 185;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EMSGSIZE);
	s = spec_v6();
	s.v6_frag = true;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EMSGSIZE);
	s.n_ext = 1;
	s.ext[0] = IPPROTO_HOPOPTS;
	s.v6_frag_next = IPPROTO_DSTOPTS; /* TCP may follow: still a fragment */
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EMSGSIZE);
	s.v6_frag_next = IPPROTO_FRAGMENT; /* reassembled again, TCP may follow */
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EMSGSIZE);
	s.v6_frag_next = IPPROTO_ICMPV6;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EPROTONOSUPPORT);
}

/* Every prefix of a valid packet is rejected: the length fields promise
 * more than is there. */
static void test_truncated_every_byte(void **state)
{
	struct pkt_spec specs[3] = { spec_v4(), spec_v6(), spec_v6() };
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX], *copy;
	size_t len, n;
	int i;

	specs[0].ip_opt_len = 8;
	specs[2].n_ext = 3;
	memcpy(specs[2].ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_AH, IPPROTO_DSTOPTS }, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(parse_spec(&specs[i], buf, &len, &fp), 0);
		for (n = 0; n < len; n++) {
			/* Exact-size heap copy so an over-read would be caught
			 * by sanitizers/valgrind. */
			copy = malloc(n ? n : 1);
			assert_non_null(copy);
			memcpy(copy, buf, n);
			assert_int_equal(flowkey_from_ip(n ? copy : NULL, n, &smtp, &fp), -EINVAL);
			free(copy);
		}
	}
}

/* Trailing bytes after the IP length (Ethernet padding) are not payload. */
static void test_padding_ignored(void **state)
{
	struct pkt_spec s = spec_v4();
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;

	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	memset(buf + len, 0xee, 6);
	assert_int_equal(flowkey_from_ip(buf, len + 6, &smtp, &fp), 0);
	assert_int_equal(fp.payload_len, strlen(s.payload));
}

static void test_bad_ihl_doff(void **state)
{
	struct pkt_spec s;
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;
	int v;

	for (v = 1; v <= 15; v++) {
		s = spec_v4();
		s.ihl_override = v;
		/* IHL < 5 is invalid, > 5 eats TCP bytes as options: the
		 * packet still parses only if the rest happens to fit, so
		 * only the invalid ones have a fixed answer. */
		if (v < 5)
			assert_int_equal(parse_spec(&s, buf, &len, &fp), -EINVAL);
		else if (v == 5)
			assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
		else
			(void)parse_spec(&s, buf, &len, &fp);
	}
	s = spec_v4();
	s.payload = "";
	s.ihl_override = 15; /* 60 bytes > total length 40 */
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EINVAL);

	for (v = 1; v <= 15; v++) {
		s = spec_v6();
		s.payload = "";
		s.doff_override = v;
		assert_int_equal(parse_spec(&s, buf, &len, &fp), v == 5 ? 0 : -EINVAL);
		s = spec_v4();
		s.payload = "";
		s.doff_override = v;
		assert_int_equal(parse_spec(&s, buf, &len, &fp), v == 5 ? 0 : -EINVAL);
	}
}

static void test_bad_lengths(void **state)
{
	struct pkt_spec s = spec_v4();
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len;

	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	pkt_put16(buf + 2, 39); /* total length inside the TCP header */
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);
	pkt_put16(buf + 2, (uint16_t)(len + 1));
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);
	buf[0] = 0x55; /* version 5 */
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);

	s = spec_v6();
	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	pkt_put16(buf + 4, 0); /* jumbogram without the option */
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);
	pkt_put16(buf + 4, 19);
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);
	buf[0] = 0x40; /* claims IPv4 */
	assert_int_equal(flowkey_from_ip(buf, len, &smtp, &fp), -EINVAL);
}

static void test_ext_chain_bound(void **state)
{
	struct pkt_spec s = spec_v6();
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	size_t len, l3, hdr_end, n;
	int i;

	for (i = 0; i < PKT_MAX_EXT; i++)
		s.ext[i] = i % 2 ? IPPROTO_DSTOPTS : IPPROTO_HOPOPTS;
	s.n_ext = FLOWKEY_MAX_EXT;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	check_fields(&s, &fp);
	s.n_ext = FLOWKEY_MAX_EXT + 1;
	assert_int_equal(parse_spec(&s, buf, &len, &fp), -EINVAL);

	/* A header length pointing past the packet. */
	s.n_ext = 1;
	n = pkt_build(&s, buf, sizeof(buf), &l3, &hdr_end);
	buf[l3 + 40 + 1] = 255;
	assert_int_equal(flowkey_from_ip(buf + l3, n - l3, &smtp, &fp), -EINVAL);
	/* Hop-by-hop headers that each name another one: the bound ends it. */
	memset(buf, 0, sizeof(buf));
	buf[0] = 0x60;
	pkt_put16(buf + 4, 8 * 12);
	buf[6] = IPPROTO_HOPOPTS;
	for (i = 0; i < 12; i++)
		buf[40 + 8 * i] = IPPROTO_HOPOPTS;
	assert_int_equal(flowkey_from_ip(buf, 40 + 8 * 12, &smtp, &fp), -EINVAL);
}

/* Random corruption of valid packets: never a crash, and whatever parses
 * keeps its payload inside the buffer. */
static void test_random_corruption(void **state)
{
	struct pkt_spec specs[2] = { spec_v4(), spec_v6() };
	struct flowkey_packet fp;
	uint8_t orig[PKT_MAX], buf[PKT_MAX];
	size_t len;
	unsigned int seed = 12345;
	int i, k, j;

	specs[1].n_ext = 2;
	memcpy(specs[1].ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_AH }, 2);
	for (k = 0; k < 2; k++) {
		assert_int_equal(parse_spec(&specs[k], orig, &len, &fp), 0);
		for (i = 0; i < 20000; i++) {
			memcpy(buf, orig, len);
			for (j = 0; j < 1 + i % 4; j++)
				buf[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
			if (flowkey_from_ip(buf, len, &smtp, &fp) == 0) {
				assert_true(fp.payload >= buf);
				assert_true(fp.payload + fp.payload_len <= buf + len);
				assert_true(fp.l4_offset + 20 <= len);
			}
		}
	}
}

static void test_port_set(void **state)
{
	struct port_set ps;

	port_set_clear(&ps);
	assert_int_equal(port_set_count(&ps), 0);
	assert_int_equal(port_set_next(&ps, -1), -1);
	assert_int_equal(port_set_add(&ps, 0), -EINVAL);
	assert_int_equal(port_set_add(&ps, 25), 0);
	assert_int_equal(port_set_add(&ps, 65535), 0);
	assert_int_equal(port_set_add(&ps, 25), 0);
	assert_true(port_set_contains(&ps, 25));
	assert_true(port_set_contains(&ps, 65535));
	assert_false(port_set_contains(&ps, 24));
	assert_false(port_set_contains(&ps, 0));
	assert_int_equal(port_set_count(&ps), 2);
	assert_int_equal(port_set_next(&ps, -1), 25);
	assert_int_equal(port_set_next(&ps, 25), 65535);
	assert_int_equal(port_set_next(&ps, 65535), -1);
}

static void test_format(void **state)
{
	struct pkt_spec s = spec_v4(), r = pkt_reverse(&s);
	struct flowkey_packet fp;
	uint8_t buf[PKT_MAX];
	char str[FLOWKEY_STR_MAX], str2[FLOWKEY_STR_MAX], small[12];
	size_t len;

	s.saddr = "192.0.2.10";
	s.daddr = "198.51.100.20";
	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	assert_string_equal(flowkey_format(&fp.key, &smtp, str, sizeof(str)),
			    "198.51.100.20:25 <-> 192.0.2.10:40000");
	assert_string_equal(flowkey_format(&fp.key, NULL, str, sizeof(str)),
			    "192.0.2.10:40000 <-> 198.51.100.20:25");
	assert_int_equal(parse_spec(&r, buf, &len, &fp), 0);
	assert_string_equal(flowkey_format(&fp.key, &smtp, str2, sizeof(str2)),
			    "198.51.100.20:25 <-> 192.0.2.10:40000");
	flowkey_format(&fp.key, &smtp, small, sizeof(small));
	assert_string_equal(small, "198.51.100.");

	s = spec_v6();
	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	assert_string_equal(flowkey_format(&fp.key, &smtp, str, sizeof(str)),
			    "[2001:db8:2::25]:25 <-> [2001:db8:1::10]:40001");

	/* The longest possible string fits. */
	s.saddr = "2001:db8:ffff:ffff:ffff:ffff:ffff:fff1";
	s.daddr = "2001:db8:ffff:ffff:ffff:ffff:ffff:fff2";
	s.sport = 65535;
	s.dport = 65534;
	port_set_add(&smtp, 65534);
	assert_int_equal(parse_spec(&s, buf, &len, &fp), 0);
	flowkey_format(&fp.key, &smtp, str, sizeof(str));
	assert_string_equal(str, "[2001:db8:ffff:ffff:ffff:ffff:ffff:fff2]:65534 <-> "
				 "[2001:db8:ffff:ffff:ffff:ffff:ffff:fff1]:65535");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_parse_fields, setup_ports),
		cmocka_unit_test_setup(test_key_both_directions, setup_ports),
		cmocka_unit_test_setup(test_not_ours, setup_ports),
		cmocka_unit_test_setup(test_fragments, setup_ports),
		cmocka_unit_test_setup(test_truncated_every_byte, setup_ports),
		cmocka_unit_test_setup(test_padding_ignored, setup_ports),
		cmocka_unit_test_setup(test_bad_ihl_doff, setup_ports),
		cmocka_unit_test_setup(test_bad_lengths, setup_ports),
		cmocka_unit_test_setup(test_ext_chain_bound, setup_ports),
		cmocka_unit_test_setup(test_random_corruption, setup_ports),
		cmocka_unit_test_setup(test_port_set, setup_ports),
		cmocka_unit_test_setup(test_format, setup_ports),
	};

	return cmocka_run_group_tests_name("flowkey", tests, NULL, NULL);
}
