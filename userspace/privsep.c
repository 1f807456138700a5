/* privsep.c - see privsep.h for the contract. */
#include "privsep.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/capability.h>
#include <seccomp.h>

#include "log.h"

int privsep_user_resolve(const char *name, const char *fallback, struct privsep_user *u,
			 char *why, size_t whylen)
{
	memset(u, 0, sizeof(*u));
	if (geteuid() != 0)
		return 0;
	const char *want = name ? name : fallback;
	struct passwd *pw = getpwnam(want);
	if (!pw) {
		snprintf(why, whylen,
			 "user %s does not exist (create tlsgate's users: systemd-sysusers "
			 "/usr/lib/sysusers.d/tlsgate.conf, or make deps)",
			 want);
		return -1;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		snprintf(why, whylen, "user %s: uid %d, gid %d: must not be root", want,
			 (int)pw->pw_uid, (int)pw->pw_gid);
		return -1;
	}
	u->drop = true;
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	snprintf(u->name, sizeof(u->name), "%s", pw->pw_name);
	return 0;
}

static int cap_last(void)
{
	/* Without /proc: every number the kernel might know. */
	char buf[8] = { 0 };
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 63;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	int v = 0;
	for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		v = v * 10 + (buf[i] - '0');
	return n > 0 && v > 0 && v < 64 ? v : 63;
}

/* Empties the bounding set but for keep (needs CAP_SETPCAP). */
static int bounding_keep(uint64_t keep)
{
	int last = cap_last();
	for (int cap = 0; cap <= last; cap++)
		if (!(keep & (1ull << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -1;
	return 0;
}

/* Permitted and effective: what of keep is permitted now (in *kept when
 * not NULL); inheritable: that and inheritable. */
static int caps_keep(uint64_t keep, uint64_t inheritable, uint64_t *kept)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = { { 0 } };
	if (syscall(SYS_capget, &h, caps) < 0)
		return -1;
	uint64_t p = ((uint64_t)caps[0].permitted | (uint64_t)caps[1].permitted << 32) & keep;
	for (int i = 0; i < 2; i++) {
		caps[i].permitted = caps[i].effective = (uint32_t)(p >> (32 * i));
		caps[i].inheritable = (uint32_t)((p & inheritable) >> (32 * i));
	}
	if (kept)
		*kept = p;
	return syscall(SYS_capset, &h, caps) < 0 ? -1 : 0;
}

/* Becomes u (real, effective and saved uid and gid, no supplementary
 * groups) keeping of keep what is permitted (in *kept; permitted and
 * effective), of that ambient also as ambient capabilities, and nothing
 * else in the bounding set. */
static int become(const struct privsep_user *u, uint64_t keep, uint64_t ambient,
		  uint64_t *kept, const char **step)
{
	*step = "keep capabilities across the uid change";
	if (prctl(PR_SET_KEEPCAPS, keep ? 1 : 0, 0, 0, 0) < 0)
		return -1;
	*step = "clear the supplementary groups";
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		return -1;
	*step = "set the gid";
	if (syscall(SYS_setresgid, u->gid, u->gid, u->gid) < 0)
		return -1;
	/* Needs CAP_SETPCAP, so before the uid changes. */
	*step = "empty the capability bounding set";
	if (bounding_keep(keep) < 0)
		return -1;
	*step = "clear the ambient capabilities";
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	*step = "set the uid";
	if (syscall(SYS_setresuid, u->uid, u->uid, u->uid) < 0)
		return -1;
	/* Leaving root emptied the effective set; permitted was kept. */
	*step = "set the capability sets";
	if (caps_keep(keep, ambient, kept) < 0)
		return -1;
	*step = "raise the ambient capabilities";
	for (int cap = 0; cap < 64; cap++)
		if ((*kept & ambient & (1ull << cap)) &&
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			return -1;
	*step = "stop keeping capabilities";
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return -1;
	*step = "become the user";
	if (getuid() != u->uid || geteuid() != u->uid || getegid() != u->gid) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

int privsep_drop(const struct privsep_user *u, uint64_t keep, const char **step)
{
	if (!u->drop) {
		*step = "nothing (not root)";
		goto unprivileged;
	}
	uint64_t kept;
	if (become(u, keep, 0, &kept, step) < 0)
		return -1;
	/* No way back: what the kernel must refuse now. */
	*step = "stay without root";
	if (kept != keep || syscall(SYS_setuid, 0) == 0) {
		errno = EPERM;
		return -1;
	}
unprivileged:
	*step = "set no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	/* No core dump and no ptrace by the same uid: the memory holds
	 * flows' envelopes. */
	*step = "clear dumpable";
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -1;
	return 0;
}

int privsep_limit(uint64_t keep, const char **step)
{
	*step = "empty the capability bounding set";
	if (bounding_keep(keep) < 0)
		return -1;
	*step = "set the capability sets";
	return caps_keep(keep, 0, NULL);
}

/* Refuses every way back to uid or gid 0 for this process and whatever
 * it forks, even with CAP_SETUID and CAP_SETGID; all else stays allowed.
 * setgroups only to empty the list (a pointer the filter cannot read). */
static int parent_seccomp(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -1;
	static const struct {
		int nr;
		unsigned n_args;
	} id_calls[] = {
		{ SCMP_SYS(setuid), 1 },   { SCMP_SYS(setgid), 1 },   { SCMP_SYS(setfsuid), 1 },
		{ SCMP_SYS(setfsgid), 1 }, { SCMP_SYS(setreuid), 2 }, { SCMP_SYS(setregid), 2 },
		{ SCMP_SYS(setresuid), 3 }, { SCMP_SYS(setresgid), 3 },
	};
	int rc = -1;
	for (size_t i = 0; i < sizeof(id_calls) / sizeof(id_calls[0]); i++)
		for (unsigned a = 0; a < id_calls[i].n_args; a++) {
			/* The id arguments are 32 bits wide; -1 means "unchanged". */
			struct scmp_arg_cmp zero = { .arg = a, .op = SCMP_CMP_MASKED_EQ,
						     .datum_a = 0xffffffffu, .datum_b = 0 };
			if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), id_calls[i].nr, 1,
						   &zero) < 0)
				goto out;
		}
	struct scmp_arg_cmp some = { .arg = 0, .op = SCMP_CMP_NE, .datum_a = 0, .datum_b = 0 };
	if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setgroups), 1, &some) < 0)
		goto out;
	rc = seccomp_load(ctx) < 0 ? -1 : 0;
out:
	seccomp_release(ctx);
	return rc;
}

int privsep_parent_drop(const struct privsep_user *u, uint64_t keep, uint64_t ambient,
			const char **step)
{
	if (!u->drop)
		return privsep_limit(keep, step);
	uint64_t kept;
	if (become(u, keep, ambient, &kept, step) < 0)
		return -1;
	/* What it runs (iptables) gets the ambient ones; its children clear
	 * them. */
	*step = "set no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	*step = "refuse uid and gid 0 from now on (seccomp)";
	if (parent_seccomp() < 0)
		return -1;
	*step = "stay without root";
	if (syscall(SYS_setuid, 0) == 0 || syscall(SYS_setresgid, -1, 0, -1) == 0) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

int privsep_chgrp(int dirfd, const char *name, gid_t gid)
{
	int flags = name[0] ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH;
	int rc = fchownat(dirfd, name, (uid_t)-1, gid, flags);
	if (rc < 0 && errno == EPERM) {
		gid_t egid = getegid();
		if (syscall(SYS_setresgid, -1, gid, -1) == 0) {
			rc = fchownat(dirfd, name, (uid_t)-1, gid, flags);
			int err = errno;
			if (syscall(SYS_setresgid, -1, egid, -1) < 0)
				fatal("privsep: cannot take back group %d", (int)egid);
			errno = err;
		}
	}
	return rc;
}

uint64_t privsep_effective_caps(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = { { 0 } };
	if (syscall(SYS_capget, &h, caps) < 0)
		return ~0ull;
	return (uint64_t)caps[0].effective | (uint64_t)caps[1].effective << 32;
}

/* ---- seccomp ------------------------------------------------------------ */

/* What both make after start-up: files (the store, policy, logs), memory,
 * time, the event loop, signals and their own end. Measured with strace
 * (docs/privsep.md). */
static const char *const calls_common[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "close", "openat",
	"newfstatat", "fstat", "statx", "lseek", "fcntl", "fsync", "fdatasync", "ftruncate",
	"fallocate", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir",
	"mkdirat", "getdents64", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
	"fchmod", "fchown", "umask", "getcwd",
	"mmap", "munmap", "mremap", "mprotect", "brk", "madvise",
	"epoll_wait", "epoll_pwait", "epoll_ctl", "epoll_create1", "poll", "ppoll",
	"timerfd_create", "timerfd_settime", "timerfd_gettime", "signalfd4", "eventfd2",
	"recvmsg", "recvfrom", "recvmmsg", "sendmsg", "sendto", "sendmmsg", "accept4",
	"getsockopt", "setsockopt", "getsockname", "getpeername", "shutdown",
	"clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
	"futex", "sched_yield", "sched_getaffinity",
	"getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getrandom",
	"uname", "prlimit64", "getrlimit", "sysinfo",
	"rt_sigprocmask", "rt_sigreturn", "rt_sigaction", "sigaltstack", "tgkill",
	"exit", "exit_group", "restart_syscall",
};
/* The inspector also writes the tagger's maps (the kernel checked the
 * rights when the parent opened them). */
static const char *const calls_inspector[] = { "bpf" };
/* The web also connects to the inspector's control socket. */
static const char *const calls_web[] = {
	"connect", "pipe2", "setpriority" /* its threads at nice 10 */,
	/* threads: libmicrohttpd's and the pacer (the inspector has none) */
	"clone", "clone3", "set_robust_list", "get_robust_list", "rseq",
};

static void seccomp_sigsys(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)uctx;
	char msg[96] = "tlsgated: seccomp: system call ";
	size_t n = strlen(msg);
	int nr = si->si_syscall;
	char digits[12];
	int k = 0;
	do
		digits[k++] = (char)('0' + nr % 10);
	while ((nr /= 10) > 0 && k < 11);
	while (k > 0)
		msg[n++] = digits[--k];
	static const char tail[] = " is not allowed here (docs/privsep.md)\n";
	memcpy(msg + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	ssize_t rc = write(STDERR_FILENO, msg, n);
	(void)rc;
	_exit(PRIVSEP_EXIT_SECCOMP);
}

static int seccomp_allow(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not a call of this architecture */
		if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0) {
			log_warnx("seccomp: cannot allow %s", names[i]);
			return -1;
		}
	}
	return 0;
}

/* Allows call nr when its first argument is value. */
static int seccomp_allow_arg0(scmp_filter_ctx ctx, int nr, uint64_t value)
{
	struct scmp_arg_cmp cmp = { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0 };
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp);
}

int privsep_seccomp(enum privsep_role role)
{
	struct sigaction sa = { .sa_sigaction = seccomp_sigsys, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		log_warn("seccomp: SIGSYS handler");
		return -1;
	}
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx) {
		log_warnx("seccomp: cannot initialise a filter");
		return -1;
	}
	int rc = -1;
	const char *const *extra = role == PRIVSEP_INSPECTOR ? calls_inspector : calls_web;
	size_t n_extra = role == PRIVSEP_INSPECTOR
				 ? sizeof(calls_inspector) / sizeof(calls_inspector[0])
				 : sizeof(calls_web) / sizeof(calls_web[0]);
	/* Every thread, also those started before. */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0 ||
	    seccomp_allow(ctx, calls_common, sizeof(calls_common) / sizeof(calls_common[0])) < 0 ||
	    seccomp_allow(ctx, extra, n_extra) < 0)
		goto out;
	/* The web's sockets: AF_UNIX only (the control socket); its listening
	 * socket came from the parent. prctl only to name a thread
	 * (libmicrohttpd's, the pacer) and to end with the parent (the web
	 * sets it after its drop). */
	if ((role == PRIVSEP_WEB && seccomp_allow_arg0(ctx, SCMP_SYS(socket), AF_UNIX) < 0) ||
	    seccomp_allow_arg0(ctx, SCMP_SYS(prctl), PR_SET_NAME) < 0 ||
	    seccomp_allow_arg0(ctx, SCMP_SYS(prctl), PR_SET_PDEATHSIG) < 0)
		goto out;
	int e = seccomp_load(ctx);
	if (e < 0) {
		log_warnx("seccomp: cannot load the filter: %s", strerror(-e));
		goto out;
	}
	rc = 0;
out:
	seccomp_release(ctx);
	return rc;
}

/* ---- the store's files ---------------------------------------------------- */

/* POSIX ACL in the kernel's extended-attribute form (posix_acl_xattr.h). */
struct acl_entry_x {
	uint16_t tag, perm;
	uint32_t id;
};
enum { ACL_USER_OBJ = 1, ACL_GROUP_OBJ = 4, ACL_GROUP = 8, ACL_MASK = 16, ACL_OTHER = 32 };
#define ACL_UNDEFINED_ID 0xffffffffu

static int acl_set(int fd, const char *attr, unsigned owner, unsigned group, gid_t reader,
		   unsigned reader_perm)
{
	struct {
		uint32_t version;
		struct acl_entry_x e[5];
	} __attribute__((packed)) acl = {
		.version = 2,
		.e = { { ACL_USER_OBJ, (uint16_t)owner, ACL_UNDEFINED_ID },
		       { ACL_GROUP_OBJ, (uint16_t)group, ACL_UNDEFINED_ID },
		       { ACL_GROUP, (uint16_t)reader_perm, (uint32_t)reader },
		       { ACL_MASK, (uint16_t)(group | reader_perm), ACL_UNDEFINED_ID },
		       { ACL_OTHER, 0, ACL_UNDEFINED_ID } },
	};
	return fsetxattr(fd, attr, &acl, sizeof(acl), 0);
}

/* The parent prepares these files as their owner: it takes each back
 * (CAP_CHOWN), sets mode and ACL as the owner would, and gives it away
 * last. So it needs neither CAP_DAC_OVERRIDE (to enter a directory that
 * is the inspector's, 0750) nor CAP_FOWNER (to change a file it gave
 * away). */

/* A file of dir (dfd): created if missing, owner:group, mode 0660, a read
 * ACL for reader ((gid_t)-1: none). */
static int share_one(int dfd, const char *dir, const char *name, uid_t owner, gid_t group,
		     gid_t reader, char *why, size_t whylen)
{
	if (fchownat(dfd, name, 0, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT) {
		snprintf(why, whylen, "%s/%s: %s", dir, name, strerror(errno));
		return -1;
	}
	int fd = openat(dfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_CREAT, 0660);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s/%s: %s", dir, name,
			 fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int rc = fchmod(fd, 0660);
	if (rc == 0 && reader != (gid_t)-1 &&
	    acl_set(fd, "system.posix_acl_access", 6, 6, reader, 4) < 0) {
		/* A file system without ACLs: readable by all local users
		 * rather than a status page without data. */
		log_warn("%s/%s: no read ACL for the status page; readable by every local user",
			 dir, name);
		rc = fchmod(fd, 0664);
	}
	if (rc == 0)
		rc = fchown(fd, owner, group);
	if (rc < 0)
		snprintf(why, whylen, "%s/%s: owner and mode: %s", dir, name, strerror(errno));
	close(fd);
	return rc;
}

static bool name_allowed(const char *name, const char *const *names)
{
	for (size_t i = 0; names && names[i]; i++)
		if (strncmp(name, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/* Takes dir (created if missing) back for root and opens it; refuses one
 * that others may write, and one not yet owner's that holds anything not
 * named in names. Returns the directory's descriptor or -1. */
static int dir_take(const char *dir, uid_t owner, const char *const *names, char *why,
		    size_t whylen)
{
	struct stat st;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s: not a directory", dir);
		return -1;
	}
	if (st.st_mode & (S_IWOTH | S_ISVTX)) {
		snprintf(why, whylen, "%s: others may write there: tlsgate needs a directory of its own",
			 dir);
		return -1;
	}
	bool ours = st.st_uid == owner;
	if (ours && lchown(dir, 0, (gid_t)-1) < 0) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	/* A directory not yet the inspector's is given to it only when all
	 * it holds is tlsgate's: never /etc or a home by mistake. */
	int scan = dup(dfd);
	DIR *dp = scan >= 0 ? fdopendir(scan) : NULL;
	if (!dp) {
		snprintf(why, whylen, "%s: %s", dir, strerror(errno));
		if (scan >= 0)
			close(scan);
		close(dfd);
		return -1;
	}
	struct dirent *e;
	while (!ours && (e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !name_allowed(e->d_name, names)) {
			snprintf(why, whylen,
				 "%s holds %s, which is not tlsgate's: give tlsgate a directory of "
				 "its own",
				 dir, e->d_name);
			closedir(dp);
			close(dfd);
			return -1;
		}
	}
	closedir(dp);
	return dfd;
}

/* Mode 0750, the reader's search ACL (and its read ACL for files made
 * there later), then owner:group last. Closes dfd. */
static int dir_give(int dfd, const char *dir, uid_t owner, gid_t group, gid_t reader, char *why,
		    size_t whylen)
{
	int rc = fchmod(dfd, 0750);
	if (rc == 0 && reader != (gid_t)-1 &&
	    (acl_set(dfd, "system.posix_acl_access", 7, 5, reader, 1) < 0 ||
	     acl_set(dfd, "system.posix_acl_default", 6, 6, reader, 4) < 0)) {
		log_warn("%s: no ACL for the status page; searchable by every local user", dir);
		rc = fchmod(dfd, 0751);
	}
	if (rc == 0)
		rc = fchown(dfd, owner, group);
	if (rc < 0)
		snprintf(why, whylen, "%s: owner and mode: %s", dir, strerror(errno));
	close(dfd);
	return rc;
}

/* Without CAP_CHOWN (the unit keeps it from the daemon and prepares the
 * files in ExecStartPre= as root: tlsgated --prepare-files): what would
 * be set is checked instead. path's owner must be owner:group, nobody
 * else may write it, and it must be of the type asked for. */
static int prepared(const char *path, bool is_dir, uid_t owner, gid_t group, char *why,
		    size_t whylen)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
	} else if (is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s: not a %s", path, is_dir ? "directory" : "regular file");
	} else if (st.st_uid != owner || st.st_gid != group || (st.st_mode & S_IWOTH)) {
		snprintf(why, whylen, "%s: owned by %d:%d mode %04o, not %d:%d", path, (int)st.st_uid,
			 (int)st.st_gid, (unsigned)(st.st_mode & 07777), (int)owner, (int)group);
	} else {
		return 0;
	}
	size_t n = strlen(why);
	snprintf(why + n, whylen - n,
		 " (without CAP_CHOWN tlsgated does not change it: run 'tlsgated --prepare-files' "
		 "with the same options as root first)");
	return -1;
}

static bool may_chown(void)
{
	return (privsep_effective_caps() & (1ull << CAP_CHOWN)) != 0;
}

int privsep_own_dir(const char *dir, uid_t owner, gid_t group, const char *const *names,
		    char *why, size_t whylen)
{
	if (geteuid() != 0)
		return 0;
	if (!may_chown())
		return prepared(dir, true, owner, group, why, whylen);
	int dfd = dir_take(dir, owner, names, why, whylen);
	if (dfd < 0)
		return -1;
	/* What an earlier run as root left (the saved policy): the
	 * inspector reads and replaces it now. */
	int scan = dup(dfd);
	DIR *dp = scan >= 0 ? fdopendir(scan) : NULL;
	struct dirent *e;
	struct stat st;
	if (dp)
		rewinddir(dp); /* the descriptor's offset is shared with dir_take's scan */
	while (dp && (e = readdir(dp)) != NULL)
		if (name_allowed(e->d_name, names) &&
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == 0 && fchownat(dfd, e->d_name, owner, group, AT_SYMLINK_NOFOLLOW) < 0)
			log_warn("%s/%s: owner", dir, e->d_name);
	if (dp)
		closedir(dp);
	else if (scan >= 0)
		close(scan);
	return dir_give(dfd, dir, owner, group, (gid_t)-1, why, whylen);
}

int privsep_share_store(const char *dir, const char *store_path, uid_t owner, gid_t group,
			gid_t reader_gid, char *why, size_t whylen)
{
	if (geteuid() != 0)
		return 0;
	const char *slash = strrchr(store_path, '/');
	const char *base = slash ? slash + 1 : store_path;
	const char *names[] = { base, "policy.json", NULL };
	static const char *const suffix[] = { "", "-wal", "-shm" };
	if (!may_chown()) {
		if (prepared(dir, true, owner, group, why, whylen) < 0)
			return -1;
		/* The files only where this process may look into the
		 * directory: root without CAP_DAC_OVERRIDE (the unit) cannot
		 * search the inspector's 0750 one; the inspector opens the
		 * store and says what is wrong with it. */
		for (size_t i = 0; i < 3; i++) {
			char path[4096];
			struct stat st;
			snprintf(path, sizeof(path), "%s%s", store_path, suffix[i]);
			if (lstat(path, &st) < 0 && errno == EACCES)
				break;
			if (prepared(path, false, owner, group, why, whylen) < 0)
				return -1;
		}
		return 0;
	}
	int dfd = dir_take(dir, owner, names, why, whylen);
	if (dfd < 0)
		return -1;
	/* The -wal and -shm exist before the web opens the store read-only
	 * (SQLite cannot create them for a reader). */
	for (size_t i = 0; i < 3; i++) {
		char name[512];
		snprintf(name, sizeof(name), "%s%s", base, suffix[i]);
		if (share_one(dfd, dir, name, owner, group, reader_gid, why, whylen) < 0) {
			close(dfd);
			return -1;
		}
	}
	return dir_give(dfd, dir, owner, group, reader_gid, why, whylen);
}
