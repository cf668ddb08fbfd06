# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import loader


def test_an_upgrade_across_abis_retires_the_old_pins_and_nothing_else(tmp_path):
    root = tmp_path / "bpfquota"
    for name in ("v2", "v3", "v10", "vx", "notes"):
        (root / name / "links").mkdir(parents=True)
    retired = loader.retire_other_abis(str(root / "v3"), str(root))
    assert retired == [str(root / "v10"), str(root / "v2")]
    assert sorted(os.listdir(str(root))) == ["notes", "v3", "vx"]


def test_a_private_pin_dir_leaves_its_neighbours_alone(tmp_path):
    (tmp_path / "v2").mkdir()
    assert loader.retire_other_abis(str(tmp_path / "elsewhere" / "v3"), str(tmp_path)) == []
    assert (tmp_path / "v2").is_dir()
