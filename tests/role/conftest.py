# -*- coding: utf-8 -*-
"""Fixtures for the role tests: ansible-playbook on this host against test-bed VMs over ssh.

Each VM is its own NFS server and client (QEMU user networking keeps VMs apart): the volumes
are directories of /srv/nfs reached through its NFSv3 and NFSv4.2 mounts.
"""
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from testbed import VM  # noqa: E402
from testbed.fleet import connection_vars, collections_path  # noqa: E402

MiB = 1 << 20
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class PlayResult:
    def __init__(self, completed):
        self.rc = completed.returncode
        self.output = completed.stdout
        self.recap = dict((m.group(1), {"ok": int(m.group(2)), "changed": int(m.group(3)),
                                        "unreachable": int(m.group(4)), "failed": int(m.group(5))})
                          for m in RECAP.finditer(self.output))

    def changed_tasks(self):
        """Names of the tasks (and handlers) that reported a change, without the role's prefix."""
        names, current = [], None
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line[line.index("[") + 1:line.rindex("]")].split(" : ")[-1]
            elif line.startswith("changed:") and current not in names:
                names.append(current)
        return names


class Node:
    """A booted VM with its NFS mounts, and ansible-playbook pointed at it."""

    def __init__(self, vm, workdir):
        self.vm = vm
        self.workdir = workdir
        self.collections = collections_path(workdir)

    def sh(self, command, check=True):
        return self.vm.run(["sh", "-c", command], check=check)

    def play(self, playbook="bpfquota.nfs.rollout", check=False, diff=False, **role_vars):
        inventory = os.path.join(self.workdir, "hosts.yml")
        with open(inventory, "w") as f:
            yaml.safe_dump({"bpfquota_clients": {"hosts": {"node": connection_vars(self.vm)}}}, f)
        extra = os.path.join(self.workdir, "vars.json")
        with open(extra, "w") as f:
            json.dump(role_vars, f)
        argv = ["ansible-playbook", "-i", inventory, "-e", "@" + extra, playbook]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="0")
        completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                   env=env, cwd=self.workdir, check=False, timeout=1800)
        sys.stdout.write(completed.stdout[-6000:])  # shown by pytest when the test fails
        return PlayResult(completed)

    def report(self):
        """{path: row} from the installed command, or {} when it isn't loaded."""
        out = self.sh("bpfquota report --json").stdout
        return dict((row["path"], row) for row in json.loads(out)["volumes"])

    def program_ids(self):
        return json.loads(self.sh("bpfquota status --json").stdout)["programs"]

    def fill(self, path, mib=64):
        """Append up to `mib` MiB to path, stopping at the first refused write; return dd's output."""
        return self.sh("dd if=/dev/zero of=%s bs=256k count=%d oflag=append conv=notrunc 2>&1; true"
                       % (path, mib * 4)).stdout

    def size(self, path):
        return int(self.sh("stat -c %s " + path).stdout)


@contextlib.contextmanager
def booted_node(name, extra_cmdline=""):
    """A fresh VM: NFS mounted, PV directories on the export."""
    workdir = tempfile.mkdtemp(prefix="bpfquota-role-")
    with VM.boot(name, extra_cmdline=extra_cmdline) as vm:
        n = Node(vm, workdir)
        n.sh("testbed-mount-nfs >/dev/null && mkdir -p /srv/nfs/pvs/pv-a /srv/nfs/pvs/pv-b /srv/nfs/pvs/pv-c"
             " && chmod 777 /srv/nfs/pvs/*")
        yield n


@pytest.fixture(scope="module")
def node():
    with booted_node("role-test") as n:
        yield n
