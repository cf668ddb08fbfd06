# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bpfquota.nfs.pv_volumes filter through Ansible itself: a playbook run by ansible-playbook of the
pinned ansible-core and of the oldest one claimed (build/venv-oldest) templates it on the recorded PVs,
its errors reach the play as the task's failure, and ansible-doc reads its documentation. The logic
is tested in tests/unit/plugins/module_utils/test_pvs.py."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.bpfquota.nfs.plugins.filter.pv_volumes import FilterModule
from ansible_collections.bpfquota.nfs.plugins.module_utils.pvs import pv_volumes

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "unit", "plugins", "fixtures", "pvs")
VENV_BIN = os.path.dirname(sys.executable)
OLDEST_BIN = os.path.join(os.environ.get("BPFQUOTA_VENV_OLDEST") or os.path.dirname(VENV_BIN) + "-oldest", "bin")
CLASSES = ["nfs-csi", "nfs-csi-tenants", "nfs-client", "nfs-client-pattern"]


def recorded_pvs():
    pvs = []
    for name in ("csi-driver-nfs", "nfs-subdir-external-provisioner", "other-kinds"):
        with open(os.path.join(FIXTURES, name + ".yaml")) as f:
            pvs += yaml.safe_load(f)
    return pvs


def ansible_bins():
    # Both, always: a missing oldest venv fails its cases (run scripts/setup-host.sh) rather than dropping them.
    return [pytest.param(VENV_BIN, id="pinned"), pytest.param(OLDEST_BIN, id="oldest")]


def run_ansible(bin_dir, tmp_path, argv):
    """An ansible command of bin_dir that finds this checkout as bpfquota.nfs (its ansible_collections
    link, which tests/unit/conftest.py makes) and no other configuration."""
    env = dict((name, value) for name, value in os.environ.items() if not name.startswith("ANSIBLE_"))
    config = tmp_path / "ansible.cfg"
    config.write_text("")
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_COLLECTIONS_PATH=ROOT,
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_NOCOLOR="1",
               PATH=bin_dir + os.pathsep + env.get("PATH", ""))
    return subprocess.run([os.path.join(bin_dir, argv[0])] + argv[1:], env=env, cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)


PLAYBOOK = """
- name: Volumes from PVs
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Template the filter
      ansible.builtin.set_fact:
        entries: "{{ pvs | bpfquota.nfs.pv_volumes(storage_classes=classes) }}"
    - name: The limits stay integers
      ansible.builtin.assert:
        that: entries | map(attribute='limit') | select('integer') | list | length == entries | length
    - name: Write them out
      ansible.builtin.copy:
        content: "{{ entries | to_json }}"
        dest: "{{ out }}"
        mode: "0644"
"""


def play(bin_dir, tmp_path, pvs, classes):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "vars.json").write_text(json.dumps({"pvs": pvs, "classes": classes, "out": str(tmp_path / "out.json"),
                                                    "ansible_python_interpreter": os.path.join(bin_dir, "python3")}))
    return run_ansible(bin_dir, tmp_path, ["ansible-playbook", "-i", "localhost,", "-e", "@vars.json", "play.yml"])


@pytest.mark.parametrize("bin_dir", ansible_bins())
def test_a_playbook_templates_the_filter_on_recorded_pvs(bin_dir, tmp_path):
    pvs = recorded_pvs()
    result = play(bin_dir, tmp_path, pvs, CLASSES)
    assert result.returncode == 0, result.stdout
    entries = json.loads((tmp_path / "out.json").read_text())
    assert entries == pv_volumes(pvs, storage_classes=CLASSES)
    assert len(entries) == 6


@pytest.mark.parametrize("bin_dir", ansible_bins())
def test_a_bad_pv_fails_the_task_with_the_filters_message(bin_dir, tmp_path):
    pvs = recorded_pvs()
    pvs[0]["spec"]["capacity"]["storage"] = "10GB"
    result = play(bin_dir, tmp_path, pvs, CLASSES)
    assert result.returncode == 2, result.stdout
    assert "bpfquota.nfs.pv_volumes: PV pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64: spec.capacity.storage '10GB' " \
           "has an unknown suffix 'GB'" in result.stdout
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("bin_dir", ansible_bins())
def test_ansible_doc_reads_the_filters_documentation(bin_dir, tmp_path):
    result = run_ansible(bin_dir, tmp_path, ["ansible-doc", "-t", "filter", "--json", "bpfquota.nfs.pv_volumes"])
    assert result.returncode == 0, result.stdout
    doc = json.loads(result.stdout)["bpfquota.nfs.pv_volumes"]["doc"]
    assert doc["version_added"] == "0.1.0"
    assert sorted(doc["options"]) == ["_input", "csi_drivers", "storage_classes"]
    assert doc["options"]["storage_classes"]["default"] == []


def test_the_filter_raises_ansible_filter_error_and_passes_options():
    pv_filter = FilterModule().filters()["pv_volumes"]
    with pytest.raises(AnsibleFilterError, match="^bpfquota.nfs.pv_volumes: pv_volumes takes a list"):
        pv_filter("not a list")
    pvs = recorded_pvs()
    assert pv_filter(pvs) == pv_volumes(pvs)
    assert pv_filter(pvs, storage_classes=["nfs-client"], csi_drivers=["other"]) == \
        pv_volumes(pvs, storage_classes=["nfs-client"], csi_drivers=["other"])
    assert len(pv_filter(pvs, storage_classes=["nfs-csi"])) == 3  # two of the class, one annotated
