# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
---
name: pv_volumes
short_description: bpfquota volume entries from Kubernetes PersistentVolumes
version_added: 0.1.0
description:
  - Turns PersistentVolume objects, as M(kubernetes.core.k8s_info) returns them in C(resources), into
    volume entries addressed by their NFS export, one per PV that is Bound and opted in.
  - "Each entry is C({source, limit, inodes?, mode?, soft?, inodes_soft?, grace?, labels}): C(source) is C(server:/export/path), the
    export kubelet mounts for the PV; C(limit) is the PV's C(spec.capacity.storage) in bytes (rounded up
    to a whole byte, as Kubernetes rounds); C(labels) is C({pv, namespace, claim}) from the PV's name and
    its C(spec.claimRef); C(inodes), C(mode), C(soft), C(inodes_soft) and C(grace) only when the PV's
    annotations set them."
  - "csi-driver-nfs PVs (C(spec.csi.driver) one of O(csi_drivers)): the source is built as the driver's
    C(NodePublishVolume) builds it from C(spec.csi.volumeAttributes): C(server), C(share) and C(subdir),
    keys in any letter case, with C(${pvc.metadata.name}), C(${pvc.metadata.namespace}) and
    C(${pv.metadata.name}) in C(subdir) replaced from the C(csi.storage.k8s.io/pvc/name),
    C(csi.storage.k8s.io/pvc/namespace) and C(csi.storage.k8s.io/pv/name) attributes. The
    C(volumeHandle) is not read: the driver never mounts from it."
  - In-tree C(spec.nfs) PVs (nfs-subdir-external-provisioner's, and static ones) give C(server:path).
  - Paths are made absolute and normalized (no C(//), no C(.), no trailing slash); an IPv6 server address
    is written in brackets, as C(mount.nfs) needs it.
  - PVs of other kinds (other CSI drivers, C(hostPath), ...) and PVs not C(Bound) are left out, as are PVs
    not opted in.
  - "A PV is opted in when its C(spec.storageClassName) is one of O(storage_classes), or when it has the
    annotation C(bpfquota.nfs/quota: \"true\"); C(bpfquota.nfs/quota: \"false\") opts it out whatever
    its class (for PVs whose size is meant to be advisory)."
  - "More annotations: C(bpfquota.nfs/limit) (a quantity such as C(\"20Gi\")) replaces the capacity as
    the limit; C(bpfquota.nfs/inodes) (such as C(\"100000\")) sets a file-count limit;
    C(bpfquota.nfs/mode) is C(\"enforce\") or C(\"audit\"); C(bpfquota.nfs/soft) (a quantity, or a
    percentage of the limit such as C(\"80%\")) and C(bpfquota.nfs/inodes-soft) (a count or a percentage)
    set soft limits, C(bpfquota.nfs/grace) (C(\"7d\"), C(\"12h\"), seconds) how long usage may stay over
    them (see M(bpfquota.nfs.quota)). Another key under C(bpfquota.nfs/) is an
    error, so a misspelt opt-out is never ignored."
  - Every problem (a PV that isn't a mapping, an opted-in PV without a server, share, path, capacity or
    claim, a capacity that isn't a Kubernetes quantity, an unknown annotation or value, two PVs with the
    same source) fails the filter with one error that names each PV and the fix.
options:
  _input:
    description: PersistentVolume objects, as M(kubernetes.core.k8s_info) returns them in C(resources).
    type: list
    elements: dict
    required: true
  storage_classes:
    description:
      - Names of the StorageClasses whose Bound NFS PVs get a quota.
      - The default, none, opts in only the PVs annotated C(bpfquota.nfs/quota) V("true"), so that
        no PV gets a limit that nobody asked for.
    type: list
    elements: str
    default: []
  csi_drivers:
    description: Names under which csi-driver-nfs is installed (its C(--drivername)).
    type: list
    elements: str
    default: [nfs.csi.k8s.io]
notes:
  - The entries use C(source), which the M(bpfquota.nfs.quota) module and the C(bpfquota.nfs.enforcer)
    role take only once they support volumes addressed by export (C(source) entries); this version's
    module accepts C(path) entries only and refuses them.
  - The entries are sorted by C(source), so the same PVs give the same list in any order.
  - A PV resize (a new C(spec.capacity.storage)) gives a new C(limit); a deleted or released PV
    gives no entry, so applying the list removes its volume.
seealso:
  - module: bpfquota.nfs.quota
  - name: csi-driver-nfs driver parameters
    description: The volume attributes and the subdir placeholders.
    link: https://github.com/kubernetes-csi/csi-driver-nfs/blob/master/docs/driver-parameters.md
"""

EXAMPLES = r"""
- name: Read the PersistentVolumes
  kubernetes.core.k8s_info:
    kind: PersistentVolume
  register: pv_info
  delegate_to: localhost
  run_once: true

- name: Enforce the size of every PV of the nfs-csi and nfs-client StorageClasses
  ansible.builtin.set_fact:
    bpfquota_volumes: "{{ pv_info.resources | bpfquota.nfs.pv_volumes(storage_classes=['nfs-csi', 'nfs-client']) }}"

# A PV's annotations change what it gets:
#   metadata:
#     annotations:
#       bpfquota.nfs/quota: "false"    # no quota, even in a listed StorageClass
#       bpfquota.nfs/limit: "20Gi"     # instead of spec.capacity.storage
#       bpfquota.nfs/inodes: "100000"  # at most that many files
#       bpfquota.nfs/mode: "audit"     # count what would be refused, refuse nothing
#       bpfquota.nfs/soft: "80%"       # over 80 % of the limit: a warning, then refusals after the grace
#       bpfquota.nfs/grace: "3d"       # instead of the default 7 days
- name: Only the PVs annotated bpfquota.nfs/quota "true"
  ansible.builtin.debug:
    msg: "{{ pv_info.resources | bpfquota.nfs.pv_volumes }}"
"""

RETURN = r"""
_value:
  description:
    - One volume entry per Bound, opted-in NFS PV, sorted by C(source).
    - "For example C({source: \"10.0.0.5:/srv/nfs/default-data-web-0-pvc-2c1a\", limit: 10737418240,
      labels: {pv: pvc-2c1a, namespace: default, claim: data-web-0}}), with C(inodes), C(mode), C(soft),
      C(inodes_soft) and C(grace) when the PV's annotations set them."
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.bpfquota.nfs.plugins.module_utils.pvs import CSI_NFS_DRIVER, PvError, pv_volumes as _pv_volumes


def pv_volumes(pvs, storage_classes=None, csi_drivers=None):
    """Volume entries for the Bound, opted-in NFS PVs among pvs (see DOCUMENTATION)."""
    try:
        return _pv_volumes(pvs, storage_classes=storage_classes,
                           csi_drivers=[CSI_NFS_DRIVER] if csi_drivers is None else csi_drivers)
    except PvError as e:
        raise AnsibleFilterError("bpfquota.nfs.pv_volumes: %s" % e)


class FilterModule(object):
    def filters(self):
        return {"pv_volumes": pv_volumes}
