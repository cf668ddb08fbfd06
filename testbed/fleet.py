"""Ansible's view of test-bed VMs: connection variables and a collections path for the checkout."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


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


class PlayResult:
    """ansible-playbook's exit code, output and recap ({host: {ok, changed, unreachable, failed}})."""

    def __init__(self, returncode: int, output: str):
        self.rc = returncode
        self.output = output
        self.recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                                   "unreachable": int(m.group(4)), "failed": int(m.group(5))}
                      for m in RECAP.finditer(output)}

    def changed_tasks(self) -> list[str]:
        """Names of the tasks (and handlers) that reported a change, without the role's prefix."""
        names, current = [], None
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line[line.index("[") + 1:line.rindex("]")].split(" : ")[-1]
            elif line.startswith("changed:") and current not in names:
                names.append(current)
        return names


def run_playbook(vm, playbook: str, workdir: str | Path, extra_vars: dict | None = None,
                 check: bool = False, diff: bool = False, group: str = "bpfquota_clients",
                 verbosity: int = 0) -> PlayResult:
    """ansible-playbook PLAYBOOK against ``vm`` as host "node" of ``group``, with ``extra_vars``."""
    workdir = Path(workdir)
    inventory = workdir / "hosts.json"  # read by the yaml inventory plugin (JSON is YAML)
    inventory.write_text(json.dumps({group: {"hosts": {"node": connection_vars(vm)}}}))
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(extra_vars or {}))
    argv = ["ansible-playbook", "-i", str(inventory), "-e", "@" + str(extra), playbook]
    argv += ["--check"] if check else []
    argv += ["--diff"] if diff else []
    argv += ["-" + "v" * verbosity] if verbosity else []
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(workdir), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_RETRY_FILES_ENABLED="0")
    completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=REPO_ROOT, check=False, timeout=1800)
    return PlayResult(completed.returncode, completed.stdout)
