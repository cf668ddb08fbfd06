# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every function the program attaches to, checked against the BTF of each supported Debian
kernel (scripts/fetch-btf.py downloads and caches it): it exists, the arguments the program
declares or reads from ctx are the prototype's, and the inode_setattr layout the loader picks
from the hook's own prototype (hookbtf, the code the loader runs) is the one the kernel has.
Without the BTF these tests fail (not skip), saying how to get it."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess
import sys

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import hookbtf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "bpf", "bpfquota.bpf.c")
FETCH = os.path.join(ROOT, "scripts", "fetch-btf.py")
# kernel -> where inode_setattr's (dentry, iattr) starts, as the kernel's sources say (6.8 added idmap).
KERNELS = {
    "debian12-amd64": 0,
    "debian12-arm64": 0,
    "debian12-backports-amd64": 1,
    "debian13-amd64": 1,
    "debian13-arm64": 1,
}

_PROGRAM = re.compile(r'SEC\("(lsm|fentry|fexit)/(\w+)"\)\s*\nint\s+(?:BPF_PROG\(\s*(\w+)\s*,([^)]*)\)|(\w+)\(unsigned long long \*ctx\))'
                      r'(.*?)\n}', re.S)
_CTX_READ = re.compile(r"\(((?:struct \w+ \*)|int|long)\)ctx\[(\d+)\]")


def programs(source):
    """[(kind, target, program, declared args [(type, name)] or None, body)] of the BPF source."""
    found = []
    for kind, target, name, args, raw_name, body in _PROGRAM.findall(source):
        declared = None
        if name:
            declared = [_split_arg(a) for a in args.split(",") if a.strip()]
        found.append((kind, target, name or raw_name, declared, body))
    return found


# C's spellings of one integer type -> the one BTF (pahole) gives it.
_BTF_SPELLING = {"unsigned long": "long unsigned int", "long": "long int", "unsigned": "unsigned int",
                 "unsigned long long": "long long unsigned int", "long long": "long long int"}


def _split_arg(text):
    """'const loff_t *ppos' -> ('loff_t *', 'ppos'): the spelling hookbtf gives (no qualifiers)."""
    text = " ".join(text.replace("const ", "").split())
    match = re.match(r"(.*?)\s*(\**)\s*(\w+)$", text)
    base, stars = _BTF_SPELLING.get(match.group(1), match.group(1)), match.group(2)
    return (base + (" " + stars if stars else ""), match.group(3))


def attach_function(kind, target):
    return hookbtf.lsm_function(target) if kind == "lsm" else target


def problems(btf, source):
    """What doesn't fit the kernel whose BTF `btf` is: one line per program."""
    found = []
    for kind, target, name, declared, body in programs(source):
        params = btf.func_params(attach_function(kind, target))
        if params is None:
            found.append("%s: %s/%s does not exist in this kernel" % (name, kind, target))
            continue
        args, ret = [pair[1] for pair in params[:-1]], params[-1][1]
        if declared is not None:
            want = args + [ret] if kind == "fexit" else args
            have = [pair[0] for pair in declared]
            # fexit: every argument, then the return value; lsm/fentry: a prefix of the arguments.
            if (kind == "fexit" and have != want) or (kind != "fexit" and have != want[:len(have)]):
                returns = " -> " + ret if kind == "fexit" else ""
                found.append("%s: declares (%s), %s is (%s)%s" % (name, ", ".join(have), target, ", ".join(args), returns))
        elif target != "inode_setattr":  # its layout is the loader's choice: test_setattr_layout
            for cast, index in _CTX_READ.findall(body):
                index = int(index)
                if cast.endswith("*"):
                    ok = index < len(args) and args[index] == cast
                else:  # an integer read in an fexit program: the return value, after the arguments
                    ok = kind == "fexit" and index == len(args)
                if not ok:
                    found.append("%s: reads ctx[%d] as %s, %s is (%s) -> %s"
                                 % (name, index, cast, target, ", ".join(args), ret))
    return found


@pytest.fixture(scope="module")
def btf_paths():
    proc = subprocess.run([sys.executable, FETCH] + list(KERNELS), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode:
        pytest.fail("the kernels' BTF could not be had: %s\nfix: run `python3 scripts/fetch-btf.py` as root "
                    "with Debian's archive reachable (it caches under /var/tmp/bpfquota-btf)" % proc.stderr.strip())
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


@pytest.fixture(scope="module")
def source():
    with open(SOURCE) as f:
        return f.read()


def test_source_parsed(source):
    """The parser sees every program (a SEC line it misses would go unchecked)."""
    assert len(programs(source)) == source.count('SEC("lsm/') + source.count('SEC("fentry/') + \
        source.count('SEC("fexit/')


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_every_program_fits(kernel, btf_paths, source):
    with hookbtf.KernelBtf(btf_paths[kernel]) as btf:
        assert problems(btf, source) == []


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_setattr_layout(kernel, btf_paths):
    """The loader's choice, from bpf_lsm_inode_setattr's prototype, is the kernel's layout; and
    the (dentry, iattr) pair it points at ends the parameter list."""
    with hookbtf.KernelBtf(btf_paths[kernel]) as btf:
        params = btf.func_params("bpf_lsm_inode_setattr")
        first = hookbtf.setattr_dentry_arg(params)
        assert hookbtf.rodata(btf) == hookbtf.RODATA.pack(first)
    assert first == KERNELS[kernel]
    assert [pair[1] for pair in params[first:]] == ["struct dentry *", "struct iattr *", "int"]


def test_problems_seen():
    """The check catches a missing target and a wrong ctx read (the shapes a kernel change takes)."""
    class Btf:
        @staticmethod
        def func_params(name):
            return {"vfs_mkdir": [("idmap", "struct mnt_idmap *"), ("dir", "struct inode *"),
                                  ("dentry", "struct dentry *"), ("mode", "umode_t"), ("return", "struct dentry *")]
                    }.get(name)
    src = ('SEC("fentry/do_clone_file_range")\nint BPF_PROG(a, struct file *f)\n{\n}\n'
           'SEC("fexit/vfs_mkdir")\nint b(unsigned long long *ctx)\n{\n\treturn (int)ctx[3];\n}\n')
    assert problems(Btf, src) == [
        "a: fentry/do_clone_file_range does not exist in this kernel",
        "b: reads ctx[3] as int, vfs_mkdir is (struct mnt_idmap *, struct inode *, struct dentry *, umode_t)"
        " -> struct dentry *",
    ]


def test_rodata_is_what_the_loader_writes(bpfquota_object):
    """The object's .rodata is exactly bq_setattr_dentry_arg (what set_rodata replaces whole)."""
    out = subprocess.run(["llvm-objdump", "-t", bpfquota_object], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    symbols = [line.split() for line in out.splitlines() if " .rodata" in line]
    assert [(s[0], s[-2], s[-1]) for s in symbols] == [
        ("0000000000000000", "%016x" % hookbtf.RODATA.size, "bq_setattr_dentry_arg")]


def pt_regs_members(btf_path):
    """The member names of the kernel's struct pt_regs, anonymous unions and structs flattened."""
    out = subprocess.run(["bpftool", "btf", "dump", "file", btf_path, "format", "c"], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    body = re.search(r"^struct pt_regs \{\n(.*?)^\};", out, re.S | re.M).group(1)
    return set(re.findall(r"(\w+)(?:\[\d+\])?;$", body, re.M))


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_syscall_registers_are_the_kernels(kernel, btf_paths):
    """write_kind reads the syscall's number and sixth argument from the task's pt_regs by the
    member names of vmlinux.h for the object's architecture (CO-RE relocates them by name):
    orig_ax and r9 on x86, syscallno and regs[] on arm64."""
    expected = {"syscallno", "regs"} if kernel.endswith("arm64") else {"orig_ax", "r9"}
    assert expected <= pt_regs_members(btf_paths[kernel])
