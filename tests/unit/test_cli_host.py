# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The `bpfquota` CLI on a host without enforcement (its kernel refuses BPF LSM programs).

bin/bpfquota runs as a subprocess for what a user sees there: exit codes, messages, no
tracebacks, nothing left pinned under /sys/fs/bpf/bpfquota. apply, report and reconcile also run
in-process (cli.main) against real BPF maps pinned in a private bpffs directory (created from the
real object without its LSM programs, see plugins/module_utils/quota_testlib.py), which covers
them end to end up to the kernel: plan, apply, first scans, the report.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import cli, digest, enforcement, layout, libbpf, loader, report
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import volume_key
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
BPFQUOTA = os.path.join(REPO_ROOT, "bin", "bpfquota")
sys.path.insert(0, os.path.join(HERE, "plugins", "module_utils"))

from quota_testlib import built_object  # noqa: E402

NOT_LOADED = "bpfquota is not loaded (no maps pinned under %s): run 'bpfquota load' first" % layout.PIN_DIR


@pytest.fixture(autouse=True)
def nothing_pinned():
    """These tests expect no enforcer on the host, and must not leave one (or a part of one)."""
    if os.geteuid() != 0:
        pytest.skip("the CLI is run as root")
    if os.path.exists(layout.PIN_ROOT):
        pytest.skip("%s exists: an enforcer may be loaded on this host" % layout.PIN_ROOT)
    yield
    assert not os.path.exists(layout.PIN_ROOT)


def bpfquota(*args):
    proc = subprocess.run([sys.executable, BPFQUOTA] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def refused_lsm_programs(tmp_path_factory):
    """The object's LSM programs, when this host's kernel refuses them (else skip)."""
    object_path = built_object(tmp_path_factory)
    try:
        loader.trial_load(object_path)
    except libbpf.LibbpfError as e:
        if e.errno != errno.EPERM:
            raise
    else:
        pytest.skip("this host's kernel accepts BPF LSM programs: these tests are for hosts that refuse them")
    with libbpf.BpfObject.open(object_path) as obj:
        programs = obj.program_names()
    assert programs and all(name.startswith("bq_") for name in programs)
    return object_path, programs


def volumes_file(tmp_path, text, name="volumes.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- bin/bpfquota, no enforcer ----------------------------------------------------------------

def test_help_lists_the_exit_codes():
    proc = bpfquota("--help")
    assert proc.returncode == 0
    for line in ("0  success", "1  the operation failed", "2  bad input (arguments or volumes file)",
                 "3  this host can't enforce", "4  the enforcer is not loaded: run 'bpfquota load'",
                 "5  top only: BCC (python3-bpfcc) or the running kernel's headers are missing"):
        assert line in proc.stdout
    for command in ("check", "build", "load", "unload", "status", "apply", "report", "metrics", "reconcile", "agent", "top"):
        assert command in proc.stdout


def test_a_fresh_checkout_runs_without_set_up(tmp_path):
    # A clone has no ansible_collections/ link (scripts/setup-host.sh makes it): the command must
    # import the checkout as the collection by itself, with nothing installed and from anywhere.
    checkout = tmp_path / "clone"
    checkout.mkdir()
    for name in ("bin", "plugins", "galaxy.yml"):
        source = os.path.join(REPO_ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, str(checkout / name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, str(checkout / name))
    env = dict((k, v) for k, v in os.environ.items() if k != "PYTHONPATH")
    proc = subprocess.run([sys.executable, "-S", str(checkout / "bin" / "bpfquota"), "--help"], cwd="/", env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0 and "exit codes" in proc.stdout.lower(), proc.stderr


def test_apply_reports_every_problem_of_a_bad_volumes_file(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    root = str(tmp_path)
    path = volumes_file(tmp_path, """\
volumes:
  - path: data/pv-a
    limit: 10Gi
  - path: /nonexistent-bpfquota-test/pv
    limit: lots
  - path: {root}/file
    limit: 1G
    mode: strict
  - path: {root}/dir
    limit: 1Gi
    inode: 5
  - path: {root}/dir/
    limit: 2Gi
""".format(root=root))

    proc = bpfquota("apply", path)

    assert proc.returncode == 2
    assert proc.stdout == ""
    expected = [
        "bpfquota: volumes[0] (data/pv-a): path must be absolute",
        "volumes[1] (/nonexistent-bpfquota-test/pv): path does not exist",
        "volumes[1] (/nonexistent-bpfquota-test/pv): limit: invalid size 'lots'",
        "volumes[2] (%s/file): path is not a directory (it is a regular file)" % root,
        "volumes[2] (%s/file): unknown mode 'strict'" % root,
        "volumes[3] (%s/dir): unknown key 'inode' (did you mean 'inodes'?)" % root,
        "volumes[4] (%s/dir/): path is not normalized: write it as %s/dir" % (root, root),
        "volumes[4] (%s/dir/): duplicate path, already listed as volumes[3]" % root,
    ]
    lines = proc.stderr.splitlines()
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected):
        assert line.startswith(start)
    assert NOT_LOADED not in proc.stderr  # validation comes first: the maps were never opened


def test_apply_of_an_unreadable_file_is_bad_input(tmp_path):
    proc = bpfquota("apply", str(tmp_path / "missing.yml"))
    assert proc.returncode == 2
    assert "missing.yml: file does not exist" in proc.stderr


@pytest.mark.parametrize("extra", [[], ["--check"]])
def test_apply_when_not_loaded(tmp_path, extra):
    (tmp_path / "pv").mkdir()
    path = volumes_file(tmp_path, "volumes:\n  - path: %s\n    limit: 1Gi\n" % (tmp_path / "pv"))
    proc = bpfquota("apply", path, *extra)
    assert proc.returncode == 4
    assert proc.stderr.strip() == "bpfquota: " + NOT_LOADED
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["report"], ["report", "--json"], ["reconcile"], ["reconcile", "/srv/x"]])
def test_commands_that_need_the_maps_when_not_loaded(args):
    proc = bpfquota(*args)
    assert proc.returncode == 4
    assert proc.stderr.strip() == "bpfquota: " + NOT_LOADED


def test_top_without_bcc_names_the_packages_to_install(tmp_path):
    # A bcc that fails to import, whether or not this host has the real one.
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text("raise ImportError('No module named bcc')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, BPFQUOTA, "top", "--once"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, check=False)
    assert (proc.returncode, proc.stdout) == (cli.EXIT_MISSING_TOOL, "")
    assert proc.stderr.startswith("bpfquota: bpfquota top compiles its tracing program with BCC"), proc.stderr
    assert "apt-get install python3-bpfcc" in proc.stderr and "Traceback" not in proc.stderr
    headers = "linux-headers-" + os.uname()[2]
    assert (headers in proc.stderr) == (not os.path.isdir("/lib/modules/%s/build" % os.uname()[2]))
    assert len(proc.stderr.splitlines()) == 1


def test_status_when_not_loaded():
    proc = bpfquota("status")
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "not loaded\n", "")
    proc = bpfquota("status", "--json")
    assert proc.returncode == 4
    assert json.loads(proc.stdout) == {"loaded": False, "sha256": None, "programs": {}, "pin_dir": layout.PIN_DIR}


@pytest.mark.parametrize("with_object", [True, False])
def test_check_proves_readiness_by_attaching_an_lsm_program(refused_lsm_programs, tmp_path, with_object):
    # This host lists bpf among its active LSMs but refuses BPF LSM programs: check must say so with
    # or without an object at hand (it used to say "ready" whenever it had no object to try).
    object_path = refused_lsm_programs[0] if with_object else str(tmp_path / "no-object.bpf.o")
    proc = bpfquota("check", "--object", object_path)
    assert proc.returncode == 3
    assert "BPF LSM NOT ready" in proc.stdout.splitlines()[0]
    assert "the kernel refused the LSM program bq_probe:" in proc.stdout
    assert "\n    fix: allow BPF LSM programs on this host" in proc.stdout

    proc = bpfquota("check", "--json", "--object", object_path)
    assert proc.returncode == 3
    facts = json.loads(proc.stdout)
    assert (facts["ready"], facts["lsm_probe"], facts["trial_load"]) == (False, False, None)
    assert [reason["code"] for reason in facts["reasons"] if "bq_probe" in reason["text"]] == ["lsm_load_refused"]
    assert all(sorted(reason) == ["code", "fix", "text"] for reason in facts["reasons"])


def test_check_shows_a_reason_as_its_text_then_its_fix():
    reason = {"code": "lsm_probe_failed", "fix": "see the log",
              "text": "loading a BPF LSM probe program failed: Invalid argument\nlibbpf log (last lines):\n0: r0 = 0"}
    assert cli.describe_reason(reason) == (
        "  - loading a BPF LSM probe program failed: Invalid argument\n"
        "    libbpf log (last lines):\n"
        "    0: r0 = 0\n"
        "    fix: see the log")


def test_load_on_a_host_that_refuses_lsm_programs(refused_lsm_programs):
    object_path, programs = refused_lsm_programs
    proc = bpfquota("load", "--object", object_path)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.startswith("bpfquota: this host can't enforce quotas:\n  - ")
    assert "the kernel refused the LSM program bq_probe:" in proc.stderr and "Operation not permitted" in proc.stderr
    assert not os.path.exists(layout.PIN_ROOT)


def test_load_of_a_missing_object(tmp_path):
    missing = str(tmp_path / "nothing.bpf.o")
    proc = bpfquota("load", "--object", missing)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("bpfquota: BPF object %s not found: build it with 'bpfquota build' "
                                   "or pass --object" % missing)


def test_build_of_an_up_to_date_object(bpfquota_object):
    proc = bpfquota("build", "--out", bpfquota_object)
    assert proc.returncode == 0
    assert proc.stdout == "up to date %s (sha256 %s)\n" % (bpfquota_object, digest.file_sha256(bpfquota_object))


def test_metrics_when_not_loaded_say_so():
    proc = bpfquota("metrics")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "\nbpfquota_enforcer_loaded 0\n" in proc.stdout and "bpfquota_volume_" not in proc.stdout


def test_metrics_written_into_a_missing_directory_is_bad_input(tmp_path):
    proc = bpfquota("metrics", "--write", str(tmp_path / "node-exporter"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("bpfquota: metrics directory %s does not exist: install node_exporter"
                                  % (tmp_path / "node-exporter"))
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize("args, error", [
    (["--metrics-interval", "-5"], "argument --metrics-interval: '-5' is not a number of seconds above 0"),
    (["--metrics-interval", "0"], "argument --metrics-interval: '0' is not a number of seconds above 0"),
    (["--metrics-interval", "soon"], "argument --metrics-interval: 'soon' is not a number of seconds above 0"),
    (["--interval", "-1"], "argument --interval: '-1' is not a number of seconds above 0"),
    (["--budget", "nan"], "argument --budget: 'nan' is not a number of seconds above 0"),
    (["--scan-timeout", "inf"], "argument --scan-timeout: 'inf' is not a number of seconds above 0"),
    (["--metrics-dir", "node-exporter"],
     "argument --metrics-dir: 'node-exporter' is not an absolute path (\"\" turns the metrics off)"),
])
def test_agent_settings_that_make_no_sense_are_refused_first(args, error):
    proc = bpfquota("agent", "--once", *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == "bpfquota agent: error: " + error


def test_agent_when_not_loaded():
    proc = subprocess.run([sys.executable, BPFQUOTA, "agent", "--once"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 4
    assert proc.stderr.strip() == "bpfquota: " + NOT_LOADED


# --- cli.main in-process, on real maps in a private pin directory ---------------------------------

@pytest.fixture
def on_test_maps(real_maps, monkeypatch, tmp_path):
    """cli commands open the test maps (and lock a private lock file); returns the pin dir."""
    pin_dir = real_maps.pin_dir
    monkeypatch.setattr(enforcement, "open_maps", lambda: QuotaMaps(pin_dir))
    monkeypatch.setattr(enforcement, "LOCK_PATH", str(tmp_path / "bpfquota.lock"))
    return real_maps


def make_volume(tmp_path, name, files):
    root = tmp_path / name
    root.mkdir()
    for file_name, size in files.items():
        (root / file_name).write_bytes(b"z" * size)
    return str(root)


def snapshot(maps):
    ids = sorted(maps.paths())
    return (maps.config(), maps.keys(), maps.devs(), maps.paths(),
            [maps.vol_cfg(i) for i in ids], [maps.vol_stats(i) for i in ids])


class StampOnly:
    """Maps that only let the sync stamp be read."""

    def __init__(self, stamp="bpfquota-sync-v1:0 0"):
        self.stamp = stamp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def sync_stamp(self):
        return self.stamp


def test_apply_with_a_bad_file_never_writes_nor_locks(tmp_path, monkeypatch, capsys):
    def fail(*args):
        raise AssertionError("the writers' lock was taken")

    monkeypatch.setattr(enforcement, "open_maps", StampOnly)
    monkeypatch.setattr(enforcement, "exclusive", fail)
    path = volumes_file(tmp_path, "volumes:\n  - path: relative\n    limit: 1Gi\n  - limit: x\n")
    assert cli.main(["apply", path]) == 2
    err = capsys.readouterr().err
    assert "volumes[0] (relative): path must be absolute" in err
    assert "volumes[1]: missing path" in err and "volumes[1]: limit: invalid size 'x'" in err


def test_apply_report_and_reconcile_end_to_end(on_test_maps, tmp_path, capsys):
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"one": 1000, "two": 24})
    b = make_volume(tmp_path, "pv-b", {"big": 300000})
    path = volumes_file(tmp_path, "mode: audit\nvolumes:\n"
                        "  - {path: %s, limit: 1Gi, inodes: 10, mode: enforce}\n"
                        "  - {path: %s, limit: 2Mi}\n" % (a, b))

    assert cli.main(["apply", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "add     %s limit %s inodes 10 mode enforce" % (a, format_size(1 << 30)),
        "add     %s limit %s mode audit" % (b, format_size(2 << 20)),
        "2 added, 0 updated, 0 removed",
    ]
    assert maps.paths() == {1: a, 2: b}
    assert maps.keys()[volume_key(a)] == 1 and maps.keys()[volume_key(b)] == 2
    assert maps.vol_cfg(1).mode == layout.MODES["enforce"] and maps.vol_cfg(2).mode == layout.MODES["audit"]
    # the first scan set each new volume's usage from its tree
    assert (maps.vol_cfg(1).base_bytes, maps.vol_cfg(1).base_files) == (1024, 2)
    assert (maps.vol_cfg(2).base_bytes, maps.vol_cfg(2).base_files) == (300000, 1)

    assert cli.main(["report", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["volumes"]
    assert [(r["path"], r["used_bytes"], r["files"], r["limit_bytes"], r["limit_files"], r["mode"])
            for r in rows] == [(a, 1024, 2, 1 << 30, 10, "enforce"), (b, 300000, 1, 2 << 20, 0, "audit")]

    # Kernel accounting since: b grew by 1000 bytes on disk and in the counters; reconcile agrees.
    with open(os.path.join(b, "big"), "ab") as f:
        f.write(b"+" * 1000)
    maps.kernel_write_stats(2, maps.vol_stats(2)._replace(delta_bytes=(1000, 0)))
    assert cli.main(["reconcile", b]) == 0
    out = capsys.readouterr().out
    assert out.startswith("%s: %s in 1 files (" % (b, format_size(301000)))
    cfg, stats = maps.vol_cfg(2), maps.vol_stats(2)
    assert cfg.base_bytes + sum(stats.delta_bytes) == 301000

    assert cli.main(["apply", path]) == 0  # nothing to do
    assert capsys.readouterr().out.splitlines() == ["0 added, 0 updated, 0 removed"]


def test_metrics_of_applied_volumes_printed_and_written(on_test_maps, tmp_path, capsys, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import textfile
    monkeypatch.setattr(textfile, "pinned_maps", lambda: QuotaMaps(on_test_maps.pin_dir))
    a = make_volume(tmp_path, "pv-a", {"one": 1000})
    assert cli.main(["apply", volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Ki, inodes: 5}\n" % a)]) == 0
    capsys.readouterr()
    assert cli.main(["metrics"]) == 0
    out, err = capsys.readouterr()
    volume = 'volume="%s"' % a
    for line in ("bpfquota_volume_used_bytes{%s} 1000" % volume, "bpfquota_volume_limit_bytes{%s} 1024" % volume,
                 "bpfquota_volume_available_bytes{%s} 24" % volume, "bpfquota_volume_files{%s} 1" % volume,
                 "bpfquota_volume_files_limit{%s} 5" % volume, 'bpfquota_volume_state{%s,state="enforcing"} 1' % volume):
        assert "\n%s\n" % line in out
    ages = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines()
            if line.startswith("bpfquota_volume_last_scan_age_seconds{%s}" % volume)]
    assert len(ages) == 1 and 0 <= ages[0] < 60  # apply's first scan, just now
    assert err == ""

    (tmp_path / "node-exporter").mkdir()
    assert cli.main(["metrics", "--write", str(tmp_path / "node-exporter")]) == 0
    assert capsys.readouterr().out == "wrote %s\n" % (tmp_path / "node-exporter" / "bpfquota.prom")
    written = (tmp_path / "node-exporter" / "bpfquota.prom").read_text()
    assert written.split("bpfquota_volume_last_scan_age")[0] == out.split("bpfquota_volume_last_scan_age")[0]


def test_apply_check_changes_nothing(on_test_maps, tmp_path, capsys):
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    b = make_volume(tmp_path, "pv-b", {})
    c = make_volume(tmp_path, "pv-c", {})
    first = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (a, b))
    assert cli.main(["apply", first]) == 0
    capsys.readouterr()
    before = snapshot(maps)

    second = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 3Gi, inodes: 7, mode: audit}\n"
                          "  - {path: %s, limit: 1Gi}\n" % (a, c), name="second.yml")
    assert cli.main(["apply", "--check", second]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "would add     %s limit 1G mode enforce" % c,
        "would update  %s limit 1G -> 3G, inodes - -> 7, mode enforce -> audit" % a,
        "would remove  %s" % b,
        "1 added, 1 updated, 1 removed (dry run)",
    ]
    assert snapshot(maps) == before

    assert cli.main(["apply", second]) == 0
    capsys.readouterr()
    assert maps.paths() == {1: a, 2: c}  # c took b's slot
    assert maps.vol_cfg(1).base_bytes == 10  # a's usage survived its update
    assert cli.main(["apply", volumes_file(tmp_path, "volumes: []\n", name="none.yml")]) == 0
    assert capsys.readouterr().out.splitlines() == ["remove  %s" % a, "remove  %s" % c,
                                                    "0 added, 0 updated, 2 removed"]
    assert (maps.paths(), maps.keys(), maps.devs()) == ({}, {}, {})


def test_apply_warns_when_a_first_scan_fails(on_test_maps, tmp_path, capsys):
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    path = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n" % a)
    assert cli.main(["apply", "--scan-timeout", "0", path]) == 0
    out, err = capsys.readouterr()
    assert err == ("warning: %s: the scan took longer than its 0s budget; it refuses growth until a scan succeeds "
                   "(the agent retries)\n" % a)
    assert out.splitlines()[-1] == "1 added, 0 updated, 0 removed"
    assert maps.paths() == {1: a} and maps.vol_cfg(1).base_bytes == 0 and maps.vol_cfg(1).scanning == 0
    assert maps.vol_cfg(1).flags == layout.USAGE_UNKNOWN
    assert cli.main(["report"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("enforce  unknown  usage unknown")
    assert cli.main(["reconcile"]) == 0
    assert maps.vol_cfg(1).flags == 0 and maps.vol_cfg(1).base_bytes == 10
    capsys.readouterr()
    assert cli.main(["report"]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("enforce  scanned  enforcing")


def test_usage_the_agent_saved_is_restored_when_the_volume_is_added_again(on_test_maps, tmp_path, capsys,
                                                                          private_saved_usage):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import agent
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"f": 10, "g": 5})
    b = make_volume(tmp_path, "pv-b", {"h": 7})
    both = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (a, b))
    assert cli.main(["apply", both]) == 0
    agent.save_usage(maps)
    # as after a reboot: the maps are empty, and the trees changed meanwhile (another host wrote)
    assert cli.main(["apply", volumes_file(tmp_path, "volumes: []\n", name="none.yml")]) == 0
    make_volume(tmp_path, "pv-a/more", {"i": 100})
    os.rename(b, b + "-old")
    make_volume(tmp_path, "pv-b", {"j": 1})  # made again: another directory under the same path
    capsys.readouterr()
    assert cli.main(["apply", both]) == 0
    assert capsys.readouterr().err == ""
    rows = dict((row["path"], row) for row in report.report_rows(maps))
    assert (rows[a]["used_bytes"], rows[a]["files"], rows[a]["usage"]) == (15, 2, "restored")  # not scanned
    assert (rows[b]["used_bytes"], rows[b]["files"], rows[b]["usage"]) == (1, 1, "scanned")
    assert cli.main(["reconcile", a]) == 0
    assert [(row["used_bytes"], row["usage"]) for row in report.report_rows(maps) if row["path"] == a] == [(115, "scanned")]


def test_a_damaged_saved_usage_file_is_named_and_the_volumes_are_scanned(on_test_maps, tmp_path, capsys,
                                                                         private_saved_usage):
    os.makedirs(os.path.dirname(private_saved_usage))
    with open(private_saved_usage, "w") as f:
        f.write("{")
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    assert cli.main(["apply", volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n" % a)]) == 0
    assert capsys.readouterr().err.startswith("warning: saved usage not restored: %s: not a saved usage file ("
                                              % private_saved_usage)
    assert on_test_maps.vol_cfg(1).base_bytes == 10 and on_test_maps.vol_cfg(1).flags == 0


def test_apply_leaves_the_volumes_it_had_no_time_to_scan_unknown(on_test_maps, tmp_path, capsys):
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    b = make_volume(tmp_path, "pv-b", {"g": 20})
    path = volumes_file(tmp_path, "unknown_usage: allow\nvolumes:\n  - {path: %s, limit: 1Gi, unknown_usage: refuse}\n"
                        "  - {path: %s, limit: 1Gi}\n" % (a, b))
    assert cli.main(["apply", "--scan-budget", "0", path]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "warning: %s: not scanned: the 0s budget for scans ran out; it refuses growth until a scan succeeds "
        "(the agent retries)" % a,
        "warning: %s: not scanned: the 0s budget for scans ran out; its usage counts from zero (unknown_usage: allow) "
        "until a scan succeeds (the agent retries)" % b]
    assert out.splitlines()[-1] == "2 added, 0 updated, 0 removed"
    assert [(maps.vol_cfg(i).base_bytes, maps.vol_cfg(i).epoch, maps.vol_cfg(i).scanning, maps.vol_cfg(i).flags)
            for i in (1, 2)] == [(0, 0, 0, layout.USAGE_UNKNOWN), (0, 0, 0, layout.USAGE_UNKNOWN | layout.ALLOW_UNKNOWN)]


def test_apply_sums_up_the_scan_warnings_past_ten(on_test_maps, tmp_path, capsys):
    names = ["pv-%02d" % index for index in range(13)]
    paths = [make_volume(tmp_path, name, {}) for name in names]
    listed = "".join("  - {path: %s, limit: 1Gi}\n" % path for path in paths)
    assert cli.main(["apply", "--scan-budget", "0", volumes_file(tmp_path, "volumes:\n" + listed)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[:10] == ["warning: %s: not scanned: the 0s budget for scans ran out; it refuses growth until a scan "
                        "succeeds (the agent retries)" % path for path in paths[:10]]
    assert err[10:] == ["warning: 3 more new volumes were not scanned, %s the last (not scanned: the 0s budget for "
                        "scans ran out); they refuse growth (0 with unknown_usage: allow count from zero) until a scan "
                        "succeeds (the agent retries)" % paths[-1]]


def test_apply_refuses_two_volumes_that_are_one_directory(on_test_maps, tmp_path, capsys, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    a = make_volume(tmp_path, "pv-a", {})
    b = make_volume(tmp_path, "pv-b", {})
    # b is also reachable as a (a bind mount would do this): plan() must refuse, before any write
    monkeypatch.setattr(identity, "identities", lambda paths, current_groups=None, stat=None: identity.Identities(
        dict((p, {volume_key(a)}) for p in paths), {}, {}, [], {}))
    before = snapshot(on_test_maps)
    path = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (a, b))
    assert cli.main(["apply", path]) == 2
    err = capsys.readouterr().err
    assert "volumes %s and %s are the same directory" % (b, a) in err or \
        "volumes %s and %s are the same directory" % (a, b) in err
    assert snapshot(on_test_maps) == before


def test_a_re_apply_on_the_same_paths_and_mounts_reuses_the_routes(on_test_maps, tmp_path, capsys, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    b = make_volume(tmp_path, "pv-b", {})
    first = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (a, b))
    assert cli.main(["apply", first]) == 0
    capsys.readouterr()
    stamp = maps.sync_stamp()
    assert stamp and 0 not in maps.paths()  # the stamp's slot is no volume
    routes = maps.keys()

    def no_examination(*args, **kwargs):
        raise AssertionError("the routes were resolved again")
    monkeypatch.setattr(identity, "identities", no_examination)
    changed = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 2Gi}\n  - {path: %s, limit: 1Gi}\n" % (b, a),
                           name="changed.yml")
    assert cli.main(["apply", changed]) == 0  # the same paths (in another order), one limit changed
    assert capsys.readouterr().out.splitlines()[-1] == "0 added, 1 updated, 0 removed"
    assert maps.sync_stamp().split()[0] == stamp.split()[0] and maps.keys() == routes
    assert maps.vol_cfg(2).limit_bytes == 2 << 30
    stamp = maps.sync_stamp()

    os.rmdir(b)  # not examined: the sync's inputs are the paths and the mount table

    def no_lock():
        raise AssertionError("an unchanged apply took the writers' lock")
    with monkeypatch.context() as patch:
        patch.setattr(enforcement, "exclusive", no_lock)
        assert cli.main(["apply", changed]) == 0  # nothing differs from the last apply: nothing to do
    assert capsys.readouterr().out.splitlines() == ["0 added, 0 updated, 0 removed"]
    monkeypatch.undo()
    monkeypatch.setattr(enforcement, "open_maps", lambda: QuotaMaps(maps.pin_dir))
    monkeypatch.setattr(enforcement, "LOCK_PATH", str(tmp_path / "bpfquota.lock"))
    assert cli.main(["apply", "--full", changed]) == 2  # --full examines every path
    assert "volumes[0] (%s): path does not exist" % b in capsys.readouterr().err
    assert maps.sync_stamp() == stamp


def test_a_new_mount_table_or_path_set_resolves_every_route(on_test_maps, tmp_path, capsys, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {})
    b = make_volume(tmp_path, "pv-b", {})
    one = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n" % a)
    assert cli.main(["apply", one]) == 0
    stamp = maps.sync_stamp()
    resolved = []
    real_identities = identity.identities
    monkeypatch.setattr(identity, "identities", lambda paths, *args: resolved.append(sorted(paths)) or
                        real_identities(paths, *args))
    text = enforcement.read_mountinfo_text()
    monkeypatch.setattr(enforcement, "read_mountinfo_text", lambda: text + "999 1 0:99 / /mnt/new rw - tmpfs x rw\n")
    assert cli.main(["apply", one]) == 0  # a mount came: every route again, and a new stamp
    assert resolved == [[a]] and maps.sync_stamp() not in (None, stamp)
    two = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (a, b),
                       name="two.yml")
    assert cli.main(["apply", "--check", two]) == 0
    assert cli.main(["apply", two]) == 0  # another path set
    assert resolved == [[a], [a, b], [a, b]]
    capsys.readouterr()


def test_any_write_of_routes_or_paths_drops_the_sync_stamp(real_maps):
    maps = real_maps
    maps.set_sync_stamp("s1")
    maps.set_keys({})
    maps.set_vol_cfgs({1: maps.vol_cfg(1)})  # limits don't touch routes
    assert maps.sync_stamp() == "s1" and maps.paths() == {}
    for write in (lambda: maps.set_keys({(7, 8): 1}), lambda: maps.delete_keys([(7, 8)]),
                  lambda: maps.set_paths({1: "/x"}), lambda: maps.delete_paths([1]),
                  lambda: maps.set_devs({7: 1}), lambda: maps.set_devs({7: 0})):
        maps.set_sync_stamp("s2")
        write()
        assert maps.sync_stamp() is None


def test_reconcile_of_a_path_that_is_no_volume_is_bad_input(on_test_maps, tmp_path, capsys):
    a = make_volume(tmp_path, "pv-a", {"f": 10})
    assert cli.main(["apply", volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n" % a)]) == 0
    capsys.readouterr()
    code = cli.main(["reconcile", a + "/"])
    err = capsys.readouterr().err
    assert code == 2
    assert a + "/" in err


def test_apply_skip_missing_leaves_out_a_deleted_directory_and_applies_the_others(on_test_maps, tmp_path, capsys):
    maps = on_test_maps
    a = make_volume(tmp_path, "pv-a", {})
    gone = str(tmp_path / "pv-gone")
    path = volumes_file(tmp_path, "volumes:\n  - {path: %s, limit: 1Gi}\n  - {path: %s, limit: 1Gi}\n" % (gone, a))
    assert cli.main(["apply", path]) == 2  # without it: bad input, nothing applied
    assert "volumes[0] (%s): path does not exist" % gone in capsys.readouterr().err and maps.paths() == {}
    assert cli.main(["apply", "--skip-missing", path]) == 0
    out, err = capsys.readouterr()
    assert err == ("warning: volumes[0] (%s): path does not exist: left out (remove it from the volumes, or create "
                   "the directory and apply again)\n" % gone)
    assert out.splitlines()[-1] == "1 added, 0 updated, 0 removed" and list(maps.paths().values()) == [a]
