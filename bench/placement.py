"""How long a new NFS mount of a volume waits to be placed: from `mount` returning to the first
create let through below it (until then growth there is refused), with the agent running.

    python3 bench/placement.py [--name VM] [--keep] [--mounts N]

On the host: builds the assets, boots a test-bed VM, copies the repo in, runs this file there as
root with --in-vm, and prints the table (also written to build/placement-results.txt). Each
sample mounts a volume's directory as kubelet would for a pod (NFSv4.2, its own superblock:
nosharecache), or a subdirectory inside a volume, with 1 volume applied and with 1000, then
unmounts it. A PV's own directory is a volume root the kernel knows by the server's identity: no
placement is needed. A subdirectory's mount root is placed by the agent, which the kernel asks.
Exits non-zero when anything fails; a figure over its target is a figure, not a failure.
"""
import argparse
import errno
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vm_bench  # noqa: E402  (bench/vm_bench.py: helpers run in the VM)

SERVER_DIR = "/srv/nfs/placement"  # the volume directories, made server-side ...
CLIENT_DIR = "/mnt/nfs4/placement"  # ... their paths through the VM's NFSv4.2 mount ...
V4_SOURCE = "127.0.0.1:/placement"  # ... and the export path of that directory over NFSv4
POD_MOUNT = "/var/lib/kubelet/pods/bench/volumes/kubernetes.io~csi/pv/mount"
REMOTE_RESULTS = "/root/placement-results.txt"
RESULTS = ROOT / "build" / "placement-results.txt"
TARGET_SECONDS = 1.0
GIVE_UP = 30.0
VOLUME_COUNTS = (1, 1000)

# ----- in the VM


def seconds_until_placed(directory):
    """From now until a create below `directory` is let through (EDQUOT until it is placed)."""
    started = time.monotonic()
    probe = os.path.join(directory, ".placed")
    while True:
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o644))
            elapsed = time.monotonic() - started
            os.unlink(probe)
            return elapsed
        except OSError as e:
            if e.errno != errno.EDQUOT:
                raise
        if time.monotonic() - started > GIVE_UP:
            raise RuntimeError("%s was not placed in %gs" % (directory, GIVE_UP))
        time.sleep(0.005)


def one_sample(directory):
    os.makedirs(POD_MOUNT, exist_ok=True)
    vm_bench.run(["mount", "-t", "nfs", "-o", "vers=4.2,nosharecache", "%s/%s" % (V4_SOURCE, directory), POD_MOUNT])
    try:
        return seconds_until_placed(POD_MOUNT)
    finally:
        vm_bench.run(["umount", POD_MOUNT])


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(count, mounts, inside):
    """Seconds from each mount to its first create let through: of a volume's directory, or
    (inside) of a new subdirectory of it each time (a mount root the agent has to place)."""
    names = ["v%04d" % index for index in range(count)]
    for name in names:
        os.makedirs(os.path.join(SERVER_DIR, name), exist_ok=True)
    os.listdir(CLIENT_DIR)
    entries = [{"path": os.path.join(CLIENT_DIR, name), "limit": "1Gi"} for name in names]
    vm_bench.bpfquota("apply", vm_bench.write_volumes_file("placement-%d" % count, entries))
    log_path = os.path.join(vm_bench.WORK, "placement-agent.log")
    with open(log_path, "w") as log:
        agent = subprocess.Popen(vm_bench.BPFQUOTA + ["agent", "--interval", "3600"], stderr=log)
    try:
        while "running:" not in open(log_path).read():
            if agent.poll() is not None:
                raise RuntimeError("the agent exited:\n" + open(log_path).read())
            time.sleep(0.1)
        time.sleep(2)  # its first round
        samples = []
        for index in range(mounts):
            directory = names[index % count]
            if inside:
                directory = "%s/sub-%d-%d" % (directory, count, index)
                os.makedirs(os.path.join(SERVER_DIR, directory))
            samples.append(one_sample(directory))
            if index % 20 == 19:
                vm_bench.progress("%d volumes%s: %d/%d mounts" % (count, ", inside" if inside else "", index + 1, mounts))
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    return samples


def in_vm(out, mounts):
    vm_bench.run(["testbed-mount-nfs"])
    os.makedirs(vm_bench.WORK, exist_ok=True)
    vm_bench.bpfquota("unload")
    vm_bench.bpfquota("load", "--object", vm_bench.OBJECT)
    lines = ["bpfquota: from an NFS mount of a volume to its first create let through, agent running "
             "(inside the test-bed VM: QEMU TCG, %d vCPUs on one host thread, kernel %s)"
             % (os.cpu_count(), platform.release()), "",
             "%-58s %6s %8s %8s %8s  %s" % ("what is mounted, volumes applied", "mounts", "p50 s", "p99 s",
                                            "max s", "target p99")]
    for inside in (False, True):
        for count in VOLUME_COUNTS:
            samples = measure(count, mounts, inside)
            p99 = percentile(samples, 0.99)
            what = "%s, %d volume%s" % ("a subdirectory of a PV (placed by the agent)" if inside else "a PV's directory",
                                        count, "" if count == 1 else "s")
            lines.append("%-58s %6d %8.3f %8.3f %8.3f  <= %.1f s %s" % (
                what, len(samples), percentile(samples, 0.5), p99, max(samples), TARGET_SECONDS,
                "ok" if p99 <= TARGET_SECONDS else "MISS"))
    vm_bench.bpfquota("apply", vm_bench.write_volumes_file("placement-none", []))
    vm_bench.bpfquota("unload")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


# ----- on the host


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="bench-placement", help="test-bed VM name (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the VM running afterwards")
    parser.add_argument("--mounts", type=int, default=100, help="mounts per row (default: %(default)s)")
    parser.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_vm:
        in_vm(args.out, args.mounts)
        return 0
    import run as bench_run  # bench/run.py: building, the VM, host noise (on the host only: it needs psutil)
    from testbed.vm import run_dir_for
    signal.signal(signal.SIGTERM, bench_run.raise_on_sigterm)
    started = time.monotonic()
    with bench_run.HostNoise(run_dir_for(args.name)) as noise:
        table = bench_run.run_script_in_vm(
            args.name, args.keep, "python3 bench/placement.py --in-vm --mounts %d --out %s" % (args.mounts, REMOTE_RESULTS),
            REMOTE_RESULTS)
    print(bench_run.report_of(table, noise, started, RESULTS), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
