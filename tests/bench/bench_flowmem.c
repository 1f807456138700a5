/* bench_flowmem.c - heap bytes per tracked flow, without the test world:
 * N SMTP connections opened through the daemon's own steps (flowkey, flow
 * table, gate_flow_start, session_segment, gate_segment; as fuzz_gate
 * drives them) and held where `make bench` holds its sessions: after the
 * client's EHLO and the server's reply (the dialog of tests/bench/flowtool.py
 * hold). Then each sends MAIL FROM, which the gate passes (no policy): the
 * flow is offloaded, as most are. Prints the heap in use per flow at both
 * points (mallinfo2: chunks incl. malloc's overhead). Deterministic: the
 * same build prints the same figures.
 *
 * The kernel datapath and the raw sockets are stand-ins (--wrap, see
 * BENCH_WRAP_bench_flowmem in the Makefile): no packet leaves the process.
 * Usage: bench_flowmem [N [MAX]]: N flows (default 1000); with MAX, exits 1
 * when an inspecting flow takes more than MAX bytes (issue 17: 4096). */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datapath.h"
#include "enforce.h"
#include "flow.h"
#include "flowkey.h"
#include "gate.h"
#include "log.h"
#include "session.h"

#include "../unit/pkt_builder.h"

/* ---- stand-ins: the kernel datapath and the raw sockets ---- */
int __wrap_datapath_heartbeat(struct datapath *dp, uint32_t ms) { return 0; }
int __wrap_datapath_heartbeat_stopped(struct datapath *dp, uint32_t ms) { return 0; }
int __wrap_datapath_set_secure_sources(struct datapath *dp, const struct tlsgate_lpm_key *keys,
				       size_t n) { return 0; }
int __wrap_datapath_set_rcpt_domains(struct datapath *dp, const uint64_t *hashes, size_t n)
{ return 0; }
int __wrap_datapath_set_secure_domains(struct datapath *dp, const uint64_t *hashes,
				       const uint32_t *flags, size_t n, uint32_t ready_flags,
				       uint32_t failclosed_ms) { return 0; }
int __wrap_datapath_set_verdict(struct datapath *dp, const struct tlsgate_flow_key *key,
				enum tlsgate_verdict verdict) { return 0; }
int __wrap_datapath_set_content(struct datapath *dp, const struct tlsgate_flow_key *key,
				uint32_t seq, bool line_end, const uint32_t *chunk_end,
				uint8_t copy) { return 0; }
int __wrap_datapath_lookup(struct datapath *dp, const struct tlsgate_flow_key *key,
			   struct tlsgate_flow_value *val) { return -ENOENT; }
static char enforce_stand_in;
struct enforce *__wrap_enforce_open(void) { return (struct enforce *)&enforce_stand_in; }
void __wrap_enforce_close(struct enforce *e) {}
int __wrap_enforce_refuse_at(struct enforce *e, const struct flowkey_packet *p,
			     const struct enforce_verbs *v, const char *refusal,
			     uint32_t server_seq) { return 0; }
int __wrap_enforce_answer(struct enforce *e, const struct flowkey_packet *p,
			  const struct enforce_verbs *v, const char *reply) { return 0; }
int __wrap_enforce_reset(struct enforce *e, const struct flowkey_packet *p) { return 0; }
void __wrap_enforce_tick(struct enforce *e) {}
uint64_t __wrap_enforce_repeated(const struct enforce *e) { return 0; }

#define IF_INSIDE 1 /* the client is inside: outbound mail */

static struct gate *g;
static struct flow_table *flows, *no_flows;
static struct port_set ports;

/* One queued segment, as tlsgated's daemon_segment() takes it. */
static void segment(bool to_server, uint16_t cport, uint32_t seq, uint32_t ack, uint8_t flags,
		    const char *payload)
{
	struct pkt_spec s = {
		.family = 4,
		.saddr = to_server ? "192.0.2.10" : "198.51.100.31",
		.daddr = to_server ? "198.51.100.31" : "192.0.2.10",
		.sport = to_server ? cport : 25,
		.dport = to_server ? 25 : cport,
		.seq = seq, .ack = ack, .flags = flags, .window = 65535,
		.payload = payload,
	};
	uint8_t buf[PKT_MAX];
	size_t l3, hdr_end, len = pkt_build(&s, buf, sizeof(buf), &l3, &hdr_end);
	struct flowkey_packet p;

	if (!len || flowkey_from_ip(buf + l3, len - l3, &ports, &p) < 0) {
		fprintf(stderr, "bench_flowmem: cannot build a packet\n");
		exit(1);
	}
	struct flow *f = flow_lookup(flows, &p.key);
	if (!f) {
		f = flow_insert(flows, &p.key, 1);
		f->client_is_lo = true;
		f->syn_seen = true;
		f->syn_seq = p.seq;
		f->session = session_new(NULL, false);
		if (!f->session) {
			fprintf(stderr, "bench_flowmem: out of memory\n");
			exit(1);
		}
		gate_flow_start(g, f, &p, IF_INSIDE);
	}
	if (!f->session)
		return; /* offloaded: the kernel passes it */
	struct tcp_segment seg = {
		.dir = p.dir, .seq = p.seq, .ack = p.ack, .flags = p.flags,
		.window = p.window, .payload = p.payload, .len = p.payload_len, .ts_ns = 1,
	};
	gate_before_segment(g, f, &p, NULL);
	enum session_action action = session_segment(f->session, &seg);
	gate_segment(g, f, &p, action, false);
	gate_content_flush(g, no_flows);
}

static int count_inspecting(void *arg, struct flow *f)
{
	if (f->session)
		(*(size_t *)arg)++;
	return 0;
}

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

#define ACK SESSION_TCP_ACK
#define PSH (SESSION_TCP_PSH | SESSION_TCP_ACK)
#define C_ISN 1000u
#define S_ISN 5000u
static const char greeting[] = "220 flowtool ESMTP\r\n", ehlo[] = "EHLO bench.world.test\r\n",
		  ok[] = "250 2.0.0 Ok\r\n", mail[] = "MAIL FROM:<bench@in.world.test>\r\n";

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	double max = argc > 2 ? atof(argv[2]) : 0;
	char dir[] = "/tmp/bench_flowmem-XXXXXX", store[64], state[64], cmd[96];

	if (n < 1 || n > 60000 || !mkdtemp(dir)) {
		fprintf(stderr, "usage: bench_flowmem [N (1-60000) [MAX bytes]]\n");
		return 2;
	}
	log_open("bench_flowmem", LOG_LEVEL_ERROR, false);
	snprintf(store, sizeof(store), "%s/tlsgate.db", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	struct gate_config cfg = {
		.store_path = store, .state_dir = state,
		.failclosed_ms = GATE_FAILCLOSED_MS_DEFAULT,
		.inside_ifindex = { IF_INSIDE }, .n_inside = 1,
	};
	static char dp_stand_in; /* never dereferenced */
	g = gate_open(&cfg, (struct datapath *)&dp_stand_in);
	if (!g) {
		fprintf(stderr, "bench_flowmem: gate_open failed\n");
		return 1;
	}
	flows = flow_table_new((size_t)n + 1, NULL, NULL);
	no_flows = flow_table_new(1, NULL, NULL);
	port_set_add(&ports, 25);

	/* The first flow warms the caches (store, destination slot). */
	size_t h0 = 0, h1, h2;
	uint32_t c = C_ISN + 1, s = S_ISN + 1;
	for (long i = -1; i < n; i++) {
		uint16_t port = (uint16_t)(20000 + i + 1);
		if (i == 0)
			h0 = heap_in_use();
		segment(true, port, C_ISN, 0, SESSION_TCP_SYN, NULL);
		segment(false, port, S_ISN, c, SESSION_TCP_SYN | ACK, NULL);
		segment(true, port, c, s, ACK, NULL);
		segment(false, port, s, c, PSH, greeting);
		segment(true, port, c, s + sizeof(greeting) - 1, PSH, ehlo);
		segment(false, port, s + sizeof(greeting) - 1, c + sizeof(ehlo) - 1, PSH, ok);
	}
	h1 = heap_in_use();
	size_t inspecting = 0;
	flow_for_each(flows, count_inspecting, &inspecting);
	if (inspecting != (size_t)n + 1) {
		fprintf(stderr, "bench_flowmem: %zu of %ld flows inspected after EHLO\n",
			inspecting, n + 1);
		return 1;
	}
	uint32_t cm = c + sizeof(ehlo) - 1, sm = s + sizeof(greeting) - 1 + sizeof(ok) - 1;
	for (long i = 0; i < n; i++)
		segment(true, (uint16_t)(20000 + i + 1), cm, sm, PSH, mail);
	h2 = heap_in_use();

	double per_flow = ((double)h1 - (double)h0) / (double)n;
	printf("heap per inspecting flow (after EHLO and its reply): %.0f bytes (%ld flows)\n",
	       per_flow, n);
	printf("heap per offloaded flow (after MAIL FROM, passed):    %.0f bytes\n",
	       ((double)h2 - (double)h0) / (double)n);
	printf("sizeof: struct flow %zu\n", sizeof(struct flow));

	flow_table_free(flows);
	flow_table_free(no_flows);
	gate_close(g);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	if (max > 0 && per_flow > max) {
		fprintf(stderr, "bench_flowmem: %.0f bytes per inspecting flow, more than %.0f\n",
			per_flow, max);
		return 1;
	}
	return 0;
}
