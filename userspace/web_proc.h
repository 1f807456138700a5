/* web_proc.h - the web process: the status page and API (web.h) in a
 * process of its own, with no capability, as a user that can only read
 * the store, talking to the packet inspector only over its control
 * socket (control.h).
 *
 * What the privileged parent does, in this order:
 *   before fork   fd = web_listen_socket(listen)         (binds as root)
 *                 the inspector's control socket: control_limit_uid(ctl,
 *                 web uid, WEB_PROC_COMMANDS) and control_allow_group(ctl,
 *                 web gid), so that the web reaches it and may send only
 *                 those commands
 *   in the child  drop to the web user (no capability, no supplementary
 *                 group; the store readable through the group or an ACL,
 *                 never writable), then
 *                 exit(web_proc_run(&cfg, control_path, stop_fd)) with
 *                 cfg.listen_fd = fd and cfg.listen the same address,
 *                 stop_fd the read end of a pipe whose write end only the
 *                 parent holds: it closes it to stop the web (no signal
 *                 to another user, so no CAP_KILL)
 *   the parent    keeps fd open to start the web again after a crash.
 *
 * The hooks each connect to the control socket, send one command and
 * wait at most WEB_PROC_CALL_TIMEOUT_MS for the whole answer: a dead or
 * restarting inspector makes those endpoints answer 503, never holds the
 * web. After a call that timed out, calls fail at once for
 * WEB_PROC_BACKOFF_MS (a hung inspector would otherwise cost every queued
 * request its own timeout). Store reads do not involve the inspector. */
#ifndef TLSGATE_WEB_PROC_H
#define TLSGATE_WEB_PROC_H

#include <stdint.h>

#include "web.h"

#define WEB_PROC_CALL_TIMEOUT_MS 1000
#define WEB_PROC_BACKOFF_MS 3000

/* The commands the web sends, for control_limit_uid(). "probe-api
 * DOMAIN" schedules a probe in the API's class (its own budget, after
 * mail's probes); the others are tlsgatectl's. */
#define WEB_PROC_COMMANDS ((const char *const[]){ "stats", "flows", "release", "probe-api", NULL })

/* The web's main loop: serves cfg (see web_config; listen_fd from the
 * parent) with hooks over the control socket at control_path until
 * stop_fd (-1: none) reads end of file, SIGTERM or SIGINT (or the
 * parent's death: PR_SET_PDEATHSIG, set here as it does not survive the
 * drop). 0 after a stop, 1 when the web could not start (logged). */
int web_proc_run(const struct web_config *cfg, const char *control_path, int stop_fd);

/* The hook client alone (exposed for tests): one command, its answer in
 * the hooks' terms. */
struct web_proc_client {
	const char *control_path;
	int timeout_ms;
	int64_t down_until; /* ms, CLOCK_MONOTONIC: fail at once before this */
};
/* The answer to command (malloc'd), or NULL with *err: -ECONNREFUSED
 * (no inspector at the socket), -ETIMEDOUT (it did not answer in time,
 * or recently did not), -EPERM (refused the command). */
char *web_proc_request(struct web_proc_client *pc, const char *command, int *err);

#endif
