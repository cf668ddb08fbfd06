"""Boot the cached image under QEMU (TCG) and drive the VM over ssh.

Each VM has a run directory, ``<cache>/run/<name>/``, holding its qcow2 overlay over the
read-only base image, the serial console log, QEMU's own output and ``state.json``
(pid, ssh port, boot mode, LAN address), so a VM started by one process can be reached or
stopped by another.

A VM boots either its kernel directly (``boot="kernel"``: QEMU's -kernel/-initrd/-append, the
command line fixed per QEMU process) or from its own disk through GRUB (``boot="grub"``: the
command line is the guest's /boot/grub/grub.cfg, so update-grub and a reboot change it). Its
first NIC is QEMU user networking (ssh through a forwarded host port); with ``lan_ip`` a second
NIC joins a private LAN that all VMs with the same ``lan`` name share.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import psutil

from testbed.image import (DEFAULT_ARCH, GUEST_CMDLINE, ROOT_DEVICE, Image, cache_root, ensure_image, exclusive_lock,
                           guest_cmdline, tail)

DEFAULT_MEMORY_MB = 2048
DEFAULT_CPUS = 2
DEFAULT_BOOT_TIMEOUT = 300
DEFAULT_COMMAND_TIMEOUT = 600
SERIAL_TAIL_LINES = 50
PORT_ATTEMPTS = 5
SSH_POLL_INTERVAL = 2.0
BASE_CMDLINE = f"root={ROOT_DEVICE} rw rootfstype=ext4 {GUEST_CMDLINE}"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BOOT_KERNEL = "kernel"  # QEMU loads the image's kernel and initrd with a command line of ours
BOOT_GRUB = "grub"  # SeaBIOS boots the disk's GRUB, which boots what the guest's grub.cfg says
BOOT_MODES = (BOOT_KERNEL, BOOT_GRUB)
DEFAULT_LAN = "default"
LAN_PREFIX_LENGTH = 24
LAN_PORTS = range(20000, 30000)  # below the ephemeral ports a wildcard UDP socket could hold
FW_CFG_PREFIX = "opt/bpfquota/"  # read by /usr/local/sbin/testbed-guest-config at every boot
SUPERVISOR = Path(__file__).resolve().with_name("supervisor.py")
QMP_SOCKET = "qmp.sock"  # relative to the run directory, QEMU's working directory

# Serial console lines after which the guest will never reach ssh: fail at once, not at the timeout.
FATAL_CONSOLE_MARKERS = (
    "Kernel panic - not syncing",
    "You are in emergency mode",
    "Dropping to a shell!",
    "Cannot open access to console, the root account is locked",
    "grub rescue>",  # GRUB's core image found no /boot/grub
    "Press any key to continue...",  # a GRUB menu entry failed (no kernel, bad command)
)


class VMError(RuntimeError):
    """A VM could not be started, reached or stopped."""


class BootError(VMError):
    """The VM did not come up; the message carries QEMU's output and the serial console's tail."""


class CommandError(VMError):
    """A command in the VM exited non-zero (raised by ``run(check=True)``)."""

    def __init__(self, result: "RunResult"):
        self.result = result
        super().__init__(
            f"command failed in VM with exit code {result.rc}: {result.cmd}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
        )


class CommandTimeout(VMError):
    """A command in the VM did not finish within its timeout."""


@dataclass(frozen=True)
class RunResult:
    cmd: str
    rc: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # subprocess.CompletedProcess compatibility
        return self.rc


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (QEMU binds it a moment later; boot retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def kernel_cmdline(extra: str = "", arch: str = DEFAULT_ARCH) -> str:
    """The direct boot's command line: BASE_CMDLINE (with ``arch``'s serial console) and ``extra``."""
    base = BASE_CMDLINE.replace(GUEST_CMDLINE, guest_cmdline(arch))
    return f"{base} {extra}".strip()


def machine_args(arch: str = DEFAULT_ARCH) -> list[str]:
    """QEMU's program and machine for an image of ``arch``, TCG either way. arm64: the virt board
    with the emulator's fastest pointer authentication (QARMA, the architected one, costs TCG a lot
    on every function call of the kernel)."""
    if arch == DEFAULT_ARCH:
        return ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", "max"]
    return ["qemu-system-aarch64", "-machine", "virt", "-accel", "tcg,thread=single", "-cpu", "max,pauth-impdef=on"]


@dataclass(frozen=True)
class Lan:
    """A VM's NIC on a private Ethernet segment: every QEMU on the host whose LAN has the same
    ``name`` sends and receives its frames through one UDP multicast group on loopback."""

    name: str
    address: str  # the VM's IPv4 address with prefix length, "192.168.77.11/24"

    @classmethod
    def parse(cls, address: str, name: str = DEFAULT_LAN) -> "Lan":
        """``address`` is "A.B.C.D" (prefix length 24) or "A.B.C.D/N"."""
        if not NAME_PATTERN.match(name):
            raise VMError(f"invalid LAN name {name!r}: use letters, digits, '_', '.', '-'")
        text = address.strip()
        try:
            interface = ipaddress.IPv4Interface(text if "/" in text else f"{text}/{LAN_PREFIX_LENGTH}")
        except ValueError as error:
            raise VMError(f"invalid LAN address {address!r}: {error}") from None
        network = interface.network
        if network.prefixlen < 31 and interface.ip in (network.network_address, network.broadcast_address):
            raise VMError(f"LAN address {address!r} is its network's network or broadcast address")
        return cls(name, str(interface))

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def mac(self) -> str:
        """Unique per address on the segment (QEMU would give every VM 52:54:00:12:34:56)."""
        return "52:54:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(self.ip).packed)

    @property
    def multicast(self) -> tuple[str, int]:
        """The segment's multicast group and UDP port, derived from its name."""
        digest = hashlib.sha256(self.name.encode()).digest()
        port = LAN_PORTS[int.from_bytes(digest[2:4], "big") % len(LAN_PORTS)]
        return f"239.77.{digest[0]}.{digest[1]}", port


def hostname_for(name: str) -> str:
    """The guest's hostname: the VM name made a DNS label. Distinct hostnames give NFSv4 clients
    distinct client ids, so two VMs mounting one server don't take over each other's state."""
    return re.sub(r"[^A-Za-z0-9-]", "-", name)[:63].strip("-") or "vm"


def qemu_command(
    image: Image,
    overlay: Path,
    serial_log: Path,
    ssh_port: int,
    memory_mb: int = DEFAULT_MEMORY_MB,
    cpus: int = DEFAULT_CPUS,
    extra_cmdline: str = "",
    boot: str = BOOT_KERNEL,
    lan: Lan | None = None,
    hostname: str | None = None,
) -> list[str]:
    """QEMU's argv. TCG only: KVM hangs stock kernels on the hosts this runs on.

    To be run by supervisor.py in the VM's run directory (QMP socket ``qmp.sock``): with
    -no-reboot a guest reboot ends QEMU and the supervisor starts it again; the serial console
    file is appended to, so it keeps every boot.

    One TCG thread for all vCPUs: with one thread per vCPU, a vCPU can keep running a stale
    translation of kernel text that another vCPU just patched (text_poke of the BPF trampoline
    call when programs are attached or replaced) and spins in the int3 handler for ever.
    """
    if boot not in BOOT_MODES:
        raise VMError(f"unknown boot mode {boot!r}: one of {', '.join(BOOT_MODES)}")
    if boot == BOOT_GRUB and extra_cmdline:
        raise VMError("extra_cmdline is for direct kernel boot; a VM booted through GRUB takes its "
                      "command line from its grub.cfg (see grub_cmdline)")
    arch = image.arch
    if boot == BOOT_GRUB and arch != DEFAULT_ARCH:
        raise VMError(f"an {arch} image boots its kernel directly only (boot='kernel'): GRUB is amd64's")
    if boot == BOOT_KERNEL:
        boot_args = ["-kernel", str(image.kernel), "-initrd", str(image.initrd),
                     "-append", kernel_cmdline(extra_cmdline, arch)]
    else:
        boot_args = ["-boot", "order=c"]
    lan_args = []
    if lan is not None:
        group, port = lan.multicast
        lan_args = [
            "-netdev", f"socket,id=lan,mcast={group}:{port},localaddr=127.0.0.1",
            "-device", f"virtio-net-pci,netdev=lan,mac={lan.mac}",
            "-fw_cfg", f"name={FW_CFG_PREFIX}lan-mac,string={lan.mac}",
            "-fw_cfg", f"name={FW_CFG_PREFIX}lan-address,string={lan.address}",
        ]
    if hostname is not None:
        lan_args += ["-fw_cfg", f"name={FW_CFG_PREFIX}hostname,string={hostname}"]
    # Names the image in the command line in both boot modes (a GRUB boot names only the
    # overlay): image pruning spares the images of running VMs, whose ssh key is there too.
    image_arg = ["-fw_cfg", f"name={FW_CFG_PREFIX}image,string={image.disk}"]
    return [
        *machine_args(arch),
        "-smp", str(cpus),
        "-m", str(memory_mb),
        "-nodefaults",
        "-display", "none",
        "-vga", "none",
        "-monitor", "none",
        "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",
        "-no-reboot",
        "-chardev", f"file,id=console,path={serial_log},append=on",
        "-serial", "chardev:console",
        *boot_args,
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        *lan_args,
        *image_arg,
        "-device", "virtio-rng-pci",
    ]


def with_grub_cmdline_linux(default_grub: str, cmdline: str) -> str:
    """/etc/default/grub's text with GRUB_CMDLINE_LINUX set to ``cmdline`` (the last assignment
    replaced, or one added)."""
    if any(char in cmdline for char in '"\\$`\n'):
        raise VMError(f"cannot put {cmdline!r} into GRUB_CMDLINE_LINUX: no \", \\, $, ` or newline")
    assignment = f'GRUB_CMDLINE_LINUX="{cmdline}"'
    lines = default_grub.splitlines()
    found = [index for index, line in enumerate(lines) if re.match(r"\s*(export\s+)?GRUB_CMDLINE_LINUX=", line)]
    if found:
        lines[found[-1]] = assignment
    else:
        lines.append(assignment)
    return "\n".join(lines) + "\n"


def ssh_options(key: Path, port: int) -> list[str]:
    return [
        "-i", str(key),
        "-p", str(port),
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes",
        # TCG guests can stall for seconds under load; don't drop the connection for that.
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=8",
    ]


def run_dir_for(name: str, root: Path | None = None) -> Path:
    if not NAME_PATTERN.match(name):
        raise VMError(f"invalid VM name {name!r}: use letters, digits, '_', '.', '-'")
    return (root or cache_root()) / "run" / name


def as_remote_command(cmd: str | Sequence[str]) -> str:
    """A string is run by the remote shell as is; a sequence is quoted argument by argument."""
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


def log(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


class VM:
    """One QEMU guest. Create with ``VM.boot(name)`` or reach a running one with ``VM.attach(name)``."""

    def __init__(self, name: str, run_dir: Path, image: Image, ssh_port: int, pid: int,
                 process: subprocess.Popen | None = None, extra_cmdline: str = "",
                 boot: str = BOOT_KERNEL, lan: Lan | None = None, grub_cmdline: str | None = None):
        self.name = name
        self.run_dir = run_dir
        self.image = image
        self.ssh_port = ssh_port
        self.pid = pid
        self._process = process  # set when this process started QEMU, so it can be reaped
        self.extra_cmdline = extra_cmdline
        self.boot_mode = boot
        self.lan = lan
        self.grub_cmdline = grub_cmdline  # GRUB_CMDLINE_LINUX set at boot (None: the image's)

    @property
    def lan_ip(self) -> str | None:
        return self.lan.ip if self.lan else None

    # ----- paths

    @property
    def overlay(self) -> Path:
        return self.run_dir / "overlay.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.run_dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    # ----- lifecycle

    @classmethod
    def boot(
        cls,
        name: str,
        ssh_port: int | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        cpus: int = DEFAULT_CPUS,
        extra_cmdline: str = "",
        image: Image | None = None,
        wait: bool = True,
        timeout: float = DEFAULT_BOOT_TIMEOUT,
        root: Path | None = None,
        boot: str = BOOT_KERNEL,
        grub_cmdline: str | None = None,
        lan_ip: str | None = None,
        lan: str = DEFAULT_LAN,
    ) -> "VM":
        """Start QEMU on a fresh overlay; with ``wait``, return only once ssh works.

        ``boot="kernel"`` (default) starts the image's kernel directly with ``extra_cmdline``
        appended to BASE_CMDLINE; ``boot="grub"`` boots the disk through GRUB. ``grub_cmdline``
        (GRUB only) is written to GRUB_CMDLINE_LINUX in /etc/default/grub after the first boot,
        followed by update-grub and a reboot, so the VM returned runs with it and it is the
        configured command line. ``lan_ip`` ("A.B.C.D" or "A.B.C.D/N", /24 by default) adds a NIC
        on the private LAN named ``lan`` with that static address.
        """
        if boot not in BOOT_MODES:
            raise VMError(f"unknown boot mode {boot!r}: one of {', '.join(BOOT_MODES)}")
        if grub_cmdline is not None and boot != BOOT_GRUB:
            raise VMError("grub_cmdline needs boot='grub'")
        if extra_cmdline and boot == BOOT_GRUB:
            raise VMError("extra_cmdline is for direct kernel boot; with boot='grub' use grub_cmdline")
        if grub_cmdline is not None and not wait:
            raise VMError("grub_cmdline needs wait=True: it is set over ssh after the first boot")
        if grub_cmdline is not None:
            with_grub_cmdline_linux("", grub_cmdline)  # refuse a bad one before booting
        lan_config = Lan.parse(lan_ip, lan) if lan_ip else None
        run_dir = run_dir_for(name, root)
        image = image or ensure_image(root=root)
        # Two processes booting the same name must not share (and recreate) one overlay.
        with exclusive_lock(run_dir / "boot.lock", f"another process is booting VM {name!r}; waiting", log):
            refuse_if_running(name, run_dir)
            prepare_run_dir(run_dir, image)
            vm = cls.start_qemu(name, run_dir, image, ssh_port, memory_mb, cpus, extra_cmdline,
                                boot=boot, lan=lan_config)
        if wait:
            try:
                vm.wait_ssh(timeout)
                if grub_cmdline is not None:
                    vm.set_grub_cmdline(grub_cmdline, timeout=timeout)
            except BaseException:
                vm.kill()
                raise
        return vm

    @classmethod
    def start_qemu(cls, name: str, run_dir: Path, image: Image, ssh_port: int | None,
                   memory_mb: int, cpus: int, extra_cmdline: str, boot: str = BOOT_KERNEL,
                   lan: Lan | None = None) -> "VM":
        attempts_left = 1 if ssh_port else PORT_ATTEMPTS
        while True:
            attempts_left -= 1
            port = ssh_port or pick_free_port()
            argv = qemu_command(image, run_dir / "overlay.qcow2", run_dir / "serial.log", port,
                                memory_mb, cpus, extra_cmdline, boot=boot, lan=lan,
                                hostname=hostname_for(name))
            process = launch(argv, run_dir / "qemu.log", run_dir / "serial.log")
            vm = cls(name, run_dir, image, port, process.pid, process, extra_cmdline, boot=boot, lan=lan)
            vm.save_state(memory_mb=memory_mb, cpus=cpus)
            if not vm.exits_early():
                return vm
            vm.state_file.unlink(missing_ok=True)
            port_taken = "host forwarding rule" in vm.qemu_log.read_text(errors="replace")
            if not (port_taken and attempts_left > 0):
                raise BootError(vm.describe_failure(f"QEMU exited at start with code {process.returncode}"))
            log(f"port {port} was taken; retrying with another")

    def exits_early(self, seconds: float = 1.5) -> bool:
        """QEMU rejects bad arguments and taken ports within moments of starting."""
        assert self._process is not None
        try:
            self._process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    @classmethod
    def attach(cls, name: str, root: Path | None = None) -> "VM":
        """Reach a VM that some process booted and left running."""
        run_dir = run_dir_for(name, root)
        try:
            state = json.loads((run_dir / "state.json").read_text())
        except FileNotFoundError:
            raise VMError(f"no VM named {name!r} (no {run_dir / 'state.json'})") from None
        lan = Lan(state["lan"], state["lan_address"]) if state.get("lan_address") else None
        vm = cls(name, run_dir, Image(Path(state["image"])), state["ssh_port"], state["pid"],
                 extra_cmdline=state.get("extra_cmdline", ""), boot=state.get("boot", BOOT_KERNEL),
                 lan=lan, grub_cmdline=state.get("grub_cmdline"))
        if not vm.is_running():
            raise VMError(f"VM {name!r} is not running (QEMU pid {vm.pid} is gone)")
        return vm

    def save_state(self, **settings) -> None:
        """state.json: how to reach the VM and how it was booted (kept over the VM's life)."""
        try:
            previous = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            previous = {}
        state = {"name": self.name, "pid": self.pid, "ssh_port": self.ssh_port,
                 "image": str(self.image.directory), "started": time.time(),
                 "boot": self.boot_mode, "extra_cmdline": self.extra_cmdline,
                 "grub_cmdline": self.grub_cmdline, "hostname": hostname_for(self.name)}
        if self.lan is not None:
            group, port = self.lan.multicast
            state.update(lan=self.lan.name, lan_ip=self.lan.ip, lan_address=self.lan.address,
                         lan_mac=self.lan.mac, lan_multicast=f"{group}:{port}")
        if previous.get("pid") == self.pid:
            state = {**previous, **state, "started": previous.get("started", state["started"])}
        state.update(settings)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return qemu_pid_alive(self.pid, self.run_dir)

    def wait_ssh(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> float:
        """Poll until ssh answers; return the seconds waited. Raises BootError with the console tail."""
        return self._wait_for_boot(timeout, previous_boot_id=None)

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> float:
        """Reboot the guest and wait until the new boot answers ssh. A direct kernel boot gets the
        same command line again; a GRUB boot the one its grub.cfg has now."""
        previous = self.boot_id()
        self.run("systemctl reboot --no-block", check=False, timeout=60)
        return self._wait_for_boot(timeout, previous_boot_id=previous)

    def set_grub_cmdline(self, cmdline: str, reboot: bool = True,
                         timeout: float = DEFAULT_BOOT_TIMEOUT) -> float | None:
        """Make ``cmdline`` GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and (with
        ``reboot``) reboot into it; returns the reboot's seconds. GRUB boot only: a directly
        booted kernel's command line can't change."""
        if self.boot_mode != BOOT_GRUB:
            raise VMError(f"VM {self.name!r} boots its kernel directly; its command line comes from "
                          "QEMU, not GRUB (boot it with boot='grub')")
        text = self.run("cat /etc/default/grub", timeout=60).stdout
        self.run("cat >/etc/default/grub.testbed && mv /etc/default/grub.testbed /etc/default/grub",
                 input=with_grub_cmdline_linux(text, cmdline), timeout=60)
        self.run("update-grub", timeout=300)
        self.grub_cmdline = cmdline
        self.save_state()
        return self.reboot(timeout) if reboot else None

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id", timeout=60).stdout.strip()

    def _wait_for_boot(self, timeout: float, previous_boot_id: str | None) -> float:
        started = time.monotonic()
        deadline = started + timeout
        # After a reboot, only this boot's console output counts.
        console_start = self.serial_log_size() if previous_boot_id else 0
        while True:
            if not self.is_running():
                raise BootError(self.describe_failure("QEMU exited while waiting for ssh"))
            fatal = self.fatal_console_line(console_start)
            if fatal:
                raise BootError(self.describe_failure(f"guest failed to boot: {fatal!r}"))
            boot_id = self.try_ssh("cat /proc/sys/kernel/random/boot_id")
            if boot_id and boot_id.strip() != previous_boot_id:
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise BootError(self.describe_failure(f"no ssh on port {self.ssh_port} after {timeout:.0f} s"))
            time.sleep(SSH_POLL_INTERVAL)

    def try_ssh(self, command: str) -> str | None:
        try:
            result = subprocess.run(self.ssh_argv(command), stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            return None
        return result.stdout.decode(errors="replace") if result.returncode == 0 else None

    def serial_log_size(self) -> int:
        try:
            return self.serial_log.stat().st_size
        except FileNotFoundError:
            return 0

    def fatal_console_line(self, start: int = 0) -> str | None:
        try:
            with open(self.serial_log, "rb") as console_file:
                console_file.seek(start)
                console = console_file.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        for line in console.splitlines():
            if any(marker in line for marker in FATAL_CONSOLE_MARKERS):
                return line.strip()
        return None

    def describe_failure(self, reason: str) -> str:
        return (
            f"VM {self.name!r}: {reason}\n"
            f"--- QEMU output ({self.qemu_log}) ---\n{tail(self.qemu_log, 20)}\n"
            f"--- last {SERIAL_TAIL_LINES} lines of the serial console ({self.serial_log}) ---\n"
            f"{tail(self.serial_log, SERIAL_TAIL_LINES)}"
        )

    def shutdown(self, grace: float = 60) -> None:
        """Power off cleanly; kill QEMU if the guest is not gone after ``grace`` seconds."""
        if self.is_running():
            try:
                self.run("systemctl poweroff --no-block", check=False, timeout=30)
            except CommandTimeout:
                pass
            if not self.wait_for_exit(grace):
                log(f"VM {self.name!r} did not power off within {grace:.0f} s; killing QEMU")
                self.kill()
        self.forget()

    def kill(self) -> None:
        """Stop QEMU now: SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if not self.is_running():
                break
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            self.wait_for_exit(wait)
        if self.is_running():
            raise VMError(f"QEMU pid {self.pid} of VM {self.name!r} survived SIGKILL")
        self.forget()

    def wait_for_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        return True

    def forget(self) -> None:
        """Drop the run state and the overlay disk; the logs stay for post-mortems."""
        self.state_file.unlink(missing_ok=True)
        self.overlay.unlink(missing_ok=True)
        (self.run_dir / QMP_SOCKET).unlink(missing_ok=True)

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    # ----- commands and files

    def ssh_argv(self, command: str | None = None, tty: bool = False) -> list[str]:
        argv = ["ssh", *ssh_options(self.image.ssh_key, self.ssh_port)]
        if tty:
            argv.append("-t")
        argv.append("root@127.0.0.1")
        if command is not None:
            argv += ["--", command]
        return argv

    def run(self, cmd: str | Sequence[str], check: bool = True,
            timeout: float | None = DEFAULT_COMMAND_TIMEOUT, input: str | None = None) -> RunResult:
        """Run ``cmd`` as root in the VM and capture its output."""
        remote = as_remote_command(cmd)
        try:
            completed = subprocess.run(
                self.ssh_argv(remote), input=(input or "").encode(), capture_output=True,
                timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as expired:
            raise CommandTimeout(
                f"command timed out after {timeout} s in VM {self.name!r}: {remote}\n"
                f"--- stdout ---\n{decode(expired.stdout)}--- stderr ---\n{decode(expired.stderr)}"
            ) from None
        result = RunResult(remote, completed.returncode, decode(completed.stdout), decode(completed.stderr))
        if check and result.rc != 0:
            raise CommandError(result)
        return result

    def stream(self, cmd: str | Sequence[str], timeout: float | None = None) -> int:
        """Run ``cmd`` with its output going straight to this process's stdout/stderr; return its rc."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            return subprocess.run(self.ssh_argv(as_remote_command(cmd)), stdin=subprocess.DEVNULL,
                                  timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"command timed out after {timeout} s in VM {self.name!r}: {cmd}") from None

    def put(self, local_path: str | Path, remote_path: str) -> None:
        """Copy a file or directory into the VM; a directory's contents merge into ``remote_path``."""
        local = Path(local_path)
        if local.is_dir():
            self.put_files(local, sorted(walk_files(local)), remote_path)
        elif local.exists():
            parent, name = os.path.split(remote_path.rstrip("/"))
            self._send_tar(parent or ".", lambda tar: tar.add(local, arcname=name, filter=owned_by_root))
        else:
            raise VMError(f"cannot copy {local} into the VM: it does not exist")

    def put_files(self, base: Path, relative_paths: Sequence[str], remote_dir: str) -> None:
        """Copy the listed paths (relative to ``base``, not recursed into) to ``remote_dir``."""
        def add_all(tar: tarfile.TarFile) -> None:
            for relative in relative_paths:
                tar.add(base / relative, arcname=relative, recursive=False, filter=owned_by_root)
        self._send_tar(remote_dir, add_all)

    def _send_tar(self, remote_dir: str, add_members) -> None:
        # A temporary file instead of a pipe: no deadlock between our writes and ssh's stderr.
        with tempfile.TemporaryFile() as archive:
            with tarfile.open(fileobj=archive, mode="w") as tar:
                add_members(tar)
            archive.seek(0)
            quoted = shlex.quote(remote_dir)
            self._transfer(f"mkdir -p {quoted} && tar -x -C {quoted} -f -", stdin=archive)

    def get(self, remote_path: str, local_path: str | Path) -> None:
        """Copy a file or directory out of the VM; a directory's contents merge into ``local_path``."""
        local = Path(local_path)
        quoted = shlex.quote(remote_path)
        is_dir = self.run(f"test -d {quoted}", check=False, timeout=60).rc == 0
        with tempfile.TemporaryFile() as received:
            if is_dir:
                self._transfer(f"tar -c -C {quoted} -f - .", stdout=received)
                received.seek(0)
                local.mkdir(parents=True, exist_ok=True)
                with tarfile.open(fileobj=received, mode="r") as tar:
                    tar.extractall(local, filter="data")
            else:
                self._transfer(f"cat {quoted}", stdout=received)
                received.seek(0)
                local.parent.mkdir(parents=True, exist_ok=True)
                with open(local, "wb") as destination:
                    destination.write(received.read())

    def _transfer(self, remote: str, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) -> None:
        result = subprocess.run(self.ssh_argv(remote), stdin=stdin, stdout=stdout,
                                stderr=subprocess.PIPE, timeout=DEFAULT_COMMAND_TIMEOUT, check=False)
        if result.returncode != 0:
            raise VMError(f"file transfer failed in VM {self.name!r} (exit code {result.returncode}): "
                          f"{remote}\n{decode(result.stderr)}")


def launch(argv: list[str], output_log: Path, serial_log: Path) -> subprocess.Popen:
    """Start QEMU under supervisor.py (which starts it again after each guest reboot) in the
    run directory; the returned process is the supervisor's."""
    serial_log.write_bytes(b"")  # a reused run dir must not show the previous boot's console
    with open(output_log, "wb") as output:
        output.write(f"$ {shlex.join(argv)}\n".encode())
        output.flush()
        try:
            # Own session: a Ctrl-C meant for the caller must not kill a VM left running.
            return subprocess.Popen([sys.executable, str(SUPERVISOR), "--", *argv], cwd=serial_log.parent,
                                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as error:
            raise BootError(f"cannot start {argv[0]}: {error}") from error


def refuse_if_running(name: str, run_dir: Path) -> None:
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    if qemu_pid_alive(state.get("pid", 0), run_dir):
        raise VMError(f"VM {name!r} is already running (pid {state['pid']}); "
                      f"stop it with: python3 -m testbed down {name}")


def prepare_run_dir(run_dir: Path, image: Image) -> None:
    """A fresh qcow2 overlay per boot: every VM starts from the clean base image."""
    run_dir.mkdir(parents=True, exist_ok=True)
    overlay = run_dir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    result = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.rootfs.resolve()), "-F", "raw",
         str(overlay)],
        capture_output=True, check=False,
    )
    if result.returncode != 0:
        raise BootError(f"qemu-img could not create {overlay}: {decode(result.stderr)}")


def qemu_pid_alive(pid: int, run_dir: Path) -> bool:
    """True if ``pid`` is a live QEMU, or its supervisor, using ``run_dir`` (guards against a
    recycled pid: the supervisor's command line carries QEMU's)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
    return not zombie and "qemu-system" in cmdline and str(run_dir) in cmdline


def owned_by_root(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    return member


def walk_files(directory: Path) -> list[str]:
    """Every entry under ``directory`` as relative paths, parents before children; symlinks not followed."""
    entries = []
    for current, dirs, files in os.walk(directory):
        relative_dir = os.path.relpath(current, directory)
        for name in sorted(dirs) + sorted(files):
            entries.append(os.path.normpath(os.path.join(relative_dir, name)))
    return entries


def decode(data: bytes | None) -> str:
    return (data or b"").decode(errors="replace")
