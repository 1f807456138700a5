/* privsep.h - the rights of tlsgated's processes.
 *
 * tlsgated runs as four kinds of process (docs/privsep.md):
 *   parent     root: loads and attaches the tagger, adds the NFQUEUE rule,
 *              binds the queue, opens the raw sockets and the listening
 *              sockets, then starts the children, restarts a crashed one,
 *              starts probes, and takes the kernel side away at a stop.
 *              Parses no network input.
 *   inspector  --user (default tlsgate): reads every queued packet (SMTP,
 *              TLS, DNS); keeps CAP_NET_ADMIN only (queue verdicts are
 *              checked against the sending task); seccomp allow-list.
 *   web        --web-user (default tlsgate-web): the status page and API;
 *              no capability; reads the store read-only; asks the inspector
 *              over the control socket; seccomp allow-list.
 *   probe      --probe-user (default tlsgate-probe): no capability, a new
 *              program (exec) per probe.
 * Each process is switched by privsep_drop() right after fork(). */
#ifndef TLSGATE_PRIVSEP_H
#define TLSGATE_PRIVSEP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/capability.h>

struct privsep_user {
	bool drop; /* false: not root, nothing to switch */
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* Looks up name (NULL: fallback). Refuses root (uid or gid 0) and a
 * missing user: -1 with the reason in why. When this process is not root,
 * fills nothing and returns 0 with u->drop false. */
int privsep_user_resolve(const char *name, const char *fallback, struct privsep_user *u,
			 char *why, size_t whylen);

/* Becomes u (real, effective and saved uid and gid, no supplementary
 * groups) keeping only the capabilities in keep (bit CAP_x set: kept in
 * permitted and effective; the bounding set holds nothing else), no
 * ambient or inheritable capability, no_new_privs, not dumpable. Only
 * system calls: safe between fork() and exec(). On failure returns -1,
 * errno set and *step naming what failed; the caller must then exit. */
int privsep_drop(const struct privsep_user *u, uint64_t keep, const char **step);

/* The parent after its start: stays root but keeps only the capabilities
 * in keep (bounding, permitted and effective; inheritable empty), so that
 * what it runs later (iptables at a stop) has no more either. 0, or -1
 * with errno and *step. */
int privsep_limit(uint64_t keep, const char **step);
/* The parent after its start, when it was root: becomes u (real,
 * effective and saved uid and gid, no supplementary groups) keeping only
 * the capabilities in keep, those in ambient also as ambient ones (for
 * what it runs: iptables), no_new_privs, and a seccomp filter that
 * refuses uid and gid 0 to it and its children, CAP_SETUID or not. When
 * not root: privsep_limit(keep). 0, or -1 with errno and *step. */
int privsep_parent_drop(const struct privsep_user *u, uint64_t keep, uint64_t ambient,
			const char **step);
/* What iptables, run by the parent, needs. */
#define PRIVSEP_PARENT_AMBIENT ((1ull << CAP_NET_ADMIN) | (1ull << CAP_NET_RAW))
/* What the parent keeps: its rule and the stop (CAP_NET_ADMIN; iptables
 * also CAP_NET_RAW), its children's drops (CAP_SETUID, CAP_SETGID,
 * CAP_SETPCAP) and, where it was given CAP_KILL, the SIGKILL for a child
 * that did not stop when asked over its channel (they run as other
 * users; the systemd unit gives no CAP_KILL and kills the cgroup). A
 * capability the process does not have is not kept. */
#define PRIVSEP_PARENT_CAPS                                                            \
	((1ull << CAP_NET_ADMIN) | (1ull << CAP_NET_RAW) | (1ull << CAP_SETUID) |         \
	 (1ull << CAP_SETGID) | (1ull << CAP_SETPCAP) | (1ull << CAP_KILL))

/* Gives the file name in dirfd ("": dirfd itself) to group gid. Without
 * CAP_CHOWN the owner may still give its file to a group it is in: for
 * the chown, gid is made the effective group (CAP_SETGID). 0 or -1. */
int privsep_chgrp(int dirfd, const char *name, gid_t gid);

/* The capability numbers this process holds in its effective set, as a
 * bit mask (from capget). */
uint64_t privsep_effective_caps(void);

/* Installs the seccomp allow-list of the inspector or the web. A call
 * outside the list raises SIGSYS: the handler writes the call's number to
 * stderr and the process exits with PRIVSEP_EXIT_SECCOMP. 0 or -1. */
enum privsep_role { PRIVSEP_INSPECTOR, PRIVSEP_WEB };
int privsep_seccomp(enum privsep_role role);
#define PRIVSEP_EXIT_SECCOMP 159

/* Makes dir (created 0750 if missing) owned by owner:group, mode 0750, and
 * the regular files in it named names[i]* (NULL-terminated prefixes; an
 * earlier run as root left them) owned by them too. A directory not yet
 * owner's is taken only when everything in it is so named; one others may
 * write is refused. Only when root; 0 or -1 with the reason in why. */
int privsep_own_dir(const char *dir, uid_t owner, gid_t group, const char *const *names,
		    char *why, size_t whylen);

/* Makes dir (created 0750 if missing) and the files in it that the
 * inspector writes (the store and its -wal and -shm) owned by owner,
 * group of the probe (who writes its results there), mode 0660, with a
 * read ACL for reader_gid (the web; -1: none). Refuses a directory that
 * others may write (e.g. /tmp): -1 with the reason. Only when root. */
int privsep_share_store(const char *dir, const char *store_path, uid_t owner, gid_t group,
			gid_t reader_gid, char *why, size_t whylen);

#endif
