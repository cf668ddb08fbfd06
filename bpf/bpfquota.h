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

#define BPFQUOTA_ABI 1

/* Volume ids are 1..MAX_VOLUMES; 0 means "not in any volume". */
#define MAX_VOLUMES 65536
#define PROBE_VOLUME (MAX_VOLUMES + 1) /* used by the loader to prove the hooks run */
#define VOLUME_SLOTS (MAX_VOLUMES + 2)
#define MAX_ROUTES (4 * MAX_VOLUMES) /* (dev, ino) keys: a volume reachable by several mounts */
#define MAX_DEVS 4096
#define MAX_DIRTY 65536
#define MAX_DEPTH 64 /* d_parent levels walked to find the enclosing volume */

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

/* vol_keys: HASH, key -> __u32 volume id. One entry per route to a volume root. */
struct bq_key {
	__u64 dev; /* kernel encoding: MAJOR << 20 | MINOR */
	__u64 ino;
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
	__u32 pad;
};

/* vol_stats: ARRAY[VOLUME_SLOTS], written by the kernel with atomic adds.
 * (Not per-CPU: 65 536 volumes x CPUs would cost megabytes per CPU.) */
struct bq_vol_stats {
	__s64 delta_bytes[2];
	__s64 delta_files[2];
	__u64 dirty_overflow; /* a scan's dirty record was lost: that scan must be discarded */
	__u64 stale;          /* a directory moved in or out: usage is off until the next scan */
	__u64 last_event_ns;  /* rate limit of denial events */
	__u64 checks;         /* quota checks made */
	__u64 denied[BQ_NR_OPS]; /* by operation; in audit mode: would have been denied */
};

/*
 * scan_dirty: HASH bq_key(dev, ino of the file) -> bq_dirty. While a scan of the
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
	__u32 gen;            /* bumped when the key set changes: invalidates cached volume ids; 0 = not configured */
	__u32 event_gap_ms;   /* at most one denial event per volume per gap */
	__u8 obj_sha256[32];  /* hash of the loaded object: what is loaded */
};

/* inode_st: INODE_STORAGE. Per-inode cache and accounting state. */
struct bq_inode {
	__u32 vol_id; /* 0: not in a volume */
	__u32 gen;    /* config.gen when vol_id was resolved */
	__s64 size;   /* bytes this inode is accounted for in its volume */
	__u32 epoch;  /* volume epoch of the last dirty record */
	__u32 flags;
};

#define BQ_INODE_DIRTY_SEEN 1 /* a dirty record exists for `epoch` */

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
