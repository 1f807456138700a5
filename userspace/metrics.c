/* metrics.c - see metrics.h for the contract. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct metric_field {
	const char *name;  /* without the tlsgate_ prefix */
	const char *path;  /* dotted path in the stats JSON */
	const char *help;
	bool counter;
};

static const struct metric_field metric_fields[] = {
	{ "flows_total", "flows.total", "SMTP flows seen since start.", true },
	{ "flows_offloaded_total", "flows.offloaded_total",
	  "Flows whose verdict was final and that were offloaded to the kernel.", true },
	{ "flows_closed_total", "flows.closed", "Flows that closed while still inspected.", true },
	{ "flows_expired_total", "flows.expired", "Flows forgotten after their idle timeout.", true },
	{ "flows_evicted_total", "flows.evicted", "Flows evicted at the flow table bound.", true },
	{ "flows_adopted_total", "flows.adopted",
	  "Offloaded flows adopted from the pinned map after a restart.", true },
	{ "flows_limit_total", "flows.limit", "Flows that reached a per-flow limit.", true },
	{ "queue_packets_total", "queue.packets", "Packets read from NFQUEUE.", true },
	{ "queue_bytes_total", "queue.bytes", "Bytes read from NFQUEUE.", true },
	{ "queue_verdicts_total", "queue.verdicts", "Verdicts issued to NFQUEUE.", true },
	{ "queue_verdict_errors_total", "queue.verdict_errors", "Verdicts that failed.", true },
	{ "queue_full_drops_total", "queue.drops",
	  "Packets the kernel dropped because the queue was full (the sender resends them).",
	  true },
	{ "queue_overrun_total", "queue.user_drops",
	  "Packets lost to a netlink socket overrun.", true },
	{ "queue_unparsed_total", "queue.unparsed",
	  "Queued packets that could not be parsed and were accepted.", true },
	{ "blocked_temporary_total", "verdicts.blocked_temporary",
	  "Connections blocked with a temporary refusal (possible downgrade, DANE failure).", true },
	{ "blocked_permanent_total", "verdicts.blocked_permanent",
	  "Connections blocked permanently (secure mode without TLS).", true },
	{ "passed_plaintext_total", "verdicts.passed_plaintext",
	  "Connections passed without TLS (no requirement).", true },
	{ "passed_tls_total", "verdicts.passed_tls", "Connections passed with acceptable TLS.", true },
	{ "refusals_injected_total", "verdicts.refusals_injected",
	  "SMTP refusals injected towards the sending MTA.", true },
	{ "refusals_repeated_total", "verdicts.refusals_repeated",
	  "Refusals sent again (1 and 3 s later) for a client that may not have them.", true },
	{ "resets_injected_total", "verdicts.resets_injected", "TCP resets injected.", true },
	{ "inject_errors_total", "verdicts.inject_errors", "Refusals or resets that failed.", true },
	{ "destinations_first_seen_total", "verdicts.first_seen",
	  "Destinations seen for the first time.", true },
	{ "locks_total", "verdicts.locks", "Destinations locked after a possible downgrade.", true },
	{ "policy_applied_total", "policy.applied", "Signed policies applied.", true },
	{ "policy_refused_total", "policy.refused", "Policies refused (signature, serial, syntax).",
	  true },
	{ "flows_tracked", "flows.tracked", "Flows in the flow table now.", false },
	{ "flows_inspecting", "flows.inspecting", "Flows being inspected now.", false },
	{ "flows_offloaded", "flows.offloaded", "Offloaded flows tracked now.", false },
	{ "flows_blocked", "flows.blocked", "Blocked flows tracked now.", false },
	{ "queue_waiting", "queue.waiting", "Packets waiting in NFQUEUE now.", false },
};

/* Kernel (tagger) counters become one family per unit with an action label. */
static const char *const metric_kernel_actions[] = {
	"inspect", "pass", "block", "ack_skipped", "fragment", "unparsed", "content",
	"content_returned", "reply_copied", "reply_queued", "command_copied",
	"content_ended", "content_switched", "rcpt_copied", "quit_passed",
};

static json_t *metric_get(json_t *root, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = root;
	for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur;
	     t = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, t);
	return json_is_integer(cur) ? cur : NULL;
}

void metrics_escape(const char *v, char *buf, size_t size)
{
	size_t o = 0;
	if (size == 0)
		return;
	for (; *v; v++) {
		const char *rep = NULL;
		char one[2] = { *v, 0 };
		if (*v == '\\')
			rep = "\\\\";
		else if (*v == '"')
			rep = "\\\"";
		else if (*v == '\n')
			rep = "\\n";
		else
			rep = one;
		size_t l = strlen(rep);
		if (o + l >= size)
			break;
		memcpy(buf + o, rep, l);
		o += l;
	}
	buf[o] = '\0';
}

static void metric_head(FILE *f, const char *name, const char *help, bool counter)
{
	fprintf(f, "# HELP tlsgate_%s %s\n# TYPE tlsgate_%s %s\n", name, help, name,
		counter ? "counter" : "gauge");
}

static void metric_by_rule(FILE *f, json_t *obj, const char *name, const char *label,
			   const char *help, bool counter)
{
	if (!json_is_object(obj))
		return;
	metric_head(f, name, help, counter);
	const char *rule;
	json_t *v;
	json_object_foreach(obj, rule, v)
	{
		if (!json_is_integer(v))
			continue;
		char esc[256];
		metrics_escape(rule, esc, sizeof(esc));
		fprintf(f, "tlsgate_%s{%s=\"%s\"} %lld\n", name, label, esc,
			(long long)json_integer_value(v));
	}
}

char *metrics_render(json_t *stats, json_t *recent, const struct metrics_web *web)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		fatal("open_memstream");

	for (size_t i = 0; i < sizeof(metric_fields) / sizeof(metric_fields[0]); i++) {
		const struct metric_field *m = &metric_fields[i];
		json_t *v = metric_get(stats, m->path);
		if (!v)
			continue;
		metric_head(f, m->name, m->help, m->counter);
		fprintf(f, "tlsgate_%s %lld\n", m->name, (long long)json_integer_value(v));
	}
	static const char *const units[] = { "packets", "bytes" };
	for (size_t u = 0; u < 2; u++) {
		bool head = false;
		for (size_t a = 0; a < sizeof(metric_kernel_actions) / sizeof(*metric_kernel_actions);
		     a++) {
			char path[64], name[64], help[128];
			snprintf(path, sizeof(path), "kernel.%s.%s", metric_kernel_actions[a],
				 units[u]);
			json_t *v = metric_get(stats, path);
			if (!v)
				continue;
			snprintf(name, sizeof(name), "kernel_%s_total", units[u]);
			if (!head) {
				snprintf(help, sizeof(help),
					 "Port-25 %s seen by the TC tagger, by what it did with them.",
					 units[u]);
				metric_head(f, name, help, true);
				head = true;
			}
			fprintf(f, "tlsgate_%s{action=\"%s\"} %lld\n", name,
				metric_kernel_actions[a], (long long)json_integer_value(v));
		}
	}
	metric_by_rule(f, json_object_get(stats, "blocks"), "blocks_total", "rule",
		       "Connections blocked since start, by rule.", true);
	metric_by_rule(f, json_object_get(json_object_get(stats, "verdicts"), "blocked_by_reason"),
		       "blocked_by_reason_total", "reason",
		       "Connections blocked since start, by reason.", true);
	metric_by_rule(f, recent, "recent_blocks", "rule",
		       "Block events kept in the store, by rule (old events are trimmed).", false);
	if (web) {
		metric_head(f, "web_requests_total", "HTTP requests answered.", true);
		fprintf(f, "tlsgate_web_requests_total %llu\n", (unsigned long long)web->requests);
		metric_head(f, "web_errors_total", "HTTP requests answered with an error status.",
			    true);
		fprintf(f, "tlsgate_web_errors_total %llu\n", (unsigned long long)web->errors);
		metric_head(f, "web_lookups_total", "Recipient addresses looked up.", true);
		fprintf(f, "tlsgate_web_lookups_total %llu\n", (unsigned long long)web->lookups);
		metric_head(f, "web_probes_scheduled_total",
			    "Probes scheduled for unknown or stale domains.", true);
		fprintf(f, "tlsgate_web_probes_scheduled_total %llu\n",
			(unsigned long long)web->probes);
		metric_head(f, "web_paced_total",
			    "HTTP requests that waited for their turn (the web rate).", true);
		fprintf(f, "tlsgate_web_paced_total %llu\n", (unsigned long long)web->paced);
	}
	if (fclose(f) != 0 || !text)
		fatal("metrics: out of memory");
	return text;
}
