#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_command
short_description: Install the bpfquota host command (CLI and agent) as one executable file
version_added: 0.1.0
description:
  - Writes the C(bpfquota) command (C(check), C(load), C(apply), C(report), C(reconcile), C(agent), ...)
    to O(dest) as a Python zipapp made of this collection's module_utils, the same code the other
    modules of the collection run, so the command on the host always matches the collection.
  - The archive is reproducible; the file is rewritten only when its content differs, so a re-run
    reports no change.
  - With O(state=absent), removes O(dest).
options:
  dest:
    description:
      - Where the command goes on the host. Its directory must exist.
    type: path
    required: true
    version_added: 0.1.0
  state:
    description:
      - V(present) installs or updates the command; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
notes:
  - The command needs Python 3 at C(/usr/bin/python3) and, for C(bpfquota apply), PyYAML.
  - This module was called C(bpfquota.nfs.cli) before; that name still works, with a deprecation
    warning, until it is removed in 0.2.0.
requirements:
  - Python 3 on the host.
seealso:
  - module: bpfquota.nfs.bpf_program
  - module: bpfquota.nfs.quota
author:
  - bpfquota contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
attributes:
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Install the bpfquota command
  bpfquota.nfs.host_command:
    dest: /usr/local/sbin/bpfquota

- name: Remove it
  bpfquota.nfs.host_command:
    dest: /usr/local/sbin/bpfquota
    state: absent
"""

RETURN = r"""
dest:
  description: Where the command is.
  returned: always
  type: str
  sample: /usr/local/sbin/bpfquota
sha256:
  description: SHA-256 of the command file as installed; V(null) with O(state=absent).
  returned: always
  type: str
  sample: 5f1c0e3a2b9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bpfquota.nfs.plugins.module_utils import bundle
from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import bytes_sha256
# The bundle is built from the module_utils this payload carries; importing the CLI brings
# in everything the command needs.
from ansible_collections.bpfquota.nfs.plugins.module_utils import cli as host_cli


def read_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def install(module, dest, content):
    directory = os.path.dirname(dest) or "."
    if not os.path.isdir(directory):
        module.fail_json(msg="directory %s does not exist: create it first (ansible.builtin.file state=directory)"
                             % directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bpfquota-")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    module.atomic_move(tmp, dest)
    os.chmod(dest, 0o755)  # atomic_move gives a new file the umask's mode


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    before = read_or_none(dest)
    if module.params["state"] == "present":
        after = bundle.zipapp_bytes(bundle.module_sources(host_cli.__package__))
        changed = before != after or (os.stat(dest).st_mode & 0o777) != 0o755
    else:
        after = None
        changed = before is not None or os.path.lexists(dest)
    if changed and not module.check_mode:
        if after is None:
            os.unlink(dest)
        else:
            install(module, dest, after)
    result = {"changed": changed, "dest": dest, "sha256": bytes_sha256(after) if after is not None else None}
    if module._diff:
        result["diff"] = {"before_header": dest, "after_header": dest,
                          "before": "" if before is None else "\n".join(bundle.listing(before)) + "\n",
                          "after": "" if after is None else "\n".join(bundle.listing(after)) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
