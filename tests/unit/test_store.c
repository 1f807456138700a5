/* test_store.c - the SQLite store: history levels only rise, locks and
 * releases (with their event), address mappings expire, values with SQL in
 * them are stored verbatim, and everything survives a reopen. Under
 * contention writes wait for the lock, join the caller's transaction, and
 * are reported when they finally cannot be made (test_store_concurrency.c
 * runs the processes that share the store against each other). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"

static char db_path[64];

static int setup(void **state)
{
	snprintf(db_path, sizeof(db_path), "/tmp/test_store.XXXXXX");
	int fd = mkstemp(db_path);
	assert_true(fd >= 0);
	close(fd);
	unlink(db_path);
	*state = store_open(db_path, false);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	char p[96];
	store_close(*state);
	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
	return 0;
}

static void test_history_level_only_rises(void **state)
{
	struct store *s = *state;
	struct store_history h;
	assert_int_equal(store_history_get(s, "mx.example.net", &h), -ENOENT);
	assert_int_equal(store_history_record(s, "mx.example.net", STORE_LEVEL_PLAINTEXT, 0, 0, 100), 0);
	assert_int_equal(store_history_record(s, "mx.example.net", STORE_LEVEL_TLS, 0x0304, 0x1302, 200), 0);
	assert_int_equal(store_history_record(s, "mx.example.net", STORE_LEVEL_PLAINTEXT, 0, 0, 300), 0);
	assert_int_equal(store_history_record(s, "mx.example.net", STORE_LEVEL_TLS, 0x0303, 0xc02f, 400), 0);
	assert_int_equal(store_history_get(s, "mx.example.net", &h), 0);
	assert_int_equal(h.level, STORE_LEVEL_TLS);
	assert_int_equal(h.best_version, 0x0304);
	assert_int_equal(h.last_version, 0x0303);
	assert_int_equal(h.last_cipher, 0xc02f);
	assert_int_equal(h.first_seen, 100);
	assert_int_equal(h.last_seen, 400);
	assert_int_equal(h.first_tls, 200);
	assert_int_equal(h.last_tls, 400);
	assert_int_equal(h.tls_count, 2);
	assert_int_equal(h.plain_count, 2);
	assert_false(h.locked);
}

static int count_rows(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int n = -1;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_lock_and_release(void **state)
{
	struct store *s = *state;
	struct store_history h;
	assert_int_equal(store_history_release(s, "mx.example.net", "operator", 10), -ENOENT);
	assert_int_equal(store_history_lock(s, "mx.example.net", "STARTTLS not offered", 50), 0);
	assert_int_equal(store_history_lock(s, "mx.example.net", "second reason", 60), 0);
	assert_int_equal(store_history_get(s, "mx.example.net", &h), 0);
	assert_true(h.locked);
	assert_string_equal(h.lock_reason, "STARTTLS not offered");
	assert_int_equal(h.locked_at, 50);
	assert_int_equal(store_history_release(s, "mx.example.net", "operator root", 70), 0);
	assert_int_equal(store_history_get(s, "mx.example.net", &h), 0);
	assert_false(h.locked);
	assert_int_equal(count_rows("SELECT count(*) FROM events WHERE kind = 'release'"
				    " AND mx = 'mx.example.net' AND reason LIKE '%operator root%'"), 1);
}

static void test_addr_mx_expiry_and_secure_first(void **state)
{
	struct store *s = *state;
	char mx[STORE_NAME_MAX], domain[STORE_NAME_MAX];
	bool secure;
	assert_int_equal(store_addr_mx_set(s, "2001:db8::25", "hint.example.net", "example.net", false, 1000), 0);
	assert_int_equal(store_addr_mx_set(s, "2001:db8::25", "mx.example.net", "example.net", true, 500), 0);
	assert_int_equal(store_addr_mx_get(s, "2001:db8::25", 100, mx, domain, &secure), 0);
	assert_string_equal(mx, "mx.example.net");
	assert_true(secure);
	assert_int_equal(store_addr_mx_get(s, "2001:db8::25", 600, mx, domain, &secure), 0);
	assert_string_equal(mx, "hint.example.net");
	assert_false(secure);
	assert_int_equal(store_addr_mx_get(s, "2001:db8::25", 2000, mx, domain, &secure), -ENOENT);
}

/* Issue 18.4: one forged DNS answer mapped a locked MX's address to a
 * fresh name, and the flow was judged by that name alone. History and
 * locks apply by name and by address: the strictest of the name, the bare
 * address and every name the address was ever mapped to. */
static void test_history_by_name_and_address(void **state)
{
	struct store *s = *state;
	struct store_history h;
	const char *addr = "198.51.100.20";
	assert_int_equal(store_addr_mx_set(s, addr, "mx.tls.example", "tls.example", false, 100), 0);
	assert_int_equal(store_history_record(s, "mx.tls.example", STORE_LEVEL_TLS, 0x0304, 0x1301, 50), 0);
	assert_int_equal(store_history_lock(s, "mx.tls.example", "STARTTLS not offered", 60), 0);
	/* the forged (or merely newer) name, with the newest expiry */
	assert_int_equal(store_addr_mx_set(s, addr, "fresh.attacker.example", "tls.example", false, 100000), 0);
	assert_int_equal(store_history_get(s, "fresh.attacker.example", &h), -ENOENT);
	assert_int_equal(store_history_get_any(s, "fresh.attacker.example", addr, &h), 0);
	assert_int_equal(h.level, STORE_LEVEL_TLS);
	assert_int_equal(h.best_version, 0x0304);
	assert_true(h.locked);
	assert_string_equal(h.mx, "mx.tls.example");
	assert_string_equal(h.lock_reason, "STARTTLS not offered");
	/* the mapping expired long ago, the address is seen without a name */
	assert_int_equal(store_history_get_any(s, addr, addr, &h), 0);
	assert_true(h.locked);
	assert_int_equal(h.level, STORE_LEVEL_TLS);
	/* history recorded under the bare address (a flow before any name
	 * was known) applies to the name too; the strictest level wins */
	assert_int_equal(store_history_record(s, "2001:db8::25", STORE_LEVEL_DANE, 0x0303, 0, 70), 0);
	assert_int_equal(store_addr_mx_set(s, "2001:db8::25", "mx6.example", "example", true, 100), 0);
	assert_int_equal(store_history_record(s, "mx6.example", STORE_LEVEL_PLAINTEXT, 0, 0, 80), 0);
	assert_int_equal(store_history_get_any(s, "mx6.example", "2001:db8::25", &h), 0);
	assert_int_equal(h.level, STORE_LEVEL_DANE);
	assert_string_equal(h.mx, "2001:db8::25");
	assert_false(h.locked);
	assert_int_equal(h.tls_count + h.plain_count, 2);
	assert_int_equal(h.first_seen, 70);
	assert_int_equal(h.last_seen, 80);
	/* nothing leaks to another address or name */
	assert_int_equal(store_history_get_any(s, "other.example", "198.51.100.99", &h), -ENOENT);
	assert_int_equal(store_history_get_any(s, NULL, "198.51.100.99", &h), -ENOENT);
	assert_int_equal(store_history_get_any(s, "mx.tls.example", NULL, &h), 0);
	assert_true(h.locked);
}

/* Issue 18.3: an address is never its own MX name when a name was known
 * for it, and a hint never replaces a name that has history. */
static void test_addr_mx_name(void **state)
{
	struct store *s = *state;
	char mx[STORE_NAME_MAX], domain[STORE_NAME_MAX];
	bool secure, current;
	const char *addr = "198.51.100.20";
	assert_int_equal(store_addr_mx_name(s, addr, 10, mx, domain, &secure, &current), -ENOENT);
	/* the bare address as "name" (an RCPT hint while no name was known) */
	assert_int_equal(store_addr_mx_set(s, addr, addr, "tls.example", false, 5000), 0);
	assert_int_equal(store_addr_mx_name(s, addr, 10, mx, domain, &secure, &current), -ENOENT);
	/* the name from DNS, TTL 300 from t=0, with history */
	assert_int_equal(store_addr_mx_set(s, addr, "mx.tls.example", "tls.example", false, 300), 0);
	assert_int_equal(store_history_record(s, "mx.tls.example", STORE_LEVEL_TLS, 0x0304, 0, 10), 0);
	assert_int_equal(store_addr_mx_name(s, addr, 10, mx, domain, &secure, &current), 0);
	assert_string_equal(mx, "mx.tls.example");
	assert_true(current);
	/* past the TTL: still the last known name, not the address */
	assert_int_equal(store_addr_mx_name(s, addr, 4000, mx, domain, &secure, &current), 0);
	assert_string_equal(mx, "mx.tls.example");
	assert_string_equal(domain, "tls.example");
	assert_false(current);
	/* a newer unvalidated name without history does not replace it */
	assert_int_equal(store_addr_mx_set(s, addr, "fresh.example", "tls.example", false, 9000), 0);
	assert_int_equal(store_addr_mx_name(s, addr, 4000, mx, domain, &secure, &current), 0);
	assert_string_equal(mx, "mx.tls.example");
	assert_int_equal(store_addr_mx_name(s, addr, 100, mx, domain, &secure, &current), 0);
	assert_string_equal(mx, "mx.tls.example");
	/* a validated mapping does (validated data ends what validated
	 * data established; the history of both still applies) */
	assert_int_equal(store_addr_mx_set(s, addr, "mx2.tls.example", "tls.example", true, 8000), 0);
	assert_int_equal(store_addr_mx_name(s, addr, 4000, mx, domain, &secure, &current), 0);
	assert_string_equal(mx, "mx2.tls.example");
	assert_true(secure);
	assert_true(current);
	/* expired, it falls back to the name with history again */
	assert_int_equal(store_addr_mx_name(s, addr, 8500, mx, NULL, NULL, &current), 0);
	assert_string_equal(mx, "mx.tls.example");
	assert_false(current);
	/* without any history: the newest unexpired name */
	const char *b = "198.51.100.30";
	assert_int_equal(store_addr_mx_set(s, b, "old.example", "", false, 100), 0);
	assert_int_equal(store_addr_mx_set(s, b, "new.example", "", false, 200), 0);
	assert_int_equal(store_addr_mx_name(s, b, 150, mx, NULL, NULL, &current), 0);
	assert_string_equal(mx, "new.example");
	assert_int_equal(store_addr_mx_name(s, b, 250, mx, NULL, NULL, &current), 0);
	assert_string_equal(mx, "new.example");
	assert_false(current);
}

static void test_hostile_values_stored_verbatim(void **state)
{
	struct store *s = *state;
	const char *evil = "x'); DROP TABLE events; --";
	struct store_event ev = { .time = 1, .kind = "block", .sender = evil, .reason = evil };
	assert_int_equal(store_event_add(s, &ev), 0);
	assert_int_equal(count_rows("SELECT count(*) FROM events WHERE sender = 'x''); DROP TABLE events; --'"), 1);
	struct store_history h;
	assert_int_equal(store_history_record(s, evil, STORE_LEVEL_TLS, 0x0303, 1, 5), 0);
	assert_int_equal(store_history_get(s, evil, &h), 0);
	assert_string_equal(h.mx, evil);
}

static void test_event_trim_keeps_newest(void **state)
{
	struct store *s = *state;
	for (int i = 0; i < 50; i++) {
		struct store_event ev = { .time = i, .kind = "block" };
		assert_int_equal(store_event_add(s, &ev), 0);
	}
	assert_int_equal(store_event_trim(s, 10), 0);
	assert_int_equal(count_rows("SELECT count(*) FROM events"), 10);
	assert_int_equal(count_rows("SELECT min(time) FROM events"), 40);
}

static void test_probe_results_newest_wins(void **state)
{
	struct store *s = *state;
	char cls[32];
	int64_t t = 0;
	const char *evil = "x'); DROP TABLE probe_results; --";
	assert_int_equal(store_probe_latest(s, "example.org", cls, &t), -ENOENT);
	struct store_probe p = { .time = 10, .domain = "example.org", .cls = "tls",
				 .mx = "mx.example.org", .addr = "192.0.2.25", .verdict = "tls",
				 .tls_version = "TLSv1.3", .reason = evil };
	assert_int_equal(store_probe_add(s, &p), 0);
	p.time = 20;
	p.cls = "dane";
	p.verdict = "dane";
	p.dane = "match";
	assert_int_equal(store_probe_add(s, &p), 0);
	/* A domain-level row without MX or address. */
	struct store_probe q = { .time = 15, .domain = "example.org", .cls = "unknown" };
	assert_int_equal(store_probe_add(s, &q), 0);
	assert_int_equal(store_probe_latest(s, "example.org", cls, &t), 0);
	assert_string_equal(cls, "dane");
	assert_int_equal(t, 20);
	assert_int_equal(store_probe_latest(s, "EXAMPLE.net", cls, &t), -ENOENT);
	assert_int_equal(count_rows("SELECT count(*) FROM probe_results WHERE reason = 'x''); DROP TABLE probe_results; --'"), 2);
	struct store_probe bad = { .time = 1, .cls = "tls" };
	assert_int_equal(store_probe_add(s, &bad), -EINVAL);
}

static void test_survives_reopen(void **state)
{
	struct store *s = *state;
	uint64_t serial = 0;
	assert_int_equal(store_policy_serial(s, &serial), -ENOENT);
	assert_int_equal(store_policy_set(s, 7, "ab", "KEYID", 10, 20, "{}"), 0);
	assert_int_equal(store_history_record(s, "mx.example.org", STORE_LEVEL_DANE, 0x0303, 1, 5), 0);
	store_close(s);
	s = *state = store_open(db_path, false);
	assert_non_null(s);
	assert_int_equal(store_policy_serial(s, &serial), 0);
	assert_int_equal(serial, 7);
	struct store_history h;
	assert_int_equal(store_history_get(s, "mx.example.org", &h), 0);
	assert_int_equal(h.level, STORE_LEVEL_DANE);
	struct store *ro = store_open(db_path, true);
	assert_non_null(ro);
	assert_int_equal(store_history_get(ro, "mx.example.org", &h), 0);
	assert_int_not_equal(store_history_record(ro, "x", STORE_LEVEL_TLS, 0, 0, 1), 0);
	store_close(ro);
}

/* Another connection holding the write lock (a probe's transaction, an
 * operator's sqlite3 shell). */
static sqlite3 *hold_write_lock(void)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static void drop_write_lock(sqlite3 *db)
{
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* A write that cannot get the lock within its patience is reported, not
 * dropped silently; once the lock is free it goes through. */
static void test_write_under_lock_is_reported(void **state)
{
	struct store *s = *state;
	store_set_patience(s, 20, 2);
	sqlite3 *other = hold_write_lock();
	struct store_probe p = { .time = 10, .domain = "example.org", .cls = "dane",
				 .mx = "mx.example.org", .addr = "192.0.2.25", .verdict = "dane" };
	assert_int_equal(store_probe_add(s, &p), -EIO);
	assert_int_equal(store_history_record(s, "mx.example.org", STORE_LEVEL_DANE, 0, 0, 10), -EIO);
	struct store_tlsa rec = { .usage = 3, .selector = 1, .mtype = 1, .len = 1, .data = { 7 } };
	assert_int_equal(store_tlsa_set(s, "mx.example.org", &rec, 1, 100), -EIO);
	drop_write_lock(other);
	assert_int_equal(count_rows("SELECT count(*) FROM probe_results"), 0);
	assert_int_equal(store_probe_add(s, &p), 0);
	assert_int_equal(store_tlsa_set(s, "mx.example.org", &rec, 1, 100), 0);
	assert_int_equal(count_rows("SELECT count(*) FROM probe_results"), 1);
	assert_int_equal(count_rows("SELECT count(*) FROM tlsa"), 1);
}

/* A writer waits for another's transaction to end (busy timeout, then
 * retries) instead of failing with "database is locked". */
static void test_write_waits_for_lock(void **state)
{
	struct store *s = *state;
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sqlite3 *other = hold_write_lock();
		char c = 1;
		if (write(go[1], &c, 1) != 1)
			_exit(1);
		usleep(300 * 1000);
		drop_write_lock(other);
		_exit(0);
	}
	char c;
	assert_int_equal(read(go[0], &c, 1), 1);
	assert_int_equal(store_history_record(s, "mx.example.org", STORE_LEVEL_TLS, 0x0304, 1, 5), 0);
	struct store *other = store_open(db_path, false); /* a probe starting */
	assert_non_null(other);
	store_close(other);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(go[0]);
	close(go[1]);
	assert_int_equal(count_rows("SELECT count(*) FROM tls_history"), 1);
}

/* What the probe does: one transaction around TLSA records, results and
 * history; the calls that run their own transaction join the caller's. */
static void test_calls_join_the_callers_transaction(void **state)
{
	struct store *s = *state;
	struct store_tlsa rec = { .usage = 3, .selector = 1, .mtype = 1, .len = 1, .data = { 7 } };
	struct store_probe p = { .time = 10, .domain = "example.org", .cls = "dane" };
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_tlsa_set(s, "mx.example.org", &rec, 1, 100), 0);
	assert_int_equal(store_probe_add(s, &p), 0);
	assert_int_equal(store_history_lock(s, "mx.example.org", "test", 10), 0);
	assert_int_equal(store_history_release(s, "mx.example.org", "operator", 11), 0);
	assert_int_equal(store_history_release(s, "mx.example.org", "operator", 11), -ENOENT);
	assert_int_equal(count_rows("SELECT count(*) FROM probe_results"), 0); /* not yet */
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(count_rows("SELECT count(*) FROM tlsa"), 1);
	assert_int_equal(count_rows("SELECT count(*) FROM probe_results"), 1);
	assert_int_equal(count_rows("SELECT count(*) FROM events WHERE kind = 'release'"), 1);
}

/* When store_begin() cannot get the lock, the writes that follow are made
 * one by one instead of being lost. */
static void test_failed_begin_still_writes(void **state)
{
	struct store *s = *state;
	store_set_patience(s, 20, 2);
	sqlite3 *other = hold_write_lock();
	assert_int_equal(store_begin(s), -EIO);
	drop_write_lock(other);
	assert_int_equal(store_history_record(s, "mx.example.org", STORE_LEVEL_TLS, 0x0304, 1, 5), 0);
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(count_rows("SELECT count(*) FROM tls_history"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_history_level_only_rises, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_and_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_mx_expiry_and_secure_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_by_name_and_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_mx_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_values_stored_verbatim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_trim_keeps_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_results_newest_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_under_lock_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_waits_for_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_calls_join_the_callers_transaction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_begin_still_writes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
