/* fuzz_flowkey.c - libFuzzer target for flowkey_from_ip(): arbitrary bytes
 * as a queued IP packet. Checks that a parsed packet's payload lies inside
 * the input, that the key is the same from both directions, and that
 * formatting the key stays within FLOWKEY_STR_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flowkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct port_set ports;
	static int ready;
	struct tlsgate_flow_key rev;
	struct flowkey_packet p;
	char str[FLOWKEY_STR_MAX];
	uint8_t *copy;

	if (!ready) {
		port_set_add(&ports, 25);
		port_set_add(&ports, 587);
		ready = 1;
	}
	/* Exact-size copy: ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (flowkey_from_ip(size ? copy : NULL, size, &ports, &p) == 0) {
		if (p.payload < copy || p.payload + p.payload_len > copy + size ||
		    p.l4_offset + 20 > size)
			abort();
		flowkey_make(&rev, p.daddr, p.dport, p.saddr, p.sport);
		if (memcmp(&rev, &p.key, sizeof(rev)) != 0)
			abort();
		flowkey_format(&p.key, &ports, str, sizeof(str));
		if (strlen(str) >= sizeof(str))
			abort();
	}
	free(copy);
	return 0;
}
