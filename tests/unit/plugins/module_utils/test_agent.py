# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""agent.reconcile_round: one batch of scans a round, resumed where the budget stopped it."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

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
