/* bench_decide.c - cost of one verdict decision (decide()) with a realistic
 * policy, and of the policy lookups the gate does per flow; prints ns per
 * call. Best of 5 runs of N calls each (CLOCK_MONOTONIC). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "decide.h"
#include "policy.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "policy/examples/full.json";
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return 1;
	}
	static char json[1 << 20];
	size_t n = fread(json, 1, sizeof(json), f);
	fclose(f);
	struct policy *p = NULL;
	char err[256];
	if (policy_parse(json, n, &p, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct decide_input in = {
		.direction = DECIDE_OUTBOUND,
		.sender = DECIDE_SENDER_NORMAL,
		.sender_domain = "example.org",
		.recipient_domain = "partner.example.com",
		.mx_name = "mx1.partner.example.com",
		.af = AF_INET,
		.addr = { 198, 51, 100, 7 },
		.dane = DECIDE_DANE_NONE,
		.history_level = DECIDE_LEVEL_TLS,
		.history_version = 0x0304,
		.policy = p,
		.phase = DECIDE_PHASE_TLS,
		.starttls_offered = true,
		.starttls_issued = true,
		.starttls_reply = 220,
		.tls_version = 0x0304,
		.tls_cipher = 0x1302,
	};
	const long N = 2000000;
	double best = 1e18, best_lookup = 1e18;
	volatile int sink = 0;
	for (int run = 0; run < 5; run++) {
		double t0 = now_ns();
		for (long i = 0; i < N; i++) {
			in.tls_cipher = (uint16_t)(0x1301 + (i & 1));
			struct decision d = decide(&in);
			sink += d.action;
		}
		double t = (now_ns() - t0) / (double)N;
		if (t < best)
			best = t;
		t0 = now_ns();
		for (long i = 0; i < N; i++) {
			struct policy_override ov;
			sink += policy_sender_domain_secure(p, (i & 1) ? "secure.example.org" : "example.org");
			sink += policy_domain_override(p, "partner.example.com", &ov);
		}
		t = (now_ns() - t0) / (double)N;
		if (t < best_lookup)
			best_lookup = t;
	}
	printf("decide_ns %.1f lookups_ns %.1f\n", best, best_lookup);
	policy_free(p);
	return sink == -1;
}
