/* fuzz_smtp - the engine over arbitrary two-sided dialogs, plus the SMTP
 * line parsers on every line of the input.
 *
 * Input: byte 0 selects options (bit 0 mid-stream, bits 1-2 small limits);
 * then chunks of [hdr][bytes]: hdr bit 7 = direction (1 = server), bit 6 =
 * deliver out of order (held back until the next chunk of that direction),
 * bits 0-5 = length. Sequence numbers start near 2^32 to exercise wrap. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "session.h"
#include "smtp_parse.h"
#include "summary.h"

static void parse_lines(const uint8_t *data, size_t size)
{
	size_t ll, total;
	bool bare;

	while (size && !smtp_line_next(data, size, &ll, &total, &bare)) {
		struct smtp_command c;
		struct smtp_reply_line r;
		char addr[64];
		const char *params;
		size_t plen;
		bool trunc, last;
		uint64_t sz;

		if (!smtp_command_parse((const char *)data, ll, &c)) {
			smtp_path_parse(c.arg, c.arg_len, "FROM:", addr, sizeof(addr), &trunc, &params, &plen);
			smtp_path_parse(c.arg, c.arg_len, "TO:", addr, sizeof(addr), &trunc, &params, &plen);
			smtp_bdat_parse(c.arg, c.arg_len, &sz, &last);
		}
		if (!smtp_reply_parse((const char *)data, ll, &r))
			smtp_ehlo_keyword(r.text, r.text_len);
		data += total;
		size -= total;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct session_limits lim = { 0, 0 };
	struct session *s;
	uint32_t seq[2] = { 0xffffff00u, 0x7fffff00u };
	struct { const uint8_t *p; size_t n; uint32_t seq; bool held; } held[2] = { { 0 } };
	size_t i;
	json_t *o;

	if (!size)
		return 0;
	parse_lines(data, size);
	if (data[0] & 2)
		lim.dialog_bytes = 64;
	if (data[0] & 4)
		lim.tls_bytes = 256;
	s = session_new(&lim, data[0] & 1);
	if (!s)
		return 0;
	if (!(data[0] & 1)) {
		struct tcp_segment syn = { .dir = TLSGATE_DIR_TO_SERVER, .seq = seq[0]++, .flags = SESSION_TCP_SYN };
		struct tcp_segment sa = { .dir = TLSGATE_DIR_TO_CLIENT, .seq = seq[1]++,
					  .flags = SESSION_TCP_SYN | SESSION_TCP_ACK };

		session_segment(s, &syn);
		session_segment(s, &sa);
	}
	for (i = 1; i < size;) {
		int dir = data[i] >> 7;
		bool ooo = data[i] & 0x40;
		size_t n = data[i] & 0x3f;
		struct tcp_segment g = { .dir = (enum tlsgate_dir)dir, .flags = SESSION_TCP_ACK };

		i++;
		if (n > size - i)
			n = size - i;
		if (ooo && !held[dir].held) {
			held[dir].p = data + i;
			held[dir].n = n;
			held[dir].seq = seq[dir];
			held[dir].held = true;
		} else {
			g.seq = seq[dir];
			g.payload = data + i;
			g.len = n;
			session_segment(s, &g);
			if (held[dir].held) {
				g.seq = held[dir].seq;
				g.payload = held[dir].p;
				g.len = held[dir].n;
				session_segment(s, &g);
				held[dir].held = false;
			}
		}
		seq[dir] += (uint32_t)n;
		i += n;
		if (session_memory(s) > 8 * 65536 + 65536)
			__builtin_trap(); /* the documented bound */
	}
	o = session_summary_json(s, NULL);
	json_decref(o);
	session_free(s);
	return 0;
}
