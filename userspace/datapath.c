/* datapath.c - see datapath.h for the contract. */
#include "datapath.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>

#include "log.h"
#include "privsep.h"
#include "tagger.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"

struct datapath {
	struct tagger_bpf *skel;
	char pin_dir[256];
	int pin_fd; /* the pin directory: unpinned through it after a drop */
	int ifindex[DATAPATH_MAX_IFACES];
	size_t n_attached;
	bool adopted;
	int ncpus;
	int flows_fd;
	int awaits_fd;
	int counters_fd;
};

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own messages are demoted: debug output only with -v. */
	if (level == LIBBPF_DEBUG && log_get_level() < LOG_LEVEL_DEBUG)
		return 0;
	/* A verifier log arrives as one message of many lines, the reason
	 * at its end: keep the last 16 KiB, line by line. */
	static char buf[64 * 1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n <= 0)
		return 0;
	char *start = buf;
	size_t len = strlen(buf);
	if (len > 16 * 1024)
		start = buf + len - 16 * 1024;
	for (char *line = start, *save = NULL; (line = strtok_r(line, "\n", &save)); line = NULL) {
		/* The clsact qdisc that already exists (our own, from an
		 * earlier start) is reported by the kernel as a warning. */
		if (level == LIBBPF_WARN && !strstr(line, "Exclusivity flag on"))
			log_warnx("libbpf: %s", line);
		else if (level != LIBBPF_WARN)
			log_debug("libbpf: %s", line);
	}
	return 0;
}

static int datapath_mount_bpffs(void)
{
	struct statfs st;
	if (statfs(BPFFS_ROOT, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700") < 0) {
		log_warn("datapath: mount bpffs on %s", BPFFS_ROOT);
		return -errno;
	}
	log_info("datapath: mounted bpffs on %s", BPFFS_ROOT);
	return 0;
}

static bool datapath_pinned(int pin_fd, const char *name)
{
	return faccessat(pin_fd, name, F_OK, 0) == 0;
}

/* Through the directory's descriptor, not its path: a parent that is no
 * longer root may not search the BPF file system's root (mode 0700). */
static void datapath_unpin(const struct datapath *dp)
{
	static const char *const names[] = { "flows", "smtp_ports", "counters",
					     "secure_sources", "daemon_state", "dns_events",
					     "reply_events" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (unlinkat(dp->pin_fd, names[i], 0) < 0 && errno != ENOENT)
			log_warn("datapath: unlink %s/%s", dp->pin_dir, names[i]);
}

/* The directory itself: only the root it was made by may remove it from
 * the BPF file system's root; a parent that dropped root leaves it, empty. */
static void datapath_remove_dir(const struct datapath *dp)
{
	if (rmdir(dp->pin_dir) == 0 || errno == ENOENT)
		return;
	if (errno == EACCES || errno == EPERM)
		log_info("datapath: %s stays, empty (%s)", dp->pin_dir, strerror(errno));
	else
		log_warn("datapath: rmdir %s", dp->pin_dir);
}

/* Made by root at the start; unpinned at a stop by the parent after its
 * drop to uid:gid. Mode 0770, and either owned by uid with group root
 * (CAP_CHOWN: the parent may remove it from a sticky /sys/fs/bpf) or
 * root's with group gid (the unit's root has no CAP_CHOWN): both kinds of
 * start can open it, the parent can unpin. */
static int datapath_pin_dir(struct datapath *dp, uid_t uid, gid_t gid)
{
	if (mkdir(dp->pin_dir, 0700) < 0 && errno != EEXIST) {
		log_warn("datapath: mkdir %s", dp->pin_dir);
		return -1;
	}
	dp->pin_fd = open(dp->pin_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dp->pin_fd < 0) {
		log_warn("datapath: open %s", dp->pin_dir);
		return -1;
	}
	struct stat st;
	if (uid == (uid_t)-1 || fstat(dp->pin_fd, &st) < 0)
		return 0;
	bool shared = (st.st_uid == uid && st.st_gid == 0) || (st.st_uid == 0 && st.st_gid == gid);
	if (shared && (st.st_mode & 07777) == 0770)
		return 0;
	if ((!shared && fchown(dp->pin_fd, uid, 0) < 0 &&
	     (errno != EPERM || privsep_chgrp(dp->pin_fd, "", gid) < 0)) ||
	    fchmod(dp->pin_fd, 0770) < 0) {
		log_warn("datapath: %s: for uid %d gid %d, mode 0770", dp->pin_dir, (int)uid,
			 (int)gid);
		return -1;
	}
	return 0;
}

static int datapath_load(struct datapath *dp, const struct datapath_config *cfg)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = dp->pin_dir);
	dp->skel = tagger_bpf__open_opts(&opts);
	if (!dp->skel) {
		log_warn("datapath: open BPF object");
		return -errno;
	}
	dp->skel->rodata->inspect_mark = cfg->inspect_mark;
	dp->skel->rodata->inspect_mask = cfg->inspect_mask;
	int err = tagger_bpf__load(dp->skel);
	if (err) {
		tagger_bpf__destroy(dp->skel);
		dp->skel = NULL;
		return err;
	}
	return 0;
}

static int datapath_attach(struct datapath *dp, const char *ifname)
{
	int ifindex = (int)if_nametoindex(ifname);
	if (!ifindex) {
		log_warn("datapath: interface %s", ifname);
		return -ENODEV;
	}
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	int err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST) {
		log_warnx("datapath: clsact on %s: %s", ifname, strerror(-err));
		return err;
	}
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = DATAPATH_TC_HANDLE,
		    .priority = DATAPATH_TC_PRIORITY,
		    .prog_fd = bpf_program__fd(dp->skel->progs.tlsgate_tagger),
		    .flags = BPF_TC_F_REPLACE);
	err = bpf_tc_attach(&hook, &opts);
	if (err) {
		log_warnx("datapath: attach to %s ingress: %s", ifname, strerror(-err));
		return err;
	}
	dp->ifindex[dp->n_attached++] = ifindex;
	log_info("datapath: tagger attached to %s (ifindex %d) ingress", ifname, ifindex);
	return 0;
}

static void datapath_detach_all(struct datapath *dp)
{
	for (size_t i = 0; i < dp->n_attached; i++) {
		LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = dp->ifindex[i],
			    .attach_point = BPF_TC_INGRESS);
		LIBBPF_OPTS(bpf_tc_opts, opts, .handle = DATAPATH_TC_HANDLE,
			    .priority = DATAPATH_TC_PRIORITY);
		int err = bpf_tc_detach(&hook, &opts);
		if (err && err != -ENOENT)
			log_warnx("datapath: detach from ifindex %d: %s", dp->ifindex[i],
				  strerror(-err));
	}
	dp->n_attached = 0;
}

struct datapath *datapath_open(const struct datapath_config *cfg)
{
	struct datapath *dp = xcalloc(1, sizeof(*dp));
	int err;
	dp->pin_fd = -1;

	libbpf_set_print(libbpf_print);
	if (snprintf(dp->pin_dir, sizeof(dp->pin_dir), "%s", cfg->pin_dir) >=
	    (int)sizeof(dp->pin_dir)) {
		log_warnx("datapath: pin directory name too long");
		goto fail;
	}
	if (datapath_mount_bpffs() < 0)
		goto fail;
	if (datapath_pin_dir(dp, cfg->pin_uid, cfg->pin_gid) < 0)
		goto fail;
	dp->adopted = datapath_pinned(dp->pin_fd, "flows");

	err = datapath_load(dp, cfg);
	if (err && dp->adopted) {
		/* Pinned maps that do not fit this program (an older layout):
		 * their flows cannot be adopted; start clean. */
		log_warnx("datapath: pinned maps in %s do not match this build; replacing them",
			  dp->pin_dir);
		datapath_unpin(dp);
		dp->adopted = false;
		err = datapath_load(dp, cfg);
	}
	if (err) {
		log_warnx("datapath: load BPF program: %s", strerror(-err));
		goto fail;
	}
	dp->flows_fd = bpf_map__fd(dp->skel->maps.flows);
	dp->awaits_fd = bpf_map__fd(dp->skel->maps.awaits);
	dp->counters_fd = bpf_map__fd(dp->skel->maps.counters);
	dp->ncpus = libbpf_num_possible_cpus();
	if (dp->ncpus <= 0) {
		log_warnx("datapath: cannot count CPUs");
		goto fail;
	}

	/* The port set is configuration: rewrite it completely. */
	int ports_fd = bpf_map__fd(dp->skel->maps.smtp_ports);
	__u16 key, next;
	bool more = bpf_map_get_next_key(ports_fd, NULL, &key) == 0;
	while (more) {
		more = bpf_map_get_next_key(ports_fd, &key, &next) == 0;
		bpf_map_delete_elem(ports_fd, &key);
		key = next;
	}
	for (size_t i = 0; i < cfg->n_ports; i++) {
		__u16 port = cfg->ports[i];
		__u8 one = 1;
		if (bpf_map_update_elem(ports_fd, &port, &one, BPF_ANY) < 0) {
			log_warn("datapath: smtp_ports[%u]", port);
			goto fail;
		}
	}

	for (size_t i = 0; i < cfg->n_ifaces; i++)
		if (datapath_attach(dp, cfg->ifaces[i]) < 0)
			goto fail;
	return dp;
fail:
	datapath_detach_all(dp);
	if (dp->skel)
		tagger_bpf__destroy(dp->skel);
	/* Pins this start created are removed; adopted ones keep their flows. */
	if (!dp->adopted && dp->pin_fd >= 0) {
		datapath_unpin(dp);
		datapath_remove_dir(dp);
	}
	if (dp->pin_fd >= 0)
		close(dp->pin_fd);
	free(dp);
	return NULL;
}

void datapath_close(struct datapath *dp, bool teardown)
{
	if (!dp)
		return;
	if (teardown) {
		datapath_detach_all(dp);
		datapath_unpin(dp);
		datapath_remove_dir(dp);
	}
	tagger_bpf__destroy(dp->skel);
	close(dp->pin_fd);
	free(dp);
}

bool datapath_adopted(const struct datapath *dp)
{
	return dp->adopted;
}

int datapath_set_verdict(struct datapath *dp, const struct tlsgate_flow_key *key,
			 enum tlsgate_verdict verdict)
{
	struct tlsgate_flow_value val = { .verdict = (__u8)verdict };
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	val.verdict_ns = (__u64)now.tv_sec * 1000000000ull + (__u64)now.tv_nsec;
	if (bpf_map_update_elem(dp->flows_fd, key, &val, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int datapath_set_inspect(struct datapath *dp, const struct tlsgate_flow_key *key, uint8_t copy,
			 uint64_t client_state)
{
	struct tlsgate_flow_value val = { .verdict = TLSGATE_INSPECT, .copy = copy,
					  .client_state = client_state };
	if (bpf_map_update_elem(dp->flows_fd, key, &val, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int datapath_set_await(struct datapath *dp, const struct tlsgate_flow_key *key, uint8_t stage,
		       uint8_t skip, uint32_t client_seq, uint32_t server_seq)
{
	struct tlsgate_await a = { .state = TLSGATE_AWAIT_STATE(stage, skip, server_seq),
				   .client_seq = client_seq };
	if (bpf_map_update_elem(dp->awaits_fd, key, &a, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int datapath_get_await(struct datapath *dp, const struct tlsgate_flow_key *key,
		       struct tlsgate_await *a)
{
	if (bpf_map_lookup_elem(dp->awaits_fd, key, a) < 0)
		return -errno;
	return 0;
}

int datapath_clear_await(struct datapath *dp, const struct tlsgate_flow_key *key)
{
	if (bpf_map_delete_elem(dp->awaits_fd, key) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int datapath_set_content(struct datapath *dp, const struct tlsgate_flow_key *key, uint32_t seq,
			 bool line_end, const uint32_t *chunk_end, uint8_t copy)
{
	struct tlsgate_flow_value val = { .verdict = TLSGATE_CONTENT,
					  .content_line_end = line_end,
					  .content_chunk = chunk_end != NULL,
					  .content_end = chunk_end ? *chunk_end : 0,
					  .content_seq = seq,
					  .copy = copy };
	if (bpf_map_update_elem(dp->flows_fd, key, &val, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int datapath_lookup(struct datapath *dp, const struct tlsgate_flow_key *key,
		    struct tlsgate_flow_value *val)
{
	if (bpf_map_lookup_elem(dp->flows_fd, key, val) < 0)
		return -errno;
	return 0;
}

int datapath_delete(struct datapath *dp, const struct tlsgate_flow_key *key)
{
	if (bpf_map_delete_elem(dp->flows_fd, key) < 0)
		return -errno;
	return 0;
}

size_t datapath_for_each_flow(struct datapath *dp,
			      int (*fn)(void *arg, const struct tlsgate_flow_key *key,
					const struct tlsgate_flow_value *val),
			      void *arg)
{
	struct tlsgate_flow_key key, next;
	struct tlsgate_flow_value val;
	size_t n = 0;
	int rc = bpf_map_get_next_key(dp->flows_fd, NULL, &next);
	/* Bounded by the map size even if entries churn under us. */
	while (rc == 0 && n < TLSGATE_MAX_FLOWS) {
		key = next;
		rc = bpf_map_get_next_key(dp->flows_fd, &key, &next);
		if (bpf_map_lookup_elem(dp->flows_fd, &key, &val) < 0)
			continue;
		n++;
		if (fn(arg, &key, &val))
			break;
	}
	return n;
}

int datapath_counters(struct datapath *dp, struct tlsgate_counter_value out[TLSGATE_CNT_MAX])
{
	struct tlsgate_counter_value percpu[dp->ncpus];
	for (__u32 i = 0; i < TLSGATE_CNT_MAX; i++) {
		out[i].packets = out[i].bytes = 0;
		if (bpf_map_lookup_elem(dp->counters_fd, &i, percpu) < 0)
			return -errno;
		for (int c = 0; c < dp->ncpus; c++) {
			out[i].packets += percpu[c].packets;
			out[i].bytes += percpu[c].bytes;
		}
	}
	return 0;
}

static int datapath_write_state(struct datapath *dp, __u64 heartbeat_ns,
				uint32_t failclosed_after_ms)
{
	struct tlsgate_daemon_state st = { .heartbeat_ns = heartbeat_ns,
					   .failclosed_after_ms = failclosed_after_ms };
	__u32 zero = 0;
	if (bpf_map_update_elem(bpf_map__fd(dp->skel->maps.daemon_state), &zero, &st, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int datapath_heartbeat(struct datapath *dp, uint32_t failclosed_after_ms)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return datapath_write_state(dp, (__u64)now.tv_sec * 1000000000ull + (__u64)now.tv_nsec,
				    failclosed_after_ms);
}

int datapath_heartbeat_stopped(struct datapath *dp, uint32_t failclosed_after_ms)
{
	/* heartbeat 0 is always older than failclosed_after_ms */
	return datapath_write_state(dp, 0, failclosed_after_ms);
}

static bool lpm_key_in(const struct tlsgate_lpm_key *k, const struct tlsgate_lpm_key *keys,
		       size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&keys[i], k, sizeof(*k)) == 0)
			return true;
	return false;
}

int datapath_set_secure_sources(struct datapath *dp, const struct tlsgate_lpm_key *keys, size_t n)
{
	int fd = bpf_map__fd(dp->skel->maps.secure_sources);
	__u8 one = 1;
	if (n > TLSGATE_MAX_SECURE_PREFIXES)
		return -E2BIG;
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, &keys[i], &one, BPF_ANY) < 0)
			return -errno;
	/* Collect the stale keys first: deleting while iterating restarts
	 * the walk. Bounded by the map size. */
	struct tlsgate_lpm_key *stale = xcalloc(TLSGATE_MAX_SECURE_PREFIXES, sizeof(*stale));
	size_t n_stale = 0;
	struct tlsgate_lpm_key cur, next;
	int rc = bpf_map_get_next_key(fd, NULL, &next);
	while (rc == 0 && n_stale < TLSGATE_MAX_SECURE_PREFIXES) {
		cur = next;
		if (!lpm_key_in(&cur, keys, n))
			stale[n_stale++] = cur;
		rc = bpf_map_get_next_key(fd, &cur, &next);
	}
	int err = 0;
	for (size_t i = 0; i < n_stale; i++)
		if (bpf_map_delete_elem(fd, &stale[i]) < 0 && errno != ENOENT)
			err = -errno;
	free(stale);
	return err;
}

static int hash_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int datapath_set_rcpt_domains(struct datapath *dp, const uint64_t *hashes, size_t n)
{
	int fd = bpf_map__fd(dp->skel->maps.rcpt_domains);
	__u64 ready = TLSGATE_RCPT_READY;
	__u8 one = 1;
	if (bpf_map_delete_elem(fd, &ready) < 0 && errno != ENOENT)
		return -errno;
	if (n >= TLSGATE_MAX_RCPT_DOMAINS)
		return -E2BIG;
	/* Stale keys first (the new set may fill the map): collected, then
	 * deleted, since deleting while iterating restarts the walk. */
	uint64_t *stale = xcalloc(TLSGATE_MAX_RCPT_DOMAINS, sizeof(*stale));
	uint64_t *sorted = xcalloc(n + 1, sizeof(*sorted));
	memcpy(sorted, hashes, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), hash_cmp);
	size_t n_stale = 0;
	__u64 cur, next;
	int rc = bpf_map_get_next_key(fd, NULL, &next);
	while (rc == 0 && n_stale < TLSGATE_MAX_RCPT_DOMAINS) {
		cur = next;
		if (!bsearch(&cur, sorted, n, sizeof(*sorted), hash_cmp))
			stale[n_stale++] = cur;
		rc = bpf_map_get_next_key(fd, &cur, &next);
	}
	int err = 0;
	for (size_t i = 0; i < n_stale && !err; i++)
		if (bpf_map_delete_elem(fd, &stale[i]) < 0 && errno != ENOENT)
			err = -errno;
	free(stale);
	free(sorted);
	for (size_t i = 0; i < n && !err; i++)
		if (bpf_map_update_elem(fd, &hashes[i], &one, BPF_ANY) < 0)
			err = -errno;
	if (!err && bpf_map_update_elem(fd, &ready, &one, BPF_ANY) < 0)
		err = -errno;
	return err;
}

int datapath_set_secure_domains(struct datapath *dp, const uint64_t *hashes, const uint32_t *flags,
				size_t n, uint32_t ready_flags, uint32_t failclosed_ms)
{
	int fd = bpf_map__fd(dp->skel->maps.secure_domains);
	__u64 ready = TLSGATE_SD_READY;
	struct tlsgate_sd_ready v = { 0 };
	/* a policy's two lists at most: half the map (see its bound) */
	const size_t cap = (TLSGATE_MAX_SECURE_DOMAINS - 1) / 2;
	if (n > cap)
		return -E2BIG;
	if (!ready_flags && bpf_map_delete_elem(fd, &ready) < 0 && errno != ENOENT)
		return -errno;
	/* The new set, each hash with all its flags (sorted: equal hashes
	 * side by side). */
	struct sd_pair {
		uint64_t hash;
		uint32_t flags;
	} *pairs = xcalloc(n + 1, sizeof(*pairs));
	uint64_t *sorted = xcalloc(n + 1, sizeof(*sorted));
	for (size_t i = 0; i < n; i++) {
		pairs[i].hash = hashes[i];
		pairs[i].flags = flags[i];
	}
	qsort(pairs, n, sizeof(*pairs), hash_cmp); /* by the hash, the first member */
	for (size_t i = 0; i < n; i++)
		sorted[i] = pairs[i].hash;
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		if (i + 1 < n && pairs[i + 1].hash == pairs[i].hash) {
			pairs[i + 1].flags |= pairs[i].flags;
			continue;
		}
		if (pairs[i].hash == TLSGATE_SD_READY)
			continue; /* no name's hash in practice; never READY */
		v.flags = pairs[i].flags;
		v.failclosed_ms = 0;
		if (bpf_map_update_elem(fd, &pairs[i].hash, &v, BPF_ANY) < 0)
			err = -errno;
	}
	free(pairs);
	/* Then what is stale: collected, then deleted (deleting while
	 * iterating restarts the walk). */
	size_t max = TLSGATE_MAX_SECURE_DOMAINS, n_stale = 0;
	uint64_t *stale = xcalloc(max, sizeof(*stale));
	__u64 cur, next;
	int rc = err ? -1 : bpf_map_get_next_key(fd, NULL, &next);
	while (rc == 0 && n_stale < max) {
		cur = next;
		if (cur != TLSGATE_SD_READY && !bsearch(&cur, sorted, n, sizeof(*sorted), hash_cmp))
			stale[n_stale++] = cur;
		rc = bpf_map_get_next_key(fd, &cur, &next);
	}
	for (size_t i = 0; i < n_stale && !err; i++)
		if (bpf_map_delete_elem(fd, &stale[i]) < 0 && errno != ENOENT)
			err = -errno;
	free(stale);
	free(sorted);
	if (!err && ready_flags) {
		v.flags = ready_flags;
		v.failclosed_ms = failclosed_ms;
		if (bpf_map_update_elem(fd, &ready, &v, BPF_ANY) < 0)
			err = -errno;
	}
	return err;
}

int datapath_dns_ring_fd(const struct datapath *dp)
{
	return bpf_map__fd(dp->skel->maps.dns_events);
}

int datapath_reply_ring_fd(const struct datapath *dp)
{
	return bpf_map__fd(dp->skel->maps.reply_events);
}
