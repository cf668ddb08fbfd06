"""Build what the VM tests need into build/: the BPF object, a second object for upgrade
tests, and the static wpath helper (the VM has no compiler). Prints them, and the checkout's
ansible_collections/bpfquota/nfs link (git doesn't track it, so the VM copy must include it).

For the test bed's architecture, $BPFQUOTA_ARCH (amd64, the default, or arm64, as the test bed
takes it): the objects with __TARGET_ARCH_x86 or __TARGET_ARCH_arm64, wpath with gcc or, for arm64
on another machine, aarch64-linux-gnu-gcc (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = os.path.join("ansible_collections", "bpfquota", "nfs")
if not os.path.lexists(os.path.join(ROOT, LINK)):  # a fresh clone (scripts/setup-host.sh also makes it)
    os.makedirs(os.path.join(ROOT, os.path.dirname(LINK)), exist_ok=True)
    os.symlink(os.path.join("..", ".."), os.path.join(ROOT, LINK))
sys.path.insert(0, ROOT)

from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import BuildError, build, target_arch  # noqa: E402

ASSETS = ["build/bpfquota.bpf.o", "build/bpfquota-upgrade.bpf.o", "build/wpath", LINK]
# C compilers for a static binary of each target architecture when this machine is another one.
CROSS_GCC = {"arm64": "aarch64-linux-gnu-gcc", "x86": "x86_64-linux-gnu-gcc"}


def assets_arch(environ=None):
    """The target architecture (x86, arm64) of $BPFQUOTA_ARCH (amd64 unless set)."""
    environ = os.environ if environ is None else environ
    return target_arch(environ.get("BPFQUOTA_ARCH") or "amd64")


def gcc_for(arch, machine=None):
    """gcc on a machine of `arch`, else the cross compiler for it."""
    machine = machine or os.uname().machine
    return "gcc" if target_arch(machine) == arch else CROSS_GCC[arch]


def main():
    os.chdir(ROOT)
    try:
        arch = assets_arch()
    except BuildError as e:
        sys.exit("build-assets: BPFQUOTA_ARCH: %s" % e)
    build("bpf", "build/bpfquota.bpf.o", arch=arch)
    build("bpf", "build/bpfquota-upgrade.bpf.o", extra_args=['-DBPFQUOTA_BUILD_TAG="upgrade-test"'], arch=arch)
    subprocess.run([gcc_for(arch), "-static", "-O2", "-Wall", "-Werror", "-o", "build/wpath", "tests/vm/wpath.c"],
                   check=True)
    print(" ".join(ASSETS))


if __name__ == "__main__":
    main()
