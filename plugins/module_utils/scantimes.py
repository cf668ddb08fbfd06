# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When each volume's usage was last scanned successfully, for the metrics (seconds since the last
scan). Nothing in the maps says when: a scan leaves only its base behind. apply, reconcile and the
agent all scan, so each records its successes here, under the writers' lock. The file sits beside
the saved usage and survives reboots, as restored usage is as old as the scan it came from.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils.atomic import read_state, write_atomically

STATE_PATH = "/var/lib/bpfquota/scans.json"
FORMAT = "bpfquota-scans-v1"


def updated(times, results, names, now):
    """{volume name: unix time of its last successful scan}: `times` with the successful
    ScanResults stamped `now`, and only the volumes named in `names` (the others are gone)."""
    out = dict((name, when) for name, when in times.items() if name in names)
    out.update((result.path, now) for result in results if result.ok and result.path in names)
    return out


def load(path=None):
    """({volume name: unix time}, why none could be read or None). No file is no problem."""
    scans, problem = read_state(path or STATE_PATH, FORMAT, "scans", _valid_scans, "scan times file")
    return scans or {}, problem


def _valid_scans(scans):
    return isinstance(scans, dict) and all(_is_time(when) for when in scans.values())


def _is_time(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def record(results, names, now=None, path=None):
    """Stamp the successful ScanResults in the file; returns why it could not be done, or None.
    A damaged file is replaced: the next scans make it whole again."""
    path = path or STATE_PATH
    if not any(result.ok for result in results):
        return None
    times, dummy = load(path)
    state = {"format": FORMAT, "scans": updated(times, results, set(names), time.time() if now is None else now)}
    try:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        write_atomically(path, json.dumps(state, sort_keys=True).encode("utf-8"))
    except (IOError, OSError) as e:
        return "scan times not recorded in %s: %s" % (path, e)
    return None
