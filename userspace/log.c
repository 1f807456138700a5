/* log.c - see log.h for the contract. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_progname = "tlsgate";
static enum log_level log_level = LOG_LEVEL_INFO;
static bool log_syslog;

void log_open(const char *progname, enum log_level level, bool use_syslog)
{
	log_progname = progname;
	log_level = level;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }

int log_level_parse(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

static void log_write(enum log_level level, const char *buf)
{
	static const char *const tags[] = { "fatal: ", "warning: ", "", "debug: " };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

	fprintf(stderr, "%s: %s%s\n", log_progname, tags[level], buf);
	if (log_syslog)
		syslog(prio[level], "%s%s", tags[level], buf);
}

/* log_hold(): the newest warning, not written yet (under log_hold_lock:
 * a thread started early may log while the main thread starts). */
static pthread_mutex_t log_hold_lock = PTHREAD_MUTEX_INITIALIZER;
static bool log_holding;
static char log_held[1024];

static void log_hold_flush_locked(void)
{
	if (log_held[0])
		log_write(LOG_LEVEL_WARN, log_held);
	log_held[0] = '\0';
}

void log_hold(bool on)
{
	pthread_mutex_lock(&log_hold_lock);
	log_hold_flush_locked();
	log_holding = on;
	pthread_mutex_unlock(&log_hold_lock);
}

void log_hold_flush(void)
{
	pthread_mutex_lock(&log_hold_lock);
	log_hold_flush_locked();
	pthread_mutex_unlock(&log_hold_lock);
}

bool log_hold_fatal(void)
{
	pthread_mutex_lock(&log_hold_lock);
	bool had = log_held[0] != '\0';
	if (had)
		log_write(LOG_LEVEL_ERROR, log_held);
	log_held[0] = '\0';
	pthread_mutex_unlock(&log_hold_lock);
	return had;
}

static void log_vemit(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char buf[1024];

	if (level > log_level)
		return;
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		return;
	if (errnum && (size_t)n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(errnum));
	/* Whatever comes next shows the held warning was not the last word. */
	pthread_mutex_lock(&log_hold_lock);
	log_hold_flush_locked();
	if (log_holding && level == LOG_LEVEL_WARN)
		snprintf(log_held, sizeof(log_held), "%s", buf);
	else
		log_write(level, buf);
	pthread_mutex_unlock(&log_hold_lock);
}

#define LOG_FN(name, level, use_errno)                                \
	void name(const char *fmt, ...)                               \
	{                                                             \
		int saved = errno;                                    \
		va_list ap;                                           \
		va_start(ap, fmt);                                    \
		log_vemit(level, use_errno ? saved : 0, fmt, ap);     \
		va_end(ap);                                           \
		errno = saved;                                        \
	}

LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_warnx_rl(struct log_ratelimit *rl, const char *fmt, ...)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - rl->window_start >= 10) {
		if (rl->suppressed)
			log_warnx("%lu similar messages suppressed", rl->suppressed);
		rl->window_start = now.tv_sec;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	if (rl->printed >= LOG_RATELIMIT_BURST) {
		rl->suppressed++;
		return;
	}
	rl->printed++;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
}

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (!p)
		fatal("malloc(%zu)", size);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		fatal("calloc(%zu, %zu)", nmemb, size);
	return p;
}

void *xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);
	if (!p)
		fatal("realloc(%zu)", size);
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		fatal("strdup");
	return p;
}

int err_line(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		for (char *c = err; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
	}
	return rc;
}
