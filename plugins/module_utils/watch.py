# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's watch over usage, run every few seconds: the grace clocks and flags (grace), and the
warnings (notices) sent to the journal."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import grace, journal, layout, notices, quota, usage

GRACE_FLAGS = layout.SOFT_EXPIRED | layout.FILES_SOFT_EXPIRED


class Watch:
    """State kept between passes: the clocks (also in their file), what was warned, the refusal
    counters as of the last summary. `emit(fields)` says an entry; `log(message)` a plain line."""

    def __init__(self, thresholds, summary_interval, log, emit=None, state_path=None):
        self.thresholds = thresholds
        self.summary_interval = summary_interval
        self.log = log
        self.emit = emit or self.to_journal
        self.state_path = state_path
        self.clocks, problem = grace.load(state_path)
        # An unreadable file loses the clocks: volumes over their soft limit count as expired (fail closed).
        self.lost = problem is not None
        if problem:
            log("grace clocks lost (%s): volumes over their soft limit are treated as expired" % problem)
        self.save_problem = None
        self.warned = {}  # name -> thresholds at or below its usage, already said
        self.denied = None  # volume id -> {op: count} at the last summary (None: no reading yet)
        self.next_summary = 0.0
        self.refusals = notices.Refusals()

    def to_journal(self, fields):
        if not journal.send(fields):
            self.log(fields["MESSAGE"])

    def refused(self, event):
        """A denial event from the kernel: tallied for the next summary, never a line of its own."""
        self.refusals.add(event, layout.op_name(event.op))

    def check(self, maps, lock, now=None, errors=None):
        """One pass: clocks and flags, then warnings. `lock` (the writers' lock) is taken only to
        change a flag. Returns the names whose flags changed."""
        now = time.time() if now is None else now
        applied = quota.applied_volumes(maps)
        ids = dict((name, vol_id) for name, (vol_id, dummy) in applied.items())
        cfgs, stats = maps.vol_cfgs(ids.values()), maps.vol_stats_of(ids.values())
        clocks, flags, transitions = grace.evaluate(grace.usages(applied, cfgs, stats), self.clocks, now, self.lost)
        changed = []
        if any(flags[name] & GRACE_FLAGS != cfgs[ids[name]].flags & GRACE_FLAGS for name in flags):
            with lock():
                changed = grace.sync_flags(maps, ids, flags)
        self.lost = False
        if clocks != self.clocks:
            self._save(clocks, errors)
        volumes = self._volumes(applied, cfgs, stats)
        for t in transitions:
            if t.name in volumes:
                self.emit(notices.transition_entry(volumes[t.name], t, now))
        for name, volume in sorted(volumes.items()):
            if cfgs[ids[name]].flags & layout.USAGE_UNKNOWN:
                continue  # a percentage of an unknown usage says nothing
            self.warned[name], crossed = notices.crossed(
                self.warned.get(name, ()), notices.percent(volume.used_bytes, volume.limit_bytes), self.thresholds)
            for threshold in crossed:
                self.emit(notices.threshold_entry(volume, threshold))
        for name in set(self.warned) - set(volumes):
            del self.warned[name]
        self._summaries(ids, volumes, stats, time.monotonic())
        return changed

    def _save(self, clocks, errors):
        try:
            grace.save(clocks, self.state_path)
            self.clocks = clocks
            if self.save_problem:
                self.log("grace clocks saved again")
            self.save_problem = None
        except (IOError, OSError) as e:
            # kept in memory and retried next pass; said once
            self.clocks = clocks
            if errors is not None:
                errors["save"] += 1
            if str(e) != self.save_problem:
                self.log("grace clocks not saved: %s" % e)
            self.save_problem = str(e)

    def _volumes(self, applied, cfgs, stats):
        out = {}
        for name, (vol_id, volume) in applied.items():
            if vol_id in cfgs and vol_id in stats:
                used_bytes, used_files = usage.used(cfgs[vol_id], stats[vol_id])
                out[name] = notices.Volume(name, volume.labels, used_bytes, volume.limit_bytes, used_files,
                                           volume.limit_files, volume.mode)
        return out

    def _summaries(self, ids, volumes, stats, clock):
        """At most one summary per volume per summary_interval, from the exact counters."""
        if self.denied is not None and clock < self.next_summary:
            return
        current = dict((vol_id, dict(s.denied)) for vol_id, s in stats.items())
        if self.denied is not None:
            for name, vol_id in sorted(ids.items()):
                by_op = notices.denied_since(self.denied.get(vol_id, {}), current.get(vol_id, {}))
                fields = notices.refusal_summary(volumes[name], by_op, self.refusals.take(vol_id),
                                                 self.summary_interval) if name in volumes else None
                if fields:
                    self.emit(fields)
        self.refusals = notices.Refusals()  # events of volumes without counted refusals: nothing to name
        self.denied = current
        self.next_summary = clock + self.summary_interval
