# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service under the host CLI, the agent and the Ansible modules: readiness, loading, syncing the
volumes (plan, then apply) and reconcile, under one writers' lock (the report rows, which only read,
are report.py's). It returns data and raises BpfquotaError; what a user reads (text, exit codes,
fail_json) is the callers' part."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import contextlib
import errno
import fcntl
import os
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import maps as quota_maps
from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import read_mountinfo_text
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import (
    StatMemo, VolumeError, listed_paths, load_volumes_file, validate_volumes)

# loader, lsm, identity, saved, scantimes and usage are imported in the functions that use them: with their
# subprocess, tempfile, socket and the tree walker they are a fifth of the start-up of a no-op
# `bpfquota apply`, most of whose time (under emulation) is the interpreter starting.

LOCK_PATH = "/run/bpfquota.lock"

# BpfquotaError kinds: what went wrong, for the caller to choose its exit code or message.
USAGE = "usage"            # bad input (arguments, volumes); nothing was changed
NOT_READY = "not_ready"    # this host can't enforce (BPF LSM, libbpf, the kernel refuses the programs)
NOT_LOADED = "not_loaded"  # the enforcer isn't loaded
FAILED = "failed"          # the operation failed
MISSING_TOOL = "missing_tool"  # a command's own dependency is missing (bpfquota top: BCC, kernel headers)


class BpfquotaError(Exception):
    """A failure the message explains with its fix; `kind` is USAGE, NOT_READY, NOT_LOADED, FAILED or MISSING_TOOL,
    `problems` every problem of the input when there were several to name (the message has one per line)."""

    def __init__(self, message, kind=FAILED, problems=None):
        Exception.__init__(self, message)
        self.kind = kind
        self.problems = problems


@contextlib.contextmanager
def exclusive():
    """One writer of the maps at a time (CLI runs, the agent, Ansible modules)."""
    with open(LOCK_PATH, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def open_maps():
    """The pinned maps (a context manager); BpfquotaError NOT_LOADED (its only kind) when there are none."""
    try:
        return quota_maps.QuotaMaps()
    except quota_maps.NotLoaded as e:
        raise BpfquotaError(str(e), NOT_LOADED)


# --- readiness, loading ---------------------------------------------------------------------------

def libbpf_version():
    try:
        return "%d.%d" % libbpf.libbpf().version
    except libbpf.LibbpfError:
        return None


def host_facts(object_path):
    """Readiness facts (reasons: lsm.reason records), proven by attaching a tiny LSM program; when
    they are ready and an object is at hand, a trial load of it has the last word."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
    from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
    facts = lsm.proven(lsm.readiness(libbpf_version=libbpf_version()), lsm.probe_lsm)
    facts["trial_load"] = None
    if facts["ready"] and object_path and os.path.isfile(object_path):
        try:
            loader.trial_load(object_path)
            facts["trial_load"] = True
        except libbpf.LibbpfError as e:
            facts["trial_load"] = False
            facts["ready"] = False
            facts["reasons"].append(lsm.load_failure_reason(e, "trial_load_failed"))
    return facts


def require_ready(object_path):
    """BpfquotaError NOT_READY with every reason unless this host can enforce (host_facts)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
    facts = host_facts(object_path)
    if not facts["ready"]:
        raise BpfquotaError("this host can't enforce quotas:\n  - " + "\n  - ".join(map(lsm.reason_line, facts["reasons"])),
                            NOT_READY)


def load_program(object_path):
    """Load the enforcer or upgrade it to object_path, under the lock: loader.load's result.
    BpfquotaError NOT_READY when the kernel refuses the programs (EPERM: BPF LSM is off), else FAILED."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
    with exclusive():
        try:
            return loader.load(object_path, layout.PIN_DIR)
        except (libbpf.LibbpfError, loader.ProbeFailed) as e:
            raise BpfquotaError(str(e), NOT_READY if getattr(e, "errno", None) == errno.EPERM else FAILED)


def unload_program():
    """Detach the enforcer and drop its maps, under the lock; False when it wasn't loaded."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
    with exclusive():
        return loader.unload(layout.PIN_DIR)


# --- validating and planning a sync ---------------------------------------------------------------

def desired_volumes(path, default_mode, stat=os.stat, examine_paths=True):
    """The validated Volumes of a volumes file (BpfquotaError USAGE naming every problem)."""
    return validated_volumes(load_entries(path), default_mode, stat, examine_paths)


def load_entries(path):
    """The raw entries of a volumes file (BpfquotaError USAGE naming every problem)."""
    try:
        return load_volumes_file(path)
    except VolumeError as e:
        raise BpfquotaError(str(e), USAGE, e.problems)


def without_missing(entries, warn, stat=os.stat):
    """The entries but those whose path no longer exists, each left out with a warning: at boot, a
    volume whose directory was deleted on the server must not keep the others from being enforced.
    Source entries (no path) and malformed ones are kept: validation judges them."""
    kept = []
    for index, entry in enumerate(entries):
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str) and path.startswith("/") and "\0" not in path:
            try:
                stat(path)
            except FileNotFoundError:
                warn("volumes[%d] (%s): path does not exist: left out (remove it from the volumes, or create the "
                     "directory and apply again)" % (index, path))
                continue
        kept.append(entry)
    return kept


def validated_volumes(entries, default_mode, stat=os.stat, examine_paths=True):
    """Volumes of raw entries (BpfquotaError USAGE naming every problem). Without examining the paths,
    any problem still gets the whole report, the paths' problems included."""
    try:
        return validate_volumes(entries, default_mode=default_mode, stat=stat, examine_paths=examine_paths)
    except VolumeError as e:
        if examine_paths:
            raise BpfquotaError(str(e), USAGE, e.problems)
    return validated_volumes(entries, default_mode, stat)


# A sync's inputs as digests (quota.sync_stamp): the paths on this mount table (`routes`), and
# everything (`volumes`: the entries, the default mode and `routes`). `known` compares them with
# the stamp the last sync left in the maps: "all" when nothing differs (nothing to do), "routes"
# when only limits or modes may differ (the paths need no examining, the routes no resolving).
SyncInputs = collections.namedtuple("SyncInputs", "mountinfo paths routes volumes known")


def sync_inputs(entries, default_mode, stored_stamp, full=False):
    """SyncInputs of raw entries against the maps' stamp (None: none); full: nothing is known."""
    mountinfo = read_mountinfo_text()
    paths = listed_paths(entries)
    routes = quota.sync_stamp(paths, mountinfo)
    inputs = SyncInputs(mountinfo, paths, routes, quota.volumes_stamp(entries, default_mode, routes), None)
    return against_stamp(inputs, None if full else stored_stamp)


def against_stamp(inputs, stored_stamp):
    """inputs with `known` set by comparing them with a stamp (None: nothing is known)."""
    known = None
    if stored_stamp:
        stored_routes, dummy, stored_volumes = stored_stamp.partition(" ")
        if stored_routes == inputs.routes:
            known = "all" if stored_volumes == inputs.volumes else "routes"
    return inputs._replace(known=known)


def paths_known(inputs, applied):
    """True when the maps hold routes for exactly these paths on this mount table (examined by
    the last sync); `applied` is quota.applied_volumes(maps)."""
    return inputs is not None and inputs.known is not None and set(inputs.paths) == set(applied)


def peek_sync_stamp():
    """The maps' sync stamp, read without the lock; None when they can't be opened (the open under
    the lock then says why)."""
    try:
        with open_maps() as maps:
            return maps.sync_stamp()
    except (BpfquotaError, OSError, libbpf.LibbpfError):
        return None


# A sync planned before the lock: the raw entries and their default mode, their SyncInputs, the
# Volumes checked as written, and whether every path is to be examined again (`full`).
Sync = collections.namedtuple("Sync", "entries default_mode inputs volumes full")


def prepare_sync(entries, default_mode, full=False):
    """The Sync of raw entries, or None when the maps hold the last sync of these very inputs and
    nothing wrote since (nothing to do). BpfquotaError USAGE names every problem of the entries,
    before anything takes the lock or writes."""
    inputs = sync_inputs(entries, default_mode, peek_sync_stamp(), full)
    if inputs.known == "all":
        return None
    return Sync(entries, default_mode, inputs, validated_volumes(entries, default_mode, examine_paths=False), full)


def apply_sync(maps, sync, check, scan_timeout, warn, scan_budget=None, applied=None):
    """apply_volumes of a prepared Sync on the open maps, the caller holding the lock (unless check):
    the stamp compared again as of the lock, and every path examined unless the maps hold its routes.
    Returns the plan; `applied` is quota.applied_volumes(maps) if the caller has read it already."""
    if applied is None:
        applied = quota.applied_volumes(maps)
    inputs = against_stamp(sync.inputs, None if sync.full else maps.sync_stamp())
    stat = StatMemo()  # validation and the route lookup stat the same paths
    wanted = sync.volumes
    if not paths_known(inputs, applied):
        wanted = validated_volumes(sync.entries, sync.default_mode, stat)
    return apply_volumes(maps, wanted, check, scan_timeout, warn, scan_budget, applied, stat, inputs)


# --- applying it ----------------------------------------------------------------------------------

NOT_MOUNTED_HERE = "not mounted on this host: no NFS mount of its server reaches its directory"
MAX_SCAN_WARNINGS = 10  # one warning per volume, then one for the rest: 10 000 lines help no one


def apply_volumes(maps, volumes, check, scan_timeout, warn, scan_budget=None, applied=None, stat=os.stat, inputs=None):
    """Plan, then (unless check) apply and scan the new volumes. Returns the plan; `warn(message)`
    hears what the caller should tell (a scan failed, saved usage was not restored).
    A new volume whose usage the agent saved (saved.STATE_PATH: after a reboot) gets it back and
    no scan; the others are scanned, and refuse growth until a scan succeeds unless their
    unknown_usage is "allow". Each first scan gets scan_timeout seconds, all of them scan_budget (None: no limit);
    `applied` is quota.applied_volumes(maps) if the caller has read it already; `stat` the
    volumes.StatMemo that validated `volumes`, if any; `inputs` the SyncInputs of `volumes`
    (None: resolve every route and leave no stamp)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    from ansible_collections.bpfquota.nfs.plugins.module_utils import saved
    if applied is None:
        applied = quota.applied_volumes(maps)
    paths = [v.path for v in volumes]
    routes_held = paths_known(inputs, applied)
    found = None
    try:
        if routes_held:
            the_plan = quota.plan(applied, volumes, quota.stored_route_keys(maps, applied, paths),
                                  quota.stored_roots(maps, applied))
        else:
            current_groups = maps.nfs_groups()
            found = identity.identities(paths, current_groups, stat)
            if found.missing:
                raise ValueError("; ".join(sorted(found.missing.values())))
            found = identity.keep_missing(found, quota.stored_route_keys(maps, applied, [
                name for name in found.unmounted if name in applied]), current_groups)
            for dummy, access, reason in found.unplaced:
                warn("%s: growth is refused below it until the agent can place it" % reason)
            the_plan = quota.plan(applied, volumes, found.by_path, found.roots, found.groups, found.watch)
    except ValueError as e:  # the volumes can't be planned (capacity, one directory twice)
        raise BpfquotaError(str(e), USAGE)
    if not check:
        homes = found.homes if found is not None else identity.homes_of([v.path for v in the_plan.added], stat)
        restored = {}
        if the_plan.added:
            saved_volumes, problem = saved.load(saved.STATE_PATH)
            if problem:
                warn("saved usage not restored: %s" % problem)
            restored = saved.restorable(saved_volumes, [v for v in the_plan.added if v.path in homes],
                                        lambda name: stat(homes[name]))
        quota.apply_plan(maps, the_plan, applied, routes_held, restored)
        if found is not None:
            quota.mark_unmounted(maps, dict((name, the_plan.ids[name]) for name in the_plan.ids), found.unmounted)
        if inputs is not None and inputs.known != "all":
            maps.set_sync_stamp("%s %s" % (inputs.routes, inputs.volumes))
        targets = [(the_plan.ids[volume.path], volume.path) for volume in the_plan.added
                   if volume.path not in restored and volume.path in homes]
        failed = [result for result in scan_named(maps, targets, homes, scan_timeout, scan_budget, warn)
                  if not result.ok]
        warn_unscanned(failed, dict((v.path, v) for v in the_plan.added), warn)
        restore_grace(maps, dict((v.path, the_plan.ids[v.path]) for v in the_plan.added
                                 if v.soft_bytes or v.soft_files), warn)
        for volume in the_plan.added:
            if volume.path not in homes:
                warn("%s: no NFS mount of this host reaches it yet: it is enforced from the moment one does, its "
                     "usage scanned then by the agent; %s" % (volume.path, unscanned_effect(volume)))
    return the_plan


def restore_grace(maps, ids, warn, now=None, path=None):
    """Set the grace flags of new volumes ({name: volume id}) with soft limits from the agent's
    clocks: after a reboot a volume whose grace had expired refuses growth from the moment it is
    applied, not from the agent's first pass. Clocks that can't be read count as expired (fail
    closed). Nothing is written to the clocks: the agent keeps them."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import grace
    if not ids:
        return
    clocks, problem = grace.load(path)
    if problem:
        warn("grace clocks lost (%s): new volumes over their soft limit refuse growth above it until they are "
             "under it" % problem)
    applied = dict((name, entry) for name, entry in quota.applied_volumes(maps).items() if name in ids)
    vol_ids = [vol_id for vol_id, dummy in applied.values()]
    usages = grace.usages(applied, maps.vol_cfgs(vol_ids), maps.vol_stats_of(vol_ids))
    dummy, flags, dummy = grace.evaluate(usages, clocks, time.time() if now is None else now, lost=problem is not None)
    grace.sync_flags(maps, ids, flags)


def unscanned_effect(volume):
    """What a volume whose usage is unknown does until a scan succeeds."""
    if volume.unknown_usage == "allow":
        return "its usage counts from zero (unknown_usage: allow) until a scan succeeds"
    return "it refuses growth until a scan succeeds"


def warn_unscanned(failed, volumes, warn):
    """One warning per new volume that has no usage (then one for the rest): what it does meanwhile."""
    for result in failed[:MAX_SCAN_WARNINGS]:
        warn("%s: %s; %s (the agent retries)" % (result.path, result.reason, unscanned_effect(volumes[result.path])))
    if len(failed) > MAX_SCAN_WARNINGS:
        allowed = sum(1 for result in failed[MAX_SCAN_WARNINGS:] if volumes[result.path].unknown_usage == "allow")
        warn("%d more new volumes were not scanned, %s the last (%s); they refuse growth (%d with unknown_usage: "
             "allow count from zero) until a scan succeeds (the agent retries)"
             % (len(failed) - MAX_SCAN_WARNINGS, failed[-1].path, failed[-1].reason, allowed))


# --- scans and reconcile (the report rows: report.py) ---------------------------------------------

def scan_named(maps, targets, homes, timeout, budget=None, warn=None):
    """identity.scan_named, with the time of each success recorded (scantimes) for the metrics;
    `warn(message)` hears when that record can't be written. The caller holds the lock."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    from ansible_collections.bpfquota.nfs.plugins.module_utils import scantimes
    results = identity.scan_named(maps, targets, homes, timeout, budget)
    problem = scantimes.record(results, [name for vol_id, name in maps.paths().items() if vol_id <= layout.MAX_VOLUMES])
    if problem and warn:
        warn(problem)
    return results


def reconcile_all(maps, timeout, only=None, warn=None):
    """Scan the volumes (or those whose paths are in `only`) again: usage.scan_volumes's results.
    BpfquotaError USAGE when `only` names a path that is no volume; `warn` as for scan_named."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    from ansible_collections.bpfquota.nfs.plugins.module_utils import usage
    applied = quota.applied_volumes(maps)
    unknown = sorted(set(only or ()) - set(applied))
    if unknown:
        raise BpfquotaError("not a volume: %s (volumes: %s)" % (", ".join(unknown), ", ".join(sorted(applied)) or "none"),
                            USAGE)
    targets = [(vol_id, name) for name, (vol_id, dummy) in sorted(applied.items()) if only is None or name in only]
    homes = identity.homes_of([name for dummy, name in targets])
    results = dict((result.vol_id, result) for result in scan_named(
        maps, [(vol_id, name) for vol_id, name in targets if name in homes], homes, timeout, warn=warn))
    return [results.get(vol_id) or usage.ScanResult(vol_id, name, False, None, None, 0.0, NOT_MOUNTED_HERE)
            for vol_id, name in targets]
