"""Unit tests for the pure parts of the VM test bed (no VM, no image build)."""

import dataclasses
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testbed import image as image_module
from testbed import vm as vm_module
from testbed.cli import pytest_remote_command, split_at_double_dash
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


def test_exports_allow_loopback_and_user_net():
    exports = image_module.FILES["etc/exports"][1]
    line = next(line for line in exports.splitlines() if line.startswith("/srv/nfs"))
    assert "127.0.0.1/8(" in line and "10.0.2.0/24(" in line
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


def test_qemu_allows_reboots(tmp_path):
    assert "-no-reboot" not in qemu_argv(tmp_path)


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
    assert option_value(argv, "-serial") == f"file:{tmp_path / 'serial.log'}"


def test_qemu_forwards_ssh_port_on_loopback(tmp_path):
    argv = qemu_argv(tmp_path, ssh_port=40222)
    assert option_value(argv, "-netdev") == "user,id=n0,hostfwd=tcp:127.0.0.1:40222-:22"
    assert "virtio-net-pci,netdev=n0" in argv


def test_kernel_cmdline_appends_extra_parameters(tmp_path):
    append = option_value(qemu_argv(tmp_path, extra_cmdline="lsm=lockdown,capability,bpf"), "-append")
    assert append.startswith("root=/dev/vda rw")
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


def test_prune_keeps_newest_and_images_running_vms_use(tmp_path):
    def complete_image(name: str, age: int) -> Image:
        image = Image(tmp_path / name)
        image.directory.mkdir()
        for part in (image.rootfs, image.kernel, image.initrd, image.ssh_key, image.manifest):
            part.write_text("")
        os.utime(image.manifest, (time.time() - age, time.time() - age))
        return image

    current = complete_image("current", 0)
    previous = complete_image("previous", 10)
    in_use = complete_image("in-use", 20)
    stale = complete_image("stale", 30)
    holder = subprocess.Popen(["sh", "-c", "sleep 30", str(in_use.directory) + "/vmlinuz"])
    while b"sleep 30" not in Path(f"/proc/{holder.pid}/cmdline").read_bytes():
        assert holder.poll() is None
        time.sleep(0.01)  # until the child has exec'd
    try:
        image_module.prune_old_images(tmp_path, keep=current, log=lambda message: None)
    finally:
        holder.kill()
        holder.wait()
    assert current.directory.exists() and previous.directory.exists() and in_use.directory.exists()
    assert not stale.directory.exists()
