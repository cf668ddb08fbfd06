# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent.reconcile_round: one batch of scans a round, resumed where the budget stopped it."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import agent, layout, usage
from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import walk_tree

from quota_testlib import FakeMaps


def volumes(tmp_path, count):
    """FakeMaps holding `count` volumes vol-0 ... (vol-i has i files of 10 bytes), usage unknown."""
    maps = FakeMaps()
    for index in range(count):
        root = tmp_path / ("vol-%d" % index)
        root.mkdir()
        for number in range(index):
            (root / ("f%d" % number)).write_bytes(b"x" * 10)
        maps.set_vol_cfg(index + 1, layout.VolCfg(1 << 30, 0, 999, 9, layout.MODES["enforce"], 0, 0))
        maps.set_paths({index + 1: str(root)})
    return maps


def usage_of(maps, vol_id):
    return usage.used(maps.vol_cfg(vol_id), maps.vol_stats(vol_id))


def test_a_round_rebases_every_volume_and_the_next_starts_over(tmp_path, capsys):
    maps = volumes(tmp_path, 3)
    assert agent.reconcile_round(maps, scan_timeout=30, budget=600) == 0
    assert [usage_of(maps, vol_id) for vol_id in (1, 2, 3)] == [(0, 0), (10, 1), (20, 2)]
    assert capsys.readouterr().err.count("bpfquota-agent: reconciled ") == 3


def walks_that_take_their_time(roots, timeout, deadline=None):
    for root in roots:
        yield walk_tree(root, deadline)
        time.sleep(0.5)


def test_a_round_out_of_budget_leaves_the_rest_for_the_next(tmp_path, capsys, monkeypatch):
    maps = volumes(tmp_path, 3)
    monkeypatch.setattr(usage, "walk_trees", walks_that_take_their_time)
    assert agent.reconcile_round(maps, scan_timeout=30, budget=0.3, start=2) == 0  # vol-2 scanned; vol-0 next
    err = capsys.readouterr().err
    assert "reconciled %s" % os.path.join(str(tmp_path), "vol-2") in err
    assert "2 volumes left for the next round (not scanned: the 0.3s budget for scans ran out)" in err
    assert usage_of(maps, 3) == (20, 2) and usage_of(maps, 1) == (999, 9)


def test_a_retry_scans_only_the_volumes_whose_usage_is_unknown_and_makes_it_known(tmp_path, capsys):
    maps = volumes(tmp_path, 3)
    for vol_id in (1, 3):
        maps.set_vol_cfg(vol_id, maps.vol_cfg(vol_id)._replace(flags=layout.USAGE_UNKNOWN))
    assert agent.unknown_volumes(maps) == [(1, str(tmp_path / "vol-0")), (3, str(tmp_path / "vol-2"))]
    agent.retry_unknown(maps, scan_timeout=30, budget=600)
    assert [usage_of(maps, vol_id) for vol_id in (1, 2, 3)] == [(0, 0), (999, 9), (20, 2)]
    assert [maps.vol_cfg(vol_id).flags for vol_id in (1, 2, 3)] == [0, 0, 0]
    assert capsys.readouterr().err.count("bpfquota-agent: first scan of ") == 2
    assert agent.unknown_volumes(maps) == []


def test_a_round_saves_the_usage_and_a_save_that_fails_is_logged(tmp_path, capsys, monkeypatch, private_saved_usage):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import saved
    maps = volumes(tmp_path, 2)
    maps.set_key((7, 1), 1)
    maps.set_key((7, 2), 2)
    maps.set_vol_cfg(2, maps.vol_cfg(2)._replace(flags=layout.USAGE_UNKNOWN))
    agent.save_usage(maps)
    assert saved.load(private_saved_usage)[0] == {str(tmp_path / "vol-0"): {"inos": [1], "bytes": 999, "files": 9}}
    agent.save_usage(maps, str(tmp_path / "vol-1" / "f0" / "usage.json"))  # under a file
    assert "bpfquota-agent: usage not saved: " in capsys.readouterr().err


# --- health and metrics ------------------------------------------------------------------------

def test_failed_scans_and_saves_are_counted_as_errors(tmp_path, capsys, monkeypatch):
    maps = volumes(tmp_path, 2)
    errors = agent.new_health()["errors"]
    os.rename(str(tmp_path / "vol-1"), str(tmp_path / "moved"))  # its scan fails
    agent.reconcile_round(maps, scan_timeout=30, budget=600, errors=errors)
    maps.set_vol_cfg(2, maps.vol_cfg(2)._replace(flags=layout.USAGE_UNKNOWN))
    agent.retry_unknown(maps, scan_timeout=30, budget=600, errors=errors)
    agent.save_usage(maps, errors=errors)
    (tmp_path / "file").write_text("")
    agent.save_usage(maps, str(tmp_path / "file" / "usage.json"), errors)
    assert dict(errors) == {"scan": 2, "save": 1}


def test_scans_of_the_agent_record_their_times(tmp_path, capsys, private_scan_times):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import scantimes
    maps = volumes(tmp_path, 2)
    before = time.time()
    agent.reconcile_round(maps, scan_timeout=30, budget=600)
    times, problem = scantimes.load(private_scan_times)
    assert problem is None and sorted(times) == [str(tmp_path / "vol-0"), str(tmp_path / "vol-1")]
    assert all(before <= when <= time.time() for when in times.values())


def test_metrics_are_written_with_the_agent_health(tmp_path, capsys):
    maps = volumes(tmp_path, 1)
    health = agent.new_health()
    agent.round_done(health, now=1234.5)
    health["errors"]["scan"] += 1
    out = tmp_path / "node-exporter"
    out.mkdir()
    assert agent.write_metrics(maps, str(out), health) is None
    text = (out / "bpfquota.prom").read_text()
    assert "\nbpfquota_agent_rounds_total 1\n" in text
    assert "\nbpfquota_agent_last_round_timestamp_seconds 1234.5\n" in text
    assert '\nbpfquota_agent_errors_total{kind="scan"} 1\n' in text
    assert 'bpfquota_volume_used_bytes{volume="%s"} 999\n' % (tmp_path / "vol-0") in text
    assert capsys.readouterr().err == ""


def test_a_missing_metrics_directory_is_logged_once_and_its_return_too(tmp_path, capsys):
    maps = volumes(tmp_path, 1)
    health = agent.new_health()
    out = tmp_path / "node-exporter"
    problem = None
    for dummy in range(3):
        problem = agent.write_metrics(maps, str(out), health, problem)
    err = capsys.readouterr().err
    assert err.count("bpfquota-agent: metrics not written: metrics directory %s does not exist" % out) == 1
    assert health["errors"]["metrics"] == 3
    out.mkdir()
    assert agent.write_metrics(maps, str(out), health, problem) is None
    assert capsys.readouterr().err == "bpfquota-agent: metrics written again to %s\n" % out
    assert '\nbpfquota_agent_errors_total{kind="metrics"} 3\n' in (out / "bpfquota.prom").read_text()


class NoEvents:
    """EventReader's stand-in: a pipe nothing is written to."""

    def __init__(self, on_event):
        self.read_end, self.write_end = os.pipe()

    def epoll_fd(self):
        return self.read_end

    def consume(self):
        return 0

    def close(self):
        os.close(self.read_end)
        os.close(self.write_end)


def run_stubbed_agent(tmp_path, monkeypatch, maps, **kwargs):
    monkeypatch.setattr(agent, "QuotaMaps", lambda: maps)
    monkeypatch.setattr(agent, "EventReader", NoEvents)
    monkeypatch.setattr(agent.enforcement, "LOCK_PATH", str(tmp_path / "bpfquota.lock"))
    return agent.run_agent(interval=3600, scan_timeout=30, budget=600, **kwargs)


def test_an_agent_run_once_writes_the_metrics_of_its_round(tmp_path, monkeypatch, capsys):
    maps = volumes(tmp_path, 1)
    out = tmp_path / "node-exporter"
    out.mkdir()
    assert run_stubbed_agent(tmp_path, monkeypatch, maps, once=True, metrics_dir=str(out)) == 0
    text = (out / "bpfquota.prom").read_text()
    assert "\nbpfquota_agent_rounds_total 1\n" in text
    assert 'bpfquota_volume_used_bytes{volume="%s"} 0\n' % (tmp_path / "vol-0") in text  # scanned: empty
    assert "metrics every 15s into %s" % out in capsys.readouterr().err


def test_between_rounds_the_metrics_are_written_every_interval(tmp_path, monkeypatch, capsys):
    maps = volumes(tmp_path, 1)
    writes = []

    def write_metrics(maps, directory, health, problem=None):
        writes.append((time.monotonic(), health["rounds"]))
        if len(writes) == 4:
            raise SystemExit(0)

    monkeypatch.setattr(agent, "write_metrics", write_metrics)
    started = time.monotonic()
    with pytest.raises(SystemExit):
        run_stubbed_agent(tmp_path, monkeypatch, maps, metrics_dir=str(tmp_path), metrics_interval=0.2)
    assert [rounds for dummy, rounds in writes] == [1, 1, 1, 1]  # one round (an hour apart), four writes
    gaps = [b - a for (a, dummy), (b, dummy) in zip(writes, writes[1:])]
    assert all(0.15 <= gap < 1.0 for gap in gaps), gaps
    assert writes[-1][0] - started < 5


def test_without_a_metrics_directory_nothing_is_written(tmp_path, monkeypatch, capsys):
    maps = volumes(tmp_path, 1)
    monkeypatch.setattr(agent, "write_metrics", lambda *args: pytest.fail("metrics written"))
    assert run_stubbed_agent(tmp_path, monkeypatch, maps, once=True, metrics_dir=None) == 0
    assert "no metrics" in capsys.readouterr().err
