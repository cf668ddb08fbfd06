# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import os
import stat

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import (
    MountTable,
    kernel_dev,
    parse_mountinfo,
    read_mountinfo,
    read_mountinfo_text,
    split_nfs_source,
    top_fstype,
    volume_key,
)


def volume_routes(volume_path, mounts, stat=os.stat):
    return MountTable(mounts).routes(volume_path, stat)


# Recorded on this project's dev host (6.18): a bind mount of a directory with a space in its
# name, a shared tmpfs with a space in its source, and a bind of it below itself.
REAL_LINES = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534\n"
    "44 27 254:0 /tmp/mi.MIGt/src\\040dir /tmp/mi.MIGt/b rw,relatime - ext4 /dev/vda "
    "rw,discard,resv_strict,resuid=65534,resgid=65534\n"
    "45 27 0:40 / /tmp/mi.MIGt/t rw,relatime shared:1 - tmpfs my\\040tmpfs rw,size=1024k\n"
    "46 45 0:40 / /tmp/mi.MIGt/t/x rw,relatime shared:1 - tmpfs my\\040tmpfs rw,size=1024k"
)

# Recorded in the test-bed VM (Debian 12, kernel 6.1.0-50-amd64) exporting /srv/nfs with fsid=0
# (the NFSv4 pseudo-root): nfs3 = v3 of /srv/nfs, nfs4 = v4 of /, A = v4 of / again, B = v4 of
# /sub, C and D = the same with nosharecache, E = v3 of /srv/nfs/sub, F = bind of /mnt/A/sub,
# G = v4 of "/with space". The root field is "/" for every NFS mount (even the bind mount F);
# the source carries the server path of the mount's root; sub-path mounts share the superblock
# (0:42) unless nosharecache; st_ino is the server's inode number (17339) on every mount.
VM_OPTS4 = ("rw,vers=4.2,rsize=262144,wsize=262144,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
            "clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1")
VM_OPTS4_NOSHARE = VM_OPTS4.replace(",hard,", ",hard,nosharecache,")
VM_OPTS3 = ("rw,vers=3,rsize=262144,wsize=262144,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
            "mountaddr=127.0.0.1,mountvers=3,mountport=45272,mountproto=udp,local_lock=none,addr=127.0.0.1")
VM_NFS_LINES = (
    "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "39 23 0:31 / /proc/fs/nfsd rw,relatime shared:18 - nfsd nfsd rw\n"
    "156 27 0:41 / /mnt/nfs3 rw,relatime shared:63 - nfs 127.0.0.1:/srv/nfs " + VM_OPTS3 + "\n"
    "162 27 0:42 / /mnt/nfs4 rw,relatime shared:82 - nfs4 127.0.0.1:/ " + VM_OPTS4 + "\n"
    "167 27 0:42 / /mnt/A rw,relatime shared:85 - nfs4 127.0.0.1:/ " + VM_OPTS4 + "\n"
    "172 27 0:42 / /mnt/B rw,relatime shared:88 - nfs4 127.0.0.1:/sub " + VM_OPTS4 + "\n"
    "177 27 0:43 / /mnt/C rw,relatime shared:91 - nfs4 127.0.0.1:/ " + VM_OPTS4_NOSHARE + "\n"
    "182 27 0:44 / /mnt/D rw,relatime shared:94 - nfs4 127.0.0.1:/sub " + VM_OPTS4_NOSHARE + "\n"
    "161 27 0:41 / /mnt/E rw,relatime shared:97 - nfs 127.0.0.1:/srv/nfs/sub " + VM_OPTS3 + "\n"
    "191 27 0:42 / /mnt/F rw,relatime shared:85 - nfs4 127.0.0.1:/sub " + VM_OPTS4 + "\n"
    "197 27 0:42 / /mnt/G rw,relatime shared:102 - nfs4 127.0.0.1:/with\\040space " + VM_OPTS4 + "\n"
)
VM_PV_A = {  # recorded stat (dev, ino) of /srv/nfs/sub/pv-a and its parents through each mount
    "/mnt/nfs3/sub/pv-a": (0, 41, 17339), "/mnt/E/pv-a": (0, 41, 17339),
    "/mnt/nfs4/sub/pv-a": (0, 42, 17339), "/mnt/A/sub/pv-a": (0, 42, 17339),
    "/mnt/B/pv-a": (0, 42, 17339), "/mnt/F/pv-a": (0, 42, 17339),
    "/mnt/C/sub/pv-a": (0, 43, 17339), "/mnt/D/pv-a": (0, 44, 17339),
    "/mnt/nfs3": (0, 41, 723), "/mnt/nfs3/sub": (0, 41, 17338), "/mnt/E": (0, 41, 17338),
    "/mnt/nfs4": (0, 42, 723), "/mnt/nfs4/sub": (0, 42, 17338), "/mnt/A": (0, 42, 723),
    "/mnt/B": (0, 42, 17338), "/mnt/F": (0, 42, 17338), "/mnt/C": (0, 43, 723),
    "/mnt/D": (0, 44, 17338), "/srv/nfs/sub/pv-a": (254, 0, 17339),
}

# Synthetic NFS lines in the same format, for cases the VM didn't show: another server, an
# export path beside the volume's, a v3 mount without an NFSv4 pseudo-root.
NFS_OPTS = ("rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,"
            "sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1")
NFS_LINES = (
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "60 27 0:52 / /mnt/a rw,relatime shared:40 - nfs4 127.0.0.1:/srv/nfs " + NFS_OPTS + "\n"
    "61 27 0:52 / /mnt/b rw,relatime shared:41 - nfs4 127.0.0.1:/srv/nfs/sub " + NFS_OPTS + "\n"
    "62 27 0:53 / /mnt/c rw,relatime shared:42 - nfs4 127.0.0.1:/srv/nfs " + NFS_OPTS + ",nosharecache\n"
    "63 27 0:54 / /mnt/d rw,relatime shared:43 - nfs4 127.0.0.1:/srv/nfs/sub/pv-a " + NFS_OPTS + "\n"
    "64 27 0:55 / /mnt/other rw,relatime shared:44 - nfs4 10.0.0.9:/srv/nfs " + NFS_OPTS + "\n"
    "65 27 0:56 / /mnt/v3 rw,relatime shared:45 - nfs 127.0.0.1:/srv/nfs/sub "
    "rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
    "mountaddr=127.0.0.1,mountvers=3,mountport=20048,mountproto=udp,local_lock=none,addr=127.0.0.1\n"
    "66 27 0:52 / /mnt/elsewhere rw,relatime shared:46 - nfs4 127.0.0.1:/srv/nfs/other " + NFS_OPTS + "\n"
)

FakeStat = collections.namedtuple("FakeStat", "st_mode st_ino st_dev")
DIR = stat.S_IFDIR | 0o755


class FakeFs:
    """An injected stat: path -> (major, minor, ino) of a directory; records every call."""

    def __init__(self, dirs):
        self.dirs = dirs
        self.calls = []

    def __call__(self, path):
        self.calls.append(path)
        if path not in self.dirs:
            raise FileNotFoundError(2, "No such file or directory", path)
        major, minor, ino = self.dirs[path]
        return FakeStat(DIR, ino, os.makedev(major, minor))


def test_kernel_dev_matches_the_kernel_encoding():
    assert kernel_dev(os.makedev(254, 0)) == 254 << 20
    assert kernel_dev(os.makedev(0, 52)) == 52
    assert kernel_dev(os.makedev(259, 300)) == (259 << 20) | 300  # minor above 255


def test_parse_real_lines_with_escapes_and_optional_fields():
    mounts = parse_mountinfo(REAL_LINES)
    assert len(mounts) == 4
    bind = mounts[1]
    assert (bind.mount_id, bind.parent_id, bind.major, bind.minor) == (44, 27, 254, 0)
    assert bind.root == "/tmp/mi.MIGt/src dir"
    assert bind.mount_point == "/tmp/mi.MIGt/b"
    assert bind.options == "rw,relatime"
    assert bind.optional == ()
    assert (bind.fstype, bind.source) == ("ext4", "/dev/vda")
    assert bind.super_options == "rw,discard,resv_strict,resuid=65534,resgid=65534"
    tmpfs = mounts[2]
    assert tmpfs.optional == ("shared:1",)
    assert tmpfs.source == "my tmpfs"
    assert tmpfs.super_options == "rw,size=1024k"


def test_parse_several_optional_fields_and_all_escapes():
    line = ("100 27 0:70 /a\\011b\\012c\\134d /mnt/x\\040y rw shared:5 master:2 propagate_from:3 "
            "unbindable - fuse.sshfs me@host:/srv rw,user_id=0")
    (mount,) = parse_mountinfo(line)
    assert mount.root == "/a\tb\nc\\d"
    assert mount.mount_point == "/mnt/x y"
    assert mount.optional == ("shared:5", "master:2", "propagate_from:3", "unbindable")
    assert mount.fstype == "fuse.sshfs"
    assert mount.source == "me@host:/srv"


def test_parse_nfs_lines():
    mounts = parse_mountinfo(NFS_LINES)
    nfs = mounts[1]
    assert (nfs.major, nfs.minor, nfs.root, nfs.mount_point) == (0, 52, "/", "/mnt/a")
    assert nfs.fstype == "nfs4"
    assert nfs.source == "127.0.0.1:/srv/nfs"
    assert nfs.super_options.startswith("rw,vers=4.2,")
    assert mounts[6].fstype == "nfs"


def test_parse_rejects_a_line_without_separator():
    with pytest.raises(ValueError):
        parse_mountinfo("27 1 254:0 / / rw,relatime ext4 /dev/vda rw")


def test_a_mount_point_that_is_not_utf8_is_read_as_os_fsdecode_would(tmp_path):
    # One decoding for every reader: the sync stamp hashes this text, the route lookup parses it.
    path = tmp_path / "mountinfo"
    path.write_bytes(b"27 1 254:0 / / rw - ext4 /dev/vda rw\n"
                     b"44 27 0:40 / /mnt/caf\xe9 rw - tmpfs tmpfs rw\n")
    text = read_mountinfo_text(str(path))
    assert text.encode("utf-8", "surrogateescape") == path.read_bytes()
    assert [m.mount_point for m in read_mountinfo(str(path))] == ["/", os.fsdecode(b"/mnt/caf\xe9")]


def test_top_fstype_is_the_last_of_the_mounts_stacked_on_a_point():
    mounts = parse_mountinfo("44 23 0:40 / /sys/fs/bpf rw - tmpfs tmpfs rw\n"
                             "45 44 0:41 / /sys/fs/bpf rw - bpf bpf rw,mode=700\n")
    assert top_fstype(mounts, "/sys/fs/bpf") == "bpf"
    assert top_fstype(mounts, "/sys/fs") is None


def test_split_nfs_source():
    assert split_nfs_source("127.0.0.1:/srv/nfs") == ("127.0.0.1", "/srv/nfs")
    assert split_nfs_source("[fd00::1]:/export/pv-a/") == ("fd00::1", "/export/pv-a")
    assert split_nfs_source("server:") == ("server", "/")
    assert split_nfs_source("/dev/vda") is None


def test_mount_points_below():
    mounts = parse_mountinfo(NFS_LINES)
    table = MountTable(mounts)
    assert table.mount_points_below("/mnt") == ["/mnt/a", "/mnt/b", "/mnt/c", "/mnt/d",
                                                "/mnt/elsewhere", "/mnt/other", "/mnt/v3"]
    assert table.mount_points_below("/mnt/a") == table.mount_points_below("/mnt/a/") == []
    assert table.mount_points_below("/") == sorted(m.mount_point for m in mounts if m.mount_point != "/")


def nfs_host():
    """The volume /mnt/a/sub/pv-a on server path /srv/nfs/sub/pv-a (fileid 500) and its routes."""
    return FakeFs({
        "/mnt/a/sub/pv-a": (0, 52, 500),
        "/mnt/b/pv-a": (0, 52, 500),        # same superblock, mounted at the sub-path
        "/mnt/c/sub/pv-a": (0, 53, 500),    # nosharecache: other dev, same fileid
        "/mnt/d": (0, 54, 500),             # per-PV mount (csi-driver-nfs style)
        "/mnt/v3/pv-a": (0, 56, 500),       # NFSv3 mount of the same server
        "/mnt/other/sub/pv-a": (0, 55, 500),  # other server: must not even be looked at
    })


def test_parse_recorded_vm_nfs_lines():
    mounts = {m.mount_point: m for m in parse_mountinfo(VM_NFS_LINES)}
    assert all(m.root == "/" for m in mounts.values())
    assert mounts["/mnt/G"].source == "127.0.0.1:/with space"
    assert split_nfs_source(mounts["/mnt/F"].source) == ("127.0.0.1", "/sub")
    assert (mounts["/mnt/B"].major, mounts["/mnt/B"].minor) == (0, 42)
    assert "nosharecache" in mounts["/mnt/D"].super_options


@pytest.mark.parametrize("volume", ["/mnt/nfs3/sub/pv-a", "/mnt/nfs4/sub/pv-a", "/mnt/D/pv-a", "/mnt/E/pv-a",
                                    "/mnt/F/pv-a"])
def test_recorded_vm_routes_across_nfs3_nfs4_pseudo_root_and_nosharecache(volume):
    # The answer volume_routes gave in the VM itself, from each of the volume's mounts.
    every_route = ["/mnt/A/sub/pv-a", "/mnt/B/pv-a", "/mnt/C/sub/pv-a", "/mnt/D/pv-a", "/mnt/E/pv-a",
                   "/mnt/F/pv-a", "/mnt/nfs3/sub/pv-a", "/mnt/nfs4/sub/pv-a"]
    routes = volume_routes(volume, parse_mountinfo(VM_NFS_LINES), stat=FakeFs(VM_PV_A))
    assert routes == [volume] + [route for route in every_route if route != volume]


def test_routes_over_shared_and_separate_nfs_superblocks():
    fs = nfs_host()
    routes = volume_routes("/mnt/a/sub/pv-a", parse_mountinfo(NFS_LINES), stat=fs)
    assert routes == ["/mnt/a/sub/pv-a", "/mnt/b/pv-a", "/mnt/c/sub/pv-a", "/mnt/d", "/mnt/v3/pv-a"]
    # the other server's mount and the unrelated export path can't hold the volume: never stat'ed
    assert not [path for path in fs.calls if path.startswith(("/mnt/other", "/mnt/elsewhere"))]


def test_routes_found_from_the_per_pv_mount_too():
    fs = nfs_host()
    routes = volume_routes("/mnt/d", parse_mountinfo(NFS_LINES), stat=fs)
    assert routes == ["/mnt/d", "/mnt/a/sub/pv-a", "/mnt/b/pv-a", "/mnt/c/sub/pv-a", "/mnt/v3/pv-a"]


def test_route_needs_the_same_inode_on_the_mount_it_came_from():
    fs = nfs_host()
    fs.dirs["/mnt/b/pv-a"] = (0, 52, 777)      # some other directory
    fs.dirs["/mnt/c/sub/pv-a"] = (0, 99, 500)  # something mounted over it
    del fs.dirs["/mnt/v3/pv-a"]                # gone
    routes = volume_routes("/mnt/a/sub/pv-a", parse_mountinfo(NFS_LINES), stat=fs)
    assert routes == ["/mnt/a/sub/pv-a", "/mnt/d"]


def test_a_route_check_that_times_out_is_not_taken_for_no_route():
    fs = nfs_host()

    def hanging_on_c(path):
        if path.startswith("/mnt/c/"):
            raise TimeoutError("stat %s timed out" % (path,))
        return fs(path)

    with pytest.raises(TimeoutError):
        volume_routes("/mnt/a/sub/pv-a", parse_mountinfo(NFS_LINES), stat=hanging_on_c)


def test_nfs_root_printed_as_sub_path_is_handled_too():
    # Should a kernel print the sub-path in root and the export in source, the route still resolves.
    text = ("60 27 0:52 / /mnt/a rw - nfs4 127.0.0.1:/srv/nfs rw\n"
            "61 27 0:52 /sub /mnt/b rw - nfs4 127.0.0.1:/srv/nfs rw\n")
    fs = FakeFs({"/mnt/a/sub/pv-a": (0, 52, 500), "/mnt/b/pv-a": (0, 52, 500)})
    assert volume_routes("/mnt/a/sub/pv-a", parse_mountinfo(text), stat=fs) == [
        "/mnt/a/sub/pv-a", "/mnt/b/pv-a"]


def test_bind_mount_routes_from_the_root_field():
    text = ("27 1 254:0 / / rw - ext4 /dev/vda rw\n"
            "40 27 254:0 /srv/export /mnt/bind-export rw - ext4 /dev/vda rw\n"
            "41 27 254:0 /srv/export/pv-a /mnt/bind-pv rw - ext4 /dev/vda rw\n"
            "42 27 254:0 /srv/export/pv-a/data /mnt/below rw - ext4 /dev/vda rw\n"
            "43 27 254:0 /srv/other /mnt/sibling rw - ext4 /dev/vda rw\n"
            "44 27 0:40 / /mnt/tmp rw - tmpfs tmpfs rw\n")
    fs = FakeFs({"/srv/export/pv-a": (254, 0, 12), "/mnt/bind-export/pv-a": (254, 0, 12),
                 "/mnt/bind-pv": (254, 0, 12)})
    routes = volume_routes("/srv/export/pv-a/", parse_mountinfo(text), stat=fs)
    assert routes == ["/srv/export/pv-a", "/mnt/bind-export/pv-a", "/mnt/bind-pv"]
    assert not [path for path in fs.calls if path.startswith(("/mnt/below", "/mnt/sibling", "/mnt/tmp"))]


def test_volume_on_an_unknown_device_has_only_its_own_path():
    fs = FakeFs({"/data/vol": (0, 99, 5)})  # e.g. a btrfs subvolume's anonymous dev
    assert volume_routes("/data/vol", parse_mountinfo(NFS_LINES), stat=fs) == ["/data/vol"]


def test_volume_must_be_a_directory(tmp_path):
    regular = tmp_path / "file"
    regular.write_text(u"x")
    with pytest.raises(NotADirectoryError):
        volume_routes(str(regular), read_mountinfo())


def test_volume_key_uses_kernel_dev(tmp_path):
    st = os.stat(str(tmp_path))
    assert volume_key(str(tmp_path)) == (kernel_dev(st.st_dev), st.st_ino)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")


@needs_root
def test_routes_through_real_bind_mounts(tmp_path, mounted):
    volume = tmp_path / "export dir" / "pv a"
    (volume / "data").mkdir(parents=True)
    (tmp_path / "sibling").mkdir()
    for name in ("bind-export", "bind-pv", "bind-below", "bind-sibling", "tmpfs"):
        (tmp_path / name).mkdir()
    mounted("--bind", str(tmp_path / "export dir"), str(tmp_path / "bind-export"))
    mounted("--bind", str(volume), str(tmp_path / "bind-pv"))
    mounted("--bind", str(volume / "data"), str(tmp_path / "bind-below"))
    mounted("--bind", str(tmp_path / "sibling"), str(tmp_path / "bind-sibling"))
    mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path / "tmpfs"))

    routes = volume_routes(str(volume), read_mountinfo())

    assert routes == [str(volume), str(tmp_path / "bind-export" / "pv a"), str(tmp_path / "bind-pv")]
    assert len(set(volume_key(route) for route in routes)) == 1
    # and the same answer from a route
    assert volume_routes(str(tmp_path / "bind-pv"), read_mountinfo())[1:] == sorted(
        [str(volume), str(tmp_path / "bind-export" / "pv a")])


@needs_root
def test_volume_on_a_tmpfs_has_its_own_key(tmp_path, mounted):
    (tmp_path / "fs").mkdir()
    mounted("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path / "fs"))
    (tmp_path / "fs" / "vol").mkdir()
    (tmp_path / "again").mkdir()
    mounted("--bind", str(tmp_path / "fs"), str(tmp_path / "again"))
    routes = volume_routes(str(tmp_path / "fs" / "vol"), read_mountinfo())
    assert routes == [str(tmp_path / "fs" / "vol"), str(tmp_path / "again" / "vol")]
    dev, _ino = volume_key(routes[0])
    assert dev >> 20 == 0  # anonymous dev of a tmpfs: major 0


# --- MountTable.keys: the routes' keys with fewer stats, for many volumes ------------------------

def keys_of_routes(routes, fs):
    return set(volume_key(route, fs) for route in routes)


@pytest.mark.parametrize("volume", ["/mnt/nfs3/sub/pv-a", "/mnt/nfs4/sub/pv-a", "/mnt/D/pv-a", "/mnt/E/pv-a",
                                    "/mnt/F/pv-a"])
def test_keys_are_the_keys_of_the_routes(volume):
    table = MountTable(parse_mountinfo(VM_NFS_LINES))
    fs = FakeFs(VM_PV_A)
    assert table.keys(volume, fs) == keys_of_routes(table.routes(volume, fs), fs)
    assert len(table.keys(volume, fs)) == 4  # superblocks 0:41 (v3), 0:42 (v4), 0:43 and 0:44 (nosharecache)


def test_keys_stat_one_route_per_other_superblock():
    table = MountTable(parse_mountinfo(NFS_LINES))
    fs = nfs_host()
    assert table.keys("/mnt/a/sub/pv-a", fs) == keys_of_routes(table.routes("/mnt/a/sub/pv-a", fs), fs)
    del fs.calls[:]
    table.keys("/mnt/a/sub/pv-a", fs)
    # the volume, then one route on each other superblock: /mnt/b is /mnt/a's superblock, not stat'ed
    assert sorted(fs.calls) == ["/mnt/a/sub/pv-a", "/mnt/c/sub/pv-a", "/mnt/d", "/mnt/v3/pv-a"]


def pseudo_root_host(count):
    """Volumes /srv/nfs/pvs/pv-N (fileid 1000 + N) over NFSv3 at /mnt/nfs3 and NFSv4 at /mnt/nfs4,
    whose pseudo-root is /srv/nfs, as the test bed mounts them."""
    dirs = {}
    for index in range(count):
        dirs["/mnt/nfs3/pvs/pv-%d" % index] = (0, 41, 1000 + index)
        dirs["/mnt/nfs4/pvs/pv-%d" % index] = (0, 42, 1000 + index)
    return FakeFs(dirs)


def test_across_nfs_versions_the_pseudo_root_guess_that_held_goes_first():
    table = MountTable(parse_mountinfo(VM_NFS_LINES))
    fs = pseudo_root_host(3)
    assert table.keys("/mnt/nfs3/pvs/pv-0", fs) == set([(41, 1000), (42, 1000)])
    first = len(fs.calls)
    del fs.calls[:]
    assert table.keys("/mnt/nfs3/pvs/pv-1", fs) == set([(41, 1001), (42, 1001)])
    # /srv/nfs/pvs/pv-1 over v4 was guessed as /mnt/nfs4/pvs/pv-1 (pseudo-root stripped) first
    assert fs.calls[:2] == ["/mnt/nfs3/pvs/pv-1", "/mnt/nfs4/pvs/pv-1"]
    assert first > len(fs.calls)
    assert table.keys("/mnt/nfs4/pvs/pv-2", fs) == set([(41, 1002), (42, 1002)])


def test_many_volumes_and_many_per_volume_mounts_cost_lookups_not_passes():
    # csi-driver-nfs style: each volume also mounted on its own (another superblock each)
    count = 2000
    lines = [line + "\n" for line in VM_NFS_LINES.splitlines() if " /mnt/nfs" in line]
    fs = pseudo_root_host(count)
    for index in range(count):
        lines.append("%d 27 0:%d / /var/lib/kubelet/pv-%d rw - nfs4 127.0.0.1:/pvs/pv-%d %s\n"
                     % (1000 + index, 1000 + index, index, index, VM_OPTS4))
        fs.dirs["/var/lib/kubelet/pv-%d" % index] = (0, 1000 + index, 1000 + index)
    table = MountTable(parse_mountinfo("".join(lines)))
    for index in range(count):
        volume = "/mnt/nfs4/pvs/pv-%d" % index
        assert table.keys(volume, fs) == set([(42, 1000 + index), (41, 1000 + index), (1000 + index, 1000 + index)])
    assert len(fs.calls) == 3 * count  # each volume and one route on each of its two other superblocks
