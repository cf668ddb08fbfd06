#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: lsm_check
short_description: Check that a host can enforce quotas with BPF LSM, and put bpf in its boot LSM list
version_added: 0.1.0
deprecated:
  removed_in: 0.2.0
  why: >-
    It did two jobs, which two modules now do apart: M(bpfquota.nfs.lsm_facts) gathers the facts (read-only)
    and M(bpfquota.nfs.lsm_boot) changes the boot configuration.
  alternative: Use M(bpfquota.nfs.lsm_facts) and M(bpfquota.nfs.lsm_boot).
description:
  - Deprecated; a thin wrapper of M(bpfquota.nfs.lsm_facts) and M(bpfquota.nfs.lsm_boot), which do its two
    jobs apart.
  - Gathers the facts that decide whether a BPF LSM program runs on the host, namely the kernel release,
    the active LSMs, the C(lsm=) boot parameter, the kernel configuration, BTF, bpffs and libbpf,
    and reports every reason that blocks it, each with its fix.
  - A BPF LSM program loads and attaches even when C(bpf) is not an active LSM, but then never runs,
    so the active list in C(/sys/kernel/security/lsm) is the fact that counts.
  - With O(fix_boot=true), when BPF LSM is compiled in but not active, adds C(bpf) to the C(lsm=)
    boot parameter. C(lsm=) replaces the kernel's whole LSM list, so the value is the current active
    list plus C(bpf), in order, with no LSM dropped.
  - On Debian and Ubuntu it writes the GRUB drop-in C(/etc/default/grub.d/50-bpfquota.cfg) and runs
    C(update-grub). On the RHEL family it runs C(grubby --update-kernel=ALL) and sets the same
    C(lsm=) in C(GRUB_CMDLINE_LINUX) of C(/etc/default/grub), so regenerated boot entries keep it.
  - Nothing changes when the boot configuration already boots every kernel with C(bpf) in C(lsm=).
  - The module never reboots. It returns RV(reboot_required) and warns when a reboot is needed.
options:
  fail_if_not_ready:
    description:
      - Fail, with every reason and its fix, when the host can't enforce quotas.
      - A host whose only blocker is a reboot pending after O(fix_boot) does not fail.
    type: bool
    default: true
    version_added: 0.1.0
  fix_boot:
    description:
      - When BPF LSM is compiled in (C(CONFIG_BPF_LSM=y)) but not active, add C(bpf) to the C(lsm=)
        boot parameter of every installed kernel.
    type: bool
    default: false
    version_added: 0.1.0
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
      - O(fix_boot) supports GRUB on Debian, Ubuntu and the RHEL family (RHEL, CentOS Stream, Rocky, Alma, Fedora).
requirements:
  - Linux >= 5.17 (>= 6.4 on arm64; older RHEL kernels judged by a trial load) built with C(CONFIG_BPF_LSM=y) and C(CONFIG_DEBUG_INFO_BTF=y).
  - libbpf >= 1.0.
notes:
  - Run it as root (C(become=true)); securityfs is mounted when it isn't, except in check mode, which changes nothing.
  - After a reboot, run it again to prove that C(bpf) is active.
seealso:
  - module: bpfquota.nfs.lsm_facts
  - module: bpfquota.nfs.lsm_boot
  - module: ansible.builtin.reboot
author:
  - bpfquota contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Fail unless the host can enforce quotas
  bpfquota.nfs.lsm_check:

- name: Put bpf into the boot LSM list where it's compiled in but not active
  bpfquota.nfs.lsm_check:
    fix_boot: true
  register: bpfquota_lsm

- name: Reboot when the new LSM list needs it, and prove that bpf is active afterwards
  ansible.builtin.reboot:
    test_command: grep -qw bpf /sys/kernel/security/lsm
  when: bpfquota_lsm.reboot_required

- name: Gather the facts without failing
  bpfquota.nfs.lsm_check:
    fail_if_not_ready: false
  register: bpfquota_lsm_facts
"""

RETURN = r"""
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
          reboot fix (O(fix_boot));
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
reboot_required:
  description:
    - Whether a reboot is needed to activate C(bpf), because O(fix_boot) found or put it in the boot
      configuration and the running kernel was booted without it.
    - Always false without O(fix_boot).
  returned: always
  type: bool
  sample: true
boot_changes:
  description: What O(fix_boot) changed, or would change in check mode; empty when nothing.
  returned: always
  type: list
  elements: str
  sample:
    - create /etc/default/grub.d/50-bpfquota.cfg
    - run /usr/sbin/update-grub
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import BootConfigError, put_bpf_in_boot
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import gather, probe_lsm, reason_line

# Where the host's files are; the unit tests point it at recorded hosts.
HOST_ROOT = "/"

ARGUMENT_SPEC = dict(
    fail_if_not_ready=dict(type="bool", default=True),
    fix_boot=dict(type="bool", default=False),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    facts = gather(HOST_ROOT, libbpf, probe_lsm, not module.check_mode, module.warn)
    result = dict(facts, changed=False, reboot_required=False, boot_changes=[])
    if module.params["fix_boot"]:
        try:
            boot = put_bpf_in_boot(module, facts, HOST_ROOT)
        except BootConfigError as error:
            module.fail_json(msg="fix_boot: %s" % (error,), **result)
        del boot["lsm"]  # lsm_boot's, not part of what lsm_check returned
        result.update(boot)
    blockers = blocking_reasons(facts, result["reboot_required"])
    if blockers and module.params["fail_if_not_ready"]:
        module.fail_json(msg="this host can't enforce bpfquota quotas: " + "; ".join(map(reason_line, blockers)),
                         **result)
    module.exit_json(**result)


def blocking_reasons(facts, reboot_required):
    """The reasons that keep the host unready, leaving out the one a pending reboot fixes."""
    if not reboot_required:
        return facts["reasons"]
    return [reason for reason in facts["reasons"] if reason["code"] != "bpf_not_in_lsm"]


if __name__ == "__main__":
    main()
