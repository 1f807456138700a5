/* fuzz_web_params - the recipient lookup's parameter parsing: a
 * comma-separated address list (UTF-8, IDN, A-labels, junk) as it arrives
 * in ?address=... after URL decoding.
 *
 * Checked on every input: no crash or leak; at most WEB_ADDRESSES_MAX
 * addresses; every accepted address fits its bound and has one '@'; every
 * domain is lower-case LDH A-labels within DNS limits; and normalization
 * is idempotent (parsing "x@" + domain gives the same domain, when that
 * address is within the bound). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web.h"

static void check_domain(const char *d)
{
	size_t len = strlen(d), label = 0, labels = 1;
	if (len == 0 || len > 253)
		abort();
	for (size_t i = 0; i < len; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0 || label > 63)
				abort();
			labels++;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else {
			abort();
		}
	}
	if (label == 0 || label > 63 || labels < 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct web_address list[WEB_ADDRESSES_MAX];
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	size_t n = 0;
	const char *why = NULL;
	int rc = web_addresses_add(s, list, &n, WEB_ADDRESSES_MAX, &why);
	if (rc < 0 && !why)
		abort();
	if (n > WEB_ADDRESSES_MAX)
		abort();
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (strlen(list[i].address) > WEB_ADDRESS_MAX)
			abort();
		const char *at = strchr(list[i].address, '@');
		if (!at || strchr(at + 1, '@'))
			abort();
		check_domain(list[i].domain);
		/* A Unicode domain's A-label form may be too long for an
		 * address "x@" + it even though the address typed was not. */
		if (strlen(list[i].domain) + 2 > WEB_ADDRESS_MAX)
			continue;
		char again[STORE_NAME_MAX + 4] = "x@";
		strcat(again, list[i].domain);
		struct web_address b;
		if (web_address_parse(again, &b, NULL) != 0 || strcmp(b.domain, list[i].domain))
			abort();
	}
	/* The single-address parser on the whole input, too. */
	struct web_address one;
	if (web_address_parse(s, &one, NULL) == 0)
		check_domain(one.domain);
	free(s);
	return 0;
}
