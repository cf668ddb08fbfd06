# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes PersistentVolumes, as kubernetes.core.k8s_info returns them, turned into volume entries
addressed by their NFS export ({source, limit, inodes?, mode?, labels}): the logic of the
bpfquota.nfs.pv_volumes filter.

The source is the one kubelet mounts: for csi-driver-nfs the driver's NodePublishVolume builds it
from the volume attributes (server, share, subdir, keys matched case-insensitively, subdir
placeholders replaced from the csi.storage.k8s.io/ keys); for the in-tree nfs volume
(nfs-subdir-external-provisioner) it is spec.nfs's server:path.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import re

from ansible_collections.bpfquota.nfs.plugins.module_utils.durations import DurationError, parse_duration
from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import MAX_LIMIT, MODES
from ansible_collections.bpfquota.nfs.plugins.module_utils.quantity import QuantityError, quantity_bytes
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import VolumeError

from collections.abc import Mapping

CSI_NFS_DRIVER = "nfs.csi.k8s.io"
ANNOTATION_PREFIX = "bpfquota.nfs/"
QUOTA_ANNOTATION = ANNOTATION_PREFIX + "quota"    # "true" opts a PV in, "false" out, whatever its class
LIMIT_ANNOTATION = ANNOTATION_PREFIX + "limit"    # a quantity used instead of spec.capacity.storage
INODES_ANNOTATION = ANNOTATION_PREFIX + "inodes"  # a file-count limit
MODE_ANNOTATION = ANNOTATION_PREFIX + "mode"      # enforce | audit
SOFT_ANNOTATION = ANNOTATION_PREFIX + "soft"      # a soft limit: a quantity, or a percentage of the limit
INODES_SOFT_ANNOTATION = ANNOTATION_PREFIX + "inodes-soft"  # a soft file-count limit: a count or a percentage
GRACE_ANNOTATION = ANNOTATION_PREFIX + "grace"    # how long usage may stay over a soft limit: "7d", "12h", seconds
ANNOTATIONS = (QUOTA_ANNOTATION, LIMIT_ANNOTATION, INODES_ANNOTATION, MODE_ANNOTATION, SOFT_ANNOTATION,
               INODES_SOFT_ANNOTATION, GRACE_ANNOTATION)
PERCENT = re.compile(r"^\d+(\.\d+)?%$")

# csi-driver-nfs's subdir placeholders and the volume attributes that replace them (pkg/nfs/nfs.go).
SUBDIR_PLACEHOLDERS = (
    ("${pvc.metadata.name}", "csi.storage.k8s.io/pvc/name"),
    ("${pvc.metadata.namespace}", "csi.storage.k8s.io/pvc/namespace"),
    ("${pv.metadata.name}", "csi.storage.k8s.io/pv/name"),
)
_CSI_KEYS = ("server", "share", "subdir") + tuple(dict(SUBDIR_PLACEHOLDERS).values())


class PvError(VolumeError):
    """Every problem found in the PVs, one per line (also as the list `problems`)."""


def pv_volumes(pvs, storage_classes=None, csi_drivers=(CSI_NFS_DRIVER,)):
    """Volume entries, sorted by source, for the Bound NFS PVs that are opted in: by their
    StorageClass (a name in storage_classes) or by the annotation bpfquota.nfs/quota "true";
    "false" opts a PV out. PVs of other kinds (other CSI drivers, hostPath, ...) and PVs not Bound
    are left out. Raises one PvError naming every problem of every PV."""
    _check_list(pvs)
    classes = _names("storage_classes", [] if storage_classes is None else storage_classes)
    drivers = _names("csi_drivers", csi_drivers)
    problems = []
    entries = []
    owners = {}  # source -> name of the first PV that addresses it
    for index, pv in enumerate(pvs):
        entry = _entry(index, pv, classes, drivers, problems)
        if entry is None:
            continue
        name = entry["labels"]["pv"]
        if entry["source"] in owners:
            problems.append("PVs %s and %s both address %s: one directory can have one limit; opt one of them "
                            "out with the annotation %s: \"false\""
                            % (owners[entry["source"]], name, entry["source"], QUOTA_ANNOTATION))
        owners.setdefault(entry["source"], name)
        entries.append(entry)
    if problems:
        raise PvError(problems)
    return sorted(entries, key=lambda entry: entry["source"])


def _check_list(pvs):
    if isinstance(pvs, Mapping) and "resources" in pvs:
        raise PvError("pv_volumes takes the list of PVs, not the whole kubernetes.core.k8s_info result: "
                      "pass its resources, e.g. pvs.resources | bpfquota.nfs.pv_volumes")
    if not isinstance(pvs, (list, tuple)):
        raise PvError("pv_volumes takes a list of PersistentVolume objects (kubernetes.core.k8s_info's "
                      "resources), not %s" % _type_name(pvs))


def _names(option, names):
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name for name in names):
        raise PvError("pv_volumes: %s must be a list of names, not %r: write e.g. %s=['nfs-csi']"
                      % (option, names, option))
    return frozenset(names)


def _entry(index, pv, classes, drivers, problems):
    """The entry of one PV; None for a PV left out or with problems (appended to problems)."""
    if not isinstance(pv, Mapping):
        problems.append("pvs[%d] is %s, not a PersistentVolume object: pass kubernetes.core.k8s_info's "
                        "resources (kind: PersistentVolume)" % (index, _type_name(pv)))
        return None
    label = _label(index, pv)
    if pv.get("kind", "PersistentVolume") != "PersistentVolume":
        problems.append("%s is a %s, not a PersistentVolume: read the PVs with kubernetes.core.k8s_info "
                        "and kind: PersistentVolume" % (label, pv.get("kind")))
        return None
    spec = _mapping(pv.get("spec"))
    kind = _volume_kind(spec, drivers)
    if kind is None or _get(pv, "status", "phase") != "Bound":
        return None  # not an NFS volume bpfquota can address, or not in use by a claim
    count_before = len(problems)
    annotations = _mapping(_get(pv, "metadata", "annotations"))
    settings = _annotations(label, annotations, problems)
    opted_in = settings.get("quota")
    if opted_in is None:
        opted_in = spec.get("storageClassName") in classes
    if not opted_in:
        return None
    if kind == "csi":
        source = _csi_source(label, _mapping(spec["csi"]).get("volumeAttributes"), problems)
    else:
        source = _nfs_source(label, spec["nfs"], problems)
    if LIMIT_ANNOTATION in annotations:
        limit = settings.get("limit")  # None when it is bad: that problem is reported, not the capacity's
    else:
        limit = _capacity(label, _get(spec, "capacity", "storage"), problems)
    labels = _labels(label, pv, problems)
    soft = settings.get("soft")
    if isinstance(soft, int) and isinstance(limit, int) and soft > limit:
        problems.append("%s: annotation %s (%d bytes) is above the limit (%d bytes): lower it, or raise %s"
                        % (label, SOFT_ANNOTATION, soft, limit, LIMIT_ANNOTATION))
    if len(problems) > count_before:
        return None
    return _volume(source, limit, settings, labels)


def _volume(source, limit, settings, labels):
    entry = {"source": source, "limit": limit}
    if "inodes" in settings:
        entry["inodes"] = settings["inodes"]
    if "mode" in settings:
        entry["mode"] = settings["mode"]  # absent: the quota module's default mode (bpfquota_mode)
    for key in ("soft", "inodes_soft", "grace"):
        if key in settings:
            entry[key] = settings[key]  # absent: the role's defaults (bpfquota_soft, ...)
    entry["labels"] = labels
    return entry


def _volume_kind(spec, drivers):
    """"csi" (csi-driver-nfs), "nfs" (the in-tree volume) or None (anything else: left out)."""
    csi = spec.get("csi")
    if isinstance(csi, Mapping) and csi.get("driver") in drivers:
        return "csi"
    if isinstance(spec.get("nfs"), Mapping):
        return "nfs"
    return None


# --- annotations -------------------------------------------------------------------------------

def _annotations(label, annotations, problems):
    """{quota?, limit?, inodes?, mode?, soft?, inodes_soft?, grace?} from the PV's bpfquota.nfs/ annotations; a problem for each
    unknown key under the prefix (a misspelt opt-out must not pass unseen) and each bad value."""
    settings = {}
    for key in sorted(annotations):
        if not (isinstance(key, str) and key.startswith(ANNOTATION_PREFIX)):
            continue
        value = annotations[key]
        where = "%s: annotation %s" % (label, key)
        if key not in ANNOTATIONS:
            problems.append("%s is not one bpfquota knows: use %s" % (where, ", ".join(ANNOTATIONS)))
        elif not isinstance(value, str):
            problems.append("%s must be a string, not %s: quote it, e.g. %s: \"%s\""
                            % (where, _type_name(value), key, _example(key)))
        else:
            _annotation(where, key, value, settings, problems)
    return settings


def _annotation(where, key, value, settings, problems):
    if key == QUOTA_ANNOTATION:
        if value in ("true", "false"):
            settings["quota"] = value == "true"
        else:
            problems.append("%s is %r: write \"true\" (enforce a quota on this PV whatever its StorageClass) "
                            "or \"false\" (none)" % (where, value))
    elif key == LIMIT_ANNOTATION:
        try:
            settings["limit"] = quantity_bytes(value)
        except QuantityError as e:
            problems.append("%s: %s" % (where, e))
    elif key == INODES_ANNOTATION:
        if value.isdigit() and 0 < int(value) <= MAX_LIMIT:
            settings["inodes"] = int(value)
        else:
            problems.append("%s is %r: write a positive whole number of files such as \"100000\", or remove "
                            "it for no file-count limit" % (where, value))
    elif key == SOFT_ANNOTATION:
        if PERCENT.match(value) and 0 < float(value[:-1]) <= 100:
            settings["soft"] = value
        else:
            try:
                settings["soft"] = quantity_bytes(value)
            except QuantityError as e:
                problems.append("%s: %s (or write a percentage of the limit such as \"80%%\")" % (where, e))
    elif key == INODES_SOFT_ANNOTATION:
        if (value.isdigit() and 0 < int(value) <= MAX_LIMIT) or (PERCENT.match(value) and 0 < float(value[:-1]) <= 100):
            settings["inodes_soft"] = int(value) if value.isdigit() else value
        else:
            problems.append("%s is %r: write a positive whole number of files such as \"90000\" or a percentage of "
                            "the inodes limit such as \"90%%\"" % (where, value))
    elif key == GRACE_ANNOTATION:
        try:
            settings["grace"] = parse_duration(value)
        except DurationError as e:
            problems.append("%s: %s" % (where, e))
    elif value in MODES:
        settings["mode"] = value
    else:
        problems.append("%s is %r: write \"enforce\" (refuse writes over the limit) or \"audit\" "
                        "(allow them, count them as denials)" % (where, value))


def _example(key):
    return {QUOTA_ANNOTATION: "false", LIMIT_ANNOTATION: "20Gi", INODES_ANNOTATION: "100000", SOFT_ANNOTATION: "16Gi",
            INODES_SOFT_ANNOTATION: "90000", GRACE_ANNOTATION: "7d"}.get(key, "audit")


# --- sources: the export kubelet mounts ----------------------------------------------------------

def _csi_source(label, attributes, problems):
    """server:share[/subdir] as csi-driver-nfs's NodePublishVolume builds it."""
    values = _csi_attributes(label, attributes, problems)
    if values is None:
        return None
    server, share, subdir = values.get("server"), values.get("share"), values.get("subdir")
    missing = [key for key, value in (("server", server), ("share", share)) if not value]
    if missing:
        problems.append("%s: spec.csi.volumeAttributes has no %s: csi-driver-nfs can't mount it either; "
                        "set them as in the driver's static PV example" % (label, " and no ".join(missing)))
        return None
    path = share
    if subdir:
        # Dynamic PVs carry the substituted subdir already; the driver substitutes again at mount
        # time and leaves a placeholder whose attribute is missing as it is, and so do we.
        for placeholder, key in SUBDIR_PLACEHOLDERS:
            if key in values:
                subdir = subdir.replace(placeholder, values[key])
        path = share.rstrip("/") + "/" + subdir
    return _source(label, server, path, "spec.csi.volumeAttributes", problems)


def _csi_attributes(label, attributes, problems):
    """The attributes the driver reads, by lower-case key; None (and a problem) when two keys differ
    only in case: the driver would take either, depending on Go's map order."""
    if not isinstance(attributes, Mapping):
        problems.append("%s: spec.csi.volumeAttributes is missing: csi-driver-nfs needs server and share "
                        "there to mount the volume" % label)
        return None
    values = {}
    for key in sorted(k for k in attributes if isinstance(k, str) and k.lower() in _CSI_KEYS):
        lower = key.lower()
        if lower in values:
            problems.append("%s: spec.csi.volumeAttributes has %s twice (in other letter case): "
                            "csi-driver-nfs would take either one; keep one of them" % (label, lower))
            return None
        if not isinstance(attributes[key], str):
            problems.append("%s: spec.csi.volumeAttributes.%s must be a string, not %s"
                            % (label, key, _type_name(attributes[key])))
            return None
        values[lower] = attributes[key]
    return values


def _nfs_source(label, nfs, problems):
    """server:path of an in-tree nfs volume (nfs-subdir-external-provisioner's PVs)."""
    server, path = nfs.get("server"), nfs.get("path")
    bad = [key for key, value in (("server", server), ("path", path)) if not (isinstance(value, str) and value)]
    if bad:
        problems.append("%s: spec.nfs needs %s (a non-empty string): kubelet can't mount it either"
                        % (label, " and ".join(bad)))
        return None
    return _source(label, server, path, "spec.nfs", problems)


def _source(label, server, path, field, problems):
    """server:/normalized/path; an IPv6 address in brackets, as the driver and mount.nfs write it."""
    segments = [segment for segment in path.split("/") if segment not in ("", ".")]
    if ".." in path.replace("\\", "/").split("/"):
        problems.append("%s: %s path %r contains '..': csi-driver-nfs refuses to mount such a path; "
                        "write the directory's path without it" % (label, field, path))
        return None
    if _is_ipv6(server):
        server = "[%s]" % server
    return "%s:/%s" % (server, "/".join(segments))


def _is_ipv6(server):
    try:
        ipaddress.IPv6Address(server)
    except ValueError:
        return False
    return True


# --- limit and labels --------------------------------------------------------------------------

def _capacity(label, storage, problems):
    if storage is None:
        problems.append("%s: spec.capacity.storage is missing: give the PV a capacity, or set the annotation "
                        "%s: \"20Gi\"" % (label, LIMIT_ANNOTATION))
        return None
    try:
        return quantity_bytes(storage)
    except QuantityError as e:
        problems.append("%s: spec.capacity.storage %s; or set the annotation %s" % (label, e, LIMIT_ANNOTATION))
        return None


def _labels(label, pv, problems):
    """{pv, namespace, claim}: the PV's name and its claim's, as report and metrics show them."""
    name = _get(pv, "metadata", "name")
    claim = _mapping(_get(pv, "spec", "claimRef"))
    namespace, claim_name = claim.get("namespace"), claim.get("name")
    if not all(isinstance(value, str) and value for value in (name, namespace, claim_name)):
        problems.append("%s: a Bound PV needs metadata.name and spec.claimRef's namespace and name (strings): "
                        "pass the PVs as kubernetes.core.k8s_info returns them" % label)
        return None
    return {"pv": name, "namespace": namespace, "claim": claim_name}


# --- helpers -----------------------------------------------------------------------------------

def _label(index, pv):
    name = _get(pv, "metadata", "name")
    if isinstance(name, str) and name and name.isprintable():
        return "PV %s" % name
    return "pvs[%d]" % index


def _get(obj, *keys):
    """obj[k1][k2]...; None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _mapping(value):
    return value if isinstance(value, Mapping) else {}


def _type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean (%r)" % (value,)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string (%r)" % (value,)
    if isinstance(value, (int, float)):
        return "a number (%r)" % (value,)
    return "%s (%r)" % (type(value).__name__, value)
