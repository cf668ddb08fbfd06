# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Harness for the module tests: run a module's main() with arguments and get its result,
an in-memory QuotaMaps, the map lock moved into a temporary directory, and a recorded mount table."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import fcntl
import json
import os

import pytest

import quota_testlib  # tests/unit/conftest.py puts its directory on sys.path

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import maps as quota_maps
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import parse_mountinfo

try:  # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # older ansible-core: the classic set_module_args
    @contextlib.contextmanager
    def patch_module_args(args=None):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


class ModuleExit(Exception):
    def __init__(self, result):
        Exception.__init__(self, result)
        self.result = result


class ModuleFail(Exception):
    def __init__(self, result):
        Exception.__init__(self, result.get("msg"))
        self.result = result


def _exit_json(module, **kwargs):
    kwargs.setdefault("changed", False)
    raise ModuleExit(kwargs)


def _fail_json(module, **kwargs):
    kwargs["failed"] = True
    raise ModuleFail(kwargs)


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, args, check=False, diff=False) -> result; ModuleFail when the module fails.
    result["warnings"] (also a failure's) holds what the module passed to warn()."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda module, message: warnings.append(message))

    def run(module, args, check=False, diff=False):
        del warnings[:]
        full_args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(full_args):
            try:
                module.main()
            except ModuleExit as done:
                result = done.result
                result["warnings"] = list(warnings)
                return result
            except ModuleFail as failed:
                failed.result["warnings"] = list(warnings)
                raise
        raise AssertionError("%s.main() returned without exit_json or fail_json" % module.__name__)

    return run


@pytest.fixture(autouse=True)
def lock_path(tmp_path, monkeypatch):
    """The lock every map writer takes, in a temporary directory (not /run)."""
    path = str(tmp_path / "bpfquota.lock")
    monkeypatch.setattr(enforcement, "LOCK_PATH", path)
    return path


def lock_is_held(path):
    """Whether someone holds the writers' lock on path right now."""
    if not os.path.exists(path):
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


WRITES = quota_testlib.WRITES + tuple(quota_testlib.BULK_WRITES)


class FakeMaps(quota_testlib.FakeMaps):
    """The shared in-memory QuotaMaps as the modules meet it: the enforcer freshly loaded (gen 1),
    every write recorded, with whether the writers' lock was held at the time."""

    def __init__(self, lock_path=None):
        quota_testlib.FakeMaps.__init__(self)
        self._config = layout.pack_config(layout.Config(1, 1000, b"\0" * 32))
        self.lock_path = lock_path
        self.writes = []
        self.unlocked_writes = []
        self.opened = 0
        self.closed = 0
        self._writing = 0

    def _write(self, name):
        self.writes.append(name)
        if self.lock_path is not None and not lock_is_held(self.lock_path):
            self.unlocked_writes.append(name)

    def close(self):
        self.closed += 1

    # what only the kernel writes
    def kernel_counts(self, vol_id, delta_bytes=0, delta_files=0, checks=0, **denied):
        """The BPF programs' accounting of writes since the last scan (in the current epoch's slot)."""
        parity = self.vol_cfg(vol_id).epoch & 1
        stats = self.vol_stats(vol_id)
        delta_b, delta_f = list(stats.delta_bytes), list(stats.delta_files)
        delta_b[parity] += delta_bytes
        delta_f[parity] += delta_files
        counts = dict(stats.denied)
        for op, count in denied.items():
            counts[op] += count
        self.kernel_write_stats(vol_id, stats._replace(delta_bytes=delta_b, delta_files=delta_f,
                                                       checks=stats.checks + checks, denied=counts))


def _recorded(name):
    """A write method that records itself once (not the writes it makes through other methods)."""
    write = getattr(quota_testlib.FakeMaps, name)

    def recorded(self, *args):
        if not self._writing:
            self._write(name)
        self._writing += 1
        try:
            return write(self, *args)
        finally:
            self._writing -= 1
    return recorded


for _write_name in WRITES:
    setattr(FakeMaps, _write_name, _recorded(_write_name))


@pytest.fixture
def fake_maps(monkeypatch, lock_path):
    """One FakeMaps that every QuotaMaps() of the modules opens."""
    fake = FakeMaps(lock_path)

    def open_fake(pin_dir=layout.PIN_DIR):
        fake.opened += 1
        return fake

    monkeypatch.setattr(quota_maps, "QuotaMaps", open_fake)
    return fake


@pytest.fixture
def not_loaded(monkeypatch):
    """QuotaMaps() as on a host where the enforcer isn't loaded."""
    def refuse(pin_dir=layout.PIN_DIR):
        raise quota_maps.NotLoaded("bpfquota is not loaded (no maps pinned under %s): run 'bpfquota load' first"
                                   % pin_dir)

    monkeypatch.setattr(quota_maps, "QuotaMaps", refuse)


# /proc/self/mountinfo of an NFS client (recorded), with the root filesystem's device numbers
# replaced by those of the filesystem the test's temporary directories live on.
MOUNTINFO = """\
21 {root_id} 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
22 {root_id} 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
{root_id} 1 {major}:{minor} / {mount_point} rw,relatime shared:1 - {fstype} /dev/vda1 rw,errors=remount-ro
35 21 0:30 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:12 - bpf bpf rw,mode=700
36 21 0:7 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw
112 {root_id} 0:52 / /mnt/nfs rw,relatime shared:60 - nfs4 10.0.0.5:/export rw,vers=4.2,rsize=1048576,\
wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.7,local_lock=none,addr=10.0.0.5
"""


def recorded_mountinfo(path):
    """The recorded mountinfo, with the filesystem holding path mounted where it really is."""
    st = os.stat(path)
    mount_point = os.path.abspath(path)
    while mount_point != "/" and os.stat(os.path.dirname(mount_point)).st_dev == st.st_dev:
        mount_point = os.path.dirname(mount_point)
    return MOUNTINFO.format(root_id=27, major=os.major(st.st_dev), minor=os.minor(st.st_dev),
                            mount_point=mount_point, fstype="ext4")


@pytest.fixture
def mounts(tmp_path, monkeypatch):
    """The service reads the recorded mountinfo (returned parsed)."""
    text = recorded_mountinfo(str(tmp_path))
    monkeypatch.setattr(enforcement, "read_mountinfo_text", lambda: text)
    return parse_mountinfo(text)


class FakeLibbpf(object):
    version = (1, 1)


@pytest.fixture
def lsm_host(monkeypatch):
    """use(root, release, tools): point the LSM modules (lsm_facts, lsm_boot, lsm_check) at a recorded
    host: its files under root, its kernel release, libbpf 1.1, a kernel that attaches the probe
    program (tests may replace these), and its boot tools (boot_hosts.BootTools)."""
    from ansible_collections.bpfquota.nfs.plugins.modules import lsm_boot, lsm_check, lsm_facts

    for module in (lsm_check, lsm_facts):
        monkeypatch.setattr(module, "libbpf", FakeLibbpf)
        monkeypatch.setattr(module, "probe_lsm", lambda: None)

    def use(root, release, tools):
        for module in (lsm_boot, lsm_check, lsm_facts):
            monkeypatch.setattr(module, "HOST_ROOT", root)
        monkeypatch.setattr(os, "uname", lambda: os.uname_result(
            ("Linux", "node", release, "#1 SMP PREEMPT_DYNAMIC", "x86_64")))
        monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda module, argv, **kw: tools.run(argv))
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda module, name, *a, **kw: tools.which(name))
        return tools
    return use


def snapshot(root):
    """Every file under root with its bytes: what a run must leave alone."""
    files = {}
    for directory, dummy, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files
