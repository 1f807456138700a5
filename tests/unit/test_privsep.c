/* test_privsep.c - the rights privsep.c gives: a dropped process has the
 * uid, gid and exactly the capabilities asked for, cannot get root back,
 * and its seccomp filter ends it on a call outside the list; the store's
 * directory is taken only when all it holds is tlsgate's (never a
 * directory others may write, never one with foreign files). Needs root
 * (skipped otherwise); the drops happen in child processes. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "privsep.h"

#define OTHER_UID 4243 /* a uid and group no one uses (tests run as root) */

static struct privsep_user other(void)
{
	struct privsep_user u = { .drop = true, .uid = OTHER_UID, .gid = OTHER_UID };
	snprintf(u.name, sizeof(u.name), "test");
	return u;
}

/* Runs fn in a child; returns its exit status (or 128 + signal). */
static int in_child(int (*fn)(void))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn());
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int drop_keeping_net_admin(void)
{
	const char *step;
	struct privsep_user u = other();
	if (privsep_drop(&u, 1ull << CAP_NET_ADMIN, &step) < 0)
		return 10;
	if (getuid() != OTHER_UID || geteuid() != OTHER_UID || getgid() != OTHER_UID)
		return 11;
	if (privsep_effective_caps() != 1ull << CAP_NET_ADMIN)
		return 12;
	if (setuid(0) == 0 || errno != EPERM)
		return 13;
	/* the bounding set holds nothing else */
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_NET_ADMIN, 0, 0, 0) != 1)
		return 14;
	return 0;
}

static int drop_everything(void)
{
	const char *step;
	struct privsep_user u = other();
	if (privsep_drop(&u, 0, &step) < 0)
		return 10;
	if (privsep_effective_caps() != 0)
		return 12;
	/* no way to open what root may: /etc/shadow is 0640 root:shadow */
	if (open("/etc/shadow", O_RDONLY) >= 0)
		return 15;
	return 0;
}

static void test_drop(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(in_child(drop_keeping_net_admin), 0);
	assert_int_equal(in_child(drop_everything), 0);
}

/* The parent after its start: its own user, the capabilities kept (also
 * CAP_SETUID), the ambient ones for what it runs, and no way back to uid
 * or gid 0 even so; its children still switch to their users. */
static int parent_drop(void)
{
	const char *step;
	struct privsep_user u = other();
	uint64_t keep = (1ull << CAP_SETUID) | (1ull << CAP_SETGID) | (1ull << CAP_SETPCAP) |
			(1ull << CAP_NET_ADMIN) | (1ull << CAP_NET_RAW);
	uint64_t ambient = (1ull << CAP_NET_ADMIN) | (1ull << CAP_NET_RAW);
	if (privsep_parent_drop(&u, keep, ambient, &step) < 0) {
		fprintf(stderr, "parent drop: %s: %s\n", step, strerror(errno));
		return 10;
	}
	if (getuid() != OTHER_UID || geteuid() != OTHER_UID || getegid() != OTHER_UID)
		return 11;
	if (privsep_effective_caps() != keep)
		return 12;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_ADMIN, 0, 0) != 1 ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SETUID, 0, 0) != 0)
		return 13;
	/* CAP_SETUID and CAP_SETGID in hand, yet no uid or gid 0 */
	if (syscall(SYS_setuid, 0) != -1 || errno != EPERM)
		return 14;
	if (syscall(SYS_setresuid, -1, 0, -1) != -1 || syscall(SYS_setfsuid, 0) == 0 ||
	    syscall(SYS_setresgid, 0, -1, -1) != -1 || syscall(SYS_setregid, -1, 0) != -1)
		return 15;
	gid_t root_group = 0;
	if (syscall(SYS_setgroups, 1, &root_group) != -1 || errno != EPERM)
		return 16;
	/* /etc/shadow is 0640 root:shadow: root's as owner no more */
	if (open("/etc/shadow", O_RDONLY) >= 0)
		return 17;
	/* a child of it still becomes its user */
	struct privsep_user child = { .drop = true, .uid = OTHER_UID + 1, .gid = OTHER_UID + 1 };
	if (privsep_drop(&child, 1ull << CAP_NET_ADMIN, &step) < 0) {
		fprintf(stderr, "child drop: %s: %s\n", step, strerror(errno));
		return 18;
	}
	if (getuid() != OTHER_UID + 1 || privsep_effective_caps() != 1ull << CAP_NET_ADMIN ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_ADMIN, 0, 0) != 0)
		return 19;
	return 0;
}

static void test_parent_drop(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(in_child(parent_drop), 0);
}

static int seccomp_then_forbidden(void)
{
	const char *step;
	struct privsep_user u = other();
	if (privsep_drop(&u, 0, &step) < 0 || privsep_seccomp(PRIVSEP_INSPECTOR) < 0)
		return 10;
	/* allowed: time, memory, files */
	void *p = malloc(1 << 20);
	free(p);
	(void)getpid();
	/* not in the inspector's list: a new process */
	syscall(SYS_fork);
	return 0;
}

static int seccomp_web_socket(void)
{
	const char *step;
	struct privsep_user u = other();
	if (privsep_drop(&u, 0, &step) < 0 || privsep_seccomp(PRIVSEP_WEB) < 0)
		return 10;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0); /* its control client: allowed */
	if (fd < 0)
		return 11;
	close(fd);
	socket(AF_INET, SOCK_STREAM, 0); /* anything else: ends it */
	return 0;
}

static void test_seccomp(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(in_child(seccomp_then_forbidden), PRIVSEP_EXIT_SECCOMP);
	assert_int_equal(in_child(seccomp_web_socket), PRIVSEP_EXIT_SECCOMP);
}

static char share_dir[256], share_path[300];

static int share_without_dac(void)
{
	const char *step;
	char why[512];
	if (privsep_limit(1ull << CAP_CHOWN, &step) < 0)
		return 10;
	if (privsep_share_store(share_dir, share_path, OTHER_UID, OTHER_UID + 1, (gid_t)-1, why,
				sizeof(why)) < 0) {
		fprintf(stderr, "%s\n", why);
		return 11;
	}
	return 0;
}

/* A fresh directory under /tmp for a test that needs root (skipped
 * otherwise), in *state; removed after it. */
static int tmp_setup(void **state)
{
	static char tmpl[64];
	snprintf(tmpl, sizeof(tmpl), "/tmp/test_privsep.XXXXXX");
	*state = geteuid() == 0 ? mkdtemp(tmpl) : NULL;
	return 0;
}

static int tmp_teardown(void **state)
{
	char cmd[128];
	if (!*state)
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
	return system(cmd) == 0 ? 0 : -1;
}

/* As the systemd unit runs the parent: root without CAP_CHOWN, and with
 * share_dac false also without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
 * (the unit's bounding set). Exit 0 when privsep_share_store and
 * privsep_own_dir accept what is there, 20 when they refuse it saying to
 * run --prepare-files. */
static bool share_dac = true;

static int share_without_chown(void)
{
	const char *step;
	char why[512];
	uint64_t keep = ~(1ull << CAP_CHOWN);
	if (!share_dac)
		keep &= ~((1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_DAC_READ_SEARCH));
	if (privsep_limit(keep, &step) < 0)
		return 10;
	int rc = privsep_share_store(share_dir, share_path, OTHER_UID, OTHER_UID + 1, (gid_t)-1,
				     why, sizeof(why));
	if (rc == 0)
		rc = privsep_own_dir(share_dir, OTHER_UID, OTHER_UID + 1, NULL, why, sizeof(why));
	if (rc == 0)
		return 0;
	fprintf(stderr, "%s\n", why);
	return strstr(why, "--prepare-files") ? 20 : 21;
}

static void test_without_chown(void **state)
{
	const char *base = *state;
	if (!base)
		skip();
	struct stat st;
	snprintf(share_dir, sizeof(share_dir), "%s/store", base);
	snprintf(share_path, sizeof(share_path), "%s/tlsgate.db", share_dir);
	/* nothing there yet: refused, nothing made */
	assert_int_equal(in_child(share_without_chown), 20);
	assert_int_not_equal(stat(share_dir, &st), 0);
	/* prepared (as --prepare-files does, with CAP_CHOWN): accepted */
	char why[512];
	assert_int_equal(privsep_share_store(share_dir, share_path, OTHER_UID, OTHER_UID + 1,
					     (gid_t)-1, why, sizeof(why)),
			 0);
	assert_int_equal(in_child(share_without_chown), 0);
	/* the store given back to root, or its -wal missing: refused */
	char wal[320];
	snprintf(wal, sizeof(wal), "%s-wal", share_path);
	assert_int_equal(chown(share_path, 0, 0), 0);
	assert_int_equal(in_child(share_without_chown), 20);
	assert_int_equal(stat(share_path, &st), 0);
	assert_int_equal(st.st_uid, 0); /* only checked, not changed */
	assert_int_equal(chown(share_path, OTHER_UID, OTHER_UID + 1), 0);
	assert_int_equal(unlink(wal), 0);
	assert_int_equal(in_child(share_without_chown), 20);
	assert_int_equal(stat(wal, &st) == 0, 0);
	/* Without CAP_DAC_*, as the unit: the inspector's 0750 directory
	 * cannot be searched, so only the directory is checked. */
	share_dac = false;
	assert_int_equal(in_child(share_without_chown), 0);
	assert_int_equal(chown(share_dir, 0, 0), 0);
	assert_int_equal(in_child(share_without_chown), 20);
	share_dac = true;
}

static void test_own_dir(void **state)
{
	const char *base = *state;
	if (!base)
		skip();
	char dir[256], path[300], why[512];
	const char *names[] = { "tlsgate.db", "policy.json", NULL };

	/* tlsgate's files only: taken, with them */
	snprintf(dir, sizeof(dir), "%s/state", base);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/policy.json", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(privsep_own_dir(dir, OTHER_UID, OTHER_UID, names, why, sizeof(why)), 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_uid, OTHER_UID);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, OTHER_UID);

	/* a foreign file: refused, nothing changed */
	snprintf(dir, sizeof(dir), "%s/mixed", base);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/passwd", dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(privsep_own_dir(dir, OTHER_UID, OTHER_UID, names, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "passwd"));
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_uid, 0);

	/* others may write: refused (/tmp, a sticky directory) */
	assert_int_equal(privsep_own_dir("/tmp", OTHER_UID, OTHER_UID, names, why, sizeof(why)), -1);
	assert_int_equal(stat("/tmp", &st), 0);
	assert_int_equal(st.st_uid, 0);

	/* the store: its -wal and -shm made beforehand, group rw */
	snprintf(dir, sizeof(dir), "%s/store", base);
	snprintf(path, sizeof(path), "%s/tlsgate.db", dir);
	assert_int_equal(privsep_share_store(dir, path, OTHER_UID, OTHER_UID + 1, (gid_t)-1, why,
					     sizeof(why)),
			 0);
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		char f[320];
		snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
		assert_int_equal(stat(f, &st), 0);
		assert_int_equal(st.st_uid, OTHER_UID);
		assert_int_equal(st.st_gid, OTHER_UID + 1);
		assert_int_equal(st.st_mode & 07777, 0660);
	}
	/* The next start, with the unit's rights: CAP_CHOWN but neither
	 * CAP_DAC_OVERRIDE nor CAP_FOWNER, the directory and files now the
	 * inspector's (0750, 0660): prepared again all the same. */
	snprintf(share_dir, sizeof(share_dir), "%s", dir);
	snprintf(share_path, sizeof(share_path), "%s", path);
	assert_int_equal(in_child(share_without_dac), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, OTHER_UID);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_uid, OTHER_UID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drop),
		cmocka_unit_test(test_parent_drop),
		cmocka_unit_test(test_seccomp),
		cmocka_unit_test_setup_teardown(test_own_dir, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_without_chown, tmp_setup, tmp_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
