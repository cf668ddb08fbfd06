# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The oldest kernel whose verifier accepts the enforcer's object, from what its instructions use.
tests/unit/test_kernel_floor.py disassembles the object and checks that lsm.MIN_KERNEL is the
newest floor below; a helper missing from HELPER_FLOORS fails it until its version is added."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

# Helper id (include/uapi/linux/bpf.h __BPF_FUNC_MAPPER) -> (name, first kernel with it for these programs).
HELPER_FLOORS = {
    1: ("map_lookup_elem", (3, 19)), 2: ("map_update_elem", (3, 19)), 3: ("map_delete_elem", (3, 19)),
    5: ("ktime_get_ns", (4, 1)), 14: ("get_current_pid_tgid", (4, 2)), 15: ("get_current_uid_gid", (4, 2)),
    16: ("get_current_comm", (4, 2)), 93: ("spin_lock", (5, 1)), 94: ("spin_unlock", (5, 1)),
    113: ("probe_read_kernel", (5, 5)), 130: ("ringbuf_output", (5, 8)), 131: ("ringbuf_reserve", (5, 8)),
    132: ("ringbuf_submit", (5, 8)), 133: ("ringbuf_discard", (5, 8)), 145: ("inode_storage_get", (5, 10)),
    156: ("task_storage_get", (5, 11)), 158: ("get_current_task_btf", (5, 11)),
    175: ("task_pt_regs", (5, 15)),  # dd6e10fbd9fb "bpf: Add bpf_task_pt_regs() helper"
    181: ("loop", (5, 17)),  # e6f2dd0f8067 "bpf: Add bpf_loop helper"
}
# BPF_ATOMIC with BPF_FETCH (atomic_fetch_add, xchg, cmpxchg): 5.12 ("bpf: Add BPF_FETCH field /
# create atomic_fetch_add instruction", "bpf: Add instructions for atomic_[cmp]xchg"); a plain
# `lock +=` (BPF_XADD) is older.
ATOMIC_FETCH_FLOOR = (5, 12)
_ATOMIC_FETCH = re.compile(r"\b(?:xchg|cmpxchg|xchg32|cmpxchg32|atomic_fetch_\w+)(?:_64)?\(")
_CALL = re.compile(r"\bcall (\d+)$", re.M)


def features(disassembly):
    """{feature: floor} of `llvm-objdump -d` output; unknown helpers map to None."""
    found = {}
    for helper in set(int(n) for n in _CALL.findall(disassembly)):
        name, floor = HELPER_FLOORS.get(helper, ("helper %d" % helper, None))
        found["bpf_" + name] = floor
    if _ATOMIC_FETCH.search(disassembly):
        found["atomic exchange/fetch instructions"] = ATOMIC_FETCH_FLOOR
    return found


def floor(found):
    """(version, the features that need it) of features()' result."""
    newest = max(v for v in found.values() if v is not None)
    return newest, sorted(k for k, v in found.items() if v == newest)
