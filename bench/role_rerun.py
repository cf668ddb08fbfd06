"""Benchmark: an idempotent re-run of the rollout against a no-op play of the same size.

Boots a test-bed VM, rolls bpfquota out once (timed), then alternates, ROUNDS times, an idempotent
re-run of bpfquota.nfs.rollout (must report changed=0) and a no-op play that runs
ansible.builtin.ping as many times as the re-run made ssh round trips to the host (counted once
with -vvv; a pipelined ping is one round trip). The ratio is what the
role's checks cost beyond Ansible's own per-task price (connection, payload, Python start).
Under TCG only the ratio means anything. Prints a table; --out also writes it as JSON.

    python3 bench/role_rerun.py [--rounds N] [--volumes N] [--out FILE]
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.fleet import run_playbook  # noqa: E402
from testbed.vm import VM  # noqa: E402


def remote_round_trips(output):
    """ssh commands the play ran on the host (-vvv prints one line per connection use)."""
    return output.count("ESTABLISH SSH CONNECTION FOR USER")


def no_op_play(path, runs):
    tasks = "".join("    - name: No-op %d\n      ansible.builtin.ping:\n" % i for i in range(runs))
    Path(path).write_text("---\n- name: No-op play\n  hosts: bpfquota_clients\n  gather_facts: false\n"
                          "  tasks:\n" + tasks)


def timed(vm, playbook, workdir, extra_vars, verbosity=0):
    started = time.monotonic()
    result = run_playbook(vm, playbook, workdir, extra_vars, verbosity=verbosity)
    seconds = time.monotonic() - started
    if result.rc != 0:
        raise SystemExit("%s failed:\n%s" % (playbook, result.output[-4000:]))
    return seconds, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bpfquota-bench-role-")
    volumes = [{"path": "/mnt/nfs4/pvs/pv-%d" % i, "limit": "%dGi" % (i + 1)} for i in range(args.volumes)]
    role_vars = {"bpfquota_volumes": volumes}
    with VM.boot("bench-role") as vm:
        vm.run(["sh", "-c", "testbed-mount-nfs >/dev/null && mkdir -p "
                + " ".join("/srv/nfs/pvs/pv-%d" % i for i in range(args.volumes))])
        first = timed(vm, "bpfquota.nfs.rollout", workdir, role_vars)[0]
        runs = remote_round_trips(timed(vm, "bpfquota.nfs.rollout", workdir, role_vars, verbosity=3)[1].output)
        no_op_play(Path(workdir) / "no-op.yml", runs)
        rerun_times, noop_times = [], []
        for dummy in range(args.rounds):
            seconds, result = timed(vm, "bpfquota.nfs.rollout", workdir, role_vars)
            if result.recap["node"]["changed"] != 0:
                raise SystemExit("the re-run changed something: %s" % result.changed_tasks())
            rerun_times.append(seconds)
            noop_times.append(timed(vm, str(Path(workdir) / "no-op.yml"), workdir, {})[0])
    ratios = [r / n for r, n in zip(rerun_times, noop_times)]
    rows = {"volumes": args.volumes, "ssh_round_trips": runs, "first_run_s": round(first, 1),
            "rerun_s": [round(t, 1) for t in rerun_times], "no_op_s": [round(t, 1) for t in noop_times],
            "ratio_median": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3)}
    print("rollout of %d volumes to one VM (QEMU/TCG), %d rounds" % (args.volumes, args.rounds))
    print("  first run                      %7.1f s" % first)
    print("  idempotent re-run (changed=0)  %7.1f s  (median; %s)" % (statistics.median(rerun_times),
                                                                      ", ".join("%.1f" % t for t in rerun_times)))
    print("  no-op play, %3d ping tasks     %7.1f s  (median; %s)" % (runs, statistics.median(noop_times),
                                                                      ", ".join("%.1f" % t for t in noop_times)))
    print("  re-run / no-op                 %7.3f    (min %.3f, max %.3f; target <= 1.2: %s)"
          % (rows["ratio_median"], rows["ratio_min"], rows["ratio_max"],
             "met" if rows["ratio_median"] <= 1.2 else "MISSED"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
