/* probe_queue.c - see probe_queue.h for the contract. */
#include "probe_queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct probe_fifo {
	char (*items)[PROBE_QUEUE_DOMAIN_MAX];
	size_t head, len, cap;
};

struct probe_slot {
	pid_t pid; /* 0: free */
	enum probe_class cls;
};

struct probe_queue {
	struct probe_queue_limits lim;
	struct probe_fifo fifo[PROBE_CLASSES];
	struct probe_slot slots[PROBE_QUEUE_SLOTS_MAX];
	struct probe_queue_stats st;
};

static char *fifo_at(struct probe_fifo *f, size_t i)
{
	return f->items[(f->head + i) % f->cap];
}

static long fifo_find(struct probe_fifo *f, const char *domain)
{
	for (size_t i = 0; i < f->len; i++)
		if (!strcmp(fifo_at(f, i), domain))
			return (long)i;
	return -1;
}

/* Removes entry i, keeping the order of the others. */
static void fifo_remove(struct probe_fifo *f, size_t i)
{
	for (; i + 1 < f->len; i++)
		memcpy(fifo_at(f, i), fifo_at(f, i + 1), PROBE_QUEUE_DOMAIN_MAX);
	f->len--;
}

struct probe_queue *probe_queue_new(const struct probe_queue_limits *lim)
{
	if (!lim || lim->running_max == 0 || lim->running_max > PROBE_QUEUE_SLOTS_MAX ||
	    lim->api_running_max >= lim->running_max)
		return NULL;
	for (int c = 0; c < PROBE_CLASSES; c++)
		if (lim->queued_max[c] == 0 || lim->queued_max[c] > PROBE_QUEUE_LEN_MAX)
			return NULL;
	struct probe_queue *q = xcalloc(1, sizeof(*q));
	q->lim = *lim;
	for (int c = 0; c < PROBE_CLASSES; c++) {
		q->fifo[c].cap = lim->queued_max[c];
		q->fifo[c].items = xcalloc(lim->queued_max[c], PROBE_QUEUE_DOMAIN_MAX);
	}
	return q;
}

void probe_queue_free(struct probe_queue *q)
{
	if (!q)
		return;
	for (int c = 0; c < PROBE_CLASSES; c++)
		free(q->fifo[c].items);
	free(q);
}

int probe_queue_add(struct probe_queue *q, const char *domain, enum probe_class cls)
{
	if (!domain || !*domain || strlen(domain) >= PROBE_QUEUE_DOMAIN_MAX ||
	    (cls != PROBE_MAIL && cls != PROBE_API))
		return -EINVAL;
	if (fifo_find(&q->fifo[PROBE_MAIL], domain) >= 0)
		return 0; /* waiting with mail's priority already */
	struct probe_fifo *api = &q->fifo[PROBE_API];
	long at = fifo_find(api, domain);
	if (at >= 0 && cls == PROBE_API)
		return 0;
	struct probe_fifo *f = &q->fifo[cls];
	if (f->len >= f->cap) {
		q->st.refused[cls]++;
		return -EBUSY;
	}
	if (at >= 0) /* mail needs what an API lookup asked for: it moves up */
		fifo_remove(api, (size_t)at);
	f->len++;
	char *slot = fifo_at(f, f->len - 1);
	memset(slot, 0, PROBE_QUEUE_DOMAIN_MAX);
	strcpy(slot, domain);
	return 0;
}

static size_t probe_running(const struct probe_queue *q, int cls)
{
	size_t n = 0;
	for (size_t i = 0; i < q->lim.running_max; i++)
		n += q->slots[i].pid && (cls < 0 || (int)q->slots[i].cls == cls);
	return n;
}

bool probe_queue_take(struct probe_queue *q, char out[PROBE_QUEUE_DOMAIN_MAX],
		      enum probe_class *cls)
{
	if (probe_running(q, -1) >= q->lim.running_max)
		return false;
	enum probe_class c;
	if (q->fifo[PROBE_MAIL].len)
		c = PROBE_MAIL;
	else if (q->fifo[PROBE_API].len && probe_running(q, PROBE_API) < q->lim.api_running_max)
		c = PROBE_API;
	else
		return false;
	struct probe_fifo *f = &q->fifo[c];
	memcpy(out, fifo_at(f, 0), PROBE_QUEUE_DOMAIN_MAX);
	f->head = (f->head + 1) % f->cap;
	f->len--;
	*cls = c;
	return true;
}

void probe_queue_running(struct probe_queue *q, pid_t pid, enum probe_class cls)
{
	for (size_t i = 0; i < q->lim.running_max; i++) {
		if (!q->slots[i].pid) {
			q->slots[i] = (struct probe_slot){ .pid = pid, .cls = cls };
			q->st.started[cls]++;
			return;
		}
	}
	/* Not reached: take() found a free slot and the caller started one. */
	log_warnx("probe queue: no free slot for pid %d", (int)pid);
}

bool probe_queue_done(struct probe_queue *q, pid_t pid)
{
	for (size_t i = 0; i < q->lim.running_max; i++) {
		if (pid > 0 && q->slots[i].pid == pid) {
			q->slots[i].pid = 0;
			return true;
		}
	}
	return false;
}

void probe_queue_stats(const struct probe_queue *q, struct probe_queue_stats *out)
{
	*out = q->st;
	for (int c = 0; c < PROBE_CLASSES; c++) {
		out->queued[c] = q->fifo[c].len;
		out->running[c] = probe_running(q, c);
	}
}

const char *probe_class_name(enum probe_class cls)
{
	return cls == PROBE_MAIL ? "mail" : cls == PROBE_API ? "api" : "?";
}
