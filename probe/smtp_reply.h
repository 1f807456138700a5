/* smtp_reply.h - incremental reader for SMTP server replies (RFC 5321 4.2).
 *
 * The probe talks to servers on the internet: their bytes are hostile. The
 * reader takes the stream in pieces of any size (split anywhere) and returns
 * one complete reply at a time: "250-a\r\n250 b\r\n" is one reply, code 250,
 * lines "a" and "b". Lines end in CRLF; a bare LF is accepted (as Postfix
 * does). A line is three digits 200..599, then '-' (more lines follow), ' '
 * or the end of the line; every line of a reply carries the same code.
 *
 * Bounds: a line is at most SMTP_REPLY_LINE_MAX bytes before its line end, a
 * reply at most SMTP_REPLY_LINES_MAX lines; longer is refused as malformed.
 * The reader's memory is fixed (no allocation); work is linear in the input.
 *
 * Errors are final: after -EBADMSG the reader stays failed until
 * smtp_reader_init(). */
#ifndef TLSGATE_SMTP_REPLY_H
#define TLSGATE_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX 1000
#define SMTP_REPLY_LINES_MAX 64
#define SMTP_REPLY_TEXT_MAX 8192

struct smtp_reply {
	int code;
	size_t n_lines;
	/* The lines' texts after "NNN-"/"NNN ", each ending in '\n'; truncated
	 * (never overflowed) beyond SMTP_REPLY_TEXT_MAX - 1, NUL-terminated. */
	char text[SMTP_REPLY_TEXT_MAX];
	size_t text_len;
};

struct smtp_reader {
	char line[SMTP_REPLY_LINE_MAX + 2];
	size_t line_len;
	struct smtp_reply cur;
	bool failed;
};

void smtp_reader_init(struct smtp_reader *rd);

/* Consumes bytes from data[0..len). Returns 1 when a reply is complete
 * (*out filled; *consumed bytes were used, the rest belongs to what
 * follows), 0 when all len bytes were taken and more are needed, -EBADMSG
 * on malformed input, -EINVAL on NULL arguments. */
int smtp_reader_feed(struct smtp_reader *rd, const uint8_t *data, size_t len, size_t *consumed,
		     struct smtp_reply *out);

/* True while part of a reply has been read (bytes pending). */
bool smtp_reader_busy(const struct smtp_reader *rd);

/* Line i (0-based) of a reply into buf (without the newline). Returns false
 * when there is no such line. */
bool smtp_reply_line(const struct smtp_reply *r, size_t i, char *buf, size_t size);

#endif
