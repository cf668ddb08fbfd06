# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host CLI `bpfquota`: check, build, load, unload, status, apply, report, reconcile, agent."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import collections
import contextlib
import fcntl
import json
import os
import sys

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout

EXIT_OK = 0
EXIT_ERROR = 1        # the operation failed (kernel refused, scan failed, ...)
EXIT_USAGE = 2        # bad input: arguments, volumes file; nothing was changed
EXIT_NOT_READY = 3    # this host can't enforce (see `bpfquota check`)
EXIT_NOT_LOADED = 4   # the enforcer isn't loaded: run `bpfquota load`

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the operation failed (the kernel refused, a scan failed, ...)
  2  bad input (arguments or volumes file); nothing was changed
  3  this host can't enforce: BPF LSM not ready (see 'bpfquota check')
  4  the enforcer is not loaded: run 'bpfquota load'
"""

LOCK_PATH = "/run/bpfquota.lock"


def _archive_of(path):
    """The zip archive directory `path` lies in (the installed command is a zipapp), or None."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if os.path.isfile(path) else None


INSTALLED_ARCHIVE = _archive_of(os.path.dirname(os.path.abspath(__file__)))
if INSTALLED_ARCHIVE:
    # The role installs the object beside the command (bpfquota_install_dir); no BPF sources come along.
    DEFAULT_OBJECT = os.path.join(os.path.dirname(INSTALLED_ARCHIVE), "bpfquota.bpf.o")
    BPF_SOURCES = None
else:
    CHECKOUT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    DEFAULT_OBJECT = os.path.join(CHECKOUT_ROOT, "build", "bpfquota.bpf.o")
    BPF_SOURCES = os.path.join(CHECKOUT_ROOT, "bpf")


def say(text, stream=None):
    """Print a line: the CLI's output (Ansible modules only import the functions that return data)."""
    stream = stream or sys.stdout
    stream.write("%s\n" % text)


class CliError(Exception):
    def __init__(self, message, code=EXIT_ERROR):
        Exception.__init__(self, message)
        self.code = code


@contextlib.contextmanager
def exclusive():
    """One writer of the maps at a time (CLI runs, the agent, Ansible modules)."""
    with open(LOCK_PATH, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def open_maps():
    from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import NotLoaded, QuotaMaps
    try:
        return QuotaMaps()
    except NotLoaded as e:
        raise CliError(str(e), EXIT_NOT_LOADED)


def libbpf_version():
    from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
    try:
        return "%d.%d" % libbpf.libbpf().version
    except libbpf.LibbpfError:
        return None


def host_facts(object_path):
    """Readiness facts, proven by attaching a tiny LSM program; when they are ready and an object is
    at hand, a trial load of it has the last word."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf, loader
    from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import proven, readiness
    facts = proven(readiness(libbpf_version=libbpf_version()), libbpf.probe_lsm)
    facts["trial_load"] = None
    if facts["ready"] and object_path and os.path.isfile(object_path):
        try:
            loader.trial_load(object_path)
            facts["trial_load"] = True
        except libbpf.LibbpfError as e:
            facts["trial_load"] = False
            facts["ready"] = False
            facts["reasons"].append(str(e))
    return facts


def cmd_check(args):
    facts = host_facts(args.object)
    if args.json:
        say(json.dumps(facts, indent=2, sort_keys=True))
    else:
        say("kernel %s: BPF LSM %s" % (facts["kernel"], "ready" if facts["ready"] else "NOT ready"))
        say("  active LSMs: %s" % ",".join(facts["active_lsms"] or ["(unknown)"]))
        cmdline_lsm = facts["cmdline_lsm"]
        say("  lsm= on the command line: %s" % (",".join(cmdline_lsm) if cmdline_lsm is not None else "(none)"))
        say("  libbpf: %s, BTF: %s, bpffs mounted: %s" % (
            facts["libbpf_version"] or "missing", "yes" if facts["btf"] else "no", "yes" if facts["bpffs"] else "no"))
        for reason in facts["reasons"]:
            say("  - %s" % reason)
    return EXIT_OK if facts["ready"] else EXIT_NOT_READY


def require_ready(object_path):
    facts = host_facts(object_path)
    if not facts["ready"]:
        raise CliError("this host can't enforce quotas:\n  - " + "\n  - ".join(facts["reasons"]), EXIT_NOT_READY)


def cmd_build(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import BuildError, build
    if BPF_SOURCES is None:
        raise CliError("the installed command (%s) carries no BPF sources: the role builds the object on the "
                       "controller; to build one here, run bin/bpfquota build from a checkout of the collection"
                       % INSTALLED_ARCHIVE, EXIT_USAGE)
    try:
        result = build(BPF_SOURCES, args.out)
    except BuildError as e:
        raise CliError(str(e))
    say("%s %s (sha256 %s)" % ("built" if result["changed"] else "up to date", result["path"], result["sha256"]))
    return EXIT_OK


def cmd_load(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf, loader
    if not os.path.isfile(args.object):
        raise CliError("BPF object %s not found: build it with 'bpfquota build' or pass --object" % args.object,
                       EXIT_USAGE)
    require_ready(args.object)
    with exclusive():
        try:
            result = loader.load(args.object)
        except (libbpf.LibbpfError, loader.ProbeFailed) as e:
            raise CliError(str(e), EXIT_NOT_READY if getattr(e, "errno", None) == 1 else EXIT_ERROR)
    verb = "upgraded to" if result["upgraded"] else ("loaded" if result["changed"] else "already loaded:")
    say("%s %s (%d programs pinned under %s)" % (verb, result["sha256"][:16], len(result["programs"]), result["pin_dir"]))
    return EXIT_OK


def cmd_unload(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
    with exclusive():
        changed = loader.unload()
    say("unloaded" if changed else "not loaded")
    return EXIT_OK


def cmd_status(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
    st = loader.status()
    if args.json:
        say(json.dumps(st, indent=2, sort_keys=True))
    elif st["loaded"]:
        say("loaded %s: %s" % (st["sha256"][:16], ", ".join("%s=%d" % kv for kv in sorted(st["programs"].items()))))
    else:
        say("not loaded")
    return EXIT_OK if st["loaded"] else EXIT_NOT_LOADED


def desired_volumes(path, default_mode, stat=os.stat, examine_paths=True):
    """The validated Volumes of a volumes file (CliError naming every problem)."""
    return validated_volumes(load_entries(path), default_mode, stat, examine_paths)


def load_entries(path):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import VolumeError, load_volumes_file
    try:
        return load_volumes_file(path)
    except VolumeError as e:
        raise CliError(str(e), EXIT_USAGE)


def validated_volumes(entries, default_mode, stat=os.stat, examine_paths=True):
    """Volumes of raw entries (CliError naming every problem). Without examining the paths,
    any problem still gets the whole report, the paths' problems included."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import VolumeError, validate_volumes
    try:
        return validate_volumes(entries, default_mode=default_mode, stat=stat, examine_paths=examine_paths)
    except VolumeError as e:
        if examine_paths:
            raise CliError(str(e), EXIT_USAGE)
    return validated_volumes(entries, default_mode, stat)


# A sync's inputs as digests (quota.sync_stamp): the paths on this mount table (`routes`), and
# everything (`volumes`: the entries, the default mode and `routes`). `known` compares them with
# the stamp the last sync left in the maps: "all" when nothing differs (nothing to do), "routes"
# when only limits or modes may differ (the paths need no examining, the routes no resolving).
SyncInputs = collections.namedtuple("SyncInputs", "mountinfo paths routes volumes known")


def sync_inputs(entries, default_mode, stored_stamp, full=False):
    """SyncInputs of raw entries against the maps' stamp (None: none); full: nothing is known."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
    from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import listed_paths
    mountinfo = quota.read_mountinfo_text()
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
    """The maps' sync stamp, None when the enforcer isn't loaded: a read needs no lock."""
    try:
        with open_maps() as maps:
            return maps.sync_stamp()
    except CliError:
        return None


MAX_SCAN_WARNINGS = 10  # one warning per volume, then one for the rest: 10 000 lines help no one


def warn_on_stderr(message):
    say("warning: %s" % message, sys.stderr)


def apply_volumes(maps, volumes, check, scan_timeout, warn=warn_on_stderr, scan_budget=None, applied=None,
                  stat=os.stat, inputs=None):
    """Plan, then (unless check) apply and scan the new volumes. Returns the plan.
    A new volume whose usage the agent saved (saved.STATE_PATH: after a reboot) gets it back and
    no scan; the others are scanned, and refuse growth until a scan succeeds unless their
    unknown_usage is "allow". Each first scan gets scan_timeout seconds, all of them scan_budget (None: no limit);
    `applied` is quota.applied_volumes(maps) if the caller has read it already; `stat` the
    volumes.StatMemo that validated `volumes`, if any; `inputs` the SyncInputs of `volumes`
    (None: resolve every route and leave no stamp)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import quota, saved, usage
    from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import parse_mountinfo
    if applied is None:
        applied = quota.applied_volumes(maps)
    paths = [v.path for v in volumes]
    routes_held = paths_known(inputs, applied)
    try:
        if routes_held:
            keys_by_path = quota.stored_route_keys(maps, applied, paths)
        else:
            mounts = parse_mountinfo(inputs.mountinfo) if inputs is not None else quota.read_mounts()
            keys_by_path = quota.route_keys(paths, mounts, stat)
        the_plan = quota.plan(applied, volumes, keys_by_path)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE)
    if not check:
        restored = {}
        if the_plan.added:
            saved_volumes, problem = saved.load(saved.STATE_PATH)
            if problem:
                warn("saved usage not restored: %s" % problem)
            restored = saved.restorable(saved_volumes, the_plan.added, stat)
        quota.apply_plan(maps, the_plan, applied, routes_held, restored)
        if inputs is not None and inputs.known != "all":
            maps.set_sync_stamp("%s %s" % (inputs.routes, inputs.volumes))
        targets = [(the_plan.ids[volume.path], volume.path) for volume in the_plan.added if volume.path not in restored]
        failed = [result for result in usage.scan_volumes(maps, targets, scan_timeout, scan_budget) if not result.ok]
        warn_unscanned(failed, dict((v.path, v) for v in the_plan.added), warn)
    return the_plan


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


def describe_plan(the_plan, check):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size
    prefix = "would " if check else ""
    lines = []
    for v in the_plan.added:
        lines.append("%sadd     %s limit %s%s mode %s" % (prefix, v.path, format_size(v.limit_bytes),
                                                          " inodes %d" % v.limit_files if v.limit_files else "", v.mode))
    for old, new in the_plan.updated:
        lines.append("%supdate  %s limit %s -> %s, inodes %s -> %s, mode %s -> %s" % (
            prefix, new.path, format_size(old.limit_bytes), format_size(new.limit_bytes),
            old.limit_files or "-", new.limit_files or "-", old.mode, new.mode))
    for v in the_plan.removed:
        lines.append("%sremove  %s" % (prefix, v.path))
    summary = "%d added, %d updated, %d removed" % (len(the_plan.added), len(the_plan.updated), len(the_plan.removed))
    return lines + [summary + (" (dry run)" if check else "")]


def cmd_apply(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
    from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import StatMemo
    entries = load_entries(args.file)
    inputs = sync_inputs(entries, args.mode, peek_sync_stamp(), args.full)
    if inputs.known == "all":
        say("0 added, 0 updated, 0 removed%s" % (" (dry run)" if args.check else ""))
        return EXIT_OK  # what the last apply applied, on the same mounts, and nothing written since
    volumes = validated_volumes(entries, args.mode, examine_paths=False)  # every mistake before the maps
    stat = StatMemo()
    with exclusive():
        with open_maps() as maps:
            applied = quota.applied_volumes(maps)
            inputs = against_stamp(inputs, None if args.full else maps.sync_stamp())  # as of the lock
            if not paths_known(inputs, applied):
                volumes = validated_volumes(entries, args.mode, stat)
            the_plan = apply_volumes(maps, volumes, args.check, args.scan_timeout, scan_budget=args.scan_budget,
                                     applied=applied, stat=stat, inputs=inputs)
    say("\n".join(describe_plan(the_plan, args.check)))
    return EXIT_OK


def report_rows(maps):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import quota, usage
    applied = quota.applied_volumes(maps)
    ids = [vol_id for vol_id, volume in applied.values()]
    cfgs, all_stats = maps.vol_cfgs(ids), maps.vol_stats_of(ids)
    rows = []
    for path, (vol_id, volume) in applied.items():
        stats = all_stats[vol_id]
        used_bytes, used_files = usage.used(cfgs[vol_id], stats)
        rows.append({"path": path, "used_bytes": max(used_bytes, 0), "limit_bytes": volume.limit_bytes,
                     "files": max(used_files, 0), "limit_files": volume.limit_files,
                     "denials": sum(stats.denied.values()), "mode": volume.mode,
                     "checks": stats.checks, "denials_by_op": dict(stats.denied),
                     "usage": usage_state(cfgs[vol_id]), "unknown_usage": volume.unknown_usage})
    return rows


def usage_state(cfg):
    """How a volume's usage is known: report.USAGE_STATES."""
    if cfg.flags & layout.USAGE_UNKNOWN:
        return "unknown"
    return "restored" if cfg.flags & layout.RESTORED else "scanned"


def cmd_report(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.report import format_report, report_json
    with open_maps() as maps:
        rows = report_rows(maps)
    say(report_json(rows) if args.json else format_report(rows))
    return EXIT_OK


def reconcile_all(maps, timeout, only=None):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import quota, usage
    applied = quota.applied_volumes(maps)
    unknown = sorted(set(only or ()) - set(applied))
    if unknown:
        raise CliError("not a volume: %s (volumes: %s)" % (", ".join(unknown), ", ".join(sorted(applied)) or "none"),
                       EXIT_USAGE)
    return usage.scan_volumes(maps, [(vol_id, path) for path, (vol_id, dummy) in sorted(applied.items())
                                     if only is None or path in only], timeout)


def cmd_reconcile(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size
    with exclusive():
        with open_maps() as maps:
            results = reconcile_all(maps, args.timeout, set(args.paths) if args.paths else None)
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            say("%s: %s in %d files (%.2fs)" % (r.path, format_size(r.used_bytes), r.used_files, r.seconds))
        else:
            say("%s: %s" % (r.path, r.reason), sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def cmd_agent(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.agent import run_agent
    open_maps().close()  # not loaded: exit 4 with the fix, before the agent starts
    return run_agent(interval=args.interval, scan_timeout=args.scan_timeout, budget=args.budget, once=args.once)


def parser():
    p = argparse.ArgumentParser(prog="bpfquota", description="Per-directory write quotas on NFS clients, "
                                "enforced by a BPF LSM program.", epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="is BPF LSM ready on this host? (reasons and fixes)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--object", default=DEFAULT_OBJECT, help="also trial-load this object when present")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("build", help="compile bpf/ into a CO-RE object with clang")
    c.add_argument("--out", default=DEFAULT_OBJECT)
    c.set_defaults(func=cmd_build)

    c = sub.add_parser("load", help="load or upgrade the enforcer (pinned: it outlives this command)")
    c.add_argument("--object", default=DEFAULT_OBJECT, help="BPF object (default: %(default)s)")
    c.set_defaults(func=cmd_load)

    c = sub.add_parser("unload", help="detach the enforcer and drop its maps")
    c.set_defaults(func=cmd_unload)

    c = sub.add_parser("status", help="what is loaded")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("apply", help="make the enforced volumes equal FILE exactly")
    c.add_argument("file", metavar="FILE", help="volumes file (YAML or JSON): {volumes: [{path, limit, inodes?, mode?}]}")
    c.add_argument("--check", action="store_true", help="dry run: print what would change")
    c.add_argument("--mode", choices=sorted(layout.MODES), default="enforce", help="default mode of entries")
    c.add_argument("--scan-timeout", type=float, default=60.0, help="seconds per new volume's first scan")
    c.add_argument("--scan-budget", type=float, default=None,
                   help="seconds for all first scans together (default: no limit); volumes not scanned in time "
                        "refuse growth (or, with unknown_usage: allow, count from zero) until a scan succeeds")
    c.add_argument("--full", action="store_true",
                   help="examine every volume's directory and resolve its routes again, also when the paths and "
                        "the mount table are those of the last apply (which otherwise reuses its routes)")
    c.set_defaults(func=cmd_apply)

    c = sub.add_parser("report", help="usage per volume, like xfs_quota report -h")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_report)

    c = sub.add_parser("reconcile", help="re-scan volumes to re-base their usage")
    c.add_argument("paths", nargs="*", help="only these volumes")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds per volume")
    c.set_defaults(func=cmd_reconcile)

    c = sub.add_parser("agent", help="periodic reconcile, mount watch, denial events to the log")
    # Scans cost the NFS server a stat per file: rare rounds, bounded in time (kernel accounting covers between).
    c.add_argument("--interval", type=float, default=3600.0, help="seconds between reconcile rounds")
    c.add_argument("--budget", type=float, default=600.0,
                   help="seconds of scanning per round; volumes not reached go first next round")
    c.add_argument("--scan-timeout", type=float, default=300.0, help="seconds per volume scan")
    c.add_argument("--once", action="store_true", help="one round, then exit")
    c.set_defaults(func=cmd_agent)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        say("bpfquota: %s" % e, sys.stderr)
        return e.code
    except PermissionError as e:
        say("bpfquota: %s: run as root" % e, sys.stderr)
        return EXIT_ERROR
