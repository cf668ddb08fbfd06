# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from fractions import Fraction

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import MAX_LIMIT
from ansible_collections.bpfquota.nfs.plugins.module_utils.quantity import QuantityError, parse_quantity, quantity_bytes

KI, MI, GI, TI, PI, EI = (1024 ** power for power in range(1, 7))


@pytest.mark.parametrize("text, expected", [
    ("10Gi", 10 * GI),
    ("1Ki", KI), ("1Mi", MI), ("2Ti", 2 * TI), ("1Pi", PI), ("7Ei", 7 * EI),
    ("1k", 1000), ("500M", 500 * 10 ** 6), ("1G", 10 ** 9), ("1T", 10 ** 12), ("1P", 10 ** 15),
    ("1E", 10 ** 18),                      # exa, not an exponent
    ("1073741824", GI),                    # plain bytes
    ("1536Mi", 1536 * MI),                 # how the API server writes 1.5Gi back
    ("1.5Gi", 3 * GI // 2),
    (".5Ki", 512), ("5.", 5), ("+5Gi", 5 * GI), ("007", 7),
    ("5e9", 5 * 10 ** 9), ("5E9", 5 * 10 ** 9), ("1e+3", 1000), ("12e-1", 2),  # 1.2 bytes: rounded up
    ("1500m", 2),                          # milli: 1.5 bytes, rounded up as Quantity.Value() does
    ("1m", 1), ("1n", 1), ("1u", 1),
    ("1.000000000000000001E", 10 ** 18 + 1),
    ("8Ei", None),                         # None: more than MAX_LIMIT, checked below
])
def test_quantity_bytes_reads_kubernetes_quantities_rounding_up(text, expected):
    if expected is None:
        with pytest.raises(QuantityError, match="more than the largest limit"):
            quantity_bytes(text)
    else:
        assert quantity_bytes(text) == expected


def test_quantity_bytes_takes_an_int_of_bytes_and_the_largest_limit():
    assert quantity_bytes(1024) == 1024
    assert quantity_bytes(str(MAX_LIMIT)) == MAX_LIMIT


def test_parse_quantity_is_exact():
    assert parse_quantity("1.5Gi") == Fraction(3 * GI, 2)
    assert parse_quantity("100m") == Fraction(1, 10)
    assert parse_quantity("-1Ki") == -1024


@pytest.mark.parametrize("text, message", [
    ("", "not a Kubernetes quantity"),
    ("Gi", "not a Kubernetes quantity"),
    ("1.2.3", "not a Kubernetes quantity"),
    ("10 Gi", "not a Kubernetes quantity"),  # Kubernetes takes no blanks
    (" 10Gi", "not a Kubernetes quantity"),
    ("1e", "unknown suffix 'e'"),
    ("1e3Gi", "not a Kubernetes quantity"),
    ("10K", "unknown suffix 'K'.*did you mean 'k'"),     # sizes.parse_size takes K; Kubernetes doesn't
    ("10GB", "unknown suffix 'GB'.*did you mean 'G'"),
    ("10gi", "unknown suffix 'gi'.*did you mean 'Gi'"),
    ("10KiB", "unknown suffix 'KiB'.*did you mean 'Ki'"),
    ("10Xi", "unknown suffix 'Xi'"),
    ("1e999999999", "exponent 999999999 is out of range"),
    ("0", "not a positive number of bytes"),
    ("0.0Gi", "not a positive number of bytes"),
    ("-1Gi", "not a positive number of bytes"),
])
def test_quantity_bytes_refuses_what_kubernetes_refuses_or_no_limit_can_be(text, message):
    with pytest.raises(QuantityError, match=message):
        quantity_bytes(text)


@pytest.mark.parametrize("value", [True, None, 1.5, ["1Gi"], {"storage": "1Gi"}])
def test_quantity_bytes_refuses_other_types(value):
    with pytest.raises(QuantityError, match="is not a quantity: write a number"):
        quantity_bytes(value)
