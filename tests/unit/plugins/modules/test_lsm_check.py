# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lsm_check, the deprecated wrapper of lsm_facts and lsm_boot: what it did before the split, it does
still (its boot configuration changes are tested with lsm_boot's, in test_lsm_boot.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import LibbpfError
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.modules import lsm_check
from ansible_collections.bpfquota.nfs.tests.unit.plugins.boot_hosts import (
    UBUNTU_2204_MERGED,
    UBUNTU_2204_RELEASE,
    BootTools,
    ubuntu_2204,
)

from .conftest import ModuleFail, snapshot

READY_ACTIVE = "lockdown,capability,landlock,yama,integrity,apparmor,bpf"


@pytest.fixture
def run(run_module):
    """run(args, check_mode=False, diff=False) -> (failed, result) of lsm_check."""
    def run_(args, check_mode=False, diff=False):
        try:
            return False, run_module(lsm_check, args, check_mode, diff)
        except ModuleFail as failed:
            return True, failed.result
    return run_


def test_ready_host_reports_its_facts(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run({"fix_boot": True})
    assert not failed and result["ready"] and result["reasons"] == []
    assert result["changed"] is False and result["reboot_required"] is False and result["boot_changes"] == []
    assert result["kernel"] == UBUNTU_2204_RELEASE and result["bpf_lsm_active"] is True
    assert result["active_lsms"][-1] == "bpf" and result["cmdline_lsm"] is None
    assert result["config_bpf_lsm"] is True
    assert result["config_lsm"] == ["landlock", "lockdown", "yama", "integrity", "apparmor"]
    assert result["btf"] is True and result["bpffs"] is True and result["libbpf_version"] == "1.1"
    assert "lsm" not in result  # lsm_boot's, not lsm_check's
    assert tools.calls == []


def test_not_ready_fails_with_every_reason_and_its_fix(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path))
    os.remove(os.path.join(root, "sys/kernel/btf/vmlinux"))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run({})
    assert failed and not result["ready"] and [r["code"] for r in result["reasons"]] == ["bpf_not_in_lsm", "no_btf"]
    assert result["msg"].startswith("this host can't enforce bpfquota quotas: ")
    assert "lsm=" + ",".join(UBUNTU_2204_MERGED) in result["msg"]
    assert "CONFIG_DEBUG_INFO_BTF=y" in result["msg"]
    assert result["changed"] is False and result["reboot_required"] is False


def test_a_kernel_that_refuses_lsm_programs_is_not_ready(tmp_path, lsm_host, run, monkeypatch):
    # Its files say ready (bpf active, BTF, libbpf), but loading an LSM program gets EPERM, as on a
    # sandboxed host: the role must know before it installs anything.
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    problem = "loading a BPF LSM probe program failed: Operation not permitted"
    refusal = problem + "; the kernel refused ..."

    def refused():
        raise LibbpfError(refusal, errno.EPERM, problem, "the kernel refused ...")
    monkeypatch.setattr(lsm_check, "probe_lsm", refused)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    failed, result = run({"fix_boot": True})
    assert failed and (result["ready"], result["lsm_probe"]) == (False, False)
    assert [(r["code"], r["text"]) for r in result["reasons"]] == [("lsm_load_refused", refusal)]
    assert refusal in result["msg"] and "allow BPF LSM programs on this host" in result["msg"]
    assert result["changed"] is False and result["boot_changes"] == []


@pytest.mark.parametrize("check_mode", [True, False])
def test_securityfs_is_mounted_only_outside_check_mode(tmp_path, lsm_host, run, monkeypatch, check_mode):
    # The live host, as root, with securityfs not mounted (its lsm file missing): the module mounts
    # it to read the active LSMs, except in check mode, which changes nothing and says why.
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    lsm_file = os.path.join(root, lsm.LSM_FILE)
    os.rename(lsm_file, lsm_file + ".hidden")
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    mounts = []

    def mount_securityfs():
        mounts.append(lsm.MOUNT_SECURITYFS)
        os.rename(lsm_file + ".hidden", lsm_file)
    monkeypatch.setattr(lsm, "_is_live_root", lambda path: True)
    monkeypatch.setattr(lsm, "_mounted", lambda path, target, fstype: fstype == "bpf")
    monkeypatch.setattr(lsm, "_mount_securityfs", mount_securityfs)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    failed, result = run({}, check_mode=check_mode)
    if check_mode:
        assert mounts == [] and failed and not result["ready"]
        assert result["reasons"] == [lsm.reason(
            "securityfs_unreadable", "cannot read /%s (securityfs not mounted)" % lsm.LSM_FILE,
            "mount securityfs as root: %s" % lsm.MOUNT_SECURITYFS)]
    else:
        assert mounts == [lsm.MOUNT_SECURITYFS] and not failed and result["ready"]


def test_not_ready_without_failing(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run({"fail_if_not_ready": False})
    assert not failed and not result["ready"] and result["proposed_lsm"] == UBUNTU_2204_MERGED


def no_libbpf():
    raise LibbpfError("libbpf.so.1 not found (cannot open): install the libbpf1 package")


def test_missing_libbpf_is_a_reason_and_a_warning(tmp_path, lsm_host, run, monkeypatch):
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    monkeypatch.setattr(lsm_check, "libbpf", no_libbpf)
    failed, result = run({})
    assert failed and result["libbpf_version"] is None
    assert result["reasons"] == [lsm.reason("libbpf_missing", "libbpf not found",
                                            "install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")]
    assert result["warnings"] == ["libbpf: libbpf.so.1 not found (cannot open): install the libbpf1 package"]


def test_a_reboot_pending_after_fix_boot_is_no_failure(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run({"fix_boot": True})
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    assert result["ready"] is False and [r["code"] for r in result["reasons"]] == ["bpf_not_in_lsm"]


def test_reboot_pending_still_fails_on_other_reasons(tmp_path, lsm_host, run, monkeypatch):
    root = ubuntu_2204(str(tmp_path))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    monkeypatch.setattr(lsm_check, "libbpf", no_libbpf)
    failed, result = run({"fix_boot": True})
    assert failed and result["changed"] is True and result["reboot_required"] is True
    assert result["msg"] == ("this host can't enforce bpfquota quotas: libbpf not found: install libbpf >= 1.0 "
                             "(Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")


def test_fix_boot_on_a_kernel_without_bpf_lsm_fails_on_the_kernel(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path), bpf_lsm=False)
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    failed, result = run({"fix_boot": True})
    assert failed and result["changed"] is False and result["reboot_required"] is False
    assert "kernel built without CONFIG_BPF_LSM" in result["msg"]
    assert tools.calls == [] and snapshot(root) == before


def test_fix_boot_failure_is_one_clear_message(tmp_path, lsm_host, run):
    root = ubuntu_2204(str(tmp_path))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root, installed=()))
    failed, result = run({"fix_boot": True})
    assert failed and result["msg"].startswith("fix_boot: update-grub not found")
    assert result["changed"] is False
