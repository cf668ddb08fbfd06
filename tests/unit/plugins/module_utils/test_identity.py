# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.identity import (
    Identities,
    identities,
    keep_missing,
    stable_groups,
    wanted_keys,
)
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import kernel_dev, parse_mountinfo
from ansible_collections.bpfquota.nfs.plugins.module_utils.nfsfs import NfsSuper
from ansible_collections.bpfquota.nfs.plugins.module_utils.placement import View

OPTS4 = "rw,vers=4.2,hard,proto=tcp,sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1"
V4 = NfsSuper(dev=(0, 42), version=4, server="7f000001", fsid=(0x10, 0x1))
OTHER = NfsSuper(dev=(0, 55), version=4, server="0a000009", fsid=(0x5, 0x5))
PV_A, PV_B, INNER = "/k/pv-a", "/k/pv-b", "/k/inner"
MOUNTS = parse_mountinfo("\n".join([
    "101 27 0:42 / %s rw - nfs4 127.0.0.1:/pv-a %s" % (PV_A, OPTS4),
    "102 27 0:42 / %s rw - nfs4 127.0.0.1:/pv-b %s" % (PV_B, OPTS4),
    "103 27 0:42 / %s rw - nfs4 127.0.0.1:/pv-a/data %s" % (INNER, OPTS4),
    "104 27 0:55 / /mnt/home rw - nfs4 10.0.0.9:/home %s" % OPTS4,
]))
VIEWS = [View(m, m.mount_point) for m in MOUNTS]
SUPERS = {V4.dev: V4, OTHER.dev: OTHER}


def fake_stat(entries):
    def stat_of(path):
        if path not in entries:
            raise FileNotFoundError(2, "No such file or directory", path)
        (major, minor), ino = entries[path]
        return os.stat_result((stat.S_IFDIR | 0o755, ino, os.makedev(major, minor), 2, 0, 0, 4096, 0, 0, 0))
    return stat_of


STAT = fake_stat({PV_A: ((0, 42), 100), PV_B: ((0, 42), 200), INNER: ((0, 42), 150), "/mnt/home": ((0, 55), 7),
                  "/local/vol": ((8, 1), 12)})


def test_nfs_volumes_are_keyed_by_their_group_and_fileid_and_every_mount_root_is_placed():
    found = identities([PV_A, PV_B, "/local/vol"], {}, STAT, SUPERS, VIEWS)
    group = found.groups[V4.fsid]
    nfs = layout.NFS_FS_BASE + group
    assert found.by_path == {PV_A: {(nfs, 100)}, PV_B: {(nfs, 200)}, "/local/vol": {(kernel_dev(os.makedev(8, 1)), 12)}}
    other = layout.NFS_FS_BASE + found.groups[OTHER.fsid]
    assert found.roots == {(nfs, 150): PV_A, (other, 7): None}  # inside pv-a; a server holding no volume
    assert (found.unplaced, found.missing) == ([], {})
    assert wanted_keys(found, {PV_A: 1, PV_B: 2, "/local/vol": 3}) == {
        (nfs, 100): 1, (nfs, 200): 2, (kernel_dev(os.makedev(8, 1)), 12): 3,
        (nfs, 150): layout.ROOT_IN | 1, (other, 7): layout.ROOT_IN}


def test_without_nfs_volumes_nothing_is_placed():
    found = identities(["/local/vol"], {}, STAT, SUPERS, VIEWS)
    assert (found.roots, found.groups) == ({}, {})


def test_group_numbers_in_the_maps_are_kept_and_never_reused_in_the_same_sync():
    assert stable_groups({V4.fsid: 1, OTHER.fsid: 2}, {OTHER.fsid: 1}) == {2: 1, 1: 2}
    gone = (9, 9)
    assert stable_groups({V4.fsid: 1}, {gone: 1}) == {1: 2}  # 1 may still name gone's keys
    found = identities([PV_A], {V4.fsid: 7}, STAT, SUPERS, VIEWS)
    assert found.groups[V4.fsid] == 7 and found.by_path[PV_A] == {(layout.NFS_FS_BASE + 7, 100)}


def test_a_volume_that_is_gone_keeps_its_keys_and_the_others_are_placed():
    found = identities([PV_A, "/k/deleted"], {V4.fsid: 1, (3, 3): 4}, STAT, SUPERS, VIEWS)
    assert set(found.missing) == {"/k/deleted"} and "No such file or directory" in found.missing["/k/deleted"]
    kept = keep_missing(found, {"/k/deleted": {(layout.NFS_FS_BASE + 4, 55)}}, {V4.fsid: 1, (3, 3): 4})
    assert kept.by_path["/k/deleted"] == {(layout.NFS_FS_BASE + 4, 55)}
    assert kept.groups[(3, 3)] == 4  # its filesystem stays placed while its keys are kept
    assert kept.by_path[PV_A] == found.by_path[PV_A]


def test_nothing_missing_is_kept_as_found():
    found = Identities({}, {}, {}, [], {})
    assert keep_missing(found, {}, {}) is found


def no_addresses(host):
    return frozenset()


def test_a_source_volume_is_found_through_a_mount_of_its_server_that_reaches_it():
    found = identities(["127.0.0.1:/pv-a/x", "127.0.0.1:/pv-b"], {}, fake_stat({
        PV_A: ((0, 42), 100), PV_B: ((0, 42), 200), INNER: ((0, 42), 150), "/mnt/home": ((0, 55), 7),
        PV_A + "/x": ((0, 42), 101)}), SUPERS, VIEWS, no_addresses)
    nfs = layout.NFS_FS_BASE + found.groups[V4.fsid]
    assert found.homes == {"127.0.0.1:/pv-a/x": PV_A + "/x", "127.0.0.1:/pv-b": PV_B}
    assert found.by_path == {"127.0.0.1:/pv-a/x": {(nfs, 101)}, "127.0.0.1:/pv-b": {(nfs, 200)}}
    assert (found.unmounted, found.watch) == ([], True)


def test_a_source_no_mount_reaches_is_unmounted_and_the_mounts_that_may_reach_it_stay_unplaced():
    found = identities(["nfs-b:/pv-a", "127.0.0.1:/pv-b"], {}, STAT, SUPERS, VIEWS, no_addresses)
    assert found.unmounted == ["nfs-b:/pv-a"] and "nfs-b:/pv-a" not in found.homes
    # pv-a's own mount (and the one inside it) may be nfs-b under its other name: not placed in no volume
    assert sorted(access for dummy, access, dummy in found.unplaced) == [INNER, PV_A]
    assert "give the volume the server name or address this mount uses" in found.unplaced[0][2]
    other = layout.NFS_FS_BASE + found.groups[OTHER.fsid]
    assert found.roots == {(other, 7): None}


def test_without_any_mount_a_source_volume_still_makes_the_kernel_watch_nfs():
    found = identities(["nfs-b:/pv-a"], {}, STAT, SUPERS, [], no_addresses)
    assert (found.unmounted, found.by_path, found.watch) == (["nfs-b:/pv-a"], {}, True)


def test_the_addresses_of_this_host_are_one_server():
    from ansible_collections.bpfquota.nfs.plugins.module_utils.identity import is_local_address, source_homes
    assert is_local_address("127.0.0.1") and not is_local_address("192.0.2.1") and not is_local_address("localhost")
    homes = source_homes(["10.0.2.15:/pv-b"], VIEWS, STAT, no_addresses, is_local=lambda a: a in ("10.0.2.15", "127.0.0.1"))
    assert homes == {"10.0.2.15:/pv-b": PV_B}
    assert source_homes(["10.0.2.15:/pv-b"], VIEWS, STAT, no_addresses, is_local=lambda a: False) == {}
