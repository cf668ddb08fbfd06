# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes resource quantities (a PV's spec.capacity.storage) read exactly as the API server
reads them (k8s.io/apimachinery's resource.ParseQuantity), as a whole number of bytes rounded up
the way Quantity.Value() rounds.

sizes.parse_size is the looser grammar of the volumes file (50 Gi, 1KiB, 1K); this one takes only
what Kubernetes takes, so that a capacity the API server would refuse is refused here too.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
from fractions import Fraction

from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import MAX_LIMIT

_BINARY_SI = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}  # powers of 10

# <sign?><digits[.digits] | .digits>, then an exponent (e3, E-2) or a suffix. "1E" is exa, "1E3" is
# an exponent: the exponent branch is tried first and needs digits.
_QUANTITY_RE = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|([A-Za-z]*))$")

# Far past the largest limit either way; bounds the arithmetic of a hostile exponent like 1e999999999.
_MAX_EXPONENT = 64

QUANTITY_HELP = ("write a number with an optional suffix: Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), "
                 "k, M, G, T, P, E (powers of 1000), m (thousandths) or an exponent such as 5e9, "
                 "e.g. 10Gi, 500M or 1.5Ti")


class QuantityError(ValueError):
    """A value that is not a positive Kubernetes quantity of bytes; the message says why."""


def quantity_bytes(value):
    """The bytes a quantity (string like "1.5Gi", or an int) stands for, rounded up to a whole byte."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise QuantityError("%r is not a quantity: %s" % (value, QUANTITY_HELP))
    amount = Fraction(value) if isinstance(value, int) else parse_quantity(value)
    return _whole_bytes(amount, value)


def parse_quantity(text):
    """The exact value of a quantity string, as a Fraction."""
    match = _QUANTITY_RE.match(text)
    if not match:
        raise QuantityError("%r is not a Kubernetes quantity: %s" % (text, QUANTITY_HELP))
    sign, number, exponent, suffix = match.groups()
    if exponent is not None:
        scale = _exponent_scale(text, int(exponent))
    elif suffix in _BINARY_SI:
        scale = Fraction(1024) ** _BINARY_SI[suffix]
    elif suffix in _DECIMAL_SI:
        scale = Fraction(10) ** _DECIMAL_SI[suffix]
    else:
        raise QuantityError("%r has an unknown suffix %r: %s%s" % (text, suffix, QUANTITY_HELP, _suffix_hint(suffix)))
    amount = Fraction(number) * scale
    return -amount if sign == "-" else amount


def _exponent_scale(text, exponent):
    if abs(exponent) > _MAX_EXPONENT:
        raise QuantityError("%r: the exponent %d is out of range: %s" % (text, exponent, QUANTITY_HELP))
    return Fraction(10) ** exponent


def _whole_bytes(amount, original):
    if amount <= 0:
        raise QuantityError("%r is not a positive number of bytes: a limit must be greater than zero" % (original,))
    nbytes = -(-amount.numerator // amount.denominator)  # round up, as Quantity.Value() does
    if nbytes > MAX_LIMIT:
        raise QuantityError("%r is more than the largest limit, %d bytes (just under 8Ei)" % (original, MAX_LIMIT))
    return nbytes


def _suffix_hint(suffix):
    """The spelling Kubernetes knows when only the letter case is off (K, gi, KiB...)."""
    for known in sorted(_BINARY_SI) + ["k", "M", "G", "T", "P", "E"]:
        if suffix.lower() in (known.lower(), known.lower() + "b"):
            return " (did you mean %r?)" % (known,)
    return ""
