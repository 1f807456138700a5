/* control_client.c - see control_client.h for the contract. */
#include "control_client.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"

#define CONTROL_ANSWER_MAX (64u * 1024 * 1024)
#define CONTROL_CONNECT_RETRY_MS 10 /* the server's backlog is full: try again */

int control_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

static int64_t control_client_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline; 0, -ETIMEDOUT or
 * -errno. */
static int control_client_wait(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - control_client_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int rc = poll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc > 0)
			return 0;
		if (fd < 0) /* a plain sleep */
			return 0;
	}
}

static int control_client_connect(int fd, const struct sockaddr_un *sun, int64_t deadline)
{
	for (;;) {
		if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) /* ENOENT, ECONNREFUSED: no server */
			return -errno;
		int64_t retry = control_client_now_ms() + CONTROL_CONNECT_RETRY_MS;
		if (retry >= deadline)
			return -ETIMEDOUT;
		control_client_wait(-1, 0, retry);
	}
}

static int control_client_send(int fd, const char *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		if (n < 0) {
			int rc = control_client_wait(fd, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads to the end of the answer; a malloc'd string or NULL, *err set. */
static char *control_client_read(int fd, int64_t deadline, int *err)
{
	size_t cap = 4096, used = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (used + 1 >= cap) {
			if (cap >= CONTROL_ANSWER_MAX) {
				*err = -EMSGSIZE;
				break;
			}
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = recv(fd, buf + used, cap - used - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			*err = control_client_wait(fd, POLLIN, deadline);
			if (*err < 0)
				break;
			continue;
		}
		if (r < 0) {
			*err = -errno;
			break;
		}
		if (r == 0) {
			buf[used] = '\0';
			return buf;
		}
		used += (size_t)r;
	}
	free(buf);
	return NULL;
}

char *control_request_timeout(const char *path, const char *command, int timeout_ms)
{
	int64_t deadline = control_client_now_ms() + timeout_ms;
	struct sockaddr_un sun;
	char line[CONTROL_LINE_MAX + 2];
	char *answer = NULL;
	int n = snprintf(line, sizeof(line), "%s\n", command);
	int rc = control_addr(path, &sun);
	if (rc == 0 && (n < 0 || n > CONTROL_LINE_MAX))
		rc = -E2BIG;
	if (rc < 0) {
		errno = -rc;
		return NULL;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return NULL;
	rc = control_client_connect(fd, &sun, deadline);
	if (rc == 0)
		rc = control_client_send(fd, line, (size_t)n, deadline);
	if (rc == 0)
		answer = control_client_read(fd, deadline, &rc);
	close(fd);
	if (!answer)
		errno = -rc;
	return answer;
}

char *control_request(const char *path, const char *command)
{
	return control_request_timeout(path, command, CONTROL_CLIENT_MAX_MS);
}
