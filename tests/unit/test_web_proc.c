/* test_web_proc.c - the web process (web_proc.c): its hooks against a
 * fake control server (a real Unix socket that answers, says nothing, or
 * is gone), the whole loop in a child process serving a listening socket
 * made beforehand (as the parent makes it), SIGTERM; and the store as the
 * web user sees it: a file of another uid, mode 0640, the reader in its
 * group, read while a writer has rows only in the -wal, nothing created
 * next to it, nothing writable. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "control_client.h"
#include "store.h"
#include "web.h"
#include "web_proc.h"
#include "web_store.h"

#define READER_UID 4243 /* the web user: no one's uid */
#define STORE_GID 4242  /* the group that may read the store */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a fake inspector: the control socket's server side --------------- */

enum fake_mode { FAKE_ANSWER, FAKE_SILENT };

struct fake {
	char path[108];
	int fd;
	pthread_t thread;
	pthread_mutex_t lock;
	enum fake_mode mode;
	bool stop;
	char last[256];
	int held[64]; /* silent: connections kept open unanswered */
	int n_held;
};

static const char *fake_answer(const char *cmd)
{
	if (!strcmp(cmd, "stats"))
		return "{\"flows\":{\"total\":42,\"offloaded_total\":40},\"queue\":{\"packets\":9}}\n";
	if (!strcmp(cmd, "flows"))
		return "[{\"client\":\"192.0.2.10:40000\",\"server\":\"198.51.100.20:25\"}]\n";
	if (!strncmp(cmd, "probe-api ", 10))
		return "{\"ok\":true,\"probe\":\"scheduled\"}\n";
	if (!strcmp(cmd, "release locked.example"))
		return "{\"ok\":true,\"released\":\"locked.example\"}\n";
	if (!strncmp(cmd, "release ", 8))
		return "{\"ok\":false,\"error\":\"not locked\"}\n";
	return "{\"error\":\"unknown command\"}\n";
}

static void *fake_run(void *arg)
{
	struct fake *fk = arg;
	for (;;) {
		pthread_mutex_lock(&fk->lock);
		bool stop = fk->stop;
		pthread_mutex_unlock(&fk->lock);
		if (stop)
			break;
		struct pollfd p = { .fd = fk->fd, .events = POLLIN };
		if (poll(&p, 1, 20) <= 0)
			continue;
		int c = accept(fk->fd, NULL, NULL);
		if (c < 0)
			continue;
		char line[256] = "";
		size_t used = 0;
		while (used < sizeof(line) - 1 && !memchr(line, '\n', used)) {
			ssize_t n = recv(c, line + used, sizeof(line) - 1 - used, 0);
			if (n <= 0)
				break;
			used += (size_t)n;
		}
		line[used] = '\0';
		line[strcspn(line, "\n")] = '\0';
		pthread_mutex_lock(&fk->lock);
		snprintf(fk->last, sizeof(fk->last), "%s", line);
		bool silent = fk->mode == FAKE_SILENT && fk->n_held < 64;
		if (silent)
			fk->held[fk->n_held++] = c;
		pthread_mutex_unlock(&fk->lock);
		if (silent)
			continue;
		const char *a = fake_answer(line);
		if (send(c, a, strlen(a), MSG_NOSIGNAL) < 0)
			perror("fake: send");
		close(c);
	}
	return NULL;
}

static void fake_start(struct fake *fk, const char *path)
{
	memset(fk, 0, sizeof(*fk));
	snprintf(fk->path, sizeof(fk->path), "%s", path);
	struct sockaddr_un sun;
	assert_int_equal(control_addr(path, &sun), 0);
	fk->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(path);
	assert_int_equal(bind(fk->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fk->fd, 16), 0);
	pthread_mutex_init(&fk->lock, NULL);
	assert_int_equal(pthread_create(&fk->thread, NULL, fake_run, fk), 0);
}

static void fake_stop(struct fake *fk)
{
	pthread_mutex_lock(&fk->lock);
	fk->stop = true;
	pthread_mutex_unlock(&fk->lock);
	pthread_join(fk->thread, NULL);
	for (int i = 0; i < fk->n_held; i++)
		close(fk->held[i]);
	close(fk->fd);
	unlink(fk->path);
	pthread_mutex_destroy(&fk->lock);
}

static void fake_mode(struct fake *fk, enum fake_mode m)
{
	pthread_mutex_lock(&fk->lock);
	fk->mode = m;
	pthread_mutex_unlock(&fk->lock);
}

static void fake_last(struct fake *fk, char *out, size_t size)
{
	pthread_mutex_lock(&fk->lock);
	snprintf(out, size, "%s", fk->last);
	pthread_mutex_unlock(&fk->lock);
}

/* ---- the web process, and HTTP to it ---------------------------------- */

struct fixture {
	char dir[64], ctl[96], db[96];
	struct fake fake;
	int port;
	pid_t web;
};

struct reply {
	int status;
	int64_t ms; /* how long the answer took */
	json_t *json;
};

static struct reply http(struct fixture *f, const char *method, const char *path,
			 const char *body)
{
	struct reply r = { 0 };
	int64_t t0 = now_ms();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s",
			 method, path, body ? strlen(body) : 0, body ? body : "");
	assert_int_equal(send(fd, req, (size_t)n, 0), n);
	char buf[65536];
	size_t used = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		assert_true(poll(&p, 1, 15000) == 1); /* never hangs */
		ssize_t k = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
		if (k <= 0)
			break;
		used += (size_t)k;
	}
	close(fd);
	buf[used] = '\0';
	r.ms = now_ms() - t0;
	sscanf(buf, "HTTP/1.1 %d", &r.status);
	char *sep = strstr(buf, "\r\n\r\n");
	r.json = sep ? json_loads(sep + 4, 0, NULL) : NULL;
	return r;
}

/* Asserts the status of one request; how long it took (ms). */
static int64_t expect_status(struct fixture *f, const char *method, const char *path,
			     const char *body, int status)
{
	struct reply r = http(f, method, path, body);
	assert_int_equal(r.status, status);
	json_decref(r.json);
	return r.ms;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_web_proc.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->ctl, sizeof(f->ctl), "%s/ctl.sock", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
	struct store *s = store_open(f->db, false);
	assert_non_null(s);
	store_close(s);
	fake_start(&f->fake, f->ctl);
	/* As the parent does: the socket first, then the web process. */
	int lfd = web_listen_socket("127.0.0.1:0");
	assert_true(lfd > 0);
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	f->web = fork();
	assert_true(f->web >= 0);
	if (f->web == 0) {
		struct web_config cfg = { .listen = "127.0.0.1:0", .token = "t0ken",
					  .store_path = f->db, .listen_fd = lfd };
		_exit(web_proc_run(&cfg, f->ctl, -1));
	}
	close(lfd);
	*state = f;
	return 0;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->web > 0) {
		kill(f->web, SIGKILL);
		waitpid(f->web, NULL, 0);
	}
	fake_stop(&f->fake);
	rm_dir(f->dir);
	free(f);
	return 0;
}

static void test_hooks_over_control_socket(void **state)
{
	struct fixture *f = *state;
	char last[256];
	struct reply r = http(f, "GET", "/api/v1/stats", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "flows"),
							   "total")),
			 42);
	json_decref(r.json);
	r = http(f, "GET", "/api/v1/flows", NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(r.json, "flows")), 1);
	json_decref(r.json);
	/* The API's probe class, the domain as the web normalised it. */
	expect_status(f, "POST", "/api/v1/probe", "{\"domain\":\"Example.ORG\"}", 202);
	fake_last(&f->fake, last, sizeof(last));
	assert_string_equal(last, "probe-api example.org");
	/* "not locked" */
	expect_status(f, "POST", "/api/v1/history/release", "{\"mx\":\"mx.other.example\"}", 404);
	expect_status(f, "POST", "/api/v1/history/release", "{\"mx\":\"locked.example\"}", 200);
	fake_last(&f->fake, last, sizeof(last));
	assert_string_equal(last, "release locked.example");
}

/* An inspector that takes the command and never answers: 503 within the
 * hook's timeout, and at once while it stays silent. */
static void test_silent_inspector_is_503_not_a_hang(void **state)
{
	struct fixture *f = *state;
	fake_mode(&f->fake, FAKE_SILENT);
	int64_t ms = expect_status(f, "GET", "/api/v1/stats", NULL, 503);
	assert_true(ms >= WEB_PROC_CALL_TIMEOUT_MS - 100);
	assert_true(ms < WEB_PROC_CALL_TIMEOUT_MS + 1000);
	/* The back-off: no second wait. */
	ms = expect_status(f, "POST", "/api/v1/history/release", "{\"mx\":\"locked.example\"}", 503);
	assert_true(ms < 500);
	expect_status(f, "POST", "/api/v1/probe", "{\"domain\":\"example.org\"}", 503);
	/* The store's endpoints do not depend on the inspector. */
	assert_true(expect_status(f, "GET", "/api/v1/events", NULL, 200) < 500);
	/* It answers again: so does the web, after the back-off. */
	fake_mode(&f->fake, FAKE_ANSWER);
	usleep((WEB_PROC_BACKOFF_MS + 100) * 1000);
	expect_status(f, "GET", "/api/v1/stats", NULL, 200);
}

/* No inspector at all (crashed, restarting): 503 at once; SIGTERM ends
 * the web with status 0. */
static void test_dead_inspector_and_sigterm(void **state)
{
	struct fixture *f = *state;
	fake_stop(&f->fake);
	assert_true(expect_status(f, "GET", "/api/v1/stats", NULL, 503) < 500);
	expect_status(f, "GET", "/api/v1/flows", NULL, 503);
	expect_status(f, "POST", "/api/v1/history/release", "{\"mx\":\"locked.example\"}", 503);
	fake_start(&f->fake, f->ctl); /* for teardown */
	int st;
	assert_int_equal(kill(f->web, SIGTERM), 0);
	int64_t t0 = now_ms();
	while (waitpid(f->web, &st, WNOHANG) == 0 && now_ms() - t0 < 5000)
		usleep(10000);
	assert_true(now_ms() - t0 < 5000);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	f->web = 0;
}

/* ---- the store as the web user sees it -------------------------------- */

static int event_count(struct web_store *ws)
{
	json_t *e = web_store_events(ws, 100);
	int n = e ? (int)json_array_size(e) : -1;
	json_decref(e);
	return n;
}

static void add_event(struct store *s, const char *reason)
{
	struct store_event ev = { .time = time(NULL), .kind = "block", .mx = "mx.example",
				  .rule = "history-downgrade", .verdict = "block-temporary",
				  .reason = reason };
	assert_int_equal(store_event_add(s, &ev), 0);
}

/* Files in dir owned by uid. */
static int owned_by(const char *dir, uid_t uid)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	char p[512];
	int n = 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			n += lstat(p, &st) == 0 && st.st_uid == uid;
		}
	closedir(d);
	return n;
}

/* The reader: answers each byte from the parent with the number of events
 * it reads (-1: none), then whether it could open the store for writing. */
static void reader_child(const char *db, int in, int out)
{
	if (setgroups(0, NULL) < 0 || setgid(STORE_GID) < 0 || setuid(READER_UID) < 0)
		_exit(2);
	struct web_store *ws = web_store_new(db);
	char c;
	while (read(in, &c, 1) == 1 && c != 'w') {
		signed char n = (signed char)event_count(ws);
		if (write(out, &n, 1) != 1)
			_exit(3);
	}
	sqlite3 *rw = NULL;
	int rc = sqlite3_open_v2(db, &rw, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(rw, "INSERT INTO events(time, kind) VALUES(1, 'x')", NULL, NULL, NULL);
	sqlite3_close(rw);
	signed char wrote = rc == SQLITE_OK;
	if (write(out, &wrote, 1) != 1)
		_exit(3);
	web_store_free(ws);
	_exit(0);
}

static int ask_reader(int to, int from, char what)
{
	signed char n = -2;
	assert_int_equal(write(to, &what, 1), 1);
	assert_int_equal(read(from, &n, 1), 1);
	return n;
}

static void test_store_read_only_for_the_web_user(void **state)
{
	if (geteuid() != 0)
		skip(); /* needs another uid */
	char dir[64], db[96];
	snprintf(dir, sizeof(dir), "/tmp/test_web_ro.XXXXXX");
	assert_non_null(mkdtemp(dir));
	/* Even where the reader could create files, it must create none. */
	chmod(dir, 0777);
	snprintf(db, sizeof(db), "%s/store.db", dir);
	struct store *s = store_open(db, false);
	assert_non_null(s);
	add_event(s, "one");
	store_close(s); /* closed cleanly: no -wal, no -shm */
	assert_int_equal(chown(db, 0, STORE_GID), 0);
	assert_int_equal(chmod(db, 0640), 0);

	int to[2], from[2];
	assert_int_equal(pipe(to), 0);
	assert_int_equal(pipe(from), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to[1]);
		close(from[0]);
		reader_child(db, to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	/* No writer yet: the reader waits, and has made nothing. */
	assert_int_equal(ask_reader(to[1], from[0], 'r'), -1);
	assert_int_equal(owned_by(dir, READER_UID), 0);
	/* The daemon opens the store (root: its -wal and -shm take the
	 * file's owner, group and mode) and writes; rows live in the -wal. */
	s = store_open(db, false);
	assert_non_null(s);
	add_event(s, "two");
	assert_int_equal(ask_reader(to[1], from[0], 'r'), 2);
	add_event(s, "three");
	assert_int_equal(ask_reader(to[1], from[0], 'r'), 3);
	/* The daemon stops: the reader keeps the -wal and -shm, reads on. */
	store_close(s);
	assert_int_equal(ask_reader(to[1], from[0], 'r'), 3);
	s = store_open(db, false);
	assert_non_null(s);
	add_event(s, "four");
	assert_int_equal(ask_reader(to[1], from[0], 'r'), 4);
	/* Writing is refused to the web user. */
	assert_int_equal(ask_reader(to[1], from[0], 'w'), 0);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(owned_by(dir, READER_UID), 0);
	/* The daemon writes on. */
	add_event(s, "five");
	store_close(s);
	close(to[1]);
	close(from[0]);
	rm_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hooks_over_control_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_inspector_is_503_not_a_hang, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dead_inspector_and_sigterm, setup, teardown),
		cmocka_unit_test(test_store_read_only_for_the_web_user),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
