# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_command: the command file is written only when it differs; check mode predicts; absent removes."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import bundle
from ansible_collections.bpfquota.nfs.plugins.modules import host_command

from .conftest import ModuleFail


def expected_bytes():
    return bundle.zipapp_bytes(bundle.module_sources())


def test_install_then_nothing_to_do(run_module, tmp_path):
    dest = tmp_path / "bpfquota"
    first = run_module(host_command, {"dest": str(dest)})
    assert first["changed"] and dest.read_bytes() == expected_bytes()
    assert os.stat(str(dest)).st_mode & 0o777 == 0o755
    assert first["sha256"] == hashlib.sha256(expected_bytes()).hexdigest()
    assert run_module(host_command, {"dest": str(dest)})["changed"] is False


@pytest.mark.parametrize("before", [None, b"an older command\n"])
def test_check_mode_predicts_and_writes_nothing(run_module, tmp_path, before):
    dest = tmp_path / "bpfquota"
    if before is not None:
        dest.write_bytes(before)
    result = run_module(host_command, {"dest": str(dest)}, check=True, diff=True)
    assert result["changed"] is True
    assert (dest.read_bytes() if dest.exists() else None) == before
    assert "cli.py" in result["diff"]["after"] and "cli.py" not in result["diff"]["before"]


def test_a_wrong_mode_is_a_change(run_module, tmp_path):
    dest = tmp_path / "bpfquota"
    dest.write_bytes(expected_bytes())
    os.chmod(str(dest), 0o644)
    assert run_module(host_command, {"dest": str(dest)})["changed"] is True
    assert os.stat(str(dest)).st_mode & 0o777 == 0o755


def test_absent(run_module, tmp_path):
    dest = tmp_path / "bpfquota"
    dest.write_bytes(expected_bytes())
    assert run_module(host_command, {"dest": str(dest), "state": "absent"}, check=True)["changed"] is True
    assert dest.exists()
    assert run_module(host_command, {"dest": str(dest), "state": "absent"})["changed"] is True
    assert not dest.exists()
    assert run_module(host_command, {"dest": str(dest), "state": "absent"})["changed"] is False


def test_a_missing_directory_is_named(run_module, tmp_path):
    with pytest.raises(ModuleFail) as failure:
        run_module(host_command, {"dest": str(tmp_path / "nowhere" / "bpfquota")})
    assert "directory %s does not exist" % (tmp_path / "nowhere") in failure.value.result["msg"]
