"""Ansible's view of test-bed VMs: connection variables and a collections path for the checkout."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def connection_vars(vm) -> dict:
    """Inventory variables that reach ``vm`` over its forwarded ssh port, as root."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": vm.ssh_port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(vm.image.ssh_key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
        # One ssh round trip per task instead of three: tasks under TCG are slow enough.
        "ansible_pipelining": True,
    }


def collections_path(workdir: str | Path) -> str:
    """A collections path in which bpfquota.nfs is this checkout (ansible_collections/bpfquota/nfs)."""
    link = Path(workdir) / "ansible_collections" / "bpfquota" / "nfs"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(REPO_ROOT, link)
    return str(workdir)
