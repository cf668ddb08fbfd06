# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real (unmocked) tests of the libbpf ctypes layer and the bpffs mount helpers.

The BPF programs in bpf/ are compiled with clang once per session. The tests
that load them need root; the counter they read only counts execs of a copy of
/bin/true with a unique name, so other processes on the host don't disturb the
exact counts.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import itertools
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import time

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.bpffs import (
    ensure_bpffs,
    mounted_fstype,
)
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import (
    BPF_EXIST,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_NOEXIST,
    BpfObject,
    Libbpf,
    LibbpfError,
    LsmRefused,
    libbpf,
    link_info,
    map_batches,
    map_delete,
    map_delete_batch,
    map_info,
    map_keys,
    map_lookup,
    map_update,
    map_update_batch,
    num_possible_cpus,
    obj_get,
    obj_pin,
    prog_info,
)
from ansible_collections.bpfquota.nfs.plugins.module_utils.loader import replace_pinned_link
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import refusals_explained

HERE = os.path.dirname(os.path.abspath(__file__))
BPF_SOURCES = os.path.join(HERE, "bpf")
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
BPFFS = "/sys/fs/bpf"
COMMAND = "bqtest_true"  # the exec the counter program counts in exec_counts[1]
COUNT_MATCHING = 1

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="loading BPF programs, pinning in bpffs and mounting need root "
           "(CAP_BPF, CAP_SYS_ADMIN): run pytest as root",
)

_pin_dir_numbers = itertools.count()


def u32(value):
    return struct.pack("<I", value)


def u64(value):
    return struct.pack("<Q", value)


def comm_filter(command):
    return command.encode().ljust(16, b"\0")


# --- fixtures ---------------------------------------------------------------

def _clang_include_flags():
    # <linux/bpf.h> needs <asm/types.h>, which lives in the multiarch directory.
    multiarch = "/usr/include/%s-linux-gnu" % platform.machine()
    return ["-I" + multiarch] if os.path.isdir(multiarch) else []


@pytest.fixture(scope="session")
def bpf_objects(tmp_path_factory):
    """name -> compiled object path for every bpf/*.bpf.c."""
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not found: install clang to compile the BPF test programs")
    out_dir = tmp_path_factory.mktemp("bpf")
    objects = {}
    for source in sorted(os.listdir(BPF_SOURCES)):
        if source.endswith(".bpf.c"):
            name = source[:-len(".bpf.c")]
            objects[name] = str(out_dir / (name + ".bpf.o"))
            subprocess.run([clang, "-g", "-O2", "-target", "bpf"] + _clang_include_flags()
                           + ["-c", os.path.join(BPF_SOURCES, source), "-o", objects[name]],
                           check=True)
    return objects


@pytest.fixture(scope="session")
def bpffs():
    ensure_bpffs(BPFFS)
    return BPFFS


@pytest.fixture
def pin_dir(bpffs):
    path = os.path.join(bpffs, "bpfquota-test-%d-%d" % (os.getpid(), next(_pin_dir_numbers)))
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)  # unpinning detaches what the test left
        assert not os.path.exists(path)


@pytest.fixture(scope="session")
def command(tmp_path_factory):
    """A /bin/true whose exec the counter program recognizes by its name."""
    path = str(tmp_path_factory.mktemp("bin") / COMMAND)
    shutil.copy("/bin/true", path)
    os.chmod(path, 0o755)
    return path


def run(command, times=1):
    for dummy in range(times):
        subprocess.run([command], check=True)


def load_counter(object_path, pin_dir=None):
    """Loaded counter object filtering on COMMAND, with its maps pinned in pin_dir."""
    obj = BpfObject.open(object_path)
    if pin_dir:
        for name in ("exec_counts", "exec_filter"):
            obj.set_pin_path(name, os.path.join(pin_dir, name))
    obj.load()
    map_update(obj.map_fd("exec_filter"), u32(0), comm_filter(COMMAND))
    return obj


def matching_execs(counts_fd):
    return struct.unpack("<Q", map_lookup(counts_fd, u32(COUNT_MATCHING), 8))[0]


# Runs in a separate process that exits, leaving only the pins behind.
LOADER = """
import json, sys
from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import (
    BpfObject, link_info, map_update)
object_path, pin_dir, command = sys.argv[1:]
with BpfObject.open(object_path) as obj:
    for name in ("exec_counts", "exec_filter"):
        obj.set_pin_path(name, pin_dir + "/" + name)
    obj.load()
    map_update(obj.map_fd("exec_filter"), b"\\0" * 4, command.encode().ljust(16, b"\\0"))
    link = obj.attach("count_exec")
    link.pin(pin_dir + "/link")
    print(json.dumps(link_info(link.fd)))
    link.destroy()
"""


def load_in_subprocess(object_path, pin_dir):
    """Pin a counter link and its maps from a process that exits; the link's info."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, "-c", LOADER, object_path, pin_dir, COMMAND],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until_link_is_gone(link_id, timeout=5.0):
    # The kernel frees a link whose last reference was a pin from a work item.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            link_info(link_id=link_id)
        except LibbpfError as exc:
            assert exc.errno == errno.ENOENT
            return
        time.sleep(0.01)
    pytest.fail("link %d still exists %.0fs after losing its pin" % (link_id, timeout))


# --- loading libbpf ---------------------------------------------------------

def test_libbpf_is_a_cached_singleton_of_version_1_or_later():
    assert libbpf() is libbpf()
    assert libbpf().version >= (1, 0)


def test_missing_library_is_a_clear_error():
    with pytest.raises(LibbpfError) as raised:
        Libbpf(soname="libbpf-does-not-exist.so.1")
    assert raised.value.errno == errno.ENOENT
    assert "libbpf-does-not-exist.so.1 not found" in str(raised.value)
    assert "install the libbpf1 package (Debian/Ubuntu) or libbpf (RHEL/Fedora)" in str(raised.value)


def test_library_without_version_functions_is_too_old():
    with pytest.raises(LibbpfError) as raised:
        Libbpf(soname="libc.so.6")
    assert "bpfquota needs libbpf >= 1.0" in str(raised.value)


# --- opening objects (no kernel involved) -----------------------------------

def test_open_lists_maps_without_internal_ones_and_programs(bpf_objects):
    with BpfObject.open(bpf_objects["counter"]) as obj:
        assert obj.map_names() == ["exec_counts", "exec_filter", "percpu_execs", "scratch"]
        assert obj.program_names() == ["count_exec"]


def test_open_errors(bpf_objects, tmp_path):
    with pytest.raises(LibbpfError) as raised:
        BpfObject.open(str(tmp_path / "missing.bpf.o"))
    assert raised.value.errno == errno.ENOENT

    not_elf = tmp_path / "not-elf.bpf.o"
    not_elf.write_text(u"hello")
    with pytest.raises(LibbpfError) as raised:
        BpfObject.open(str(not_elf))
    assert "is not a proper ELF object" in str(raised.value)  # from libbpf's log


def test_unknown_names_unloaded_maps_and_closed_objects_are_errors(bpf_objects):
    obj = BpfObject.open(bpf_objects["counter"])
    with pytest.raises(LibbpfError) as raised:
        obj.set_pin_path("no_such_map", BPFFS + "/x")
    assert raised.value.errno == errno.ENOENT and "exec_counts" in str(raised.value)
    with pytest.raises(LibbpfError) as raised:
        obj.attach("no_such_program")
    assert raised.value.errno == errno.ENOENT and "count_exec" in str(raised.value)
    with pytest.raises(LibbpfError) as raised:
        obj.map_fd("scratch")
    assert "call load() first" in str(raised.value)
    obj.close()
    obj.close()  # idempotent
    with pytest.raises(LibbpfError) as raised:
        obj.map_names()
    assert raised.value.errno == errno.EBADF


# --- loading and attaching --------------------------------------------------

@needs_root
def test_load_attach_counts_execs(bpf_objects, command):
    with load_counter(bpf_objects["counter"]) as obj:
        counts_fd = obj.map_fd("exec_counts")
        with obj.attach("count_exec"):
            run(command, times=3)
            assert matching_execs(counts_fd) == 3
        run(command)  # destroyed link: detached
        assert matching_execs(counts_fd) == 3


@needs_root
def test_link_prog_and_map_info(bpf_objects):
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec") as link:
        link_by_fd = link_info(link.fd)
        assert link_info(link_id=link_by_fd["id"]) == link_by_fd
        program = prog_info(prog_id=link_by_fd["prog_id"])
        assert program["id"] == link_by_fd["prog_id"]
        assert program["name"] == "count_exec"
        assert len(program["tag"]) == 16 and int(program["tag"], 16) >= 0

        counts = map_info(obj.map_fd("exec_counts"))
        assert dict((key, counts[key]) for key in
                    ("type", "key_size", "value_size", "max_entries", "name")) == {
            "type": BPF_MAP_TYPE_ARRAY, "key_size": 4, "value_size": 8,
            "max_entries": 2, "name": "exec_counts"}
        assert map_info(map_id=counts["id"]) == counts

    with pytest.raises(LibbpfError) as raised:
        prog_info()
    assert raised.value.errno == errno.EINVAL


@pytest.fixture
def bpf_stats(request):
    """kernel.bpf_stats_enabled set for the test (the kernel's one switch: restored afterwards)."""
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path) as f:
        before = f.read().strip()

    def switch(on):
        with open(path, "w") as f:
            f.write("1" if on else "0")

    yield switch
    switch(before != "0")


@needs_root
def test_program_run_statistics_count_while_the_kernel_counts(bpf_objects, command, pin_dir, bpf_stats):
    from ansible_collections.bpfquota.nfs.plugins.module_utils.textfile import program_stats
    links = os.path.join(pin_dir, "links")
    os.mkdir(links)
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec") as link:
        obj_pin(link.fd, os.path.join(links, "count_exec"))
        prog_id = link_info(link.fd)["prog_id"]
        bpf_stats(False)
        before = prog_info(prog_id=prog_id)
        run(command, times=3)
        assert prog_info(prog_id=prog_id)["run_cnt"] == before["run_cnt"]  # not counted while off
        bpf_stats(True)
        run(command, times=3)
        after = prog_info(prog_id=prog_id)
        assert after["run_cnt"] >= before["run_cnt"] + 3  # every exec on the host runs it
        assert after["run_time_ns"] > before["run_time_ns"]
        stats = program_stats(links)
        assert list(stats) == ["count_exec"] and stats["count_exec"]["run_cnt"] >= after["run_cnt"]


@needs_root
def test_verifier_rejection_reports_the_verifier_log(bpf_objects):
    with BpfObject.open(bpf_objects["unverifiable"]) as obj:
        with pytest.raises(LibbpfError) as raised:
            obj.load()
    message = str(raised.value)
    assert raised.value.errno == errno.EACCES
    assert "the verifier rejected a program" in message
    assert "invalid mem access 'map_value_or_null'" in message  # the verifier's own line


@needs_root
def test_refused_lsm_program_explains_how_to_enable_bpf_lsm(bpf_objects):
    refused = explained = None
    with BpfObject.open(bpf_objects["lsm"]) as obj:
        try:
            obj.load()
        except LibbpfError as exc:
            refused = exc
        else:
            pytest.skip("this kernel accepts BPF LSM programs, so the refusal can't be provoked")
    with BpfObject.open(bpf_objects["lsm"]) as obj:
        try:
            with refusals_explained():
                obj.load()
        except LibbpfError as exc:
            explained = exc
    # libbpf names the refused programs; lsm knows why this host refuses them and the fix.
    assert isinstance(refused, LsmRefused) and refused.programs == ["allow_all"]
    for error in (refused, explained):
        message = str(error)
        assert error.errno == errno.EPERM
        assert "the kernel refused the LSM program allow_all" in message
        assert "BPF program load failed: Operation not permitted" in message  # libbpf's log tail
    message = str(explained)
    assert isinstance(explained, LsmRefused)
    assert "CONFIG_BPF_LSM=y" in message
    assert "'bpf' in the active LSM list (/sys/kernel/security/lsm)" in message


# --- pinning ----------------------------------------------------------------

@needs_root
def test_pinned_link_and_map_outlive_the_loading_process(bpf_objects, pin_dir, command):
    loaded_link = load_in_subprocess(bpf_objects["counter"], pin_dir)

    counts_fd = obj_get(os.path.join(pin_dir, "exec_counts"))
    link_fd = obj_get(os.path.join(pin_dir, "link"))
    try:
        assert link_info(link_fd) == loaded_link
        before = matching_execs(counts_fd)
        run(command, times=2)
        assert matching_execs(counts_fd) == before + 2
    finally:
        os.close(counts_fd)
        os.close(link_fd)


@needs_root
def test_set_pin_path_reuses_the_pinned_map(bpf_objects, pin_dir):
    with load_counter(bpf_objects["counter"], pin_dir) as first:
        pinned_id = map_info(first.map_fd("exec_filter"))["id"]
        scratch_id = map_info(first.map_fd("scratch"))["id"]
        map_update(first.map_fd("exec_filter"), u32(0), comm_filter("kept"))

    with BpfObject.open(bpf_objects["counter"]) as second:
        second.set_pin_path("exec_filter", os.path.join(pin_dir, "exec_filter"))
        second.load()
        assert map_info(second.map_fd("exec_filter"))["id"] == pinned_id
        assert map_lookup(second.map_fd("exec_filter"), u32(0), 16) == comm_filter("kept")
        assert map_info(second.map_fd("scratch"))["id"] != scratch_id  # not pinned: new map


@needs_root
def test_replace_pinned_link_swaps_without_a_gap(bpf_objects, pin_dir, command):
    link_pin = os.path.join(pin_dir, "link")
    old_link = load_in_subprocess(bpf_objects["counter"], pin_dir)

    with load_counter(bpf_objects["counter"], pin_dir) as obj, \
            obj.attach("count_exec") as new_link:
        counts_fd = obj.map_fd("exec_counts")  # the pinned map the old program counts into
        before = matching_execs(counts_fd)
        run(command)
        assert matching_execs(counts_fd) == before + 2  # both attached: no window without one
        replace_pinned_link(new_link, link_pin)
        new_link_id = link_info(new_link.fd)["id"]
    # Only the pins hold the new link and the maps now.

    wait_until_link_is_gone(old_link["id"])
    assert sorted(os.listdir(pin_dir)) == ["exec_counts", "exec_filter", "link"]
    link_fd = obj_get(link_pin)
    counts_fd = obj_get(os.path.join(pin_dir, "exec_counts"))
    try:
        assert link_info(link_fd)["id"] == new_link_id
        before = matching_execs(counts_fd)
        run(command)
        assert matching_execs(counts_fd) == before + 1  # only the new program is left
    finally:
        os.close(link_fd)
        os.close(counts_fd)


@needs_root
def test_replace_pinned_link_repins_an_already_pinned_link(bpf_objects, pin_dir):
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec") as link:
        link.pin(os.path.join(pin_dir, "first"))
        replace_pinned_link(link, os.path.join(pin_dir, "second"))
        link_id = link_info(link.fd)["id"]
    assert sorted(os.listdir(pin_dir)) == ["first", "second"]
    for name in ("first", "second"):
        link_fd = obj_get(os.path.join(pin_dir, name))
        try:
            assert link_info(link_fd)["id"] == link_id
        finally:
            os.close(link_fd)


@needs_root
def test_replace_pinned_link_creates_a_missing_pin_over_a_stale_temporary(bpf_objects, pin_dir):
    link_pin = os.path.join(pin_dir, "link")
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec") as link:
        obj_pin(obj.map_fd("scratch"), link_pin + "_new")  # left by an interrupted swap
        replace_pinned_link(link, link_pin)
        link_id = link_info(link.fd)["id"]
        assert link.pin_path == link_pin
    assert os.listdir(pin_dir) == ["link"]
    link_fd = obj_get(link_pin)
    try:
        assert link_info(link_fd)["id"] == link_id
    finally:
        os.close(link_fd)


@needs_root
def test_pin_errors(bpf_objects, pin_dir, tmp_path):
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec") as link, \
            obj.attach("count_exec") as other_link:
        link.pin(os.path.join(pin_dir, "link"))
        with pytest.raises(LibbpfError) as raised:
            other_link.pin(os.path.join(pin_dir, "link"))
        assert raised.value.errno == errno.EEXIST and "replace_pinned_link" in str(raised.value)
        with pytest.raises(LibbpfError) as raised:  # libbpf: one pin per link
            link.pin(os.path.join(pin_dir, "again"))
        assert raised.value.errno == errno.EBUSY and "obj_pin" in str(raised.value)
        obj_pin(link.fd, os.path.join(pin_dir, "again"))
        for not_allowed in (os.path.join(pin_dir, "dotted.name"), str(tmp_path / "not-bpffs")):
            with pytest.raises(LibbpfError) as raised:
                obj_pin(obj.map_fd("scratch"), not_allowed)
            assert raised.value.errno == errno.EPERM
            assert "may not contain '.'" in str(raised.value)


@needs_root
def test_obj_get_of_a_missing_pin_is_enoent(pin_dir):
    with pytest.raises(LibbpfError) as raised:
        obj_get(os.path.join(pin_dir, "missing"))
    assert raised.value.errno == errno.ENOENT
    assert "nothing is pinned at" in str(raised.value)


# --- map access -------------------------------------------------------------

@needs_root
def test_hash_map_round_trip(bpf_objects):
    with load_counter(bpf_objects["counter"]) as obj:
        fd = obj.map_fd("scratch")
        info = map_info(fd)
        assert (info["type"], info["key_size"], info["value_size"], info["max_entries"],
                info["name"]) == (BPF_MAP_TYPE_HASH, 4, 8, 4, "scratch")

        assert map_lookup(fd, u32(1), 8) is None
        assert map_delete(fd, u32(1)) is False
        assert list(map_keys(fd, 4)) == []

        map_update(fd, u32(1), u64(10))
        assert map_lookup(fd, u32(1), 8) == u64(10)
        map_update(fd, u32(1), u64(11), BPF_EXIST)
        assert map_lookup(fd, u32(1), 8) == u64(11)
        with pytest.raises(LibbpfError) as raised:
            map_update(fd, u32(1), u64(12), BPF_NOEXIST)
        assert raised.value.errno == errno.EEXIST
        with pytest.raises(LibbpfError) as raised:
            map_update(fd, u32(2), u64(12), BPF_EXIST)
        assert raised.value.errno == errno.ENOENT

        for key in (2, 3, 4):
            map_update(fd, u32(key), u64(key))
        with pytest.raises(LibbpfError) as raised:
            map_update(fd, u32(5), u64(5))
        assert raised.value.errno == errno.E2BIG and "map is full" in str(raised.value)
        assert sorted(map_keys(fd, 4)) == [u32(key) for key in (1, 2, 3, 4)]

        for key in map_keys(fd, 4):  # deleting the yielded key must not disturb iteration
            assert map_delete(fd, key) is True
        assert list(map_keys(fd, 4)) == []


@needs_root
def test_array_map_keys_and_delete(bpf_objects):
    with load_counter(bpf_objects["counter"]) as obj:
        fd = obj.map_fd("exec_counts")
        assert list(map_keys(fd, 4)) == [u32(0), u32(1)]
        assert map_lookup(fd, u32(2), 8) is None  # out of range
        with pytest.raises(LibbpfError) as raised:
            map_delete(fd, u32(0))
        assert raised.value.errno == errno.EINVAL


def batched_items(batches, key_size, value_size):
    """{key: value} of map_batches' output, checking each batch's sizes."""
    items = {}
    for keys, values, n in batches:
        assert (len(keys), len(values)) == (n * key_size, n * value_size)
        for i in range(n):
            items[keys[i * key_size:(i + 1) * key_size]] = values[i * value_size:(i + 1) * value_size]
    return items


@needs_root
def test_hash_map_batches(bpf_objects, monkeypatch):
    from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf as libbpf_module
    monkeypatch.setattr(libbpf_module, "_BATCH_BYTES", 12)  # one entry a call: several calls
    with load_counter(bpf_objects["counter"]) as obj:
        fd = obj.map_fd("scratch")
        assert list(map_batches(fd, 4, 8)) == []
        map_update_batch(fd, b"".join(u32(k) for k in (1, 2, 3)), b"".join(u64(k * 10) for k in (1, 2, 3)), 3)
        assert batched_items(map_batches(fd, 4, 8), 4, 8) == {u32(k): u64(k * 10) for k in (1, 2, 3)}
        with pytest.raises(LibbpfError) as raised:
            map_update_batch(fd, u32(4) + u32(5), u64(4) + u64(5), 2)  # 4 fits, 5 doesn't
        assert raised.value.errno == errno.E2BIG and "at entry 1 of 2" in str(raised.value)
        assert map_delete_batch(fd, b"".join(u32(k) for k in (1, 9, 3, 8)), 4) == 2  # 9 and 8 weren't there
        assert batched_items(map_batches(fd, 4, 8), 4, 8) == {u32(2): u64(20), u32(4): u64(4)}


@needs_root
def test_a_batch_update_the_allocator_cannot_keep_up_with_goes_on_one_by_one(bpf_objects, monkeypatch):
    lib = libbpf()
    real = lib.bpf_map_update_batch

    def out_of_memory_after_one(fd, keys, values, count, opts):
        count._obj.value = 1  # the kernel stored the first entry, then found the cache empty
        real(fd, keys, values, count, opts)
        return -errno.ENOMEM

    monkeypatch.setattr(lib, "bpf_map_update_batch", out_of_memory_after_one)
    with load_counter(bpf_objects["counter"]) as obj:
        fd = obj.map_fd("scratch")
        map_update_batch(fd, u32(1) + u32(2) + u32(3), u64(10) + u64(20) + u64(30), 3)
        assert batched_items(map_batches(fd, 4, 8), 4, 8) == {u32(k): u64(k * 10) for k in (1, 2, 3)}


@needs_root
def test_array_map_batches_from_an_index(bpf_objects):
    with load_counter(bpf_objects["counter"]) as obj:
        fd = obj.map_fd("exec_counts")
        map_update_batch(fd, u32(0) + u32(1), u64(7) + u64(8), 2)
        assert batched_items(map_batches(fd, 4, 8), 4, 8) == {u32(0): u64(7), u32(1): u64(8)}
        assert batched_items(map_batches(fd, 4, 8, token=u32(0), limit=1), 4, 8) == {u32(1): u64(8)}


@needs_root
def test_percpu_values_hold_one_slot_per_possible_cpu(bpf_objects, command):
    cpus = num_possible_cpus()
    assert cpus >= 1
    with load_counter(bpf_objects["counter"]) as obj, obj.attach("count_exec"):
        fd = obj.map_fd("percpu_execs")
        assert map_info(fd)["type"] == BPF_MAP_TYPE_PERCPU_ARRAY
        run(command)
        value = map_lookup(fd, u32(0), 8 * cpus)
        assert sum(struct.unpack("<%dQ" % cpus, value)) >= 1


# --- mount helpers ----------------------------------------------------------

def _umount(path):
    subprocess.run(["umount", path], check=False)


@needs_root
def test_ensure_bpffs_mounts_once(tmp_path):
    mount_point = str(tmp_path / "bpffs")
    try:
        assert ensure_bpffs(mount_point) is True
        assert mounted_fstype(mount_point) == "bpf"
        assert ensure_bpffs(mount_point) is False
    finally:
        _umount(mount_point)
    assert mounted_fstype(mount_point) is None


@needs_root
def test_default_bpffs_is_mounted(bpffs):
    assert mounted_fstype("/sys/fs/bpf") == "bpf"
    assert ensure_bpffs() is False


def test_mounting_without_root_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LibbpfError) as raised:
        ensure_bpffs(str(tmp_path))
    assert raised.value.errno == errno.EPERM
    assert "mounting it needs root" in str(raised.value)


def test_mounted_fstype_reads_escaped_mount_points_and_the_top_mount(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        u"44 23 0:40 / /sys/fs/bpf rw,relatime - tmpfs tmpfs rw\n"
        u"45 44 0:41 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700\n"
        u"46 23 0:42 / /mnt/with\\040space rw - securityfs securityfs rw\n")
    assert mounted_fstype("/sys/fs/bpf", str(mountinfo)) == "bpf"
    assert mounted_fstype("/mnt/with space", str(mountinfo)) == "securityfs"
    assert mounted_fstype("/mnt", str(mountinfo)) is None
