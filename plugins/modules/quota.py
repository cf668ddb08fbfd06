#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
module: quota
short_description: Set the per-directory write quotas bpfquota enforces
version_added: 0.1.0
description:
  - Makes the volumes (directories with a byte limit and optionally a file-count limit) that the
    loaded bpfquota enforcer holds equal a desired list, given inline in O(volumes) or as a volumes
    file in O(src).
  - With O(state=present) the result is exactly the desired set; volumes not listed are removed.
    Changed limits and modes apply in place, keeping the usage already counted; new volumes are
    scanned once to learn their current usage.
  - Every entry is validated before anything changes (paths exist and are normalized directories,
    sizes parse, no duplicates, no volume nested in another); all problems are reported together
    in one C(msg).
  - Only the maps change; the BPF program is never reloaded. The enforcer must be loaded first
    (M(bpfquota.nfs.bpf_program)); otherwise the module fails.
options:
  volumes:
    description:
      - The desired volumes. Each has either O(volumes[].path) or O(volumes[].source).
      - With O(state=absent), only the paths and sources matter; the other keys are ignored.
      - Mutually exclusive with O(src).
    type: list
    elements: dict
    version_added: 0.1.0
    suboptions:
      path:
        description:
          - Absolute, normalized path of the volume's directory through a mount on this host (no
            trailing slash, no C(..)).
          - With O(state=present) it must exist and be a directory.
          - Mutually exclusive with O(volumes[].source); one of them is required.
        type: str
        version_added: 0.1.0
      source:
        description:
          - "The volume's directory as the NFS export's C(server:/export/path), the form kubelet and
            C(mount) use (an IPv6 address in brackets). It needs no mount on the host: it is enforced
            from the moment any NFS mount of that server (in any mount namespace) reaches the
            directory, and stays defined when they all go. A server name and its addresses are the
            same server."
          - Its usage is scanned when a mount first reaches it; until then it is unknown (see
            O(volumes[].unknown_usage)).
          - Mutually exclusive with O(volumes[].path); one of them is required.
        type: str
        version_added: 0.1.0
      labels:
        description:
          - Names and values carried with the volume into the maps and shown by C(bpfquota report)
            and M(bpfquota.nfs.quota_info), such as C(pv), C(namespace) and C(claim) (the filter
            P(bpfquota.nfs.pv_volumes#filter) sets them from PersistentVolumes).
          - Names are letters, digits and C(_), not starting with a digit; values are strings.
        type: dict
        version_added: 0.1.0
      limit:
        description:
          - The most bytes the volume may hold, as a number of bytes or a quantity such as
            V(50Gi), V(512M), V(1.5Ti) (binary units with C(i), decimal without).
          - Required for every entry when O(state=present).
        type: raw
        version_added: 0.1.0
      inodes:
        description: The most files (inodes) the volume may hold. No file-count limit when omitted.
        type: int
        version_added: 0.1.0
      soft:
        description:
          - The soft limit, as a size like O(volumes[].limit) or a percentage of it (V(80%)); at most the limit.
          - Over it growth is allowed, the agent warns and a grace clock starts; once O(volumes[].grace) has run
            out while still over it, growth is refused (C(EDQUOT)) as at the limit until usage drops to the soft
            limit, which resets the clock (XFS semantics). The clock survives agent restarts and reboots.
          - Defaults to O(soft); no soft limit when neither is set.
        type: raw
        version_added: 0.1.0
      inodes_soft:
        description:
          - The soft file-count limit, as a number of files or a percentage of O(volumes[].inodes); at most
            O(volumes[].inodes). Works like O(volumes[].soft), with a clock of its own.
          - Defaults to O(inodes_soft); a percentage of a volume without O(volumes[].inodes) means none.
        type: raw
        version_added: 0.1.0
      grace:
        description:
          - How long usage may stay over a soft limit, in seconds or as V(7d), V(12h), V(30m), V(45s), or
            combined as V(1d12h). Means nothing without a soft limit.
          - Defaults to O(grace).
        type: raw
        version_added: 0.1.0
      mode:
        description:
          - V(enforce) refuses writes over the limit; V(audit) allows them but counts them as denials.
          - Defaults to O(mode).
        type: str
        choices: [enforce, audit]
        version_added: 0.1.0
      unknown_usage:
        description:
          - What the volume does while its usage is unknown, from when it is added until its first scan
            succeeds (a scan that timed out or failed is retried by the agent).
          - V(refuse) refuses growth meanwhile (writes that add bytes, creates); reads, overwrites and
            deletes stay allowed. V(allow) counts its usage from zero meanwhile, so bytes already in the
            volume are not counted until the scan.
          - A volume whose usage the agent saved (before a reboot) gets it back when it is added again,
            and is not unknown.
          - Defaults to O(unknown_usage).
        type: str
        choices: [refuse, allow]
        version_added: 0.1.0
  src:
    description:
      - Path on the managed host of a volumes file (YAML or JSON) with a top-level C(volumes) list
        of entries like those of O(volumes) and an optional top-level C(mode) and C(unknown_usage), for
        example the C(/etc/bpfquota/volumes.yaml) the C(bpfquota.nfs.enforcer) role keeps (O(dest)).
      - An entry's mode wins over the file's top-level C(mode), which wins over O(mode); the same goes
        for C(unknown_usage).
      - With O(state=absent), the volumes listed in the file are removed.
      - Mutually exclusive with O(volumes).
    type: path
    version_added: 0.1.0
  dest:
    description:
      - Path on the managed host of a volumes file in which to keep O(volumes) with O(mode) and O(unknown_usage),
        in the format O(src) reads, for C(bpfquota apply) (the C(bpfquota.nfs.enforcer) role keeps
        C(/etc/bpfquota/volumes.yaml) so, which its C(bpfquota-apply.service) applies at boot).
      - Written (mode C(0644)) once the volumes are applied, and only when its content differs; the run
        then reports a change, and in diff mode the file's diff too. Never written in check mode, where
        the change is predicted. Its directory must exist.
      - Requires O(volumes) and O(state=present).
    type: path
    version_added: 0.1.0
  state:
    description:
      - V(present) makes the enforced volumes equal O(volumes) or O(src) exactly; one of them is required.
      - V(absent) removes volumes. With O(volumes) or O(src), exactly the listed paths are removed
        (and the others kept); with neither, all volumes are removed. A listed path that isn't
        enforced is ignored. The enforcer itself stays loaded (see M(bpfquota.nfs.bpf_program)).
    type: str
    choices: [present, absent]
    default: present
    version_added: 0.1.0
  mode:
    description: The mode of entries that don't set their own.
    type: str
    choices: [enforce, audit]
    default: enforce
    version_added: 0.1.0
  unknown_usage:
    description: The O(volumes[].unknown_usage) of entries that don't set their own.
    type: str
    choices: [refuse, allow]
    default: refuse
    version_added: 0.1.0
  soft:
    description: The O(volumes[].soft) of entries that don't set their own, such as V(80%); none when omitted.
    type: raw
    version_added: 0.1.0
  inodes_soft:
    description: The O(volumes[].inodes_soft) of entries that don't set their own, such as V(90%); none when omitted.
    type: raw
    version_added: 0.1.0
  grace:
    description: The O(volumes[].grace) of entries that don't set their own.
    type: raw
    default: 7d
    version_added: 0.1.0
  scan_timeout:
    description:
      - Seconds allowed for the first scan of each new volume. A scan that doesn't finish in time
        (a large tree, an unreachable NFS server) leaves the volume's usage unknown, with a warning; meanwhile
        it refuses growth (or counts from zero, see O(unknown_usage)) until the C(bpfquota) agent's
        scan succeeds.
    type: float
    default: 60.0
    version_added: 0.1.0
notes:
  - Check mode plans the change from the maps and the mount table (and O(dest)) and reports it (C(changed),
    C(added), C(updated), C(removed), diff) exactly, without writing anything.
  - A volume on NFS is keyed by the server's identity (fsid and fileid), so it is limited through
    every mount that reaches it (bind mounts, per-pod mounts of a subdirectory, another NFS mount
    of the same export, other mount namespaces); the agent places new NFS mounts as they appear,
    and until then growth below them is refused.
  - Each sync leaves a stamp in the maps (digests of its volumes, and of their paths with the host's
    mount table); any other write of routes or limits drops it. A run with the stamp's very inputs
    returns unchanged at once; a run with the same paths on the same mounts (only limits or modes
    differ) compares limits without examining the directories again. The agent places every NFS
    mount each scan interval, on every mount change and when the kernel asks; C(bpfquota apply --full
    FILE) forces both.
requirements:
  - The bpfquota enforcer loaded on the managed host (M(bpfquota.nfs.bpf_program)).
  - PyYAML on the managed host when O(src) is a YAML file.
seealso:
  - module: bpfquota.nfs.bpf_program
  - module: bpfquota.nfs.quota_info
author:
  - bpfquota contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - bpfquota.nfs.bpfquota
  - bpfquota.nfs.bpfquota.enforcer
attributes:
  diff_mode:
    support: full
    details:
      - Before and after are the canonical volumes documents (sorted by path, limits in bytes).
      - With O(dest), the diff is a list of two, the second the file's before and after.
"""

EXAMPLES = r"""
- name: Enforce two volumes (any other volume is removed)
  bpfquota.nfs.quota:
    volumes:
      - path: /mnt/nfs/pv-a
        limit: 50Gi
      - path: /mnt/nfs/pv-b
        limit: 200Gi
        inodes: 1000000
        mode: audit

- name: Enforce the inventory's volumes, and keep them in the file bpfquota apply reads at boot
  bpfquota.nfs.quota:
    volumes: "{{ bpfquota_volumes }}"
    dest: /etc/bpfquota/volumes.yaml

- name: Apply a volumes file
  bpfquota.nfs.quota:
    src: /etc/bpfquota/volumes.yaml
    scan_timeout: 300

- name: Dry-run rollout, every volume counted but nothing refused
  bpfquota.nfs.quota:
    volumes: "{{ bpfquota_volumes }}"
    mode: audit

- name: Stop limiting one volume
  bpfquota.nfs.quota:
    state: absent
    volumes:
      - path: /mnt/nfs/pv-b

- name: Remove every volume (the enforcer stays loaded)
  bpfquota.nfs.quota:
    state: absent
"""

RETURN = r"""
added:
  description: Paths (or sources) of the volumes added (or that would be, in check mode), sorted.
  returned: always
  type: list
  elements: str
  sample: ["/mnt/nfs/pv-a"]
updated:
  description: Paths (or sources) of the volumes whose limits, soft limits, grace, mode or labels changed, sorted.
  returned: always
  type: list
  elements: str
  sample: ["/mnt/nfs/pv-b"]
removed:
  description: Paths (or sources) of the volumes removed, sorted.
  returned: always
  type: list
  elements: str
  sample: []
routes_changed:
  description:
    - Whether the keys changed through which the kernel finds each volume's directory (its
      filesystem's identity and inode number; for NFS the server's fsid and fileid) and places
      every NFS mount. Adding or removing volumes changes them; on its own, it means a mount
      changed (an NFS mount of the server appeared or went, or a remount gave a local directory
      another device number).
  returned: always
  type: bool
  sample: false
problems:
  description: Every problem found in the volumes, one per item, each with its fix.
  returned: when validation fails
  type: list
  elements: str
  sample: ["volumes[1] (/mnt/nfs/pv-b): limit: invalid size '50 gigs': write a number followed by an optional unit, e.g. 50Gi"]
"""

import contextlib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import (
    listed_paths, volumes_file_text, volumes_to_document, with_defaults)


def fail_invalid(module, error):
    """fail_json for volumes the service refused (enforcement.BpfquotaError): every problem on a line of its own."""
    if error.problems:
        module.fail_json(msg="invalid volumes, nothing was changed:\n" + str(error), problems=error.problems)
    module.fail_json(msg="invalid volumes, nothing was changed: %s" % error)


def call_or_fail(module, function, *args, **kwargs):
    """function(*args, **kwargs) of the enforcement service; fail_invalid when it refuses the volumes."""
    try:
        return function(*args, **kwargs)
    except enforcement.BpfquotaError as e:
        fail_invalid(module, e)


def load_entries(module):
    """The raw entries of O(volumes) or O(src) (state=present), with O(unknown_usage), O(soft), O(inodes_soft) and
    O(grace) where they set none."""
    entries = module.params["volumes"]
    if module.params["src"] is not None:
        entries = call_or_fail(module, enforcement.load_entries, module.params["src"])
    return [with_defaults(entry, entry_defaults(module)) for entry in entries]


def entry_defaults(module):
    """The options entries inherit when they don't set their own."""
    defaults = dict((key, module.params[key]) for key in ("soft", "inodes_soft", "grace") if module.params[key] is not None)
    defaults["unknown_usage"] = module.params["unknown_usage"]
    return defaults


def unchanged_result(module, entries):
    """The result of a sync whose every input is that of the last one (nothing written since)."""
    result = {"changed": False, "added": [], "updated": [], "removed": [], "routes_changed": False}
    if module._diff:
        volumes = call_or_fail(module, enforcement.validated_volumes, entries, module.params["mode"], examine_paths=False)
        document = volumes_to_document(volumes)
        result["diff"] = {"before": document, "after": document}
    return result


def paths_to_remove(module):
    """The normalized paths to remove (state=absent), or None for all."""
    if module.params["src"] is not None:
        entries = call_or_fail(module, enforcement.load_entries, module.params["src"])
        problems = []
        paths = set()
        for index, entry in enumerate(entries):
            names = listed_paths([entry])
            if not names:
                problems.append("%s: volumes[%d]: each entry needs an absolute path or a source server:/export/path"
                                % (module.params["src"], index))
            else:
                paths.update(names)
        if problems:
            module.fail_json(msg="invalid volumes, nothing was changed:\n" + "\n".join(problems), problems=problems)
        return paths
    if module.params["volumes"] is not None:
        names = listed_paths(module.params["volumes"])
        if len(names) != len(module.params["volumes"]):
            module.fail_json(msg="invalid volumes, nothing was changed: each entry needs an absolute path or a source "
                                 "server:/export/path")
        return set(names)
    return None


def open_maps(module):
    try:
        return enforcement.open_maps()
    except enforcement.BpfquotaError:  # its only kind: not loaded
        module.fail_json(msg="the bpfquota enforcer is not loaded (no maps pinned under %s): load it first with "
                             "bpfquota.nfs.bpf_program (state: present)" % layout.PIN_DIR)
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="cannot open the bpfquota maps under %s: %s (run as root)" % (layout.PIN_DIR, e))


def routes(maps):
    return dict((key, vol_id) for key, vol_id in maps.keys().items() if vol_id != layout.PROBE_VOLUME)


def kept_volumes(applied, remove):
    """state=absent: the applied Volumes whose paths aren't in `remove` (None: remove all)."""
    return [volume for path, (vol_id, volume) in sorted(applied.items()) if remove is not None and path not in remove]


def sync(module, maps, prepared, remove):
    """Plan (and unless check mode, apply) against the open maps; returns the result dict.
    prepared: the enforcement.Sync to apply (state=present), else None and `remove` the paths to remove."""
    applied = quota.applied_volumes(maps)
    current = [volume for vol_id, volume in applied.values()]
    desired = prepared.volumes if prepared is not None else kept_volumes(applied, remove)
    routes_before = routes(maps)
    scan_timeout = module.params["scan_timeout"]
    try:
        if prepared is not None:
            the_plan = enforcement.apply_sync(maps, prepared, module.check_mode, scan_timeout, module.warn,
                                              applied=applied)
        else:
            the_plan = enforcement.apply_volumes(maps, desired, module.check_mode, scan_timeout, module.warn,
                                                 applied=applied)
    except enforcement.BpfquotaError as e:
        fail_invalid(module, e)
    except (OSError, libbpf.LibbpfError) as e:
        module.fail_json(msg="updating the bpfquota maps failed: %s: fix the cause and run again "
                             "(the module converges from any state, a partial update included)" % e)
    routes_changed = the_plan.keys != routes_before
    result = {
        "added": [volume.path for volume in the_plan.added],
        "updated": [new.path for old, new in the_plan.updated],
        "removed": [volume.path for volume in the_plan.removed],
    }
    result["changed"] = bool(result["added"] or result["updated"] or result["removed"] or routes_changed)
    result["routes_changed"] = routes_changed
    if module._diff:
        result["diff"] = {"before": volumes_to_document(current), "after": volumes_to_document(desired)}
    return result


def read_text_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except (IOError, OSError):
        return None


def keep_file(module, result):
    """O(dest): written (unless check mode) when it differs from O(volumes); the result updated."""
    dest = module.params["dest"]
    after = volumes_file_text(module.params["volumes"], module.params["mode"], module.params["unknown_usage"],
                              dict((key, module.params[key]) for key in ("soft", "inodes_soft", "grace")))
    before = read_text_or_none(dest)
    changed = before != after or (os.stat(dest).st_mode & 0o7777) != 0o644
    if changed and not module.check_mode:
        directory = os.path.dirname(dest) or "."
        if not os.path.isdir(directory):
            module.fail_json(msg="the volumes were applied, but %s can't be written: directory %s does not exist: "
                                 "create it first (ansible.builtin.file state=directory)" % (dest, directory), **result)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bpfquota-")
        with os.fdopen(fd, "wb") as f:
            f.write(after.encode("utf-8", "surrogateescape"))
        module.atomic_move(tmp, dest)
        os.chmod(dest, 0o644)  # atomic_move gives a new file the umask's mode
    result["changed"] = result["changed"] or changed
    if module._diff:
        result["diff"] = [result["diff"], {"before_header": dest, "after_header": dest,
                                           "before": before or "", "after": after}]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            volumes=dict(type="list", elements="dict", options=dict(
                path=dict(type="str"),
                source=dict(type="str"),
                limit=dict(type="raw"),
                inodes=dict(type="int"),
                mode=dict(type="str", choices=list(layout.MODES)),
                unknown_usage=dict(type="str", choices=list(layout.UNKNOWN_USAGE)),
                labels=dict(type="dict"),
                soft=dict(type="raw"),
                inodes_soft=dict(type="raw"),
                grace=dict(type="raw"),
            ), mutually_exclusive=[("path", "source")], required_one_of=[("path", "source")]),
            src=dict(type="path"),
            dest=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            mode=dict(type="str", choices=list(layout.MODES), default="enforce"),
            unknown_usage=dict(type="str", choices=list(layout.UNKNOWN_USAGE), default="refuse"),
            soft=dict(type="raw"),
            inodes_soft=dict(type="raw"),
            grace=dict(type="raw", default="7d"),
            scan_timeout=dict(type="float", default=60.0),
        ),
        mutually_exclusive=[("volumes", "src")],
        required_if=[("state", "present", ("volumes", "src"), True)],
        required_by={"dest": "volumes"},
        supports_check_mode=True,
    )
    if module.params["scan_timeout"] <= 0:
        module.fail_json(msg="scan_timeout must be a positive number of seconds, not %s" % module.params["scan_timeout"])
    if module.params["dest"] is not None and module.params["state"] != "present":
        module.fail_json(msg="dest keeps the volumes applied with state=present; with state=absent, leave it out")
    if module.params["state"] == "present":
        entries = load_entries(module)
        prepared, remove = call_or_fail(module, enforcement.prepare_sync, entries, module.params["mode"]), None
    else:
        entries, prepared, remove = None, None, paths_to_remove(module)

    if entries is not None and prepared is None:
        result = unchanged_result(module, entries)
    else:
        with contextlib.nullcontext() if module.check_mode else enforcement.exclusive():
            with open_maps(module) as maps:
                result = sync(module, maps, prepared, remove)
    if module.params["dest"] is not None:
        keep_file(module, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
