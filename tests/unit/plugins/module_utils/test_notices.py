# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's warnings: journal datagrams, threshold crossings, refusal summaries, the watch pass."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import os
import socket
import struct

import pytest

from quota_testlib import FakeMaps

from ansible_collections.bpfquota.nfs.plugins.module_utils import grace, journal, layout, notices, quota
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import Volume
from ansible_collections.bpfquota.nfs.plugins.module_utils.watch import Watch

MiB = 1 << 20


# --- journal ---------------------------------------------------------------------------------

def test_datagram_simple_and_multi_line_values():
    data = journal.encode(collections.OrderedDict([("MESSAGE", "hi"), ("PRIORITY", 4), ("BPFQUOTA_PROCESSES", "a\nb")]))
    assert data == b"MESSAGE=hi\nPRIORITY=4\nBPFQUOTA_PROCESSES\n" + struct.pack("<Q", 3) + b"a\nb\n"
    assert journal.decode(data) == {"MESSAGE": b"hi", "PRIORITY": b"4", "BPFQUOTA_PROCESSES": b"a\nb"}


def test_datagram_values_round_trip_bytes_that_are_not_utf8_and_equals_signs():
    fields = {"BPFQUOTA_VOLUME": "/mnt/\udcff=x", "MESSAGE": "a=b"}
    assert journal.decode(journal.encode(fields)) == {"BPFQUOTA_VOLUME": b"/mnt/\xff=x", "MESSAGE": b"a=b"}


@pytest.mark.parametrize("name", ["message", "_PID", "A-B", "", "É"])
def test_field_names_journald_would_drop_are_refused(name):
    with pytest.raises(ValueError):
        journal.encode({name: "x"})


def test_send_to_a_socket_and_fall_back_without_one(tmp_path):
    path = str(tmp_path / "socket")
    assert journal.send({"MESSAGE": "x"}, path) is False  # no journal: the caller logs the line
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        assert journal.send({"MESSAGE": "x\ny", "PRIORITY": 3}, path) is True
        assert journal.decode(server.recv(65536)) == {"MESSAGE": b"x\ny", "PRIORITY": b"3"}
        assert journal.send({"MESSAGE": "x" * (journal.MAX_DATAGRAM + 1)}, path) is False
    finally:
        server.close()
        os.unlink(path)


# --- thresholds ------------------------------------------------------------------------------

def test_parse_percents():
    assert notices.parse_percents("95, 80,80%") == (80.0, 95.0)
    assert notices.parse_percents("") == ()
    for bad in ("0", "101", "x", "80;95"):
        with pytest.raises(ValueError, match="give e.g. 80,95"):
            notices.parse_percents(bad)


def test_each_threshold_once_per_crossing_rearmed_below_it():
    warned, said = notices.crossed((), 79.9, (80, 95))
    assert (warned, said) == (frozenset(), [])
    warned, said = notices.crossed(warned, 96, (80, 95))
    assert said == [80, 95]
    warned, said = notices.crossed(warned, 97, (80, 95))
    assert said == []
    warned, said = notices.crossed(warned, 90, (80, 95))
    assert (warned, said) == (frozenset([80]), [])
    assert notices.crossed(warned, 95, (80, 95))[1] == [95]


def volume(**kw):
    values = dict(name="10.0.0.5:/exports/shop/db", labels=(("claim", "db"), ("namespace", "shop"), ("pv", "pv-db")),
                  used_bytes=int(8.5 * MiB), limit_bytes=10 * MiB, used_files=3, limit_files=0, mode="enforce")
    values.update(kw)
    return notices.Volume(**values)


def test_threshold_entry_fields():
    fields = notices.threshold_entry(volume(), 80)
    assert dict(fields) == {
        "MESSAGE": "10.0.0.5:/exports/shop/db (pv pv-db) uses 8.5M of its 10M limit (85.0%, past the 80% warning)",
        "PRIORITY": journal.WARNING, "SYSLOG_IDENTIFIER": "bpfquota-agent", "BPFQUOTA_EVENT": "threshold",
        "BPFQUOTA_VOLUME": "10.0.0.5:/exports/shop/db", "BPFQUOTA_USED_BYTES": int(8.5 * MiB),
        "BPFQUOTA_LIMIT_BYTES": 10 * MiB, "BPFQUOTA_PERCENT": "85.0", "BPFQUOTA_PV": "pv-db",
        "BPFQUOTA_NAMESPACE": "shop", "BPFQUOTA_CLAIM": "db", "BPFQUOTA_THRESHOLD_PERCENT": "80"}
    assert notices.threshold_entry(volume(labels=()), 95)["PRIORITY"] == journal.ERR
    assert "BPFQUOTA_PV" not in notices.threshold_entry(volume(labels=()), 95)


def test_transition_entries():
    over = grace.Transition("v", "bytes", "over", 5 * MiB, 4 * MiB, 1300)
    fields = notices.transition_entry(volume(), over, 1000)
    assert fields["MESSAGE"].endswith("is over its soft limit (5M of 4M): growth is refused in 5m unless it drops "
                                      "to the soft limit")
    assert (fields["BPFQUOTA_EVENT"], fields["BPFQUOTA_GRACE_EXPIRES"], fields["BPFQUOTA_SOFT_LIMIT"]) == (
        "over_soft_limit", 1300, 4 * MiB)
    expired = notices.transition_entry(volume(), over._replace(event="expired"), 1300)
    assert (expired["BPFQUOTA_EVENT"], expired["PRIORITY"]) == ("grace_expired", journal.ERR)
    assert "growth is refused until" in expired["MESSAGE"]
    audit = notices.transition_entry(volume(mode="audit"), over._replace(event="expired"), 1300)
    assert "would be refused (audit mode)" in audit["MESSAGE"]
    under = notices.transition_entry(volume(), grace.Transition("v", "files", "under", 9, 10, None), 1400)
    assert under["MESSAGE"].endswith("back at or under its soft limit (9 files of 10 files): the grace clock is "
                                     "reset, growth allowed again")
    assert "BPFQUOTA_GRACE_EXPIRES" not in under


# --- refusal summaries -----------------------------------------------------------------------

def test_denied_since():
    assert notices.denied_since({"write": 5, "create": 1}, {"write": 9, "create": 1, "mkdir": 2}) == {
        "write": 4, "mkdir": 2}
    assert notices.denied_since({"write": 50}, {"write": 3}) == {"write": 3}  # a reset slot counts from zero


def test_summary_counts_exactly_and_names_the_sampled_processes_in_one_line():
    sampled = collections.Counter({(812, 1000, "dd", "write"): 3, (9, 0, "x\\x0afake", "create"): 1})
    fields = notices.refusal_summary(volume(), {"write": 1200, "create": 34}, sampled, 60)
    assert fields["MESSAGE"] == (
        "10.0.0.5:/exports/shop/db (pv pv-db): 1234 operations refused in the last 1m (write 1200, create 34); by "
        "pid 812 uid 1000 (dd) write, pid 9 uid 0 (x\\x0afake) create")
    assert "\n" not in fields["MESSAGE"]
    assert fields["BPFQUOTA_REFUSED"] == 1234
    assert fields["BPFQUOTA_REFUSED_BY_OP"] == "create=34 write=1200"
    assert fields["BPFQUOTA_PROCESSES"] == ("pid=812 uid=1000 comm=dd op=write events=3\n"
                                            "pid=9 uid=0 comm=x\\x0afake op=create events=1")
    assert notices.refusal_summary(volume(), {}, sampled, 60) is None


def test_summary_names_at_most_ten_processes():
    sampled = collections.Counter(dict(((pid, 0, "w", "write"), 1) for pid in range(15)))
    fields = notices.refusal_summary(volume(mode="audit"), {"write": 15}, sampled, 60)
    assert fields["MESSAGE"].endswith(" and 5 more")
    assert "would have been refused (audit mode)" in fields["MESSAGE"]
    assert len(fields["BPFQUOTA_PROCESSES"].splitlines()) == 10


# --- the watch pass ----------------------------------------------------------------------------

class Lock:
    def __enter__(self):
        pass

    def __exit__(self, *exc):
        pass


class Clock:
    def __init__(self):
        self.now = 1000.0


@pytest.fixture
def watched(monkeypatch):
    maps = FakeMaps()
    v = Volume("/v", 10 * MiB, 0, "enforce", "refuse", (("pv", "pv-a"),), 4 * MiB, 0, 30)
    the_plan = quota.plan({}, [v], {"/v": {(1, 10)}})
    quota.apply_plan(maps, the_plan)
    vol_id = the_plan.ids["/v"]
    said, lines, locks = [], [], []
    clock = Clock()
    monkeypatch.setattr("ansible_collections.bpfquota.nfs.plugins.module_utils.watch.time.monotonic",
                        lambda: clock.now)

    class Lock:
        def __enter__(self):
            locks.append(1)

        def __exit__(self, *exc):
            pass

    w = Watch((80.0, 95.0), 60.0, lines.append, said.append)

    def run(used, denied=None):
        cfg = maps.vol_cfg(vol_id)
        maps.set_vol_cfg(vol_id, cfg._replace(base_bytes=used, flags=cfg.flags & ~layout.USAGE_UNKNOWN))
        if denied:
            stats = maps.vol_stats(vol_id)
            maps.kernel_write_stats(vol_id, stats._replace(denied=dict(stats.denied, **denied)))
        del said[:]
        w.check(maps, Lock, now=clock.now)
        return [f["BPFQUOTA_EVENT"] for f in said]

    return maps, vol_id, w, run, clock, said, locks


def test_the_watch_pass_says_each_crossing_once_and_sets_the_flag_at_expiry(watched, private_grace_clocks):
    maps, vol_id, w, run, clock, said, locks = watched
    assert run(1 * MiB) == []
    assert run(5 * MiB) == ["over_soft_limit"]
    assert grace.load() == ({"/v": {"bytes": 1000.0}}, None)
    assert run(9 * MiB) == ["threshold"]
    assert said[0]["BPFQUOTA_THRESHOLD_PERCENT"] == "80"
    assert run(9 * MiB) == []
    assert locks == []  # no flag to change: no lock taken
    clock.now += 30
    assert run(9 * MiB) == ["grace_expired"]
    assert maps.vol_cfg(vol_id).flags & layout.SOFT_EXPIRED and locks == [1]
    assert run(9 * MiB) == []
    assert run(4 * MiB) == ["under_soft_limit"]
    assert not maps.vol_cfg(vol_id).flags & layout.SOFT_EXPIRED
    assert grace.load() == ({}, None)
    assert run(9 * MiB) == ["over_soft_limit", "threshold"]  # re-armed below them


def test_a_restarted_agent_keeps_the_clock(watched, private_grace_clocks):
    maps, vol_id, w, run, clock, said, locks = watched
    run(5 * MiB)
    clock.now += 20
    again = Watch((), 60.0, [].append, said.append)
    del said[:]
    again.check(maps, Lock, now=clock.now)
    assert said == [] and not maps.vol_cfg(vol_id).flags & layout.SOFT_EXPIRED
    clock.now += 10
    again.check(maps, Lock, now=clock.now)
    assert [f["BPFQUOTA_EVENT"] for f in said] == ["grace_expired"]


def test_refusals_are_summarized_once_per_interval_never_per_event(watched):
    maps, vol_id, w, run, clock, said, locks = watched
    assert run(1 * MiB, denied={"write": 100}) == []  # the first reading: what came before is not news
    for pid in (7, 7, 8):
        w.refused(layout.Event(1, pid, 1000, vol_id, layout.OPS.index("write"), -122, 1, "dd"))
    assert run(1 * MiB, denied={"write": 5000}) == []  # within the interval: nothing yet
    clock.now += 60
    assert run(1 * MiB, denied={"write": 5000}) == ["refusals"]
    assert said[0]["BPFQUOTA_REFUSED"] == 4900
    assert said[0]["BPFQUOTA_PROCESSES"] == "pid=7 uid=1000 comm=dd op=write events=2\n" \
                                            "pid=8 uid=1000 comm=dd op=write events=1"
    clock.now += 60
    assert run(1 * MiB, denied={"write": 5000}) == []  # no new refusals: no summary


def test_without_a_journal_the_plain_line_is_logged(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(journal.send, "__defaults__", (str(tmp_path / "none"),))
    Watch((), 60.0, lines.append).emit({"MESSAGE": "hello", "PRIORITY": 4})
    assert lines == ["hello"]
