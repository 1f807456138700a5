/* control_client.h - the client side of tlsgated's control socket (see
 * control.h for the protocol): tlsgatectl and the web process use it.
 * Runs in the caller's process with the caller's rights; shares nothing
 * with the server but the protocol. */
#ifndef TLSGATE_CONTROL_CLIENT_H
#define TLSGATE_CONTROL_CLIENT_H

#include <sys/un.h>

/* The address of the socket at path; 0 or -ENAMETOOLONG. */
int control_addr(const char *path, struct sockaddr_un *sun);

/* Sends command (one line, no newline) and returns the whole answer
 * (malloc'd, NUL-terminated), or NULL with errno set. Everything -
 * connecting, sending, reading to the end - happens within timeout_ms
 * (ETIMEDOUT after that); a socket that is missing or has no server is
 * ENOENT or ECONNREFUSED at once. */
char *control_request_timeout(const char *path, const char *command, int timeout_ms);

/* control_request_timeout() with the server's own limit per client
 * (CONTROL_CLIENT_MAX_MS): an operator's command waits for a busy daemon. */
char *control_request(const char *path, const char *command);

#endif
