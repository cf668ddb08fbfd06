# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The NFS client's list of superblocks (/proc/fs/nfsfs/volumes, fs/nfs/client.c
# nfs_volume_list_show): for each one its s_dev and the fsid the server gave the filesystem.
# The fsid is the server's identity of the filesystem, the same on every superblock of it
# (nosharecache, other options, sub-path mounts) as long as the NFS version is the same.
#
#   NV SERVER   PORT DEV          FSID                              FSC
#   v4 7f000001  801 0:53         0:0                               no
#
# /proc/fs/nfsfs is a link to /proc/net/nfsfs: it lists the superblocks whose NFS client
# belongs to the reader's network namespace.

import collections
import errno

NFSFS_VOLUMES = "/proc/fs/nfsfs/volumes"

NfsSuper = collections.namedtuple("NfsSuper", [
    "dev",      # (major, minor) ints: the superblock's s_dev, as in mountinfo and st_dev
    "version",  # int, the NFS version (3 or 4)
    "server",   # str, the server address in hex as printed (7f000001, or 32 digits for IPv6)
    "fsid",     # (major, minor) ints: the server's fsid of the filesystem
])


def parse_nfsfs_volumes(text):
    """{(major, minor): NfsSuper} from the text of /proc/fs/nfsfs/volumes; ValueError naming the
    first malformed line. The header line and blank lines are skipped."""
    supers = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "NV":
            continue
        nfs_super = _parse_line(line, fields)
        supers[nfs_super.dev] = nfs_super
    return supers


def read_nfsfs_volumes(path=NFSFS_VOLUMES):
    """parse_nfsfs_volumes() of the file; {} when it doesn't exist (the nfs module isn't loaded:
    then there is no NFS superblock either)."""
    try:
        with open(path, "r") as handle:
            text = handle.read()
    except (IOError, OSError) as error:
        if error.errno == errno.ENOENT:
            return {}
        raise
    return parse_nfsfs_volumes(text)


def _parse_line(line, fields):
    # Kernels before fscache's column (2.6.2x) print five fields; later ones six.
    if len(fields) not in (5, 6) or not fields[0].startswith("v"):
        raise ValueError("malformed line in %s: %r" % (NFSFS_VOLUMES, line))
    try:
        version = int(fields[0][1:])
        dev = _pair(fields[3], 10)
        fsid = _pair(fields[4], 16)
        int(fields[1], 16), int(fields[2], 16)  # hex address and port, else not the format we know
    except ValueError:
        raise ValueError("malformed line in %s: %r" % (NFSFS_VOLUMES, line))
    return NfsSuper(dev=dev, version=version, server=fields[1], fsid=fsid)


def _pair(field, base):
    """(int, int) from "a:b" in the given base; ValueError otherwise."""
    first, sep, second = field.partition(":")
    if not sep:
        raise ValueError(field)
    return int(first, base), int(second, base)
