"""Boot the cached image under QEMU (TCG) and drive the VM over ssh.

Each VM has a run directory, ``<cache>/run/<name>/``, holding its qcow2 overlay over the
read-only base image, the serial console log, QEMU's own output and ``state.json``
(pid, ssh port), so a VM started by one process can be reached or stopped by another.
"""

from __future__ import annotations

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

from testbed.image import Image, cache_root, ensure_image, exclusive_lock, tail

DEFAULT_MEMORY_MB = 2048
DEFAULT_CPUS = 2
DEFAULT_BOOT_TIMEOUT = 300
DEFAULT_COMMAND_TIMEOUT = 600
SERIAL_TAIL_LINES = 50
PORT_ATTEMPTS = 5
SSH_POLL_INTERVAL = 2.0
BASE_CMDLINE = "root=/dev/vda rw rootfstype=ext4 console=ttyS0 mitigations=off"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Serial console lines after which the guest will never reach ssh: fail at once, not at the timeout.
FATAL_CONSOLE_MARKERS = (
    "Kernel panic - not syncing",
    "You are in emergency mode",
    "Dropping to a shell!",
    "Cannot open access to console, the root account is locked",
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


def kernel_cmdline(extra: str = "") -> str:
    return f"{BASE_CMDLINE} {extra}".strip()


def qemu_command(
    image: Image,
    overlay: Path,
    serial_log: Path,
    ssh_port: int,
    memory_mb: int = DEFAULT_MEMORY_MB,
    cpus: int = DEFAULT_CPUS,
    extra_cmdline: str = "",
) -> list[str]:
    """QEMU's argv. TCG only: KVM hangs stock kernels on the hosts this runs on.

    One TCG thread for all vCPUs: with one thread per vCPU, a vCPU can keep running a stale
    translation of kernel text that another vCPU just patched (text_poke of the BPF trampoline
    call when programs are attached or replaced) and spins in the int3 handler for ever.
    """
    return [
        "qemu-system-x86_64",
        "-accel", "tcg,thread=single",
        "-cpu", "max",
        "-smp", str(cpus),
        "-m", str(memory_mb),
        "-nodefaults",
        "-display", "none",
        "-vga", "none",
        "-monitor", "none",
        "-serial", f"file:{serial_log}",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", kernel_cmdline(extra_cmdline),
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        "-device", "virtio-rng-pci",
    ]


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
                 process: subprocess.Popen | None = None, extra_cmdline: str = ""):
        self.name = name
        self.run_dir = run_dir
        self.image = image
        self.ssh_port = ssh_port
        self.pid = pid
        self._process = process  # set when this process started QEMU, so it can be reaped
        self.extra_cmdline = extra_cmdline

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
    ) -> "VM":
        """Start QEMU on a fresh overlay; with ``wait``, return only once ssh works."""
        run_dir = run_dir_for(name, root)
        image = image or ensure_image(root=root)
        # Two processes booting the same name must not share (and recreate) one overlay.
        with exclusive_lock(run_dir / "boot.lock", f"another process is booting VM {name!r}; waiting", log):
            refuse_if_running(name, run_dir)
            prepare_run_dir(run_dir, image)
            vm = cls.start_qemu(name, run_dir, image, ssh_port, memory_mb, cpus, extra_cmdline)
        if wait:
            try:
                vm.wait_ssh(timeout)
            except BaseException:
                vm.kill()
                raise
        return vm

    @classmethod
    def start_qemu(cls, name: str, run_dir: Path, image: Image, ssh_port: int | None,
                   memory_mb: int, cpus: int, extra_cmdline: str) -> "VM":
        attempts_left = 1 if ssh_port else PORT_ATTEMPTS
        while True:
            attempts_left -= 1
            port = ssh_port or pick_free_port()
            argv = qemu_command(image, run_dir / "overlay.qcow2", run_dir / "serial.log", port,
                                memory_mb, cpus, extra_cmdline)
            process = launch(argv, run_dir / "qemu.log", run_dir / "serial.log")
            vm = cls(name, run_dir, image, port, process.pid, process, extra_cmdline)
            vm.save_state(memory_mb=memory_mb, cpus=cpus, extra_cmdline=extra_cmdline)
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
        vm = cls(name, run_dir, Image(Path(state["image"])), state["ssh_port"], state["pid"],
                 extra_cmdline=state.get("extra_cmdline", ""))
        if not vm.is_running():
            raise VMError(f"VM {name!r} is not running (QEMU pid {vm.pid} is gone)")
        return vm

    def save_state(self, **settings) -> None:
        state = {"name": self.name, "pid": self.pid, "ssh_port": self.ssh_port,
                 "image": str(self.image.directory), "started": time.time(), **settings}
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return qemu_pid_alive(self.pid, self.run_dir)

    def wait_ssh(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> float:
        """Poll until ssh answers; return the seconds waited. Raises BootError with the console tail."""
        return self._wait_for_boot(timeout, previous_boot_id=None)

    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> float:
        """Reboot the guest (same kernel command line) and wait until the new boot answers ssh."""
        previous = self.boot_id()
        self.run("systemctl reboot --no-block", check=False, timeout=60)
        return self._wait_for_boot(timeout, previous_boot_id=previous)

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
    serial_log.write_bytes(b"")  # a reused run dir must not show the previous boot's console
    with open(output_log, "wb") as output:
        output.write(f"$ {shlex.join(argv)}\n".encode())
        output.flush()
        try:
            # Own session: a Ctrl-C meant for the caller must not kill a VM left running.
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)
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
    """True if ``pid`` is a live QEMU using ``run_dir`` (guards against a recycled pid)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and "qemu-system" in cmdline and str(run_dir) in cmdline


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
