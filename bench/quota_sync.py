"""How long syncing 10 000 volumes takes: `bpfquota apply FILE` and the `quota` module (src: FILE),
for volumes named by their local path and for volumes named by their export (`source: server:/dir`).

    python3 bench/quota_sync.py [--name VM] [--keep] [--rounds N]

On the host: builds the assets, boots a test-bed VM, copies the repo in (and this host's ansible-core,
which the module imports), runs this file there as root with --in-vm, and prints the table (also
written to build/quota-sync-results.txt). Exits non-zero when anything fails; a figure over its
target is a figure, not a failure.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vm_bench  # noqa: E402  (bench/vm_bench.py: helpers run in the VM)
from ansible_collections.bpfquota.nfs.plugins.module_utils import cli, enforcement, identity, quota, usage  # noqa: E402

VOLUMES = 10000
CREATOR_DIR = "/srv/nfs/quota-sync"   # the volume directories, made server-side ...
CLIENT_DIR = "/mnt/nfs4/quota-sync"   # ... and their paths through the VM's NFSv4.2 mount ...
SOURCE_DIR = "127.0.0.1:/quota-sync"  # ... and their sources (the export's NFSv4 pseudo-root is /srv/nfs)
REMOTE_ANSIBLE = "/root/ansible-lib"  # where this host's ansible-core goes in the VM
REMOTE_RESULTS = "/root/quota-sync-results.txt"
RESULTS = ROOT / "build" / "quota-sync-results.txt"
TARGET_SECONDS = 1.0

ROWS = [
    "10 000 added, maps only (first scans skipped: --scan-budget 0)",
    "10 000 added, with their first scans",
    "no-op re-sync",
    "no-op re-sync, every cache dropped first",
    "no-op re-sync with --full (every path examined, every route resolved)",
    "one limit changed",
    "10 000 removed",
    "sources: 10 000 added, maps only",
    "sources: no-op re-sync",
    "sources: no-op re-sync with --full",
    "sources: one limit changed",
]
(ADDED_MAPS_ONLY, ADDED, NO_OP, NO_OP_COLD, NO_OP_FULL, CHANGED, REMOVED,
 SOURCES_ADDED, SOURCES_NO_OP, SOURCES_NO_OP_FULL, SOURCES_CHANGED) = ROWS

# ----- in the VM


def volumes_files():
    """{name: path} of the volumes files: every volume by path, the same with one limit changed,
    both again by source, none."""
    os.makedirs(vm_bench.WORK, exist_ok=True)
    files = {"none": vm_bench.write_volumes_file("quota-sync-none", [])}
    for kind, base in (("path", CLIENT_DIR), ("source", SOURCE_DIR)):
        entries = [{kind: "%s/v%05d" % (base, index), "limit": "1Gi"} for index in range(VOLUMES)]
        changed = [dict(entries[0], limit="2Gi")] + entries[1:]
        files[kind] = vm_bench.write_volumes_file("quota-sync-%s" % kind, entries)
        files[kind + "-changed"] = vm_bench.write_volumes_file("quota-sync-%s-changed" % kind, changed)
    return files


def cli_apply(volumes_file, options):
    """(seconds, last line of stdout, stderr lines) of `bin/bpfquota apply`, a process of its own."""
    started = time.monotonic()
    result = subprocess.run(vm_bench.BPFQUOTA + ["apply"] + list(options) + [volumes_file], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError("bpfquota apply %s failed (rc %d):\n%s" % (volumes_file, result.returncode, result.stderr))
    return seconds, result.stdout.splitlines()[-1], result.stderr.splitlines()


def module_apply(volumes_file):
    """(seconds, result) of the quota module as Ansible runs it on a host, with src: FILE like the
    enforcer role, minus the transport: python3 plugins/modules/quota.py ARGS-FILE."""
    args_file = volumes_file + ".args.json"
    with open(args_file, "w") as f:
        json.dump({"ANSIBLE_MODULE_ARGS": {"src": volumes_file, "state": "present"}}, f)
    env = dict(os.environ, PYTHONPATH="%s:%s" % (REMOTE_ANSIBLE, ROOT))
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "plugins" / "modules" / "quota.py"), args_file],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env, check=False)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError("the quota module failed (rc %d):\n%s%s" % (result.returncode, result.stdout, result.stderr))
    return seconds, json.loads(result.stdout)


def expect(what, got, wanted):
    if got != wanted:
        raise RuntimeError("%s: expected %r, got %r" % (what, wanted, got))


class Rounds:
    """The timed operations; each checks its outcome and appends its seconds to samples[(row, column)]."""

    def __init__(self, files):
        self.files = files
        self.samples = {}

    def cli(self, row, name, counts, options=(), warnings=0, cold=False):
        if cold:
            vm_bench.drop_caches()
        seconds, summary, errors = cli_apply(self.files[name], options)
        expect(row, (summary, len(errors)), ("%d added, %d updated, %d removed" % counts, warnings))
        self.record(row, "cli", seconds)

    def module(self, row, name, counts, cold=False):
        if cold:
            vm_bench.drop_caches()
        seconds, answer = module_apply(self.files[name])
        expect(row, tuple(len(answer[key]) for key in ("added", "updated", "removed")), counts)
        self.record(row, "module", seconds)

    def record(self, row, column, seconds):
        self.samples.setdefault((row, column), []).append(seconds)
        vm_bench.progress("%s %s: %.2fs" % (column, row, seconds))

    def round(self):
        """From no volume back to none, twice by each; every no-op re-sync or change follows a
        maps-only add of a few seconds, so NFS attributes are as fresh for the module as for the CLI."""
        self.cli(ADDED_MAPS_ONLY, "path", (VOLUMES, 0, 0), ("--scan-budget", "0"), warnings=enforcement.MAX_SCAN_WARNINGS + 1)
        self.cli(NO_OP, "path", (0, 0, 0))
        self.cli(NO_OP_FULL, "path", (0, 0, 0), ("--full",))
        self.cli(CHANGED, "path-changed", (0, 1, 0))
        self.cli(REMOVED, "none", (0, 0, VOLUMES))
        vm_bench.bpfquota("apply", "--scan-budget", "0", self.files["path"])
        self.module(NO_OP, "path", (0, 0, 0))
        self.module(CHANGED, "path-changed", (0, 1, 0))
        self.module(REMOVED, "none", (0, 0, VOLUMES))
        self.cli(ADDED, "path", (VOLUMES, 0, 0))
        self.cli(REMOVED, "none", (0, 0, VOLUMES))
        self.module(ADDED, "path", (VOLUMES, 0, 0))
        self.module(REMOVED, "none", (0, 0, VOLUMES))
        self.cli(SOURCES_ADDED, "source", (VOLUMES, 0, 0), ("--scan-budget", "0"),
                 warnings=enforcement.MAX_SCAN_WARNINGS + 1)
        self.cli(SOURCES_NO_OP, "source", (0, 0, 0))
        self.cli(SOURCES_NO_OP_FULL, "source", (0, 0, 0), ("--full",))
        self.cli(SOURCES_CHANGED, "source-changed", (0, 1, 0))
        vm_bench.bpfquota("apply", "--scan-budget", "0", self.files["source"])
        self.module(SOURCES_NO_OP, "source", (0, 0, 0))
        self.module(SOURCES_CHANGED, "source-changed", (0, 1, 0))
        vm_bench.bpfquota("apply", self.files["none"])

    def cold_round(self):
        """No-op re-syncs with every cache dropped first: last, as they leave the caches cold."""
        vm_bench.bpfquota("apply", "--scan-budget", "0", self.files["path"])
        self.cli(NO_OP_COLD, "path", (0, 0, 0), cold=True)
        self.module(NO_OP_COLD, "path", (0, 0, 0), cold=True)
        vm_bench.bpfquota("apply", self.files["none"])


# `bpfquota apply` is made of these, in this order (enforcement.prepare_sync and apply_sync).
PHASES = [(enforcement, "sync_inputs", "stamp"), (enforcement, "validated_volumes", "validate"),
          (identity, "identities", "routes"),
          (quota, "stored_route_keys", "stored routes"),
          (quota, "applied_volumes", "read maps"), (quota, "plan", "plan"),
          (quota, "apply_plan", "write maps"), (usage, "scan_volumes", "first scans")]


@contextlib.contextmanager
def phase_timers(totals):
    """Add to totals[phase] the seconds spent in each function of PHASES meanwhile."""
    def timed(function, phase):
        def call(*args, **kwargs):
            started = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                totals[phase] = totals.get(phase, 0.0) + time.monotonic() - started
        return call

    saved = [(owner, name, getattr(owner, name)) for owner, name, dummy in PHASES]
    for owner, name, phase in PHASES:
        setattr(owner, name, timed(getattr(owner, name), phase))
    try:
        yield
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)


def measure_phases(files):
    """[(row, seconds, {phase: seconds})]: one in-process `apply` per operation, as in a round."""
    rows = []
    for row, name, options in ((ADDED, "path", []), (NO_OP, "path", []), (NO_OP_FULL, "path", ["--full"]),
                               (CHANGED, "path-changed", []), (REMOVED, "none", []),
                               (SOURCES_ADDED, "source", ["--scan-budget", "0"]), (SOURCES_NO_OP, "source", []),
                               ("sources: 10 000 removed", "none", [])):
        totals = {}
        started = time.monotonic()
        with phase_timers(totals), contextlib.redirect_stdout(io.StringIO()):
            expect(row, cli.main(["apply"] + options + [files[name]]), cli.EXIT_OK)
        rows.append((row, time.monotonic() - started, totals))
    return rows


def cell(values):
    return "%.2f (%.2f-%.2f)" % (statistics.median(values), min(values), max(values))


def result_lines(samples, rounds, phases):
    table = [["operation (NFSv4.2 volumes)", "bpfquota apply FILE", "<= 1 s", "quota module (src: FILE)", "<= 1 s"]]
    for row in ROWS:
        line = [row]
        for column in ("cli", "module"):
            values = samples.get((row, column))
            line += [cell(values), "yes" if statistics.median(values) <= TARGET_SECONDS else "no"] if values else ["-", ""]
        table.append(line)
    names = [phase for dummy, dummy_name, phase in PHASES]
    breakdown = [["where the time goes: one in-process `apply` each", "total"] + names]
    for row, total, totals in phases:
        breakdown.append([row, "%.2f" % total] + ["%.2f" % totals.get(name, 0.0) for name in names])
    return vm_bench.format_columns(table) + [
        "seconds, median (min-max) over %d rounds, a sample each a round (removing: two); wall time of the whole"
        " process, interpreter start and imports included; each operation right after the one before, so the"
        " NFS client's attributes are fresh, but for the row where every cache was dropped first (drop_caches:"
        " the loopback server's too)" % rounds, ""] + vm_bench.format_columns(breakdown) + [
        "stamp: digests of the entries and of the paths with the mount table, compared with the stamp the last"
        " apply left in the maps (equal: nothing to do; equal paths: no path examined, no route resolved);"
        " validate: checking FILE's entries (volumes.py), each path examined (an lstat, the nesting check) unless"
        " the paths are known; routes: the (dev, ino) of every way to each volume (a stat of its path on each"
        " other NFS superblock: here the NFSv3 mount); stored routes: the same read from the maps when the paths"
        " are known; first scans: one forked child walks all new volumes (empty directories here: one READDIR"
        " each)"]


def in_vm(out, rounds):
    vm_bench.run(["testbed-mount-nfs"])
    started = time.monotonic()
    for index in range(VOLUMES):
        os.makedirs(os.path.join(CREATOR_DIR, "v%05d" % index), exist_ok=True)
    for mount in ("/mnt/nfs3", "/mnt/nfs4"):  # the client has seen the volumes, as on a host that mounts them
        os.listdir(os.path.join(mount, os.path.basename(CREATOR_DIR)))
    vm_bench.progress("%d volume directories ready in %.0fs" % (VOLUMES, time.monotonic() - started))
    files = volumes_files()
    vm_bench.bpfquota("unload")
    vm_bench.bpfquota("load", "--object", vm_bench.OBJECT)
    vm_bench.bpfquota("apply", files["none"])
    rounds_run = Rounds(files)
    for index in range(rounds):
        vm_bench.progress("round %d/%d" % (index + 1, rounds))
        rounds_run.round()
    phases = measure_phases(files)
    for index in range(rounds):
        rounds_run.cold_round()
    vm_bench.bpfquota("unload")
    lines = ["bpfquota: syncing %d volumes (inside the test-bed VM: QEMU TCG, %d vCPUs on one host thread, "
             "kernel %s)" % (VOLUMES, os.cpu_count(), platform.release()), ""]
    with open(out, "w") as f:
        f.write("\n".join(lines + result_lines(rounds_run.samples, rounds, phases)) + "\n")


# ----- on the host


def run_on_host(name, keep, rounds):
    """The table the VM printed."""
    import ansible
    import run as bench_run

    def copy_ansible(vm):
        vm.run("rm -rf %s && mkdir -p %s" % (REMOTE_ANSIBLE, REMOTE_ANSIBLE))
        vm.put(Path(ansible.__file__).parent, REMOTE_ANSIBLE + "/ansible")
    return bench_run.run_script_in_vm(name, keep, "python3 bench/quota_sync.py --in-vm --rounds %d --out %s"
                                      % (rounds, REMOTE_RESULTS), REMOTE_RESULTS, copy_ansible)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="bench-quota-sync", help="test-bed VM name (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the VM running afterwards")
    parser.add_argument("--rounds", type=int, default=3, help="samples of each operation (default: %(default)s)")
    parser.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_vm:
        in_vm(args.out, args.rounds)
        return 0
    import run as bench_run  # bench/run.py: building, the VM, host noise (on the host only: it needs psutil)
    from testbed.vm import run_dir_for
    signal.signal(signal.SIGTERM, bench_run.raise_on_sigterm)
    started = time.monotonic()
    with bench_run.HostNoise(run_dir_for(args.name)) as noise:
        table = run_on_host(args.name, args.keep, args.rounds)
    print(bench_run.report_of(table, noise, started, RESULTS), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
