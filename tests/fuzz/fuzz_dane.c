/* fuzz_dane.c - libFuzzer target for the DANE matcher.
 * Input layout (all counts bounded by what is left):
 *   flags(1): bit 0 no_name_checks, bits 1-2 number of reference names
 *   n_tlsa(1), n_chain(1)
 *   n_tlsa x { usage(1) selector(1) mtype(1) len(2, BE) data(len) }
 *   n_chain x { len(2, BE) der(len) }
 * The verdict must be one of the states, and consistent with itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dane.h"

#define MAX_RECS 16
#define MAX_CERTS (DANE_CHAIN_MAX + 2)

static const char *const names[] = { "example.com", "mx.example.org", "server.example" };

static size_t take(const uint8_t **p, size_t *left, size_t want)
{
	size_t n = want < *left ? want : *left;

	*p += n;
	*left -= n;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dane_tlsa tlsa[MAX_RECS];
	const uint8_t *chain[MAX_CERTS];
	size_t lens[MAX_CERTS];
	struct dane_input in = { .tlsa = tlsa, .chain = chain, .chain_len = lens, .names = names };
	struct dane_verdict v;
	const uint8_t *p = data;
	size_t left = size, i, n_tlsa, n_chain, len;
	int rc;

	if (size < 3)
		return 0;
	in.no_name_checks = p[0] & 1;
	in.n_names = (p[0] >> 1) & 3;
	if (in.n_names > 3)
		in.n_names = 3;
	n_tlsa = p[1] % (MAX_RECS + 1);
	n_chain = p[2] % (MAX_CERTS + 1);
	take(&p, &left, 3);
	for (i = 0; i < n_tlsa; i++) {
		const uint8_t *h = p;

		if (take(&p, &left, 5) < 5)
			return 0;
		len = (size_t)h[3] << 8 | h[4];
		tlsa[i] = (struct dane_tlsa){ h[0], h[1], h[2], p, 0 };
		tlsa[i].len = take(&p, &left, len);
	}
	for (i = 0; i < n_chain; i++) {
		const uint8_t *h = p;

		if (take(&p, &left, 2) < 2)
			return 0;
		len = (size_t)h[0] << 8 | h[1];
		chain[i] = p;
		lens[i] = take(&p, &left, len);
	}
	in.n_tlsa = n_tlsa;
	in.n_chain = n_chain;
	in.now = 4000000000; /* 2096: inside the seed chain's validity */

	rc = dane_verify(&in, &v);
	if (rc != 0) {
		if (v.result != DANE_NO_MATCH)
			abort();
		return 0;
	}
	if ((int)v.result < DANE_MATCH || v.result > DANE_CERT_ERROR)
		abort();
	if (v.depth < -1 || v.depth > (int)n_chain || v.record >= (int)n_tlsa || v.n_usable > n_tlsa)
		abort();
	if (v.result == DANE_MATCH || v.result == DANE_NAME_MISMATCH || v.result == DANE_EXPIRED) {
		const struct dane_tlsa *r;

		if (v.record < 0 || v.depth < 0)
			abort();
		r = &tlsa[v.record];
		if (!dane_tlsa_usable(r) || r->usage != v.usage)
			abort();
		if (r->usage == DANE_USAGE_DANE_EE && v.depth != 0)
			abort();
		/* DANE-TA needs a reference name to pass. */
		if (v.result == DANE_MATCH && r->usage == DANE_USAGE_DANE_TA && in.n_names == 0)
			abort();
	}
	if (n_tlsa == 0 && v.result != DANE_NO_RECORDS)
		abort();
	return 0;
}
