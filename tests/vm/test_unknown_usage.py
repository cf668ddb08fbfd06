# -*- coding: utf-8 -*-
"""A volume whose usage is unknown refuses growth (SOUNDNESS.md #27), and usage saved by the agent
is restored when the volumes are applied again after the maps were lost (a reboot empties bpffs).

Before, a volume whose first scan had not succeeded counted from zero: the bytes already in it
were free, and a tenant could write the whole limit again on every node after every reboot.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import OBJECT, ROOT, MiB, bq, bq_ok, report, write_volumes_file
from test_admission import as_tenant

from ansible_collections.bpfquota.nfs.plugins.module_utils import saved

LIMIT = 4 * MiB
EXISTING = 3 * MiB  # written server-side: this client never saw it, only a scan (or saved usage) can count it

TENANT_OPS = """
import errno, os, sys
vol = sys.argv[1]
def attempt(name, op):
    try:
        op()
        print(name + "=ok")
    except OSError as e:
        print(name + "=" + errno.errorcode[e.errno])
def append():
    with open(os.path.join(vol, "old"), "ab") as f:
        f.write(b"a")
def create():
    open(os.path.join(vol, "new"), "wb").close()
def overwrite():
    fd = os.open(os.path.join(vol, "old"), os.O_WRONLY)
    try:
        os.pwrite(fd, b"o" * 4096, 0)
    finally:
        os.close(fd)
def read():
    with open(os.path.join(vol, "old"), "rb") as f:
        f.read()
def half_mib():
    with open(os.path.join(vol, "more"), "ab") as f:
        f.write(b"m" * (512 * 1024))
attempt("append", append)
attempt("create", create)
attempt("overwrite", overwrite)
attempt("read", read)
attempt("half_mib", half_mib)
"""


def with_data(share, mount):
    """A world-writable volume directory holding EXISTING bytes written on the server; its client path."""
    share.mkdir("pv")
    with open(os.path.join(share.server, "pv", "old"), "wb") as f:
        f.write(b"e" * EXISTING)
    os.chmod(os.path.join(share.server, "pv", "old"), 0o666)
    return share.client("pv", mount)


def apply(share, vol, *args, **entry):
    path = write_volumes_file("/tmp/%s.yaml" % share.name, [dict(entry, path=vol, limit=LIMIT)])
    return bq("apply", path, *args)


@pytest.mark.parametrize("mount", ["nfs4", "nfs3"])
def test_a_volume_whose_first_scan_has_not_succeeded_refuses_growth(share, mount):
    vol = with_data(share, mount)
    rc, out, err = apply(share, vol, "--scan-budget", "0")
    assert rc == 0 and "it refuses growth until a scan succeeds" in err
    assert report()[vol]["usage"] == "unknown"
    assert sorted(as_tenant(TENANT_OPS, vol)) == sorted(
        ["append=EDQUOT", "create=EDQUOT", "overwrite=ok", "read=ok", "half_mib=EDQUOT"])
    assert os.path.getsize(os.path.join(share.server, "pv", "old")) == EXISTING
    # once scanned, the bytes already there count: 1 MiB of room, not 4
    bq_ok("reconcile", vol)
    row = report()[vol]
    assert (row["usage"], row["used_bytes"]) == ("scanned", EXISTING)
    assert sorted(as_tenant(TENANT_OPS, vol)) == sorted(
        ["append=ok", "create=ok", "overwrite=ok", "read=ok", "half_mib=ok"])
    with open(os.path.join(vol, "last"), "wb") as f:
        with pytest.raises(OSError) as refused:
            f.write(b"l" * MiB)
            f.flush()
    assert refused.value.errno == errno.EDQUOT
    os.unlink(os.path.join(vol, "last"))
    assert report()[vol]["used_bytes"] == EXISTING + 1 + 512 * 1024


def test_unknown_usage_allow_counts_from_zero_until_the_scan(share):
    vol = with_data(share, "nfs4")
    rc, out, err = apply(share, vol, "--scan-budget", "0", unknown_usage="allow")
    assert rc == 0 and "its usage counts from zero (unknown_usage: allow)" in err
    row = report()[vol]
    assert (row["usage"], row["unknown_usage"]) == ("unknown", "allow")
    assert "append=ok" in as_tenant(TENANT_OPS, vol)
    assert report()[vol]["used_bytes"] == 1 + 512 * 1024  # what it saw written; the 3 MiB before are not counted
    bq_ok("reconcile", vol)
    assert report()[vol]["used_bytes"] == EXISTING + 1 + 512 * 1024


@pytest.fixture
def state_path(tmp_path, monkeypatch):
    path = str(tmp_path / "usage.json")
    monkeypatch.setattr(saved, "STATE_PATH", path)
    return path


def reload_enforcer():
    """What a reboot does to the enforcer: every map is gone; the program is loaded anew."""
    bq_ok("unload")
    bq_ok("load", "--object", OBJECT)


def test_saved_usage_is_restored_without_a_scan_and_enforced_at_once(share, state_path):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import agent, maps
    vol = with_data(share, "nfs4")
    assert apply(share, vol)[0] == 0
    with open(os.path.join(vol, "mine"), "wb") as f:
        f.write(b"m" * 4096)  # this host's own growth, counted by the kernel since the scan
    with maps.QuotaMaps() as m:
        agent.save_usage(m)
    assert json.load(open(state_path))["volumes"][vol]["bytes"] == EXISTING + 4096
    reload_enforcer()
    with open(os.path.join(share.server, "pv", "elsewhere"), "wb") as f:
        f.write(b"x" * 1000)  # another host wrote meanwhile: only the next scan can know
    rc, out, err = apply(share, vol, "--scan-timeout", "0.000001")  # a first scan would fail: none is made
    assert (rc, err) == (0, "")
    row = report()[vol]
    assert (row["usage"], row["used_bytes"], row["files"]) == ("restored", EXISTING + 4096, 2)
    # enforced at the restored usage at once: room for what is left, no more
    assert "half_mib=ok" in as_tenant(TENANT_OPS, vol)
    with open(os.path.join(vol, "last"), "wb") as f:
        with pytest.raises(OSError) as refused:
            f.write(b"l" * (MiB - 4096))
            f.flush()
    assert refused.value.errno == errno.EDQUOT
    bq_ok("reconcile", vol)
    row = report()[vol]
    assert (row["usage"], row["used_bytes"]) == ("scanned", EXISTING + 4096 + 1000 + 1 + 512 * 1024)


def agent_process(*args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", "bpfquota"), "agent"] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def saved_bytes(vol, deadline=120):
    """The bytes the agent's file (saved.STATE_PATH of the host) holds for vol, once it holds any."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        try:
            with open("/var/lib/bpfquota/usage.json") as f:
                entry = json.load(f)["volumes"].get(vol)  # whole or absent: never torn
            if entry is not None:
                return entry["bytes"]
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    raise AssertionError("the agent saved no usage for %s in %ds" % (vol, deadline))


def test_the_agent_saves_when_stopped_and_a_kill_9_loses_nothing(share):
    vol = with_data(share, "nfs4")
    assert apply(share, vol)[0] == 0
    if os.path.exists(saved.STATE_PATH):
        os.unlink(saved.STATE_PATH)
    first = agent_process("--interval", "3600")
    try:
        assert saved_bytes(vol) == EXISTING  # saved after its first round
        with open(os.path.join(vol, "grown"), "wb") as f:
            f.write(b"g" * 5000)
        first.send_signal(signal.SIGTERM)  # systemctl stop
        assert first.wait(timeout=60) == 0, first.stdout.read()
    finally:
        first.kill()
    assert saved_bytes(vol) == EXISTING + 5000
    # kill -9 at any moment: the maps keep counting, the file stays whole, the next agent goes on
    for pause in (0.0, 1.5, 4.0):
        victim = agent_process("--interval", "3600")
        time.sleep(pause)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
        assert saved_bytes(vol) == EXISTING + 5000
    assert report()[vol]["used_bytes"] == EXISTING + 5000
    with open(os.path.join(vol, "grown"), "ab") as f:
        f.write(b"g" * 1000)
    rc = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "bpfquota"), "agent", "--once"], check=False,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    assert rc == 0 and saved_bytes(vol) == EXISTING + 6000
