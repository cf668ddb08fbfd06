# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the maps equal a list of volumes: plan first (pure), then apply."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import json

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import bytes_sha256
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import Volume, diff_volumes, volume_meta_text

# keys: {(fs, ino): value} as vol_keys holds it; groups: {fsid: group} as nfs_groups holds it (None: leave it)
# watch: whether every NFS mount must be placed (None: while any key is an NFS one)
Plan = collections.namedtuple("Plan", "added updated removed ids keys groups watch")
Plan.__new__.__defaults__ = (None, None)  # groups, watch


class CapacityError(ValueError):
    pass


def sync_stamp(paths, mountinfo_text):
    """What the routes of a sync depend on: the volume paths and this host's mount table.

    A sync that finds the stamp of its own paths and mount table in the maps (QuotaMaps keeps it
    only while nothing else wrote routes or paths) can take the routes from the maps instead of
    stat'ing every volume again; limits and modes are compared as always.
    """
    text = "".join(path + "\0" for path in sorted(set(paths))) + "\0" + mountinfo_text
    return "bpfquota-sync-v1:" + bytes_sha256(text.encode("utf-8", "surrogateescape"))


def volumes_stamp(entries, default_mode, routes_stamp):
    """The digest of a sync's every input: the raw entries, their default mode, and routes_stamp."""
    text = json.dumps([entries, default_mode], sort_keys=True, default=repr)
    return bytes_sha256((text + routes_stamp).encode("utf-8", "surrogateescape"))


def stored_route_keys(maps, applied, paths):
    """{path: set of (fs, ino)} as the maps hold them, for paths the maps already have."""
    by_id = collections.defaultdict(set)
    for key, vol_id in maps.keys().items():
        by_id[vol_id].add(key)
    return dict((path, by_id[applied[path][0]]) for path in paths)


def stored_roots(maps, applied):
    """{(fs, ino): name of the volume it lies in, or None} of the NFS mount roots the maps have placed
    (as Identities.roots), for a plan that takes the keys from the maps."""
    names = dict((vol_id, name) for name, (vol_id, dummy) in applied.items())
    roots = {}
    for key, value in maps.keys().items():
        if value & layout.ROOT_IN and value != layout.PROBE_VOLUME:
            inside = value & ~layout.ROOT_IN
            if not inside or inside in names:
                roots[key] = names.get(inside)
    return roots


def applied_volumes(maps):
    """{path: (volume id, Volume)} as the maps hold them."""
    paths = dict((vol_id, path) for vol_id, path in maps.paths().items() if vol_id <= layout.MAX_VOLUMES)
    labels = maps.labels()
    out = {}
    for vol_id, cfg in maps.vol_cfgs(paths).items():
        if cfg.mode != layout.MODE_UNUSED:
            path = paths[vol_id]
            unknown_usage = "allow" if cfg.flags & layout.ALLOW_UNKNOWN else "refuse"
            out[path] = (vol_id, Volume(path, cfg.limit_bytes, cfg.limit_files, layout.MODE_NAMES[cfg.mode], unknown_usage,
                                        labels.get(vol_id, ()), cfg.soft_bytes, cfg.soft_files, cfg.grace_seconds))
    return out


def assign_ids(applied, desired):
    """Keep the ids of volumes that stay; give new ones the lowest free ids."""
    ids = dict((path, applied[path][0]) for path in applied if path in desired)
    taken = set(ids.values())
    free = (i for i in range(1, layout.MAX_VOLUMES + 1) if i not in taken)
    for path in sorted(desired):
        if path not in ids:
            ids[path] = next(free)
    return ids


def plan(applied, volumes, keys_by_path, roots=None, groups=None, watch=None):
    """What apply() will do, computed from state alone (check mode shows exactly this).
    keys_by_path: {path: keys} of the volumes; roots, groups: of their Identities (None: keep the
    maps' NFS placement as it is)."""
    desired = dict((v.path, v) for v in volumes)
    if len(desired) > layout.MAX_VOLUMES:
        raise CapacityError("%d volumes exceed the capacity of %d: split them across hosts or remove some"
                            % (len(desired), layout.MAX_VOLUMES))
    added, updated, removed = diff_volumes([volume for dummy, volume in applied.values()], volumes)
    ids = assign_ids(applied, desired)
    keys = {}
    for path, path_keys in keys_by_path.items():
        for key in path_keys:
            other = keys.get(key)
            if other is not None and other != ids[path]:
                raise ValueError("volumes %s and %s are the same directory: keep one of them"
                                 % (path, [p for p, i in ids.items() if i == other][0]))
            keys[key] = ids[path]
    for key, value in root_values(roots or {}, ids).items():
        keys.setdefault(key, value)
    if len(keys) > layout.MAX_ROUTES:
        raise CapacityError("%d routes to volumes exceed the capacity of %d" % (len(keys), layout.MAX_ROUTES))
    if len(set(key[0] for key in keys if key[0] < layout.NFS_FS_BASE)) > layout.MAX_DEVS:
        raise CapacityError("volumes span more than %d filesystems" % layout.MAX_DEVS)
    return Plan(added, updated, removed, ids, keys, groups, watch)


def mark_unmounted(maps, ids, unmounted):
    """Set NOT_MOUNTED in the config of the volumes named in `unmounted` (source volumes no mount of
    this host reaches) and clear it in the others of ids ({name: volume id}); True when any changed."""
    unmounted = set(unmounted)
    cfgs = maps.vol_cfgs(ids.values())
    changes = {}
    for name, vol_id in ids.items():
        cfg = cfgs.get(vol_id)
        if cfg is None or cfg.mode == layout.MODE_UNUSED:
            continue
        flags = cfg.flags | layout.NOT_MOUNTED if name in unmounted else cfg.flags & ~layout.NOT_MOUNTED
        if flags != cfg.flags:
            changes[vol_id] = cfg._replace(flags=flags)
    maps.set_vol_cfgs(changes)
    return bool(changes)


def root_values(roots, ids):
    """{(fs, ino): vol_keys value} of placed NFS mount roots ({key: path of the volume it lies in, or
    None}), given {path: volume id}: ROOT_IN | the id, or ROOT_IN alone for none."""
    return dict((key, layout.ROOT_IN | (ids[inside] if inside is not None else 0))
                for key, inside in roots.items() if inside is None or inside in ids)


def sync_keys(maps, want, groups=None, watch=None):
    """Make vol_keys, vol_devs (and, unless groups is None, nfs_groups and the NFS watch flag: on
    when `watch`, or when it is None while any key is an NFS one) equal `want` ({(fs, ino): value})
    and `groups` ({fsid: group}); True when anything changed.
    Writes only what differs: re-syncing an unchanged set writes nothing. New groups and the
    watch flag go first and stale ones last: meanwhile what isn't placed refuses growth."""
    current = maps.keys()
    have = dict((k, v) for k, v in current.items() if v != layout.PROBE_VOLUME)
    probe_devs = set(key[0] for key, vol_id in current.items() if vol_id == layout.PROBE_VOLUME)
    stale = [k for k in have if k not in want]
    new = dict((k, v) for k, v in want.items() if have.get(k) != v)
    dev_counts = collections.Counter(key[0] for key in want if key[0] < layout.NFS_FS_BASE)
    devs = maps.devs()
    if watch is None:
        watch = any(key[0] >= layout.NFS_FS_BASE for key in want)
    groups_changed = False
    if groups is not None:
        old_groups = maps.nfs_groups()
        changed_groups = dict((fsid, g) for fsid, g in groups.items() if old_groups.get(fsid) != g)
        maps.set_nfs_groups(changed_groups)
        groups_changed = bool(changed_groups)
        if watch:
            groups_changed = maps.set_config_flags(maps.config().flags | layout.CFG_NFS_WATCH) or groups_changed
    # Devs first: a route on a dev the kernel doesn't check would not be found.
    maps.set_devs(dict((dev, count) for dev, count in dev_counts.items() if devs.get(dev) != count))
    maps.set_keys(new)
    maps.delete_keys(stale)
    maps.set_devs(dict((dev, 0) for dev in devs if dev not in dev_counts and dev not in probe_devs))
    if groups is not None:
        stale_groups = [fsid for fsid in old_groups if fsid not in groups]
        maps.delete_nfs_groups(stale_groups)
        groups_changed = groups_changed or bool(stale_groups)
        if not watch:
            groups_changed = maps.set_config_flags(maps.config().flags & ~layout.CFG_NFS_WATCH) or groups_changed
    if stale or new or groups_changed:
        maps.bump_gen()
    return bool(stale or new or groups_changed)


def vol_cfg_for(volume, old=None):
    """The slot's config: limits, soft limits, grace, mode and unknown_usage from `volume`, scan state
    and grace flags kept from `old` (none: a new volume, its usage unknown). The agent owns the
    grace flags: a sync only drops the flag of a soft limit that is gone, so a limit change never
    lets an expired volume grow before the agent looks again."""
    base = old or layout.VolCfg(0, 0, 0, 0, 0, 0, 0, layout.USAGE_UNKNOWN)
    flags = (base.flags & ~layout.ALLOW_UNKNOWN) | layout.UNKNOWN_USAGE[volume.unknown_usage]
    if not volume.soft_bytes:
        flags &= ~layout.SOFT_EXPIRED
    if not volume.soft_files:
        flags &= ~layout.FILES_SOFT_EXPIRED
    return base._replace(limit_bytes=volume.limit_bytes, limit_files=volume.limit_files,
                         mode=layout.MODES[volume.mode], flags=flags, soft_bytes=volume.soft_bytes,
                         soft_files=volume.soft_files, grace_seconds=volume.grace_seconds)


def restored_cfg(cfg, saved):
    """A new volume's config with saved (bytes, files) as its base: its usage is known."""
    flags = (cfg.flags & ~layout.USAGE_UNKNOWN) | layout.RESTORED
    return cfg._replace(base_bytes=saved[0], base_files=saved[1], flags=flags)


def apply_plan(maps, the_plan, applied=None, routes_held=False, saved=None):
    """Write a plan. Removed volumes go first (routes, then slots), so a slot that a new
    volume reuses is never reachable under its old owner; new slots exist before their keys.
    `applied` is applied_volumes(maps) if the caller has it at hand (it names the removed ids);
    routes_held: the plan's keys were read from the maps (stored_route_keys), so none to write;
    saved: {path: (bytes, files)} of new volumes whose usage is known (saved.restorable), the
    others' usage is unknown until their first scan."""
    saved = saved or {}
    changed = False
    if the_plan.added or the_plan.updated or the_plan.removed:
        maps.drop_sync_stamp()  # the stamp names the volumes the maps hold
    if the_plan.removed:
        applied = applied if applied is not None else applied_volumes(maps)
        removed_ids = set(applied[v.path][0] for v in the_plan.removed)
        remaining = dict((k, v) for k, v in maps.keys().items()
                         if v & ~layout.ROOT_IN not in removed_ids and v != layout.PROBE_VOLUME)
        changed = sync_keys(maps, remaining)
        maps.set_vol_cfgs(dict((vol_id, layout.VolCfg(0, 0, 0, 0, layout.MODE_UNUSED, 0, 0)) for vol_id in removed_ids))
        maps.reset_vol_stats_of(removed_ids)
        maps.delete_dirty([key for key, rec in maps.all_dirty().items() if rec.vol_id in removed_ids])
        maps.delete_paths(removed_ids)
    added = dict((the_plan.ids[v.path], v) for v in the_plan.added)
    maps.reset_vol_stats_of(added)
    maps.set_vol_cfgs(dict((vol_id, restored_cfg(vol_cfg_for(v), saved[v.path]) if v.path in saved else vol_cfg_for(v))
                           for vol_id, v in added.items()))
    maps.set_paths(dict((vol_id, volume_meta_text(v.path, v.labels)) for vol_id, v in added.items()))
    updated = dict((the_plan.ids[new.path], new) for dummy, new in the_plan.updated)
    maps.set_paths(dict((the_plan.ids[new.path], volume_meta_text(new.path, new.labels))
                        for old, new in the_plan.updated if old.labels != new.labels))
    old_cfgs = maps.vol_cfgs(updated)
    maps.set_vol_cfgs(dict((vol_id, vol_cfg_for(v, old_cfgs[vol_id])) for vol_id, v in updated.items()))
    if routes_held and not (the_plan.added or the_plan.removed):
        return changed
    return sync_keys(maps, the_plan.keys, the_plan.groups, the_plan.watch) or changed
