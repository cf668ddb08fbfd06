#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: quota_info
short_description: Report usage, limits and denials of the volumes bpfquota enforces
description:
  - Reads the loaded bpfquota enforcer's maps and returns one entry per volume with its usage,
    limits, percent used, file count, denials and mode, the same rows as C(bpfquota report --json).
  - Read-only; changes nothing and takes no lock.
  - When the enforcer is not loaded, it does not fail; it returns RV(loaded=false) and an empty
    RV(volumes) list, so that a play can decide what to do.
options: {}
notes:
  - Needs root (the maps are readable by root only).
  - Usage is what the kernel counted since the volume's last scan, added to what that scan found.
requirements:
  - Linux with the bpfquota enforcer loaded (M(bpfquota.nfs.bpf_program)) for any volumes to be reported.
seealso:
  - module: bpfquota.nfs.quota
author:
  - bpfquota contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
attributes:
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the quotas
  bpfquota.nfs.quota_info:
  register: bpfquota_report

- name: Every volume is enforced
  ansible.builtin.assert:
    that:
      - bpfquota_report.loaded
      - bpfquota_report.volumes | rejectattr('mode', 'equalto', 'enforce') | list | length == 0

- name: Volumes over 90 percent
  ansible.builtin.debug:
    msg: "{{ item.path }} is {{ item.percent }}% full"
  loop: "{{ bpfquota_report.volumes | selectattr('percent', 'ge', 90) | list }}"
"""

RETURN = r"""
loaded:
  description: Whether the bpfquota enforcer is loaded (its maps are pinned).
  returned: always
  type: bool
  sample: true
volumes:
  description: One entry per enforced volume, sorted by path; empty when RV(loaded) is V(false).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The volume's directory.
      type: str
      sample: /mnt/nfs/pv-a
    used_bytes:
      description: Bytes used.
      type: int
      sample: 1073741824
    limit_bytes:
      description: The byte limit.
      type: int
      sample: 53687091200
    percent:
      description: C(used_bytes) as a percentage of C(limit_bytes), one decimal; V(null) without a limit.
      type: float
      sample: 2.0
    files:
      description: Files (inodes) used.
      type: int
      sample: 1532
    limit_files:
      description: The file-count limit; V(0) when there is none.
      type: int
      sample: 0
    denials:
      description: Writes refused (V(enforce)) or that would have been (V(audit)) since the volume was added.
      type: int
      sample: 3
    denials_by_op:
      description: The denials by operation (write, mmap, truncate, create, mkdir, mknod, symlink, link, rename).
      type: dict
      sample: {"write": 3, "create": 0}
    checks:
      description: Write operations checked against the volume since it was added.
      type: int
      sample: 18240
    mode:
      description: V(enforce) refuses writes over the limit; V(audit) counts them only.
      type: str
      sample: enforce
    usage:
      description:
        - How the usage is known. V(scanned) from a scan of the volume's tree; V(restored) from the usage the
          agent saved before a reboot (until the next scan); V(unknown) when no scan has succeeded yet and
          nothing was saved.
      type: str
      choices: [scanned, restored, unknown]
      sample: scanned
    unknown_usage:
      description:
        - What the volume does while its RV(volumes[].usage) is V(unknown). V(refuse) refuses growth;
          V(allow) counts its usage from zero.
      type: str
      choices: [refuse, allow]
      sample: refuse
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.report import report_json


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        maps = enforcement.open_maps()
    except enforcement.BpfquotaError:  # its only kind: not loaded
        module.exit_json(changed=False, loaded=False, volumes=[])
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="cannot open the bpfquota maps under %s: %s (run as root)" % (layout.PIN_DIR, e))
    try:
        with maps:
            rows = enforcement.report_rows(maps)
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="reading the bpfquota maps failed: %s" % e)
    # the rows of `bpfquota report --json`: sorted, with percent
    module.exit_json(changed=False, loaded=True, volumes=json.loads(report_json(rows))["volumes"])


if __name__ == "__main__":
    main()
