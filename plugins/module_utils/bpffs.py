# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Mounting bpffs, which holds the pins that keep enforcement alive without a loader.

import ctypes
import errno
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils.libbpf import LibbpfError
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import MOUNTINFO, read_mountinfo, top_fstype

_KERNEL_OPTION = {
    "bpf": "CONFIG_BPF_SYSCALL=y",
}


def ensure_bpffs(path="/sys/fs/bpf"):
    """Mount bpffs at path unless it is there; True when this call mounted it."""
    # Pins are only for root anyway: keep others from even listing them.
    return _ensure_mounted(path, "bpf", "mode=0700")


def mounted_fstype(path, mountinfo_path=MOUNTINFO):
    """Type of the file system mounted exactly at path (the topmost one), or None."""
    return top_fstype(read_mountinfo(mountinfo_path), os.path.realpath(path))


def _ensure_mounted(path, fstype, options):
    if mounted_fstype(path) == fstype:
        return False
    if os.geteuid() != 0:
        raise LibbpfError(
            "%s is not mounted at %s and mounting it needs root: run as root or "
            "`mount -t %s %s %s`" % (fstype, path, fstype, fstype, path), errno.EPERM)
    _make_mount_point(path)
    _mount(fstype, path, fstype, options)
    return True


def _make_mount_point(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise LibbpfError("cannot create the mount point %s: %s" % (path, exc.strerror),
                          exc.errno)


def _mount(source, target, fstype, options):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.restype = ctypes.c_int
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_char_p]
    data = options.encode() if options else None
    if libc.mount(source.encode(), os.fsencode(target), fstype.encode(), 0, data) != 0:
        err = ctypes.get_errno()
        hint = ""
        if err == errno.ENODEV:
            hint = ": the kernel lacks %s (needs %s)" % (fstype, _KERNEL_OPTION[fstype])
        elif err == errno.EPERM:
            hint = ": mounting needs CAP_SYS_ADMIN in the initial mount namespace"
        raise LibbpfError("mounting %s at %s failed: %s%s"
                          % (fstype, target, os.strerror(err), hint), err)
