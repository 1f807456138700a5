/* control.h - the local control socket of tlsgated (a Unix stream socket,
 * mode 0600, used by tlsgatectl).
 *
 * Protocol: the client sends one command line (at most CONTROL_LINE_MAX
 * bytes, e.g. "stats\n" or "flows\n"); the daemon answers with one JSON
 * document and closes. A client that sends no whole line within
 * CONTROL_READ_TIMEOUT_MS of connecting, or a longer line, is dropped (the
 * latter with an error answer); one that takes no part of its answer for
 * CONTROL_WRITE_TIMEOUT_MS, or CONTROL_CLIENT_MAX_MS in all, is dropped.
 *
 * The daemon's side never waits: sockets are non-blocking, each client has
 * its own line buffer, answer buffer and deadline, and at most
 * CONTROL_CLIENTS_MAX are served at once (a new one beyond makes the one
 * that has waited longest leave). control_serve() does what is ready and
 * returns; a slow or silent client costs the packet thread nothing. */
#ifndef TLSGATE_CONTROL_H
#define TLSGATE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#define CONTROL_LINE_MAX 256
#define CONTROL_READ_TIMEOUT_MS 1000
#define CONTROL_WRITE_TIMEOUT_MS 2000
#define CONTROL_CLIENT_MAX_MS 30000
#define CONTROL_CLIENTS_MAX 16
#define CONTROL_SOCKET_DEFAULT "/run/tlsgate/tlsgated.sock"

/* Returns the answer for one command as a malloc'd NUL-terminated string
 * (freed by control), or NULL for an unknown command. */
typedef char *(*control_handler_fn)(void *arg, const char *command);

struct control;

/* Creates the socket at path (removing a stale one). NULL on error, logged. */
struct control *control_open(const char *path, control_handler_fn fn, void *arg);
/* Closes and unlinks; accepts NULL. */
void control_close(struct control *c);
/* An fd for the daemon's epoll set (an epoll set of the listening socket
 * and the clients): readable when control_serve() has work. */
int control_fd(const struct control *c);
/* Accepts new clients, reads and answers what is ready, drops clients past
 * their deadline. Never blocks. Call it when control_fd() is readable and
 * about once a second (deadlines). */
void control_serve(struct control *c);
/* Clients being served now; clients dropped at a deadline and to make room. */
void control_counts(const struct control *c, size_t *clients, uint64_t *timed_out,
		    uint64_t *evicted);

/* Client side: sends command and returns the whole answer (malloc'd), or
 * NULL with errno set. */
char *control_request(const char *path, const char *command);

#endif
