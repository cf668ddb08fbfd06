# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpf_build: real clang builds of the repo's bpf/ into temporary directories."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import stat

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import bpfbuild
from ansible_collections.bpfquota.nfs.plugins.modules import bpf_build

from .conftest import ModuleFail

REPO_BPF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "bpf")
REPO_BPF = os.path.normpath(REPO_BPF)

pytestmark = pytest.mark.skipif(not any(shutil.which(n) for n in ("clang", "clang-18", "clang-17", "clang-16")),
                                reason="clang is not installed")


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(directory):
    """{name: (size, mtime_ns, sha256)} of every file below directory: what a run wrote."""
    out = {}
    for parent, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(parent, name)
            st = os.stat(path)
            out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns, sha256_of(path))
    return out


@pytest.fixture
def src(tmp_path):
    """A copy of the repo's BPF sources that a test may edit (without an object that
    scripts/build-collection.sh may have prebuilt there)."""
    copy = str(tmp_path / "bpf")
    shutil.copytree(REPO_BPF, copy, ignore=shutil.ignore_patterns("prebuilt"))
    return copy


def no_prebuilt(src):
    return "no prebuilt object at %s (a collection built by scripts/build-collection.sh carries one)" % (
        os.path.join(src, "prebuilt", "bpfquota.bpf.o"))


@pytest.fixture
def out_dir(tmp_path):
    return str(tmp_path / "out")


def test_first_build_changes_second_is_skipped(run_module, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    first = run_module(bpf_build, {"src": src, "dest": dest})
    assert first["changed"] is True
    assert first["path"] == dest
    assert first["sha256"] == sha256_of(dest)
    assert first["digest"] == bpfbuild.sources_digest(src)
    assert first["src"] == src
    with open(dest, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    written = snapshot(out_dir)

    second = run_module(bpf_build, {"src": src, "dest": dest})
    assert second["changed"] is False
    assert (second["path"], second["sha256"], second["digest"]) == (dest, first["sha256"], first["digest"])
    assert snapshot(out_dir) == written

    check = run_module(bpf_build, {"src": src, "dest": dest}, check=True)
    assert check["changed"] is False
    assert check["sha256"] == first["sha256"]


def test_check_mode_on_a_fresh_dest_predicts_a_build_and_writes_nothing(run_module, src, out_dir):
    dest = os.path.join(out_dir, "sub", "bpfquota.bpf.o")
    result = run_module(bpf_build, {"src": src, "dest": dest}, check=True, diff=True)
    assert result["changed"] is True
    assert result["sha256"] is None
    assert result["digest"] == bpfbuild.sources_digest(src)
    assert result["diff"] == {"before": {"digest": None, "sha256": None},
                              "after": {"digest": result["digest"], "sha256": None}}
    assert not os.path.exists(out_dir)

    real = run_module(bpf_build, {"src": src, "dest": dest}, diff=True)
    assert real["changed"] is True
    assert real["diff"] == {"before": {"digest": None, "sha256": None},
                            "after": {"digest": result["digest"], "sha256": sha256_of(dest)}}


def test_changed_sources_check_mode_predicts_rebuild_without_writing(run_module, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    first = run_module(bpf_build, {"src": src, "dest": dest})
    written = snapshot(out_dir)
    with open(os.path.join(src, bpfbuild.SOURCE), "a") as f:
        f.write("\n/* a change to the sources */\n")

    check = run_module(bpf_build, {"src": src, "dest": dest}, check=True, diff=True)
    assert check["changed"] is True
    assert check["digest"] == bpfbuild.sources_digest(src) != first["digest"]
    assert check["diff"] == {"before": {"digest": first["digest"], "sha256": first["sha256"]},
                             "after": {"digest": check["digest"], "sha256": None}}
    assert snapshot(out_dir) == written

    rebuilt = run_module(bpf_build, {"src": src, "dest": dest}, diff=True)
    assert rebuilt["changed"] is True
    assert rebuilt["digest"] == check["digest"]
    assert rebuilt["sha256"] == sha256_of(dest)
    assert rebuilt["diff"]["before"] == {"digest": first["digest"], "sha256": first["sha256"]}
    assert run_module(bpf_build, {"src": src, "dest": dest})["changed"] is False


def test_a_header_change_also_rebuilds(run_module, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    run_module(bpf_build, {"src": src, "dest": dest})
    with open(os.path.join(src, "bpfquota.h"), "a") as f:
        f.write("\n/* edited */\n")
    assert run_module(bpf_build, {"src": src, "dest": dest}, check=True)["changed"] is True


def test_object_without_stamp_is_rebuilt(run_module, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    os.makedirs(out_dir)
    with open(dest, "wb") as f:
        f.write(b"stale object of unknown origin")
    result = run_module(bpf_build, {"src": src, "dest": dest}, check=True, diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == {"digest": None, "sha256": sha256_of(dest)}


def test_default_src_is_the_collections_bpf_directory(run_module, out_dir):
    result = run_module(bpf_build, {"dest": os.path.join(out_dir, "o.bpf.o")}, check=True)
    assert os.path.samefile(result["src"], REPO_BPF)
    assert result["digest"] == bpfbuild.sources_digest(REPO_BPF)


def test_clang_given_by_name_and_by_path(run_module, src, out_dir):
    clang = bpfbuild.find_clang()
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    assert run_module(bpf_build, {"src": src, "dest": dest, "clang": os.path.basename(clang)})["changed"] is True
    os.unlink(dest + ".digest")
    assert run_module(bpf_build, {"src": src, "dest": dest, "clang": clang})["changed"] is True


def fake_clang(tmp_path, stderr, rc=1):
    path = str(tmp_path / "bin" / "clang")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho '%s' >&2\nexit %d\n" % (stderr, rc))
    os.chmod(path, stat.S_IRWXU)
    return path


def test_clang_without_bpf_target(run_module, tmp_path, src, out_dir):
    clang = fake_clang(tmp_path, "error: unable to create target: 'No available targets are compatible "
                                 "with triple \"bpf\"'")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": os.path.join(out_dir, "o"), "clang": clang})
    assert failed.value.result["msg"] == (
        "building %s failed: %s has no BPF target: install a clang built with the BPF backend "
        "(Debian/Ubuntu's clang has it)" % (os.path.join(out_dir, "o"), clang))
    assert os.listdir(out_dir) == []


def test_compile_error_keeps_the_previous_object(run_module, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    run_module(bpf_build, {"src": src, "dest": dest})
    written = snapshot(out_dir)
    with open(os.path.join(src, bpfbuild.SOURCE), "a") as f:
        f.write("\nthis is not C;\n")
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": dest})
    msg = failed.value.result["msg"]
    assert msg.startswith("building %s failed: clang failed (rc 1):\n" % dest)
    assert "error:" in msg
    assert snapshot(out_dir) == written


def test_missing_clang_path(run_module, tmp_path, src, out_dir):
    missing = str(tmp_path / "no" / "clang")
    for check in (False, True):
        with pytest.raises(ModuleFail) as failed:
            run_module(bpf_build, {"src": src, "dest": os.path.join(out_dir, "o"), "clang": missing}, check=check)
        assert failed.value.result["msg"] == (
            "clang %s does not exist or is not executable: install clang or fix the clang option; %s"
            % (missing, no_prebuilt(src)))


def test_clang_name_not_in_path(run_module, src, out_dir):
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": os.path.join(out_dir, "o"), "clang": "clang-nonexistent-99"})
    assert failed.value.result["msg"] == (
        "clang 'clang-nonexistent-99' not found in PATH: install clang or give its full path in clang; %s"
        % no_prebuilt(src))


def test_no_clang_installed(run_module, monkeypatch, tmp_path, src, out_dir):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for check in (False, True):
        with pytest.raises(ModuleFail) as failed:
            run_module(bpf_build, {"src": src, "dest": os.path.join(out_dir, "o")}, check=check)
        assert failed.value.result["msg"] == (
            "clang not found: install clang (Debian/Ubuntu: apt-get install clang libbpf-dev); %s" % no_prebuilt(src))
    assert not os.path.exists(out_dir)


def test_up_to_date_needs_no_clang(run_module, monkeypatch, tmp_path, src, out_dir):
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    run_module(bpf_build, {"src": src, "dest": dest})
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert run_module(bpf_build, {"src": src, "dest": dest})["changed"] is False


def test_src_without_sources(run_module, tmp_path, out_dir):
    empty = str(tmp_path / "nothing-here")
    os.makedirs(empty)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": empty, "dest": os.path.join(out_dir, "o")})
    assert failed.value.result["msg"] == (
        "no BPF sources at %s (bpfquota.bpf.c not found): build on the controller, where the bpfquota.nfs "
        "collection is installed (delegate_to: localhost), or set src to a copy of its bpf/ directory on "
        "this host" % empty)


def test_dest_or_dest_dir_is_required(run_module, src):
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src})
    assert failed.value.result["msg"] == "one of the following is required: dest, dest_dir"


def test_dest_and_dest_dir_exclude_each_other(run_module, src, out_dir):
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": os.path.join(out_dir, "o"), "dest_dir": out_dir})
    assert failed.value.result["msg"] == "parameters are mutually exclusive: dest|dest_dir"
    assert not os.path.exists(out_dir)


# --- dest_dir: one object per version of the sources

def test_dest_dir_names_the_object_by_the_sources_digest(run_module, src, out_dir):
    check = run_module(bpf_build, {"src": src, "dest_dir": out_dir}, check=True)
    digest = bpfbuild.sources_digest(src)
    expected = os.path.join(out_dir, "bpfquota-%s.bpf.o" % digest[:16])
    assert (check["changed"], check["path"], check["sha256"]) == (True, expected, None)
    assert not os.path.exists(out_dir)

    first = run_module(bpf_build, {"src": src, "dest_dir": out_dir})
    assert (first["changed"], first["path"], first["sha256"]) == (True, expected, sha256_of(expected))
    again = run_module(bpf_build, {"src": src, "dest_dir": out_dir})
    assert (again["changed"], again["path"], again["sha256"]) == (False, expected, first["sha256"])


def test_two_versions_sharing_dest_dir_keep_their_own_objects(run_module, tmp_path, src, out_dir):
    """Two collection versions rolled out from one controller account, in turn or at once:
    each finds its own object, so neither rebuilds nor hands the hosts the other's program."""
    other = str(tmp_path / "bpf-next")
    shutil.copytree(src, other)
    with open(os.path.join(other, bpfbuild.SOURCE), "a") as f:
        f.write("\n/* the next version */\n")
    old = run_module(bpf_build, {"src": src, "dest_dir": out_dir})
    new = run_module(bpf_build, {"src": other, "dest_dir": out_dir})
    assert new["changed"] is True and new["path"] != old["path"]
    written = snapshot(out_dir)
    assert len(written) == 4  # two objects, two stamps

    for version, built in ((src, old), (other, new), (src, old)):
        result = run_module(bpf_build, {"src": version, "dest_dir": out_dir})
        assert (result["changed"], result["path"], result["sha256"]) == (False, built["path"], built["sha256"])
    assert sha256_of(old["path"]) == old["sha256"] and sha256_of(new["path"]) == new["sha256"]
    assert snapshot(out_dir) == written


# --- the object prebuilt into a collection artifact (scripts/build-collection.sh)

def prebuild(src):
    """What scripts/build-collection.sh does: <src>/prebuilt/bpfquota.bpf.o and its stamp."""
    return bpfbuild.build(src, os.path.join(src, bpfbuild.PREBUILT), prebuilt=False)


def hide_clang(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def test_a_matching_prebuilt_object_is_copied_without_clang(run_module, monkeypatch, tmp_path, src, out_dir):
    made = prebuild(src)
    hide_clang(monkeypatch, tmp_path)
    dest = os.path.join(out_dir, "bpfquota.bpf.o")

    check = run_module(bpf_build, {"src": src, "dest": dest}, check=True)
    assert (check["changed"], check["prebuilt"], check["sha256"]) == (True, True, None)
    assert not os.path.exists(out_dir)

    result = run_module(bpf_build, {"src": src, "dest": dest}, diff=True)
    assert result["changed"] is True and result["prebuilt"] is True
    assert result["sha256"] == made["sha256"] == sha256_of(dest)
    assert result["digest"] == made["digest"] == bpfbuild.sources_digest(src)
    with open(dest + ".digest") as f:
        assert f.read() == made["digest"] + "\n"
    assert result["diff"]["after"] == {"digest": made["digest"], "sha256": made["sha256"]}

    again = run_module(bpf_build, {"src": src, "dest": dest})
    assert (again["changed"], again["prebuilt"], again["sha256"]) == (False, False, made["sha256"])


def test_prebuilt_false_compiles(run_module, monkeypatch, tmp_path, src, out_dir):
    prebuild(src)
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    result = run_module(bpf_build, {"src": src, "dest": dest, "prebuilt": False})
    assert result["changed"] is True and result["prebuilt"] is False
    os.unlink(dest + ".digest")
    hide_clang(monkeypatch, tmp_path)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": dest, "prebuilt": False})
    assert failed.value.result["msg"].startswith("clang not found: install clang")


def test_a_prebuilt_object_of_other_sources_is_not_used(run_module, monkeypatch, tmp_path, src, out_dir):
    made = prebuild(src)
    with open(os.path.join(src, "bpfquota.h"), "a") as f:
        f.write("\n/* edited after the prebuild */\n")
    dest = os.path.join(out_dir, "bpfquota.bpf.o")
    compiled = run_module(bpf_build, {"src": src, "dest": dest}, check=True)
    assert (compiled["changed"], compiled["prebuilt"]) == (True, False)

    hide_clang(monkeypatch, tmp_path)
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest": dest})
    assert failed.value.result["msg"] == (
        "clang not found: install clang (Debian/Ubuntu: apt-get install clang libbpf-dev); the prebuilt object %s "
        "was built from other sources or flags (digest %s, these are %s)"
        % (os.path.join(src, "prebuilt", "bpfquota.bpf.o"), made["digest"], bpfbuild.sources_digest(src)))
    assert not os.path.exists(out_dir)


# --- the target architecture: the managed host's (ansible_facts['architecture'])

def test_arch_selects_the_object_and_names_it(run_module, src, out_dir):
    x86 = run_module(bpf_build, {"src": src, "dest_dir": out_dir})
    arm64 = run_module(bpf_build, {"src": src, "dest_dir": out_dir, "arch": "aarch64"})
    assert (x86["arch"], arm64["arch"]) == ("x86", "arm64")
    assert arm64["digest"] == bpfbuild.sources_digest(src, bpfbuild.clang_flags("arm64")) != x86["digest"]
    assert arm64["path"] == os.path.join(out_dir, "bpfquota-arm64-%s.bpf.o" % arm64["digest"][:16])
    assert x86["path"] == os.path.join(out_dir, "bpfquota-%s.bpf.o" % x86["digest"][:16])
    again = run_module(bpf_build, {"src": src, "dest_dir": out_dir, "arch": "arm64"})
    assert (again["changed"], again["path"], again["sha256"]) == (False, arm64["path"], arm64["sha256"])


def test_an_unsupported_arch_fails(run_module, src, out_dir):
    with pytest.raises(ModuleFail) as failed:
        run_module(bpf_build, {"src": src, "dest_dir": out_dir, "arch": "ppc64le"})
    assert "x86_64 and aarch64 hosts only" in failed.value.result["msg"]
