# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import parse_mountinfo
from ansible_collections.bpfquota.nfs.plugins.module_utils.nfsfs import NfsSuper
from ansible_collections.bpfquota.nfs.plugins.module_utils.placement import (
    ROOT_IN,
    Home,
    Placement,
    View,
    nfs_views,
    place,
)

# Options as recorded in the test-bed VM (Debian 12, 6.1), which exports /srv/nfs with fsid=0
# (the NFSv4 pseudo-root): over v3 a directory is 127.0.0.1:/srv/nfs/sub, over v4 127.0.0.1:/sub.
OPTS4 = ("rw,vers=4.2,rsize=262144,wsize=262144,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
         "clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1")
OPTS3 = ("rw,vers=3,rsize=262144,wsize=262144,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
         "mountaddr=127.0.0.1,mountvers=3,mountport=45272,mountproto=udp,local_lock=none,addr=127.0.0.1")
KUBELET = "/var/lib/kubelet/pods/%s/volumes/kubernetes.io~nfs/%s"

V4 = NfsSuper(dev=(0, 42), version=4, server="7f000001", fsid=(0x10, 0x1))
V3 = NfsSuper(dev=(0, 41), version=3, server="7f000001", fsid=(0x20, 0x1))
OTHER = NfsSuper(dev=(0, 55), version=4, server="0a000009", fsid=(0x5, 0x5))


def nfs_super(dev, like):
    """Another superblock (nosharecache) of the filesystem of `like`."""
    return like._replace(dev=dev)


def line(mount_id, dev, mount_point, source, opts=OPTS4):
    """A mountinfo line of an NFS mount as the kernel prints it (root "/", server path in source)."""
    fstype = "nfs" if "vers=3" in opts else "nfs4"
    return "%d 27 %d:%d / %s rw,relatime shared:%d - %s %s %s" % (
        mount_id, dev[0], dev[1], mount_point.replace(" ", "\\040"), mount_id, fstype, source, opts)


def views(*lines, **kwargs):
    """Views of this namespace (access = mount point), or under prefix (another namespace)."""
    prefix = kwargs.get("prefix", "")
    return [View(m, prefix + m.mount_point) for m in parse_mountinfo("\n".join(lines))]


class FakeStat:
    """An injected stat: path -> (dev, ino) of a directory, or an exception to raise."""

    def __init__(self, entries):
        self.entries = entries
        self.calls = []

    def __call__(self, path):
        self.calls.append(path)
        entry = self.entries.get(path)
        if entry is None:
            raise FileNotFoundError(2, "No such file or directory", path)
        if isinstance(entry, BaseException):
            raise entry
        (major, minor), ino = entry
        return os.stat_result((stat.S_IFDIR | 0o755, ino, os.makedev(major, minor), 2, 0, 0, 4096, 0, 0, 0))


PV_A, PV_B = KUBELET % ("p1", "pv-a"), KUBELET % ("p1", "pv-b")
KUBELET_LINES = [
    line(101, V4.dev, PV_A, "127.0.0.1:/pv-a"),
    line(102, V4.dev, PV_B, "127.0.0.1:/pv-b"),
]
KUBELET_STAT = {PV_A: (V4.dev, 100), PV_B: (V4.dev, 200)}
KUBELET_HOMES = [Home(1, PV_A), Home(2, PV_B)]


def test_kubelet_per_pv_mounts_need_no_extra_key():
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES), FakeStat(KUBELET_STAT))
    assert result == Placement(groups={V4.fsid: 1}, keys={(1, 100): 1, (1, 200): 2}, unplaced=[])


def test_two_pods_of_one_pv_share_the_superblock():
    pod2 = KUBELET % ("p2", "pv-a")
    fs = FakeStat(dict(KUBELET_STAT, **{pod2: (V4.dev, 100)}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, pod2, "127.0.0.1:/pv-a")]), fs)
    assert result.keys == {(1, 100): 1, (1, 200): 2}
    assert result.unplaced == []
    assert pod2 not in fs.calls  # one root dentry: reached through the first view


def test_two_pods_of_one_pv_with_nosharecache():
    pod2, sb2 = KUBELET % ("p2", "pv-a"), nfs_super((0, 43), V4)
    fs = FakeStat(dict(KUBELET_STAT, **{pod2: (sb2.dev, 100)}))
    result = place(KUBELET_HOMES, {V4.dev: V4, sb2.dev: sb2},
                   views(*KUBELET_LINES + [line(103, sb2.dev, pod2, "127.0.0.1:/pv-a")]), fs)
    assert result == Placement(groups={V4.fsid: 1}, keys={(1, 100): 1, (1, 200): 2}, unplaced=[])


def test_subdirectory_mount_inside_a_volume():
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/sub": (V4.dev, 150)}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/sub", "127.0.0.1:/pv-b/data/x")]), fs)
    assert result.keys == {(1, 100): 1, (1, 200): 2, (1, 150): ROOT_IN | 2}
    assert result.unplaced == []


def test_mount_of_the_whole_export_lies_in_no_volume():
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/all": (V4.dev, 723)}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/all", "127.0.0.1:/")]), fs)
    assert result.keys[(1, 723)] == ROOT_IN


def test_sibling_directory_of_one_fsid_and_version_lies_in_no_volume():
    # Plain paths are authoritative within one fsid and version: /other is beside /pv-a and /pv-b.
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/other": (V4.dev, 300)}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/other", "127.0.0.1:/other")]), fs)
    assert result.keys[(1, 300)] == ROOT_IN
    assert result.unplaced == []


def test_unrelated_server_has_its_own_group():
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/x": (OTHER.dev, 100)}))
    result = place(KUBELET_HOMES, {V4.dev: V4, OTHER.dev: OTHER},
                   views(*KUBELET_LINES + [line(103, OTHER.dev, "/mnt/x", "10.0.0.9:/export")]), fs)
    # numbered by smallest fsid: (5, 5) before (0x10, 1)
    assert result.groups == {OTHER.fsid: 1, V4.fsid: 2}
    assert result.keys == {(2, 100): 1, (2, 200): 2, (1, 100): ROOT_IN}  # same ino, other group


def test_superblock_without_views_gets_a_group_but_no_key():
    result = place(KUBELET_HOMES, {V4.dev: V4, OTHER.dev: OTHER}, views(*KUBELET_LINES), FakeStat(KUBELET_STAT))
    assert result.groups == {OTHER.fsid: 1, V4.fsid: 2}
    assert result.keys == {(2, 100): 1, (2, 200): 2}


# The VM's layout: volume /srv/nfs/sub/pv-a (ino 17339) in /srv/nfs/sub (17338) in /srv/nfs (723).
VM_STAT = {
    "/mnt/nfs3": (V3.dev, 723), "/mnt/nfs3/sub": (V3.dev, 17338), "/mnt/nfs3/sub/pv-a": (V3.dev, 17339),
    "/mnt/A": (V4.dev, 723), "/mnt/A/sub": (V4.dev, 17338), "/mnt/A/sub/pv-a": (V4.dev, 17339),
    "/mnt/P": ((0, 45), 17339), "/mnt/O": (V3.dev, 900),
}
NFS3 = line(156, V3.dev, "/mnt/nfs3", "127.0.0.1:/srv/nfs", OPTS3)
NFS4_A = line(167, V4.dev, "/mnt/A", "127.0.0.1:/")


def test_v3_proven_by_a_home_below_its_root_across_the_pseudo_root():
    # Home over v4 (/sub/pv-a); the v3 root /srv/nfs is above it once "/srv/nfs" is stripped:
    # /mnt/nfs3/sub/pv-a must be the home's fileid on the v3 superblock.
    result = place([Home(7, "/mnt/A/sub/pv-a")], {V4.dev: V4, V3.dev: V3}, views(NFS4_A, NFS3), FakeStat(VM_STAT))
    assert result.groups == {V4.fsid: 1, V3.fsid: 1}
    assert result.keys == {(1, 17339): 7, (1, 723): ROOT_IN}
    assert result.unplaced == []


def test_v4_proven_by_its_root_below_a_home_across_the_pseudo_root():
    # Home over v3 (/srv/nfs/sub); the v4 root /sub/pv-a lies below it once "/srv/nfs" is
    # stripped: /mnt/nfs3/sub/pv-a must be /mnt/P's fileid on the home's superblock.
    sb = NfsSuper(dev=(0, 45), version=4, server="7f000001", fsid=(0x30, 0))
    lines = (NFS3, line(170, sb.dev, "/mnt/P", "127.0.0.1:/sub/pv-a"))
    result = place([Home(3, "/mnt/nfs3/sub")], {V3.dev: V3, sb.dev: sb}, views(*lines), FakeStat(VM_STAT))
    assert result.groups == {V3.fsid: 1, sb.fsid: 1}
    assert result.keys == {(1, 17338): 3, (1, 723): ROOT_IN, (1, 17339): ROOT_IN | 3}
    assert result.unplaced == []


def test_fileid_that_does_not_match_proves_nothing():
    fs = FakeStat(dict(VM_STAT, **{"/mnt/nfs3/sub/pv-a": (V3.dev, 99)}))
    result = place([Home(7, "/mnt/A/sub/pv-a")], {V4.dev: V4, V3.dev: V3}, views(NFS4_A, NFS3), fs)
    assert result.groups == {V4.fsid: 1, V3.fsid: 2}  # a filesystem of its own, without volumes
    assert result.keys == {(1, 17339): 7, (1, 723): ROOT_IN, (2, 723): ROOT_IN}


def test_unprovable_cross_version_sibling_is_unplaced():
    lines = (NFS4_A, NFS3, line(160, V3.dev, "/mnt/O", "127.0.0.1:/srv/nfs/other", OPTS3))
    result = place([Home(7, "/mnt/A/sub/pv-a")], {V4.dev: V4, V3.dev: V3}, views(*lines), FakeStat(VM_STAT))
    assert result.keys == {(1, 17339): 7, (1, 723): ROOT_IN}
    ((dev, access, reason),) = result.unplaced
    assert (dev, access) == (V3.dev, "/mnt/O")
    assert "127.0.0.1:/srv/nfs/other" in reason and "/mnt/O" in reason
    assert "can't tell where it lies relative to the volumes of its filesystem" in reason


def test_failed_stat_leaves_the_root_unplaced():
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/sub": PermissionError(13, "Permission denied", "/mnt/sub")}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/sub", "127.0.0.1:/pv-b/x")]), fs)
    assert result.keys == {(1, 100): 1, (1, 200): 2}
    ((dev, access, reason),) = result.unplaced
    assert (dev, access) == (V4.dev, "/mnt/sub")
    assert "127.0.0.1:/pv-b/x" in reason and "/mnt/sub" in reason


def test_root_that_is_not_a_directory_is_unplaced():
    class FileStat(FakeStat):
        def __call__(self, path):
            st = FakeStat.__call__(self, path)
            if path == "/mnt/f":
                return os.stat_result((stat.S_IFREG | 0o644,) + tuple(st)[1:])
            return st
    fs = FileStat(dict(KUBELET_STAT, **{"/mnt/f": (V4.dev, 5)}))
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/f", "127.0.0.1:/f")]), fs)
    assert [u[1] for u in result.unplaced] == ["/mnt/f"]


def test_timeout_propagates():
    fs = FakeStat(dict(KUBELET_STAT, **{"/mnt/sub": TimeoutError("stat timed out")}))
    with pytest.raises(TimeoutError):
        place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES + [line(103, V4.dev, "/mnt/sub", "127.0.0.1:/pv-b/x")]), fs)


def test_home_not_on_nfs():
    fs = FakeStat(dict(KUBELET_STAT, **{"/srv/local": ((254, 0), 5)}))
    with pytest.raises(ValueError) as error:
        place([Home(9, "/srv/local")], {V4.dev: V4}, views(*KUBELET_LINES), fs)
    assert str(error.value) == "volume /srv/local is not on an NFS mount (no NFS superblock 254:0)"


def test_home_on_no_mount_of_this_namespace():
    with pytest.raises(ValueError) as error:
        place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES, prefix="/proc/42/root"), FakeStat(KUBELET_STAT))
    assert PV_A in str(error.value)


def test_group_numbers_are_deterministic():
    sb3, sb4 = NfsSuper((0, 60), 4, "0a000001", (9, 0)), NfsSuper((0, 61), 4, "0a000002", (1, 7))
    supers = {V4.dev: V4, sb3.dev: sb3, OTHER.dev: OTHER, sb4.dev: sb4}
    first = place(KUBELET_HOMES, supers, views(*KUBELET_LINES), FakeStat(KUBELET_STAT))
    again = place(KUBELET_HOMES[::-1], dict(reversed(list(supers.items()))), views(*KUBELET_LINES[::-1]),
                  FakeStat(KUBELET_STAT))
    assert first == again
    assert first.groups == {(1, 7): 1, (5, 5): 2, (9, 0): 3, (0x10, 1): 4}


def test_view_in_another_mount_namespace():
    access = "/proc/4242/root/mnt/sub"
    fs = FakeStat(dict(KUBELET_STAT, **{access: (V4.dev, 150)}))
    other_ns = views(line(103, V4.dev, "/mnt/sub", "127.0.0.1:/pv-a/data"), prefix="/proc/4242/root")
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES) + other_ns, fs)
    assert result.keys[(1, 150)] == ROOT_IN | 1
    assert "/mnt/sub" not in fs.calls


def test_view_in_another_namespace_unplaced_names_its_access():
    access = "/proc/4242/root/mnt/sub"
    other_ns = views(line(103, V4.dev, "/mnt/sub", "127.0.0.1:/pv-a/data"), prefix="/proc/4242/root")
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*KUBELET_LINES) + other_ns, FakeStat(KUBELET_STAT))
    assert [u[:2] for u in result.unplaced] == [(V4.dev, access)]


def test_views_of_unknown_superblocks_are_ignored():
    lines = KUBELET_LINES + [line(103, (0, 77), "/mnt/gone", "127.0.0.1:/gone")]
    result = place(KUBELET_HOMES, {V4.dev: V4}, views(*lines), FakeStat(KUBELET_STAT))
    assert result == Placement(groups={V4.fsid: 1}, keys={(1, 100): 1, (1, 200): 2}, unplaced=[])


# nfs_views() on a fake /proc: ns/mnt files stand in for the namespace links (a hard link is
# the same namespace).
ROOT_LINE = "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw"


def make_proc(tmp_path, pids):
    """pids: {name: (namespace name, mountinfo text or None)}."""
    namespaces = tmp_path / "namespaces"
    namespaces.mkdir()
    for name, (ns, text) in pids.items():
        (tmp_path / name / "ns").mkdir(parents=True)
        ns_file = namespaces / ns
        if not ns_file.exists():
            ns_file.write_text(ns)
        os.link(str(ns_file), str(tmp_path / name / "ns" / "mnt"))
        if text is not None:
            (tmp_path / name / "mountinfo").write_text(text)
    return str(tmp_path)


def test_nfs_views_of_every_namespace(tmp_path):
    own = "\n".join([ROOT_LINE, line(60, (0, 52), "/mnt/a", "127.0.0.1:/srv/nfs")]) + "\n"
    ns_b = "\n".join([ROOT_LINE, line(70, (0, 53), "/data", "127.0.0.1:/pv-b"), line(71, (0, 53), "/", "127.0.0.1:/r")])
    ns_c = "\n".join([ROOT_LINE, line(80, (0, 54), "/c", "10.0.0.9:/c", OPTS3)])
    proc = make_proc(tmp_path, {
        "self": ("own", own), "1": ("own", own),
        "100": ("b", ns_b), "20": ("c", ns_c), "7": ("b", ns_b),     # 7 and 100 share namespace b
        "5": ("d", None),                                             # exited: no mountinfo
        "fs": ("own", None),                                          # not a pid
    })
    result = nfs_views(proc)
    assert [(v.mount.mount_id, v.access) for v in result] == [
        (60, "/mnt/a"),
        (70, proc + "/7/root/data"), (71, proc + "/7/root"),
        (80, proc + "/20/root/c"),
    ]
    assert all(isinstance(v, View) for v in result)


def test_nfs_views_skips_a_pid_that_vanishes(tmp_path):
    own = ROOT_LINE + "\n"
    proc = make_proc(tmp_path, {"self": ("own", own), "3": ("b", None),
                                "4": ("b", line(70, (0, 53), "/data", "127.0.0.1:/pv-b"))})
    assert [(v.mount.mount_id, v.access) for v in nfs_views(proc)] == [(70, proc + "/4/root/data")]


def test_root_told_through_another_superblock_of_its_group_is_placed():
    # /mnt/O (v3) can't be told by itself, but the same directory (fileid 900) reached
    # through a v4 superblock of the home's fsid (/other) is beside the volume: placed.
    lines = (NFS4_A, NFS3, line(160, V3.dev, "/mnt/O", "127.0.0.1:/srv/nfs/other", OPTS3),
             line(161, V4.dev, "/mnt/O4", "127.0.0.1:/other"))
    fs = FakeStat(dict(VM_STAT, **{"/mnt/O4": (V4.dev, 900)}))
    result = place([Home(7, "/mnt/A/sub/pv-a")], {V4.dev: V4, V3.dev: V3}, views(*lines), fs)
    assert result.keys == {(1, 17339): 7, (1, 723): ROOT_IN, (1, 900): ROOT_IN}
    assert result.unplaced == []
