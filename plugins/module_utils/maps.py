# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed access to bpfquota's pinned maps (the only state: nothing is kept in files)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import parse_volume_meta

# Maps user space reads and writes (inode_st and events are the kernel's).
USER_MAPS = ("vol_keys", "vol_devs", "nfs_groups", "vol_cfg", "vol_stats", "scan_dirty", "config", "vol_meta")


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

    # config
    def config(self):
        return layout.unpack_config(self._lookup("config", layout.U32.pack(0), layout.CONFIG.size))

    def set_config(self, cfg):
        libbpf.map_update(self.fds["config"], layout.U32.pack(0), layout.pack_config(cfg))

    def bump_gen(self):
        """Invalidate every inode's cached volume id (the key set changed)."""
        cfg = self.config()
        gen = (cfg.gen + 1) & 0xFFFFFFFFFFFFFFFF or 1  # 64 bits never wrap; 0 means "not configured"
        self.set_config(cfg._replace(gen=gen))

    # per-volume slots
    def vol_cfg(self, vol_id):
        return layout.unpack_vol_cfg(self._lookup("vol_cfg", layout.U32.pack(vol_id), layout.VOL_CFG.size))

    def set_vol_cfg(self, vol_id, cfg):
        self.set_vol_cfgs({vol_id: cfg})

    def vol_stats(self, vol_id):
        return layout.unpack_vol_stats(self._lookup("vol_stats", layout.U32.pack(vol_id), layout.VOL_STATS.size))

    def reset_vol_stats(self, vol_id):
        self.reset_vol_stats_of([vol_id])

    def paths(self):
        """{volume id: path} of every configured volume."""
        out = {}
        size = layout.VOL_META.size
        for keys, values, n in libbpf.map_batches(self.fds["vol_meta"], layout.U32.size, size):
            for index, (vol_id,) in enumerate(layout.U32.iter_unpack(keys)):
                if vol_id != layout.SYNC_STAMP_SLOT:
                    # the path ends at its NUL: slice only that out of the 4 KiB value
                    start = index * size
                    end = values.find(b"\0", start, start + size)
                    out[vol_id] = values[start:end if end >= 0 else start + size].decode("utf-8", "surrogateescape")
        return out

    def labels(self):
        """{volume id: labels (sorted (name, value) pairs)} of every configured volume that has labels."""
        out = {}
        size = layout.VOL_META.size
        for keys, values, n in libbpf.map_batches(self.fds["vol_meta"], layout.U32.size, size):
            for index, (vol_id,) in enumerate(layout.U32.iter_unpack(keys)):
                start = index * size
                name_end = values.find(b"\0", start, start + size)
                if vol_id == layout.SYNC_STAMP_SLOT or name_end < 0 or values[name_end + 1:name_end + 2] in (b"", b"\0"):
                    continue  # no labels: the common case costs one byte's look
                end = values.find(b"\0", name_end + 1, start + size)
                text = values[start:end if end >= 0 else start + size].decode("utf-8", "surrogateescape")
                out[vol_id] = parse_volume_meta(text)[1]
        return out

    # The sync stamp: the digest of the paths and mount table the routes were last resolved for
    # (quota.sync_stamp). Any write of routes or paths drops it first, so a stamp that is there
    # still describes the maps.
    def sync_stamp(self):
        raw = self._lookup("vol_meta", layout.U32.pack(layout.SYNC_STAMP_SLOT), layout.VOL_META.size)
        return None if raw is None else layout.unpack_vol_meta(raw)

    def set_sync_stamp(self, stamp):
        libbpf.map_update(self.fds["vol_meta"], layout.U32.pack(layout.SYNC_STAMP_SLOT), layout.pack_vol_meta(stamp))

    def drop_sync_stamp(self):
        # Every time, not once per instance: another process may have stamped since.
        self._delete_many("vol_meta", [layout.U32.pack(layout.SYNC_STAMP_SLOT)], layout.U32.size)

    def set_config_flags(self, flags):
        """Set config.flags (CFG_*); True when they changed."""
        cfg = self.config()
        if cfg.flags == flags:
            return False
        self.set_config(cfg._replace(flags=flags))
        return True

    # keys: (fs, ino) -> volume id, or ROOT_IN | id of a placed NFS mount root
    def keys(self):
        """{(fs, ino): value} of every key: volume roots and placed NFS mount roots."""
        return dict((key, vol_id) for key, (vol_id,) in self._items("vol_keys", layout.KEY, layout.U32))

    def set_key(self, key, vol_id):
        self.set_keys({key: vol_id})

    def delete_key(self, key):
        self.delete_keys([key])

    def devs(self):
        """{dev: number of routes on it} of every filesystem that holds a volume."""
        return dict((dev, count) for (dev,), (count,) in self._items("vol_devs", layout.U64, layout.U32))

    def set_dev(self, dev, count):
        self.set_devs({dev: count})

    def nfs_groups(self):
        """{(fsid major, fsid minor): group} of every NFS filesystem placed."""
        return dict(((major, minor), group) for (major, minor), (group,) in self._items("nfs_groups", layout.FSID, layout.U32))

    def set_nfs_groups(self, groups):
        """Write {fsid: group}."""
        self._update_many("nfs_groups", [(layout.FSID.pack(*fsid), layout.U32.pack(g)) for fsid, g in groups.items()],
                          routing=True)

    def delete_nfs_groups(self, fsids):
        self._delete_many("nfs_groups", [layout.FSID.pack(*fsid) for fsid in fsids], layout.FSID.size, routing=True)

    # scans
    def all_dirty(self):
        """{(dev, ino): Dirty} of every volume."""
        return dict((key, layout.Dirty(*fields)) for key, fields in self._items("scan_dirty", layout.KEY, layout.DIRTY))

    def dirty(self, vol_id):
        """{(dev, ino): Dirty} recorded for volume `vol_id`."""
        return dict((key, rec) for key, rec in self.all_dirty().items() if rec.vol_id == vol_id)

    # many entries at once: one syscall per map instead of one per entry
    def vol_cfgs(self, vol_ids):
        """{volume id: VolCfg} of `vol_ids`."""
        return self._slots("vol_cfg", layout.VOL_CFG.size, vol_ids, layout.unpack_vol_cfg)

    def set_vol_cfgs(self, cfgs):
        """Write {volume id: VolCfg}."""
        self._update_many("vol_cfg", [(layout.U32.pack(i), layout.pack_vol_cfg(cfg)) for i, cfg in cfgs.items()])

    def vol_stats_of(self, vol_ids):
        """{volume id: VolStats} of `vol_ids`."""
        return self._slots("vol_stats", layout.VOL_STATS.size, vol_ids, layout.unpack_vol_stats)

    def reset_vol_stats_of(self, vol_ids):
        self._update_many("vol_stats", [(layout.U32.pack(i), layout.empty_vol_stats()) for i in vol_ids])

    def set_paths(self, paths):
        """Write {volume id: path}."""
        self._update_many("vol_meta", [(layout.U32.pack(i), layout.pack_vol_meta(p)) for i, p in paths.items()],
                          routing=True)

    def delete_paths(self, vol_ids):
        self._delete_many("vol_meta", [layout.U32.pack(i) for i in vol_ids], layout.U32.size, routing=True)

    def set_keys(self, keys):
        """Write {(fs, ino): value}."""
        self._update_many("vol_keys", [(layout.pack_key(*key), layout.U32.pack(i)) for key, i in keys.items()],
                          routing=True)

    def delete_keys(self, keys):
        self._delete_many("vol_keys", [layout.pack_key(*key) for key in keys], layout.KEY.size, routing=True)

    def set_devs(self, counts):
        """Write {dev: route count}; a count of 0 removes the dev."""
        self._update_many("vol_devs", [(layout.U64.pack(dev), layout.U32.pack(count))
                                       for dev, count in counts.items() if count > 0], routing=True)
        self._delete_many("vol_devs", [layout.U64.pack(dev) for dev, count in counts.items() if count <= 0],
                          layout.U64.size, routing=True)

    def delete_dirty(self, keys):
        self._delete_many("scan_dirty", [layout.pack_key(*key) for key in keys], layout.KEY.size)

    def _items(self, name, key_struct, value_struct):
        """(key fields, value fields) of every entry of a hash map, unpacked with the structs."""
        for keys, values, dummy in libbpf.map_batches(self.fds[name], key_struct.size, value_struct.size):
            yield from zip(key_struct.iter_unpack(keys), value_struct.iter_unpack(values))

    def _slots(self, name, value_size, vol_ids, unpack):
        """{id: unpack(value)} of the array slots `vol_ids`, read as one range of the array."""
        wanted = set(vol_ids)
        if not wanted:
            return {}
        low, high = min(wanted), max(wanted)
        start = layout.U32.pack(low - 1) if low else None  # an array's batch token is the index before
        out = {}
        for keys, values, n in libbpf.map_batches(self.fds[name], layout.U32.size, value_size, start,
                                                  high - low + 1):
            for i in range(n):
                vol_id = layout.U32.unpack_from(keys, i * layout.U32.size)[0]
                if vol_id in wanted:
                    out[vol_id] = unpack(values[i * value_size:(i + 1) * value_size])
        return out

    def _update_many(self, name, items, routing=False):
        """routing: the write changes routes or paths, which the sync stamp vouches for."""
        if items:
            if routing:
                self.drop_sync_stamp()
            libbpf.map_update_batch(self.fds[name], b"".join(key for key, dummy in items),
                                    b"".join(value for dummy, value in items), len(items))

    def _delete_many(self, name, keys, key_size, routing=False):
        if keys:
            if routing:
                self.drop_sync_stamp()
            libbpf.map_delete_batch(self.fds[name], b"".join(keys), key_size)
