# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""enforcement: the kind of a failure, which the CLI turns into its exit code."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import cli, enforcement, libbpf, loader


@pytest.fixture
def private_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(enforcement, "LOCK_PATH", str(tmp_path / "bpfquota.lock"))


def refusing_load(error):
    def load(object_path, pin_dir):
        raise error
    return load


@pytest.mark.parametrize("error, kind", [
    (libbpf.LibbpfError("attaching bq_inode_create failed: Operation not permitted", errno.EPERM), enforcement.NOT_READY),
    (libbpf.LibbpfError("attaching bq_inode_create failed: Invalid argument", errno.EINVAL), enforcement.FAILED),
    (loader.ProbeFailed("the BPF LSM programs loaded but did not run"), enforcement.FAILED),
])
def test_a_load_the_kernel_refuses_is_not_ready_and_any_other_failed(private_lock, monkeypatch, error, kind):
    monkeypatch.setattr(loader, "load", refusing_load(error))
    with pytest.raises(enforcement.BpfquotaError) as raised:
        enforcement.load_program("/x.bpf.o")
    assert (raised.value.kind, str(raised.value)) == (kind, str(error))


@pytest.mark.parametrize("kind, code", [(enforcement.USAGE, cli.EXIT_USAGE), (enforcement.NOT_READY, cli.EXIT_NOT_READY),
                                        (enforcement.NOT_LOADED, cli.EXIT_NOT_LOADED), (enforcement.FAILED, cli.EXIT_ERROR)])
def test_the_cli_exits_with_the_code_of_the_kind(monkeypatch, capsys, tmp_path, kind, code):
    def refuse(object_path):
        raise enforcement.BpfquotaError("no: the fix", kind)

    monkeypatch.setattr(enforcement, "require_ready", refuse)
    object_path = tmp_path / "x.bpf.o"
    object_path.write_bytes(b"")
    assert cli.main(["load", "--object", str(object_path)]) == code
    assert capsys.readouterr().err == "bpfquota: no: the fix\n"
