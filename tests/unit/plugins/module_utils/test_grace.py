# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grace clocks over soft limits (XFS semantics), their file, the flags in the maps, the report."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json


from quota_testlib import FakeMaps

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement, grace, layout, quota, report
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import Volume

SOFT, GRACE = 100, 60
EXPIRED = layout.SOFT_EXPIRED


def usage(used=0, files=0, flags=0, known=True, soft_files=0):
    return grace.Usage(used, files, SOFT, soft_files, GRACE, flags, known)


def test_under_the_soft_limit_no_clock_runs():
    assert grace.step(None, SOFT, SOFT, GRACE, 1000, False) == (None, False)  # at the soft limit is not over it
    assert grace.evaluate({"v": usage(SOFT)}, {}, 1000) == ({}, {"v": 0}, [])


def test_over_the_soft_limit_the_clock_starts_then_expires_then_resets_at_or_below_it():
    clocks, flags, said = grace.evaluate({"v": usage(SOFT + 1)}, {}, 1000)
    assert (clocks, flags) == ({"v": {"bytes": 1000}}, {"v": 0})
    assert said == [grace.Transition("v", "bytes", "over", SOFT + 1, SOFT, 1000 + GRACE)]
    # still in grace: nothing new
    assert grace.evaluate({"v": usage(SOFT + 50)}, clocks, 1000 + GRACE - 1) == (clocks, {"v": 0}, [])
    clocks, flags, said = grace.evaluate({"v": usage(SOFT + 50)}, clocks, 1000 + GRACE)
    assert (clocks, flags) == ({"v": {"bytes": 1000}}, {"v": EXPIRED})
    assert said == [grace.Transition("v", "bytes", "expired", SOFT + 50, SOFT, 1000 + GRACE)]
    # flagged and still over: no repeat
    assert grace.evaluate({"v": usage(SOFT + 50, flags=EXPIRED)}, clocks, 2000) == (clocks, {"v": EXPIRED}, [])
    # down to the soft limit: flag off, clock gone; a new crossing gets a whole new grace
    clocks, flags, said = grace.evaluate({"v": usage(SOFT, flags=EXPIRED)}, clocks, 2001)
    assert (clocks, flags, said) == ({}, {"v": 0}, [grace.Transition("v", "bytes", "under", SOFT, SOFT, None)])
    assert grace.evaluate({"v": usage(SOFT + 1)}, clocks, 3000)[0] == {"v": {"bytes": 3000}}


def test_unknown_fails_closed():
    # flagged, clock lost (a new file, a hand edit): still expired
    assert grace.evaluate({"v": usage(SOFT + 1, flags=EXPIRED)}, {}, 1000)[1] == {"v": EXPIRED}
    # the clocks' file could not be read: a volume over its soft limit counts as expired
    clocks, flags, said = grace.evaluate({"v": usage(SOFT + 1)}, {}, 1000, lost=True)
    assert (clocks, flags) == ({"v": {"bytes": 1000 - GRACE}}, {"v": EXPIRED})
    assert [t.event for t in said] == ["over", "expired"]
    # usage unknown: the clock and the flag stay as they are
    assert grace.evaluate({"v": usage(0, flags=EXPIRED, known=False)}, {"v": {"bytes": 5}}, 1000) == (
        {"v": {"bytes": 5}}, {"v": EXPIRED}, [])


def test_bytes_and_files_have_their_own_clocks_and_flags():
    u = usage(SOFT + 1, files=11, soft_files=10)
    clocks, flags, dummy = grace.evaluate({"v": u}, {"v": {"files": 900}}, 1000)
    assert clocks == {"v": {"bytes": 1000, "files": 900}}
    assert flags == {"v": layout.FILES_SOFT_EXPIRED}
    # other flags are kept as they are
    assert grace.evaluate({"v": usage(flags=layout.RESTORED)}, {}, 1000)[1] == {"v": layout.RESTORED}


def test_clocks_file_round_trip_and_damage(private_grace_clocks, tmp_path):
    assert grace.load() == ({}, None)
    grace.save({"v": {"bytes": 1000.5}, "w": {"files": 3}})
    assert grace.load() == ({"v": {"bytes": 1000.5}, "w": {"files": 3}}, None)
    with open(private_grace_clocks, "w") as f:
        f.write("{")
    assert grace.load()[1].startswith(private_grace_clocks + ": not a grace clocks file")
    with open(private_grace_clocks, "w") as f:
        json.dump({"format": grace.FORMAT, "clocks": {"v": {"bytes": -1}}}, f)
    assert grace.load() == ({}, "%s: not a %s file" % (private_grace_clocks, grace.FORMAT))


def apply(maps, *volumes):
    the_plan = quota.plan(quota.applied_volumes(maps), list(volumes),
                          dict((v.path, {(1, n + 10)}) for n, v in enumerate(volumes)))
    quota.apply_plan(maps, the_plan)
    return the_plan.ids


def with_usage(maps, vol_id, used):
    maps.set_vol_cfg(vol_id, maps.vol_cfg(vol_id)._replace(base_bytes=used, flags=0))


def test_sync_flags_changes_only_the_grace_bits():
    maps = FakeMaps()
    ids = apply(maps, Volume("/v", 1000, 0, "enforce", "refuse", (), SOFT, 0, GRACE))
    maps.set_vol_cfg(ids["/v"], maps.vol_cfg(ids["/v"])._replace(flags=layout.RESTORED, base_bytes=7))
    assert grace.sync_flags(maps, ids, {"/v": EXPIRED | layout.USAGE_UNKNOWN}) == ["/v"]
    assert maps.vol_cfg(ids["/v"]) == maps.vol_cfg(ids["/v"])._replace(flags=layout.RESTORED | EXPIRED, base_bytes=7)
    assert grace.sync_flags(maps, ids, {"/v": EXPIRED}) == []


def test_a_sync_keeps_the_flag_so_a_rerun_is_unchanged_and_drops_it_with_the_soft_limit():
    maps = FakeMaps()
    v = Volume("/v", 1000, 0, "enforce", "refuse", (), SOFT, 0, GRACE)
    ids = apply(maps, v)
    grace.sync_flags(maps, ids, {"/v": EXPIRED})
    assert quota.applied_volumes(maps)["/v"][1] == v  # the flag is not part of the volume: changed=false
    assert quota.plan(quota.applied_volumes(maps), [v], {"/v": {(1, 10)}})[:3] == ([], [], [])
    apply(maps, v._replace(limit_bytes=2000))
    assert maps.vol_cfg(ids["/v"]).flags & EXPIRED
    apply(maps, v._replace(soft_bytes=0, grace_seconds=0))
    assert not maps.vol_cfg(ids["/v"]).flags & EXPIRED


def test_apply_restores_an_expired_grace_after_a_reboot_and_fails_closed(private_grace_clocks):
    v = Volume("/v", 1000, 0, "enforce", "refuse", (), SOFT, 0, GRACE)
    grace.save({"/v": {"bytes": 1000}})
    for clocks_text, expected in ((None, EXPIRED), ("garbage", EXPIRED)):
        if clocks_text:
            with open(private_grace_clocks, "w") as f:
                f.write(clocks_text)
        maps = FakeMaps()
        ids = apply(maps, v)
        with_usage(maps, ids["/v"], SOFT + 1)
        warned = []
        enforcement.restore_grace(maps, ids, warned.append, now=1000 + GRACE)
        assert maps.vol_cfg(ids["/v"]).flags & EXPIRED == expected
        assert bool(warned) == bool(clocks_text)
    # in grace, or under the soft limit: no flag
    grace.save({"/v": {"bytes": 1000}})
    for used, now in ((SOFT + 1, 1000 + GRACE - 1), (SOFT, 1000 + GRACE)):
        maps = FakeMaps()
        ids = apply(maps, v)
        with_usage(maps, ids["/v"], used)
        enforcement.restore_grace(maps, ids, [].append, now=now)
        assert not maps.vol_cfg(ids["/v"]).flags & EXPIRED


def test_report_rows_and_table_show_the_soft_limit_grace_and_state():
    maps = FakeMaps()
    ids = apply(maps, Volume("/v", 1 << 20, 0, "enforce", "refuse", (), 1 << 19, 0, 3600),
                Volume("/w", 1 << 20, 0, "enforce", "refuse", ()))
    with_usage(maps, ids["/v"], 600 * 1024)
    with_usage(maps, ids["/w"], 0)
    rows = dict((r["path"], r) for r in report.report_rows(maps, clocks={"/v": {"bytes": 1000}}))
    assert dict((k, rows["/v"][k]) for k in ("soft_bytes", "grace_seconds", "grace_expires", "state")) == {
        "soft_bytes": 1 << 19, "grace_seconds": 3600, "grace_expires": 4600, "state": "over soft limit"}
    assert (rows["/w"]["soft_bytes"], rows["/w"]["grace_expires"], rows["/w"]["state"]) == (None, None, "enforcing")
    lines = report.format_report(list(rows.values()), now=1060).splitlines()
    assert lines[0].split()[-3:] == ["State", "Soft", "Grace"]
    assert lines[1].endswith("over soft limit  512K  59m left")
    assert lines[2].endswith("enforcing        -     -")
    grace.sync_flags(maps, ids, {"/v": EXPIRED})
    row = [r for r in report.report_rows(maps, clocks={}) if r["path"] == "/v"][0]
    assert (row["state"], row["grace_expires"]) == ("grace expired", 0)  # expired when, no one knows
    assert report.format_report([row], now=5000).splitlines()[1].endswith("grace expired  512K  expired")
    # no soft limit anywhere: the table is as it was
    assert "Soft" not in report.format_report([rows["/w"]])
