#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: bpf_build
short_description: Compile the bpfquota BPF sources into a CO-RE object
version_added: 0.1.0
description:
  - Compiles the BPF LSM program of bpfquota (C(bpfquota.bpf.c) and its headers) with clang
    into a CO-RE object that runs on any kernel with BTF.
  - The build is skipped when the object (O(dest), or the digest-named object in O(dest_dir)) was
    built from the same sources and compiler flags.
    The identity of a build is a content hash of every C(.c) and C(.h) file in O(src) plus the
    flags, kept next to the object in C(<dest>.digest); timestamps play no part.
  - The object is written atomically; a failed build leaves an existing object untouched.
  - A collection artifact built by C(scripts/build-collection.sh) carries an object prebuilt from its
    sources in C(bpf/prebuilt/), with the digest of the sources and flags it came from. When that
    digest is the one of O(src), the module copies the prebuilt object instead of compiling, so a
    controller without clang can run the rollout (see O(prebuilt)).
  - Build once (for example on the controller, with C(delegate_to) set to V(localhost) and C(run_once))
    and copy the object to the hosts, which then need no compiler.
options:
  src:
    description:
      - Directory holding the BPF sources (C(bpfquota.bpf.c), C(bpfquota.h), C(vmlinux.h)).
      - Defaults to the C(bpf/) directory of this collection on the controller (the module's action
        plugin fills it in). That path exists where the task runs only when it runs on the controller,
        so either build there (C(delegate_to) set to V(localhost)) or give O(src).
    type: path
    version_added: 0.1.0
  dest:
    description:
      - Path of the object to write, for example C(/var/lib/bpfquota/bpfquota.bpf.o).
        Its directory is created when missing.
      - Exactly one of O(dest) and O(dest_dir) is required.
    type: path
    version_added: 0.1.0
  dest_dir:
    description:
      - A directory (created when missing) in which the object is kept as
        C(bpfquota-<digest>.bpf.o), named by the first 16 hex digits of the sources' digest.
      - For a cache shared by several versions of the collection, such as one controller account
        running the rollouts of two projects. Each version builds and finds its own object, so
        neither overwrites the object the other is about to copy, and switching between versions
        rebuilds nothing. Each version leaves one object (about 250 KB); nothing is pruned.
      - Exactly one of O(dest) and O(dest_dir) is required.
    type: path
    version_added: 0.1.0
  clang:
    description:
      - The clang to compile with, as a path or a command name looked up in E(PATH).
      - Defaults to the first of C(clang), C(clang-19) ... C(clang-14) found in E(PATH).
      - It must have the BPF backend (Debian, Ubuntu, Fedora and RHEL clang packages do).
      - Not needed when O(dest) is up to date or a prebuilt object is used.
    type: path
    version_added: 0.1.0
  arch:
    description:
      - The architecture of the hosts that will load the object. The program reads a syscall's
        number and arguments from the task's registers, whose layout differs, so an object is built for
        one architecture (clang's C(-D__TARGET_ARCH_x86) or C(-D__TARGET_ARCH_arm64)).
      - V(x86_64) (also V(amd64), V(x86)) or V(aarch64) (also V(arm64)), as the host's
        C(ansible_facts['architecture']) says it.
      - The architecture is part of the compiler flags, so of the digest; in O(dest_dir) an arm64
        object is named C(bpfquota-arm64-<digest>.bpf.o).
    type: str
    default: x86_64
    version_added: 0.1.0
  prebuilt:
    description:
      - Copy the object prebuilt into O(src) for O(arch) (C(prebuilt/bpfquota.bpf.o) for x86_64,
        C(prebuilt/bpfquota-arm64.bpf.o) for aarch64, each with its C(.digest) stamp)
        when it was built from the same sources and flags, instead of compiling.
      - V(false) always compiles with clang.
    type: bool
    default: true
    version_added: 0.1.0
notes:
  - In check mode the module compares the sources' hash with the stamp of O(dest) and reports
    whether it would build; it compiles nothing and writes nothing. It fails, as the real run would,
    when a build is needed, no prebuilt object matches and clang is missing.
requirements:
  - clang with the BPF target (Debian/Ubuntu C(clang), RHEL/Fedora C(clang)), unless the collection
    carries a prebuilt object for its sources.
seealso:
  - module: bpfquota.nfs.bpf_program
author:
  - bpfquota contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
attributes:
  diff_mode:
    support: full
    details: The diff shows the sources digest and the object's sha256 before and after.
  platform:
    platforms: posix
    details: Any POSIX host with clang; without clang when the collection carries a prebuilt object for its sources.
"""

EXAMPLES = r"""
- name: Build the enforcer once, on the controller
  bpfquota.nfs.bpf_build:
    dest: "{{ playbook_dir }}/.bpfquota/bpfquota.bpf.o"
  delegate_to: localhost
  run_once: true
  register: bpfquota_object

- name: Build into a cache that several collection versions share
  bpfquota.nfs.bpf_build:
    dest_dir: ~/.cache/bpfquota
  delegate_to: localhost
  run_once: true
  become: false
  register: bpfquota_object  # bpfquota_object.path is the object of these sources

- name: Build once per architecture of the play's hosts, then copy each host its own
  bpfquota.nfs.bpf_build:
    dest_dir: ~/.cache/bpfquota
    arch: "{{ item }}"
  loop: "{{ ansible_play_hosts | map('extract', hostvars, ['ansible_facts', 'architecture']) | unique }}"
  delegate_to: localhost
  run_once: true
  register: bpfquota_objects  # results | selectattr('item', '==', ansible_facts['architecture'])

- name: Build from a source checkout with a given clang
  bpfquota.nfs.bpf_build:
    src: /srv/bpfquota/bpf
    dest: /var/lib/bpfquota/bpfquota.bpf.o
    clang: /usr/bin/clang-18
"""

RETURN = r"""
path:
  description: Path of the object (O(dest), or the object named by the digest in O(dest_dir)).
  returned: always
  type: str
  sample: /var/lib/bpfquota/bpfquota.bpf.o
sha256:
  description:
    - SHA-256 of the object; this is what M(bpfquota.nfs.bpf_program) compares to decide whether
      the loaded program is the same.
    - V(null) in check mode when the object would be (re)built.
  returned: always
  type: str
  sample: 3f0c9e0d51a1b1e2c4d6a3b9f8e7d6c5b4a3928170f6e5d4c3b2a19080706050
digest:
  description: Content hash of the sources and compiler flags the object is (or would be) built from.
  returned: always
  type: str
  sample: 9b74c9897bac770ffc029102a200c5de1f4e3b1f2e8d0c6a4b2c9e8f7d6a5b4c
arch:
  description: The target architecture the object is built for, V(x86) or V(arm64).
  returned: always
  type: str
  sample: arm64
  version_added: 0.1.0
prebuilt:
  description: Whether O(dest) was (or in check mode would be) copied from the prebuilt object rather than compiled.
  returned: always
  type: bool
  sample: true
src:
  description: The source directory used.
  returned: always
  type: str
  sample: /usr/share/ansible/collections/ansible_collections/bpfquota/nfs/bpf
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bpfquota.nfs.plugins.module_utils import bpfbuild
from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import file_sha256


def default_src():
    """The collection's bpf/ directory, when module_utils/ sits unzipped in <collection>/plugins/
    (under Ansible, the action plugin passes src: the module runs from a zipped payload)."""
    collection_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(bpfbuild.__file__))))
    return os.path.join(collection_root, "bpf")


def resolve_clang(module, clang, src, digest, arch=bpfbuild.DEFAULT_ARCH):
    """The clang to run, or fail_json when it isn't there (bpfbuild would only say 'No such file').
    Only asked for when no prebuilt object can stand in for the build: the message says why."""
    why_not_prebuilt = bpfbuild.no_prebuilt_reason(src, digest, arch)
    if clang is None:
        try:
            return bpfbuild.find_clang()
        except bpfbuild.BuildError as e:
            module.fail_json(msg="%s; %s" % (e, why_not_prebuilt))
    if "/" not in clang:
        found = module.get_bin_path(clang)
        if found is None:
            module.fail_json(msg="clang %r not found in PATH: install clang or give its full path in clang; %s"
                             % (clang, why_not_prebuilt))
        return found
    if not (os.path.isfile(clang) and os.access(clang, os.X_OK)):
        module.fail_json(msg="clang %s does not exist or is not executable: install clang or fix the clang option; %s"
                         % (clang, why_not_prebuilt))
    return clang


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path"),
            dest=dict(type="path"),
            dest_dir=dict(type="path"),
            clang=dict(type="path"),
            prebuilt=dict(type="bool", default=True),
            arch=dict(type="str", default="x86_64"),
        ),
        mutually_exclusive=[("dest", "dest_dir")],
        required_one_of=[("dest", "dest_dir")],
        supports_check_mode=True,
    )
    src = module.params["src"] or default_src()
    if not os.path.isfile(os.path.join(src, bpfbuild.SOURCE)):
        module.fail_json(msg="no BPF sources at %s (%s not found): build on the controller, where the "
                             "bpfquota.nfs collection is installed (delegate_to: localhost), or set src to a "
                             "copy of its bpf/ directory on this host" % (src, bpfbuild.SOURCE))

    try:
        arch = bpfbuild.target_arch(module.params["arch"])
    except bpfbuild.BuildError as e:
        module.fail_json(msg="arch: %s" % e)
    try:
        digest = bpfbuild.sources_digest(src, bpfbuild.clang_flags(arch))
    except (IOError, OSError) as e:
        module.fail_json(msg="cannot read the BPF sources in %s: %s" % (src, e))
    dest = module.params["dest"] or os.path.join(module.params["dest_dir"], bpfbuild.object_name(digest, arch))
    before_digest = bpfbuild.read_stamp(dest)
    before_sha = file_sha256(dest) if os.path.isfile(dest) else None
    needs_build = before_digest != digest
    prebuilt = bpfbuild.prebuilt_object(src, digest, arch) if needs_build and module.params["prebuilt"] else None
    clang = module.params["clang"]
    if needs_build and prebuilt is None:
        clang = resolve_clang(module, clang, src, digest, arch)

    if not needs_build:
        result = {"changed": False, "path": dest, "sha256": before_sha, "digest": digest, "prebuilt": False}
    elif module.check_mode:
        result = {"changed": True, "path": dest, "sha256": None, "digest": digest, "prebuilt": prebuilt is not None}
    else:
        try:
            built = bpfbuild.build(src, dest, clang=clang, prebuilt=module.params["prebuilt"], arch=arch)
        except bpfbuild.BuildError as e:
            module.fail_json(msg="building %s failed: %s" % (dest, e))
        except (IOError, OSError) as e:
            module.fail_json(msg="building %s failed: %s" % (dest, e))
        result = {"changed": built["changed"], "path": built["path"], "sha256": built["sha256"],
                  "digest": built["digest"], "prebuilt": built["prebuilt"]}
    result["src"] = src
    result["arch"] = arch
    if module._diff:
        result["diff"] = {
            "before": {"digest": before_digest, "sha256": before_sha},
            "after": {"digest": result["digest"], "sha256": result["sha256"]},
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
