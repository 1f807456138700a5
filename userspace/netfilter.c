/* netfilter.c - see netfilter.h for the contract. */
#include "netfilter.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

/* Runs argv without a shell, output discarded. Returns the exit status, or
 * -errno when it could not be started. */
static int netfilter_run(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -rc;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

/* op: "-C", "-I" or "-D". */
static int netfilter_rule_op(const char *tool, const char *op, const struct netfilter_rule *r)
{
	char mark[32], queue[8];
	snprintf(mark, sizeof(mark), "0x%x/0x%x", r->mark, r->mask);
	snprintf(queue, sizeof(queue), "%u", r->queue_num);
	char *const argv[] = { (char *)tool, "-w", "-t", "filter", (char *)op,
			       (char *)r->chain, "-m", "mark", "--mark", mark,
			       "-j", "NFQUEUE", "--queue-num", queue,
			       "--queue-bypass", NULL };
	return netfilter_run(argv);
}

static const char *const netfilter_tools[] = { "iptables", "ip6tables" };

int netfilter_add(const struct netfilter_rule *r)
{
	int inserted = 0;
	for (size_t i = 0; i < 2; i++) {
		const char *tool = netfilter_tools[i];
		int rc = netfilter_rule_op(tool, "-C", r);
		if (rc == 0)
			continue; /* already there (e.g. after a crash) */
		if (rc < 0) {
			errno = -rc;
			log_warn("netfilter: cannot run %s", tool);
			return rc;
		}
		rc = netfilter_rule_op(tool, "-I", r);
		if (rc != 0) {
			log_warnx("netfilter: %s -I %s ... -j NFQUEUE failed (status %d)", tool,
				  r->chain, rc);
			return rc < 0 ? rc : -EIO;
		}
		inserted = 1;
	}
	return inserted;
}

int netfilter_remove(const struct netfilter_rule *r)
{
	int result = 0;
	for (size_t i = 0; i < 2; i++) {
		/* Delete every copy; bounded in case -D keeps "succeeding". */
		for (int n = 0; n < 16; n++) {
			if (netfilter_rule_op(netfilter_tools[i], "-C", r) != 0)
				break;
			if (netfilter_rule_op(netfilter_tools[i], "-D", r) != 0) {
				log_warnx("netfilter: %s -D %s failed", netfilter_tools[i], r->chain);
				result = -EIO;
				break;
			}
		}
	}
	return result;
}
