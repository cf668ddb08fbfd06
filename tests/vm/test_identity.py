# -*- coding: utf-8 -*-
"""A volume on NFS is the server's directory, whatever mount reaches it (issue #11, item 1).

Each test applies volumes through /mnt/nfs4, starts the agent, then mounts the export the ways
nodes do (kubelet's per-pod mounts of a PV's subdirectory, v3 and v4, nosharecache, another
address of the server, another mount namespace, a subdirectory inside a volume) and fills the
volume through the new mount: the writes stop at the limit, reads and deletes still work.
A mount the agent hasn't placed yet refuses growth meanwhile: writes are never let through
because a mount is new.
"""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import EXPORT, ROOT, MiB, counted_usage, fill

BPFQUOTA = os.path.join(ROOT, "bin", "bpfquota")
PLACED_WITHIN = 10.0  # seconds a test waits for the agent to place a new mount (the bench measures it)


def v4_source(rel, server="127.0.0.1"):
    """server:path of the export's `rel` over NFSv4 (/srv/nfs is the pseudo-root, fsid=0)."""
    return "%s:/%s" % (server, rel)


def v3_source(rel, server="127.0.0.1"):
    return "%s:%s/%s" % (server, EXPORT, rel)


def other_address():
    """This VM's address on QEMU's user network (the export allows 10.0.2.0/24)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    for line in out.splitlines():
        address = line.split()[3].split("/")[0]
        if address.startswith("10.0.2."):
            return address
    raise AssertionError("no 10.0.2.x address in:\n" + out)


class Mounts:
    """NFS mounts made by a test, at kubelet's paths or anywhere; all unmounted at the end."""

    def __init__(self):
        self.points = []

    def mount(self, source, options, point=None):
        point = point or "/mnt/id-" + uuid.uuid4().hex[:8]
        os.makedirs(point, exist_ok=True)
        subprocess.run(["mount", "-t", "nfs", "-o", options, source, point], check=True)
        self.points.append(point)
        return point

    def umount(self, point):
        subprocess.run(["umount", point], check=True)
        self.points.remove(point)

    def cleanup(self):
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.cleanup()


@pytest.fixture
def agent(share):
    """The agent, running: it places mounts as they appear (and when the kernel asks)."""
    log_path = "/tmp/%s-agent.log" % share.name
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, BPFQUOTA, "agent", "--interval", "3600"], stderr=log)
    deadline = time.monotonic() + 60
    while "running:" not in open(log_path).read():  # its SIGTERM handler is set: it stops cleanly
        assert process.poll() is None and time.monotonic() < deadline, open(log_path).read()
        time.sleep(0.1)
    yield log_path
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert process.returncode == 0, open(log_path).read()


def kubelet_csi_path(pv):
    """Where csi-driver-nfs's NodePublishVolume mounts a PV for one pod."""
    return "/var/lib/kubelet/pods/%s/volumes/kubernetes.io~csi/%s/mount" % (uuid.uuid4(), pv)


def kubelet_nfs_path(pv):
    """Where kubelet mounts an in-tree `nfs:` PV (nfs-subdir-external-provisioner) for one pod."""
    return "/var/lib/kubelet/pods/%s/volumes/kubernetes.io~nfs/%s" % (uuid.uuid4(), pv)


def wait_until_placed(path):
    """Seconds until a create below `path` is let through (it is refused until the mount is placed).
    The probe file is removed again."""
    started = time.monotonic()
    probe = os.path.join(path, ".placed-%s" % uuid.uuid4().hex[:6])
    while True:
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(probe)
            return time.monotonic() - started
        except OSError as e:
            assert e.errno == errno.EDQUOT, "%s: %s" % (probe, e)
        assert time.monotonic() - started < PLACED_WITHIN, "%s was not placed in %gs" % (path, PLACED_WITHIN)
        time.sleep(0.05)


def assert_enforced_through(path, server_dir, limit):
    """Fill the volume through `path`: refused at the limit, never past it; reads and deletes work."""
    name = "via-%s" % uuid.uuid4().hex[:6]
    written, err = fill(os.path.join(path, name))
    assert err == errno.EDQUOT, "%s: %d bytes written, no EDQUOT" % (path, written)
    used, dummy = counted_usage(server_dir)
    assert used <= limit, "%s: %d bytes in the volume, limit %d" % (path, used, limit)
    with open(os.path.join(path, name), "rb") as f:
        assert len(f.read(MiB)) == min(written, MiB)
    os.unlink(os.path.join(path, name))
    return written


def test_kubelet_layout_two_pods_of_one_pv_and_one_pod_of_another(share, mounts, agent):
    share.mkdir("pv-a")
    share.mkdir("pv-b")
    share.apply({"path": "pv-a", "limit": 4 * MiB}, {"path": "pv-b", "limit": 2 * MiB})
    pod1 = mounts.mount(v4_source(share.name + "/pv-a"), "vers=4.2", kubelet_csi_path("pv-a"))
    pod2 = mounts.mount(v3_source(share.name + "/pv-a"), "vers=3,nolock", kubelet_nfs_path("pv-a"))
    pod3 = mounts.mount(v4_source(share.name + "/pv-b"), "vers=4.2,nosharecache", kubelet_csi_path("pv-b"))
    for pod in (pod1, pod2, pod3):
        wait_until_placed(pod)
    written, err = fill(os.path.join(pod1, "half"), max_chunks=2)
    assert (written, err) == (2 * MiB, None)
    assert assert_enforced_through(pod2, os.path.join(share.server, "pv-a"), 4 * MiB) == 2 * MiB
    assert assert_enforced_through(pod3, os.path.join(share.server, "pv-b"), 2 * MiB) == 2 * MiB


def test_a_volume_applied_before_any_mount_of_it_is_enforced_once_mounted_and_after_a_remount(share, mounts, agent):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    pod = mounts.mount(v4_source(share.name + "/pv"), "vers=4.2,nosharecache", kubelet_csi_path("pv"))
    print("placed %.2fs after the mount" % wait_until_placed(pod))
    assert_enforced_through(pod, os.path.join(share.server, "pv"), 2 * MiB)
    mounts.umount(pod)
    again = mounts.mount(v4_source(share.name + "/pv"), "vers=4.2,nosharecache", pod)
    print("placed %.2fs after the remount" % wait_until_placed(again))
    assert_enforced_through(again, os.path.join(share.server, "pv"), 2 * MiB)


def test_the_export_through_loopback_and_through_the_other_address_is_one_volume(share, mounts, agent):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 4 * MiB})
    loopback = mounts.mount(v4_source(share.name + "/pv"), "vers=4.2,nosharecache")
    other = mounts.mount(v3_source(share.name + "/pv", other_address()), "vers=3,nolock")
    wait_until_placed(loopback)
    wait_until_placed(other)
    written, err = fill(os.path.join(loopback, "half"), max_chunks=2)
    assert (written, err) == (2 * MiB, None)
    assert assert_enforced_through(other, os.path.join(share.server, "pv"), 4 * MiB) == 2 * MiB


def test_a_mount_of_a_subdirectory_inside_a_volume_counts_in_that_volume(share, mounts, agent):
    share.mkdir("pv/data/deep")
    share.apply({"path": "pv", "limit": 2 * MiB})
    inner = mounts.mount(v4_source(share.name + "/pv/data"), "vers=4.2,nosharecache")
    inner3 = mounts.mount(v3_source(share.name + "/pv/data/deep"), "vers=3,nolock")
    wait_until_placed(inner)
    wait_until_placed(inner3)
    assert_enforced_through(inner, os.path.join(share.server, "pv"), 2 * MiB)
    written, err = fill(os.path.join(share.client("pv"), "f"), max_chunks=2)
    assert (written, err) == (2 * MiB, None)
    written, err = fill(os.path.join(inner3, "g"))
    assert (written, err) == (0, errno.EDQUOT)


def test_a_mount_in_another_mount_namespace_is_enforced(share, agent):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    # The agent can't see this mount in its own mount table: the kernel asks it to place it.
    script = textwrap.dedent("""
        import errno, os, subprocess, sys, time
        point = "/mnt/private"
        os.makedirs(point, exist_ok=True)
        subprocess.run(["mount", "-t", "nfs", "-o", "vers=4.2,nosharecache", sys.argv[1], point], check=True)
        deadline = time.monotonic() + %r
        while True:
            try:
                os.close(os.open(os.path.join(point, ".probe"), os.O_WRONLY | os.O_CREAT, 0o644))
                os.unlink(os.path.join(point, ".probe"))
                break
            except OSError as e:
                if e.errno != errno.EDQUOT or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        fd = os.open(os.path.join(point, "f"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        written = 0
        try:
            for dummy in range(64):
                written += os.write(fd, b"x" * (1 << 20))
        except OSError as e:
            print(written, e.errno)
        else:
            print(written, 0)
    """ % PLACED_WITHIN)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", script,
                          v4_source(share.name + "/pv")], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    written, err = map(int, out.split())
    assert (written, err) == (2 * MiB, errno.EDQUOT)
    assert counted_usage(os.path.join(share.server, "pv"))[0] == 2 * MiB


def test_a_volume_deleted_on_the_server_leaves_the_others_enforced(share, mounts, agent):
    share.mkdir("pv-a")
    share.mkdir("pv-b")
    share.apply({"path": "pv-a", "limit": 2 * MiB}, {"path": "pv-b", "limit": 2 * MiB})
    os.rmdir(os.path.join(share.server, "pv-a"))
    pod = mounts.mount(v4_source(share.name + "/pv-b"), "vers=4.2,nosharecache", kubelet_csi_path("pv-b"))
    wait_until_placed(pod)
    assert_enforced_through(pod, os.path.join(share.server, "pv-b"), 2 * MiB)


def report_row(name):
    from conftest import report
    return report()[name]


def test_at_boot_a_volume_deleted_on_the_server_is_left_out_and_the_others_are_enforced(share):
    from conftest import bq_process, write_volumes_file
    share.mkdir("pv-a")
    share.mkdir("pv-b")
    volumes = write_volumes_file("/tmp/%s-boot.yaml" % share.name, [
        {"path": share.client("pv-a"), "limit": 2 * MiB}, {"path": share.client("pv-b"), "limit": 2 * MiB}])
    os.rmdir(os.path.join(share.server, "pv-a"))
    done = bq_process("apply", "--skip-missing", volumes)  # as bpfquota-apply.service runs it at boot
    assert done.returncode == 0, done.stderr
    assert "volumes[0] (%s): path does not exist: left out" % share.client("pv-a") in done.stderr
    written, err = fill(os.path.join(share.client("pv-b"), "f"))
    assert (written, err) == (2 * MiB, errno.EDQUOT)


@pytest.fixture
def node_mounts_gone():
    """The VM's own mounts of the export (/mnt/nfs3, /mnt/nfs4) unmounted for the test, remounted after."""
    subprocess.run(["testbed-mount-nfs", "-u"], check=True)
    yield
    subprocess.run(["testbed-mount-nfs"], check=True)


def test_a_source_volume_needs_no_mount_and_is_enforced_from_the_first_mount_that_reaches_it(
        share, mounts, agent, node_mounts_gone):
    from conftest import bq_ok, write_volumes_file
    share.mkdir("pv")
    server_dir = os.path.join(share.server, "pv")
    source = v4_source(share.name + "/pv", other_address())  # this host's other address: the same server
    labels = {"pv": "pv-" + share.name, "namespace": "shop", "claim": "data"}
    bq_ok("apply", write_volumes_file("/tmp/%s.yaml" % share.name,
                                      [{"source": source, "limit": 2 * MiB, "labels": labels}]))
    row = report_row(source)
    assert (row["state"], row["usage"], row["labels"]) == ("not mounted here", "unknown", labels)
    pod = mounts.mount(v4_source(share.name + "/pv"), "vers=4.2", kubelet_csi_path("pv"))  # through 127.0.0.1
    print("enforced %.2fs after the first mount (placed and scanned)" % wait_until_placed(pod))
    row = report_row(source)
    assert (row["state"], row["usage"]) == ("enforcing", "scanned")
    assert assert_enforced_through(pod, server_dir, 2 * MiB) == 2 * MiB
    mounts.umount(pod)
    deadline = time.monotonic() + PLACED_WITHIN
    while report_row(source)["state"] != "not mounted here":
        assert time.monotonic() < deadline, report_row(source)
        time.sleep(0.2)
    # still defined, and enforced at once through the next mount that reaches it: the whole export
    subprocess.run(["testbed-mount-nfs"], check=True)
    # Until the agent has placed the new mount, growth through it is refused (unknown, fail closed).
    wait_until_placed(share.client("pv"))
    written, err = fill(os.path.join(share.client("pv"), "g"))
    assert (written, err) == (2 * MiB, errno.EDQUOT)
    assert counted_usage(server_dir)[0] == 2 * MiB
