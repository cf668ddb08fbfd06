#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: bpf_program
short_description: Load, upgrade or unload the bpfquota BPF LSM enforcer
version_added: 0.1.0
description:
  - With O(state=present), loads the BPF object O(object), attaches its LSM programs and pins the
    links and maps under C(/sys/fs/bpf/bpfquota), so that enforcement outlives the module run.
  - Nothing changes when the loaded program was built from the same object (same sha256).
  - When a different object is loaded, the new programs are attached before the old ones are
    detached and the maps (volumes, usage, counters) are kept, so there is no moment without
    enforcement (a gap-free upgrade).
  - Before loading, the module checks that the host can enforce, with the same readiness logic as
    M(bpfquota.nfs.lsm_facts) (bpf in the active LSM list, BTF, libbpf >= 1.0) followed by a trial
    load of the object through the verifier. A host that isn't ready is refused before anything is
    loaded, with every reason and its fix in C(msg).
  - After loading, a probe proves the hooks run (a create in a full scratch volume must be refused);
    a first load that fails the probe is undone.
  - With O(state=absent), detaches the programs and removes the pinned maps. This drops every
    volume too, so no enforcement is left.
options:
  state:
    description:
      - V(present) loads the enforcer, or upgrades it when another object is loaded.
      - V(absent) unloads it and drops its maps (all volumes).
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  object:
    description:
      - Path of the BPF object on the managed host, as built by M(bpfquota.nfs.bpf_build).
      - Required when O(state=present); ignored when O(state=absent).
    type: path
    version_added: 0.1.0
notes:
  - Check mode compares the sha256 of O(object) with the loaded program's and predicts C(changed)
    exactly without loading anything. It runs the same readiness check as a real run, trial load
    included (the programs go through the verifier and are dropped at once; nothing is attached or
    pinned), so it fails exactly where the real run would.
  - Readiness is only checked when a load or upgrade is needed; an unchanged run costs one status read.
requirements:
  - Linux with C(CONFIG_BPF_LSM=y), C(bpf) in the active LSM list, BTF (C(/sys/kernel/btf/vmlinux)).
  - libbpf >= 1.0 on the managed host.
seealso:
  - module: bpfquota.nfs.lsm_facts
  - module: bpfquota.nfs.bpf_build
  - module: bpfquota.nfs.quota
author:
  - bpfquota contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
  - bpfquota.nfs.bpfquota.enforcer
attributes:
  diff_mode:
    support: full
    details: The diff shows whether a program is loaded and its sha256, before and after.
"""

EXAMPLES = r"""
- name: Load the enforcer (or upgrade it without a gap)
  bpfquota.nfs.bpf_program:
    state: present
    object: /var/lib/bpfquota/bpfquota.bpf.o

- name: Unload the enforcer and drop every quota
  bpfquota.nfs.bpf_program:
    state: absent
"""

RETURN = r"""
sha256:
  description:
    - SHA-256 of the object that is loaded after the run (with O(state=present), the sha256 of
      O(object), also in check mode).
    - V(null) when nothing is loaded.
  returned: always
  type: str
  sample: 3f0c9e0d51a1b1e2c4d6a3b9f8e7d6c5b4a3928170f6e5d4c3b2a19080706050
programs:
  description:
    - The attached LSM programs by name, with their kernel program ids.
    - Empty when nothing is loaded, and in check mode when a load or upgrade would happen.
  returned: always
  type: dict
  sample: {"bq_file_permission": 412, "bq_inode_create": 413}
upgraded:
  description: Whether a different, already loaded program was replaced (or would be, in check mode).
  returned: always
  type: bool
  sample: false
loaded:
  description: Whether the enforcer is loaded after the run (or would be, in check mode).
  returned: always
  type: bool
  sample: true
reasons:
  description:
    - Why the host can't enforce, one record each, with the problem and its fix (the records of
      M(bpfquota.nfs.lsm_facts), plus V(trial_load_failed) when O(object) fails its trial load).
    - Decide on C(code), which stays stable from release to release; C(text) and C(fix) are for people.
  returned: when the module refuses to load because the host isn't ready
  type: list
  elements: dict
  contains:
    code:
      description: What blocks the host; M(bpfquota.nfs.lsm_facts) lists the codes with their meaning.
      returned: always
      type: str
      sample: bpf_not_in_lsm
    text:
      description: The problem, for people.
      returned: always
      type: str
      sample: "the boot parameter lsm=lockdown,yama,apparmor overrides CONFIG_LSM and lacks bpf, so bpf is not an active LSM"
    fix:
      description: The remedy, for people.
      returned: always
      type: str
      sample: "change it to lsm=lockdown,yama,apparmor,bpf, e.g. with bpfquota_fix_boot: true, then reboot"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import loader
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import file_sha256


def current_status(module):
    try:
        return loader.status(layout.PIN_DIR)
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="cannot read what is loaded under %s: %s (run as root)" % (layout.PIN_DIR, e))


def diff_of(before, after_loaded, after_sha):
    return {"before": {"loaded": before["loaded"], "sha256": before["sha256"]},
            "after": {"loaded": after_loaded, "sha256": after_sha}}


def require_ready(module, object_path):
    """fail_json with every reason unless the host can enforce (readiness, then a trial load)."""
    facts = enforcement.host_facts(object_path)
    if not facts["ready"]:
        module.fail_json(msg="this host can't enforce quotas, nothing was loaded:\n  - "
                         + "\n  - ".join(map(lsm.reason_line, facts["reasons"])), reasons=facts["reasons"])


def present(module):
    object_path = module.params["object"]
    if not os.path.isfile(object_path):
        module.fail_json(msg="BPF object %s not found: build it with bpfquota.nfs.bpf_build and copy it to the host"
                             % object_path)
    try:
        sha = file_sha256(object_path)
    except (IOError, OSError) as e:
        module.fail_json(msg="cannot read BPF object %s: %s" % (object_path, e))
    before = current_status(module)
    result = {"changed": False, "loaded": True, "sha256": sha, "programs": before["programs"], "upgraded": False}
    if not (before["loaded"] and before["sha256"] == sha):
        require_ready(module, object_path)
        if module.check_mode:
            result.update(changed=True, programs={}, upgraded=before["loaded"])
        else:
            try:
                loaded = enforcement.load_program(object_path)
            except (enforcement.BpfquotaError, OSError) as e:
                verb = "upgrading to" if before["loaded"] else "loading"
                module.fail_json(msg="%s %s failed: %s" % (verb, object_path, e))
            result.update(changed=loaded["changed"], sha256=loaded["sha256"], programs=loaded["programs"],
                          upgraded=loaded["upgraded"])
    if module._diff:
        result["diff"] = diff_of(before, True, result["sha256"])
    return result


def absent(module):
    pin_dir = layout.PIN_DIR
    before = current_status(module)
    would_change = os.path.isdir(pin_dir)
    result = {"changed": would_change, "loaded": False, "sha256": None, "programs": {}, "upgraded": False}
    if would_change and not module.check_mode:
        try:
            result["changed"] = enforcement.unload_program()
        except OSError as e:
            module.fail_json(msg="unloading (removing %s) failed: %s" % (pin_dir, e))
    if module._diff:
        result["diff"] = diff_of(before, False, None)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            object=dict(type="path"),
        ),
        required_if=[("state", "present", ("object",))],
        supports_check_mode=True,
    )
    if module.params["state"] == "present":
        result = present(module)
    else:
        result = absent(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
