/* smtp_reply.c - see smtp_reply.h. */
#include "smtp_reply.h"

#include <errno.h>
#include <string.h>

void smtp_reader_init(struct smtp_reader *rd)
{
	memset(rd, 0, sizeof(*rd));
}

bool smtp_reader_busy(const struct smtp_reader *rd)
{
	return rd->line_len > 0 || rd->cur.n_lines > 0;
}

static void text_add(struct smtp_reply *r, const char *s, size_t n)
{
	size_t room = SMTP_REPLY_TEXT_MAX - 1 - r->text_len;

	if (n + 1 > room)
		n = room > 0 ? room - 1 : 0;
	if (room == 0)
		return;
	memcpy(r->text + r->text_len, s, n);
	r->text_len += n;
	r->text[r->text_len++] = '\n';
	r->text[r->text_len] = '\0';
}

/* One complete line (no line end). Returns 1 when it ends the reply. */
static int line_done(struct smtp_reader *rd)
{
	const char *l = rd->line;
	size_t n = rd->line_len;
	int code;
	char sep;

	if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9')
		return -EBADMSG;
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	sep = n > 3 ? l[3] : ' ';
	if (sep != ' ' && sep != '-')
		return -EBADMSG;
	if (rd->cur.n_lines > 0 && code != rd->cur.code)
		return -EBADMSG;
	if (rd->cur.n_lines == SMTP_REPLY_LINES_MAX)
		return -EBADMSG;
	rd->cur.code = code;
	rd->cur.n_lines++;
	text_add(&rd->cur, n > 4 ? l + 4 : "", n > 4 ? n - 4 : 0);
	rd->line_len = 0;
	return sep == ' ' ? 1 : 0;
}

int smtp_reader_feed(struct smtp_reader *rd, const uint8_t *data, size_t len, size_t *consumed,
		     struct smtp_reply *out)
{
	size_t i;

	if (!rd || (!data && len) || !consumed || !out)
		return -EINVAL;
	*consumed = 0;
	if (rd->failed)
		return -EBADMSG;
	for (i = 0; i < len; i++) {
		char c = (char)data[i];
		int rc;

		if (c != '\n') {
			/* Room for the line and a CR that may precede LF. */
			if (rd->line_len >= SMTP_REPLY_LINE_MAX + 1 || c == '\0') {
				rd->failed = true;
				return -EBADMSG;
			}
			rd->line[rd->line_len++] = c;
			continue;
		}
		if (rd->line_len > 0 && rd->line[rd->line_len - 1] == '\r')
			rd->line_len--;
		if (rd->line_len > SMTP_REPLY_LINE_MAX) {
			rd->failed = true;
			return -EBADMSG;
		}
		rc = line_done(rd);
		if (rc < 0) {
			rd->failed = true;
			return rc;
		}
		if (rc == 1) {
			*out = rd->cur;
			memset(&rd->cur, 0, sizeof(rd->cur));
			*consumed = i + 1;
			return 1;
		}
	}
	*consumed = len;
	return 0;
}

bool smtp_reply_line(const struct smtp_reply *r, size_t i, char *buf, size_t size)
{
	const char *p = r->text, *end = r->text + r->text_len, *nl;
	size_t n;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		if (i-- == 0) {
			n = (size_t)(nl - p);
			if (size == 0)
				return true;
			if (n >= size)
				n = size - 1;
			memcpy(buf, p, n);
			buf[n] = '\0';
			return true;
		}
		p = nl + 1;
	}
	return false;
}
