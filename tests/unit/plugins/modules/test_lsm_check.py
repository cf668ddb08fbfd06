# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import errno
import json
import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import LibbpfError
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import parse_cmdline_lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import grub_cfg_kernel_args
from ansible_collections.bpfquota.nfs.plugins.modules import lsm_check
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

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19 reads the arguments from basic._ANSIBLE_ARGS
    @contextlib.contextmanager
    def patch_module_args(args=None):
        serialized = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}))
        original = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = serialized
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = original

DROP_IN = "etc/default/grub.d/50-bpfquota.cfg"


class AnsibleExitJson(Exception):
    pass


class AnsibleFailJson(Exception):
    pass


class FakeLibbpf(object):
    version = (1, 1)


@pytest.fixture
def host(monkeypatch):
    """Point the module at a recorded host: its files, kernel release, libbpf and boot tools."""
    warnings = []

    def with_warnings(result):
        """result with the warnings of this run, which the next run starts without."""
        result = dict(result, warnings=list(warnings))
        del warnings[:]
        return result

    def exit_json(module, **result):
        raise AnsibleExitJson(with_warnings(result))

    def fail_json(module, **result):
        raise AnsibleFailJson(with_warnings(result))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda module, warning: warnings.append(warning))
    monkeypatch.setattr(lsm_check, "libbpf", FakeLibbpf)
    monkeypatch.setattr(lsm_check, "probe_lsm", lambda: None)  # the recorded host's kernel attaches it

    def use(root, release, tools):
        monkeypatch.setattr(lsm_check, "HOST_ROOT", root)
        monkeypatch.setattr(os, "uname", lambda: os.uname_result(
            ("Linux", "node", release, "#1 SMP PREEMPT_DYNAMIC", "x86_64")))
        monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, argv, **kw: tools.run(argv))
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda module, name, *a, **kw: tools.which(name))
        return tools
    return use


def run_module(args, check_mode=False, diff=False):
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            lsm_check.main()
    return raised.type is AnsibleFailJson, raised.value.args[0]


def snapshot(root):
    files = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


def grub_cfg_lsms(root):
    return [parse_cmdline_lsm(args) for args in grub_cfg_kernel_args(read(root, "boot/grub/grub.cfg"))]


def test_ready_host_reports_its_facts(tmp_path, host):
    root = ubuntu_2204(str(tmp_path), active="lockdown,capability,landlock,yama,integrity,apparmor,bpf")
    tools = host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run_module({"fix_boot": True})
    assert not failed and result["ready"] and result["reasons"] == []
    assert result["changed"] is False and result["reboot_required"] is False and result["boot_changes"] == []
    assert result["kernel"] == UBUNTU_2204_RELEASE and result["bpf_lsm_active"] is True
    assert result["active_lsms"][-1] == "bpf" and result["cmdline_lsm"] is None
    assert result["config_bpf_lsm"] is True
    assert result["config_lsm"] == ["landlock", "lockdown", "yama", "integrity", "apparmor"]
    assert result["btf"] is True and result["bpffs"] is True and result["libbpf_version"] == "1.1"
    assert tools.calls == []


def test_not_ready_fails_with_every_reason_and_its_fix(tmp_path, host, monkeypatch):
    root = ubuntu_2204(str(tmp_path))
    os.remove(os.path.join(root, "sys/kernel/btf/vmlinux"))
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run_module({})
    assert failed and not result["ready"] and [r["code"] for r in result["reasons"]] == ["bpf_not_in_lsm", "no_btf"]
    assert result["msg"].startswith("this host can't enforce bpfquota quotas: ")
    assert "lsm=" + ",".join(UBUNTU_2204_MERGED) in result["msg"]
    assert "CONFIG_DEBUG_INFO_BTF=y" in result["msg"]
    assert result["changed"] is False and result["reboot_required"] is False


def test_a_kernel_that_refuses_lsm_programs_is_not_ready(tmp_path, host, monkeypatch):
    # Its files say ready (bpf active, BTF, libbpf), but loading an LSM program gets EPERM, as on a
    # sandboxed host: the role must know before it installs anything.
    root = ubuntu_2204(str(tmp_path), active="lockdown,capability,landlock,yama,integrity,apparmor,bpf")
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    problem = "loading a BPF LSM probe program failed: Operation not permitted"
    refusal = problem + "; the kernel refused ..."

    def refused():
        raise LibbpfError(refusal, errno.EPERM, problem, "the kernel refused ...")
    monkeypatch.setattr(lsm_check, "probe_lsm", refused)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    failed, result = run_module({"fix_boot": True})
    assert failed and (result["ready"], result["lsm_probe"]) == (False, False)
    assert [(r["code"], r["text"]) for r in result["reasons"]] == [("lsm_load_refused", refusal)]
    assert refusal in result["msg"] and "allow BPF LSM programs on this host" in result["msg"]
    assert result["changed"] is False and result["boot_changes"] == []


@pytest.mark.parametrize("check_mode", [True, False])
def test_securityfs_is_mounted_only_outside_check_mode(tmp_path, host, monkeypatch, check_mode):
    # The live host, as root, with securityfs not mounted (its lsm file missing): the module mounts
    # it to read the active LSMs, except in check mode, which changes nothing and says why.
    root = ubuntu_2204(str(tmp_path), active="lockdown,capability,landlock,yama,integrity,apparmor,bpf")
    lsm_file = os.path.join(root, lsm.LSM_FILE)
    os.rename(lsm_file, lsm_file + ".hidden")
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    mounts = []

    def mount_securityfs():
        mounts.append(lsm.MOUNT_SECURITYFS)
        os.rename(lsm_file + ".hidden", lsm_file)
    monkeypatch.setattr(lsm, "_is_live_root", lambda path: True)
    monkeypatch.setattr(lsm, "_mounted", lambda path, target, fstype: fstype == "bpf")
    monkeypatch.setattr(lsm, "_mount_securityfs", mount_securityfs)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    failed, result = run_module({}, check_mode=check_mode)
    if check_mode:
        assert mounts == [] and failed and not result["ready"]
        assert result["reasons"] == [lsm.reason(
            "securityfs_unreadable", "cannot read /%s (securityfs not mounted, and check mode mounts nothing)" % lsm.LSM_FILE,
            "mount securityfs as root: %s" % lsm.MOUNT_SECURITYFS)]
    else:
        assert mounts == [lsm.MOUNT_SECURITYFS] and not failed and result["ready"]


def test_not_ready_without_failing(tmp_path, host):
    root = ubuntu_2204(str(tmp_path))
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run_module({"fail_if_not_ready": False})
    assert not failed and not result["ready"] and result["proposed_lsm"] == UBUNTU_2204_MERGED


def no_libbpf():
    raise LibbpfError("libbpf.so.1 not found (cannot open): install the libbpf1 package")


def test_missing_libbpf_is_a_reason_and_a_warning(tmp_path, host, monkeypatch):
    root = ubuntu_2204(str(tmp_path), active="lockdown,capability,landlock,yama,integrity,apparmor,bpf")
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    monkeypatch.setattr(lsm_check, "libbpf", no_libbpf)
    failed, result = run_module({})
    assert failed and result["libbpf_version"] is None
    assert result["reasons"] == [lsm.reason("libbpf_missing", "libbpf not found",
                                            "install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")]
    assert result["warnings"] == ["libbpf: libbpf.so.1 not found (cannot open): install the libbpf1 package"]


def test_ubuntu_fix_boot_check_mode_predicts_and_writes_nothing(tmp_path, host):
    root = ubuntu_2204(str(tmp_path))
    tools = host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    failed, result = run_module({"fix_boot": True}, check_mode=True, diff=True)
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    assert result["boot_changes"] == ["create %s/%s" % (root, DROP_IN), "run /usr/sbin/update-grub"]
    assert result["diff"][0]["before"] == "" and "lsm=" + ",".join(UBUNTU_2204_MERGED) in result["diff"][0]["after"]
    assert tools.calls == [] and snapshot(root) == before


def test_ubuntu_fix_boot_applies_then_is_idempotent(tmp_path, host):
    root = ubuntu_2204(str(tmp_path))
    tools = host(root, UBUNTU_2204_RELEASE, BootTools(root))
    failed, result = run_module({"fix_boot": True}, diff=True)
    # Not ready until the reboot, but that alone is no failure.
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    assert result["ready"] is False and [r["code"] for r in result["reasons"]] == ["bpf_not_in_lsm"]
    assert tools.calls == [["/usr/sbin/update-grub"]]
    assert grub_cfg_lsms(root) == [UBUNTU_2204_MERGED] * 3
    assert os.stat(os.path.join(root, DROP_IN)).st_mode & 0o777 == 0o644
    assert result["warnings"] == [
        "the boot configuration now sets lsm=%s, but the running kernel doesn't have bpf active: reboot to "
        "activate it (this module never reboots)" % (",".join(UBUNTU_2204_MERGED),)]

    after_first = snapshot(root)
    failed, result = run_module({"fix_boot": True}, diff=True)
    assert not failed and result["changed"] is False and result["reboot_required"] is True
    assert result["boot_changes"] == [] and result["diff"] == []
    assert tools.calls == [["/usr/sbin/update-grub"]] and snapshot(root) == after_first
    assert "already sets" in result["warnings"][0]

    failed, result = run_module({"fix_boot": True}, check_mode=True)
    assert not failed and result["changed"] is False


def test_reboot_pending_still_fails_on_other_reasons(tmp_path, host, monkeypatch):
    root = ubuntu_2204(str(tmp_path))
    host(root, UBUNTU_2204_RELEASE, BootTools(root))
    monkeypatch.setattr(lsm_check, "libbpf", no_libbpf)
    failed, result = run_module({"fix_boot": True})
    assert failed and result["changed"] is True and result["reboot_required"] is True
    assert result["msg"] == ("this host can't enforce bpfquota quotas: libbpf not found: install libbpf >= 1.0 "
                             "(Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")


def test_fix_boot_leaves_a_kernel_without_bpf_lsm_alone(tmp_path, host):
    root = ubuntu_2204(str(tmp_path), bpf_lsm=False)
    tools = host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    failed, result = run_module({"fix_boot": True})
    assert failed and result["changed"] is False and result["reboot_required"] is False
    assert "kernel built without CONFIG_BPF_LSM" in result["msg"]
    assert tools.calls == [] and snapshot(root) == before


def test_fix_boot_failure_is_one_clear_message(tmp_path, host):
    root = ubuntu_2204(str(tmp_path))
    host(root, UBUNTU_2204_RELEASE, BootTools(root, installed=()))
    failed, result = run_module({"fix_boot": True})
    assert failed and result["msg"].startswith("fix_boot: update-grub not found")
    assert result["changed"] is False


def test_rhel_fix_boot_check_then_apply_then_idempotent(tmp_path, host):
    root = rhel_9(str(tmp_path))
    tools = host(root, RHEL_9_RELEASE, BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt")))
    before = snapshot(root)
    value = "lsm=" + ",".join(RHEL_9_MERGED)

    failed, result = run_module({"fix_boot": True}, check_mode=True, diff=True)
    assert not failed and result["changed"] is True and result["reboot_required"] is True
    assert result["cmdline_lsm"] == ["lockdown", "yama", "integrity", "selinux"]
    assert result["boot_changes"] == ["update %s/etc/default/grub" % (root,),
                                      "run /usr/sbin/grubby --update-kernel=ALL --args=" + value]
    assert [diff["before_header"] for diff in result["diff"]] == [
        "%s/etc/default/grub" % (root,), "kernel command lines (grubby --info=ALL)"]
    assert tools.changing_calls() == [] and snapshot(root) == before

    failed, result = run_module({"fix_boot": True})
    assert not failed and result["changed"] is True
    assert tools.changing_calls() == [["/usr/sbin/grubby", "--update-kernel=ALL", "--args=" + value]]
    assert value in read(root, "etc/default/grub")

    failed, result = run_module({"fix_boot": True})
    assert not failed and result["changed"] is False and result["reboot_required"] is True
    assert len(tools.changing_calls()) == 1
