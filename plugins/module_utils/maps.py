# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed access to bpfquota's pinned maps (the only state: nothing is kept in files)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf

# Maps user space reads and writes (inode_st and events are the kernel's).
USER_MAPS = ("vol_keys", "vol_devs", "vol_cfg", "vol_stats", "scan_dirty", "config", "vol_meta")


class NotLoaded(Exception):
    """bpfquota's maps are not pinned: the enforcer is not loaded."""


def is_loaded(pin_dir=layout.PIN_DIR):
    return all(os.path.exists(os.path.join(pin_dir, name)) for name in USER_MAPS)


class QuotaMaps:
    """Open file descriptors of the pinned maps; use as a context manager."""

    def __init__(self, pin_dir=layout.PIN_DIR):
        if not is_loaded(pin_dir):
            raise NotLoaded("bpfquota is not loaded (no maps pinned under %s): run 'bpfquota load' first" % pin_dir)
        self.pin_dir = pin_dir
        self.fds = {}
        try:
            for name in USER_MAPS:
                self.fds[name] = libbpf.obj_get(os.path.join(pin_dir, name))
        except Exception:
            self.close()
            raise

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _lookup(self, name, key, size):
        return libbpf.map_lookup(self.fds[name], key, size)

    def _update(self, name, key, value):
        libbpf.map_update(self.fds[name], key, value, libbpf.BPF_ANY)

    # config
    def config(self):
        return layout.unpack_config(self._lookup("config", layout.U32.pack(0), layout.CONFIG.size))

    def set_config(self, cfg):
        self._update("config", layout.U32.pack(0), layout.pack_config(cfg))

    def bump_gen(self):
        """Invalidate every inode's cached volume id (the key set changed)."""
        cfg = self.config()
        gen = (cfg.gen + 1) & 0xFFFFFFFF or 1  # 0 means "not configured" to the kernel
        self.set_config(cfg._replace(gen=gen))

    # per-volume slots
    def vol_cfg(self, vol_id):
        return layout.unpack_vol_cfg(self._lookup("vol_cfg", layout.U32.pack(vol_id), layout.VOL_CFG.size))

    def set_vol_cfg(self, vol_id, cfg):
        self._update("vol_cfg", layout.U32.pack(vol_id), layout.pack_vol_cfg(cfg))

    def vol_stats(self, vol_id):
        return layout.unpack_vol_stats(self._lookup("vol_stats", layout.U32.pack(vol_id), layout.VOL_STATS.size))

    def reset_vol_stats(self, vol_id):
        self._update("vol_stats", layout.U32.pack(vol_id), layout.empty_vol_stats())

    def paths(self):
        """{volume id: path} of every configured volume."""
        out = {}
        for key in libbpf.map_keys(self.fds["vol_meta"], layout.U32.size):
            raw = self._lookup("vol_meta", key, layout.VOL_META.size)
            if raw is not None:
                out[layout.U32.unpack(key)[0]] = layout.unpack_vol_meta(raw)
        return out

    def set_path(self, vol_id, path):
        self._update("vol_meta", layout.U32.pack(vol_id), layout.pack_vol_meta(path))

    def delete_path(self, vol_id):
        libbpf.map_delete(self.fds["vol_meta"], layout.U32.pack(vol_id))

    # routes
    def keys(self):
        """{(dev, ino): volume id} for every route."""
        out = {}
        for key in libbpf.map_keys(self.fds["vol_keys"], layout.KEY.size):
            raw = self._lookup("vol_keys", key, layout.U32.size)
            if raw is not None:
                out[layout.unpack_key(key)] = layout.U32.unpack(raw)[0]
        return out

    def set_key(self, key, vol_id):
        self._update("vol_keys", layout.pack_key(*key), layout.U32.pack(vol_id))

    def delete_key(self, key):
        libbpf.map_delete(self.fds["vol_keys"], layout.pack_key(*key))

    def devs(self):
        out = {}
        for key in libbpf.map_keys(self.fds["vol_devs"], layout.U64.size):
            raw = self._lookup("vol_devs", key, layout.U32.size)
            if raw is not None:
                out[layout.U64.unpack(key)[0]] = layout.U32.unpack(raw)[0]
        return out

    def set_dev(self, dev, count):
        if count > 0:
            self._update("vol_devs", layout.U64.pack(dev), layout.U32.pack(count))
        else:
            libbpf.map_delete(self.fds["vol_devs"], layout.U64.pack(dev))

    # scans
    def dirty(self, vol_id):
        """{(dev, ino): Dirty} recorded for volume `vol_id`."""
        out = {}
        for key in libbpf.map_keys(self.fds["scan_dirty"], layout.KEY.size):
            raw = self._lookup("scan_dirty", key, layout.DIRTY.size)
            if raw is None:
                continue
            rec = layout.unpack_dirty(raw)
            if rec.vol_id == vol_id:
                out[layout.unpack_key(key)] = rec
        return out

    def clear_dirty(self, vol_id):
        for key in self.dirty(vol_id):
            libbpf.map_delete(self.fds["scan_dirty"], layout.pack_key(*key))
