# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the kernel names the volumes: keys of their roots, and the placement of every NFS mount root."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, nfsfs, placement
from ansible_collections.bpfquota.nfs.plugins.module_utils.quota import root_values
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import kernel_dev

# How the kernel names each volume and every NFS mount root (see bpf/bpfquota.h, vol_keys):
# by_path: {volume path: set of (fs, ino)}; roots: {(fs, ino): path of the volume an NFS mount root
# lies in, or None}; groups: {fsid: group}; unplaced: [(dev, access, reason)] of mount roots left
# refusing growth; missing: {path: reason} of volumes whose directory is gone or unreachable (the
# keys they had stay: see keep_missing).
Identities = collections.namedtuple("Identities", "by_path roots groups unplaced missing")


def identities(paths, current_groups=None, stat=os.stat, supers=None, views=None):
    """The Identities of the volumes at `paths`: a volume on a local filesystem is its (s_dev, ino);
    one on NFS is (the group of its server's fsid, fileid), the same through every mount, and then
    every NFS superblock's fsid and mount root on this host is placed (placement.place). Group
    numbers in `current_groups` ({fsid: group}, as the maps hold them) are kept."""
    by_path, nfs_paths, missing = {}, [], {}
    supers = nfsfs.read_nfsfs_volumes() if supers is None else supers
    for path in paths:
        try:
            st = stat(path)
        except OSError as e:  # deleted on the server, say: the other volumes are placed all the same
            missing[path] = "%s: %s" % (path, e.strerror)
            continue
        if (os.major(st.st_dev), os.minor(st.st_dev)) in supers:
            nfs_paths.append(path)
        else:
            by_path[path] = set([(kernel_dev(st.st_dev), st.st_ino)])
    if not nfs_paths:
        return Identities(by_path, {}, {}, [], missing)
    homes = [placement.Home(index + 1, path) for index, path in enumerate(nfs_paths)]
    placed = placement.place(homes, supers, placement.nfs_views() if views is None else views, stat)
    number = stable_groups(placed.groups, current_groups or {})
    roots = {}
    for (group, ino), value in placed.keys.items():
        key = (layout.NFS_FS_BASE + number[group], ino)
        if value & placement.ROOT_IN:
            inside = value & ~placement.ROOT_IN
            roots[key] = nfs_paths[inside - 1] if inside else None
        else:
            by_path.setdefault(nfs_paths[value - 1], set()).add(key)
    groups = dict((fsid, number[group]) for fsid, group in placed.groups.items())
    return Identities(by_path, roots, groups, placed.unplaced, missing)


def keep_missing(found, stored_keys, current_groups):
    """found (Identities) with the volumes it couldn't stat keeping the keys the maps hold for them
    (stored_keys: {path: keys}), and the groups those keys need: a volume whose directory went
    away on the server stays defined and the others are placed as usual."""
    if not found.missing:
        return found
    by_path = dict(found.by_path)
    groups = dict(found.groups)
    used = set(groups.values())
    for path in found.missing:
        keys = stored_keys.get(path, set())
        by_path[path] = set(keys)
        for fsid, group in current_groups.items():
            if any(key[0] == layout.NFS_FS_BASE + group for key in keys) and fsid not in groups and group not in used:
                groups[fsid] = group
    return found._replace(by_path=by_path, groups=groups)


def stable_groups(groups, current):
    """{group as place() numbered it: the number to use}: a group keeps the number one of its fsids
    has in `current` (so the keys of a filesystem don't change as others come and go); the others
    get the lowest free numbers."""
    number, taken = {}, set()
    for fsid, group in sorted(groups.items()):
        old = current.get(fsid)
        if group not in number and old is not None and old not in taken:
            number[group] = old
            taken.add(old)
    # Numbers the maps still use are not reused in the same sync: keys may name them until it ends.
    free = (n for n in range(1, layout.MAX_NFS_GROUPS + 1) if n not in taken and n not in current.values())
    for group in sorted(set(groups.values())):
        if group not in number:
            number[group] = next(free)
    return number


def wanted_keys(found, ids):
    """{(fs, ino): value} vol_keys should hold for Identities `found`, given {path: volume id}."""
    want = root_values(found.roots, ids)
    for path, keys in found.by_path.items():
        for key in keys:
            want[key] = ids[path]
    return want
