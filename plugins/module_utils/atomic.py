# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files replaced whole: written to a temporary file in the same directory, then renamed over the
old one, so a reader (apply, node_exporter) never sees half a file and a crash leaves one of the two."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import tempfile


def write_atomically(path, data, mode=0o600, durable=True):
    """Replace `path` with the bytes `data`, its mode `mode`. `durable` also syncs the file and
    its directory, for state that must survive a power loss (not needed for what is rewritten
    every few seconds). The temporary file is hidden and keeps no suffix of `path`'s, so a
    collector that reads `*.prom` never picks it up."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_state(path, fmt, key, valid, what):
    """(state[key], None) of a JSON state file {"format": fmt, key: ...} whose value passes `valid`;
    (None, why) when it can't be read or isn't such a file (`what` names it); (None, None) when there
    is no file, which is no problem."""
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return None, None
    except (IOError, OSError) as e:
        return None, "%s: %s" % (path, e)
    except ValueError as e:
        return None, "%s: not a %s (%s)" % (path, what, e)
    value = state.get(key) if isinstance(state, dict) and state.get("format") == fmt else None
    if not valid(value):
        return None, "%s: not a %s file" % (path, fmt)
    return value, None
