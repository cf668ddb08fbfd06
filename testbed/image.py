"""Build the Debian bookworm base image once and cache it by a hash of its recipe.

Layout under the cache root (``$BPFQUOTA_CACHE``, default /var/tmp/bpfquota-testbed):

    images/<key>/rootfs.img      raw ext4 root file system (sparse, 4 GiB)
    images/<key>/vmlinuz         kernel copied out of the image's /boot
    images/<key>/initrd.img      initramfs copied out of the image's /boot
    images/<key>/id_ed25519      root's ssh key (authorized inside this image only)
    images/<key>/manifest.json   written last: its presence marks a complete image
    images/.lock                 fcntl lock serialising builders
    debs/                        debootstrap's package cache, reused across rebuilds
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

DEFAULT_CACHE_ROOT = "/var/tmp/bpfquota-testbed"
IMAGES_KEPT = 2  # the newest images survive a rebuild, so switching branches back is cheap
LOG_TAIL_LINES = 40

PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "python3",
    "python3-pytest",
    "python3-yaml",
    "nfs-kernel-server",
    "nfs-common",
    "libbpf1",
    "bpftool",
    "e2fsprogs",
    "iproute2",
    "procps",
    "psmisc",  # fuser: shutdown kills what holds NFS files before unmounting
    "util-linux",
    "kmod",
    "ca-certificates",
    "coreutils",
)

NFS_EXPORT_OPTIONS = "rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0,crossmnt"

# Loopback for the VM's own client; 10.0.2.0/24 is QEMU user-net, for clients in other VMs later.
EXPORTS = (
    "# /srv/nfs is the NFSv4 pseudo-root (fsid=0): v4 clients mount 127.0.0.1:/, v3 clients 127.0.0.1:/srv/nfs\n"
    f"/srv/nfs 127.0.0.1/8({NFS_EXPORT_OPTIONS}) 10.0.2.0/24({NFS_EXPORT_OPTIONS})\n"
)

MOUNT_NFS_SCRIPT = r"""#!/bin/sh
# Mount this VM's own NFS export over loopback: NFSv3 at /mnt/nfs3, NFSv4.2 at /mnt/nfs4.
# Idempotent. "testbed-mount-nfs -u" unmounts both.
set -eu

SERVER=127.0.0.1
V3_SOURCE="$SERVER:/srv/nfs"
V4_SOURCE="$SERVER:/"  # fsid=0 makes /srv/nfs the NFSv4 pseudo-root
WAIT_SECONDS=120

if [ "${1:-}" = "-u" ]; then
    for mnt in /mnt/nfs3 /mnt/nfs4; do
        if mountpoint -q "$mnt"; then umount "$mnt"; fi
    done
    exit 0
fi

server_ready() {
    rpcinfo -t "$SERVER" nfs 3 >/dev/null 2>&1 &&
        rpcinfo -t "$SERVER" nfs 4 >/dev/null 2>&1 &&
        rpcinfo -t "$SERVER" mountd 3 >/dev/null 2>&1 &&
        showmount -e "$SERVER" 2>/dev/null | grep -q '^/srv/nfs '
}

wait_for_server() {
    systemctl start nfs-server.service
    waited=0
    until server_ready; do
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            echo "testbed-mount-nfs: NFS server not ready after $WAIT_SECONDS s" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

mount_once() {
    if mountpoint -q "$3"; then return 0; fi
    mount -t nfs -o "vers=$1" "$2" "$3"
}

wait_for_server
mount_once 3 "$V3_SOURCE" /mnt/nfs3
mount_once 4.2 "$V4_SOURCE" /mnt/nfs4
findmnt -t nfs,nfs4
"""

UNMOUNT_NFS_SCRIPT = r"""#!/bin/sh
# Kill whatever uses an NFS mount, then unmount every NFS mount. Runs at poweroff and reboot
# while nfs-server is still up: a busy hard loopback mount would otherwise outlive the server
# and stall the shutdown for minutes.
set -u

for mnt in $(findmnt -rn -t nfs,nfs4 -o TARGET); do
    fuser -s -k -KILL -m "$mnt" || true
done

# Killed processes release their files asynchronously: retry before falling back to lazy.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    umount -a -t nfs,nfs4 2>/dev/null && exit 0
    sleep 0.5
done
umount -a -t nfs,nfs4 || umount -a -l -t nfs,nfs4
"""

# Units stop in reverse start order, so After=nfs-server.service makes this one stop (and
# unmount) before the server does.
NFS_UNMOUNT_UNIT = """[Unit]
Description=Unmount NFS before the loopback NFS server stops
After=nfs-server.service network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/usr/local/sbin/testbed-unmount-nfs
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""

# path inside the image -> (mode, content)
FILES: dict[str, tuple[int, str]] = {
    "etc/hostname": (0o644, "bpfquota-vm\n"),
    "etc/hosts": (
        0o644,
        "127.0.0.1 localhost\n127.0.1.1 bpfquota-vm\n::1 localhost ip6-localhost ip6-loopback\n",
    ),
    "etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"),
    "etc/resolv.conf": (0o644, "nameserver 10.0.2.3\n"),  # QEMU user-net's DNS
    "etc/systemd/network/20-wired.network": (
        0o644,
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n",
    ),
    "etc/ssh/sshd_config.d/testbed.conf": (
        0o644,
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n",
    ),
    # Short stop timeouts keep poweroff and reboot quick when a test leaves something hanging.
    "etc/systemd/system.conf.d/testbed.conf": (
        0o644,
        "[Manager]\nDefaultTimeoutStopSec=15s\n",
    ),
    "etc/exports": (0o644, EXPORTS),
    "etc/systemd/system/testbed-nfs-unmount.service": (0o644, NFS_UNMOUNT_UNIT),
    "usr/local/sbin/testbed-mount-nfs": (0o755, MOUNT_NFS_SCRIPT),
    "usr/local/sbin/testbed-unmount-nfs": (0o755, UNMOUNT_NFS_SCRIPT),
}

# Runs inside the chroot after debootstrap and after FILES are written.
CONFIGURE_SCRIPT = r"""set -eux
systemctl enable systemd-networkd.service ssh.service nfs-server.service testbed-nfs-unmount.service
# Nothing at boot may wait for the network or do periodic maintenance behind a test's back.
systemctl mask systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
mkdir -p /srv/nfs /mnt/nfs3 /mnt/nfs4
chmod 1777 /srv/nfs
# An empty root password allows login on the serial console for debugging; sshd refuses it.
passwd -d root
ls /boot/vmlinuz-* /boot/initrd.img-*
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


class ImageBuildError(RuntimeError):
    """The base image could not be built; the message carries the tail of the build log."""


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the image's content; its hash names the cache entry."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    packages: tuple[str, ...] = PACKAGES
    files: dict[str, tuple[int, str]] = field(default_factory=lambda: dict(FILES))
    configure_script: str = CONFIGURE_SCRIPT
    image_size: str = "4G"

    def cache_key(self) -> str:
        canonical = json.dumps(
            {
                "suite": self.suite,
                "mirror": self.mirror,
                "variant": self.variant,
                "packages": sorted(self.packages),
                "files": {path: [mode, text] for path, (mode, text) in sorted(self.files.items())},
                "configure_script": self.configure_script,
                "image_size": self.image_size,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A complete cached image directory."""

    directory: Path

    @property
    def key(self) -> str:
        return self.directory.name

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def ssh_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    def is_complete(self) -> bool:
        parts = (self.rootfs, self.kernel, self.initrd, self.ssh_key, self.manifest)
        return all(part.is_file() for part in parts)


def cache_root() -> Path:
    return Path(os.environ.get("BPFQUOTA_CACHE") or DEFAULT_CACHE_ROOT).absolute()


def images_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "images"


def log_to_stderr(message: str) -> None:
    print(f"[testbed] {message}", file=sys.stderr, flush=True)


def ensure_image(
    recipe: Recipe | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = log_to_stderr,
    rebuild: bool = False,
) -> Image:
    """Return the cached image for ``recipe``, building it first if it is missing."""
    recipe = recipe or Recipe()
    image = Image(images_dir(root) / recipe.cache_key())
    if image.is_complete() and not rebuild:
        return image
    with exclusive_lock(images_dir(root) / ".lock", "another process is building the image; waiting for it", log):
        # Another process may have finished the same build while we waited for the lock.
        if image.is_complete() and not rebuild:
            return image
        remove_stale_builds(images_dir(root), log)
        if rebuild and image.directory.exists():
            shutil.rmtree(image.directory)
        build_image(recipe, image, (root or cache_root()) / "debs", log)
        prune_old_images(images_dir(root), keep=image, log=log)
    return image


@contextlib.contextmanager
def exclusive_lock(path: Path, waiting_message: str, log: Callable[[str], None] = log_to_stderr) -> Iterator[None]:
    """Hold an fcntl lock on ``path``; the kernel drops it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(waiting_message)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def build_image(recipe: Recipe, image: Image, deb_cache: Path, log: Callable[[str], None]) -> None:
    """Build into a temporary directory and rename it into place only when complete."""
    staging = image.directory.parent / f".build-{image.key}-{os.getpid()}"
    build_log = image.directory.parent / f".build-{image.key}.log"
    chroot = staging / "chroot"
    staging.mkdir(parents=True)
    deb_cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building image {image.key} (log: {build_log})")
    try:
        with open(build_log, "w") as log_file:
            step = StepRunner(log_file, build_log, log)
            step.run("debootstrap", debootstrap_command(recipe, chroot, deb_cache))
            write_files(chroot, recipe.files)
            step.run("ssh key", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bpfquota-testbed",
                                 "-f", str(staging / "id_ed25519")])
            authorize_key(chroot, staging / "id_ed25519.pub")
            step.run("configure", ["chroot", str(chroot), "/bin/sh", "-c", recipe.configure_script])
            copy_boot_files(chroot, staging)
            ensure_nothing_mounted(chroot)
            step.run("mke2fs", ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "bpfquota-root",
                                "-d", str(chroot), str(staging / "rootfs.img"), recipe.image_size])
        remove_tree(chroot)
        write_manifest(staging, recipe, time.monotonic() - started)
        os.rename(staging, image.directory)
    except BaseException:
        remove_tree(staging)
        raise
    log(f"image {image.key} built in {time.monotonic() - started:.0f} s")


def debootstrap_command(recipe: Recipe, target: Path, deb_cache: Path) -> list[str]:
    return [
        "debootstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        f"--cache-dir={deb_cache.resolve()}",
        recipe.suite,
        str(target),
        recipe.mirror,
    ]


class StepRunner:
    """Runs build commands with output in the build log; a failure raises with the log's tail."""

    def __init__(self, log_file, log_path: Path, log: Callable[[str], None]):
        self.log_file = log_file
        self.log_path = log_path
        self.log = log

    def run(self, name: str, argv: list[str]) -> None:
        self.log(f"  {name} ...")
        started = time.monotonic()
        self.log_file.write(f"\n===== {name}: {' '.join(argv)}\n")
        self.log_file.flush()
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                    stderr=subprocess.STDOUT, check=False)
        except OSError as error:
            raise ImageBuildError(f"image build step {name!r} could not start: {error}") from error
        if result.returncode != 0:
            raise ImageBuildError(
                f"image build step {name!r} failed with exit code {result.returncode}; "
                f"last lines of {self.log_path}:\n{tail(self.log_path, LOG_TAIL_LINES)}"
            )
        self.log(f"  {name} done in {time.monotonic() - started:.0f} s")


def write_files(chroot: Path, files: dict[str, tuple[int, str]]) -> None:
    for relative, (mode, text) in files.items():
        path = chroot / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():  # e.g. a resolv.conf symlink would redirect our write
            path.unlink()
        path.write_text(text)
        path.chmod(mode)


def authorize_key(chroot: Path, public_key: Path) -> None:
    ssh_dir = chroot / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(public_key.read_text())
    authorized.chmod(0o600)


def copy_boot_files(chroot: Path, destination: Path) -> None:
    """Copy the one installed kernel and its initramfs next to the disk image for direct boot."""
    kernels = sorted((chroot / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageBuildError(f"expected exactly one kernel in the image's /boot, found {kernels}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    initrd = chroot / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise ImageBuildError(f"kernel {version} has no initramfs at {initrd}")
    shutil.copyfile(kernels[0], destination / "vmlinuz")
    shutil.copyfile(initrd, destination / "initrd.img")
    (destination / "kernel-version").write_text(version + "\n")


def write_manifest(directory: Path, recipe: Recipe, build_seconds: float) -> None:
    manifest = {
        "key": recipe.cache_key(),
        "suite": recipe.suite,
        "packages": list(recipe.packages),
        "kernel_version": (directory / "kernel-version").read_text().strip(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(build_seconds, 1),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return [point for point in points if (point + "/").startswith(prefix)]


def ensure_nothing_mounted(path: Path) -> None:
    """Unmount anything a build left under ``path``; refuse to go on if that fails."""
    for point in sorted(mounts_under(path), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    left = mounts_under(path)
    if left:
        raise ImageBuildError(f"cannot unmount {left}; not touching {path}")


def remove_tree(path: Path) -> None:
    if path.exists():
        ensure_nothing_mounted(path)  # rmtree through a bind mount would delete host files
        shutil.rmtree(path)


def remove_stale_builds(directory: Path, log: Callable[[str], None]) -> None:
    """Staging directories left by builders that died; safe because we hold the lock."""
    for stale in directory.glob(".build-*"):
        if stale.is_dir():
            log(f"removing stale build directory {stale}")
            remove_tree(stale)


def prune_old_images(directory: Path, keep: Image, log: Callable[[str], None]) -> None:
    """Delete all but the newest images, sparing any a running VM still boots from (its ssh key is there)."""
    others = [Image(path) for path in directory.iterdir()
              if path.is_dir() and not path.name.startswith(".") and path != keep.directory]
    complete = sorted((image for image in others if image.is_complete()),
                      key=lambda image: image.manifest.stat().st_mtime, reverse=True)
    in_use = paths_in_process_cmdlines([str(image.directory) for image in complete])
    for old in complete[IMAGES_KEPT - 1:]:
        if str(old.directory) in in_use:
            log(f"keeping old image {old.directory}: a running VM uses it")
            continue
        log(f"removing old image {old.directory}")
        shutil.rmtree(old.directory)


def paths_in_process_cmdlines(paths: list[str]) -> set[str]:
    found = set()
    for cmdline_file in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = cmdline_file.read_bytes().decode(errors="replace")
        except OSError:  # the process exited
            continue
        found.update(path for path in paths if path + "/" in cmdline)
    return found


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text.splitlines()[-lines:])
