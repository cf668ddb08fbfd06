# -*- coding: utf-8 -*-
"""`bpfquota top` in the VM, where BCC and the kernel's headers are installed (testbed/image.py):
two writers fill one volume on a real NFS mount, and one sample shows both, with their bytes per
second, and the refusals of the one that keeps hitting the limit. top only reads the enforcer's
maps: the ones that say which volume a file is in are the same afterwards."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import MiB, bq_process
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout

LIMIT = 4 * MiB
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# A writer named by its comm (what top shows), 5 writes a second (gentle: BCC compiles meanwhile on
# the same emulated CPUs). "overwrite" rewrites the first 256 KiB of its file (adds nothing, so a full
# volume allows it); "append" appends MiB after MiB and, refused (EDQUOT), empties its file and
# starts over: a cycle of 4 writes (about a second), so any two seconds see it both write and be
# refused.
WRITER = """
import errno, os, sys, time
name, how, path = sys.argv[1:4]
with open("/proc/self/comm", "w") as f:
    f.write(name)
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
while True:
    try:
        if how == "overwrite":
            os.pwrite(fd, b"a" * (256 << 10), 0)
        else:
            os.write(fd, b"b" * (1 << 20))
    except OSError as e:
        if e.errno != errno.EDQUOT:
            raise
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
    time.sleep(0.2)
"""


def writer(name, how, path, user=()):
    return subprocess.Popen(list(user) + [sys.executable, "-c", WRITER, name, how, path])


def enforcer_routes():
    """The maps top reads, dumped: vol_keys, vol_devs, nfs_groups, config."""
    dumps = {}
    for name in ("vol_keys", "vol_devs", "nfs_groups", "config"):
        proc = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", os.path.join(layout.PIN_DIR, name)],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True)
        dumps[name] = sorted(json.dumps(entry, sort_keys=True) for entry in json.loads(proc.stdout))
    return dumps


@pytest.fixture
def writers(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": LIMIT})
    volume = share.client("pv")
    procs = [writer("writer-a", "overwrite", os.path.join(volume, "a")),
             writer("writer-b", "append", os.path.join(volume, "b"), NOBODY)]
    yield volume, procs
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_top_shows_both_writers_and_the_refusals(writers):
    volume, (proc_a, proc_b) = writers
    before = enforcer_routes()
    time.sleep(1)  # both writing
    assert proc_a.poll() is None and proc_b.poll() is None

    top = bq_process("top", "--once", "--json", "--interval", "2")

    assert top.returncode == 0, top.stderr
    sample = json.loads(top.stdout)
    print("bpfquota top --once --json --interval 2:\n" + top.stdout)  # shown with -rA / on failure
    entries = [entry for entry in sample["volumes"] if entry["volume"] == volume]
    assert len(entries) == 1, sample
    entry = entries[0]
    assert entry["limit_bytes"] == LIMIT and entry["vol_id"] >= 1
    by_comm = dict((w["comm"], w) for w in entry["writers"])
    a, b = by_comm["writer-a"], by_comm["writer-b"]
    assert (a["pid"], a["uid"]) == (proc_a.pid, 0)
    assert (b["pid"], b["uid"]) == (proc_b.pid, 65534)
    assert a["bytes_per_second"] > 0 and b["bytes_per_second"] > 0
    assert a["refusals"] == 0 and b["refusals"] > 0
    assert entry["refusals"] == b["refusals"]
    assert a["cgroup"] and a["cgroup"].startswith("/")  # the test's own cgroup (ssh session)
    assert sample["compile_seconds"] > 0
    assert enforcer_routes() == before
