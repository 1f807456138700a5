/* fuzz_reasm - reassembly under arbitrary segment sequences, checked
 * against a simple model: the window bound holds, delivered bytes are
 * exactly the first copy of each byte, and no byte is delivered twice.
 *
 * Input: records of 4 bytes [op][off_hi][off_lo][len] + len data bytes;
 * op bit 0: skip instead of add (len = bytes to skip). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reasm.h"

#define SPACE 65536
#define LIMIT 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t model[SPACE];
	static uint8_t have[SPACE];
	struct reasm r;
	uint32_t isn = 0xfffffc00u; /* wraps inside the stream */
	size_t i = 0, pos = 0; /* pos: stream offset of base */
	bool exact = true;     /* until data is dropped at a bound */

	memset(have, 0, sizeof(have));
	reasm_init(&r, LIMIT);
	reasm_start(&r, isn);
	while (i + 4 <= size) {
		uint8_t op = data[i];
		size_t off = (size_t)data[i + 1] << 8 | data[i + 2], len = data[i + 3], k;
		const uint8_t *p;
		size_t n;

		i += 4;
		if (op & 1) {
			p = reasm_peek(&r, &n);
			for (k = 0; exact && k < n && k < len; k++) {
				if (!have[pos + k] || model[pos + k] != p[k])
					__builtin_trap(); /* delivered a byte never sent or not the first copy */
			}
			if (pos + len >= SPACE)
				break;
			reasm_skip(&r, len);
			pos += len;
			continue;
		}
		if (len > size - i)
			len = size - i;
		if (off + len > SPACE)
			break;
		/* Dropped at a bound: which copy is kept is no longer the
		 * model's business, only the bounds are. */
		if (reasm_add(&r, isn + (uint32_t)off, data + i, len) & REASM_F_LOST)
			exact = false;
		/* The model keeps the first copy of what fits in the window. */
		for (k = 0; k < len; k++) {
			size_t at = off + k;

			if (at >= pos && at < pos + LIMIT && !have[at]) {
				have[at] = 1;
				model[at] = data[i + k];
			}
		}
		i += len;
		if (reasm_memory(&r) > LIMIT + REASM_HISTORY) /* window + history */
			__builtin_trap();
		p = reasm_peek(&r, &n);
		if (n > LIMIT)
			__builtin_trap();
		for (k = 0; exact && k < n; k++)
			if (!have[pos + k] || model[pos + k] != p[k])
				__builtin_trap();
	}
	reasm_release(&r);
	return 0;
}
