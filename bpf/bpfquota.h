/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The ABI between the BPF LSM program and user space (plugins/module_utils/layout.py
 * mirrors every struct here byte for byte). Changing any layout means bumping
 * BPFQUOTA_ABI: pins live under /sys/fs/bpf/bpfquota/v<ABI>/ and an object with
 * another ABI never reuses them.
 *
 * All structs are padding-free and use fixed-width little-endian fields.
 */
#ifndef BPFQUOTA_H
#define BPFQUOTA_H

#define BPFQUOTA_ABI 4

/* Volume ids are 1..MAX_VOLUMES; 0 means "not in any volume". */
#define MAX_VOLUMES 65536
#define PROBE_VOLUME (MAX_VOLUMES + 1) /* used by the loader to prove the hooks run */
#define VOLUME_SLOTS (MAX_VOLUMES + 2)
#define MAX_ROUTES (4 * MAX_VOLUMES) /* vol_keys entries: volume roots and placed NFS mount roots */
#define MAX_DEVS 4096 /* local filesystems holding volumes (vol_devs) */
#define MAX_DIRTY 65536
#define MAX_DEPTH 16 /* d_parent levels walked with the per-inode cache, to find the enclosing volume */
#define FAR_WALK_STEPS 1024 /* levels walked past those (bpf_loop); deeper is "unknown" */
#define BQ_VOL_UNKNOWN 0xFFFFFFFFu /* the walk could not tell: growth is refused, nothing is cached */
#define MAX_RW_COUNT 2147479552LL /* INT_MAX & PAGE_MASK: the most one write-family call can add */
#define BQ_HUGE (1LL << 62) /* sizes and sums are clamped here, so 64-bit arithmetic never wraps */

enum bq_mode {
	BQ_MODE_UNUSED = 0,
	BQ_MODE_ENFORCE = 1,
	BQ_MODE_AUDIT = 2,
};

/* Operations, for per-volume denial counters and events. */
enum bq_op {
	BQ_OP_WRITE = 0,    /* write-family syscalls, fallocate, clone (file_permission) */
	BQ_OP_MMAP = 1,     /* shared writable mmap / mprotect */
	BQ_OP_TRUNCATE = 2, /* size growth through truncate/ftruncate */
	BQ_OP_CREATE = 3,
	BQ_OP_MKDIR = 4,
	BQ_OP_MKNOD = 5,
	BQ_OP_SYMLINK = 6,
	BQ_OP_LINK = 7,
	BQ_OP_RENAME = 8,
	BQ_NR_OPS = 9,
};

/*
 * vol_keys: HASH, key -> __u32 value. The key names a directory by its filesystem's identity
 * and its inode number: `fs` is the superblock's s_dev (kernel encoding MAJOR << 20 | MINOR) on a
 * local filesystem; on NFS it is BQ_NFS_FS_BASE + the group user space gave the server's fsid
 * (nfs_groups), so every mount of one server filesystem, whatever its superblock, shares the
 * keys; `ino` is then the server's fileid. The value is a volume id for a volume's root, or
 * BQ_ROOT_IN | id for an NFS mount's root directory placed inside volume `id` (0: in none).
 */
struct bq_key {
	__u64 fs;
	__u64 ino;
};

#define BQ_NFS_FS_BASE (1ULL << 32) /* NFS filesystem identities: above every s_dev */
#define BQ_ROOT_IN 0x80000000u      /* a placed NFS mount root, not a volume root */
#define MAX_NFS_GROUPS 4096

/* nfs_groups: HASH bq_fsid -> __u32 group (1..MAX_NFS_GROUPS): the NFS filesystems user space has placed. */
struct bq_fsid {
	__u64 major;
	__u64 minor;
};

/* vol_cfg: ARRAY[VOLUME_SLOTS], written only by user space. */
struct bq_vol_cfg {
	__u64 limit_bytes;
	__u64 limit_files; /* 0: no inode limit */
	__s64 base_bytes;  /* usage = base + delta[0] + delta[1] (see bq_vol_stats) */
	__s64 base_files;
	__u32 mode;     /* enum bq_mode */
	__u32 epoch;    /* scan epoch: kernel accounts into delta[epoch & 1] */
	__u32 scanning; /* 1 while a scan runs: the kernel records bq_dirty entries */
	__u32 flags;    /* BQ_VOL_* */
	__u64 soft_bytes;    /* soft limits (0: none): while BQ_VOL_SOFT_EXPIRED (..._FILES_) is set, ... */
	__u64 soft_files;    /* ... they refuse growth as the limits do */
	__u64 grace_seconds; /* how long usage may stay over them (user space only: the agent keeps the clocks) */
};

#define BQ_VOL_USAGE_UNKNOWN 1 /* no scan and no saved usage yet: the base means nothing, growth is refused ... */
#define BQ_VOL_ALLOW_UNKNOWN 2 /* ... unless the operator chose availability: unknown usage counts from zero */
#define BQ_VOL_RESTORED 4      /* the base is saved usage, restored at boot; a scan clears it (user space only) */
#define BQ_VOL_NOT_MOUNTED 8   /* a source volume no NFS mount of the host reaches (user space only) */
#define BQ_VOL_SOFT_EXPIRED 16       /* grace over soft_bytes ran out: soft_bytes is the byte limit (set by the agent) */
#define BQ_VOL_FILES_SOFT_EXPIRED 32 /* grace over soft_files ran out: soft_files is the file limit */

/* vol_stats: ARRAY[VOLUME_SLOTS], written by the kernel with atomic adds.
 * (Not per-CPU: 65 536 volumes x CPUs would cost megabytes per CPU.) */
struct bq_vol_stats {
	__s64 delta_bytes[2];
	__s64 delta_files[2];
	__u64 dirty_overflow; /* a scan's dirty record was lost: that scan must be discarded */
	__u64 stale;          /* a directory moved in, out, or within while scanning: a scan that overlaps it retries */
	__u64 last_event_ns;  /* rate limit of denial events */
	__u64 checks;         /* quota checks made */
	__u64 denied[BQ_NR_OPS]; /* by operation; in audit mode: would have been denied */
	__s64 reserved_bytes; /* admitted growth not yet seen in any file's size: part of usage */
};

/*
 * scan_dirty: HASH bq_key(fs, ino of the file) -> bq_dirty. While a scan of the
 * volume runs (epoch changed), the first size or count change of each inode
 * records what the inode contributed when the scan started, so the scan can
 * use that instead of what stat() saw (see plugins/module_utils/usage.py).
 */
struct bq_dirty {
	__u32 vol_id;
	__u32 epoch;
	__s64 size_before;  /* bytes the inode counted for at the start of the epoch */
	__s64 files_before; /* 1 if the inode existed (was counted) then, else 0 */
};

/* vol_meta: HASH __u32 volume id -> bq_vol_meta. Only user space uses it. */
#define BQ_PATH_MAX 4096
struct bq_vol_meta {
	char path[BQ_PATH_MAX];
};

/*
 * creating: LRU_HASH pid_tgid -> bq_creating. A create allowed while its volume
 * is scanning; when the new inode appears (d_instantiate) it gets a dirty record
 * saying it didn't exist at the flip, so the scan doesn't count it twice.
 */
struct bq_creating {
	__u32 name_hash; /* the new dentry's d_name hash and length: which create this is */
	__u32 name_len;
	__u32 vol_id;
	__u32 epoch;
};

/* config: ARRAY[1]. */
struct bq_config {
	__u64 gen;            /* bumped when the key set changes: invalidates cached volume ids; 0 = not configured */
	__u32 event_gap_ms;   /* at most one denial event per volume per gap */
	__u32 flags;          /* BQ_CFG_* */
	__u8 obj_sha256[32];  /* hash of the loaded object: what is loaded */
};

/* Some volume is on NFS: every NFS superblock's fsid and mount roots must be placed, or growth there is refused. */
#define BQ_CFG_NFS_WATCH 1

/* A denial event's op when growth was refused below an NFS fsid or mount root not placed yet: the agent places it. */
#define BQ_OP_PLACE 100
#define BQ_PLACE_GAP_NS 50000000ULL /* at most one placement request per 50 ms */

/*
 * inode_st: INODE_STORAGE. Per-inode cache and accounting state (kernel only).
 *
 * Growth is admitted before it happens: an operation that may grow the file
 * to `end` reserves end - max(i_size, resv_end) bytes in its volume
 * (bq_vol_stats.reserved_bytes), all of it or nothing. Once i_size has reached
 * resv_end, every admitted operation's growth is in i_size (and so in the
 * accounted size) and the reservation is released; otherwise it is released
 * when no file open for writing is left (i_writecount 0) or the inode is freed.
 */
struct bq_inode {
	struct bpf_spin_lock lock; /* guards resv_bytes, resv_end, resv_vol */
	__u32 vol_id; /* 0: not in a volume */
	__u32 epoch;  /* volume epoch of the last dirty record */
	__u32 flags;
	__u32 resv_vol; /* the volume resv_bytes are reserved in */
	__u64 gen;    /* config.gen when vol_id was resolved */
	__s64 size;      /* bytes this inode is accounted for in its volume */
	__s64 resv_bytes; /* reserved for admitted operations still in flight */
	__s64 resv_end;   /* the size every admitted operation stays within */
};

/*
 * stash: TASK_STORAGE. What the operation this task is in may grow, saved by
 * an fentry program on the function that checks it (rw_verify_area,
 * vfs_fallocate, vfs_clone_file_range, vfs_dedupe_file_range_one) for the LSM
 * hook that runs inside it (file_permission), which has no byte count.
 */
enum bq_stash_kind {
	BQ_STASH_NONE = 0,
	BQ_STASH_WRITE = 1,  /* count bytes at pos; arg: BQ_WRITE_* */
	BQ_STASH_FALLOC = 2, /* len bytes at pos; arg: fallocate mode */
	BQ_STASH_CLONE = 3,  /* count bytes at pos (0: to the source's end, resolved) */
	BQ_STASH_DEDUPE = 4, /* adds nothing */
	BQ_STASH_SHRINK = 5, /* a truncate credited count bytes of inode `file` (an inode here) in volume pos */
	BQ_STASH_REMOVE = 6, /* inode `file` may lose its last name: credit count bytes to volume pos after */
};

#define BQ_REMOVE_FREED 1 /* BQ_STASH_REMOVE's arg: the inode was freed inside the removal */

#define BQ_WRITE_AT_POS 0     /* writes at pos */
#define BQ_WRITE_APPEND 1     /* writes at the end (O_APPEND, RWF_APPEND) */
#define BQ_WRITE_MAY_APPEND 2 /* at pos, or at the end: a caller whose flags we can't read */

/*
 * failed_shrinks: HASH inode address -> bq_failed_shrink. A truncate is credited
 * when it is checked, with the bytes it frees held as a reservation until
 * fexit(notify_change) says it happened. One that failed leaves its
 * reservation here until the inode's next catch-up charges the bytes back.
 */
struct bq_failed_shrink {
	__u32 vol_id;
	__u32 pad;
	__s64 bytes;
};

struct bq_stash {
	__u64 file; /* the struct file the stash is for: the hook checks it's the same */
	__s64 pos;
	__s64 count;
	__u32 kind;
	__u32 arg;
	__u32 create_vol;   /* a create counted in this volume awaits its fexit (0: none) ... */
	__u32 create_epoch; /* ... counted in delta_files[create_epoch & 1] */
};

/*
 * renaming: TASK_STORAGE. A rename within a volume, from its hook to its fexit:
 * a scan that started while the rename was in flight (its hook saw no scan, or
 * an earlier one) must retry, since the hook could not tell it.
 */
struct bq_renaming {
	__u32 vol_id; /* 0: no rename within a volume in flight */
	__u32 epoch;  /* the volume's epoch at the hook ... */
	__u32 scanning; /* ... and whether it was scanning then */
	__u32 pad;
};

#define BQ_INODE_DIRTY_SEEN 1 /* a dirty record exists for `epoch` */
#define BQ_INODE_SHRINKING 2  /* a truncate credited before it happened: see failed_shrinks */

/* events: RINGBUF of bq_event, one per denial (rate limited). */
struct bq_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 uid;
	__u32 vol_id;
	__u32 op;   /* enum bq_op */
	__s32 ret;  /* -EDQUOT, -EXDEV, or 0 in audit mode */
	__u32 mode;
	char comm[16];
};

#endif
