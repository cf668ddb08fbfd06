# -*- coding: utf-8 -*-
"""A scan is not fooled by names moved within the volume while it walks (SOUNDNESS.md #29).

The walk lists one directory after another. A file or directory moved from a directory not yet
listed into one already listed is never seen; before, the scan's base dropped by its size (and
the tenant could write that much again), on every scan. Each test moves exactly at that moment:
the walk (in the scan's forked child) does the move through the NFS mount right after listing its
first subdirectory. A rename whose hook ran before the scan started and that completes during it
makes the scan retry.
"""
import contextlib
import os
import subprocess
import sys
import time

import pytest

from conftest import bq_ok, counted_usage, report
from ansible_collections.bpfquota.nfs.plugins.module_utils import walk
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps

SIZE = 300000


@pytest.fixture
def moving_walk(monkeypatch):
    """Make the walk move `what` ("f" or "sub") from the sibling it has not listed yet into the
    first subdirectory it lists, once."""
    state = {"moved": False}
    listed = walk._Walk._list

    def list_then_move(self, directory):
        ok = listed(self, directory)
        if "what" in state and not state["moved"] and directory.parent is not None:
            state["moved"] = True
            other = os.path.join(os.path.dirname(directory.path), "d2" if directory.name == "d1" else "d1")
            os.rename(os.path.join(other, state["what"]), os.path.join(directory.path, state["what"] + "-moved"))
        return ok

    monkeypatch.setattr(walk._Walk, "_list", list_then_move)
    return state


@pytest.mark.parametrize("what", ["f", "sub"])
@pytest.mark.parametrize("mount", ["nfs4", "nfs3"])
def test_a_name_moved_into_a_directory_the_walk_listed_is_still_counted(share, moving_walk, what, mount):
    share.mkdir("pv")
    for name in ("d1", "d2"):
        os.makedirs(os.path.join(share.server, "pv", name, "sub"))
        for rel in ("f", "sub/g"):
            with open(os.path.join(share.server, "pv", name, rel), "wb") as f:
                f.write(b"s" * SIZE)
    share.apply({"path": "pv", "limit": 64 << 20, "mount": mount})
    vol = share.client("pv", mount)
    assert (report()[vol]["used_bytes"], report()[vol]["files"]) == counted_usage(vol) == (4 * SIZE, 8)
    moving_walk["what"] = what
    bq_ok("reconcile", vol)
    assert [name for name in os.listdir(os.path.join(share.server, "pv", "d1")) + os.listdir(
        os.path.join(share.server, "pv", "d2")) if name.endswith("-moved")] == [what + "-moved"]  # by the walk's child
    row = report()[vol]
    assert (row["used_bytes"], row["files"]) == counted_usage(vol) == (4 * SIZE, 8)


@contextlib.contextmanager
def slow_nfs(delay):
    """Every packet over the VM's loopback (its NFS traffic) delayed by `delay` seconds."""
    subprocess.run(["modprobe", "sch_netem"], check=True)
    subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "%dms" % (delay * 1000)], check=True)
    try:
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=True)


def in_kernel_function(pid, name):
    with open("/proc/%d/stack" % pid) as f:
        return any(" %s+" % name in line for line in f)  # "[<0>] nfs_rename+0x../0x.. [nfs]"


@pytest.mark.parametrize("mount", ["nfs4", "nfs3"])
def test_a_scan_starting_while_a_rename_is_in_flight_is_retried(share, mount):
    # The rename's hook ran before the scan flipped the volume, so it could not tell the scan;
    # the rename then completes during the walk. Its fexit must: the scan can't trust its walk.
    share.mkdir("pv")
    os.makedirs(os.path.join(share.server, "pv", "d1", "sub"))
    os.makedirs(os.path.join(share.server, "pv", "d2"))
    share.apply({"path": "pv", "limit": 64 << 20, "mount": mount})
    vol = share.client("pv", mount)
    os.listdir(os.path.join(vol, "d2"))  # every dentry the rename looks up is cached now
    with QuotaMaps() as maps:
        vol_id = dict((path, vol_id) for vol_id, path in maps.paths().items())[vol]
        stale_before = maps.vol_stats_of([vol_id])[vol_id].stale
        with slow_nfs(1.0):
            mover = subprocess.Popen([sys.executable, "-c", "import os, sys; os.rename(sys.argv[1], sys.argv[2])",
                                      os.path.join(vol, "d1", "sub"), os.path.join(vol, "d2", "sub")])
            deadline = time.monotonic() + 60
            while not in_kernel_function(mover.pid, "nfs_rename"):  # past vfs_rename's hook, in the RPC
                assert mover.poll() is None and time.monotonic() < deadline, "the rename never reached its RPC"
                time.sleep(0.05)
            cfg = maps.vol_cfg(vol_id)
            maps.set_vol_cfg(vol_id, cfg._replace(epoch=cfg.epoch + 1, scanning=1))  # a scan starts (usage._flip)
            try:
                assert mover.wait(60) == 0
                stale_after = maps.vol_stats_of([vol_id])[vol_id].stale
            finally:
                maps.set_vol_cfg(vol_id, maps.vol_cfg(vol_id)._replace(scanning=0))
    assert os.path.isdir(os.path.join(vol, "d2", "sub"))
    assert stale_after == stale_before + 1


@pytest.mark.parametrize("mount", ["nfs4", "nfs3"])
def test_an_unlink_in_flight_when_a_scan_starts_is_not_credited_twice(share, mount):
    # The unlink's hook runs before the scan flips the volume, so it leaves no record of what the
    # file counted; the server removes the file before the walk lists its directory, and the
    # unlink's fexit comes during the walk. Crediting the file then (in the new epoch) counted
    # its removal twice: once by the walk not seeing it, once by the credit.
    share.mkdir("pv")
    for name in ("f", "g"):
        with open(os.path.join(share.server, "pv", name), "wb") as f:
            f.write(b"u" * SIZE)
    share.apply({"path": "pv", "limit": 64 << 20, "mount": mount})
    vol = share.client("pv", mount)
    os.stat(os.path.join(vol, "f"))  # the unlink finds its dentry cached: its hook runs at once
    with slow_nfs(1.0):
        remover = subprocess.Popen([sys.executable, "-c", "import os, sys; os.unlink(sys.argv[1])",
                                    os.path.join(vol, "f")])
        deadline = time.monotonic() + 60
        while not in_kernel_function(remover.pid, "nfs_unlink"):  # past the hook, in the RPC
            assert remover.poll() is None and time.monotonic() < deadline, "the unlink never reached its RPC"
            time.sleep(0.05)
        bq_ok("reconcile", vol)
        assert remover.wait(60) == 0
    assert not os.path.exists(os.path.join(vol, "f"))
    row = report()[vol]
    assert (row["used_bytes"], row["files"]) == counted_usage(vol) == (SIZE, 1)
