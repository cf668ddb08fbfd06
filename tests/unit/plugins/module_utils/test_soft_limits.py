# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Soft limits and grace periods in volume entries: parsing, canonical form, bad input."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.durations import (
    DurationError, format_duration, parse_duration)
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import (
    DEFAULT_GRACE, VolumeError, diff_volumes, load_volumes_file, validate_volumes, volumes_file_text,
    volumes_to_document)

MiB = 1 << 20


def volume(**entry):
    return validate_volumes([dict({"path": "/v", "limit": "16Mi"}, **entry)], examine_paths=False)[0]


def problems(**entry):
    with pytest.raises(VolumeError) as e:
        validate_volumes([dict({"path": "/v", "limit": "16Mi"}, **entry)], examine_paths=False)
    return e.value.problems


@pytest.mark.parametrize("text, seconds", [
    (604800, 604800), ("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), ("5", 5), ("1d12h", 129600),
    ("2w", 1209600), (" 3h ", 10800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [0, -1, "", "7x", "1d1d", "-5", "5 s", True, 1.5, "d", None, 10 ** 12])
def test_bad_durations(text):
    with pytest.raises(DurationError, match="give whole seconds or a duration such as 7d"):
        parse_duration(text)


@pytest.mark.parametrize("seconds, shown", [(0, "0s"), (5, "5s"), (3599, "59m59s"), (604799, "6d23h"),
                                            (604800, "7d"), (90061, "1d1h"), (-3, "0s")])
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_soft_and_grace_parse():
    v = volume(soft="4Mi", grace="5s", inodes=100, inodes_soft=80)
    assert (v.soft_bytes, v.soft_files, v.grace_seconds) == (4 * MiB, 80, 5)


def test_grace_defaults_to_seven_days_with_a_soft_limit_and_means_nothing_without():
    assert volume(soft="4Mi").grace_seconds == DEFAULT_GRACE == 7 * 86400
    assert volume(inodes_soft=5).grace_seconds == DEFAULT_GRACE
    assert volume(grace="1h") == volume()  # canonical: nothing to compare, nothing to apply


def test_percentages_of_the_limits():
    v = volume(soft="80%", inodes=1000, inodes_soft="90%")
    assert (v.soft_bytes, v.soft_files) == (16 * MiB * 8 // 10, 900)
    assert volume(inodes_soft="90%").soft_files == 0  # a share of no file-count limit: none


def test_soft_at_the_limit_is_allowed_above_it_is_not():
    assert volume(soft="16Mi").soft_bytes == 16 * MiB
    assert problems(soft="17Mi") == [
        "volumes[0] (/v): soft (17825792 bytes) is above the limit (16777216 bytes): the soft limit must be at "
        "most the limit; lower soft or raise limit"]
    assert problems(inodes=5, inodes_soft=6) == [
        "volumes[0] (/v): inodes_soft (6) is above inodes (5): the soft limit must be at most the limit; lower "
        "inodes_soft or raise inodes"]


def test_every_bad_soft_value_is_named_at_once():
    assert problems(soft="lots", inodes_soft="x", grace="7x") == [
        "volumes[0] (/v): soft: invalid size 'lots': write a number followed by an optional unit, e.g. 50Gi, "
        "512M, 1.5Gi or 1048576",
        "volumes[0] (/v): inodes_soft must be a positive whole number of files or a percentage of inodes, not a "
        "string ('x'): write e.g. 'inodes_soft: 90000' or 'inodes_soft: 90%', or leave it out",
        "volumes[0] (/v): grace '7x' is not a duration: give whole seconds or a duration such as 7d, 12h, 30m, 45s "
        "(1d12h combines them)"]
    assert problems(soft="0%") == [
        "volumes[0] (/v): soft a string ('0%') is not a percentage above 0 and at most 100 (of a limit of 16777216 "
        "bytes): write a size such as 'soft: 40Gi' or a share of the limit such as 'soft: 80%'"]
    assert problems(soft=0) == ["volumes[0] (/v): soft: invalid size 0: a size must be greater than zero: give a "
                                "positive size such as 50Gi"]


def test_soft_changes_are_updates_and_the_document_shows_them():
    old, new = volume(soft="4Mi", grace=5), volume(soft="4Mi", grace=6)
    assert diff_volumes([old], [new]) == ([], [(old, new)], [])
    assert diff_volumes([old], [volume(soft=4 * MiB, grace="5s")]) == ([], [], [])
    assert volumes_to_document([old])["volumes"] == [
        {"path": "/v", "limit": 16 * MiB, "soft": 4 * MiB, "grace": 5, "mode": "enforce"}]


def test_file_defaults_reach_the_entries_and_are_written_back(tmp_path):
    text = volumes_file_text([{"path": "/v", "limit": "16Mi"}, {"path": "/w", "limit": "1Gi", "grace": "1h"}],
                             "enforce", "refuse", {"soft": "50%", "grace": "2d", "inodes_soft": None})
    assert 'soft: "50%"\ngrace: "2d"\nvolumes:' in text
    path = tmp_path / "v.yaml"
    path.write_text(text)
    entries = load_volumes_file(str(path))
    assert [(v.soft_bytes, v.grace_seconds) for v in validate_volumes(entries, examine_paths=False)] == [
        (8 * MiB, 2 * 86400), (512 * MiB, 3600)]
