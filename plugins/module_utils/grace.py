# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grace periods over soft limits, with XFS's semantics: over the soft limit growth is allowed and a
clock starts; once the grace has run out while still over, the kernel refuses growth that leaves
usage above the soft limit (the agent sets a flag in vol_cfg); at or below the soft limit the clock
stops and the flag goes.

The clocks (unix time each started) live in a file beside the saved usage, so they survive agent
restarts and reboots; the maps hold only the flags. A clock that is lost while its volume is over
its soft limit and flagged (or the file can't be read: "lost") counts as expired: unknown fails
closed. The functions here are pure but load, save and sync_flags.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import json
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.atomic import read_state, write_atomically

STATE_PATH = "/var/lib/bpfquota/grace.json"
FORMAT = "bpfquota-grace-v1"

# One soft limit of a volume: bytes or files, each with its own clock and flag.
KINDS = (("bytes", layout.SOFT_EXPIRED), ("files", layout.FILES_SOFT_EXPIRED))

# What the pass needs of one volume: used bytes and files, soft limits (0: none), grace, vol_cfg flags,
# and whether its usage is known (an unknown usage moves no clock: it proves nothing either way).
Usage = collections.namedtuple("Usage", "used_bytes used_files soft_bytes soft_files grace_seconds flags known")

# A change of one clock, for the warnings: kind "bytes" or "files"; event "over" (crossed the soft
# limit, the clock started), "expired" (the grace ran out: growth refused), "under" (back at or below
# the soft limit: the clock stopped, growth allowed again).
Transition = collections.namedtuple("Transition", "name kind event used soft expires")


def step(since, used, soft, grace, now, flagged, lost=False):
    """(since, expired) of one clock: the unix time it started (None: not running) and whether its
    grace has run out. A running clock that was lost (`lost`, or flagged expired with no clock)
    counts as expired."""
    if not soft or used <= soft:
        return None, False
    if since is None:
        since = now - grace if (flagged or lost) else now
    return since, now >= since + grace


def evaluate(volumes, clocks, now, lost=False):
    """One pass over {name: Usage} with the clocks {name: {kind: since}}: (clocks, {name: flags},
    [Transition]). The flags are each volume's vol_cfg flags as they should be; the clocks are
    those of the volumes given only."""
    new_clocks, flags, transitions = {}, {}, []
    for name in sorted(volumes):
        u = volumes[name]
        old = clocks.get(name) or {}
        if not u.known:
            kept = dict((kind, since) for kind, since in old.items() if kind in dict(KINDS))
            if kept:
                new_clocks[name] = kept
            flags[name] = u.flags
            continue
        running, value = {}, u.flags
        for kind, flag in KINDS:
            used, soft = (u.used_bytes, u.soft_bytes) if kind == "bytes" else (u.used_files, u.soft_files)
            since, expired = step(_time(old.get(kind)), used, soft, u.grace_seconds, now, bool(u.flags & flag), lost)
            if since is not None:
                running[kind] = since
            value = value | flag if expired else value & ~flag
            expires = None if since is None else since + u.grace_seconds
            if since is not None and old.get(kind) is None and not u.flags & flag:
                transitions.append(Transition(name, kind, "over", used, soft, expires))
            if expired and not u.flags & flag:
                transitions.append(Transition(name, kind, "expired", used, soft, expires))
            if since is None and (old.get(kind) is not None or u.flags & flag):
                transitions.append(Transition(name, kind, "under", used, soft, None))
        if running:
            new_clocks[name] = running
        flags[name] = value
    return new_clocks, flags, transitions


def _time(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def expires_at(clocks, name, kind, grace_seconds, flags):
    """Unix time the grace of a volume's soft limit ends (or ended), None while under it. Flagged
    with no clock (lost): 0, expired at a time no one knows."""
    since = _time((clocks.get(name) or {}).get(kind))
    if since is not None:
        return since + grace_seconds
    return 0 if flags & dict(KINDS)[kind] else None


def usages(applied, cfgs, stats):
    """{name: Usage} of quota.applied_volumes' volumes with their vol_cfg and vol_stats; volumes
    without a soft limit are left out (they have no clock)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import usage
    out = {}
    for name, (vol_id, volume) in applied.items():
        cfg = cfgs.get(vol_id)
        if cfg is None or not (volume.soft_bytes or volume.soft_files) or vol_id not in stats:
            continue
        used_bytes, used_files = usage.used(cfg, stats[vol_id])
        out[name] = Usage(used_bytes, used_files, volume.soft_bytes, volume.soft_files, volume.grace_seconds,
                          cfg.flags, not cfg.flags & layout.USAGE_UNKNOWN)
    return out


def sync_flags(maps, ids, flags):
    """Write the grace flags of {name: flags} ({name: volume id} ids) into vol_cfg, reading each
    config again so only those bits change; the caller holds the writers' lock. Returns the names
    whose flags changed."""
    mask = layout.SOFT_EXPIRED | layout.FILES_SOFT_EXPIRED
    wanted = dict((ids[name], value & mask) for name, value in flags.items() if name in ids)
    cfgs = maps.vol_cfgs(wanted)
    changes = dict((vol_id, cfg._replace(flags=(cfg.flags & ~mask) | wanted[vol_id]))
                   for vol_id, cfg in cfgs.items()
                   if cfg.mode != layout.MODE_UNUSED and cfg.flags & mask != wanted[vol_id])
    maps.set_vol_cfgs(changes)
    names = dict((vol_id, name) for name, vol_id in ids.items())
    return sorted(names[vol_id] for vol_id in changes)


def load(path=None):
    """({name: {kind: since}}, why they could not be read or None). No file is no problem."""
    clocks, problem = read_state(path or STATE_PATH, FORMAT, "clocks", _valid_clocks, "grace clocks file")
    return clocks or {}, problem


def _valid_clocks(clocks):
    return isinstance(clocks, dict) and all(
        isinstance(c, dict) and all(k in dict(KINDS) and _time(t) is not None for k, t in c.items())
        for c in clocks.values())


def save(clocks, path=None):
    """Write the clocks atomically and durably: a clock that survives only in memory restarts on a
    reboot, which would give the volume a new grace period."""
    path = path or STATE_PATH
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    write_atomically(path, json.dumps({"format": FORMAT, "clocks": clocks}, sort_keys=True).encode("utf-8"))
