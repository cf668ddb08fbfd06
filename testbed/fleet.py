"""Ansible's view of test-bed VMs: connection variables and a collections path for the checkout."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import ansible_runner

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


class PlayResult:
    """A playbook run as ansible-runner saw it: exit code, output, recap and per-task events."""

    def __init__(self, returncode: int, output: str, events: list[dict], stats: dict | None):
        self.rc = returncode
        self.output = output
        self.events = events
        # {host: {ok, changed, unreachable, failed}} from the playbook_on_stats event
        stats = stats or {}
        hosts = set().union(*(stats.get(key) or {} for key in ("ok", "changed", "dark", "failures")))
        self.recap = {host: {"ok": (stats.get("ok") or {}).get(host, 0),
                             "changed": (stats.get("changed") or {}).get(host, 0),
                             "unreachable": (stats.get("dark") or {}).get(host, 0),
                             "failed": (stats.get("failures") or {}).get(host, 0)} for host in hosts}

    def results(self, outcome: str = "ok") -> list[tuple[str, dict]]:
        """[(task name, module result)] of the tasks and handlers (and their loop items) that ended
        with ``outcome``: "ok" (changed or not) or "failed"."""
        kinds = {"runner_on_%s" % outcome, "runner_item_on_%s" % outcome}
        return [(event["event_data"].get("task", ""), event["event_data"].get("res") or {})
                for event in self.events if event.get("event") in kinds]

    def changed_tasks(self) -> list[str]:
        """Names of the tasks (and handlers) that reported a change, without the role's prefix."""
        names: list[str] = []
        for task, result in self.results("ok"):
            if result.get("changed") and task not in names:
                names.append(task)
        return names

    def diffs(self, task: str) -> list[dict]:
        """The {before, after} diffs the task reported (modules may return one or a list)."""
        found = []
        for name, result in self.results("ok"):
            diff = result.get("diff") if name == task else None
            found += diff if isinstance(diff, list) else [diff] if diff else []
        return found

    def failure_messages(self) -> list[str]:
        """The msg of every failed task, in order."""
        return [str(result.get("msg", "")) for dummy, result in self.results("failed")]


def run_playbook(vm, playbook: str, workdir: str | Path, extra_vars: dict | None = None,
                 check: bool = False, diff: bool = False, group: str = "bpfquota_clients",
                 verbosity: int = 0) -> PlayResult:
    """ansible-playbook PLAYBOOK against ``vm`` as host "node" of ``group``, with ``extra_vars``."""
    return run_ansible_playbook({"node": connection_vars(vm)}, playbook, workdir, extra_vars, check=check,
                                diff=diff, group=group, verbosity=verbosity)


def run_ansible_playbook(hosts: dict, playbook: str, workdir: str | Path, extra_vars: dict | None = None,
                         check: bool = False, diff: bool = False, group: str = "bpfquota_clients",
                         verbosity: int = 0) -> PlayResult:
    """ansible-playbook PLAYBOOK through ansible-runner, against ``hosts`` ({name: inventory
    variables}) of ``group``; the collection is this checkout."""
    workdir = Path(workdir)
    inventory = workdir / "hosts.json"  # read by the yaml inventory plugin (JSON is YAML)
    inventory.write_text(json.dumps({group: {"hosts": hosts}}))
    extra = workdir / "vars.json"
    extra.write_text(json.dumps(extra_vars or {}))
    private = workdir / "runner"  # ansible-runner's artifacts: each run's events and stdout
    private.mkdir(exist_ok=True)
    cmdline = ["-e", "@" + str(extra)] + (["--check"] if check else []) + (["--diff"] if diff else [])
    runner = ansible_runner.run(
        private_data_dir=str(private), project_dir=str(REPO_ROOT), playbook=playbook,
        inventory=str(inventory), cmdline=shlex.join(cmdline), verbosity=verbosity or None, quiet=True,
        timeout=1800, envvars={"ANSIBLE_COLLECTIONS_PATH": collections_path(workdir), "ANSIBLE_NOCOLOR": "1",
                               "ANSIBLE_FORCE_COLOR": "0"})
    with runner.stdout as out:  # the run's stdout artifact, opened anew on each access
        output = out.read()
    return PlayResult(runner.rc, output, list(runner.events), runner.stats)
