/* tlsgate-replay - runs a packet capture through the inspection engine and
 * prints one summary per TCP connection (human readable, or JSON lines
 * with --json), in the order the connections were first seen.
 *
 * Connections are keyed by their 5-tuple; the client is the side that sent
 * the SYN, or, without one, the side not using a known server port (25,
 * 465, 587, 443, 143, 110, ...), else the higher port. What the dialog is
 * (SMTP, TLS, something else) is decided by content, not by port.
 *
 * A connection's session is summarised and freed as soon as it closes, so
 * memory follows the connections open at once, not the capture's length;
 * only the summary waits for its turn in the output. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pcap_input.h"
#include "session.h"
#include "summary.h"
#include "tls_parse.h"

struct flow {
	struct flow *next_hash;
	uint8_t family;
	uint8_t cli[16], srv[16];
	uint16_t cport, sport;
	struct session *s; /* NULL once closed and summarised */
	char *sum;         /* the summary of a closed connection, compact JSON */
	bool sum_fin;      /* ... whose end is "fin" */
	bool late_rst;     /* ... and a RST came after it closed */
	bool closed;
	bool has_payload;
	uint64_t first_ns;
	unsigned long order;
};

#define HASH_SIZE 4096

struct replay {
	struct flow *hash[HASH_SIZE];
	struct flow **all;
	size_t n, cap;
	bool json;
};

static bool server_port(uint16_t p)
{
	static const uint16_t ports[] = { 25, 465, 587, 443, 143, 993, 110, 995, 5222, 5269, 21, 80, 8443 };
	size_t i;

	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		if (ports[i] == p)
			return true;
	return false;
}

static unsigned int flow_hash(const uint8_t *a, uint16_t ap, const uint8_t *b, uint16_t bp)
{
	unsigned int h = 2166136261u, i;

	/* Symmetric: both directions hash alike. */
	for (i = 0; i < 16; i++)
		h = (h ^ (unsigned int)(a[i] + b[i])) * 16777619u;
	h ^= (unsigned int)(ap + bp) * 2654435761u;
	return h % HASH_SIZE;
}

static int flow_match(const struct flow *f, const struct pcap_tcp *p)
{
	if (f->family != p->family)
		return -1;
	if (!memcmp(f->cli, p->src, 16) && f->cport == p->sport && !memcmp(f->srv, p->dst, 16) &&
	    f->sport == p->dport)
		return TLSGATE_DIR_TO_SERVER;
	if (!memcmp(f->srv, p->src, 16) && f->sport == p->sport && !memcmp(f->cli, p->dst, 16) &&
	    f->cport == p->dport)
		return TLSGATE_DIR_TO_CLIENT;
	return -1;
}

static struct flow *flow_new(struct replay *r, const struct pcap_tcp *p, unsigned int h)
{
	struct flow *f = xcalloc(1, sizeof(*f));
	bool syn = (p->flags & 0x12) == 0x02, synack = (p->flags & 0x12) == 0x12;
	bool src_is_client;

	if (syn)
		src_is_client = true;
	else if (synack)
		src_is_client = false;
	else if (server_port(p->dport) != server_port(p->sport))
		src_is_client = server_port(p->dport);
	else
		src_is_client = p->sport > p->dport;
	f->family = p->family;
	memcpy(src_is_client ? f->cli : f->srv, p->src, 16);
	memcpy(src_is_client ? f->srv : f->cli, p->dst, 16);
	f->cport = src_is_client ? p->sport : p->dport;
	f->sport = src_is_client ? p->dport : p->sport;
	f->s = session_new(NULL, !syn && !synack);
	if (!f->s)
		fatalx("out of memory");
	f->first_ns = p->ts_ns;
	f->next_hash = r->hash[h];
	r->hash[h] = f;
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 256;
		r->all = xrealloc(r->all, r->cap * sizeof(*r->all));
	}
	f->order = r->n;
	r->all[r->n++] = f;
	return f;
}

static void addr_str(const struct flow *f, const uint8_t *a, char *buf, size_t n)
{
	inet_ntop(f->family == 4 ? AF_INET : AF_INET6, a, buf, (socklen_t)n);
}

static json_t *flow_summary(const struct flow *f)
{
	char ca[INET6_ADDRSTRLEN], sa[INET6_ADDRSTRLEN];
	struct summary_endpoints ep;
	json_t *o;

	addr_str(f, f->cli, ca, sizeof(ca));
	addr_str(f, f->srv, sa, sizeof(sa));
	ep = (struct summary_endpoints){ ca, f->cport, sa, f->sport };
	o = session_summary_json(f->s, &ep);
	if (!o)
		fatalx("out of memory");
	return o;
}

static int on_segment(void *ctx, const struct pcap_tcp *p)
{
	struct replay *r = ctx;
	unsigned int h = flow_hash(p->src, p->sport, p->dst, p->dport);
	struct flow *f;
	struct tcp_segment seg;
	int dir = -1;

	for (f = r->hash[h]; f; f = f->next_hash) {
		dir = flow_match(f, p);
		if (dir >= 0)
			break;
	}
	/* A new SYN on a closed connection's tuple starts a new one. */
	if (f && f->closed && (p->flags & 0x12) == 0x02) {
		struct flow **pp;

		for (pp = &r->hash[h]; *pp != f; pp = &(*pp)->next_hash)
			;
		*pp = f->next_hash;
		f = NULL;
	}
	if (!f) {
		f = flow_new(r, p, h);
		dir = flow_match(f, p);
	}
	seg.dir = (enum tlsgate_dir)dir;
	seg.seq = p->seq;
	seg.ack = p->ack;
	seg.flags = p->flags & 0x1f;
	seg.window = p->window;
	seg.payload = p->payload;
	seg.len = p->len;
	seg.ts_ns = p->ts_ns;
	if (p->len)
		f->has_payload = true;
	if (!f->s) {
		/* The engine takes nothing from a closed session but a late
		 * RST, which makes a FIN close end in "rst". */
		if (p->flags & SESSION_TCP_RST)
			f->late_rst = true;
		return 0;
	}
	if (session_segment(f->s, &seg) == SESSION_CLOSED) {
		json_t *o = flow_summary(f);

		f->closed = true;
		f->sum_fin = !strcmp(json_string_value(json_object_get(o, "end")), "fin");
		f->sum = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!f->sum)
			fatalx("out of memory");
		json_decref(o);
		session_free(f->s);
		f->s = NULL;
	}
	return 0;
}

static void print_list(const char *label, json_t *arr)
{
	size_t i;
	json_t *v;

	if (!json_array_size(arr))
		return;
	printf("  %s:", label);
	json_array_foreach(arr, i, v)
		printf("%s%s", i ? ", " : " ", json_is_string(v) ? json_string_value(v) : "-");
	printf("\n");
}

static void print_human(json_t *o)
{
	json_t *st = json_object_get(o, "starttls"), *tls = json_object_get(o, "tls");
	const char *helo = json_string_value(json_object_get(o, "helo"));

	printf("%s:%lld -> %s:%lld  %s  end=%s\n", json_string_value(json_object_get(o, "orig_h")),
	       json_integer_value(json_object_get(o, "orig_p")), json_string_value(json_object_get(o, "resp_h")),
	       json_integer_value(json_object_get(o, "resp_p")),
	       json_is_true(json_object_get(o, "smtp")) ? "SMTP" : "not SMTP",
	       json_string_value(json_object_get(o, "end")));
	if (helo)
		printf("  helo: %s\n", helo);
	print_list("capabilities", json_object_get(o, "capabilities"));
	if (json_is_true(json_object_get(st, "offered")) || json_is_true(json_object_get(st, "issued")))
		printf("  starttls: offered=%s issued=%s reply=%lld\n",
		       json_is_true(json_object_get(st, "offered")) ? "yes" : "no",
		       json_is_true(json_object_get(st, "issued")) ? "yes" : "no",
		       json_integer_value(json_object_get(st, "reply")));
	print_list("mail from", json_object_get(o, "mailfrom"));
	print_list("rcpt to", json_object_get(o, "rcptto"));
	if (json_is_object(tls)) {
		const char *v = json_string_value(json_object_get(tls, "version"));
		const char *c = json_string_value(json_object_get(tls, "cipher"));
		const char *sni = json_string_value(json_object_get(tls, "server_name"));

		printf("  tls: %s %s%s%s established=%s\n", v ? v : "-", c ? c : "-", sni ? " sni=" : "",
		       sni ? sni : "", json_is_true(json_object_get(tls, "established")) ? "yes" : "no");
		print_list("cert sha256", json_object_get(tls, "cert_chain_fps"));
	}
	print_list("anomalies", json_object_get(o, "anomalies"));
}

static void print_flow(const struct replay *r, const struct flow *f)
{
	bool patch = f->sum && f->sum_fin && f->late_rst;
	json_t *o;

	if (f->sum && r->json && !patch) {
		printf("%s\n", f->sum);
		return;
	}
	o = f->sum ? json_loads(f->sum, 0, NULL) : flow_summary(f);
	if (!o)
		fatalx("out of memory");
	if (patch)
		json_object_set_new(o, "end", json_string("rst"));
	if (r->json) {
		char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

		if (!txt)
			fatalx("out of memory");
		printf("%s\n", txt);
		free(txt);
	} else {
		print_human(o);
	}
	json_decref(o);
}

static void usage(FILE *out, int status)
{
	fprintf(out, "usage: tlsgate-replay [-j|--json] FILE.pcap\n"
		     "  -j, --json   one JSON summary per connection (default: text)\n"
		     "  -h, --help\n");
	exit(status);
}

/* A bad option or argument: one line that names it, exit 2. */
static void __attribute__((noreturn)) bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, "tlsgate-replay: %s%s (see tlsgate-replay --help)\n", what, arg);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct replay r;
	struct pcap_input_stats st = { 0, 0, 0 };
	char err[256] = "";
	const char *path;
	size_t i;
	int c, rc;

	log_open("tlsgate-replay", LOG_LEVEL_WARN, false);
	memset(&r, 0, sizeof(r));
	opterr = 0; /* one line of our own instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		if (c == 'j')
			r.json = true;
		else if (c == 'h')
			usage(stdout, 0);
		else if (strncmp(argv[optind - 1], "--", 2) != 0)
			bad_usage("unknown option -", (char[]){ (char)optopt, '\0' });
		else
			bad_usage("unknown option ", argv[optind - 1]);
	}
	if (optind == argc)
		bad_usage("no capture file given: tlsgate-replay [--json] FILE.pcap", "");
	if (optind + 1 != argc)
		bad_usage("one capture file only, not also ", argv[optind + 1]);
	path = argv[optind];
	rc = pcap_input_read(path, on_segment, &r, &st, err, sizeof(err));
	/* A capture cut short (the writer killed, a copy in progress): what
	 * was read is reported as usual, then the error. */
	for (i = 0; i < r.n; i++) {
		if (r.all[i]->has_payload)
			print_flow(&r, r.all[i]);
		free(r.all[i]->sum);
		session_free(r.all[i]->s);
		free(r.all[i]);
	}
	free(r.all);
	if (rc) {
		const char *why = err[0] ? err : strerror(-rc);
		size_t plen = strlen(path);
		/* libpcap's open errors start with the path already */
		if (!strncmp(why, path, plen) && !strncmp(why + plen, ": ", 2))
			why += plen + 2;
		fflush(stdout);
		if (st.packets)
			fprintf(stderr, "tlsgate-replay: %s: read error after %llu packet(s), reported above: %s\n",
				path, (unsigned long long)st.packets, why);
		else
			fprintf(stderr, "tlsgate-replay: %s: %s\n", path, why);
		return 1;
	}
	return 0;
}
