# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import gzip
import importlib
import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import LibbpfError
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import (
    merge_bpf_into_lsm,
    parse_active_lsms,
    parse_cmdline_lsm,
    parse_kconfig,
    readiness,
    reason,
    split_kernel_params,
)

BPFFS_MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
    "35 23 0:30 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700\n"
    "36 23 0:7 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw\n"
)
NO_BPFFS_MOUNTINFO = "".join(line + "\n" for line in BPFFS_MOUNTINFO.splitlines() if "/sys/fs/bpf" not in line)


def kconfig(bpf_lsm, lsm_list):
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#",
             "CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"",
             "CONFIG_BPF=y", "CONFIG_BPF_SYSCALL=y", "CONFIG_BPF_JIT=y",
             "CONFIG_SECURITY=y", "CONFIG_SECURITYFS=y", "CONFIG_DEBUG_INFO_BTF=y"]
    if bpf_lsm is True:
        lines.append("CONFIG_BPF_LSM=y")
    elif bpf_lsm is False:
        lines.append("# CONFIG_BPF_LSM is not set")
    if lsm_list is not None:
        lines.append('CONFIG_LSM="%s"' % (lsm_list,))
    return "\n".join(lines) + "\n"


def host(tmp_path, release, active=None, cmdline=None, config=None, config_gz=None, btf=True,
         mountinfo=BPFFS_MOUNTINFO):
    """A recorded host under tmp_path: only the files given exist."""
    files = {"proc/self/mountinfo": mountinfo}
    if active is not None:
        files["sys/kernel/security/lsm"] = active
    if cmdline is not None:
        files["proc/cmdline"] = cmdline
    if config is not None:
        files["boot/config-" + release] = config
    if btf:
        files["sys/kernel/btf/vmlinux"] = "\x9f\xeb\x01\x00"
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if config_gz is not None:
        with gzip.open(str(tmp_path / "proc" / "config.gz"), "wt") as handle:
            handle.write(config_gz)
    return str(tmp_path)


DEBIAN_12_CMDLINE = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=2c0b7d4e-6a55-4b7f-9d0a-3f1e8c5a7b21 ro quiet\n"
DEBIAN_12_LSM = "landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,tomoyo,bpf"


def debian_12(tmp_path, **changes):
    files = dict(active="lockdown,capability,landlock,yama,apparmor,tomoyo,bpf", cmdline=DEBIAN_12_CMDLINE,
                 config=kconfig(True, DEBIAN_12_LSM))
    files.update(changes)
    return host(tmp_path, "6.1.0-18-amd64", **files)


def test_debian_12_default_is_ready(tmp_path):
    facts = readiness(debian_12(tmp_path), kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts == {
        "kernel": "6.1.0-18-amd64",
        "bpf_lsm_active": True,
        "active_lsms": ["lockdown", "capability", "landlock", "yama", "apparmor", "tomoyo", "bpf"],
        "cmdline_lsm": None,
        "config_bpf_lsm": True,
        "config_lsm": DEBIAN_12_LSM.split(","),
        "btf": True,
        "bpffs": True,
        "libbpf_version": "1.1.2",
        "proposed_lsm": None,
        "ready": True,
        "reasons": [],
    }


def test_ubuntu_22_04_compiled_in_but_not_active(tmp_path):
    """With the HWE kernel (6.8): its GA kernel, 5.15, is below MIN_KERNEL (test_platforms)."""
    root = host(tmp_path, "6.8.0-51-generic", active="lockdown,capability,landlock,yama,apparmor",
                cmdline="BOOT_IMAGE=/boot/vmlinuz-6.8.0-51-generic root=UUID=0e6a5f3c-1d2b-4c8e-9f7a-6b5d4c3e2a10 "
                        "ro quiet splash vt.handoff=7\n",
                config=kconfig(True, "landlock,lockdown,yama,integrity,apparmor"),
                mountinfo=NO_BPFFS_MOUNTINFO)
    facts = readiness(root, kernel_release="6.8.0-51-generic", libbpf_version="0.5.0")
    assert facts["ready"] is False
    assert facts["bpf_lsm_active"] is False
    assert facts["config_bpf_lsm"] is True
    assert facts["config_lsm"] == ["landlock", "lockdown", "yama", "integrity", "apparmor"]
    assert facts["bpffs"] is False  # reported, not a blocker
    assert facts["proposed_lsm"] == ["lockdown", "capability", "landlock", "yama", "apparmor", "bpf"]
    assert facts["reasons"] == [
        reason("bpf_not_in_lsm", "bpf is compiled in but not active (active: lockdown,capability,landlock,yama,apparmor)",
               "add bpf to the lsm= boot parameter: lsm=lockdown,capability,landlock,yama,apparmor,bpf, e.g. with "
               "bpfquota_fix_boot: true, then reboot"),
        reason("libbpf_too_old", "libbpf 0.5.0 is older than 1.0 and can't read the BTF of 6.0+ kernels",
               "install libbpf >= 1.0"),
    ]


def test_ubuntu_24_04_cmdline_lsm_without_bpf_overrides_config(tmp_path):
    cmdline = ("BOOT_IMAGE=/vmlinuz-6.8.0-31-generic root=LABEL=cloudimg-rootfs ro console=tty1 "
               "console=ttyS0 lsm=landlock,lockdown,yama,integrity,apparmor\n")
    root = host(tmp_path, "6.8.0-31-generic", active="lockdown,capability,landlock,yama,integrity,apparmor",
                cmdline=cmdline, config=kconfig(True, "landlock,lockdown,yama,integrity,apparmor,bpf"))
    facts = readiness(root, kernel_release="6.8.0-31-generic", libbpf_version="1.3.0")
    assert facts["cmdline_lsm"] == ["landlock", "lockdown", "yama", "integrity", "apparmor"]
    assert facts["proposed_lsm"] == ["lockdown", "capability", "landlock", "yama", "integrity", "apparmor", "bpf"]
    assert facts["reasons"] == [reason(
        "bpf_not_in_lsm",
        "the boot parameter lsm=landlock,lockdown,yama,integrity,apparmor overrides CONFIG_LSM and lacks "
        "bpf, so bpf is not an active LSM",
        "change it to lsm=lockdown,capability,landlock,yama,integrity,apparmor,bpf, e.g. with bpfquota_fix_boot: "
        "true, then reboot")]


def test_kernel_built_without_bpf_lsm(tmp_path):
    root = debian_12(tmp_path, active="lockdown,capability,landlock,yama,apparmor",
                     config=kconfig(False, "landlock,lockdown,yama,apparmor"))
    facts = readiness(root, kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts["config_bpf_lsm"] is False
    assert facts["proposed_lsm"] is None  # booting with lsm=...,bpf wouldn't help
    assert facts["reasons"] == [reason("no_config_bpf_lsm", "kernel built without CONFIG_BPF_LSM", "use a kernel with CONFIG_BPF_LSM=y")]


def test_cmdline_without_bpf_on_a_kernel_without_bpf_lsm_only_blames_the_kernel(tmp_path):
    root = debian_12(tmp_path, active="lockdown,capability,apparmor", config=kconfig(False, "apparmor"),
                     cmdline="BOOT_IMAGE=/vmlinuz ro lsm=lockdown,apparmor")
    facts = readiness(root, kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts["reasons"] == [reason("no_config_bpf_lsm", "kernel built without CONFIG_BPF_LSM", "use a kernel with CONFIG_BPF_LSM=y")]


def test_no_btf(tmp_path):
    facts = readiness(debian_12(tmp_path, btf=False), kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts["btf"] is False
    assert facts["reasons"] == [
        reason("no_btf", "no BTF at /sys/kernel/btf/vmlinux", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")]


def test_kernel_older_than_5_7(tmp_path):
    root = host(tmp_path, "5.4.0-150-generic", active="lockdown,capability,yama,apparmor",
                config=kconfig(None, "lockdown,yama,integrity,apparmor"))
    facts = readiness(root, kernel_release="5.4.0-150-generic", libbpf_version="1.1.2")
    assert facts["config_bpf_lsm"] is False  # config known, symbol absent
    assert facts["reasons"] == [
        reason("kernel_too_old", "kernel 5.4.0-150-generic is older than 5.17, the first with bpf_loop, which the "
               "enforcer's programs use", "boot a kernel >= 5.17 with CONFIG_BPF_LSM=y (Debian 12 and later, Ubuntu "
               "22.04 with its HWE kernel or 24.04, RHEL 9)")]


def test_kernel_with_bpf_lsm_but_older_than_the_program_needs(tmp_path):
    """Debian 11's 5.10 has BPF LSM built in and active, yet its verifier refuses the program (no bpf_loop)."""
    root = host(tmp_path, "5.10.0-30-amd64", active="lockdown,capability,landlock,yama,apparmor,tomoyo,bpf",
                config=kconfig(True, "landlock,lockdown,yama,loadpin,safesetid,integrity,apparmor,selinux,smack,"
                               "tomoyo,bpf"))
    facts = readiness(root, kernel_release="5.10.0-30-amd64", libbpf_version="1.1.2")
    assert [r["code"] for r in facts["reasons"]] == ["kernel_too_old"]


def test_old_kernel_with_backported_bpf_lsm_is_not_blamed_for_its_version(tmp_path):
    root = host(tmp_path, "4.18.0-513.5.1.el8_9.x86_64", active="capability,yama,selinux,bpf",
                config=kconfig(True, "yama,integrity,selinux,bpf"))
    facts = readiness(root, kernel_release="4.18.0-513.5.1.el8_9.x86_64", libbpf_version="1.2.0")
    assert facts["ready"] is True


def test_arm64_needs_6_4(tmp_path):
    """Debian 12's 6.1 arm64 kernel has BPF trampolines but no ftrace direct calls: attaching the LSM
    programs fails with ENOTSUPP there (seen in the test bed's arm64 VM)."""
    root = debian_12(tmp_path)
    facts = readiness(root, kernel_release="6.1.0-18-arm64", libbpf_version="1.1.2", machine="aarch64")
    assert facts["reasons"] == [
        reason("kernel_too_old_arm64", "kernel 6.1.0-18-arm64 on arm64 can't attach BPF LSM programs (arm64 has the "
               "ftrace direct calls their trampolines need from 6.4)",
               "boot a kernel >= 6.4 (Debian 13, or Debian 12's backports kernel)")]
    assert readiness(root, kernel_release="6.12.38+deb13-arm64", libbpf_version="1.5.0",
                     machine="aarch64")["ready"] is True
    assert readiness(root, kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2",
                     machine="x86_64")["ready"] is True


def test_libbpf_missing(tmp_path):
    facts = readiness(debian_12(tmp_path), kernel_release="6.1.0-18-amd64", libbpf_version=None)
    assert facts["reasons"] == [
        reason("libbpf_missing", "libbpf not found", "install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")]


def test_securityfs_unreadable_on_recorded_files(tmp_path):
    root = debian_12(tmp_path, active=None)
    facts = readiness(root, kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts["active_lsms"] is None
    assert facts["bpf_lsm_active"] is False
    assert facts["proposed_lsm"] is None  # CONFIG_LSM has bpf and no lsm= overrides it
    assert facts["reasons"] == [
        reason("securityfs_unreadable", "cannot read /sys/kernel/security/lsm (No such file or directory)",
               "mount securityfs as root: mount -t securityfs securityfs /sys/kernel/security")]


def test_securityfs_unreadable_and_cmdline_without_bpf(tmp_path):
    root = debian_12(tmp_path, active=None, cmdline="BOOT_IMAGE=/vmlinuz ro lsm=lockdown,yama,apparmor")
    facts = readiness(root, kernel_release="6.1.0-18-amd64", libbpf_version="1.1.2")
    assert facts["proposed_lsm"] == ["lockdown", "yama", "apparmor", "bpf"]
    assert [r["code"] for r in facts["reasons"]] == ["bpf_not_in_lsm", "securityfs_unreadable"]
    assert "overrides CONFIG_LSM and lacks bpf" in facts["reasons"][0]["text"]
    assert facts["reasons"][1]["text"].startswith("cannot read /sys/kernel/security/lsm")


def test_config_from_proc_config_gz(tmp_path):
    root = host(tmp_path, "6.6.0-custom", active="lockdown,capability,yama,bpf",
                config_gz=kconfig(True, "lockdown,yama,bpf"))
    facts = readiness(root, kernel_release="6.6.0-custom", libbpf_version="1.4.0")
    assert facts["config_bpf_lsm"] is True
    assert facts["config_lsm"] == ["lockdown", "yama", "bpf"]
    assert facts["ready"] is True


def test_boot_config_wins_over_proc_config_gz(tmp_path):
    root = host(tmp_path, "6.6.0-custom", active="lockdown,capability,yama,bpf",
                config=kconfig(True, "yama,bpf"), config_gz=kconfig(False, "yama"))
    assert readiness(root, kernel_release="6.6.0-custom", libbpf_version="1.4.0")["config_lsm"] == ["yama", "bpf"]


def test_no_kernel_config_and_bpf_not_active(tmp_path):
    root = host(tmp_path, "6.6.0-custom", active="lockdown,capability,yama")
    facts = readiness(root, kernel_release="6.6.0-custom", libbpf_version="1.4.0")
    assert facts["config_bpf_lsm"] is None
    assert facts["config_lsm"] is None
    assert facts["reasons"] == [reason(
        "bpf_not_in_lsm",
        "bpf is not active (kernel config not found: it also needs CONFIG_BPF_LSM=y) (active: lockdown,capability,yama)",
        "add bpf to the lsm= boot parameter: lsm=lockdown,capability,yama,bpf, e.g. with bpfquota_fix_boot: true, "
        "then reboot")]


def test_recorded_dev_host(tmp_path):
    # Recorded on the 6.18 Firecracker VM this project is developed on: lsm without a trailing
    # newline, "--" followed by init's arguments, CONFIG_LSM naming LSMs that aren't built in.
    cmdline = ("mitigations=auto,no_guest_host,no_guest_guest console=ttyS0 quiet reboot=k panic=1 "
               "nomodule random.trust_cpu=1 swiotlb=noforce psi=1 rdinit=/process_api -- "
               "--firecracker-init --addr 0.0.0.0:2024 --tcp-readiness-only --auth-required\n")
    config = kconfig(True, "landlock,lockdown,yama,loadpin,safesetid,integrity,smack,tomoyo,apparmor,bpf")
    root = host(tmp_path, "6.18.44-fc-v509", active="lockdown,capability,landlock,bpf", cmdline=cmdline,
                config_gz=config, mountinfo=NO_BPFFS_MOUNTINFO)
    facts = readiness(root, kernel_release="6.18.44-fc-v509", libbpf_version="1.3.0")
    assert facts["active_lsms"] == ["lockdown", "capability", "landlock", "bpf"]
    assert facts["cmdline_lsm"] is None
    assert facts["ready"] is True
    assert facts["bpffs"] is False


def test_live_host_mounts_securityfs_only_as_root(monkeypatch):
    # Point the live check at a file that doesn't exist and watch what it would run.
    monkeypatch.setattr(lsm, "LSM_FILE", "sys/kernel/security/no-such-lsm-file")
    runs = []

    def fake_run(argv, **kwargs):
        runs.append(argv)
        return subprocess.CompletedProcess(argv, 32, "", "mount: permission denied\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(lsm, "_mounted", lambda root, mount_point, fstype: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    facts = readiness("/", libbpf_version="1.3.0")
    assert runs == []
    assert facts["kernel"] == os.uname().release
    assert reason("securityfs_unreadable", "cannot read /sys/kernel/security/no-such-lsm-file (securityfs not mounted, "
                  "and mounting it needs root)", "mount securityfs as root: mount -t securityfs securityfs "
                  "/sys/kernel/security") in facts["reasons"]

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts = readiness("/", libbpf_version="1.3.0")
    assert runs == [["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"]]
    assert any("mount -t securityfs securityfs /sys/kernel/security failed: mount: permission denied" in r["text"]
               for r in facts["reasons"] if r["code"] == "securityfs_unreadable")


def test_live_host_does_not_stack_securityfs_mounts(monkeypatch):
    monkeypatch.setattr(lsm, "LSM_FILE", "sys/kernel/security/no-such-lsm-file")
    monkeypatch.setattr(lsm, "_mounted", lambda root, mount_point, fstype: fstype == "securityfs")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail("mount run"))
    facts = readiness("/", libbpf_version="1.3.0")
    assert reason("no_lsm_file", "/sys/kernel/security/no-such-lsm-file is missing although securityfs is mounted",
                  "use a kernel built with CONFIG_SECURITY=y and CONFIG_BPF_LSM=y") in facts["reasons"]


def test_live_host_facts_have_the_right_types():
    facts = readiness("/", libbpf_version="1.3.0")
    assert facts["kernel"] == os.uname().release
    assert isinstance(facts["btf"], bool) and isinstance(facts["bpffs"], bool)
    assert facts["ready"] is (not facts["reasons"])


@pytest.mark.parametrize("text, expected", [
    ("lockdown,capability,landlock,yama,apparmor,bpf", ["lockdown", "capability", "landlock", "yama",
                                                        "apparmor", "bpf"]),
    ("capability,selinux,bpf\n", ["capability", "selinux", "bpf"]),
    ("", []),
])
def test_parse_active_lsms(text, expected):
    assert parse_active_lsms(text) == expected


@pytest.mark.parametrize("cmdline, expected", [
    ("BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=UUID=2c0b7d4e ro quiet\n", None),
    ("BOOT_IMAGE=/vmlinuz-6.8.0-31-generic root=LABEL=cloudimg-rootfs ro lsm=landlock,lockdown,yama,apparmor\n",
     ["landlock", "lockdown", "yama", "apparmor"]),
    # the last lsm= wins
    ("BOOT_IMAGE=/vmlinuz ro lsm=apparmor lsm=lockdown,yama,apparmor,bpf quiet", ["lockdown", "yama", "apparmor",
                                                                                  "bpf"]),
    ('BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.5.0 root=/dev/mapper/vg-root ro lsm="lockdown,yama,bpf" splash',
     ["lockdown", "yama", "bpf"]),
    ('"lsm=selinux,bpf" ro', ["selinux", "bpf"]),
    ('BOOT_IMAGE="/boot/my kernel" lsm="a, b" ro', ["a", "b"]),
    # a quoted value with a space in another parameter doesn't hide lsm=
    ('dyndbg="file drivers/usb/* +p" lsm=yama,bpf', ["yama", "bpf"]),
    # not a kernel parameter: it belongs to init
    ("ro quiet -- lsm=apparmor", None),
    ("ro lsm=yama,bpf -- lsm=apparmor", ["yama", "bpf"]),
    ("ro selinux_lsm=apparmor", None),
    ("ro lsm=", []),
    ("", None),
])
def test_parse_cmdline_lsm(cmdline, expected):
    assert parse_cmdline_lsm(cmdline) == expected


def test_split_kernel_params_like_next_arg():
    assert split_kernel_params('a=1 "b=2 3" c="4 5" d --') == [
        ("a", "1"), ("b", "2 3"), ("c", "4 5"), ("d", None), ("--", None)]


def test_parse_kconfig():
    config = parse_kconfig(kconfig(True, "lockdown,yama,bpf") + "CONFIG_NR_CPUS=8192\n"
                           "# CONFIG_SECURITY_SELINUX is not set\nCONFIG_CMDLINE=\"a \\\"b\\\"\"\n")
    assert config["CONFIG_BPF_LSM"] == "y"
    assert config["CONFIG_LSM"] == "lockdown,yama,bpf"
    assert config["CONFIG_NR_CPUS"] == "8192"
    assert config["CONFIG_SECURITY_SELINUX"] == "n"
    assert config["CONFIG_CMDLINE"] == 'a "b"'
    assert config["CONFIG_CC_VERSION_TEXT"] == "gcc (Debian 12.2.0-14) 12.2.0"
    assert "CONFIG_BPF_LSM" not in parse_kconfig("# CONFIG_BPF_LSMX is not set\n")


def test_merge_keeps_every_lsm_and_the_order():
    active = ["lockdown", "capability", "landlock", "yama", "integrity", "apparmor", "ima", "evm"]
    merged = merge_bpf_into_lsm(active)
    assert merged == active + ["bpf"]
    assert active[-1] == "evm"  # input untouched
    assert merge_bpf_into_lsm(["capability", "bpf", "selinux"]) == ["capability", "bpf", "selinux"]
    assert merge_bpf_into_lsm(["selinux"]) == ["selinux", "bpf"]
    assert merge_bpf_into_lsm([]) == ["bpf"]


# --- why a host refuses BPF LSM programs (the advice a libbpf.LsmRefused gets) ---------------------

@pytest.mark.parametrize("active, advice", [
    (None, "/sys/kernel/security/lsm is unreadable (mount securityfs to see the list); if bpf is missing, "
           "add it to the lsm= kernel command line and reboot"),
    ("lockdown,capability,bpf\n", "bpf is active (/sys/kernel/security/lsm: 'lockdown,capability,bpf'), so a "
                                  "sandbox, lockdown or security policy (seccomp, SELinux, a hypervisor) forbids "
                                  "BPF LSM programs on this host"),
    ("lockdown,capability,apparmor\n", "bpf is missing from /sys/kernel/security/lsm ('lockdown,capability,apparmor'): "
                                       "boot with lsm=lockdown,capability,apparmor,bpf on the kernel command line"),
])
def test_refusal_reason_reads_the_active_list(tmp_path, active, advice):
    root = host(tmp_path, "6.1.0-18-amd64", active=active)
    assert lsm.refusal_reason(root) == ("BPF LSM programs need a kernel built with CONFIG_BPF_LSM=y and 'bpf' in "
                                        "the active LSM list (/sys/kernel/security/lsm); " + advice)


def test_refusals_explained_adds_the_reason_and_keeps_the_refusal(monkeypatch):
    monkeypatch.setattr(lsm, "refusal_reason", lambda: "the reason")
    with pytest.raises(libbpf.LsmRefused) as raised:
        with lsm.refusals_explained():
            raise libbpf.LsmRefused("loading x failed", 1, ["a", "b"], "log line")
    assert raised.value.errno == 1 and raised.value.programs == ["a", "b"]
    assert str(raised.value) == ("loading x failed: Operation not permitted; the kernel refused the LSM programs "
                                 "a, b: the reason\nlibbpf log (last lines):\nlog line")
    with pytest.raises(libbpf.LibbpfError) as raised:  # other failures pass unchanged
        with lsm.refusals_explained():
            raise libbpf.LibbpfError("something else", 2)
    assert str(raised.value) == "something else"


# --- reasons as records: {code, text, fix} --------------------------------------------------------

def test_a_reason_needs_a_known_code():
    assert reason("no_btf", "no BTF", "use a kernel with BTF") == {"code": "no_btf", "text": "no BTF",
                                                                   "fix": "use a kernel with BTF"}
    with pytest.raises(KeyError):
        reason("no-btf", "no BTF", "use a kernel with BTF")


def test_reason_line_is_text_then_fix():
    assert lsm.reason_line(reason("no_btf", "no BTF at /x", "use a kernel with BTF")) == "no BTF at /x: use a kernel with BTF"


def probe_error(err, fix=None, log=""):
    problem = "loading a BPF LSM probe program failed: %s%s" % (os.strerror(err), log)
    return LibbpfError(problem + ("; " + fix if fix else ""), err, problem, fix)


@pytest.mark.parametrize("err, euid, fix, code", [
    (errno.EPERM, 0, "the kernel refused the LSM program bq_probe: ...", "lsm_load_refused"),
    (errno.EPERM, 1000, "BPF needs root (CAP_BPF and CAP_SYS_ADMIN): run as root", "not_root"),
    (errno.EACCES, 1000, "BPF needs root (CAP_BPF and CAP_SYS_ADMIN): run as root", "not_root"),
    (errno.EACCES, 0, "the verifier rejected a program (its log is below)", "lsm_probe_failed"),
    (errno.EINVAL, 0, None, "lsm_probe_failed"),
])
def test_a_refused_probe_is_a_reason_with_its_code(monkeypatch, err, euid, fix, code):
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    error = probe_error(err, fix, "\nlibbpf log (last lines):\n0: (b7) r0 = 0")

    def probe():
        raise error
    facts = lsm.proven({"ready": True, "reasons": []}, probe)
    assert (facts["ready"], facts["lsm_probe"]) == (False, False)
    [record] = facts["reasons"]
    assert record["code"] == code
    # Refused as root, the whole message tells who forbids it; otherwise the text is the problem alone.
    assert record["text"] == (str(error) if code == "lsm_load_refused" else error.problem)
    assert record["fix"] and record["fix"] != record["text"]
    if code == "lsm_probe_failed":
        assert record["fix"] == (fix or lsm._LOAD_FAILURE_FIXES["lsm_probe_failed"])


def test_the_probe_is_tried_only_on_a_host_whose_files_say_ready():
    kept = [reason("no_btf", "no BTF", "use a kernel with BTF")]
    facts = lsm.proven({"ready": False, "reasons": list(kept)}, lambda: pytest.fail("probed"))
    assert (facts["lsm_probe"], facts["reasons"]) == (None, kept)
    assert lsm.proven({"ready": True, "reasons": []}, lambda: None) == {"ready": True, "reasons": [], "lsm_probe": True}


def test_a_trial_load_failure_keeps_its_own_code(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    error = LibbpfError("opening BPF object /x.o failed: Invalid ELF header")
    assert lsm.load_failure_reason(error, "trial_load_failed") == reason(
        "trial_load_failed", "opening BPF object /x.o failed: Invalid ELF header",
        lsm._LOAD_FAILURE_FIXES["trial_load_failed"])


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def yaml_reason_codes(relative):
    """The codes a YAML file decides on: the lists next to `code` filters, the role's list of them, and
    the codes looked for among the reasons' codes."""
    with open(os.path.join(REPO, relative)) as handle:
        text = handle.read()
    codes = []
    for found in re.findall(r"rejectattr\('code', '(?:not )?in', \[([^\]]*)\]\)", text):
        codes.extend(code.strip(" '\"") for code in found.split(","))
    for found in re.findall(r"^__bpfquota_\w+_reason_codes: \[([^\]]*)\]$", text, re.M):
        codes.extend(code.strip(" '\"") for code in found.split(","))
    codes.extend(re.findall(r"'(\w+)' in [\w.]+\.reasons \| map\(attribute='code'\)", text))
    return codes


@pytest.mark.parametrize("relative", ["roles/enforcer/vars/main.yml", "roles/enforcer/tasks/present.yml",
                                      "playbooks/rollout.yml"])
def test_the_role_and_the_playbook_decide_on_known_codes_not_on_prose(relative):
    codes = yaml_reason_codes(relative)
    assert codes and set(codes) <= set(lsm.REASON_CODES)
    with open(os.path.join(REPO, relative)) as handle:
        text = handle.read()
    assert "reject('match'" not in text and "select('match'" not in text


def documented_reasons(returns):
    """The RETURN entry of the reasons, wherever it is nested (lsm_facts: in ansible_facts.bpfquota_lsm)."""
    for name, entry in returns.items():
        if name == "reasons":
            return entry
        found = documented_reasons(entry.get("contains") or {})
        if found:
            return found
    return None


@pytest.mark.parametrize("module", ["lsm_facts", "lsm_check", "bpf_program"])
def test_the_modules_document_the_reasons_as_records(module):
    returns = yaml.safe_load(importlib.import_module("ansible_collections.bpfquota.nfs.plugins.modules." + module).RETURN)
    reasons = documented_reasons(returns)
    assert (reasons["type"], reasons["elements"], sorted(reasons["contains"])) == ("list", "dict", ["code", "fix", "text"])
    code = reasons["contains"]["code"]
    if module != "bpf_program":  # which points to lsm_check's list
        assert code["choices"] == list(lsm.REASON_CODES)
        for name in lsm.REASON_CODES:
            assert "V(%s)" % name in " ".join(code["description"])
