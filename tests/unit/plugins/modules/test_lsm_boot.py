# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lsm_boot on recorded hosts (files, grubby --info=ALL) with fake boot tools; the deprecated lsm_check
with fix_boot does the same, so each test runs both."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import grub_cfg_kernel_args
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import parse_cmdline_lsm
from ansible_collections.bpfquota.nfs.plugins.modules import lsm_boot, lsm_check
from ansible_collections.bpfquota.nfs.tests.unit.plugins.boot_hosts import (
    RHEL_9_MERGED,
    RHEL_9_RELEASE,
    UBUNTU_2204_MERGED,
    UBUNTU_2204_RELEASE,
    BootTools,
    fixture,
    read,
    rhel_9,
    ubuntu_2204,
)

from .conftest import ModuleFail, snapshot

DROP_IN = "etc/default/grub.d/50-bpfquota.cfg"


@pytest.fixture(params=["lsm_boot", "lsm_check"])
def boot(request, run_module):
    """boot(check_mode=False, diff=False) -> result of lsm_boot, or of lsm_check with fix_boot (whose
    verdict on readiness, test_lsm_check.py's business, is left out)."""
    module, args = {"lsm_boot": (lsm_boot, {}),
                    "lsm_check": (lsm_check, {"fix_boot": True, "fail_if_not_ready": False})}[request.param]

    def run(check_mode=False, diff=False):
        return run_module(module, args, check_mode, diff)
    run.module = module
    return run


def grub_cfg_lsms(root):
    return [parse_cmdline_lsm(args) for args in grub_cfg_kernel_args(read(root, "boot/grub/grub.cfg"))]


def test_ubuntu_check_mode_predicts_and_writes_nothing(tmp_path, lsm_host, boot):
    root = ubuntu_2204(str(tmp_path))
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    result = boot(check_mode=True, diff=True)
    assert result["changed"] is True and result["reboot_required"] is True
    assert result["boot_changes"] == ["create %s/%s" % (root, DROP_IN), "run /usr/sbin/update-grub"]
    assert result["diff"][0]["before"] == "" and "lsm=" + ",".join(UBUNTU_2204_MERGED) in result["diff"][0]["after"]
    assert tools.calls == [] and snapshot(root) == before


def test_ubuntu_applies_then_is_idempotent(tmp_path, lsm_host, boot):
    root = ubuntu_2204(str(tmp_path))
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    # Not ready until the reboot, but that alone is no failure.
    result = boot(diff=True)
    assert result["changed"] is True and result["reboot_required"] is True
    assert tools.calls == [["/usr/sbin/update-grub"]]
    assert grub_cfg_lsms(root) == [UBUNTU_2204_MERGED] * 3
    assert os.stat(os.path.join(root, DROP_IN)).st_mode & 0o777 == 0o644
    assert result["warnings"] == [
        "the boot configuration now sets lsm=%s, but the running kernel doesn't have bpf active: reboot to "
        "activate it (this module never reboots)" % (",".join(UBUNTU_2204_MERGED),)]
    if boot.module is lsm_boot:
        assert result["lsm"] == UBUNTU_2204_MERGED

    after_first = snapshot(root)
    result = boot(diff=True)
    assert result["changed"] is False and result["reboot_required"] is True
    assert result["boot_changes"] == [] and result["diff"] == []
    assert tools.calls == [["/usr/sbin/update-grub"]] and snapshot(root) == after_first
    assert "already sets" in result["warnings"][0]

    assert boot(check_mode=True)["changed"] is False


def test_a_kernel_without_bpf_lsm_is_left_alone(tmp_path, lsm_host, run_module):
    root = ubuntu_2204(str(tmp_path), bpf_lsm=False)
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    result = run_module(lsm_boot, {})
    assert result == {"changed": False, "lsm": None, "boot_changes": [], "reboot_required": False, "warnings": []}
    assert tools.calls == [] and snapshot(root) == before


def test_a_host_with_bpf_active_is_left_alone(tmp_path, lsm_host, run_module):
    root = ubuntu_2204(str(tmp_path), active="lockdown,capability,landlock,yama,integrity,apparmor,bpf")
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    result = run_module(lsm_boot, {}, diff=True)
    assert result == {"changed": False, "lsm": None, "boot_changes": [], "reboot_required": False, "warnings": []}
    assert tools.calls == []


def test_a_failure_is_one_clear_message(tmp_path, lsm_host, run_module):
    root = ubuntu_2204(str(tmp_path))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root, installed=()))
    with pytest.raises(ModuleFail) as failed:
        run_module(lsm_boot, {})
    assert failed.value.result["msg"].startswith("update-grub not found")
    assert failed.value.result["changed"] is False


def test_securityfs_is_never_mounted_and_the_booted_list_stands_in(tmp_path, lsm_host, boot, monkeypatch):
    # lsm_boot reads, it mounts nothing: without the active list, the lsm= the kernel booted with
    # (RHEL's) is the list bpf joins. (lsm_check mounts outside check mode: run it in check mode.)
    root = rhel_9(str(tmp_path))
    os.remove(os.path.join(root, "sys/kernel/security/lsm"))
    lsm_host(root, RHEL_9_RELEASE, BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt")))
    monkeypatch.setattr(lsm, "_is_live_root", lambda path: True)
    monkeypatch.setattr(lsm, "_mounted", lambda path, target, fstype: False)
    monkeypatch.setattr(lsm, "_mount_securityfs", lambda: pytest.fail("securityfs mounted"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = boot(check_mode=True)
    assert result["changed"] is True
    assert result["boot_changes"][-1].endswith("--args=lsm=lockdown,yama,integrity,selinux,bpf")


def test_rhel_check_then_apply_then_idempotent(tmp_path, lsm_host, boot):
    root = rhel_9(str(tmp_path))
    tools = lsm_host(root, RHEL_9_RELEASE, BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt")))
    before = snapshot(root)
    value = "lsm=" + ",".join(RHEL_9_MERGED)

    result = boot(check_mode=True, diff=True)
    assert result["changed"] is True and result["reboot_required"] is True
    assert result["boot_changes"] == ["update %s/etc/default/grub" % (root,),
                                      "run /usr/sbin/grubby --update-kernel=ALL --args=" + value]
    assert [diff["before_header"] for diff in result["diff"]] == [
        "%s/etc/default/grub" % (root,), "kernel command lines (grubby --info=ALL)"]
    assert tools.changing_calls() == [] and snapshot(root) == before

    result = boot()
    assert result["changed"] is True
    assert tools.changing_calls() == [["/usr/sbin/grubby", "--update-kernel=ALL", "--args=" + value]]
    assert value in read(root, "etc/default/grub")

    result = boot()
    assert result["changed"] is False and result["reboot_required"] is True
    assert len(tools.changing_calls()) == 1
