# -*- coding: utf-8 -*-
"""Routes to a volume, modes, limit changes, upgrades, scans and the agent, on real NFS mounts."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import MOUNTS, OBJECT, ROOT, MiB, bq_ok, bq_process, counted_usage, fill, journal_entries, report

UPGRADE_OBJECT = os.path.join(ROOT, "build", "bpfquota-upgrade.bpf.o")


def nfs_source(rel):
    """The server:path that mounts the export's `rel` with NFSv4, as csi-driver-nfs mounts a PV."""
    with open("/proc/self/mounts") as f:
        for line in f:
            source, target = line.split()[:2]
            if target == MOUNTS["nfs4"]:
                return source.rstrip("/") + "/" + rel
    raise AssertionError("%s is not mounted" % MOUNTS["nfs4"])


class Mounts:
    def __init__(self):
        self.points = []

    def mount(self, *args):
        point = "/mnt/route-" + uuid.uuid4().hex[:8]
        os.makedirs(point)
        subprocess.run(["mount"] + list(args) + [point], check=True)
        self.points.append(point)
        return point

    def cleanup(self):
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", point], check=False)
            os.rmdir(point)


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.cleanup()


def assert_full_through(path):
    written, err = fill(os.path.join(path, "via-%s" % uuid.uuid4().hex[:6]))
    assert err == errno.EDQUOT, "%s: %d bytes written, no EDQUOT" % (path, written)


def test_every_route_to_a_volume_is_enforced(share, mounts):
    share.mkdir("pv")
    pv = share.name + "/pv"
    bind = mounts.mount("--bind", share.client("pv"))
    subdir = mounts.mount("-t", "nfs", "-o", "vers=4.2", nfs_source(pv))
    separate = mounts.mount("-t", "nfs", "-o", "vers=4.2,nosharecache", nfs_source(pv))
    assert os.stat(separate).st_dev != os.stat(share.client("pv")).st_dev  # its own superblock
    share.apply({"path": "pv", "limit": 2 * MiB})
    assert_full_through(share.client("pv"))
    for route in (bind, subdir, separate, share.client("pv", "nfs3")):
        assert_full_through(route)


def test_a_mount_that_appears_later_is_enforced_by_the_agent(share, mounts):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    assert_full_through(share.client("pv"))
    agent = subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", "bpfquota"), "agent", "--interval", "3600"],
                             stderr=subprocess.PIPE, universal_newlines=True)
    try:
        time.sleep(5)  # the agent's first round (routes + scan) runs at start
        late = mounts.mount("-t", "nfs", "-o", "vers=4.2,nosharecache", nfs_source(share.name + "/pv"))
        deadline = time.monotonic() + 60
        while True:
            try:
                with open(os.path.join(late, "probe-%d" % time.monotonic_ns()), "wb"):
                    pass
            except OSError as e:
                assert e.errno == errno.EDQUOT
                break
            assert time.monotonic() < deadline, "the new mount was never enforced"
            time.sleep(1)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.communicate(timeout=30)  # reads its log: a full pipe would block the agent's exit


def test_audit_mode_allows_but_counts(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB, "mode": "audit"})
    written, err = fill(os.path.join(share.client("pv"), "f"), max_chunks=4)
    assert err is None and written == 4 * MiB
    row = report()[share.client("pv")]
    assert row["mode"] == "audit"
    assert row["used_bytes"] == 4 * MiB
    assert row["denials"] >= 2  # the writes at and over the limit would have been refused


def programs():
    return json.loads(bq_ok("status", "--json"))["programs"]


def test_a_limit_change_applies_without_reloading(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    before = programs()
    assert fill(os.path.join(share.client("pv"), "f"))[1] == errno.EDQUOT
    share.apply({"path": "pv", "limit": 8 * MiB})
    with open(os.path.join(share.client("pv"), "g"), "wb") as f:
        f.write(b"g" * (4 * MiB))
    assert programs() == before
    share.apply({"path": "pv", "limit": 1 * MiB})
    assert fill(os.path.join(share.client("pv"), "h"))[1] == errno.EDQUOT


def test_enforcement_outlives_the_loader_process(share):
    assert bq_process("unload").returncode == 0
    assert bq_process("load", "--object", OBJECT).returncode == 0
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    code = "import os, errno\nfd = os.open(%r, os.O_WRONLY | os.O_CREAT)\n" \
           "try:\n    [os.write(fd, b'x' * (1 << 20)) for _ in range(8)]\nexcept OSError as e:\n    print(e.errno)\n" \
           % os.path.join(share.client("pv"), "f")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    assert out.strip() == str(errno.EDQUOT)


def test_upgrade_has_no_enforcement_gap_and_keeps_limits_and_usage(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 4 * MiB})
    vol = share.client("pv")
    open(os.path.join(vol, "hammer"), "wb").close()
    assert fill(os.path.join(vol, "f"))[1] == errno.EDQUOT
    before_row, before_programs = report()[vol], programs()
    # A writer hammers the full volume through the whole upgrade; not one write may succeed.
    code = "import os, sys, time\nfd = os.open(%r, os.O_WRONLY | os.O_CREAT)\nok = tried = 0\n" \
           "end = time.monotonic() + float(sys.argv[1])\n" \
           "while time.monotonic() < end:\n    tried += 1\n    try:\n        os.write(fd, b'w' * 65536); ok += 1\n" \
           "    except OSError:\n        pass\nprint(ok, tried)\n" % os.path.join(vol, "hammer")
    writer = subprocess.Popen([sys.executable, "-c", code, "40"], stdout=subprocess.PIPE, universal_newlines=True)
    time.sleep(3)
    bq_ok("load", "--object", UPGRADE_OBJECT)
    upgraded = programs()
    bq_ok("load", "--object", OBJECT)
    ok, tried = map(int, writer.communicate(timeout=120)[0].split())
    assert tried > 0 and ok == 0, "%d of %d over-quota writes succeeded during the upgrades" % (ok, tried)
    assert set(upgraded.values()).isdisjoint(before_programs.values())
    after_row = report()[vol]
    assert (after_row["limit_bytes"], after_row["used_bytes"]) == (before_row["limit_bytes"], before_row["used_bytes"])


def test_reconcile_picks_up_what_the_kernel_could_not_see(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 64 * MiB})
    vol = share.client("pv")
    with open(os.path.join(share.server, "pv", "written-on-the-server"), "wb") as f:
        f.write(b"s" * (3 * MiB))  # not through this client: only a scan can know
    assert report()[vol]["used_bytes"] == 0
    bq_ok("reconcile", vol)
    row = report()[vol]
    assert row["used_bytes"] == 3 * MiB and row["files"] == 1


def test_scans_during_writes_neither_lose_nor_double_count(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 1 << 40})
    vol = share.client("pv")
    code = "import os, sys, time\nend = time.monotonic() + float(sys.argv[2])\ni = 0\n" \
           "while time.monotonic() < end:\n    p = os.path.join(sys.argv[1], 'f%d' % (i % 7))\n" \
           "    with open(p, 'ab') as f:\n        f.write(b'w' * (4096 * (1 + i % 5)))\n" \
           "    if i % 11 == 10:\n        os.truncate(p, 1000)\n" \
           "    if i % 13 == 12:\n        os.unlink(p)\n    i += 1\n"
    writer = subprocess.Popen([sys.executable, "-c", code, vol, "20"])
    scans = 0
    while writer.poll() is None:
        bq_ok("reconcile", vol)
        scans += 1
    assert writer.returncode == 0 and scans >= 2
    assert report()[vol]["used_bytes"] == counted_usage(vol)[0]
    # After the last scan only the kernel's accounting can know about this write.
    with open(os.path.join(vol, "after-the-scans"), "wb") as f:
        f.write(b"a" * MiB)
    assert report()[vol]["used_bytes"] == counted_usage(vol)[0]


def test_agent_sums_refusals_up_in_the_journal(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 1 * MiB})
    pv = share.client("pv")
    since = int(time.time()) - 1
    agent = subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", "bpfquota"), "agent", "--interval", "3600",
                              "--metrics-dir", "", "--summary-interval", "1"], stderr=subprocess.PIPE,
                             universal_newlines=True)
    try:
        time.sleep(5)
        for name in ("f", "g", "h"):
            assert fill(os.path.join(pv, name))[1] == errno.EDQUOT
        deadline = time.monotonic() + 30
        while True:
            refused = sum(int(e["BPFQUOTA_REFUSED"]) for e in journal_entries(pv, since)
                          if e.get("BPFQUOTA_EVENT") == "refusals")
            if refused >= 3:
                break
            assert time.monotonic() < deadline, "%d refusals in the journal, not 3" % refused
            time.sleep(0.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=30)
    assert refused == report()[pv]["denials"]  # the maps' counters, each refusal summed up once
    assert "refused" not in err, err  # and not one log line per refused write


def test_report_table(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": "2Mi", "inodes": 10})
    with open(os.path.join(share.client("pv"), "f"), "wb") as f:
        f.write(b"r" * MiB)
    table = bq_ok("report")
    header, = [line for line in table.splitlines() if line.startswith("Volume")]
    assert header.split() == ["Volume", "Used", "Limit", "Use%", "Files", "FLimit", "Denials", "Mode", "Usage", "State"]
    line, = [line for line in table.splitlines() if line.startswith(share.client("pv"))]
    assert line.split()[1:] == ["1M", "2M", "50%", "1", "10", "0", "enforce", "scanned", "enforcing"]


def test_inode_limit(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 64 * MiB, "inodes": 3})
    vol = share.client("pv")
    for name in ("a", "b", "c"):
        open(os.path.join(vol, name), "wb").close()
    with pytest.raises(OSError) as exc:
        open(os.path.join(vol, "d"), "wb").close()
    assert exc.value.errno == errno.EDQUOT


def test_bad_volumes_change_nothing(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    path = "/tmp/%s-bad.yaml" % share.name
    with open(path, "w") as f:
        json.dump({"volumes": [{"path": share.client("pv"), "limit": "8Mi"},
                               {"path": share.client("missing"), "limit": "12Q"}]}, f)
    proc = bq_process("apply", path)
    assert proc.returncode == 2
    assert "volumes[1] (%s): path does not exist" % share.client("missing") in proc.stderr
    assert "unknown unit 'Q'" in proc.stderr
    assert report()[share.client("pv")]["limit_bytes"] == 2 * MiB  # nothing half-applied


def test_dry_run_changes_nothing(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    path = "/tmp/%s-dry.yaml" % share.name
    with open(path, "w") as f:
        json.dump({"volumes": [{"path": share.client("pv"), "limit": "8Mi"}]}, f)
    out = bq_ok("apply", path, "--check")
    assert "would update  %s limit 2M -> 8M" % share.client("pv") in out
    assert report()[share.client("pv")]["limit_bytes"] == 2 * MiB


def test_a_scan_knows_which_inodes_did_not_exist_when_it_started(share):
    """While a volume scans, each inode's first change leaves a record of what it counted at the
    flip: 0 files for inodes created since (their +1 is already in the kernel's delta)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
    share.mkdir("pv")
    vol = share.client("pv")
    with open(os.path.join(vol, "old"), "wb") as f:
        f.write(b"o" * 1000)
    share.apply({"path": "pv", "limit": 64 * MiB})
    with QuotaMaps() as maps:
        vol_id = dict((p, i) for i, p in maps.paths().items())[vol]
        cfg = maps.vol_cfg(vol_id)
        maps.set_vol_cfg(vol_id, cfg._replace(epoch=cfg.epoch + 1, scanning=1))
        try:
            with open(os.path.join(vol, "new"), "wb") as f:
                f.write(b"n" * 500)
            os.mkdir(os.path.join(vol, "newdir"))
            with open(os.path.join(vol, "old"), "ab") as f:
                f.write(b"o" * 24)
            dirty = dict((ino, rec) for (dev, ino), rec in maps.dirty(vol_id).items())
        finally:
            maps.set_vol_cfg(vol_id, maps.vol_cfg(vol_id)._replace(scanning=0))
            maps.delete_dirty(maps.dirty(vol_id))
    ino = dict((name, os.stat(os.path.join(vol, name)).st_ino) for name in ("old", "new", "newdir"))
    assert (dirty[ino["new"]].files_before, dirty[ino["new"]].size_before) == (0, 0)
    assert dirty[ino["newdir"]].files_before == 0
    assert (dirty[ino["old"]].files_before, dirty[ino["old"]].size_before) == (1, 1000)


def count_inodes(path):
    return sum(len(dirs) + len(files) for dummy, dirs, files in os.walk(path))


def test_file_counts_stay_exact_when_files_are_created_during_scans(share):
    share.mkdir("pv")
    for d in range(20):
        os.makedirs(os.path.join(share.server, "pv", "d%02d" % d))
        for f in range(100):
            open(os.path.join(share.server, "pv", "d%02d" % d, "f%03d" % f), "wb").close()
    share.apply({"path": "pv", "limit": 1 << 40})
    vol = share.client("pv")
    scans = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\nfor _ in range(3):\n"
                              "    subprocess.run([sys.executable] + sys.argv[1:], check=True)",
                              os.path.join(ROOT, "bin", "bpfquota"), "reconcile", vol])
    created = 0
    while scans.poll() is None:
        d = os.path.join(vol, "d%02d" % (created % 20))
        open(os.path.join(d, "new%04d" % created), "wb").close()
        if created % 10 == 0:
            os.mkdir(os.path.join(d, "newdir%04d" % created))
        created += 1
    assert scans.returncode == 0 and created > 0
    assert report()[vol]["files"] == count_inodes(vol)


def test_a_tree_longer_than_path_max_is_scanned(share):
    """SOUNDNESS.md #28: a tenant's 18 x 250-character path made every scan fail (ENAMETOOLONG),
    freezing the base for good; the walk goes by directory fds instead."""
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 64 * MiB})
    vol = share.client("pv")
    name = "n" * 250
    fd = os.open(os.path.join(share.server, "pv"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for dummy in range(18):  # made on the server, so only a scan can count them
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deep-file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"d" * MiB)
    finally:
        os.close(fd)
    bq_ok("reconcile", vol)
    row = report()[vol]
    assert (row["used_bytes"], row["files"]) == (MiB, 19)


def test_check_proves_the_kernel_runs_lsm_programs_without_an_object(tmp_path):
    # The host's files say ready here, and `check` backs that by attaching a tiny LSM program; no
    # object is needed (the unit tests show the same probe refused on a sandboxed host).
    proc = bq_process("check", "--json", "--object", str(tmp_path / "no-object.bpf.o"))
    facts = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (facts["ready"], facts["lsm_probe"], facts["trial_load"], facts["reasons"]) == (True, True, None, [])
