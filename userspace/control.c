/* control.c - see control.h for the contract. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control_client.h"
#include "log.h"
#include "privsep.h"

#define CONTROL_LISTENER UINT32_MAX /* epoll data of the listening socket */

/* A client being served: its command line as it arrives, then its answer
 * as the socket takes it, each within its deadline. */
struct control_client {
	int fd; /* -1: free */
	char line[CONTROL_LINE_MAX + 1];
	size_t used;
	bool answering, writing;
	char *out;
	size_t out_len, out_off;
	uint64_t since, deadline; /* ms, CLOCK_MONOTONIC */
	uid_t uid; /* the peer's (SO_PEERCRED) */
};

struct control {
	int fd; /* listening */
	int ep; /* epoll set of the listening socket and the clients: control_fd() */
	char *path;
	control_handler_fn fn;
	void *arg;
	struct control_client clients[CONTROL_CLIENTS_MAX];
	size_t n_clients;
	uint64_t timed_out, evicted;
	bool limited;     /* control_limit_uid() was called */
	uid_t limit_uid;
	char **allowed;   /* its commands, NULL-terminated */
	const struct control_client *current; /* whose command fn answers now */
};

static void control_drop(struct control *c, struct control_client *cl, const char *why);

static void control_allowed_free(struct control *c)
{
	for (char **a = c->allowed; a && *a; a++)
		free(*a);
	free(c->allowed);
	c->allowed = NULL;
}

struct control *control_open(const char *path, control_handler_fn fn, void *arg)
{
	struct sockaddr_un sun;
	if (control_addr(path, &sun) < 0) {
		log_warnx("control: socket path too long: %s", path);
		return NULL;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("control: socket");
		return NULL;
	}
	unlink(path); /* stale socket of a crashed daemon */
	mode_t old = umask(0077);
	int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0) {
		log_warn("control: bind/listen %s", path);
		close(fd);
		return NULL;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = CONTROL_LISTENER };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		log_warn("control: epoll");
		if (ep >= 0)
			close(ep);
		close(fd);
		unlink(path);
		return NULL;
	}
	struct control *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->ep = ep;
	c->path = xstrdup(path);
	c->fn = fn;
	c->arg = arg;
	for (size_t k = 0; k < CONTROL_CLIENTS_MAX; k++)
		c->clients[k].fd = -1;
	return c;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	for (size_t k = 0; k < CONTROL_CLIENTS_MAX; k++)
		if (c->clients[k].fd >= 0)
			control_drop(c, &c->clients[k], NULL);
	close(c->ep);
	close(c->fd);
	unlink(c->path);
	free(c->path);
	control_allowed_free(c);
	free(c);
}

int control_limit_uid(struct control *c, uid_t uid, const char *const *allowed_prefixes)
{
	size_t n = 0;
	while (allowed_prefixes && allowed_prefixes[n])
		n++;
	control_allowed_free(c);
	c->allowed = xcalloc(n + 1, sizeof(*c->allowed));
	for (size_t i = 0; i < n; i++)
		c->allowed[i] = xstrdup(allowed_prefixes[i]);
	c->limit_uid = uid;
	c->limited = true;
	return 0;
}

int control_allow_group(struct control *c, gid_t gid)
{
	/* The socket was made its owner's only (umask at bind): nobody
	 * else could connect before this. */
	int rc = privsep_chgrp(AT_FDCWD, c->path, gid);
	if (rc < 0 || chmod(c->path, 0660) < 0) {
		int err = -errno;
		log_warn("control: %s: group %d, mode 0660", c->path, (int)gid);
		return err;
	}
	return 0;
}

bool control_peer_limited(const struct control *c)
{
	return c->current && c->limited && c->current->uid == c->limit_uid;
}

/* Whether the peer cl may send command: the limited uid only what its
 * list names (the whole command, or a listed word and a space first);
 * root and this process's own uid anything; other uids nothing. */
static bool control_permitted(const struct control *c, const struct control_client *cl,
			      const char *command)
{
	if (c->limited && cl->uid == c->limit_uid) {
		for (char **a = c->allowed; *a; a++) {
			size_t n = strlen(*a);
			if (!strncmp(command, *a, n) && (command[n] == '\0' || command[n] == ' '))
				return true;
		}
		return false;
	}
	return cl->uid == 0 || cl->uid == geteuid();
}

int control_fd(const struct control *c)
{
	return c->ep;
}

void control_counts(const struct control *c, size_t *clients, uint64_t *timed_out,
		    uint64_t *evicted)
{
	*clients = c->n_clients;
	*timed_out = c->timed_out;
	*evicted = c->evicted;
}

static uint64_t control_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void control_drop(struct control *c, struct control_client *cl, const char *why)
{
	if (why)
		log_debug("control: client dropped: %s", why);
	epoll_ctl(c->ep, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	free(cl->out);
	*cl = (struct control_client){ .fd = -1 };
	c->n_clients--;
}

/* Sends what the socket takes now; drops the client when all is sent or
 * it failed. */
static void control_send(struct control *c, struct control_client *cl, uint64_t now)
{
	while (cl->out_off < cl->out_len) {
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!cl->writing) {
				struct epoll_event ev = { .events = EPOLLOUT,
							  .data.u32 = (uint32_t)(cl - c->clients) };
				epoll_ctl(c->ep, EPOLL_CTL_MOD, cl->fd, &ev);
				cl->writing = true;
			}
			return;
		}
		if (n <= 0) {
			control_drop(c, cl, "went away");
			return;
		}
		cl->out_off += (size_t)n;
		/* Progress: the write deadline starts again, within the cap. */
		cl->deadline = now + CONTROL_WRITE_TIMEOUT_MS;
		if (cl->deadline > cl->since + CONTROL_CLIENT_MAX_MS)
			cl->deadline = cl->since + CONTROL_CLIENT_MAX_MS;
	}
	control_drop(c, cl, NULL);
}

static void control_answer(struct control *c, struct control_client *cl, char *text,
			   uint64_t now)
{
	cl->out = text;
	cl->out_len = strlen(text);
	cl->out_off = 0;
	cl->answering = true;
	cl->deadline = now + CONTROL_WRITE_TIMEOUT_MS;
	control_send(c, cl, now);
}

/* Reads what has arrived; answers once the line is whole. */
static void control_read(struct control *c, struct control_client *cl, uint64_t now)
{
	bool eof = false;
	while (cl->used < CONTROL_LINE_MAX && !memchr(cl->line, '\n', cl->used)) {
		ssize_t n = recv(cl->fd, cl->line + cl->used, CONTROL_LINE_MAX - cl->used,
				 MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return; /* more later (or the deadline) */
		if (n <= 0) {
			eof = true;
			break;
		}
		cl->used += (size_t)n;
	}
	cl->line[cl->used] = '\0';
	char *nl = strchr(cl->line, '\n');
	if (!nl) {
		if (eof && cl->used == 0) {
			control_drop(c, cl, "closed without a command");
			return;
		}
		control_answer(c, cl, xstrdup("{\"error\":\"command line missing or too long\"}\n"),
			       now);
		return;
	}
	*nl = '\0';
	if (nl > cl->line && nl[-1] == '\r')
		nl[-1] = '\0';
	/* Nothing more is read from this client. */
	struct epoll_event ev = { .events = 0, .data.u32 = (uint32_t)(cl - c->clients) };
	epoll_ctl(c->ep, EPOLL_CTL_MOD, cl->fd, &ev);
	if (!control_permitted(c, cl, cl->line)) {
		log_info("control: command refused to uid %u: %.40s", (unsigned)cl->uid, cl->line);
		control_answer(c, cl, xstrdup("{\"error\":\"command not permitted\"}\n"), now);
		return;
	}
	c->current = cl;
	char *answer = c->fn(c->arg, cl->line);
	c->current = NULL;
	control_answer(c, cl, answer ? answer : xstrdup("{\"error\":\"unknown command\"}\n"), now);
}

static void control_accept(struct control *c, uint64_t now)
{
	for (int i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		if (c->n_clients >= CONTROL_CLIENTS_MAX) {
			/* Full: the client that has waited longest makes room. */
			struct control_client *old = NULL;
			for (size_t k = 0; k < CONTROL_CLIENTS_MAX; k++)
				if (c->clients[k].fd >= 0 && (!old || c->clients[k].since < old->since))
					old = &c->clients[k];
			c->evicted++;
			control_drop(c, old, "evicted: too many clients");
		}
		struct control_client *cl = NULL;
		for (size_t k = 0; k < CONTROL_CLIENTS_MAX && !cl; k++)
			if (c->clients[k].fd < 0)
				cl = &c->clients[k];
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
			log_warn("control: SO_PEERCRED");
			close(fd);
			continue;
		}
		*cl = (struct control_client){ .fd = fd, .since = now, .uid = cred.uid,
					       .deadline = now + CONTROL_READ_TIMEOUT_MS };
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)(cl - c->clients) };
		if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			log_warn("control: epoll_ctl");
			close(fd);
			*cl = (struct control_client){ .fd = -1 };
			continue;
		}
		c->n_clients++;
	}
}

void control_serve(struct control *c)
{
	uint64_t now = control_now_ms();
	struct epoll_event evs[CONTROL_CLIENTS_MAX + 1];
	int n = epoll_wait(c->ep, evs, CONTROL_CLIENTS_MAX + 1, 0);
	for (int i = 0; i < n; i++) {
		uint32_t k = evs[i].data.u32;
		if (k == CONTROL_LISTENER) {
			control_accept(c, now);
			continue;
		}
		if (k >= CONTROL_CLIENTS_MAX || c->clients[k].fd < 0)
			continue;
		struct control_client *cl = &c->clients[k];
		if (cl->answering)
			control_send(c, cl, now);
		else
			control_read(c, cl, now);
	}
	for (size_t k = 0; k < CONTROL_CLIENTS_MAX; k++) {
		struct control_client *cl = &c->clients[k];
		if (cl->fd >= 0 && now >= cl->deadline) {
			c->timed_out++;
			control_drop(c, cl, cl->answering ? "does not read its answer"
							  : "no command line in time");
		}
	}
}
