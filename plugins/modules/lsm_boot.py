#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: lsm_boot
short_description: Put bpf into the LSM list the host boots with
version_added: 0.1.0
description:
  - When BPF LSM is compiled into the running kernel (C(CONFIG_BPF_LSM=y)) but not active, adds C(bpf)
    to the C(lsm=) boot parameter of every installed kernel, so that it is an active LSM from the next
    boot on. Elsewhere, where C(bpf) is active already or a kernel without BPF LSM would gain nothing,
    it changes nothing.
  - C(lsm=) replaces the kernel's whole LSM list, so the value is the current active list plus C(bpf),
    in order, with no LSM dropped. When the active list can't be read (securityfs not mounted), the
    C(lsm=) the kernel booted with, then the compiled-in C(CONFIG_LSM), stand in for it.
  - On Debian and Ubuntu it writes the GRUB drop-in C(/etc/default/grub.d/50-bpfquota.cfg) and runs
    C(update-grub). On the RHEL family it runs C(grubby --update-kernel=ALL) and sets the same
    C(lsm=) in C(GRUB_CMDLINE_LINUX) of C(/etc/default/grub), so regenerated boot entries keep it.
  - Nothing changes when the boot configuration already boots every kernel with C(bpf) in C(lsm=).
  - The module never reboots. It returns RV(reboot_required) and warns when a reboot is needed.
  - M(bpfquota.nfs.lsm_facts) tells whether the host is ready; this module only changes the boot configuration.
options: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
attributes:
  diff_mode:
    support: full
    details:
      - Shows the GRUB drop-in or C(/etc/default/grub) and the kernel command lines of the grubby boot entries.
  platform:
    details:
      - Linux only (BPF LSM).
      - GRUB on Debian, Ubuntu and the RHEL family (RHEL, CentOS Stream, Rocky, Alma, Fedora).
notes:
  - Run it as root (C(become=true)).
  - After a reboot, M(bpfquota.nfs.lsm_facts) proves that C(bpf) is active.
seealso:
  - module: bpfquota.nfs.lsm_facts
  - module: ansible.builtin.reboot
author:
  - bpfquota contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Put bpf into the boot LSM list where it's compiled in but not active
  bpfquota.nfs.lsm_boot:
  register: bpfquota_boot

- name: Reboot when the new LSM list needs it, and prove that bpf is active afterwards
  ansible.builtin.reboot:
    test_command: grep -qw bpf /sys/kernel/security/lsm
  when: bpfquota_boot.reboot_required
"""

RETURN = r"""
lsm:
  description:
    - The C(lsm=) list the boot configuration sets (or would set, in check mode), C(bpf) included.
    - V(null) when C(bpf) in C(lsm=) would not help, because it is active already or the kernel lacks BPF LSM.
  returned: always
  type: list
  elements: str
  sample: [lockdown, capability, landlock, yama, integrity, apparmor, bpf]
boot_changes:
  description: What the module changed, or would change in check mode; empty when nothing.
  returned: always
  type: list
  elements: str
  sample:
    - create /etc/default/grub.d/50-bpfquota.cfg
    - run /usr/sbin/update-grub
reboot_required:
  description:
    - Whether a reboot is needed to activate C(bpf), because the boot configuration has it (now, or
      already) and the running kernel was booted without it.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import BootConfigError, put_bpf_in_boot
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import readiness

# Where the host's files are; the unit tests point it at recorded hosts.
HOST_ROOT = "/"


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    # Only the kernel's facts count here (libbpf is none of the boot configuration's business).
    facts = readiness(root=HOST_ROOT, libbpf_version=None, mount=False)
    try:
        result = put_bpf_in_boot(module, facts, HOST_ROOT)
    except BootConfigError as error:
        module.fail_json(msg=str(error), changed=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
