# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hooks' argument layouts, read from the kernel's BTF: the prototype of the function a
program attaches to (bpf_lsm_<hook> for an LSM hook), not the existence of some other type.

CO-RE can't do this with the clang the build supports (14: no bpf_core_type_matches, and field
or type-existence relocations don't look into a function prototype), so the loader reads the
prototype here and hands the layout to the program as a read-only global (bq_setattr_dentry_arg);
the verifier prunes the other layout's branch. The unit tests run the same code over the BTF of
every supported kernel (scripts/fetch-btf.py)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import errno
import struct

from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf

# BTF kinds (include/uapi/linux/btf.h): stable ABI.
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO = 9, 10, 11, 12, 13
KIND_FLOAT, KIND_TYPE_TAG, KIND_ENUM64 = 16, 18, 19
_MODIFIERS = (KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)
_TAGGED = {KIND_STRUCT: "struct ", KIND_UNION: "union ", KIND_ENUM: "enum ", KIND_ENUM64: "enum "}

# What the .rodata of bpf/bpfquota.bpf.c holds, in order: the layouts the loader chose.
RODATA = struct.Struct("=I")  # bq_setattr_dentry_arg


class LayoutError(Exception):
    """A hook whose prototype matches none of the layouts the program knows."""


class KernelBtf:
    """A kernel's BTF (the running one's, or a file's) opened with libbpf; close() frees it."""

    def __init__(self, path=None, lib=None):
        self._lib = lib or libbpf.libbpf()
        self._btf = self._lib.btf__parse(path.encode(), None) if path else self._lib.btf__load_vmlinux_btf()
        if not self._btf:
            raise libbpf.LibbpfError("can't read the kernel's BTF%s: the kernel needs CONFIG_DEBUG_INFO_BTF=y"
                                     % (" from " + path if path else ""), ctypes.get_errno() or errno.ENOENT)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._btf:
            self._lib.btf__free(self._btf)
            self._btf = None

    def _type(self, type_id):
        """(kind, name, size_or_type, vlen, members as (name_off, type) pairs) of a type id."""
        head = ctypes.cast(self._lib.btf__type_by_id(self._btf, type_id), ctypes.POINTER(ctypes.c_uint32 * 3))[0]
        name_off, info, size_or_type = head
        kind, vlen = (info >> 24) & 0x1f, info & 0xffff
        pairs = []
        if kind == KIND_FUNC_PROTO and vlen:
            words = ctypes.cast(self._lib.btf__type_by_id(self._btf, type_id),
                                ctypes.POINTER(ctypes.c_uint32 * (3 + 2 * vlen)))[0]
            pairs = [(words[3 + 2 * i], words[4 + 2 * i]) for i in range(vlen)]
        return kind, self._name(name_off), size_or_type, pairs

    def _name(self, offset):
        name = self._lib.btf__name_by_offset(self._btf, offset)
        return name.decode() if name else ""

    def type_name(self, type_id):
        """A C spelling of the type without qualifiers: 'struct dentry *', 'loff_t', 'int'."""
        if type_id == 0:
            return "void"
        kind, name, ref = self._type(type_id)[:3]
        if kind in _MODIFIERS:
            return self.type_name(ref)
        if kind == KIND_PTR:
            return self.type_name(ref) + " *"
        if kind == KIND_FUNC_PROTO:
            return "function"
        return _TAGGED.get(kind, "") + (name or "(anonymous)")

    def func_params(self, name):
        """[(parameter name, type spelling)] of kernel function `name`, plus ('return', type); None if absent."""
        type_id = self._lib.btf__find_by_name_kind(self._btf, name.encode(), KIND_FUNC)
        if type_id <= 0:
            return None
        proto_id = self._type(type_id)[2]
        ret, params = self._type(proto_id)[2:]
        return [(self._name(n), self.type_name(t)) for n, t in params] + [("return", self.type_name(ret))]


def lsm_function(hook):
    """The function a BPF LSM program on `hook` attaches to (kernel/bpf/bpf_lsm.c)."""
    return "bpf_lsm_" + hook


def setattr_dentry_arg(params):
    """Where inode_setattr's (dentry, iattr) pair starts: 0 before Linux 6.8, 1 once the hook
    gained a leading `struct mnt_idmap *` (6.8: 'security: Align inode_setattr hook definition
    with EVM'). `params` is func_params('bpf_lsm_inode_setattr')."""
    if params is None:
        raise LayoutError("the kernel has no inode_setattr LSM hook (bpf_lsm_inode_setattr): "
                          "it needs CONFIG_BPF_LSM=y")
    types = [t for n, t in params if n != "return"]
    for first in (0, 1):
        if types[first:] == ["struct dentry *", "struct iattr *"] and (
                first == 0 or types[0] == "struct mnt_idmap *"):
            return first
    raise LayoutError("inode_setattr's prototype (%s) is none the program knows: "
                      "update bpf/bpfquota.bpf.c and hookbtf.py for this kernel" % ", ".join(types))


def rodata(btf):
    """The .rodata the loader gives the program on the kernel whose BTF `btf` is."""
    return RODATA.pack(setattr_dentry_arg(btf.func_params(lsm_function("inode_setattr"))))
