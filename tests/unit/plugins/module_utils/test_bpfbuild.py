# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""bpfbuild.py: builds skipped while the sources are unchanged, rebuilt when they change, and
clear BuildErrors. Uses the real clang on a copy of bpf/ (and on a tiny program, for speed), and
fake clang scripts for the failures that a working clang can't produce."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import stat

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import bpfbuild
from ansible_collections.bpfquota.nfs.plugins.module_utils.bpfbuild import BuildError, build, sources_digest

HERE = os.path.dirname(os.path.abspath(__file__))
BPF_SRC = os.path.abspath(os.path.join(HERE, "..", "..", "..", "..", "bpf"))

TINY_SOURCE = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "tiny.h"

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp/sys_enter")
int tiny(void *ctx)
{
\treturn TINY_VALUE;
}
"""


@pytest.fixture(scope="module")
def clang():
    path = shutil.which("clang")
    if path is None:
        pytest.skip("clang not found")
    return path


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


@pytest.fixture
def tiny(tmp_path):
    """A source directory holding a small bpfquota.bpf.c that compiles fast."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(BPF_SRC, "vmlinux.h"), str(src / "vmlinux.h"))
    write(str(src / bpfbuild.SOURCE), TINY_SOURCE)
    write(str(src / "tiny.h"), "#define TINY_VALUE 0\n")
    return str(src)


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".o") and name.startswith("tmp"))


def read(path):
    with open(path) as f:
        return f.read()


def test_real_sources_build_once_and_rebuild_after_a_change(clang, tmp_path):
    src = str(tmp_path / "bpf")
    shutil.copytree(BPF_SRC, src, ignore=shutil.ignore_patterns("prebuilt"))
    out = str(tmp_path / "out" / "bpfquota.bpf.o")

    first = build(src, out)
    assert first["changed"] is True and first["path"] == out
    assert first["digest"] == sources_digest(src, bpfbuild.CLANG_ARGS)
    assert read(out + ".digest") == first["digest"] + "\n"
    with open(out, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    before = os.stat(out)

    again = build(src, out)
    assert again == dict(first, changed=False)
    after = os.stat(out)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not even rewritten

    append(os.path.join(src, bpfbuild.SOURCE), '\nchar bq_test_rebuilt[] SEC(".bpfquota.test") = "yes";\n')
    changed = build(src, out)
    assert changed["changed"] is True
    assert changed["digest"] != first["digest"] and changed["sha256"] != first["sha256"]
    assert read(out + ".digest") == changed["digest"] + "\n"
    assert leftovers(os.path.dirname(out)) == []


def test_digest_covers_c_and_h_sources_and_the_flags_only(tiny):
    base = sources_digest(tiny)
    write(os.path.join(tiny, "README.md"), "notes\n")
    write(os.path.join(tiny, "other.txt"), "x\n")
    assert sources_digest(tiny) == base
    append(os.path.join(tiny, "tiny.h"), "/* a comment is a change */\n")
    edited = sources_digest(tiny)
    assert edited != base
    assert sources_digest(tiny, list(bpfbuild.CLANG_ARGS) + ["-DX=1"]) != edited
    write(os.path.join(tiny, "new.h"), "")
    assert sources_digest(tiny) != edited
    os.rename(os.path.join(tiny, "new.h"), os.path.join(tiny, "renamed.h"))
    assert sources_digest(tiny) not in (edited, base)


def test_a_header_change_rebuilds(clang, tiny, tmp_path):
    out = str(tmp_path / "o" / "tiny.o")
    first = build(tiny, out)
    assert build(tiny, out)["changed"] is False
    write(os.path.join(tiny, "tiny.h"), "#define TINY_VALUE 1\n")
    second = build(tiny, out)
    assert second["changed"] is True and second["sha256"] != first["sha256"]
    assert build(tiny, out)["changed"] is False


def test_a_missing_stamp_or_object_rebuilds(clang, tiny, tmp_path):
    out = str(tmp_path / "tiny.o")
    build(tiny, out)
    os.unlink(out + ".digest")
    assert build(tiny, out)["changed"] is True
    os.unlink(out)
    assert build(tiny, out)["changed"] is True
    write(out + ".digest", "0" * 64 + "\n")  # another build's stamp
    assert build(tiny, out)["changed"] is True


def test_extra_args_are_part_of_the_identity(clang, tiny, tmp_path):
    out = str(tmp_path / "tiny.o")
    plain = build(tiny, out)
    tagged = build(tiny, out, extra_args=['-DTINY_TAG="t1"'])
    assert tagged["changed"] is True and tagged["digest"] != plain["digest"]
    assert build(tiny, out, extra_args=['-DTINY_TAG="t1"'])["changed"] is False
    assert build(tiny, out)["changed"] is True


def test_a_compile_error_is_a_build_error_with_clangs_message(clang, tiny, tmp_path):
    append(os.path.join(tiny, bpfbuild.SOURCE), "int broken(void) { return undeclared_thing; }\n")
    out_dir = tmp_path / "out"
    out = str(out_dir / "tiny.o")
    with pytest.raises(BuildError) as info:
        build(tiny, out)
    message = str(info.value)
    assert message.startswith("clang failed (rc 1):\n")
    assert "undeclared_thing" in message and "error:" in message and bpfbuild.SOURCE in message
    assert not os.path.exists(out) and not os.path.exists(out + ".digest")
    assert leftovers(str(out_dir)) == []


def test_a_warning_fails_the_build(clang, tiny, tmp_path):
    write(os.path.join(tiny, bpfbuild.SOURCE), TINY_SOURCE.replace("return TINY_VALUE;", "int unused; return TINY_VALUE;"))
    with pytest.raises(BuildError) as info:
        build(tiny, str(tmp_path / "tiny.o"))
    assert "unused" in str(info.value)


def test_a_failed_rebuild_keeps_the_previous_object(clang, tiny, tmp_path):
    out = str(tmp_path / "tiny.o")
    good = build(tiny, out)
    source = os.path.join(tiny, bpfbuild.SOURCE)
    write(source, TINY_SOURCE + "this is not C\n")
    with pytest.raises(BuildError):
        build(tiny, out)
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == good["sha256"]
    assert read(out + ".digest") == good["digest"] + "\n"
    with pytest.raises(BuildError):  # still broken: no stale "up to date"
        build(tiny, out)
    write(source, TINY_SOURCE)
    assert build(tiny, out) == dict(good, changed=False)
    assert leftovers(str(tmp_path)) == []


def test_no_clang_on_the_path_says_how_to_install_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out_dir = tmp_path / "never-created"
    with pytest.raises(BuildError) as info:
        build(tiny, str(out_dir / "tiny.o"))
    assert str(info.value).startswith("clang not found: install clang")
    assert not out_dir.exists()


def test_an_up_to_date_build_needs_no_clang(clang, tiny, tmp_path, monkeypatch):
    out = str(tmp_path / "tiny.o")
    first = build(tiny, out)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert build(tiny, out) == dict(first, changed=False)


def fake_clang(tmp_path, script):
    path = str(tmp_path / "fake-clang")
    write(path, "#!/bin/sh\n" + script, mode=stat.S_IRWXU)
    return path


def test_a_clang_without_the_bpf_target(tiny, tmp_path):
    clang = fake_clang(tmp_path, "echo \"error: unable to create target: 'No available targets are "
                                 "compatible with triple \\\"bpf\\\"'\" >&2\nexit 1\n")
    with pytest.raises(BuildError) as info:
        build(tiny, str(tmp_path / "tiny.o"), clang=clang)
    assert str(info.value) == ("%s has no BPF target: install a clang built with the BPF backend "
                               "(Debian/Ubuntu's clang has it)" % clang)
    assert leftovers(str(tmp_path)) == []


def test_the_clang_command_line(tiny, tmp_path):
    argv_file = str(tmp_path / "argv")
    # Records its arguments one per line and writes the -o file like clang.
    clang = fake_clang(tmp_path, 'for a in "$@"; do echo "$a"; done > %s\n'
                                 'while [ $# -gt 1 ]; do if [ "$1" = -o ]; then echo obj > "$2"; fi; shift; done\n'
                       % argv_file)
    out = str(tmp_path / "deep" / "er" / "tiny.o")
    result = build(tiny, out, clang=clang, extra_args=["-DA=1"])
    argv = read(argv_file).splitlines()
    tmp_object = argv[-1]
    assert argv == list(bpfbuild.CLANG_ARGS) + ["-DA=1", "-I" + tiny, "-c", os.path.join(tiny, bpfbuild.SOURCE),
                                                "-o", tmp_object]
    assert "-target" in argv and argv[argv.index("-target") + 1] == "bpf"
    assert os.path.dirname(tmp_object) == os.path.dirname(out)  # renamed into place: atomic
    assert not os.path.exists(tmp_object)
    assert read(out) == "obj\n"
    assert result["changed"] is True
    assert result["digest"] == sources_digest(tiny, list(bpfbuild.CLANG_ARGS) + ["-DA=1"])


def test_a_clang_that_cannot_run_leaves_nothing_behind(tiny, tmp_path):
    with pytest.raises((BuildError, OSError)):
        build(tiny, str(tmp_path / "tiny.o"), clang=str(tmp_path / "no-such-clang"))
    assert os.listdir(str(tmp_path)) == ["src"]


def test_a_clang_path_that_does_not_exist_is_a_build_error(tiny, tmp_path):
    missing = str(tmp_path / "no-such-clang")
    with pytest.raises(BuildError) as info:
        build(tiny, str(tmp_path / "tiny.o"), clang=missing)
    assert missing in str(info.value)


def test_a_matching_prebuilt_object_stands_in_for_clang(clang, tiny, tmp_path, monkeypatch):
    prebuilt = build(tiny, os.path.join(tiny, bpfbuild.PREBUILT), prebuilt=False)
    assert prebuilt["prebuilt"] is False and bpfbuild.prebuilt_object(tiny, prebuilt["digest"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = str(tmp_path / "out" / "tiny.o")
    copied = build(tiny, out)
    assert copied == dict(prebuilt, path=out, prebuilt=True)
    assert read(out + ".digest") == prebuilt["digest"] + "\n"
    assert build(tiny, out) == dict(copied, changed=False, prebuilt=False)
    assert leftovers(os.path.dirname(out)) == []


def test_a_prebuilt_object_only_stands_in_for_its_own_sources_and_flags(clang, tiny, tmp_path, monkeypatch):
    prebuilt = build(tiny, os.path.join(tiny, bpfbuild.PREBUILT), prebuilt=False)
    flagged = build(tiny, str(tmp_path / "flagged.o"), extra_args=["-DTINY_EXTRA=1"])
    assert flagged["prebuilt"] is False and flagged["digest"] != prebuilt["digest"]
    assert build(tiny, str(tmp_path / "compiled.o"), prebuilt=False)["prebuilt"] is False

    append(os.path.join(tiny, "tiny.h"), "/* edited */\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError) as info:
        build(tiny, str(tmp_path / "stale.o"))
    assert str(info.value) == (
        "clang not found: install clang (Debian/Ubuntu: apt-get install clang libbpf-dev); the prebuilt object "
        "%s was built from other sources or flags (digest %s, these are %s)"
        % (os.path.join(tiny, bpfbuild.PREBUILT), prebuilt["digest"], sources_digest(tiny)))
    os.unlink(os.path.join(tiny, bpfbuild.PREBUILT))
    with pytest.raises(BuildError) as info:
        build(tiny, str(tmp_path / "stale.o"))
    assert str(info.value).endswith("; no prebuilt object at %s (a collection built by scripts/build-collection.sh "
                                    "carries one)" % os.path.join(tiny, bpfbuild.PREBUILT))


# --- target architectures: x86 (x86_64) and arm64 (aarch64)

@pytest.mark.parametrize("machine, arch", [("x86_64", "x86"), ("amd64", "x86"), ("x86", "x86"),
                                           ("aarch64", "arm64"), ("arm64", "arm64")])
def test_machine_names_map_to_target_architectures(machine, arch):
    assert bpfbuild.target_arch(machine) == arch
    assert "-D__TARGET_ARCH_%s" % arch in bpfbuild.clang_flags(machine)


def test_other_machines_are_a_build_error():
    for machine in ("ppc64le", "s390x", "", None):
        with pytest.raises(BuildError, match="x86_64 and aarch64 hosts only"):
            bpfbuild.clang_flags(machine)


def test_x86_keeps_the_flags_objects_were_built_with_before_arm64():
    assert bpfbuild.CLANG_ARGS == bpfbuild.clang_flags("x86") == (
        "-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86", "-Wall", "-Werror")
    assert bpfbuild.prebuilt_path("x86_64") == bpfbuild.PREBUILT
    assert bpfbuild.prebuilt_path("aarch64") == os.path.join("prebuilt", "bpfquota-arm64.bpf.o")
    assert bpfbuild.object_name("ab" * 32) == "bpfquota-%s.bpf.o" % ("ab" * 8)
    assert bpfbuild.object_name("ab" * 32, "aarch64") == "bpfquota-arm64-%s.bpf.o" % ("ab" * 8)


def test_real_sources_build_for_each_architecture_with_its_registers(clang, tmp_path):
    """The program reads a syscall's number and sixth argument from pt_regs: orig_ax and r9 on x86,
    syscallno and regs[] on arm64, relocated (CO-RE) by these names against the kernel's BTF."""
    src = str(tmp_path / "bpf")
    shutil.copytree(BPF_SRC, src, ignore=shutil.ignore_patterns("prebuilt"))
    x86 = build(src, str(tmp_path / "x86.o"), arch="x86_64")
    arm64 = build(src, str(tmp_path / "arm64.o"), arch="aarch64")
    assert (x86["arch"], arm64["arch"]) == ("x86", "arm64")
    assert x86["digest"] == sources_digest(src) != arm64["digest"] == sources_digest(src, bpfbuild.clang_flags("arm64"))
    with open(x86["path"], "rb") as f:
        x86_object = f.read()
    with open(arm64["path"], "rb") as f:
        arm64_object = f.read()
    assert b"orig_ax" in x86_object and b"syscallno" not in x86_object
    assert b"syscallno" in arm64_object and b"orig_ax" not in arm64_object
    # Switching the architecture of one path rebuilds it; building it again doesn't.
    assert build(src, x86["path"], arch="arm64")["changed"] is True
    assert build(src, x86["path"], arch="arm64")["changed"] is False


def test_a_prebuilt_object_stands_in_only_for_its_own_architecture(clang, tiny, tmp_path, monkeypatch):
    made = build(tiny, os.path.join(tiny, bpfbuild.prebuilt_path("x86")), prebuilt=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no clang from here on
    assert build(tiny, str(tmp_path / "x86.o"))["prebuilt"] is True
    with pytest.raises(BuildError, match="no prebuilt object at .*bpfquota-arm64.bpf.o"):
        build(tiny, str(tmp_path / "arm64.o"), arch="arm64")
    monkeypatch.undo()
    build(tiny, os.path.join(tiny, bpfbuild.prebuilt_path("arm64")), prebuilt=False, arch="arm64")
    monkeypatch.setenv("PATH", str(tmp_path))
    copied = build(tiny, str(tmp_path / "arm64.o"), arch="arm64")
    assert copied["prebuilt"] is True and copied["digest"] != made["digest"]
