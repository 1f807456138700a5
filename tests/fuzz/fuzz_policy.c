/* fuzz_policy.c - the policy JSON parser and its lookups on arbitrary input;
 * also the trusted-comment parser on the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[POLICY_ERR_MAX], *tc;
	struct policy *p;
	struct policy_override ov;
	uint64_t serial;
	time_t expires;
	uint8_t addr[16] = { 0 };

	if (policy_parse((const char *)data, size, &p, err, sizeof(err)) == 0) {
		/* exercise every lookup on a parsed policy */
		policy_sender_domain_secure(p, "a.secure.example.org");
		policy_recipient_domain_secure(p, "Vault.Example.Org.");
		policy_domain_override(p, "x.example.com", &ov);
		policy_sender_address_secure(p, AF_INET, addr);
		policy_sender_address_secure(p, AF_INET6, addr);
		policy_cipher_banned(p, 0x000A);
		policy_free(p);
	} else if (p != NULL || err[0] == '\0' || strchr(err, '\n')) {
		abort(); /* a refusal is NULL plus a one-line reason */
	}
	tc = malloc(size + 1);
	if (!tc)
		return 0;
	memcpy(tc, data, size);
	tc[size] = '\0';
	policy_trusted_comment_parse(tc, &serial, &expires, err, sizeof(err));
	free(tc);
	return 0;
}
