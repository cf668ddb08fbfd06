# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Usage saved by the agent and restored by apply, so a volume's usage is known after a reboot
without waiting for its first scan (maps live in bpffs, which a reboot empties).

A saved volume is matched by its path and its directory's inode number (an NFS directory's
fileid, stable across mounts and reboots): a volume deleted and made again under the same path
is not restored. Saved usage misses the growth this host made after the last save and what
other hosts wrote meanwhile; the agent's first round re-scans restored volumes.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.atomic import read_state, write_atomically

STATE_PATH = "/var/lib/bpfquota/usage.json"
FORMAT = "bpfquota-usage-v1"


def snapshot(maps, now=None):
    """{path: {"inos": [...], "bytes": b, "files": f}} of the volumes whose usage is known, read from
    the maps only (no path is touched: a dead NFS server can't stall a save)."""
    paths = dict((vol_id, path) for vol_id, path in maps.paths().items() if vol_id <= layout.MAX_VOLUMES)
    inos = {}
    for (dummy, ino), vol_id in maps.keys().items():
        inos.setdefault(vol_id, set()).add(ino)
    cfgs, stats = maps.vol_cfgs(paths), maps.vol_stats_of(paths)
    volumes = {}
    for vol_id, cfg in cfgs.items():
        if cfg.mode == layout.MODE_UNUSED or cfg.flags & layout.USAGE_UNKNOWN or vol_id not in inos:
            continue
        volumes[paths[vol_id]] = {
            "inos": sorted(inos[vol_id]),
            "bytes": max(0, cfg.base_bytes + sum(stats[vol_id].delta_bytes)),
            "files": max(0, cfg.base_files + sum(stats[vol_id].delta_files)),
        }
    return {"format": FORMAT, "saved_at": int(time.time() if now is None else now), "volumes": volumes}


def save(state, path=STATE_PATH):
    """Write `state` atomically: a crash (or kill -9) leaves the old file or the new one, whole."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    write_atomically(path, json.dumps(state, sort_keys=True).encode("utf-8"))


def load(path=STATE_PATH):
    """(saved volumes {path: entry}, why none could be read or None). No file is no problem."""
    volumes, problem = read_state(path, FORMAT, "volumes", lambda v: isinstance(v, dict), "saved usage file")
    return volumes or {}, problem


def restorable(saved, volumes, stat=os.stat):
    """{path: (bytes, files)} of the volumes whose saved entry is of the same directory."""
    out = {}
    for volume in volumes:
        entry = saved.get(volume.path)
        if not _well_formed(entry):
            continue
        try:
            ino = stat(volume.path).st_ino
        except OSError:
            continue
        if ino in entry["inos"]:
            out[volume.path] = (entry["bytes"], entry["files"])
    return out


def _well_formed(entry):
    def count(value):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62
    return (isinstance(entry, dict) and count(entry.get("bytes")) and count(entry.get("files"))
            and isinstance(entry.get("inos"), list) and all(count(ino) for ino in entry["inos"]))
