"""The main job: a real rollout with ansible-playbook to a fleet of local VMs.

Boots the test-bed VMs of playbooks/inventory.testbed (each its own NFS server and client; the PV
directories made on the server, nothing mounted), runs the bpfquota.nfs.rollout playbook with the
volumes the pv_volumes filter makes of the inventory's PersistentVolumes, prints each host's
report, then mounts a PV the way kubelet does for a pod (csi-driver-nfs's path), shows a write
refused past its limit, and prints the reports again. --keep leaves the VMs running.
"""
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.fleet import collections_path  # noqa: E402
from testbed.vm import VM  # noqa: E402

INVENTORY = ROOT / "playbooks" / "inventory.testbed"
HOSTS = ["node-1", "node-2"]
# The NFS server started (testbed-mount-nfs starts it; its node mounts are not wanted here) and the PV
# directories made on it, as the provisioners do.
PREPARE = ("testbed-mount-nfs >/dev/null && testbed-mount-nfs -u"
           " && mkdir -p /srv/nfs/pvs/pv-web /srv/nfs/pvs/pv-db /srv/nfs/pvs/pv-logs /srv/nfs/pvs/pv-scratch")
POD_MOUNT = "/var/lib/kubelet/pods/0b6a5c1e-demo/volumes/kubernetes.io~csi/pv-web/mount"
# What kubelet (csi-driver-nfs's NodePublishVolume) does when a pod using pv-web starts on node-1.
KUBELET_MOUNT = "mkdir -p %s && mount -t nfs -o nfsvers=4.2 127.0.0.1:/pvs/pv-web %s" % (POD_MOUNT, POD_MOUNT)
# Until the agent has placed the new mount and scanned pv-web, growth below it is refused: wait for that.
PLACED = ("timeout 30 sh -c 'until touch %s/.placed 2>/dev/null; do sleep 0.05; done' && rm %s/.placed"
          % (POD_MOUNT, POD_MOUNT))
FULL_WRITE = "dd if=/dev/zero of=%s/fill bs=1M count=20 status=none" % POD_MOUNT


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
        show("node-1: bpfquota report   (no pod runs yet: no PV is mounted)")
        print(vms[0].run(["bpfquota", "report"]).stdout, end="", flush=True)
        show("node-1: a pod using pv-web starts: %s" % KUBELET_MOUNT)
        vms[0].run(["sh", "-c", KUBELET_MOUNT])
        started = time.monotonic()
        vms[0].run(["sh", "-c", PLACED])
        print("enforced %.1f s after the mount (the agent placed it and scanned pv-web)" % (time.monotonic() - started))
        show("node-1: %s   (pv-web's limit is 8Mi)" % FULL_WRITE)
        refused = vms[0].run(["sh", "-c", FULL_WRITE], check=False)
        print(refused.stdout + refused.stderr, end="")
        if refused.rc == 0:
            print("ERROR: the write past the 8Mi limit was not refused", file=sys.stderr)
            return 1
        shown = vms[0].run(["sh", "-c", "du -sh --apparent-size %s" % POD_MOUNT]).stdout
        print("in pv-web now: %s" % shown, end="")
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
