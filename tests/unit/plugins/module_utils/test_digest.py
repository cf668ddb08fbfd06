# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import digest


def test_bytes_sha256_is_the_hex_digest():
    assert digest.bytes_sha256(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7])
def test_file_sha256_reads_a_file_of_any_size_in_chunks(tmp_path, size):
    data = bytes(bytearray(index % 251 for index in range(size)))
    path = tmp_path / "data"
    path.write_bytes(data)
    assert digest.file_sha256(str(path)) == hashlib.sha256(data).hexdigest() == digest.bytes_sha256(data)
