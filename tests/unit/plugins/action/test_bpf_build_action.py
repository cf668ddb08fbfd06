# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bpf_build action plugin: the default src is the collection's bpf/ directory on the controller."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.bpfquota.nfs.plugins.action import bpf_build as action

REPO_BPF = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "bpf"))


class _Task(object):
    def __init__(self, args):
        self.args = args


def test_action_plugin_fills_in_the_controllers_bpf_directory(monkeypatch):
    calls = []
    monkeypatch.setattr(action.ActionBase, "run", lambda self, tmp=None, task_vars=None: {})

    def execute(self, module_name=None, module_args=None, task_vars=None, **kwargs):
        calls.append((module_name, module_args))
        return {"changed": False}

    monkeypatch.setattr(action.ActionModule, "_execute_module", execute)
    plugin = action.ActionModule.__new__(action.ActionModule)
    plugin._task = _Task({"dest": "/tmp/x.o"})
    assert plugin.run(task_vars={}) == {"changed": False}
    plugin._task = _Task({"dest": "/tmp/x.o", "src": "/srv/bpf"})
    plugin.run(task_vars={})
    assert calls[0][0] == calls[1][0] == "bpfquota.nfs.bpf_build"
    assert os.path.samefile(calls[0][1]["src"], REPO_BPF)
    assert calls[0][1]["dest"] == "/tmp/x.o"
    assert calls[1][1] == {"dest": "/tmp/x.o", "src": "/srv/bpf"}
