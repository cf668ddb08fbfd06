# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""quota_info: read-only rows and report lines of an in-memory QuotaMaps set up through the quota
module; its payload carries only the module_utils it uses."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import cli
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import maps as quota_maps
from ansible_collections.bpfquota.nfs.plugins.module_utils import quota as quota_utils
from ansible_collections.bpfquota.nfs.plugins.modules import quota, quota_info

from .conftest import ModuleFail

NO_DENIALS = dict((op, 0) for op in layout.OPS)


@pytest.mark.parametrize("check", [True, False])
def test_not_loaded_is_not_an_error(run_module, not_loaded, check):
    result = run_module(quota_info, {}, check=check)
    assert result == {"changed": False, "loaded": False, "volumes": [], "lines": [], "warnings": []}


NO_SOFT = {"soft_bytes": None, "soft_files": None, "grace_seconds": None, "grace_expires": None,
           "files_grace_expires": None}


def test_rows(run_module, fake_maps, mounts, tmp_path, capsys):
    a, b = tmp_path / "pv-a", tmp_path / "pv-b"
    a.mkdir()
    b.mkdir()
    (a / "data").write_bytes(b"x" * 4096)
    run_module(quota, {"volumes": [{"path": str(b), "limit": "1Mi", "inodes": 10, "mode": "audit"},
                                   {"path": str(a), "limit": 8192}]})
    ids = dict((path, vol_id) for path, (vol_id, v) in quota_utils.applied_volumes(fake_maps).items())
    # what the BPF programs counted since the first scan
    fake_maps.kernel_counts(ids[str(a)], delta_bytes=2048, delta_files=1, checks=40, write=3, create=1)
    fake_maps.kernel_counts(ids[str(b)], checks=2)
    writes = len(fake_maps.writes)

    for check in (False, True):
        result = run_module(quota_info, {}, check=check)
        assert result["changed"] is False
        assert result["loaded"] is True
        assert result["volumes"] == [
            {"path": str(a), "used_bytes": 4096 + 2048, "limit_bytes": 8192, "files": 1 + 1, "limit_files": 0,
             "denials": 4, "mode": "enforce", "usage": "scanned", "unknown_usage": "refuse",
             "state": "enforcing", "labels": {}, "checks": 40,
             "denials_by_op": dict(NO_DENIALS, write=3, create=1), "percent": 75.0, **NO_SOFT},
            {"path": str(b), "used_bytes": 0, "limit_bytes": 1 << 20, "files": 0,
             "limit_files": 10, "denials": 0, "mode": "audit", "usage": "scanned", "unknown_usage": "refuse",
             "state": "auditing", "labels": {}, "checks": 2, "denials_by_op": NO_DENIALS,
             "percent": 0.0, **NO_SOFT},
        ]
        assert result["lines"] == [
            "Volume%s  Used  Limit  Use%%  Files  FLimit  Denials  Mode     Usage    State" % (" " * (len(str(a)) - 6)),
            "%s    6K     8K   75%%      2       -        4  enforce  scanned  enforcing" % a,
            "%s     0     1M    0%%      0      10        0  audit    scanned  auditing" % b,
        ]
    assert len(fake_maps.writes) == writes  # read-only
    # the very lines `bpfquota report` prints
    capsys.readouterr()
    assert cli.main(["report"]) == 0
    assert capsys.readouterr().out.splitlines() == result["lines"]


def test_no_volumes(run_module, fake_maps):
    assert run_module(quota_info, {}) == {
        "changed": False, "loaded": True, "volumes": [], "warnings": [],
        "lines": ["Volume  Used  Limit  Use%  Files  FLimit  Denials  Mode  Usage  State", "(no volumes)"]}


def test_negative_usage_reads_as_zero(run_module, fake_maps, mounts, tmp_path):
    """Deletes of files that predate an incomplete first scan can take the count below zero."""
    vol = tmp_path / "pv"
    vol.mkdir()
    run_module(quota, {"volumes": [{"path": str(vol), "limit": "1Gi"}]})
    fake_maps.kernel_counts(1, delta_bytes=-5000, delta_files=-3)
    row = run_module(quota_info, {})["volumes"][0]
    assert (row["used_bytes"], row["files"], row["percent"]) == (0, 0, 0.0)


def test_takes_no_options(run_module, fake_maps):
    with pytest.raises(ModuleFail) as failed:
        run_module(quota_info, {"path": "/mnt/nfs/pv-a"})
    assert failed.value.result["msg"].startswith("Unsupported parameters")
    assert "path" in failed.value.result["msg"]


def test_unreadable_maps(run_module, monkeypatch):
    def refuse(pin_dir=layout.PIN_DIR):
        raise libbpf.LibbpfError("opening pinned object %s/vol_cfg failed: Permission denied" % pin_dir)

    monkeypatch.setattr(quota_maps, "QuotaMaps", refuse)
    with pytest.raises(ModuleFail) as failed:
        run_module(quota_info, {})
    assert failed.value.result["msg"] == (
        "cannot open the bpfquota maps under %s: opening pinned object %s/vol_cfg failed: Permission denied "
        "(run as root)" % (layout.PIN_DIR, layout.PIN_DIR))


MODULE_UTILS = "ansible_collections.bpfquota.nfs.plugins.module_utils"
PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(quota_info.__file__)))


def module_utils_imported(path):
    """The collection's module_utils a file imports, anywhere in it (as Ansible's payload builder finds them)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == MODULE_UTILS:
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(MODULE_UTILS + "."):
            names.add(node.module[len(MODULE_UTILS) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name[len(MODULE_UTILS) + 1:].split(".")[0] for alias in node.names
                         if alias.name.startswith(MODULE_UTILS + "."))
    return names


def payload(module_path):
    """The module_utils files Ansible sends along with a module: what it imports, and what they import."""
    todo, found = list(module_utils_imported(module_path)), set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(module_utils_imported(os.path.join(PLUGINS, "module_utils", name + ".py")))
    return sorted(found)


def test_the_payload_holds_only_what_it_uses():
    """The report rows are read by report.py, not by the service (enforcement.py), which would bring
    loading, readiness and the saved usage along."""
    assert payload(os.path.join(PLUGINS, "modules", "quota_info.py")) == [
        "atomic", "digest", "durations", "grace", "layout", "libbpf", "maps", "mountinfo", "quota", "report", "sizes", "usage", "volumes", "walk"]
