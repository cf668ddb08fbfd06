# -*- coding: utf-8 -*-
"""layout.py must equal bpf/bpfquota.h byte for byte: compared with the built object's BTF."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import shutil
import subprocess

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
BPF_DIR = os.path.join(ROOT, "bpf")

STRUCTS = {
    "bq_key": layout.KEY,
    "bq_vol_cfg": layout.VOL_CFG,
    "bq_vol_stats": layout.VOL_STATS,
    "bq_dirty": layout.DIRTY,
    "bq_config": layout.CONFIG,
    "bq_vol_meta": layout.VOL_META,
    "bq_creating": layout.CREATING,
}


@pytest.fixture(scope="module")
def btf_structs(tmp_path_factory):
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is needed to read the object's BTF: apt-get install bpftool")
    obj = build(BPF_DIR, str(tmp_path_factory.mktemp("bpf") / "bpfquota.bpf.o"))["path"]
    dump = subprocess.run(["bpftool", "btf", "dump", "file", obj], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout
    return dict((m.group(1), int(m.group(2))) for m in re.finditer(r"STRUCT '(\w+)' size=(\d+)", dump))


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_sizes_match_the_object(btf_structs, name):
    assert btf_structs[name] == STRUCTS[name].size


def header_defines():
    with open(os.path.join(BPF_DIR, "bpfquota.h")) as f:
        text = f.read()
    return dict(re.findall(r"^#define (\w+) (\S.*?)\s*(?:/\*.*)?$", text, re.M))


@pytest.mark.parametrize("name", ["MAX_VOLUMES", "MAX_DEVS", "MAX_DIRTY"])
def test_constants_match_the_header(name):
    assert int(header_defines()[name]) == getattr(layout, name)


def test_abi_and_path_max_match_the_header():
    defines = header_defines()
    assert int(defines["BPFQUOTA_ABI"]) == layout.ABI
    assert int(defines["BQ_PATH_MAX"]) == layout.PATH_MAX
    assert layout.PIN_DIR.endswith("/v%d" % layout.ABI)


def test_ops_match_the_header_enum():
    with open(os.path.join(BPF_DIR, "bpfquota.h")) as f:
        names = re.findall(r"BQ_OP_(\w+) = (\d+)", f.read())
    assert [n.lower() for n, value in sorted(names, key=lambda x: int(x[1]))] == list(layout.OPS)


def test_vol_cfg_round_trip():
    cfg = layout.VolCfg(10, 2, -5, 3, 1, 7, 1)
    assert layout.unpack_vol_cfg(layout.pack_vol_cfg(cfg)) == cfg


def test_vol_meta_rejects_paths_longer_than_the_slot():
    with pytest.raises(ValueError, match="longer than"):
        layout.pack_vol_meta("/" + "a" * layout.PATH_MAX)
    assert layout.unpack_vol_meta(layout.pack_vol_meta("/mnt/nfs/pv-a")) == "/mnt/nfs/pv-a"
