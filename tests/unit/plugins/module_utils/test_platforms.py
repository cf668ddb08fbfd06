# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's "Supported platforms" table, checked: the readiness code (lsm.readiness) and the boot
fix (bootcfg) over each distribution's recorded /boot/config-* lines, /proc/cmdline and active LSM list
(fixtures/platforms/<name>/; sources of each fact in the README)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import bootcfg
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import readiness
from test_lsm import host

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "platforms")

# name -> (libbpf the distribution ships or None, reason codes, boot family the fix uses)
PLATFORMS = {
    "debian12": ("1.1.2", [], bootcfg.DEBIAN),
    "debian13": ("1.5.0", [], bootcfg.DEBIAN),
    "ubuntu2204": ("0.5.0", ["kernel_too_old", "libbpf_too_old"], bootcfg.DEBIAN),
    "ubuntu2204-hwe": ("0.5.0", ["bpf_not_in_lsm", "libbpf_too_old"], bootcfg.DEBIAN),
    "ubuntu2404": ("1.3.0", ["bpf_not_in_lsm"], bootcfg.DEBIAN),
    "rhel9": ("1.3.0", [], bootcfg.REDHAT),
    "rhel10": ("1.5.0", [], bootcfg.REDHAT),
    "flatcar": (None, ["bpf_not_in_lsm", "libbpf_missing"], None),
}


def recorded(tmp_path, name):
    def read(part):
        with open(os.path.join(FIXTURES, name, part)) as f:
            return f.read()
    release = read("release").strip()
    root = host(tmp_path, release, active=read("lsm"), cmdline=read("cmdline"), config=read("config"))
    marker = read("family").strip()
    if marker != "none":
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        with open(os.path.join(root, marker), "w") as f:
            f.write("recorded\n")
    return root, release


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_verdict(tmp_path, name):
    libbpf_version, codes, family = PLATFORMS[name]
    root, release = recorded(tmp_path, name)
    facts = readiness(root, kernel_release=release, libbpf_version=libbpf_version, machine="x86_64")
    assert [r["code"] for r in facts["reasons"]] == codes
    assert facts["ready"] is (codes == [])
    assert bootcfg.detect_family(root, lambda tool: None) == family


@pytest.mark.parametrize("name", ["ubuntu2204-hwe", "ubuntu2404", "flatcar"])
def test_fix_boot_keeps_every_lsm(tmp_path, name):
    """Where bpf is built in but inactive, fix_boot proposes the active list plus bpf."""
    root, release = recorded(tmp_path, name)
    facts = readiness(root, kernel_release=release, libbpf_version="1.3.0", machine="x86_64")
    assert bootcfg.bpf_boot_helps(facts)
    lsm = bootcfg.boot_lsm(facts["active_lsms"], facts["cmdline_lsm"], facts["config_lsm"])
    assert lsm == facts["active_lsms"] + ["bpf"]


def test_flatcar_boot_fix_is_by_hand(tmp_path):
    """Flatcar has neither update-grub nor grubby: the role stops and names the change to make."""
    root, release = recorded(tmp_path, "flatcar")
    with pytest.raises(bootcfg.BootConfigError, match="by hand"):
        bootcfg.plan_boot_lsm(root, ["lockdown", "capability", "yama", "selinux", "bpf"],
                              lambda argv: (1, "", ""), lambda tool: None)
