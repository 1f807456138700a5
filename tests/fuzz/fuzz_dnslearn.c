/* fuzz_dnslearn.c - DNS messages as the tagger copies them, into the
 * passive learner (parser + query matching + MX/CNAME/address correlation
 * + store writes). Each input is two messages on one exchange: the first
 * seen as a query leaving the inside, the second as the answer coming
 * back; the first input byte picks a few wire details (port, interface,
 * transport) so that mismatches are explored too. */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
	static int64_t now = 1000;
	if (!st) {
		st = store_open(":memory:", false);
		dl = dnslearn_open(-1, st, no_probe, NULL);
	}
	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;
	struct dnslearn_wire q = { .family = AF_INET, .sport = 40000, .dport = 53, .ifindex = 3,
				   .proto = (sel & 1) ? IPPROTO_TCP : IPPROTO_UDP };
	q.saddr[10] = q.saddr[11] = q.daddr[10] = q.daddr[11] = 0xff;
	q.saddr[12] = 192, q.saddr[14] = 2, q.saddr[15] = 10;
	q.daddr[12] = 203, q.daddr[14] = 113, q.daddr[15] = 10;
	struct dnslearn_wire a = q;
	memcpy(a.saddr, q.daddr, 16);
	memcpy(a.daddr, q.saddr, 16);
	a.sport = 53;
	a.dport = (sel & 2) ? 40001 : 40000;
	a.ifindex = (sel & 4) ? 3 : 4;
	/* State carries over between inputs (MX then A; the query table),
	 * time moves on so queries expire. */
	now += (sel >> 4) & 3;
	size_t half = size / 2;
	dnslearn_packet(dl, &q, data, half, now);
	dnslearn_packet(dl, &a, data + half, size - half, now);
	return 0;
}
