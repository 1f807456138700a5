/* log.h - logging and allocation helpers shared by every tlsgate program.
 *
 * Messages go to stderr (one line each, "tlsgated: warning: ...") and, when
 * log_open() was called with use_syslog, to syslog. log_warn() appends the
 * errno text, log_warnx() does not. fatal()/fatalx() log and exit(1): only
 * for what cannot continue at start-up, never for per-packet problems.
 * The x*alloc() wrappers never return NULL (they call fatal()). */
#ifndef TLSGATE_LOG_H
#define TLSGATE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_open(const char *progname, enum log_level level, bool use_syslog);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns -1 on anything else. */
int log_level_parse(const char *s);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Start-up: a step that fails logs why as a warning (the module cannot
 * know that its caller gives up) and returns an error; that line is the
 * fatal one. Between log_hold(true) and log_hold(false) the newest warning
 * is held back: any later line, or log_hold_flush() (call it when a step
 * succeeded), writes it as a warning; log_hold_fatal() writes it as fatal
 * instead and returns false when there was none. The order of lines is
 * kept; only the newest warning waits. */
void log_hold(bool on);
void log_hold_flush(void);
bool log_hold_fatal(void);

/* Rate-limited warning: at most `burst` lines per 10 s for one call site;
 * the number suppressed is reported with the next line that gets through. */
struct log_ratelimit {
	long window_start;
	unsigned int printed;
	unsigned long suppressed;
};
#define LOG_RATELIMIT_BURST 10
void log_warnx_rl(struct log_ratelimit *rl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Formats an error for the caller's buffer as one line (control
 * characters from the input become '?') and returns rc. */
int err_line(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);

#endif
