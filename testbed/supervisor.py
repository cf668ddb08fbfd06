"""Keep a VM's QEMU going across guest reboots: start QEMU again each time the guest reboots.

QEMU runs with -no-reboot, so a guest reboot ends the QEMU process, and this supervisor starts
QEMU again with the same arguments: the same overlay disk, ports, LAN and boot mode (a GRUB boot
reads the guest's possibly edited grub.cfg again; a direct kernel boot gets the same command
line). Why not let QEMU reset the guest itself: under TCG, a second boot in the same process
writes over pages that held the first boot's code, and each such write invalidates stale
translations; that made reboots take 75 s to over 5 minutes (soft lockups) instead of a fresh
process's ~35 s.

QEMU tells why it stopped on its QMP socket (a SHUTDOWN event with reason "guest-reset" for a
reboot). A poweroff, a QEMU failure or SIGTERM end the supervisor, with QEMU's exit code.

Usage (the VM's run directory as the working directory, where QEMU makes its QMP socket):

    python3 supervisor.py -- qemu-system-x86_64 ... -no-reboot -qmp unix:qmp.sock,server=on,wait=off

Stdlib only and no import of the testbed package: it runs as a script, whatever sys.path is.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

QMP_SOCKET = "qmp.sock"
REBOOT_REASON = "guest-reset"
PR_SET_PDEATHSIG = 1
CONNECT_POLL_SECONDS = 0.05


def log(message: str) -> None:
    print(f"[supervisor {time.strftime('%H:%M:%S')}] {message}", flush=True)


def die_with_parent() -> None:
    """In QEMU's child before exec: a SIGKILLed supervisor must not leave QEMU running."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def shutdown_reason(messages: list[str]) -> str | None:
    """The reason of the last SHUTDOWN event among QMP's JSON lines (None if there is none)."""
    reason = None
    for message in messages:
        try:
            event = json.loads(message)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "SHUTDOWN":
            reason = (event.get("data") or {}).get("reason")
    return reason


def connect_qmp(process: subprocess.Popen, path: str) -> socket.socket | None:
    """Connect to QEMU's QMP socket as soon as it exists; None if QEMU exits first."""
    while process.poll() is None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(path)
            return client
        except (FileNotFoundError, ConnectionRefusedError):
            client.close()
            time.sleep(CONNECT_POLL_SECONDS)
    return None


def qmp_messages(process: subprocess.Popen, path: str) -> list[str]:
    """QEMU's QMP greeting and events, from start to exit."""
    client = connect_qmp(process, path)
    if client is None:
        return []
    messages = []
    with client, client.makefile("rw", encoding="utf-8", errors="replace") as stream:
        try:
            stream.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
            stream.flush()
            for line in stream:  # ends when QEMU closes the socket, i.e. exits
                messages.append(line.strip())
        except OSError:
            pass
    return messages


def supervise(argv: list[str]) -> int:
    current: subprocess.Popen | None = None
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if current is not None and current.poll() is None:
            current.send_signal(signal.SIGTERM)  # QEMU stops the guest and exits

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    boots = 0
    while True:
        try:
            os.unlink(QMP_SOCKET)
        except FileNotFoundError:
            pass
        current = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        if stopping:  # a signal while QEMU was being started again
            current.send_signal(signal.SIGTERM)
        boots += 1
        reason = shutdown_reason(qmp_messages(current, QMP_SOCKET))
        returncode = current.wait()
        if stopping or reason != REBOOT_REASON:
            return returncode
        log(f"the guest rebooted (boot {boots} ended); starting QEMU again")


def main(args: list[str]) -> int:
    if args[:1] != ["--"] or len(args) < 2:
        print("usage: supervisor.py -- QEMU_ARGV...", file=sys.stderr)
        return 2
    return supervise(args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
