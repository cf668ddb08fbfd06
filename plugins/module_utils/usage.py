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

Many volumes are scanned in chunks: a chunk's epochs flip together, one forked
child walks their trees one after the other, and the chunk is finished
together. Each volume's walk still lies between its own flip and the read of
its dirty records, which is all the protocol needs.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import WalkError, WalkTimeout, Worker, walk_trees

ScanResult = collections.namedtuple("ScanResult", "vol_id path ok used_bytes used_files seconds reason")

GRACE = 5.0           # seconds a walk may overrun its deadline (one slow stat, pickling) before its child is killed
CHUNK_SECONDS = 1.0   # chunks are sized so that their walks take about this long: the time volumes stay flipped
MAX_CHUNK = 1024
READ_PACE = 0.02      # seconds between reads of the walks' results (see Worker.run)
OVERFLOW = "too many files changed during the scan to track; it will be retried"
CHANGED = "the tree changed during the scan (a directory was moved or replaced); it will be retried"
NOT_SCANNED = "not scanned: "  # the reason of volumes a batch did not get to


def used(cfg, stats):
    """(bytes, files) the kernel compares with the limits: bytes include growth admitted and in flight."""
    return (cfg.base_bytes + sum(stats.delta_bytes) + max(stats.reserved_bytes, 0),
            cfg.base_files + sum(stats.delta_files))


def usage_at_flip(walk, dirty):
    """(bytes, files) at the epoch flip: the walk, corrected by the dirty records.

    A dirty inode's stat() may have seen changes made after the flip (already
    in the kernel's delta): use what it counted at the flip instead. A dirty
    inode the walk didn't see (deleted or moved away meanwhile) still counted
    then; one it saw twice (moved from a directory it listed to one it listed
    later) counted once.
    """
    total_bytes, total_files = walk.bytes, walk.files
    by_ino = dict((key[1], rec) for key, rec in dirty.items())
    seen = collections.defaultdict(list)
    if by_ino:
        for ino, size in zip(walk.inos, walk.sizes):
            if ino in by_ino:
                seen[ino].append(size)
    for ino, rec in by_ino.items():
        total_bytes += rec.size_before - sum(seen[ino])
        total_files += rec.files_before - len(seen[ino])
    return total_bytes, total_files


def new_base(flipped, before, after, walk, dirty):
    """(base bytes, base files) that make the usage equal the walk's, or (None, why not).

    flipped: the volume's config as flipped; before/after: its counters read before the flip and
    after the walk; walk: a WalkResult; dirty: its dirty records read after the walk.
    """
    if walk.errors:
        # Re-basing on a partial view would stop protecting what couldn't be read.
        return None, ("%d entries of %s could not be read (root_squash? EIO?): usage left as it was; "
                      "export the share with no_root_squash to the clients or fix the errors" % (walk.errors, walk.root))
    if walk.changed:
        return None, CHANGED  # the moved directory's files may have been missed
    if after.dirty_overflow != before.dirty_overflow:
        return None, OVERFLOW
    if after.stale != before.stale:
        return None, CHANGED  # a directory was moved within (or into, out of) the volume during the walk
    at_flip_bytes, at_flip_files = usage_at_flip(walk, dirty)
    new_parity = flipped.epoch & 1
    old_parity = 1 - new_parity
    return (_clamped(at_flip_bytes - before.delta_bytes[new_parity] - after.delta_bytes[old_parity]),
            _clamped(at_flip_files - before.delta_files[new_parity] - after.delta_files[old_parity])), ""


def _clamped(value):
    """value within [-HUGE, HUGE]: a tree of files near s_maxbytes (2^63 - 1 on XFS) sums past any
    signed 64-bit field; the kernel's sums stop at HUGE too, so a volume that large stays full."""
    return max(-layout.HUGE, min(value, layout.HUGE))


def next_chunk_size(size, seconds):
    """The next chunk's size, from how long the last one's walks took: about CHUNK_SECONDS of
    walking, growing at most fourfold a step (the next trees may be bigger)."""
    fitting = int(size * CHUNK_SECONDS / seconds) if seconds > 0 else MAX_CHUNK
    return max(1, min(fitting, 4 * size, MAX_CHUNK))


def scan_volume(maps, vol_id, path, timeout):
    """Re-base one volume from a walk of its tree. Never hangs: the walk runs in a child with a timeout."""
    return scan_volumes(maps, [(vol_id, path)], timeout)[0]


def scan_volumes(maps, targets, timeout, budget=None):
    """Re-base the volumes [(volume id, path)] from walks of their trees; their ScanResults, in order.

    One forked child walks them all; each walk gets `timeout` seconds and all of them `budget`
    seconds (None: no limit). A walk whose child stops answering (a dead NFS server) gets it
    killed and ends the batch: the next walks would most likely hang on the same server, one
    timeout each. Volumes not reached are reported as not scanned, with why.
    """
    limits = _Limits(timeout, budget, None if budget is None else time.monotonic() + budget)
    results = {}
    with Worker(walk_trees) as worker:
        stopped = _scan_all(maps, worker, targets, limits, results)
        # Besides heavy churn, a burst of first changes in the volumes of a chunk can outrun the
        # kernel's allocation of dirty records, and a directory may be moved while the walk goes
        # by: that rarely happens twice, so retry at once. Each volume alone: scan_dirty is shared,
        # and one tenant changing more inodes than it holds fails every volume of its chunk, so
        # only its own retry may fail again (SOUNDNESS #32).
        retried = [(vol_id, path) for vol_id, path in targets if vol_id in results and results[vol_id].reason in (OVERFLOW, CHANGED)]
        if retried and stopped is None:
            stopped = _scan_all(maps, worker, retried, limits, results, max_chunk=1)
    for vol_id, path in targets:
        if vol_id not in results:
            results[vol_id] = ScanResult(vol_id, path, False, None, None, 0.0, NOT_SCANNED + stopped)
    return [results[vol_id] for vol_id, path in targets]


_Limits = collections.namedtuple("_Limits", "timeout budget deadline")


def _scan_all(maps, worker, targets, limits, results, max_chunk=MAX_CHUNK):
    """Scan `targets` in chunks sized by next_chunk_size(), at most max_chunk volumes each; why it
    stopped early, or None."""
    pending = list(targets)
    size = 1
    while pending:
        if _expired(limits.deadline):
            return "the %gs budget for scans ran out" % limits.budget
        chunk, pending = pending[:size], pending[size:]
        started = time.monotonic()
        stopped = _scan_chunk(maps, worker, chunk, limits, results)
        if stopped:
            return stopped
        size = min(next_chunk_size(len(chunk), time.monotonic() - started), max_chunk)
    return None


def _scan_chunk(maps, worker, chunk, limits, results):
    """Flip, walk and finish one chunk into `results`; why the batch must stop, or None."""
    ids = [vol_id for vol_id, path in chunk]
    flipped, before = _flip(maps, ids)
    walks, seconds = {}, {}
    stopped = "the scans were interrupted"  # until every walk of the chunk is in
    started = time.monotonic()
    run_deadline = None if limits.deadline is None else limits.deadline + GRACE
    try:
        request = ([path for vol_id, path in chunk], limits.timeout, limits.deadline)
        for index, walk in enumerate(worker.run(request, limits.timeout + GRACE, run_deadline, READ_PACE)):
            walks[ids[index]] = walk
            seconds[ids[index]] = time.monotonic() - started
            started = time.monotonic()
        stopped = None
    except WalkTimeout:
        vol_id, path = chunk[len(walks)]
        walks[vol_id] = "the scan of %s did not finish in %gs (NFS server unreachable?)" % (path, limits.timeout)
        stopped = "the scan of %s before it hung" % path
    except WalkError as e:
        vol_id, path = chunk[len(walks)]
        walks[vol_id] = "the scan of %s failed: %s" % (path, e)
        stopped = "the scanning process failed at %s" % path
    finally:
        _finish(maps, chunk, flipped, before, walks, seconds, limits, results, stopped)
    return stopped


def _flip(maps, ids):
    """Start the scans of `ids`: drop their stale dirty records (an aborted scan's), read their
    counters, then flip their epochs with `scanning` on. Returns (flipped configs, counters)."""
    cfgs = maps.vol_cfgs(ids)
    maps.delete_dirty(_dirty_of(maps, ids))
    before = maps.vol_stats_of(ids)
    flipped = dict((vol_id, cfg._replace(epoch=(cfg.epoch + 1) & 0xFFFFFFFF, scanning=1)) for vol_id, cfg in cfgs.items())
    maps.set_vol_cfgs(flipped)
    return flipped, before


def _finish(maps, chunk, flipped, before, walks, seconds, limits, results, stopped):
    """End the scans of a chunk: re-base the volumes whose walk succeeded, switch `scanning` off
    and drop the dirty records (the flips stay: the kernel keeps counting in the new epoch).
    `stopped` says why volumes without a walk have none."""
    ids = [vol_id for vol_id, path in chunk]
    dirty = collections.defaultdict(dict)
    for key, rec in _dirty_of(maps, ids).items():
        dirty[rec.vol_id][key] = rec
    after = maps.vol_stats_of(ids)
    bases = {}
    for vol_id, path in chunk:
        walk = walks[vol_id] if vol_id in walks else NOT_SCANNED + stopped
        base, reason = _rebased(path, walk, flipped[vol_id], before[vol_id], after[vol_id], dirty[vol_id], limits)
        if base is None:
            results[vol_id] = ScanResult(vol_id, path, False, None, None, seconds.get(vol_id, 0.0), reason)
            bases[vol_id] = (flipped[vol_id].base_bytes, flipped[vol_id].base_files)
        else:
            bases[vol_id] = base
            usage = used(flipped[vol_id]._replace(base_bytes=base[0], base_files=base[1]), after[vol_id])
            results[vol_id] = ScanResult(vol_id, path, True, usage[0], usage[1], seconds[vol_id], "")
    # Only the scan state (and base, on success) changes: limits may have been updated meanwhile.
    latest = maps.vol_cfgs(ids)
    maps.set_vol_cfgs(dict((vol_id, _finished(latest[vol_id], base, results[vol_id].ok)) for vol_id, base in bases.items()))
    maps.delete_dirty(_dirty_of(maps, ids))


def _finished(cfg, base, ok):
    """A volume's config after its scan: `base`, scanning off; a successful scan makes its usage known."""
    flags = cfg.flags & ~(layout.USAGE_UNKNOWN | layout.RESTORED) if ok else cfg.flags
    return cfg._replace(scanning=0, base_bytes=base[0], base_files=base[1], flags=flags)


def _rebased(path, walk, flipped, before, after, dirty, limits):
    """new_base() of one volume of a chunk; walk may also be why there is none (a str) or the
    WalkError the walk raised."""
    if isinstance(walk, str):
        return None, walk
    if isinstance(walk, WalkError):
        return None, "the scan of %s failed: %s" % (path, walk)
    if not walk.complete:
        return None, _overran(limits)
    return new_base(flipped, before, after, walk, dirty)


def _dirty_of(maps, ids):
    ids = set(ids)
    return dict((key, rec) for key, rec in maps.all_dirty().items() if rec.vol_id in ids)


def _overran(limits):
    if _expired(limits.deadline):
        return "the %gs budget for scans ran out during the scan" % limits.budget
    return "the scan took longer than its %gs budget" % limits.timeout


def _expired(deadline):
    return deadline is not None and time.monotonic() >= deadline
