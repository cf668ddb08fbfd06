"""bpfquota benchmarks, run as root inside the test-bed VM (bench/run.py copies the repo in and starts this).

Measures write throughput and create+unlink rate with no enforcer, with the enforcer and 1 volume,
and with the enforcer and 10 000 volumes, on local ext4 and on the VM's NFSv4.2 loopback mount;
then the overshoot past a limit and the reconcile scan rate against du. Progress goes to stderr;
the table goes to --out. Under TCG only ratios inside one run mean anything, not absolute figures.
"""
import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement, identity, libbpf, loader, quota, usage  # noqa: E402

BPFQUOTA = [sys.executable, os.path.join(ROOT, "bin", "bpfquota")]
OBJECT = os.path.join(ROOT, "build", "bpfquota.bpf.o")
CREATEUNLINK = os.path.join(ROOT, "build", "createunlink")
WORK = "/var/bench"  # volumes files and the local-ext4 volumes

REPEATS = 4  # = len(CONFIGS): with the order rotated each round, every configuration runs once in each position
TARGET_SECONDS = 2.5  # per timed run; >= 2 s even when the enforcer or noise slows a run a little
VOLUME_COUNT = 10000
MEASURED_INDEX = 0
BIG_LIMIT = "1Ti"  # nothing is refused while measuring speed
MiB = 1 << 20
OVERSHOOT_LIMIT = 64 * MiB + 12345
TREE_DIRS = 200
TREE_FILES_PER_DIR = 100
FIRST_SCAN_DIRS = 1000  # x TREE_FILES_PER_DIR: the new volume of 100 000 files

STARTED = time.monotonic()


def progress(message):
    print("[vm_bench %6.0fs] %s" % (time.monotonic() - STARTED, message), file=sys.stderr, flush=True)


def run(argv, **kwargs):
    """A command that must succeed; its output, with the command's stderr in the error if not."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False,
                            **kwargs)
    if result.returncode != 0:
        raise RuntimeError("%s failed (rc %d):\n%s%s" % (" ".join(argv), result.returncode,
                                                         result.stdout, result.stderr))
    return result.stdout


def bpfquota(*args):
    return run(BPFQUOTA + [str(a) for a in args])


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# ----- filesystems and configurations

class Filesystem:
    """Where one filesystem's 10 000 sibling volume directories live, as the client and the creator see them."""

    def __init__(self, name, client_dir, creator_dir):
        self.name = name
        self.client_dir = client_dir    # paths in volumes files and where workloads run
        self.creator_dir = creator_dir  # the same directories, created without going through NFS

    def volume(self, index):
        return os.path.join(self.client_dir, "v%05d" % index)

    @property
    def measured(self):
        return self.volume(MEASURED_INDEX)

    def create_volume_dirs(self):
        os.makedirs(self.creator_dir, exist_ok=True)
        for index in range(VOLUME_COUNT):
            os.makedirs(os.path.join(self.creator_dir, "v%05d" % index), exist_ok=True)


FILESYSTEMS = [
    Filesystem("ext4", os.path.join(WORK, "vols"), os.path.join(WORK, "vols")),
    Filesystem("nfs4.2", "/mnt/nfs4/bench/vols", "/srv/nfs/bench/vols"),
]

# (key, column heading, volumes on the measured filesystem); None: enforcer not loaded. The first is the
# baseline of every ratio; "loaded, 0 volumes" has no target: it splits the enforcer's cost into what its
# hooks cost on a filesystem without volumes and what finding and charging a volume adds.
CONFIGS = [
    ("none", "no enforcer", None),
    ("one", "1 volume", 1),
    ("many", "10 000 volumes", VOLUME_COUNT),
    ("zero", "loaded, 0 volumes", 0),
]
DIAGNOSTIC_CONFIGS = {"zero"}


class Enforcer:
    """Puts the host in one configuration. Tracks whether the enforcer is loaded to skip needless loads,
    and keeps each volumes file's validated volumes and routes (see prepare_volumes)."""

    def __init__(self):
        self.loaded = False
        self.prepared = {}
        bpfquota("unload")  # a known start, whatever a previous run left

    def unload(self):
        if self.loaded:
            bpfquota("unload")
            self.loaded = False

    def load(self):
        if not self.loaded:
            bpfquota("load", "--object", OBJECT)
            self.loaded = True

    def configure(self, volume_count, fs):
        if volume_count is None:
            self.unload()
        else:
            self.apply(self.volumes_file(volume_count, fs), scan=[fs.measured])

    def volumes_file(self, volume_count, fs):
        """The volumes file of a configuration, validated and its routes resolved (the slow part) once."""
        entries = [volume_entry(fs.volume(i), BIG_LIMIT) for i in range(volume_count)]
        return self.prepare(write_volumes_file("%s-%d" % (fs.name, volume_count), entries))

    def prepare(self, volumes_file):
        if volumes_file not in self.prepared:
            self.prepared[volumes_file] = prepare_volumes(volumes_file)
        return volumes_file

    def apply(self, volumes_file, scan):
        self.load()
        apply_prepared(*self.prepared[self.prepare(volumes_file)], scan=scan)


def volume_entry(path, limit):
    return {"path": path, "limit": limit, "mode": "enforce"}


def write_volumes_file(label, entries):
    path = os.path.join(WORK, "volumes-%s.json" % label)
    with open(path, "w") as f:
        json.dump({"volumes": entries}, f)
    return path


# `bpfquota apply FILE` is, in order: validate the file, resolve every volume's routes (its (dev, ino)
# through each mount), plan against what is applied, write the maps, scan each new volume. The bench
# calls those same functions, with two shortcuts, because under TCG `bpfquota apply` of 10 000 new NFS
# volumes takes ~12 min, and re-applying them every round would take most of the budget:
#  - a volumes file is validated and its routes resolved once per run (prepare_volumes), ~50 000 stat
#    calls for 10 000 NFS volumes; later applies of the same file reuse them: the directories are never
#    recreated and the mounts never change during a run, so the answers can't differ.
#  - only the volumes in `scan` get the first scan; the others are empty directories, whose scan would
#    find 0 bytes and 0 files: the base apply_plan leaves them with.
# Neither shortcut changes what the kernel sees while the workloads run.

def prepare_volumes(volumes_file):
    volumes = enforcement.desired_volumes(volumes_file, "enforce")
    return volumes, identity.identities([v.path for v in volumes])


def apply_prepared(volumes, found, scan):
    with enforcement.exclusive():
        with enforcement.open_maps() as maps:
            the_plan = quota.plan(quota.applied_volumes(maps), volumes, found.by_path, found.roots, found.groups)
            quota.apply_plan(maps, the_plan)
            for path in scan:
                if path in the_plan.ids:
                    result = usage.scan_volume(maps, the_plan.ids[path], path, 300)
                    if not result.ok:
                        raise RuntimeError("scan of %s failed: %s" % (path, result.reason))
            applied = sorted(quota.applied_volumes(maps))
    if applied != sorted(v.path for v in volumes):
        raise RuntimeError("%d volumes applied, %d wanted" % (len(applied), len(volumes)))


# ----- workloads: each returns (value, seconds) for one timed run of size n

def dd_write(directory, block_size, count):
    """MB/s (10^6 bytes/s, like dd) of sequential writes, timed around dd so the close (an NFS flush) counts."""
    target = os.path.join(directory, "ddfile")
    remove_if_present(target)
    os.sync()  # the previous run's writeback must not land inside this one
    started = time.monotonic()
    run(["dd", "if=/dev/zero", "of=" + target, "bs=%d" % block_size, "count=%d" % count, "conv=notrunc"])
    seconds = time.monotonic() - started
    remove_if_present(target)
    return block_size * count / seconds / 1e6, seconds


def create_unlink(directory, count):
    """Create+close+unlink cycles per second, as measured by the static helper itself."""
    os.sync()  # writeback left by the workload before must not land inside this one
    rate, dummy_count, seconds = run([CREATEUNLINK, directory, str(count)]).split()
    return float(rate), float(seconds)


def remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Workload:
    def __init__(self, key, label, unit, measure, first_size, target):
        self.key = key
        self.label = label
        self.unit = unit
        self.measure = measure        # (directory, size) -> (value, seconds)
        self.first_size = first_size  # calibration starts here
        self.target = target          # minimum ratio the issue asks for, or None

    def __call__(self, directory, size):
        return self.measure(directory, size)


WORKLOADS = [
    Workload("w4k", "4 KiB writes", "MB/s", lambda d, n: dd_write(d, 4096, n), 4096, 0.98),
    Workload("w1m", "1 MiB writes", "MB/s", lambda d, n: dd_write(d, MiB, n), 16, None),
    Workload("cu", "create+unlink", "ops/s", create_unlink, 200, 0.95),
]


def calibrate(workload, directory):
    """A size that makes one run last at least about TARGET_SECONDS here. The first runs, which also warm
    caches up, can be off by 2x (NFS create+unlink was), so one more run is made at the estimated size,
    and the faster of the two rates sets the size: a faster run later would otherwise end too soon."""
    size = workload.first_size
    while True:
        dummy_rate, seconds = workload(directory, size)
        if seconds >= 0.5:
            break
        size *= 8
    estimate = scaled_to_target(size, seconds)
    dummy_rate, estimate_seconds = workload(directory, estimate)
    return max(estimate, scaled_to_target(estimate, estimate_seconds))


def scaled_to_target(size, seconds):
    return max(1, int(round(size * TARGET_SECONDS / seconds)))


# ----- the throughput matrix

def rotated(items, by):
    by %= len(items)
    return items[by:] + items[:by]


def measure_filesystem(fs, enforcer, results, sizes, durations):
    """REPEATS rounds; each visits every configuration (order rotated per round so position effects
    and emulator drift spread over all of them) and runs every workload once."""
    enforcer.configure(None, fs)
    for workload in WORKLOADS:
        sizes[(fs.name, workload.key)] = calibrate(workload, fs.measured)
        progress("%s %s: %d per run" % (fs.name, workload.label, sizes[(fs.name, workload.key)]))
    for dummy_key, heading, volume_count in CONFIGS:
        if volume_count is not None:  # before the rounds, so they all last about as long
            started = time.monotonic()
            enforcer.volumes_file(volume_count, fs)
            progress("%s %s: volumes file validated, routes resolved in %.0fs" % (
                fs.name, heading, time.monotonic() - started))
    for round_index in range(REPEATS):
        for key, heading, volume_count in rotated(CONFIGS, round_index):
            started = time.monotonic()
            enforcer.configure(volume_count, fs)
            switched = time.monotonic() - started
            for workload in WORKLOADS:
                value, seconds = workload(fs.measured, sizes[(fs.name, workload.key)])
                results.setdefault((fs.name, workload.key, key), []).append(value)
                durations.append(seconds)
            progress("%s round %d/%d, %s (configured in %.0fs): %s" % (
                fs.name, round_index + 1, REPEATS, heading, switched,
                ", ".join("%s %.1f" % (w.key, results[(fs.name, w.key, key)][-1]) for w in WORKLOADS)))


def cell(values):
    return "%.1f (%.1f-%.1f)" % (statistics.median(values), min(values), max(values))


def paired_ratios(values, baseline):
    """Each round's value over the same round's no-enforcer value. Runs of one round are at most about
    a minute apart, so a shift in the host's load between rounds cancels out of these."""
    return [value / base for value, base in zip(values, baseline)]


def ratio_cell(ratios):
    return "%.3f (%.2f-%.2f)" % (statistics.median(ratios), min(ratios), max(ratios))


def verdict(ratio, target):
    return ">=%.2f %s" % (target, "PASS" if ratio >= target else "MISS") if target else "-"


def matrix_table(results, sizes, durations):
    baseline = CONFIGS[0]
    heading = ["workload", "fs", baseline[1]]
    for key, label, dummy_count in CONFIGS[1:]:
        heading += [label, "ratio"] + ([] if key in DIAGNOSTIC_CONFIGS else ["target"])
    rows = [heading]
    for workload in WORKLOADS:
        for fs in FILESYSTEMS:
            base_values = results[(fs.name, workload.key, baseline[0])]
            row = ["%s %s" % (workload.label, workload.unit), fs.name, cell(base_values)]
            for key in [config[0] for config in CONFIGS[1:]]:
                values = results[(fs.name, workload.key, key)]
                ratios = paired_ratios(values, base_values)
                row += [cell(values), ratio_cell(ratios)]
                if key not in DIAGNOSTIC_CONFIGS:
                    row.append(verdict(statistics.median(ratios), workload.target))
            rows.append(row)
    notes = ["run sizes: " + "; ".join("%s %s %s" % (fs.name, w.label, size_text(w, sizes[(fs.name, w.key)]))
                                       for fs in FILESYSTEMS for w in WORKLOADS),
             "timed runs lasted %.1f-%.1f s" % (min(durations), max(durations))]
    return format_columns(rows) + notes


def size_text(workload, size):
    return "%d ops" % size if workload.unit == "ops/s" else "count=%d" % size


def format_columns(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


# ----- time spent inside the enforcer's programs

# The kernel times every BPF program run when kernel.bpf_stats_enabled is 1 (run_time_ns in the
# program fd's fdinfo). That costs two clock reads per run, so it is on only in this separate pass,
# never while the matrix above is measured. The programs' time over the run's wall time is the
# enforcer's share of it, in one run, without comparing runs made at different times: host noise,
# which moves the matrix's values by 10 % and more, slows both sides of this quotient alike. Not
# included: the LSM hook dispatch and the BPF trampoline around each program.
BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


@contextlib.contextmanager
def bpf_stats():
    with open(BPF_STATS_SYSCTL, "w") as f:
        f.write("1\n")
    try:
        yield
    finally:
        with open(BPF_STATS_SYSCTL, "w") as f:
            f.write("0\n")


@contextlib.contextmanager
def enforcer_programs():
    """{program name: fd} of the loaded enforcer's programs (from its pinned links)."""
    fds = {}
    try:
        for name, prog_id in sorted(loader.status()["programs"].items()):
            fd = libbpf.libbpf().bpf_prog_get_fd_by_id(prog_id)
            if fd < 0:
                raise RuntimeError("cannot open program %s (id %d): %s" % (name, prog_id, os.strerror(-fd)))
            fds[name] = fd
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def program_stats(fds):
    """{program name: (run_time_ns, run_cnt)} so far."""
    stats = {}
    for name, fd in fds.items():
        with open("/proc/self/fdinfo/%d" % fd) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        stats[name] = (int(fields["run_time_ns"]), int(fields["run_cnt"]))
    return stats


def stats_delta(before, after):
    return dict((name, (after[name][0] - before[name][0], after[name][1] - before[name][1])) for name in after)


def measure_program_share(fs, enforcer, sizes, shares):
    """One run of each workload per loaded configuration; shares[...] = ({program: (ns, runs)}, run's seconds)."""
    with bpf_stats():
        for key, heading, volume_count in CONFIGS:
            if volume_count is None:
                continue
            enforcer.configure(volume_count, fs)
            with enforcer_programs() as fds:
                for workload in WORKLOADS:
                    before = program_stats(fds)
                    dummy_rate, seconds = workload(fs.measured, sizes[(fs.name, workload.key)])
                    shares[(fs.name, workload.key, key)] = (stats_delta(before, program_stats(fds)), seconds)
            progress("%s %s, time in the programs: %s" % (fs.name, heading, ", ".join(
                "%s %.2f%%" % (w.key, 100 * share_of_run(*shares[(fs.name, w.key, key)])) for w in WORKLOADS)))


def share_of_run(per_program, seconds):
    return sum(ns for ns, dummy_runs in per_program.values()) / (seconds * 1e9)


def busiest_programs(per_program, ops):
    """'name runs/op x ns/run' for the programs holding >= 10 % of the time, busiest first."""
    total = sum(ns for ns, dummy_runs in per_program.values()) or 1
    busiest = sorted(((ns, runs, name) for name, (ns, runs) in per_program.items() if runs and ns >= total / 10),
                     reverse=True)
    return ", ".join("%s %.1fx%.0fns" % (name.replace("bq_", ""), runs / ops, ns / runs) for ns, runs, name in busiest)


def share_table(shares, sizes):
    loaded = [(key, label) for key, label, count in CONFIGS if count is not None]
    rows = [["workload", "fs"] + [label for dummy_key, label in loaded] + ["where, with 1 volume: program runs/op x ns/run"]]
    for workload in WORKLOADS:
        for fs in FILESYSTEMS:
            ops = sizes[(fs.name, workload.key)]
            row = [workload.label, fs.name]
            for key, dummy_label in loaded:
                per_program, seconds = shares[(fs.name, workload.key, key)]
                spent = sum(ns for ns, dummy_runs in per_program.values())
                row.append("%.2f%% (%.0f ns/op)" % (100 * share_of_run(per_program, seconds), spent / ops))
            row.append(busiest_programs(shares[(fs.name, workload.key, "one")][0], ops))
            rows.append(row)
    return format_columns(rows)


# ----- overshoot

def fill_by_writer(volume, chunk):
    """One writer appending `chunk`-byte writes until one is refused."""
    write_until_refused(os.path.join(volume, "fill"), chunk)


def fill_by_cp(volume):
    """coreutils cp (copy_file_range: NFSv4.2 server-side COPY) of a file twice the limit."""
    source = os.path.join(os.path.dirname(volume), "overshoot-source")
    if not os.path.exists(source):
        with open(source, "wb") as f:
            for dummy in range(2 * OVERSHOOT_LIMIT // MiB + 1):
                f.write(b"c" * MiB)
    subprocess.run(["cp", source, os.path.join(volume, "copy")], stderr=subprocess.DEVNULL, check=False)


def fill_by_processes(volume, count=64):
    """`count` processes, each appending 1 MiB writes to its own file until refused, all at once."""
    children = []
    for i in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                write_until_refused(os.path.join(volume, "p%02d" % i), MiB)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


def fill_by_threads(volume, count=16):
    """`count` threads writing 1 MiB pieces of one file at positions they take in turn, until refused."""
    fd = os.open(os.path.join(volume, "shared"), os.O_WRONLY | os.O_CREAT, 0o644)
    positions = itertools.count()
    data = b"t" * MiB

    def writer():
        while True:
            offset = next(positions) * MiB
            if offset > 4 * OVERSHOOT_LIMIT:  # a broken enforcer must not fill the disk
                return
            try:
                os.pwrite(fd, data, offset)
            except OSError:
                return
    threads = [threading.Thread(target=writer) for dummy in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(fd)


OVERSHOOT_CASES = (
    ("one writer, 4 KiB writes", lambda volume: fill_by_writer(volume, 4096)),
    ("one writer, 1 MiB writes", lambda volume: fill_by_writer(volume, MiB)),
    ("one writer, 256 MiB writes", lambda volume: fill_by_writer(volume, 256 * MiB)),
    ("cp of a file 2x the limit", fill_by_cp),
    ("64 processes on 64 files", fill_by_processes),
    ("16 threads on one file", fill_by_threads),
)


def apparent_bytes(path):
    return sum(os.lstat(os.path.join(parent, name)).st_size
               for parent, dummy_dirs, files in os.walk(path) for name in files)


def measure_overshoot(enforcer):
    """Each case fills its own empty NFSv4.2 volume (a limit that no write size divides) until refused:
    [(case, bytes in the volume afterwards, bpfquota's usage of it)]."""
    results = []
    for index, (label, fill) in enumerate(OVERSHOOT_CASES):
        name = "overshoot-%d" % index
        creator, client = "/srv/nfs/bench/" + name, "/mnt/nfs4/bench/" + name
        os.makedirs(creator, exist_ok=True)
        enforcer.apply(write_volumes_file(name, [volume_entry(client, OVERSHOOT_LIMIT)]), scan=[client])
        progress("overshoot: %s" % label)
        fill(client)
        results.append((label, apparent_bytes(client), report_row(client)["used_bytes"]))
    return results


def write_until_refused(path, chunk):
    """Bytes the kernel accepted before the first refused write, and that write's errno."""
    data = b"x" * chunk
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while written < 4 * OVERSHOOT_LIMIT:  # a broken enforcer must not fill the disk
            try:
                written += os.write(fd, data)
            except OSError as e:
                return written, e.errno
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # NFS reports a failed flush at close; the write loop already has its answer
    return written, None


def report_row(path):
    rows = json.loads(bpfquota("report", "--json"))["volumes"]
    return [row for row in rows if row["path"] == path][0]


def overshoot_lines(results):
    rows = [["case", "bytes in the volume", "overshoot (target 0)", "room left unused", "bpfquota usage"]]
    for label, stored, used in results:
        over = stored - OVERSHOOT_LIMIT
        rows.append([label, str(stored), "%d B %s" % (max(over, 0), "OK" if over <= 0 else "FAIL"),
                     "%d B" % max(-over, 0), str(used)])
    return ["limit %d B (64 MiB + 12345) on nfs4.2, each case in its own empty volume" % OVERSHOOT_LIMIT] + \
        format_columns(rows)


# ----- reconcile scan rate

def build_tree(creator_dir, dirs=TREE_DIRS):
    """`dirs` directories of TREE_FILES_PER_DIR files of varied small sizes, written server-side."""
    os.makedirs(creator_dir, exist_ok=True)
    for d in range(dirs):
        directory = os.path.join(creator_dir, "d%04d" % d)
        os.makedirs(directory, exist_ok=True)
        for f in range(TREE_FILES_PER_DIR):
            size = (d * TREE_FILES_PER_DIR + f) * 37 % 4096
            with open(os.path.join(directory, "f%03d" % f), "wb") as out:
                out.write(b"y" * size)


def timed_reconcile(path):
    """(seconds, inodes, bytes): the seconds reconcile prints, its counts from report --json."""
    drop_caches()
    line = bpfquota("reconcile", path).strip()
    match = re.search(r" in (\d+) files \((\d+(?:\.\d+)?)s\)$", line)
    if not match:
        raise RuntimeError("unexpected reconcile output: %r" % line)
    row = report_row(path)
    return float(match.group(2)), int(match.group(1)), row["used_bytes"]


def timed_du(path):
    """(seconds, bytes): wall time around `du --apparent-size -s -b` (includes starting du)."""
    drop_caches()
    started = time.monotonic()
    out = run(["du", "--apparent-size", "-s", "-b", path])
    return time.monotonic() - started, int(out.split()[0])


def find_totals(path):
    """(entries below path, sum of st_size of regular files): what the walk should agree with."""
    entries = run(["find", path, "-mindepth", "1", "-printf", "%y %s\\n"]).split("\n")
    pairs = [line.split() for line in entries if line]
    return len(pairs), sum(int(size) for kind, size in pairs if kind == "f")


def measure_reconcile(enforcer):
    creator, client = "/srv/nfs/bench/tree", "/mnt/nfs4/bench/tree"
    started = time.monotonic()
    build_tree(creator)
    progress("built %d files in %d dirs server-side in %.0fs" % (
        TREE_DIRS * TREE_FILES_PER_DIR, TREE_DIRS, time.monotonic() - started))
    # No first scan: the timed reconciles below are the scans.
    enforcer.apply(write_volumes_file("tree", [volume_entry(client, BIG_LIMIT)]), scan=[])
    scans, dus = [], []
    for first in ["reconcile", "du", "du", "reconcile", "reconcile", "du"]:  # ABBA: drift hits both alike
        if first == "reconcile":
            scans.append(timed_reconcile(client))
        else:
            dus.append(timed_du(client))
        progress("%s: %.2fs" % (first, (scans if first == "reconcile" else dus)[-1][0]))
    entries, file_bytes = find_totals(client)
    return scans, dus, entries, file_bytes


def reconcile_lines(scans, dus, entries, file_bytes):
    scan_rates = [inodes / seconds for seconds, inodes, dummy_bytes in scans]
    du_rates = [entries / seconds for seconds, dummy_bytes in dus]
    scan_inodes, scan_bytes = scans[-1][1], scans[-1][2]
    du_bytes = dus[-1][1]
    ratio = statistics.median(scan_rates) / statistics.median(du_rates)
    return [
        "tree: %d dirs x %d files on nfs4.2 (%d entries below the volume), caches dropped before each run" % (
            TREE_DIRS, TREE_FILES_PER_DIR, entries),
        "bpfquota reconcile: %s entries/s (its printed seconds: %s)" % (
            cell(scan_rates), ", ".join("%.2f" % scan[0] for scan in scans)),
        "du --apparent-size: %s entries/s (wall time around du: %s)" % (
            cell(du_rates), ", ".join("%.2f" % du[0] for du in dus)),
        "ratio reconcile/du: %.3f" % ratio,
        "result: reconcile %d inodes, %d B; find: %d entries, %d B in regular files (find -type f -printf %%s summed) "
        "-> %s" % (scan_inodes, scan_bytes, entries, file_bytes,
                   "agree" if (scan_inodes, scan_bytes) == (entries, file_bytes) else "DIFFER"),
        "du -s -b: %d B = regular files + %d B of directory sizes, which the scan does not count" % (
            du_bytes, du_bytes - file_bytes),
    ]


# ----- first scan of a new volume

def measure_first_scan():
    """How long a new volume of FIRST_SCAN_DIRS x TREE_FILES_PER_DIR files waits for its first scan,
    i.e. refuses growth as "unknown": `bpfquota apply` of a volumes file holding only it (apply scans
    new volumes), then, if apply's scan did not finish, `bpfquota reconcile` as the agent would run it."""
    creator, client = "/srv/nfs/bench/new-volume", "/mnt/nfs4/bench/new-volume"
    started = time.monotonic()
    build_tree(creator, FIRST_SCAN_DIRS)
    files = FIRST_SCAN_DIRS * TREE_FILES_PER_DIR
    progress("built %d files in %d dirs server-side in %.0fs" % (files, FIRST_SCAN_DIRS, time.monotonic() - started))
    volumes_file = write_volumes_file("new-volume", [volume_entry(client, BIG_LIMIT)])
    drop_caches()
    started = time.monotonic()
    bpfquota("apply", volumes_file)
    apply_seconds = time.monotonic() - started
    lines = ["new volume of %d files in %d dirs on nfs4.2, caches dropped: `bpfquota apply` returned in %.1f s, "
             "usage %s" % (files, FIRST_SCAN_DIRS, apply_seconds, report_row(client)["usage"])]
    for dummy in range(3):
        if report_row(client)["usage"] == "scanned":
            break
        reconciled = time.monotonic()
        bpfquota("reconcile", client)
        seconds = time.monotonic() - reconciled
        lines.append("then `bpfquota reconcile`: %.1f s, usage %s" % (seconds, report_row(client)["usage"]))
    waited = time.monotonic() - started
    row = report_row(client)
    entries, file_bytes = find_totals(client)
    lines.append("waited %.1f s in all for its first scan; counted %d inodes, %d B (find: %d, %d B) -> %s" % (
        waited, row["files"], row["used_bytes"], entries, file_bytes,
        "agree" if (row["files"], row["used_bytes"]) == (entries, file_bytes) else "DIFFER"))
    return lines


# ----- main

def header_lines():
    return [
        "bpfquota benchmark (inside the test-bed VM: QEMU TCG, %d vCPUs; only ratios within this run mean anything)"
        % os.cpu_count(),
        "kernel %s, VM clock at start %s" % (platform.release(), time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        "cells: median (min-max) of %d runs, one per round; ratio: median (min-max) over the rounds of the run's value"
        " / the same round's no-enforcer value; higher is better everywhere" % REPEATS,
        "configurations interleaved round-robin, order rotated each round; each run ~%.1f s (size calibrated with no "
        "enforcer)" % TARGET_SECONDS,
        "'loaded, 0 volumes': enforcer loaded, no volume anywhere (a diagnostic: the hooks' own cost, no target)",
    ]


def prepare():
    run(["testbed-mount-nfs"])
    os.makedirs(WORK, exist_ok=True)
    for fs in FILESYSTEMS:
        started = time.monotonic()
        fs.create_volume_dirs()
        progress("%s: %d volume directories ready in %.0fs" % (fs.name, VOLUME_COUNT, time.monotonic() - started))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="write the table here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root inside the test-bed VM")

    lines = header_lines()
    prepare()
    enforcer = Enforcer()
    results, sizes, durations, shares = {}, {}, [], {}
    for fs in FILESYSTEMS:
        measure_filesystem(fs, enforcer, results, sizes, durations)
        measure_program_share(fs, enforcer, sizes, shares)
    lines += [""] + matrix_table(results, sizes, durations)
    lines += ["", "== time inside the enforcer's BPF programs, share of each run's wall time (and per op);"] + [
        "   separate pass, one run each, kernel.bpf_stats_enabled=1 (its clock reads count in the programs' time);",
        "   the LSM hook dispatch and the trampolines around the programs are not included"]
    lines += share_table(shares, sizes)
    lines += ["", "== overshoot"] + overshoot_lines(measure_overshoot(enforcer))
    lines += ["", "== reconcile scan rate"] + reconcile_lines(*measure_reconcile(enforcer))
    lines += ["", "== first scan of a new volume"] + measure_first_scan()
    enforcer.unload()
    lines += ["", "measured in %.0f s inside the VM" % (time.monotonic() - STARTED)]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
