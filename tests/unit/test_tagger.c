/* test_tagger.c - runs the real tagger BPF program (bpf/tagger.bpf.c) in the
 * kernel on crafted Ethernet frames with BPF_PROG_TEST_RUN, no attach.
 * Needs root and a kernel with BPF; without them every test fails (loudly,
 * with libbpf's message), nothing is skipped.
 *
 * Every flow entry the tests write is keyed by what userspace/flowkey.c
 * computes for the same packet without its Ethernet header, so a PASS or
 * BLOCK result also proves the two key implementations agree. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include "flowkey.h"
#include "pkt_builder.h"
#include "tagger.skel.h"

#define FOREIGN_MARK 0x00012345u /* bits outside TLSGATE_MARK_MASK */
#define NO_COUNTER (-1)

static struct tagger_bpf *skel;
static int load_err = -ENOSYS;
static bool pinned_by_name;
static int ncpus;
static struct port_set smtp;

struct run_result {
	uint32_t retval;
	uint32_t mark;
};

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void clear_pin_paths(struct bpf_object *obj)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
}

static int add_port(struct tagger_bpf *t, uint16_t port)
{
	uint8_t one = 1;

	return bpf_map_update_elem(bpf_map__fd(t->maps.smtp_ports), &port, &one, BPF_ANY);
}

/* Loads once for all tests; a failure is reported by every test. */
static int group_setup(void **state)
{
	const char *p;

	libbpf_set_print(libbpf_print);
	port_set_clear(&smtp);
	port_set_add(&smtp, 25);
	ncpus = libbpf_num_possible_cpus();
	skel = tagger_bpf__open();
	if (!skel) {
		load_err = -errno;
		fprintf(stderr, "# tagger_bpf__open: %s\n", strerror(errno));
		return 0;
	}
	/* The loader pins by name under its root; tests use private maps. */
	p = bpf_map__pin_path(skel->maps.flows);
	pinned_by_name = p && strcmp(p, "/sys/fs/bpf/flows") == 0;
	clear_pin_paths(skel->obj);
	load_err = tagger_bpf__load(skel);
	if (load_err) {
		fprintf(stderr, "# tagger_bpf__load: %s\n", strerror(-load_err));
		return 0;
	}
	load_err = add_port(skel, 25);
	return 0;
}

static int group_teardown(void **state)
{
	tagger_bpf__destroy(skel);
	return 0;
}

/* Empties the flow map before each test. */
static int reset_flows(void **state)
{
	struct tlsgate_flow_key key, next;
	int fd;

	if (load_err)
		return 0;
	for (int m = 0; m < 2; m++) {
		fd = bpf_map__fd(m ? skel->maps.awaits : skel->maps.flows);
		while (bpf_map_get_next_key(fd, NULL, &next) == 0) {
			key = next;
			if (bpf_map_delete_elem(fd, &key))
				return -1;
		}
	}
	/* no recipient domains written: every RCPT TO is marked */
	uint64_t h;
	fd = bpf_map__fd(skel->maps.rcpt_domains);
	while (bpf_map_get_next_key(fd, NULL, &h) == 0)
		if (bpf_map_delete_elem(fd, &h))
			return -1;
	/* no secure domains, no fail_mode: nothing judged by domain */
	fd = bpf_map__fd(skel->maps.secure_domains);
	while (bpf_map_get_next_key(fd, NULL, &h) == 0)
		if (bpf_map_delete_elem(fd, &h))
			return -1;
	return 0;
}

static void require_loaded(void)
{
	if (load_err)
		fail_msg("tagger BPF program not loaded: %s (root and BPF needed)",
			 strerror(-load_err));
}

/* Returns 0 or -errno of BPF_PROG_TEST_RUN. */
static int try_run_frame(const uint8_t *frame, size_t len, uint32_t mark_in,
			 struct run_result *r)
{
	struct __sk_buff ctx_in, ctx_out;

	memset(&ctx_in, 0, sizeof(ctx_in));
	memset(&ctx_out, 0, sizeof(ctx_out));
	ctx_in.mark = mark_in;
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)len,
		    .ctx_in = &ctx_in, .ctx_size_in = sizeof(ctx_in), .ctx_out = &ctx_out,
		    .ctx_size_out = sizeof(ctx_out), .repeat = 1);
	if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.tlsgate_tagger), &opts))
		return -errno;
	r->retval = opts.retval;
	r->mark = ctx_out.mark;
	return 0;
}

static void read_counters(struct tlsgate_counter_value sum[TLSGATE_CNT_MAX])
{
	struct tlsgate_counter_value *per = calloc((size_t)ncpus, sizeof(*per));
	uint32_t i;
	int c;

	assert_non_null(per);
	for (i = 0; i < TLSGATE_CNT_MAX; i++) {
		assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &i, per), 0);
		sum[i].packets = sum[i].bytes = 0;
		for (c = 0; c < ncpus; c++) {
			sum[i].packets += per[c].packets;
			sum[i].bytes += per[c].bytes;
		}
	}
	free(per);
}

static uint32_t marked(uint32_t mark_in)
{
	return (mark_in & ~TLSGATE_MARK_MASK) | TLSGATE_MARK_INSPECT;
}

/* Runs frame once; checks the verdict, the mark, and that exactly the
 * counters cnt_a and cnt_b (NO_COUNTER: none) moved, each by one packet of
 * len bytes. what names the case in a failure. */
static void expect_moved(const char *what, const uint8_t *frame, size_t len,
			 uint32_t want_retval, bool want_mark, int cnt_a, int cnt_b)
{
	struct tlsgate_counter_value before[TLSGATE_CNT_MAX], after[TLSGATE_CNT_MAX];
	struct run_result r;
	int i, err;

	read_counters(before);
	err = try_run_frame(frame, len, FOREIGN_MARK, &r);
	if (err)
		fail_msg("%sbpf_prog_test_run_opts(len %zu): %s", what, len, strerror(-err));
	read_counters(after);
	if (r.retval != want_retval)
		fail_msg("%slen %zu: retval %u, expected %u", what, len, r.retval, want_retval);
	if (r.mark != (want_mark ? marked(FOREIGN_MARK) : FOREIGN_MARK))
		fail_msg("%slen %zu: mark 0x%08x, expected %s", what, len, r.mark,
			 want_mark ? "inspection mark" : "untouched");
	for (i = 0; i < TLSGATE_CNT_MAX; i++) {
		uint64_t dp = after[i].packets - before[i].packets;
		uint64_t db = after[i].bytes - before[i].bytes;
		bool want = i == cnt_a || i == cnt_b;

		if (want && (dp != 1 || db != len))
			fail_msg("%slen %zu: counter %d moved by %lu packets / %lu bytes, expected 1 / %zu",
				 what, len, i, (unsigned long)dp, (unsigned long)db, len);
		if (!want && (dp || db))
			fail_msg("%slen %zu: counter %d moved (expected %d and %d)", what, len, i,
				 cnt_a, cnt_b);
	}
}

/* Runs frame once; checks the verdict, the mark, and that exactly counter
 * cnt (or none) moved by one packet of len bytes. */
static void expect(const uint8_t *frame, size_t len, uint32_t want_retval, bool want_mark,
		   int cnt)
{
	expect_moved("", frame, len, want_retval, want_mark, cnt, NO_COUNTER);
}

static size_t build(const struct pkt_spec *s, uint8_t *frame, size_t *l3, size_t *hdr_end)
{
	size_t dummy_l3, dummy_end;
	size_t n = pkt_build(s, frame, PKT_MAX, l3 ? l3 : &dummy_l3,
			     hdr_end ? hdr_end : &dummy_end);

	assert_true(n > 0);
	return n;
}

/* Writes a flow entry keyed by flowkey.c's view of the frame. */
static void put_flow(const uint8_t *frame, size_t len, size_t l3, uint8_t verdict,
		     struct tlsgate_flow_key *key)
{
	struct tlsgate_flow_value val;
	struct flowkey_packet fp;

	assert_int_equal(flowkey_from_ip(frame + l3, len - l3, &smtp, &fp), 0);
	memset(&val, 0, sizeof(val));
	val.verdict = verdict;
	*key = fp.key;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &val, BPF_ANY), 0);
}

static struct tlsgate_flow_value get_flow(const struct tlsgate_flow_key *key)
{
	struct tlsgate_flow_value val;

	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.flows), key, &val), 0);
	return val;
}

static struct pkt_spec spec_v4(void)
{
	struct pkt_spec s = {
		.family = 4, .saddr = "192.0.2.10", .daddr = "198.51.100.20",
		.sport = 40000, .dport = 25, .seq = 1000, .ack = 2000, .flags = 0x18,
		.window = 65535, .payload = "MAIL FROM:<a@example.org>\r\n",
	};
	return s;
}

static struct pkt_spec spec_v6(void)
{
	struct pkt_spec s = {
		.family = 6, .saddr = "2001:db8:1::10", .daddr = "2001:db8:2::25",
		.sport = 40001, .dport = 25, .seq = 3000, .ack = 4000, .flags = 0x18,
		.window = 1024, .payload = "250 2.1.0 Ok\r\n",
	};
	return s;
}

static void test_loaded(void **state)
{
	require_loaded();
	assert_true(pinned_by_name);
	assert_int_equal(bpf_map__type(skel->maps.flows), BPF_MAP_TYPE_LRU_HASH);
	assert_int_equal(bpf_map__max_entries(skel->maps.flows), TLSGATE_MAX_FLOWS);
	assert_int_equal(bpf_map__key_size(skel->maps.flows), sizeof(struct tlsgate_flow_key));
	assert_int_equal(bpf_map__value_size(skel->maps.flows), sizeof(struct tlsgate_flow_value));
	assert_int_equal(bpf_map__type(skel->maps.smtp_ports), BPF_MAP_TYPE_HASH);
	assert_int_equal(bpf_map__key_size(skel->maps.smtp_ports), 2);
	assert_int_equal(bpf_map__type(skel->maps.counters), BPF_MAP_TYPE_PERCPU_ARRAY);
	assert_int_equal(bpf_map__max_entries(skel->maps.counters), TLSGATE_CNT_MAX);
	assert_int_equal(skel->rodata->inspect_mark, TLSGATE_MARK_INSPECT);
	assert_int_equal(skel->rodata->inspect_mask, TLSGATE_MARK_MASK);
}

/* No entry: marked, counted per direction; foreign mark bits survive. */
static void check_no_entry(struct pkt_spec s)
{
	struct pkt_spec r = pkt_reverse(&s);
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	n = build(&r, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
}

static void test_no_entry_v4(void **state)
{
	check_no_entry(spec_v4());
}

static void test_no_entry_v6(void **state)
{
	check_no_entry(spec_v6());
}

/* A pure ACK of a flow under inspection stays in the kernel (counted);
 * SYN, FIN and RST without payload, and any payload, still go up. */
static void check_pure_ack(struct pkt_spec s)
{
	static const struct {
		uint8_t flags;
		const char *payload;
		bool marked;
	} cases[] = {
		{ 0x10, "", false },	/* ACK */
		{ 0x18, "", false },	/* PSH|ACK without data */
		{ 0x02, "", true },	/* SYN */
		{ 0x12, "", true },	/* SYN|ACK */
		{ 0x11, "", true },	/* FIN|ACK */
		{ 0x04, "", true },	/* RST */
		{ 0x10, "Q", true },	/* one byte of data */
	};
	uint8_t frame[PKT_MAX];
	struct tlsgate_flow_key key;
	size_t n, l3;

	require_loaded();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s.flags = cases[i].flags;
		s.payload = cases[i].payload;
		n = build(&s, frame, NULL, NULL);
		expect(frame, n, TC_ACT_OK, cases[i].marked,
		       cases[i].marked ? TLSGATE_CNT_INSPECT_TO_SERVER : TLSGATE_CNT_ACK_SKIPPED);
	}
	/* An offloaded flow's ACKs are counted as offloaded, as before. */
	s.flags = 0x10;
	s.payload = "";
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
}

static void test_pure_ack_v4(void **state)
{
	check_pure_ack(spec_v4());
}

static void test_pure_ack_v6(void **state)
{
	check_pure_ack(spec_v6());
}

static void set_daemon_state(uint64_t heartbeat_ns, uint32_t after_ms)
{
	struct tlsgate_daemon_state st = { .heartbeat_ns = heartbeat_ns,
					   .failclosed_after_ms = after_ms };
	uint32_t zero = 0;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.daemon_state), &zero, &st,
					     BPF_ANY), 0);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Secure-mode sources fail closed while the daemon misses its heartbeat;
 * other sources, offloaded flows and a live daemon are unaffected. */
static void check_fail_closed(struct pkt_spec s, const char *secure_client, uint8_t plen)
{
	struct pkt_spec r = pkt_reverse(&s);
	struct tlsgate_lpm_key lk = { .prefixlen = plen };
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n, l3;
	uint8_t one = 1;
	int fd = bpf_map__fd(skel->maps.secure_sources);

	require_loaded();
	if (s.family == 4) {
		lk.addr[10] = lk.addr[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, secure_client, lk.addr + 12), 1);
	} else {
		assert_int_equal(inet_pton(AF_INET6, secure_client, lk.addr), 1);
	}
	assert_int_equal(bpf_map_update_elem(fd, &lk, &one, BPF_ANY), 0);

	/* Daemon alive: marked for inspection as usual. */
	set_daemon_state(mono_ns(), 3000);
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	/* Daemon gone for longer than the timeout: dropped both ways. */
	set_daemon_state(mono_ns() - 10ull * 1000000000ull, 3000);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	n = build(&r, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	/* Fail-closed disabled (no secure sources policy): fails open. */
	set_daemon_state(mono_ns() - 10ull * 1000000000ull, 0);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	/* An offloaded flow keeps its verdict. */
	set_daemon_state(mono_ns() - 10ull * 1000000000ull, 3000);
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
	assert_int_equal(bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &key), 0);
	/* Another source is not affected. */
	assert_int_equal(bpf_map_delete_elem(fd, &lk), 0);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	set_daemon_state(0, 0);
}

static void test_fail_closed_v4(void **state)
{
	check_fail_closed(spec_v4(), "192.0.2.0", 96 + 24);
}

static void test_fail_closed_v6(void **state)
{
	check_fail_closed(spec_v6(), "2001:db8:1::", 48);
}

/* A verdict entry written from one direction's flowkey is found by both
 * directions, and its counters add up. */
static void check_verdict(struct pkt_spec s, uint8_t verdict)
{
	struct pkt_spec r = pkt_reverse(&s);
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	size_t n1, n2, l3;
	bool pass = verdict == TLSGATE_PASS;
	uint32_t want = pass ? TC_ACT_OK : TC_ACT_SHOT;

	require_loaded();
	n1 = build(&s, frame, &l3, NULL);
	put_flow(frame, n1, l3, verdict, &key);
	expect(frame, n1, want, false,
	       pass ? TLSGATE_CNT_PASS_TO_SERVER : TLSGATE_CNT_BLOCK_TO_SERVER);
	n2 = build(&r, frame, NULL, NULL);
	expect(frame, n2, want, false,
	       pass ? TLSGATE_CNT_PASS_TO_CLIENT : TLSGATE_CNT_BLOCK_TO_CLIENT);
	v = get_flow(&key);
	assert_int_equal(v.verdict, verdict);
	assert_int_equal(v.packets, 2);
	assert_int_equal(v.bytes, n1 + n2);

	/* A client's SYN on the same addresses and ports opens a new
	 * connection: marked, the entry left to the daemon. The server's
	 * SYN-ACK, a client SYN-ACK (simultaneous open) and the rest keep the
	 * verdict. */
	struct pkt_spec syn = s;
	syn.flags = 0x02;
	syn.payload = "";
	n1 = build(&syn, frame, NULL, NULL);
	expect(frame, n1, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	syn.flags = 0xc2; /* with ECE|CWR (RFC 3168) */
	n1 = build(&syn, frame, NULL, NULL);
	expect(frame, n1, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	assert_int_equal(get_flow(&key).verdict, verdict);
	assert_int_equal(get_flow(&key).packets, 2);
	syn.flags = 0x12;
	n1 = build(&syn, frame, NULL, NULL);
	expect(frame, n1, want, false,
	       pass ? TLSGATE_CNT_PASS_TO_SERVER : TLSGATE_CNT_BLOCK_TO_SERVER);
	syn = r;
	syn.flags = 0x12;
	syn.payload = "";
	n1 = build(&syn, frame, NULL, NULL);
	expect(frame, n1, want, false,
	       pass ? TLSGATE_CNT_PASS_TO_CLIENT : TLSGATE_CNT_BLOCK_TO_CLIENT);
}

static void test_pass_v4(void **state)
{
	check_verdict(spec_v4(), TLSGATE_PASS);
}

static void test_pass_v6(void **state)
{
	check_verdict(spec_v6(), TLSGATE_PASS);
}

static void test_block_v4(void **state)
{
	check_verdict(spec_v4(), TLSGATE_BLOCK);
}

static void test_block_v6(void **state)
{
	check_verdict(spec_v6(), TLSGATE_BLOCK);
}

/* INSPECT entries and verdict values the program does not know go to
 * userspace, like a missing entry. */
static void test_inspect_and_unknown_verdict(void **state)
{
	struct pkt_spec s = spec_v6();
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n, l3;

	require_loaded();
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_INSPECT, &key);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	put_flow(frame, n, l3, 7, &key);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
}

/* The key the program uses is the one flowkey.c documents: a PASS entry
 * written from hand-made bytes is found too. */
static void test_key_layout(void **state)
{
	struct pkt_spec s = spec_v4();
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value val = { .verdict = TLSGATE_PASS };
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	memset(&key, 0, sizeof(key));
	key.addr_lo[10] = key.addr_lo[11] = 0xff;
	key.addr_hi[10] = key.addr_hi[11] = 0xff;
	inet_pton(AF_INET, "192.0.2.10", key.addr_lo + 12);
	inet_pton(AF_INET, "198.51.100.20", key.addr_hi + 12);
	key.port_lo = htons(40000);
	key.port_hi = htons(25);
	key.proto = IPPROTO_TCP;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &val, BPF_ANY), 0);
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
}

static void test_not_smtp_untouched(void **state)
{
	struct pkt_spec s = spec_v4();
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	s.dport = 587;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s = spec_v6();
	s.sport = 443;
	s.dport = 50000;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
}

static void test_non_tcp_untouched(void **state)
{
	static const uint8_t arp[42] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06,
		0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1, 192, 0, 2, 1,
		0, 0, 0, 0, 0, 0, 192, 0, 2, 2,
	};
	struct pkt_spec s = spec_v4();
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	expect(arp, sizeof(arp), TC_ACT_OK, false, NO_COUNTER);
	s.l4 = IPPROTO_UDP;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s = spec_v6();
	s.l4 = IPPROTO_UDP;
	s.n_ext = 1;
	s.ext[0] = IPPROTO_HOPOPTS;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	/* UDP fragments cannot be SMTP either. */
	s.v6_frag = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s = spec_v4();
	s.l4 = IPPROTO_UDP;
	s.v4_mf = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
}

/* VLAN, QinQ, IPv4 options and IPv6 extension headers: the key is still
 * found (a PASS entry from flowkey.c) and, without an entry, marked. */
static void check_variant(struct pkt_spec s)
{
	require_loaded();
	assert_int_equal(reset_flows(NULL), 0);
	check_no_entry(s);
	check_verdict(s, TLSGATE_PASS);
}

static void test_vlan(void **state)
{
	struct pkt_spec s = spec_v4();

	s.vlans = 1;
	check_variant(s);
	s = spec_v6();
	s.vlans = 1;
	check_variant(s);
}

static void test_qinq(void **state)
{
	struct pkt_spec s = spec_v4();

	s.vlans = 2;
	check_variant(s);
	s = spec_v6();
	s.vlans = 2;
	s.n_ext = 1;
	s.ext[0] = IPPROTO_DSTOPTS;
	check_variant(s);
}

/* A third VLAN tag hides what it carries: dropped (UNPARSED) when that is
 * IP or a fourth tag, never marked; anything else (ARP) is left alone. */
static void test_three_vlan_tags_unparsed(void **state)
{
	struct pkt_spec s = spec_v4();
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	s.vlans = 3;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	s = spec_v6();
	s.vlans = 3;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	s.vlans = 4;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	/* the third tag cut */
	expect(frame, 14 + 2 * 4 + 2, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	s.vlans = 3;
	n = build(&s, frame, NULL, NULL);
	pkt_put16(frame + 12 + 3 * 4, 0x0806); /* ARP behind three tags */
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
}

static void test_ipv4_options(void **state)
{
	struct pkt_spec s = spec_v4();

	s.ip_opt_len = 4;
	check_variant(s);
	s.ip_opt_len = 40; /* IHL 15 */
	s.tcp_opt_len = 40; /* doff 15 */
	check_variant(s);
}

static void test_ipv6_ext_headers(void **state)
{
	struct pkt_spec s = spec_v6();

	s.n_ext = 2;
	memcpy(s.ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_DSTOPTS }, 2);
	check_variant(s);
	s.n_ext = 4;
	memcpy(s.ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_AH, IPPROTO_DSTOPTS },
	       4);
	check_variant(s);
}

/* Up to FLOWKEY_MAX_EXT headers are followed; a longer chain hides what it
 * carries: dropped (UNPARSED), never marked, whatever the flow's entry and
 * even when it ends in UDP (flowkey.c refuses it too). */
static void test_ipv6_ext_bound(void **state)
{
	struct pkt_spec s = spec_v6();
	struct tlsgate_flow_key key;
	struct flowkey_packet fp;
	uint8_t frame[PKT_MAX];
	size_t n, l3;
	int i;

	for (i = 0; i < PKT_MAX_EXT; i++)
		s.ext[i] = i % 2 ? IPPROTO_DSTOPTS : IPPROTO_HOPOPTS;
	s.n_ext = FLOWKEY_MAX_EXT;
	check_variant(s);
	s.n_ext = FLOWKEY_MAX_EXT + 1;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	assert_int_equal(flowkey_from_ip(frame + l3, n - l3, &smtp, &fp), -EINVAL);
	s.n_ext = PKT_MAX_EXT;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	assert_int_equal(flowkey_from_ip(frame + l3, n - l3, &smtp, &fp), -EINVAL);
	s.n_ext = FLOWKEY_MAX_EXT + 1;
	s.l4 = IPPROTO_UDP;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	/* an entry (even PASS) changes nothing: the key cannot be read */
	s = spec_v6();
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	for (i = 0; i < PKT_MAX_EXT; i++)
		s.ext[i] = i % 2 ? IPPROTO_DSTOPTS : IPPROTO_HOPOPTS;
	s.n_ext = FLOWKEY_MAX_EXT + 1;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
}

/* The fragment header's offset field (offset << 3 | M) in a frame that
 * pkt_build() made with v6_frag. */
static void set_v6_frag_off(const struct pkt_spec *s, uint8_t *frame, size_t l3, uint16_t v)
{
	size_t off = l3 + 40;

	for (int i = 0; i < s->n_ext; i++)
		off += pkt_ext_size(s->ext[i]);
	pkt_put16(frame + off + 2, v);
}

/* Every fragment that is or may be TCP is dropped (FRAGMENT), first or
 * not, whatever the flow's entry (PASS, BLOCK, none): never marked (the
 * daemon cannot parse it) and never passed (DESIGN rule 3). A later
 * fragment has no ports: any TCP fragment goes. UDP (DNS) and other
 * protocols' fragments pass as before. */
static void test_fragments(void **state)
{
	struct pkt_spec s = spec_v4(), base;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n, l3;

	require_loaded();
	/* IPv4: the first fragment to port 25, and later ones, with no entry */
	s.v4_mf = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s.v4_frag_off = 100; /* a middle one */
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s.v4_mf = false; /* the last, its bytes no TCP header at all */
	s.sport = 20480;
	s.dport = 8224;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	/* with a BLOCK or PASS entry for the flow, the same */
	s = spec_v4();
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_BLOCK, &key);
	s.v4_mf = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s.v4_mf = false;
	s.v4_frag_off = 100;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s = spec_v4();
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	s.v4_mf = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s.vlans = 2;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);

	/* IPv6: a fragment header whose next header is TCP, or one TCP may
	 * follow; first or later fragment */
	base = spec_v6();
	n = build(&base, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	s = base;
	s.v6_frag = true;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	set_v6_frag_off(&s, frame, l3, 185 << 3); /* the last one */
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	set_v6_frag_off(&s, frame, l3, 185 << 3 | 1); /* a middle one */
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	s.n_ext = 2;
	memcpy(s.ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_DSTOPTS }, 2);
	s.vlans = 1;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	set_v6_frag_off(&s, frame, l3, 8 << 3);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	{
		static const uint8_t may_be_tcp[] = { IPPROTO_DSTOPTS, IPPROTO_ROUTING,
						      IPPROTO_HOPOPTS, IPPROTO_AH,
						      IPPROTO_FRAGMENT };
		for (size_t i = 0; i < sizeof(may_be_tcp); i++) {
			s.v6_frag_next = may_be_tcp[i];
			n = build(&s, frame, NULL, NULL);
			expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
		}
	}
	/* no entry: the same */
	assert_int_equal(reset_flows(NULL), 0);
	s = spec_v6();
	s.v6_frag = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FRAGMENT);
	/* the fragment header cut */
	expect(frame, 14 + 40 + 4, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);

	/* UDP (DNS answers) and ICMPv6 fragments pass, first or not */
	s = spec_v4();
	s.l4 = IPPROTO_UDP;
	s.sport = 53;
	s.dport = 33000;
	s.v4_mf = true;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s.v4_mf = false;
	s.v4_frag_off = 100;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s = spec_v6();
	s.l4 = IPPROTO_UDP;
	s.sport = 53;
	s.dport = 33000;
	s.v6_frag = true;
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	set_v6_frag_off(&s, frame, l3, 185 << 3);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
	s.v6_frag_next = IPPROTO_ICMPV6;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, NO_COUNTER);
}

/* Malformed IP or TCP headers: dropped (UNPARSED), never marked. */
static void test_bad_ihl_doff_version(void **state)
{
	struct pkt_spec s;
	uint8_t frame[PKT_MAX];
	size_t n, l3;
	int v;

	require_loaded();
	for (v = 1; v < 5; v++) {
		s = spec_v4();
		s.ihl_override = v;
		n = build(&s, frame, NULL, NULL);
		expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
		s = spec_v4();
		s.doff_override = v;
		n = build(&s, frame, NULL, NULL);
		expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
		s = spec_v6();
		s.doff_override = v;
		n = build(&s, frame, NULL, NULL);
		expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	}
	/* Header lengths beyond the frame. */
	s = spec_v4();
	s.payload = "";
	s.ihl_override = 15;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	s = spec_v6();
	s.payload = "";
	s.doff_override = 15;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	/* IP version disagreeing with the ethertype. */
	s = spec_v4();
	n = build(&s, frame, &l3, NULL);
	frame[l3] = (uint8_t)(0x60 | (frame[l3] & 0x0f));
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
	s = spec_v6();
	n = build(&s, frame, &l3, NULL);
	frame[l3] = 0x40;
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
}

/* Recent kernels refuse to build a test skb whose ethertype is IPv4/IPv6
 * but whose fixed IP header is cut (EINVAL): such lengths of untagged
 * frames cannot be run here. The VLAN variants (the kernel does not look
 * behind a tag) cover the same cuts through the program's IP parsing. */
static bool kernel_may_refuse(const struct pkt_spec *s, size_t len, size_t l3)
{
	size_t fixed = s->family == 4 ? 20 : 40;

	return !s->vlans && len < l3 + fixed;
}

/* Every prefix from 14 bytes on: a frame cut inside its headers is dropped
 * (UNPARSED) whatever the flow's verdict (never passed, never marked); once
 * the headers are complete the verdict applies. */
static void test_truncated_every_length(void **state)
{
	struct pkt_spec specs[6] = { spec_v4(), spec_v4(), spec_v6(), spec_v6(), spec_v4(),
				     spec_v6() };
	static const uint8_t verdicts[3] = { 0xff, TLSGATE_PASS, TLSGATE_BLOCK };
	struct tlsgate_flow_key key;
	struct run_result r;
	uint8_t frame[PKT_MAX];
	size_t n, len, l3, hdr_end, ran = 0, refused = 0;
	int i, v, cnt, err;
	uint32_t want;

	require_loaded();
	specs[1].vlans = 1;
	specs[1].ip_opt_len = 12;
	specs[1].tcp_opt_len = 12;
	specs[3].vlans = 2;
	specs[3].n_ext = 3;
	memcpy(specs[3].ext, (uint8_t[]){ IPPROTO_HOPOPTS, IPPROTO_AH, IPPROTO_DSTOPTS }, 3);
	specs[4] = pkt_reverse(&specs[4]);
	specs[5].vlans = 1;
	for (i = 0; i < 6; i++) {
		n = build(&specs[i], frame, &l3, &hdr_end);
		for (v = 0; v < 3; v++) {
			assert_int_equal(reset_flows(NULL), 0);
			if (verdicts[v] != 0xff)
				put_flow(frame, n, l3, verdicts[v], &key);
			for (len = 14; len <= n; len++) {
				if (kernel_may_refuse(&specs[i], len, l3)) {
					err = try_run_frame(frame, len, FOREIGN_MARK, &r);
					if (err == -EINVAL) {
						refused++;
						continue;
					}
					assert_int_equal(err, 0);
				}
				ran++;
				if (len < hdr_end) {
					expect(frame, len, TC_ACT_SHOT, false, TLSGATE_CNT_UNPARSED);
					continue;
				}
				cnt = specs[i].dport == 25 ? 0 : 1; /* direction */
				if (verdicts[v] == 0xff) {
					expect(frame, len, TC_ACT_OK, true,
					       TLSGATE_CNT_INSPECT_TO_SERVER + cnt);
					continue;
				}
				want = verdicts[v] == TLSGATE_PASS ? TC_ACT_OK : TC_ACT_SHOT;
				expect(frame, len, want, false,
				       (verdicts[v] == TLSGATE_PASS ? TLSGATE_CNT_PASS_TO_SERVER
								    : TLSGATE_CNT_BLOCK_TO_SERVER) +
					       cnt);
			}
		}
	}
	printf("# truncation: %zu frames run, %zu refused by the kernel's test-run "
	       "(untagged, fixed IP header cut)\n", ran, refused);
}

/* Mark bits outside the mask survive, bits inside it are replaced; a PASS
 * flow's mark is not touched at all. */
static void test_foreign_mark_bits(void **state)
{
	static const uint32_t marks[] = { 0, 0xffffffffu, 0x80012345u, TLSGATE_MARK_INSPECT };
	struct pkt_spec s = spec_v4(), p = spec_v6();
	struct tlsgate_flow_key key;
	struct run_result r;
	uint8_t frame[PKT_MAX], pframe[PKT_MAX];
	size_t n, pn, l3, i;

	require_loaded();
	n = build(&s, frame, NULL, NULL);
	pn = build(&p, pframe, &l3, NULL);
	put_flow(pframe, pn, l3, TLSGATE_PASS, &key);
	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		assert_int_equal(try_run_frame(frame, n, marks[i], &r), 0);
		assert_int_equal(r.retval, TC_ACT_OK);
		assert_int_equal(r.mark, (marks[i] & ~TLSGATE_MARK_MASK) | TLSGATE_MARK_INSPECT);
		assert_int_equal(try_run_frame(pframe, pn, marks[i], &r), 0);
		assert_int_equal(r.retval, TC_ACT_OK);
		assert_int_equal(r.mark, marks[i]);
	}
}

/* The mark and mask are tunables: a second instance with other values. */
static void test_mark_tunables(void **state)
{
	struct pkt_spec s = spec_v4();
	struct tagger_bpf *t;
	struct run_result r;
	uint8_t frame[PKT_MAX];
	size_t n;
	int err;

	require_loaded();
	t = tagger_bpf__open();
	assert_non_null(t);
	clear_pin_paths(t->obj);
	t->rodata->inspect_mark = 0x100;
	t->rodata->inspect_mask = 0xf00;
	err = tagger_bpf__load(t);
	if (err) {
		tagger_bpf__destroy(t);
		fail_msg("load: %s", strerror(-err));
	}
	assert_int_equal(add_port(t, 25), 0);
	n = build(&s, frame, NULL, NULL);
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)n,
		    .repeat = 1);
	struct __sk_buff in = { .mark = 0x00ffffff }, out = { 0 };
	opts.ctx_in = &in;
	opts.ctx_size_in = sizeof(in);
	opts.ctx_out = &out;
	opts.ctx_size_out = sizeof(out);
	err = bpf_prog_test_run_opts(bpf_program__fd(t->progs.tlsgate_tagger), &opts);
	tagger_bpf__destroy(t);
	assert_int_equal(err, 0);
	r.retval = opts.retval;
	r.mark = out.mark;
	assert_int_equal(r.retval, TC_ACT_OK);
	assert_int_equal(r.mark, (0x00ffffffu & ~0xf00u) | 0x100u);
}

/* Maps pinned by name under a pin root are reused by the next load: a
 * restarted daemon finds its flows. Uses a private bpffs mount. */
static void test_pinned_maps_reused(void **state)
{
	char dir[] = "/tmp/tagger-pin-XXXXXX", path[64];
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value val = { .verdict = TLSGATE_BLOCK }, got = { 0 };
	struct tagger_bpf *a = NULL, *b = NULL;
	struct stat st;
	int err;
	static const char *const names[] = { "flows", "smtp_ports", "counters" };
	size_t i;

	require_loaded();
	assert_non_null(mkdtemp(dir));
	if (mount("bpf", dir, "bpf", 0, NULL)) {
		err = -errno;
		rmdir(dir);
		fail_msg("mount bpffs on %s: %s", dir, strerror(-err));
	}
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = dir);
	a = tagger_bpf__open_opts(&oo);
	err = a ? tagger_bpf__load(a) : -errno;
	if (!err) {
		memset(&key, 0, sizeof(key));
		key.proto = IPPROTO_TCP;
		key.port_hi = htons(25);
		err = bpf_map_update_elem(bpf_map__fd(a->maps.flows), &key, &val, BPF_ANY);
	}
	if (!err) {
		b = tagger_bpf__open_opts(&oo);
		err = b ? tagger_bpf__load(b) : -errno;
	}
	if (!err)
		err = bpf_map_lookup_elem(bpf_map__fd(b->maps.flows), &key, &got) ? -errno : 0;
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (!err && stat(path, &st))
			err = -errno;
		unlink(path);
	}
	tagger_bpf__destroy(b);
	tagger_bpf__destroy(a);
	umount(dir);
	rmdir(dir);
	if (err)
		fail_msg("pinned maps: %s", strerror(-err));
	assert_int_equal(got.verdict, TLSGATE_BLOCK);
}

/* ---- message content (TLSGATE_CONTENT) ---------------------------------- */

#define SCAN_CHUNK 512 /* CONTENT_CHUNK in tagger.bpf.c */

/* Zeroes the content scan's per-CPU scratch. The scan reads the whole of
 * the last chunk's scratch: the bytes past a payload that ends inside it
 * are left from earlier runs (of any flow), and a CR or LF followed by a
 * '.' there returns the segment needlessly (allowed: conservative). A pass
 * asserted for a payload shorter than a chunk starts from a clean scratch. */
static void clear_content_scratch(void)
{
	size_t one = (bpf_map__value_size(skel->maps.content_scratch) + 7) / 8 * 8;
	uint32_t zero = 0;
	void *z = calloc((size_t)ncpus, one);
	int err;

	assert_non_null(z);
	err = bpf_map_update_elem(bpf_map__fd(skel->maps.content_scratch), &zero, z, BPF_ANY);
	free(z);
	assert_int_equal(err, 0);
}

/* Makes s's flow a CONTENT entry (zero counters): the client's next
 * sequence number is seq, the byte before it a CR or LF when line_end. */
static void put_content(const struct pkt_spec *s, uint32_t seq, uint8_t line_end,
			struct tlsgate_flow_key *key)
{
	struct pkt_spec h = *s;
	struct tlsgate_flow_value val;
	uint8_t frame[PKT_MAX];
	size_t n, l3;

	h.payload = "";
	n = build(&h, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_CONTENT, key);
	val = get_flow(key);
	val.content_seq = seq;
	val.content_line_end = line_end;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &val, BPF_EXIST),
			 0);
}

/* put_content(), line end before seq, with copy flags. */
static void put_content_copying(const struct pkt_spec *s, uint32_t seq, uint32_t copy,
				struct tlsgate_flow_key *key)
{
	struct tlsgate_flow_value v;

	put_content(s, seq, 1, key);
	v = get_flow(key);
	v.copy = copy;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &v, BPF_EXIST), 0);
}

/* Checks the entry's verdict, content_seq and (unless -1) line_end. */
static struct tlsgate_flow_value expect_entry(const char *what, const struct tlsgate_flow_key *key,
					      uint8_t verdict, uint32_t seq, int line_end)
{
	struct tlsgate_flow_value v = get_flow(key);

	if (v.verdict != verdict || v.content_seq != seq ||
	    (line_end >= 0 && v.content_line_end != line_end))
		fail_msg("%sentry verdict %u content_seq %u line_end %u, expected %u %u %d", what,
			 v.verdict, v.content_seq, v.content_line_end, verdict, seq, line_end);
	return v;
}

/* Stays in the kernel: unmarked, counted as CONTENT_PASSED alone. */
static void expect_content_passed(const char *what, const uint8_t *frame, size_t len)
{
	expect_moved(what, frame, len, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_PASSED, NO_COUNTER);
}

/* Returns the flow to userspace: marked, counted as CONTENT_RETURNED and
 * as inspected in its direction. */
static void expect_content_returned(const char *what, const uint8_t *frame, size_t len, int dir)
{
	expect_moved(what, frame, len, TC_ACT_OK, true, TLSGATE_CNT_CONTENT_RETURNED,
		     TLSGATE_CNT_INSPECT_TO_SERVER + dir);
}

static bool is_eol(char c)
{
	return c == '\r' || c == '\n';
}

static void check_returns(const char *what, const struct pkt_spec *s, uint32_t seq,
			  uint8_t line_end);

/* True when p (n bytes) ends with a CR, or an LF without a CR before it:
 * the entry can record only CR LF or no line end, so such a segment
 * returns (the daemon's session must learn the line state exactly). */
static bool ends_bare(const char *p, size_t n)
{
	return n && (p[n - 1] == '\r' || (p[n - 1] == '\n' && (n < 2 || p[n - 2] != '\r')));
}

/* s (a client segment) against a fresh CONTENT entry at s->seq: passes,
 * content_seq moves past its payload, line_end and content_lf become "CR
 * LF" or "none" as it ends - unless it ends with a CR or a bare LF, which
 * returns. */
static void check_passes(const char *what, const struct pkt_spec *s, uint8_t line_end)
{
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	size_t n, len = strlen(s->payload);
	bool crlf = len >= 2 && s->payload[len - 2] == '\r' && s->payload[len - 1] == '\n';

	if (ends_bare(s->payload, len)) {
		check_returns(what, s, s->seq, line_end);
		return;
	}
	put_content(s, s->seq, line_end, &key);
	n = build(s, frame, NULL, NULL);
	expect_content_passed(what, frame, n);
	v = expect_entry(what, &key, TLSGATE_CONTENT, s->seq + (uint32_t)len, crlf);
	if (v.content_lf != ((crlf ? TLSGATE_CONTENT_LF : 0) | TLSGATE_CONTENT_UNSEEN))
		fail_msg("%scontent_lf 0x%x, expected 0x%x", what, v.content_lf,
			 (crlf ? TLSGATE_CONTENT_LF : 0) | TLSGATE_CONTENT_UNSEEN);
	assert_int_equal(v.packets, 1);
	assert_int_equal(v.bytes, n);
}

/* s (either direction) against a fresh CONTENT entry at (seq, line_end):
 * returns the flow, content_seq unchanged. */
static void check_returns(const char *what, const struct pkt_spec *s, uint32_t seq,
			  uint8_t line_end)
{
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n;

	put_content(s, seq, line_end, &key);
	n = build(s, frame, NULL, NULL);
	expect_content_returned(what, frame, n,
				s->dport == 25 ? TLSGATE_DIR_TO_SERVER : TLSGATE_DIR_TO_CLIENT);
	expect_entry(what, &key, TLSGATE_INSPECT, seq, -1);
}

/* In-order content without a '.' at a line start stays in the kernel; the
 * entry follows the client's sequence number and line ends. */
static void check_content_in_order(struct pkt_spec s)
{
	static const char *const segs[] = {
		"From: <a@example.org>\r\nSubject: hi\r\n\r\nA line. And",
		" its end, then a dot: .\r\n",
		"b.c\rd.e\nf..\r\n",
	};
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	uint64_t bytes = 0;
	uint32_t seq = s.seq;
	size_t i, n, len;

	require_loaded();
	put_content(&s, seq, 1, &key);
	for (i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		s.seq = seq;
		s.payload = segs[i];
		len = strlen(segs[i]);
		n = build(&s, frame, NULL, NULL);
		clear_content_scratch();
		expect_content_passed("", frame, n);
		seq += (uint32_t)len;
		bytes += n;
		v = expect_entry("", &key, TLSGATE_CONTENT, seq, is_eol(segs[i][len - 1]));
		assert_int_equal(v.packets, i + 1);
		assert_int_equal(v.bytes, bytes);
	}
}

static void test_content_in_order_v4(void **state)
{
	check_content_in_order(spec_v4());
}

static void test_content_in_order_v6(void **state)
{
	check_content_in_order(spec_v6());
}

/* content_seq wraps like a TCP sequence number. */
static void test_content_seq_wraps(void **state)
{
	struct pkt_spec s = spec_v4();
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	s.seq = 0xfffffffau;
	s.payload = "0123456789\r\n";
	put_content(&s, s.seq, 1, &key);
	n = build(&s, frame, NULL, NULL);
	clear_content_scratch();
	expect_content_passed("", frame, n);
	expect_entry("", &key, TLSGATE_CONTENT, 6, 1);
	s.seq = 6;
	s.payload = "next line\r\n";
	n = build(&s, frame, NULL, NULL);
	clear_content_scratch();
	expect_content_passed("", frame, n);
	expect_entry("", &key, TLSGATE_CONTENT, 17, 1);
}

/* The end of data, whatever the line ends, returns the flow (so does a
 * '.' after a line end that ends the payload: what follows is unknown);
 * a dot-led line passes. */
static void check_content_end_of_data(struct pkt_spec s)
{
	static const struct {
		uint8_t line_end;
		const char *payload;
	} cases[] = {
		{ 1, ".\r\n" },
		{ 1, "." },
		{ 0, "last line\r\n.\r\n" },
		{ 1, "a\r\n.\r\nQUIT\r\n" },
		{ 0, "\r\n.\r\n" },
		{ 1, "\r\n\r\n.\r\n" },
		{ 0, "bare LF\n.\n" },
		{ 0, "bare CR\r.\r" },
		{ 0, "CR LF\r.\n" },
		{ 0, "ends in a dot\r\n." },
	};
	/* Dot-led lines (dot-stuffed or not) cannot end the data: they pass. */
	static const struct {
		uint8_t line_end;
		const char *payload;
	} dot_led[] = {
		{ 1, "..stuffed at the start\r\n" },
		{ 0, "text\r\n..stuffed\r\n" },
		{ 0, "text\n.x\r\n" },
		{ 1, ".x" },
	};
	/* Split: the first segment ends a line (passes), the second's
	 * leading '.' (or a '.' right after its leading LF) returns. A first
	 * segment that ends with a CR or a bare LF returns itself (below). */
	static const char *const split[][2] = {
		{ "body\r\n", ".\r\n" },
		{ "body\r\n", "." },
		{ "body\r\n", ".\n" },
		{ "body", "\n.\r\n" },
		{ "body", "\r.\r\n" },
	};
	static const char *const bare_end[] = { "body\n", "body\r", "\n", "\r",
						"a\r\n\n", "a\r\r", "a\n\r" };
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	uint32_t seq = s.seq, mid;
	char what[64];
	size_t i, n;

	require_loaded();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(what, sizeof(what), "end of data case %zu: ", i);
		s.payload = cases[i].payload;
		check_returns(what, &s, seq, cases[i].line_end);
	}
	for (i = 0; i < sizeof(dot_led) / sizeof(dot_led[0]); i++) {
		snprintf(what, sizeof(what), "dot-led line case %zu: ", i);
		s.seq = seq;
		s.payload = dot_led[i].payload;
		check_passes(what, &s, dot_led[i].line_end);
	}
	for (i = 0; i < sizeof(split) / sizeof(split[0]); i++) {
		snprintf(what, sizeof(what), "split case %zu: ", i);
		s.seq = seq;
		s.payload = split[i][0];
		put_content(&s, seq, 0, &key);
		n = build(&s, frame, NULL, NULL);
		clear_content_scratch();
		expect_content_passed(what, frame, n);
		mid = seq + (uint32_t)strlen(split[i][0]);
		expect_entry(what, &key, TLSGATE_CONTENT, mid, is_eol(split[i][0][mid - seq - 1]));
		s.seq = mid;
		s.payload = split[i][1];
		n = build(&s, frame, NULL, NULL);
		expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
		expect_entry(what, &key, TLSGATE_INSPECT, mid, -1);
	}
	for (i = 0; i < sizeof(bare_end) / sizeof(bare_end[0]); i++) {
		snprintf(what, sizeof(what), "bare end case %zu: ", i);
		s.seq = seq;
		s.payload = bare_end[i];
		check_returns(what, &s, seq, 0);
		check_returns(what, &s, seq, 1);
	}
}

static void test_content_end_of_data_v4(void **state)
{
	check_content_end_of_data(spec_v4());
}

static void test_content_end_of_data_v6(void **state)
{
	check_content_end_of_data(spec_v6());
}

/* len bytes of 'a' with a '.' at every position k. Between a CR or LF at
 * k - 1 (or content_line_end 1 at 0) and one at k + 1 (or the payload's
 * end) it must return. A dot-led line (".a" after a line end), a '.' after
 * 'a' (or at 0 after content_line_end 0), a lone CR or LF, and a '.' right
 * before a CR or LF pass. The scratch buffer is not cleared between runs:
 * bytes of an earlier payload must not matter. */
static void check_every_position(struct pkt_spec s, size_t len)
{
	static const char eols[2] = { '\r', '\n' };
	static char payload[PKT_MAX];
	char what[96];
	size_t k;
	int e;

	require_loaded();
	assert_true(len > 0 && len < sizeof(payload));
	s.payload = payload;
	payload[len] = '\0';
	for (k = 0; k < len; k++) {
		for (e = 0; e < 2; e++) {
			/* A '.' between line ends, or after one at the end. */
			memset(payload, 'a', len);
			payload[k] = '.';
			if (k)
				payload[k - 1] = eols[e];
			if (k + 1 < len)
				payload[k + 1] = eols[1 - e];
			snprintf(what, sizeof(what), "v%d len %zu: '.' at %zu after %s: ",
				 s.family, len, k, k ? (e ? "LF" : "CR") : "line_end 1");
			if (k || !e)
				check_returns(what, &s, s.seq, k == 0);
			/* A dot-led line: after a line end, before 'a'. */
			if (k + 1 < len && (k || !e)) {
				payload[k + 1] = 'a';
				snprintf(what, sizeof(what), "v%d len %zu: \".a\" at %zu after %s: ",
					 s.family, len, k, k ? (e ? "LF" : "CR") : "line_end 1");
				check_passes(what, &s, k == 0);
			}

			memset(payload, 'a', len);
			payload[k] = eols[e];
			snprintf(what, sizeof(what), "v%d len %zu: lone %s at %zu: ", s.family,
				 len, e ? "LF" : "CR", k);
			check_passes(what, &s, 1);

			if (k + 1 < len) {
				payload[k] = '.';
				payload[k + 1] = eols[e];
				snprintf(what, sizeof(what), "v%d len %zu: '.' at %zu before %s: ",
					 s.family, len, k, e ? "LF" : "CR");
				check_passes(what, &s, 0);
			}
		}
		memset(payload, 'a', len);
		payload[k] = '.';
		snprintf(what, sizeof(what), "v%d len %zu: '.' at %zu after %s: ", s.family, len, k,
			 k ? "'a'" : "line_end 0");
		check_passes(what, &s, 0);
	}
}

/* Every length up to three words, both sides of a chunk, and three chunks
 * with a partial last one. */
static void check_every_position_lengths(struct pkt_spec s)
{
	static const size_t longer[] = { 511, 512, 513, 1100 };
	size_t len, i;

	for (len = 1; len <= 24; len++)
		check_every_position(s, len);
	for (i = 0; i < sizeof(longer) / sizeof(longer[0]); i++)
		check_every_position(s, longer[i]);
}

static void test_content_every_position_v4(void **state)
{
	check_every_position_lengths(spec_v4());
}

static void test_content_every_position_v6(void **state)
{
	check_every_position_lengths(spec_v6());
}

/* A client segment that does not start at content_seq (overlapping,
 * retransmitted, after a gap) returns, whatever it holds. */
static void check_content_wrong_seq(struct pkt_spec s)
{
	static const int64_t delta[] = { -1, 1, -12, 12, -100000, 100000, INT32_MIN };
	uint32_t seq = s.seq;
	char what[64];
	size_t i;

	require_loaded();
	s.payload = "plain text\r\n"; /* 12 bytes */
	for (i = 0; i < sizeof(delta) / sizeof(delta[0]); i++) {
		snprintf(what, sizeof(what), "seq %+lld: ", (long long)delta[i]);
		s.seq = seq + (uint32_t)delta[i];
		check_returns(what, &s, seq, 1);
	}
}

static void test_content_wrong_seq_v4(void **state)
{
	check_content_wrong_seq(spec_v4());
}

static void test_content_wrong_seq_v6(void **state)
{
	check_content_wrong_seq(spec_v6());
}

/* A CONTENT entry for a BDAT chunk from seq to end. */
static void put_chunk(const struct pkt_spec *s, uint32_t seq, uint32_t end,
		      struct tlsgate_flow_key *key)
{
	struct tlsgate_flow_value v;

	put_content(s, seq, 0, key);
	v = get_flow(key);
	v.content_chunk = 1;
	v.content_end = end;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &v, BPF_EXIST), 0);
}

/* A BDAT chunk (content_chunk): segments within the chunk pass unscanned
 * (an end of data inside is chunk data), one ending exactly at its end
 * passes, one reaching past it returns; across the 2^32 wrap too. */
static void check_content_chunk(struct pkt_spec s)
{
	static const uint32_t starts[] = { 1000, 0xfffffff0u };
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	char what[64];
	size_t n;

	require_loaded();
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		uint32_t seq = starts[i], end = seq + 40;

		snprintf(what, sizeof(what), "chunk at %u: ", seq);
		s.seq = seq;
		s.payload = "\r\n.\r\nMAIL FROM:<x@y>\r\n"; /* 22 bytes of chunk data */
		put_chunk(&s, seq, end, &key);
		n = build(&s, frame, NULL, NULL);
		expect_content_passed(what, frame, n);
		expect_entry(what, &key, TLSGATE_CONTENT, seq + 22, -1);
		/* 18 more: exactly to the chunk's end. */
		s.seq = seq + 22;
		s.payload = "0123456789abcdefgh";
		n = build(&s, frame, NULL, NULL);
		expect_content_passed(what, frame, n);
		expect_entry(what, &key, TLSGATE_CONTENT, end, -1);
		/* The next command: past the end. */
		s.seq = end;
		s.payload = "BDAT 10 LAST\r\n";
		n = build(&s, frame, NULL, NULL);
		expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
		expect_entry(what, &key, TLSGATE_INSPECT, end, -1);

		/* One segment holding the chunk's tail and the next command. */
		s.seq = seq;
		s.payload = "tail of the chunk......................." "QUIT\r\n";
		put_chunk(&s, seq, end, &key);
		n = build(&s, frame, NULL, NULL);
		expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
		expect_entry(what, &key, TLSGATE_INSPECT, seq, -1);
	}
}

static void test_content_chunk_v4(void **state)
{
	check_content_chunk(spec_v4());
}

static void test_content_chunk_v6(void **state)
{
	check_content_chunk(spec_v6());
}

/* Pure ACKs either way pass (whatever their sequence number); SYN, FIN
 * or RST either way, with or without data, and server data return. */
static void check_content_flags(struct pkt_spec s)
{
	static const struct {
		uint8_t flags;
		const char *payload;
	} ret[] = {
		{ 0x11, "" },		/* FIN|ACK */
		{ 0x19, "clean\r\n" },	/* FIN|PSH|ACK with data */
		{ 0x04, "" },		/* RST */
		{ 0x14, "" },		/* RST|ACK */
		{ 0x02, "" },		/* SYN */
		{ 0x12, "" },		/* SYN|ACK */
		{ 0x18, "250 2.0.0 Ok\r\n" }, /* data: from the server only */
	};
	static const struct {
		int dir;
		uint8_t flags;
		uint32_t seq_delta; /* an ACK's sequence number does not matter */
	} acks[] = {
		{ TLSGATE_DIR_TO_SERVER, 0x10, 0 },
		{ TLSGATE_DIR_TO_SERVER, 0x18, 0 },
		{ TLSGATE_DIR_TO_SERVER, 0x10, 7 },
		{ TLSGATE_DIR_TO_CLIENT, 0x10, 0 },
		{ TLSGATE_DIR_TO_CLIENT, 0x18, 0 },
	};
	struct pkt_spec r = pkt_reverse(&s), a;
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	uint64_t bytes = 0;
	uint32_t seq = s.seq;
	char what[64];
	size_t i, n;
	int dir;

	require_loaded();
	put_content(&s, seq, 1, &key);
	for (i = 0; i < sizeof(acks) / sizeof(acks[0]); i++) {
		a = acks[i].dir == TLSGATE_DIR_TO_SERVER ? s : r;
		a.payload = "";
		a.flags = acks[i].flags;
		a.seq += acks[i].seq_delta;
		snprintf(what, sizeof(what), "ACK %zu: ", i);
		n = build(&a, frame, NULL, NULL);
		expect_content_passed(what, frame, n);
		bytes += n;
		v = expect_entry(what, &key, TLSGATE_CONTENT, seq, 1);
		assert_int_equal(v.packets, i + 1);
		assert_int_equal(v.bytes, bytes);
	}
	for (i = 0; i < sizeof(ret) / sizeof(ret[0]); i++) {
		for (dir = 0; dir < 2; dir++) {
			if (i == sizeof(ret) / sizeof(ret[0]) - 1 && dir == TLSGATE_DIR_TO_SERVER)
				continue; /* clean client data passes */
			a = dir == TLSGATE_DIR_TO_SERVER ? s : r;
			a.flags = ret[i].flags;
			a.payload = ret[i].payload;
			snprintf(what, sizeof(what), "flags 0x%02x dir %d: ", ret[i].flags, dir);
			check_returns(what, &a, seq, 1);
		}
	}
}

static void test_content_flags_v4(void **state)
{
	check_content_flags(spec_v4());
}

static void test_content_flags_v6(void **state)
{
	check_content_flags(spec_v6());
}

/* With content_line_end 0 a leading '.' is not at a line start. */
static void check_content_leading_dot(struct pkt_spec s)
{
	static const char *const payloads[] = { ".", "..", ".leading dot\r\n", "..x\r\n", "a.b" };
	char what[64];
	size_t i;

	require_loaded();
	for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		snprintf(what, sizeof(what), "leading dot case %zu: ", i);
		s.payload = payloads[i];
		check_passes(what, &s, 0);
	}
}

static void test_content_leading_dot_v4(void **state)
{
	check_content_leading_dot(spec_v4());
}

static void test_content_leading_dot_v6(void **state)
{
	check_content_leading_dot(spec_v6());
}

/* Once returned the flow stays under inspection: a clean in-order segment
 * is marked, a pure ACK skipped, nothing goes back to CONTENT. */
static void check_content_returned_stays(struct pkt_spec s)
{
	struct pkt_spec r = pkt_reverse(&s);
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	uint32_t seq = s.seq;
	size_t n;

	require_loaded();
	put_content(&s, seq, 1, &key);
	s.payload = ".\r\n";
	n = build(&s, frame, NULL, NULL);
	expect_content_returned("", frame, n, TLSGATE_DIR_TO_SERVER);
	s.payload = "clean\r\n";
	n = build(&s, frame, NULL, NULL);
	clear_content_scratch();
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	expect_entry("", &key, TLSGATE_INSPECT, seq, -1);
	s.payload = "";
	s.flags = 0x10;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_ACK_SKIPPED);
	r.payload = "250 2.0.0 Ok\r\n";
	n = build(&r, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	expect_entry("", &key, TLSGATE_INSPECT, seq, -1);
}

static void test_content_returned_stays_v4(void **state)
{
	check_content_returned_stays(spec_v4());
}

static void test_content_returned_stays_v6(void **state)
{
	check_content_returned_stays(spec_v6());
}

/* The payload ends where the IP length says: an Ethernet trailer is not
 * scanned nor counted in content_seq; a frame cut short of the IP length
 * cannot be scanned and returns. */
static void check_content_payload_bounds(struct pkt_spec s)
{
	static const char trailer[] = "\r\n.\r\n";
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	uint32_t seq = s.seq;
	size_t n;

	require_loaded();
	s.payload = "clean text\r\n"; /* 12 bytes */
	put_content(&s, seq, 1, &key);
	n = build(&s, frame, NULL, NULL);
	memcpy(frame + n, trailer, sizeof(trailer) - 1);
	clear_content_scratch();
	expect_content_passed("trailer: ", frame, n + sizeof(trailer) - 1);
	expect_entry("trailer: ", &key, TLSGATE_CONTENT, seq + 12, 1);
	s.seq = seq + 12;
	n = build(&s, frame, NULL, NULL);
	expect_content_returned("cut: ", frame, n - 4, TLSGATE_DIR_TO_SERVER);
	expect_entry("cut: ", &key, TLSGATE_INSPECT, seq + 12, -1);
}

static void test_content_payload_bounds_v4(void **state)
{
	check_content_payload_bounds(spec_v4());
}

static void test_content_payload_bounds_v6(void **state)
{
	check_content_payload_bounds(spec_v6());
}


/* ---- reply copies --------------------------------------------------------- */

struct ring_read {
	size_t n;
	uint32_t len[4];
	uint32_t flags[4], content_seq[4];
	uint64_t passed_ns[4];
	uint8_t pkt[4][TLSGATE_REPLY_COPY_MAX];
};

static int ring_read_one(void *ctx, void *data, size_t size)
{
	struct ring_read *rr = ctx;
	const struct tlsgate_reply_event *e = data;

	assert_true(size >= sizeof(*e));
	if (rr->n < 4) {
		assert_true(e->len <= TLSGATE_REPLY_COPY_MAX);
		rr->len[rr->n] = e->len;
		rr->flags[rr->n] = e->flags;
		rr->content_seq[rr->n] = e->content_seq;
		rr->passed_ns[rr->n] = e->passed_ns;
		memcpy(rr->pkt[rr->n], e->pkt, e->len);
	}
	rr->n++;
	return 0;
}

/* Everything the reply ring holds now (and empties it). */
static struct ring_read *ring_drain(void)
{
	static struct ring_read rr;
	struct ring_buffer *rb;

	memset(&rr, 0, sizeof(rr));
	rb = ring_buffer__new(bpf_map__fd(skel->maps.reply_events), ring_read_one, &rr, NULL);
	assert_non_null(rb);
	assert_true(ring_buffer__consume(rb) >= 0);
	ring_buffer__free(rb);
	return &rr;
}

/* Writes s's flow as an entry with copy flags (TLSGATE_COPY_*). */
static void put_copying(const struct pkt_spec *s, uint8_t verdict, uint8_t copy,
			struct tlsgate_flow_key *key)
{
	struct tlsgate_flow_value val;
	uint8_t frame[PKT_MAX];
	size_t n, l3;

	n = build(s, frame, &l3, NULL);
	put_flow(frame, n, l3, verdict, key);
	val = get_flow(key);
	val.copy = copy;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &val, BPF_EXIST),
			 0);
}

/* A server segment is copied whole (from its IP header) and passes, and
 * so are a FIN or RST without data either way; the client's data, a FIN
 * with data, and a copy that does not fit are marked; a pure ACK is skipped
 * as before. */
static void check_reply_copy(struct pkt_spec s)
{
	struct pkt_spec r = pkt_reverse(&s), v;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	static char big[TLSGATE_REPLY_COPY_MAX + 1];
	struct ring_read *rr;
	size_t n, l3, hdrs, sent = 0;

	require_loaded();
	ring_drain();
	r.payload = "250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES, &key);

	n = build(&r, frame, &l3, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	sent += n;
	rr = ring_drain();
	assert_int_equal(rr->n, 1);
	assert_int_equal(rr->len[0], n - l3);
	assert_memory_equal(rr->pkt[0], frame + l3, n - l3);

	v = r; /* the SYN-ACK */
	v.flags = 0x12;
	v.payload = "";
	n = build(&v, frame, &l3, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	sent += n;
	rr = ring_drain();
	assert_int_equal(rr->n, 1);
	assert_memory_equal(rr->pkt[0], frame + l3, n - l3);

	n = build(&s, frame, NULL, NULL); /* the client: always marked */
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	v = r;
	v.flags = 0x11; /* FIN with data */
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	v.flags = 0x19; /* FIN|PSH with data, and RST with data (RFC 9293 3.5.3) */
	expect(frame, build(&v, frame, NULL, NULL), TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	v.flags = 0x14;
	expect(frame, build(&v, frame, NULL, NULL), TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	assert_int_equal(ring_drain()->n, 0);
	/* without data, a close carries nothing to withhold: copied either way */
	v.payload = "";
	{
		static const uint8_t closes[] = { 0x11, 0x14, 0x04 }; /* FIN|ACK, RST|ACK, RST */
		for (size_t i = 0; i < 2 * sizeof(closes); i++) {
			struct pkt_spec c = i % 2 ? s : r;
			c.flags = closes[i / 2];
			c.payload = "";
			n = build(&c, frame, &l3, NULL);
			expect(frame, n, TC_ACT_OK, false,
			       i % 2 ? TLSGATE_CNT_COMMAND_COPIED : TLSGATE_CNT_REPLY_COPIED);
			sent += n;
			rr = ring_drain();
			assert_int_equal(rr->n, 1);
			assert_memory_equal(rr->pkt[0], frame + l3, n - l3);
		}
	}
	v.flags = 0x10; /* a pure ACK carries nothing */
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_ACK_SKIPPED);

	/* the largest IP packet that fits is copied, one byte more is marked */
	v = r;
	n = build(&v, frame, &l3, NULL);
	hdrs = n - l3 - strlen(v.payload); /* IP and TCP headers */
	memset(big, 'x', sizeof(big) - 1);
	big[TLSGATE_REPLY_COPY_MAX - hdrs] = '\0';
	v.payload = big;
	n = build(&v, frame, &l3, NULL);
	assert_int_equal(n - l3, TLSGATE_REPLY_COPY_MAX);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	sent += n;
	rr = ring_drain();
	assert_int_equal(rr->n, 1);
	assert_int_equal(rr->len[0], TLSGATE_REPLY_COPY_MAX);
	assert_memory_equal(rr->pkt[0], frame + l3, n - l3);
	big[TLSGATE_REPLY_COPY_MAX - hdrs] = 'x';
	big[TLSGATE_REPLY_COPY_MAX - hdrs + 1] = '\0';
	n = build(&v, frame, &l3, NULL);
	assert_int_equal(n - l3, TLSGATE_REPLY_COPY_MAX + 1);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	assert_int_equal(ring_drain()->n, 0);
	/* the copies count on the entry like passed packets */
	assert_int_equal(get_flow(&key).packets, 9);
	assert_int_equal(get_flow(&key).bytes, sent);

	/* without copy_replies, or on a PASS entry, nothing is copied */
	n = build(&r, frame, NULL, NULL);
	put_copying(&s, TLSGATE_INSPECT, 0, &key);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_COMMANDS, &key);
	v = s; /* the client's close needs COPY_REPLIES */
	v.flags = 0x11;
	v.payload = "";
	expect(frame, build(&v, frame, NULL, NULL), TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	n = build(&r, frame, NULL, NULL);
	put_copying(&s, TLSGATE_PASS, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_CLIENT);
	put_copying(&s, TLSGATE_BLOCK, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_BLOCK_TO_CLIENT);
	assert_int_equal(ring_drain()->n, 0);
}

static void test_reply_copy_v4(void **state)
{
	check_reply_copy(spec_v4());
}

static void test_reply_copy_v6(void **state)
{
	check_reply_copy(spec_v6());
}

/* Behind two VLAN tags the copy still starts at the IP header. */
static void test_reply_copy_vlan(void **state)
{
	struct pkt_spec s = spec_v6(), r;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	struct ring_read *rr;
	size_t n, l3;

	require_loaded();
	ring_drain();
	s.vlans = 2;
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES, &key);
	r = pkt_reverse(&s);
	r.payload = "220 mx.example.net ESMTP\r\n";
	n = build(&r, frame, &l3, NULL);
	assert_true(l3 > 14);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	rr = ring_drain();
	assert_int_equal(rr->n, 1);
	assert_int_equal(rr->len[0], n - l3);
	assert_memory_equal(rr->pkt[0], frame + l3, n - l3);
}

/* The server's data ends a CONTENT entry's content; with copy_replies it is
 * copied rather than marked, and the entry is INSPECT again. */
static void test_reply_copy_content_return(void **state)
{
	struct pkt_spec s = spec_v4(), r;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	ring_drain();
	put_content_copying(&s, s.seq, TLSGATE_COPY_REPLIES, &key);
	r = pkt_reverse(&s);
	r.payload = "421 4.4.2 timeout\r\n";
	n = build(&r, frame, NULL, NULL);
	expect_moved("", frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_RETURNED,
		     TLSGATE_CNT_REPLY_COPIED);
	expect_entry("", &key, TLSGATE_INSPECT, s.seq, 1);
	assert_int_equal(ring_drain()->n, 1);
}

/* A full ring: the segment is marked instead (counted), never lost. */
static void test_reply_copy_ring_full(void **state)
{
	struct pkt_spec s = spec_v4(), r;
	struct tlsgate_flow_key key;
	struct tlsgate_counter_value before[TLSGATE_CNT_MAX], after[TLSGATE_CNT_MAX];
	struct run_result res;
	uint8_t frame[PKT_MAX];
	size_t n, i, copied = 0, marked_n = 0;

	require_loaded();
	ring_drain();
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES, &key);
	r = pkt_reverse(&s);
	r.payload = "250 2.0.0 Ok\r\n";
	n = build(&r, frame, NULL, NULL);
	read_counters(before);
	for (i = 0; i < TLSGATE_REPLY_RING_BYTES / TLSGATE_REPLY_COPY_MAX + 8; i++) {
		assert_int_equal(try_run_frame(frame, n, FOREIGN_MARK, &res), 0);
		assert_int_equal(res.retval, TC_ACT_OK);
		if (res.mark == FOREIGN_MARK)
			copied++;
		else if (res.mark == marked(FOREIGN_MARK))
			marked_n++;
		else
			fail_msg("mark 0x%08x", res.mark);
	}
	read_counters(after);
	assert_true(copied > 0 && marked_n > 0);
	assert_int_equal(after[TLSGATE_CNT_REPLY_COPIED].packets -
				 before[TLSGATE_CNT_REPLY_COPIED].packets, copied);
	assert_int_equal(after[TLSGATE_CNT_REPLY_QUEUED].packets -
				 before[TLSGATE_CNT_REPLY_QUEUED].packets, marked_n);
	assert_int_equal(after[TLSGATE_CNT_INSPECT_TO_CLIENT].packets -
				 before[TLSGATE_CNT_INSPECT_TO_CLIENT].packets, marked_n);
	assert_int_equal(ring_drain()->n, copied);
	/* room again */
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	assert_int_equal(ring_drain()->n, 1);
}


/* Client segments with COPY_COMMANDS: copied unless a line may be one to
 * withhold - it starts (payload start, after CR or LF) with M, R, S in
 * either case or with white space. */
static void set_client_state(const struct tlsgate_flow_key *key, uint32_t next, bool lf)
{
	struct tlsgate_flow_value v = get_flow(key);

	v.client_state = TLSGATE_CLIENT_STATE(next, lf);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &v, BPF_EXIST), 0);
}

/* The flags of the copy expect_command() or expect_switch() read last. */
static uint32_t last_copy_flags;

/* Runs a client segment s with payload against the entry as it is; a copy
 * moves counter too (a RCPT TO judged in the kernel), if not NO_COUNTER. */
static void expect_command_counted(const char *what, struct pkt_spec s, const char *payload,
				   bool copied, int counter)
{
	uint8_t frame[PKT_MAX];
	struct ring_read *rr;
	size_t n, l3;

	s.payload = payload;
	n = build(&s, frame, &l3, NULL);
	if (copied) {
		expect_moved(what, frame, n, TC_ACT_OK, false, TLSGATE_CNT_COMMAND_COPIED, counter);
		rr = ring_drain();
		if (rr->n != 1 || rr->len[0] != n - l3 || memcmp(rr->pkt[0], frame + l3, n - l3))
			fail_msg("%scopy missing or not the IP packet", what);
		last_copy_flags = rr->flags[0];
	} else {
		expect_moved(what, frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
		if (ring_drain()->n)
			fail_msg("%sa withheld-class segment was copied", what);
	}
}

static void expect_command(const char *what, struct pkt_spec s, const char *payload, bool copied)
{
	expect_command_counted(what, s, payload, copied, NO_COUNTER);
}

static void check_command_copy(struct pkt_spec s)
{
	static const char *const copied[] = {
		"EHLO client.example.org\r\n", "HELO x\r\n", "DATA\r\n", "QUIT\r\n",
		"NOOP\r\nQUIT\r\n", "DATA\r\nxmrsbx", "hello\r\n.\r\n", "x MAIL FROM:<a@b>\r\n",
		"EHLO mail.example.org\r\n", "AUTH PLAIN dGVzdA==\r\n", ".\r\nQUIT\r\n", "\r\n",
	};
	static const char *const marked_[] = {
		"MAIL FROM:<a@example.org>\r\n", "mail from:<a@example.org>\r\n",
		"RCPT TO:<b@example.net>\r\n", "rcpt to:<b@example.net>\r\n", "STARTTLS\r\n",
		"starttls\r\n", "EHLO x\r\nMAIL FROM:<a>\r\n", "NOOP\rMAIL FROM:<a>\r\n",
		"NOOP\nmail from:<a>\n", " MAIL FROM:<a>\r\n", "\tMAIL FROM:<a>\r\n",
		"\vMAIL\r\n", "\fMAIL\r\n", "DATA\r\n RCPT TO:<b>\r\n", "QUIT\r\nR",
		"RSET\r\n", "SEND FROM:<a>\r\n", "SAML FROM:<a>\r\n", "M", "s",
		"BDAT 5 LAST\r\nxmrsx", "bdat 4\r\n", "NOOP\r\nBDAT 1\r\nx",
		"hello\r\n.\r\nMAIL FROM:<a@secure.example.org>\r\n",
	};
	struct tlsgate_flow_key key;
	struct pkt_spec v;
	uint8_t frame[PKT_MAX];
	char what[64], buf[700];
	size_t i, n, len, j, k;

	require_loaded();
	ring_drain();
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	for (i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
		snprintf(what, sizeof(what), "copied[%zu]: ", i);
		set_client_state(&key, s.seq, true);
		expect_command(what, s, copied[i], true);
		/* what the next segment is checked against */
		assert_true(get_flow(&key).client_state ==
			    TLSGATE_CLIENT_STATE(s.seq + strlen(copied[i]),
						 copied[i][strlen(copied[i]) - 1] == '\n'));
	}
	for (i = 0; i < sizeof(marked_) / sizeof(marked_[0]); i++) {
		bool bdat = strcasestr(marked_[i], "bdat") != NULL;

		snprintf(what, sizeof(what), "marked[%zu]: ", i);
		put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
		set_client_state(&key, s.seq, true);
		expect_command(what, s, marked_[i], false);
		assert_true(get_flow(&key).client_state ==
			    TLSGATE_CLIENT_STATE(s.seq + strlen(marked_[i]),
						 marked_[i][strlen(marked_[i]) - 1] == '\n'));
		/* a BDAT line (also after other lines) ends command copies */
		if (bdat != !(get_flow(&key).copy & TLSGATE_COPY_COMMANDS))
			fail_msg("%scommand copies %s", what, bdat ? "still on after BDAT" : "off");
	}
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	set_client_state(&key, s.seq, true);
	expect_command("MAIL, RCPT, then BDAT: ", s,
		       "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4 LAST\r\n", false);
	assert_int_equal(get_flow(&key).copy, TLSGATE_COPY_REPLIES);
	{
		struct pkt_spec t = s;
		t.seq += (uint32_t)strlen("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4 LAST\r\n");
		expect_command("right after it: ", t, "abcdQUIT\r\n", false);
	}
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	/* Only in sequence after a segment that ended with LF: a command line
	 * split across segments is marked in both, and a segment out of
	 * order, retransmitted or after a lost one is marked. */
	{
		struct pkt_spec t = s;
		const char *a = "MAIL FROM:<x@sec", *b = "ure.example.org>\r\n", *c = "QUIT\r\n";

		set_client_state(&key, t.seq, true);
		expect_command("split 1: ", t, a, false);
		t.seq += (uint32_t)strlen(a);
		expect_command("split 2: ", t, b, false);
		t.seq += (uint32_t)strlen(b);
		expect_command("after the split line: ", t, c, true);
		expect_command("retransmitted: ", t, c, false);
		t.seq += (uint32_t)strlen(c);
		expect_command("after the same again: ", t, c, true);
		t.seq -= (uint32_t)strlen(c);
		expect_command("an older one again: ", t, c, false);
		t.seq += (uint32_t)strlen(c);
		expect_command("after it (the state went back): ", t, c, true);
		t.seq -= 2 * (uint32_t)strlen(c);
		expect_command("two back: ", t, c, false);
		t.seq += 3 * (uint32_t)strlen(c);
		expect_command("a newer one after that: ", t, c, false);
		t.seq += (uint32_t)strlen(c);
		expect_command("in sequence again: ", t, c, true);
		t.seq += 100;
		expect_command("after a hole: ", t, c, false);
		t.seq += (uint32_t)strlen(c);
		expect_command("NOOP ending in CR: ", t, "NOOP\r", true);
		t.seq += 5;
		expect_command("after a CR without LF: ", t, "\nQUIT\r\n", false);
		set_client_state(&key, t.seq - 1, true);
		expect_command("one byte off: ", t, c, false);
		set_client_state(&key, t.seq + 1, true);
		expect_command("one byte ahead: ", t, c, false);
	}
	/* An 'M' at every position of payloads up to 600 bytes (words,
	 * 32-byte blocks, the 512-byte chunk), with a line end before it or
	 * not: marked exactly when it starts a line. */
	for (len = 1; len <= 600; len += (len < 80 ? 1 : 37)) {
		for (k = 0; k < len; k += (len < 80 ? 1 : 7)) {
			for (j = 0; j < 3; j++) {
				memset(buf, 'x', len);
				buf[len] = '\0';
				buf[k] = 'M';
				if (k > 0 && j == 1)
					buf[k - 1] = '\n';
				if (k > 0 && j == 2)
					buf[k - 1] = '\r';
				snprintf(what, sizeof(what), "len %zu M at %zu eol %zu: ", len, k, j);
				set_client_state(&key, s.seq, true);
				expect_command(what, s, buf, k > 0 && j == 0 ? true : false);
			}
		}
	}
	/* the client's SYN, FIN and RST with data, and a copy that does not
	 * fit: marked */
	v = s;
	v.flags = 0x02;
	v.payload = "";
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	v.flags = 0x11;
	v.payload = "QUIT\r\n";
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	v.flags = 0x14;
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	{
		static char big[TLSGATE_REPLY_COPY_MAX + 1];
		memset(big, 'x', sizeof(big) - 1);
		set_client_state(&key, s.seq, true);
		expect_command("too long to copy: ", s, big, false);
	}
	/* COPY_REPLIES alone leaves the client's segments queued */
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES, &key);
	set_client_state(&key, s.seq, true);
	expect_command("replies only: ", s, "EHLO x\r\n", false);
	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_COMMANDS, &key);
	v = pkt_reverse(&s);
	v.payload = "250 ok\r\n";
	n = build(&v, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	assert_int_equal(ring_drain()->n, 0);
}

static void test_command_copy_v4(void **state)
{
	check_command_copy(spec_v4());
}

static void test_command_copy_v6(void **state)
{
	check_command_copy(spec_v6());
}

/* A CONTENT entry's end of data comes back; without a command line after
 * it, it is copied rather than marked. */
/* ---- the end of data passed in the kernel (TLSGATE_COPY_END_OF_DATA) ----- */

#define COPY_ALL (TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS | TLSGATE_COPY_END_OF_DATA)

/* With END_OF_DATA, a content segment that ends with the end of data, and
 * holds no other, passes and turns the entry back (ENDED, client_state
 * after it); anything else about its end returns it as before. */
static void check_content_ended(struct pkt_spec c)
{
	static const struct {
		const char *payload;
		uint8_t lf; /* content_lf before */
		uint8_t copy;
		bool ended;
	} cases[] = {
		{ "abc\r\n.\r\n", 0, COPY_ALL, true },
		{ "\r\n.\r\n", 0, COPY_ALL, true },
		{ ".\r\n", TLSGATE_CONTENT_LF, COPY_ALL, true },
		/* SMTP smuggling: only some servers end the data at these (the
		 * session flags them); none may pass as the end */
		{ "abc\n.\r\n", 0, COPY_ALL, false },
		{ "X\n.\r\n", TLSGATE_CONTENT_LF, COPY_ALL, false },
		{ "\n.\r\n", TLSGATE_CONTENT_LF, COPY_ALL, false },
		{ "X\r.\r\n", 0, COPY_ALL, false },
		{ "X\r\n.\n", 0, COPY_ALL, false },
		{ "X\r\n.\r\r\n", 0, COPY_ALL, false },
		{ "X\n\n.\r\n", 0, COPY_ALL, false },
		{ "X\r\r.\r\n", 0, COPY_ALL, false },
		{ ".\r\n", 0, COPY_ALL, false }, /* after a CR alone, or a bare LF */
		{ "\n.\r\n", 0, COPY_ALL, false },
		{ "abc\r.\r\n", 0, COPY_ALL, false },
		{ "abc\r\n.\n", 0, COPY_ALL, false },
		{ "abc\r\n.\r\nQUIT\r\n", 0, COPY_ALL, false },
		{ "a\r\n.\r\nb\r\n.\r\n", 0, COPY_ALL, false },
		{ "a\r\n.\rb\r\n.\r\n", 0, COPY_ALL, false },
		{ "abc\r\n.\r\n", 0, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, false },
	};
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	char what[96];
	size_t i, n;

	require_loaded();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(what, sizeof(what), "case %zu: ", i);
		put_content(&c, c.seq, 1, &key);
		v = get_flow(&key);
		v.content_lf = cases[i].lf;
		v.copy = cases[i].copy;
		v.client_state = TLSGATE_CLIENT_STATE(c.seq - 100, 0);
		assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
		c.payload = cases[i].payload;
		n = build(&c, frame, NULL, NULL);
		if (cases[i].ended) {
			expect_moved(what, frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_PASSED,
				     TLSGATE_CNT_CONTENT_ENDED);
			v = expect_entry(what, &key, TLSGATE_INSPECT, c.seq + strlen(c.payload), 1);
			assert_int_equal(v.content_lf, TLSGATE_CONTENT_LF | TLSGATE_CONTENT_UNSEEN |
							       TLSGATE_CONTENT_ENDED);
			assert_true(v.client_state ==
				    TLSGATE_CLIENT_STATE(c.seq + strlen(c.payload), 1));
		} else {
			expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
			v = expect_entry(what, &key, TLSGATE_INSPECT, c.seq, -1);
			assert_int_equal(v.content_lf & TLSGATE_CONTENT_ENDED, 0);
		}
		ring_drain();
	}
	/* a dot-stuffed line at the end is content, not its end */
	put_content_copying(&c, c.seq, COPY_ALL, &key);
	c.payload = "abc\r\n..\r\n";
	expect_content_passed("dot-stuffed: ", frame, build(&c, frame, NULL, NULL));
	expect_entry("dot-stuffed: ", &key, TLSGATE_CONTENT, c.seq + strlen(c.payload), 1);
}

static void test_content_ended_v4(void **state)
{
	check_content_ended(spec_v4());
}

static void test_content_ended_v6(void **state)
{
	check_content_ended(spec_v6());
}

/* The content (c's flow, copying) passes in the kernel up to its end:
 * the entry INSPECT, ENDED at the returned sequence number. */
static uint32_t content_to_end(struct pkt_spec c, struct tlsgate_flow_key *key)
{
	const char *msg = "Subject: x\r\nMessage-Id: <1@x>\r\n\r\n..dot\r\nbody\r\n.\r\n";
	uint8_t frame[PKT_MAX];
	size_t n;

	ring_drain();
	put_content_copying(&c, c.seq, COPY_ALL, key);
	c.payload = msg;
	n = build(&c, frame, NULL, NULL);
	expect_moved("message: ", frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_PASSED,
		     TLSGATE_CNT_CONTENT_ENDED);
	return c.seq + (uint32_t)strlen(msg);
}

/* After the end of data passed, the next client segment is judged by the
 * command rule from there. A QUIT alone, the first client segment after
 * it (the server's reply may come between), no longer turns the entry
 * PASS (issue 17, finding 13): it is copied like any command, the entry
 * stays INSPECT, and what follows is judged - also a MAIL FROM sent at
 * the QUIT's sequence number in case the server dropped that QUIT (a bad
 * checksum), and the 221 is copied. */
static void check_content_ended_then(struct pkt_spec c)
{
	static const char *const quits[] = { "QUIT\r\n", "quit\r\n", "QuiT\r\n" };
	struct pkt_spec r = pkt_reverse(&c);
	struct tlsgate_flow_key key;
	struct ring_read *rr;
	uint8_t frame[PKT_MAX];
	uint32_t end;
	size_t n;

	require_loaded();
	for (size_t i = 0; i < sizeof(quits) / sizeof(*quits); i++) {
		end = content_to_end(c, &key);
		/* the server's 250 first: copied, saying where the content ended */
		r.payload = "250 2.0.0 Ok: queued\r\n";
		n = build(&r, frame, NULL, NULL);
		expect_moved("250: ", frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED, NO_COUNTER);
		rr = ring_drain();
		assert_int_equal(rr->n, 1);
		assert_int_equal(rr->flags[0], TLSGATE_REPLY_ENDED);
		assert_int_equal(rr->content_seq[0], end);
		struct pkt_spec q = c;
		q.seq = end;
		q.payload = quits[i];
		n = build(&q, frame, NULL, NULL);
		expect_moved(quits[i], frame, n, TC_ACT_OK, false, TLSGATE_CNT_COMMAND_COPIED,
			     NO_COUNTER);
		struct tlsgate_counter_value cnt[TLSGATE_CNT_MAX];
		read_counters(cnt);
		if (cnt[TLSGATE_CNT_QUIT_PASSED].packets)
			fail_msg("%s: counted as passed", quits[i]);
		rr = ring_drain();
		assert_int_equal(rr->n, 1);
		assert_int_equal(rr->flags[0], TLSGATE_REPLY_ENDED);
		assert_int_equal(rr->content_seq[0], end);
		assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
		/* the server dropped that QUIT: a MAIL FROM in its place is
		 * marked, not passed */
		q.payload = "MAIL FROM:<a@secure.example.org>\r\n";
		n = build(&q, frame, NULL, NULL);
		expect_moved("MAIL FROM at the QUIT's place: ", frame, n, TC_ACT_OK, true,
			     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
		/* the 221 is copied; what the client says after QUIT is judged */
		r.payload = "221 2.0.0 Bye\r\n";
		n = build(&r, frame, NULL, NULL);
		expect_moved("221: ", frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED,
			     NO_COUNTER);
		q.seq = end + 6;
		n = build(&q, frame, NULL, NULL);
		expect_moved("after QUIT: ", frame, n, TC_ACT_OK, true,
			     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
		assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
		ring_drain();
	}
}

/* A QUIT that is not alone, not in that place, or not after the kernel's
 * end of data is copied or marked as any command: the entry stays. */
static void check_quit_kept(struct pkt_spec c)
{
	static const char *const not_alone[] = {
		"QUIT \r\n", "QUIT\n", "QUIT\r", "QUIT", "QUIT\r\nNOOP\r\n", "XUIT\r\n",
		"QUIU\r\n", "QUI\r\n\r\n", "NOOP\r\nQUIT\r\n", "QUIT\r\r\n",
	};
	struct tlsgate_flow_key key;
	struct ring_read *rr;
	uint8_t frame[PKT_MAX];
	uint32_t end;
	size_t n;

	require_loaded();
	for (size_t i = 0; i < sizeof(not_alone) / sizeof(*not_alone); i++) {
		end = content_to_end(c, &key);
		struct pkt_spec q = c;
		q.seq = end;
		q.payload = not_alone[i];
		n = build(&q, frame, NULL, NULL);
		try_run_frame(frame, n, FOREIGN_MARK, &(struct run_result){ 0 });
		if (get_flow(&key).verdict != TLSGATE_INSPECT)
			fail_msg("\"%s\": the entry changed", not_alone[i]);
		rr = ring_drain();
		if (rr->n > 1 || (rr->n == 1 && (rr->flags[0] & TLSGATE_REPLY_PASSED)))
			fail_msg("\"%s\": copied as passed", not_alone[i]);
	}
	/* a NOOP first: the QUIT is copied, not passed; a MAIL FROM is marked */
	end = content_to_end(c, &key);
	struct pkt_spec q = c;
	q.seq = end;
	q.payload = "NOOP\r\n";
	n = build(&q, frame, NULL, NULL);
	expect_moved("NOOP: ", frame, n, TC_ACT_OK, false, TLSGATE_CNT_COMMAND_COPIED, NO_COUNTER);
	q.seq += 6;
	q.payload = "QUIT\r\n";
	n = build(&q, frame, NULL, NULL);
	expect_moved("QUIT after NOOP: ", frame, n, TC_ACT_OK, false, TLSGATE_CNT_COMMAND_COPIED,
		     NO_COUNTER);
	rr = ring_drain();
	assert_int_equal(rr->n, 2);
	assert_int_equal(rr->flags[1], TLSGATE_REPLY_ENDED);
	assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
	q.seq += 6;
	q.payload = "MAIL FROM:<a@secure.example.org>\r\n";
	n = build(&q, frame, NULL, NULL);
	expect_moved("MAIL: ", frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
	assert_int_equal(ring_drain()->n, 0);
	/* out of place: a byte ahead, marked; a byte back, over the end of
	 * data passed unseen with another byte than its LF: dropped */
	for (int d = -1; d <= 1; d += 2) {
		end = content_to_end(c, &key);
		q = c;
		q.seq = end + (uint32_t)d;
		q.payload = "QUIT\r\n";
		n = build(&q, frame, NULL, NULL);
		if (d < 0)
			expect_moved("QUIT a byte back: ", frame, n, TC_ACT_SHOT, false,
				     TLSGATE_CNT_STALE_DROPPED, NO_COUNTER);
		else
			expect_moved("QUIT out of place: ", frame, n, TC_ACT_OK, true,
				     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
		assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
		assert_int_equal(ring_drain()->n, 0);
	}
	/* commands not copied (the daemon withholds what comes): marked */
	end = content_to_end(c, &key);
	struct tlsgate_flow_value v = get_flow(&key);
	v.copy = TLSGATE_COPY_REPLIES;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	q = c;
	q.seq = end;
	q.payload = "QUIT\r\n";
	n = build(&q, frame, NULL, NULL);
	expect_moved("QUIT, no command copies: ", frame, n, TC_ACT_OK, true,
		     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
	assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
	/* an INSPECT entry whose content did not end here: copied, kept */
	put_copying(&c, TLSGATE_INSPECT, COPY_ALL, &key);
	v = get_flow(&key);
	v.client_state = TLSGATE_CLIENT_STATE(c.seq, 1);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	q = c;
	q.payload = "QUIT\r\n";
	n = build(&q, frame, NULL, NULL);
	expect_moved("QUIT without content: ", frame, n, TC_ACT_OK, false,
		     TLSGATE_CNT_COMMAND_COPIED, NO_COUNTER);
	rr = ring_drain();
	assert_int_equal(rr->n, 1);
	assert_int_equal(rr->flags[0], 0);
	assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
}

/* ---- the content handed over at the 354 (awaits map) --------------------- */

/* c: the client, its last line ending at c.seq; the server's last reply
 * ended at c.ack. The entry copies replies and commands (copy), the client
 * and server states say so, and the daemon awaits stage there. */
static void put_awaiting_skip(const struct pkt_spec *c, uint8_t copy, uint8_t stage, uint8_t skip,
			      struct tlsgate_flow_key *key)
{
	struct tlsgate_await a = { .state = TLSGATE_AWAIT_STATE(stage, skip, c->ack),
				   .client_seq = c->seq };
	struct tlsgate_flow_value v;

	put_copying(c, TLSGATE_INSPECT, copy, key);
	v = get_flow(key);
	v.content_seq = c->seq;
	v.client_state = TLSGATE_CLIENT_STATE(c->seq, 1);
	v.server_state = TLSGATE_SERVER_STATE(c->ack);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), key, &v, BPF_EXIST), 0);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.awaits), key, &a, BPF_ANY), 0);
}

static void put_awaiting_stage(const struct pkt_spec *c, uint8_t copy, uint8_t stage,
			       struct tlsgate_flow_key *key)
{
	put_awaiting_skip(c, copy, stage, 0, key);
}

/* ... the 354, c.seq after DATA CRLF */
static void put_awaiting(const struct pkt_spec *c, uint8_t copy, struct tlsgate_flow_key *key)
{
	put_awaiting_stage(c, copy, TLSGATE_AWAIT_354, key);
}

static bool awaiting(const struct tlsgate_flow_key *key)
{
	struct tlsgate_await a;

	return bpf_map_lookup_elem(bpf_map__fd(skel->maps.awaits), key, &a) == 0;
}

/* Runs the server segment r with payload: copied and passed, server_state
 * after it; the entry turned CONTENT there exactly when want (checked in
 * full: entry, counter, the copy's flag). */
static void expect_switch(const char *what, const struct pkt_spec *c, struct pkt_spec r,
			  const char *payload, const struct tlsgate_flow_key *key, bool want)
{
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	struct ring_read *rr;
	uint32_t copy;
	size_t n, l3;

	r.payload = payload;
	n = build(&r, frame, &l3, NULL);
	copy = get_flow(key).copy;
	expect_moved(what, frame, n, TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED,
		     want ? TLSGATE_CNT_CONTENT_SWITCHED : NO_COUNTER);
	rr = ring_drain();
	if (rr->n != 1 || rr->len[0] != n - l3 || memcmp(rr->pkt[0], frame + l3, n - l3))
		fail_msg("%sthe server segment's copy is missing", what);
	v = get_flow(key);
	if (v.server_state != TLSGATE_SERVER_STATE(r.seq + strlen(payload)))
		fail_msg("%sserver_state not after the segment", what);
	last_copy_flags = rr->flags[0];
	if (!want) {
		if (v.verdict != TLSGATE_INSPECT || (rr->flags[0] & ~TLSGATE_REPLY_AWAIT_MOVED) ||
		    v.copy != copy)
			fail_msg("%sentry or copy changed without a switch", what);
		return;
	}
	if (rr->flags[0] != TLSGATE_REPLY_CONTENT || rr->content_seq[0] != c->seq)
		fail_msg("%sswitch not said in the copy (flags %u at %u)", what, rr->flags[0],
			 rr->content_seq[0]);
	v = expect_entry(what, key, TLSGATE_CONTENT, c->seq, 1);
	if (v.content_lf != TLSGATE_CONTENT_LF || v.content_chunk || awaiting(key))
		fail_msg("%sCONTENT entry not as after DATA CRLF, or the awaits entry stays", what);
}

static void check_switch_at_354(struct pkt_spec c)
{
	const uint8_t both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	static const char *const not_354[] = {
		"250 2.0.0 Ok\r\n", "354-a\r\n354 go\r\n", "354 go", "3540\r\n", "35\r\n",
		"354go\r\n", "454 4.7.0 later\r\n", "354\rgo \n",
		/* over a reply line's 512 bytes */
		"354 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	};
	struct pkt_spec r = pkt_reverse(&c), w;
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	char what[96];
	size_t i;

	require_loaded();
	ring_drain();
	/* The 354 where the daemon awaits it: CONTENT from the client's next
	 * byte on; the message passes, its end too (END_OF_DATA). */
	put_awaiting(&c, both | TLSGATE_COPY_END_OF_DATA, &key);
	expect_switch("354: ", &c, r, "354 End data with <CR><LF>.<CR><LF>\r\n", &key, true);
	w = c;
	w.payload = "Subject: x\r\n\r\nbody\r\n";
	expect_content_passed("content: ", frame, build(&w, frame, NULL, NULL));
	w.seq += strlen(w.payload);
	w.payload = "last\r\n.\r\n";
	expect_moved("end: ", frame, build(&w, frame, NULL, NULL), TC_ACT_OK, false,
		     TLSGATE_CNT_CONTENT_PASSED, TLSGATE_CNT_CONTENT_ENDED);
	put_awaiting(&c, both, &key);
	expect_switch("354 CR LF: ", &c, r, "354\r\n", &key, true);
	/* a reply line's 512 bytes at most */
	static char line[TLSGATE_REPLY_LINE_MAX + 2];
	memset(line, 'x', sizeof(line) - 1);
	memcpy(line, "354 ", 4);
	memcpy(line + TLSGATE_REPLY_LINE_MAX - 2, "\r\n", 3);
	put_awaiting(&c, both, &key);
	expect_switch("512 bytes: ", &c, r, line, &key, true);
	memcpy(line + TLSGATE_REPLY_LINE_MAX - 2, "x\r\n", 4);
	put_awaiting(&c, both, &key);
	expect_switch("513 bytes: ", &c, r, line, &key, false);

	for (i = 0; i < sizeof(not_354) / sizeof(not_354[0]); i++) {
		snprintf(what, sizeof(what), "reply %zu: ", i);
		put_awaiting(&c, both, &key);
		expect_switch(what, &c, r, not_354[i], &key, false);
	}
	/* Not awaited; replies or commands not copied. */
	put_awaiting(&c, both, &key);
	assert_int_equal(bpf_map_delete_elem(bpf_map__fd(skel->maps.awaits), &key), 0);
	expect_switch("no awaits entry: ", &c, r, "354 go\r\n", &key, false);
	put_awaiting(&c, TLSGATE_COPY_REPLIES, &key);
	expect_switch("no command copies: ", &c, r, "354 go\r\n", &key, false);
	/* Not where awaited: the 354 starts elsewhere (in order all the same). */
	put_awaiting(&c, both, &key);
	w = r;
	w.seq += 8;
	v = get_flow(&key);
	v.server_state = TLSGATE_SERVER_STATE(w.seq);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	expect_switch("elsewhere: ", &c, w, "354 go\r\n", &key, false);
	/* Where awaited, but not right after the server's last segment: the
	 * daemon's own write (server_state unknown), or other server bytes. */
	put_awaiting(&c, both, &key);
	v = get_flow(&key);
	v.server_state = 0;
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	expect_switch("server_state unknown: ", &c, r, "354 go\r\n", &key, false);
	/* A hostile server's second say at the same place: the client read
	 * the 554; the "354" after it, over the same bytes, changes nothing. */
	put_awaiting(&c, both, &key);
	expect_switch("554 first: ", &c, r, "554 5.5.1 no\r\n", &key, false);
	expect_switch("then 354 over it: ", &c, r, "354 go here\r\n", &key, false);
	/* The server read more than DATA, or the client sent more. */
	put_awaiting(&c, both, &key);
	w = r;
	w.ack += 6;
	expect_switch("server acked more: ", &c, w, "354 go\r\n", &key, false);
	put_awaiting(&c, both, &key);
	set_client_state(&key, c.seq + 6, true);
	expect_switch("client sent more: ", &c, r, "354 go\r\n", &key, false);
	put_awaiting(&c, both, &key);
	set_client_state(&key, c.seq, false);
	expect_switch("client not after LF: ", &c, r, "354 go\r\n", &key, false);
}

static void test_switch_at_354_v4(void **state)
{
	check_switch_at_354(spec_v4());
}

static void test_switch_at_354_v6(void **state)
{
	check_switch_at_354(spec_v6());
}

/* The entry's awaits stage and sequence numbers, or fails. */
static void expect_await(const char *what, const struct tlsgate_flow_key *key, uint8_t stage,
			 uint32_t client_seq, uint32_t server_seq)
{
	struct tlsgate_await a;

	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.awaits), key, &a))
		fail_msg("%sno awaits entry", what);
	if (a.state != TLSGATE_AWAIT_STATE(stage, 0, server_seq) || a.client_seq != client_seq)
		fail_msg("%sawaits state %llx client %u, expected stage %u client %u server %u", what,
			 (unsigned long long)a.state, a.client_seq, stage, client_seq, server_seq);
}

/* The copy read last says the awaits entry moved on there, or not. */
static void expect_moved_flag(const char *what, bool moved)
{
	if (!!(last_copy_flags & TLSGATE_REPLY_AWAIT_MOVED) != moved)
		fail_msg("%sthe copy's flags 0x%x, the awaits entry %s", what, last_copy_flags,
			 moved ? "moved" : "did not move");
}

/* AWAIT_REPLY (the daemon saw RCPT): the program moves on at RCPT's reply
 * and at the client's DATA, then switches at the 354; other replies, other
 * commands, or anything out of place end it. */
static void check_await_reply(struct pkt_spec c)
{
	const uint8_t both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	static const char *const not_one_line[] = {
		"250-a\r\n250 b\r\n", "250 a\r\n250 b\r\n", "25x ok\r\n", "250 ok", "250\r\r\n",
		"650 ok\r\n", "250ok\r\n",
	};
	const char *ok = "250 2.1.5 Ok\r\n";
	struct pkt_spec r = pkt_reverse(&c), w;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	uint32_t x1 = r.seq + (uint32_t)strlen(ok);
	char what[64];
	size_t i;

	require_loaded();
	ring_drain();
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("RCPT's reply: ", &c, r, ok, &key, false);
	expect_moved_flag("RCPT's reply: ", true);
	expect_await("RCPT's reply: ", &key, TLSGATE_AWAIT_DATA, c.seq, x1);
	expect_command("DATA: ", c, "DATA\r\n", true);
	expect_moved_flag("DATA: ", true);
	expect_await("DATA: ", &key, TLSGATE_AWAIT_354, c.seq + 6, x1);
	w = r;
	w.seq = x1;
	w.ack = c.seq + 6;
	c.seq += 6;
	expect_switch("354: ", &c, w, "354 go ahead\r\n", &key, true);
	c.seq -= 6;

	for (i = 0; i < sizeof(not_one_line) / sizeof(not_one_line[0]); i++) {
		snprintf(what, sizeof(what), "reply %zu: ", i);
		put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
		expect_switch(what, &c, r, not_one_line[i], &key, false);
		if (awaiting(&key))
			fail_msg("%snot one reply line, the awaits entry stays", what);
	}
	/* the reply, then the server again before DATA */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	w = r;
	w.seq = x1;
	expect_switch("more from the server: ", &c, w, "250 x\r\n", &key, false);
	assert_false(awaiting(&key));
	/* not DATA alone at client_seq: stays where it is */
	static const char *const not_data[] = { "NOOP\r\nDATA\r\n", "DATA\r\nX", "QUIT\r\n",
						"DATA \r\n" };
	for (i = 0; i < sizeof(not_data) / sizeof(not_data[0]); i++) {
		snprintf(what, sizeof(what), "client %zu: ", i);
		put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
		expect_switch(what, &c, r, ok, &key, false);
		expect_command(what, c, not_data[i], true);
		expect_moved_flag(what, false);
		expect_await(what, &key, TLSGATE_AWAIT_DATA, c.seq, x1);
	}
	/* DATA elsewhere, or after more server data than the reply */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	w = c;
	w.seq += 10;
	set_client_state(&key, w.seq, true);
	expect_command("DATA elsewhere: ", w, "DATA\r\n", true);
	expect_await("DATA elsewhere: ", &key, TLSGATE_AWAIT_DATA, c.seq, x1);
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	struct tlsgate_flow_value v = get_flow(&key);
	v.server_state = TLSGATE_SERVER_STATE(x1 + 5);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	expect_command("server moved: ", c, "DATA\r\n", true);
	expect_await("server moved: ", &key, TLSGATE_AWAIT_DATA, c.seq, x1);
	/* a 354 while still awaiting RCPT's reply is not it */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("354 for RCPT: ", &c, r, "354 go\r\n", &key, false);
	(void)frame;
}

/* rcpt_domains as the daemon writes it (flowkey_domain_hash() of each
 * refusing domain), with READY or without. */
static void set_rcpt_domains(const char *const *names, size_t n, bool ready)
{
	int fd = bpf_map__fd(skel->maps.rcpt_domains);
	uint64_t h;
	uint8_t one = 1;

	while (bpf_map_get_next_key(fd, NULL, &h) == 0)
		assert_int_equal(bpf_map_delete_elem(fd, &h), 0);
	for (size_t i = 0; i < n; i++) {
		h = flowkey_domain_hash(names[i]);
		assert_int_equal(bpf_map_update_elem(fd, &h, &one, BPF_ANY), 0);
	}
	h = TLSGATE_RCPT_READY;
	if (ready)
		assert_int_equal(bpf_map_update_elem(fd, &h, &one, BPF_ANY), 0);
}

static uint64_t rcpt_copied_count(void)
{
	struct tlsgate_counter_value sum[TLSGATE_CNT_MAX];

	read_counters(sum);
	return sum[TLSGATE_CNT_RCPT_COPIED].packets;
}

/* One client segment at a line start of a flow with command copies:
 * copied (and counted as a RCPT judged here) or marked. */
static void expect_rcpt(const char *what, struct pkt_spec s, const char *payload, bool copied)
{
	struct tlsgate_flow_key key;
	uint64_t before;

	put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	set_client_state(&key, s.seq, true);
	before = rcpt_copied_count();
	expect_command_counted(what, s, payload, copied, TLSGATE_CNT_RCPT_COPIED);
	if (rcpt_copied_count() - before != (copied ? 1 : 0))
		fail_msg("%sRCPT copies counted %llu", what,
			 (unsigned long long)(rcpt_copied_count() - before));
}

/* A RCPT TO line alone is copied when neither its domain nor a parent is
 * one the policy may refuse (a subdomain of one is refused too), and only
 * in the plainest syntax, which the daemon's session reads the same way;
 * anything else is marked as before. */
static void check_rcpt_by_domain(struct pkt_spec s)
{
	static const char *const rules[] = { "secure.example.org", "example.com", "x_y.example" };
	static const char *const copied[] = {
		"RCPT TO:<b@example.net>\r\n",
		"rcpt to:<B.c+tag@Mail.Example.NET>\r\n",
		"RcPt To:<b@example.org>\r\n",
		"RCPT TO:<b@notsecure.example.org>\r\n",
		"RCPT TO:<b@secure.example.org.example.net>\r\n",
		"RCPT TO:<b@example.community>\r\n",
		"RCPT TO:<b@x-y.example>\r\n",
		"RCPT TO:<b@localhost>\r\n",
		"RCPT TO:<b@example.net> NOTIFY=NEVER ORCPT=rfc822;b@secure.example.org\r\n",
		"RCPT TO:<b@example.net> <c@secure.example.org>\r\n",
		"RCPT TO:<!#$%&'*+-/=?^_`{|}~.@example.net>\r\n",
	};
	static const char *const marked_[] = {
		"RCPT TO:<b@secure.example.org>\r\n",
		"RCPT TO:<b@SECURE.Example.ORG>\r\n",
		"RCPT TO:<b@mx.secure.example.org>\r\n",
		"RCPT TO:<b@a.b.c.secure.example.org>\r\n",
		"RCPT TO:<b@secure.example.org.>\r\n",
		"RCPT TO:<b@example.com>\r\n",
		"RCPT TO:<b@sub.example.com>\r\n",
		"RCPT TO:<b@x_y.example>\r\n",
		"RCPT TO: <b@example.net>\r\n",
		"RCPT  TO:<b@example.net>\r\n",
		"RCPT TO :<b@example.net>\r\n",
		"RCPT TO:b@example.net\r\n",
		"RCPT TO:<\"b@x\"@example.net>\r\n",
		"RCPT TO:<b\\@x@example.net>\r\n",
		"RCPT TO:<@relay.example.net:b@example.net>\r\n",
		"RCPT TO:<b@[192.0.2.1]>\r\n",
		"RCPT TO:<b@c@example.net>\r\n",
		"RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n",
		"RCPT TO:<b@example.net>\r\nMAIL FROM:<a@secure.example.org>\r\n",
		"RCPT TO:<b@example.net>\r\nDATA\r\n",
		"RCPT TO:<b@example.net>\n",
		"RCPT TO:<b@example.net>\r",
		"RCPT TO:<b@example.net>",
		"RCPT TO:<b@example.net>x\r\n",
		"RCPT TO:<b@example.net>\tNOTIFY=NEVER\r\n",
		"RCPT TO:<b@example.net> \x80\r\n",
		"RCPT TO:<b@example.net> a\rb\r\n",
		"RCPT TO:<b@exa mple.net>\r\n",
		"RCPT TO:<b@example..net>\r\n",
		"RCPT TO:<b@.example.net>\r\n",
		"RCPT TO:<b@>\r\n",
		"RCPT TO:<@example.net>\r\n",
		"RCPT TO:<b@example.net\r\n",
		"RCPT TO:<postmaster>\r\n",
		"RCPT TO:<>\r\n",
		"RCPT TO:<b\xc3\xa9@example.net>\r\n",
		"RCPT TO:<b@ex\xc3\xa4mple.net>\r\n",
		"RCPT TO:<b(c)@example.net>\r\n",
		"RCPT TO:<b,c@example.net>\r\n",
		"RCPT TO:<b;c@example.net>\r\n",
		"RCPTTO:<b@example.net>\r\n",
		"RCPT FROM:<b@example.net>\r\n",
		" RCPT TO:<b@example.net>\r\n",
		"RSET\r\n",
		"RCPT\r\n",
	};
	char what[64], line[700];
	size_t i, n;

	require_loaded();
	ring_drain();
	set_rcpt_domains(rules, 3, true);
	for (i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
		snprintf(what, sizeof(what), "copied[%zu]: ", i);
		expect_rcpt(what, s, copied[i], true);
	}
	for (i = 0; i < sizeof(marked_) / sizeof(marked_[0]); i++) {
		snprintf(what, sizeof(what), "marked[%zu]: ", i);
		expect_rcpt(what, s, marked_[i], false);
	}
	/* The session reads 255 bytes of an address: a longer one is marked. */
	for (n = 240; n <= 246; n++) {
		int len = snprintf(line, sizeof(line), "RCPT TO:<%.*s@example.net>\r\n", (int)n,
				   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
				   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
		snprintf(what, sizeof(what), "address of %zu bytes: ", n + 12);
		expect_rcpt(what, s, line, n + 12 <= 255);
		(void)len;
	}
	/* A line of 512 bytes (RFC 5321's limit, CRLF included) is judged,
	 * one of 513 is not. */
	for (n = 511; n <= 513; n++) {
		int head = snprintf(line, sizeof(line), "RCPT TO:<b@example.net> X-P=");
		memset(line + head, 'x', n - 2 - (size_t)head);
		memcpy(line + n - 2, "\r\n", 3);
		snprintf(what, sizeof(what), "line of %zu bytes: ", n);
		expect_rcpt(what, s, line, n <= 512);
	}
	/* Without READY (the daemon rewriting the set) every RCPT is marked;
	 * with an empty set and READY (a policy without such domains) none. */
	set_rcpt_domains(rules, 3, false);
	expect_rcpt("not ready: ", s, copied[0], false);
	set_rcpt_domains(NULL, 0, true);
	expect_rcpt("no domains: ", s, marked_[0], true);
	expect_rcpt("no domains, a subdomain: ", s, marked_[3], true);
	expect_rcpt("no domains, other syntax: ", s, marked_[8], false);
	/* Only at a line start: after a segment without LF it is marked. */
	{
		struct tlsgate_flow_key key;
		put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
		set_client_state(&key, s.seq, false);
		expect_command("not after an LF: ", s, copied[0], false);
		set_client_state(&key, s.seq + 1, true);
		expect_command("not in sequence: ", s, copied[0], false);
	}
	set_rcpt_domains(NULL, 0, false);
}

static void test_rcpt_by_domain_v4(void **state)
{
	check_rcpt_by_domain(spec_v4());
}

static void test_rcpt_by_domain_v6(void **state)
{
	check_rcpt_by_domain(spec_v6());
}

/* From AWAIT_REPLY written at MAIL: the reply, each RCPT TO copied for its
 * domain and its reply, DATA, and the 354 are followed in the kernel; a
 * RCPT TO that is marked leaves the entry where it is (the daemon reads
 * it), as does one while the server has said more. */
static void check_await_rcpt(struct pkt_spec c)
{
	const uint8_t both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	static const char *const rules[] = { "secure.example.org" };
	const char *ok = "250 2.1.0 Ok\r\n", *r1 = "RCPT TO:<a@example.net>\r\n",
		   *r2 = "RCPT TO:<b@example.org>\r\n";
	struct pkt_spec r = pkt_reverse(&c), w, k;
	struct tlsgate_flow_key key;
	uint32_t s1 = r.seq + (uint32_t)strlen(ok), s2 = s1 + (uint32_t)strlen(ok),
		 s3 = s2 + (uint32_t)strlen(ok);
	uint32_t c1 = c.seq + (uint32_t)strlen(r1), c2 = c1 + (uint32_t)strlen(r2);

	require_loaded();
	ring_drain();
	set_rcpt_domains(rules, 1, true);
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("MAIL's reply: ", &c, r, ok, &key, false);
	expect_moved_flag("MAIL's reply: ", true);
	expect_await("MAIL's reply: ", &key, TLSGATE_AWAIT_DATA, c.seq, s1);
	expect_command_counted("first RCPT: ", c, r1, true,
			       TLSGATE_CNT_RCPT_COPIED);
	expect_moved_flag("first RCPT: ", true);
	expect_await("first RCPT: ", &key, TLSGATE_AWAIT_REPLY, c1, s1);
	w = r;
	w.seq = s1;
	expect_switch("its reply: ", &c, w, ok, &key, false);
	expect_await("its reply: ", &key, TLSGATE_AWAIT_DATA, c1, s2);
	k = c;
	k.seq = c1;
	expect_command_counted("second RCPT: ", k, r2, true,
			       TLSGATE_CNT_RCPT_COPIED);
	expect_moved_flag("second RCPT: ", true);
	expect_await("second RCPT: ", &key, TLSGATE_AWAIT_REPLY, c2, s2);
	w.seq = s2;
	expect_switch("its reply: ", &c, w, "550 5.1.1 no such user\r\n", &key, false);
	s3 = s2 + (uint32_t)strlen("550 5.1.1 no such user\r\n");
	expect_await("its reply: ", &key, TLSGATE_AWAIT_DATA, c2, s3);
	k.seq = c2;
	expect_command("DATA: ", k, "DATA\r\n", true);
	expect_moved_flag("DATA: ", true);
	expect_await("DATA: ", &key, TLSGATE_AWAIT_354, c2 + 6, s3);
	w.seq = s3;
	w.ack = c2 + 6;
	k.seq = c2 + 6;
	expect_switch("354: ", &k, w, "354 go ahead\r\n", &key, true);

	/* a RCPT TO the policy may refuse: marked, the entry stays */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	expect_command("refusable RCPT: ", c, "RCPT TO:<b@secure.example.org>\r\n", false);
	expect_await("refusable RCPT: ", &key, TLSGATE_AWAIT_DATA, c.seq, s1);
	/* copied while still awaiting the reply (pipelined): the entry stays */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_command_counted("before the reply: ", c, r1, true,
			       TLSGATE_CNT_RCPT_COPIED);
	expect_moved_flag("before the reply: ", false);
	expect_await("before the reply: ", &key, TLSGATE_AWAIT_REPLY, c.seq, r.seq);
	/* the server said more after its reply */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	struct tlsgate_flow_value v = get_flow(&key);
	v.server_state = TLSGATE_SERVER_STATE(s1 + 5);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	expect_command_counted("server moved: ", c, r1, true,
			       TLSGATE_CNT_RCPT_COPIED);
	expect_moved_flag("server moved: ", false);
	expect_await("server moved: ", &key, TLSGATE_AWAIT_DATA, c.seq, s1);
	/* elsewhere than awaited */
	put_awaiting_stage(&c, both, TLSGATE_AWAIT_REPLY, &key);
	expect_switch("reply: ", &c, r, ok, &key, false);
	k = c;
	k.seq += 10;
	set_client_state(&key, k.seq, true);
	expect_command_counted("elsewhere: ", k, r1, true,
			       TLSGATE_CNT_RCPT_COPIED);
	expect_await("elsewhere: ", &key, TLSGATE_AWAIT_DATA, c.seq, s1);
	set_rcpt_domains(NULL, 0, false);
}

static void test_await_rcpt_v4(void **state)
{
	check_await_rcpt(spec_v4());
}

static void test_await_rcpt_v6(void **state)
{
	check_await_rcpt(spec_v6());
}

static void test_await_reply_v4(void **state)
{
	check_await_reply(spec_v4());
}

static void test_await_reply_v6(void **state)
{
	check_await_reply(spec_v6());
}

/* AWAIT_354 after pipelined commands (MAIL, RCPT, DATA in one write): the
 * one-line replies before DATA's are counted down, in one segment or
 * several; the 354 must be the reply after them, and the last line. */
static void check_await_pipelined(struct pkt_spec c)
{
	const uint8_t both = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	static const struct {
		uint8_t skip;
		const char *reply;
	} gone[] = {
		{ 1, "250 a\r\n354-x\r\n354 go\r\n" }, /* a reply of two lines */
		{ 0, "250 a\r\n354 go\r\n" },             /* one reply too many */
		{ 2, "250 a\r\n250 b\r\n250 c\r\n" },    /* DATA's is no 354 */
		{ 2, "250 a\r\n250 b\r\n354 go" },         /* not a whole line */
		{ 1, "250 a\r\nxyz\r\n" },
	};
	struct pkt_spec r = pkt_reverse(&c), w;
	struct tlsgate_flow_key key;
	struct tlsgate_await a;
	char what[64];
	size_t i;

	require_loaded();
	ring_drain();
	put_awaiting_skip(&c, both, TLSGATE_AWAIT_354, 2, &key);
	expect_switch("in one segment: ", &c, r, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", &key,
		      true);
	put_awaiting_skip(&c, both, TLSGATE_AWAIT_354, 2, &key);
	w = r;
	expect_switch("first: ", &c, w, "250 a\r\n", &key, false);
	expect_moved_flag("first: ", true);
	w.seq += 7;
	expect_switch("second: ", &c, w, "250 b\r\n", &key, false);
	expect_moved_flag("second: ", true);
	w.seq += 7;
	assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.awaits), &key, &a), 0);
	assert_true(a.state == TLSGATE_AWAIT_STATE(TLSGATE_AWAIT_354, 0, w.seq));
	expect_switch("then the 354: ", &c, w, "354 go\r\n", &key, true);
	/* a 354 in MAIL's place is MAIL's reply to the client too */
	put_awaiting_skip(&c, both, TLSGATE_AWAIT_354, 1, &key);
	expect_switch("354 first: ", &c, r, "354 go\r\n", &key, false);
	w = r;
	w.seq += 8;
	expect_switch("then DATA's: ", &c, w, "354 go\r\n", &key, true);
	for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		snprintf(what, sizeof(what), "case %zu: ", i);
		put_awaiting_skip(&c, both, TLSGATE_AWAIT_354, gone[i].skip, &key);
		expect_switch(what, &c, r, gone[i].reply, &key, false);
		expect_moved_flag(what, false);
		if (awaiting(&key))
			fail_msg("%sthe awaits entry stays", what);
	}
}

static void test_await_pipelined_v4(void **state)
{
	check_await_pipelined(spec_v4());
}

static void test_await_pipelined_v6(void **state)
{
	check_await_pipelined(spec_v6());
}

/* A copied client segment that ends with a line "DATA" is copied as any
 * other (its wake-up is not visible here); a server segment with data
 * moves server_state on whatever it holds. */
static void test_server_state_moves(void **state)
{
	struct pkt_spec c = spec_v4(), r = pkt_reverse(&c);
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];

	require_loaded();
	ring_drain();
	put_copying(&c, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
	assert_true(get_flow(&key).server_state == 0);
	r.payload = "220 mx ESMTP\r\n";
	expect(frame, build(&r, frame, NULL, NULL), TC_ACT_OK, false, TLSGATE_CNT_REPLY_COPIED);
	assert_true(get_flow(&key).server_state == TLSGATE_SERVER_STATE(r.seq + 14));
	ring_drain();
	r.payload = ""; /* a pure ACK leaves it */
	r.seq += 14;
	expect(frame, build(&r, frame, NULL, NULL), TC_ACT_OK, false, TLSGATE_CNT_ACK_SKIPPED);
	assert_true(get_flow(&key).server_state == TLSGATE_SERVER_STATE(r.seq));
	set_client_state(&key, c.seq, true);
	expect_command("DATA: ", c, "DATA\r\n", true);
	ring_drain();
}

static void test_content_ended_then_v4(void **state)
{
	check_content_ended_then(spec_v4());
}

static void test_content_ended_then_v6(void **state)
{
	check_content_ended_then(spec_v6());
}

static void test_quit_kept_v4(void **state)
{
	check_quit_kept(spec_v4());
}

static void test_quit_kept_v6(void **state)
{
	check_quit_kept(spec_v6());
}

/* ---- retransmissions of bytes passed unseen (issue 17, finding 13) ------ */

/* Runs s (a client segment) at seq with payload p and expects it dropped
 * as a stale copy the server could read otherwise. */
static void expect_stale_dropped(const char *what, struct pkt_spec s, uint32_t seq, const char *p)
{
	uint8_t frame[PKT_MAX];

	s.seq = seq;
	s.payload = p;
	expect_moved(what, frame, build(&s, frame, NULL, NULL), TC_ACT_SHOT, false,
		     TLSGATE_CNT_STALE_DROPPED, NO_COUNTER);
}

/* In CONTENT, after the program passed bytes (UNSEEN): a duplicate or a
 * retransmission that is safe whichever copy the server reads passes and
 * changes nothing; one with a '.' between line ends, or another line state
 * before content_seq, is dropped (the old program returned it, and the
 * daemon, which never saw those bytes, took it as a retransmission); one
 * that reaches past content_seq returns if its old part is safe; one after
 * a hole returns. */
static void check_content_stale(struct pkt_spec s)
{
	static const struct {
		const char *first;  /* passed at c0 */
		int64_t at;	    /* the retransmission's start, from c0 */
		const char *again;  /* its payload */
		int want;	    /* 1 passes, 0 returns, 2 dropped */
	} cases[] = {
		{ "first\r\n", 0, "first\r\n", 1 },	   /* a duplicate */
		{ "first\r\n", 2, "rst\r\n", 1 },	   /* a part of it */
		{ "first\r\n", 0, "other\r\n", 1 },	   /* other bytes, as safe */
		{ "first\r\n", 0, "firs", 1 },	   /* ends before c - 2 */
		{ "first\r\n", 0, "first\r", 1 },	   /* ends at c - 1, with the CR */
		{ "first\r\n", 0, "x\r\n.\r\n", 2 },  /* an end of data */
		{ "first\r\n", 0, "\n.\r\n\r\n", 2 },
		{ "first\r\n", 1, ".\r\n\r\n", 2 },	   /* its start counts as a line end */
		{ "first\r\n", 0, "first.", 2 },	   /* its end too */
		{ "first\r\n", 0, "firstx\n", 2 },	   /* a bare LF before c */
		{ "first\r\n", 0, "firstxx", 2 },	   /* no line end before c */
		{ "first\r\n", 0, "firstx", 2 },	   /* no CR at c - 2 */
		{ "first\r\n", 6, "\n", 2 },		   /* the CR unknown */
		{ "first\r\n", 6, "\nmore", 2 },	   /* reaches past, the CR unknown */
		{ "first\r\n", 5, "\r\nmore", 0 },	   /* reaches past: returns */
		{ "first\r\n", 0, "first\r\n.\r\n", 0 }, /* old part safe, new judged */
		{ "first\r\n", 0, "x\r\n.\r\n\r\nmore", 2 },
		{ "first\r\n", 9, "gap\r\n", 0 },	   /* after a hole */
		{ "abcdef", 0, "abcdef", 1 },
		{ "abcdef", 0, "abcde\n", 2 },	   /* a line end before c */
		{ "abcdef", 0, "abcde\r", 2 },
		{ "abcdef", 3, "d\r\n", 2 },
		{ "abcdef", 0, "ab\r\n", 1 },	   /* ends before c - 1 */
		{ "abcdef", -3, "xyzabcdef", 1 },	   /* reaches back before the
							      handover: as safe */
		{ "abcdef", -3, "xy\n.\r\nf", 2 },
	};
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	uint32_t c0 = s.seq, c1;
	char what[96];
	size_t i, n;

	require_loaded();
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		snprintf(what, sizeof(what), "case %zu \"%s\" at %+lld: ", i, cases[i].again,
			 (long long)cases[i].at);
		put_content(&s, c0, 1, &key);
		s.seq = c0;
		s.payload = cases[i].first;
		clear_content_scratch();
		expect_content_passed(what, frame, build(&s, frame, NULL, NULL));
		c1 = c0 + (uint32_t)strlen(cases[i].first);
		s.seq = c0 + (uint32_t)cases[i].at;
		s.payload = cases[i].again;
		n = build(&s, frame, NULL, NULL);
		if (cases[i].want == 1) {
			expect_content_passed(what, frame, n);
			v = expect_entry(what, &key, TLSGATE_CONTENT, c1, -1);
		} else if (cases[i].want == 2) {
			expect_stale_dropped(what, s, s.seq, s.payload);
			v = expect_entry(what, &key, TLSGATE_CONTENT, c1, -1);
		} else {
			expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
			v = expect_entry(what, &key, TLSGATE_INSPECT, c1, -1);
		}
		assert_true(v.content_lf & TLSGATE_CONTENT_UNSEEN);
	}
	s.seq = c0;
}

/* The old program passed a stale segment that starts before content_seq
 * nowhere, but returned it: the daemon then read only what lies after
 * content_seq. After the return (INSPECT, UNSEEN kept), and after an end
 * of data passed here (ENDED), the same rule holds in the INSPECT path: a
 * copy of the passed bytes that the server could read otherwise is
 * dropped; a safe one (the end of data sent again as it was) goes on as
 * usual (marked: it does not start where the last one ended). */
static void check_inspect_stale(struct pkt_spec c)
{
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	uint32_t end, c0 = c.seq;
	size_t n;

	require_loaded();
	/* returned after a pass */
	put_content_copying(&c, c0, COPY_ALL, &key);
	c.payload = "line one\r\n";
	expect_content_passed("first: ", frame, build(&c, frame, NULL, NULL));
	c.seq = c0 + 10;
	c.payload = "\r\n.\r\nMAIL FROM:<a@secure.example.org>\r\n";
	expect_content_returned("the end: ", frame, build(&c, frame, NULL, NULL),
				TLSGATE_DIR_TO_SERVER);
	expect_entry("returned: ", &key, TLSGATE_INSPECT, c0 + 10, -1);
	/* the server dropped "line one": its place taken by an end of data
	 * and a MAIL FROM the daemon would never read */
	expect_stale_dropped("smuggled over passed bytes: ", c, c0, "x\r\n.\r\nMAIL\r\n");
	c.seq = c0;
	c.payload = "line one\r\n";
	n = build(&c, frame, NULL, NULL);
	expect_moved("the same again: ", frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER,
		     NO_COUNTER);
	ring_drain();

	/* after the end of data passed here */
	c.seq = c0;
	end = content_to_end(c, &key);
	c.seq = c0;
	c.payload = "Subject: x\r\nMessage-Id: <1@x>\r\n\r\n..dot\r\nbody\r\n.\r\n";
	n = build(&c, frame, NULL, NULL);
	expect_moved("the end again: ", frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER,
		     NO_COUNTER);
	expect_stale_dropped("an earlier end: ", c, c0, "Subject: x\r\n.\r\nMAIL FROM:<a@b>\r\n");
	expect_stale_dropped("the end a byte on: ", c, end - 4, "\n.\r\n");
	expect_stale_dropped("a bare LF before it: ", c, end - 5, "x\n.\r\n");
	/* the QUIT after it (marked: the "body" line sent again stopped
	 * command copies), then a MAIL FROM over the end of data */
	c.seq = end;
	c.payload = "QUIT\r\n";
	expect_moved("QUIT: ", frame, build(&c, frame, NULL, NULL), TC_ACT_OK, true,
		     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
	expect_stale_dropped("MAIL over the end: ", c, end - 5,
			     "MAIL FROM:<a@secure.example.org>\r\n");
	assert_int_equal(get_flow(&key).verdict, TLSGATE_INSPECT);
	ring_drain();
	c.seq = c0;
}

/* The end of data split across segments: passes as ended only as CRLF
 * "." CRLF, with the previous segment's CR LF. */
static void check_end_split(struct pkt_spec c)
{
	static const struct {
		const char *a, *b;
		bool a_passes, ended;
	} cases[] = {
		{ "X\r\n", ".\r\n", true, true },
		{ "X", "\r\n.\r\n", true, true },
		{ "X\n", ".\r\n", false, false },	/* a bare LF: a returns */
		{ "X\r", ".\r\n", false, false },	/* a CR: a returns */
		{ "X\r", "\n.\r\n", false, false },
		{ "X", "\n.\r\n", true, false },
		{ "X\r\n", ".\n", true, false },
		{ "X\r\n", ".\r", true, false },
		{ "X\r\n.", "\r\n", false, false },
		{ "X\r\n.\r", "\n", false, false },
	};
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	uint32_t c0 = c.seq, mid;
	char what[64];
	size_t n;

	require_loaded();
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		snprintf(what, sizeof(what), "split %zu: ", i);
		put_content_copying(&c, c0, COPY_ALL, &key);
		c.seq = c0;
		c.payload = cases[i].a;
		n = build(&c, frame, NULL, NULL);
		if (!cases[i].a_passes) {
			expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
			ring_drain();
			continue;
		}
		expect_content_passed(what, frame, n);
		mid = c0 + (uint32_t)strlen(cases[i].a);
		c.seq = mid;
		c.payload = cases[i].b;
		n = build(&c, frame, NULL, NULL);
		if (cases[i].ended) {
			expect_moved(what, frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_PASSED,
				     TLSGATE_CNT_CONTENT_ENDED);
		} else {
			expect_content_returned(what, frame, n, TLSGATE_DIR_TO_SERVER);
			v = expect_entry(what, &key, TLSGATE_INSPECT, mid, -1);
			assert_int_equal(v.content_lf & TLSGATE_CONTENT_ENDED, 0);
		}
		ring_drain();
	}
	c.seq = c0;
}

/* URG: an urgent pointer may take a byte out of the server's stream
 * (Linux without SO_OOBINLINE), so the session must see it: content, a
 * copied command, a pure ACK with URG are all marked. */
static void check_urgent(struct pkt_spec c)
{
	struct pkt_spec u;
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];

	require_loaded();
	/* content: ".X" after a line end, X urgent, reads "." CRLF */
	put_content_copying(&c, c.seq, COPY_ALL, &key);
	u = c;
	u.flags |= 0x20;
	u.payload = "a\r\n.X\r\n";
	expect_content_returned("urgent content: ", frame, build(&u, frame, NULL, NULL),
				TLSGATE_DIR_TO_SERVER);
	/* a pure ACK with URG into the content to come */
	put_content_copying(&c, c.seq, COPY_ALL, &key);
	u.payload = "";
	expect_content_returned("urgent ACK in content: ", frame, build(&u, frame, NULL, NULL),
				TLSGATE_DIR_TO_SERVER);
	/* INSPECT, copying: a command line is marked, an ACK is not skipped */
	put_copying(&c, TLSGATE_INSPECT, COPY_ALL, &key);
	set_client_state(&key, c.seq, true);
	u.payload = "XMAIL FROM:<a@secure.example.org>\r\n";
	expect_moved("urgent command: ", frame, build(&u, frame, NULL, NULL), TC_ACT_OK, true,
		     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
	u.payload = "";
	expect_moved("urgent ACK: ", frame, build(&u, frame, NULL, NULL), TC_ACT_OK, true,
		     TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
	assert_int_equal(ring_drain()->n, 0);
}

static void test_content_stale_v4(void **state)
{
	check_content_stale(spec_v4());
}

static void test_content_stale_v6(void **state)
{
	check_content_stale(spec_v6());
}

static void test_inspect_stale_v4(void **state)
{
	check_inspect_stale(spec_v4());
}

static void test_inspect_stale_v6(void **state)
{
	check_inspect_stale(spec_v6());
}

static void test_end_split_v4(void **state)
{
	check_end_split(spec_v4());
}

static void test_end_split_v6(void **state)
{
	check_end_split(spec_v6());
}

static void test_urgent_v4(void **state)
{
	check_urgent(spec_v4());
}

static void test_urgent_v6(void **state)
{
	check_urgent(spec_v6());
}

static void test_command_copy_content_end(void **state)
{
	struct pkt_spec s = spec_v4();
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	uint8_t frame[PKT_MAX];
	size_t n;

	require_loaded();
	ring_drain();
	put_content(&s, s.seq, 1, &key);
	v = get_flow(&key);
	v.copy = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	v.client_state = TLSGATE_CLIENT_STATE(s.seq, 1);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	s.payload = "last line\r\n.\r\nQUIT\r\n";
	n = build(&s, frame, NULL, NULL);
	expect_moved("", frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_RETURNED,
		     TLSGATE_CNT_COMMAND_COPIED);
	expect_entry("", &key, TLSGATE_INSPECT, s.seq, 1);
	assert_int_equal(ring_drain()->n, 1);
	/* with a MAIL FROM pipelined behind it: marked */
	put_content(&s, s.seq, 1, &key);
	v = get_flow(&key);
	v.copy = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	v.client_state = TLSGATE_CLIENT_STATE(s.seq, 1);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	s.payload = "last line\r\n.\r\nMAIL FROM:<a@secure.example.org>\r\n";
	n = build(&s, frame, NULL, NULL);
	expect_content_returned("", frame, n, TLSGATE_DIR_TO_SERVER);
	assert_int_equal(ring_drain()->n, 0);
	/* the client state as the content left it (not where the kernel's
	 * content passing got to): marked */
	put_content(&s, s.seq, 1, &key);
	v = get_flow(&key);
	v.copy = TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS;
	v.client_state = TLSGATE_CLIENT_STATE(s.seq - 1000, 1);
	assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &key, &v, BPF_EXIST), 0);
	s.payload = "last line\r\n.\r\nQUIT\r\n";
	n = build(&s, frame, NULL, NULL);
	expect_content_returned("", frame, n, TLSGATE_DIR_TO_SERVER);
	assert_int_equal(ring_drain()->n, 0);
}

/* ---- fail-closed before any pass --------------------------------------- */

/* Runs frame with the daemon gone (stale: dropped, FAILCLOSED alone) or
 * alive (live_counter moves; marked when live_mark). */
static void expect_fc(const char *what, bool stale, const uint8_t *frame, size_t n,
		      bool live_mark, int live_counter)
{
	if (stale)
		expect_moved(what, frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED, NO_COUNTER);
	else
		expect_moved(what, frame, n, TC_ACT_OK, live_mark, live_counter, NO_COUNTER);
}

/* A secure-mode client while the daemon misses its heartbeat: every kind
 * of segment that passes in the kernel with the daemon alive - a pure ACK
 * of a flow with no entry, INSPECT or an unknown verdict (either way), a
 * copied server reply, SYN-ACK, client close or command, a CONTENT
 * segment and its ACK - is dropped, unless the entry is PASS; a client's
 * SYN on a PASS entry too. Each case is run alive first, to show that it
 * would pass. */
static void check_fail_closed_all(struct pkt_spec s, const char *secure_client, uint8_t plen)
{
	static const uint8_t acked[] = { 0xff, TLSGATE_INSPECT, 7 };
	struct pkt_spec r = pkt_reverse(&s), c;
	struct tlsgate_lpm_key lk = { .prefixlen = plen };
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX], one = 1;
	char what[64];
	size_t n, l3;
	int fd = bpf_map__fd(skel->maps.secure_sources);

	require_loaded();
	if (s.family == 4) {
		lk.addr[10] = lk.addr[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, secure_client, lk.addr + 12), 1);
	} else {
		assert_int_equal(inet_pton(AF_INET6, secure_client, lk.addr), 1);
	}
	assert_int_equal(bpf_map_update_elem(fd, &lk, &one, BPF_ANY), 0);
	ring_drain();
	for (int stale = 0; stale < 2; stale++) {
		set_daemon_state(stale ? mono_ns() - 10ull * 1000000000ull : mono_ns(), 3000);

		/* pure ACKs, both ways */
		for (size_t i = 0; i < sizeof(acked); i++) {
			assert_int_equal(reset_flows(NULL), 0);
			c = s;
			c.flags = 0x10;
			c.payload = "";
			n = build(&c, frame, &l3, NULL);
			if (acked[i] != 0xff)
				put_flow(frame, n, l3, acked[i], &key);
			snprintf(what, sizeof(what), "client ACK, entry %u: ", acked[i]);
			expect_fc(what, stale, frame, n, false, TLSGATE_CNT_ACK_SKIPPED);
			c = r;
			c.flags = 0x10;
			c.payload = "";
			n = build(&c, frame, NULL, NULL);
			snprintf(what, sizeof(what), "server ACK, entry %u: ", acked[i]);
			expect_fc(what, stale, frame, n, false, TLSGATE_CNT_ACK_SKIPPED);
		}

		/* copies of the plaintext dialog */
		put_copying(&s, TLSGATE_INSPECT, TLSGATE_COPY_REPLIES | TLSGATE_COPY_COMMANDS, &key);
		c = r;
		c.payload = "250 ok\r\n";
		n = build(&c, frame, NULL, NULL);
		expect_fc("server reply: ", stale, frame, n, false, TLSGATE_CNT_REPLY_COPIED);
		c.flags = 0x12;
		c.payload = "";
		n = build(&c, frame, NULL, NULL);
		expect_fc("SYN-ACK: ", stale, frame, n, false, TLSGATE_CNT_REPLY_COPIED);
		c = s;
		c.flags = 0x11;
		c.payload = "";
		n = build(&c, frame, NULL, NULL);
		expect_fc("client FIN: ", stale, frame, n, false, TLSGATE_CNT_COMMAND_COPIED);
		set_client_state(&key, s.seq, true);
		c = s;
		c.payload = "EHLO client.example.org\r\n";
		n = build(&c, frame, NULL, NULL);
		expect_fc("client command: ", stale, frame, n, false, TLSGATE_CNT_COMMAND_COPIED);
		assert_int_equal(ring_drain()->n, stale ? 0 : 4);
		/* data without a copy: marked alive */
		c = s;
		n = build(&c, frame, NULL, NULL);
		expect_fc("client data: ", stale, frame, n, true, TLSGATE_CNT_INSPECT_TO_SERVER);

		/* message content */
		put_content(&s, s.seq, 1, &key);
		clear_content_scratch();
		c = s;
		c.payload = "Subject: hi\r\n\r\nhello\r\n";
		n = build(&c, frame, NULL, NULL);
		expect_fc("content: ", stale, frame, n, false, TLSGATE_CNT_CONTENT_PASSED);
		put_content(&s, s.seq, 1, &key);
		c = r;
		c.flags = 0x10;
		c.payload = "";
		n = build(&c, frame, NULL, NULL);
		expect_fc("content ACK: ", stale, frame, n, false, TLSGATE_CNT_CONTENT_PASSED);

		/* PASS: offloaded, passes either way; a client's SYN on it is a
		 * new connection */
		n = build(&s, frame, &l3, NULL);
		put_flow(frame, n, l3, TLSGATE_PASS, &key);
		expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
		c = r;
		c.flags = 0x10;
		c.payload = "";
		n = build(&c, frame, NULL, NULL);
		expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_CLIENT);
		c = s;
		c.flags = 0x02;
		c.payload = "";
		n = build(&c, frame, NULL, NULL);
		expect_fc("SYN on PASS: ", stale, frame, n, true, TLSGATE_CNT_INSPECT_TO_SERVER);
		/* BLOCK stays dropped as blocked */
		n = build(&s, frame, &l3, NULL);
		put_flow(frame, n, l3, TLSGATE_BLOCK, &key);
		expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_BLOCK_TO_SERVER);
	}
	assert_int_equal(bpf_map_delete_elem(fd, &lk), 0);
	set_daemon_state(0, 0);
}

static void test_fail_closed_all_v4(void **state)
{
	check_fail_closed_all(spec_v4(), "192.0.2.0", 96 + 24);
}

static void test_fail_closed_all_v6(void **state)
{
	check_fail_closed_all(spec_v6(), "2001:db8:1::10", 128);
}


/* ---- secure domains while the daemon is gone (secure_domains) --------- */

struct sd_rule {
	const char *domain;
	uint32_t flags; /* TLSGATE_SD_* */
};

/* secure_domains as the daemon writes it (flowkey_domain_hash() of each
 * domain), READY with ready flags and a 3 s timeout (0: no READY). */
static void set_secure_domains(const struct sd_rule *rules, size_t n, uint32_t ready)
{
	int fd = bpf_map__fd(skel->maps.secure_domains);
	struct tlsgate_sd_ready v = { 0 };
	uint64_t h = TLSGATE_SD_READY;

	bpf_map_delete_elem(fd, &h);
	for (size_t i = 0; i < n; i++) {
		h = flowkey_domain_hash(rules[i].domain);
		v.flags = rules[i].flags;
		assert_int_equal(bpf_map_update_elem(fd, &h, &v, BPF_ANY), 0);
	}
	if (ready) {
		h = TLSGATE_SD_READY;
		v.flags = ready;
		v.failclosed_ms = 3000;
		assert_int_equal(bpf_map_update_elem(fd, &h, &v, BPF_ANY), 0);
	}
}

static const struct sd_rule sd_rules[] = {
	{ "secure.world.test", TLSGATE_SD_SENDER },
	{ "corp.test", TLSGATE_SD_SENDER | TLSGATE_SD_SENDER_SUB },
	{ "vault.world.test", TLSGATE_SD_RECIPIENT },
	{ "safe.test", TLSGATE_SD_RECIPIENT | TLSGATE_SD_RECIPIENT_SUB },
	{ "both.test", TLSGATE_SD_SENDER | TLSGATE_SD_RECIPIENT },
};

#define DAEMON_ALIVE() set_daemon_state(mono_ns(), 0)
#define DAEMON_GONE() set_daemon_state(mono_ns() - 10ull * 1000000000ull, 0)

/* A client segment (s with payload p) of a flow without an entry: dropped
 * and its flow turned BLOCK (so the flow's next segment, any, and the
 * server's are dropped as BLOCK), or marked as before and no entry made. */
static void expect_sd(const char *what, struct pkt_spec s, const char *p, bool dropped)
{
	struct tlsgate_flow_key key;
	struct tlsgate_flow_value v;
	struct flowkey_packet fp;
	struct pkt_spec r;
	uint8_t frame[PKT_MAX];
	size_t n, l3;
	char w[160];

	s.payload = p;
	n = build(&s, frame, &l3, NULL);
	assert_int_equal(flowkey_from_ip(frame + l3, n - l3, &smtp, &fp), 0);
	key = fp.key;
	bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &key);
	snprintf(w, sizeof(w), "%s: ", what);
	if (!dropped) {
		expect_moved(w, frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER, NO_COUNTER);
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.flows), &key, &v) == 0)
			fail_msg("%san entry was made", w);
		return;
	}
	expect_moved(w, frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED, NO_COUNTER);
	if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.flows), &key, &v) != 0 ||
	    v.verdict != TLSGATE_BLOCK)
		fail_msg("%sthe flow was not turned BLOCK", w);
	s.payload = "RCPT TO:<bob@example.org>\r\n";
	s.seq += 100;
	n = build(&s, frame, NULL, NULL);
	expect_moved(w, frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_BLOCK_TO_SERVER, NO_COUNTER);
	r = pkt_reverse(&s);
	r.payload = "250 2.1.0 Ok\r\n";
	n = build(&r, frame, NULL, NULL);
	expect_moved(w, frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_BLOCK_TO_CLIENT, NO_COUNTER);
	assert_int_equal(bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &key), 0);
}

/* While the daemon misses its heartbeat, a client segment that may carry
 * a secure sender domain's MAIL FROM or a secure recipient domain's RCPT
 * TO is dropped and its flow blocked; ordinary mail is marked as before
 * (the queue's bypass lets it pass); with the daemon alive, everything is
 * marked as before. */
static void check_secure_domains(struct pkt_spec s)
{
	static const struct {
		const char *p;
		bool dropped;
	} cases[] = {
		/* the secure sender's MAIL FROM in every spelling smtpd takes */
		{ "MAIL FROM:<alice@secure.world.test>\r\n", true },
		{ "mail from:<ALICE@Secure.World.TEST>\r\n", true },
		{ "MAIL FROM:<alice@secure.world.test.>\r\n", true },
		{ "MAIL FROM:<alice@secure.world.test..>\r\n", true },
		{ " MAIL FROM: <alice@secure.world.test> SIZE=100 BODY=8BITMIME\r\n", true },
		{ "\tMAIL\v FROM\t :\t<alice@secure.world.test>\r\n", true },
		{ "MAIL FROM:alice@secure.world.test\r\n", true },
		{ "MAIL FROM:<alice@secure.world.test>\n", true }, /* bare LF */
		{ "MAIL FROM:<alice@secure.world.test>\r", true }, /* bare CR */
		{ "MAIL FROM:<alice@secure.world.test> \r\n", true },
		{ "MAIL FROM:<\"a@b c\"@secure.world.test>\r\n", true },	/* quoted */
		{ "MAIL FROM:<\"a\\\"@x\"@secure.world.test>\r\n", true },
		{ "MAIL FROM:<@relay.example,@other.example:alice@secure.world.test>\r\n", true },
		{ "MAIL FROM:<@secure.world.test:alice@example.org>\r\n", true }, /* route */
		{ "MAIL FROM:<alice@secure.world.test(comment)>\r\n", true },
		{ "MAIL FROM:<alice@secure.world.test >\r\n", true },
		/* not the first line: pipelined, after LF, bare LF, bare CR */
		{ "RSET\r\nMAIL FROM:<alice@secure.world.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n", true },
		{ "NOOP\nMAIL FROM:<alice@secure.world.test>\n", true },
		{ "NOOP\rMAIL FROM:<alice@secure.world.test>\r\n", true },
		{ "EHLO x\r\n  mail  from  :  <a@secure.world.test>\r\n", true },
		/* subdomains as the policy says */
		{ "MAIL FROM:<a@corp.test>\r\n", true },
		{ "MAIL FROM:<a@mail.eu.CORP.test>\r\n", true },
		{ "MAIL FROM:<a@mail.eu.corp.test.>\r\n", true },
		{ "MAIL FROM:<a@sub.secure.world.test>\r\n", false }, /* subdomains: false */
		{ "MAIL FROM:<a@notsecure.world.test>\r\n", false },
		{ "MAIL FROM:<a@xcorp.test>\r\n", false },
		{ "MAIL FROM:<a@secure.world.test.example.org>\r\n", false },
		{ "MAIL FROM:<a@secure-world.test>\r\n", false },
		/* RCPT TO names a secure recipient domain (inbound or outbound:
		 * the program does not care) */
		{ "RCPT TO:<bob@vault.world.test>\r\n", true },
		{ "rcpt   to:<BOB@VAULT.world.test> NOTIFY=NEVER\r\n", true },
		{ "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<bob@vault.world.test>\r\n", true },
		{ "RCPT TO:<bob@safe.test>\r\n", true },
		{ "RCPT TO:<bob@a.b.safe.test>\r\n", true },
		{ "RCPT TO:<bob@x.vault.world.test>\r\n", false }, /* subdomains: false */
		{ "MAIL FROM:<a@both.test>\r\n", true },
		{ "RCPT TO:<a@both.test>\r\n", true },
		/* the kinds do not mix: a sender domain as recipient (mail to
		 * the secure organisation) and a recipient domain as sender */
		{ "RCPT TO:<alice@secure.world.test>\r\n", false },
		{ "MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@secure.world.test>\r\n", false },
		{ "MAIL FROM:<bob@vault.world.test>\r\n", false },
		/* a command line the segment does not end: not judged, dropped
		 * (the rest could name a secure domain) */
		{ "MAIL FROM:<alice@secure.wor", true },
		{ "MAIL FROM:<alice@secure.world.test>", true },
		{ "MAIL FROM:<a@example.org", true },
		{ "MAIL FROM:", true },
		{ "NOOP\r\nRCPT TO:<bob@", true },
		/* the first line may end a command begun in an earlier segment
		 * (split "MAIL FR" + "OM:<...>"): both kinds judged */
		{ "OM:<alice@secure.world.test>\r\n", true },
		{ "L FROM:<alice@secure.world.test>\r\n", true },
		{ "FROM:<alice@secure.world.test>\r\n", true },
		{ ":<alice@secure.world.test>\r\n", true },
		{ " :<alice@secure.world.test>\r\n", true },
		{ "o:<bob@vault.world.test>\r\n", true },
		{ "OM:<alice@example.org>\r\n", false },
		{ "OM:<alice@secure.wo", true },
		/* ordinary mail: the same commands with other domains, other
		 * commands, a secure domain where it is not a command's */
		{ "MAIL FROM:<alice@example.org>\r\n", false },
		{ "MAIL FROM:<>\r\n", false },
		{ "RCPT TO:<bob@example.org>\r\n", false },
		{ "EHLO secure.world.test\r\n", false },
		{ "DATA\r\n", false },
		{ "Hello alice@secure.world.test, see you.\r\n", false },
		{ "Reply-To: alice@secure.world.test\r\n", false },
		{ "MAILX FROM:<alice@secure.world.test>\r\n", false },
		{ "MAIL FROMX:<alice@secure.world.test>\r\n", false },
		{ "NOOP\r\nMAILFROM:<alice@secure.world.test>\r\n", false },
		/* on the first line, no better than a suffix of the command */
		{ "MAILFROM:<alice@secure.world.test>\r\n", true },
		{ "SEND FROM:<alice@secure.world.test>\r\n", false },
		{ "xMAIL FROM:<a@example.org>\r\n", false },
		{ "Subject: an incomplete line of cont", false },
		{ "mail from the secure organisation: no\r\n", false },
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", false }, /* a ClientHello */
	};
	uint8_t frame[PKT_MAX];
	struct tlsgate_flow_key key;
	char what[200];
	size_t i, n, l3;

	require_loaded();
	set_secure_domains(sd_rules, sizeof(sd_rules) / sizeof(sd_rules[0]), TLSGATE_SD_DOMAINS);

	/* Daemon alive: all marked, nothing judged here. */
	DAEMON_ALIVE();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(what, sizeof(what), "alive, case %zu", i);
		expect_sd(what, s, cases[i].p, false);
	}
	/* Daemon gone. */
	DAEMON_GONE();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(what, sizeof(what), "gone, case %zu (%.60s)", i, cases[i].p);
		expect_sd(what, s, cases[i].p, cases[i].dropped);
	}

	/* A domain past the first scratch chunk (512 bytes), and a line
	 * across the chunk boundary. */
	{
		static char big[1400];
		size_t k;

		memset(big, 0, sizeof(big));
		for (k = 0; k < 20; k++)
			strcat(big, "RCPT TO:<someone@example.org>\r\n"); /* 31 bytes each */
		strcat(big, "MAIL FROM:<alice@secure.world.test>\r\n");
		expect_sd("gone, MAIL FROM at byte 620", s, big, true);
		big[0] = '\0';
		for (k = 0; k < 16; k++)
			strcat(big, "RCPT TO:<someone@example.org>\r\n");
		strcat(big, "RCPT TO:<bob@vault.world.test>\r\n"); /* 496..528 */
		expect_sd("gone, RCPT TO across the chunk boundary", s, big, true);
		big[0] = '\0';
		for (k = 0; k < 40; k++)
			strcat(big, "RCPT TO:<someone@example.org>\r\n");
		expect_sd("gone, 40 ordinary RCPT TO", s, big, false);
	}
	/* More domains than the program checks: not judged, dropped. */
	{
		static char many[3200];
		size_t k;

		many[0] = '\0';
		for (k = 0; k < 130; k++)
			strcat(many, "RCPT TO:<a@b.org>\r\n");
		expect_sd("gone, 130 RCPT TO", s, many, true);
	}

	/* No READY (no policy) or READY without domains: marked. */
	set_secure_domains(sd_rules, sizeof(sd_rules) / sizeof(sd_rules[0]), 0);
	expect_sd("no READY", s, "MAIL FROM:<alice@secure.world.test>\r\n", false);
	set_secure_domains(NULL, 0, 0);
	expect_sd("empty", s, "MAIL FROM:<alice@secure.world.test>\r\n", false);
	set_secure_domains(sd_rules, sizeof(sd_rules) / sizeof(sd_rules[0]), TLSGATE_SD_DOMAINS);

	/* An INSPECT entry (the daemon judged the flow's start, then died):
	 * dropped and the entry turned BLOCK. */
	s.payload = "MAIL FROM:<alice@secure.world.test>\r\n";
	n = build(&s, frame, &l3, NULL);
	put_flow(frame, n, l3, TLSGATE_INSPECT, &key);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	assert_int_equal(get_flow(&key).verdict, TLSGATE_BLOCK);
	/* A PASS entry is not read (offloaded: a TLS flow, or a plaintext
	 * one with nothing left to judge). */
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
	/* Message content the program passes as such is not read. */
	put_content(&s, s.seq, 1, &key);
	s.payload = "MAIL FROM:<alice@secure.world.test> is a line of content\r\n";
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_CONTENT_PASSED);
	assert_int_equal(get_flow(&key).verdict, TLSGATE_CONTENT);
	assert_int_equal(bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &key), 0);
	/* A client's SYN, and the server's side: not read, marked. */
	s.payload = "";
	s.flags = 0x02;
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	s.flags = 0x18;
	{
		struct pkt_spec r = pkt_reverse(&s);

		r.payload = "250-secure.world.test\r\n250 STARTTLS\r\nMAIL FROM:<a@secure.world.test>\r\n";
		n = build(&r, frame, NULL, NULL);
		expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_CLIENT);
	}

	/* Heartbeat fresh again: marked as before. */
	DAEMON_ALIVE();
	expect_sd("alive again", s, "MAIL FROM:<alice@secure.world.test>\r\n", false);
	set_secure_domains(NULL, 0, 0);
	set_daemon_state(0, 0);
}

static void test_secure_domains_v4(void **state)
{
	check_secure_domains(spec_v4());
}

static void test_secure_domains_v6(void **state)
{
	check_secure_domains(spec_v6());
}

/* fail_mode.normal "closed": while the daemon is gone every packet of a
 * flow not yet judged is dropped, both ways, SYN and ACK included; PASS
 * and BLOCK flows keep their verdicts; alive, nothing changes. */
static void check_normal_closed(struct pkt_spec s)
{
	struct pkt_spec r = pkt_reverse(&s);
	struct tlsgate_flow_key key;
	uint8_t frame[PKT_MAX];
	size_t n, l3;

	require_loaded();
	set_secure_domains(NULL, 0, TLSGATE_SD_NORMAL_CLOSED);
	s.payload = "MAIL FROM:<a@example.org>\r\n";
	DAEMON_ALIVE();
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_OK, true, TLSGATE_CNT_INSPECT_TO_SERVER);
	DAEMON_GONE();
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	n = build(&r, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	s.payload = "";
	s.flags = 0x02; /* SYN */
	n = build(&s, frame, NULL, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	s.flags = 0x10; /* ACK */
	n = build(&s, frame, &l3, NULL);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	put_flow(frame, n, l3, TLSGATE_INSPECT, &key);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_FAILCLOSED);
	put_flow(frame, n, l3, TLSGATE_PASS, &key);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_PASS_TO_SERVER);
	put_flow(frame, n, l3, TLSGATE_BLOCK, &key);
	expect(frame, n, TC_ACT_SHOT, false, TLSGATE_CNT_BLOCK_TO_SERVER);
	assert_int_equal(bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &key), 0);
	/* "open" (the default): the same ACK is skipped as before */
	set_secure_domains(NULL, 0, TLSGATE_SD_DOMAINS);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_ACK_SKIPPED);
	/* no READY: the same */
	set_secure_domains(NULL, 0, 0);
	expect(frame, n, TC_ACT_OK, false, TLSGATE_CNT_ACK_SKIPPED);
	set_daemon_state(0, 0);
}

static void test_normal_closed_v4(void **state)
{
	check_normal_closed(spec_v4());
}

static void test_normal_closed_v6(void **state)
{
	check_normal_closed(spec_v6());
}

/* The daemon's hashes (flowkey_domain_hash) are the program's: a domain
 * written through flowkey.c is found by the program's own hashing of a
 * mixed-case, dotted spelling (the cases above), and the map's bounds. */
static void test_secure_domains_map(void **state)
{
	require_loaded();
	assert_int_equal(bpf_map__type(skel->maps.secure_domains), BPF_MAP_TYPE_HASH);
	assert_int_equal(bpf_map__key_size(skel->maps.secure_domains), 8);
	assert_int_equal(bpf_map__value_size(skel->maps.secure_domains),
			 sizeof(struct tlsgate_sd_ready));
	assert_true(bpf_map__max_entries(skel->maps.secure_domains) >= 4 * 10000 + 1);
	assert_true(flowkey_domain_hash("secure.world.test") != TLSGATE_SD_READY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_loaded, reset_flows),
		cmocka_unit_test_setup(test_no_entry_v4, reset_flows),
		cmocka_unit_test_setup(test_no_entry_v6, reset_flows),
		cmocka_unit_test_setup(test_pure_ack_v4, reset_flows),
		cmocka_unit_test_setup(test_pure_ack_v6, reset_flows),
		cmocka_unit_test_setup(test_fail_closed_v4, reset_flows),
		cmocka_unit_test_setup(test_fail_closed_v6, reset_flows),
		cmocka_unit_test_setup(test_pass_v4, reset_flows),
		cmocka_unit_test_setup(test_pass_v6, reset_flows),
		cmocka_unit_test_setup(test_block_v4, reset_flows),
		cmocka_unit_test_setup(test_block_v6, reset_flows),
		cmocka_unit_test_setup(test_inspect_and_unknown_verdict, reset_flows),
		cmocka_unit_test_setup(test_key_layout, reset_flows),
		cmocka_unit_test_setup(test_not_smtp_untouched, reset_flows),
		cmocka_unit_test_setup(test_non_tcp_untouched, reset_flows),
		cmocka_unit_test_setup(test_vlan, reset_flows),
		cmocka_unit_test_setup(test_qinq, reset_flows),
		cmocka_unit_test_setup(test_three_vlan_tags_unparsed, reset_flows),
		cmocka_unit_test_setup(test_ipv4_options, reset_flows),
		cmocka_unit_test_setup(test_ipv6_ext_headers, reset_flows),
		cmocka_unit_test_setup(test_ipv6_ext_bound, reset_flows),
		cmocka_unit_test_setup(test_fragments, reset_flows),
		cmocka_unit_test_setup(test_bad_ihl_doff_version, reset_flows),
		cmocka_unit_test_setup(test_truncated_every_length, reset_flows),
		cmocka_unit_test_setup(test_foreign_mark_bits, reset_flows),
		cmocka_unit_test_setup(test_mark_tunables, reset_flows),
		cmocka_unit_test_setup(test_pinned_maps_reused, reset_flows),
		cmocka_unit_test_setup(test_content_in_order_v4, reset_flows),
		cmocka_unit_test_setup(test_content_in_order_v6, reset_flows),
		cmocka_unit_test_setup(test_content_seq_wraps, reset_flows),
		cmocka_unit_test_setup(test_content_end_of_data_v4, reset_flows),
		cmocka_unit_test_setup(test_content_end_of_data_v6, reset_flows),
		cmocka_unit_test_setup(test_content_every_position_v4, reset_flows),
		cmocka_unit_test_setup(test_content_every_position_v6, reset_flows),
		cmocka_unit_test_setup(test_content_chunk_v4, reset_flows),
		cmocka_unit_test_setup(test_content_chunk_v6, reset_flows),
		cmocka_unit_test_setup(test_content_wrong_seq_v4, reset_flows),
		cmocka_unit_test_setup(test_content_wrong_seq_v6, reset_flows),
		cmocka_unit_test_setup(test_content_flags_v4, reset_flows),
		cmocka_unit_test_setup(test_content_flags_v6, reset_flows),
		cmocka_unit_test_setup(test_content_leading_dot_v4, reset_flows),
		cmocka_unit_test_setup(test_content_leading_dot_v6, reset_flows),
		cmocka_unit_test_setup(test_content_returned_stays_v4, reset_flows),
		cmocka_unit_test_setup(test_content_returned_stays_v6, reset_flows),
		cmocka_unit_test_setup(test_content_payload_bounds_v4, reset_flows),
		cmocka_unit_test_setup(test_content_payload_bounds_v6, reset_flows),
		cmocka_unit_test_setup(test_reply_copy_v4, reset_flows),
		cmocka_unit_test_setup(test_reply_copy_v6, reset_flows),
		cmocka_unit_test_setup(test_reply_copy_vlan, reset_flows),
		cmocka_unit_test_setup(test_reply_copy_content_return, reset_flows),
		cmocka_unit_test_setup(test_reply_copy_ring_full, reset_flows),
		cmocka_unit_test_setup(test_command_copy_v4, reset_flows),
		cmocka_unit_test_setup(test_command_copy_v6, reset_flows),
		cmocka_unit_test_setup(test_command_copy_content_end, reset_flows),
		cmocka_unit_test_setup(test_content_ended_v4, reset_flows),
		cmocka_unit_test_setup(test_content_ended_v6, reset_flows),
		cmocka_unit_test_setup(test_content_ended_then_v4, reset_flows),
		cmocka_unit_test_setup(test_content_ended_then_v6, reset_flows),
		cmocka_unit_test_setup(test_quit_kept_v4, reset_flows),
		cmocka_unit_test_setup(test_quit_kept_v6, reset_flows),
		cmocka_unit_test_setup(test_content_stale_v4, reset_flows),
		cmocka_unit_test_setup(test_content_stale_v6, reset_flows),
		cmocka_unit_test_setup(test_inspect_stale_v4, reset_flows),
		cmocka_unit_test_setup(test_inspect_stale_v6, reset_flows),
		cmocka_unit_test_setup(test_end_split_v4, reset_flows),
		cmocka_unit_test_setup(test_end_split_v6, reset_flows),
		cmocka_unit_test_setup(test_urgent_v4, reset_flows),
		cmocka_unit_test_setup(test_urgent_v6, reset_flows),
		cmocka_unit_test_setup(test_switch_at_354_v4, reset_flows),
		cmocka_unit_test_setup(test_switch_at_354_v6, reset_flows),
		cmocka_unit_test_setup(test_server_state_moves, reset_flows),
		cmocka_unit_test_setup(test_await_reply_v4, reset_flows),
		cmocka_unit_test_setup(test_await_reply_v6, reset_flows),
		cmocka_unit_test_setup(test_await_pipelined_v4, reset_flows),
		cmocka_unit_test_setup(test_await_pipelined_v6, reset_flows),
		cmocka_unit_test_setup(test_rcpt_by_domain_v4, reset_flows),
		cmocka_unit_test_setup(test_rcpt_by_domain_v6, reset_flows),
		cmocka_unit_test_setup(test_await_rcpt_v4, reset_flows),
		cmocka_unit_test_setup(test_await_rcpt_v6, reset_flows),
		cmocka_unit_test_setup(test_fail_closed_all_v4, reset_flows),
		cmocka_unit_test_setup(test_fail_closed_all_v6, reset_flows),
		cmocka_unit_test_setup(test_secure_domains_v4, reset_flows),
		cmocka_unit_test_setup(test_secure_domains_v6, reset_flows),
		cmocka_unit_test_setup(test_normal_closed_v4, reset_flows),
		cmocka_unit_test_setup(test_normal_closed_v6, reset_flows),
		cmocka_unit_test_setup(test_secure_domains_map, reset_flows),
	};

	return cmocka_run_group_tests_name("tagger", tests, group_setup, group_teardown);
}
