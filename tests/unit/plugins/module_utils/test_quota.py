# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""quota.py: id assignment, plans, and applying them to the maps.

Tests taking `backend` run twice: against an in-memory fake of QuotaMaps and against real BPF
maps created (and pinned in a private bpffs directory) from the real bpf/bpfquota.bpf.c object,
whose LSM programs are not loaded, so they run on hosts that refuse LSM programs.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, libbpf, quota
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import NotLoaded, QuotaMaps, USER_MAPS
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import Volume

from quota_testlib import (
    Recorder,
    create_pinned_maps,
    new_pin_dir,
    remove_pins,
    zero_cfg,
)

GiB = 1 << 30
A, B, C, D = "/srv/vol-a", "/srv/vol-b", "/srv/vol-c", "/srv/vol-d"
DEV1, DEV2, DEV3 = (8 << 20) | 1, (0x2c << 20) | 7, (0x2c << 20) | 9
OBJECT_MAPS = ("vol_keys", "vol_devs", "nfs_groups", "place_requested", "vol_cfg", "vol_stats", "scan_dirty", "config", "vol_meta", "creating",
               "inode_st", "stash", "renaming", "failed_shrinks", "credited", "events")


def vol(path, limit=GiB, files=0, mode="enforce"):
    return Volume(path, limit, files, mode)


def applied_of(*pairs):
    """{path: (id, Volume)} from (id, Volume) pairs."""
    return dict((v.path, (vol_id, v)) for vol_id, v in pairs)


def snapshot(maps, slots=()):
    """Everything a test may compare: gen, routes, devs, paths, and the used slots' cfg and stats."""
    slots = set(slots) | set(maps.paths()) | set(maps.keys().values())
    return {
        "gen": maps.config().gen,
        "keys": maps.keys(),
        "devs": maps.devs(),
        "paths": maps.paths(),
        "cfg": dict((i, maps.vol_cfg(i)) for i in slots),
        "stats": dict((i, maps.vol_stats(i)) for i in slots),
    }


def keys_per_dev(keys):
    counts = {}
    for dev, ino in keys:
        counts[dev] = counts.get(dev, 0) + 1
    return counts


def replan(maps, volumes, keys_by_path):
    return quota.plan(quota.applied_volumes(maps), volumes, keys_by_path)


def apply(maps, volumes, keys_by_path):
    the_plan = replan(maps, volumes, keys_by_path)
    return the_plan, quota.apply_plan(maps, the_plan)


# --- assign_ids ------------------------------------------------------------------

def test_assign_ids_keeps_the_ids_of_volumes_that_stay_and_fills_the_lowest_free():
    applied = applied_of((5, vol(A)), (2, vol(B)), (1, vol(C)))
    ids = quota.assign_ids(applied, {A: vol(A), C: vol(C), "/x": vol("/x"), "/y": vol("/y"), "/w": vol("/w")})
    # B is gone: its id 2 is free again; new paths get 2, 3, 4 in path order.
    assert ids == {A: 5, C: 1, "/w": 2, "/x": 3, "/y": 4}


def test_assign_ids_from_scratch_numbers_paths_in_sorted_order_from_one():
    assert quota.assign_ids({}, [D, B, A, C]) == {A: 1, B: 2, C: 3, D: 4}


def test_assign_ids_never_hands_out_an_id_twice():
    applied = applied_of(*((i, vol("/v%d" % i)) for i in (1, 3, 4, 7)))
    desired = ["/v%d" % i for i in (1, 3, 4, 7)] + ["/n%d" % i for i in range(5)]
    ids = quota.assign_ids(applied, desired)
    assert sorted(ids.values()) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [ids["/n%d" % i] for i in range(5)] == [2, 5, 6, 8, 9]


class _TooSlow(Exception):
    pass


def test_one_new_volume_next_to_a_full_host_gets_its_id_quickly():
    applied = applied_of(*((i, vol("/v/%05d" % i)) for i in range(1, layout.MAX_VOLUMES)))
    desired = set(applied) | {"/w/new"}

    def too_slow(signum, frame):
        raise _TooSlow()

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        ids = quota.assign_ids(applied, desired)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ids["/w/new"] == layout.MAX_VOLUMES


# --- plan --------------------------------------------------------------------------

def test_plan_lists_added_updated_removed_with_ids_and_keys():
    old_b = vol(B, limit=GiB)
    applied = applied_of((1, vol(A)), (2, old_b), (3, vol(C)))
    new_b = vol(B, limit=2 * GiB, files=1000, mode="audit")
    volumes = [new_b, vol(D), vol(A)]
    keys = {A: {(DEV1, 10)}, B: {(DEV1, 20), (DEV2, 20)}, D: {(DEV2, 40)}}

    p = quota.plan(applied, volumes, keys)

    assert p.added == [vol(D)]
    assert p.updated == [(old_b, new_b)]
    assert p.removed == [vol(C)]
    assert p.ids == {A: 1, B: 2, D: 3}  # D reuses C's slot: the lowest free id
    assert p.keys == {(DEV1, 10): 1, (DEV1, 20): 2, (DEV2, 20): 2, (DEV2, 40): 3}


def test_plan_of_the_applied_state_is_empty():
    applied = applied_of((1, vol(A)), (4, vol(B, files=10)))
    p = quota.plan(applied, [vol(B, files=10), vol(A)], {A: {(DEV1, 1)}, B: {(DEV1, 2)}})
    assert (p.added, p.updated, p.removed) == ([], [], [])
    assert p.ids == {A: 1, B: 4}


@pytest.mark.parametrize("order", [(A, B), (B, A)])
def test_plan_refuses_one_directory_claimed_by_two_volumes_naming_both(order):
    shared = (DEV2, 77)
    keys = dict((path, {shared, (DEV1, index)}) for index, path in enumerate(order))
    with pytest.raises(ValueError) as info:
        quota.plan({}, [vol(A), vol(B)], keys)
    message = str(info.value)
    assert A in message and B in message
    assert "same directory" in message
    assert not isinstance(info.value, quota.CapacityError)


def test_plan_accepts_a_route_listed_twice_for_the_same_volume():
    p = quota.plan({}, [vol(A)], {A: [(DEV1, 5), (DEV1, 5)]})
    assert p.keys == {(DEV1, 5): 1}


def test_plan_refuses_more_volumes_than_slots():
    volumes = [vol("/v/%05d" % i) for i in range(layout.MAX_VOLUMES + 1)]
    with pytest.raises(quota.CapacityError) as info:
        quota.plan({}, volumes, {})
    assert "%d volumes exceed the capacity of %d" % (layout.MAX_VOLUMES + 1, layout.MAX_VOLUMES) in str(info.value)
    assert isinstance(info.value, ValueError)  # the CLI reports ValueErrors as bad input (exit 2)


def test_plan_routes_capacity_boundary():
    at_capacity = {A: set((DEV1, ino) for ino in range(layout.MAX_ROUTES))}
    assert len(quota.plan({}, [vol(A)], at_capacity).keys) == layout.MAX_ROUTES
    at_capacity[A].add((DEV1, layout.MAX_ROUTES))
    with pytest.raises(quota.CapacityError) as info:
        quota.plan({}, [vol(A)], at_capacity)
    assert "%d routes to volumes exceed the capacity of %d" % (layout.MAX_ROUTES + 1, layout.MAX_ROUTES) \
        in str(info.value)


def test_plan_filesystems_capacity_boundary():
    keys = {A: set((dev, 2) for dev in range(1, layout.MAX_DEVS + 1))}
    assert len(quota.plan({}, [vol(A)], keys).keys) == layout.MAX_DEVS
    keys[A].add((layout.MAX_DEVS + 1, 2))
    with pytest.raises(quota.CapacityError) as info:
        quota.plan({}, [vol(A)], keys)
    assert "more than %d filesystems" % layout.MAX_DEVS in str(info.value)


# --- vol_cfg_for -----------------------------------------------------------------------

def test_vol_cfg_for_a_new_slot_has_only_limits_and_mode_and_its_usage_is_unknown():
    assert quota.vol_cfg_for(vol(A, limit=5 * GiB, files=12, mode="audit")) == layout.VolCfg(
        limit_bytes=5 * GiB, limit_files=12, base_bytes=0, base_files=0, mode=layout.MODES["audit"],
        epoch=0, scanning=0, flags=layout.USAGE_UNKNOWN)


def test_unknown_usage_allow_is_a_flag_the_kernel_reads_and_applied_volumes_gives_back(backend):
    allow = vol(A)._replace(unknown_usage="allow")
    assert quota.vol_cfg_for(allow).flags == layout.USAGE_UNKNOWN | layout.ALLOW_UNKNOWN
    p, dummy = apply(backend, [allow, vol(B)], {A: {(DEV1, 10)}, B: {(DEV1, 20)}})
    assert quota.applied_volumes(backend) == {A: (1, allow), B: (2, vol(B))}
    p, dummy = apply(backend, [vol(A), vol(B)], {A: {(DEV1, 10)}, B: {(DEV1, 20)}})
    assert p.updated == [(allow, vol(A))] and backend.vol_cfg(1).flags == layout.USAGE_UNKNOWN


def test_a_restored_volume_has_its_saved_usage_as_base_and_is_known(backend):
    quota.apply_plan(backend, quota.plan({}, [vol(A), vol(B)], {A: {(DEV1, 10)}, B: {(DEV1, 20)}}),
                     saved={A: (5000, 7)})
    assert backend.vol_cfg(1) == layout.VolCfg(GiB, 0, 5000, 7, layout.MODES["enforce"], 0, 0, layout.RESTORED)
    assert backend.vol_cfg(2).flags == layout.USAGE_UNKNOWN


def test_vol_cfg_for_keeps_base_epoch_and_scanning_of_the_old_config():
    old = layout.VolCfg(limit_bytes=GiB, limit_files=0, base_bytes=123456, base_files=-3,
                        mode=layout.MODES["audit"], epoch=41, scanning=1)
    new = quota.vol_cfg_for(vol(A, limit=3 * GiB, files=7, mode="enforce"), old)
    assert new == layout.VolCfg(3 * GiB, 7, 123456, -3, layout.MODES["enforce"], 41, 1)
    unknown = old._replace(flags=layout.USAGE_UNKNOWN)
    assert quota.vol_cfg_for(vol(A), unknown).flags == layout.USAGE_UNKNOWN  # an update doesn't make it known


# --- the maps back ends agree ------------------------------------------------------------

def test_back_end_semantics(backend):
    """The fake behaves like the real maps (the real run of this test is the proof)."""
    assert backend.vol_cfg(7) == zero_cfg()  # an array slot never written reads as zeros
    assert backend.vol_stats(layout.PROBE_VOLUME).delta_bytes == (0, 0)
    assert (backend.paths(), backend.keys(), backend.devs(), backend.dirty(1)) == ({}, {}, {}, {})
    assert backend.config().gen == 0

    backend.set_config(backend.config()._replace(gen=0xFFFFFFFF))
    backend.bump_gen()
    assert backend.config().gen == 1 << 32  # 64 bits: no wrap to 0 ("not configured") after 2^32 bumps
    backend.set_config(backend.config()._replace(gen=0xFFFFFFFFFFFFFFFF))
    backend.bump_gen()
    assert backend.config().gen == 1

    backend.set_dev(DEV1, 2)
    backend.set_dev(DEV2, 1)
    backend.set_dev(DEV2, 0)
    backend.set_dev(DEV3, 0)  # deleting an absent dev is not an error
    assert backend.devs() == {DEV1: 2}

    backend.set_key((DEV1, 5), 3)
    backend.set_key((DEV1, 5), 4)
    backend.delete_key((DEV1, 6))
    assert backend.keys() == {(DEV1, 5): 4}

    path = "/srv/caf\u00e9/d\udcffir"  # not UTF-8 on disk: kept byte for byte (surrogateescape)
    backend.set_paths({9: path})
    backend.delete_paths([10])
    assert backend.paths() == {9: path}
    with pytest.raises(ValueError):
        backend.set_paths({9: "/" + "x" * layout.PATH_MAX})

    cfg = layout.VolCfg(GiB, 10, -5, -1, 1, 0xFFFFFFFF, 1)
    backend.set_vol_cfg(layout.MAX_VOLUMES, cfg)
    assert backend.vol_cfg(layout.MAX_VOLUMES) == cfg


def test_back_end_semantics_of_many_entries_at_once(backend):
    cfgs = {1: layout.VolCfg(GiB, 1, 2, 3, 1, 4, 0), 5: layout.VolCfg(2 * GiB, 0, -7, -1, 2, 9, 1),
            layout.MAX_VOLUMES: layout.VolCfg(1, 0, 0, 0, 1, 0, 0)}
    backend.set_vol_cfgs(cfgs)
    assert backend.vol_cfgs([1, 5, 7, layout.MAX_VOLUMES]) == dict(list(cfgs.items()) + [(7, zero_cfg())])
    backend.kernel_write_stats(5, backend.vol_stats(5)._replace(delta_bytes=(10, -3), checks=4))
    stats = backend.vol_stats_of([5, 6])
    assert (stats[5].delta_bytes, stats[5].checks, stats[6] == backend.vol_stats(6)) == ((10, -3), 4, True)
    backend.reset_vol_stats_of([5])
    assert backend.vol_stats_of([5])[5] == backend.vol_stats(6)
    assert (backend.vol_cfgs([]), backend.vol_stats_of([])) == ({}, {})

    backend.set_paths({1: A, 2: B, 3: C})
    backend.delete_paths([2, 3, 4])  # 4 was never there
    assert backend.paths() == {1: A}

    backend.set_keys({(DEV1, 1): 1, (DEV1, 2): 2, (DEV2, 1): 1})
    backend.delete_keys([(DEV1, 2), (DEV3, 9)])
    assert backend.keys() == {(DEV1, 1): 1, (DEV2, 1): 1}

    backend.set_devs({DEV1: 2, DEV2: 1})
    backend.set_devs({DEV1: 1, DEV2: 0, DEV3: 0})
    assert backend.devs() == {DEV1: 1}

    backend.kernel_write_dirty((DEV1, 7), layout.Dirty(1, 3, 100, 1))
    backend.kernel_write_dirty((DEV1, 8), layout.Dirty(2, 3, 0, 0))
    assert backend.all_dirty() == {(DEV1, 7): layout.Dirty(1, 3, 100, 1), (DEV1, 8): layout.Dirty(2, 3, 0, 0)}
    backend.delete_dirty([(DEV1, 7), (DEV2, 7)])
    assert backend.all_dirty() == {(DEV1, 8): layout.Dirty(2, 3, 0, 0)}

    for write in (backend.set_vol_cfgs, backend.set_paths, backend.set_keys, backend.set_devs):
        write({})
    for delete in (backend.reset_vol_stats_of, backend.delete_paths, backend.delete_keys, backend.delete_dirty):
        delete([])
    assert (backend.paths(), backend.keys(), backend.devs()) == ({1: A}, {(DEV1, 1): 1, (DEV2, 1): 1}, {DEV1: 1})


def test_thousands_of_entries_read_back_whole(backend):
    """More than one batch of each map (vol_meta's 4 KiB values take ~250 a batch)."""
    ids = range(1, 3001)
    backend.set_paths(dict((i, "/srv/pv-%05d" % i) for i in ids))
    backend.set_keys(dict(((DEV1, i), i) for i in ids))
    backend.set_vol_cfgs(dict((i, layout.VolCfg(i, 0, 0, 0, 1, i, 0)) for i in ids))
    assert backend.paths() == dict((i, "/srv/pv-%05d" % i) for i in ids)
    assert backend.keys() == dict(((DEV1, i), i) for i in ids)
    assert [cfg.epoch for vol_id, cfg in sorted(backend.vol_cfgs([2999, 7, 1500]).items())] == [7, 1500, 2999]


def test_real_maps_are_the_objects_maps_pinned_like_the_loader(bpfquota_object):
    pin_dir = new_pin_dir()
    try:
        assert create_pinned_maps(bpfquota_object, pin_dir) == sorted(OBJECT_MAPS)
        fd = libbpf.obj_get(os.path.join(pin_dir, "vol_cfg"))
        try:
            info = libbpf.map_info(fd)
        finally:
            os.close(fd)
        assert (info["type"], info["key_size"], info["value_size"], info["max_entries"]) == (
            libbpf.BPF_MAP_TYPE_ARRAY, 4, layout.VOL_CFG.size, layout.VOLUME_SLOTS)
        os.unlink(os.path.join(pin_dir, USER_MAPS[-1]))
        with pytest.raises(NotLoaded) as info:
            QuotaMaps(pin_dir)
        assert "bpfquota load" in str(info.value)
    finally:
        remove_pins(pin_dir)


def test_applied_volumes_skips_unused_slots_and_the_probe(backend):
    backend.set_vol_cfg(1, quota.vol_cfg_for(vol(A, limit=GiB, files=5)))
    backend.set_paths({1: A})
    backend.set_vol_cfg(2, quota.vol_cfg_for(vol(B, mode="audit")))
    backend.set_paths({2: B})
    backend.set_paths({3: C})  # a path whose slot is unused (mode 0): not a volume
    backend.set_vol_cfg(layout.PROBE_VOLUME, layout.VolCfg(1, 0, 1, 0, 1, 0, 0))
    backend.set_paths({layout.PROBE_VOLUME: "/run/bpfquota-probe"})
    assert quota.applied_volumes(backend) == {A: (1, vol(A, files=5)), B: (2, vol(B, mode="audit"))}


# --- apply_plan --------------------------------------------------------------------------

def test_apply_new_volumes_writes_slots_then_routes(backend):
    maps = Recorder(backend)
    keys = {A: {(DEV1, 10), (DEV2, 10)}, B: {(DEV1, 20)}}
    p, changed = apply(maps, [vol(A, files=9), vol(B, limit=2 * GiB, mode="audit")], keys)

    assert changed is True
    assert p.ids == {A: 1, B: 2}
    assert maps.paths() == {1: A, 2: B}
    assert maps.vol_cfg(1) == layout.VolCfg(GiB, 9, 0, 0, layout.MODES["enforce"], 0, 0, layout.USAGE_UNKNOWN)
    assert maps.vol_cfg(2) == layout.VolCfg(2 * GiB, 0, 0, 0, layout.MODES["audit"], 0, 0, layout.USAGE_UNKNOWN)
    assert maps.keys() == {(DEV1, 10): 1, (DEV2, 10): 1, (DEV1, 20): 2}
    assert maps.devs() == {DEV1: 2, DEV2: 1}
    assert maps.config().gen == 1
    ops = maps.ops
    for vol_id, key in ((1, (DEV1, 10)), (1, (DEV2, 10)), (2, (DEV1, 20))):
        # a route never leads to a slot that isn't configured yet
        assert ops.index(("set_vol_cfg", vol_id, maps.vol_cfg(vol_id))) < ops.index(("set_key", key, vol_id))
    assert ops[-1] == ("bump_gen",)


def test_removed_routes_are_gone_and_caches_invalidated_before_the_slot_is_reused(backend):
    maps = Recorder(backend)
    keys = {A: {(DEV1, 10), (DEV2, 11)}, B: {(DEV1, 20)}}
    apply(maps, [vol(A), vol(B)], keys)
    # A (slot 1) has usage and a dirty record; B has one too, which must survive.
    backend.kernel_write_stats(1, backend.vol_stats(1)._replace(delta_bytes=(500, 7), stale=1))
    backend.kernel_write_dirty((DEV1, 99), layout.Dirty(1, 0, 10, 1))
    backend.kernel_write_dirty((DEV1, 98), layout.Dirty(2, 0, 20, 1))
    backend.set_vol_cfg(1, backend.vol_cfg(1)._replace(base_bytes=4000, epoch=5))
    del maps.ops[:]

    keys = {B: {(DEV1, 20)}, C: {(DEV3, 30)}}
    p, changed = apply(maps, [vol(B), vol(C, limit=3 * GiB)], keys)

    assert changed is True
    assert p.removed == [vol(A)] and p.added == [vol(C, limit=3 * GiB)]
    assert p.ids[C] == 1  # the removed volume's slot is reused
    ops = maps.ops
    last_route_of_a = max(ops.index(("delete_key", key)) for key in ((DEV1, 10), (DEV2, 11)))
    new_cfg = layout.VolCfg(3 * GiB, 0, 0, 0, layout.MODES["enforce"], 0, 0, layout.USAGE_UNKNOWN)
    reuse = ops.index(("set_vol_cfg", 1, new_cfg))
    bumps = [i for i, op in enumerate(ops) if op == ("bump_gen",)]
    assert last_route_of_a < reuse
    # inodes that cached "volume 1" for A are re-resolved before slot 1 means C
    assert any(last_route_of_a < i < reuse for i in bumps)
    assert reuse < ops.index(("set_key", (DEV3, 30), 1))
    assert ops.index(("reset_vol_stats", 1)) > last_route_of_a

    assert maps.paths() == {1: C, 2: B}
    assert maps.vol_cfg(1) == new_cfg  # nothing of A's base or epoch is left
    stats = maps.vol_stats(1)
    assert (stats.delta_bytes, stats.stale) == ((0, 0), 0)
    assert maps.dirty(1) == {}
    assert list(maps.dirty(2)) == [(DEV1, 98)]
    assert maps.keys() == {(DEV1, 20): 2, (DEV3, 30): 1}
    assert maps.devs() == {DEV1: 1, DEV3: 1}


def test_update_changes_limits_and_mode_but_keeps_scan_state_and_routes(backend):
    maps = Recorder(backend)
    keys = {A: {(DEV1, 10)}}
    apply(maps, [vol(A)], keys)
    scanned = maps.vol_cfg(1)._replace(base_bytes=777, base_files=5, epoch=3, scanning=1)
    backend.set_vol_cfg(1, scanned)
    gen = maps.config().gen
    del maps.ops[:]

    p, changed = apply(maps, [vol(A, limit=GiB // 2, files=50, mode="audit")], keys)

    assert changed is False
    assert [new for old, new in p.updated] == [vol(A, limit=GiB // 2, files=50, mode="audit")]
    assert maps.vol_cfg(1) == scanned._replace(limit_bytes=GiB // 2, limit_files=50, mode=layout.MODES["audit"])
    assert maps.config().gen == gen
    assert maps.writes("set_key", "delete_key", "bump_gen", "reset_vol_stats", "set_path", "delete_path") == []


def test_reapplying_changes_nothing(backend):
    maps = Recorder(backend)
    keys = {A: {(DEV1, 10), (DEV2, 10)}, B: {(DEV1, 20)}, C: {(DEV3, 1)}}
    volumes = [vol(A), vol(B, files=3), vol(C, mode="audit")]
    apply(maps, volumes, keys)
    backend.set_vol_cfg(2, maps.vol_cfg(2)._replace(base_bytes=99, epoch=1))
    before = snapshot(maps)
    del maps.ops[:]

    p, changed = apply(maps, volumes, keys)

    assert (p.added, p.updated, p.removed) == ([], [], [])
    assert changed is False
    assert snapshot(maps) == before
    assert maps.ops == []  # not a single map entry is written
    assert quota.sync_keys(maps, p.keys) is False


def test_gen_is_bumped_exactly_when_routes_change(backend):
    maps = Recorder(backend)
    steps = [
        ([vol(A), vol(B)], {A: {(DEV1, 1)}, B: {(DEV2, 2)}}),               # add
        ([vol(A, limit=2 * GiB), vol(B)], {A: {(DEV1, 1)}, B: {(DEV2, 2)}}),  # update only
        ([vol(A, limit=2 * GiB), vol(B)], {A: {(DEV1, 1), (DEV3, 1)}, B: {(DEV2, 2)}}),  # a new route
        ([vol(A, limit=2 * GiB)], {A: {(DEV1, 1), (DEV3, 1)}}),            # remove
        ([vol(A, limit=2 * GiB), vol(C)], {A: {(DEV1, 1)}, C: {(DEV2, 2)}}),  # route gone, C reuses B's dir
    ]
    bumped = []
    for volumes, keys in steps:
        gen = maps.config().gen
        before = maps.keys()
        p, changed = apply(maps, volumes, keys)
        assert changed == (maps.keys() != before)
        bumped.append(maps.config().gen != gen)
        assert maps.keys() == replan(maps, volumes, keys).keys
    assert bumped == [True, False, True, True, True]
    # No bump without a route write since the previous one, and none missing after the last.
    since_bump = 0
    for op in maps.ops:
        if op[0] in ("set_key", "delete_key"):
            since_bump += 1
        elif op[0] == "bump_gen":
            assert since_bump > 0
            since_bump = 0
    assert since_bump == 0


def test_vol_devs_counts_the_routes_on_each_filesystem(backend):
    keys = {A: {(DEV1, 1), (DEV1, 2), (DEV2, 1)}, B: {(DEV1, 3)}, C: {(DEV3, 3)}}
    apply(backend, [vol(A), vol(B), vol(C)], keys)
    assert backend.devs() == {DEV1: 3, DEV2: 1, DEV3: 1} == keys_per_dev(backend.keys())

    keys = {A: {(DEV1, 1), (DEV2, 1)}, C: {(DEV3, 3)}}
    apply(backend, [vol(A), vol(C)], keys)
    assert backend.devs() == {DEV1: 1, DEV2: 1, DEV3: 1} == keys_per_dev(backend.keys())

    apply(backend, [vol(C)], {C: {(DEV3, 3)}})
    assert backend.devs() == {DEV3: 1}  # filesystems without volumes are let through at once

    apply(backend, [], {})
    assert (backend.devs(), backend.keys(), backend.paths()) == ({}, {}, {})


def test_a_route_moving_between_staying_volumes_is_rewritten_not_deleted(backend):
    maps = Recorder(backend)
    apply(maps, [vol(A), vol(B)], {A: {(DEV1, 1), (DEV1, 5)}, B: {(DEV1, 2)}})
    del maps.ops[:]
    p, changed = apply(maps, [vol(A), vol(B)], {A: {(DEV1, 1)}, B: {(DEV1, 2), (DEV1, 5)}})
    assert changed is True
    assert maps.keys() == {(DEV1, 1): 1, (DEV1, 2): 2, (DEV1, 5): 2}
    assert ("delete_key", (DEV1, 5)) not in maps.ops  # never unprotected in between


# --- sync_keys and the probe volume ---------------------------------------------------------

PROBE_KEY = (DEV3, 4242)


def with_probe(backend):
    backend.set_vol_cfg(layout.PROBE_VOLUME, layout.VolCfg(1, 0, 1, 0, 1, 0, 0))
    backend.set_key(PROBE_KEY, layout.PROBE_VOLUME)
    backend.set_dev(PROBE_KEY[0], 1)
    return Recorder(backend)


def test_sync_keys_never_touches_the_probe_volumes_route(backend):
    maps = with_probe(backend)
    assert quota.sync_keys(maps, {(DEV1, 1): 1, (DEV3, 7): 2}) is True
    assert quota.sync_keys(maps, {(DEV1, 1): 1}) is True
    assert quota.sync_keys(maps, {}) is True
    assert quota.sync_keys(maps, {}) is False
    assert maps.keys() == {PROBE_KEY: layout.PROBE_VOLUME}
    assert maps.devs().get(PROBE_KEY[0], 0) > 0  # the probe's filesystem stays checked
    assert DEV1 not in maps.devs()
    assert not [op for op in maps.ops if op[0] in ("set_key", "delete_key") and op[1] == PROBE_KEY]


def test_apply_plan_with_removals_keeps_the_probe(backend):
    maps = with_probe(backend)
    apply(maps, [vol(A), vol(B)], {A: {(DEV1, 1)}, B: {(DEV3, 2)}})
    apply(maps, [], {})
    assert maps.keys() == {PROBE_KEY: layout.PROBE_VOLUME}
    assert maps.vol_cfg(layout.PROBE_VOLUME) == layout.VolCfg(1, 0, 1, 0, 1, 0, 0)
    assert maps.devs().get(PROBE_KEY[0], 0) > 0
    assert not [op for op in maps.ops if len(op) > 1 and op[1] in (PROBE_KEY, layout.PROBE_VOLUME)]


def test_sync_keys_reports_changes_and_is_idempotent(backend):
    maps = Recorder(backend)
    want = {(DEV1, 1): 1, (DEV2, 1): 1, (DEV2, 9): 3}
    assert quota.sync_keys(maps, want) is True
    assert maps.keys() == want
    assert maps.devs() == {DEV1: 1, DEV2: 2}
    assert maps.config().gen == 1
    del maps.ops[:]

    assert quota.sync_keys(maps, dict(want)) is False
    assert maps.writes("set_key", "delete_key", "bump_gen", "set_config") == []
    assert maps.config().gen == 1

    want = {(DEV2, 1): 4, (DEV2, 9): 3}  # one route gone, one pointing elsewhere
    assert quota.sync_keys(maps, want) is True
    assert maps.keys() == want and maps.devs() == {DEV2: 2}
    assert maps.config().gen == 2
