/* tlsgatectl - operator CLI for tlsgated, over its control socket.
 *
 *   tlsgatectl [--control PATH] [--json] stats|flows
 *
 * Exit status: 0 ok, 1 the daemon could not be reached or answered with an
 * error, 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: tlsgatectl [--control PATH] [--json] COMMAND\n"
		     "commands:\n"
		     "  stats   flows by state, queue vs kernel-only packets and bytes, drops\n"
		     "  flows   every tracked or offloaded flow with its counters\n"
		     "options:\n"
		     "  -s, --control PATH   control socket (default " CONTROL_SOCKET_DEFAULT ")\n"
		     "  -j, --json           print the daemon's JSON\n");
}

static long long num(json_t *obj, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = obj;
	for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur;
	     t = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, t);
	return cur ? (long long)json_integer_value(cur) : -1;
}

static void human_bytes(long long b, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void print_stats(json_t *root)
{
	char b1[32], b2[32], b3[32];
	printf("flows     tracked %lld: inspecting %lld, offloaded %lld, blocked %lld\n",
	       num(root, "flows.tracked"), num(root, "flows.inspecting"),
	       num(root, "flows.offloaded"), num(root, "flows.blocked"));
	printf("          since start: %lld seen, %lld offloaded, %lld closed while inspected,\n"
	       "          %lld expired, %lld evicted at the bound, %lld adopted, %lld at a limit\n",
	       num(root, "flows.total"), num(root, "flows.offloaded_total"),
	       num(root, "flows.closed"), num(root, "flows.expired"), num(root, "flows.evicted"),
	       num(root, "flows.adopted"), num(root, "flows.limit"));
	human_bytes(num(root, "queue.bytes"), b1, sizeof(b1));
	printf("queue     %lld packets (%s) through NFQUEUE, %lld verdicts, %lld verdict errors\n",
	       num(root, "queue.packets"), b1, num(root, "queue.verdicts"),
	       num(root, "queue.verdict_errors"));
	printf("          kernel drops: %lld queue full (failed open), %lld socket overrun; "
	       "%lld unparsed accepted\n",
	       num(root, "queue.drops"), num(root, "queue.user_drops"),
	       num(root, "queue.unparsed"));
	human_bytes(num(root, "kernel.inspect.bytes"), b1, sizeof(b1));
	human_bytes(num(root, "kernel.pass.bytes"), b2, sizeof(b2));
	human_bytes(num(root, "kernel.block.bytes"), b3, sizeof(b3));
	printf("kernel    marked for inspection %lld packets (%s)\n"
	       "          kernel-only (offloaded) %lld packets (%s)\n"
	       "          dropped (blocked)       %lld packets (%s)\n"
	       "          pure ACKs of inspected flows kept in the kernel %lld\n"
	       "          fragments %lld, unparseable %lld (both inspected)\n",
	       num(root, "kernel.inspect.packets"), b1, num(root, "kernel.pass.packets"), b2,
	       num(root, "kernel.block.packets"), b3, num(root, "kernel.ack_skipped.packets"),
	       num(root, "kernel.fragment.packets"),
	       num(root, "kernel.unparsed.packets"));
}

static void print_flows(json_t *arr)
{
	size_t i;
	json_t *f;
	printf("%-24s %-24s %-8s %8s %10s %10s %12s %-7s %s\n", "CLIENT", "SERVER", "VERDICT",
	       "QUEUED", "Q-BYTES", "K-PACKETS", "K-BYTES", "TLS", "CIPHER");
	json_array_foreach(arr, i, f)
	{
		printf("%-24s %-24s %-8s %8lld %10lld %10lld %12lld %-7s %s%s\n",
		       json_string_value(json_object_get(f, "client")),
		       json_string_value(json_object_get(f, "server")),
		       json_string_value(json_object_get(f, "verdict")), num(f, "queued_packets"),
		       num(f, "queued_bytes"), num(f, "kernel_packets"), num(f, "kernel_bytes"),
		       json_string_value(json_object_get(f, "tls_version")),
		       json_string_value(json_object_get(f, "tls_cipher")),
		       json_is_true(json_object_get(f, "adopted")) ? " (adopted)" : "");
	}
	printf("%zu flow(s)\n", json_array_size(arr));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = CONTROL_SOCKET_DEFAULT;
	bool json = false;
	int c;

	log_open("tlsgatectl", LOG_LEVEL_WARN, false);
	while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind++];
	/* Options may also follow the command: tlsgatectl stats --json */
	for (; optind < argc; optind++) {
		if (!strcmp(argv[optind], "--json") || !strcmp(argv[optind], "-j")) {
			json = true;
		} else {
			fprintf(stderr, "tlsgatectl: unexpected argument '%s'\n", argv[optind]);
			return 2;
		}
	}
	if (strcmp(cmd, "stats") && strcmp(cmd, "flows")) {
		fprintf(stderr, "tlsgatectl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	char *answer = control_request(path, cmd);
	if (!answer) {
		fprintf(stderr, "tlsgatectl: cannot reach tlsgated at %s: %s\n", path,
			strerror(errno));
		return 1;
	}
	json_error_t err;
	json_t *root = json_loads(answer, 0, &err);
	if (!root) {
		fprintf(stderr, "tlsgatectl: bad answer from tlsgated: %s\n", err.text);
		free(answer);
		return 1;
	}
	int status = 0;
	if (json_is_object(root) && json_object_get(root, "error")) {
		fprintf(stderr, "tlsgatectl: %s\n",
			json_string_value(json_object_get(root, "error")));
		status = 1;
	} else if (json) {
		printf("%s\n", answer);
	} else if (!strcmp(cmd, "stats")) {
		print_stats(root);
	} else {
		print_flows(root);
	}
	json_decref(root);
	free(answer);
	return status;
}
