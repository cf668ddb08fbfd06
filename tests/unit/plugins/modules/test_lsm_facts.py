# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lsm_facts on recorded hosts: the facts under ansible_facts.bpfquota_lsm, and nothing changed, ever."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import LibbpfError
from ansible_collections.bpfquota.nfs.plugins.modules import lsm_facts
from ansible_collections.bpfquota.nfs.tests.unit.plugins.boot_hosts import (
    UBUNTU_2204_MERGED,
    UBUNTU_2204_RELEASE,
    BootTools,
    ubuntu_2204,
)

from .conftest import snapshot

READY_ACTIVE = "lockdown,capability,landlock,yama,integrity,apparmor,bpf"


@pytest.fixture(params=[False, True], ids=["run", "check"])
def gather(request, run_module):
    """gather() -> (the bpfquota_lsm facts, the whole result), in a real run and in check mode alike."""
    def run():
        result = run_module(lsm_facts, {}, check=request.param)
        assert sorted(result) == ["ansible_facts", "changed", "warnings"] and result["changed"] is False
        assert sorted(result["ansible_facts"]) == ["bpfquota_lsm"]
        return result["ansible_facts"]["bpfquota_lsm"], result
    return run


def test_a_ready_host(tmp_path, lsm_host, gather):
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    facts, result = gather()
    assert facts == {
        "kernel": UBUNTU_2204_RELEASE, "bpf_lsm_active": True, "active_lsms": READY_ACTIVE.split(","),
        "cmdline_lsm": None, "config_bpf_lsm": True, "config_lsm": ["landlock", "lockdown", "yama", "integrity", "apparmor"],
        "btf": True, "bpffs": True, "libbpf_version": "1.1", "proposed_lsm": None, "ready": True, "lsm_probe": True,
        "reasons": [],
    }
    assert tools.calls == [] and result["warnings"] == []


def test_a_host_that_is_not_ready_is_no_failure(tmp_path, lsm_host, gather):
    root = ubuntu_2204(str(tmp_path))
    os.remove(os.path.join(root, "sys/kernel/btf/vmlinux"))
    tools = lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    before = snapshot(root)
    facts, dummy = gather()
    assert (facts["ready"], facts["lsm_probe"], facts["proposed_lsm"]) == (False, None, UBUNTU_2204_MERGED)
    assert [r["code"] for r in facts["reasons"]] == ["bpf_not_in_lsm", "no_btf"]
    assert "lsm=" + ",".join(UBUNTU_2204_MERGED) in facts["reasons"][0]["fix"]
    assert tools.calls == [] and snapshot(root) == before  # no boot configuration touched


def test_a_kernel_that_refuses_lsm_programs(tmp_path, lsm_host, gather, monkeypatch):
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))

    def refused():
        raise LibbpfError("loading a BPF LSM probe program failed: Operation not permitted; ...", errno.EPERM)
    monkeypatch.setattr(lsm_facts, "probe_lsm", refused)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts, dummy = gather()
    assert (facts["ready"], facts["lsm_probe"]) == (False, False)
    assert [r["code"] for r in facts["reasons"]] == ["lsm_load_refused"]


def test_securityfs_is_never_mounted(tmp_path, lsm_host, gather, monkeypatch):
    # The live host, as root, with securityfs not mounted: lsm_facts reads, it never mounts, in a
    # real run as in check mode; the unmounted securityfs is a reason with its fix.
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    os.remove(os.path.join(root, lsm.LSM_FILE))
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))
    monkeypatch.setattr(lsm, "_is_live_root", lambda path: True)
    monkeypatch.setattr(lsm, "_mounted", lambda path, target, fstype: fstype == "bpf")
    monkeypatch.setattr(lsm, "_mount_securityfs", lambda: pytest.fail("securityfs mounted"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts, dummy = gather()
    assert facts["reasons"] == [lsm.reason(
        "securityfs_unreadable", "cannot read /%s (securityfs not mounted)" % lsm.LSM_FILE,
        "mount securityfs as root: %s" % lsm.MOUNT_SECURITYFS)]


def test_missing_libbpf_is_a_reason_and_a_warning(tmp_path, lsm_host, gather, monkeypatch):
    root = ubuntu_2204(str(tmp_path), active=READY_ACTIVE)
    lsm_host(root, UBUNTU_2204_RELEASE, BootTools(root))

    def no_libbpf():
        raise LibbpfError("libbpf.so.1 not found (cannot open): install the libbpf1 package")
    monkeypatch.setattr(lsm_facts, "libbpf", no_libbpf)
    facts, result = gather()
    assert facts["libbpf_version"] is None and [r["code"] for r in facts["reasons"]] == ["libbpf_missing"]
    assert result["warnings"] == ["libbpf: libbpf.so.1 not found (cannot open): install the libbpf1 package"]
