# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""events.py: denial log lines, the event codec, and EventReader on a real ring buffer.

The ring buffer test loads bpf/events.bpf.c (a tracing program, no LSM needed): it writes one
struct bq_event from bpf/bpfquota.h per exec of a uniquely named copy of /bin/true.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import itertools
import os
import platform
import select
import shutil
import subprocess

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout, libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.bpffs import ensure_bpffs
from ansible_collections.bpfquota.nfs.plugins.module_utils.events import EventReader

HERE = os.path.dirname(os.path.abspath(__file__))
BPFFS = "/sys/fs/bpf"
COMMAND = "bqtest_event"
EDQUOT, EXDEV = 122, 18

_numbers = itertools.count()


def event(**fields):
    values = dict(ts_ns=1, pid=4321, uid=1000, vol_id=7, op=layout.OPS.index("write"), ret=-EDQUOT,
                  mode=layout.MODES["enforce"], comm="dd")
    values.update(fields)
    return layout.Event(**values)


# --- unpack_event -------------------------------------------------------------------------

def pack(ev, comm_bytes):
    return layout.EVENT.pack(ev.ts_ns, ev.pid, ev.uid, ev.vol_id, ev.op, ev.ret, ev.mode, comm_bytes)


def test_event_record_is_the_size_of_struct_bq_event():
    # u64 ts_ns, u32 pid, uid, vol_id, op, s32 ret, u32 mode, char comm[16]
    assert layout.EVENT.size == 8 + 6 * 4 + 16 == 48


def test_unpack_event_round_trip():
    ev = event(ts_ns=2 ** 64 - 1, pid=2 ** 32 - 1, uid=65534, vol_id=layout.MAX_VOLUMES,
               op=layout.OPS.index("mmap"), ret=-EXDEV, mode=layout.MODES["audit"], comm="python3")
    assert layout.unpack_event(pack(ev, b"python3")) == ev


def test_unpack_event_comm_edge_cases():
    base = event(comm="")
    assert layout.unpack_event(pack(base, b"")).comm == ""
    assert layout.unpack_event(pack(base, b"exactly16chars!!")).comm == "exactly16chars!!"  # no NUL
    assert layout.unpack_event(pack(base, b"ab\0garbage")).comm == "ab"  # what follows the NUL is stale
    assert layout.unpack_event(pack(base, b"caf\xc3\xa9\xff")).comm == "caf\u00e9\ufffd"


def test_unpack_event_ignores_trailing_bytes_and_rejects_short_records():
    ev = event()
    assert layout.unpack_event(pack(ev, b"dd") + b"\x99" * 8) == ev
    with pytest.raises(Exception):
        layout.unpack_event(pack(ev, b"dd")[:-1])


# --- EventReader on a real ring buffer ----------------------------------------------------

@pytest.fixture(scope="module")
def events_object(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not found")
    out = str(tmp_path_factory.mktemp("bpf") / "events.bpf.o")
    multiarch = "/usr/include/%s-linux-gnu" % platform.machine()
    includes = ["-I" + multiarch] if os.path.isdir(multiarch) else []
    subprocess.run([clang, "-g", "-O2", "-target", "bpf"] + includes
                   + ["-c", os.path.join(HERE, "bpf", "events.bpf.c"), "-o", out], check=True)
    return out


@pytest.fixture
def command(tmp_path):
    path = str(tmp_path / COMMAND)
    shutil.copy("/bin/true", path)
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def pin_dir():
    ensure_bpffs(BPFFS)
    path = os.path.join(BPFFS, "bpfquota-test-%d-ev%d" % (os.getpid(), next(_numbers)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        assert not os.path.exists(path)


def set_filter(obj, comm, vol_id, op, ret, mode):
    import struct
    value = struct.pack("=16sIIiI", comm.encode(), vol_id, op, ret, mode)
    libbpf.map_update(obj.map_fd("ev_filter"), layout.U32.pack(0), value)


def wait_readable(fd, seconds=5.0):
    ready, writable, exceptional = select.select([fd], [], [], seconds)
    return bool(ready)


def test_event_reader_delivers_kernel_records(events_object, command, pin_dir):
    received = []
    with libbpf.BpfObject.open(events_object) as obj:
        obj.set_pin_path("events", os.path.join(pin_dir, "events"))
        obj.load()
        reader = EventReader(received.append, pin_dir)
        try:
            with obj.attach("emit_event"):
                set_filter(obj, COMMAND, 12, layout.OPS.index("create"), -EDQUOT, layout.MODES["enforce"])
                first = subprocess.Popen([command])
                first.wait()
                set_filter(obj, COMMAND, 13, layout.OPS.index("truncate"), 0, layout.MODES["audit"])
                second = subprocess.Popen([command])
                second.wait()
                assert wait_readable(reader.epoll_fd())
                consumed = reader.consume()
            assert reader.consume() == 0
        finally:
            reader.close()
        reader.close()  # a second close is harmless

    assert consumed == 2
    assert [(e.pid, e.uid, e.vol_id, e.op, e.ret, e.mode, e.comm) for e in received] == [
        (first.pid, os.getuid(), 12, layout.OPS.index("create"), -EDQUOT, layout.MODES["enforce"], COMMAND),
        (second.pid, os.getuid(), 13, layout.OPS.index("truncate"), 0, layout.MODES["audit"], COMMAND),
    ]
    assert 0 < received[0].ts_ns <= received[1].ts_ns


def test_event_reader_without_a_pinned_ring_buffer_says_so(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(libbpf.LibbpfError) as info:
        EventReader(lambda e: None, str(tmp_path))
    assert "nothing is pinned at %s" % os.path.join(str(tmp_path), "events") in str(info.value)
