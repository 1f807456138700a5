/* metrics.h - tlsgated's counters in the Prometheus text exposition format
 * (version 0.0.4), for GET /metrics.
 *
 * Counters are named tlsgate_*_total and only ever rise while the daemon
 * runs; gauges are the current state. A field the daemon's stats JSON does
 * not have (an older daemon, a hook not wired) is left out rather than
 * reported as 0. */
#ifndef TLSGATE_METRICS_H
#define TLSGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The web server's own counters. */
struct metrics_web {
	uint64_t requests;       /* HTTP requests answered */
	uint64_t errors;         /* answered with 4xx/5xx */
	uint64_t lookups;        /* recipient addresses looked up */
	uint64_t probes;         /* probes scheduled by lookups and POST /probe */
	uint64_t paced;          /* requests that waited for their turn (rate) */
};

/* Renders stats (the daemon's "stats" JSON, may be NULL; a "blocks" object
 * of rule -> count there becomes the counter tlsgate_blocks_total{rule},
 * "verdicts.blocked_by_reason" tlsgate_blocked_by_reason_total{reason}),
 * recent (rule -> count of the block events kept in the store: a gauge,
 * since old events are trimmed; may be NULL) and web (may be NULL). Returns malloc'd NUL-terminated text;
 * never NULL (allocation failure is fatal). */
char *metrics_render(json_t *stats, json_t *recent, const struct metrics_web *web);

/* Appends v to buf as a label value with \\, \" and \n escaped; writes at
 * most size bytes incl. NUL, truncating. Exposed for tests. */
void metrics_escape(const char *v, char *buf, size_t size);

#endif
