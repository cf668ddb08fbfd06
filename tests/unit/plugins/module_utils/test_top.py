# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpfquota top's pure part (counters to rows, samples, text, JSON) and its tool checks; the
tracing itself runs in the VM (tests/vm/test_top.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement, layout, top
from ansible_collections.bpfquota.nfs.plugins.module_utils.top import Counter

MI = 1 << 20
POD = "0f6ad2c1-97f3-4c43-9a3d-2d52a1b3c4e5"


def counter(written, refusals=0, comm="dd", uid=0, cgroup_id=7, writes=None):
    return Counter(written, writes if writes is not None else written // MI, refusals, uid, cgroup_id, comm)


def test_activity_is_what_changed_between_two_readings():
    before = {(1, 100): counter(4 * MI), (1, 200): counter(2 * MI, comm="cp")}
    after = {(1, 100): counter(10 * MI), (1, 200): counter(2 * MI, comm="cp"), (2, 300): counter(0, refusals=3)}
    rows = top.activity(before, after, 2.0)
    assert rows == [
        {"vol_id": 1, "pid": 100, "comm": "dd", "uid": 0, "cgroup_id": 7, "bytes": 6 * MI, "writes": 6,
         "refusals": 0, "bytes_per_second": 3 * MI},
        {"vol_id": 2, "pid": 300, "comm": "dd", "uid": 0, "cgroup_id": 7, "bytes": 0, "writes": 0,
         "refusals": 3, "bytes_per_second": 0},
    ]  # pid 200 was idle


def test_a_counter_that_went_back_was_evicted_and_counts_anew():
    rows = top.activity({(1, 100): counter(10 * MI)}, {(1, 100): counter(MI)}, 1.0)
    assert [(row["bytes"], row["bytes_per_second"]) for row in rows] == [(MI, MI)]


VOLUMES = {
    1: {"path": "/mnt/nfs4/pvs/pv-web", "labels": {"pv": "pv-web", "namespace": "shop"}, "used_bytes": 8 * MI,
        "limit_bytes": 8 * MI},
    2: {"path": "/mnt/nfs4/pvs/pv-db", "labels": {}, "used_bytes": MI, "limit_bytes": 64 * MI},
}
CGROUPS = {7: "/system.slice/ssh.service",
           9: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-ab12.scope"
           % POD.replace("-", "_")}


def rows():
    return top.activity({}, {
        (1, 100): counter(2 * MI, comm="writer-a", uid=1000),
        (1, 101): counter(6 * MI, refusals=2, comm="writer-b", uid=1001, cgroup_id=9),
        (2, 102): counter(MI, comm="postgres", uid=999, cgroup_id=11),
        (top.UNKNOWN_VOLUME, 103): counter(0, refusals=1, comm="lost"),
        (layout.PROBE_VOLUME, 104): counter(1, comm="bpfquota"),
    }, 2.0)


def test_a_sample_groups_writers_by_volume_busiest_first():
    result = top.sample(rows(), VOLUMES, CGROUPS, 2.0)
    assert [(v["volume"], v["vol_id"], v["bytes_per_second"], v["refusals"]) for v in result["volumes"]] == [
        ("/mnt/nfs4/pvs/pv-web", 1, 4 * MI, 2),
        ("/mnt/nfs4/pvs/pv-db", 2, MI // 2, 0),
        (None, None, 0, 1),
    ]  # the probe volume is the loader's own and never shown
    web = result["volumes"][0]
    assert web["labels"] == {"pv": "pv-web", "namespace": "shop"}
    assert (web["used_bytes"], web["limit_bytes"], web["bytes"]) == (8 * MI, 8 * MI, 8 * MI)
    assert [(w["pid"], w["comm"], w["uid"], w["bytes_per_second"], w["refusals"], w["cgroup"], w["pod_uid"])
            for w in web["writers"]] == [
        (101, "writer-b", 1001, 3 * MI, 2, CGROUPS[9], POD),
        (100, "writer-a", 1000, MI, 0, CGROUPS[7], None),
    ]
    assert result["volumes"][1]["writers"][0]["cgroup"] is None  # its cgroup wasn't found


def test_the_screen():
    text = top.format_sample(top.sample(rows(), VOLUMES, CGROUPS, 2.0), "12:00:01")
    assert text == "\n".join([
        "bpfquota top 12:00:01 - every 2s: 3 volumes written, 4 writers",
        "",
        "/mnt/nfs4/pvs/pv-web  4M/s  refused 2  used 8M of 8M  namespace=shop,pv=pv-web",
        "  PID   UID  COMM      WRITE/s  WRITES  REFUSED  CGROUP",
        "  101  1001  writer-b     3M/s       6        2  pod " + POD,
        "  100  1000  writer-a     1M/s       2        0  /system.slice/ssh.service",
        "",
        "/mnt/nfs4/pvs/pv-db  512K/s  refused 0  used 1M of 64M",
        "  PID  UID  COMM      WRITE/s  WRITES  REFUSED  CGROUP",
        "  102  999  postgres   512K/s       1        0  cgroup 11",
        "",
        "(volume unknown: NFS mount not placed yet, or deeper than 64 levels)  0/s  refused 1",
        "  PID  UID  COMM  WRITE/s  WRITES  REFUSED  CGROUP",
        "  103    0  lost      0/s       0        1  /system.slice/ssh.service",
    ])


def test_an_idle_screen_says_so():
    assert top.format_sample(top.sample([], VOLUMES, {}, 1.5)) == "\n".join([
        "bpfquota top - every 1.5s: 0 volumes written, 0 writers", "", "(nothing written into a volume)"])


def test_json_is_the_sample():
    result = top.sample(rows(), VOLUMES, CGROUPS, 2.0)
    assert json.loads(top.sample_json(result)) == json.loads(json.dumps(result))


@pytest.mark.parametrize("path, uid", [
    (CGROUPS[9], POD),
    ("/kubepods/besteffort/pod%s/0123abcd" % POD, POD),  # cgroupfs driver
    ("/kubepods.slice/kubepods-pod%s.slice" % POD.replace("-", "_"), POD),  # guaranteed QoS
    ("/system.slice/podman-1234.scope", None),
    ("/user.slice/user-1000.slice", None),
    (None, None),
])
def test_pod_uid(path, uid):
    assert top.pod_uid(path) == uid


def test_cgroup_paths_are_found_by_directory_inode(tmp_path):
    (tmp_path / "system.slice" / "ssh.service").mkdir(parents=True)
    (tmp_path / "user.slice").mkdir()
    wanted = {os.stat(str(tmp_path)).st_ino: "/",
              os.stat(str(tmp_path / "system.slice" / "ssh.service")).st_ino: "/system.slice/ssh.service"}
    assert top.cgroup_paths(list(wanted) + [1], str(tmp_path)) == wanted
    assert top.cgroup_paths([], str(tmp_path)) == {}


def test_the_bpf_text_carries_the_enforcers_constants_and_pins():
    text = top.bpf_text("/sys/fs/bpf/x")
    assert not re.search(r"@[A-Z_]+@", text)
    assert '"/sys/fs/bpf/x/vol_keys"' in text and '"/sys/fs/bpf/x/nfs_groups"' in text
    assert "#define NFS_FS_BASE 0x100000000ULL" in text
    assert "#define ROOT_IN 0x80000000u" in text
    assert "depth < %d;" % top.WALK_DEPTH in text
    # Only lookups in the enforcer's maps: top never writes them.
    for name in top.PINNED_MAPS:
        assert not re.search(r"\b%s\.(update|insert|delete|lookup_or_try_init)\(" % name, text)


def missing_import(name):
    raise ImportError("No module named %r" % name)


def test_missing_bcc_and_headers_name_their_packages():
    with pytest.raises(enforcement.BpfquotaError) as info:
        top.require_tools("6.1.0-50-amd64", import_module=missing_import, isdir=lambda path: False)
    assert info.value.kind == enforcement.MISSING_TOOL
    message = str(info.value)
    assert "python3-bpfcc and linux-headers-6.1.0-50-amd64 missing" in message
    assert "apt-get install python3-bpfcc linux-headers-6.1.0-50-amd64" in message
    assert "bpfquota_install_tools: true" in message


def test_missing_headers_alone():
    checked = []
    with pytest.raises(enforcement.BpfquotaError) as info:
        top.require_tools("6.1.0-50-amd64", import_module=lambda name: object(),
                          isdir=checked.append)
    assert checked == ["/lib/modules/6.1.0-50-amd64/build"]
    assert "linux-headers-6.1.0-50-amd64 missing" in str(info.value) and "python3-bpfcc" not in str(info.value)


def test_with_both_there_bcc_is_returned():
    bcc = object()
    assert top.require_tools("6.1.0", import_module=lambda name: bcc, isdir=lambda path: True) is bcc


def test_missing_pins():
    pinned = set(["/p/vol_keys", "/p/config"])
    assert top.missing_pins("/p", exists=lambda path: path in pinned) == ["vol_devs", "nfs_groups"]


def test_only_the_pins_bcc_made_are_removed(tmp_path, monkeypatch):
    # A pin here is a file holding its map's id.
    for name, map_id in (("vol_keys", 11), ("config", 99), ("nfs_groups", 98)):
        (tmp_path / name).write_text(str(map_id))
    monkeypatch.setattr(top.libbpf, "obj_get", lambda path: os.open(path, os.O_RDONLY))
    monkeypatch.setattr(top.libbpf, "map_info", lambda fd: {"id": int(os.pread(fd, 16, 0))})
    expected = {"vol_keys": 11, "config": 12, "nfs_groups": 13, "vol_devs": 14}
    opened = {"vol_keys": 11, "config": 99, "nfs_groups": 97, "vol_devs": 96}
    top.remove_own_pins(str(tmp_path), expected, opened)
    # config was BCC's own (99): removed; nfs_groups is pinned to another map than BCC's: kept;
    # vol_keys is the enforcer's; vol_devs is not pinned at all
    assert sorted(os.listdir(str(tmp_path))) == ["nfs_groups", "vol_keys"]
