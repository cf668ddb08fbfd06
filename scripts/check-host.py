"""Checks, after scripts/setup-host.sh, that every tool the test command and the main job need is
there the way they use it: a command on PATH, the Python tools from the project's venv (never one
the machine happens to have), a module imported from a neutral directory (from the checkout's root,
a directory such as molecule/ imports as a namespace package and hides a missing install).

Exits 1 naming each missing tool, what needs it and the fix; prints nothing when all is there.
"""

import os
import shutil
import subprocess
import sys

# command: what needs it (from Debian's packages, scripts/setup-host.sh)
SYSTEM_COMMANDS = {
    "clang": "building the BPF objects",
    "gcc": "building the VM tests' helper (tests/vm/wpath.c)",
    "qemu-system-x86_64": "the test-bed VMs",
    "qemu-img": "the test-bed VMs' disks",
    "debootstrap": "the test-bed image",
    "mke2fs": "the test-bed image",
    "ssh": "reaching the test-bed VMs",
    "ssh-keygen": "the test-bed VMs' keys",
    "shellcheck": "ansible-test sanity (shell scripts)",
    "git": "ansible-test sanity and the VM workspace (the files git tracks)",
    "promtool": "the metrics and alerting rules tests (tests/unit/test_prometheus.py)",
}
# command: what needs it (from scripts/requirements.txt, in the venv)
VENV_COMMANDS = {
    "ansible-playbook": "the role tests and the main job",
    "ansible-galaxy": "the collection artifact",
    "ansible-test": "the sanity tests",
    "ansible-lint": "the lint",
    "molecule": "the molecule scenarios",
}
# module: what needs it (from scripts/requirements.txt, in the venv)
VENV_MODULES = {
    "pytest": "the unit, VM and role tests",
    "yaml": "the unit tests and the test bed",
    "ansible": "the unit tests of the modules",
    "psutil": "the test bed and the benchmarks",
}
NEUTRAL_DIR = "/"


def missing_commands(commands, venv_bin=None, path=None):
    """[(command, reason)] of ``commands`` not on ``path``, or (with ``venv_bin``) found elsewhere."""
    problems = []
    for command in commands:
        found = shutil.which(command, path=path)
        if found is None:
            problems.append((command, "not on PATH"))
        elif venv_bin is not None and os.path.dirname(found) != venv_bin:
            problems.append((command, "found at %s, not in the venv %s" % (found, venv_bin)))
    return problems


def missing_modules(modules, python=sys.executable, cwd=NEUTRAL_DIR):
    """[(module, reason)] of ``modules`` that ``python`` can't import in ``cwd``."""
    problems = []
    for module in modules:
        result = subprocess.run(
            [python, "-c", "import " + module],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["exit %d" % result.returncode]
            problems.append((module, "import fails: " + lines[-1]))
    return problems


def venv_bin_dir():
    """The bin directory of the venv scripts/venv.sh put first on PATH, or None without one."""
    venv = os.environ.get("BPFQUOTA_VENV")
    return os.path.join(venv, "bin") if venv else None


def main():
    venv_bin = venv_bin_dir()
    if venv_bin is None:
        print("check-host: BPFQUOTA_VENV is not set: source scripts/venv.sh first", file=sys.stderr)
        return 1
    report = []
    for command, reason in missing_commands(SYSTEM_COMMANDS):
        report.append("%s (%s): %s; install the Debian packages of scripts/setup-host.sh"
                      % (command, SYSTEM_COMMANDS[command], reason))
    fix = "run bash scripts/setup-host.sh, which installs scripts/requirements.txt into the venv"
    for command, reason in missing_commands(VENV_COMMANDS, venv_bin=venv_bin):
        report.append("%s (%s): %s; %s" % (command, VENV_COMMANDS[command], reason, fix))
    for module, reason in missing_modules(VENV_MODULES, python=os.path.join(venv_bin, "python3")):
        report.append("Python module %s (%s): %s; %s" % (module, VENV_MODULES[module], reason, fix))
    for line in report:
        print("check-host: missing: " + line, file=sys.stderr)
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
