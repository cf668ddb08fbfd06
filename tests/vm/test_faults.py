# -*- coding: utf-8 -*-
"""Faults (#9, part 5): the NFS server down, and map writers (apply, reconcile) racing each other.

With the NFS server stopped, NFS I/O on the VM's hard mounts hangs, but the hooks answer from
the kernel's inode and map state (a write that doesn't fit is refused at the syscall, before any
RPC), `report` and `status` read maps only, and scans run in a child that is killed after its
timeout. Map writers serialize on the flock of /run/bpfquota.lock.
"""
import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import MOUNTS, ROOT, MiB, bq_ok, report, write_volumes_file

BPFQUOTA = os.path.join(ROOT, "bin", "bpfquota")
LOCK_PATH = "/run/bpfquota.lock"
PROMPT = 10.0      # seconds a command that reads maps only may take, Python start-up under TCG included
HUNG = 3.0         # seconds an NFS operation must stay unanswered for the server to count as down
SCAN_TIMEOUT = 3   # the scans' timeout under test
GRACE = 5.0        # usage.GRACE: how long a walk may overrun its timeout before its child is killed


def bpfquota(*args, **kwargs):
    return subprocess.Popen([sys.executable, BPFQUOTA] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, **kwargs)


def timed(*args):
    """(CompletedProcess, seconds) of the CLI as its own process, killed after 60 s."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, BPFQUOTA] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    return proc, time.monotonic() - started


def answers(path, seconds):
    """True when a create and unlink of a new name in `path` (an NFS directory) finish in time.
    The new name makes the client ask the server (no cached dentry answers); the shell is killed
    if it hangs."""
    probe = os.path.join(path, ".probe-" + uuid.uuid4().hex[:8])
    shell = subprocess.Popen(["sh", "-c", ': > "$1" && rm -f "$1"', "sh", probe])
    try:
        return shell.wait(seconds) == 0
    except subprocess.TimeoutExpired:
        shell.kill()
        shell.wait(60)
        return False


class NfsServer:
    """The VM's own NFS server, stopped and started with systemd as an outage would."""

    def __init__(self, share):
        self.share = share
        self.stopped = False

    def stop(self):
        self.stopped = True
        subprocess.run(["systemctl", "stop", "nfs-server"], check=True)
        for mount in MOUNTS:
            assert not answers(self.share.client("", mount), HUNG), "NFS I/O through %s still works" % mount

    def start(self):
        subprocess.run(["systemctl", "start", "nfs-server"], check=True)
        self.stopped = False
        deadline = time.monotonic() + 180  # NFSv4 clients reclaim their state (the grace period)
        for mount in MOUNTS:
            while not answers(self.share.client("", mount), 30):
                assert time.monotonic() < deadline, "NFS through %s did not come back" % mount
                time.sleep(1)


@pytest.fixture
def nfs_server(share):
    server = NfsServer(share)
    try:
        yield server
    finally:
        if server.stopped:
            server.start()  # the other tests of the session need it


def read_line(proc, timeout):
    """The next line of proc's stdout, or None if it sends none within timeout seconds."""
    ready, dummy, dummy = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else None


# Holds files of a full volume open across the outage; after "go" tries to grow them and
# reports [what, errno, seconds] per call. It never stat()s or seeks (those could need the server).
GROWER = r"""
import json, os, sys, time
size = int(sys.argv[1])
fds = [os.open(path, os.O_WRONLY) for path in sys.argv[2:]]
print("open", flush=True)
sys.stdin.readline()
results = []
for what, fd, call in [("pwrite via nfs4", fds[0], lambda fd: os.pwrite(fd, b"x" * 65536, size)),
                       ("pwrite via nfs3", fds[1], lambda fd: os.pwrite(fd, b"x" * 4096, size)),
                       ("ftruncate via nfs4", fds[0], lambda fd: os.ftruncate(fd, size + 1)),
                       ("pwrite via nfs4 again", fds[0], lambda fd: os.pwrite(fd, b"x", size))]:
    started = time.monotonic()
    try:
        call(fd)
        error = 0
    except OSError as e:
        error = e.errno
    results.append([what, error, time.monotonic() - started])
print(json.dumps(results), flush=True)
sys.stdin.readline()
"""


def test_enforcement_report_and_status_answer_while_the_nfs_server_is_down(share, nfs_server):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    vol = share.client("pv")
    with open(os.path.join(vol, "full"), "wb") as f:
        f.write(b"f" * (2 * MiB))  # the volume is full; close() flushes it to the server
    grower = subprocess.Popen([sys.executable, "-c", GROWER, str(2 * MiB), os.path.join(vol, "full"),
                               os.path.join(share.client("pv", "nfs3"), "full")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert read_line(grower, 60) == "open\n"
        denials = report()[vol]["denials"]
        nfs_server.stop()

        grower.stdin.write("go\n")
        grower.stdin.flush()
        line = read_line(grower, 30)
        assert line is not None, "growing a file of the full volume hung with the NFS server down"
        for what, error, seconds in json.loads(line):
            assert (what, errno.errorcode.get(error, error)) == (what, "EDQUOT")
            assert seconds < 2.0, "%s took %.1fs" % (what, seconds)

        proc, seconds = timed("report", "--json")
        assert proc.returncode == 0 and seconds < PROMPT, (seconds, proc.stderr)
        row = dict((r["path"], r) for r in json.loads(proc.stdout)["volumes"])[vol]
        assert (row["used_bytes"], row["files"], row["denials"]) == (2 * MiB, 1, denials + 4)
        proc, seconds = timed("status")
        assert proc.returncode == 0 and seconds < PROMPT, (seconds, proc.stderr)
        assert proc.stdout.startswith("loaded ")

        # A scan can't finish without the server: its child is killed after the timeout.
        proc, seconds = timed("reconcile", "--timeout", SCAN_TIMEOUT, vol)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "did not finish in %gs (NFS server unreachable?)" % SCAN_TIMEOUT in proc.stderr
        assert seconds < SCAN_TIMEOUT + GRACE + PROMPT
    finally:
        if nfs_server.stopped:
            nfs_server.start()
        grower.communicate("\n", timeout=60)
    assert grower.returncode == 0
    bq_ok("reconcile", vol)
    row = report()[vol]
    assert (row["used_bytes"], row["files"]) == (2 * MiB, 1)
    assert os.path.getsize(os.path.join(vol, "full")) == 2 * MiB  # no refused byte reached the server


def wait_for_log(path, text, since, timeout):
    """Seconds until `text` appears in the file `path` after offset `since` (fails after timeout)."""
    started = time.monotonic()
    while True:
        with open(path) as f:
            f.seek(since)
            if text in f.read():
                return time.monotonic() - started
        assert time.monotonic() - started < timeout, "no %r in the agent's log after %ds:\n%s" % (
            text, timeout, open(path).read())
        time.sleep(0.5)


def test_the_agent_is_not_stuck_by_an_nfs_server_outage(share, nfs_server):
    share.mkdir("pv")
    with open(os.path.join(share.server, "pv", "a"), "wb") as f:
        f.write(b"a" * 1000)
    share.apply({"path": "pv", "limit": 8 * MiB})
    vol = share.client("pv")
    log_path = "/tmp/%s-agent.log" % share.name
    with open(log_path, "w") as log:
        agent = subprocess.Popen([sys.executable, BPFQUOTA, "agent", "--interval", "1", "--budget", "60",
                                  "--scan-timeout", str(SCAN_TIMEOUT)], stderr=log)
    try:
        wait_for_log(log_path, "reconciled %s: 1000 bytes in 1 files" % vol, 0, 60)
        nfs_server.stop()
        with open(os.path.join(share.server, "pv", "b"), "wb") as f:
            f.write(b"b" * 500)  # on the server's disk: only a scan can count it
        since = os.path.getsize(log_path)
        waited = wait_for_log(log_path, "reconcile of %s failed: the scan of %s did not finish in %gs "
                              "(NFS server unreachable?)" % (vol, vol, SCAN_TIMEOUT), since, 90)
        assert agent.poll() is None
        nfs_server.start()
        since = os.path.getsize(log_path)
        wait_for_log(log_path, "reconciled %s: 1500 bytes in 2 files" % vol, since, 90)
        row = report()[vol]
        assert (row["used_bytes"], row["files"]) == (1500, 2)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    print("the agent's scan failed %.1fs after the outage was noticed" % waited)


def lock_pids():
    """(holders, waiters): the pids that hold and that wait for the flock of LOCK_PATH (/proc/locks)."""
    ino = os.stat(LOCK_PATH).st_ino
    holders, waiters = set(), set()
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            blocked = fields[1] == "->"
            if blocked:
                del fields[1]
            # 1: FLOCK  ADVISORY  WRITE 1234 00:19:567 0 EOF
            if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == ino:
                (waiters if blocked else holders).add(int(fields[4]))
    return holders, waiters


def wait_until(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def volume_set(share, prefix, count, scale, mode):
    return [{"path": share.client("%s%d" % (prefix, index), "nfs3" if index % 2 else "nfs4"),
             "limit": (index + 1) * scale * MiB, "inodes": 10 * scale + index, "mode": mode}
            for index in range(count)]


def test_concurrent_applies_serialize(share):
    count = 6
    sets = {"a": volume_set(share, "a", count, 1, "enforce"), "b": volume_set(share, "b", count, 3, "audit")}
    for volumes in sets.values():
        for volume in volumes:
            share.mkdir(os.path.basename(volume["path"]))
    share.mkdir("old")
    share.apply({"path": "old", "limit": MiB})  # both files remove it
    files = dict((name, write_volumes_file("/tmp/%s-%s.json" % (share.name, name), volumes))
                 for name, volumes in sets.items())
    with open(LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # both start, then race for the lock at once
        procs = dict((name, bpfquota("apply", path)) for name, path in files.items())
        pids = set(proc.pid for proc in procs.values())
        wait_until(lambda: pids <= lock_pids()[1], "the applies never waited for the lock")
    outs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        outs[name] = out.splitlines()[-1]
    last = [name for name, out in outs.items() if out == "%d added, 0 updated, %d removed" % (count, count)]
    assert len(last) == 1, outs
    first = "b" if last == ["a"] else "a"
    assert outs[first] == "%d added, 0 updated, 1 removed" % count

    # Exactly the last file's volumes, each whole: limits, modes and every route.
    rows = report()
    assert sorted(rows) == sorted(v["path"] for v in sets[last[0]])
    for volume in sets[last[0]]:
        row = rows[volume["path"]]
        assert (row["limit_bytes"], row["limit_files"], row["mode"]) == (volume["limit"], volume["inodes"],
                                                                         volume["mode"])
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity, quota
    from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
    with QuotaMaps() as maps:
        applied = quota.applied_volumes(maps)
        found = identity.identities(sorted(applied), maps.nfs_groups())
        want = identity.wanted_keys(found, dict((path, vol_id) for path, (vol_id, dummy) in applied.items()))
        assert maps.keys() == want and maps.nfs_groups() == found.groups


def test_an_apply_waits_while_a_reconcile_holds_the_lock(share):
    share.mkdir("big")
    for sub in range(10):
        os.makedirs(os.path.join(share.server, "big", "d%d" % sub))
        for index in range(300):  # on the server: a scan takes a while
            open(os.path.join(share.server, "big", "d%d" % sub, "f%03d" % index), "wb").close()
    share.mkdir("pv")
    share.apply({"path": "big", "limit": 1 << 30})
    path = write_volumes_file("/tmp/%s-next.json" % share.name, [
        {"path": share.client("big"), "limit": 1 << 30}, {"path": share.client("pv"), "limit": 2 * MiB}])
    reconcile = bpfquota("reconcile", share.client("big"))
    apply = None
    try:
        wait_until(lambda: reconcile.pid in lock_pids()[0] or reconcile.poll() is not None, "no lock taken")
        os.kill(reconcile.pid, signal.SIGSTOP)  # while it holds the lock
        assert reconcile.pid in lock_pids()[0], "the reconcile was over before it could be stopped"
        apply = bpfquota("apply", path)
        wait_until(lambda: apply.pid in lock_pids()[1] or apply.poll() is not None, "no apply")
        time.sleep(1)
        assert apply.poll() is None and apply.pid in lock_pids()[1]  # waiting, not failed
    finally:
        os.kill(reconcile.pid, signal.SIGCONT)
    out, err = reconcile.communicate(timeout=120)
    assert reconcile.returncode == 0, out + err
    assert "%s: 0 in 3010 files" % share.client("big") in out  # 3000 files, 10 directories
    out, err = apply.communicate(timeout=120)
    assert apply.returncode == 0, out + err
    assert out.splitlines()[-1] == "1 added, 0 updated, 0 removed"
    assert report()[share.client("pv")]["limit_bytes"] == 2 * MiB
