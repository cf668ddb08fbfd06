# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Byte sizes as operators write them (Kubernetes quantities) and as reports show them.

import decimal
import re

from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import MAX_LIMIT

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def _unit_table():
    units = {"": 1, "B": 1}
    for suffix, power in _BINARY.items():
        units[suffix] = 1024 ** power
        units[suffix + "B"] = 1024 ** power  # KiB, MiB, ...
    for suffix, power in _DECIMAL.items():
        units[suffix] = 1000 ** power
        units[suffix + "B"] = 1000 ** power  # KB, kB, MB, ...
    return units


UNITS = _unit_table()

UNIT_HELP = ("use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E "
             "(powers of 1000), e.g. 50Gi or 512M")

# Sign and number are captured loosely so that a bad one gets a precise message.
_SIZE_RE = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(\S*)$")


class SizeError(ValueError):
    """A size that cannot be used as a limit; the message says why and how to fix it."""


def parse_size(value):
    """Return the number of bytes that value (int, or string like "50Gi") stands for."""
    if value is None:
        raise SizeError("size is missing: give a number of bytes or a quantity such as 50Gi or 512M")
    if isinstance(value, bool):
        # bool is an int subclass; YAML turns a bare yes/no/on/off into one
        raise SizeError("size must be a number of bytes or a quantity such as 50Gi, not a boolean (%r)" % (value,))
    if isinstance(value, int):
        return _checked_bytes(value, value)
    if isinstance(value, float):
        return _from_number(decimal.Decimal(repr(value)), 1, value)
    if not isinstance(value, str):
        raise SizeError("size must be a number of bytes or a string such as '50Gi', not %s (%r)"
                        % (type(value).__name__, value))
    return _parse_size_text(value)


def _parse_size_text(value):
    text = value.strip()
    if not text:
        raise SizeError("size is empty: give a number of bytes or a quantity such as 50Gi or 512M")
    match = _SIZE_RE.match(text)
    if not match:
        raise SizeError("invalid size %r: write a number followed by an optional unit, e.g. 50Gi, 512M, 1.5Gi "
                        "or 1048576" % (value,))
    sign, number, unit = match.groups()
    if unit not in UNITS:
        raise SizeError("invalid size %r: unknown unit %r: %s%s" % (value, unit, UNIT_HELP, _unit_hint(unit)))
    if sign == "-":
        raise SizeError("invalid size %r: a size cannot be negative: give a positive size such as 50Gi" % (value,))
    return _from_number(decimal.Decimal(number), UNITS[unit], value)


def _from_number(number, multiplier, original):
    if not number.is_finite():
        raise SizeError("invalid size %r: give a finite number of bytes or a quantity such as 50Gi" % (original,))
    with decimal.localcontext() as ctx:
        # enough digits to multiply whatever was written by up to 1024**6 exactly
        ctx.prec = len(str(number)) + 40
        total = number * multiplier
        if total != total.to_integral_value():
            raise SizeError("invalid size %r: that is %s bytes, not a whole number of bytes: "
                            "round it or use a smaller unit" % (original, _plain(total)))
        return _checked_bytes(int(total), original)


def _checked_bytes(nbytes, original):
    if nbytes < 0:
        raise SizeError("invalid size %r: a size cannot be negative: give a positive size such as 50Gi"
                        % (original,))
    if nbytes == 0:
        raise SizeError("invalid size %r: a size must be greater than zero: give a positive size such as 50Gi"
                        % (original,))
    if nbytes > MAX_LIMIT:
        raise SizeError("invalid size %r: more than the maximum of %d bytes (just under 8Ei): "
                        "use a smaller size" % (original, MAX_LIMIT))
    return nbytes


def _plain(number):
    """Decimal without exponent notation, for messages."""
    return format(number.normalize(), "f")


def _unit_hint(unit):
    """Suggest the intended spelling when only the letter case is off (e.g. 'gi', 'mb')."""
    for known in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
                  "K", "M", "G", "T", "P", "E", "KB", "MB", "GB", "TB", "PB", "EB"):
        if unit.lower() == known.lower() and unit != known:
            if unit in ("m", "mb"):
                return " (did you mean %r? lowercase m means milli)" % (known,)
            return " (did you mean %r?)" % (known,)
    return ""


_FORMAT_UNITS = ("K", "M", "G", "T", "P", "E")


def format_size(nbytes):
    """Short human form with binary units, as `xfs_quota -x -c 'report -h'` prints: 0, 512, 512K, 1.5M, 50G."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise SizeError("format_size needs an int number of bytes, not %s (%r)" % (type(nbytes).__name__, nbytes))
    if nbytes < 0:
        # accounting can dip below zero briefly; show it rather than hide it
        return "-" + format_size(-nbytes)
    if nbytes < 1024:
        return str(nbytes)
    power = 1
    while power < len(_FORMAT_UNITS) and nbytes >= 1024 ** (power + 1):
        power += 1
    text, rounded_up_to_next = _scaled(nbytes, 1024 ** power)
    if rounded_up_to_next and power < len(_FORMAT_UNITS):
        return "1" + _FORMAT_UNITS[power]  # e.g. 1023.9K is shown as 1M, not 1024K
    return text + _FORMAT_UNITS[power - 1]


def _scaled(nbytes, unit):
    """nbytes/unit as text (one decimal below 10 unless whole), and whether it rounded up to 1024."""
    tenths = (nbytes * 20 + unit) // (2 * unit)  # round half up, in integers to stay exact
    if tenths < 100 and tenths % 10:
        return "%d.%d" % (tenths // 10, tenths % 10), False
    whole = (nbytes * 2 + unit) // (2 * unit) if tenths >= 100 else tenths // 10
    return str(whole), whole >= 1024
