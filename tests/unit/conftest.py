# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the unit tests here and under plugins/module_utils: the real BPF object, real
pinned maps created from it, and `backend` (FakeMaps or real maps). The helpers they are built on
are in plugins/module_utils/quota_testlib.py, which test modules import directly.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys

import pytest


def checkout_link():
    """A checkout imports itself as ansible_collections.bpfquota.nfs through the link
    ansible_collections/bpfquota/nfs -> ../.. at its root. git doesn't track it (ansible-test's
    symlinks test refuses directory symlinks), so a fresh clone gets it here or from
    scripts/setup-host.sh."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    link = os.path.join(root, "ansible_collections", "bpfquota", "nfs")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join("..", ".."), link)


checkout_link()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins", "module_utils"))

from quota_testlib import (  # noqa: E402
    BPFFS,
    FakeMaps,
    RealMaps,
    built_object,
    create_pinned_maps,
    new_pin_dir,
    remove_pins,
)


# --- fixtures --------------------------------------------------------------------

@pytest.fixture(scope="session")
def bpfquota_object(tmp_path_factory):
    return built_object(tmp_path_factory)


@pytest.fixture
def real_maps(request):
    """RealMaps over freshly created maps pinned in a private bpffs directory (removed afterwards)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils.bpffs import ensure_bpffs
    from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
    object_path = request.getfixturevalue("bpfquota_object")
    ensure_bpffs(BPFFS)
    pin_dir = new_pin_dir()
    try:
        create_pinned_maps(object_path, pin_dir)
        with QuotaMaps(pin_dir) as quota_maps:
            yield RealMaps(quota_maps)
    finally:
        remove_pins(pin_dir)


@pytest.fixture(params=["fake", "real"])
def backend(request):
    """Each test using it runs twice: on FakeMaps and on real pinned BPF maps."""
    if request.param == "fake":
        return FakeMaps()
    return request.getfixturevalue("real_maps")


@pytest.fixture(autouse=True)
def private_saved_usage(monkeypatch, tmp_path):
    """apply restores, and the agent saves, usage in a file of the test's own (not the host's)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import saved
    path = str(tmp_path / "saved-usage" / "usage.json")
    monkeypatch.setattr(saved, "STATE_PATH", path)
    return path


@pytest.fixture(autouse=True)
def private_scan_times(monkeypatch, tmp_path):
    """Scans record their times in a file of the test's own (not the host's)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import scantimes
    path = str(tmp_path / "saved-usage" / "scans.json")
    monkeypatch.setattr(scantimes, "STATE_PATH", path)
    return path


@pytest.fixture(autouse=True)
def private_grace_clocks(monkeypatch, tmp_path):
    """The agent keeps its grace clocks in a file of the test's own (not the host's)."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils import grace
    path = str(tmp_path / "saved-usage" / "grace.json")
    monkeypatch.setattr(grace, "STATE_PATH", path)
    return path
