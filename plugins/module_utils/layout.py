# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel/user ABI of bpf/bpfquota.h, byte for byte (checked against the object's BTF in tests)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import struct

ABI = 4
MAX_VOLUMES = 65536
PROBE_VOLUME = MAX_VOLUMES + 1
VOLUME_SLOTS = MAX_VOLUMES + 2
SYNC_STAMP_SLOT = 0  # vol_meta's spare entry (ids start at 1): see QuotaMaps.sync_stamp
MAX_ROUTES = 4 * MAX_VOLUMES
MAX_DEVS = 4096
MAX_NFS_GROUPS = 4096
NFS_FS_BASE = 1 << 32  # BQ_NFS_FS_BASE: an NFS key's fs is this + the group of the server's fsid
ROOT_IN = 0x80000000   # BQ_ROOT_IN: a vol_keys value naming a placed NFS mount root (| the volume it lies in)
CFG_NFS_WATCH = 1      # BQ_CFG_NFS_WATCH: some volume is on NFS, every NFS fsid and mount root must be placed
OP_PLACE = 100         # BQ_OP_PLACE: an event asking the agent to place an NFS fsid or mount root
MAX_DIRTY = 65536
MAX_LIMIT = 2 ** 63 - 1  # the largest byte or file limit: usage is kept in signed 64-bit counters
HUGE = 1 << 62  # BQ_HUGE: the kernel clamps sizes and sums here; bases are clamped alike, so packing never fails
PATH_MAX = 4096

PIN_ROOT = "/sys/fs/bpf/bpfquota"
PIN_DIR = "%s/v%d" % (PIN_ROOT, ABI)
LINK_DIR = PIN_DIR + "/links"
METRICS_FILENAME = "bpfquota.prom"  # node_exporter's textfile collector reads *.prom ...
METRICS_DIR = "/var/lib/prometheus/node-exporter"  # ... from this directory in Debian's prometheus-node-exporter

MODES = {"enforce": 1, "audit": 2}  # a volume's mode: its name (the one users write) -> vol_cfg.mode
MODE_NAMES = dict((v, k) for k, v in MODES.items())
MODE_UNUSED = 0

# vol_cfg.flags (BQ_VOL_*)
USAGE_UNKNOWN = 1  # no scan and no saved usage yet: growth is refused ...
ALLOW_UNKNOWN = 2  # ... unless the volume's unknown_usage is "allow": it counts from zero
RESTORED = 4       # the base is saved usage restored by apply; the next successful scan clears it
NOT_MOUNTED = 8    # a source volume no NFS mount of this host reaches (user space only: report shows it)
SOFT_EXPIRED = 16        # the grace over soft_bytes ran out: growth that leaves usage above it is refused ...
FILES_SOFT_EXPIRED = 32  # ... and over soft_files (both set and cleared by the agent, never by a sync)
UNKNOWN_USAGE = {"refuse": 0, "allow": ALLOW_UNKNOWN}  # a volume's unknown_usage setting -> its flag

OPS = ("write", "mmap", "truncate", "create", "mkdir", "mknod", "symlink", "link", "rename")

KEY = struct.Struct("=QQ")
FSID = struct.Struct("=QQ")
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
VOL_CFG = struct.Struct("=QQqqIIIIQQQ")
VOL_STATS = struct.Struct("=2q2qQQQQ%dQq" % len(OPS))
DIRTY = struct.Struct("=IIqq")
CONFIG = struct.Struct("=QII32s")
VOL_META = struct.Struct("=%ds" % PATH_MAX)
EVENT = struct.Struct("=QIIIIiI16s")
CREATING = struct.Struct("=IIII")  # kernel-only; mirrored so the layout test covers it

VolCfg = collections.namedtuple(
    "VolCfg", "limit_bytes limit_files base_bytes base_files mode epoch scanning flags soft_bytes soft_files grace_seconds")
VolCfg.__new__.__defaults__ = (0, 0, 0, 0)  # flags, soft_bytes, soft_files, grace_seconds
VolStats = collections.namedtuple(
    "VolStats", "delta_bytes delta_files dirty_overflow stale last_event_ns checks denied reserved_bytes")
Dirty = collections.namedtuple("Dirty", "vol_id epoch size_before files_before")
Config = collections.namedtuple("Config", "gen event_gap_ms obj_sha256 flags")
Config.__new__.__defaults__ = (0,)  # flags
Event = collections.namedtuple("Event", "ts_ns pid uid vol_id op ret mode comm")


def pack_key(fs, ino):
    return KEY.pack(fs, ino)


def pack_vol_cfg(cfg):
    return VOL_CFG.pack(cfg.limit_bytes, cfg.limit_files, cfg.base_bytes, cfg.base_files,
                        cfg.mode, cfg.epoch, cfg.scanning, cfg.flags, cfg.soft_bytes, cfg.soft_files, cfg.grace_seconds)


def unpack_vol_cfg(data):
    return VolCfg(*VOL_CFG.unpack(data))


def unpack_vol_stats(data):
    fields = VOL_STATS.unpack(data)
    return VolStats(
        delta_bytes=fields[0:2], delta_files=fields[2:4], dirty_overflow=fields[4], stale=fields[5],
        last_event_ns=fields[6], checks=fields[7], denied=dict(zip(OPS, fields[8:8 + len(OPS)])),
        reserved_bytes=fields[8 + len(OPS)])


def empty_vol_stats():
    return b"\0" * VOL_STATS.size


def pack_config(cfg):
    return CONFIG.pack(cfg.gen, cfg.event_gap_ms, cfg.flags, cfg.obj_sha256)


def unpack_config(data):
    gen, event_gap_ms, flags, obj_sha256 = CONFIG.unpack(data)
    return Config(gen, event_gap_ms, obj_sha256, flags)


def pack_vol_meta(path):
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) >= PATH_MAX:
        raise ValueError("path is longer than %d bytes: %s" % (PATH_MAX - 1, path))
    return VOL_META.pack(raw)


def unpack_vol_meta(data):
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("utf-8", "surrogateescape")


def unpack_event(data):
    ev = Event(*EVENT.unpack(data[:EVENT.size]))
    return ev._replace(comm=ev.comm.split(b"\0", 1)[0].decode("utf-8", "replace"))


def op_name(op):
    return OPS[op] if 0 <= op < len(OPS) else "op%d" % op
