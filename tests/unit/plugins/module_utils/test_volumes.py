# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import stat as stat_module
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import volumes as volumes_module
from ansible_collections.bpfquota.nfs.plugins.module_utils.volumes import (
    Volume, VolumeError, diff_volumes, load_volumes_file, validate_volumes, volumes_file_text, volumes_to_document)

GI = 1024 ** 3


@pytest.fixture
def dirs(tmp_path):
    """Real directories a, b, c (and a/sub) under tmp_path, as str paths."""
    for name in ("a", "b", "c", "a/sub"):
        (tmp_path / name).mkdir()
    return dict((name, str(tmp_path / name)) for name in ("a", "b", "c", "a/sub"))


def problems_of(entries, **kwargs):
    with pytest.raises(VolumeError) as caught:
        validate_volumes(entries, **kwargs)
    assert str(caught.value) == "\n".join(caught.value.problems)
    assert isinstance(caught.value, ValueError)
    return caught.value.problems


class FakeFS:
    """A stat() over made-up directories: path -> (st_dev, st_ino)."""

    def __init__(self, directories):
        self.directories = directories

    def __call__(self, path):
        if path not in self.directories:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        dev, ino = self.directories[path]
        return SimpleNamespace(st_mode=stat_module.S_IFDIR | 0o755, st_dev=dev, st_ino=ino)


FAKE = "/nonexistent-bpfquota-test"
MISSING_PATH = ("missing path: add 'path: /mnt/nfs/pv-a' (the volume's directory through a mount on this host) or "
                "'source: nfs-server:/export/pv-a' (the export's directory)")


# --- validate_volumes: valid input -------------------------------------------------------------------------------

def test_valid_entries_become_volumes_in_input_order(dirs):
    entries = [
        {"path": dirs["b"], "limit": "50Gi"},
        {"path": dirs["a"], "limit": 512000000, "inodes": 100000, "mode": "audit"},
        {"path": dirs["c"], "limit": "1.5Gi", "inodes": "2000", "mode": None},
    ]
    assert validate_volumes(entries) == [
        Volume(dirs["b"], 50 * GI, 0, "enforce"),
        Volume(dirs["a"], 512000000, 100000, "audit"),
        Volume(dirs["c"], 3 * GI // 2, 2000, "enforce"),
    ]


def test_default_mode_applies_to_entries_without_mode(dirs):
    entries = [{"path": dirs["a"], "limit": "1Gi"}, {"path": dirs["b"], "limit": "1Gi", "mode": "enforce"}]
    assert [volume.mode for volume in validate_volumes(entries, default_mode="audit")] == ["audit", "enforce"]


def test_options_left_as_null_count_as_absent(dirs):
    # Ansible fills suboptions the user left out with None
    assert validate_volumes([{"path": dirs["a"], "limit": "1Gi", "inodes": None, "mode": None}]) == [
        Volume(dirs["a"], GI, 0, "enforce")]


def test_no_volumes_is_valid():
    assert validate_volumes([]) == []


def test_sibling_directories_with_a_common_name_prefix_are_not_nested(tmp_path):
    # /x/pv-a and /x/pv-ab: a prefix of the string, but not of the path
    (tmp_path / "pv-a").mkdir()
    (tmp_path / "pv-ab").mkdir()
    entries = [{"path": str(tmp_path / "pv-a"), "limit": 1}, {"path": str(tmp_path / "pv-ab"), "limit": 1}]
    assert len(validate_volumes(entries)) == 2


def test_a_symlink_to_a_directory_is_a_valid_path(dirs, tmp_path):
    os.symlink(dirs["c"], str(tmp_path / "link"))
    assert validate_volumes([{"path": str(tmp_path / "link"), "limit": 1}])[0].path == str(tmp_path / "link")


# --- validate_volumes: one problem at a time ---------------------------------------------------------------------

@pytest.mark.parametrize("entries, message", [
    (None, "volumes must be a list of entries with path and limit, not null: write 'volumes: []' for no volumes"),
    ({"path": "/x"}, "volumes must be a list of entries with path and limit, not a mapping ({'path': '/x'}): "
                     "write 'volumes: []' for no volumes"),
    ("/x", "volumes must be a list of entries with path and limit, not a string ('/x'): "
           "write 'volumes: []' for no volumes"),
])
def test_volumes_must_be_a_list(entries, message):
    assert problems_of(entries) == [message]


@pytest.mark.parametrize("entry, message", [
    ("/mnt/nfs/pv-a", "volumes[0]: each entry must be a mapping, not a string ('/mnt/nfs/pv-a'): write it as "
                      "'- path: /mnt/nfs/pv-a' with 'limit: 50Gi' on the next line"),
    (None, "volumes[0]: each entry must be a mapping, not null: write it as "
           "'- path: /mnt/nfs/pv-a' with 'limit: 50Gi' on the next line"),
    ([1, 2], "volumes[0]: each entry must be a mapping, not a list ([1, 2]): write it as "
             "'- path: /mnt/nfs/pv-a' with 'limit: 50Gi' on the next line"),
])
def test_entry_must_be_a_mapping(entry, message):
    assert problems_of([entry]) == [message]


def test_unknown_keys_are_named_with_the_allowed_ones(dirs):
    assert problems_of([{"path": dirs["a"], "limit": "1Gi", "limits": "2Gi", "quota": 1}]) == [
        "volumes[0] (%s): unknown key 'limits' (did you mean 'limit'?): allowed keys are path, source, limit, inodes, "
        "soft, inodes_soft, grace, mode, unknown_usage, labels"
        % dirs["a"],
        "volumes[0] (%s): unknown key 'quota': allowed keys are path, source, limit, inodes, soft, inodes_soft, grace, mode, unknown_usage, labels" % dirs["a"],
    ]


@pytest.mark.parametrize("entry, message", [
    ({"limit": "1Gi"}, "volumes[0]: " + MISSING_PATH),
    ({"path": None, "limit": "1Gi"}, "volumes[0]: " + MISSING_PATH),
    ({"path": 5, "limit": "1Gi"}, "volumes[0]: path must be a string, not a number (5): "
                                  "write the directory's absolute path"),
    ({"path": "", "limit": "1Gi"}, "volumes[0]: path must be absolute: write the directory's full path, "
                                   "starting with /"),
    ({"path": "mnt/nfs/pv-a", "limit": "1Gi"}, "volumes[0] (mnt/nfs/pv-a): path must be absolute: "
                                               "write the directory's full path, starting with /"),
    ({"path": "/mnt/\0x", "limit": "1Gi"}, "volumes[0] ('/mnt/\\x00x'): path contains a NUL byte: "
                                           "write the directory's absolute path"),
])
def test_path_must_be_an_absolute_string(entry, message):
    assert problems_of([entry]) == [message]


def test_path_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "missing")
    assert problems_of([{"path": missing, "limit": "1Gi"}]) == [
        "volumes[0] (%s): path does not exist: create the directory first or fix the path" % missing]


def test_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    below = str(tmp_path / "file" / "dir")
    assert problems_of([{"path": below, "limit": "1Gi"}]) == [
        "volumes[0] (%s): path does not exist (one of its parents is not a directory): fix the path" % below]


def test_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    path = str(tmp_path / "file")
    assert problems_of([{"path": path, "limit": "1Gi"}]) == [
        "volumes[0] (%s): path is not a directory (it is a regular file): a volume is a directory; "
        "give the directory that holds the volume's files" % path]


@pytest.mark.parametrize("error, message", [
    (PermissionError(errno.EACCES, "Permission denied"),
     "path cannot be examined (permission denied): run as root or fix the parent directories' permissions"),
    (OSError(errno.EIO, "Input/output error"),
     "path cannot be examined (Input/output error): check that it is reachable (is the NFS export mounted?)"),
])
def test_path_that_cannot_be_examined(error, message):
    def failing_stat(path):
        raise error
    assert problems_of([{"path": FAKE + "/a", "limit": "1Gi"}], stat=failing_stat) == [
        "volumes[0] (%s/a): %s" % (FAKE, message)]


@pytest.mark.parametrize("suffix, normal", [
    ("/a/", "/a"),
    ("//a", "/a"),
    ("/./a", "/a"),
    ("/b/../a", "/a"),
    ("/a/sub/..", "/a"),
])
def test_path_must_be_normalized(dirs, tmp_path, suffix, normal):
    path = str(tmp_path) + suffix
    assert problems_of([{"path": path, "limit": "1Gi"}]) == [
        "volumes[0] (%s): path is not normalized: write it as %s" % (path, str(tmp_path) + normal)]


def test_leading_double_slash_is_not_normalized():
    fs = FakeFS({"//srv": (1, 2)})
    assert problems_of([{"path": "//srv", "limit": 1}], stat=fs) == [
        "volumes[0] (//srv): path is not normalized: write it as /srv"]


@pytest.mark.parametrize("entry, message", [
    ({}, "missing limit: add e.g. 'limit: 50Gi' (the most bytes the volume may hold)"),
    ({"limit": None}, "missing limit: add e.g. 'limit: 50Gi' (the most bytes the volume may hold)"),
    ({"limit": "50gi"}, "limit: invalid size '50gi': unknown unit 'gi': use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) "
                        "or k, M, G, T, P, E (powers of 1000), e.g. 50Gi or 512M (did you mean 'Gi'?)"),
    ({"limit": 0}, "limit: invalid size 0: a size must be greater than zero: give a positive size such as 50Gi"),
    ({"limit": True}, "limit: size must be a number of bytes or a quantity such as 50Gi, not a boolean (True)"),
])
def test_limit_must_be_a_size(dirs, entry, message):
    entry = dict(entry, path=dirs["a"])
    assert problems_of([entry]) == ["volumes[0] (%s): %s" % (dirs["a"], message)]


@pytest.mark.parametrize("inodes, shown", [
    (0, "a number (0)"),
    (-5, "a number (-5)"),
    (True, "a boolean (True)"),
    (1.5, "a number (1.5)"),
    ("100k", "a string ('100k')"),
    (2 ** 63, "a number (9223372036854775808)"),
])
def test_inodes_must_be_a_positive_int(dirs, inodes, shown):
    assert problems_of([{"path": dirs["a"], "limit": "1Gi", "inodes": inodes}]) == [
        "volumes[0] (%s): inodes must be a positive whole number of files, not %s: write e.g. 'inodes: 100000', "
        "or leave inodes out for no file-count limit" % (dirs["a"], shown)]


@pytest.mark.parametrize("mode", ["Enforce", "deny", False])
def test_mode_must_be_known(dirs, mode):
    assert problems_of([{"path": dirs["a"], "limit": "1Gi", "mode": mode}]) == [
        "volumes[0] (%s): unknown mode %r: choose one of enforce, audit (enforce refuses writes over the limit, "
        "audit allows them but counts them)" % (dirs["a"], mode)]


@pytest.mark.parametrize("value", ["Refuse", "deny", True])
def test_unknown_usage_must_be_refuse_or_allow(dirs, value):
    assert problems_of([{"path": dirs["a"], "limit": "1Gi", "unknown_usage": value}]) == [
        "volumes[0] (%s): unknown_usage must be one of refuse, allow, not %s (refuse refuses growth until the "
        "volume's first scan succeeds, allow counts its usage from zero meanwhile)"
        % (dirs["a"], volumes_module._type_name(value))]


def test_unknown_usage_is_refuse_unless_set(dirs):
    volumes = validate_volumes([{"path": dirs["a"], "limit": 1}, {"path": dirs["b"], "limit": 1, "unknown_usage": "allow"},
                                {"path": dirs["c"], "limit": 1, "unknown_usage": None}])
    assert [v.unknown_usage for v in volumes] == ["refuse", "allow", "refuse"]
    assert volumes_to_document(volumes)["volumes"][1] == {"path": dirs["b"], "limit": 1, "mode": "enforce",
                                                          "unknown_usage": "allow"}
    assert diff_volumes(volumes, [volumes[0], volumes[1]._replace(unknown_usage="refuse"), volumes[2]])[1] == [
        (volumes[1], volumes[1]._replace(unknown_usage="refuse"))]


def test_top_level_unknown_usage_is_the_default_for_entries(tmp_path):
    path = write(tmp_path, "v.yaml", "unknown_usage: allow\nvolumes:\n  - {path: /a, limit: 1}\n"
                                     "  - {path: /b, limit: 1, unknown_usage: refuse}\n")
    assert load_volumes_file(path) == [{"path": "/a", "limit": 1, "unknown_usage": "allow"},
                                       {"path": "/b", "limit": 1, "unknown_usage": "refuse"}]
    assert load_problems(write(tmp_path, "w.yaml", "unknown_usage: maybe\nvolumes: []\n")) == [
        "%s: top-level unknown_usage must be one of refuse, allow, not a string ('maybe') (refuse refuses growth "
        "until the volume's first scan succeeds, allow counts its usage from zero meanwhile)" % (tmp_path / "w.yaml")]


def test_bad_default_mode_is_reported_once(dirs):
    entries = [{"path": dirs["a"], "limit": "1Gi"}, {"path": dirs["b"], "limit": "1Gi"}]
    assert problems_of(entries, default_mode="warn") == [
        "default mode 'warn' is not one of enforce, audit: set the top-level mode to one of them "
        "(enforce refuses writes over the limit, audit allows them but counts them)"]


def test_more_volumes_than_capacity(dirs):
    entries = [{"path": dirs[name], "limit": "1Gi"} for name in ("a", "b", "c")]
    assert problems_of(entries, capacity=2) == [
        "volumes: 3 entries, but one host supports at most 2 volumes: remove 1 of them"]
    assert len(validate_volumes(entries, capacity=3)) == 3


def test_duplicate_paths(dirs):
    entries = [{"path": dirs["a"], "limit": "1Gi"}, {"path": dirs["b"], "limit": "1Gi"},
               {"path": dirs["a"], "limit": "2Gi"}]
    assert problems_of(entries) == [
        "volumes[2] (%s): duplicate path, already listed as volumes[0]: keep one entry per directory" % dirs["a"]]


def test_duplicate_path_written_differently(dirs):
    entries = [{"path": dirs["a"], "limit": "1Gi"}, {"path": dirs["a"] + "/", "limit": "1Gi"}]
    assert problems_of(entries) == [
        "volumes[1] (%s/): path is not normalized: write it as %s" % (dirs["a"], dirs["a"]),
        "volumes[1] (%s/): duplicate path, already listed as volumes[0]: keep one entry per directory" % dirs["a"]]


def test_same_directory_through_a_symlink(dirs, tmp_path):
    link = str(tmp_path / "link")
    os.symlink(dirs["b"], link)
    entries = [{"path": dirs["a"], "limit": "1Gi"}, {"path": dirs["b"], "limit": "1Gi"},
               {"path": link, "limit": "1Gi"}]
    assert problems_of(entries) == [
        "volumes[1] and volumes[2] are the same directory (%s and %s, reached through a bind mount or a symlink): "
        "keep one of them" % (dirs["b"], link)]


def test_same_directory_by_device_and_inode():
    fs = FakeFS({FAKE + "/nfs/pv-a": (7, 100), FAKE + "/other": (7, 200), FAKE + "/bind/pv-a": (7, 100)})
    entries = [{"path": FAKE + "/nfs/pv-a", "limit": 1}, {"path": FAKE + "/other", "limit": 1},
               {"path": FAKE + "/bind/pv-a", "limit": 1}]
    assert problems_of(entries, stat=fs) == [
        "volumes[0] and volumes[2] are the same directory (%s/nfs/pv-a and %s/bind/pv-a, reached through a bind "
        "mount or a symlink): keep one of them" % (FAKE, FAKE)]


def test_same_inode_on_another_device_is_another_directory():
    fs = FakeFS({FAKE + "/a": (7, 100), FAKE + "/b": (8, 100)})
    assert len(validate_volumes([{"path": FAKE + "/a", "limit": 1}, {"path": FAKE + "/b", "limit": 1}],
                                stat=fs)) == 2


NESTED = "nested volumes are not supported in this version: put the limit on one of them"


def test_nested_volumes(dirs):
    entries = [{"path": dirs["a/sub"], "limit": "1Gi"}, {"path": dirs["a"], "limit": "2Gi"}]
    assert problems_of(entries) == [
        "volumes[0] (%s) is inside volumes[1] (%s): %s" % (dirs["a/sub"], dirs["a"], NESTED)]


def test_nesting_names_the_nearest_enclosing_volume(dirs, tmp_path):
    (tmp_path / "a" / "sub" / "deeper").mkdir()
    deeper = str(tmp_path / "a" / "sub" / "deeper")
    entries = [{"path": dirs["a"], "limit": 1}, {"path": dirs["a/sub"], "limit": 1}, {"path": deeper, "limit": 1}]
    assert problems_of(entries) == [
        "volumes[1] (%s) is inside volumes[0] (%s): %s" % (dirs["a/sub"], dirs["a"], NESTED),
        "volumes[2] (%s) is inside volumes[1] (%s): %s" % (deeper, dirs["a/sub"], NESTED)]


def test_nesting_through_a_symlink_is_found_by_real_path(dirs, tmp_path):
    link = str(tmp_path / "link")
    os.symlink(dirs["a/sub"], link)
    entries = [{"path": dirs["a"], "limit": 1}, {"path": link, "limit": 1}]
    assert problems_of(entries) == ["volumes[1] (%s) is inside volumes[0] (%s): %s" % (link, dirs["a"], NESTED)]


def test_nesting_found_by_ancestor_device_and_inode():
    # FAKE/bind is the same directory as FAKE/nfs/pv-a (a bind mount), so FAKE/bind/sub is inside it
    fs = FakeFS({FAKE + "/nfs/pv-a": (7, 100), FAKE + "/bind": (7, 100), FAKE + "/bind/sub": (7, 300)})
    entries = [{"path": FAKE + "/nfs/pv-a", "limit": 1}, {"path": FAKE + "/bind/sub", "limit": 1}]
    assert problems_of(entries, stat=fs) == [
        "volumes[1] (%s/bind/sub) is inside volumes[0] (%s/nfs/pv-a), reached through %s/bind: %s"
        % (FAKE, FAKE, FAKE, NESTED)]


def test_volume_at_the_root_contains_every_other():
    fs = FakeFS({"/": (1, 2), FAKE + "/a": (3, 4)})
    assert problems_of([{"path": "/", "limit": 1}, {"path": FAKE + "/a", "limit": 1}], stat=fs) == [
        "volumes[1] (%s/a) is inside volumes[0] (/): %s" % (FAKE, NESTED)]


@pytest.fixture
def bind_mount(tmp_path):
    """Bind-mount tmp_path/nfs/pv-a at tmp_path/bind; yields (source, target)."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    source, target = tmp_path / "nfs" / "pv-a", tmp_path / "bind"
    (source / "sub").mkdir(parents=True)
    target.mkdir()
    result = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip("mount --bind failed: %s" % result.stderr.decode(errors="replace").strip())
    try:
        yield str(source), str(target)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_same_directory_through_a_real_bind_mount(bind_mount):
    source, target = bind_mount
    assert problems_of([{"path": source, "limit": 1}, {"path": target, "limit": 1}]) == [
        "volumes[0] and volumes[1] are the same directory (%s and %s, reached through a bind mount or a symlink): "
        "keep one of them" % (source, target)]


def test_nesting_through_a_real_bind_mount(bind_mount):
    source, target = bind_mount
    inner = target + "/sub"
    assert problems_of([{"path": source, "limit": 1}, {"path": inner, "limit": 1}]) == [
        "volumes[1] (%s) is inside volumes[0] (%s), reached through %s: %s" % (inner, source, target, NESTED)]


def test_every_problem_is_listed_together(dirs, tmp_path):
    missing = str(tmp_path / "missing")
    entries = [
        {"path": dirs["a"], "limit": "1Gi"},                                  # fine
        "oops",                                                               # not a mapping
        {"path": missing, "limit": "-1", "size": 3},                          # three problems in one entry
        {"path": dirs["b"] + "/", "limit": "1Gi", "inodes": 0, "mode": "x"},  # three more
        {"path": dirs["a"], "limit": "1Gi"},                                  # duplicate
        {"path": dirs["a/sub"]},                                              # no limit, and nested
    ]
    assert problems_of(entries, capacity=5) == [
        "volumes: 6 entries, but one host supports at most 5 volumes: remove 1 of them",
        "volumes[1]: each entry must be a mapping, not a string ('oops'): write it as '- path: /mnt/nfs/pv-a' "
        "with 'limit: 50Gi' on the next line",
        "volumes[2] (%s): unknown key 'size': allowed keys are path, source, limit, inodes, soft, inodes_soft, grace, mode, unknown_usage, labels" % missing,
        "volumes[2] (%s): path does not exist: create the directory first or fix the path" % missing,
        "volumes[2] (%s): limit: invalid size '-1': a size cannot be negative: give a positive size such as 50Gi"
        % missing,
        "volumes[3] (%s/): path is not normalized: write it as %s" % (dirs["b"], dirs["b"]),
        "volumes[3] (%s/): inodes must be a positive whole number of files, not a number (0): write e.g. "
        "'inodes: 100000', or leave inodes out for no file-count limit" % dirs["b"],
        "volumes[3] (%s/): unknown mode 'x': choose one of enforce, audit (enforce refuses writes over the limit, "
        "audit allows them but counts them)" % dirs["b"],
        "volumes[5] (%s): missing limit: add e.g. 'limit: 50Gi' (the most bytes the volume may hold)" % dirs["a/sub"],
        "volumes[4] (%s): duplicate path, already listed as volumes[0]: keep one entry per directory" % dirs["a"],
        "volumes[5] (%s) is inside volumes[0] (%s): %s" % (dirs["a/sub"], dirs["a"], NESTED),
    ]


def test_a_path_with_a_newline_stays_on_one_line(tmp_path):
    path = str(tmp_path / "two\nlines")
    problems = problems_of([{"path": path, "limit": 1}])
    assert problems == ["volumes[0] (%r): path does not exist: create the directory first or fix the path" % path]
    assert "\n" not in problems[0]


# --- load_volumes_file ---------------------------------------------------------------------------------------------

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def load_problems(path):
    with pytest.raises(VolumeError) as caught:
        load_volumes_file(path)
    return caught.value.problems


def test_load_yaml(tmp_path):
    path = write(tmp_path, "volumes.yml", "volumes:\n  - path: /mnt/nfs/pv-a\n    limit: 50Gi\n"
                                          "  - path: /mnt/nfs/pv-b\n    limit: 512M\n    inodes: 100000\n"
                                          "    mode: audit\n")
    assert load_volumes_file(path) == [
        {"path": "/mnt/nfs/pv-a", "limit": "50Gi"},
        {"path": "/mnt/nfs/pv-b", "limit": "512M", "inodes": 100000, "mode": "audit"}]


@pytest.mark.parametrize("name", ["volumes.json", "VOLUMES.JSON"])
def test_load_json(tmp_path, name):
    path = write(tmp_path, name, json.dumps({"volumes": [{"path": "/mnt/nfs/pv-a", "limit": 1024}]}))
    assert load_volumes_file(path) == [{"path": "/mnt/nfs/pv-a", "limit": 1024}]


def test_a_file_without_json_extension_is_yaml_and_json_is_yaml_too(tmp_path):
    path = write(tmp_path, "volumes.conf", '{"volumes": [{"path": "/x", "limit": 1}]}')
    assert load_volumes_file(path) == [{"path": "/x", "limit": 1}]


@pytest.mark.parametrize("text", ["volumes: []\n", '{"volumes": []}'])
def test_load_empty_list(tmp_path, text):
    assert load_volumes_file(write(tmp_path, "v.yaml", text)) == []


def test_top_level_mode_is_the_default_for_entries(tmp_path):
    path = write(tmp_path, "v.yaml", "mode: audit\nvolumes:\n  - {path: /a, limit: 1}\n"
                                     "  - {path: /b, limit: 1, mode: enforce}\n  - {path: /c, limit: 1, mode: null}\n"
                                     "  - not-a-mapping\n")
    assert load_volumes_file(path) == [
        {"path": "/a", "limit": 1, "mode": "audit"},
        {"path": "/b", "limit": 1, "mode": "enforce"},
        {"path": "/c", "limit": 1, "mode": "audit"},
        "not-a-mapping"]


def test_loaded_entries_validate(dirs, tmp_path):
    path = write(tmp_path, "v.yaml", "mode: audit\nvolumes:\n  - path: %s\n    limit: 2Gi\n" % dirs["a"])
    assert validate_volumes(load_volumes_file(path)) == [Volume(dirs["a"], 2 * GI, 0, "audit")]


def test_load_missing_file(tmp_path):
    path = str(tmp_path / "nope.yml")
    assert load_problems(path) == [
        "%s: file does not exist: create it with a top-level 'volumes:' list ('volumes: []' for no volumes)" % path]


def test_load_directory(tmp_path):
    assert load_problems(str(tmp_path)) == [
        "%s: is a directory: give the path of the volumes file (YAML or JSON)" % tmp_path]


@pytest.mark.parametrize("error, message", [
    (PermissionError(errno.EACCES, "Permission denied"),
     "cannot read the file (permission denied): run as root or make it readable"),
    (OSError(errno.EIO, "Input/output error"), "cannot read the file (Input/output error): check the path"),
])
def test_load_unreadable_file(tmp_path, monkeypatch, error, message):
    path = write(tmp_path, "v.yml", "volumes: []\n")

    def failing_open(*args, **kwargs):
        raise error
    monkeypatch.setattr(volumes_module, "open", failing_open, raising=False)
    assert load_problems(path) == ["%s: %s" % (path, message)]


def test_load_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "v.yml", "volumes:\n  - path: /a\n    limit: 1Gi\n   - path: /b\n")
    [problem] = load_problems(path)
    assert problem.startswith("%s: YAML syntax error at line 4, column 4: " % path)
    assert problem.endswith(": fix the YAML (check indentation, and quote values containing ': ' or '#')")


def test_load_yaml_error_without_position(tmp_path, monkeypatch):
    import yaml

    def failing_load(text, Loader):
        raise yaml.YAMLError("something broke")
    monkeypatch.setattr(yaml, "load", failing_load)
    path = write(tmp_path, "v.yml", "volumes: []\n")
    assert load_problems(path) == [
        "%s: YAML syntax error: something broke: fix the YAML (check indentation, and quote values containing "
        "': ' or '#')" % path]


def test_load_json_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "v.json", '{\n  "volumes":\n    ]\n}\n')
    assert load_problems(path) == ["%s: JSON syntax error at line 3, column 5: Expecting value: fix the JSON" % path]


def test_load_non_utf8(tmp_path):
    path = write(tmp_path, "v.yml", b"volumes: []\n# caf\xe9\n")
    assert load_problems(path) == ["%s: not UTF-8 text (bad byte at offset 17): save the file as UTF-8" % path]


def test_load_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    path = write(tmp_path, "v.yml", "volumes: []\n")
    assert load_problems(path) == [
        "%s: reading YAML needs the PyYAML package: install python3-yaml (apt/dnf) or 'pip install PyYAML', "
        "or write the file as JSON with a .json name" % path]
    # JSON needs no PyYAML
    assert load_volumes_file(write(tmp_path, "v.json", '{"volumes": []}')) == []


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty: write a top-level 'volumes:' list ('volumes: []' for no volumes)"),
    ("# only a comment\n", "the file is empty: write a top-level 'volumes:' list ('volumes: []' for no volumes)"),
    ("- path: /a\n  limit: 1\n", "the top level must be a mapping with a 'volumes' list, not a list "
                                 "([{'path': '/a', 'limit': 1}]): put the list under a top-level 'volumes:' key"),
    ("just text\n", "the top level must be a mapping with a 'volumes' list, not a string ('just text')"),
    ("mode: audit\n", "no 'volumes' key: add a top-level 'volumes:' list ('volumes: []' for no volumes)"),
    ("volumes:\n", "'volumes' must be a list of entries, not null: write each entry as '- path: ...' "
                   "('volumes: []' for no volumes)"),
    ("volumes:\n  path: /a\n", "'volumes' must be a list of entries, not a mapping ({'path': '/a'}): write each "
                               "entry as '- path: ...' ('volumes: []' for no volumes)"),
    ("volumes: []\nmode: warn\n", "unknown top-level mode 'warn': choose one of enforce, audit (enforce refuses "
                                  "writes over the limit, audit allows them but counts them)"),
    ("volumes: []\nversion: 1\n", "unknown top-level key 'version': allowed keys are volumes, mode, unknown_usage, soft, inodes_soft, grace"),
])
def test_load_wrong_shape(tmp_path, text, message):
    path = write(tmp_path, "v.yml", text)
    assert load_problems(path) == ["%s: %s" % (path, message)]


def test_load_lists_every_shape_problem(tmp_path):
    path = write(tmp_path, "v.yml", "volume:\n  - path: /a\nmode: deny\n")
    assert load_problems(path) == [
        "%s: unknown top-level key 'volume' (did you mean 'volumes'?): allowed keys are volumes, mode, unknown_usage, soft, inodes_soft, grace" % path,
        "%s: no 'volumes' key: add a top-level 'volumes:' list ('volumes: []' for no volumes)" % path,
        "%s: unknown top-level mode 'deny': choose one of enforce, audit (enforce refuses writes over the limit, "
        "audit allows them but counts them)" % path]


# --- volumes_to_document and diff_volumes --------------------------------------------------------------------------

def test_volumes_to_document_is_sorted_and_canonical():
    volumes = [Volume("/mnt/nfs/pv-b", 512000000, 100000, "audit"), Volume("/mnt/nfs/pv-a", 50 * GI, 0, "enforce")]
    document = volumes_to_document(volumes)
    assert document == {"volumes": [
        {"path": "/mnt/nfs/pv-a", "limit": 50 * GI, "mode": "enforce"},
        {"path": "/mnt/nfs/pv-b", "limit": 512000000, "inodes": 100000, "mode": "audit"}]}
    assert [list(entry) for entry in document["volumes"]] == [
        ["path", "limit", "mode"], ["path", "limit", "inodes", "mode"]]


def test_volumes_to_document_is_the_inverse_of_loading(dirs, tmp_path):
    volumes = [Volume(dirs["b"], 3, 0, "audit"), Volume(dirs["a"], GI, 7, "enforce")]
    path = tmp_path / "written.json"
    path.write_text(json.dumps(volumes_to_document(volumes)))
    assert validate_volumes(load_volumes_file(str(path))) == sorted(volumes)
    assert volumes_to_document([]) == {"volumes": []}


def test_diff_volumes():
    current = [Volume("/v/keep", 1, 0, "enforce"), Volume("/v/gone", 1, 0, "enforce"),
               Volume("/v/mode", 1, 0, "enforce"), Volume("/v/limit", 1, 0, "enforce"),
               Volume("/v/files", 1, 0, "enforce"), Volume("/v/a-gone", 1, 0, "enforce")]
    desired = [Volume("/v/new", 2, 0, "audit"), Volume("/v/limit", 2, 0, "enforce"),
               Volume("/v/mode", 1, 0, "audit"), Volume("/v/keep", 1, 0, "enforce"),
               Volume("/v/files", 1, 5, "enforce"), Volume("/v/a-new", 2, 0, "audit")]
    added, updated, removed = diff_volumes(current, desired)
    assert added == [Volume("/v/a-new", 2, 0, "audit"), Volume("/v/new", 2, 0, "audit")]
    assert updated == [
        (Volume("/v/files", 1, 0, "enforce"), Volume("/v/files", 1, 5, "enforce")),
        (Volume("/v/limit", 1, 0, "enforce"), Volume("/v/limit", 2, 0, "enforce")),
        (Volume("/v/mode", 1, 0, "enforce"), Volume("/v/mode", 1, 0, "audit"))]
    assert removed == [Volume("/v/a-gone", 1, 0, "enforce"), Volume("/v/gone", 1, 0, "enforce")]


def test_diff_of_equal_lists_is_empty():
    volumes = [Volume("/v/a", 1, 0, "enforce")]
    assert diff_volumes(volumes, list(volumes)) == ([], [], [])
    assert diff_volumes([], []) == ([], [], [])


# --- volumes_file_text -----------------------------------------------------------------------------------------------

def test_a_volumes_file_written_reads_back_as_its_entries(tmp_path):
    entries = [{"path": "/mnt/nfs/pv a: #1", "limit": "1.5Gi", "inodes": None, "mode": None},
               {"path": '/mnt/nfs/"quoted"\\ \u00e9\u2028\t', "limit": 1 << 40, "inodes": 7, "mode": "audit",
                "unknown_usage": "allow"},
               {"path": "/mnt/nfs/yes", "limit": 1.5e20},
               {"path": "/mnt/nfs/null", "limit": "0x10"}]
    path = str(tmp_path / "volumes.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(volumes_file_text(entries, "enforce", "refuse"))
    defaults = {"mode": "enforce", "unknown_usage": "refuse"}
    assert load_volumes_file(path) == [
        dict(dict((k, v) for k, v in entry.items() if v is not None),
             **dict((k, v) for k, v in defaults.items() if entry.get(k) is None)) for entry in entries]
    assert volumes_file_text(entries, "enforce", "refuse") == volumes_file_text(list(entries), "enforce", "refuse")


def test_a_volumes_file_of_no_volumes(tmp_path):
    path = str(tmp_path / "volumes.yaml")
    with open(path, "w") as f:
        f.write(volumes_file_text([], "audit", "allow"))
    assert load_volumes_file(path) == []
    assert volumes_file_text([], "audit", "allow").endswith('mode: "audit"\nunknown_usage: "allow"\nvolumes: []\n')


# --- volumes addressed by the export (source) and labels -----------------------------------------------------------

def test_a_source_volume_needs_no_mount_and_carries_its_labels():
    [volume] = validate_volumes([{"source": "nfs-1.example:/exports/k8s/pv-a", "limit": "1Gi",
                                  "labels": {"pv": "pv-a", "namespace": "shop", "claim": "data"}}])
    assert volume == Volume("nfs-1.example:/exports/k8s/pv-a", GI, 0, "enforce", "refuse",
                            (("claim", "data"), ("namespace", "shop"), ("pv", "pv-a")))
    assert volumes_module.is_source(volume.path)
    assert volumes_to_document([volume])["volumes"][0]["source"] == volume.path
    [ipv6] = validate_volumes([{"source": "[fd00::5]:/exports/pv-b", "limit": 1}])
    assert ipv6.path == "[fd00::5]:/exports/pv-b"


@pytest.mark.parametrize("entry, message", [
    ({"source": "nfs:/a", "path": "/mnt/a", "limit": 1}, "volumes[0] (nfs:/a): both path and source: give one of them"),
    ({"source": "nfs", "limit": 1}, "volumes[0] (nfs): source must be server:/export/path"),
    ({"source": "nfs:relative", "limit": 1}, "volumes[0] (nfs:relative): source must be server:/export/path"),
    ({"source": ":/x", "limit": 1}, "volumes[0] (:/x): source must be server:/export/path"),
    ({"source": 5, "limit": 1}, "volumes[0]: source must be server:/export/path"),
    ({"source": "nfs:/a/../b", "limit": 1}, "volumes[0] (nfs:/a/../b): source is not normalized: write it as nfs:/b"),
    ({"source": "nfs:/a", "limit": 1, "labels": ["pv"]}, "volumes[0] (nfs:/a): labels must be a mapping"),
    ({"source": "nfs:/a", "limit": 1, "labels": {"1pv": "x"}}, "volumes[0] (nfs:/a): label name a string ('1pv') is"),
    ({"source": "nfs:/a", "limit": 1, "labels": {"pv": 5}}, "volumes[0] (nfs:/a): label pv must be a string"),
    ({"source": "nfs:/a", "limit": 1, "labels": {"pv": "x" * 5000}}, "volumes[0] (nfs:/a): the name and labels take more"),
])
def test_bad_sources_and_labels_are_named_with_the_fix(entry, message):
    [problem] = problems_of([entry])
    assert problem.startswith(message), problem


def test_a_source_listed_twice_is_a_duplicate():
    assert problems_of([{"source": "nfs:/a", "limit": 1}, {"source": "nfs:/a", "limit": 2}]) == [
        "volumes[1] (nfs:/a): duplicate source, already listed as volumes[0]: keep one entry per directory"]


def test_labels_round_trip_through_the_maps_text():
    labels = (("claim", "data"), ("pv", "pv-a"))
    text = volumes_module.volume_meta_text("nfs:/a", labels)
    assert text.split("\0")[0] == "nfs:/a"  # readers of the name stop at the NUL
    assert volumes_module.parse_volume_meta(text) == ("nfs:/a", labels)
    assert volumes_module.parse_volume_meta("/mnt/a") == ("/mnt/a", ())
    assert volumes_module.volume_meta_text("/mnt/a", ()) == "/mnt/a"


def test_a_label_change_is_an_update():
    old = Volume("nfs:/a", 1, 0, "enforce", "refuse", (("pv", "a"),))
    new = old._replace(labels=(("pv", "b"),))
    assert diff_volumes([old], [new]) == ([], [(old, new)], [])
