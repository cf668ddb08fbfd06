# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The mount table (/proc/self/mountinfo): parsed, and the path arithmetic placement.py and the
# tree walk use. (A volume on NFS is keyed by the server's identity, not by any mount: see
# identity.py and placement.py.)

import bisect
import collections
import os
import re

MOUNTINFO = "/proc/self/mountinfo"
NFS_TYPES = ("nfs", "nfs4")

Mount = collections.namedtuple("Mount", [
    "mount_id",       # int, unique id of the mount
    "parent_id",      # int, id of the mount this one is mounted on
    "major",          # int, major of the superblock's s_dev
    "minor",          # int, minor of the superblock's s_dev
    "root",           # str, path of the mount's root inside its filesystem ("/" for NFS, always)
    "mount_point",    # str, where it is mounted, relative to the process root
    "options",        # str, per-mount options (rw,nosuid,...)
    "optional",       # tuple of str, propagation tags such as shared:1, master:2
    "fstype",         # str, e.g. ext4, nfs4, fuse.sshfs
    "source",         # str, e.g. /dev/vda, 127.0.0.1:/srv/nfs
    "super_options",  # str, per-superblock options (rw,vers=4.2,...)
])

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def kernel_dev(st_dev):
    """The kernel's sb->s_dev encoding (MAJOR << 20 | MINOR) of a stat() st_dev."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def volume_key(path, stat=os.stat):
    """The (dev, ino) the BPF program sees for the directory at path (dev in kernel encoding)."""
    st = stat(path)
    return kernel_dev(st.st_dev), st.st_ino


def unescape(field):
    """Decode the kernel's octal escapes (space \\040, tab \\011, newline \\012, backslash \\134)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo_line(line):
    """One Mount from one mountinfo line; ValueError if the line is malformed."""
    fields = line.split(" ")
    try:
        separator = fields.index("-", 6)
    except ValueError:
        raise ValueError("mountinfo line without ' - ' separator: %r" % (line,))
    if len(fields) < separator + 3:
        raise ValueError("mountinfo line with too few fields: %r" % (line,))
    major, minor = fields[2].split(":")
    return Mount(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        major=int(major),
        minor=int(minor),
        root=unescape(fields[3]),
        mount_point=unescape(fields[4]),
        options=fields[5],
        optional=tuple(fields[6:separator]),
        fstype=unescape(fields[separator + 1]),
        source=unescape(fields[separator + 2]),
        # super options never contain a space; join in case a future kernel appends a field
        super_options=" ".join(fields[separator + 3:]),
    )


def parse_mountinfo(text):
    """All mounts in the text of /proc/<pid>/mountinfo, in file order (parents before children)."""
    return [parse_mountinfo_line(line) for line in text.splitlines() if line.strip()]


def read_mountinfo_text(path=MOUNTINFO):
    """The text of a mountinfo file; bytes that aren't UTF-8 survive as surrogate escapes (like os.fsdecode)."""
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def read_mountinfo(path=MOUNTINFO):
    """All mounts of a mountinfo file (see parse_mountinfo)."""
    return parse_mountinfo(read_mountinfo_text(path))


def top_fstype(mounts, mount_point):
    """The type of the file system mounted exactly at mount_point, or None; of several stacked
    there, the topmost (the last in mountinfo order)."""
    fstype = None
    for mount in mounts:
        if mount.mount_point == mount_point:
            fstype = mount.fstype
    return fstype


def is_nfs(mount):
    return mount.fstype in NFS_TYPES


def split_nfs_source(source):
    """("host", "/path") from "host:/path" or "[v6addr]:/path"; None when it isn't host:path."""
    if source.startswith("["):
        host, sep, path = source[1:].partition("]:")
    else:
        host, sep, path = source.partition(":")
    if not sep or not host:
        return None
    return host, _normal("/" + path)


class MountTable:
    """The mount points of a mount table, sorted once: a tree walk asks which lie below a path."""

    def __init__(self, mounts):
        self._points = sorted(set(m.mount_point for m in mounts))

    def mount_points_below(self, path):
        """Mount points strictly below path: a tree walk must not descend into them."""
        prefix = _normal(path).rstrip("/") + "/"
        below = []
        for point in self._points[bisect.bisect_right(self._points, prefix):]:  # "/" itself isn't below "/"
            if not point.startswith(prefix):
                break  # sorted: the paths below `path` form one run
            below.append(point)
        return below


def _suffixes(path):
    """The path with one, two, ... leading components removed: "/a/b" gives ["/b", "/"]."""
    parts = path.strip("/").split("/") if path != "/" else []
    return ["/" + "/".join(parts[index:]) for index in range(1, len(parts) + 1)]


def _mount_holding(path, major, minor, mounts):
    """The visible mount of superblock major:minor with the longest mount point at or above path."""
    best = []
    best_length = -1
    for mount in mounts:
        if (mount.major, mount.minor) != (major, minor) or relative_path(path, mount.mount_point) is None:
            continue
        length = len(mount.mount_point)
        if length > best_length:
            best, best_length = [mount], length
        elif length == best_length:
            best.append(mount)
    if not best:
        return None
    # Several mounts on one mount point: the top one is the one nothing else is mounted on.
    covered = set(m.parent_id for m in best)
    uncovered = [m for m in best if m.mount_id not in covered]
    return (uncovered or best)[-1]


def _normal(path):
    # Lexical only: resolving symlinks would stat and could hang on a dead server.
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")  # POSIX keeps a leading "//"; the kernel never prints one
    return normal


def relative_path(path, ancestor):
    """The part of path below ancestor ("" when equal), or None when ancestor isn't at or above it."""
    if ancestor == "/":
        return path.lstrip("/")
    if path == ancestor:
        return ""
    if path.startswith(ancestor + "/"):
        return path[len(ancestor) + 1:]
    return None


def join_path(base, rest):
    return base if not rest else os.path.join(base, rest)
