/* tlsgate-probe - how well is mail to these domains protected on the wire?
 * See probe/README.md for usage, output and exit codes; probe.h for the
 * engine. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "probe.h"
#include "probe_store.h"
#include "store.h"

#define EXIT_PLAINTEXT 1
#define EXIT_UNKNOWN 2
#define EXIT_USAGE 64
#define EXIT_SOFTWARE 70

struct out {
	bool json, quiet;
	struct store *db;
	int worst; /* exit code so far */
	unsigned long counts[4];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tlsgate-probe [options] DOMAIN|ADDRESS...\n"
		"       tlsgate-probe [options] -f LIST\n"
		"  -f, --file LIST         targets from LIST (one per line, # comments; - = stdin)\n"
		"  -j, --jobs N            targets probed at once (default 8)\n"
		"      --json              one JSON object per target and line\n"
		"      --db FILE           record results in the tlsgate store (SQLite)\n"
		"      --resolver ADDR     forward DNS queries to ADDR[@PORT][,ADDR...] (validated\n"
		"                          here all the same); default: full recursion\n"
		"      --trust-anchor FILE DNSSEC trust anchor (default %s)\n"
		"      --root-hints FILE   root hints for full recursion\n"
		"      --transparent-zone Z resolve special-use zone Z (e.g. test.) like any\n"
		"                          other instead of answering it locally (repeatable)\n"
		"      --port N            SMTP port (default 25)\n"
		"      --timeout SEC       per stage: connect, each SMTP reply, TLS handshake (default 10)\n"
		"      --dns-timeout SEC   per DNS query (default 10)\n"
		"  -4, -6                  connect over IPv4 / IPv6 only\n"
		"      --helo NAME         EHLO name (default tlsgate-probe.invalid)\n"
		"  -q, --quiet             text output: one line per target\n"
		"      --log-level LEVEL   error, warn, info, debug (default warn)\n"
		"  -h, --help\n"
		"exit: 0 all dane/tls, 1 some plaintext, 2 some unknown (failure, deferral),\n"
		"      64 usage, 70 internal error\n",
		RESOLVER_DEFAULT_TRUST_ANCHOR);
}

static void hex(char *dst, const uint8_t *p, size_t n, bool colons)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (colons && i)
			dst[o++] = ':';
		dst[o++] = digits[p[i] >> 4];
		dst[o++] = digits[p[i] & 15];
	}
	dst[o] = '\0';
}

static char *tlsa_text(const struct dane_tlsa *t)
{
	char *s = xmalloc(16 + 2 * t->len + 1);
	int n = snprintf(s, 16, "%u %u %u ", t->usage, t->selector, t->mtype);

	hex(s + n, t->data, t->len, false);
	return s;
}

static const char *addr_port(const struct probe_addr *pa, char *buf, size_t size)
{
	snprintf(buf, size, pa->family == AF_INET6 ? "[%s]" : "%s", pa->addr);
	return buf;
}

/* ---- text ------------------------------------------------------------- */

static void text_addr(const struct probe_target *t, const struct probe_mx *mx,
		      const struct probe_addr *pa)
{
	char a[64], fp[32 * 3 + 1];
	size_t i;

	printf("  %s:\n", addr_port(pa, a, sizeof(a)));
	if (pa->banner[0])
		printf("    banner: %s\n", pa->banner);
	if (pa->n_ehlo) {
		printf("    EHLO:");
		for (i = 0; i < pa->n_ehlo; i++)
			printf(" %s", pa->ehlo[i]);
		printf("\n");
	}
	if (pa->tls)
		printf("    TLS: %s, cipher %s\n", pa->tls_version, pa->cipher);
	for (i = 0; i < pa->n_chain; i++) {
		hex(fp, pa->chain[i].sha256, 32, true);
		printf("    certificate %zu: subject %s\n", i, pa->chain[i].subject);
		printf("      issuer %s\n", pa->chain[i].issuer);
		printf("      sha256 %s\n", fp);
	}
	if (pa->dane_checked) {
		printf("    DANE: %s", dane_result_str(pa->dane.result));
		if (pa->dane.record >= 0 && mx->host) {
			const struct dane_tlsa *r = &mx->host->tlsa[pa->dane.record];

			printf(" (TLSA %u %u %u, depth %d)", r->usage, r->selector, r->mtype,
			       pa->dane.depth);
		}
		printf(", %zu usable record(s)\n", pa->dane.n_usable);
	}
	printf("    verdict: %s - %s\n", probe_verdict_str(pa->verdict), pa->reason);
	(void)t;
}

static void text_target(const struct probe_target *t, bool quiet)
{
	size_t i, j;

	printf("%s: %s", t->input, probe_class_str(t->cls));
	if (t->reason[0])
		printf(" (%s)", t->reason);
	printf("\n");
	if (quiet)
		return;
	if (t->dns)
		printf("  MX RRset: %s\n", resolver_rrstatus_str(t->dns->mx_status));
	for (i = 0; i < t->n_mx; i++) {
		const struct probe_mx *mx = &t->mx[i];
		const struct resolver_host *h = mx->host;

		if (h) {
			printf("MX %u %s%s%s%s: addresses %s, TLSA %s", h->preference, h->name,
			       h->implicit ? " (implicit)" : "", h->final_name[0] ? " -> " : "",
			       h->final_name, resolver_rrstatus_str(h->addr_status),
			       resolver_rrstatus_str(h->tlsa_status));
			if (h->tlsa_name[0])
				printf(" at %s", h->tlsa_name);
			printf(", DANE %s\n", resolver_dane_str(h->dane));
			for (j = 0; j < h->n_tlsa; j++) {
				char *s = tlsa_text(&h->tlsa[j]);

				printf("  TLSA %s%s\n", s, dane_tlsa_usable(&h->tlsa[j]) ? "" : " (unusable)");
				free(s);
			}
		}
		if (mx->n_addrs == 0 && (h || mx->reason[0]))
			printf("  verdict: %s - %s\n", probe_verdict_str(mx->verdict), mx->reason);
		for (j = 0; j < mx->n_addrs; j++)
			text_addr(t, mx, &mx->addrs[j]);
	}
	printf("\n");
}

/* ---- JSON ------------------------------------------------------------- */

static json_t *json_addr(const struct probe_mx *mx, const struct probe_addr *pa)
{
	json_t *o = json_object(), *a, *ch;
	char fp[65];
	size_t i;

	json_object_set_new(o, "address", json_string(pa->addr));
	json_object_set_new(o, "family", json_string(pa->family == AF_INET6 ? "ipv6" : "ipv4"));
	json_object_set_new(o, "verdict", json_string(probe_verdict_str(pa->verdict)));
	json_object_set_new(o, "class", json_string(probe_class_str(probe_verdict_class(pa->verdict))));
	json_object_set_new(o, "reason", json_string(pa->reason));
	if (pa->banner[0])
		json_object_set_new(o, "banner", json_string(pa->banner));
	a = json_array();
	for (i = 0; i < pa->n_ehlo; i++)
		json_array_append_new(a, json_string(pa->ehlo[i]));
	json_object_set_new(o, "ehlo", a);
	json_object_set_new(o, "starttls", json_boolean(pa->starttls_offered));
	if (pa->tls) {
		json_object_set_new(o, "tls_version", json_string(pa->tls_version));
		json_object_set_new(o, "cipher", json_string(pa->cipher));
	}
	ch = json_array();
	for (i = 0; i < pa->n_chain; i++) {
		json_t *c = json_object();

		hex(fp, pa->chain[i].sha256, 32, false);
		json_object_set_new(c, "depth", json_integer((json_int_t)i));
		json_object_set_new(c, "subject", json_string(pa->chain[i].subject));
		json_object_set_new(c, "issuer", json_string(pa->chain[i].issuer));
		json_object_set_new(c, "sha256", json_string(fp));
		json_array_append_new(ch, c);
	}
	json_object_set_new(o, "chain", ch);
	if (pa->dane_checked) {
		json_t *d = json_object();

		json_object_set_new(d, "result", json_string(dane_result_str(pa->dane.result)));
		json_object_set_new(d, "depth", json_integer(pa->dane.depth));
		json_object_set_new(d, "record", json_integer(pa->dane.record));
		if (pa->dane.record >= 0 && mx->host) {
			char *s = tlsa_text(&mx->host->tlsa[pa->dane.record]);

			json_object_set_new(d, "tlsa", json_string(s));
			free(s);
		}
		json_object_set_new(o, "dane", d);
	}
	json_object_set_new(o, "ms_connect", json_integer(pa->ms_connect));
	json_object_set_new(o, "ms_total", json_integer(pa->ms_total));
	return o;
}

static json_t *json_target(const struct probe_target *t)
{
	json_t *o = json_object(), *mxs = json_array();
	size_t i, j;

	json_object_set_new(o, "target", json_string(t->input));
	json_object_set_new(o, "type", json_string(t->is_addr ? "address" : "domain"));
	json_object_set_new(o, "class", json_string(probe_class_str(t->cls)));
	if (t->reason[0])
		json_object_set_new(o, "reason", json_string(t->reason));
	if (t->dns) {
		json_object_set_new(o, "mx_status", json_string(resolver_rrstatus_str(t->dns->mx_status)));
		json_object_set_new(o, "null_mx", json_boolean(t->dns->null_mx));
		json_object_set_new(o, "nxdomain", json_boolean(t->dns->nxdomain));
	}
	json_object_set_new(o, "time", json_integer(t->started));
	json_object_set_new(o, "ms_total", json_integer(t->ms_total));
	for (i = 0; i < t->n_mx; i++) {
		const struct probe_mx *mx = &t->mx[i];
		const struct resolver_host *h = mx->host;
		json_t *m = json_object(), *addrs = json_array();

		if (h) {
			json_t *tl = json_array();

			json_object_set_new(m, "name", json_string(h->name));
			json_object_set_new(m, "preference", json_integer(h->preference));
			json_object_set_new(m, "implicit", json_boolean(h->implicit));
			if (h->final_name[0])
				json_object_set_new(m, "cname", json_string(h->final_name));
			json_object_set_new(m, "addr_status", json_string(resolver_rrstatus_str(h->addr_status)));
			json_object_set_new(m, "tlsa_status", json_string(resolver_rrstatus_str(h->tlsa_status)));
			if (h->tlsa_name[0])
				json_object_set_new(m, "tlsa_name", json_string(h->tlsa_name));
			json_object_set_new(m, "dane", json_string(resolver_dane_str(h->dane)));
			for (j = 0; j < h->n_tlsa; j++) {
				char *s = tlsa_text(&h->tlsa[j]);

				json_array_append_new(tl, json_string(s));
				free(s);
			}
			json_object_set_new(m, "tlsa", tl);
			json_object_set_new(m, "ttl", json_integer(h->ttl));
		}
		if (mx->n_addrs == 0) {
			json_object_set_new(m, "verdict", json_string(probe_verdict_str(mx->verdict)));
			json_object_set_new(m, "reason", json_string(mx->reason));
		}
		for (j = 0; j < mx->n_addrs; j++)
			json_array_append_new(addrs, json_addr(mx, &mx->addrs[j]));
		json_object_set_new(m, "addresses", addrs);
		json_array_append_new(mxs, m);
	}
	json_object_set_new(o, "mx", mxs);
	return o;
}

static void done(void *arg, const struct probe_target *t)
{
	struct out *o = arg;
	int code = t->cls == PROBE_CLASS_UNKNOWN ? EXIT_UNKNOWN
		   : t->cls == PROBE_CLASS_PLAINTEXT ? EXIT_PLAINTEXT : 0;

	if (code > o->worst)
		o->worst = code;
	o->counts[t->cls]++;
	if (o->json) {
		json_t *j = json_target(t);

		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(j);
	} else {
		text_target(t, o->quiet);
	}
	fflush(stdout);
	if (o->db && probe_store_record(o->db, t) < 0) {
		/* The store logged what it lost; the exit status says so too. */
		fprintf(stderr, "tlsgate-probe: %s: result not (fully) stored\n", t->input);
		o->worst = EXIT_SOFTWARE;
	}
}

/* ---- main ------------------------------------------------------------- */

static int read_list(const char *path, char ***list, size_t *n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, alloc = *n;
	ssize_t len;

	if (!f)
		return -errno;
	while ((len = getline(&line, &cap, f)) >= 0) {
		char *s = line, *e;

		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strcspn(s, " \t\r\n#");
		*e = '\0';
		if (!*s)
			continue;
		if (*n == alloc) {
			alloc = alloc ? 2 * alloc : 64;
			*list = xrealloc(*list, alloc * sizeof(**list));
		}
		(*list)[(*n)++] = xstrdup(s);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

/* A bad option or value: one line that names it and the rule; the caller
 * exits with EXIT_USAGE. */
static int __attribute__((format(printf, 1, 2))) bad_usage(const char *fmt, ...)
{
	va_list ap;
	fputs("tlsgate-probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see tlsgate-probe --help)\n", stderr);
	return EXIT_USAGE;
}

/* getopt_long() stopped at arg: an unknown option (c '?') or one
 * without its value (c ':'). */
static int bad_option(const struct option *opts, int c, const char *arg)
{
	if (strncmp(arg, "--", 2) != 0)
		return c == ':' ? bad_usage("option -%c needs a value", optopt)
				: bad_usage("unknown option -%c", optopt);
	const char *name = arg + 2;
	size_t len = strcspn(name, "="), matches = 0;
	bool exact = false;
	for (const struct option *o = opts; o->name; o++)
		if (!strncmp(o->name, name, len)) {
			matches++;
			exact |= strlen(o->name) == len;
		}
	if (c == ':')
		return bad_usage("option --%.*s needs a value", (int)len, name);
	if ((exact || matches == 1) && name[len] == '=')
		return bad_usage("option --%.*s takes no value", (int)len, name);
	if (!exact && matches > 1)
		return bad_usage("ambiguous option --%.*s (%zu options start so)", (int)len, name,
				 matches);
	return bad_usage("unknown option --%.*s", (int)len, name);
}

int main(int argc, char **argv)
{
	enum { O_JSON = 256, O_DB, O_RESOLVER, O_TA, O_HINTS, O_PORT, O_TIMEOUT, O_DNS_TIMEOUT,
	       O_HELO, O_LOG, O_ZONE };
	static const struct option opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "json", no_argument, NULL, O_JSON },
		{ "db", required_argument, NULL, O_DB },
		{ "resolver", required_argument, NULL, O_RESOLVER },
		{ "trust-anchor", required_argument, NULL, O_TA },
		{ "root-hints", required_argument, NULL, O_HINTS },
		{ "port", required_argument, NULL, O_PORT },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "dns-timeout", required_argument, NULL, O_DNS_TIMEOUT },
		{ "helo", required_argument, NULL, O_HELO },
		{ "quiet", no_argument, NULL, 'q' },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "transparent-zone", required_argument, NULL, O_ZONE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct resolver_config rc = { 0 };
	struct probe_config pc = { .resolver = &rc, .port = 25, .concurrency = 8 };
	struct out o = { 0 };
	const char *db_path = NULL, *zones[17] = { 0 };
	size_t n_zones = 0;
	char **list = NULL;
	size_t n = 0, i;
	unsigned long v, timeout = 10;
	int c, err, lvl;

	log_open("tlsgate-probe", LOG_LEVEL_WARN, false);
	opterr = 0; /* one line of our own instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":f:j:q46h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if ((err = read_list(optarg, &list, &n)) < 0)
				return bad_usage("--file '%s': %s", optarg, strerror(-err));
			break;
		case 'j':
			if (parse_uint(optarg, 4096, &v) < 0 || v == 0)
				return bad_usage("--jobs '%s': not 1..4096", optarg);
			pc.concurrency = (unsigned int)v;
			break;
		case 'q':
			o.quiet = true;
			break;
		case '4':
			pc.ipv4 = true;
			break;
		case '6':
			pc.ipv6 = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_JSON:
			o.json = true;
			break;
		case O_DB:
			db_path = optarg;
			break;
		case O_RESOLVER:
			rc.forwarders = optarg;
			break;
		case O_TA:
			rc.trust_anchor = optarg;
			break;
		case O_HINTS:
			rc.root_hints = optarg;
			break;
		case O_PORT:
			if (parse_uint(optarg, 65535, &v) < 0 || v == 0)
				return bad_usage("--port '%s': not 1..65535", optarg);
			pc.port = (uint16_t)v;
			break;
		case O_TIMEOUT:
			if (parse_uint(optarg, 3600, &v) < 0 || v == 0)
				return bad_usage("--timeout '%s': not 1..3600 (seconds)", optarg);
			timeout = v;
			break;
		case O_DNS_TIMEOUT:
			if (parse_uint(optarg, 3600, &v) < 0 || v == 0)
				return bad_usage("--dns-timeout '%s': not 1..3600 (seconds)", optarg);
			rc.timeout_ms = (unsigned int)v * 1000;
			break;
		case O_ZONE:
			if (n_zones + 1 >= sizeof(zones) / sizeof(zones[0]))
				return bad_usage("--transparent-zone '%s': at most %zu zones", optarg,
						 sizeof(zones) / sizeof(zones[0]) - 1);
			zones[n_zones++] = optarg;
			rc.transparent_zones = zones;
			break;
		case O_HELO:
			pc.helo_name = optarg;
			break;
		case O_LOG:
			if ((lvl = log_level_parse(optarg)) < 0)
				return bad_usage("--log-level '%s': not error, warn, info or debug",
						 optarg);
			log_set_level((enum log_level)lvl);
			break;
		default:
			return bad_option(opts, c, argv[optind - 1]);
		}
	}
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		list = xrealloc(list, (n + 1) * sizeof(*list));
		list[n++] = xstrdup(argv[i]);
	}
	if (n == 0)
		return bad_usage("no target: name a DOMAIN or ADDRESS, or -f LIST");
	pc.connect_timeout_ms = pc.smtp_timeout_ms = pc.tls_timeout_ms = (unsigned int)timeout * 1000;
	if (db_path && !(o.db = store_open(db_path, false))) {
		fprintf(stderr, "tlsgate-probe: cannot open store %s\n", db_path);
		return EXIT_SOFTWARE;
	}
	err = probe_run(&pc, (const char *const *)list, n, done, &o);
	store_close(o.db);
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
	if (err < 0) {
		fprintf(stderr, "tlsgate-probe: cannot probe: %s\n", strerror(-err));
		return EXIT_SOFTWARE;
	}
	if (!o.json && n > 1)
		printf("summary: %zu targets: %lu dane, %lu tls, %lu plaintext, %lu unknown\n", n,
		       o.counts[PROBE_CLASS_DANE], o.counts[PROBE_CLASS_TLS],
		       o.counts[PROBE_CLASS_PLAINTEXT], o.counts[PROBE_CLASS_UNKNOWN]);
	return o.worst;
}
