# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""saved: the usage the agent saves and apply restores after a reboot."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, saved
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import Volume

from quota_testlib import FakeMaps, Kernel

GI = 1 << 30


def maps_with(*volumes):
    """FakeMaps with (id, path, (dev, ino) keys, base bytes, base files, flags) volumes."""
    maps = FakeMaps()
    for vol_id, path, keys, base_bytes, base_files, flags in volumes:
        maps.set_vol_cfg(vol_id, layout.VolCfg(GI, 0, base_bytes, base_files, layout.MODES["enforce"], 0, 0, flags))
        maps.set_paths({vol_id: path})
        for key in keys:
            maps.set_key(key, vol_id)
    return maps


def test_a_snapshot_holds_the_known_usage_with_the_directory_inodes():
    maps = maps_with((1, "/mnt/a", [(5, 100), (9, 100)], 1000, 3, 0),
                     (2, "/mnt/b", [(5, 200)], 0, 0, layout.USAGE_UNKNOWN),
                     (3, "/mnt/c", [(5, 300)], 50, 1, layout.RESTORED | layout.ALLOW_UNKNOWN))
    Kernel(maps).account(1, 24, -1)
    Kernel(maps).add(1, 1, 0, 0)
    Kernel(maps).account(3, -80)  # drift below zero is saved as zero
    state = saved.snapshot(maps, now=1234)
    assert state == {"format": saved.FORMAT, "saved_at": 1234, "volumes": {
        "/mnt/a": {"inos": [100], "bytes": 1024, "files": 2},
        "/mnt/c": {"inos": [300], "bytes": 0, "files": 1}}}


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "state" / "usage.json")
    state = {"format": saved.FORMAT, "saved_at": 1, "volumes": {"/mnt/a": {"inos": [1], "bytes": 2, "files": 3}}}
    saved.save(state, path)
    saved.save(state, path)
    assert saved.load(path) == (state["volumes"], None)
    assert os.listdir(str(tmp_path / "state")) == ["usage.json"]


def test_load_without_a_file_is_no_problem_and_a_damaged_file_says_so(tmp_path):
    assert saved.load(str(tmp_path / "none.json")) == ({}, None)
    damaged = tmp_path / "usage.json"
    damaged.write_text("{\"format\": \"bpfquota-usage-v1\", \"volu")
    volumes, problem = saved.load(str(damaged))
    assert volumes == {} and problem.startswith("%s: not a saved usage file (" % damaged)
    damaged.write_text(json.dumps({"format": "other", "volumes": {}}))
    assert saved.load(str(damaged)) == ({}, "%s: not a bpfquota-usage-v1 file" % damaged)


class Stat:
    def __init__(self, inos):
        self.inos = inos

    def __call__(self, path):
        if path not in self.inos:
            raise OSError(2, "No such file or directory", path)
        return os.stat_result((0o40755, self.inos[path], 0, 0, 0, 0, 0, 0, 0, 0))


def test_only_the_same_directory_gets_its_saved_usage_back():
    entries = {"/mnt/a": {"inos": [100], "bytes": 1024, "files": 2},
               "/mnt/b": {"inos": [200], "bytes": 5, "files": 1},       # made again: another inode
               "/mnt/c": {"inos": [300], "bytes": 5, "files": 1},       # gone
               "/mnt/d": {"inos": [400], "bytes": -5, "files": 1},      # not a count
               "/mnt/e": {"inos": "400", "bytes": 5, "files": 1}}
    volumes = [Volume(path, GI, 0, "enforce") for path in ("/mnt/a", "/mnt/b", "/mnt/c", "/mnt/d", "/mnt/e", "/mnt/f")]
    stat = Stat({"/mnt/a": 100, "/mnt/b": 201, "/mnt/d": 400, "/mnt/e": 400, "/mnt/f": 1})
    assert saved.restorable(entries, volumes, stat) == {"/mnt/a": (1024, 2)}
