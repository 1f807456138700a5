/* fuzz_smtp_reply.c - libFuzzer target for the probe's SMTP reply reader.
 * The first byte picks a chunk size; the rest is fed whole and then in
 * chunks of that size. Both ways must give the same replies (same codes,
 * line counts and texts) and the same error, within the header's bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../probe/smtp_reply.h" /* probe/ is not on the include path */

#define MAX_REPLIES 256

struct run {
	int n, err;
	int code[MAX_REPLIES];
	size_t lines[MAX_REPLIES];
	uint32_t text_hash[MAX_REPLIES];
};

static uint32_t hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static void feed(const uint8_t *data, size_t size, size_t chunk, struct run *out)
{
	static struct smtp_reader rd;
	static struct smtp_reply r;
	size_t off = 0, used;

	smtp_reader_init(&rd);
	memset(out, 0, sizeof(*out));
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		size_t pos = 0;

		while (pos < n) {
			int rc = smtp_reader_feed(&rd, data + off + pos, n - pos, &used, &r);

			if (used > n - pos)
				abort();
			if (rc < 0) {
				out->err = rc;
				return;
			}
			pos += used;
			if (rc == 1) {
				if (r.code < 200 || r.code > 599 || r.n_lines == 0 ||
				    r.n_lines > SMTP_REPLY_LINES_MAX || r.text_len >= SMTP_REPLY_TEXT_MAX ||
				    strlen(r.text) != r.text_len)
					abort();
				if (out->n < MAX_REPLIES) {
					out->code[out->n] = r.code;
					out->lines[out->n] = r.n_lines;
					out->text_hash[out->n] = hash(r.text, r.text_len);
				}
				out->n++;
			} else if (pos != n) {
				abort(); /* 0 means everything was taken */
			}
		}
		off += n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, pieces;
	size_t chunk;

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] % 17 + 1;
	feed(data + 1, size - 1, size, &whole);
	feed(data + 1, size - 1, chunk, &pieces);
	if (whole.n != pieces.n || whole.err != pieces.err ||
	    memcmp(whole.code, pieces.code, sizeof(whole.code)) ||
	    memcmp(whole.lines, pieces.lines, sizeof(whole.lines)) ||
	    memcmp(whole.text_hash, pieces.text_hash, sizeof(whole.text_hash)))
		abort();
	return 0;
}
