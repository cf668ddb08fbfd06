# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Map back ends for the quota and usage tests: an in-memory fake of QuotaMaps, and real pinned
BPF maps created from the real bpf/bpfquota.bpf.c object (its programs are not loaded, so no LSM
support is needed), plus a recorder of the calls made on either, and a stand-in for the kernel's
accounting (what the BPF programs would write into vol_stats and scan_dirty).

Not a test module: test_quota.py and test_usage.py import it (pytest puts this directory on sys.path).
The fixtures built on it (bpfquota_object, real_maps, backend) are in tests/unit/conftest.py.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import itertools
import os
import shutil

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import BuildError, build, find_clang
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import parse_volume_meta

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
BPF_SRC = os.path.join(REPO_ROOT, "bpf")
BPFFS = "/sys/fs/bpf"

WRITES = ("set_config", "bump_gen", "set_vol_cfg", "reset_vol_stats", "set_path", "delete_path",
          "set_key", "delete_key", "set_dev", "set_nfs_group", "delete_nfs_group", "set_sync_stamp",
          "drop_sync_stamp")

# The writes of many entries at once, and the one-entry writes each amounts to, in order.
BULK_WRITES = {
    "set_vol_cfgs": lambda cfgs: [("set_vol_cfg", vol_id, cfg) for vol_id, cfg in cfgs.items()],
    "reset_vol_stats_of": lambda vol_ids: [("reset_vol_stats", vol_id) for vol_id in vol_ids],
    "set_paths": lambda paths: [("set_path", vol_id, path) for vol_id, path in paths.items()],
    "delete_paths": lambda vol_ids: [("delete_path", vol_id) for vol_id in vol_ids],
    "set_keys": lambda keys: [("set_key", key, vol_id) for key, vol_id in keys.items()],
    "delete_keys": lambda keys: [("delete_key", key) for key in keys],
    "set_devs": lambda counts: [("set_dev", dev, count) for dev, count in counts.items()],
    "set_nfs_groups": lambda groups: [("set_nfs_group", fsid, group) for fsid, group in groups.items()],
    "delete_nfs_groups": lambda fsids: [("delete_nfs_group", fsid) for fsid in fsids],
    "delete_dirty": lambda keys: [("drop_dirty", key) for key in keys],
}

_pin_numbers = itertools.count()


def zero_cfg():
    return layout.VolCfg(0, 0, 0, 0, layout.MODE_UNUSED, 0, 0)


def pack_vol_stats(stats):
    """The inverse of layout.unpack_vol_stats."""
    return layout.VOL_STATS.pack(*(list(stats.delta_bytes) + list(stats.delta_files) + [
        stats.dirty_overflow, stats.stale, stats.last_event_ns, stats.checks]
        + [stats.denied[op] for op in layout.OPS] + [stats.reserved_bytes]))


def pack_dirty(rec):
    return layout.DIRTY.pack(rec.vol_id, rec.epoch, rec.size_before, rec.files_before)


class FakeMaps:
    """QuotaMaps' interface over dicts, with the BPF maps' semantics: vol_cfg and vol_stats are
    arrays (an unset slot reads as zeros, a slot past VOLUME_SLOTS doesn't exist), the rest are
    hashes; values go through the same struct packing as the real maps, so out-of-range values fail
    the same way."""

    def __init__(self):
        self._config = layout.pack_config(layout.Config(0, 0, b"\0" * 32))
        self._vol_cfg = {}
        self._vol_stats = {}
        self._meta = {}
        self._keys = {}
        self._devs = {}
        self._groups = {}
        self._dirty = {}
        self._stamp = None

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _slot(vol_id):
        if not 0 <= vol_id < layout.VOLUME_SLOTS:
            raise IndexError("volume slot %d is outside the array" % vol_id)
        return vol_id

    def config(self):
        return layout.unpack_config(self._config)

    def set_config(self, cfg):
        self._config = layout.pack_config(cfg)

    def bump_gen(self):
        cfg = self.config()
        self.set_config(cfg._replace(gen=(cfg.gen + 1) & 0xFFFFFFFFFFFFFFFF or 1))

    def vol_cfg(self, vol_id):
        return layout.unpack_vol_cfg(self._vol_cfg.get(self._slot(vol_id), b"\0" * layout.VOL_CFG.size))

    def set_vol_cfg(self, vol_id, cfg):
        self._vol_cfg[self._slot(vol_id)] = layout.pack_vol_cfg(cfg)

    def vol_stats(self, vol_id):
        return layout.unpack_vol_stats(self._vol_stats.get(self._slot(vol_id), layout.empty_vol_stats()))

    def reset_vol_stats(self, vol_id):
        self._vol_stats[self._slot(vol_id)] = layout.empty_vol_stats()

    def paths(self):
        return dict((vol_id, layout.unpack_vol_meta(raw)) for vol_id, raw in self._meta.items())

    def labels(self):
        out = {}
        for vol_id, raw in self._meta.items():
            labels = parse_volume_meta(raw.rstrip(b"\0").decode("utf-8", "surrogateescape"))[1]
            if labels and vol_id != layout.SYNC_STAMP_SLOT:
                out[vol_id] = labels
        return out

    # the sync stamp: dropped by any write of routes or paths, as QuotaMaps does
    def sync_stamp(self):
        return self._stamp

    def set_sync_stamp(self, stamp):
        layout.pack_vol_meta(stamp)
        self._stamp = stamp

    def drop_sync_stamp(self):
        self._stamp = None

    def set_path(self, vol_id, path):
        self._stamp = None
        self._meta[vol_id] = layout.pack_vol_meta(path)

    def delete_path(self, vol_id):
        self._stamp = None
        self._meta.pop(vol_id, None)

    def keys(self):
        return dict(self._keys)

    def set_key(self, key, vol_id):
        layout.pack_key(*key)
        self._stamp = None
        self._keys[tuple(key)] = vol_id

    def delete_key(self, key):
        self._stamp = None
        self._keys.pop(tuple(key), None)

    def devs(self):
        return dict(self._devs)

    def set_dev(self, dev, count):
        self._stamp = None
        if count > 0:
            self._devs[dev] = count
        else:
            self._devs.pop(dev, None)

    def nfs_groups(self):
        return dict(self._groups)

    def set_nfs_group(self, fsid, group):
        layout.FSID.pack(*fsid)
        self._stamp = None
        self._groups[tuple(fsid)] = group

    def delete_nfs_group(self, fsid):
        self._stamp = None
        self._groups.pop(tuple(fsid), None)

    def set_config_flags(self, flags):
        cfg = self.config()
        if cfg.flags == flags:
            return False
        self.set_config(cfg._replace(flags=flags))
        return True

    def all_dirty(self):
        return dict((key, layout.Dirty(*layout.DIRTY.unpack(raw))) for key, raw in self._dirty.items())

    def dirty(self, vol_id):
        return dict((key, rec) for key, rec in self.all_dirty().items() if rec.vol_id == vol_id)

    def drop_dirty(self, key):
        self._dirty.pop(tuple(key), None)

    # many entries at once (the writes: see BULK_WRITES, below the class)
    def vol_cfgs(self, vol_ids):
        return dict((vol_id, self.vol_cfg(vol_id)) for vol_id in vol_ids)

    def vol_stats_of(self, vol_ids):
        return dict((vol_id, self.vol_stats(vol_id)) for vol_id in vol_ids)

    # what only the kernel writes
    def kernel_write_stats(self, vol_id, stats):
        self._vol_stats[self._slot(vol_id)] = pack_vol_stats(stats)

    def kernel_write_dirty(self, key, rec):
        self._dirty[tuple(key)] = pack_dirty(rec)

    def kernel_has_dirty(self, key):
        return tuple(key) in self._dirty


def _bulk_write(name):
    """FakeMaps' write of many entries: the one-entry writes it amounts to, in order."""
    def write(self, entries):
        for op in BULK_WRITES[name](entries):
            getattr(self, op[0])(*op[1:])
    return write


for _bulk_name in BULK_WRITES:
    setattr(FakeMaps, _bulk_name, _bulk_write(_bulk_name))


class RealMaps:
    """QuotaMaps on its own pin directory, plus raw writes standing in for the kernel's."""

    def __init__(self, quota_maps):
        self.inner = quota_maps

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def kernel_write_stats(self, vol_id, stats):
        libbpf.map_update(self.inner.fds["vol_stats"], layout.U32.pack(vol_id), pack_vol_stats(stats))

    def kernel_write_dirty(self, key, rec):
        libbpf.map_update(self.inner.fds["scan_dirty"], layout.pack_key(*key), pack_dirty(rec))

    def kernel_has_dirty(self, key):
        return libbpf.map_lookup(self.inner.fds["scan_dirty"], layout.pack_key(*key), layout.DIRTY.size) is not None


class Recorder:
    """Forwards to a maps object and records every write as (method, args) in `ops`; a write of
    many entries is recorded as the one-entry writes it amounts to (BULK_WRITES).
    hooks[name] = (before, after) callables run around a call (either may be None)."""

    def __init__(self, maps):
        self.maps = maps
        self.ops = []
        self.hooks = {}

    def __getattr__(self, name):
        target = getattr(self.maps, name)
        if not callable(target):
            return target

        def call(*args):
            before, after = self.hooks.get(name, (None, None))
            if before:
                before(*args)
            result = target(*args)
            if name in WRITES:
                self.ops.append((name,) + args)
            elif name in BULK_WRITES:
                self.ops.extend(BULK_WRITES[name](*args))
            if after:
                after(result, *args)
            return result
        return call

    def writes(self, *names):
        return [op for op in self.ops if not names or op[0] in names]


class Kernel:
    """What the BPF programs would do to a volume's counters and dirty records."""

    def __init__(self, maps):
        self.maps = maps  # FakeMaps or RealMaps (not the Recorder: these are not user-space writes)

    def account(self, vol_id, nbytes=0, nfiles=0):
        """Credit a change to delta[epoch & 1] of the volume's current epoch."""
        parity = self.maps.vol_cfg(vol_id).epoch & 1
        self.add(vol_id, parity, nbytes, nfiles)

    def add(self, vol_id, parity, nbytes=0, nfiles=0):
        stats = self.maps.vol_stats(vol_id)
        delta_bytes, delta_files = list(stats.delta_bytes), list(stats.delta_files)
        delta_bytes[parity] += nbytes
        delta_files[parity] += nfiles
        self.maps.kernel_write_stats(vol_id, stats._replace(delta_bytes=delta_bytes, delta_files=delta_files))

    def set_stats(self, vol_id, **fields):
        self.maps.kernel_write_stats(vol_id, self.maps.vol_stats(vol_id)._replace(**fields))

    def overflow(self, vol_id):
        stats = self.maps.vol_stats(vol_id)
        self.maps.kernel_write_stats(vol_id, stats._replace(dirty_overflow=stats.dirty_overflow + 1))

    def dirty(self, vol_id, key, size_before, files_before):
        """The first change of an inode during a scan: what it counted at the flip. Like the
        kernel's BPF_NOEXIST insert, a record already there for (dev, ino) is kept."""
        if self.maps.kernel_has_dirty(key):
            return False
        epoch = self.maps.vol_cfg(vol_id).epoch
        self.maps.kernel_write_dirty(key, layout.Dirty(vol_id, epoch, size_before, files_before))
        return True


# --- real maps ----------------------------------------------------------------

def needs_root():
    if os.geteuid() != 0:
        pytest.skip("creating and pinning BPF maps needs root")


def built_object(tmp_path_factory):
    """The real object, built once per session (bpfbuild skips an up-to-date build)."""
    needs_root()
    if find_clang_or_none() is None:
        pytest.skip("clang not found: the real-map variants need bpf/ built")
    out = os.path.join(str(tmp_path_factory.getbasetemp()), "bpfquota-object", "bpfquota.bpf.o")
    return build(BPF_SRC, out)["path"]


def find_clang_or_none():
    try:
        return find_clang()
    except BuildError:
        return None


def _set_autoload(lib):
    function = lib._dll.bpf_program__set_autoload
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    return function


def create_pinned_maps(object_path, pin_dir):
    """Create every map of the real object, pinned under pin_dir as the loader pins them, without
    loading its (LSM) programs: same names, types, key/value sizes, max_entries and flags."""
    lib = libbpf.libbpf()
    set_autoload = _set_autoload(lib)
    with libbpf.BpfObject.open(object_path) as obj:
        for program in obj._programs().values():
            if set_autoload(program, False) != 0:
                raise libbpf.LibbpfError("bpf_program__set_autoload failed")
        for name in obj.map_names():
            obj.set_pin_path(name, os.path.join(pin_dir, name))
        obj.load()
    return sorted(os.listdir(pin_dir))


def new_pin_dir():
    return os.path.join(BPFFS, "bpfquota-test-%d-%d" % (os.getpid(), next(_pin_numbers)))


def remove_pins(pin_dir):
    shutil.rmtree(pin_dir, ignore_errors=True)
    assert not os.path.exists(pin_dir)
