# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_program: the loader (status/load/unload/trial load) and the readiness facts are the boundaries."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import errno
import hashlib
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.modules import bpf_program

from .conftest import ModuleFail, lock_is_held

# `bpfquota check --json` facts (before the trial load) of two recorded hosts.
READY = {
    "kernel": "6.1.0-18-amd64", "bpf_lsm_active": True,
    "active_lsms": ["lockdown", "capability", "landlock", "yama", "apparmor", "bpf"],
    "cmdline_lsm": ["lockdown", "capability", "landlock", "yama", "apparmor", "bpf"],
    "config_bpf_lsm": True, "config_lsm": ["landlock", "lockdown", "yama", "integrity", "apparmor"],
    "btf": True, "bpffs": True, "libbpf_version": "1.1", "proposed_lsm": None, "ready": True, "reasons": [],
}
NOT_READY_REASONS = [
    lsm.reason("bpf_not_in_lsm", "bpf is compiled in but not active (active: lockdown,capability,landlock,yama,apparmor)",
               "add bpf to the lsm= boot parameter: lsm=lockdown,capability,landlock,yama,apparmor,bpf, e.g. with "
               "bpfquota_fix_boot: true, then reboot"),
    lsm.reason("libbpf_missing", "libbpf not found", "install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)"),
]
NOT_READY = dict(READY, bpf_lsm_active=False, active_lsms=["lockdown", "capability", "landlock", "yama", "apparmor"],
                 cmdline_lsm=None, proposed_lsm=["lockdown", "capability", "landlock", "yama", "apparmor", "bpf"],
                 ready=False, reasons=NOT_READY_REASONS)

PROGRAMS = {"bq_file_permission": 41, "bq_inode_create": 42}
UPGRADED_PROGRAMS = {"bq_file_permission": 51, "bq_inode_create": 52}


class FakeKernel(object):
    """What is loaded, as loader.status/load/unload/trial_load see and change it."""

    def __init__(self, pin_dir, lock_path, loaded_sha=None):
        self.pin_dir = pin_dir
        self.lock_path = lock_path
        self.sha = loaded_sha
        self.programs = dict(PROGRAMS) if loaded_sha else {}
        self.calls = []
        self.trial_error = None
        self.load_error = None
        if loaded_sha:
            os.makedirs(pin_dir)

    def status(self, pin_dir=layout.PIN_DIR):
        self.calls.append(("status", pin_dir))
        return {"loaded": self.sha is not None, "sha256": self.sha, "programs": dict(self.programs),
                "pin_dir": pin_dir}

    def trial_load(self, object_path):
        self.calls.append(("trial_load", object_path))
        if self.trial_error:
            raise self.trial_error

    def load(self, object_path, pin_dir=layout.PIN_DIR, probe=True):
        self.calls.append(("load", object_path, pin_dir, lock_is_held(self.lock_path)))
        if self.load_error:
            raise self.load_error
        sha = sha_of(object_path)
        upgraded = self.sha is not None
        if upgraded and sha == self.sha:
            return dict(self.status(pin_dir), changed=False, upgraded=False)
        self.sha = sha
        self.programs = dict(UPGRADED_PROGRAMS if upgraded else PROGRAMS)
        if not os.path.isdir(pin_dir):
            os.makedirs(pin_dir)
        return dict(self.status(pin_dir), changed=True, upgraded=upgraded)

    def unload(self, pin_dir=layout.PIN_DIR):
        self.calls.append(("unload", pin_dir, lock_is_held(self.lock_path)))
        if not os.path.isdir(pin_dir):
            return False
        os.rmdir(pin_dir)
        self.sha, self.programs = None, {}
        return True

    def called(self, name):
        return [call for call in self.calls if call[0] == name]


@pytest.fixture
def facts(monkeypatch):
    """The readiness facts the host reports (a copy of READY unless a test replaces it)."""
    current = {"facts": READY, "calls": 0}

    def readiness(root="/", kernel_release=None, libbpf_version=None, machine=None):
        current["calls"] += 1
        return copy.deepcopy(current["facts"])

    monkeypatch.setattr(lsm, "readiness", readiness)
    monkeypatch.setattr(lsm, "probe_lsm", lambda: None)  # the kernel these facts describe attaches it
    return current


@pytest.fixture
def pin_dir(tmp_path, monkeypatch):
    path = str(tmp_path / "bpffs" / "bpfquota" / "v1")
    monkeypatch.setattr(layout, "PIN_DIR", path)
    return path


def make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=None):
    kernel = FakeKernel(pin_dir, lock_path, loaded_sha)
    for name in ("status", "load", "unload", "trial_load"):
        monkeypatch.setattr(loader, name, getattr(kernel, name))
    return kernel


@pytest.fixture
def obj(tmp_path):
    path = str(tmp_path / "bpfquota.bpf.o")
    with open(path, "wb") as f:
        f.write(b"\x7fELF object v2")
    return path


def sha_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


OTHER_SHA = hashlib.sha256(b"\x7fELF object v1").hexdigest()


def test_first_load(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    check = run_module(bpf_program, {"object": obj}, check=True, diff=True)
    assert check["changed"] is True
    assert (check["loaded"], check["sha256"], check["upgraded"], check["programs"]) == (True, sha_of(obj), False, {})
    assert check["diff"] == {"before": {"loaded": False, "sha256": None}, "after": {"loaded": True, "sha256": sha_of(obj)}}
    assert kernel.called("load") == []
    assert kernel.called("trial_load") == [("trial_load", obj)]  # readiness has its last word in check mode too
    assert not os.path.exists(pin_dir)

    real = run_module(bpf_program, {"object": obj, "state": "present"}, diff=True)
    assert real["changed"] is True
    assert (real["loaded"], real["sha256"], real["upgraded"], real["programs"]) == (True, sha_of(obj), False, PROGRAMS)
    assert real["diff"] == check["diff"]
    assert kernel.called("load") == [("load", obj, pin_dir, True)]  # under the writers' lock

    again = run_module(bpf_program, {"object": obj})
    assert again["changed"] is False
    assert (again["sha256"], again["upgraded"], again["programs"]) == (sha_of(obj), False, PROGRAMS)
    assert len(kernel.called("load")) == 1


def test_same_object_loaded_is_unchanged_without_readiness_check(
        run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=sha_of(obj))
    facts["facts"] = NOT_READY  # not consulted: nothing would be loaded
    for check in (True, False):
        result = run_module(bpf_program, {"object": obj}, check=check, diff=True)
        assert result["changed"] is False
        assert (result["sha256"], result["upgraded"], result["programs"]) == (sha_of(obj), False, PROGRAMS)
        assert result["diff"]["before"] == result["diff"]["after"] == {"loaded": True, "sha256": sha_of(obj)}
    assert facts["calls"] == 0
    assert kernel.called("load") == kernel.called("trial_load") == []


def test_different_object_is_upgraded(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=OTHER_SHA)
    check = run_module(bpf_program, {"object": obj}, check=True, diff=True)
    assert check["changed"] is True
    assert check["upgraded"] is True
    assert check["diff"] == {"before": {"loaded": True, "sha256": OTHER_SHA},
                             "after": {"loaded": True, "sha256": sha_of(obj)}}
    assert kernel.called("load") == []
    assert kernel.sha == OTHER_SHA

    real = run_module(bpf_program, {"object": obj}, diff=True)
    assert real["changed"] is True
    assert (real["upgraded"], real["sha256"], real["programs"]) == (True, sha_of(obj), UPGRADED_PROGRAMS)
    assert real["diff"] == check["diff"]
    assert kernel.called("unload") == []  # the loader replaces the links: no unload before the load
    assert run_module(bpf_program, {"object": obj})["changed"] is False


@pytest.mark.parametrize("check", [True, False])
def test_not_ready_host_is_refused_before_loading(run_module, monkeypatch, facts, pin_dir, lock_path, obj, check):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    facts["facts"] = NOT_READY
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj}, check=check)
    assert failed.value.result["msg"] == (
        "this host can't enforce quotas, nothing was loaded:\n"
        "  - bpf is compiled in but not active (active: lockdown,capability,landlock,yama,apparmor): add bpf to the "
        "lsm= boot parameter: lsm=lockdown,capability,landlock,yama,apparmor,bpf, e.g. with bpfquota_fix_boot: true, "
        "then reboot\n"
        "  - libbpf not found: install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")
    assert failed.value.result["reasons"] == NOT_READY_REASONS
    assert kernel.called("load") == kernel.called("trial_load") == []
    assert not os.path.exists(pin_dir)


def test_not_ready_host_is_refused_before_an_upgrade(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=OTHER_SHA)
    facts["facts"] = NOT_READY
    with pytest.raises(ModuleFail):
        run_module(bpf_program, {"object": obj})
    assert kernel.called("load") == []
    assert kernel.sha == OTHER_SHA


@pytest.mark.parametrize("check", [True, False])
def test_trial_load_refused_by_the_kernel(run_module, monkeypatch, facts, pin_dir, lock_path, obj, check):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    problem = "loading BPF object %s failed: Operation not permitted" % obj
    kernel.trial_error = libbpf.LibbpfError(problem + "; the kernel refused the LSM programs ...", errno.EPERM,
                                            problem, "the kernel refused the LSM programs ...")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj}, check=check)
    refusal = failed.value.result["reasons"]
    assert [(r["code"], r["text"]) for r in refusal] == [("lsm_load_refused", str(kernel.trial_error))]
    assert failed.value.result["msg"] == (
        "this host can't enforce quotas, nothing was loaded:\n  - %s: %s" % (str(kernel.trial_error), refusal[0]["fix"]))
    assert kernel.called("load") == []


def test_trial_load_rejected_by_the_verifier(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    problem = "loading BPF object %s failed: Permission denied\nlibbpf log (last lines):\nR1 invalid mem access" % obj
    kernel.trial_error = libbpf.LibbpfError("...", errno.EACCES, problem, "the verifier rejected a program (its log is below)")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj})
    assert failed.value.result["reasons"] == [
        lsm.reason("trial_load_failed", problem, "the verifier rejected a program (its log is below)")]


def test_failed_probe(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    kernel.load_error = loader.ProbeFailed("the BPF LSM programs loaded but did not run")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj})
    assert failed.value.result["msg"] == "loading %s failed: the BPF LSM programs loaded but did not run" % obj


def test_failed_upgrade(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=OTHER_SHA)
    kernel.load_error = libbpf.LibbpfError("attaching bq_inode_create failed: Invalid argument")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj})
    assert failed.value.result["msg"] == (
        "upgrading to %s failed: attaching bq_inode_create failed: Invalid argument" % obj)


@pytest.mark.parametrize("check", [True, False])
def test_missing_object(run_module, monkeypatch, facts, pin_dir, lock_path, tmp_path, check):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    missing = str(tmp_path / "nope.bpf.o")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": missing}, check=check)
    assert failed.value.result["msg"] == (
        "BPF object %s not found: build it with bpfquota.nfs.bpf_build and copy it to the host" % missing)
    assert kernel.calls == []


def test_object_required_when_present(run_module, monkeypatch, facts, pin_dir, lock_path):
    make_kernel(monkeypatch, pin_dir, lock_path)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"state": "present"})
    assert failed.value.result["msg"] == "state is present but all of the following are missing: object"


def test_bad_state(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    make_kernel(monkeypatch, pin_dir, lock_path)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"state": "loaded", "object": obj})
    assert failed.value.result["msg"] == "value of state must be one of: present, absent, got: loaded"


def test_status_unreadable(run_module, monkeypatch, facts, pin_dir, obj):
    def status(pin_dir=layout.PIN_DIR):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(loader, "status", status)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_program, {"object": obj})
    assert failed.value.result["msg"] == (
        "cannot read what is loaded under %s: [Errno 1] Operation not permitted (run as root)" % pin_dir)


def test_absent_unloads(run_module, monkeypatch, facts, pin_dir, lock_path, obj):
    kernel = make_kernel(monkeypatch, pin_dir, lock_path, loaded_sha=sha_of(obj))
    check = run_module(bpf_program, {"state": "absent"}, check=True, diff=True)
    assert check["changed"] is True
    assert (check["loaded"], check["sha256"], check["programs"]) == (False, None, {})
    assert check["diff"] == {"before": {"loaded": True, "sha256": sha_of(obj)}, "after": {"loaded": False, "sha256": None}}
    assert kernel.called("unload") == []
    assert os.path.isdir(pin_dir)

    real = run_module(bpf_program, {"state": "absent", "object": obj}, diff=True)
    assert real["changed"] is True
    assert real["diff"] == check["diff"]
    assert kernel.called("unload") == [("unload", pin_dir, True)]
    assert not os.path.exists(pin_dir)

    for check_mode in (True, False):
        again = run_module(bpf_program, {"state": "absent"}, check=check_mode)
        assert again["changed"] is False
    assert len(kernel.called("unload")) == 1
    assert facts["calls"] == 0  # unloading needs no readiness


def test_absent_removes_leftover_pins(run_module, monkeypatch, facts, pin_dir, lock_path):
    """Maps pinned without links (a crashed load) count as loaded state to remove."""
    kernel = make_kernel(monkeypatch, pin_dir, lock_path)
    os.makedirs(pin_dir)
    assert run_module(bpf_program, {"state": "absent"}, check=True)["changed"] is True
    assert run_module(bpf_program, {"state": "absent"})["changed"] is True
    assert len(kernel.called("unload")) == 1
    assert not os.path.exists(pin_dir)
