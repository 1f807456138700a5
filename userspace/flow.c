/* flow.c - see flow.h for the contract. Chained hash table plus an intrusive
 * LRU list; the bucket count is a power of two at least twice max_flows. */
#include "flow.h"

#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "log.h"
#include "session.h"

struct flow_table {
	struct flow **buckets;
	size_t mask;
	size_t count, max;
	uint64_t evicted;
	struct flow *lru_head, *lru_tail; /* head: most recent */
	flow_evict_fn evict;
	void *evict_arg;
};

/* FNV-1a over the key bytes. */
static size_t flow_hash(const struct tlsgate_flow_key *key)
{
	const uint8_t *p = (const uint8_t *)key;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(*key); i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return (size_t)(h ^ (h >> 29));
}

struct flow_table *flow_table_new(size_t max_flows, flow_evict_fn evict, void *arg)
{
	if (max_flows == 0)
		return NULL;
	struct flow_table *t = xcalloc(1, sizeof(*t));
	size_t n = 16;
	while (n < max_flows * 2)
		n <<= 1;
	t->buckets = xcalloc(n, sizeof(*t->buckets));
	t->mask = n - 1;
	t->max = max_flows;
	t->evict = evict;
	t->evict_arg = arg;
	return t;
}

static void flow_lru_unlink(struct flow_table *t, struct flow *f)
{
	if (f->lru_prev)
		f->lru_prev->lru_next = f->lru_next;
	else
		t->lru_head = f->lru_next;
	if (f->lru_next)
		f->lru_next->lru_prev = f->lru_prev;
	else
		t->lru_tail = f->lru_prev;
	f->lru_prev = f->lru_next = NULL;
}

static void flow_lru_push(struct flow_table *t, struct flow *f)
{
	f->lru_prev = NULL;
	f->lru_next = t->lru_head;
	if (t->lru_head)
		t->lru_head->lru_prev = f;
	t->lru_head = f;
	if (!t->lru_tail)
		t->lru_tail = f;
}

struct flow *flow_lookup(struct flow_table *t, const struct tlsgate_flow_key *key)
{
	for (struct flow *f = t->buckets[flow_hash(key) & t->mask]; f; f = f->hash_next)
		if (memcmp(&f->key, key, sizeof(*key)) == 0)
			return f;
	return NULL;
}

void flow_remove(struct flow_table *t, struct flow *f)
{
	struct flow **pp = &t->buckets[flow_hash(&f->key) & t->mask];
	while (*pp && *pp != f)
		pp = &(*pp)->hash_next;
	if (*pp)
		*pp = f->hash_next;
	flow_lru_unlink(t, f);
	if (f->judged_fd1 > 0)
		close(f->judged_fd1 - 1);
	session_free(f->session);
	gate_flow_free(f->gate);
	free(f);
	t->count--;
}

struct flow *flow_insert(struct flow_table *t, const struct tlsgate_flow_key *key,
			 uint64_t now_ns)
{
	if (t->count >= t->max && t->lru_tail) {
		struct flow *victim = t->lru_tail;
		t->evicted++;
		if (t->evict)
			t->evict(t->evict_arg, victim);
		flow_remove(t, victim);
	}
	struct flow *f = xcalloc(1, sizeof(*f));
	f->key = *key;
	f->first_ns = f->last_ns = now_ns;
	size_t b = flow_hash(key) & t->mask;
	f->hash_next = t->buckets[b];
	t->buckets[b] = f;
	flow_lru_push(t, f);
	t->count++;
	return f;
}

void flow_touch(struct flow_table *t, struct flow *f, uint64_t now_ns)
{
	f->last_ns = now_ns;
	if (t->lru_head != f) {
		flow_lru_unlink(t, f);
		flow_lru_push(t, f);
	}
}

size_t flow_count(const struct flow_table *t)
{
	return t->count;
}

uint64_t flow_evicted(const struct flow_table *t)
{
	return t->evicted;
}

void flow_for_each(struct flow_table *t, int (*fn)(void *arg, struct flow *f), void *arg)
{
	struct flow *f = t->lru_tail;
	while (f) {
		struct flow *prev = f->lru_prev; /* fn may free f */
		if (fn(arg, f))
			break;
		f = prev;
	}
}

void flow_table_free(struct flow_table *t)
{
	if (!t)
		return;
	while (t->lru_head)
		flow_remove(t, t->lru_head);
	free(t->buckets);
	free(t);
}
