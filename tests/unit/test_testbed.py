"""Unit tests for the pure parts of the VM test bed (no VM, no image build)."""

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from testbed import image as image_module
from testbed import vm as vm_module
from testbed import supervisor as supervisor_module
from testbed.cli import boot_setting_differences, build_parser, pytest_remote_command, split_at_double_dash
from testbed.image import Image, Recipe
from testbed.workspace import WorkspaceError, source_files


def fake_image(tmp_path: Path) -> Image:
    return Image(tmp_path / "images" / "abc123")


# ----- cache key


def test_cache_key_is_stable():
    assert Recipe().cache_key() == Recipe().cache_key()


def test_cache_key_ignores_package_order():
    packages = Recipe().packages
    assert Recipe(packages=tuple(reversed(packages))).cache_key() == Recipe().cache_key()


@pytest.mark.parametrize(
    "change",
    [
        {"packages": image_module.PACKAGES + ("strace",)},
        {"configure_script": image_module.CONFIGURE_SCRIPT + "true\n"},
        {"files": {**image_module.FILES, "etc/motd": (0o644, "hi\n")}},
        {"files": {**image_module.FILES, "etc/hostname": (0o644, "other\n")}},
        {"files": {**image_module.FILES, "etc/hostname": (0o600, "bpfquota-vm\n")}},
        {"suite": "trixie"},
        {"image_size": "8G"},
        {"partition_offset": 2 << 20},
        {"disk_layout": 99},
    ],
)
def test_cache_key_changes_with_recipe(change):
    assert Recipe(**change).cache_key() != Recipe().cache_key()


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BPFQUOTA_CACHE", str(tmp_path))
    assert image_module.cache_root() == tmp_path
    monkeypatch.delenv("BPFQUOTA_CACHE")
    assert image_module.cache_root() == Path(image_module.DEFAULT_CACHE_ROOT)


def test_incomplete_image_is_not_reused(tmp_path):
    image = fake_image(tmp_path)
    image.directory.mkdir(parents=True)
    for part in (image.rootfs, image.kernel, image.initrd, image.ssh_key):
        part.write_text("")
    assert not image.is_complete()  # the manifest is written last and marks completion
    image.manifest.write_text("{}")
    assert image.is_complete()


def test_ensure_image_reuses_complete_image_without_building(tmp_path, monkeypatch):
    recipe = Recipe()
    image = Image(tmp_path / "images" / recipe.cache_key())
    image.directory.mkdir(parents=True)
    for part in (image.rootfs, image.kernel, image.initrd, image.ssh_key, image.manifest):
        part.write_text("")
    monkeypatch.setattr(image_module, "build_image", lambda *a: pytest.fail("must not rebuild"))
    assert image_module.ensure_image(recipe, root=tmp_path) == image


def test_debootstrap_command_carries_recipe(tmp_path):
    argv = image_module.debootstrap_command(Recipe(), tmp_path / "chroot", tmp_path / "debs")
    assert argv[0] == "debootstrap"
    assert "--variant=minbase" in argv
    include = next(arg for arg in argv if arg.startswith("--include="))
    assert "linux-image-amd64" in include and "nfs-kernel-server" in include
    assert argv[-3:] == ["bookworm", str(tmp_path / "chroot"), "http://deb.debian.org/debian"]


def test_exports_allow_loopback_the_private_lan_and_user_net():
    exports = image_module.FILES["etc/exports"][1]
    line = next(line for line in exports.splitlines() if line.startswith("/srv/nfs"))
    assert "127.0.0.1/8(" in line and "10.0.2.0/24(" in line
    assert f"{image_module.LAN_SUBNET}(" in line and image_module.LAN_SUBNET == "192.168.77.0/24"
    for client_options in re.findall(r"\(([^)]*)\)", line):
        for option in ("rw", "sync", "no_subtree_check", "no_root_squash", "insecure", "fsid=0", "crossmnt"):
            assert option in client_options.split(",")


def test_failed_build_step_reports_log_tail(tmp_path):
    log_path = tmp_path / "build.log"
    with open(log_path, "w") as log_file:
        runner = image_module.StepRunner(log_file, log_path, log=lambda message: None)
        with pytest.raises(image_module.ImageBuildError, match="exit code 3") as raised:
            runner.run("demo", ["sh", "-c", "echo something broke; exit 3"])
    assert "something broke" in str(raised.value)


# ----- QEMU command line


def qemu_argv(tmp_path, **overrides):
    settings = dict(image=fake_image(tmp_path), overlay=tmp_path / "overlay.qcow2",
                    serial_log=tmp_path / "serial.log", ssh_port=2222)
    settings.update(overrides)
    return vm_module.qemu_command(**settings)


def option_value(argv, option):
    return argv[argv.index(option) + 1]


def test_qemu_uses_tcg_and_never_kvm(tmp_path):
    argv = qemu_argv(tmp_path)
    assert argv[0] == "qemu-system-x86_64"
    assert option_value(argv, "-accel") == "tcg,thread=single"
    assert option_value(argv, "-cpu") == "max"
    assert "-enable-kvm" not in argv and "kvm" not in " ".join(argv)


def test_qemu_exits_on_guest_reboot_for_the_supervisor_to_start_it_again(tmp_path):
    argv = qemu_argv(tmp_path)
    assert "-no-reboot" in argv
    assert option_value(argv, "-qmp") == "unix:qmp.sock,server=on,wait=off"  # relative: cwd is the run dir


def test_console_file_keeps_every_boot(tmp_path):
    argv = qemu_argv(tmp_path)
    assert option_value(argv, "-chardev") == f"file,id=console,path={tmp_path / 'serial.log'},append=on"
    assert option_value(argv, "-serial") == "chardev:console"


def test_qemu_defaults_to_two_cpus_and_two_gib(tmp_path):
    argv = qemu_argv(tmp_path)
    assert option_value(argv, "-smp") == "2"
    assert option_value(argv, "-m") == "2048"


def test_qemu_resources_are_configurable(tmp_path):
    argv = qemu_argv(tmp_path, memory_mb=4096, cpus=1)
    assert option_value(argv, "-smp") == "1"
    assert option_value(argv, "-m") == "4096"


def test_qemu_boots_cached_kernel_with_virtio_overlay(tmp_path):
    image = fake_image(tmp_path)
    argv = qemu_argv(tmp_path, image=image)
    assert option_value(argv, "-kernel") == str(image.kernel)
    assert option_value(argv, "-initrd") == str(image.initrd)
    assert option_value(argv, "-drive") == f"file={tmp_path / 'overlay.qcow2'},if=virtio,format=qcow2"
    assert "-boot" not in argv


def test_qemu_forwards_ssh_port_on_loopback(tmp_path):
    argv = qemu_argv(tmp_path, ssh_port=40222)
    assert option_value(argv, "-netdev") == "user,id=n0,hostfwd=tcp:127.0.0.1:40222-:22"
    assert "virtio-net-pci,netdev=n0" in argv


def test_kernel_cmdline_appends_extra_parameters(tmp_path):
    append = option_value(qemu_argv(tmp_path, extra_cmdline="lsm=lockdown,capability,bpf"), "-append")
    assert append.startswith("root=/dev/vda1 rw")
    assert "console=ttyS0" in append
    assert append.endswith(" lsm=lockdown,capability,bpf")
    assert vm_module.kernel_cmdline("") == vm_module.BASE_CMDLINE


# ----- ports, names, ssh


def test_picked_port_is_free_and_bindable():
    port = vm_module.pick_free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))


def test_picked_ports_differ_while_one_is_held():
    with socket.socket() as held:
        held.bind(("127.0.0.1", vm_module.pick_free_port()))
        held.listen()
        assert vm_module.pick_free_port() != held.getsockname()[1]


@pytest.mark.parametrize("name", ["test", "vm-1", "a.b_c"])
def test_valid_vm_names(name, tmp_path):
    assert vm_module.run_dir_for(name, tmp_path) == tmp_path / "run" / name


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "a b"])
def test_invalid_vm_names_are_rejected(name, tmp_path):
    with pytest.raises(vm_module.VMError):
        vm_module.run_dir_for(name, tmp_path)


def test_ssh_argv_is_non_interactive_and_ignores_host_keys(tmp_path):
    vm = vm_module.VM("t", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=0)
    argv = vm.ssh_argv("uname -r")
    for option in ("BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"):
        assert option in argv
    assert any(arg.startswith("ConnectTimeout=") for arg in argv)
    assert option_value(argv, "-p") == "2200"
    assert option_value(argv, "-i") == str(fake_image(tmp_path).ssh_key)
    assert argv[-3:] == ["root@127.0.0.1", "--", "uname -r"]


def test_remote_command_quotes_sequences_but_not_strings():
    assert vm_module.as_remote_command("echo $HOME | wc") == "echo $HOME | wc"
    assert vm_module.as_remote_command(["echo", "a b", "$x"]) == "echo 'a b' '$x'"


def test_command_error_carries_everything():
    error = vm_module.CommandError(vm_module.RunResult("false --flag", 7, "out text\n", "err text\n"))
    for part in ("false --flag", "7", "out text", "err text"):
        assert part in str(error)


def test_dead_pid_is_not_a_running_vm(tmp_path):
    process = subprocess.Popen(["true"])
    process.wait()
    assert not vm_module.qemu_pid_alive(process.pid, tmp_path)
    assert not vm_module.qemu_pid_alive(0, tmp_path)


def test_fatal_console_line_is_detected(tmp_path):
    vm = vm_module.VM("t", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=0)
    vm.serial_log.write_text("booting\n[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    assert "Kernel panic" in vm.fatal_console_line()
    vm.serial_log.write_text("booting\nWelcome to Debian\n")
    assert vm.fatal_console_line() is None


def test_console_before_a_reboot_is_ignored(tmp_path):
    vm = vm_module.VM("t", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=0)
    vm.serial_log.write_text("Kernel panic - not syncing: from a test that crashed the first boot\n")
    size = vm.serial_log_size()
    with open(vm.serial_log, "a") as console:
        console.write("second boot\nWelcome to Debian\n")
    assert vm.fatal_console_line(size) is None


# ----- CLI helpers


def test_split_at_double_dash():
    assert split_at_double_dash(["pytest", "--keep", "--", "-q", "--", "x"]) == (["pytest", "--keep"], ["-q", "--", "x"])
    assert split_at_double_dash(["up", "vm"]) == (["up", "vm"], [])


def test_pytest_remote_command_quotes_arguments():
    command = pytest_remote_command(["-q", "-k", "a and b"])
    assert command.startswith("cd /root/bpfquota && python3 -m pytest -p no:cacheprovider -q -k 'a and b'")
    assert command.endswith("--junitxml=/root/junit.xml")


# ----- which files get copied


def make_tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "top.txt").write_text("top\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "junk.pyc").write_text("")
    (root / "pkg" / "self").symlink_to(".")


def test_plain_tree_copies_files_and_links_not_caches(tmp_path):
    make_tree(tmp_path)
    files = source_files(tmp_path)
    assert files == ["pkg", "pkg/mod.py", "pkg/self", "top.txt"]


def test_git_tree_copies_tracked_and_untracked_but_not_ignored(tmp_path):
    make_tree(tmp_path)
    (tmp_path / ".gitignore").write_text("__pycache__/\n/build/\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "prog.bpf.o").write_text("elf")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "pkg/mod.py", ".gitignore"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    (tmp_path / "untracked.py").write_text("")
    assert source_files(tmp_path) == [".gitignore", "pkg", "pkg/mod.py", "pkg/self", "top.txt", "untracked.py"]
    with_build = source_files(tmp_path, includes=["build"])
    assert "build/prog.bpf.o" in with_build and "build" in with_build


def test_missing_include_is_an_error(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(WorkspaceError, match="does not exist"):
        source_files(tmp_path, includes=["build/prog.bpf.o"])


def test_include_outside_source_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "elsewhere").write_text("")
    with pytest.raises(WorkspaceError, match="outside"):
        source_files(tmp_path / "src", includes=[str(tmp_path / "elsewhere")])


def test_recipe_is_a_frozen_dataclass():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Recipe().suite = "sid"


def make_complete_image(directory, name: str, age: int, manifest=None) -> Image:
    """A complete image (every part present) whose manifest is `age` seconds old; the manifest holds
    `manifest` as JSON, or nothing."""
    image = Image(directory / name)
    image.directory.mkdir()
    for part in (image.rootfs, image.kernel, image.initrd, image.ssh_key):
        part.write_text("")
    image.manifest.write_text(json.dumps(manifest) if manifest is not None else "")
    os.utime(image.manifest, (time.time() - age, time.time() - age))
    return image


def test_prune_keeps_newest_and_images_running_vms_use(tmp_path):
    def complete_image(name: str, age: int) -> Image:
        return make_complete_image(tmp_path, name, age)

    current = complete_image("current", 0)
    previous = complete_image("previous", 10)
    in_use = complete_image("in-use", 20)
    stale = complete_image("stale", 30)
    holder = subprocess.Popen(["sh", "-c", "sleep 30", str(in_use.directory) + "/vmlinuz"])
    while "sleep 30" not in psutil.Process(holder.pid).cmdline():
        assert holder.poll() is None
        time.sleep(0.01)  # until the child has exec'd
    try:
        image_module.prune_old_images(tmp_path, keep=current, log=lambda message: None)
    finally:
        holder.kill()
        holder.wait()
    assert current.directory.exists() and previous.directory.exists() and in_use.directory.exists()
    assert not stale.directory.exists()


def test_prune_counts_each_release_apart(tmp_path):
    def complete_image(name: str, suite: str, age: int) -> Image:
        return make_complete_image(tmp_path, name, age, {"suite": suite})

    current = complete_image("bookworm-new", "bookworm", 0)
    previous = complete_image("bookworm-old", "bookworm", 10)
    stale = complete_image("bookworm-older", "bookworm", 20)
    trixie = [complete_image("trixie-%d" % age, "trixie", age) for age in (30, 40, 50)]
    image_module.prune_old_images(tmp_path, keep=current, log=lambda message: None)
    assert current.directory.exists() and previous.directory.exists() and not stale.directory.exists()
    assert all(image.directory.exists() for image in trixie)  # another release's images: its own builds prune them


def test_release_comes_from_the_environment_and_a_bad_one_names_the_choices(monkeypatch):
    monkeypatch.delenv("BPFQUOTA_RELEASE", raising=False)
    assert Recipe().suite == "bookworm"
    monkeypatch.setenv("BPFQUOTA_RELEASE", "trixie")
    assert Recipe().suite == "trixie" and Recipe().cache_key() != Recipe(suite="bookworm").cache_key()
    monkeypatch.setenv("BPFQUOTA_RELEASE", "sid")
    with pytest.raises(image_module.ImageBuildError, match=r"'sid' is not a release .* bookworm .* trixie"):
        Recipe()


# ----- the disk: partition table, GRUB, file system


def test_size_in_bytes():
    assert image_module.size_in_bytes("4G") == 4 << 30
    assert image_module.size_in_bytes("512m") == 512 << 20
    assert image_module.size_in_bytes("64K") == 64 << 10
    assert image_module.size_in_bytes("1048576") == 1 << 20


def test_mke2fs_makes_the_root_in_partition_one_without_a_loop_device(tmp_path):
    argv = image_module.mke2fs_command(tmp_path / "chroot", tmp_path / "disk.img", 4 << 30, 1 << 20)
    assert argv[:2] == ["mke2fs", "-q"]
    assert option_value(argv, "-E") == "offset=1048576"
    assert option_value(argv, "-d") == str(tmp_path / "chroot")
    assert option_value(argv, "-L") == image_module.ROOT_LABEL
    assert argv[-2:] == [str(tmp_path / "disk.img"), f"{((4 << 30) - (1 << 20)) // 1024}k"]


def fake_boot_code() -> bytes:
    return bytes(range(256)) * 2  # 512 bytes, like boot.img


def test_master_boot_record_has_grub_boot_code_and_one_active_linux_partition():
    record = image_module.master_boot_record(fake_boot_code(), 2048, 8386560)
    assert len(record) == 512 and record[510:] == b"\x55\xaa"
    code = fake_boot_code()[:440]
    assert record[:0x66] == code[:0x66] and record[0x68:440] == code[0x68:]
    assert record[0x66:0x68] == b"\x90\x90"  # grub-install's patch: trust only 0x80.. as boot drive
    status, type_id, start, sectors = struct.unpack_from("<B3xB3xII", record, 446)
    assert (status, type_id, start, sectors) == (0x80, 0x83, 2048, 8386560)
    assert record[446 + 16:510] == bytes(48)  # no other partitions


def test_master_boot_record_refuses_short_boot_code():
    with pytest.raises(image_module.ImageBuildError, match="boot.img"):
        image_module.master_boot_record(b"\x00" * 100, 2048, 100)


def test_core_image_goes_right_after_the_mbr(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    core = b"CORE" * 1000
    image_module.write_boot_sectors(disk, 4 << 20, 1 << 20, fake_boot_code(), core)
    data = disk.read_bytes()
    assert data[510:512] == b"\x55\xaa"
    assert data[512:512 + len(core)] == core
    assert struct.unpack_from("<II", data, 446 + 8) == (2048, (4 << 20) // 512 - 2048)
    assert len(data) == 4 << 20


def test_core_image_that_does_not_fit_before_the_partition_is_refused(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    with pytest.raises(image_module.ImageBuildError, match="does not fit"):
        image_module.write_boot_sectors(disk, 1 << 20, 64 * 512, fake_boot_code(), bytes(64 * 512))


@pytest.mark.skipif(not (shutil.which("mke2fs") and shutil.which("e2fsck") and shutil.which("debugfs")),
                    reason="needs e2fsprogs")
def test_file_system_in_partition_one_survives_the_boot_sectors(tmp_path):
    (tmp_path / "root/etc").mkdir(parents=True)
    (tmp_path / "root/etc/hostname").write_text("vm\n")
    disk, size, offset = tmp_path / "disk.img", 32 << 20, 1 << 20
    with open(disk, "wb") as disk_file:
        disk_file.truncate(size)
    subprocess.run(image_module.mke2fs_command(tmp_path / "root", disk, size, offset), check=True)
    image_module.write_boot_sectors(disk, size, offset, fake_boot_code(), b"\xaa" * (offset - 512))
    assert disk.stat().st_size == size
    partition = f"{disk}?offset={offset}"
    subprocess.run(["e2fsck", "-fn", partition], check=True, capture_output=True)
    shown = subprocess.run(["debugfs", "-R", "cat /etc/hostname", partition], capture_output=True, text=True,
                           check=True)
    assert shown.stdout == "vm\n"


def test_root_device_is_partition_one_everywhere():
    assert image_module.ROOT_DEVICE == "/dev/vda1"
    assert image_module.FILES["etc/fstab"][1].split()[:3] == ["/dev/vda1", "/", "ext4"]
    assert "root=/dev/vda1 " in vm_module.BASE_CMDLINE
    assert "root=/dev/vda1 " in image_module.INITIAL_GRUB_CFG
    assert "GRUB_DISABLE_LINUX_UUID=true" in image_module.DEFAULT_GRUB.splitlines()  # update-grub: root=/dev/vda1 too


def grub_settings() -> dict:
    settings = {}
    for line in image_module.DEFAULT_GRUB.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value.strip('"')
    return settings


def test_default_grub_keeps_the_serial_console_and_boots_at_once():
    settings = grub_settings()
    assert "console=ttyS0" in settings["GRUB_CMDLINE_LINUX_DEFAULT"].split()
    assert "mitigations=off" in settings["GRUB_CMDLINE_LINUX_DEFAULT"].split()
    assert settings["GRUB_CMDLINE_LINUX"] == ""  # drop-ins add to it; the defaults stay
    assert 0 <= int(settings["GRUB_TIMEOUT"]) <= 1
    assert settings["GRUB_TERMINAL"] == "serial"


def test_both_boot_modes_give_the_guest_the_same_parameters():
    grub_args = grub_settings()["GRUB_CMDLINE_LINUX_DEFAULT"]
    assert grub_args == image_module.GUEST_CMDLINE
    assert vm_module.BASE_CMDLINE.endswith(" " + image_module.GUEST_CMDLINE)
    linux = next(line.split() for line in image_module.INITIAL_GRUB_CFG.splitlines() if line.strip().startswith("linux"))
    assert linux[1] == "/vmlinuz" and " ".join(linux[-len(grub_args.split()):]) == grub_args
    assert "set timeout=0" in image_module.INITIAL_GRUB_CFG


def test_image_has_grub_and_builds_its_core_image():
    for package in ("grub-pc", "grub-pc-bin", "grub2-common", "iputils-ping"):
        assert package in image_module.PACKAGES
    script = image_module.CONFIGURE_SCRIPT
    assert "grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img" in script
    assert "cp -a /usr/lib/grub/i386-pc /boot/grub/" in script
    assert "GRUB_ROOT='(hd0,msdos1)'" in script and "biosdisk part_msdos ext2" in script
    assert "boot/grub/grub.cfg" in image_module.FILES


def test_guest_config_unit_runs_before_networkd_and_is_enabled():
    unit = image_module.FILES["etc/systemd/system/testbed-guest-config.service"][1]
    assert "Before=systemd-networkd.service" in unit
    assert "testbed-guest-config.service" in image_module.CONFIGURE_SCRIPT
    script = image_module.FILES["usr/local/sbin/testbed-guest-config"][1]
    for setting in ("hostname", "lan-mac", "lan-address"):
        assert f"setting {setting}" in script
    assert vm_module.FW_CFG_PREFIX.rstrip("/") in script


# ----- boot modes and the private LAN in QEMU's argv


def test_grub_boot_starts_from_the_disk(tmp_path):
    argv = qemu_argv(tmp_path, boot="grub")
    for option in ("-kernel", "-initrd", "-append"):
        assert option not in argv
    assert option_value(argv, "-boot") == "order=c"
    assert option_value(argv, "-drive") == f"file={tmp_path / 'overlay.qcow2'},if=virtio,format=qcow2"


def test_grub_boot_refuses_an_extra_kernel_command_line(tmp_path):
    with pytest.raises(vm_module.VMError, match="grub_cmdline"):
        qemu_argv(tmp_path, boot="grub", extra_cmdline="lsm=bpf")
    with pytest.raises(vm_module.VMError, match="unknown boot mode"):
        qemu_argv(tmp_path, boot="pxe")


def test_lan_adds_a_second_nic_on_a_multicast_segment(tmp_path):
    lan = vm_module.Lan.parse("192.168.77.11", "grp")
    argv = qemu_argv(tmp_path, lan=lan)
    group, port = lan.multicast
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-netdev"]
    assert netdevs[1] == f"socket,id=lan,mcast={group}:{port},localaddr=127.0.0.1"
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert devices[:2] == ["virtio-net-pci,netdev=n0", "virtio-net-pci,netdev=lan,mac=52:54:c0:a8:4d:0b"]
    fw_cfg = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-fw_cfg"]
    assert "name=opt/bpfquota/lan-mac,string=52:54:c0:a8:4d:0b" in fw_cfg
    assert "name=opt/bpfquota/lan-address,string=192.168.77.11/24" in fw_cfg


def test_no_lan_no_second_nic(tmp_path):
    argv = qemu_argv(tmp_path)
    assert [arg for arg in argv if arg.startswith("socket,")] == []
    assert not any("lan-" in arg for arg in argv)


def test_hostname_goes_to_the_guest(tmp_path):
    argv = qemu_argv(tmp_path, hostname="node-1")
    assert option_value(argv, "-fw_cfg") == "name=opt/bpfquota/hostname,string=node-1"


@pytest.mark.parametrize("boot", ["kernel", "grub"])
def test_image_in_use_shows_in_the_command_line(tmp_path, boot):
    image = fake_image(tmp_path)
    command_line = "\0".join(qemu_argv(tmp_path, image=image, boot=boot))
    assert str(image.directory) + "/" in command_line  # what prune_old_images looks for


@pytest.mark.parametrize("name, hostname", [("node-1", "node-1"), ("a.b_c", "a-b-c"), ("x" * 64, "x" * 63)])
def test_hostname_for_vm_names(name, hostname):
    assert vm_module.hostname_for(name) == hostname


def test_lan_address_defaults_to_a_24_and_keeps_a_given_prefix():
    assert vm_module.Lan.parse("192.168.77.11").address == "192.168.77.11/24"
    assert vm_module.Lan.parse("10.9.0.5/16").address == "10.9.0.5/16"
    assert vm_module.Lan.parse("192.168.77.11").ip == "192.168.77.11"
    assert vm_module.Lan.parse("192.168.77.11").name == vm_module.DEFAULT_LAN


@pytest.mark.parametrize("address", ["192.168.77.300", "fe80::1", "192.168.77.0", "192.168.77.255", "x"])
def test_bad_lan_addresses_are_refused(address):
    with pytest.raises(vm_module.VMError):
        vm_module.Lan.parse(address)


def test_bad_lan_name_is_refused():
    with pytest.raises(vm_module.VMError, match="LAN name"):
        vm_module.Lan.parse("192.168.77.11", "a b")


def test_lan_multicast_endpoint_is_stable_and_differs_per_name():
    first = vm_module.Lan.parse("192.168.77.11", "one").multicast
    assert first == vm_module.Lan.parse("192.168.77.12", "one").multicast  # same segment
    assert first != vm_module.Lan.parse("192.168.77.11", "two").multicast
    group, port = first
    assert group.startswith("239.77.") and port in vm_module.LAN_PORTS


def test_lan_macs_differ_per_address_and_are_locally_administered():
    macs = {vm_module.Lan.parse(f"192.168.77.{n}").mac for n in range(1, 50)}
    assert len(macs) == 49
    assert all(int(mac[:2], 16) & 0b11 == 0b10 for mac in macs)  # unicast, locally administered


# ----- GRUB_CMDLINE_LINUX in /etc/default/grub


def test_grub_cmdline_replaces_the_assignment():
    text = image_module.DEFAULT_GRUB
    edited = vm_module.with_grub_cmdline_linux(text, "lsm=lockdown,capability")
    assert 'GRUB_CMDLINE_LINUX="lsm=lockdown,capability"' in edited.splitlines()
    assert f'GRUB_CMDLINE_LINUX_DEFAULT="{image_module.GUEST_CMDLINE}"' in edited.splitlines()
    assert len(edited.splitlines()) == len(text.splitlines())


def test_grub_cmdline_replaces_the_last_assignment_or_adds_one():
    text = 'GRUB_CMDLINE_LINUX="a"\nX=1\nexport GRUB_CMDLINE_LINUX="b"\n'
    assert vm_module.with_grub_cmdline_linux(text, "c") == 'GRUB_CMDLINE_LINUX="a"\nX=1\nGRUB_CMDLINE_LINUX="c"\n'
    assert vm_module.with_grub_cmdline_linux("X=1\n", "c") == 'X=1\nGRUB_CMDLINE_LINUX="c"\n'


@pytest.mark.parametrize("cmdline", ['a"b', "a$b", "a`b", "a\nb", "a\\b"])
def test_grub_cmdline_refuses_shell_syntax(cmdline):
    with pytest.raises(vm_module.VMError):
        vm_module.with_grub_cmdline_linux("", cmdline)


@pytest.mark.parametrize("settings, message", [
    ({"grub_cmdline": "lsm=bpf"}, "needs boot='grub'"),
    ({"boot": "grub", "grub_cmdline": "lsm=bpf", "wait": False}, "wait=True"),
    ({"boot": "grub", "grub_cmdline": 'a"b'}, "GRUB_CMDLINE_LINUX"),
    ({"boot": "bios"}, "unknown boot mode"),
    ({"boot": "grub", "extra_cmdline": "lsm=bpf"}, "extra_cmdline is for direct kernel boot"),
    ({"lan_ip": "300.1.1.1"}, "LAN address"),
])
def test_boot_refuses_bad_settings_before_starting_anything(tmp_path, settings, message):
    with pytest.raises(vm_module.VMError, match=message):
        vm_module.VM.boot("t", image=fake_image(tmp_path), root=tmp_path, **settings)
    assert not (tmp_path / "run").exists()


def test_set_grub_cmdline_needs_a_grub_boot(tmp_path):
    vm = vm_module.VM("t", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=0)
    with pytest.raises(vm_module.VMError, match="boots its kernel directly"):
        vm.set_grub_cmdline("lsm=bpf")


# ----- state.json


def test_state_records_boot_mode_and_lan_and_attach_reads_them(tmp_path, monkeypatch):
    lan = vm_module.Lan.parse("192.168.77.11", "grp")
    vm = vm_module.VM("node-1", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=4242, boot="grub", lan=lan)
    vm.save_state(memory_mb=2048, cpus=2)
    state = json.loads(vm.state_file.read_text())
    assert state["boot"] == "grub" and state["grub_cmdline"] is None
    assert state["lan"] == "grp" and state["lan_ip"] == "192.168.77.11"
    assert state["lan_address"] == "192.168.77.11/24" and state["lan_mac"] == lan.mac
    assert state["lan_multicast"] == "%s:%d" % lan.multicast
    assert state["hostname"] == "node-1" and state["ssh_port"] == 2200 and state["memory_mb"] == 2048
    vm.grub_cmdline = "lsm=x"
    vm.save_state()  # later updates keep what was recorded at start
    state = json.loads(vm.state_file.read_text())
    assert state["grub_cmdline"] == "lsm=x" and state["memory_mb"] == 2048

    monkeypatch.setattr(vm_module, "run_dir_for", lambda name, root=None: tmp_path)
    monkeypatch.setattr(vm_module, "qemu_pid_alive", lambda pid, run_dir: True)
    attached = vm_module.VM.attach("node-1")
    assert (attached.boot_mode, attached.lan, attached.grub_cmdline) == ("grub", lan, "lsm=x")
    assert attached.lan_ip == "192.168.77.11"


def test_state_of_a_vm_started_by_an_older_testbed_attaches_as_direct_boot(tmp_path, monkeypatch):
    (tmp_path / "state.json").write_text(json.dumps(
        {"name": "old", "pid": 1, "ssh_port": 2200, "image": str(tmp_path), "extra_cmdline": "lsm=x"}))
    monkeypatch.setattr(vm_module, "run_dir_for", lambda name, root=None: tmp_path)
    monkeypatch.setattr(vm_module, "qemu_pid_alive", lambda pid, run_dir: True)
    vm = vm_module.VM.attach("old")
    assert (vm.boot_mode, vm.lan, vm.extra_cmdline) == ("kernel", None, "lsm=x")


# ----- CLI


def test_cli_boot_options():
    args = build_parser().parse_args(["up", "n", "--boot", "grub", "--grub-cmdline", "lsm=a,b",
                                      "--lan-ip", "192.168.77.11", "--lan", "grp"])
    assert (args.boot, args.grub_cmdline, args.lan_ip, args.lan) == ("grub", "lsm=a,b", "192.168.77.11", "grp")
    defaults = build_parser().parse_args(["pytest"])
    assert (defaults.boot, defaults.grub_cmdline, defaults.lan_ip, defaults.lan) == ("kernel", None, None, "default")


def test_reusing_a_vm_needs_the_same_boot_settings(tmp_path):
    lan = vm_module.Lan.parse("192.168.77.11")
    vm = vm_module.VM("t", tmp_path, fake_image(tmp_path), ssh_port=2200, pid=0, boot="grub", lan=lan)
    same = build_parser().parse_args(["pytest", "--boot", "grub", "--lan-ip", "192.168.77.11/24"])
    assert boot_setting_differences(vm, same) == []
    other = build_parser().parse_args(["pytest", "--lan-ip", "192.168.77.12"])
    differences = boot_setting_differences(vm, other)
    assert len(differences) == 2 and differences[0].startswith("boot mode 'grub'")


# ----- supervisor: QEMU started again after a guest reboot

FAKE_QEMU = r'''
import json, os, signal, socket, sys, time
qmp = next(arg for arg in sys.argv if arg.startswith("unix:"))[5:].split(",")[0]
boots = int(open("boots").read()) + 1 if os.path.exists("boots") else 1
open("boots", "w").write(str(boots))
open("pid", "w").write(str(os.getpid()))
reasons = sys.argv[1].split(",")
reason = reasons[min(boots, len(reasons)) - 1]
server = socket.socket(socket.AF_UNIX)
server.bind(qmp)
server.listen(1)
stream = server.accept()[0].makefile("rw")
stream.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}) + "\n")
stream.flush()
stream.readline()
stream.write('{"return": {}}\n')
stream.flush()
if reason == "hang":
    def stop(signum, frame):
        stream.write(json.dumps({"event": "SHUTDOWN", "data": {"guest": False, "reason": "host-signal"}}) + "\n")
        stream.flush()
        sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    open("ready", "w").write("")
    time.sleep(60)
stream.write(json.dumps({"event": "SHUTDOWN", "data": {"guest": True, "reason": reason}}) + "\n")
stream.flush()
sys.exit(7 if reason == "guest-panic" else 0)
'''


def start_supervisor(tmp_path, reasons):
    (tmp_path / "fake_qemu.py").write_text(FAKE_QEMU)
    argv = [sys.executable, str(Path(supervisor_module.__file__)), "--",
            sys.executable, str(tmp_path / "fake_qemu.py"), reasons, "-qmp", "unix:qmp.sock,server=on,wait=off"]
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_supervisor_starts_qemu_again_after_each_guest_reboot(tmp_path):
    supervisor = start_supervisor(tmp_path, "guest-reset,guest-reset,guest-shutdown")
    output = supervisor.communicate(timeout=60)[0]
    assert supervisor.returncode == 0
    assert (tmp_path / "boots").read_text() == "3"
    assert output.count("the guest rebooted") == 2


def test_supervisor_ends_with_qemu_when_the_guest_did_not_reboot(tmp_path):
    supervisor = start_supervisor(tmp_path, "guest-panic")
    supervisor.communicate(timeout=60)
    assert supervisor.returncode == 7 and (tmp_path / "boots").read_text() == "1"


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_supervisor_passes_sigterm_to_qemu_and_ends(tmp_path):
    supervisor = start_supervisor(tmp_path, "hang")
    wait_for(tmp_path / "ready")
    supervisor.send_signal(signal.SIGTERM)
    supervisor.communicate(timeout=30)
    assert supervisor.returncode == 3 and (tmp_path / "boots").read_text() == "1"


def test_qemu_dies_with_a_killed_supervisor(tmp_path):
    supervisor = start_supervisor(tmp_path, "hang")
    wait_for(tmp_path / "ready")
    qemu_pid = int((tmp_path / "pid").read_text())
    supervisor.kill()
    supervisor.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while process_alive(qemu_pid):
        assert time.monotonic() < deadline, "QEMU outlived its supervisor"
        time.sleep(0.1)


def process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_shutdown_reason_is_the_last_shutdown_event():
    messages = ['{"QMP": {}}', '{"return": {}}', "garbage",
                '{"event": "RESET", "data": {"guest": true, "reason": "guest-reset"}}',
                '{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}']
    assert supervisor_module.shutdown_reason(messages) == "guest-reset"
    assert supervisor_module.shutdown_reason(messages[:3]) is None


# ----- architectures: amd64 (the default) and arm64


def arm64_image(tmp_path: Path) -> Image:
    image = Image(tmp_path / "images" / "arm64img")
    image.directory.mkdir(parents=True)
    image.manifest.write_text(json.dumps({"suite": "bookworm", "arch": "arm64"}))
    return image


def test_arch_comes_from_the_environment_and_a_bad_one_names_the_choices(monkeypatch):
    monkeypatch.delenv("BPFQUOTA_ARCH", raising=False)
    assert Recipe().arch == "amd64"
    for name in ("arm64", "aarch64"):  # Debian's name, or uname -m's
        monkeypatch.setenv("BPFQUOTA_ARCH", name)
        assert Recipe().arch == "arm64"
    monkeypatch.setenv("BPFQUOTA_ARCH", "riscv64")
    with pytest.raises(image_module.ImageBuildError, match=r"'riscv64' is not an architecture .* amd64 .* arm64"):
        Recipe()


def test_amd64_keeps_its_cache_key_and_arm64_has_its_own(monkeypatch):
    monkeypatch.delenv("BPFQUOTA_ARCH", raising=False)
    amd64 = Recipe(suite="bookworm")
    # The key of the images cached before the architecture was a choice (the recipe's text as it was).
    assert amd64.arch == "amd64" and amd64.packages == image_module.PACKAGES
    assert amd64.configure_script == image_module.CONFIGURE_SCRIPT and amd64.files == image_module.FILES
    assert Recipe(suite="bookworm", arch="arm64").cache_key() != amd64.cache_key()
    assert Recipe(suite="trixie", arch="arm64").cache_key() != Recipe(suite="bookworm", arch="arm64").cache_key()


def test_arm64_recipe_has_arm64_kernel_and_no_grub():
    recipe = Recipe(suite="bookworm", arch="arm64")
    assert "linux-image-arm64" in recipe.packages and "linux-headers-arm64" in recipe.packages
    assert not any("amd64" in name or name.startswith("grub") for name in recipe.packages)
    assert "boot/grub/grub.cfg" not in recipe.files and "etc/default/grub" not in recipe.files
    assert "grub-mkimage" not in recipe.configure_script and "update-initramfs" in recipe.configure_script
    assert "grub-mkimage" in Recipe(suite="bookworm", arch="amd64").configure_script


def test_debootstrap_is_told_the_architecture(tmp_path):
    argv = image_module.debootstrap_command(Recipe(suite="bookworm", arch="arm64"), tmp_path / "t", tmp_path / "debs")
    assert "--arch=arm64" in argv
    assert any(arg.startswith("--include=") and "linux-image-arm64" in arg for arg in argv)


def test_binfmt_registration_uses_the_static_interpreter_with_the_f_flag():
    debian = (r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00:\xff\xff\xff\xff\xff\xff\xff\x00"
              r":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF")
    entry = image_module.binfmt_registration(debian, "/usr/bin/qemu-aarch64-static")
    fields = entry.split(":")
    assert fields[1] == "qemu-aarch64" and fields[6] == "/usr/bin/qemu-aarch64-static"
    assert set(fields[7]) == {"O", "F"}  # no P: argv[0] is what the kernel gives
    with pytest.raises(image_module.ImageBuildError):
        image_module.binfmt_registration("nonsense", "/x")


def test_foreign_binaries_registered_only_when_missing(tmp_path):
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    (binfmt / "register").write_text("")
    conf = tmp_path / "binfmt.d"
    conf.mkdir()
    (conf / "qemu-aarch64.conf").write_text(r":qemu-aarch64:M::\x7f\x45:\xff\xff:/usr/libexec/x-P:OPF" + "\n")
    interpreter = Path(image_module.QEMU_USER["arm64"][1])
    if not interpreter.is_file():
        pytest.skip(f"{interpreter} is not installed here")
    image_module.ensure_foreign_binaries("arm64", log=lambda message: None, binfmt_dir=binfmt, conf_dir=conf)
    assert (binfmt / "register").read_text() == rf":qemu-aarch64:M::\x7f\x45:\xff\xff:{interpreter}:FO"
    (binfmt / "register").write_text("")
    (binfmt / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    image_module.ensure_foreign_binaries("arm64", log=lambda message: None, binfmt_dir=binfmt, conf_dir=conf)
    assert (binfmt / "register").read_text() == ""  # already there: left alone


def test_arm64_image_boots_under_qemu_system_aarch64_on_the_virt_machine(tmp_path):
    image = arm64_image(tmp_path)
    assert image.arch == "arm64" and fake_image(tmp_path).arch == "amd64"  # no manifest: from before arm64
    argv = qemu_argv(tmp_path, image=image, extra_cmdline="lsm=bpf")
    assert argv[0] == "qemu-system-aarch64"
    assert option_value(argv, "-machine") == "virt"
    assert option_value(argv, "-accel") == "tcg,thread=single" and "kvm" not in " ".join(argv)
    assert option_value(argv, "-cpu").startswith("max")
    assert option_value(argv, "-kernel") == str(image.kernel)
    append = option_value(argv, "-append")
    assert "console=ttyAMA0" in append and "ttyS0" not in append and append.endswith(" lsm=bpf")


def test_arm64_image_has_no_grub_boot(tmp_path):
    with pytest.raises(vm_module.VMError, match="directly only"):
        qemu_argv(tmp_path, image=arm64_image(tmp_path), boot="grub")


def test_prune_counts_each_release_and_architecture_apart(tmp_path):
    def complete_image(name: str, manifest: dict, age: int) -> Image:
        return make_complete_image(tmp_path, name, age, manifest)

    current = complete_image("arm64-new", {"suite": "bookworm", "arch": "arm64"}, 0)
    previous = complete_image("arm64-old", {"suite": "bookworm", "arch": "arm64"}, 10)
    stale = complete_image("arm64-older", {"suite": "bookworm", "arch": "arm64"}, 20)
    # amd64 images, with and without the arch their manifests got later: older, but not pruned.
    amd64 = [complete_image("amd64-%d" % age, {"suite": "bookworm"}, age) for age in (30, 40)]
    amd64.append(complete_image("amd64-50", {"suite": "bookworm", "arch": "amd64"}, 50))
    trixie = complete_image("trixie", {"suite": "trixie"}, 60)
    image_module.prune_old_images(tmp_path, keep=current, log=lambda message: None)
    assert current.directory.exists() and previous.directory.exists() and not stale.directory.exists()
    assert all(image.directory.exists() for image in amd64) and trixie.directory.exists()


def test_cli_arch_option_sets_the_environment_for_the_image(monkeypatch):
    monkeypatch.delenv("BPFQUOTA_ARCH", raising=False)
    args = build_parser().parse_args(["pytest", "--arch", "arm64", "--name", "arm64-t"])
    assert args.arch == "arm64"
    assert build_parser().parse_args(["image"]).arch is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "n", "--arch", "mips"])


def test_reusing_a_vm_needs_the_same_architecture(tmp_path, monkeypatch):
    vm = vm_module.VM("t", tmp_path, arm64_image(tmp_path), ssh_port=2200, pid=0)
    monkeypatch.setenv("BPFQUOTA_ARCH", "arm64")
    assert boot_setting_differences(vm, build_parser().parse_args(["pytest"])) == []
    monkeypatch.delenv("BPFQUOTA_ARCH")
    differences = boot_setting_differences(vm, build_parser().parse_args(["pytest"]))
    assert differences == ["architecture 'arm64', not 'amd64'"]
