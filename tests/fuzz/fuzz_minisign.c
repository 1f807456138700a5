/* fuzz_minisign.c - minisign signature and public key parsers, then
 * verification of the parsed signature over the input itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "minisign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct minisign_sig sig;
	struct minisign_pubkey pk;
	char err[256];

	if (minisign_pubkey_parse((const char *)data, size, &pk, err, sizeof(err)) < 0 &&
	    (err[0] == '\0' || strchr(err, '\n')))
		abort();
	if (minisign_sig_parse((const char *)data, size, &sig, err, sizeof(err)) == 0) {
		if (strlen(sig.trusted_comment) != sig.trusted_comment_len)
			abort();
		/* a key with the signature's id: exercises both Ed25519 checks */
		memset(&pk, 0x42, sizeof(pk));
		memcpy(pk.key_id, sig.key_id, sizeof(pk.key_id));
		if (minisign_verify(&pk, &sig, data, size, err, sizeof(err)) == 0)
			abort(); /* cannot hold for this key */
	}
	return 0;
}
