# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Where the roots of NFS mounts lie relative to the volumes, for the kernel's NFS keys.
#
# The kernel keys an NFS directory by the server's identity: (group, fileid), where the group
# stands for the superblock's fsid (fsids proven to be one server filesystem share a group) and
# the fileid is st_ino. It finds a directory's volume by walking d_parent up to the root of the
# mount the file was reached through; an NFS mount of a subdirectory has its root inside a
# volume, above volumes or beside them, and the kernel refuses growth below a mount root that
# user space hasn't placed. place() computes those placements.
#
# Assumption: within one fsid and NFS version, the server paths mountinfo prints (the mount
# source) are authoritative: they are paths in the server's own namespace. Across versions
# (an NFSv4 pseudo-root hides a prefix: /srv/nfs/t/v over v3 is /t/v over v4) and across fsids
# nothing is taken from paths alone: every relation is confirmed by stat (fileid and dev).

import collections
import os
import stat as stat_module

from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import ROOT_IN
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import (
    _mount_holding,
    _normal,
    _suffixes,
    is_nfs,
    join_path,
    read_mountinfo,
    relative_path,
    split_nfs_source,
)


View = collections.namedtuple("View", [
    "mount",   # mountinfo.Mount of an NFS mount
    "access",  # a path that reaches that mount's mount point from this process
])
Home = collections.namedtuple("Home", [
    "vol_id",  # int, the volume's id
    "path",    # str, the volume's root directory in this process's mount namespace
])
Placement = collections.namedtuple("Placement", [
    "groups",    # {fsid: group number}: fsids proven to be one server filesystem share a number
    "keys",      # {(group, ino): value}: vol_id for volume roots, ROOT_IN[|vol_id] for mount roots
    "unplaced",  # sorted [(dev, access, reason)]: mount roots the kernel keeps refusing growth below
])

# A volume with what place() learns of it: dev (major, minor), ino (its root's fileid),
# server path, NFS version and fsid of its superblock.
_HomeInfo = collections.namedtuple("_HomeInfo", "vol_id path dev ino server_path version fsid")
# One mount root: its superblock's dev, the server path of its root (rp), the views reaching it.
_Root = collections.namedtuple("_Root", "dev server_path views")


def nfs_views(proc="/proc"):
    """[View] of every NFS mount of this host, in every mount namespace.

    This process's own mounts come first (access = mount point), then, for each other mount
    namespace, the NFS mounts of one of its pids (access = <proc>/<pid>/root + mount point),
    by pid number. Namespaces are told apart by the (st_dev, st_ino) of <proc>/<pid>/ns/mnt.
    Pids that exit while being read, or can't be read, are skipped.
    """
    own_ns = _ns_key(os.stat(os.path.join(proc, "self", "ns", "mnt")))
    views = [View(m, m.mount_point) for m in read_mountinfo(os.path.join(proc, "self", "mountinfo")) if is_nfs(m)]
    seen = set([own_ns])
    for pid in sorted((int(name) for name in os.listdir(proc) if name.isdigit())):
        base = os.path.join(proc, str(pid))
        try:
            ns = _ns_key(os.stat(os.path.join(base, "ns", "mnt")))
            if ns in seen:
                continue
            mounts = read_mountinfo(os.path.join(base, "mountinfo"))
        except (OSError, IOError):
            continue  # exited (or not ours to read); another pid of its namespace may do
        seen.add(ns)
        root = os.path.join(base, "root")
        views.extend(View(m, root + m.mount_point if m.mount_point != "/" else root) for m in mounts if is_nfs(m))
    return views


def place(homes, supers, views, stat=os.stat):
    """The Placement of every NFS mount root relative to the volumes.

    homes: [Home] of the volumes on NFS; supers: {(major, minor): NfsSuper} (nfsfs); views:
    [View] (nfs_views). stat may be a wrapper with a timeout: its OSError proves nothing (the
    path is skipped or the root is unplaced), TimeoutError and other exceptions propagate.
    ValueError when a home isn't on an NFS superblock of supers or no NFS mount of this
    namespace holds it.

    Assumption: within one fsid and NFS version, the server paths in mountinfo are authoritative
    (the server's own namespace); across versions (an NFSv4 pseudo-root strips a prefix) and
    across fsids, relations are guessed from paths and count only once stat confirms them by
    fileid and dev.
    """
    infos = sorted((_home_info(home, supers, views, stat) for home in homes), key=lambda h: (h.vol_id, h.path))
    stat = _memo(stat)  # guesses repeat paths (a view's root, for each home): stat each once
    roots = _roots(views, supers)
    groups = _groups(infos, roots, supers, stat)
    keys = {}
    for info in infos:
        keys[(groups[info.fsid], info.ino)] = info.vol_id
    unplaced = []
    untold = []  # [((group, ino), unplaced entry)] of roots whose relation to the volumes is unknown
    placed = set()  # (dev, ino) of mount roots already seen through another server path
    for root in roots:
        view, root_stat, error = _reach(root, stat)
        if root_stat is None:
            unplaced.append((root.dev, root.views[0].access, _reason(root.views[0], error)))
            continue
        if (root.dev, root_stat.st_ino) in placed:
            continue
        placed.add((root.dev, root_stat.st_ino))
        group = groups[supers[root.dev].fsid]
        if (group, root_stat.st_ino) in keys:
            continue  # a volume's root (or a root placed through another superblock)
        value = _root_value(root, view, root_stat, [h for h in infos if groups[h.fsid] == group], supers, stat)
        if value is None:
            untold.append(((group, root_stat.st_ino), (root.dev, view.access, _reason(
                view, "can't tell where it lies relative to the volumes of its filesystem"))))
        else:
            keys[(group, root_stat.st_ino)] = value
    # The kernel knows a root by (group, ino) only: one placed through another superblock of
    # its group (where paths could tell) is placed.
    unplaced.extend(entry for key, entry in untold if key not in keys)
    return Placement(groups=groups, keys=keys, unplaced=sorted(unplaced))


def _ns_key(st):
    return st.st_dev, st.st_ino


def server_path(mount):
    """The server path of the mount's root: the source's path (plus root, should a kernel ever
    print a sub-path there); None when the source isn't host:path."""
    server = split_nfs_source(mount.source)
    if server is None:
        return None
    return join_path(server[1], _normal(mount.root).lstrip("/"))


def _home_info(home, supers, views, stat):
    """A home's _HomeInfo. Its path is reached through a mount of this namespace (the one that holds
    it), or through another namespace's mount (home.path under that view's access path)."""
    st = stat(home.path)
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    if dev not in supers:
        raise ValueError("volume %s is not on an NFS mount (no NFS superblock %d:%d)" % (home.path, dev[0], dev[1]))
    own = [v.mount for v in views if v.access == v.mount.mount_point]
    mount = _mount_holding(home.path, dev[0], dev[1], own)
    access = mount.mount_point if mount is not None else None
    if mount is None:
        others = [v for v in views if (v.mount.major, v.mount.minor) == dev and v.access != v.mount.mount_point
                  and relative_path(home.path, v.access) is not None]
        if others:
            view = max(others, key=lambda v: len(v.access))
            mount, access = view.mount, view.access
    mount_path = server_path(mount) if mount is not None else None
    if mount_path is None:
        raise ValueError("volume %s: no NFS mount of superblock %d:%d holds it" % (home.path, dev[0], dev[1]))
    return _HomeInfo(vol_id=home.vol_id, path=home.path, dev=dev, ino=st.st_ino,
                     server_path=join_path(mount_path, relative_path(home.path, access)),
                     version=supers[dev].version, fsid=supers[dev].fsid)


def _roots(views, supers):
    """[_Root] of the views of superblocks in supers, one per (dev, server path): mounts of one
    superblock showing one server path share their root dentry. Sorted by (dev, server path)."""
    by_root = collections.OrderedDict()
    for view in views:
        dev = (view.mount.major, view.mount.minor)
        if dev in supers and is_nfs(view.mount):
            by_root.setdefault((dev, server_path(view.mount)), []).append(view)
    return [_Root(dev, path, tuple(v)) for (dev, path), v in sorted(by_root.items(), key=lambda i: (i[0][0], i[0][1] or ""))]


def _reach(root, stat):
    """(view, stat of its mount point, None) for the first view through which the root is a
    directory, else (None, None, why not)."""
    error = None
    for view in root.views:
        st = stat(view.access)
        if st is None:
            error = error or "stat of %s failed" % (view.access,)
        elif not stat_module.S_ISDIR(st.st_mode):
            error = error or "%s is not a directory" % (view.access,)
        else:
            return view, st, None
    return None, None, error


def _reason(view, why):
    return "NFS mount of %s on %s: %s" % (view.mount.source, view.mount.mount_point, why)


def _memo(stat):
    """A stat that returns None on an OSError (proves nothing) and remembers its answers;
    TimeoutError (an OSError) and other exceptions propagate."""
    answers = {}

    def memo_stat(path):
        if path not in answers:
            try:
                answers[path] = stat(path)
            except TimeoutError:
                raise
            except OSError:
                answers[path] = None
        return answers[path]
    return memo_stat


def _groups(infos, roots, supers, stat):
    """{fsid: group number}. Each home's fsid is a group; another fsid joins a home's group once
    a view of one of its superblocks is proven to show that home's filesystem; the rest stand
    alone. Numbered 1.. by each group's smallest fsid."""
    members = collections.OrderedDict()  # home fsid -> fsids of its group
    for info in infos:
        members.setdefault(info.fsid, set([info.fsid]))
    for fsid in sorted(set(s.fsid for s in supers.values()) - set(members)):
        home_fsid = _proven_home_fsid(fsid, infos, roots, supers, stat)
        if home_fsid is None:
            members[fsid] = set([fsid])
        else:
            members[home_fsid].add(fsid)
    groups = {}
    for number, group in enumerate(sorted(members.values(), key=min), 1):
        for fsid in group:
            groups[fsid] = number
    return groups


def _proven_home_fsid(fsid, infos, roots, supers, stat):
    """The fsid of the first home proven to share a filesystem with a superblock of fsid."""
    for root in roots:
        if supers[root.dev].fsid != fsid or root.server_path is None:
            continue
        for info in infos:
            for view in root.views:
                version = supers[root.dev].version
                if _confirmed(info, root, view, version, stat, _AT_OR_BELOW) or \
                        _confirmed(info, root, view, version, stat, _ABOVE):
                    return info.fsid
    return None


_AT_OR_BELOW = "a"  # the home's server path is at or below the mount root's
_ABOVE = "b"        # the mount root's server path is strictly below the home's


def _path_guesses(info, root, version):
    """[(home's server path, root's server path)] to try: the plain pair, and across NFS versions
    the pairs with leading components stripped from one side (a pseudo-root prefix)."""
    pairs = [(info.server_path, root.server_path)]
    if version != info.version:
        pairs.extend((s, root.server_path) for s in _suffixes(info.server_path))
        pairs.extend((info.server_path, s) for s in _suffixes(root.server_path))
    return pairs


def _confirmed(info, root, view, version, stat, relation):
    """True when some path guess puts the home and the mount root in the given relation and
    stat confirms it by fileid and dev."""
    root_stat = None
    for home_path, root_path in _path_guesses(info, root, version):
        if relation == _AT_OR_BELOW:
            rest = relative_path(home_path, root_path)
            if rest is not None and _is_dir(join_path(view.access, rest), root.dev, info.ino, stat):
                return True
        else:
            rest = relative_path(root_path, home_path)
            if not rest:
                continue
            if root_stat is None:
                root_stat = stat(view.access)
                if root_stat is None:
                    return False
            if _is_dir(join_path(info.path, rest), info.dev, root_stat.st_ino, stat):
                return True
    return False


def _is_dir(path, dev, ino, stat):
    st = stat(path)
    return (st is not None and stat_module.S_ISDIR(st.st_mode) and st.st_ino == ino
            and (os.major(st.st_dev), os.minor(st.st_dev)) == dev)


def _root_value(root, view, root_stat, group_infos, supers, stat):
    """The key value of a mount root that isn't a volume root: ROOT_IN | vol_id inside a volume,
    ROOT_IN in none, None when that can't be told."""
    if not group_infos:
        return ROOT_IN  # a filesystem without volumes
    nfs_super = supers[root.dev]
    above = False
    all_comparable = True
    for info in group_infos:
        comparable = (nfs_super.version, nfs_super.fsid) == (info.version, info.fsid)
        all_comparable = all_comparable and comparable and root.server_path is not None
        if comparable and root.server_path is not None:
            if relative_path(root.server_path, info.server_path):
                return ROOT_IN | info.vol_id
            above = above or bool(relative_path(info.server_path, root.server_path))
        elif root.server_path is not None:
            if _confirmed(info, root, view, nfs_super.version, stat, _ABOVE):
                return ROOT_IN | info.vol_id
            above = above or _confirmed(info, root, view, nfs_super.version, stat, _AT_OR_BELOW)
    if above or all_comparable:
        # Above a volume: volumes never nest, so in none. Or beside all of them, as the
        # authoritative paths of one fsid and version say.
        return ROOT_IN
    return None
