# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host CLI `bpfquota`: check, build, load, unload, status, apply, report, metrics, reconcile, agent, top."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import sys

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.enforcement import BpfquotaError
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

# The commands import what only they need (the builder, the loader, the agent, the report, the metrics): a
# no-op `bpfquota apply` is mostly the interpreter starting, so its imports are kept to the sync's.

EXIT_OK = 0
EXIT_ERROR = 1        # the operation failed (kernel refused, scan failed, ...)
EXIT_USAGE = 2        # bad input: arguments, volumes file; nothing was changed
EXIT_NOT_READY = 3    # this host can't enforce (see `bpfquota check`)
EXIT_NOT_LOADED = 4   # the enforcer isn't loaded: run `bpfquota load`
EXIT_MISSING_TOOL = 5  # top: BCC or the running kernel's headers are missing

EXIT_CODES_HELP = """exit codes:
  0  success
  1  the operation failed (the kernel refused, a scan failed, ...)
  2  bad input (arguments or volumes file); nothing was changed
  3  this host can't enforce: BPF LSM not ready (see 'bpfquota check')
  4  the enforcer is not loaded: run 'bpfquota load'
  5  top only: BCC (python3-bpfcc) or the running kernel's headers are missing
"""

EXIT_CODES = {enforcement.USAGE: EXIT_USAGE, enforcement.NOT_READY: EXIT_NOT_READY,
              enforcement.NOT_LOADED: EXIT_NOT_LOADED, enforcement.FAILED: EXIT_ERROR,
              enforcement.MISSING_TOOL: EXIT_MISSING_TOOL}


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
    """Print a line: the CLI's output (the service, enforcement.py, returns data and prints nothing)."""
    stream = stream or sys.stdout
    stream.write("%s\n" % text)


def warn_on_stderr(message):
    say("warning: %s" % message, sys.stderr)


def cmd_check(args):
    facts = enforcement.host_facts(args.object)
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
            say(describe_reason(reason))
    return EXIT_OK if facts["ready"] else EXIT_NOT_READY


def describe_reason(reason):
    """A readiness reason for humans: its text (a libbpf log indented under it), then its fix
    (--json gives the records, code included)."""
    first, dummy, rest = reason["text"].partition("\n")
    lines = ["  - " + first] + ["    " + line for line in rest.splitlines()]
    return "\n".join(lines + ["    fix: " + reason["fix"]])


def cmd_build(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import BuildError, build
    if BPF_SOURCES is None:
        raise BpfquotaError("the installed command (%s) carries no BPF sources: the role builds the object on the "
                            "controller; to build one here, run bin/bpfquota build from a checkout of the collection"
                            % INSTALLED_ARCHIVE, enforcement.USAGE)
    try:
        result = build(BPF_SOURCES, args.out)
    except BuildError as e:
        raise BpfquotaError(str(e))
    say("%s %s (sha256 %s)" % ("built" if result["changed"] else "up to date", result["path"], result["sha256"]))
    return EXIT_OK


def cmd_load(args):
    if not os.path.isfile(args.object):
        raise BpfquotaError("BPF object %s not found: build it with 'bpfquota build' or pass --object" % args.object,
                            enforcement.USAGE)
    enforcement.require_ready(args.object)
    result = enforcement.load_program(args.object)
    verb = "upgraded to" if result["upgraded"] else ("loaded" if result["changed"] else "already loaded:")
    say("%s %s (%d programs pinned under %s)" % (verb, result["sha256"][:16], len(result["programs"]), result["pin_dir"]))
    return EXIT_OK


def cmd_unload(args):
    say("unloaded" if enforcement.unload_program() else "not loaded")
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


def describe_plan(the_plan, check):
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
    entries = enforcement.load_entries(args.file)
    if args.skip_missing:
        entries = enforcement.without_missing(entries, warn_on_stderr)
    sync = enforcement.prepare_sync(entries, args.mode, args.full)
    if sync is None:
        say("0 added, 0 updated, 0 removed%s" % (" (dry run)" if args.check else ""))
        return EXIT_OK  # what the last apply applied, on the same mounts, and nothing written since
    with enforcement.exclusive():
        with enforcement.open_maps() as maps:
            the_plan = enforcement.apply_sync(maps, sync, args.check, args.scan_timeout, warn_on_stderr,
                                              args.scan_budget)
    say("\n".join(describe_plan(the_plan, args.check)))
    return EXIT_OK


def cmd_report(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.report import format_report, report_json, report_rows
    with enforcement.open_maps() as maps:
        rows = report_rows(maps)
    say(report_json(rows) if args.json else format_report(rows))
    return EXIT_OK


def cmd_metrics(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import textfile
    text = textfile.host_metrics_text()
    if args.write is None:
        sys.stdout.write(text)
    else:
        say("wrote %s" % textfile.write_textfile(args.write, text))
    return EXIT_OK


def cmd_reconcile(args):
    with enforcement.exclusive():
        with enforcement.open_maps() as maps:
            results = enforcement.reconcile_all(maps, args.timeout, set(args.paths) if args.paths else None,
                                                warn_on_stderr)
    failed = [r for r in results if not r.ok]
    for r in results:
        if r.ok:
            say("%s: %s in %d files (%.2fs)" % (r.path, format_size(r.used_bytes), r.used_files, r.seconds))
        else:
            say("%s: %s" % (r.path, r.reason), sys.stderr)
    return EXIT_ERROR if failed else EXIT_OK


def cmd_agent(args):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.agent import run_agent
    enforcement.open_maps().close()  # not loaded: exit 4 with the fix, before the agent starts
    return run_agent(interval=args.interval, scan_timeout=args.scan_timeout, budget=args.budget, once=args.once,
                     metrics_dir=args.metrics_dir or None, metrics_interval=args.metrics_interval,
                     warn_percent=args.warn_percent, summary_interval=args.summary_interval)


def warn_percents(text):
    """argparse type: percentages of the limit, "80,95" ("" for none)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils.notices import parse_percents
    try:
        return parse_percents(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def positive_seconds(text):
    """argparse type: a number of seconds above zero (one clear error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("%r is not a number of seconds above 0" % text)
    return value


def metrics_directory(text):
    """argparse type: an absolute directory, or "" (no metrics)."""
    if text and not os.path.isabs(text):
        raise argparse.ArgumentTypeError("%r is not an absolute path (\"\" turns the metrics off)" % text)
    return text


def cmd_top(args):
    # Imported here: `top` compiles with BCC; no other command should pay for loading it.
    from ansible_collections.bpfquota.nfs.plugins.module_utils import top
    if args.json and not args.once:
        raise BpfquotaError("--json needs --once (the live view redraws a screen)", enforcement.USAGE)
    try:
        if not args.once:
            top.run_live(args.interval, enforcement.open_maps, sys.stdout, sys.stdin)
            return EXIT_OK
        result = top.run_once(args.interval, enforcement.open_maps)
    except KeyboardInterrupt:
        return EXIT_OK
    say(top.sample_json(result) if args.json else top.format_sample(result))
    return EXIT_OK


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
    c.add_argument("file", metavar="FILE", help="volumes file (YAML or JSON): {volumes: [{path or source, limit, inodes?, mode?, labels?}]}")
    c.add_argument("--check", action="store_true", help="dry run: print what would change")
    c.add_argument("--mode", choices=sorted(layout.MODES), default="enforce", help="default mode of entries")
    c.add_argument("--scan-timeout", type=float, default=60.0, help="seconds per new volume's first scan")
    c.add_argument("--scan-budget", type=float, default=None,
                   help="seconds for all first scans together (default: no limit); volumes not scanned in time "
                        "refuse growth (or, with unknown_usage: allow, count from zero) until a scan succeeds")
    c.add_argument("--skip-missing", action="store_true",
                   help="leave out (with a warning) the volumes whose path doesn't exist, instead of failing: "
                        "the boot's apply, so a directory deleted on the server doesn't stop the others")
    c.add_argument("--full", action="store_true",
                   help="examine every volume's directory and place every NFS mount again, also when the paths and "
                        "the mount table are those of the last apply (which otherwise reuses the keys it made)")
    c.set_defaults(func=cmd_apply)

    c = sub.add_parser("report", help="usage per volume, like xfs_quota report -h")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_report)

    c = sub.add_parser("metrics", help="usage, limits, refusals and state per volume as Prometheus metrics")
    c.add_argument("--write", metavar="DIR", help="write them to DIR/%s (atomically) instead of printing them: "
                   "DIR is node_exporter's textfile collector directory" % layout.METRICS_FILENAME)
    c.set_defaults(func=cmd_metrics)

    c = sub.add_parser("reconcile", help="re-scan volumes to re-base their usage")
    c.add_argument("paths", nargs="*", help="only these volumes")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds per volume")
    c.set_defaults(func=cmd_reconcile)

    c = sub.add_parser("agent", help="periodic reconcile, mount watch, grace periods, warnings to the journal")
    # Scans cost the NFS server a stat per file: rare rounds, bounded in time (kernel accounting covers between).
    c.add_argument("--interval", type=positive_seconds, default=3600.0, help="seconds between reconcile rounds")
    c.add_argument("--budget", type=positive_seconds, default=600.0,
                   help="seconds of scanning per round; volumes not reached go first next round")
    c.add_argument("--scan-timeout", type=positive_seconds, default=300.0, help="seconds per volume scan")
    c.add_argument("--metrics-dir", type=metrics_directory, default=layout.METRICS_DIR,
                   help="write the metrics to DIR/%s for node_exporter's textfile collector (default: %%(default)s; "
                        "\"\": none); a directory that doesn't exist is logged and skipped" % layout.METRICS_FILENAME)
    c.add_argument("--metrics-interval", type=positive_seconds, default=15.0,
                   help="seconds between metrics writes and checks of the grace periods and warnings")
    c.add_argument("--warn-percent", type=warn_percents, default=(80.0, 95.0), metavar="P[,P...]",
                   help="warn (journal) when usage crosses these percentages of the limit (default: 80,95; \"\": none)")
    c.add_argument("--summary-interval", type=positive_seconds, default=60.0,
                   help="seconds between a volume's summaries of refused operations (default: %(default)s)")
    c.add_argument("--once", action="store_true", help="one round, then exit")
    c.set_defaults(func=cmd_agent)

    c = sub.add_parser("top", help="who is writing into each volume now: processes, bytes/s, refusals (needs BCC)")
    c.add_argument("--interval", type=positive_seconds, default=2.0, help="seconds between refreshes (default: %(default)s)")
    c.add_argument("--once", action="store_true", help="one sample over --interval seconds, then exit")
    c.add_argument("--json", action="store_true", help="with --once: the sample as JSON")
    c.set_defaults(func=cmd_top)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BpfquotaError as e:
        say("bpfquota: %s" % e, sys.stderr)
        return EXIT_CODES[e.kind]
    except PermissionError as e:
        say("bpfquota: %s: run as root" % e, sys.stderr)
        return EXIT_ERROR
