/* control.h - the local control socket of tlsgated (a Unix stream socket,
 * its owner's only, used by tlsgatectl; 0660 with a group for the web process,
 * see control_allow_group). The client side is control_client.h.
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* Who may send what (SO_PEERCRED of each client): peers of uid may send
 * only the commands allowed_prefixes lists (NULL-terminated; a command is
 * allowed when it is an entry, or an entry followed by a space and
 * arguments: "stats", "release" allows "release mx.example"); anything else
 * is answered {"error":"command not permitted"} without reaching the
 * handler. Root and this process's own uid may send anything; any other
 * uid nothing. One limited uid: a second call replaces the first. The list
 * is copied. 0. */
int control_limit_uid(struct control *c, uid_t uid, const char *const *allowed_prefixes);
/* Lets members of gid connect: the socket file becomes group gid, mode
 * 0660 (its owner stays the creator's, root). 0 or -errno, logged. */
int control_allow_group(struct control *c, gid_t gid);
/* Inside the handler: whether the command comes from the limited uid (the
 * web process), e.g. to say who released a lock. */
bool control_peer_limited(const struct control *c);

#endif
