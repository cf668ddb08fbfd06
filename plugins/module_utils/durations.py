# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations as operators write them (a grace period: 604800, "7d", "12h", "30m", "45s", "1d12h")
and as reports show them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SECONDS = dict(UNITS)
_PART = re.compile(r"(\d+)([wdhms])")
MAX_SECONDS = 100 * 365 * 86400  # a century: more is a typo, and unix times stay far from overflowing

HELP = "give whole seconds or a duration such as 7d, 12h, 30m, 45s (1d12h combines them)"


class DurationError(ValueError):
    """A duration that cannot be used; the message says why and how to fix it."""


def parse_duration(value):
    """Whole seconds that `value` (an int, or a string like "7d" or "1d12h") stands for; above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DurationError("must be a duration, not %r: %s" % (value, HELP))
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text or len(set(u for n, u in parts)) != len(parts):
                raise DurationError("%r is not a duration: %s" % (value, HELP))
            seconds = sum(int(number) * _SECONDS[unit] for number, unit in parts)
    if not 0 < seconds <= MAX_SECONDS:
        raise DurationError("%r is not between 1 second and 100 years: %s" % (value, HELP))
    return seconds


def format_duration(seconds):
    """A short human form: "6d23h", "59m59s", "0s" (two units at most, rounded down)."""
    seconds = max(int(seconds), 0)
    shown = []
    for unit, size in UNITS[1:]:
        if seconds >= size or (not shown and size == 1):
            shown.append("%d%s" % (seconds // size, unit))
            seconds %= size
        elif shown:
            shown.append(None)
        if len(shown) == 2:
            break
    return "".join(part for part in shown if part)
