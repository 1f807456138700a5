/* fuzz_dnslearn.c - DNS answers as the tagger copies them, into the passive
 * learner (parser + MX/CNAME/address correlation + store writes). */
#include <stddef.h>
#include <stdint.h>

#include "dnslearn.h"
#include "store.h"

static int no_probe(void *arg, const char *domain)
{
	(void)arg;
	(void)domain;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct store *st;
	static struct dnslearn *dl;
	if (!st) {
		st = store_open(":memory:", false);
		dl = dnslearn_open(-1, st, no_probe, NULL);
	}
	/* Two messages from one input: state carries over (MX then A). */
	size_t half = size / 2;
	dnslearn_message(dl, data, half, 1000);
	dnslearn_message(dl, data + half, size - half, 1001);
	return 0;
}
