# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the kernel names the volumes: keys of their roots, and the placement of every NFS mount root."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import ipaddress
import os
import re
import socket
import stat as stat_module

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, nfsfs, placement, usage
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import (
    join_path, kernel_dev, relative_path, split_nfs_source)
from ansible_collections.bpfquota.nfs.plugins.module_utils.quota import root_values
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import is_source

# How the kernel names each volume and every NFS mount root (see bpf/bpfquota.h, vol_keys), by
# volume name (its path, or its source: server:/export/path):
# by_path: {name: set of (fs, ino)}; roots: {(fs, ino): name of the volume an NFS mount root lies
# in, or None}; groups: {fsid: group}; unplaced: [(dev, access, reason)] of mount roots left
# refusing growth; missing: {path: reason} of volumes whose directory is gone or unreachable;
# unmounted: [source] of volumes no mount of this host reaches (both keep the keys they had: see
# keep_missing); homes: {name: the path its tree is walked through}; watch: whether the kernel must
# see every NFS mount (some volume is, or may come to be, on NFS).
Identities = collections.namedtuple("Identities", "by_path roots groups unplaced missing unmounted homes watch")
Identities.__new__.__defaults__ = ((), {}, False)


def identities(names, current_groups=None, stat=os.stat, supers=None, views=None, addresses=None):
    """The Identities of the volumes named `names` (paths, and sources server:/export/path): a
    volume on a local filesystem is its (s_dev, ino); one on NFS is (the group of its server's
    fsid, fileid), the same through every mount, and then every NFS superblock's fsid and mount root
    on this host is placed (placement.place). A source volume is found through any NFS mount of
    its server that reaches it, in any mount namespace. Group numbers in `current_groups`
    ({fsid: group}, as the maps hold them) are kept. `addresses(host)` gives a host's addresses
    (default: resolved with getaddrinfo)."""
    by_path, homes, missing = {}, {}, {}
    supers = nfsfs.read_nfsfs_volumes() if supers is None else supers
    sources = [name for name in names if is_source(name)]
    if sources:
        views = placement.nfs_views() if views is None else views
        homes.update(source_homes(sources, views, stat, addresses or resolved_addresses))
    nfs_names = []
    for name in names:
        path = homes.get(name) if is_source(name) else name
        if path is None:
            continue
        try:
            st = stat(path)
        except OSError as e:  # deleted on the server, say: the other volumes are placed all the same
            missing[name] = "%s: %s" % (name, e.strerror)
            continue
        homes[name] = path
        if (os.major(st.st_dev), os.minor(st.st_dev)) in supers:
            nfs_names.append(name)
        else:
            by_path[name] = set([(kernel_dev(st.st_dev), st.st_ino)])
    unmounted = [name for name in sources if name not in homes and name not in missing]
    watch = bool(nfs_names or sources)
    if not nfs_names:
        return Identities(by_path, {}, {}, [], missing, unmounted, homes, watch)
    nfs_homes = [placement.Home(index + 1, homes[name]) for index, name in enumerate(nfs_names)]
    placed = placement.place(nfs_homes, supers, placement.nfs_views() if views is None else views, stat)
    number = stable_groups(placed.groups, current_groups or {})
    roots = {}
    for (group, ino), value in placed.keys.items():
        key = (layout.NFS_FS_BASE + number[group], ino)
        if value & placement.ROOT_IN:
            inside = value & ~placement.ROOT_IN
            roots[key] = nfs_names[inside - 1] if inside else None
        else:
            by_path.setdefault(nfs_names[value - 1], set()).add(key)
    groups = dict((fsid, number[group]) for fsid, group in placed.groups.items())
    unplaced = list(placed.unplaced)
    if unmounted:
        for key, view in _roots_that_may_reach(unmounted, views, supers, groups, stat).items():
            if roots.get(key, False) is None:  # placed in no volume: but it may reach one we can't see
                del roots[key]
                unplaced.append(((view.mount.major, view.mount.minor), view.access, (
                    "%s mounted at %s may reach the directory of a source volume whose server it names otherwise: "
                    "give the volume the server name or address this mount uses (%s)"
                    % (view.mount.source, view.mount.mount_point, ", ".join(sorted(unmounted))))))
    return Identities(by_path, roots, groups, sorted(unplaced), missing, unmounted, homes, watch)


def _roots_that_may_reach(sources, views, supers, groups, stat):
    """{key of a mount root: its view} of the NFS mounts whose server path is at, above or below the
    export path of a source volume no mount of its server (by name or address) reaches: the same
    server under another name (NFSv4 merges a server's addresses into one client, and mountinfo
    shows the first) would reach it unseen, so their roots are not placed in no volume."""
    export_paths = [split_nfs_source(source)[1] for source in sources]
    found = {}
    for view in views:
        root_path = placement.server_path(view.mount)
        super_ = supers.get((view.mount.major, view.mount.minor))
        if root_path is None or super_ is None or super_.fsid not in groups:
            continue
        if not any(relative_path(path, root_path) is not None or relative_path(root_path, path) is not None
                   for path in export_paths):
            continue
        try:
            ino = stat(view.access).st_ino
        except OSError:
            continue
        found.setdefault((layout.NFS_FS_BASE + groups[super_.fsid], ino), view)
    return found


def is_local_address(address):
    """True when `address` (an IP address; a name is not resolved here) is one of this host's own:
    a UDP socket can be bound to it."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return False
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
        return True
    except (OSError, ValueError):
        return False


def resolved_addresses(host):
    """The addresses of a host name (or the address itself), lower case; empty when it doesn't resolve."""
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return frozenset()
    return frozenset(info[4][0].lower() for info in infos)


def _mount_server(mount):
    """The server a mount talks to: the host of its source and its addr= option, lower case."""
    names = set()
    server = split_nfs_source(mount.source)
    if server is not None:
        names.add(server[0].lower())
    match = re.search(r"(?:^|,)addr=([^,]+)", mount.super_options)
    if match:
        names.add(match.group(1).lower())
    return names


def source_homes(sources, views, stat, addresses, is_local=is_local_address):
    """{source: path} of the source volumes an NFS mount of this host reaches: through the mount of
    the same server (a name and its addresses are one server; all of this host's own addresses are
    one server too) whose root is the deepest at or above the source's path, its own namespace
    first; the path must be a directory."""
    found = {}
    host_addresses = {}
    local = {}
    for source in sources:
        host, export_path = split_nfs_source(source)
        host = host.lower()
        if host not in host_addresses:
            host_addresses[host] = set([host]) | set(addresses(host))
            local[host] = any(is_local(address) for address in host_addresses[host])
        candidates = []
        for view in views:
            server_path = placement.server_path(view.mount)
            rest = None if server_path is None else relative_path(export_path, server_path)
            if rest is None:
                continue
            server = _mount_server(view.mount)
            if not (server & host_addresses[host] or (local[host] and any(is_local(name) for name in server))):
                continue
            own = view.access == view.mount.mount_point
            candidates.append((-len(server_path), not own, join_path(view.access, rest)))
        for dummy, dummy_own, path in sorted(candidates):
            try:
                if stat_module.S_ISDIR(stat(path).st_mode):
                    found[source] = path
                    break
            except OSError:
                continue
    return found


def keep_missing(found, stored_keys, current_groups):
    """found (Identities) with the volumes it couldn't stat, and the source volumes no mount
    reaches now, keeping the keys the maps hold for them (stored_keys: {name: keys}) and the groups
    those keys need: a volume whose directory went away on the server stays defined, one whose
    mounts all went is enforced again the moment a mount reaches its directory, and the others
    are placed as usual."""
    kept = list(found.missing) + list(found.unmounted)
    if not kept:
        return found
    by_path = dict(found.by_path)
    groups = dict(found.groups)
    used = set(groups.values())
    for name in kept:
        keys = stored_keys.get(name, set())
        by_path[name] = set(keys)
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


def scan_named(maps, targets, homes, timeout, budget=None):
    """usage.scan_volumes of [(volume id, name)], each walked through its home (a source volume
    through the mount that reaches it); the results carry the names."""
    results = usage.scan_volumes(maps, [(vol_id, homes[name]) for vol_id, name in targets], timeout, budget)
    return [result._replace(path=name) for result, (dummy, name) in zip(results, targets)]


def homes_of(names, stat=os.stat):
    """{name: path its tree is walked through} of the volumes a mount of this host reaches: a path
    volume is its path; a source volume is found through the NFS mounts (source_homes)."""
    sources = [name for name in names if is_source(name)]
    homes = dict((name, name) for name in names if not is_source(name))
    if sources:
        homes.update(source_homes(sources, placement.nfs_views(), stat, resolved_addresses))
    return homes
