# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recorded hosts for the boot-config tests: their files under a root dir, and fake boot tools.

The fakes stand in for update-grub and grubby at run_command: update-grub really sources
/etc/default/grub and its drop-ins with bash and renders grub.cfg from a recorded one; grubby
keeps boot entries recorded from `grubby --info=ALL` and edits their arguments like grubby does.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import parse_grubby_info

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "boot")

MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "23 27 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n"
    "35 23 0:30 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700\n"
    "36 23 0:7 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw\n"
)

UBUNTU_2204_RELEASE = "6.8.0-51-generic"  # the HWE kernel: the GA 5.15 is below lsm.MIN_KERNEL
UBUNTU_2204_ACTIVE = "lockdown,capability,landlock,yama,integrity,apparmor"
UBUNTU_2204_MERGED = ["lockdown", "capability", "landlock", "yama", "integrity", "apparmor", "bpf"]
UBUNTU_2204_CMDLINE = ("BOOT_IMAGE=/boot/vmlinuz-6.8.0-51-generic root=LABEL=cloudimg-rootfs ro "
                       "console=tty1 console=ttyS0\n")

RHEL_9_RELEASE = "5.14.0-427.13.1.el9_4.x86_64"
RHEL_9_ACTIVE = "lockdown,capability,yama,integrity,selinux"
RHEL_9_MERGED = ["lockdown", "capability", "yama", "integrity", "selinux", "bpf"]
RHEL_9_CMDLINE = ("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 root=/dev/mapper/rhel-root ro "
                  "crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap "
                  "rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap lsm=lockdown,yama,integrity,selinux rhgb quiet\n")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def kconfig(bpf_lsm, lsm_list):
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#",
             "CONFIG_BPF=y", "CONFIG_BPF_SYSCALL=y", "CONFIG_SECURITY=y", "CONFIG_SECURITYFS=y",
             "CONFIG_DEBUG_INFO_BTF=y",
             "CONFIG_BPF_LSM=y" if bpf_lsm else "# CONFIG_BPF_LSM is not set",
             'CONFIG_LSM="%s"' % (lsm_list,)]
    return "\n".join(lines) + "\n"


def write_files(root, files):
    for name, text in files.items():
        path = os.path.join(root, name)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "w") as handle:
            handle.write(text)


def read(root, name):
    path = os.path.join(root, name)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return handle.read()


def ubuntu_2204(root, active=UBUNTU_2204_ACTIVE, bpf_lsm=True, extra_files=None):
    """An Ubuntu 22.04 cloud VM: BPF LSM compiled in, not in CONFIG_LSM, so not active."""
    files = {
        "proc/cmdline": UBUNTU_2204_CMDLINE,
        "proc/self/mountinfo": MOUNTINFO,
        "sys/kernel/security/lsm": active,
        "sys/kernel/btf/vmlinux": "\x9f\xeb\x01\x00",
        "boot/config-" + UBUNTU_2204_RELEASE: kconfig(bpf_lsm, "landlock,lockdown,yama,integrity,apparmor"),
        "etc/debian_version": "bookworm/sid\n",
        "etc/default/grub": fixture("default-grub-ubuntu2204"),
        "etc/default/grub.d/50-cloudimg-settings.cfg": fixture("50-cloudimg-settings.cfg"),
    }
    files.update(extra_files or {})
    write_files(root, files)
    render_grub_cfg(root)
    return root


def rhel_9(root, active=RHEL_9_ACTIVE):
    """A RHEL 9.4 VM booted with an lsm= lacking bpf (its CONFIG_LSM has bpf)."""
    write_files(root, {
        "proc/cmdline": RHEL_9_CMDLINE,
        "proc/self/mountinfo": MOUNTINFO,
        "sys/kernel/security/lsm": active,
        "sys/kernel/btf/vmlinux": "\x9f\xeb\x01\x00",
        "boot/config-" + RHEL_9_RELEASE: kconfig(True, "lockdown,yama,integrity,selinux,bpf"),
        "etc/redhat-release": "Red Hat Enterprise Linux release 9.4 (Plow)\n",
        "etc/default/grub": fixture("default-grub-rhel9"),
    })
    return root


def render_grub_cfg(root):
    """What update-grub does, as far as the kernel command lines go."""
    script = ('. "$1"; for f in "$2"/*.cfg; do [ -e "$f" ] && . "$f"; done; '
              'printf "%s\\n%s\\n" "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT"')
    output = subprocess.check_output(
        ["bash", "-c", script, "update-grub", os.path.join(root, "etc/default/grub"),
         os.path.join(root, "etc/default/grub.d")], universal_newlines=True, stderr=subprocess.DEVNULL)
    linux, linux_default = output.split("\n")[:2]
    text = fixture("grub.cfg-ubuntu2204.in").replace("@LINUX_DEFAULT@", linux_default).replace("@LINUX@", linux)
    write_files(root, {"boot/grub/grub.cfg": text})


class BootTools(object):
    """Fake update-grub and grubby behind run(argv) -> (rc, stdout, stderr) and which(name)."""

    def __init__(self, root, grubby_info=None, installed=("update-grub",)):
        self.root = root
        self.installed = set(installed)
        self.entries = None
        if grubby_info is not None:
            self.entries = parse_grubby_info(grubby_info)
            self.installed.add("grubby")
        self.calls = []
        self.fail = {}  # tool name -> (rc, stderr) to fail with

    def which(self, name, required=False, opt_dirs=None):
        return "/usr/sbin/" + name if name in self.installed else None

    def run(self, argv, **kwargs):
        argv = list(argv)
        self.calls.append(argv)
        tool = os.path.basename(argv[0])
        if tool in self.fail:
            rc, stderr = self.fail[tool]
            return rc, "", stderr
        if tool == "update-grub":
            render_grub_cfg(self.root)
            return 0, "", "Generating grub configuration file ...\ndone\n"
        if tool == "grubby" and argv[1:] == ["--info=ALL"]:
            return 0, self.grubby_info(), ""
        if tool == "grubby" and argv[1] == "--update-kernel=ALL" and argv[2].startswith("--args="):
            self._grubby_args(argv[2][len("--args="):])
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (argv,))

    def changing_calls(self):
        return [argv for argv in self.calls if argv[1:] != ["--info=ALL"]]

    def grubby_info(self):
        lines = []
        for entry in self.entries:
            for key, value in entry.items():
                lines.append("%s=%s" % (key, value) if key == "index" else '%s="%s"' % (key, value))
        return "\n".join(lines) + "\n"

    def _grubby_args(self, new_args):
        """grubby replaces an argument of the same name where it stands, else appends it."""
        for entry in self.entries:
            tokens = entry["args"].split()
            for new in new_args.split():
                name = new.split("=", 1)[0]
                places = [i for i, token in enumerate(tokens) if token.split("=", 1)[0] == name]
                if places:
                    tokens[places[0]] = new
                else:
                    tokens.append(new)
            entry["args"] = " ".join(tokens)
