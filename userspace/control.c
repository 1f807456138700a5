/* control.c - see control.h for the contract. */
#include "control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define CONTROL_READ_TIMEOUT_MS 1000
#define CONTROL_ANSWER_MAX (64u * 1024 * 1024)

struct control {
	int fd;
	char *path;
	control_handler_fn fn;
	void *arg;
};

static int control_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
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
	struct control *c = xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->path = xstrdup(path);
	c->fn = fn;
	c->arg = arg;
	return c;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	close(c->fd);
	unlink(c->path);
	free(c->path);
	free(c);
}

int control_fd(const struct control *c)
{
	return c->fd;
}

/* Waits for fd to be ready for events; 0 when ready, -ETIMEDOUT or -errno. */
static int control_wait(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int rc;
	do
		rc = poll(&p, 1, timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

static int control_write_all(int fd, const char *buf, size_t len, int timeout_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			int rc = control_wait(fd, POLLOUT, timeout_ms);
			if (rc < 0)
				return rc;
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void control_client(struct control *c, int fd)
{
	char line[CONTROL_LINE_MAX + 1];
	size_t used = 0;
	while (used < CONTROL_LINE_MAX) {
		if (control_wait(fd, POLLIN, CONTROL_READ_TIMEOUT_MS) < 0)
			return;
		ssize_t n = recv(fd, line + used, CONTROL_LINE_MAX - used, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
		if (memchr(line, '\n', used))
			break;
	}
	line[used] = '\0';
	char *nl = strchr(line, '\n');
	if (!nl) {
		const char *err = "{\"error\":\"command line missing or too long\"}\n";
		control_write_all(fd, err, strlen(err), CONTROL_WRITE_TIMEOUT_MS);
		return;
	}
	*nl = '\0';
	if (nl > line && nl[-1] == '\r')
		nl[-1] = '\0';
	char *answer = c->fn(c->arg, line);
	if (!answer) {
		const char *err = "{\"error\":\"unknown command\"}\n";
		control_write_all(fd, err, strlen(err), CONTROL_WRITE_TIMEOUT_MS);
		return;
	}
	if (control_write_all(fd, answer, strlen(answer), CONTROL_WRITE_TIMEOUT_MS) < 0)
		log_debug("control: client went away");
	free(answer);
}

void control_serve(struct control *c)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("control: accept");
			return;
		}
		control_client(c, fd);
		close(fd);
	}
}

char *control_request(const char *path, const char *command)
{
	struct sockaddr_un sun;
	int rc = control_addr(path, &sun);
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		goto fail;
	char line[CONTROL_LINE_MAX + 2];
	int n = snprintf(line, sizeof(line), "%s\n", command);
	if (n < 0 || n > CONTROL_LINE_MAX) {
		errno = E2BIG;
		goto fail;
	}
	if ((rc = control_write_all(fd, line, (size_t)n, CONTROL_WRITE_TIMEOUT_MS)) < 0) {
		errno = -rc;
		goto fail;
	}
	size_t cap = 4096, used = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (used + 1 >= cap) {
			if (cap >= CONTROL_ANSWER_MAX) {
				free(buf);
				errno = EMSGSIZE;
				goto fail;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = recv(fd, buf + used, cap - used - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int saved = errno;
			free(buf);
			errno = saved;
			goto fail;
		}
		if (r == 0)
			break;
		used += (size_t)r;
	}
	buf[used] = '\0';
	close(fd);
	return buf;
fail:;
	int saved = errno;
	close(fd);
	errno = saved;
	return NULL;
}
