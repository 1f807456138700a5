/* test_control.c - who may send what on the control socket: a peer of
 * the limited uid (the web process's) reaches only its commands, and
 * policy-apply never reaches the handler; root and the daemon's own uid
 * are not limited; the socket's group lets the web's user connect, and
 * another uid in that group gets nothing. Real Unix sockets; the clients
 * are child processes (as root, some as another uid). */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "control.h"
#include "control_client.h"
#include "web_proc.h"

#define OTHER_UID 4243 /* a uid and group no one uses (tests run as root) */
#define WEB_GID 4242

struct handled {
	struct control *c;
	int calls;
	char last[CONTROL_LINE_MAX + 1];
	int limited; /* control_peer_limited() during the last call */
};

static char *handler(void *arg, const char *command)
{
	struct handled *h = arg;
	h->calls++;
	snprintf(h->last, sizeof(h->last), "%s", command);
	h->limited = control_peer_limited(h->c);
	return strdup("{\"ok\":true}\n");
}

struct fixture {
	char dir[64], path[96];
	struct handled h;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_control.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	chmod(f->dir, 0755); /* the other uid must reach the socket */
	snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
	f->h.c = control_open(f->path, handler, &f->h);
	assert_non_null(f->h.c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	control_close(f->h.c);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Sends cmd from a child process (as uid/gid when uid is not -1) while
 * this process serves; the answer, or "ERR <errno text>". */
static char *ask_as(struct fixture *f, const char *cmd, uid_t uid, gid_t gid)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		if (uid != (uid_t)-1 && (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0))
			_exit(2);
		char *a = control_request_timeout(f->path, cmd, 3000);
		char buf[256];
		if (!a)
			snprintf(buf, sizeof(buf), "ERR %s", strerror(errno));
		const char *out = a ? a : buf;
		if (write(p[1], out, strlen(out)) < 0)
			_exit(3);
		_exit(0);
	}
	close(p[1]);
	char buf[4096];
	size_t used = 0;
	for (;;) {
		control_serve(f->h.c);
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		if (poll(&pf, 1, 5) <= 0)
			continue;
		ssize_t n = read(p[0], buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	buf[used] = '\0';
	return strdup(buf);
}

static char *ask(struct fixture *f, const char *cmd)
{
	return ask_as(f, cmd, (uid_t)-1, (gid_t)-1);
}

/* The answer to cmd is refused (the handler is not called) or not. */
static void expect(struct fixture *f, const char *cmd, bool refused, uid_t uid)
{
	int before = f->h.calls;
	char *a = uid == (uid_t)-1 ? ask(f, cmd) : ask_as(f, cmd, uid, WEB_GID);
	if (refused) {
		assert_string_equal(a, "{\"error\":\"command not permitted\"}\n");
		assert_int_equal(f->h.calls, before);
	} else {
		assert_string_equal(a, "{\"ok\":true}\n");
		assert_int_equal(f->h.calls, before + 1);
		assert_string_equal(f->h.last, cmd);
	}
	free(a);
}

static void test_limited_peer_cannot_apply_policy(void **state)
{
	struct fixture *f = *state;
	/* This process's uid stands for the web's. */
	assert_int_equal(control_limit_uid(f->h.c, getuid(), WEB_PROC_COMMANDS), 0);
	expect(f, "policy-apply /tmp/evil.policy", true, (uid_t)-1);
	expect(f, "probe mail.example", true, (uid_t)-1);  /* mail's probe class */
	expect(f, "statsx", true, (uid_t)-1);              /* a listed word, not a prefix */
	expect(f, "stats", false, (uid_t)-1);
	assert_int_equal(f->h.limited, 1);
	expect(f, "flows", false, (uid_t)-1);
	expect(f, "release mx.example", false, (uid_t)-1);
	expect(f, "probe-api example.org", false, (uid_t)-1);
}

static void test_unlimited_root_runs_everything(void **state)
{
	struct fixture *f = *state;
	/* Another uid is limited: this one (root, or the daemon's own) is not. */
	assert_int_equal(control_limit_uid(f->h.c, OTHER_UID, WEB_PROC_COMMANDS), 0);
	expect(f, "policy-apply /tmp/p", false, (uid_t)-1);
	assert_int_equal(f->h.limited, 0);
	expect(f, "probe mail.example", false, (uid_t)-1);
}

static void test_group_lets_web_user_in(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip(); /* needs another uid */
	struct stat st;
	/* Before: the owner's only, the other uid cannot even connect. */
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	char *a = ask_as(f, "stats", OTHER_UID, WEB_GID);
	assert_string_equal(a, "ERR Permission denied");
	free(a);
	assert_int_equal(control_allow_group(f->h.c, WEB_GID), 0);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(st.st_gid, WEB_GID);
	assert_int_equal(st.st_uid, 0);
	/* In the group but not the limited uid: nothing. */
	expect(f, "stats", true, OTHER_UID);
	assert_int_equal(control_limit_uid(f->h.c, OTHER_UID, WEB_PROC_COMMANDS), 0);
	expect(f, "stats", false, OTHER_UID);
	assert_int_equal(f->h.limited, 1);
	expect(f, "release mx.example", false, OTHER_UID);
	expect(f, "policy-apply /tmp/evil.policy", true, OTHER_UID);
	expect(f, "ping", true, OTHER_UID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_limited_peer_cannot_apply_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unlimited_root_runs_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_lets_web_user_in, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
