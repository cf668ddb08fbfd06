"""Run the bpfquota benchmarks: build, boot a test-bed VM, run bench/vm_bench.py in it, print its table.

    python3 bench/run.py [--name VM] [--keep]

The table is also written to build/bench-results.txt. Exits non-zero when anything fails
(build, boot, copy, the benchmark itself); a ratio below its target is a figure, not a failure.
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.image import ImageBuildError, ensure_image  # noqa: E402
from testbed.vm import VM, VMError, log, run_dir_for  # noqa: E402
from testbed.workspace import WorkspaceError, source_files  # noqa: E402

REMOTE_ROOT = "/root/bpfquota"
REMOTE_RESULTS = "/root/bench-results.txt"
RESULTS = ROOT / "build" / "bench-results.txt"
# The import link ansible_collections/bpfquota/nfs isn't tracked by git: included like a build product.
ASSETS = ["build/bpfquota.bpf.o", "build/createunlink", "ansible_collections/bpfquota/nfs"]
BENCH_TIMEOUT = 3600  # seconds; a normal run takes well under half of this


def build_assets() -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build-assets.py")], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    # Static: the VM has no compiler and its libc need not match the host's.
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", "build/createunlink",
                    "bench/createunlink.c"], cwd=ROOT, check=True)


def source_version() -> str:
    """The tree measured: the VM gets the working tree, uncommitted changes included."""
    result = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown (not a git checkout)"


def other_qemu_count(own_run_dir: Path) -> int:
    """Running QEMU processes except the one of our VM (whose command line names its run directory)."""
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []  # None: exited meanwhile, or not ours to read
        if argv and "qemu-system" in argv[0] and not any(str(own_run_dir) in arg for arg in argv):
            count += 1
    return count


class HostNoise:
    """Samples the host's load and the other QEMU VMs (other sessions' test beds) while we run:
    they share the CPUs with our VM, so readers need them to judge the spreads."""

    INTERVAL = 5.0

    def __init__(self, own_run_dir: Path):
        self.own_run_dir = own_run_dir
        self.loads: list[float] = []
        self.others: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> "HostNoise":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        while True:
            self.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
            self.others.append(other_qemu_count(self.own_run_dir))
            if self._stop.wait(self.INTERVAL):
                return

    def summary(self) -> str:
        return (f"host: {os.cpu_count()} CPUs; other QEMU VMs running meanwhile: {min(self.others)}-{max(self.others)}"
                f" (they share the CPUs: noise); 1-min load average: mean {sum(self.loads) / len(self.loads):.1f},"
                f" max {max(self.loads):.1f} ({len(self.loads)} samples, every {self.INTERVAL:.0f} s)")


def run_script_in_vm(name: str, keep: bool, command: str, results: str, prepare=None) -> str:
    """Build the assets, boot VM `name`, copy the repo in (then `prepare(vm)`, if given), run
    `command` in the repo there (progress shows live) and return the file `results` it wrote; the VM
    is powered off afterwards unless `keep`. VMError when the command fails."""
    build_assets()
    vm = VM.boot(name, image=ensure_image())
    try:
        vm.run(f"rm -rf {REMOTE_ROOT} && mkdir -p {REMOTE_ROOT}")
        version = source_version()  # now: the checkout may change while the benchmark runs
        vm.put_files(ROOT, source_files(ROOT, ASSETS), REMOTE_ROOT)
        if prepare is not None:
            prepare(vm)
        rc = vm.stream(f"cd {REMOTE_ROOT} && {command}", timeout=BENCH_TIMEOUT)
        if rc != 0:
            raise VMError(f"{command.split()[1]} failed in the VM with exit code {rc}")
        return vm.run(f"cat {results}").stdout.rstrip("\n") + f"\nsource: {version}\n"
    finally:
        if keep:
            log(f"VM {name!r} left running: {shlex.join(vm.ssh_argv())}")
        else:
            vm.shutdown()


def report_of(table: str, noise: "HostNoise", started: float, results: Path) -> str:
    """The table (ending with the source version run_script_in_vm copied) with the host's noise and the
    run time; also written to `results`."""
    report = "\n".join([table.rstrip("\n"), noise.summary(),
                        f"total runtime: {time.monotonic() - started:.0f} s (build, boot, copy, benchmark, power-off)"]) + "\n"
    results.parent.mkdir(exist_ok=True)
    results.write_text(report)
    return report


def run_in_vm(vm: VM) -> str:
    files = source_files(ROOT, ASSETS)
    vm.run(f"rm -rf {REMOTE_ROOT} {REMOTE_RESULTS} && mkdir -p {REMOTE_ROOT}")
    vm.put_files(ROOT, files, REMOTE_ROOT)
    command = f"cd {REMOTE_ROOT} && python3 bench/vm_bench.py --out {REMOTE_RESULTS}"
    rc = vm.stream(command, timeout=BENCH_TIMEOUT)  # progress shows live on stderr
    if rc == 255:
        raise VMError(f"lost the ssh connection to VM {vm.name!r} during the benchmark")
    if rc != 0:
        raise VMError(f"bench/vm_bench.py failed in the VM with exit code {rc}")
    return vm.run(f"cat {REMOTE_RESULTS}").stdout


def raise_on_sigterm(signum, frame) -> None:
    # An exception, so the `finally` below powers the VM off when a CI job is cancelled.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="bench", help="test-bed VM name (default: bench)")
    parser.add_argument("--keep", action="store_true", help="leave the VM running afterwards")
    args = parser.parse_args()

    started = time.monotonic()
    try:
        own_run_dir = run_dir_for(args.name)
    except VMError as error:
        parser.error(str(error))
    vm = None
    with HostNoise(own_run_dir) as noise:
        try:
            build_assets()
            version = source_version()
            log(f"booting VM {args.name!r}")
            vm = VM.boot(args.name, image=ensure_image())
            table = run_in_vm(vm)
        except (subprocess.CalledProcessError, ImageBuildError, VMError, WorkspaceError, OSError) as error:
            print(f"bench: error: {error}", file=sys.stderr)
            return 1
        finally:
            if vm is not None:
                if args.keep:
                    log(f"VM {vm.name!r} left running: {shlex.join(vm.ssh_argv())}")
                else:
                    vm.shutdown()
    report = "\n".join([table.rstrip("\n"), noise.summary(), f"source: {version}",
                        f"total runtime of bench/run.py: {time.monotonic() - started:.0f} s"
                        " (build, boot, copy, benchmark, power-off)"]) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report)
    print(report, end="")
    log(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
