# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fill in bpf_build's default src: the bpf/ directory of this collection on the controller.

The module can't find it by itself: it runs from a zipped payload that carries only the
module_utils. The path is valid where the controller's files are, so build on the controller
(delegate_to: localhost) or give src. A collection installed from the artifact of
scripts/build-collection.sh has an object prebuilt from those sources in bpf/prebuilt/, which the
module copies instead of compiling: such a controller needs no clang.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        module_args = dict(self._task.args)
        if module_args.get("src") is None:
            module_args["src"] = os.path.join(COLLECTION_ROOT, "bpf")
        result.update(self._execute_module(module_name="bpfquota.nfs.bpf_build", module_args=module_args,
                                           task_vars=task_vars))
        return result
