# -*- coding: utf-8 -*-
"""Soft limits with a grace period (XFS semantics) on a real NFS mount, with the agent running:
over the soft limit growth is allowed until the grace runs out; then growth is refused with EDQUOT
though the volume is under its hard limit (reads and deletes allowed) until usage drops to the soft
limit; the expired grace survives an agent restart. The agent's warnings reach the journal with
their fields."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, MiB, bq_ok, fill, journal_entries, report

BPFQUOTA = os.path.join(ROOT, "bin", "bpfquota")
GRACE = 4  # seconds
PASS = 1  # seconds between the agent's checks (--metrics-interval)


def start_agent(log_path, metrics_dir=""):
    """The agent, started and running (its SIGTERM handler set), logging to log_path."""
    before = open(log_path).read().count("running:")
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, BPFQUOTA, "agent", "--interval", "3600", "--metrics-dir", metrics_dir,
                                    "--metrics-interval", str(PASS), "--summary-interval", "2"], stderr=log)
    deadline = time.monotonic() + 60
    while open(log_path).read().count("running:") == before:
        assert process.poll() is None and time.monotonic() < deadline, open(log_path).read()
        time.sleep(0.1)
    return process


def wait_for_log(log_path, text, timeout=60):
    deadline = time.monotonic() + timeout
    while text not in open(log_path).read():
        assert time.monotonic() < deadline, open(log_path).read()
        time.sleep(0.1)


def stop_agent(process, log_path):
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert process.returncode == 0, open(log_path).read()


@pytest.fixture
def agent_log(share):
    path = "/tmp/%s-agent.log" % share.name
    open(path, "w").close()
    return path


def row_of(path):
    return report()[path]


def wait_for(path, state, clock=None, timeout=GRACE + 10 * PASS):
    """The report row once the volume is in `state` and, if `clock` is given, its grace clock is
    running (True) or not (False): the state follows usage at once, the clock the agent's next pass."""
    deadline = time.monotonic() + timeout
    while True:
        row = row_of(path)
        if row["state"] == state and (clock is None or (row["grace_expires"] is not None) == clock):
            return row
        assert time.monotonic() < deadline, "%s is %r, not %r, after %ds" % (path, row["state"], state, timeout)
        time.sleep(0.2)


def grow(path, size=MiB):
    """Append `size` bytes; the errno of a refusal, or None."""
    written, error = fill(path, chunk=size, max_chunks=1)
    return error


def test_soft_limit_grace_expiry_refusal_recovery_and_restart(share, agent_log):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": "16Mi", "soft": "4Mi", "grace": GRACE})
    pv = share.client("pv")
    agent = start_agent(agent_log)
    try:
        assert fill(os.path.join(pv, "big"), max_chunks=6) == (6 * MiB, None)  # past soft: allowed
        row = wait_for(pv, "over soft limit", clock=True)
        assert (row["soft_bytes"], row["grace_seconds"]) == (4 * MiB, GRACE)
        assert row["grace_expires"] > time.time() - 1
        # In grace: growth still allowed.
        assert grow(os.path.join(pv, "more")) is None

        row = wait_for(pv, "grace expired")
        expires = row["grace_expires"]
        assert grow(os.path.join(pv, "more")) == errno.EDQUOT  # 7 MiB of 16: refused as at the hard limit
        assert grow(os.path.join(pv, "new-file")) == errno.EDQUOT
        with open(os.path.join(pv, "big"), "rb") as f:
            assert len(f.read()) == 6 * MiB  # reads allowed
        os.unlink(os.path.join(pv, "more"))  # deletes allowed (6 MiB left: still over soft)
        assert grow(os.path.join(pv, "big")) == errno.EDQUOT

        # The expired grace survives an agent restart: same clock, still refused.
        stop_agent(agent, agent_log)
        agent = start_agent(agent_log)
        time.sleep(2 * PASS)
        row = row_of(pv)
        assert (row["state"], row["grace_expires"]) == ("grace expired", expires)
        assert grow(os.path.join(pv, "big")) == errno.EDQUOT

        # Down to the soft limit: the clock resets and growth is allowed again.
        os.truncate(os.path.join(pv, "big"), 3 * MiB)
        wait_for(pv, "enforcing", clock=False)
        assert grow(os.path.join(pv, "big")) is None
        out = bq_ok("report")
        print(out)
        assert "Soft" in out.splitlines()[0]
    finally:
        stop_agent(agent, agent_log)
    log = open(agent_log).read()
    print(log)
    assert "write refused (EDQUOT)" not in log  # no line per refused write (summaries go to the journal)


def test_warnings_reach_the_journal_with_their_fields(share, agent_log):
    assert os.path.exists("/run/systemd/journal/socket"), "the test bed's VMs run journald"
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": "10Mi", "soft": "2Mi", "grace": 2,
                 "labels": {"pv": "pv-x", "namespace": "ns", "claim": "data"}})
    pv = share.client("pv")
    since = int(time.time()) - 1
    agent = start_agent(agent_log)
    try:
        wait_for_log(agent_log, "reconciled %s:" % pv)  # the first round's scan is over: usage settled
        assert fill(os.path.join(pv, "f"), max_chunks=9) == (9 * MiB, None)  # 90 %: past 80, over soft
        wait_for(pv, "grace expired")
        assert fill(os.path.join(pv, "f"), max_chunks=5)[1] == errno.EDQUOT
        deadline = time.monotonic() + 20
        while True:
            entries = journal_entries(pv, since)
            events = dict((e.get("BPFQUOTA_EVENT"), e) for e in entries)
            if {"threshold", "over_soft_limit", "grace_expired", "refusals"} <= set(events):
                break
            assert time.monotonic() < deadline, sorted(events)
            time.sleep(0.5)
    finally:
        stop_agent(agent, agent_log)
    # 90 % crosses 80, not 95: a threshold entry per crossing, each once
    assert [e["BPFQUOTA_THRESHOLD_PERCENT"] for e in entries if e["BPFQUOTA_EVENT"] == "threshold"] == ["80"]
    threshold = events["threshold"]
    assert (threshold["BPFQUOTA_PV"], threshold["BPFQUOTA_NAMESPACE"], threshold["BPFQUOTA_CLAIM"]) == ("pv-x", "ns", "data")
    assert (threshold["BPFQUOTA_THRESHOLD_PERCENT"], threshold["BPFQUOTA_LIMIT_BYTES"]) == ("80", str(10 * MiB))
    assert threshold["PRIORITY"] == "4" and threshold["SYSLOG_IDENTIFIER"] == "bpfquota-agent"
    assert events["grace_expired"]["PRIORITY"] == "3"
    refusals = events["refusals"]
    assert int(refusals["BPFQUOTA_REFUSED"]) >= 1
    assert "comm=python3 op=write" in refusals["BPFQUOTA_PROCESSES"]  # who: this test's process
    print(json.dumps(events, indent=1, sort_keys=True))


NODE_EXPORTER = "http://127.0.0.1:9100/metrics"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter reads it


def scrape(volume):
    """{(metric, state or operation label or None): value} of one volume's bpfquota series, as the test
    bed's node_exporter serves them (it reads the agent's textfile at each scrape); and their lines."""
    deadline = time.monotonic() + 60
    while True:  # node_exporter starts with the VM; give it a moment
        try:
            with urllib.request.urlopen(NODE_EXPORTER, timeout=10) as response:
                text = response.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline, "node_exporter doesn't answer on :9100"
            time.sleep(1)
    series, lines = {}, []
    for line in text.splitlines():
        if line.startswith("bpfquota_volume_") and 'volume="%s"' % volume in line:
            name, rest = line.split("{", 1)
            labels, value = rest.rsplit("} ", 1)
            extra = [part.split("=", 1)[1].strip('"') for part in labels.split(",")
                     if part.startswith(("state=", "operation="))]
            series[(name, extra[0] if extra else None)] = float(value)
            lines.append(line)
    return series, lines


def scrape_until(volume, check, timeout=GRACE + 15 * PASS):
    deadline = time.monotonic() + timeout
    while True:
        series, lines = scrape(volume)
        if series and check(series):
            return series, lines
        assert time.monotonic() < deadline, "\n".join(lines) or "no bpfquota series for %s" % volume
        time.sleep(0.5)


def test_node_exporter_serves_a_soft_limited_volume_before_and_after_its_grace_expired(share, agent_log):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": "16Mi", "soft": "4Mi", "grace": GRACE,
                 "labels": {"pv": "pvc-0a1b", "namespace": "shop", "claim": "orders"}})
    pv = share.client("pv")
    agent = start_agent(agent_log, metrics_dir=TEXTFILE_DIR)
    try:
        assert fill(os.path.join(pv, "big"), max_chunks=6) == (6 * MiB, None)
        series, lines = scrape_until(pv, lambda s: s.get(("bpfquota_volume_state", "over_soft_limit")) == 1 and
                                     s.get(("bpfquota_volume_grace_remaining_seconds", None), GRACE + 1) < GRACE)
        print("over the soft limit, grace running:\n" + "\n".join(lines))
        assert series[("bpfquota_volume_used_bytes", None)] == 6 * MiB
        assert series[("bpfquota_volume_soft_limit_bytes", None)] == 4 * MiB
        assert series[("bpfquota_volume_limit_bytes", None)] == 16 * MiB
        assert series[("bpfquota_volume_over_soft_limit", None)] == 1
        assert 0 < series[("bpfquota_volume_grace_remaining_seconds", None)] <= GRACE
        for label in ('persistentvolume="pvc-0a1b"', 'namespace="shop"', 'persistentvolumeclaim="orders"'):
            assert all(label in line for line in lines), label

        wait_for(pv, "grace expired")
        assert grow(os.path.join(pv, "big")) == errno.EDQUOT
        series, lines = scrape_until(pv, lambda s: s.get(("bpfquota_volume_state", "grace_expired")) == 1 and
                                     s.get(("bpfquota_volume_refused_operations_total", "write"), 0) >= 1)
        print("grace expired, a write refused:\n" + "\n".join(lines))
        assert series[("bpfquota_volume_grace_remaining_seconds", None)] == 0
        assert series[("bpfquota_volume_state", "over_soft_limit")] == 0
        assert series[("bpfquota_volume_used_bytes", None)] == 6 * MiB
    finally:
        stop_agent(agent, agent_log)
