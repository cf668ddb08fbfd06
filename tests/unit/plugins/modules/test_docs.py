# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The public interface says when each part of it came: version_added on every module, every module
option and every role option (suboptions included), a semantic version no later than the collection's."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os

import pytest
import yaml

from ansible.module_utils.compat.version import LooseVersion

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))


def collection_version():
    with open(os.path.join(ROOT, "galaxy.yml")) as f:
        return yaml.safe_load(f)["version"]


def options_without_version_added(options, prefix=""):
    missing = []
    for name, spec in sorted((options or {}).items()):
        if "version_added" not in spec:
            missing.append(prefix + name)
        else:
            assert LooseVersion(str(spec["version_added"])) <= LooseVersion(collection_version()), prefix + name
        missing += options_without_version_added(spec.get("suboptions") or spec.get("options"), prefix + name + ".")
    return missing


@pytest.mark.parametrize("name", MODULES)
def test_every_module_option_says_when_it_came(name):
    module = importlib.import_module("ansible_collections.bpfquota.nfs.plugins.modules." + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert "version_added" in doc, name
    assert options_without_version_added(doc.get("options")) == []


def test_every_role_option_says_when_it_came():
    with open(os.path.join(ROOT, "roles", "enforcer", "meta", "argument_specs.yml")) as f:
        specs = yaml.safe_load(f)["argument_specs"]
    for entry_point, spec in specs.items():
        assert options_without_version_added(spec.get("options")) == [], entry_point
