/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Hand-written subset of the kernel types bpfquota reads. Every struct is
 * preserve_access_index, so field offsets are relocated against the running
 * kernel's BTF at load time (CO-RE): only field names and types must match.
 */
#ifndef BPFQUOTA_VMLINUX_H
#define BPFQUOTA_VMLINUX_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __le16;
typedef __u16 __be16;
typedef __u32 __le32;
typedef __u32 __be32;
typedef __u64 __le64;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef _Bool bool;
typedef __u16 umode_t;
typedef __u32 dev_t;
typedef __s64 loff_t;
typedef unsigned long size_t;
typedef unsigned int fmode_t;
enum { false = 0, true = 1 };

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_INODE_STORAGE = 28,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

/* uapi: a lock inside a map value (bpf_spin_lock/bpf_spin_unlock) */
struct bpf_spin_lock {
	__u32 val;
};

typedef struct {
	int counter;
} atomic_t;

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	dev_t s_dev;
	unsigned long s_magic;
	void *s_fs_info; /* NFS: struct nfs_server */
};

/* From the nfs module's BTF: libbpf relocates against it when the module is loaded (bpf_core_type_exists guards). */
struct nfs_fsid {
	__u64 major;
	__u64 minor;
};

struct nfs_server {
	struct nfs_fsid fsid;
};

struct inode {
	umode_t i_mode;
	unsigned long i_ino;
	unsigned int i_nlink;
	loff_t i_size;
	struct super_block *i_sb;
	atomic_t i_writecount; /* open files that may write (FMODE_WRITER) */
};

struct qstr {
	__u32 hash;
	__u32 len;
};

struct dentry {
	unsigned int d_flags;
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
};

struct path {
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	fmode_t f_mode;
	unsigned int f_flags;
};

struct rlimit {
	unsigned long rlim_cur;
	unsigned long rlim_max;
};

struct signal_struct {
	int nr_threads;
	struct rlimit rlim[16];
};

struct mm_struct {
	unsigned long total_vm; /* pages */
	int map_count;
};

struct task_struct {
	unsigned int flags;
	struct mm_struct *mm;
	struct signal_struct *signal;
};

/* A syscall's number and sixth argument where the task's pt_regs keep them (write_kind). */
#if defined(__TARGET_ARCH_arm64)
/* arm64: x0..x30 in regs[] (inside an anonymous union in the kernel's type: CO-RE finds it), the
 * number in syscallno */
struct pt_regs {
	unsigned long long regs[31];
	int syscallno;
};
#elif defined(__TARGET_ARCH_x86)
/* x86-64: the sixth argument in r9, the number in orig_ax */
struct pt_regs {
	unsigned long r9;
	unsigned long orig_ax;
};
#else
#error "bpfquota builds for __TARGET_ARCH_x86 or __TARGET_ARCH_arm64 (bpfbuild's arch)"
#endif

struct filename;
struct open_flags;

struct renamedata {
	struct dentry *new_dentry;
	unsigned int flags;
};

struct iattr {
	unsigned int ia_valid;
	loff_t ia_size;
};

struct vm_area_struct {
	unsigned long vm_flags;
	struct file *vm_file;
};

/* Exists from 6.3, when inode_setattr gained a leading idmap argument. */
struct mnt_idmap {
	int owner;
};

#pragma clang attribute pop

#endif
