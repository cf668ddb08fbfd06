"""The main job: a real rollout with ansible-playbook to a fleet of local VMs.

Boots the test-bed VMs of playbooks/inventory.testbed (each its own NFS server and client), mounts
the share and creates the PV directories, runs the bpfquota.nfs.rollout playbook, shows a write
refused past a limit, and prints each host's report. --keep leaves the VMs running.
"""
import concurrent.futures
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.fleet import collections_path  # noqa: E402
from testbed.vm import VM  # noqa: E402

INVENTORY = ROOT / "playbooks" / "inventory.testbed"
HOSTS = ["node-1", "node-2"]
PREPARE = "testbed-mount-nfs >/dev/null && mkdir -p /srv/nfs/pvs/pv-web /srv/nfs/pvs/pv-db /srv/nfs/pvs/pv-logs"
FULL_WRITE = "dd if=/dev/zero of=/mnt/nfs4/pvs/pv-web/fill bs=1M count=20 status=none"


def boot(name):
    vm = VM.boot(name)
    vm.run(["sh", "-c", PREPARE])
    return vm


def show(title):
    print("\n==> %s" % title, flush=True)


def main():
    keep = "--keep" in sys.argv[1:]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(tempfile.mkdtemp(prefix="bpfquota-demo-")),
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="0")
    show("booting the fleet: %s" % ", ".join(HOSTS))
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        vms = list(pool.map(boot, HOSTS))
    try:
        show("ansible-playbook -i playbooks/inventory.testbed bpfquota.nfs.rollout")
        rc = subprocess.run(["ansible-playbook", "-i", str(INVENTORY), "bpfquota.nfs.rollout"],
                            env=env, cwd=ROOT, check=False).returncode
        if rc != 0:
            print("the rollout failed (ansible-playbook exit code %d)" % rc, file=sys.stderr)
            return rc
        show("node-1: %s   (pv-web's limit is 8Mi)" % FULL_WRITE)
        refused = vms[0].run(["sh", "-c", FULL_WRITE], check=False)
        print(refused.stdout + refused.stderr, end="")
        if refused.rc == 0:
            print("ERROR: the write past the 8Mi limit was not refused", file=sys.stderr)
            return 1
        for vm in vms:
            show("%s: bpfquota report" % vm.name)
            print(vm.run(["bpfquota", "report"]).stdout, end="", flush=True)
        return 0
    finally:
        if not keep:
            for vm in vms:
                vm.shutdown()


if __name__ == "__main__":
    sys.exit(main())
