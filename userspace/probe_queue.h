/* probe_queue.h - which tlsgate-probe runs start next, by class.
 *
 * Two classes of requests: MAIL (the gate's hook, which withholds STARTTLS
 * until a named MX's DANE state is known, DNS learning and the operator's
 * "tlsgatectl probe") and API (lookups and POST /api/v1/probe through the
 * web server, unauthenticated for lookups). Each class has its own queue
 * and bound, so a stream of API lookups of unknown domains cannot fill the
 * queue mail needs. Running probes share running_max slots; API probes may
 * hold at most api_running_max of them, so at least running_max -
 * api_running_max slots are always mail's, and a free slot goes to mail
 * first. Within a class: first come, first started; a domain queued twice
 * is queued once (a MAIL request for a domain in the API queue moves it to
 * the MAIL queue).
 *
 * The module starts nothing itself: probe_queue_take() says what to start,
 * probe_queue_running() and probe_queue_done() track the child processes.
 * Not thread-safe (the daemon's thread only). */
#ifndef TLSGATE_PROBE_QUEUE_H
#define TLSGATE_PROBE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROBE_QUEUE_DOMAIN_MAX 256
#define PROBE_QUEUE_SLOTS_MAX 16
#define PROBE_QUEUE_LEN_MAX 1024

enum probe_class { PROBE_MAIL, PROBE_API, PROBE_CLASSES };

struct probe_queue_limits {
	size_t running_max;     /* probes at once, all classes (1..PROBE_QUEUE_SLOTS_MAX) */
	size_t api_running_max; /* of which API probes at most (< running_max) */
	size_t queued_max[PROBE_CLASSES]; /* waiting, per class (1..PROBE_QUEUE_LEN_MAX) */
};

/* The daemon's: 4 at once, API at most 2; 64 waiting for mail, 32 for the API. */
#define PROBE_QUEUE_LIMITS_DEFAULT                                                    \
	((struct probe_queue_limits){ .running_max = 4,                               \
				      .api_running_max = 2,                           \
				      .queued_max = { [PROBE_MAIL] = 64, [PROBE_API] = 32 } })

struct probe_queue_stats {
	uint64_t started[PROBE_CLASSES];
	uint64_t refused[PROBE_CLASSES]; /* queue of that class full */
	size_t queued[PROBE_CLASSES];
	size_t running[PROBE_CLASSES];
};

struct probe_queue;

/* NULL when the limits are out of range. */
struct probe_queue *probe_queue_new(const struct probe_queue_limits *lim);
void probe_queue_free(struct probe_queue *q); /* accepts NULL */

/* Queues domain (already normalized, < PROBE_QUEUE_DOMAIN_MAX bytes) for
 * class cls. 0 when queued or already waiting; -EBUSY when that class's
 * queue is full (counted as refused); -EINVAL for a bad argument. */
int probe_queue_add(struct probe_queue *q, const char *domain, enum probe_class cls);

/* The next probe to start now, if a slot is free for it: mail first, then
 * API while it holds fewer than api_running_max slots. Copies its domain
 * to out, its class to *cls, removes it from its queue and returns true;
 * the caller then starts it and calls probe_queue_running() (or nothing,
 * when it could not be started). */
bool probe_queue_take(struct probe_queue *q, char out[PROBE_QUEUE_DOMAIN_MAX],
		      enum probe_class *cls);

/* A probe of class cls started as pid: it holds a slot until done. */
void probe_queue_running(struct probe_queue *q, pid_t pid, enum probe_class cls);
/* Process pid ended: its slot is free. False when pid was no probe. */
bool probe_queue_done(struct probe_queue *q, pid_t pid);

void probe_queue_stats(const struct probe_queue *q, struct probe_queue_stats *out);
const char *probe_class_name(enum probe_class cls); /* "mail", "api" */

#endif
