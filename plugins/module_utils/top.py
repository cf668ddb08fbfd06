# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`bpfquota top`: who is writing into which volume, live.

Built with BCC, like bcc's own filetop: the C text below is compiled on the host when `top`
starts, against the running kernel's headers. It only traces (kprobes and kretprobes: never an
LSM program, so it can't change a verdict) and only reads the enforcer's pinned maps, to tell
which volume a file is in the way the enforcer does (bpf/bpfquota.bpf.c fs_of and
walk_to_volume): the key of each directory from the file up, (s_dev, ino) on a local
filesystem, (BQ_NFS_FS_BASE + nfs_groups[fsid], fileid) on NFS, looked up in vol_keys.

Approximations, all on the side of "unknown", never of a wrong volume: the walk stops after
WALK_DEPTH levels (the enforcer goes on for 1040), and it has no per-inode cache, so it walks on
every traced call. Bytes are what write(2), pwrite64(2), writev(2) and pwritev(2) returned
(vfs_write, vfs_writev); io_uring, AIO, copy_file_range, sendfile, splice and mmap writes are not
counted. Refusals are EDQUOT returned by the LSM hooks the enforcer uses, per process.

Everything but Tracer is pure and tested without BCC; bcc itself is imported only by Tracer, so
the CLI (a stdlib zipapp) pays for nothing until `top` runs.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import contextlib
import importlib
import json
import os
import re
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, libbpf, quota, report
from ansible_collections.bpfquota.nfs.plugins.module_utils.enforcement import MISSING_TOOL, NOT_LOADED, BpfquotaError
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

BCC_PACKAGE = "python3-bpfcc"
HEADERS_DIR = "/lib/modules/%s/build"
WALK_DEPTH = 64
MAX_WRITERS = 10240  # (volume, process) pairs kept; LRU, so exited writers make room
UNKNOWN_VOLUME = 0xFFFFFFFF  # BQ_VOL_UNKNOWN: the walk could not tell (unplaced NFS root, too deep)
PINNED_MAPS = ("vol_keys", "vol_devs", "nfs_groups", "config")
CGROUP_ROOT = "/sys/fs/cgroup"
CFLAGS = ("-Wno-tautological-constant-out-of-range-compare",)  # the NFS headers' own warning (sunrpc/xdr.h)

# Counters of one process in one volume since the tracer started (the kernel's writers map).
Counter = collections.namedtuple("Counter", "bytes writes refusals uid cgroup_id comm")

BPF_TEXT = r"""
#include <uapi/linux/ptrace.h>
#include <uapi/linux/magic.h>
#include <linux/version.h>
#include <linux/fs.h>
#include <linux/dcache.h>
#include <linux/mm_types.h>
#include <linux/nfs_fs.h>

#define EDQUOT 122
#define PROT_WRITE 0x2
#define NFS_FS_BASE @NFS_FS_BASE@ULL
#define ROOT_IN @ROOT_IN@u
#define CFG_NFS_WATCH @CFG_NFS_WATCH@
#define VOL_UNKNOWN @UNKNOWN_VOLUME@u
#define FS_NONE 0ULL
#define FS_UNPLACED (~0ULL)

/* The enforcer's keys and config (bpf/bpfquota.h), read only. */
struct bq_key { u64 fs; u64 ino; };
struct bq_fsid { u64 major; u64 minor; };
struct bq_config { u64 gen; u32 event_gap_ms; u32 flags; u8 obj_sha256[32]; };

BPF_TABLE_PINNED("hash", struct bq_key, u32, vol_keys, @MAX_ROUTES@, "@PIN_DIR@/vol_keys");
BPF_TABLE_PINNED("hash", u64, u32, vol_devs, @MAX_DEVS@, "@PIN_DIR@/vol_devs");
BPF_TABLE_PINNED("hash", struct bq_fsid, u32, nfs_groups, @MAX_NFS_GROUPS@, "@PIN_DIR@/nfs_groups");
BPF_TABLE_PINNED("array", u32, struct bq_config, config, 1, "@PIN_DIR@/config");

struct writer_key { u32 vol; u32 pid; };
struct writer {
    u64 bytes;
    u64 writes;
    u64 refusals;
    u64 cgroup_id;
    u32 uid;
    u32 pad;
    char comm[16];
};
BPF_TABLE("lru_hash", struct writer_key, struct writer, writers, @MAX_WRITERS@);
/* thread -> volume of its write (vfs_write) or its LSM check in flight: two maps, as the check
 * runs inside the write */
BPF_HASH(writing, u64, u32, 10240);
BPF_HASH(checking, u64, u32, 10240);

/* fs_of in bpfquota.bpf.c: the identity the enforcer keys this superblock's volumes by. */
static __always_inline u64 fs_of(struct super_block *sb)
{
    unsigned long magic = 0;
    bpf_probe_read_kernel(&magic, sizeof(magic), &sb->s_magic);
    if (magic != NFS_SUPER_MAGIC) {
        dev_t dev = 0;
        bpf_probe_read_kernel(&dev, sizeof(dev), &sb->s_dev);
        u64 key = dev;
        return vol_devs.lookup(&key) ? key : FS_NONE;
    }
    u32 zero = 0;
    struct bq_config *cfg = config.lookup(&zero);
    if (!cfg || !(cfg->flags & CFG_NFS_WATCH))
        return FS_NONE;
    struct nfs_server *server = NULL;
    bpf_probe_read_kernel(&server, sizeof(server), &sb->s_fs_info);
    struct bq_fsid fsid = {};
    bpf_probe_read_kernel(&fsid.major, sizeof(fsid.major), &server->fsid.major);
    bpf_probe_read_kernel(&fsid.minor, sizeof(fsid.minor), &server->fsid.minor);
    u32 *group = nfs_groups.lookup(&fsid);
    return group ? NFS_FS_BASE + *group : FS_UNPLACED;
}

/* walk_to_volume in bpfquota.bpf.c, without its cache: the volume directory `d` is in. */
static __always_inline u32 volume_of(struct dentry *d)
{
    struct inode *inode = NULL;
    struct super_block *sb = NULL;

    if (!d)
        return 0;
    bpf_probe_read_kernel(&inode, sizeof(inode), &d->d_inode);
    if (!inode)
        return 0;
    bpf_probe_read_kernel(&sb, sizeof(sb), &inode->i_sb);
    u64 fs = fs_of(sb);
    if (fs == FS_NONE)
        return 0;
    if (fs == FS_UNPLACED)
        return VOL_UNKNOWN;
    for (int depth = 0; depth < @WALK_DEPTH@; depth++) {
        struct dentry *parent = NULL;
        struct bq_key key = { .fs = fs };
        inode = NULL;
        bpf_probe_read_kernel(&inode, sizeof(inode), &d->d_inode);
        if (!inode)
            return VOL_UNKNOWN;
        bpf_probe_read_kernel(&key.ino, sizeof(key.ino), &inode->i_ino);
        u32 *value = vol_keys.lookup(&key);
        if (value)
            return *value & ~ROOT_IN;
        bpf_probe_read_kernel(&parent, sizeof(parent), &d->d_parent);
        if (!parent || parent == d)
            return fs >= NFS_FS_BASE ? VOL_UNKNOWN : 0; /* an NFS mount root not placed */
        d = parent;
    }
    return VOL_UNKNOWN;
}

static __always_inline u32 file_volume(struct file *file)
{
    struct dentry *d = NULL;

    if (!file)
        return 0;
    bpf_probe_read_kernel(&d, sizeof(d), &file->f_path.dentry);
    return volume_of(d);
}

static __always_inline u32 parent_volume(struct dentry *dentry)
{
    struct dentry *d = NULL;

    bpf_probe_read_kernel(&d, sizeof(d), &dentry->d_parent);
    return volume_of(d);
}

static __always_inline void count(u32 vol, u64 bytes, u64 refusals)
{
    struct writer_key key = { .vol = vol, .pid = bpf_get_current_pid_tgid() >> 32 };
    struct writer zero = {};
    struct writer *w = writers.lookup_or_try_init(&key, &zero);

    if (!w)
        return;
    if (bytes) {
        __sync_fetch_and_add(&w->bytes, bytes);
        __sync_fetch_and_add(&w->writes, 1);
    }
    if (refusals)
        __sync_fetch_and_add(&w->refusals, refusals);
    w->uid = (u32)bpf_get_current_uid_gid();
    w->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&w->comm, sizeof(w->comm));
}

int write_entry(struct pt_regs *ctx, struct file *file)
{
    u32 vol = file_volume(file);
    u64 tid = bpf_get_current_pid_tgid();

    if (vol)
        writing.update(&tid, &vol);
    return 0;
}

int write_return(struct pt_regs *ctx)
{
    u64 tid = bpf_get_current_pid_tgid();
    u32 *found = writing.lookup(&tid);
    long ret = PT_REGS_RC(ctx);

    if (!found)
        return 0;
    u32 vol = *found;
    writing.delete(&tid);
    if (ret > 0)
        count(vol, ret, 0);
    return 0;
}

static __always_inline int check_entry(u32 vol)
{
    u64 tid = bpf_get_current_pid_tgid();

    if (vol)
        checking.update(&tid, &vol);
    return 0;
}

int check_return(struct pt_regs *ctx)
{
    u64 tid = bpf_get_current_pid_tgid();
    u32 *found = checking.lookup(&tid);
    int ret = PT_REGS_RC(ctx);

    if (!found)
        return 0;
    u32 vol = *found;
    checking.delete(&tid);
    if (ret == -EDQUOT)
        count(vol, 0, 1);
    return 0;
}

/* The hooks the enforcer refuses growth in, each with the volume it decides for. */
int file_permission_entry(struct pt_regs *ctx, struct file *file, int mask)
{
    return check_entry(mask & MAY_WRITE ? file_volume(file) : 0);
}

int mmap_file_entry(struct pt_regs *ctx, struct file *file, unsigned long prot)
{
    return check_entry(prot & PROT_WRITE ? file_volume(file) : 0);
}

int file_mprotect_entry(struct pt_regs *ctx, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
    struct file *file = NULL;

    if (!(prot & PROT_WRITE))
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), &vma->vm_file);
    return check_entry(file_volume(file));
}

/* create, mkdir, mknod, symlink: (dir, dentry, ...); the new name's parent is the directory */
int new_entry_entry(struct pt_regs *ctx, struct inode *dir, struct dentry *dentry)
{
    return check_entry(parent_volume(dentry));
}

int link_entry(struct pt_regs *ctx, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
    return check_entry(parent_volume(new_dentry));
}

int rename_entry(struct pt_regs *ctx, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
                 struct dentry *new_dentry)
{
    return check_entry(parent_volume(new_dentry));
}

/* security_inode_setattr: (dentry, attr) before 6.0, then a user namespace (6.3: an idmap) first */
int setattr_entry(struct pt_regs *ctx, void *first, struct dentry *second)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
    return check_entry(volume_of(second));
#else
    return check_entry(volume_of((struct dentry *)first));
#endif
}
"""

# (kernel function, entry function, return function): what Tracer attaches. Writes first, then
# the security_* functions whose BPF LSM hooks the enforcer refuses growth in.
WRITE_PROBES = (("vfs_write", "write_entry", "write_return"), ("vfs_writev", "write_entry", "write_return"))
CHECK_PROBES = (
    ("security_file_permission", "file_permission_entry"),
    ("security_mmap_file", "mmap_file_entry"),
    ("security_file_mprotect", "file_mprotect_entry"),
    ("security_inode_create", "new_entry_entry"),
    ("security_inode_mkdir", "new_entry_entry"),
    ("security_inode_mknod", "new_entry_entry"),
    ("security_inode_symlink", "new_entry_entry"),
    ("security_inode_link", "link_entry"),
    ("security_inode_rename", "rename_entry"),
    ("security_inode_setattr", "setattr_entry"),
)


def bpf_text(pin_dir=layout.PIN_DIR, walk_depth=WALK_DEPTH):
    """The C text BCC compiles, with the enforcer's constants (layout.py) and pin paths filled in."""
    values = {
        "PIN_DIR": pin_dir, "NFS_FS_BASE": "0x%x" % layout.NFS_FS_BASE, "ROOT_IN": "0x%x" % layout.ROOT_IN,
        "CFG_NFS_WATCH": layout.CFG_NFS_WATCH, "UNKNOWN_VOLUME": "0x%x" % UNKNOWN_VOLUME,
        "MAX_ROUTES": layout.MAX_ROUTES, "MAX_DEVS": layout.MAX_DEVS, "MAX_NFS_GROUPS": layout.MAX_NFS_GROUPS,
        "MAX_WRITERS": MAX_WRITERS, "WALK_DEPTH": walk_depth,
    }
    text = BPF_TEXT
    for name, value in values.items():
        text = text.replace("@%s@" % name, str(value))
    return text


def require_tools(release, import_module=importlib.import_module, isdir=os.path.isdir):
    """The bcc module; BpfquotaError MISSING_TOOL naming each package to install when BCC or the
    running kernel's headers (which BCC compiles against) are missing."""
    missing = []
    bcc = None
    try:
        bcc = import_module("bcc")
    except ImportError:
        missing.append(BCC_PACKAGE)
    if not isdir(HEADERS_DIR % release):
        missing.append("linux-headers-%s" % release)
    if missing:
        raise BpfquotaError(
            "bpfquota top compiles its tracing program with BCC on this host, against the running kernel's headers: "
            "%s missing. Install %s (apt-get install %s), or run the role with bpfquota_install_tools: true" % (
                " and ".join(missing), " and ".join(missing), " ".join(missing)), MISSING_TOOL)
    return bcc


def missing_pins(pin_dir, exists=os.path.exists):
    """The enforcer's maps top reads that are not pinned (all of them when it isn't loaded)."""
    return [name for name in PINNED_MAPS if not exists(os.path.join(pin_dir, name))]


# --- the pure part: counters to rows to a sample to text or JSON --------------------------------

def activity(before, after, seconds):
    """What each (volume, process) did between two readings of the counters ({(vol_id, pid): Counter}):
    rows {vol_id, pid, comm, uid, cgroup_id, bytes, writes, refusals, bytes_per_second}, idle ones left out."""
    rows = []
    for (vol_id, pid), now in sorted(after.items()):
        then = before.get((vol_id, pid))
        if then is None or now.bytes < then.bytes or now.refusals < then.refusals:
            then = Counter(0, 0, 0, now.uid, now.cgroup_id, now.comm)  # new, or evicted from the LRU and counted anew
        written, refused = now.bytes - then.bytes, now.refusals - then.refusals
        if not written and not refused:
            continue
        rows.append({"vol_id": vol_id, "pid": pid, "comm": now.comm, "uid": now.uid, "cgroup_id": now.cgroup_id,
                     "bytes": written, "writes": max(now.writes - then.writes, 0), "refusals": refused,
                     "bytes_per_second": int(round(written / seconds)) if seconds > 0 else 0})
    return rows


POD_CGROUP = re.compile(r"pod([0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12})(?:\.slice)?$")


def pod_uid(cgroup_path):
    """The Kubernetes pod UID a cgroup path names (kubelet's systemd and cgroupfs layouts), or None."""
    for part in (cgroup_path or "").split("/"):
        match = POD_CGROUP.search(part)
        if match:
            return match.group(1).replace("_", "-")  # the systemd driver writes the UID's dashes as underscores
    return None


def sample(rows, volumes, cgroups, seconds):
    """One refresh: the rows grouped by volume, busiest first. volumes: {vol_id: report row} (report.py);
    cgroups: {cgroup id: path}."""
    by_volume = collections.defaultdict(list)
    for row in rows:
        if row["vol_id"] > layout.MAX_VOLUMES and row["vol_id"] != UNKNOWN_VOLUME:
            continue  # the loader's probe volume
        cgroup = cgroups.get(row["cgroup_id"])
        writer = dict((key, row[key]) for key in ("pid", "comm", "uid", "cgroup_id", "bytes", "writes", "refusals",
                                                  "bytes_per_second"))
        writer.update(cgroup=cgroup, pod_uid=pod_uid(cgroup))
        by_volume[row["vol_id"]].append(writer)
    out = []
    for vol_id, writers in by_volume.items():
        info = volumes.get(vol_id, {})
        writers.sort(key=lambda w: (-w["bytes_per_second"], -w["refusals"], w["pid"]))
        out.append({
            "volume": info.get("path"), "vol_id": None if vol_id == UNKNOWN_VOLUME else vol_id,
            "labels": info.get("labels", {}), "used_bytes": info.get("used_bytes"), "limit_bytes": info.get("limit_bytes"),
            "bytes_per_second": sum(w["bytes_per_second"] for w in writers),
            "bytes": sum(w["bytes"] for w in writers), "refusals": sum(w["refusals"] for w in writers),
            "writers": writers})
    out.sort(key=lambda v: (-v["bytes_per_second"], -v["refusals"], v["volume"] or ""))
    return {"interval_seconds": seconds, "volumes": out}


def volume_name(entry):
    if entry["volume"]:
        return entry["volume"]
    if entry["vol_id"] is None:
        return "(volume unknown: NFS mount not placed yet, or deeper than %d levels)" % WALK_DEPTH
    return "(volume %d, removed)" % entry["vol_id"]


WRITER_HEADER = ("PID", "UID", "COMM", "WRITE/s", "WRITES", "REFUSED", "CGROUP")


def format_sample(result, clock=""):
    """The screen `top` redraws (no trailing newline): a line per volume, then its writers' table."""
    volumes = result["volumes"]
    lines = ["bpfquota top%s - every %gs: %d volume%s written, %d writer%s" % (
        " " + clock if clock else "", result["interval_seconds"], len(volumes), "" if len(volumes) == 1 else "s",
        sum(len(v["writers"]) for v in volumes), "" if sum(len(v["writers"]) for v in volumes) == 1 else "s")]
    if not volumes:
        lines += ["", "(nothing written into a volume)"]
    for entry in volumes:
        used = ""
        if entry["limit_bytes"]:
            used = "  used %s of %s" % (format_size(entry["used_bytes"] or 0), format_size(entry["limit_bytes"]))
        labels = ",".join("%s=%s" % kv for kv in sorted(entry["labels"].items()))
        heading = "%s  %s/s  refused %d%s" % (volume_name(entry), format_size(entry["bytes_per_second"]),
                                              entry["refusals"], used)
        lines += ["", heading + ("  " + labels if labels else "")]
        table = [WRITER_HEADER] + [(str(w["pid"]), str(w["uid"]), w["comm"], format_size(w["bytes_per_second"]) + "/s",
                                    str(w["writes"]), str(w["refusals"]), _cgroup_cell(w)) for w in entry["writers"]]
        widths = [max(len(row[column]) for row in table) for column in range(len(WRITER_HEADER))]
        for row in table:
            cells = [cell.ljust(width) if column in (2, 6) else cell.rjust(width)
                     for column, (cell, width) in enumerate(zip(row, widths))]
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _cgroup_cell(writer):
    if writer["pod_uid"]:
        return "pod " + writer["pod_uid"]
    return writer["cgroup"] or "cgroup %d" % writer["cgroup_id"]


def sample_json(result):
    return json.dumps(result, indent=2, sort_keys=True)


def cgroup_paths(ids, root=CGROUP_ROOT, walk=os.walk, stat=os.stat):
    """{cgroup id: path} for the ids found under the cgroup v2 root: a cgroup's id is its directory's inode."""
    wanted, found = set(ids), {}
    if not wanted:
        return found
    for parent, dummy, dummy in walk(root):
        try:
            ino = stat(parent).st_ino
        except OSError:
            continue  # removed while walking
        if ino in wanted:
            found[ino] = "/" if parent == root else "/" + os.path.relpath(parent, root)
            if len(found) == len(wanted):
                break
    return found


def volume_rows(maps):
    """{vol_id: report row} of the applied volumes: names, labels, usage (report.py)."""
    applied = quota.applied_volumes(maps)
    rows = dict((row["path"], row) for row in report.report_rows(maps))
    return dict((vol_id, rows[path]) for path, (vol_id, dummy) in applied.items() if path in rows)


# --- the BCC layer ------------------------------------------------------------------------------

class Tracer:
    """The compiled, attached tracing program (a context manager); compile_seconds is what BCC took."""

    def __init__(self, pin_dir=layout.PIN_DIR, release=None):
        bcc = require_tools(release or os.uname()[2])
        # BCC makes and pins a map of its own where a pin is missing: the enforcer's maps are opened
        # first, and the ones BCC opened must be those (the enforcer may be unloaded meanwhile).
        if missing_pins(pin_dir):
            raise BpfquotaError("bpfquota is not loaded (%s not pinned under %s): run 'bpfquota load' first" % (
                ", ".join(missing_pins(pin_dir)), pin_dir), NOT_LOADED)
        held = open_pins(pin_dir)
        started = time.monotonic()
        try:
            self.bpf = bcc.BPF(text=bpf_text(pin_dir), cflags=list(CFLAGS))
            self.compile_seconds = time.monotonic() - started
            expected = dict((name, libbpf.map_info(fd=fd)["id"]) for name, fd in held.items())
            opened = dict((name, libbpf.map_info(fd=self.bpf[name.encode()].map_fd)["id"]) for name in PINNED_MAPS)
        except BpfquotaError:
            raise
        except Exception as e:  # BCC raises plain Exception, with the compiler's output on stderr
            raise BpfquotaError("BCC could not compile or load the tracing program: %s" % e)
        finally:
            for fd in held.values():
                os.close(fd)
        if opened != expected:
            self.close()
            remove_own_pins(pin_dir, expected, opened)
            raise BpfquotaError("bpfquota was unloaded while top started: run 'bpfquota load', then top again",
                                NOT_LOADED)
        try:
            for event, entry, ret in WRITE_PROBES:
                if bcc.BPF.get_kprobe_functions(("^%s$" % event).encode()):  # vfs_writev may be inlined
                    self.bpf.attach_kprobe(event=event, fn_name=entry)
                    self.bpf.attach_kretprobe(event=event, fn_name=ret)
            for event, entry in CHECK_PROBES:
                self.bpf.attach_kprobe(event=event, fn_name=entry)
                self.bpf.attach_kretprobe(event=event, fn_name="check_return")
        except Exception as e:
            self.close()
            raise BpfquotaError("could not attach the tracing program: %s" % e)
        self.attach_seconds = time.monotonic() - started - self.compile_seconds

    def counters(self):
        """{(vol_id, pid): Counter} since the start."""
        counters = {}
        for key, value in self.bpf["writers"].items():
            counters[(key.vol, key.pid)] = Counter(value.bytes, value.writes, value.refusals, value.uid,
                                                   value.cgroup_id, value.comm.decode("utf-8", "replace"))
        return counters

    def close(self):
        self.bpf.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_pins(pin_dir):
    """{name: fd} of the enforcer's maps top reads; BpfquotaError NOT_LOADED when one is gone."""
    held = {}
    try:
        for name in PINNED_MAPS:
            held[name] = libbpf.obj_get(os.path.join(pin_dir, name))
    except libbpf.LibbpfError as e:
        for fd in held.values():
            os.close(fd)
        raise BpfquotaError("bpfquota is not loaded (%s): run 'bpfquota load' first" % e, NOT_LOADED)
    return held


def remove_own_pins(pin_dir, expected, opened):
    """Unpin the maps BCC made in place of the enforcer's (ids in `opened` that aren't `expected`),
    each only while its pin is still BCC's."""
    for name, map_id in opened.items():
        if map_id == expected.get(name):
            continue
        path = os.path.join(pin_dir, name)
        try:
            fd = libbpf.obj_get(path)
        except (OSError, libbpf.LibbpfError):
            continue
        try:
            if libbpf.map_info(fd=fd)["id"] == map_id:
                os.unlink(path)
        finally:
            os.close(fd)


class Sampler:
    """Counters to samples: remembers the last reading and the cgroup paths found so far."""

    def __init__(self, tracer, open_maps, cgroup_root=CGROUP_ROOT, clock=time.monotonic):
        self.tracer, self.open_maps, self.cgroup_root, self.clock = tracer, open_maps, cgroup_root, clock
        self.cgroups = {}
        self.last, self.last_time = tracer.counters(), clock()

    def next(self):
        """What happened since the last call (or the start)."""
        counters, now = self.tracer.counters(), self.clock()
        rows = activity(self.last, counters, now - self.last_time)
        seconds = round(now - self.last_time, 3)
        self.last, self.last_time = counters, now
        unknown = set(row["cgroup_id"] for row in rows) - set(self.cgroups)
        if unknown:
            self.cgroups.update(cgroup_paths(unknown, self.cgroup_root))
        with self.open_maps() as maps:
            volumes = volume_rows(maps)
        return sample(rows, volumes, self.cgroups, seconds)


def run_once(interval, open_maps, sleep=time.sleep):
    """One sample over `interval` seconds, with the time BCC took to compile (compile_seconds)."""
    with Tracer() as tracer:
        sampler = Sampler(tracer, open_maps)
        sleep(interval)
        result = sampler.next()
    result["compile_seconds"] = round(tracer.compile_seconds, 3)
    return result


CLEAR_SCREEN = "\033[H\033[2J"


def run_live(interval, open_maps, out, stdin):
    """Redraw every `interval` seconds until q is pressed (on a terminal) or Ctrl-C."""
    with Tracer() as tracer, quit_keys(stdin) as quit_within:
        sampler = Sampler(tracer, open_maps)
        while not quit_within(interval):
            out.write(CLEAR_SCREEN + format_sample(sampler.next(), time.strftime("%H:%M:%S")) + "\n")
            out.flush()


@contextlib.contextmanager
def quit_keys(stdin):
    """quit_within(seconds): waits that long, True as soon as q is pressed. The terminal is in
    cbreak mode meanwhile, so q needs no Enter; without a terminal it only sleeps."""
    if not stdin.isatty():
        yield time.sleep
        return
    import select
    import termios
    import tty
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def quit_within(seconds):
        deadline = time.monotonic() + seconds
        while True:
            ready = select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]
            if not ready:
                return False
            if os.read(fd, 1) in (b"q", b"Q"):
                return True
    try:
        yield quit_within
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
