# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SHA-256 as hex, of bytes and of files: what results, stamps and diffs compare, computed one way."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib

_CHUNK = 1 << 20


def bytes_sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    """The digest of a file's bytes, read in chunks (it needn't fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
