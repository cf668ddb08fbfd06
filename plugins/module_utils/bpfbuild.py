# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile bpf/ into a CO-RE object; skipped when the sources haven't changed."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import subprocess
import tempfile

SOURCE = "bpfquota.bpf.c"
CLANG_ARGS = ("-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86", "-Wall", "-Werror")


class BuildError(Exception):
    pass


def sources_digest(src_dir, clang_args=CLANG_ARGS):
    """Hash of every source and the compiler flags: the object's identity."""
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


def build(src_dir, out_path, clang=None, extra_args=()):
    """Build unless `out_path` was built from the same sources. Returns {changed, path, sha256, digest}."""
    clang_args = list(CLANG_ARGS) + list(extra_args)
    digest = sources_digest(src_dir, clang_args)
    stamp = out_path + ".digest"
    if os.path.isfile(out_path) and os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == digest:
                return {"changed": False, "path": out_path, "sha256": _sha256(out_path), "digest": digest}
    clang = clang or find_clang()
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".o")
    os.close(fd)
    try:
        try:
            proc = subprocess.run(clang_command(clang, src_dir, tmp, clang_args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True, check=False)
        except OSError as e:
            raise BuildError("can't run clang %s: %s; install clang or give the right path" % (clang, e.strerror))
        if proc.returncode != 0:
            if "No available targets are compatible" in proc.stderr or "unknown target" in proc.stderr:
                raise BuildError("%s has no BPF target: install a clang built with the BPF backend "
                                 "(Debian/Ubuntu's clang has it)" % clang)
            raise BuildError("clang failed (rc %d):\n%s" % (proc.returncode, proc.stderr.strip()))
        os.rename(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return {"changed": True, "path": out_path, "sha256": _sha256(out_path), "digest": digest}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read())
    return digest.hexdigest()
