/* test_probe_queue.c - the probe budget (issue 19): API lookups have
 * their own queue and at most a share of the running slots, so a flood of
 * lookups of unknown domains neither fills the queue that mail's probes
 * (the gate waiting for a named MX's DANE state, DNS learning) go into nor
 * takes every slot. Before, one 64-entry queue served both: the 65th
 * request, mail's included, was refused, and mail waited behind every
 * lookup queued before it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "probe_queue.h"

static struct probe_queue *q_default(void)
{
	struct probe_queue_limits lim = PROBE_QUEUE_LIMITS_DEFAULT;
	struct probe_queue *q = probe_queue_new(&lim);
	assert_non_null(q);
	return q;
}

/* Starts what take() gives, with made-up pids from *pid on. */
static size_t start_all(struct probe_queue *q, pid_t *pid, enum probe_class want, size_t *n_other)
{
	char d[PROBE_QUEUE_DOMAIN_MAX];
	enum probe_class cls;
	size_t n = 0;
	while (probe_queue_take(q, d, &cls)) {
		probe_queue_running(q, (*pid)++, cls);
		if (cls == want)
			n++;
		else if (n_other)
			(*n_other)++;
	}
	return n;
}

static void test_api_flood_does_not_starve_mail(void **state)
{
	struct probe_queue *q = q_default();
	char d[PROBE_QUEUE_DOMAIN_MAX];
	int refused = 0;
	/* A flood of lookups of 200 unknown domains. */
	for (int i = 0; i < 200; i++) {
		snprintf(d, sizeof(d), "unknown%d.example", i);
		refused += probe_queue_add(q, d, PROBE_API) == -EBUSY;
	}
	assert_int_equal(refused, 200 - 32);
	pid_t pid = 100;
	/* The API gets its share of the slots, no more. */
	assert_int_equal(start_all(q, &pid, PROBE_API, NULL), 2);
	/* The gate needs an MX's DANE state: queued and started at once. */
	assert_int_equal(probe_queue_add(q, "mx.dane.example", PROBE_MAIL), 0);
	enum probe_class cls;
	assert_true(probe_queue_take(q, d, &cls));
	assert_int_equal(cls, PROBE_MAIL);
	assert_string_equal(d, "mx.dane.example");
	probe_queue_running(q, pid++, cls);
	/* Mail can fill its queue (64) whatever the API queued. */
	for (int i = 0; i < 64; i++) {
		snprintf(d, sizeof(d), "mail%d.example", i);
		assert_int_equal(probe_queue_add(q, d, PROBE_MAIL), 0);
	}
	assert_int_equal(probe_queue_add(q, "one-more.example", PROBE_MAIL), -EBUSY);
	struct probe_queue_stats st;
	probe_queue_stats(q, &st);
	assert_int_equal(st.queued[PROBE_MAIL], 64);
	assert_int_equal(st.queued[PROBE_API], 30);
	assert_int_equal(st.running[PROBE_API], 2);
	assert_int_equal(st.running[PROBE_MAIL], 1);
	assert_int_equal(st.refused[PROBE_API], 168);
	assert_int_equal(st.refused[PROBE_MAIL], 1);
	probe_queue_free(q);
}

static void test_free_slot_goes_to_mail_first(void **state)
{
	struct probe_queue *q = q_default();
	char d[PROBE_QUEUE_DOMAIN_MAX];
	pid_t pid = 1;
	for (int i = 0; i < 10; i++) {
		snprintf(d, sizeof(d), "api%d.example", i);
		assert_int_equal(probe_queue_add(q, d, PROBE_API), 0);
		snprintf(d, sizeof(d), "mail%d.example", i);
		assert_int_equal(probe_queue_add(q, d, PROBE_MAIL), 0);
	}
	size_t api = 0;
	/* All four slots to mail: its queue is not empty. */
	assert_int_equal(start_all(q, &pid, PROBE_MAIL, &api), 4);
	assert_int_equal(api, 0);
	/* One ends: the next mail probe, in order, takes the slot. */
	assert_true(probe_queue_done(q, 1));
	enum probe_class cls;
	assert_true(probe_queue_take(q, d, &cls));
	assert_int_equal(cls, PROBE_MAIL);
	assert_string_equal(d, "mail4.example");
	probe_queue_running(q, pid++, cls);
	assert_false(probe_queue_take(q, d, &cls)); /* all slots busy */
	assert_false(probe_queue_done(q, 999));
	probe_queue_free(q);
}

static void test_api_uses_idle_slots_up_to_its_share(void **state)
{
	struct probe_queue *q = q_default();
	char d[PROBE_QUEUE_DOMAIN_MAX];
	pid_t pid = 1;
	for (int i = 0; i < 5; i++) {
		snprintf(d, sizeof(d), "api%d.example", i);
		assert_int_equal(probe_queue_add(q, d, PROBE_API), 0);
	}
	assert_int_equal(start_all(q, &pid, PROBE_API, NULL), 2);
	/* Two slots stay mail's. */
	assert_int_equal(probe_queue_add(q, "a.example", PROBE_MAIL), 0);
	assert_int_equal(probe_queue_add(q, "b.example", PROBE_MAIL), 0);
	assert_int_equal(probe_queue_add(q, "c.example", PROBE_MAIL), 0);
	size_t api = 0;
	assert_int_equal(start_all(q, &pid, PROBE_MAIL, &api), 2);
	assert_int_equal(api, 0);
	/* An API probe ends: mail (c.example) still comes first. */
	assert_true(probe_queue_done(q, 1));
	enum probe_class cls;
	assert_true(probe_queue_take(q, d, &cls));
	assert_int_equal(cls, PROBE_MAIL);
	assert_string_equal(d, "c.example");
	probe_queue_free(q);
}

static void test_duplicates_and_promotion(void **state)
{
	struct probe_queue *q = q_default();
	char d[PROBE_QUEUE_DOMAIN_MAX];
	enum probe_class cls;
	pid_t pid = 1;
	/* Fill the API share so that queued lookups stay queued. */
	assert_int_equal(probe_queue_add(q, "x1.example", PROBE_API), 0);
	assert_int_equal(probe_queue_add(q, "x2.example", PROBE_API), 0);
	assert_int_equal(start_all(q, &pid, PROBE_API, NULL), 2);
	assert_int_equal(probe_queue_add(q, "same.example", PROBE_API), 0);
	assert_int_equal(probe_queue_add(q, "same.example", PROBE_API), 0);
	struct probe_queue_stats st;
	probe_queue_stats(q, &st);
	assert_int_equal(st.queued[PROBE_API], 1);
	/* Mail needs the same domain: it moves to mail's queue, once. */
	assert_int_equal(probe_queue_add(q, "same.example", PROBE_MAIL), 0);
	assert_int_equal(probe_queue_add(q, "same.example", PROBE_API), 0);
	probe_queue_stats(q, &st);
	assert_int_equal(st.queued[PROBE_API], 0);
	assert_int_equal(st.queued[PROBE_MAIL], 1);
	assert_true(probe_queue_take(q, d, &cls));
	assert_int_equal(cls, PROBE_MAIL);
	assert_string_equal(d, "same.example");
	assert_int_equal(probe_queue_add(q, "", PROBE_MAIL), -EINVAL);
	assert_int_equal(probe_queue_add(q, "a.example", PROBE_CLASSES), -EINVAL);
	probe_queue_free(q);
}

static void test_ring_wraps(void **state)
{
	struct probe_queue_limits lim = { .running_max = 1, .api_running_max = 0,
					  .queued_max = { 3, 3 } };
	struct probe_queue *q = probe_queue_new(&lim);
	assert_non_null(q);
	char d[PROBE_QUEUE_DOMAIN_MAX], want[64];
	enum probe_class cls;
	int next = 0, taken = 0;
	for (pid_t pid = 1; pid < 50; pid++) {
		while (next < taken + 3) {
			snprintf(d, sizeof(d), "d%d.example", next++);
			assert_int_equal(probe_queue_add(q, d, PROBE_MAIL), 0);
		}
		assert_true(probe_queue_take(q, d, &cls));
		snprintf(want, sizeof(want), "d%d.example", taken++);
		assert_string_equal(d, want);
		probe_queue_running(q, pid, cls);
		assert_false(probe_queue_take(q, d, &cls));
		assert_true(probe_queue_done(q, pid));
	}
	/* API with no running share never starts. */
	assert_int_equal(probe_queue_add(q, "api.example", PROBE_API), 0);
	while (probe_queue_take(q, d, &cls))
		assert_int_equal(cls, PROBE_MAIL);
	assert_false(probe_queue_take(q, d, &cls));
	probe_queue_free(q);
	/* Bad limits. */
	lim.api_running_max = 1;
	assert_null(probe_queue_new(&lim));
	lim = (struct probe_queue_limits){ .running_max = 2, .queued_max = { 0, 1 } };
	assert_null(probe_queue_new(&lim));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_flood_does_not_starve_mail),
		cmocka_unit_test(test_free_slot_goes_to_mail_first),
		cmocka_unit_test(test_api_uses_idle_slots_up_to_its_share),
		cmocka_unit_test(test_duplicates_and_promotion),
		cmocka_unit_test(test_ring_wraps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
