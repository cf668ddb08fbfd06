"""Command line: ``python3 -m testbed {image,up,ssh,down,list,pytest}``."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from testbed.image import (ARCHES, DEFAULT_ARCH, DEFAULT_RELEASE, RELEASES, ImageBuildError, arch_from_env, cache_root,
                           ensure_image, exclusive_lock)
from testbed.vm import (BOOT_KERNEL, BOOT_MODES, DEFAULT_BOOT_TIMEOUT, DEFAULT_LAN, VM, Lan, VMError, log,
                        run_dir_for)
from testbed.workspace import WorkspaceError, source_files

REPO_ROOT = Path(__file__).resolve().parent.parent
REMOTE_SRC = "/root/bpfquota"
REMOTE_JUNIT = "/root/junit.xml"
TEST_VM_NAME = "test"
EXIT_TESTBED_FAILURE = 125  # the test bed itself failed; pytest uses 0-5 for its own outcomes


def split_at_double_dash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Arguments after the first ``--`` belong to the command run in the VM, untouched."""
    argv = list(argv)
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m testbed",
        description="Build, boot and use the bpfquota QEMU test-bed VMs "
                    f"(cache: $BPFQUOTA_CACHE, now {cache_root()}).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    image = commands.add_parser("image", help="build the base image (or reuse the cached one); print its directory")
    image.add_argument("--rebuild", action="store_true", help="build even if a cached image exists")
    add_release_option(image)

    up = commands.add_parser("up", help="boot a VM, wait for ssh, leave it running")
    up.add_argument("name")
    add_boot_options(up)

    ssh = commands.add_parser("ssh", help="run CMD in a running VM (a shell if no CMD): ssh NAME -- CMD...")
    ssh.add_argument("name")
    ssh.add_argument("cmd", nargs="*", help="run by the VM's shell, as with ssh")

    down = commands.add_parser("down", help="power a VM off (killing it after a grace period)")
    down.add_argument("name")

    commands.add_parser("list", help="list VMs with run state")

    pytest = commands.add_parser("pytest", help="copy the tree into a VM and run pytest there: pytest [opts] -- ARGS")
    pytest.add_argument("--src", type=Path, default=REPO_ROOT, help="tree to copy (default: the repo root)")
    pytest.add_argument("--include", action="append", default=[], metavar="PATH",
                        help="also copy PATH (relative to --src; e.g. a built BPF object); repeatable")
    pytest.add_argument("--junit", type=Path, help="copy the VM's junit.xml here")
    pytest.add_argument("--keep", action="store_true", help="leave the VM running afterwards")
    pytest.add_argument("--name", default=TEST_VM_NAME, help=f"VM to use or boot (default: {TEST_VM_NAME})")
    pytest.add_argument("--timeout", type=float, default=None, help="seconds pytest may run (default: no limit)")
    add_boot_options(pytest)
    return parser


def add_release_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", choices=sorted(RELEASES),
                        help="the Debian release (and so the kernel) of the image: "
                             + ", ".join(f"{name}: {what}" for name, what in RELEASES.items())
                             + f" (default: $BPFQUOTA_RELEASE, else {DEFAULT_RELEASE})")
    parser.add_argument("--arch", choices=sorted(ARCHES),
                        help="the image's architecture: "
                             + ", ".join(f"{name} ({what})" for name, what in ARCHES.items())
                             + f" (default: $BPFQUOTA_ARCH, else {DEFAULT_ARCH}); arm64 boots its kernel "
                               "directly only (no --boot grub)")


def add_boot_options(parser: argparse.ArgumentParser) -> None:
    add_release_option(parser)
    parser.add_argument("--port", type=int, help="host port forwarded to the VM's ssh (default: a free one)")
    parser.add_argument("--boot", choices=BOOT_MODES, default=BOOT_KERNEL,
                        help="kernel: QEMU starts the kernel directly (default); grub: boot the disk "
                             "through GRUB, so update-grub and a reboot in the guest change the command line")
    parser.add_argument("--cmdline", default="", help="extra kernel command line, e.g. lsm=... (--boot kernel)")
    parser.add_argument("--grub-cmdline", metavar="ARGS",
                        help="(--boot grub) after the first boot set GRUB_CMDLINE_LINUX=\"ARGS\" in "
                             "/etc/default/grub, update-grub and reboot into it")
    parser.add_argument("--lan-ip", metavar="A.B.C.D[/N]",
                        help="add a NIC on a private LAN shared with the other VMs on it, with this "
                             "static address (prefix length 24 unless given), e.g. 192.168.77.11")
    parser.add_argument("--lan", default=DEFAULT_LAN, metavar="NAME",
                        help=f"which private LAN (default: {DEFAULT_LAN}); VMs on differently named LANs "
                             "don't see each other")
    parser.add_argument("--memory", type=int, default=2048, help="MiB of RAM (default: 2048)")
    parser.add_argument("--cpus", type=int, default=2, help="vCPUs (default: 2)")
    parser.add_argument("--boot-timeout", type=float, default=DEFAULT_BOOT_TIMEOUT,
                        help=f"seconds to wait for ssh (default: {DEFAULT_BOOT_TIMEOUT})")


def boot_vm(name: str, args: argparse.Namespace) -> VM:
    started = time.monotonic()
    image = ensure_image()
    log(f"booting VM {name!r} from image {image.key}")
    vm = VM.boot(name, ssh_port=args.port, memory_mb=args.memory, cpus=args.cpus,
                 extra_cmdline=args.cmdline, image=image, timeout=args.boot_timeout,
                 boot=args.boot, grub_cmdline=args.grub_cmdline, lan_ip=args.lan_ip, lan=args.lan)
    log(f"VM {name!r} answers ssh on port {vm.ssh_port} after {time.monotonic() - started:.0f} s")
    return vm


def command_image(args: argparse.Namespace) -> int:
    print(ensure_image(rebuild=args.rebuild).directory)
    return 0


def command_up(args: argparse.Namespace) -> int:
    vm = boot_vm(args.name, args)
    print(shlex.join(vm.ssh_argv()))
    return 0


def command_ssh(args: argparse.Namespace) -> int:
    vm = VM.attach(args.name)
    command = " ".join(args.cmd) if args.cmd else None
    argv = vm.ssh_argv(command, tty=command is None and sys.stdin.isatty())
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def command_down(args: argparse.Namespace) -> int:
    try:
        vm = VM.attach(args.name)
    except VMError as error:
        if not (run_dir_for(args.name) / "state.json").exists():
            raise
        log(f"{error}; clearing its state")
        stale = run_dir_for(args.name)
        (stale / "state.json").unlink(missing_ok=True)
        (stale / "overlay.qcow2").unlink(missing_ok=True)
        return 0
    vm.shutdown()
    log(f"VM {args.name!r} is down")
    return 0


def command_list(args: argparse.Namespace) -> int:
    run_root = cache_root() / "run"
    names = sorted(path.name for path in run_root.iterdir()) if run_root.is_dir() else []
    for name in names:
        try:
            vm = VM.attach(name)
            lan = f"\tlan={vm.lan.name}:{vm.lan.address}" if vm.lan else ""
            print(f"{name}\trunning\tpid={vm.pid}\tssh_port={vm.ssh_port}\tboot={vm.boot_mode}{lan}")
        except VMError:
            print(f"{name}\tstopped")
    return 0


def command_pytest(args: argparse.Namespace) -> int:
    files = source_files(args.src, args.include)  # fail on a bad tree before spending a boot
    # One pytest session per VM at a time: another would overwrite the tree under a running test
    # or power the VM off mid-run.
    with exclusive_lock(run_dir_for(args.name) / "session.lock",
                        f"another pytest session is using VM {args.name!r}; waiting", log):
        return run_pytest_session(args, files)


def run_pytest_session(args: argparse.Namespace, files: list[str]) -> int:
    vm, booted_here = reuse_or_boot(args.name, args)
    try:
        log(f"copying {len(files)} paths from {args.src} to {REMOTE_SRC}")
        vm.run(f"rm -rf {REMOTE_SRC} {REMOTE_JUNIT} && mkdir -p {REMOTE_SRC}")
        vm.put_files(args.src.resolve(), files, REMOTE_SRC)
        rc = vm.stream(pytest_remote_command(args.pytest_args), timeout=args.timeout)
        if rc == 255:
            raise VMError(f"lost the ssh connection to VM {vm.name!r} while pytest ran")
        if args.junit:
            fetch_junit(vm, args.junit)
        return rc
    finally:
        if booted_here and not args.keep:
            vm.shutdown()
        elif args.keep:
            log(f"VM {vm.name!r} left running: {shlex.join(vm.ssh_argv())}")


def reuse_or_boot(name: str, args: argparse.Namespace) -> tuple[VM, bool]:
    try:
        vm = VM.attach(name)
    except VMError:
        return boot_vm(name, args), True
    differences = boot_setting_differences(vm, args)
    if differences:
        raise VMError(f"VM {name!r} was booted with {'; '.join(differences)}; "
                      f"stop it first: python3 -m testbed down {name}")
    log(f"reusing running VM {name!r}")
    vm.wait_ssh(args.boot_timeout)
    return vm, False


def boot_setting_differences(vm: VM, args: argparse.Namespace) -> list[str]:
    """How a running VM's boot settings differ from the ones asked for."""
    asked_lan = Lan.parse(args.lan_ip, args.lan) if args.lan_ip else None
    pairs = (("architecture", vm.image.arch, arch_from_env()),
             ("boot mode", vm.boot_mode, args.boot),
             ("extra kernel command line", vm.extra_cmdline, args.cmdline),
             ("GRUB_CMDLINE_LINUX", vm.grub_cmdline, args.grub_cmdline),
             ("LAN", vm.lan, asked_lan))
    return [f"{what} {running!r}, not {asked!r}" for what, running, asked in pairs if running != asked]


def pytest_remote_command(pytest_args: Sequence[str]) -> str:
    argv = ["python3", "-m", "pytest", "-p", "no:cacheprovider", *pytest_args, f"--junitxml={REMOTE_JUNIT}"]
    return f"cd {REMOTE_SRC} && {shlex.join(argv)}"


def fetch_junit(vm: VM, destination: Path) -> None:
    if vm.run(f"test -f {REMOTE_JUNIT}", check=False).rc != 0:
        raise VMError(f"pytest wrote no {REMOTE_JUNIT} in the VM")
    vm.get(REMOTE_JUNIT, destination)
    log(f"junit report: {destination}")


COMMANDS = {
    "image": command_image,
    "up": command_up,
    "ssh": command_ssh,
    "down": command_down,
    "list": command_list,
    "pytest": command_pytest,
}


def raise_on_sigterm(signum, frame) -> None:
    # Turn a CI job's SIGTERM into an exception so `finally` blocks power VMs off.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    own_args, after_dash = split_at_double_dash(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own_args)
    if args.command == "ssh":
        args.cmd = args.cmd + after_dash
    elif args.command == "pytest":
        args.pytest_args = after_dash
    elif after_dash:
        build_parser().error(f"'{args.command}' takes no arguments after --")
    if getattr(args, "release", None):
        os.environ["BPFQUOTA_RELEASE"] = args.release  # for every Recipe() made from here on
    if getattr(args, "arch", None):
        os.environ["BPFQUOTA_ARCH"] = args.arch
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except (ImageBuildError, VMError, WorkspaceError, subprocess.SubprocessError, OSError) as error:
        print(f"testbed: error: {error}", file=sys.stderr)
        return EXIT_TESTBED_FAILURE
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
