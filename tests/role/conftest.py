# -*- coding: utf-8 -*-
"""Fixtures for the role tests: ansible-playbook on this host against test-bed VMs over ssh.

Each VM is its own NFS server and client (QEMU user networking keeps VMs apart): the volumes
are directories of /srv/nfs reached through its NFSv3 and NFSv4.2 mounts.
"""
import contextlib
import json
import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from testbed import VM  # noqa: E402
from testbed.fleet import run_playbook  # noqa: E402

MiB = 1 << 20


class Node:
    """A booted VM with its NFS mounts, and ansible-playbook pointed at it."""

    def __init__(self, vm, workdir):
        self.vm = vm
        self.workdir = workdir

    def sh(self, command, check=True):
        return self.vm.run(["sh", "-c", command], check=check)

    def play(self, playbook="bpfquota.nfs.rollout", check=False, diff=False, **role_vars):
        result = run_playbook(self.vm, playbook, self.workdir, role_vars, check=check, diff=diff)
        sys.stdout.write(result.output[-6000:])  # shown by pytest when the test fails
        return result

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
    """A minimal Debian host: without python3-apt, which the test-bed image has and the role's
    first real run installs (apt can't answer check mode without it)."""
    with booted_node("role-test") as n:
        n.sh("dpkg --remove python3-apt >/dev/null")
        yield n
