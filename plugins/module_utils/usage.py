# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Usage of a volume = base (from a scan) + what the kernel accounted since.

A scan must neither lose nor double-count writes that happen while it walks
the tree. The kernel adds every change to delta[epoch & 1] of the volume. To
scan, we flip the epoch and switch on `scanning`: from then on, the first
change of each inode also leaves a dirty record saying what that inode
counted when the flip happened. The walk's total, with every dirty inode's
stat() replaced by that record, is the usage at the flip; the changes since
the flip are exactly delta[new parity] minus what it held before the flip.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import WalkError, WalkTimeout, run_with_timeout, walk_tree

ScanResult = collections.namedtuple("ScanResult", "vol_id path ok used_bytes used_files seconds reason")


def used(cfg, stats):
    """(bytes, files) the kernel compares with the limits."""
    return (cfg.base_bytes + sum(stats.delta_bytes), cfg.base_files + sum(stats.delta_files))


def usage_at_flip(walk, dirty):
    """(bytes, files) at the epoch flip: the walk, corrected by the dirty records.

    A dirty inode's stat() may have seen changes made after the flip (already
    in the kernel's delta): use what it counted at the flip instead. A dirty
    inode the walk didn't see (deleted or moved away meanwhile) still counted then.
    """
    total_bytes, total_files = walk.bytes, walk.files
    by_ino = dict((key[1], rec) for key, rec in dirty.items())
    seen = {}
    if by_ino:
        for ino, size in zip(walk.inos, walk.sizes):
            if ino in by_ino:
                seen[ino] = size
    for ino, rec in by_ino.items():
        if ino in seen:
            total_bytes += rec.size_before - seen[ino]
            total_files += rec.files_before - 1
        else:
            total_bytes += rec.size_before
            total_files += rec.files_before
    return total_bytes, total_files


def scan_volume(maps, vol_id, path, timeout):
    """Re-base one volume from a walk of its tree. Never hangs: the walk runs in a child with a timeout."""
    started = time.monotonic()
    cfg = maps.vol_cfg(vol_id)
    maps.clear_dirty(vol_id)
    new_parity = (cfg.epoch + 1) & 1
    before = maps.vol_stats(vol_id)
    cfg = cfg._replace(epoch=(cfg.epoch + 1) & 0xFFFFFFFF, scanning=1)
    maps.set_vol_cfg(vol_id, cfg)
    result = None
    reason = ""
    try:
        walk = run_with_timeout(walk_tree, (path, started + timeout), timeout + 5)
        dirty = maps.dirty(vol_id)
        after = maps.vol_stats(vol_id)
        if not walk.complete:
            reason = "the scan took longer than its %gs budget" % timeout
        elif walk.errors:
            # Re-basing on a partial view would stop protecting what couldn't be read.
            reason = ("%d entries of %s could not be read (root_squash? EIO?): usage left as it was; "
                      "export the share with no_root_squash to the clients or fix the errors" % (walk.errors, path))
        elif after.dirty_overflow != before.dirty_overflow:
            reason = "too many files changed during the scan to track; it will be retried"
        else:
            at_flip_bytes, at_flip_files = usage_at_flip(walk, dirty)
            old_parity = 1 - new_parity
            base_bytes = at_flip_bytes - before.delta_bytes[new_parity] - after.delta_bytes[old_parity]
            base_files = at_flip_files - before.delta_files[new_parity] - after.delta_files[old_parity]
            cfg = cfg._replace(base_bytes=base_bytes, base_files=base_files)
            result = used(cfg, after)
    except WalkTimeout:
        reason = "the scan of %s did not finish in %gs (NFS server unreachable?)" % (path, timeout)
    except WalkError as e:
        reason = "the scan of %s failed: %s" % (path, e)
    finally:
        # Only the scan state (and base, on success) changes: limits may have been updated meanwhile.
        latest = maps.vol_cfg(vol_id)
        maps.set_vol_cfg(vol_id, latest._replace(scanning=0, base_bytes=cfg.base_bytes, base_files=cfg.base_files))
        maps.clear_dirty(vol_id)
    seconds = time.monotonic() - started
    if result is None:
        return ScanResult(vol_id, path, False, None, None, seconds, reason)
    return ScanResult(vol_id, path, True, result[0], result[1], seconds, "")
