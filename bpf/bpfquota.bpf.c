// SPDX-License-Identifier: GPL-2.0-only
/*
 * bpfquota: per-directory write quotas enforced at the syscall by BPF LSM.
 *
 * A volume is a directory identified by the (dev, ino) of its root; a file
 * belongs to the nearest enclosing volume (found by walking d_parent, then
 * cached per inode). Usage = base (from user space's scan) + deltas the
 * kernel accounts from i_size changes it sees, so a writer is stopped at
 * most one write past the limit. See bpfquota.h for the maps.
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bq_key);
	__type(value, __u32);
} vol_keys SEC(".maps");

/* Superblocks that hold any volume: everything else is let through with one lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DEVS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
} vol_devs SEC(".maps");

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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* What a hook needs to know about the volume an inode is in. */
struct vol_ctx {
	__u32 vol;
	__u64 dev;
	struct bq_inode *st;
	struct bq_vol_cfg *cfg;
	struct bq_vol_stats *vs;
};

static __always_inline bool is_reg(struct inode *inode)
{
	return (inode->i_mode & S_IFMT) == S_IFREG;
}

static __always_inline bool is_dir(struct inode *inode)
{
	return (inode->i_mode & S_IFMT) == S_IFDIR;
}

static __always_inline __u32 current_gen(void)
{
	__u32 zero = 0;
	struct bq_config *c = bpf_map_lookup_elem(&config, &zero);

	return c ? c->gen : 0;
}

static __always_inline bool dev_has_volumes(__u64 dev)
{
	return bpf_map_lookup_elem(&vol_devs, &dev) != 0;
}

static __always_inline __u32 volume_rooted_at(__u64 dev, __u64 ino)
{
	struct bq_key key = { .dev = dev, .ino = ino };
	__u32 *vol = bpf_map_lookup_elem(&vol_keys, &key);

	return vol ? *vol : 0;
}

/*
 * The nearest enclosing volume of `d`: walk d_parent (it never leaves the
 * superblock), stopping early at an ancestor whose cached answer is current.
 */
static __u32 walk_to_volume(struct dentry *d, __u64 dev, __u32 gen)
{
	for (int depth = 0; depth < MAX_DEPTH; depth++) {
		struct inode *in = d->d_inode;
		if (!in)
			return 0;
		__u32 vol = volume_rooted_at(dev, in->i_ino);
		if (vol)
			return vol;
		if (depth > 0) {
			struct bq_inode *cached = bpf_inode_storage_get(&inode_st, in, 0, 0);
			if (cached && cached->gen == gen)
				return cached->vol_id;
		}
		struct dentry *parent = d->d_parent;
		if (!parent || parent == d)
			return 0;
		d = parent;
	}
	return 0;
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
	struct bq_key key = { .dev = v->dev, .ino = inode->i_ino };
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
	v->dev = inode->i_sb->s_dev;
	if (!dev_has_volumes(v->dev))
		return false;
	__u32 gen = current_gen();
	if (!gen)
		return false;
	struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, track ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	if (!st) {
		if (track)
			return false;
		v->vol = walk_to_volume(dentry, v->dev, gen);
		v->st = 0;
		return volume_slots(v);
	}
	bool first_sight = st->gen == 0;
	if (st->gen != gen) {
		__u32 vol = walk_to_volume(dentry, v->dev, gen);
		/* A file new to a volume counts from its current size: that volume's scan saw it. */
		if (first_sight || vol != st->vol_id)
			st->size = is_reg(inode) ? inode->i_size : 0;
		st->vol_id = vol;
		st->gen = gen;
	}
	v->vol = st->vol_id;
	if (!volume_slots(v))
		return false;
	v->st = st;
	if (first_sight && is_reg(inode))
		note_dirty(v, inode, st->size, 1);
	return true;
}

/* Move the inode's accounted size to `new_size`, crediting the difference to its volume. */
static __always_inline void account_size(struct vol_ctx *v, struct inode *inode, __s64 new_size)
{
	if (v->st->size == new_size)
		return; /* overwrites and reads-back: no locked instruction on the common path */
	__s64 old = __sync_lock_test_and_set(&v->st->size, new_size);
	if (old == new_size)
		return;
	note_dirty(v, inode, old, 1);
	__sync_fetch_and_add(&v->vs->delta_bytes[v->cfg->epoch & 1], new_size - old);
}

static __always_inline void account_files(struct vol_ctx *v, __s64 n)
{
	__sync_fetch_and_add(&v->vs->delta_files[v->cfg->epoch & 1], n);
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
	struct bq_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->vol_id = v->vol;
	e->op = op;
	e->ret = ret;
	e->mode = v->cfg->mode;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
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
	__s64 limit = (__s64)cfg->limit_bytes;
	__s64 used = cfg->base_bytes + vs->delta_bytes[0] + vs->delta_bytes[1];
	bool over = used >= limit || (extra_bytes > 0 && used + extra_bytes > limit);

	if (!over && cfg->limit_files && extra_files > 0) {
		__s64 files = cfg->base_files + vs->delta_files[0] + vs->delta_files[1];
		over = files + extra_files > (__s64)cfg->limit_files;
	}
	__sync_fetch_and_add(&vs->checks, 1);
	if (!over)
		return 0;
	if (op < BQ_NR_OPS)
		__sync_fetch_and_add(&vs->denied[op], 1);
	int ret = cfg->mode == BQ_MODE_ENFORCE ? -EDQUOT : 0;
	emit_denial(v, op, ret);
	return ret;
}

/* Writes through an open file: catch up the size the previous write left, then decide. */
static __always_inline int check_file_growth(struct file *file, __u32 op)
{
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};

	if (!inode || !is_reg(inode) || !volume_of(inode, file->f_path.dentry, &v, true))
		return 0;
	account_size(&v, inode, inode->i_size);
	return verdict(&v, op, 0, 0);
}

SEC("lsm/file_permission")
int BPF_PROG(bq_file_permission, struct file *file, int mask)
{
	if (!(mask & MAY_WRITE))
		return 0;
	return check_file_growth(file, BQ_OP_WRITE);
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

/* On close, account the last write so usage doesn't lag behind idle files. */
SEC("lsm/file_free_security")
int BPF_PROG(bq_file_free, struct file *file)
{
	struct inode *inode = file->f_inode;
	struct vol_ctx v = {};

	if (!(file->f_mode & FMODE_WRITE) || !inode || !is_reg(inode))
		return 0;
	/* Untracked: never written through this host since it was seen, so nothing to catch up. */
	if (!bpf_inode_storage_get(&inode_st, inode, 0, 0))
		return 0;
	if (volume_of(inode, file->f_path.dentry, &v, true))
		account_size(&v, inode, inode->i_size);
	return 0;
}

static __always_inline int check_setattr(struct dentry *dentry, struct iattr *attr)
{
	struct inode *inode = dentry->d_inode;
	struct vol_ctx v = {};

	if (!(attr->ia_valid & ATTR_SIZE) || !inode || !is_reg(inode) || !volume_of(inode, dentry, &v, true))
		return 0;
	account_size(&v, inode, inode->i_size);
	__s64 new_size = attr->ia_size;
	__s64 growth = new_size - inode->i_size;
	if (growth > 0) {
		int ret = verdict(&v, BQ_OP_TRUNCATE, growth, 0);
		if (ret)
			return ret;
	}
	/* Credited now; if the change fails, the next catch-up from i_size corrects it. */
	account_size(&v, inode, new_size);
	return 0;
}

/* inode_setattr gained a leading `struct mnt_idmap *` in 6.3: pick the layout at load time. */
SEC("lsm/inode_setattr")
int bq_inode_setattr(unsigned long long *ctx)
{
	if (bpf_core_type_exists(struct mnt_idmap))
		return check_setattr((struct dentry *)ctx[1], (struct iattr *)ctx[2]);
	return check_setattr((struct dentry *)ctx[0], (struct iattr *)ctx[1]);
}

/* A new name in directory `dir`: refused when the volume is full. */
static __always_inline int check_new_entry(struct inode *dir, struct dentry *dentry, __u32 op)
{
	struct vol_ctx v = {};

	if (!volume_of(dir, dentry->d_parent, &v, true))
		return 0;
	int ret = verdict(&v, op, 0, 1);
	if (!ret) {
		account_files(&v, 1);
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

/*
 * The inode of a create made during a scan: it didn't exist at the flip (its
 * file count is in the delta), so the scan must not count it. With O_CREAT on
 * a file that existed but wasn't cached, create's +1 and this record's 0 cancel.
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
	struct vol_ctx v = { .vol = vol, .dev = inode->i_sb->s_dev };
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

/* The inode behind `dentry` loses a name: free it when that was its last one. */
static __always_inline void account_removal(struct dentry *dentry)
{
	struct inode *inode = dentry->d_inode;
	struct vol_ctx v = {};

	if (!volume_of(inode, dentry, &v, false))
		return;
	if (is_reg(inode) && inode->i_nlink > 1)
		return;
	if (is_reg(inode) && v.st) {
		account_size(&v, inode, 0);
	} else {
		/* Untracked bytes are in the scan's base as i_size; other inodes count no bytes. */
		__s64 size = is_reg(inode) ? inode->i_size : 0;
		note_dirty(&v, inode, size, 1);
		if (size)
			__sync_fetch_and_add(&v.vs->delta_bytes[v.cfg->epoch & 1], -size);
	}
	account_files(&v, -1);
}

SEC("lsm/inode_unlink")
int BPF_PROG(bq_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	account_removal(dentry);
	return 0;
}

SEC("lsm/inode_rmdir")
int BPF_PROG(bq_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	account_removal(dentry);
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
	if (v->vol)
		__sync_fetch_and_add(&v->vs->stale, 1);
}

/*
 * A hard link adds no bytes inside one volume but is still refused when
 * the volume is full. Across volumes it would count one inode twice, so
 * (as XFS project quotas do) it is refused with EXDEV.
 */
SEC("lsm/inode_link")
int BPF_PROG(bq_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
	struct inode *inode = old_dentry->d_inode;
	struct vol_ctx dst = {}, src = {};

	volume_of_dir(dir, new_dentry->d_parent, &dst);
	if (!dst.vol || !inode)
		return 0;
	volume_of_dir(inode, old_dentry, &src);
	bool crossing = src.vol != dst.vol;
	int ret = verdict(&dst, BQ_OP_LINK, crossing && is_reg(inode) ? inode->i_size : 0, 0);
	if (ret)
		return ret;
	if (crossing && dst.cfg->mode == BQ_MODE_ENFORCE)
		return -EXDEV;
	return 0;
}

/* A rename may replace an existing target: free it as an unlink would. */
static __always_inline void account_replaced(struct dentry *target)
{
	if (target->d_inode)
		account_removal(target);
}

/*
 * Renames within one volume (or outside volumes) change no usage. A file
 * moved into a volume is refused when it doesn't fit and otherwise moves
 * its bytes along; a directory moved into an enforced volume gets EXDEV
 * (as XFS project quotas do: mv then copies, so every byte is checked).
 */
SEC("lsm/inode_rename")
int BPF_PROG(bq_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry)
{
	struct inode *inode = old_dentry->d_inode;
	struct vol_ctx src = {}, dst = {}, item = {};

	if (!inode)
		return 0;
	volume_of_dir(old_dir, old_dentry->d_parent, &src);
	volume_of_dir(new_dir, new_dentry->d_parent, &dst);
	if (src.vol == dst.vol) {
		account_replaced(new_dentry);
		return 0;
	}
	/* Moving a volume's root moves the whole volume: nothing to account. */
	if (volume_rooted_at(inode->i_sb->s_dev, inode->i_ino))
		return 0;
	bool dir = is_dir(inode);
	if (dst.vol) {
		int ret = verdict(&dst, BQ_OP_RENAME, is_reg(inode) ? inode->i_size : 0, 1);
		if (ret)
			return ret;
		if (dir && dst.cfg->mode == BQ_MODE_ENFORCE)
			return -EXDEV;
	}
	account_replaced(new_dentry);
	if (dir) {
		/* Cached volume ids below the directory are now wrong: re-resolve them all. */
		__u32 zero = 0;
		struct bq_config *c = bpf_map_lookup_elem(&config, &zero);
		if (c)
			__sync_fetch_and_add(&c->gen, 1);
		mark_stale(&src);
		mark_stale(&dst);
		return 0;
	}
	if (volume_of(inode, old_dentry, &item, true)) {
		__s64 size = is_reg(inode) ? inode->i_size : 0;
		account_size(&item, inode, 0);
		account_files(&item, -1);
		if (dst.vol) {
			/* Re-home the inode's cache entry and credit its bytes to the new volume. */
			item.st->vol_id = dst.vol;
			dst.st = item.st;
			account_size(&dst, inode, size);
			account_files(&dst, 1);
		}
	} else if (dst.vol) {
		struct bq_inode *st = bpf_inode_storage_get(&inode_st, inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (st) {
			st->vol_id = dst.vol;
			st->gen = current_gen();
			st->size = 0;
			dst.st = st;
			account_size(&dst, inode, is_reg(inode) ? inode->i_size : 0);
			account_files(&dst, 1);
		}
	}
	return 0;
}
