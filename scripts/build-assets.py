"""Build what the VM tests need into build/: the BPF object, a second object for upgrade
tests, and the static wpath helper (the VM has no compiler). Prints them, and the checkout's
ansible_collections/bpfquota/nfs link (git doesn't track it, so the VM copy must include it)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = os.path.join("ansible_collections", "bpfquota", "nfs")
if not os.path.lexists(os.path.join(ROOT, LINK)):  # a fresh clone (scripts/setup-host.sh also makes it)
    os.makedirs(os.path.join(ROOT, os.path.dirname(LINK)), exist_ok=True)
    os.symlink(os.path.join("..", ".."), os.path.join(ROOT, LINK))
sys.path.insert(0, ROOT)

from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import build  # noqa: E402

ASSETS = ["build/bpfquota.bpf.o", "build/bpfquota-upgrade.bpf.o", "build/wpath", LINK]


def main():
    os.chdir(ROOT)
    build("bpf", "build/bpfquota.bpf.o")
    build("bpf", "build/bpfquota-upgrade.bpf.o", extra_args=['-DBPFQUOTA_BUILD_TAG="upgrade-test"'])
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", "build/wpath", "tests/vm/wpath.c"], check=True)
    print(" ".join(ASSETS))


if __name__ == "__main__":
    main()
