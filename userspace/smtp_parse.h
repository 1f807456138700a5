/* smtp_parse.h - stateless parsing of SMTP lines (RFC 5321, 3207, 2920,
 * 3030): line framing, commands, replies, reverse/forward paths, EHLO
 * keywords, BDAT arguments. The dialog state machine is in session.c.
 *
 * All functions take (pointer, length) input that need not be
 * NUL-terminated, never read beyond it, never allocate, and cannot fail
 * other than by returning -EINVAL / -EAGAIN as stated. */
#ifndef TLSGATE_SMTP_PARSE_H
#define TLSGATE_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: command and reply lines 512 octets, text lines 1000,
 * both including CRLF. */
#define SMTP_COMMAND_LINE_MAX 512
#define SMTP_REPLY_LINE_MAX 512
#define SMTP_TEXT_LINE_MAX 1000

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_LHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_AUTH,
	SMTP_VERB_XCLIENT,
	/* Not a command: the "." that ends DATA content, as the session
	 * reports it, or the end of a BDAT chunk (smtp_command_parse never
	 * returns it). */
	SMTP_VERB_END_OF_DATA,
};

/* EHLO capabilities (keywords of the EHLO reply). */
enum smtp_cap {
	SMTP_CAP_STARTTLS = 1 << 0,
	SMTP_CAP_PIPELINING = 1 << 1,
	SMTP_CAP_CHUNKING = 1 << 2,
	SMTP_CAP_SIZE = 1 << 3,
	SMTP_CAP_8BITMIME = 1 << 4,
	SMTP_CAP_REQUIRETLS = 1 << 5,
	SMTP_CAP_SMTPUTF8 = 1 << 6,
	SMTP_CAP_DSN = 1 << 7,
	SMTP_CAP_ENHANCEDSTATUSCODES = 1 << 8,
	SMTP_CAP_AUTH = 1 << 9,
	SMTP_CAP_BINARYMIME = 1 << 10,
	SMTP_CAP_OTHER = 1 << 11,
};
#define SMTP_CAP_COUNT 12

/* Finds the next line. Returns 0 and sets *line_len (without the line
 * terminator), *total (with it) and *bare_lf (terminated by LF alone, which
 * real servers tolerate); -EAGAIN when buf holds no complete line. */
int smtp_line_next(const uint8_t *buf, size_t len, size_t *line_len, size_t *total, bool *bare_lf);

struct smtp_command {
	enum smtp_verb verb;
	const char *arg; /* points into the line, after the verb and spaces */
	size_t arg_len;
};
/* Splits a command line (verb case-insensitive). Unknown verbs give
 * SMTP_VERB_UNKNOWN, not an error; -EINVAL for an empty line. */
int smtp_command_parse(const char *line, size_t len, struct smtp_command *out);

struct smtp_reply_line {
	int code;  /* 0..999: any three digits are a reply (failed unless 2xx) */
	bool last; /* "250 " (or bare "250") rather than "250-" */
	const char *text;
	size_t text_len;
};
/* Parses one reply line; -EINVAL when it is not "DDD", "DDD " or "DDD-"
 * (D any digit), as Postfix's SMTP client reads replies. */
int smtp_reply_parse(const char *line, size_t len, struct smtp_reply_line *out);

/* Parses the argument of MAIL ("FROM:<path> params") or RCPT
 * ("TO:<path> params"); prefix is "FROM:" or "TO:" (case-insensitive,
 * spaces around the colon tolerated). The address without angle brackets
 * is copied into addr (NUL-terminated, truncated to addr_size - 1 with
 * *truncated set); "<>" gives "". Quoted local parts may contain '>' and
 * spaces. *params points at the parameters (may be empty). Returns
 * -EINVAL when the prefix is missing or the path is unterminated. */
int smtp_path_parse(const char *arg, size_t len, const char *prefix, char *addr, size_t addr_size,
		    bool *truncated, const char **params, size_t *params_len);

/* Maps an EHLO reply keyword line ("SIZE 1000", "AUTH PLAIN") to its
 * capability bit; SMTP_CAP_OTHER for anything else, 0 for an empty line. */
unsigned int smtp_ehlo_keyword(const char *text, size_t len);
/* Name of a single capability bit, e.g. "STARTTLS"; NULL for none. */
const char *smtp_cap_name(unsigned int cap);

/* Parses "chunk-size [LAST]"; -EINVAL on anything else (including sizes
 * that do not fit in 63 bits). */
int smtp_bdat_parse(const char *arg, size_t len, uint64_t *size, bool *last);

#endif
