# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.report import format_report, report_json

MI, GI = 1024 ** 2, 1024 ** 3


def row(path, used, limit, files=0, limit_files=0, denials=0, mode="enforce", usage="scanned", unknown_usage="refuse",
        state=None, labels=None, **extra):
    return dict(path=path, used_bytes=used, limit_bytes=limit, files=files, limit_files=limit_files,
                denials=denials, mode=mode, usage=usage, unknown_usage=unknown_usage,
                state=state or ("auditing" if mode == "audit" else "enforcing"), labels=labels or {}, **extra)


ROWS = [
    row("/mnt/nfs/pv-b", 600 * MI, 512 * 10 ** 6, files=12, limit_files=100000, denials=3, mode="audit"),
    row("/mnt/nfs/pv-a", 3 * GI // 2, 50 * GI, files=1234567),
]


def test_table_is_aligned_and_sorted_by_path():
    assert format_report(ROWS) == "\n".join([
        "Volume         Used  Limit  Use%    Files  FLimit  Denials  Mode     Usage    State",
        "/mnt/nfs/pv-a  1.5G    50G    3%  1234567       -        0  enforce  scanned  enforcing",
        "/mnt/nfs/pv-b  600M   488M  122%       12  100000        3  audit    scanned  auditing",
    ])


def test_a_source_volume_shows_its_state_and_labels():
    rows = [row("nfs:/export/pv-a", 0, GI, state="not mounted here", usage="unknown",
                labels={"pv": "pv-a", "namespace": "shop", "claim": "data"}),
            row("/mnt/nfs/pv-b", 0, GI)]
    assert format_report(rows) == "\n".join([
        "Volume            Used  Limit  Use%  Files  FLimit  Denials  Mode     Usage    State             Labels",
        "/mnt/nfs/pv-b        0     1G    0%      0       -        0  enforce  scanned  enforcing         -",
        "nfs:/export/pv-a     0     1G    0%      0       -        0  enforce  unknown  not mounted here  "
        "claim=data,namespace=shop,pv=pv-a",
    ])
    assert json.loads(report_json(rows))["volumes"][1]["labels"] == {"pv": "pv-a", "namespace": "shop", "claim": "data"}


def test_the_usage_column_says_how_the_usage_is_known():
    rows = [row("/a", 0, 1, usage="restored"), row("/b", 0, 1, usage="unknown"),
            row("/c", 0, 1, usage="unknown", unknown_usage="allow")]
    assert [line.split("enforce ")[1].rsplit("enforcing", 1)[0].strip() for line in format_report(rows).splitlines()[1:]] == [
        "restored", "unknown", "unknown (counted from 0)"]


def test_table_widens_for_a_long_path_and_has_no_trailing_spaces():
    text = format_report([row("/a", 0, 1024), row("/mnt/nfs/a-rather-long-volume-name", 1, 1, files=5)])
    assert text == "\n".join([
        "Volume                              Used  Limit  Use%  Files  FLimit  Denials  Mode     Usage    State",
        "/a                                     0     1K    0%      0       -        0  enforce  scanned  enforcing",
        "/mnt/nfs/a-rather-long-volume-name     1      1  100%      5       -        0  enforce  scanned  enforcing",
    ])
    assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize("used, limit, shown", [
    (0, GI, "0%"),
    (GI // 2, GI, "50%"),
    (GI - 1, GI, "99%"),  # floored: 100% only once the limit is reached
    (GI, GI, "100%"),
    (3 * GI, GI, "300%"),
    (-5, GI, "0%"),
    (5, 0, "-"),
])
def test_use_percent(used, limit, shown):
    header, line = format_report([row("/v", used, limit)]).splitlines()
    assert line.split()[3] == shown


def test_empty_report():
    assert format_report([]) == "Volume  Used  Limit  Use%  Files  FLimit  Denials  Mode  Usage  State\n(no volumes)"


def test_json_report_is_sorted_with_stable_keys_and_percent():
    document = json.loads(report_json(ROWS))
    assert document == {"volumes": [
        {"path": "/mnt/nfs/pv-a", "used_bytes": 3 * GI // 2, "limit_bytes": 50 * GI, "files": 1234567,
         "limit_files": 0, "denials": 0, "mode": "enforce", "usage": "scanned", "unknown_usage": "refuse",
         "state": "enforcing", "labels": {}, "percent": 3.0},
        {"path": "/mnt/nfs/pv-b", "used_bytes": 600 * MI, "limit_bytes": 512 * 10 ** 6, "files": 12,
         "limit_files": 100000, "denials": 3, "mode": "audit", "usage": "scanned", "unknown_usage": "refuse",
         "state": "auditing", "labels": {}, "percent": 122.9},
    ]}
    assert [list(item) for item in document["volumes"]] == [
        ["path", "used_bytes", "limit_bytes", "files", "limit_files", "denials", "mode", "usage", "unknown_usage",
         "state", "labels", "percent"]] * 2


def test_json_keeps_extra_row_keys_in_a_stable_order():
    [item] = json.loads(report_json([row("/v", 1, 3, zeta=1, alpha=2)]))["volumes"]
    assert list(item) == ["path", "used_bytes", "limit_bytes", "files", "limit_files", "denials", "mode", "usage",
                          "unknown_usage", "state", "labels", "alpha", "zeta", "percent"]
    assert item["percent"] == 33.3


def test_json_percent_without_a_limit_is_null():
    assert json.loads(report_json([row("/v", 1, 0)]))["volumes"][0]["percent"] is None


def test_json_report_of_no_volumes():
    assert json.loads(report_json([])) == {"volumes": []}


def test_json_report_is_byte_for_byte_stable():
    assert report_json(ROWS) == report_json(list(reversed(ROWS)))
