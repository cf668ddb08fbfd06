# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""scantimes: when each volume was last scanned successfully, kept across restarts for the metrics."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import scantimes
from ansible_collections.bpfquota.nfs.plugins.module_utils.usage import ScanResult


def result(path, ok=True):
    return ScanResult(1, path, ok, 10 if ok else None, 1 if ok else None, 0.1, "" if ok else "timed out")


def test_successes_are_stamped_failures_keep_the_last_success_and_gone_volumes_go():
    times = {"/a": 100, "/b": 100, "/gone": 100}
    assert scantimes.updated(times, [result("/a"), result("/b", ok=False), result("/c")], {"/a", "/b", "/c"}, 500) == {
        "/a": 500, "/b": 100, "/c": 500}


def test_record_then_load_round_trips_and_the_file_is_whole(tmp_path):
    path = str(tmp_path / "state" / "scans.json")
    assert scantimes.load(path) == ({}, None)  # no file yet: no problem
    assert scantimes.record([result("/a"), result("/b")], ["/a", "/b"], now=10, path=path) is None
    assert scantimes.record([result("/b"), result("/a", ok=False)], ["/a", "/b"], now=20, path=path) is None
    assert scantimes.load(path) == ({"/a": 10, "/b": 20}, None)
    assert os.listdir(str(tmp_path / "state")) == ["scans.json"]


def test_record_of_failures_only_writes_nothing(tmp_path):
    path = str(tmp_path / "scans.json")
    assert scantimes.record([result("/a", ok=False)], ["/a"], now=10, path=path) is None
    assert not os.path.exists(path)


def test_a_damaged_file_is_named_on_load_and_replaced_by_the_next_record(tmp_path):
    path = tmp_path / "scans.json"
    path.write_text("{")
    times, problem = scantimes.load(str(path))
    assert times == {} and problem.startswith("%s: not a scan times file (" % path)
    path.write_text(json.dumps({"format": scantimes.FORMAT, "scans": {"/a": "yesterday"}}))
    assert scantimes.load(str(path)) == ({}, "%s: not a bpfquota-scans-v1 file" % path)
    assert scantimes.record([result("/a")], ["/a"], now=5, path=str(path)) is None
    assert scantimes.load(str(path)) == ({"/a": 5}, None)


def test_a_record_that_cannot_be_written_says_why(tmp_path):
    (tmp_path / "file").write_text("")
    path = str(tmp_path / "file" / "scans.json")  # under a file
    problem = scantimes.record([result("/a")], ["/a"], now=5, path=path)
    assert problem.startswith("scan times not recorded in %s: " % path)
