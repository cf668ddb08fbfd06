#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: lsm_facts
short_description: Gather the facts that decide whether a host can enforce quotas with BPF LSM
version_added: 0.1.0
description:
  - Gathers the facts that decide whether a BPF LSM program runs on the host, namely the kernel release,
    the active LSMs, the C(lsm=) boot parameter, the kernel configuration, BTF, bpffs and libbpf,
    and every reason that blocks it, each a record with a stable code, the problem and its fix.
  - A BPF LSM program loads and attaches even when C(bpf) is not an active LSM, but then never runs,
    so the active list in C(/sys/kernel/security/lsm) is the fact that counts.
  - When the files say ready, loading and attaching a tiny BPF LSM program, dropped at once, proves it
    (RV(ansible_facts.bpfquota_lsm.lsm_probe)), as some kernels list C(bpf) and still refuse LSM programs.
  - Read-only; it changes nothing, never fails on a host that isn't ready (decide on
    RV(ansible_facts.bpfquota_lsm.ready) and the codes of RV(ansible_facts.bpfquota_lsm.reasons)),
    and never mounts securityfs (an unmounted securityfs is the reason V(securityfs_unreadable)).
  - M(bpfquota.nfs.lsm_boot) puts C(bpf) into the boot LSM list where that helps.
options: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - bpfquota.nfs.bpfquota
attributes:
  diff_mode:
    support: none
  facts:
    support: full
requirements:
  - Linux >= 5.17 (>= 6.4 on arm64; older RHEL kernels judged by a trial load) built with C(CONFIG_BPF_LSM=y) and
    C(CONFIG_DEBUG_INFO_BTF=y), for the host to be ready.
  - libbpf >= 1.0, for the host to be ready.
notes:
  - Run it as root (C(become=true)), which loading the probe program needs (else the reason is V(not_root)).
seealso:
  - module: bpfquota.nfs.lsm_boot
  - module: bpfquota.nfs.bpf_program
author:
  - bpfquota contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Gather the BPF LSM facts
  bpfquota.nfs.lsm_facts:

- name: Fail unless the host can enforce quotas
  ansible.builtin.assert:
    that: ansible_facts['bpfquota_lsm']['ready']
    fail_msg: "{{ ansible_facts['bpfquota_lsm']['reasons'] | map(attribute='text') | join('; ') }}"

- name: Fail when the kernel is the problem, leaving out libbpf, which a package fixes
  ansible.builtin.fail:
    msg: "{{ ansible_facts['bpfquota_lsm']['reasons'] | map(attribute='fix') | join('; ') }}"
  when: >-
    ansible_facts['bpfquota_lsm']['reasons'] | rejectattr('code', 'in', ['libbpf_missing', 'libbpf_too_old'])
    | list | length > 0
"""

RETURN = r"""
ansible_facts:
  description: The facts, under C(bpfquota_lsm).
  returned: always
  type: dict
  contains:
    bpfquota_lsm:
      description: Whether the host can enforce quotas with BPF LSM, the facts that decide it, and the reasons why not.
      returned: always
      type: dict
      contains:
        kernel:
          description: Release of the running kernel.
          returned: always
          type: str
          sample: 5.15.0-91-generic
        bpf_lsm_active:
          description: Whether C(bpf) is in the active LSM list.
          returned: always
          type: bool
          sample: false
        active_lsms:
          description: The active LSMs in order, from C(/sys/kernel/security/lsm); null when it can't be read.
          returned: always
          type: list
          elements: str
          sample: [lockdown, capability, landlock, yama, integrity, apparmor]
        cmdline_lsm:
          description: The list of the C(lsm=) parameter the kernel booted with; null when there is none.
          returned: always
          type: list
          elements: str
          sample: null
        config_bpf_lsm:
          description: Whether the kernel was built with C(CONFIG_BPF_LSM=y); null when its configuration wasn't found.
          returned: always
          type: bool
          sample: true
        config_lsm:
          description: The compiled-in default LSM list (C(CONFIG_LSM)); null when unknown.
          returned: always
          type: list
          elements: str
          sample: [landlock, lockdown, yama, integrity, apparmor]
        btf:
          description: Whether the kernel's BTF is available at C(/sys/kernel/btf/vmlinux).
          returned: always
          type: bool
          sample: true
        bpffs:
          description: Whether the BPF filesystem is mounted at C(/sys/fs/bpf).
          returned: always
          type: bool
          sample: true
        libbpf_version:
          description: Version of the libbpf found (major.minor); null when there is no usable libbpf.
          returned: always
          type: str
          sample: "1.1"
        proposed_lsm:
          description: The C(lsm=) list that activates C(bpf) (the current list plus C(bpf)); null when none is needed or none would help.
          returned: always
          type: list
          elements: str
          sample: [lockdown, capability, landlock, yama, integrity, apparmor, bpf]
        ready:
          description: Whether the running host can enforce quotas now.
          returned: always
          type: bool
          sample: false
        lsm_probe:
          description:
            - Whether the kernel accepted a tiny BPF LSM program, loaded and attached to C(file_permission) and
              dropped at once; V(null) when not tried (the host's files already say it is not ready).
            - A kernel may list C(bpf) among its active LSMs and still refuse BPF LSM programs (a sandbox, lockdown
              or a security policy); this is the proof.
          returned: always
          type: bool
          sample: true
        reasons:
          description:
            - Why the host is not ready, one record each, with the problem and its fix; empty when ready.
            - Decide on C(code), which stays stable from release to release; C(text) and C(fix) are for people.
          returned: always
          type: list
          elements: dict
          contains:
            code:
              description:
                - What blocks the host.
                - V(kernel_too_old) the kernel is older than 5.17 (bpf_loop, which the program uses) and no RHEL kernel with backports;
                  V(kernel_too_old_arm64) an arm64 kernel older than 6.4;
                  V(no_config_bpf_lsm) the kernel was built without C(CONFIG_BPF_LSM);
                  V(bpf_not_in_lsm) C(bpf) is not an active LSM, which C(bpf) in the C(lsm=) boot parameter and a
                  reboot fix (M(bpfquota.nfs.lsm_boot));
                  V(securityfs_unreadable) the active LSM list can't be read, securityfs not being mounted;
                  V(no_lsm_file) securityfs is mounted but lists no LSMs;
                  V(no_btf) the kernel has no BTF;
                  V(libbpf_missing) no usable libbpf; V(libbpf_too_old) libbpf older than 1.0;
                  V(not_root) loading BPF programs needs root;
                  V(lsm_load_refused) the kernel refused a BPF LSM program although the files say ready;
                  V(lsm_probe_failed) the probe program failed to load or attach for another reason;
                  V(trial_load_failed) the enforcer's object failed its trial load (M(bpfquota.nfs.bpf_program) only).
              returned: always
              type: str
              choices: [kernel_too_old, kernel_too_old_arm64, no_config_bpf_lsm, bpf_not_in_lsm, securityfs_unreadable,
                        no_lsm_file, no_btf, libbpf_missing, libbpf_too_old, not_root, lsm_load_refused, lsm_probe_failed,
                        trial_load_failed]
              sample: bpf_not_in_lsm
            text:
              description: The problem, for people.
              returned: always
              type: str
              sample: "bpf is compiled in but not active (active: lockdown,capability,landlock,yama,integrity,apparmor)"
            fix:
              description: The remedy, for people.
              returned: always
              type: str
              sample: "add bpf to the lsm= boot parameter: lsm=lockdown,capability,landlock,yama,integrity,apparmor,bpf,
                e.g. with bpfquota_fix_boot: true, then reboot"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import gather, probe_lsm

# Where the host's files are; the unit tests point it at recorded hosts.
HOST_ROOT = "/"


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    facts = gather(HOST_ROOT, libbpf, probe_lsm, False, module.warn)
    module.exit_json(changed=False, ansible_facts={"bpfquota_lsm": facts})


if __name__ == "__main__":
    main()
