# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""quota: an in-memory QuotaMaps, real directories as volumes, a recorded mount table; the first
scan of new volumes really walks them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import identity
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import quota as quota_utils
from ansible_collections.bpfquota.nfs.plugins.module_utils import usage
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import volume_key
from ansible_collections.bpfquota.nfs.plugins.modules import quota

from .conftest import ModuleFail

GI = 1 << 30


@pytest.fixture
def vols(tmp_path):
    """Three volume directories; a holds 3 files of 1000 bytes, b one of 500."""
    paths = {}
    for name, files in (("a", 3), ("b", 1), ("c", 0)):
        path = tmp_path / "nfs" / ("pv-" + name)
        path.mkdir(parents=True)
        for i in range(files):
            (path / ("f%d" % i)).write_bytes(b"x" * (1000 if name == "a" else 500))
        paths[name] = str(path)
    return paths


def applied(maps):
    """{path: (limit_bytes, limit_files, mode)} as the maps hold them."""
    return dict((path, (v.limit_bytes, v.limit_files, v.mode))
                for path, (vol_id, v) in quota_utils.applied_volumes(maps).items())


def ids(maps):
    return dict((path, vol_id) for path, (vol_id, v) in quota_utils.applied_volumes(maps).items())


def routes(maps):
    return dict((key, vol_id) for key, vol_id in maps.keys().items() if vol_id != layout.PROBE_VOLUME)


def apply(run_module, fake_maps, args, **kwargs):
    """run the module; assert a check-mode run first predicts exactly and writes nothing."""
    before = (applied(fake_maps), routes(fake_maps), len(fake_maps.writes))
    predicted = run_module(quota, args, check=True, diff=True)
    assert (applied(fake_maps), routes(fake_maps), len(fake_maps.writes)) == before
    result = run_module(quota, args, diff=True, **kwargs)
    for key in ("changed", "added", "updated", "removed", "routes_changed", "diff"):
        assert predicted[key] == result[key], key
    assert fake_maps.unlocked_writes == []
    return result


def test_add_volumes_then_nothing_changes(run_module, fake_maps, mounts, vols, lock_path):
    args = {"volumes": [{"path": vols["a"], "limit": "1Gi"},
                        {"path": vols["b"], "limit": 4096, "inodes": 10, "mode": "audit"}]}
    check = run_module(quota, args, check=True, diff=True)
    assert check["changed"] is True
    assert (check["added"], check["updated"], check["removed"]) == ([vols["a"], vols["b"]], [], [])
    assert check["diff"] == {
        "before": {"volumes": []},
        "after": {"volumes": [{"path": vols["a"], "limit": GI, "mode": "enforce"},
                              {"path": vols["b"], "limit": 4096, "inodes": 10, "mode": "audit"}]}}
    assert fake_maps.writes == []
    assert not os.path.exists(lock_path)  # check mode doesn't even create the lock file

    result = run_module(quota, args, diff=True)
    assert {k: result[k] for k in ("changed", "added", "updated", "removed", "diff")} == \
        {k: check[k] for k in ("changed", "added", "updated", "removed", "diff")}
    assert result["routes_changed"] is True
    assert applied(fake_maps) == {vols["a"]: (GI, 0, "enforce"), vols["b"]: (4096, 10, "audit")}
    assert routes(fake_maps) == {volume_key(vols["a"]): 1, volume_key(vols["b"]): 2}
    assert fake_maps.unlocked_writes == []
    # the first scan counted what was already there
    for name, (size, files) in (("a", (3000, 3)), ("b", (500, 1))):
        vol_id = ids(fake_maps)[vols[name]]
        used_bytes, used_files = usage.used(fake_maps.vol_cfg(vol_id), fake_maps.vol_stats(vol_id))
        assert used_bytes == size
        assert used_files == files

    for check_mode in (True, False):
        again = run_module(quota, args, check=check_mode, diff=True)
        assert again["changed"] is False
        assert (again["added"], again["updated"], again["removed"], again["routes_changed"]) == ([], [], [], False)
        assert again["diff"]["before"] == again["diff"]["after"] == check["diff"]["after"]
    assert result["warnings"] == again["warnings"] == []


def test_limit_change_applies_in_place(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["b"], "limit": "1Gi"}]})
    vol_id = ids(fake_maps)[vols["a"]]
    fake_maps.kernel_counts(vol_id, delta_bytes=700, delta_files=1)
    base = fake_maps.vol_cfg(vol_id)

    args = {"volumes": [{"path": vols["a"], "limit": "2Gi", "inodes": "100"}, {"path": vols["b"], "limit": "1Gi"}],
            "mode": "audit"}
    result = apply(run_module, fake_maps, args)
    assert result["changed"] is True
    assert (result["added"], result["updated"], result["removed"]) == ([], [vols["a"], vols["b"]], [])
    assert result["routes_changed"] is False
    assert result["diff"]["before"]["volumes"][0] == {"path": vols["a"], "limit": GI, "mode": "enforce"}
    assert result["diff"]["after"]["volumes"][0] == {"path": vols["a"], "limit": 2 * GI, "inodes": 100, "mode": "audit"}
    assert ids(fake_maps)[vols["a"]] == vol_id
    cfg = fake_maps.vol_cfg(vol_id)
    assert (cfg.base_bytes, cfg.base_files, cfg.epoch) == (base.base_bytes, base.base_files, base.epoch)
    assert usage.used(cfg, fake_maps.vol_stats(vol_id))[0] == 3700  # usage kept, no rescan
    assert applied(fake_maps)[vols["a"]] == (2 * GI, 100, "audit")
    assert run_module(quota, args)["changed"] is False


def test_volume_left_out_is_removed(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["b"], "limit": "1Gi"}]})
    result = apply(run_module, fake_maps, {"volumes": [{"path": vols["a"], "limit": "1Gi"},
                                                       {"path": vols["c"], "limit": "5Gi"}]})
    assert (result["added"], result["updated"], result["removed"]) == ([vols["c"]], [], [vols["b"]])
    assert sorted(applied(fake_maps)) == [vols["a"], vols["c"]]
    assert routes(fake_maps) == {volume_key(vols["a"]): ids(fake_maps)[vols["a"]],
                                 volume_key(vols["c"]): ids(fake_maps)[vols["c"]]}


def test_empty_list_removes_every_volume(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    result = apply(run_module, fake_maps, {"volumes": []})
    assert (result["changed"], result["removed"]) == (True, [vols["a"]])
    assert result["diff"]["after"] == {"volumes": []}
    assert applied(fake_maps) == {} and routes(fake_maps) == {}


def test_absent_removes_exactly_the_listed_volumes(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": v, "limit": "1Gi"} for v in (vols["a"], vols["b"], vols["c"])]})
    result = apply(run_module, fake_maps, {"state": "absent", "volumes": [{"path": vols["b"]},
                                                                          {"path": "/mnt/never/added"}]})
    assert (result["changed"], result["added"], result["updated"], result["removed"]) == (True, [], [], [vols["b"]])
    assert [v["path"] for v in result["diff"]["after"]["volumes"]] == [vols["a"], vols["c"]]
    assert sorted(applied(fake_maps)) == [vols["a"], vols["c"]]
    assert run_module(quota, {"state": "absent", "volumes": [{"path": vols["b"]}]})["changed"] is False


def test_absent_works_when_the_directory_is_gone(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["c"], "limit": "1Gi"}]})
    os.rmdir(vols["c"])
    result = apply(run_module, fake_maps, {"state": "absent", "volumes": [{"path": vols["c"] + "/"}]})
    assert result["removed"] == [vols["c"]]


def test_absent_without_a_list_removes_all(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["b"], "limit": "1Gi"}]})
    result = apply(run_module, fake_maps, {"state": "absent"})
    assert result["removed"] == [vols["a"], vols["b"]]
    assert applied(fake_maps) == {} and routes(fake_maps) == {}
    assert run_module(quota, {"state": "absent"})["changed"] is False


def test_absent_with_a_volumes_file(run_module, fake_maps, mounts, vols, tmp_path):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["b"], "limit": "1Gi"}]})
    src = tmp_path / "volumes.json"
    src.write_text(json.dumps({"volumes": [{"path": vols["a"]}]}))
    result = apply(run_module, fake_maps, {"state": "absent", "src": str(src)})
    assert result["removed"] == [vols["a"]]
    assert sorted(applied(fake_maps)) == [vols["b"]]


def test_volumes_file(run_module, fake_maps, mounts, vols, tmp_path):
    src = tmp_path / "volumes.yaml"
    src.write_text("# managed\nmode: audit\nvolumes:\n"
                   "  - path: %s\n    limit: 50Gi\n"
                   "  - path: %s\n    limit: 1Gi\n    inodes: 1000\n    mode: enforce\n" % (vols["a"], vols["b"]))
    result = apply(run_module, fake_maps, {"src": str(src), "mode": "enforce"})
    assert result["added"] == [vols["a"], vols["b"]]
    # entry mode > file's top-level mode > the module's mode
    assert applied(fake_maps) == {vols["a"]: (50 * GI, 0, "audit"), vols["b"]: (GI, 1000, "enforce")}
    assert run_module(quota, {"src": str(src)})["changed"] is False


def test_module_mode_is_the_default_of_entries(run_module, fake_maps, mounts, vols):
    apply(run_module, fake_maps, {"volumes": [{"path": vols["a"], "limit": "1Gi"}], "mode": "audit"})
    assert applied(fake_maps) == {vols["a"]: (GI, 0, "audit")}


def test_routes_changed_alone(run_module, fake_maps, mounts, vols):
    """A route lost (say the maps were edited by hand, or a remount moved the directory) is restored."""
    args = {"volumes": [{"path": vols["a"], "limit": "1Gi"}]}
    run_module(quota, args)
    fake_maps.delete_key(volume_key(vols["a"]))
    del fake_maps.unlocked_writes[:]  # that one was the test's
    result = apply(run_module, fake_maps, args)
    assert (result["changed"], result["routes_changed"]) == (True, True)
    assert (result["added"], result["updated"], result["removed"]) == ([], [], [])
    assert routes(fake_maps) == {volume_key(vols["a"]): 1}
    assert run_module(quota, args)["changed"] is False


@pytest.mark.parametrize("state", ["present", "absent"])
def test_not_loaded(run_module, not_loaded, mounts, vols, state):
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"state": state, "volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    assert failed.value.result["msg"] == (
        "the bpfquota enforcer is not loaded (no maps pinned under %s): load it first with "
        "bpfquota.nfs.bpf_program (state: present)" % layout.PIN_DIR)


@pytest.mark.parametrize("check", [True, False])
def test_every_problem_in_one_message_nothing_written(run_module, fake_maps, mounts, vols, tmp_path, check):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    writes = len(fake_maps.writes)
    afile = tmp_path / "a-file"
    afile.write_text("")
    args = {"volumes": [
        {"path": vols["a"], "limit": "2 gigs"},
        {"path": vols["b"] + "/", "limit": "1Gi"},
        {"path": str(tmp_path / "missing"), "limit": "1Gi"},
        {"path": str(afile), "limit": "1Gi"},
        {"path": vols["c"]},
        {"path": vols["c"], "limit": "1Gi", "inodes": -1},
    ]}
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, args, check=check)
    msg = failed.value.result["msg"]
    lines = msg.split("\n")
    assert lines[0] == "invalid volumes, nothing was changed:"
    problems = failed.value.result["problems"]
    assert lines[1:] == problems
    expected_starts = [
        "volumes[0] (%s): limit: " % vols["a"],
        "volumes[1] (%s/): path is not normalized: write it as %s" % (vols["b"], vols["b"]),
        "volumes[2] (%s): path does not exist" % (tmp_path / "missing"),
        "volumes[3] (%s): path is not a directory (it is a regular file)" % afile,
        "volumes[4] (%s): missing limit" % vols["c"],
        "volumes[5] (%s): inodes must be a positive whole number" % vols["c"],
    ]
    for start in expected_starts:
        assert any(p.startswith(start) for p in problems), start
    assert any("are the same directory" in p or "duplicate" in p for p in problems)
    assert len(fake_maps.writes) == writes
    assert applied(fake_maps) == {vols["a"]: (GI, 0, "enforce")}


def test_validation_comes_before_the_maps(run_module, not_loaded, mounts, vols):
    """An invalid list is reported as such even on a host where nothing is loaded."""
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"volumes": [{"path": vols["a"], "limit": "lots"}]})
    assert failed.value.result["msg"].startswith("invalid volumes, nothing was changed:\nvolumes[0] (%s): limit: "
                                                 % vols["a"])


def test_nested_volumes_refused(run_module, fake_maps, mounts, vols):
    inner = os.path.join(vols["a"], "inner")
    os.mkdir(inner)
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": inner, "limit": "1Gi"}]})
    assert "inside" in failed.value.result["msg"]
    assert fake_maps.writes == []


def test_broken_volumes_file(run_module, fake_maps, mounts, tmp_path):
    src = tmp_path / "volumes.yaml"
    src.write_text("volumes:\n  - path: /x\n   limit: 1Gi\n")
    for state in ("present", "absent"):
        with pytest.raises(ModuleFail) as failed:
            run_module(quota, {"src": str(src), "state": state})
        assert failed.value.result["msg"].startswith(
            "invalid volumes, nothing was changed:\n%s: YAML syntax error at line " % src)
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"src": missing})
    assert failed.value.result["msg"] == (
        "invalid volumes, nothing was changed:\n%s: file does not exist: create it with a top-level "
        "'volumes:' list ('volumes: []' for no volumes)" % missing)
    assert fake_maps.writes == []


def test_absent_volumes_file_needs_paths(run_module, fake_maps, mounts, tmp_path):
    src = tmp_path / "volumes.json"
    src.write_text(json.dumps({"volumes": [{"limit": "1Gi"}, "x"]}))
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"src": str(src), "state": "absent"})
    assert failed.value.result["msg"] == (
        "invalid volumes, nothing was changed:\n%s: volumes[0]: each entry needs an absolute path or a source server:/export/path\n"
        "%s: volumes[1]: each entry needs an absolute path or a source server:/export/path" % (src, src))


def test_argument_errors(run_module, fake_maps, mounts, vols, tmp_path):
    cases = [
        ({}, "state is present but any of the following are missing: volumes, src"),
        ({"volumes": [], "src": str(tmp_path / "v.yaml")}, "parameters are mutually exclusive: volumes|src"),
        ({"volumes": [{"limit": "1Gi"}]}, "one of the following is required: path, source found in volumes"),
        ({"volumes": [{"path": vols["a"], "limit": "1Gi", "mode": "warn"}]},
         "value of mode must be one of: enforce, audit, got: warn found in volumes"),
        ({"volumes": [], "mode": "dry-run"}, "value of mode must be one of: enforce, audit, got: dry-run"),
        ({"volumes": [], "scan_timeout": 0}, "scan_timeout must be a positive number of seconds, not 0.0"),
        ({"src": str(tmp_path / "v.yaml"), "dest": str(tmp_path / "w.yaml")},
         "missing parameter(s) required by 'dest': volumes"),
        ({"state": "absent", "volumes": [], "dest": str(tmp_path / "w.yaml")},
         "dest keeps the volumes applied with state=present; with state=absent, leave it out"),
    ]
    for args, msg in cases:
        with pytest.raises(ModuleFail) as failed:
            run_module(quota, args)
        assert failed.value.result["msg"] == msg
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi", "size": 1}]})
    assert failed.value.result["msg"].startswith("Unsupported parameters")
    assert "volumes.size" in failed.value.result["msg"]
    assert fake_maps.writes == []


def test_first_scan_that_fails_warns_and_keeps_the_volume(run_module, fake_maps, mounts, vols):
    result = run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}], "scan_timeout": 1e-9})
    assert result["changed"] is True
    assert result["added"] == [vols["a"]]
    assert result["warnings"] == [
        "%s: the scan took longer than its 1e-09s budget; it refuses growth until a scan succeeds (the agent retries)"
        % vols["a"]]
    assert applied(fake_maps) == {vols["a"]: (GI, 0, "enforce")}


def test_writes_happen_under_the_lock(run_module, fake_maps, mounts, vols):
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    run_module(quota, {"state": "absent"})
    assert fake_maps.writes and fake_maps.unlocked_writes == []
    assert fake_maps.closed == fake_maps.opened == 3  # the first run peeked at the sync stamp too


def test_never_reloads_the_program(run_module, fake_maps, mounts, vols, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import loader

    def forbidden(*args, **kwargs):
        raise AssertionError("the quota module must not load or unload programs")

    for name in ("load", "unload", "trial_load"):
        monkeypatch.setattr(loader, name, forbidden)
    cfg = fake_maps.config()
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "2Gi"}]})
    assert fake_maps.config().obj_sha256 == cfg.obj_sha256


def test_a_re_run_on_the_same_paths_and_mounts_reuses_the_routes(run_module, fake_maps, mounts, vols, monkeypatch):
    args = {"volumes": [{"path": vols["a"], "limit": "1Gi"}, {"path": vols["b"], "limit": "1Gi"}]}
    run_module(quota, args)
    stamp, keys = fake_maps.sync_stamp(), routes(fake_maps)
    assert stamp

    def no_examination(*args, **kwargs):
        raise AssertionError("the routes were resolved again")
    with monkeypatch.context() as patch:
        patch.setattr(identity, "identities", no_examination)
        result = apply(run_module, fake_maps, {"volumes": [{"path": vols["b"], "limit": "1Gi"},
                                                           {"path": vols["a"], "limit": "2Gi"}]})
    assert (result["changed"], result["updated"], result["routes_changed"]) == (True, [vols["a"]], False)
    assert (fake_maps.sync_stamp().split()[0], routes(fake_maps)) == (stamp.split()[0], keys)
    again = run_module(quota, {"volumes": [{"path": vols["b"], "limit": "1Gi"}, {"path": vols["a"], "limit": "2Gi"}]},
                       diff=True)
    assert (again["changed"], again["updated"]) == (False, [])
    assert again["diff"]["before"] == again["diff"]["after"] == result["diff"]["after"]

    text = enforcement.read_mountinfo_text()
    monkeypatch.setattr(enforcement, "read_mountinfo_text", lambda: text + "99 27 0:99 / /mnt/new rw - tmpfs x rw\n")
    result = apply(run_module, fake_maps, {"volumes": [{"path": vols["b"], "limit": "1Gi"},
                                                       {"path": vols["a"], "limit": "2Gi"}]})
    assert (result["changed"], result["routes_changed"]) == (False, False)
    assert fake_maps.sync_stamp() not in (None, stamp)  # resolved on the new mount table, and stamped


# --- dest: the module keeps the volumes in the file bpfquota apply reads (the role's volumes.yaml) -----

def test_dest_keeps_the_volumes_in_a_file_that_applies_the_same(run_module, fake_maps, mounts, vols, tmp_path):
    dest = tmp_path / "etc" / "volumes.yaml"
    dest.parent.mkdir()
    args = {"volumes": [{"path": vols["b"], "limit": "8Mi", "inodes": 10},
                        {"path": vols["a"], "limit": 4096, "mode": "audit", "unknown_usage": "allow"}],
            "mode": "enforce", "unknown_usage": "refuse", "dest": str(dest)}
    check = run_module(quota, args, check=True, diff=True)
    assert check["changed"] is True and not dest.exists()  # predicted, not written
    maps_diff, file_diff = check["diff"]
    assert maps_diff["after"]["volumes"][0]["path"] == vols["a"]
    assert file_diff["before"] == "" and file_diff["before_header"] == file_diff["after_header"] == str(dest)
    result = apply(run_module, fake_maps, args)  # check mode predicted it exactly
    assert result["changed"] is True and result["diff"] == check["diff"]
    text = dest.read_text()
    assert text == file_diff["after"] == (
        "# The volumes bpfquota enforces on this host, as bpfquota.nfs.quota applied them last (its dest).\n"
        "# bpfquota apply reads it (at boot: bpfquota-apply.service); the module's next run rewrites it.\n"
        "mode: \"enforce\"\n"
        "unknown_usage: \"refuse\"\n"
        "grace: \"7d\"\n"
        "volumes:\n"
        "  - path: \"%s\"\n"
        "    limit: \"8Mi\"\n"
        "    inodes: 10\n"
        "  - path: \"%s\"\n"
        "    limit: 4096\n"
        "    mode: \"audit\"\n"
        "    unknown_usage: \"allow\"\n" % (vols["b"], vols["a"]))
    assert os.stat(str(dest)).st_mode & 0o7777 == 0o644
    for check_mode in (True, False):  # idempotent, file and maps
        again = run_module(quota, args, check=check_mode, diff=True)
        assert again["changed"] is False
        assert again["diff"][1]["before"] == again["diff"][1]["after"] == text
    assert dest.read_text() == text
    # what bpfquota apply reads from the file is what the module applied
    assert run_module(quota, {"src": str(dest)})["changed"] is False
    assert applied(fake_maps) == {vols["a"]: (4096, 0, "audit"), vols["b"]: (8 << 20, 10, "enforce")}


def test_dest_alone_differing_is_a_change(run_module, fake_maps, mounts, vols, tmp_path):
    """The maps hold the volumes already (the stamp matches): the file is still made to match."""
    dest = tmp_path / "volumes.yaml"
    args = {"volumes": [{"path": vols["a"], "limit": "1Gi"}]}
    run_module(quota, args)
    dest.write_text("# templated by an older version\nvolumes:\n- path: %s\n  limit: 1Gi\n" % vols["a"])
    os.chmod(str(dest), 0o600)
    writes = len(fake_maps.writes)
    check = run_module(quota, dict(args, dest=str(dest)), check=True)
    assert check["changed"] is True and "older version" in dest.read_text()
    result = run_module(quota, dict(args, dest=str(dest)), diff=True)
    assert result["changed"] is True and (result["added"], result["updated"], result["removed"]) == ([], [], [])
    assert result["diff"][1]["before"].startswith("# templated by an older version")
    assert len(fake_maps.writes) == writes
    assert os.stat(str(dest)).st_mode & 0o7777 == 0o644
    assert run_module(quota, dict(args, dest=str(dest)))["changed"] is False
    os.chmod(str(dest), 0o600)  # a mode that differs is a change too
    assert run_module(quota, dict(args, dest=str(dest)))["changed"] is True
    assert os.stat(str(dest)).st_mode & 0o7777 == 0o644


def test_dest_of_no_volumes(run_module, fake_maps, mounts, vols, tmp_path):
    dest = tmp_path / "volumes.yaml"
    result = run_module(quota, {"volumes": [], "dest": str(dest), "mode": "audit"})
    assert result["changed"] is True and dest.read_text().endswith('mode: "audit"\nunknown_usage: "refuse"\ngrace: "7d"\nvolumes: []\n')
    assert run_module(quota, {"src": str(dest)})["changed"] is False


@pytest.mark.parametrize("check", [True, False])
def test_dest_is_not_written_when_the_volumes_are_refused(run_module, fake_maps, mounts, vols, tmp_path, check):
    dest = tmp_path / "volumes.yaml"
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1 gig"}], "dest": str(dest)}, check=check)
    assert failed.value.result["msg"].startswith("invalid volumes, nothing was changed")
    assert not dest.exists()


def test_dest_in_a_missing_directory_is_named(run_module, fake_maps, mounts, vols, tmp_path):
    dest = tmp_path / "nowhere" / "volumes.yaml"
    args = {"volumes": [{"path": vols["a"], "limit": "1Gi"}], "dest": str(dest)}
    assert run_module(quota, args, check=True)["changed"] is True
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, args)
    assert failed.value.result["msg"] == (
        "the volumes were applied, but %s can't be written: directory %s does not exist: create it first "
        "(ansible.builtin.file state=directory)" % (dest, dest.parent))
    assert failed.value.result["added"] == [vols["a"]]


def test_a_re_run_that_reuses_the_keys_keeps_the_placed_nfs_mount_roots(run_module, fake_maps, mounts, vols):
    # The boot's apply (or any other sync of the same paths) leaves the keys in the maps: with
    # them the placements of NFS mount roots (ROOT_IN values), which a plan from the maps keeps.
    run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Gi"}]})
    stamp = fake_maps.sync_stamp()
    fake_maps.set_key((layout.NFS_FS_BASE + 1, 77), layout.ROOT_IN | 1)  # inside volume 1
    fake_maps.set_key((layout.NFS_FS_BASE + 1, 78), layout.ROOT_IN)      # in no volume
    fake_maps.set_sync_stamp(stamp)
    result = run_module(quota, {"volumes": [{"path": vols["a"], "limit": "2Gi"}]})
    assert (result["changed"], result["updated"], result["routes_changed"]) == (True, [vols["a"]], False)
    again = run_module(quota, {"volumes": [{"path": vols["a"], "limit": "2Gi"}]})
    assert (again["changed"], again["routes_changed"]) == (False, False)


def test_soft_limits_apply_and_the_agents_flag_is_no_change(run_module, fake_maps, mounts, vols):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import grace
    args = {"volumes": [{"path": vols["a"], "limit": "1Mi", "soft": "50%", "grace": "1h"},
                        {"path": vols["b"], "limit": "1Mi", "inodes": 10, "inodes_soft": 5}], "grace": "2d"}
    assert run_module(quota, args)["changed"] is True
    volumes = dict((path, v) for path, (vol_id, v) in quota_utils.applied_volumes(fake_maps).items())
    a = volumes[vols["a"]]
    assert (a.soft_bytes, a.soft_files, a.grace_seconds) == (512 * 1024, 0, 3600)
    b = volumes[vols["b"]]
    assert (b.soft_bytes, b.soft_files, b.grace_seconds) == (0, 5, 2 * 86400)
    ids = dict((path, vol_id) for path, (vol_id, v) in quota_utils.applied_volumes(fake_maps).items())
    grace.sync_flags(fake_maps, ids, {vols["a"]: layout.SOFT_EXPIRED})  # the agent: grace expired
    writes = len(fake_maps.writes)
    for check in (True, False):
        assert run_module(quota, args, check=check)["changed"] is False
    assert len(fake_maps.writes) == writes
    result = run_module(quota, dict(args, grace="3d"), check=True)
    assert (result["changed"], result["updated"]) == (True, [vols["b"]])
    assert fake_maps.vol_cfg(ids[vols["b"]]).grace_seconds == 2 * 86400  # check mode changes nothing


def test_a_bad_soft_limit_is_one_error_and_nothing_is_applied(run_module, fake_maps, mounts, vols):
    with pytest.raises(ModuleFail) as failed:
        run_module(quota, {"volumes": [{"path": vols["a"], "limit": "1Mi", "soft": "2Mi", "grace": "soon"}]})
    assert failed.value.result["msg"].splitlines() == [
        "invalid volumes, nothing was changed:",
        "volumes[0] (%s): soft (2097152 bytes) is above the limit (1048576 bytes): the soft limit must be at most the "
        "limit; lower soft or raise limit" % vols["a"],
        "volumes[0] (%s): grace 'soon' is not a duration: give whole seconds or a duration such as 7d, 12h, 30m, 45s "
        "(1d12h combines them)" % vols["a"]]
    assert applied(fake_maps) == {}
