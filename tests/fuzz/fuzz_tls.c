/* fuzz_tls - TLS parsing: the input is a server (even first byte) or
 * client (odd) TLS stream after an accepted STARTTLS, fed in pieces of
 * varying size; the stateless parsers see it too (hellos, certificate
 * list in both layouts, the DER walk, handshake reassembly). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "session.h"
#include "summary.h"
#include "tls_parse.h"

static const char *const prefix[][2] = {
	{ "220 mx ESMTP\r\n", NULL },
	{ NULL, "EHLO c\r\n" },
	{ "250-mx\r\n250 STARTTLS\r\n", NULL },
	{ NULL, "STARTTLS\r\n" },
	{ "220 go\r\n", NULL },
};

static void noop_cert(void *ctx, const uint8_t *der, size_t len)
{
	const uint8_t *spki;
	size_t sl;

	tls_cert_spki(der, len, &spki, &sl);
}

static int noop_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_client_hello ch;
	struct tls_server_hello sh;
	struct tls_hs_buf hb;
	struct session *s;
	uint32_t seq[2] = { 1, 1 };
	const uint8_t *spki;
	size_t sl, i, step;
	json_t *o;

	if (size < 2)
		return 0;
	tls_client_hello_parse(data + 1, size - 1, &ch);
	tls_server_hello_parse(data + 1, size - 1, &sh);
	tls_certificate_parse(data + 1, size - 1, false, noop_cert, NULL);
	tls_certificate_parse(data + 1, size - 1, true, noop_cert, NULL);
	tls_cert_spki(data + 1, size - 1, &spki, &sl);
	tls_hs_buf_init(&hb, 4096);
	for (i = 1; i < size; i += step) {
		step = 1 + (data[i] % 61);
		if (step > size - i)
			step = size - i;
		if (tls_hs_buf_feed(&hb, data + i, step, noop_msg, NULL))
			break;
	}
	tls_hs_buf_release(&hb);

	s = session_new(NULL, false);
	if (!s)
		return 0;
	for (i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++) {
		int dir = prefix[i][0] ? TLSGATE_DIR_TO_CLIENT : TLSGATE_DIR_TO_SERVER;
		const char *t = prefix[i][0] ? prefix[i][0] : prefix[i][1];
		struct tcp_segment g = { .dir = (enum tlsgate_dir)dir, .seq = seq[dir], .flags = SESSION_TCP_ACK,
					 .payload = (const uint8_t *)t, .len = strlen(t) };

		session_segment(s, &g);
		seq[dir] += (uint32_t)g.len;
	}
	for (i = 1; i < size; i += step) {
		int dir = data[0] & 1 ? TLSGATE_DIR_TO_SERVER : TLSGATE_DIR_TO_CLIENT;
		struct tcp_segment g = { .dir = (enum tlsgate_dir)dir, .seq = seq[dir], .flags = SESSION_TCP_ACK };

		step = 1 + ((data[0] >> 1) * 37 + i) % 1400;
		if (step > size - i)
			step = size - i;
		g.payload = data + i;
		g.len = step;
		session_segment(s, &g);
		seq[dir] += (uint32_t)step;
	}
	o = session_summary_json(s, NULL);
	json_decref(o);
	session_free(s);
	return 0;
}
