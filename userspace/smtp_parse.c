/* smtp_parse.c - stateless SMTP line parsing; see smtp_parse.h. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

int smtp_line_next(const uint8_t *buf, size_t len, size_t *line_len, size_t *total, bool *bare_lf)
{
	const uint8_t *nl = memchr(buf, '\n', len);
	size_t n;

	if (!nl)
		return -EAGAIN;
	n = (size_t)(nl - buf);
	*total = n + 1;
	if (n && buf[n - 1] == '\r') {
		*line_len = n - 1;
		*bare_lf = false;
	} else {
		*line_len = n;
		*bare_lf = true;
	}
	return 0;
}

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_VERB_HELO },	{ "EHLO", SMTP_VERB_EHLO },
	{ "LHLO", SMTP_VERB_LHLO },	{ "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT },	{ "DATA", SMTP_VERB_DATA },
	{ "BDAT", SMTP_VERB_BDAT },	{ "RSET", SMTP_VERB_RSET },
	{ "NOOP", SMTP_VERB_NOOP },	{ "QUIT", SMTP_VERB_QUIT },
	{ "STARTTLS", SMTP_VERB_STARTTLS }, { "VRFY", SMTP_VERB_VRFY },
	{ "EXPN", SMTP_VERB_EXPN },	{ "HELP", SMTP_VERB_HELP },
	{ "AUTH", SMTP_VERB_AUTH },	{ "XCLIENT", SMTP_VERB_XCLIENT },
};

/* What separates an SMTP command's words for the server: Postfix's smtpd
 * splits on isspace() and skips it before the verb too, so " MAIL" and
 * "MAIL\vFROM:" are MAIL to it, and must be to us. */
static bool smtp_space(char c)
{
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == '\n';
}

int smtp_command_parse(const char *line, size_t len, struct smtp_command *out)
{
	size_t v, i, a;

	while (len && smtp_space(line[len - 1]))
		len--;
	while (len && smtp_space(line[0])) {
		line++;
		len--;
	}
	if (!len)
		return -EINVAL;
	for (v = 0; v < len && !smtp_space(line[v]); v++)
		;
	out->verb = SMTP_VERB_UNKNOWN;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == v && !strncasecmp(line, verbs[i].name, v)) {
			out->verb = verbs[i].verb;
			break;
		}
	}
	a = v;
	while (a < len && smtp_space(line[a]))
		a++;
	out->arg = line + a;
	out->arg_len = len - a;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* As Postfix's SMTP client reads a reply (smtp_chat.c, smtp_chat_resp()):
 * exactly three digits, any of them ("650 x" is a reply, a failed one),
 * then '-' (more lines follow), ' ' or nothing (the last line). */
int smtp_reply_parse(const char *line, size_t len, struct smtp_reply_line *out)
{
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
		return -EINVAL;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -EINVAL;
	out->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	out->last = len == 3 || line[3] == ' ';
	out->text = len > 4 ? line + 4 : line + len;
	out->text_len = len > 4 ? len - 4 : 0;
	return 0;
}

static void copy_addr(char *addr, size_t addr_size, const char *s, size_t n, bool *truncated)
{
	*truncated = false;
	if (!addr_size)
		return;
	if (n >= addr_size) {
		n = addr_size - 1;
		*truncated = true;
	}
	memcpy(addr, s, n);
	addr[n] = '\0';
}

int smtp_path_parse(const char *arg, size_t len, const char *prefix, char *addr, size_t addr_size,
		    bool *truncated, const char **params, size_t *params_len)
{
	size_t plen = strlen(prefix), i = 0, start, end;
	bool quoted = false;

	/* "FROM" then optional spaces, ':' then optional spaces. */
	if (!plen || prefix[plen - 1] != ':')
		return -EINVAL;
	plen--;
	if (len < plen || strncasecmp(arg, prefix, plen))
		return -EINVAL;
	i = plen;
	while (i < len && smtp_space(arg[i]))
		i++;
	if (i >= len || arg[i] != ':')
		return -EINVAL;
	i++;
	while (i < len && smtp_space(arg[i]))
		i++;
	if (i < len && arg[i] == '<') {
		start = ++i;
		for (; i < len; i++) {
			if (quoted && arg[i] == '\\' && i + 1 < len) {
				i++;
				continue;
			}
			if (arg[i] == '"')
				quoted = !quoted;
			else if (!quoted && arg[i] == '>')
				break;
		}
		if (i >= len)
			return -EINVAL;
		end = i++;
	} else {
		/* No brackets: tolerated, up to the first space. */
		start = i;
		while (i < len && !smtp_space(arg[i]))
			i++;
		end = i;
		if (start == end)
			return -EINVAL;
	}
	copy_addr(addr, addr_size, arg + start, end - start, truncated);
	while (i < len && smtp_space(arg[i]))
		i++;
	*params = arg + i;
	*params_len = len - i;
	return 0;
}

static const struct {
	const char *name;
	unsigned int cap;
} caps[] = {
	{ "STARTTLS", SMTP_CAP_STARTTLS },
	{ "PIPELINING", SMTP_CAP_PIPELINING },
	{ "CHUNKING", SMTP_CAP_CHUNKING },
	{ "SIZE", SMTP_CAP_SIZE },
	{ "8BITMIME", SMTP_CAP_8BITMIME },
	{ "REQUIRETLS", SMTP_CAP_REQUIRETLS },
	{ "SMTPUTF8", SMTP_CAP_SMTPUTF8 },
	{ "DSN", SMTP_CAP_DSN },
	{ "ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES },
	{ "AUTH", SMTP_CAP_AUTH },
	{ "BINARYMIME", SMTP_CAP_BINARYMIME },
	{ "OTHER", SMTP_CAP_OTHER },
};

unsigned int smtp_ehlo_keyword(const char *text, size_t len)
{
	size_t k = 0, i;

	while (k < len && text[k] != ' ' && text[k] != '=')
		k++;
	if (!k)
		return 0;
	for (i = 0; i + 1 < sizeof(caps) / sizeof(caps[0]); i++)
		if (strlen(caps[i].name) == k && !strncasecmp(text, caps[i].name, k))
			return caps[i].cap;
	return SMTP_CAP_OTHER;
}

const char *smtp_cap_name(unsigned int cap)
{
	size_t i;

	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (caps[i].cap == cap)
			return caps[i].name;
	return NULL;
}

int smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, bool *last)
{
	size_t i = 0;
	uint64_t v = 0;

	while (len && arg[len - 1] == ' ')
		len--;
	if (!len || !is_digit(arg[0]))
		return -EINVAL;
	while (i < len && is_digit(arg[i])) {
		if (v > (UINT64_MAX >> 1) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(arg[i] - '0');
		i++;
	}
	*last = false;
	if (i < len) {
		if (arg[i] != ' ')
			return -EINVAL;
		while (i < len && arg[i] == ' ')
			i++;
		if (len - i != 4 || strncasecmp(arg + i, "LAST", 4))
			return -EINVAL;
		*last = true;
	}
	*size = v;
	return 0;
}
