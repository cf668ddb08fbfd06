"""Build a Debian base image (bookworm by default; $BPFQUOTA_RELEASE chooses; amd64 by default,
$BPFQUOTA_ARCH=arm64 for an arm64 one) once and cache it by a hash of its recipe.

Layout under the cache root (``$BPFQUOTA_CACHE``, default /var/tmp/bpfquota-testbed):

    images/<key>/disk.img        raw disk (sparse, 4 GiB): MBR with GRUB's boot code, GRUB's core
                                 image in the gap before partition 1, the ext4 root in partition 1
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
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

DEFAULT_CACHE_ROOT = "/var/tmp/bpfquota-testbed"
IMAGES_KEPT = 2  # the newest images of each release survive a rebuild, so switching branches back is cheap
# The Debian releases the test bed boots, each with its own kernel: $BPFQUOTA_RELEASE picks one.
RELEASES = {"bookworm": "Debian 12, Linux 6.1", "trixie": "Debian 13, Linux 6.12"}
DEFAULT_RELEASE = "bookworm"
# The architectures the test bed builds images for ($BPFQUOTA_ARCH), with what QEMU emulates for
# each: an amd64 image boots under qemu-system-x86_64, an arm64 one under qemu-system-aarch64
# (machine virt, direct kernel boot only: no GRUB). Building an arm64 image on an x86_64 host runs
# the image's arm64 programs (debootstrap's second stage, the configure script) through
# qemu-user-static, registered with binfmt_misc (see ensure_foreign_binaries).
ARCHES = {"amd64": "x86_64, qemu-system-x86_64", "arm64": "aarch64, qemu-system-aarch64 -M virt"}
DEFAULT_ARCH = "amd64"
LOG_TAIL_LINES = 40

PACKAGES = (
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "python3",
    "python3-pytest",
    "python3-hypothesis",  # tests/vm/test_stateful.py
    "python3-yaml",
    # Most Debian servers have it (unattended-upgrades needs it); without it every first rollout
    # spends ~40 s of TCG time on ansible's apt module installing it. The role tests remove it to
    # cover a minimal host.
    "python3-apt",
    "nfs-kernel-server",
    "nfs-common",
    "libbpf1",
    "bpftool",
    # bpfquota top (tests/vm/test_top.py): BCC compiles against the running kernel's headers;
    # linux-headers-amd64 comes from the same archive as linux-image-amd64, so their versions match.
    "python3-bpfcc",
    "linux-headers-amd64",
    # The agent's metrics file, served as Prometheus scrapes it (tests/vm/test_soft.py), and the
    # textfile directory the rollout's post-verify checks for freshness on the molecule VMs.
    "prometheus-node-exporter",
    "e2fsprogs",
    "iproute2",
    "procps",
    "psmisc",  # fuser: shutdown kills what holds NFS files before unmounting
    "iputils-ping",  # VMs on the private LAN
    "util-linux",
    "kmod",
    "ca-certificates",
    "coreutils",
    # GRUB, for VMs booted from their own disk (VM.boot(boot="grub")): there update-grub really
    # changes the next boot's kernel command line.
    "grub-pc",
    "grub-pc-bin",
    "grub2-common",
)

# The disk: an msdos partition table with partition 1, the ext4 root, from 1 MiB to the end.
# GRUB's boot code is in the MBR and its core image in the sectors between MBR and partition 1.
SECTOR_SIZE = 512
PARTITION_OFFSET = 1 << 20
ROOT_DEVICE = "/dev/vda1"
ROOT_LABEL = "bpfquota-root"
GRUB_ROOT = "(hd0,msdos1)"
GRUB_CORE_MODULES = ("biosdisk", "part_msdos", "ext2")
# Parameters of every boot, however the kernel is started: the serial console is where boot
# failures are diagnosed. The arm64 virt machine's serial port is a PL011, ttyAMA0.
GUEST_CMDLINE = "console=ttyS0 mitigations=off"  # amd64's: guest_cmdline(arch)
SERIAL_CONSOLES = {"amd64": "ttyS0", "arm64": "ttyAMA0"}


def guest_cmdline(arch: str = DEFAULT_ARCH) -> str:
    """The parameters of every boot of an image of ``arch``: its serial console, no mitigations."""
    return f"console={SERIAL_CONSOLES[arch]} mitigations=off"


# The private LAN between VMs (VM.boot(lan_ip=...)): its NFS clients may mount every VM's export.
LAN_SUBNET = "192.168.77.0/24"

NFS_EXPORT_OPTIONS = "rw,sync,no_subtree_check,no_root_squash,insecure,fsid=0,crossmnt"

# Loopback for the VM's own client, the private LAN for other VMs' clients; 10.0.2.0/24 is QEMU
# user-net.
EXPORTS = (
    "# /srv/nfs is the NFSv4 pseudo-root (fsid=0): v4 clients mount SERVER:/, v3 clients SERVER:/srv/nfs\n"
    f"/srv/nfs 127.0.0.1/8({NFS_EXPORT_OPTIONS}) {LAN_SUBNET}({NFS_EXPORT_OPTIONS})"
    f" 10.0.2.0/24({NFS_EXPORT_OPTIONS})\n"
)

# The guest's own scripts and units are real files (testbed/guest/, which shellcheck lints through
# ansible-test sanity), copied into the image as they are.
GUEST_DIR = Path(__file__).resolve().parent / "guest"


def guest_file(name: str) -> str:
    return (GUEST_DIR / name).read_text()


MOUNT_NFS_SCRIPT = guest_file("testbed-mount-nfs.sh")

UNMOUNT_NFS_SCRIPT = guest_file("testbed-unmount-nfs.sh")

# Units stop in reverse start order, so After=nfs-server.service makes this one stop (and
# unmount) before the server does.
NFS_UNMOUNT_UNIT = guest_file("testbed-nfs-unmount.service")

# GRUB's settings, for update-grub in the guest. The kernel gets GRUB_CMDLINE_LINUX (empty here:
# drop-ins in /etc/default/grub.d add to it) then GRUB_CMDLINE_LINUX_DEFAULT. GRUB itself talks
# on the serial console, the only one there is.
DEFAULT_GRUB = f"""# bpfquota test bed: update-grub makes /boot/grub/grub.cfg from this file and /etc/default/grub.d/*.cfg
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=menu
GRUB_RECORDFAIL_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT="{GUEST_CMDLINE}"
GRUB_CMDLINE_LINUX=""
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_LINUX_UUID=true
GRUB_DISABLE_LINUX_PARTUUID=true
GRUB_DISABLE_OS_PROBER=true
"""

# update-grub can't probe the disk inside the build chroot: this is, in short, what it writes in
# the guest, where it replaces this file. /vmlinuz and /initrd.img are the kernel package's
# links to the installed kernel.
INITIAL_GRUB_CFG = f"""# Written at image build; update-grub in the VM replaces it (from /etc/default/grub).
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set default=0
set timeout=0
menuentry 'Debian GNU/Linux' {{
    insmod part_msdos
    insmod ext2
    set root='{GRUB_ROOT[1:-1]}'
    echo 'Loading Linux ...'
    linux /vmlinuz root={ROOT_DEVICE} ro {GUEST_CMDLINE}
    initrd /initrd.img
}}
"""

GUEST_CONFIG_SCRIPT = guest_file("testbed-guest-config.sh")

# Before systemd-networkd, which reads the LAN's .network file only when it starts.
GUEST_CONFIG_UNIT = guest_file("testbed-guest-config.service")

# path inside the image -> (mode, content)
FILES: dict[str, tuple[int, str]] = {
    "etc/hostname": (0o644, "bpfquota-vm\n"),
    "etc/hosts": (
        0o644,
        "127.0.0.1 localhost\n127.0.1.1 bpfquota-vm\n::1 localhost ip6-localhost ip6-loopback\n",
    ),
    "etc/fstab": (0o644, f"{ROOT_DEVICE} / ext4 rw,errors=remount-ro 0 1\n"),
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
    "etc/systemd/system/testbed-guest-config.service": (0o644, GUEST_CONFIG_UNIT),
    "usr/local/sbin/testbed-guest-config": (0o755, GUEST_CONFIG_SCRIPT),
    "etc/default/grub": (0o644, DEFAULT_GRUB),
    # An initramfs with just what mounts the root (6 MiB instead of 36): GRUB reads it through
    # the BIOS and the kernel unpacks it, both slow under TCG.
    "etc/initramfs-tools/conf.d/testbed.conf": (0o644, "MODULES=list\n"),
    "etc/initramfs-tools/modules": (0o644, "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n"),
    "boot/grub/grub.cfg": (0o644, INITIAL_GRUB_CFG),
}

# Runs inside the chroot after debootstrap and after FILES are written.
CONFIGURE_SCRIPT = r"""set -eux
systemctl enable systemd-networkd.service ssh.service nfs-server.service testbed-nfs-unmount.service \
    testbed-guest-config.service
# Nothing at boot may wait for the network or do periodic maintenance behind a test's back.
systemctl mask systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
mkdir -p /srv/nfs /mnt/nfs3 /mnt/nfs4
chmod 1777 /srv/nfs
# An empty root password allows login on the serial console for debugging; sshd refuses it.
passwd -d root
update-initramfs -u -k all
ls -l /boot/vmlinuz-* /boot/initrd.img-*
ls -l /vmlinuz /initrd.img  # the initial grub.cfg boots these links
"""
# (amd64: its text, comments included, is hashed into the image's key as it was before arm64.)
GRUB_SCRIPT = r"""# GRUB: the modules where grub.cfg loads them from, and the core image (which finds partition 1,
# then /boot/grub) that the build writes behind the MBR. A grub-pc upgrade would reinstall to vda.
cp -a /usr/lib/grub/i386-pc /boot/grub/
grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p "$GRUB_ROOT/boot/grub" $GRUB_CORE_MODULES
grub-editenv /boot/grub/grubenv create
echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | debconf-set-selections
"""
CLEAN_SCRIPT = r"""apt-get clean
rm -rf /var/lib/apt/lists/*
"""
CONFIGURE_SCRIPT_ARM64 = CONFIGURE_SCRIPT + CLEAN_SCRIPT
CONFIGURE_SCRIPT = (f"GRUB_ROOT='{GRUB_ROOT}'\nGRUB_CORE_MODULES='{' '.join(GRUB_CORE_MODULES)}'\n"
                    + CONFIGURE_SCRIPT + GRUB_SCRIPT + CLEAN_SCRIPT)
GRUB_PACKAGES = ("grub-pc", "grub-pc-bin", "grub2-common")
GRUB_FILES = ("etc/default/grub", "boot/grub/grub.cfg")


def packages_for(arch: str = DEFAULT_ARCH) -> tuple[str, ...]:
    """PACKAGES for an image of ``arch``: that architecture's kernel and headers; GRUB on amd64 only
    (an arm64 VM boots its kernel directly)."""
    if arch == DEFAULT_ARCH:
        return PACKAGES
    renamed = (name.replace("-amd64", f"-{arch}") if name.startswith("linux-") else name for name in PACKAGES)
    return tuple(name for name in renamed if name not in GRUB_PACKAGES)


def files_for(arch: str = DEFAULT_ARCH) -> dict[str, tuple[int, str]]:
    """FILES for an image of ``arch``: no GRUB configuration on arm64."""
    if arch == DEFAULT_ARCH:
        return dict(FILES)
    return {path: entry for path, entry in FILES.items() if path not in GRUB_FILES}


def configure_script_for(arch: str = DEFAULT_ARCH) -> str:
    return CONFIGURE_SCRIPT if arch == DEFAULT_ARCH else CONFIGURE_SCRIPT_ARM64


class ImageBuildError(RuntimeError):
    """The base image could not be built; the message carries the tail of the build log."""


def release_from_env() -> str:
    """The release $BPFQUOTA_RELEASE names (default bookworm); ImageBuildError naming the choices."""
    release = os.environ.get("BPFQUOTA_RELEASE") or DEFAULT_RELEASE
    if release not in RELEASES:
        choices = ", ".join(f"{name} ({what})" for name, what in RELEASES.items())
        raise ImageBuildError(f"BPFQUOTA_RELEASE={release!r} is not a release the test bed builds: use one of {choices}")
    return release


def arch_from_env() -> str:
    """The architecture $BPFQUOTA_ARCH names (default amd64; aarch64 and x86_64, as uname -m says,
    mean arm64 and amd64); ImageBuildError naming the choices."""
    arch = os.environ.get("BPFQUOTA_ARCH") or DEFAULT_ARCH
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    if arch not in ARCHES:
        choices = ", ".join(f"{name} ({what})" for name, what in ARCHES.items())
        raise ImageBuildError(f"BPFQUOTA_ARCH={arch!r} is not an architecture the test bed builds: use one of {choices}")
    return arch


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the image's content; its hash names the cache entry."""

    suite: str = field(default_factory=release_from_env)
    arch: str = field(default_factory=arch_from_env)
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    packages: tuple[str, ...] | None = None  # None: packages_for(arch)
    files: dict[str, tuple[int, str]] | None = None  # None: files_for(arch)
    configure_script: str | None = None  # None: configure_script_for(arch)
    image_size: str = "4G"
    partition_offset: int = PARTITION_OFFSET
    # Bump when the way the disk is put together (build_image's steps) changes.
    disk_layout: int = 2

    def __post_init__(self) -> None:
        if self.packages is None:
            object.__setattr__(self, "packages", packages_for(self.arch))
        if self.files is None:
            object.__setattr__(self, "files", files_for(self.arch))
        if self.configure_script is None:
            object.__setattr__(self, "configure_script", configure_script_for(self.arch))

    def cache_key(self) -> str:
        # amd64 leaves the key as it was before images had an architecture: its cached images stay.
        arch = {} if self.arch == DEFAULT_ARCH else {"arch": self.arch}
        canonical = json.dumps(
            {
                **arch,
                "suite": self.suite,
                "mirror": self.mirror,
                "variant": self.variant,
                "packages": sorted(self.packages),
                "files": {path: [mode, text] for path, (mode, text) in sorted(self.files.items())},
                "configure_script": self.configure_script,
                "image_size": self.image_size,
                "partition_offset": self.partition_offset,
                "disk_layout": self.disk_layout,
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
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def rootfs(self) -> Path:  # the name before the disk had partitions
        return self.disk

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

    @property
    def arch(self) -> str:
        """amd64 or arm64, as the manifest says (an image from before the choice is amd64)."""
        return arch_of(self)

    def is_complete(self) -> bool:
        parts = (self.disk, self.kernel, self.initrd, self.ssh_key, self.manifest)
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
            if recipe.arch != host_arch():
                ensure_foreign_binaries(recipe.arch, log)
            step.run("debootstrap", debootstrap_command(recipe, chroot, deb_cache))
            write_files(chroot, recipe.files)
            step.run("ssh key", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bpfquota-testbed",
                                 "-f", str(staging / "id_ed25519")])
            authorize_key(chroot, staging / "id_ed25519.pub")
            step.run("configure", ["chroot", str(chroot), "/bin/sh", "-c", recipe.configure_script])
            copy_boot_files(chroot, staging)
            if recipe.arch == DEFAULT_ARCH:
                boot_code = (chroot / "usr/lib/grub/i386-pc/boot.img").read_bytes()
                core_image = (chroot / "boot/grub/i386-pc/core.img").read_bytes()
            else:  # booted by QEMU's -kernel only: a partition table, no boot code
                boot_code, core_image = bytes(MBR_BOOT_CODE_SIZE), b""
            ensure_nothing_mounted(chroot)
            disk = staging / "disk.img"
            disk_size = size_in_bytes(recipe.image_size)
            with open(disk, "wb") as disk_file:
                disk_file.truncate(disk_size)  # sparse
            step.run("mke2fs", mke2fs_command(chroot, disk, disk_size, recipe.partition_offset))
            write_boot_sectors(disk, disk_size, recipe.partition_offset, boot_code, core_image)
        remove_tree(chroot)
        write_manifest(staging, recipe, time.monotonic() - started)
        os.rename(staging, image.directory)
    except BaseException:
        remove_tree(staging)
        raise
    log(f"image {image.key} built in {time.monotonic() - started:.0f} s")


def size_in_bytes(size: str) -> int:
    """'4G', '512M', '4096K' or a number of bytes, in bytes (binary units, like mke2fs)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = size.strip().upper()
    if text[-1:] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def mke2fs_command(chroot: Path, disk: Path, disk_size: int, partition_offset: int) -> list[str]:
    """Make the root file system from ``chroot`` in partition 1 of ``disk``: no loop device needed."""
    fs_kib = (disk_size - partition_offset) // 1024
    return ["mke2fs", "-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-E", f"offset={partition_offset}",
            "-d", str(chroot), str(disk), f"{fs_kib}k"]


# GRUB's boot.img (include/grub/i386/pc/boot.h): the boot code is the MBR's first 440 bytes; it
# loads the core image's first sector from the LBA at KERNEL_SECTOR (1 by default, where
# write_boot_sectors puts it); grub-mkimage has filled in the length of the rest, which follows.
MBR_BOOT_CODE_SIZE = 440
MBR_DISK_SIGNATURE = 0x62716664  # any fixed value: the image is reproducible
MBR_PARTITION_TABLE = 446
BOOT_DRIVE_CHECK = 0x66  # a jump that trusts only 0x80-0x8f as the boot drive; grub-install nops it
CHS_LBA_ONLY = b"\xfe\xff\xff"  # cylinder 1023, head 254, sector 63: "use the LBA fields"
PARTITION_TYPE_LINUX = 0x83


def master_boot_record(boot_code: bytes, start_sector: int, sectors: int) -> bytes:
    """GRUB's boot code, then an msdos partition table with one active Linux partition."""
    if len(boot_code) < MBR_BOOT_CODE_SIZE:
        raise ImageBuildError(f"GRUB's boot.img is {len(boot_code)} bytes, expected at least {MBR_BOOT_CODE_SIZE}")
    code = bytearray(boot_code[:MBR_BOOT_CODE_SIZE])
    code[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    entry = struct.pack("<B3sB3sII", 0x80, CHS_LBA_ONLY, PARTITION_TYPE_LINUX, CHS_LBA_ONLY,
                        start_sector, sectors)
    record = bytes(code) + struct.pack("<IH", MBR_DISK_SIGNATURE, 0) + entry + bytes(16 * 3) + b"\x55\xaa"
    assert len(record) == SECTOR_SIZE
    return record


def write_boot_sectors(disk: Path, disk_size: int, partition_offset: int, boot_code: bytes,
                       core_image: bytes) -> None:
    """The MBR (boot code and partition table) and GRUB's core image right after it, in sector 1."""
    if SECTOR_SIZE + len(core_image) > partition_offset:
        raise ImageBuildError(f"GRUB's core image ({len(core_image)} bytes) does not fit before partition 1")
    start = partition_offset // SECTOR_SIZE
    record = master_boot_record(boot_code, start, disk_size // SECTOR_SIZE - start)
    with open(disk, "r+b") as disk_file:
        disk_file.write(record)
        disk_file.write(core_image)


def host_arch() -> str:
    """The Debian architecture of this machine (amd64 on x86_64, arm64 on aarch64)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# binfmt_misc entry names and qemu-user-static interpreters, per Debian architecture.
QEMU_USER = {"arm64": ("qemu-aarch64", "/usr/bin/qemu-aarch64-static")}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF_DIR = Path("/usr/lib/binfmt.d")  # qemu-user-static's entries, for systemd-binfmt


def binfmt_registration(conf_line: str, interpreter: str) -> str:
    """qemu-user-static's binfmt.d line (":name:M::magic:mask:interpreter:flags") with the static
    interpreter and the F flag: the kernel opens the interpreter at registration, so it runs
    inside a chroot that lacks it."""
    fields = conf_line.strip().split(":")
    if len(fields) != 8 or fields[2] != "M":
        raise ImageBuildError(f"unexpected binfmt_misc entry {conf_line.strip()!r}")
    fields[6] = interpreter
    fields[7] = "".join(sorted(set(fields[7].replace("P", "")) | {"F"}))
    return ":".join(fields)


def ensure_foreign_binaries(arch: str, log: Callable[[str], None] = log_to_stderr,
                            binfmt_dir: Path = BINFMT_DIR, conf_dir: Path = BINFMT_CONF_DIR) -> None:
    """Make this host run ``arch``'s programs (in the chroot) through qemu-user-static: mount
    binfmt_misc if needed and register qemu-user-static's entry with the F flag, unless an entry
    is there already. Needs root and qemu-user-static."""
    if arch not in QEMU_USER:
        raise ImageBuildError(f"building an {arch} image on {host_arch()} is not supported")
    name, interpreter = QEMU_USER[arch]
    if (binfmt_dir / name).is_file() and (binfmt_dir / name).read_text().startswith("enabled"):
        return
    if not Path(interpreter).is_file():
        raise ImageBuildError(f"building an {arch} image on {host_arch()} needs {interpreter}: "
                              "apt-get install qemu-user-static")
    if not (binfmt_dir / "register").exists():
        result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ImageBuildError(f"cannot mount binfmt_misc on {binfmt_dir} (needed to run {arch} "
                                  f"programs through {interpreter}): {result.stderr.strip()}")
    conf = conf_dir / f"{name}.conf"
    try:
        entry = binfmt_registration(conf.read_text().splitlines()[0], interpreter)
        (binfmt_dir / "register").write_text(entry)
    except OSError as error:
        raise ImageBuildError(f"cannot register {interpreter} with binfmt_misc: {error}") from error
    log(f"registered {interpreter} with binfmt_misc for {arch} programs")


def debootstrap_command(recipe: Recipe, target: Path, deb_cache: Path) -> list[str]:
    return [
        "debootstrap",
        f"--arch={recipe.arch}",
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
        "arch": recipe.arch,
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
    """Delete all but the newest images of keep's release and architecture, sparing any a running VM
    still boots from (its ssh key is there); the other releases' and architectures' images stay."""
    others = [Image(path) for path in directory.iterdir()
              if path.is_dir() and not path.name.startswith(".") and path != keep.directory]
    kind = (suite_of(keep), arch_of(keep))
    complete = sorted((image for image in others if image.is_complete() and (suite_of(image), arch_of(image)) == kind),
                      key=lambda image: image.manifest.stat().st_mtime, reverse=True)
    in_use = paths_in_process_cmdlines([str(image.directory) for image in complete])
    for old in complete[IMAGES_KEPT - 1:]:
        if str(old.directory) in in_use:
            log(f"keeping old image {old.directory}: a running VM uses it")
            continue
        log(f"removing old image {old.directory}")
        shutil.rmtree(old.directory)


def suite_of(image: Image) -> str | None:
    try:
        return json.loads(image.manifest.read_text()).get("suite")
    except (OSError, ValueError):
        return None


def arch_of(image: Image) -> str:
    """The image's architecture; images built before there was a choice are amd64."""
    try:
        return json.loads(image.manifest.read_text()).get("arch") or DEFAULT_ARCH
    except (OSError, ValueError):
        return DEFAULT_ARCH


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
