# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

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


def test_parse_recorded_vm_nfs_lines():
    mounts = {m.mount_point: m for m in parse_mountinfo(VM_NFS_LINES)}
    assert all(m.root == "/" for m in mounts.values())
    assert mounts["/mnt/G"].source == "127.0.0.1:/with space"
    assert split_nfs_source(mounts["/mnt/F"].source) == ("127.0.0.1", "/sub")
    assert (mounts["/mnt/B"].major, mounts["/mnt/B"].minor) == (0, 42)
    assert "nosharecache" in mounts["/mnt/D"].super_options


def test_volume_key_uses_kernel_dev(tmp_path):
    st = os.stat(str(tmp_path))
    assert volume_key(str(tmp_path)) == (kernel_dev(st.st_dev), st.st_ino)
