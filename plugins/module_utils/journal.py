# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Structured entries for the systemd journal, sent over its native protocol (a datagram of
KEY=value lines to /run/systemd/journal/socket), stdlib only: the host CLI is a zipapp without
python3-systemd. `journalctl -o json BPFQUOTA_VOLUME=...` then finds them by field."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import socket
import struct

SOCKET_PATH = "/run/systemd/journal/socket"
FIELD_NAME = re.compile(r"^[A-Z0-9][A-Z0-9_]*$")  # journald drops fields named otherwise
MAX_DATAGRAM = 200 * 1024  # well below the socket's limit; bigger would need a memfd passed along

# syslog priorities journald keeps in PRIORITY
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


def encode(fields):
    """The datagram for {NAME: value} (values: str, bytes or numbers), in the given order. A value
    with a newline is sent in the binary form (NAME, newline, its length as 64-bit little endian,
    the bytes, newline), so a multi-line value stays one field."""
    parts = []
    for name, value in fields.items():
        if not FIELD_NAME.match(name):
            raise ValueError("journal field name %r is not upper-case letters, digits and _" % name)
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
        key = name.encode("ascii")
        if b"\n" in data:
            parts.append(key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


def decode(datagram):
    """{NAME: bytes} of a datagram (encode's inverse; tests and tools)."""
    fields, pos = {}, 0
    while pos < len(datagram):
        end = datagram.index(b"\n", pos)
        line = datagram[pos:end]
        if b"=" in line:
            name, dummy, value = line.partition(b"=")
            pos = end + 1
        else:
            name, (size,) = line, struct.unpack_from("<Q", datagram, end + 1)
            value = datagram[end + 9:end + 9 + size]
            pos = end + 9 + size + 1
        fields[name.decode("ascii")] = value
    return fields


def send(fields, path=SOCKET_PATH):
    """Send one entry; False when there is no journal to take it (no socket: no systemd, a
    container) or it is too big, so the caller writes the plain line instead."""
    datagram = encode(fields)
    if len(datagram) > MAX_DATAGRAM:
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(datagram, path)
    except OSError:
        return False
    finally:
        sock.close()
    return True
