/* test_store_concurrency.c - the store loses nothing under contention
 * (issue 18, item 7: a DANE probe result lost to "database is locked").
 *
 * On one store file, at the same time:
 *   - WRITERS probe processes (tlsgated runs up to 4 at once), each opening
 *     the store per probed domain as tlsgate-probe --db does and recording
 *     the result with probe_store_record(), the very function the probe uses
 *     (probe rows, TLSA RRset, TLS history, address -> MX);
 *   - one daemon process writing TLS history in transactions as gate_flush()
 *     does, plus events, event trims and learned address mappings;
 *   - one web process running every query of the web API (web_store.c)
 *     through its read-only connection.
 * Then every single result must be in the store. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "log.h"
#include "../../probe/probe_store.h" /* probe/ is not on the include path */
#include "store.h"
#include "web_store.h"

#define WRITERS 4	/* PROBES_RUNNING_MAX */
#define DOMAINS 120	/* probed domains per writer process */
#define ADDRS 2		/* addresses of each domain's one MX */
#define TLSA_RECS 2
#define FLUSHES 150	/* gate_flush() transactions of the daemon */
#define FLUSH_MX 16	/* history records per flush */
#define BASE_TIME 1700000000

/* Shared between the processes: the web process runs until told to stop
 * and reports how many queries it made and how many came back empty. */
struct shared {
	volatile int stop;
	volatile long reads, read_failures;
	volatile long write_errors[WRITERS + 1]; /* errors the writers were told of */
};

static char db_path[64];

static void domain_name(char *buf, size_t size, int w, int d)
{
	snprintf(buf, size, "w%d-d%d.example", w, d);
}

static void mx_name(char *buf, size_t size, int w, int d)
{
	snprintf(buf, size, "mx.w%d-d%d.example", w, d);
}

static void addr_name(char *buf, size_t size, int w, int d, int a)
{
	snprintf(buf, size, "2001:db8:%x:%x::%x", w + 1, d + 1, a + 1);
}

/* One probe process: per domain, open the store, record a DANE result for
 * one MX with ADDRS addresses, close (tlsgate-probe -- DOMAIN). */
static void probe_writer(struct shared *sh, int w)
{
	struct resolver_host *host = calloc(1, sizeof(*host));
	struct probe_target *t = calloc(1, sizeof(*t));
	struct probe_addr *addrs = calloc(ADDRS, sizeof(*addrs));
	static uint8_t tlsa_data[TLSA_RECS][32];

	if (!host || !t || !addrs)
		_exit(2);
	for (int d = 0; d < DOMAINS; d++) {
		memset(t, 0, sizeof(*t));
		memset(host, 0, sizeof(*host));
		domain_name(t->input, sizeof(t->input), w, d);
		t->cls = PROBE_CLASS_DANE;
		t->started = BASE_TIME + d;
		t->n_mx = 1;
		mx_name(host->name, sizeof(host->name), w, d);
		host->addr_status = RESOLVER_RR_SECURE;
		host->dane = RESOLVER_DANE_USABLE;
		host->ttl = 3600 * 24 * 365 * 50;
		host->n_tlsa = TLSA_RECS;
		for (int k = 0; k < TLSA_RECS; k++) {
			memset(tlsa_data[k], w * 16 + k, sizeof(tlsa_data[k]));
			host->tlsa[k] = (struct dane_tlsa){ .usage = 3, .selector = 1, .mtype = 1,
							    .data = tlsa_data[k],
							    .len = sizeof(tlsa_data[k]) };
		}
		t->mx[0].host = host;
		t->mx[0].verdict = PROBE_DANE;
		t->mx[0].n_addrs = ADDRS;
		t->mx[0].addrs = addrs;
		memset(addrs, 0, ADDRS * sizeof(*addrs));
		for (int a = 0; a < ADDRS; a++) {
			addr_name(addrs[a].addr, sizeof(addrs[a].addr), w, d, a);
			addrs[a].verdict = PROBE_DANE;
			addrs[a].tls = true;
			snprintf(addrs[a].tls_version, sizeof(addrs[a].tls_version), "TLSv1.3");
			snprintf(addrs[a].cipher, sizeof(addrs[a].cipher), "TLS_AES_256_GCM_SHA384");
			addrs[a].dane_checked = true;
		}
		struct store *s = store_open(db_path, false);
		if (!s) {
			sh->write_errors[w]++;
			continue;
		}
		probe_store_record(s, t); /*OLD*/
		store_close(s);
	}
	free(addrs);
	free(t);
	free(host);
}

/* The daemon: one long-lived connection; gate_flush() batches of history
 * in one transaction, an event per flush, a trim now and then (the event
 * table is not checked: trims delete on purpose) and dnslearn's mappings. */
static void gate_writer(struct shared *sh)
{
	struct store *s = store_open(db_path, false);
	char mx[64], addr[64];

	if (!s) {
		sh->write_errors[WRITERS] = FLUSHES;
		return;
	}
	for (int f = 0; f < FLUSHES; f++) {
		bool failed = store_begin(s) < 0;
		for (int m = 0; m < FLUSH_MX; m++) {
			snprintf(mx, sizeof(mx), "gate-mx%d.example", m);
			failed |= store_history_record(s, mx, STORE_LEVEL_TLS, 0x0304, 0x1302,
						       BASE_TIME + f) < 0;
		}
		failed |= store_commit(s) < 0;
		struct store_event ev = { .time = BASE_TIME + f, .kind = "block", .mx = "gate-mx0",
					  .rule = "history-downgrade", .verdict = "block-temporary",
					  .reason = "test" };
		failed |= store_event_add(s, &ev) < 0;
		if (f % 10 == 0)
			failed |= store_event_trim(s, 50) < 0;
		snprintf(addr, sizeof(addr), "192.0.2.%d", f % 250);
		failed |= store_addr_mx_set(s, addr, "gate-mx0.example", "gate.example", false,
					    (int64_t)BASE_TIME * 2) < 0;
		if (failed)
			sh->write_errors[WRITERS]++;
	}
	store_close(s);
}

/* The web page: every API query in a loop until the writers are done. */
static void web_reader(struct shared *sh)
{
	struct web_store *ws = web_store_new(db_path);
	char domain[64];
	unsigned int seed = (unsigned int)getpid();

	while (!sh->stop) {
		json_t *j[6];
		bool needs_probe;
		domain_name(domain, sizeof(domain), rand_r(&seed) % WRITERS,
			    rand_r(&seed) % DOMAINS);
		j[0] = web_store_domain(ws, domain, BASE_TIME, &needs_probe);
		j[1] = web_store_destinations(ws, BASE_TIME, 100);
		j[2] = web_store_events(ws, 50);
		j[3] = web_store_locks(ws);
		j[4] = web_store_policy(ws);
		j[5] = web_store_blocks_by_rule(ws);
		for (int i = 0; i < 6; i++) {
			if (!j[i])
				sh->read_failures++;
			json_decref(j[i]);
		}
		sh->reads += 6;
	}
	web_store_free(ws);
}

static pid_t spawn(struct shared *sh, void (*fn)(struct shared *, int), int arg)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would run the parent's test in the child. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		fn(sh, arg);
		_exit(0);
	}
	return pid;
}

static void run_gate(struct shared *sh, int arg)
{
	(void)arg;
	gate_writer(sh);
}

static void run_web(struct shared *sh, int arg)
{
	(void)arg;
	web_reader(sh);
}

static int64_t count(sqlite3 *db, const char *sql, const char *arg)
{
	sqlite3_stmt *st;
	int64_t n = -1;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static void test_concurrent_probes_and_api_lose_nothing(void **state)
{
	(void)state;
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));

	/* The daemon created the store before anything else runs. */
	struct store *s = store_open(db_path, false);
	assert_non_null(s);
	store_close(s);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t web = spawn(sh, run_web, 0);
	pid_t writers[WRITERS + 1];
	for (int w = 0; w < WRITERS; w++)
		writers[w] = spawn(sh, probe_writer, w);
	writers[WRITERS] = spawn(sh, run_gate, 0);
	for (int i = 0; i <= WRITERS; i++) {
		int status;
		assert_int_equal(waitpid(writers[i], &status, 0), writers[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	sh->stop = 1;
	int status;
	assert_int_equal(waitpid(web, &status, 0), web);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	/* Everything that was written must be there. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	long lost_rows = 0, lost_tlsa = 0, lost_history = 0, lost_addr = 0, lost_gate = 0;
	char name[96];
	for (int w = 0; w < WRITERS; w++) {
		for (int d = 0; d < DOMAINS; d++) {
			domain_name(name, sizeof(name), w, d);
			lost_rows += ADDRS - count(db,
						   "SELECT count(*) FROM probe_results WHERE domain = ?1"
						   " AND class = 'dane' AND verdict = 'dane'",
						   name);
			mx_name(name, sizeof(name), w, d);
			lost_tlsa += TLSA_RECS - count(db, "SELECT count(*) FROM tlsa WHERE mx = ?1",
						       name);
			lost_history += 1 - count(db,
						  "SELECT count(*) FROM tls_history WHERE mx = ?1"
						  " AND level = 3",
						  name);
			for (int a = 0; a < ADDRS; a++) {
				addr_name(name, sizeof(name), w, d, a);
				lost_addr += 1 - count(db,
						       "SELECT count(*) FROM addr_mx WHERE addr = ?1"
						       " AND secure",
						       name);
			}
		}
	}
	for (int m = 0; m < FLUSH_MX; m++) {
		snprintf(name, sizeof(name), "gate-mx%d.example", m);
		int64_t n = count(db, "SELECT tls_count FROM tls_history WHERE mx = ?1", name);
		lost_gate += FLUSHES - (n < 0 ? 0 : n);
	}
	sqlite3_close(db);

	long errors = 0;
	for (int i = 0; i <= WRITERS; i++)
		errors += sh->write_errors[i];
	print_message("# %d probe processes x %d domains, %d gate flushes x %d, %ld web queries"
		      " (%ld failed), %.1f s\n",
		      WRITERS, DOMAINS, FLUSHES, FLUSH_MX, sh->reads, sh->read_failures,
		      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	print_message("# lost: %ld of %d probe rows, %ld of %d TLSA records, %ld of %d history"
		      " rows, %ld of %d address mappings, %ld of %d gate history records;"
		      " %ld write errors reported\n",
		      lost_rows, WRITERS * DOMAINS * ADDRS, lost_tlsa, WRITERS * DOMAINS * TLSA_RECS,
		      lost_history, WRITERS * DOMAINS, lost_addr, WRITERS * DOMAINS * ADDRS,
		      lost_gate, FLUSHES * FLUSH_MX, errors);
	long reads = sh->reads;
	munmap(sh, sizeof(*sh));
	assert_int_equal(lost_rows, 0);
	assert_int_equal(lost_tlsa, 0);
	assert_int_equal(lost_history, 0);
	assert_int_equal(lost_addr, 0);
	assert_int_equal(lost_gate, 0);
	assert_int_equal(errors, 0);
	assert_true(reads > 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(db_path, sizeof(db_path), "/tmp/test_store_conc.XXXXXX");
	int fd = mkstemp(db_path);
	if (fd < 0)
		return -1;
	close(fd);
	unlink(db_path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char p[96];
	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
	return 0;
}

int main(void)
{
	log_open("test_store_concurrency", LOG_LEVEL_WARN, false);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_concurrent_probes_and_api_lose_nothing, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
