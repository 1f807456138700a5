/* web_proc.c - see web_proc.h for the contract. */
#include "web_proc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "control_client.h"
#include "log.h"

static int64_t web_proc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *web_proc_request(struct web_proc_client *pc, const char *command, int *err)
{
	if (web_proc_now_ms() < pc->down_until) {
		*err = -ETIMEDOUT;
		return NULL;
	}
	char *answer = control_request_timeout(pc->control_path, command, pc->timeout_ms);
	if (answer) {
		*err = strstr(answer, "\"command not permitted\"") ? -EPERM : 0;
		return answer;
	}
	*err = errno == ETIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	if (*err == -ETIMEDOUT)
		pc->down_until = web_proc_now_ms() + WEB_PROC_BACKOFF_MS;
	static struct log_ratelimit rl;
	log_warnx_rl(&rl, "web: control socket %s: %s: %s", pc->control_path, command,
		     strerror(errno));
	return NULL;
}

/* A JSON answer of stats or flows; NULL for none or an error answer. */
static char *web_proc_json(struct web_proc_client *pc, const char *command)
{
	int err;
	char *answer = web_proc_request(pc, command, &err);
	json_t *root = answer ? json_loads(answer, 0, NULL) : NULL;
	bool ok = root && !json_object_get(root, "error");
	json_decref(root);
	if (!ok) {
		free(answer);
		return NULL;
	}
	return answer;
}

static char *web_proc_stats(void *arg)
{
	return web_proc_json(arg, "stats");
}

static char *web_proc_flows(void *arg)
{
	return web_proc_json(arg, "flows");
}

/* What an answer {"ok": true, ...} or {"ok": false, "error": TEXT} (TEXT
 * "not locked" or an errno's text, as the daemon writes them) says. */
static int web_proc_status(const char *answer)
{
	static const int known[] = { EALREADY, EEXIST, EINVAL, ENOSPC, EBUSY };
	json_t *root = json_loads(answer, 0, NULL);
	const char *e = json_string_value(json_object_get(root, "error"));
	int rc = -EIO;
	if (json_is_true(json_object_get(root, "ok")))
		rc = 0;
	else if (e && !strcmp(e, "not locked"))
		rc = -ENOENT;
	else if (e && !strcmp(e, "unknown command"))
		rc = -ENOSYS;
	for (size_t i = 0; rc == -EIO && e && i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(e, strerror(known[i])))
			rc = -known[i];
	json_decref(root);
	return rc;
}

/* Sends "verb arg"; 0 or -errno as the hooks return them. */
static int web_proc_command(struct web_proc_client *pc, const char *verb, const char *arg)
{
	char line[CONTROL_LINE_MAX + 1];
	if (strpbrk(arg, "\r\n ") ||
	    (size_t)snprintf(line, sizeof(line), "%s %s", verb, arg) >= sizeof(line))
		return -EINVAL;
	int err;
	char *answer = web_proc_request(pc, line, &err);
	if (!answer)
		return err;
	int rc = err < 0 ? err : web_proc_status(answer);
	free(answer);
	return rc;
}

static int web_proc_probe(void *arg, const char *domain)
{
	return web_proc_command(arg, "probe-api", domain);
}

/* by is the web's; the daemon tells the web's commands by their uid
 * (control_peer_limited). */
static int web_proc_release(void *arg, const char *mx, const char *by)
{
	return web_proc_command(arg, "release", mx);
}

int web_proc_run(const struct web_config *cfg, const char *control_path, int stop_fd)
{
	/* Blocked before web_open: its threads inherit the mask, and the
	 * signals wait in sfd for this loop. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	signal(SIGPIPE, SIG_IGN);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		log_warn("web: PR_SET_PDEATHSIG");
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	struct web_proc_client pc = { .control_path = control_path,
				      .timeout_ms = WEB_PROC_CALL_TIMEOUT_MS };
	struct web_hooks hooks = { .arg = &pc, .stats_json = web_proc_stats,
				   .flows_json = web_proc_flows, .schedule_probe = web_proc_probe,
				   .release = web_proc_release };
	struct web *w = sfd >= 0 ? web_open(cfg, &hooks) : NULL;
	if (!w) {
		if (sfd < 0)
			log_warn("web: signalfd");
		else
			close(sfd);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return 1;
	}
	log_info("web: serving as uid %u, the inspector at %s", (unsigned)geteuid(), control_path);
	int status = 0;
	for (;;) {
		struct pollfd p[3] = { { .fd = web_fd(w), .events = POLLIN },
				       { .fd = sfd, .events = POLLIN },
				       { .fd = stop_fd, .events = POLLIN } };
		/* At least once a second: the samples of the last hour. */
		if (poll(p, 3, 1000) < 0 && errno != EINTR) {
			log_warn("web: poll");
			status = 1;
			break;
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			log_info("web: stop asked by the parent");
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				log_info("web: signal %u: stopping", si.ssi_signo);
				break;
			}
		}
		web_process(w);
	}
	web_close(w);
	close(sfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return status;
}
