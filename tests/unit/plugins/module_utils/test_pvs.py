# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pv_volumes on PersistentVolumes recorded in the shapes csi-driver-nfs and
nfs-subdir-external-provisioner give them (tests/unit/plugins/fixtures/pvs/), and on edited copies."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os
import re

import pytest
import yaml

from ansible_collections.bpfquota.nfs.plugins.module_utils.pvs import PvError, pv_volumes

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "pvs")
GI, MI = 1024 ** 3, 1024 ** 2


def recorded(name):
    with open(os.path.join(FIXTURES, name + ".yaml")) as f:
        return yaml.safe_load(f)


CSI = recorded("csi-driver-nfs")
SUBDIR = recorded("nfs-subdir-external-provisioner")
OTHERS = recorded("other-kinds")
ALL_CLASSES = ["nfs-csi", "nfs-csi-tenants", "nfs-client", "nfs-client-pattern"]


def by_pv(entries):
    return dict((entry["labels"]["pv"], entry) for entry in entries)


def one(pv, **options):
    """The entries of one edited PV, opted in by its class unless options say otherwise."""
    options.setdefault("storage_classes", ALL_CLASSES)
    return pv_volumes([pv], **options)


def problems_of(pvs, **options):
    options.setdefault("storage_classes", ALL_CLASSES)
    with pytest.raises(PvError) as caught:
        pv_volumes(pvs, **options)
    return caught.value.problems


# --- the recorded shapes -------------------------------------------------------------------------

def test_csi_driver_nfs_pvs_give_the_source_the_driver_mounts():
    entries = by_pv(pv_volumes(CSI, storage_classes=["nfs-csi", "nfs-csi-tenants"]))
    assert entries == {
        # dynamic, subdir = the PV name; share "/" joined without "//"
        "pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64": {
            "source": "nfs-server.default.svc.cluster.local:/pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64",
            "limit": 10 * GI,
            "labels": {"pv": "pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64", "namespace": "shop", "claim": "data-web-0"}},
        # "subDir" in its StorageClass's letter case; a share with a trailing slash
        "pvc-9d1e62a0-77c4-4d0b-8a1e-5b3c2f6a9e01": {
            "source": "10.20.0.5:/exports/k8s/billing/postgres",
            "limit": 1536 * MI,
            "labels": {"pv": "pvc-9d1e62a0-77c4-4d0b-8a1e-5b3c2f6a9e01", "namespace": "billing", "claim": "postgres"}},
        # before v4.1: the subdir is in share, the handle is not read
        "pvc-1f2e3d4c-5b6a-4789-8abc-def012345678": {
            "source": "nfs-server.default.svc.cluster.local:/pvc-1f2e3d4c-5b6a-4789-8abc-def012345678",
            "limit": 5 * GI,
            "labels": {"pv": "pvc-1f2e3d4c-5b6a-4789-8abc-def012345678", "namespace": "shop", "claim": "uploads"}},
        # static, class "", opted in by annotation, ${pv.metadata.name} replaced as the driver does
        "pv-reports": {
            "source": "nfs-server.default.svc.cluster.local:/static/pv-reports",
            "limit": 2 * GI,
            "mode": "audit",
            "labels": {"pv": "pv-reports", "namespace": "analytics", "claim": "reports"}},
    }  # and the Released PV is left out


def test_nfs_subdir_external_provisioner_pvs_give_server_and_path():
    entries = by_pv(pv_volumes(SUBDIR, storage_classes=["nfs-client", "nfs-client-pattern"]))
    assert entries == {
        "pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a": {
            "source": "192.168.1.20:/srv/nfs/k8s/default-test-claim-pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a",
            "limit": GI,
            "labels": {"pv": "pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a", "namespace": "default",
                       "claim": "test-claim"}},
        # limit and inodes from annotations (the capacity 500M is not the limit)
        "pvc-6d003671-63c1-4b5a-9f1e-2a3b4c5d6e7f": {
            "source": "192.168.1.20:/srv/nfs/k8s/cms/media",
            "limit": 750 * MI,
            "inodes": 100000,
            "labels": {"pv": "pvc-6d003671-63c1-4b5a-9f1e-2a3b4c5d6e7f", "namespace": "cms", "claim": "media"}},
    }  # opted out by annotation; Available


def test_entries_are_sorted_by_source_whatever_the_order_of_the_pvs():
    pvs = CSI + SUBDIR + OTHERS
    entries = pv_volumes(pvs, storage_classes=ALL_CLASSES)
    assert [entry["source"] for entry in entries] == sorted(entry["source"] for entry in entries)
    assert pv_volumes(list(reversed(pvs)), storage_classes=ALL_CLASSES) == entries
    assert len(entries) == 6


def test_other_kinds_of_pv_are_left_out_even_in_a_listed_class():
    assert pv_volumes(OTHERS, storage_classes=["nfs-csi"]) == []


def test_no_storage_classes_by_default_only_annotated_pvs():
    assert [entry["labels"]["pv"] for entry in pv_volumes(CSI + SUBDIR)] == ["pv-reports"]
    assert [entry["labels"]["pv"] for entry in pv_volumes(CSI + SUBDIR, storage_classes=None)] == ["pv-reports"]


def test_the_input_is_not_changed():
    pvs = copy.deepcopy(CSI)
    pv_volumes(pvs, storage_classes=ALL_CLASSES)
    assert pvs == CSI


# --- opting in and out, annotations --------------------------------------------------------------

def with_annotations(pv, **annotations):
    pv = copy.deepcopy(pv)
    pv["metadata"].setdefault("annotations", {}).update(
        dict(("bpfquota.nfs/" + key, value) for key, value in annotations.items()))
    return pv


def test_quota_false_opts_out_a_pv_of_a_listed_class_and_true_opts_in_another():
    assert one(with_annotations(CSI[0], quota="false")) == []
    assert len(one(with_annotations(CSI[0], quota="true"), storage_classes=[])) == 1


def test_mode_annotation_gives_the_mode_and_no_annotation_no_mode():
    assert one(with_annotations(CSI[0], mode="enforce"))[0]["mode"] == "enforce"
    assert "mode" not in one(CSI[0])[0]
    assert "inodes" not in one(CSI[0])[0]


def test_soft_limit_annotations_give_the_entry_its_soft_limits_and_grace():
    entry = one(with_annotations(CSI[0], soft="80%", **{"inodes-soft": "900", "grace": "3d"}))[0]
    assert (entry["soft"], entry["inodes_soft"], entry["grace"]) == ("80%", 900, 3 * 86400)
    assert one(with_annotations(CSI[0], soft="1Gi", **{"inodes-soft": "90%"}))[0]["soft"] == GI
    assert not set(one(CSI[0])[0]) & {"soft", "inodes_soft", "grace"}  # the role's defaults apply


def test_limit_annotation_replaces_an_unparsable_or_missing_capacity():
    pv = with_annotations(CSI[0], limit="20Gi")
    pv["spec"]["capacity"] = {"storage": "lots"}
    assert one(pv)[0]["limit"] == 20 * GI
    del pv["spec"]["capacity"]
    assert one(pv)[0]["limit"] == 20 * GI


@pytest.mark.parametrize("annotations, message", [
    ({"quota": "False"}, "annotation bpfquota.nfs/quota is 'False': write \"true\""),
    ({"quota": "no"}, "annotation bpfquota.nfs/quota is 'no'"),
    ({"quota": False}, "bpfquota.nfs/quota must be a string, not a boolean .*quote it"),
    ({"mode": "warn"}, "annotation bpfquota.nfs/mode is 'warn': write \"enforce\""),
    ({"limit": "20GB"}, "annotation bpfquota.nfs/limit: '20GB' has an unknown suffix 'GB'"),
    ({"limit": "0"}, "annotation bpfquota.nfs/limit: '0' is not a positive number of bytes"),
    ({"inodes": "1e5"}, "annotation bpfquota.nfs/inodes is '1e5': write a positive whole number"),
    ({"inodes": "0"}, "annotation bpfquota.nfs/inodes is '0'"),
    ({"soft": "lots"}, "annotation bpfquota.nfs/soft: 'lots' .* \\(or write a percentage of the limit"),
    ({"soft": "0%"}, "annotation bpfquota.nfs/soft: '0%'"),
    ({"soft": "1Ti"}, "annotation bpfquota.nfs/soft \\(1099511627776 bytes\\) is above the limit .*: lower it"),
    ({"inodes-soft": "-1"}, "annotation bpfquota.nfs/inodes-soft is '-1': write a positive whole number"),
    ({"grace": "a week"}, "annotation bpfquota.nfs/grace: 'a week' is not a duration: give whole seconds"),
    ({"enforce": "false"}, "annotation bpfquota.nfs/enforce is not one bpfquota knows: use bpfquota.nfs/quota"),
    ({"qouta": "false"}, "annotation bpfquota.nfs/qouta is not one bpfquota knows"),
])
def test_a_bad_annotation_is_an_error_naming_the_pv_and_the_fix(annotations, message):
    problems = problems_of([with_annotations(CSI[0], **annotations)])
    assert len(problems) == 1
    assert problems[0].startswith("PV pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64: ")
    assert re.search(message, problems[0]), problems[0]


def test_a_misspelt_opt_out_fails_even_where_the_pv_is_not_opted_in():
    assert problems_of([with_annotations(CSI[0], opt_out="true")], storage_classes=[])


def test_other_annotations_are_not_ours():
    pv = copy.deepcopy(CSI[0])
    pv["metadata"]["annotations"]["bpfquota.example/quota"] = "maybe"
    pv["metadata"]["annotations"]["bpfquota.nfs.other/limit"] = "x"
    assert len(one(pv)) == 1


# --- sources ---------------------------------------------------------------------------------------

def csi_pv(**attributes):
    pv = copy.deepcopy(CSI[0])
    pv["spec"]["csi"]["volumeAttributes"] = attributes
    return pv


def nfs_pv(server, path):
    pv = copy.deepcopy(SUBDIR[0])
    pv["spec"]["nfs"] = {"server": server, "path": path}
    return pv


@pytest.mark.parametrize("attributes, source", [
    ({"server": "nfs1", "share": "/"}, "nfs1:/"),
    ({"server": "nfs1", "share": "/export"}, "nfs1:/export"),
    ({"server": "nfs1", "share": "export/"}, "nfs1:/export"),                   # made absolute
    ({"server": "nfs1", "share": "/export//k8s/./", "subdir": "a//b/"}, "nfs1:/export/k8s/a/b"),
    ({"server": "nfs1", "share": "/export", "subdir": ""}, "nfs1:/export"),     # empty: no subdir
    ({"SERVER": "nfs1", "Share": "/export", "SubDir": "x"}, "nfs1:/export/x"),  # any letter case
    ({"server": "fd00::5", "share": "/export"}, "[fd00::5]:/export"),           # as getServerFromSource
    ({"server": "[fd00::5]", "share": "/export"}, "[fd00::5]:/export"),
    ({"server": "nfs1", "share": "/e", "subdir": "${pvc.metadata.namespace}/${pvc.metadata.name}-${pv.metadata.name}",
      "csi.storage.k8s.io/pvc/namespace": "ns", "CSI.storage.k8s.io/PVC/name": "claim",
      "csi.storage.k8s.io/pv/name": "pv-1"}, "nfs1:/e/ns/claim-pv-1"),
    # a placeholder without its attribute stays, as the driver leaves it
    ({"server": "nfs1", "share": "/e", "subdir": "${pvc.metadata.name}"}, "nfs1:/e/${pvc.metadata.name}"),
])
def test_csi_source(attributes, source):
    assert one(csi_pv(**attributes))[0]["source"] == source


@pytest.mark.parametrize("server, path, source", [
    ("192.168.1.20", "/srv/nfs/", "192.168.1.20:/srv/nfs"),
    ("nfs.example.com", "//srv//nfs", "nfs.example.com:/srv/nfs"),
    ("2001:db8::20", "/srv", "[2001:db8::20]:/srv"),
])
def test_nfs_source(server, path, source):
    assert one(nfs_pv(server, path))[0]["source"] == source


def test_other_csi_driver_names_when_given():
    pv = csi_pv(server="nfs1", share="/e")
    pv["spec"]["csi"]["driver"] = "nfs2.csi.k8s.io"
    assert one(pv) == []
    assert one(pv, csi_drivers=["nfs.csi.k8s.io", "nfs2.csi.k8s.io"])[0]["source"] == "nfs1:/e"


def test_two_pvs_with_one_source_is_an_error_naming_both():
    old_style = copy.deepcopy(CSI[2])  # share /pvc-1f2e...
    new_style = csi_pv(server="nfs-server.default.svc.cluster.local", share="/",
                       subdir="pvc-1f2e3d4c-5b6a-4789-8abc-def012345678")
    new_style["metadata"]["name"] = "pv-twin"
    assert problems_of([old_style, new_style]) == [
        "PVs pvc-1f2e3d4c-5b6a-4789-8abc-def012345678 and pv-twin both address "
        "nfs-server.default.svc.cluster.local:/pvc-1f2e3d4c-5b6a-4789-8abc-def012345678: one directory can have "
        "one limit; opt one of them out with the annotation bpfquota.nfs/quota: \"false\""]
    assert len(pv_volumes([old_style, with_annotations(new_style, quota="false")], storage_classes=ALL_CLASSES)) == 1


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("attributes, message", [
    ({"share": "/e"}, "spec.csi.volumeAttributes has no server: csi-driver-nfs can't mount it either"),
    ({"server": "nfs1"}, "has no share"),
    ({"server": "", "share": ""}, "has no server and no share"),
    ({"server": "nfs1", "share": "/e", "subDir": "a", "subdir": "b"}, "has subdir twice"),
    ({"server": "nfs1", "share": 5}, "volumeAttributes.share must be a string, not a number (5)"),
    ({"server": "nfs1", "share": "/e", "subdir": "../other"}, "path '/e/../other' contains '..'"),
    ({"server": "nfs1", "share": "/e", "subdir": "a\\..\\b"}, "contains '..'"),
])
def test_bad_csi_attributes(attributes, message):
    problems = problems_of([csi_pv(**attributes)])
    assert len(problems) == 1 and message in problems[0], problems


def test_missing_volume_attributes():
    pv = copy.deepcopy(CSI[0])
    del pv["spec"]["csi"]["volumeAttributes"]
    assert "spec.csi.volumeAttributes is missing" in problems_of([pv])[0]


@pytest.mark.parametrize("server, path, message", [
    ("", "/srv", "spec.nfs needs server"),
    ("nfs1", None, "spec.nfs needs path"),
    ("nfs1", "/srv/../etc", "contains '..'"),
])
def test_bad_nfs_volume(server, path, message):
    assert message in problems_of([nfs_pv(server, path)])[0]


@pytest.mark.parametrize("capacity, message", [
    (None, "spec.capacity.storage is missing: give the PV a capacity, or set the annotation bpfquota.nfs/limit"),
    ("10 Gi", "spec.capacity.storage '10 Gi' is not a Kubernetes quantity"),
    ("0", "spec.capacity.storage '0' is not a positive number of bytes"),
    ("9Ei", "more than the largest limit"),
])
def test_bad_capacity_names_the_pv_and_the_annotation_that_overrides_it(capacity, message):
    pv = copy.deepcopy(SUBDIR[0])
    pv["spec"]["capacity"] = {} if capacity is None else {"storage": capacity}
    problems = problems_of([pv])
    assert problems[0].startswith("PV pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a: ") and message in problems[0]
    assert "bpfquota.nfs/limit" in problems[0]


def test_a_bound_pv_without_claim_ref_is_an_error():
    pv = copy.deepcopy(SUBDIR[0])
    del pv["spec"]["claimRef"]["namespace"]
    assert "needs metadata.name and spec.claimRef's namespace and name" in problems_of([pv])[0]


def test_every_problem_of_every_pv_at_once():
    bad_capacity = with_annotations(SUBDIR[0], mode="strict")
    bad_capacity["spec"]["capacity"]["storage"] = "1GB"
    bad_limit = with_annotations(CSI[0], limit="x")
    bad_limit["spec"]["capacity"]["storage"] = "1GB"  # overridden: not reported
    problems = problems_of([42, bad_limit, bad_capacity])
    assert [problem.split(": ")[:2] for problem in problems] == [
        ["pvs[0] is a number (42), not a PersistentVolume object", "pass kubernetes.core.k8s_info's resources (kind"],
        ["PV pvc-4bcbf944-b6f7-4bd0-b50f-3c3dd00efc64", "annotation bpfquota.nfs/limit"],
        ["PV pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a", "annotation bpfquota.nfs/mode is 'strict'"],
        ["PV pvc-2c1ac3ff-91d3-43eb-8fc9-48516629f44a", "spec.capacity.storage '1GB' has an unknown suffix 'GB'"]]


def test_problems_of_pvs_left_out_are_not_reported():
    """A Released PV or another driver's PV with a bad capacity or annotation is none of our business."""
    released = with_annotations(CSI[4], mode="strict")
    released["spec"]["capacity"]["storage"] = "lots"
    other = with_annotations(OTHERS[1], quota="maybe")
    assert pv_volumes([released, other], storage_classes=ALL_CLASSES) == []


def test_an_object_of_another_kind_is_an_error():
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
           "spec": {"storageClassName": "nfs-csi"}}
    assert problems_of([pvc]) == [
        "PV data is a PersistentVolumeClaim, not a PersistentVolume: read the PVs with kubernetes.core.k8s_info "
        "and kind: PersistentVolume"]


def test_items_without_kind_are_taken_as_pvs():
    pv = copy.deepcopy(SUBDIR[0])
    del pv["kind"], pv["apiVersion"]
    assert len(one(pv)) == 1


@pytest.mark.parametrize("pvs, message", [
    ({"resources": [], "api_found": True}, "not the whole kubernetes.core.k8s_info result: pass its resources"),
    (None, "takes a list of PersistentVolume objects (kubernetes.core.k8s_info's resources), not null"),
    ("pvs", "not a string ('pvs')"),
])
def test_not_a_list_of_pvs(pvs, message):
    with pytest.raises(PvError) as caught:
        pv_volumes(pvs)
    assert message in str(caught.value)


@pytest.mark.parametrize("options, message", [
    ({"storage_classes": "nfs-csi"}, "storage_classes must be a list of names, not 'nfs-csi': write e.g. "
                                     "storage_classes=['nfs-csi']"),
    ({"storage_classes": [None]}, "storage_classes must be a list of names"),
    ({"csi_drivers": ""}, "csi_drivers must be a list of names"),
])
def test_bad_options(options, message):
    with pytest.raises(PvError) as caught:
        pv_volumes([], **options)
    assert message in str(caught.value)
