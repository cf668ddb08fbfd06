// SPDX-License-Identifier: GPL-2.0-only
/*
 * bpfquota: per-directory write quotas enforced at the syscall by BPF LSM.
 *
 * A volume is a directory identified by its filesystem's identity and its
 * inode number (for NFS: the server's fsid, placed by user space, and fileid,
 * so every mount of the export reaches it); a file belongs to the nearest
 * enclosing volume (found by walking d_parent, then cached per inode). Usage = base (from user space's scan) + deltas the
 * kernel accounts from i_size changes it sees + growth reserved for
 * operations in flight. Every operation that may grow a file is admitted
 * with its byte count, all of it or nothing (see bq_inode in bpfquota.h),
 * so no writer, however many and however large their calls, passes the
 * limit. See bpfquota.h for the maps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "bpfquota.h"

char LICENSE[] SEC("license") = "GPL";

#ifdef BPFQUOTA_BUILD_TAG
/* A build that differs only by this tag (libbpf skips the section): the upgrade tests' second object. */
char build_tag[] SEC(".bpfquota.build_tag") = BPFQUOTA_BUILD_TAG;
#endif

#define EDQUOT 122
#define EXDEV 18
#define ENOMEM 12
#define EEXIST 17
#define MAY_WRITE 0x2
#define S_IFMT 00170000
#define S_IFREG 0100000
#define S_IFDIR 0040000
#define ATTR_SIZE (1 << 3)
#define PROT_WRITE 0x2
#define MAP_SHARED 0x01
#define VM_SHARED 0x08
#define FMODE_WRITE 0x2
#define EOPNOTSUPP 95
#define WRITE 1
#define O_APPEND 02000
#define RWF_APPEND 0x10
#define PF_IO_WORKER 0x10
#define PF_DUMPCORE 0x200
#define PF_KTHREAD 0x00200000
#define RLIMIT_CORE 4
#define RENAME_EXCHANGE 2
#define DCACHE_NFSFS_RENAMED 0x1000
#define NFS_SUPER_MAGIC 0x6969
#define FALLOC_FL_KEEP_SIZE 0x01
#define FALLOC_FL_PUNCH_HOLE 0x02
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#define FALLOC_FL_INSERT_RANGE 0x20
/* Syscalls whose write lands where rw_verify_area's position says (unless RWF_APPEND), by their
 * numbers on the target architecture; SYSCALL_NR and SYSCALL_ARG6 read the pt_regs of vmlinux.h. */
#if defined(__TARGET_ARCH_arm64)
/* arm64: asm-generic/unistd.h */
#define NR_write 64
#define NR_writev 66
#define NR_pwrite64 68
#define NR_pwritev 70
#define NR_sendfile 71
#define NR_splice 76
#define NR_copy_file_range 285
#define NR_pwritev2 287
#define SYSCALL_NR(regs) ((regs)->syscallno)
#define SYSCALL_ARG6(regs) ((regs)->regs[5])
#else
/* x86-64: arch/x86/entry/syscalls/syscall_64.tbl */
#define NR_write 1
#define NR_pwrite64 18
#define NR_writev 20
#define NR_sendfile 40
#define NR_splice 275
#define NR_pwritev 296
#define NR_copy_file_range 326
#define NR_pwritev2 328
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define SYSCALL_ARG6(regs) ((regs)->r9)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bq_key);
	__type(value, __u32);
} vol_keys SEC(".maps");

/* Local superblocks that hold any volume: everything else is let through with one lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DEVS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
} vol_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NFS_GROUPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bq_fsid);
	__type(value, __u32);
} nfs_groups SEC(".maps");

/* When the last placement request was sent (kernel only). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} place_requested SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VOLUME_SLOTS);
	__type(key, __u32);
	__type(value, struct bq_vol_cfg);
} vol_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VOLUME_SLOTS);
	__type(key, __u32);
	__type(value, struct bq_vol_stats);
} vol_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DIRTY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bq_key);
	__type(value, struct bq_dirty);
} scan_dirty SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bq_config);
} config SEC(".maps");

/* Not used by the programs: lets any process tell which path a volume id is. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VOLUME_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bq_vol_meta);
} vol_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH); /* LRU: a create that failed leaves an entry */
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct bq_creating);
} creating SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bq_inode);
} inode_st SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bq_stash);
} stash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bq_renaming);
} renaming SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct bq_failed_shrink);
} failed_shrinks SEC(".maps");

/* Inodes whose removal an fexit program credited while they were still cached: their free must not. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u8);
} credited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* What a hook needs to know about the volume an inode is in. */
struct vol_ctx {
	bool unknown; /* on a filesystem with volumes, but which volume (if any) can't be told: refuse growth */
	__u32 vol;
	__u64 fs; /* the filesystem identity keys use (bq_key.fs) */
	struct bq_inode *st;
	struct bq_vol_cfg *cfg;
	struct bq_vol_stats *vs;
};

/* x clamped to [0, BQ_HUGE]: sums of a few such values never wrap. */
static __always_inline __s64 clamp_size(__s64 x)
{
	if (x < 0)
		return 0;
	return x > BQ_HUGE ? BQ_HUGE : x;
}

/* x clamped to [-BQ_HUGE, BQ_HUGE], for signed deltas. */
static __always_inline __s64 clamp_delta(__s64 x)
{
	if (x < -BQ_HUGE)
		return -BQ_HUGE;
	return x > BQ_HUGE ? BQ_HUGE : x;
}

static __always_inline __s64 max64(__s64 a, __s64 b)
{
	return a > b ? a : b;
}

static __always_inline __s64 min64(__s64 a, __s64 b)
{
	return a < b ? a : b;
}

static __always_inline bool is_reg(struct inode *inode)
{
	return (inode->i_mode & S_IFMT) == S_IFREG;
}

static __always_inline bool is_dir(struct inode *inode)
{
	return (inode->i_mode & S_IFMT) == S_IFDIR;
}

static __always_inline __u64 current_gen(void)
{
	__u32 zero = 0;
	struct bq_config *c = bpf_map_lookup_elem(&config, &zero);

	return c ? c->gen : 0;
}

static __always_inline bool nfs_watched(void)
{
	__u32 zero = 0;
	struct bq_config *c = bpf_map_lookup_elem(&config, &zero);

	return c && (c->flags & BQ_CFG_NFS_WATCH);
}

static __always_inline bool is_nfs_fs(__u64 fs)
{
	return fs >= BQ_NFS_FS_BASE;
}

#define BQ_FS_UNPLACED (~0ULL)  /* an NFS superblock whose fsid user space hasn't placed yet */
#define BQ_FS_NONE 0            /* a filesystem that holds no volume */

/* One event for user space, about the current task (rate limits are the callers'). */
static __always_inline void send_event(__u64 now, __u32 vol, __u32 op, int ret, __u32 mode)
{
	struct bq_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return;
	e->ts_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->vol_id = vol;
	e->op = op;
	e->ret = ret;
	e->mode = mode;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* Ask user space (through the events ring) to place what it hasn't: rate limited, the agent places everything at once. */
static void request_placement(void)
{
	__u32 zero = 0;
	__u64 *last = bpf_map_lookup_elem(&place_requested, &zero);
	__u64 now = bpf_ktime_get_ns();

	if (!last || now - *last < BQ_PLACE_GAP_NS)
		return;
	*last = now;
	send_event(now, 0, BQ_OP_PLACE, -EDQUOT, BQ_MODE_ENFORCE);
}

/*
 * The identity volumes on `sb` are keyed by: its s_dev on a local filesystem that holds
 * volumes; for NFS (when any volume is on NFS), the group of the server's fsid, which is
 * the same for every superblock of that server filesystem. BQ_FS_NONE: no volume can be
 * here. BQ_FS_UNPLACED: an NFS fsid user space hasn't placed (or the nfs module's types
 * weren't there at load): which volumes it holds can't be told.
 */
static __always_inline __u64 fs_of(struct super_block *sb)
{
	if (sb->s_magic != NFS_SUPER_MAGIC) {
		__u64 dev = sb->s_dev;
		return bpf_map_lookup_elem(&vol_devs, &dev) ? dev : BQ_FS_NONE;
	}
	if (!nfs_watched())
		return BQ_FS_NONE;
	if (!bpf_core_type_exists(struct nfs_server))
		return BQ_FS_UNPLACED;
	struct nfs_server *server = sb->s_fs_info;
	struct bq_fsid fsid = {
		.major = BPF_CORE_READ(server, fsid.major),
		.minor = BPF_CORE_READ(server, fsid.minor),
	};
	__u32 *group = bpf_map_lookup_elem(&nfs_groups, &fsid);
	return group ? BQ_NFS_FS_BASE + *group : BQ_FS_UNPLACED;
}

static __always_inline bool has_volumes(struct inode *inode)
{
	return fs_of(inode->i_sb) != BQ_FS_NONE;
}

/* vol_keys' value for (fs, ino): a volume id, BQ_ROOT_IN | id for a placed NFS mount root, or 0. */
static __always_inline __u32 key_value(__u64 fs, __u64 ino)
{
	struct bq_key key = { .fs = fs, .ino = ino };
	__u32 *value = bpf_map_lookup_elem(&vol_keys, &key);

	return value ? *value : 0;
}

/* True when (fs, ino) is a volume's root directory. */
static __always_inline bool is_volume_root(__u64 fs, __u64 ino)
{
	__u32 value = key_value(fs, ino);

	return value && !(value & BQ_ROOT_IN);
}

/* The far part of a walk, one d_parent step per bpf_loop iteration (read with probes: no cache there). */
struct far_walk {
	__u64 dentry;
	__u64 fs;
	__u32 vol;
};

/* True when the directory (fs, ino) ends a walk: a volume's root, or a placed NFS mount root; *vol is its answer. */
static __always_inline bool key_ends_walk(__u64 fs, __u64 ino, __u32 *vol)
{
	__u32 value = key_value(fs, ino);

	if (!value)
		return false;
	*vol = value & ~BQ_ROOT_IN;
	return true;
}

/*
 * The walk reached a root (d_parent is itself) that is no volume root: on a local filesystem
 * that is the top, in no volume; on NFS it is some mount's root, which may lie inside a
 * volume on the server: unknown until user space places it.
 */
static __always_inline __u32 unplaced_root(__u64 fs)
{
	if (!is_nfs_fs(fs))
		return 0;
	request_placement();
	return BQ_VOL_UNKNOWN;
}

static long far_walk_step(__u32 index, void *ctx)
{
	struct far_walk *w = ctx;
	struct dentry *d = (struct dentry *)w->dentry;
	struct inode *in = BPF_CORE_READ(d, d_inode);

	if (!in)
		return 1; /* vol stays unknown */
	if (key_ends_walk(w->fs, BPF_CORE_READ(in, i_ino), &w->vol))
		return 1;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (!parent || parent == d) {
		w->vol = unplaced_root(w->fs);
		return 1;
	}
	w->dentry = (__u64)parent;
	return 0;
}

/*
 * The nearest enclosing volume of `d`: walk d_parent (it never leaves the
 * superblock). The first MAX_DEPTH levels stop early at an ancestor whose
 * cached answer is current; past them the walk goes on with bpf_loop for
 * FAR_WALK_STEPS more levels. Deeper than that is unknown, never "no volume".
 */
static __u32 walk_to_volume(struct dentry *d, __u64 fs, __u64 gen)
{
	for (int depth = 0; depth < MAX_DEPTH; depth++) {
		struct inode *in = d->d_inode;
		__u32 vol;
		if (!in)
			return BQ_VOL_UNKNOWN;
		if (key_ends_walk(fs, in->i_ino, &vol))
			return vol;
		if (depth > 0) {
			struct bq_inode *cached = bpf_inode_storage_get(&inode_st, in, 0, 0);
			if (cached && cached->gen == gen)
				return cached->vol_id;
		}
		struct dentry *parent = d->d_parent;
		if (!parent || parent == d)
			return unplaced_root(fs);
		d = parent;
	}
	struct far_walk w = { .dentry = (__u64)d, .fs = fs, .vol = BQ_VOL_UNKNOWN };
	bpf_loop(FAR_WALK_STEPS, far_walk_step, &w, 0);
	return w.vol;
}

/*
 * The dirty record lets a running scan use what this inode counted when the
 * scan started instead of what its stat() happened to see (usage.py).
 */
static __always_inline void note_dirty(struct vol_ctx *v, struct inode *inode, __s64 size_before,
				       __s64 files_before)
{
	struct bq_vol_cfg *cfg = v->cfg;
	if (!cfg->scanning)
		return;
	if (v->st) {
		if (v->st->epoch == cfg->epoch)
			return;
		v->st->epoch = cfg->epoch;
	}
	struct bq_key key = { .fs = v->fs, .ino = inode->i_ino };
	struct bq_dirty rec = {
		.vol_id = v->vol,
		.epoch = cfg->epoch,
		.size_before = size_before,
		.files_before = files_before,
	};
	long err = bpf_map_update_elem(&scan_dirty, &key, &rec, BPF_NOEXIST);
	if (err && err != -EEXIST)
		__sync_fetch_and_add(&v->vs->dirty_overflow, 1);
}

static __always_inline bool volume_slots(struct vol_ctx *v)
{
	__u32 vol = v->vol;

	if (!vol || vol > PROBE_VOLUME)
		return false;
	v->cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
	v->vs = bpf_map_lookup_elem(&vol_stats, &vol);
	return v->cfg && v->vs && v->cfg->mode != BQ_MODE_UNUSED;
}

/*
 * Fill `v` for `inode` (reached through `dentry`); false when it is in no volume.
 * With `track`, the inode gets state (cache, accounted size); without, an inode
 * that has none is only resolved (v->st == NULL): a file created and removed
 * without a write costs no allocation.
 */
static __always_inline bool volume_of(struct inode *inode, struct dentry *dentry, struct vol_ctx *v, bool track)
{
	if (!inode)
		return false;
	v->fs = fs_of(inode->i_sb);
	if (v->fs == BQ_FS_NONE)
		return false;
	/* From here on the inode is on a filesystem that holds volumes: what can't be resolved is unknown. */
	v->unknown = true;
	if (v->fs == BQ_FS_UNPLACED) {
		request_placement();
		return false;
	}
	__u64 gen = current_gen();
	if (!gen)
		return false;
	struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, track ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (!st) {
		if (track)
			return false; /* no state could be allocated */
		v->vol = walk_to_volume(dentry, v->fs, gen);
		v->st = 0;
		if (v->vol == BQ_VOL_UNKNOWN)
			return false;
		v->unknown = false;
		return volume_slots(v);
	}
	bool first_sight = st->gen == 0;
	if (st->gen != gen) {
		__u32 vol = walk_to_volume(dentry, v->fs, gen);
		if (vol == BQ_VOL_UNKNOWN)
			return false; /* not cached: the next hook walks again */
		/* A file new to a volume counts from its current size: that volume's scan saw it. */
		if (first_sight || vol != st->vol_id)
			st->size = is_reg(inode) ? inode->i_size : 0;
		st->vol_id = vol;
		st->gen = gen;
	}
	v->unknown = false;
	v->vol = st->vol_id;
	if (!volume_slots(v))
		return false;
	v->st = st;
	if (first_sight && is_reg(inode))
		note_dirty(v, inode, st->size, 1);
	return true;
}

/*
 * The scan epoch, for the parity of delta a change goes to. A change racing a
 * scan's flip must err towards counting too much: growth reads the epoch after
 * the dirty check (growth the flip didn't record counts twice, never not at all),
 * a credit before it (a credit the flip didn't record lands in the old parity,
 * which the scan cancels: credited never rather than twice once the walk no
 * longer sees the bytes).
 */
static __always_inline __u32 epoch_of(struct bq_vol_cfg *cfg)
{
	return *(volatile __u32 *)&cfg->epoch;
}

/* Move the inode's accounted size to `new_size`, crediting the difference to its volume; returns it. */
static __always_inline __s64 account_size(struct vol_ctx *v, struct inode *inode, __s64 new_size)
{
	if (v->st->size == new_size)
		return 0; /* overwrites and reads-back: no locked instruction on the common path */
	__u32 epoch = epoch_of(v->cfg);
	__s64 old = __sync_lock_test_and_set(&v->st->size, new_size);
	if (old == new_size)
		return 0;
	note_dirty(v, inode, old, 1);
	if (new_size > old)
		epoch = epoch_of(v->cfg);
	__sync_fetch_and_add(&v->vs->delta_bytes[epoch & 1], new_size - old);
	return new_size - old;
}

/* Give back the reservation a failed truncate left (its bytes are charged again by now). */
static __always_inline void settle_failed_shrink(struct inode *inode)
{
	__u64 key = (__u64)inode;
	struct bq_failed_shrink *rec = bpf_map_lookup_elem(&failed_shrinks, &key);

	if (!rec)
		return;
	__u32 vol = rec->vol_id;
	__s64 bytes = rec->bytes;
	bpf_map_delete_elem(&failed_shrinks, &key);
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (vs)
		__sync_fetch_and_add(&vs->reserved_bytes, -bytes);
}

static __always_inline void account_files(struct vol_ctx *v, __s64 n)
{
	__sync_fetch_and_add(&v->vs->delta_files[v->cfg->epoch & 1], n);
}

/* Credit a removal of `bytes` and one inode to volume `vol`, in the parity of `epoch` (read before
 * the removal's dirty check, see epoch_of). */
static __always_inline void credit_removal(__u32 vol, __s64 bytes, __u32 epoch)
{
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);

	if (!vs)
		return;
	__u32 parity = epoch & 1;
	if (bytes)
		__sync_fetch_and_add(&vs->delta_bytes[parity], -bytes);
	__sync_fetch_and_add(&vs->delta_files[parity], -1);
}

static __always_inline void emit_denial(struct vol_ctx *v, __u32 op, int ret)
{
	__u32 zero = 0;
	struct bq_config *c = bpf_map_lookup_elem(&config, &zero);
	__u64 now = bpf_ktime_get_ns();
	__u64 gap = c ? (__u64)c->event_gap_ms * 1000000ULL : 0;

	if (now - v->vs->last_event_ns < gap)
		return;
	v->vs->last_event_ns = now;
	send_event(now, v->vol, op, ret, v->cfg->mode);
}

/* Count a check; a refusal (`over`) is counted and reported, and returns `err` in enforce mode, else 0. */
static __always_inline int count_verdict(struct vol_ctx *v, __u32 op, bool over, int err)
{
	__sync_fetch_and_add(&v->vs->checks, 1);
	if (!over)
		return 0;
	if (op < BQ_NR_OPS)
		__sync_fetch_and_add(&v->vs->denied[op], 1);
	int ret = v->cfg->mode == BQ_MODE_ENFORCE ? err : 0;
	emit_denial(v, op, ret);
	return ret;
}

/* The volume's usage is unknown (never scanned, nothing saved) and the operator wants that to refuse growth. */
static __always_inline bool usage_unknown(struct bq_vol_cfg *cfg)
{
	return (cfg->flags & (BQ_VOL_USAGE_UNKNOWN | BQ_VOL_ALLOW_UNKNOWN)) == BQ_VOL_USAGE_UNKNOWN;
}

/* The byte limit in force: the soft limit once its grace ran out (the agent sets the flag), else the limit. */
static __always_inline __s64 byte_limit(struct bq_vol_cfg *cfg)
{
	__s64 limit = clamp_size((__s64)cfg->limit_bytes);

	if ((cfg->flags & BQ_VOL_SOFT_EXPIRED) && cfg->soft_bytes)
		limit = min64(limit, clamp_size((__s64)cfg->soft_bytes));
	return limit;
}

/* The file limit in force (0: none), likewise. */
static __always_inline __u64 file_limit(struct bq_vol_cfg *cfg)
{
	__u64 limit = cfg->limit_files, soft = cfg->soft_files;

	if ((cfg->flags & BQ_VOL_FILES_SOFT_EXPIRED) && soft && (!limit || soft < limit))
		limit = soft;
	return limit;
}

/*
 * 0 to allow, -EDQUOT to refuse. A volume at or over its limit refuses
 * growth; an operation known to add `extra_bytes` is refused when it would
 * cross the limit. Audit mode counts and reports but always allows.
 */
static __always_inline int verdict(struct vol_ctx *v, __u32 op, __s64 extra_bytes, __s64 extra_files)
{
	struct bq_vol_cfg *cfg = v->cfg;
	struct bq_vol_stats *vs = v->vs;
	__s64 limit = byte_limit(cfg);
	__u64 limit_files = file_limit(cfg);
	__s64 used = clamp_size(vs->reserved_bytes) + clamp_delta(cfg->base_bytes) + clamp_delta(vs->delta_bytes[0]) +
		     clamp_delta(vs->delta_bytes[1]);
	bool over = used >= limit || (extra_bytes > 0 && used + clamp_size(extra_bytes) > limit) ||
		    (usage_unknown(cfg) && (extra_bytes > 0 || extra_files > 0));

	if (!over && limit_files && extra_files > 0) {
		__s64 files = cfg->base_files + vs->delta_files[0] + vs->delta_files[1];
		over = files + extra_files > (__s64)limit_files;
	}
	return count_verdict(v, op, over, -EDQUOT);
}

/*
 * Release the inode's reservation once it is no longer needed: when its size
 * has reached every admitted end (all that growth is now in i_size, and so
 * accounted: callers account_size() first), or when nothing can still be
 * writing (`idle`: no file open for writing, or the inode is going away).
 */
static __always_inline void release_reservation(struct bq_inode *st, __s64 size, bool idle)
{
	__s64 released = 0;
	__u32 vol;

	bpf_spin_lock(&st->lock);
	vol = st->resv_vol;
	if (st->resv_bytes && (idle || size >= st->resv_end)) {
		released = st->resv_bytes;
		st->resv_bytes = 0;
		st->resv_end = 0;
	}
	bpf_spin_unlock(&st->lock);
	if (!released)
		return;
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (vs)
		__sync_fetch_and_add(&vs->reserved_bytes, -released);
}

/* Catch up: charge what the inode grew or shrank by since it was last seen, then release what that settles. */
static __always_inline void catch_up(struct vol_ctx *v, struct inode *inode, bool idle)
{
	__s64 size = clamp_size(inode->i_size);

	account_size(v, inode, size);
	if (v->st->flags & BQ_INODE_SHRINKING) {
		v->st->flags &= ~BQ_INODE_SHRINKING;
		settle_failed_shrink(inode);
	}
	release_reservation(v->st, size, idle);
}

/*
 * Admit an operation that may grow `inode` to `end` bytes, or by `append`
 * bytes past everything admitted so far, whichever is larger: the growth is
 * reserved in the volume, all of it or (refused) none. Growth 0 (an
 * overwrite) is always admitted, even at the limit. 0, or -EDQUOT.
 */
static __always_inline int admit_growth(struct vol_ctx *v, struct inode *inode, __s64 end, __s64 append, __u32 op)
{
	struct bq_inode *st = v->st;
	struct bq_vol_stats *vs = v->vs;
	__s64 size = clamp_size(inode->i_size);
	__s64 limit = byte_limit(v->cfg);
	__s64 base = clamp_delta(v->cfg->base_bytes);
	bool enforce = v->cfg->mode == BQ_MODE_ENFORCE;
	bool over = false, foreign = false;
	__s64 growth = 0;

	end = clamp_size(end);
	append = clamp_size(append);
	bpf_spin_lock(&st->lock);
	__s64 from = max64(size, clamp_size(st->resv_end));
	__s64 new_end = max64(from + append, end);
	growth = new_end - from;
	if (growth > 0 && st->resv_bytes && st->resv_vol != v->vol) {
		foreign = true; /* still reserved in the volume it was moved from: wait for that to settle */
	} else if (growth > 0) {
		/* Reserve first, then read the deltas: what another inode moves from reservation to
		 * delta (delta first, then the reservation) is seen at least once. */
		__s64 reserved = __sync_fetch_and_add(&vs->reserved_bytes, growth);
		__s64 used = base + clamp_size(reserved) + clamp_delta(vs->delta_bytes[0]) + clamp_delta(vs->delta_bytes[1]);
		over = used + growth > limit || usage_unknown(v->cfg);
		if (over && enforce) {
			__sync_fetch_and_add(&vs->reserved_bytes, -growth);
		} else {
			st->resv_bytes += growth;
			st->resv_end = new_end;
			st->resv_vol = v->vol;
		}
	}
	bpf_spin_unlock(&st->lock);
	if (growth <= 0)
		return 0;
	return count_verdict(v, op, over || foreign, -EDQUOT);
}

/*
 * What the operation in flight may do to `file`, from this task's stash (an
 * fentry program filled it just before the hook): grow it to `*end`, or by
 * `*append` past its end. No stash for this file means a path we can't
 * measure: it may add the most one call can (MAX_RW_COUNT). Returns false for
 * a preallocation past the end that keeps the size (real blocks the apparent
 * size never shows: refused).
 */
static __always_inline bool stashed_growth(struct file *file, struct inode *inode, __s64 *end, __s64 *append)
{
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, 0);

	*end = 0;
	*append = MAX_RW_COUNT;
	if (!s || s->kind == BQ_STASH_NONE || s->file != (__u64)file)
		return true;
	__u32 kind = s->kind;
	__s64 pos = clamp_size(s->pos), count = clamp_size(s->count);
	__u32 arg = s->arg;
	s->kind = BQ_STASH_NONE;
	*append = 0;
	if (kind == BQ_STASH_WRITE) {
		if (arg != BQ_WRITE_APPEND)
			*end = pos + count;
		if (arg != BQ_WRITE_AT_POS)
			*append = count;
	} else if (kind == BQ_STASH_FALLOC) {
		if (arg & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE))
			return true;
		if (arg & FALLOC_FL_INSERT_RANGE) {
			*append = count;
			return true;
		}
		if (arg & FALLOC_FL_KEEP_SIZE)
			return pos + count <= clamp_size(inode->i_size);
		*end = pos + count;
	} else if (kind == BQ_STASH_CLONE) {
		*end = pos + count;
	}
	return true;
}

/* Refuse a preallocation the apparent size would never count (counted as a write denial). */
static __always_inline int refuse_hidden_allocation(struct vol_ctx *v)
{
	return count_verdict(v, BQ_OP_WRITE, true, -EOPNOTSUPP);
}

/*
 * Every write-family call, fallocate and clone reaches this hook with
 * MAY_WRITE (rw_verify_area, vfs_fallocate, remap_verify_area): catch up the
 * file's size, then admit the call's growth from the stash.
 */
SEC("lsm/file_permission")
int BPF_PROG(bq_file_permission, struct file *file, int mask)
{
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};
	__s64 end, append;

	if (!(mask & MAY_WRITE) || !inode || !is_reg(inode))
		return 0;
	if (!volume_of(inode, file->f_path.dentry, &v, true)) {
		if (!v.unknown)
			return 0;
		/* Which volume can't be told: only what adds nothing passes. */
		bool shown = stashed_growth(file, inode, &end, &append);
		return shown && !append && end <= inode->i_size ? 0 : -EDQUOT;
	}
	catch_up(&v, inode, false);
	if (!stashed_growth(file, inode, &end, &append))
		return refuse_hidden_allocation(&v);
	return admit_growth(&v, inode, end, append, BQ_OP_WRITE);
}

/* How a write reaches the file: at its position, or possibly at its end. */
static __always_inline __u32 write_kind(struct file *file, bool positioned)
{
	if (file->f_flags & O_APPEND)
		return BQ_WRITE_APPEND;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!positioned || (task->flags & (PF_KTHREAD | PF_IO_WORKER)))
		return BQ_WRITE_MAY_APPEND;
	/* A syscall that can't ask for RWF_APPEND writes at the position; any other caller
	 * (io_uring, AIO, compat syscalls, the kernel itself) might, so both count. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return BQ_WRITE_MAY_APPEND;
	switch (SYSCALL_NR(regs)) {
	case NR_pwritev2:
		return (SYSCALL_ARG6(regs) & RWF_APPEND) ? BQ_WRITE_APPEND : BQ_WRITE_AT_POS;
	case NR_write:
	case NR_pwrite64:
	case NR_writev:
	case NR_pwritev:
	case NR_sendfile:
	case NR_splice:
	case NR_copy_file_range:
		return BQ_WRITE_AT_POS;
	}
	return BQ_WRITE_MAY_APPEND;
}

/* Save what the operation about to be checked on `file` may grow, for bq_file_permission. */
static __always_inline void stash_op(struct file *file, __u32 kind, __s64 pos, __s64 count, __u32 arg)
{
	struct inode *inode = file->f_inode;

	if (!inode || !has_volumes(inode))
		return;
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return; /* no stash: the hook counts the most one call can add */
	s->file = (__u64)file;
	s->kind = kind;
	s->pos = pos;
	s->count = count;
	s->arg = arg;
}

SEC("fentry/rw_verify_area")
int BPF_PROG(bq_rw_verify_area, int read_write, struct file *file, const loff_t *ppos, size_t count)
{
	__s64 pos = 0;

	if (read_write != WRITE || !file)
		return 0;
	if (ppos)
		bpf_probe_read_kernel(&pos, sizeof(pos), ppos);
	stash_op(file, BQ_STASH_WRITE, pos, (__s64)count, write_kind(file, ppos != 0));
	return 0;
}

SEC("fentry/vfs_fallocate")
int BPF_PROG(bq_vfs_fallocate, struct file *file, int mode, loff_t offset, loff_t len)
{
	if (file)
		stash_op(file, BQ_STASH_FALLOC, offset, len, (__u32)mode);
	return 0;
}

/* vfs_clone_file_range, not do_clone_file_range: 6.12 has no do_clone_file_range (folded into it). */
SEC("fentry/vfs_clone_file_range")
int BPF_PROG(bq_vfs_clone_file_range, struct file *file_in, loff_t pos_in, struct file *file_out, loff_t pos_out,
	     loff_t len)
{
	if (!file_out || !file_in)
		return 0;
	if (len == 0 && file_in->f_inode) /* 0: to the end of the source */
		len = file_in->f_inode->i_size - pos_in;
	stash_op(file_out, BQ_STASH_CLONE, pos_out, len, 0);
	return 0;
}

SEC("fentry/vfs_dedupe_file_range_one")
int BPF_PROG(bq_vfs_dedupe_file_range_one, struct file *src_file, loff_t src_pos, struct file *dst_file)
{
	if (dst_file)
		stash_op(dst_file, BQ_STASH_DEDUPE, 0, 0, 0);
	return 0;
}

/*
 * A core dump writes without any check (__kernel_write_iter): admit, when the
 * dumping task opens the core file, the most the dump can write: RLIMIT_CORE,
 * or else the memory it maps, one program header and NT_FILE entry per
 * mapping and the notes of every thread. Settled when the file is closed.
 */
static __always_inline __s64 core_dump_bound(struct task_struct *task)
{
	struct mm_struct *mm = task->mm;
	__u64 limit = task->signal->rlim[RLIMIT_CORE].rlim_cur;
	__u64 most = 65536 + (__u64)task->signal->nr_threads * 16384;

	if (mm)
		most += mm->total_vm * 4096 + (__u64)mm->map_count * 4200;
	return clamp_size((__s64)(limit < most ? limit : most));
}

SEC("lsm/file_open")
int BPF_PROG(bq_file_open, struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};

	if (!(task->flags & PF_DUMPCORE) || !inode || !is_reg(inode))
		return 0;
	if (!volume_of(inode, file->f_path.dentry, &v, true))
		return v.unknown ? -EDQUOT : 0;
	catch_up(&v, inode, false);
	return admit_growth(&v, inode, 0, core_dump_bound(task), BQ_OP_WRITE);
}

/* Writes through an open file: catch up the size the previous write left, then decide. */
static __always_inline int check_file_growth(struct file *file, __u32 op)
{
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};

	if (!inode || !is_reg(inode))
		return 0;
	if (!volume_of(inode, file->f_path.dentry, &v, true))
		return v.unknown ? -EDQUOT : 0;
	catch_up(&v, inode, false);
	return verdict(&v, op, 0, 0);
}

SEC("lsm/mmap_file")
int BPF_PROG(bq_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!file || !(prot & PROT_WRITE) || !(flags & MAP_SHARED))
		return 0;
	return check_file_growth(file, BQ_OP_MMAP);
}

SEC("lsm/file_mprotect")
int BPF_PROG(bq_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	struct file *file = vma->vm_file;

	if (!file || !(prot & PROT_WRITE) || !(vma->vm_flags & VM_SHARED))
		return 0;
	return check_file_growth(file, BQ_OP_MMAP);
}

/* On close, account the last write; with no writer left, nothing admitted is still in flight. */
SEC("lsm/file_free_security")
int BPF_PROG(bq_file_free, struct file *file)
{
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};

	if (!(file->f_mode & FMODE_WRITE) || !inode || !is_reg(inode))
		return 0;
	/* Untracked: never written through this host since it was seen, so nothing to catch up. */
	struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, 0);
	if (!st)
		return 0;
	bool idle = inode->i_writecount.counter <= 0;
	if (volume_of(inode, file->f_path.dentry, &v, true))
		catch_up(&v, inode, idle);
	else
		release_reservation(st, clamp_size(inode->i_size), idle);
	return 0;
}

/*
 * An inode going away from this host's cache: nothing can write to it any more.
 * Its last size change (a truncate(2) through a path, say) is accounted now, as
 * long as it still exists; then what was reserved for it is released.
 */
SEC("lsm/inode_free_security")
int BPF_PROG(bq_inode_free, struct inode *inode)
{
	struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, 0);

	if (!st)
		return 0;
	struct vol_ctx v = { .vol = st->vol_id, .fs = fs_of(inode->i_sb), .st = st };
	bool known = st->gen == current_gen() && volume_slots(&v);
	__u64 key = (__u64)inode;
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, 0);
	if (s && s->kind == BQ_STASH_REMOVE && s->file == key) {
		s->arg |= BQ_REMOVE_FREED; /* freed inside the removal: its fexit credits it */
	} else if (bpf_map_lookup_elem(&credited, &key)) {
		bpf_map_delete_elem(&credited, &key); /* credited by the removal's fexit */
	} else if (!inode->i_nlink && known) {
		/* Gone without a removal we credited: a silly-renamed file's last close, say. */
		__s64 bytes = is_reg(inode) ? st->size : 0;
		__u32 epoch = epoch_of(v.cfg);
		note_dirty(&v, inode, bytes, 1);
		credit_removal(v.vol, bytes, epoch);
	} else if (inode->i_nlink && is_reg(inode) && known) {
		account_size(&v, inode, clamp_size(inode->i_size));
	}
	settle_failed_shrink(inode); /* not only when flagged: a catch-up may have cleared the flag first */
	if (st->resv_bytes)
		release_reservation(st, 0, true);
	return 0;
}

/*
 * Size changes: growth is admitted like a write. A shrink is credited now, but
 * the room it frees stays reserved until fexit(notify_change) says the
 * truncate happened: a truncate that fails never frees room it didn't free.
 */
static __always_inline int check_setattr(struct dentry *dentry, struct iattr *attr)
{
	struct inode *inode = dentry->d_inode;
	struct vol_ctx v = {};

	if (!(attr->ia_valid & ATTR_SIZE) || !inode || !is_reg(inode))
		return 0;
	if (!volume_of(inode, dentry, &v, true))
		return v.unknown && attr->ia_size > inode->i_size ? -EDQUOT : 0;
	catch_up(&v, inode, false);
	__s64 new_size = clamp_size(attr->ia_size);
	if (new_size >= v.st->size)
		return admit_growth(&v, inode, new_size, 0, BQ_OP_TRUNCATE);
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0; /* credited at the next catch-up instead */
	__s64 held = v.st->size - new_size;
	__sync_fetch_and_add(&v.vs->reserved_bytes, held);
	__s64 credited = -account_size(&v, inode, new_size);
	if (credited != held) /* another catch-up raced this one */
		__sync_fetch_and_add(&v.vs->reserved_bytes, credited - held);
	v.st->flags |= BQ_INODE_SHRINKING;
	s->kind = BQ_STASH_SHRINK;
	s->file = (__u64)inode;
	s->pos = v.vol;
	s->count = credited;
	return 0;
}

/* The truncate checked above is done: free its room, or (failed) keep it reserved until the catch-up. */
SEC("fexit/notify_change")
int bq_notify_change_exit(unsigned long long *ctx)
{
	long ret = (long)ctx[4]; /* (idmap or user namespace, dentry, attr, delegated inode) -> int */
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, 0);

	if (!s || s->kind != BQ_STASH_SHRINK)
		return 0;
	s->kind = BQ_STASH_NONE;
	__u32 vol = (__u32)s->pos;
	__s64 bytes = s->count;
	__u64 key = s->file;
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (!vs)
		return 0;
	if ((int)ret == 0) {
		__sync_fetch_and_add(&vs->reserved_bytes, -bytes);
		return 0;
	}
	struct bq_failed_shrink *rec = bpf_map_lookup_elem(&failed_shrinks, &key);
	if (rec && rec->vol_id == vol) {
		__sync_fetch_and_add(&rec->bytes, bytes);
		return 0;
	}
	struct bq_failed_shrink fresh = { .vol_id = vol, .bytes = bytes };
	if (bpf_map_update_elem(&failed_shrinks, &key, &fresh, BPF_NOEXIST)) {
		/* No room to remember it: charge the bytes back now. The catch-up charges them
		 * again, so they count twice until a scan: never too little. */
		struct bq_vol_cfg *cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
		if (cfg)
			__sync_fetch_and_add(&vs->delta_bytes[cfg->epoch & 1], bytes);
		__sync_fetch_and_add(&vs->reserved_bytes, -bytes);
	}
	return 0;
}

/*
 * inode_setattr gained a leading `struct mnt_idmap *` in 6.8 (the type itself exists from 6.3,
 * so its existence says nothing about this hook). The loader reads where (dentry, iattr) starts
 * from bpf_lsm_inode_setattr's own BTF prototype (hookbtf.py) and sets this before load; the
 * verifier then prunes the other branch.
 */
const volatile __u32 bq_setattr_dentry_arg = 0;

SEC("lsm/inode_setattr")
int bq_inode_setattr(unsigned long long *ctx)
{
	if (bq_setattr_dentry_arg == 1)
		return check_setattr((struct dentry *)ctx[1], (struct iattr *)ctx[2]);
	return check_setattr((struct dentry *)ctx[0], (struct iattr *)ctx[1]);
}

/*
 * Creates are counted when they are admitted (so concurrent creators can't all
 * pass the inode limit) and the count is taken back by the create's fexit
 * program when no inode was made: the create failed, or an O_CREAT open found
 * a file that existed but wasn't cached (`opened`: its dirty record, made by
 * d_instantiate below, must then say it existed at the flip).
 */
static __always_inline void finish_create(bool created, struct file *opened)
{
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, 0);

	if (!s || !s->create_vol)
		return;
	__u32 vol = s->create_vol;
	__u32 epoch = s->create_epoch;
	s->create_vol = 0;
	if (created)
		return;
	struct bq_vol_cfg *cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (!cfg || !vs)
		return;
	__sync_fetch_and_add(&vs->delta_files[epoch & 1], -1);
	if (!opened || !cfg->scanning)
		return;
	struct inode *inode = opened->f_inode;
	if (!inode)
		return;
	struct bq_key key = { .fs = fs_of(inode->i_sb), .ino = inode->i_ino };
	struct bq_dirty *rec = bpf_map_lookup_elem(&scan_dirty, &key);
	if (rec && rec->vol_id == vol && rec->epoch == cfg->epoch)
		rec->files_before = 1;
}

/* Remember the create just counted, for its fexit program. */
static __always_inline void note_create(struct vol_ctx *v)
{
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!s)
		return; /* no stash: the count stays, as if it made an inode */
	s->create_vol = v->vol; /* one whose fexit never came (a kernel-internal create) stays counted */
	s->create_epoch = v->cfg->epoch;
}

/* A new name in directory `dir`: refused when the volume is full. */
static __always_inline int check_new_entry(struct inode *dir, struct dentry *dentry, __u32 op)
{
	struct vol_ctx v = {};

	if (!volume_of(dir, dentry->d_parent, &v, true))
		return v.unknown ? -EDQUOT : 0;
	int ret = verdict(&v, op, 0, 1);
	if (!ret) {
		account_files(&v, 1);
		note_create(&v);
		if (v.cfg->scanning) {
			__u64 task = bpf_get_current_pid_tgid();
			struct bq_creating rec = {
				.name_hash = dentry->d_name.hash,
				.name_len = dentry->d_name.len,
				.vol_id = v.vol,
				.epoch = v.cfg->epoch,
			};
			bpf_map_update_elem(&creating, &task, &rec, BPF_ANY);
		}
	}
	return ret;
}

/* The creates: a path's open with O_CREAT (any filesystem, atomic_open or not), mknod of a
 * regular file, mkdir, mknod (fifos, sockets, devices) and symlink. */
#define FMODE_CREATED 0x100000
#define MAX_ERRNO 4095

static __always_inline void finish_open(struct file *file)
{
	if ((unsigned long)file >= (unsigned long)-MAX_ERRNO || !file)
		finish_create(false, 0);
	else
		finish_create(file->f_mode & FMODE_CREATED, file);
}

SEC("fexit/do_filp_open")
int BPF_PROG(bq_do_filp_open_exit, int dfd, struct filename *pathname, const struct open_flags *op, struct file *ret)
{
	finish_open(ret);
	return 0;
}

SEC("fexit/do_file_open_root")
int BPF_PROG(bq_do_file_open_root_exit, const struct path *root, const char *name, const struct open_flags *op,
	     struct file *ret)
{
	finish_open(ret);
	return 0;
}

SEC("fexit/vfs_create")
int bq_vfs_create_exit(unsigned long long *ctx)
{
	finish_create((int)ctx[5] == 0, 0); /* (idmap or user namespace, dir, dentry, mode, want_excl) -> int */
	return 0;
}

SEC("fexit/vfs_mkdir")
int bq_vfs_mkdir_exit(unsigned long long *ctx)
{
	finish_create((int)ctx[4] == 0, 0); /* (idmap or user namespace, dir, dentry, mode) -> int */
	return 0;
}

SEC("fexit/vfs_mknod")
int bq_vfs_mknod_exit(unsigned long long *ctx)
{
	finish_create((int)ctx[5] == 0, 0); /* (idmap or user namespace, dir, dentry, mode, dev) -> int */
	return 0;
}

SEC("fexit/vfs_symlink")
int bq_vfs_symlink_exit(unsigned long long *ctx)
{
	finish_create((int)ctx[4] == 0, 0); /* (idmap or user namespace, dir, dentry, old name) -> int */
	return 0;
}

/*
 * The inode of a create made during a scan: it didn't exist at the flip (its
 * file count is in the delta), so the scan must not count it. An O_CREAT open
 * that found an existing file is set right by finish_create.
 */
SEC("lsm/d_instantiate")
int BPF_PROG(bq_d_instantiate, struct dentry *dentry, struct inode *inode)
{
	__u64 task = bpf_get_current_pid_tgid();
	struct bq_creating *pending = bpf_map_lookup_elem(&creating, &task);

	if (!pending || !inode || pending->name_hash != dentry->d_name.hash || pending->name_len != dentry->d_name.len)
		return 0;
	__u32 vol = pending->vol_id;
	__u32 epoch = pending->epoch;
	bpf_map_delete_elem(&creating, &task);
	struct vol_ctx v = { .vol = vol, .fs = fs_of(inode->i_sb) };
	v.cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
	v.vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (!v.cfg || !v.vs || !v.cfg->scanning || v.cfg->epoch != epoch)
		return 0;
	v.st = bpf_inode_storage_get(&inode_st, inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v.st || v.st->gen)
		return 0;
	v.st->vol_id = vol;
	v.st->gen = current_gen();
	v.st->size = is_reg(inode) ? inode->i_size : 0;
	note_dirty(&v, inode, v.st->size, 0);
	return 0;
}

SEC("lsm/inode_create")
int BPF_PROG(bq_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return check_new_entry(dir, dentry, BQ_OP_CREATE);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(bq_inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return check_new_entry(dir, dentry, BQ_OP_MKDIR);
}

SEC("lsm/inode_mknod")
int BPF_PROG(bq_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev)
{
	return check_new_entry(dir, dentry, BQ_OP_MKNOD);
}

SEC("lsm/inode_symlink")
int BPF_PROG(bq_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name)
{
	return check_new_entry(dir, dentry, BQ_OP_SYMLINK);
}

/*
 * Removals are credited only once they have happened. The hook (before the
 * operation) notes what the inode counts for and stashes it; the fexit
 * program of the operation credits it when the operation succeeded and was a
 * real removal. An NFS silly-rename (the file is still open somewhere) is no
 * removal: the inode is credited when it is finally freed with no link left.
 * Whichever of the fexit and the inode's free comes first, it is credited once.
 */
static __always_inline void note_removal(struct dentry *dentry)
{
	struct inode *inode = dentry->d_inode;
	struct vol_ctx v = {};

	if (!inode || !volume_of(inode, dentry, &v, true))
		return;
	bool reg = is_reg(inode);
	if (reg && inode->i_nlink > 1)
		return; /* another name keeps it */
	if (reg)
		catch_up(&v, inode, false);
	__s64 bytes = reg ? v.st->size : 0;
	__u32 epoch = epoch_of(v.cfg);
	note_dirty(&v, inode, bytes, 1);
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return; /* credited when the inode is freed with no link left */
	s->kind = BQ_STASH_REMOVE;
	s->file = (__u64)inode;
	s->pos = (__s64)((__u64)epoch << 32 | v.vol); /* the volume, and the epoch its dirty check saw */
	s->count = bytes;
	s->arg = 0;
}

/* After unlink, rmdir or a rename over a target: credit the stashed removal if it happened. */
static __always_inline void finish_removal(bool removed)
{
	struct bq_stash *s = bpf_task_storage_get(&stash, bpf_get_current_task_btf(), 0, 0);

	if (!s || s->kind != BQ_STASH_REMOVE)
		return;
	s->kind = BQ_STASH_NONE;
	if (!removed)
		return;
	__u64 inode = s->file;
	__u32 vol = (__u32)s->pos;
	__u32 epoch = (__u64)s->pos >> 32;
	struct bq_vol_cfg *cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
	if (!cfg)
		return;
	if (!(s->arg & BQ_REMOVE_FREED)) {
		/* The inode is still cached: its free must not credit it again. */
		__u8 one = 1;
		if (bpf_map_update_elem(&credited, &inode, &one, BPF_NOEXIST))
			return; /* no room for the mark: leave the credit to the free */
	}
	/* A scan flipped while the removal was in flight: its walk may or may not have seen what was
	 * removed, and no record says what it counted. Not crediting errs towards too much, until
	 * the next scan; crediting could count the bytes freed twice. */
	if (epoch_of(cfg) != epoch)
		return;
	credit_removal(vol, s->count, epoch);
}

SEC("lsm/inode_unlink")
int BPF_PROG(bq_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	note_removal(dentry);
	return 0;
}

SEC("lsm/inode_rmdir")
int BPF_PROG(bq_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	note_removal(dentry);
	return 0;
}

SEC("fexit/vfs_unlink")
int bq_vfs_unlink_exit(unsigned long long *ctx)
{
	/* (idmap or user namespace, dir, dentry, delegated inode) -> int */
	struct dentry *dentry = (struct dentry *)ctx[2];
	bool silly = dentry->d_flags & DCACHE_NFSFS_RENAMED; /* NFS kept it under a new name: still there */

	finish_removal((int)ctx[4] == 0 && !silly);
	return 0;
}

SEC("fexit/vfs_rmdir")
int bq_vfs_rmdir_exit(unsigned long long *ctx)
{
	/* (idmap or user namespace, dir, dentry) -> int */
	finish_removal((int)ctx[3] == 0);
	return 0;
}

/* A rename within a volume that completed while a scan started after its hook: that scan retries. */
static __always_inline void finish_renaming(bool renamed)
{
	struct bq_renaming *r = bpf_task_storage_get(&renaming, bpf_get_current_task_btf(), 0, 0);

	if (!r || !r->vol_id)
		return;
	__u32 vol = r->vol_id;
	r->vol_id = 0;
	if (!renamed)
		return;
	struct bq_vol_cfg *cfg = bpf_map_lookup_elem(&vol_cfg, &vol);
	if (!cfg || !cfg->scanning || (r->scanning && cfg->epoch == r->epoch))
		return;
	struct bq_vol_stats *vs = bpf_map_lookup_elem(&vol_stats, &vol);
	if (vs)
		__sync_fetch_and_add(&vs->stale, 1);
}

SEC("fexit/vfs_rename")
int BPF_PROG(bq_vfs_rename_exit, struct renamedata *rd, int ret)
{
	/* An exchange removes nothing; any other successful rename removed its target, if any,
	 * unless NFS silly-renamed the target (still open: credited at its last close). */
	finish_removal(ret == 0 && !(rd->flags & RENAME_EXCHANGE) &&
		       !(rd->new_dentry->d_flags & DCACHE_NFSFS_RENAMED));
	finish_renaming(ret == 0);
	return 0;
}

/* The volume of directory `dir` (a new name's parent); v->vol == 0 when none. */
static __always_inline void volume_of_dir(struct inode *dir, struct dentry *dir_dentry, struct vol_ctx *v)
{
	if (!volume_of(dir, dir_dentry, v, true))
		v->vol = 0;
}

static __always_inline void mark_stale(struct vol_ctx *v)
{
	if (v->vol && v->vs)
		__sync_fetch_and_add(&v->vs->stale, 1);
}

/*
 * A name moved or linked within a volume while it is scanning: the walk may
 * list the new name's directory before the move and the old one's after it,
 * and never see the inode. A file gets a dirty record (what it counted at the
 * flip: counted whether the walk sees it once, twice or not at all); a
 * directory's subtree can't be recorded, so the scan is told to retry.
 */
static __always_inline void note_moved(struct vol_ctx *dir_v, struct inode *inode, struct dentry *dentry)
{
	struct vol_ctx v = {};

	if (!dir_v->vol || !dir_v->cfg || !dir_v->cfg->scanning)
		return;
	if (is_dir(inode)) {
		mark_stale(dir_v);
		return;
	}
	if (volume_of(inode, dentry, &v, true) && v.vol == dir_v->vol)
		note_dirty(&v, inode, is_reg(inode) ? v.st->size : 0, 1);
}

/* Remember a rename within volume v until its fexit (finish_renaming); false if that can't be done. */
static __always_inline bool note_renaming(struct vol_ctx *v)
{
	if (!v->vol || !v->cfg)
		return true;
	struct bq_renaming *r = bpf_task_storage_get(&renaming, bpf_get_current_task_btf(), 0,
						     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!r)
		return false;
	r->vol_id = v->vol;
	r->epoch = v->cfg->epoch;
	r->scanning = v->cfg->scanning;
	return true;
}

/*
 * A name that would put an inode in another volume than its own (a hard link
 * or a rename into, out of or across volumes) gets EXDEV when either volume is
 * enforced, as XFS project quotas do: mv and cp then copy, so every byte is
 * admitted, and delete, which credits the source once it has happened.
 * Membership so stays with the inode: no alias outside a volume, no bytes
 * moved behind the accounting's back. In audit mode it is counted and allowed.
 */
static __always_inline int refuse_crossing(struct vol_ctx *src, struct vol_ctx *dst, __u32 op)
{
	struct vol_ctx *v = dst->vol ? dst : src;
	bool enforced = (src->vol && src->cfg && src->cfg->mode == BQ_MODE_ENFORCE) ||
			(dst->vol && dst->cfg && dst->cfg->mode == BQ_MODE_ENFORCE);
	int ret = enforced ? -EXDEV : 0;

	if (!v->cfg || !v->vs)
		return ret;
	__sync_fetch_and_add(&v->vs->checks, 1);
	if (op < BQ_NR_OPS)
		__sync_fetch_and_add(&v->vs->denied[op], 1);
	emit_denial(v, op, ret);
	return ret;
}

/* A hard link adds no bytes and no inode inside its volume, but is still refused when the volume is full. */
SEC("lsm/inode_link")
int BPF_PROG(bq_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
	struct inode *inode = old_dentry->d_inode;
	struct vol_ctx dst = {}, src = {};

	if (!inode)
		return 0;
	volume_of_dir(dir, new_dentry->d_parent, &dst);
	volume_of_dir(inode, old_dentry, &src);
	if (src.unknown || dst.unknown)
		return -EXDEV; /* which volumes can't be told */
	if (src.vol != dst.vol)
		return refuse_crossing(&src, &dst, BQ_OP_LINK);
	if (!dst.vol)
		return 0;
	note_moved(&dst, inode, old_dentry);
	return verdict(&dst, BQ_OP_LINK, 0, 0);
}

/*
 * Renames within one volume (or outside volumes) change no usage; a target
 * they replace is removed (credited after the rename). Moving a volume's root
 * moves the whole volume. Anything else changes an inode's volume: EXDEV.
 */
SEC("lsm/inode_rename")
int BPF_PROG(bq_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry)
{
	struct inode *inode = old_dentry->d_inode;
	struct vol_ctx src = {}, dst = {};

	if (!inode)
		return 0;
	volume_of_dir(old_dir, old_dentry->d_parent, &src);
	volume_of_dir(new_dir, new_dentry->d_parent, &dst);
	if (src.unknown || dst.unknown)
		return -EXDEV; /* which volumes can't be told */
	if (src.vol == dst.vol || is_volume_root(fs_of(inode->i_sb), inode->i_ino)) {
		if (src.vol == dst.vol) {
			note_moved(&src, inode, old_dentry);
			if (!note_renaming(&src))
				return -ENOMEM; /* a scan starting meanwhile could not be told: refused */
		}
		note_removal(new_dentry);
		return 0;
	}
	int ret = refuse_crossing(&src, &dst, BQ_OP_RENAME);
	if (ret)
		return ret;
	/* Audit mode: allowed. Cached volume ids of what moved are wrong now; usage is off until a scan. */
	note_removal(new_dentry);
	if (is_dir(inode)) {
		__u32 zero = 0;
		struct bq_config *c = bpf_map_lookup_elem(&config, &zero);
		if (c)
			__sync_fetch_and_add(&c->gen, 1);
	} else {
		struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, 0);
		if (st)
			st->gen = 0; /* re-resolved at its next use */
	}
	mark_stale(&src);
	mark_stale(&dst);
	return 0;
}
