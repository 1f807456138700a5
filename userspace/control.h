/* control.h - the local control socket of tlsgated (a Unix stream socket,
 * mode 0600, used by tlsgatectl).
 *
 * Protocol: the client sends one command line (at most CONTROL_LINE_MAX
 * bytes, e.g. "stats\n" or "flows\n"); the daemon answers with one JSON
 * document and closes. A client that sends nothing within the read timeout
 * or a longer line is dropped. Writing the answer blocks at most
 * CONTROL_WRITE_TIMEOUT_MS; a client that does not read is dropped. */
#ifndef TLSGATE_CONTROL_H
#define TLSGATE_CONTROL_H

#include <stddef.h>

#define CONTROL_LINE_MAX 256
#define CONTROL_WRITE_TIMEOUT_MS 2000
#define CONTROL_SOCKET_DEFAULT "/run/tlsgate/tlsgated.sock"

/* Returns the answer for one command as a malloc'd NUL-terminated string
 * (freed by control), or NULL for an unknown command. */
typedef char *(*control_handler_fn)(void *arg, const char *command);

struct control;

/* Creates the socket at path (removing a stale one). NULL on error, logged. */
struct control *control_open(const char *path, control_handler_fn fn, void *arg);
/* Closes and unlinks; accepts NULL. */
void control_close(struct control *c);
int control_fd(const struct control *c);
/* Accepts and serves the waiting clients. Never blocks longer than the
 * timeouts above per client. */
void control_serve(struct control *c);

/* Client side: sends command and returns the whole answer (malloc'd), or
 * NULL with errno set. */
char *control_request(const char *path, const char *command);

#endif
