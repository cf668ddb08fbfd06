# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # What every bpfquota module shares: full check mode, and Linux (BPF LSM) as the platform.
    # Goes with ansible.builtin.action_common_attributes, which describes the attributes; a module
    # adds its diff_mode and may override a key (its own values win).
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
  platform:
    platforms: linux
    details: Linux only (BPF LSM).
"""

    # The modules that change the loaded enforcer (program or maps).
    ENFORCER = r"""
options: {}
notes:
  - Needs root.
  - The module takes the same lock as the C(bpfquota) command and agent (C(/run/bpfquota.lock)) while
    it changes the enforcer, so their changes never interleave.
"""
