# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.nfsfs import (
    NFSFS_VOLUMES,
    NfsSuper,
    parse_nfsfs_volumes,
    read_nfsfs_volumes,
)

# In the format of fs/nfs/client.c nfs_volume_list_show ("v%u %s %s %-12s %-33s %s\n").
HEADER = "NV SERVER   PORT DEV          FSID                              FSC\n"
V4_LINE = "v4 7f000001  801 0:53         0:0                               no \n"
V3_LINE = "v3 7f000001  801 0:41         fd00:2a0001                       no \n"
V6_LINE = "v4 fd000000000000000000000000000009  801 0:60         12345678abcdef:ffffffffffffffff   yes\n"


def test_path_is_the_kernels():
    assert NFSFS_VOLUMES == "/proc/fs/nfsfs/volumes"


def test_header_only_is_empty():
    assert parse_nfsfs_volumes(HEADER) == {}
    assert parse_nfsfs_volumes("") == {}


def test_v3_and_v4_lines():
    supers = parse_nfsfs_volumes(HEADER + V4_LINE + V3_LINE)
    assert supers == {
        (0, 53): NfsSuper(dev=(0, 53), version=4, server="7f000001", fsid=(0, 0)),
        (0, 41): NfsSuper(dev=(0, 41), version=3, server="7f000001", fsid=(0xfd00, 0x2a0001)),
    }


def test_ipv6_server_and_64_bit_fsid():
    nfs_super = parse_nfsfs_volumes(HEADER + V6_LINE)[(0, 60)]
    assert nfs_super.server == "fd000000000000000000000000000009"
    assert nfs_super.dev == (0, 60)
    assert nfs_super.fsid == (0x12345678abcdef, 0xffffffffffffffff)


def test_extra_whitespace_and_blank_lines():
    text = "  " + HEADER + "\n\t" + V4_LINE.replace(" ", "   ") + "\n\n"
    assert list(parse_nfsfs_volumes(text)) == [(0, 53)]


def test_line_without_fscache_column():
    nfs_super = parse_nfsfs_volumes("v3 0a000009  801 0:70 1:2\n")[(0, 70)]
    assert (nfs_super.version, nfs_super.fsid) == (3, (1, 2))


@pytest.mark.parametrize("line", [
    "v4 7f000001 801 0:53",                # too few fields
    "x4 7f000001 801 0:53 0:0 no",         # not a version
    "v4 7f000001 801 0-53 0:0 no",         # dev without colon
    "v4 7f000001 801 0:53 0:zz no",        # fsid not hex
    "v4 127.0.0.1 801 0:53 0:0 no",        # address not hex
    "v4 7f000001 801 0:53 0:0 no extra",   # too many fields
])
def test_malformed_line_is_named(line):
    with pytest.raises(ValueError) as error:
        parse_nfsfs_volumes(HEADER + V4_LINE + line + "\n")
    assert repr(line) in str(error.value)


def test_read_file(tmp_path):
    path = tmp_path / "volumes"
    path.write_text(HEADER + V4_LINE)
    assert list(read_nfsfs_volumes(str(path))) == [(0, 53)]


def test_missing_file_is_no_superblocks(tmp_path):
    assert read_nfsfs_volumes(str(tmp_path / "absent")) == {}


def test_other_read_errors_propagate(tmp_path):
    with pytest.raises(OSError):
        read_nfsfs_volumes(str(tmp_path))  # a directory
