# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The mount table (/proc/self/mountinfo) and the paths through which one volume is reachable.
#
# The BPF side keys a volume by the (dev, ino) of its root directory. One directory can be
# reachable under several keys: bind mounts and a second mount of the same NFS superblock share
# the key, while an NFS mount of another superblock (nosharecache, other mount options, a per-PV
# mount of server:/export/pv-a) shows the same directory under another dev. Every such route has
# to be registered, or writes through it escape the quota.

import bisect
import collections
import os
import re
import stat as stat_module

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
    """The mount table, indexed once for the routes of many volumes.

    Each volume then costs a few dictionary lookups (by the ancestors of its path inside its
    filesystem) instead of a pass over every mount: csi-driver-nfs leaves one mount per volume in
    use on a node, and 10 000 volumes x that many mounts would take minutes.
    """

    def __init__(self, mounts):
        self._by_dev = collections.defaultdict(list)   # (major, minor) -> mounts of that superblock
        self._by_root = collections.defaultdict(list)  # (filesystem, path in it) -> [(mount, root guess)]
        self._roots = {}                                # mount id -> _fs_roots(mount)
        self._majors = {}                               # mount id -> NFS major version
        self._learned = {}                              # (home id, mount id) -> the candidate kind that held
        self._derivations = {}                          # (filesystem, home's NFS major, path) -> _derived()
        self._points = sorted(set(m.mount_point for m in mounts))
        self._point_set = frozenset(self._points)
        self._homes = {}                                # (parent, major, minor) -> _parent_home()
        for mount in mounts:
            self._by_dev[(mount.major, mount.minor)].append(mount)
            self._roots[mount.mount_id] = _fs_roots(mount)
            fs = _filesystem(mount)
            for root in self._roots[mount.mount_id]:
                self._by_root[(fs, root)].append((mount, False))
                if is_nfs(mount):
                    self._majors[mount.mount_id] = _nfs_major(mount)
                    for suffix in _suffixes(root):
                        self._by_root[(fs, suffix)].append((mount, True))

    def mount_points_below(self, path):
        """Mount points strictly below path: a tree walk must not descend into them."""
        prefix = _normal(path).rstrip("/") + "/"
        below = []
        for point in self._points[bisect.bisect_right(self._points, prefix):]:  # "/" itself isn't below "/"
            if not point.startswith(prefix):
                break  # sorted: the paths below `path` form one run
            below.append(point)
        return below

    def routes(self, volume_path, stat=os.stat):
        """Every path on this host through which the directory at volume_path is reachable.

        volume_path comes first, the other routes follow sorted. A route is returned only after
        stat confirms it is a directory with the volume's inode number on the mount it was derived
        from; the BPF key of each route is volume_key(route). Only paths derived from mounts that
        can hold the volume are ever stat'ed: bind mounts of its filesystem and NFS mounts of its
        server. stat may hang on a dead NFS server: pass a wrapper with a timeout that raises
        TimeoutError (it propagates: a route that couldn't be checked can't be ruled out; other
        OSErrors mean "not a route"). volume_path should be canonical: the mount table speaks in
        canonical paths.
        """
        path, volume_stat, home, candidates = self._candidates(volume_path, stat)
        routes = set()
        for candidate, major, minor in sorted(set((c, m.major, m.minor) for m, c, kind in candidates)):
            if candidate != path and _is_same_directory(candidate, major, minor, volume_stat.st_ino, stat):
                routes.add(candidate)
        return [path] + sorted(routes)

    def keys(self, volume_path, stat=os.stat):
        """The BPF keys (dev, ino) of the volume's routes: volume_key() of each of routes(), cheaper.

        All routes on one superblock share a key: once one is confirmed, the other candidates on
        that superblock are not stat'ed; the superblock of volume_path itself needs none. The
        candidate kind that held for an earlier volume between the same two mounts goes first.
        """
        path, volume_stat, home, candidates = self._candidates(volume_path, stat)
        ino = volume_stat.st_ino
        keys = set([(kernel_dev(volume_stat.st_dev), ino)])
        tries = collections.defaultdict(list)  # (major, minor) -> [(not learned, candidate, mount, kind)]
        for mount, candidate, kind in candidates:
            if (mount.major, mount.minor) != _major_minor(volume_stat):
                learned = self._learned.get((home.mount_id, mount.mount_id)) == kind
                tries[(mount.major, mount.minor)].append((not learned, candidate, mount, kind))
        for (major, minor), dev_tries in tries.items():
            for dummy, candidate, mount, kind in sorted(dev_tries, key=lambda t: t[:2]):
                if _is_same_directory(candidate, major, minor, ino, stat):
                    keys.add(((major << 20) | minor, ino))
                    self._learned[(home.mount_id, mount.mount_id)] = kind
                    break
        return keys

    def _candidates(self, volume_path, stat):
        """(path, its stat, the mount holding it, [(mount, candidate path, kind)]): the paths below
        mounts of the volume's filesystem that may be the volume, found by looking up its paths
        inside the filesystem and their ancestors. kind says how a candidate was derived (keys()
        learns it)."""
        path = volume_path if _looks_normal(volume_path) else _normal(os.path.abspath(volume_path))
        volume_stat = stat(path)
        if not stat_module.S_ISDIR(volume_stat.st_mode):
            raise NotADirectoryError("volume %s is not a directory" % (path,))
        major, minor = _major_minor(volume_stat)
        parent, name = path.rsplit("/", 1)
        if name and path not in self._point_set:
            # Not a mount point: it shares its parent's mount, so its siblings share that lookup.
            home, fs, home_major, parent_fs_paths = self._parent_home(parent or "/", major, minor)
            if home is None:
                return path, volume_stat, None, []
            candidates = []
            for parent_fs_path in parent_fs_paths:
                candidates.extend(self._derived(fs, home_major, _join(parent_fs_path, name)))
            return path, volume_stat, home, candidates
        home = _mount_holding(path, major, minor, self._by_dev.get((major, minor), ()))
        if home is None:
            # st_dev isn't any superblock's s_dev (btrfs subvolume, overlayfs): nothing to derive from
            return path, volume_stat, None, []
        below_home = _relative(path, home.mount_point)
        home_major = self._majors.get(home.mount_id)
        candidates = []
        for volume_fs_path in set(_join(root, below_home) for root in self._roots[home.mount_id]):
            candidates.extend(self._derived(_filesystem(home), home_major, volume_fs_path))
        return path, volume_stat, home, candidates

    def _parent_home(self, parent, major, minor):
        """(mount holding parent's children on major:minor, its filesystem, its NFS major, parent's
        paths inside the filesystem), or (None, ...) when no mount of major:minor holds them."""
        key = (parent, major, minor)
        if key not in self._homes:
            home = _mount_holding(parent, major, minor, self._by_dev.get((major, minor), ()))
            if home is None:
                self._homes[key] = (None, None, None, ())
            else:
                below_home = _relative(parent, home.mount_point)
                self._homes[key] = (home, _filesystem(home), self._majors.get(home.mount_id),
                                    sorted(set(_join(root, below_home) for root in self._roots[home.mount_id])))
        return self._homes[key]

    def _derived(self, fs, home_major, fs_path):
        """[(mount, path, kind)] for every mount of filesystem `fs` whose root is fs_path or one of
        its ancestors: the path that would be fs_path through it. A path's list extends its
        parent's, which is kept: the siblings of one directory share it."""
        key = (fs, home_major, fs_path)
        if key in self._derivations:
            return self._derivations[key]
        parent, name = os.path.split(fs_path)
        derived = [(m, _join(p, name), kind) for m, p, kind in self._derived(fs, home_major, parent)] if name else []
        # NFSv4 paths may be relative to a pseudo-root (fsid=0) that NFSv3 paths don't know
        # about: the same directory is /srv/nfs/pv-a over v3 and /pv-a over v4. The prefix
        # can't be told from the mount table, so across versions each one is tried: leading
        # components stripped from the path, or from the mount's root (a root guess).
        variants = [fs_path] + (_suffixes(fs_path) if home_major else [])
        for stripped, variant in enumerate(variants):
            for mount, root_guess in self._by_root.get((fs, variant), ()):
                guessed = bool(stripped) + root_guess
                across = self._majors.get(mount.mount_id, home_major) != home_major
                if guessed == 0 or (guessed == 1 and across):
                    derived.append((mount, mount.mount_point, (stripped, variant)))
        self._derivations[key] = derived
        return derived


def _filesystem(mount):
    """What all mounts of one filesystem share: their NFS server, else their superblock."""
    server = split_nfs_source(mount.source) if is_nfs(mount) else None
    return ("nfs", server[0]) if server else ("dev", mount.major, mount.minor)


def _major_minor(st):
    return os.major(st.st_dev), os.minor(st.st_dev)


def _nfs_major(mount):
    """The NFS major version of a mount: from vers=, else 4 for fstype nfs4, else 3."""
    match = re.search(r"(?:^|,)vers=(\d+)", mount.super_options)
    if match:
        return int(match.group(1))
    return 4 if mount.fstype == "nfs4" else 3


def _suffixes(path):
    """The path with one, two, ... leading components removed: "/a/b" gives ["/b", "/"]."""
    parts = path.strip("/").split("/") if path != "/" else []
    return ["/" + "/".join(parts[index:]) for index in range(1, len(parts) + 1)]


def _is_same_directory(candidate, major, minor, ino, stat):
    # Candidates include guesses (both readings of an NFS root, NFSv4 pseudo-root prefixes) and
    # may name an unrelated directory or one on an overmounting filesystem: require the inode
    # number (for NFS the server's fileid, equal across superblocks) and the dev of the mount.
    try:
        st = stat(candidate)
    except TimeoutError:
        raise
    except OSError:
        return False
    return (stat_module.S_ISDIR(st.st_mode) and st.st_ino == ino
            and os.major(st.st_dev) == major and os.minor(st.st_dev) == minor)


def _mount_holding(path, major, minor, mounts):
    """The visible mount of superblock major:minor with the longest mount point at or above path."""
    best = []
    best_length = -1
    for mount in mounts:
        if (mount.major, mount.minor) != (major, minor) or _relative(path, mount.mount_point) is None:
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


def _fs_roots(mount):
    """Where the mount's root lies inside its filesystem; for NFS, the path on the server.

    The kernel prints "/" as the root of every NFS mount (nfs_show_path) and the server path of
    the mount's root dentry as its source (nfs_show_devname), also for sub-path mounts sharing a
    superblock and for bind mounts of NFS subdirectories (seen on 6.1). Should a kernel print the
    sub-path in root instead, source + root is the answer: both are returned, stat decides.
    """
    if not is_nfs(mount):
        return (_normal(mount.root),)
    server = split_nfs_source(mount.source)
    if server is None:
        return (_normal(mount.root),)
    roots = [server[1]]
    if _normal(mount.root) != "/":
        roots.append(_join(server[1], _normal(mount.root).lstrip("/")))
    return tuple(roots)


def _normal(path):
    # Lexical only: resolving symlinks would stat and could hang on a dead server.
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")  # POSIX keeps a leading "//"; the kernel never prints one
    return normal


def _looks_normal(path):
    """True for an absolute path that normpath would leave alone (others take the slow way)."""
    return path.startswith("/") and "//" not in path and "/." not in path and (path == "/" or not path.endswith("/"))


def _relative(path, ancestor):
    """The part of path below ancestor ("" when equal), or None when ancestor isn't at or above it."""
    if ancestor == "/":
        return path.lstrip("/")
    if path == ancestor:
        return ""
    if path.startswith(ancestor + "/"):
        return path[len(ancestor) + 1:]
    return None


def _join(base, rest):
    return base if not rest else os.path.join(base, rest)
