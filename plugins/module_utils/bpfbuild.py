# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile bpf/ into a CO-RE object; skipped when the sources haven't changed.

A built collection (scripts/build-collection.sh) carries an object prebuilt from its sources in
bpf/prebuilt/, with the digest of the sources it came from beside it: a build whose sources and
flags have that digest copies it instead of compiling, so a controller without clang can build.

The object is built for one target architecture (x86 or arm64, clang's -D__TARGET_ARCH_*): the
program reads a syscall's number and arguments from the task's pt_regs, whose layout and numbers
differ. The architecture is part of the flags, so of the digest: each has its own object.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import subprocess
import tempfile

from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import file_sha256

SOURCE = "bpfquota.bpf.c"
PREBUILT = os.path.join("prebuilt", "bpfquota.bpf.o")  # relative to the source directory
# The target architectures (libbpf's __TARGET_ARCH_ names) and the machine names (uname -m, Ansible's
# architecture fact, Debian's architecture) that mean each.
ARCHES = {"x86": ("x86_64", "amd64", "x86"), "arm64": ("aarch64", "arm64")}
DEFAULT_ARCH = "x86"
COMMON_CLANG_ARGS = ("-g", "-O2", "-target", "bpf", "-mcpu=v3")


def target_arch(machine):
    """The target architecture (x86, arm64) for a machine name: x86_64 and amd64 are x86, aarch64 and
    arm64 are arm64. BuildError for any other."""
    for arch, names in ARCHES.items():
        if machine in names:
            return arch
    raise BuildError("bpfquota's BPF program is built for x86_64 and aarch64 hosts only, not %r" % (machine,))


def clang_flags(arch=DEFAULT_ARCH):
    """clang's flags for an object for `arch` (a target architecture or a machine name)."""
    return COMMON_CLANG_ARGS + ("-D__TARGET_ARCH_%s" % target_arch(arch), "-Wall", "-Werror")


def prebuilt_path(arch=DEFAULT_ARCH):
    """Where a collection artifact carries the object prebuilt for `arch`, relative to the sources:
    prebuilt/bpfquota.bpf.o (x86, the name it always had) and prebuilt/bpfquota-arm64.bpf.o."""
    arch = target_arch(arch)
    return PREBUILT if arch == DEFAULT_ARCH else os.path.join("prebuilt", "bpfquota-%s.bpf.o" % arch)


class BuildError(Exception):
    pass


CLANG_ARGS = clang_flags(DEFAULT_ARCH)  # x86's: an object's identity before the architecture was a choice


def sources_digest(src_dir, clang_args=CLANG_ARGS):
    """Hash of every source and the compiler flags (clang_flags(arch) and any extra): the object's
    identity."""
    digest = hashlib.sha256(" ".join(clang_args).encode())
    for name in sorted(os.listdir(src_dir)):
        if name.endswith((".c", ".h")):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(src_dir, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def clang_command(clang, src_dir, out_path, clang_args=CLANG_ARGS):
    return [clang] + list(clang_args) + ["-I" + src_dir, "-c", os.path.join(src_dir, SOURCE), "-o", out_path]


def find_clang():
    for name in ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    raise BuildError("clang not found: install clang (Debian/Ubuntu: apt-get install clang libbpf-dev)")


def object_name(digest, arch=DEFAULT_ARCH):
    """The file name of the object built from sources with this digest, in a directory shared by
    several versions of the sources (bpf_build's dest_dir): each version keeps its own object, and
    so does each architecture (the digest covers the flags; arm64's name says it too)."""
    arch = target_arch(arch)
    return "bpfquota-%s%s.bpf.o" % ("" if arch == DEFAULT_ARCH else arch + "-", digest[:16])


def read_stamp(object_path):
    """The digest `object_path` was built from (its `.digest` stamp), or None without a complete build."""
    if not os.path.isfile(object_path):
        return None
    try:
        with open(object_path + ".digest") as f:
            return f.read().strip() or None
    except (IOError, OSError):
        return None


def prebuilt_object(src_dir, digest, arch=DEFAULT_ARCH):
    """The object prebuilt into `src_dir` for `arch` (prebuilt_path) when it was built from `digest`,
    else None."""
    path = os.path.join(src_dir, prebuilt_path(arch))
    return path if read_stamp(path) == digest else None


def no_prebuilt_reason(src_dir, digest, arch=DEFAULT_ARCH):
    """Why no prebuilt object can stand in for a build of `digest` from `src_dir` for `arch`."""
    path = os.path.join(src_dir, prebuilt_path(arch))
    stamp = read_stamp(path)
    if stamp is None:
        return ("no prebuilt object at %s (a collection built by scripts/build-collection.sh carries one)" % path)
    return ("the prebuilt object %s was built from other sources or flags (digest %s, these are %s)"
            % (path, stamp, digest))


def find_clang_or_prebuilt_error(src_dir, digest, arch=DEFAULT_ARCH):
    """find_clang(), with why no prebuilt object could be used either when there is no clang."""
    try:
        return find_clang()
    except BuildError as e:
        raise BuildError("%s; %s" % (e, no_prebuilt_reason(src_dir, digest, arch)))


def build(src_dir, out_path, clang=None, extra_args=(), prebuilt=True, arch=DEFAULT_ARCH):
    """Build for `arch` (x86, arm64, or a machine name such as aarch64) unless `out_path` was built
    from the same sources and flags; with `prebuilt`, a matching prebuilt object (see
    prebuilt_object) is copied instead of compiling. Returns {changed, path, sha256, digest, prebuilt,
    arch}: prebuilt is True when `out_path` was copied from the prebuilt object."""
    arch = target_arch(arch)
    args = list(clang_flags(arch)) + list(extra_args)
    digest = sources_digest(src_dir, args)
    if read_stamp(out_path) == digest:
        return {"changed": False, "path": out_path, "sha256": file_sha256(out_path), "digest": digest,
                "prebuilt": False, "arch": arch}
    ready = prebuilt_object(src_dir, digest, arch) if prebuilt else None
    if ready is None:
        clang = clang or find_clang_or_prebuilt_error(src_dir, digest, arch)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".o")
    os.close(fd)
    try:
        if ready is not None:
            shutil.copyfile(ready, tmp)
        else:
            _compile(clang, src_dir, tmp, args)
        os.rename(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(out_path + ".digest", "w") as f:
        f.write(digest + "\n")
    return {"changed": True, "path": out_path, "sha256": file_sha256(out_path), "digest": digest,
            "prebuilt": ready is not None, "arch": arch}


def _compile(clang, src_dir, out_path, clang_args):
    try:
        proc = subprocess.run(clang_command(clang, src_dir, out_path, clang_args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=False)
    except OSError as e:
        raise BuildError("can't run clang %s: %s; install clang or give the right path" % (clang, e.strerror))
    if proc.returncode != 0:
        if "No available targets are compatible" in proc.stderr or "unknown target" in proc.stderr:
            raise BuildError("%s has no BPF target: install a clang built with the BPF backend "
                             "(Debian/Ubuntu's clang has it)" % clang)
        raise BuildError("clang failed (rc %d):\n%s" % (proc.returncode, proc.stderr.strip()))
