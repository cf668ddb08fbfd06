# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import SizeError, format_size, parse_size

KI, MI, GI, TI, PI, EI = (1024 ** power for power in range(1, 7))


@pytest.mark.parametrize("value, expected", [
    (1, 1),
    (1048576, 1048576),
    (2 ** 63 - 1, 2 ** 63 - 1),
    ("1048576", 1048576),
    ("50Gi", 50 * GI),
    ("50G", 50 * 10 ** 9),
    ("512M", 512 * 10 ** 6),
    ("512Mi", 512 * MI),
    ("1k", 1000),
    ("1K", 1000),
    ("1Ki", KI),
    ("2Ti", 2 * TI),
    ("2T", 2 * 10 ** 12),
    ("1Pi", PI),
    ("1P", 10 ** 15),
    ("7Ei", 7 * EI),
    ("1E", 10 ** 18),
    ("1KiB", KI),
    ("1MiB", MI),
    ("1GiB", GI),
    ("1TiB", TI),
    ("1KB", 1000),
    ("1kB", 1000),
    ("1MB", 10 ** 6),
    ("1GB", 10 ** 9),
    ("1TB", 10 ** 12),
    ("100B", 100),
    ("1.5Gi", 3 * GI // 2),
    ("1.5G", 1500000000),
    ("0.5Ki", 512),
    (".5Ki", 512),
    ("2.", 2),
    ("2.000", 2),
    ("50 Gi", 50 * GI),
    ("  50\tGi  ", 50 * GI),
    ("+5", 5),
    (1.5e9, 1500000000),
    (1024.0, 1024),
])
def test_parse_size_accepts(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("1.000000000000000001E", 10 ** 18 + 1),
    ("0.000000000000000001E", 1),
    ("7.999999999999999999132638262011596452794037759304046630859375Ei", 2 ** 63 - 1),
])
def test_parse_size_is_exact_where_a_float_would_round(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value, message", [
    (None, "size is missing: give a number of bytes or a quantity such as 50Gi or 512M"),
    (True, "size must be a number of bytes or a quantity such as 50Gi, not a boolean (True)"),
    (False, "not a boolean (False)"),
    ([1], "size must be a number of bytes or a string such as '50Gi', not list ([1])"),
    ("", "size is empty: give a number of bytes or a quantity such as 50Gi or 512M"),
    ("   ", "size is empty"),
    (0, "invalid size 0: a size must be greater than zero: give a positive size such as 50Gi"),
    ("0", "invalid size '0': a size must be greater than zero"),
    ("0Gi", "invalid size '0Gi': a size must be greater than zero"),
    (-1, "invalid size -1: a size cannot be negative: give a positive size such as 50Gi"),
    ("-5Gi", "invalid size '-5Gi': a size cannot be negative"),
    ("0.5", "invalid size '0.5': that is 0.5 bytes, not a whole number of bytes: round it or use a smaller unit"),
    ("1.0001Ki", "that is 1024.1024 bytes, not a whole number of bytes"),
    (1.5, "invalid size 1.5: that is 1.5 bytes, not a whole number of bytes"),
    (float("inf"), "invalid size inf: give a finite number of bytes"),
    (float("nan"), "invalid size nan: give a finite number of bytes"),
    ("50gi", "invalid size '50gi': unknown unit 'gi': use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or "
             "k, M, G, T, P, E (powers of 1000), e.g. 50Gi or 512M (did you mean 'Gi'?)"),
    ("1m", "unknown unit 'm': use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000), "
           "e.g. 50Gi or 512M (did you mean 'M'? lowercase m means milli)"),
    ("1mb", "(did you mean 'MB'? lowercase m means milli)"),
    ("1gb", "(did you mean 'GB'?)"),
    ("10X", "invalid size '10X': unknown unit 'X': use Ki"),
    ("1e3", "unknown unit 'e3'"),
    ("abc", "invalid size 'abc': write a number followed by an optional unit, e.g. 50Gi, 512M, 1.5Gi or 1048576"),
    ("Gi", "write a number followed by an optional unit"),
    ("1,5Gi", "unknown unit ',5Gi'"),
    (2 ** 63, "invalid size 9223372036854775808: more than the maximum of 9223372036854775807 bytes "
              "(just under 8Ei): use a smaller size"),
    ("8Ei", "invalid size '8Ei': more than the maximum of 9223372036854775807 bytes"),
    ("9" * 400, "more than the maximum of 9223372036854775807 bytes"),
])
def test_parse_size_rejects(value, message):
    with pytest.raises(SizeError) as caught:
        parse_size(value)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("nbytes, expected", [
    (0, "0"),
    (1, "1"),
    (1023, "1023"),
    (1024, "1K"),
    (1536, "1.5K"),
    (512 * KI, "512K"),
    (MI - 1, "1M"),  # 1023.999K rounds to the next unit, not "1024K"
    (MI, "1M"),
    (3 * MI // 2, "1.5M"),
    (MI + MI // 100, "1M"),  # 1.01M: one decimal rounds to a whole number
    (int(9.94 * KI), "9.9K"),
    (int(9.96 * KI), "10K"),  # rounds up past 10: no decimal any more
    (int(10.4 * KI), "10K"),
    (int(10.6 * KI), "11K"),
    (50 * GI, "50G"),
    (2 * TI, "2T"),
    (3 * PI, "3P"),
    (2 ** 63 - 1, "8E"),
    (2 ** 64, "16E"),
    (-3 * MI // 2, "-1.5M"),
])
def test_format_size(nbytes, expected):
    assert format_size(nbytes) == expected


@pytest.mark.parametrize("value", [1.5, "1024", True, None])
def test_format_size_needs_an_int(value):
    with pytest.raises(SizeError, match="format_size needs an int number of bytes"):
        format_size(value)
