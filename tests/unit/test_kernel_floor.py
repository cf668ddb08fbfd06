# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lsm.MIN_KERNEL is what the built object needs: the newest floor of the helpers and instructions its
disassembly shows (kernelfloor), so a new helper or instruction can't silently raise it."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess

from ansible_collections.bpfquota.nfs.plugins.module_utils import kernelfloor, lsm


def disassemble(path):
    return subprocess.run(["llvm-objdump", "-d", path], stdout=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout


def test_min_kernel_is_the_objects_floor(bpfquota_object):
    found = kernelfloor.features(disassemble(bpfquota_object))
    unknown = sorted(k for k, v in found.items() if v is None)
    assert unknown == [], "add these helpers' first kernel to kernelfloor.HELPER_FLOORS"
    version, needing = kernelfloor.floor(found)
    assert lsm.MIN_KERNEL == version, "the object needs %s (%s): set lsm.MIN_KERNEL and MIN_KERNEL_WHY" % (
        version, ", ".join(needing))
    assert needing[0] in lsm.MIN_KERNEL_WHY


def test_atomic_exchange_needs_5_12():
    """The object's xchg (account_size) and fetch-add with a result need BPF_FETCH: 5.12, above BPF LSM's 5.7."""
    text = "r4 = xchg_64(r6 + 32, r4)\nr2 = atomic_fetch_add((u64 *)(r0 + 136), r2)\ncall 1\n"
    assert kernelfloor.features(text) == {"bpf_map_lookup_elem": (3, 19),
                                          "atomic exchange/fetch instructions": (5, 12)}
    assert kernelfloor.floor(kernelfloor.features("lock *(u64 *)(r1 + 0) += r2\ncall 1\n")) == (
        (3, 19), ["bpf_map_lookup_elem"])


def test_unknown_helper_is_reported():
    assert kernelfloor.features("call 999\n") == {"bpf_helper 999": None}
