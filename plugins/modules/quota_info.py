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
version_added: 0.1.0
description:
  - Reads the loaded bpfquota enforcer's maps and returns one entry per volume with its usage,
    limits, percent used, file count, denials and mode, the same rows as C(bpfquota report --json),
    and the table C(bpfquota report) prints, line by line (RV(lines)), made by the same code.
  - Read-only; changes nothing and takes no lock.
  - When the enforcer is not loaded, it does not fail; it returns RV(loaded=false) and empty
    RV(volumes) and RV(lines) lists, so that a play can decide what to do.
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

- name: Print the table bpfquota report prints
  ansible.builtin.debug:
    msg: "{{ bpfquota_report.lines }}"
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
lines:
  description:
    - The table C(bpfquota report) prints, one item a line, made by the same formatter; sizes in binary
      units as in the volumes (C(64M) for a limit of C(64Mi)).
    - A header line, then one line per volume sorted by path, or C((no volumes)); empty when RV(loaded)
      is V(false).
  returned: always
  type: list
  elements: str
  sample:
    - "Volume                Used  Limit  Use%  Files  FLimit  Denials  Mode     Usage"
    - "/mnt/nfs4/pvs/pv-db      0    64M    0%      0    1000        0  enforce  scanned"
    - "/mnt/nfs4/pvs/pv-web    8M     8M  100%      1       -        1  enforce  scanned"
  version_added: 0.1.0
"""

import json

from ansible.module_utils.basic import AnsibleModule

# report.py, not the service (enforcement.py): reading the rows needs none of its writing side, so
# this module's payload stays small.
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import report


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        maps = report.pinned_maps()
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="cannot open the bpfquota maps under %s: %s (run as root)" % (layout.PIN_DIR, e))
    if maps is None:
        module.exit_json(changed=False, loaded=False, volumes=[], lines=[])
    try:
        with maps:
            rows = report.report_rows(maps)
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="reading the bpfquota maps failed: %s" % e)
    # the rows of `bpfquota report --json` (sorted, with percent) and the lines of `bpfquota report`
    module.exit_json(changed=False, loaded=True, volumes=json.loads(report.report_json(rows))["volumes"],
                     lines=report.format_report(rows).splitlines())


if __name__ == "__main__":
    main()
