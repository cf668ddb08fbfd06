# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent: periodic reconcile, NFS mounts placed as they appear (any mount namespace), grace periods
over soft limits, warnings and refusal summaries to the journal, metrics for node_exporter's textfile
collector."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import select
import signal
import sys
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement, identity, layout, libbpf, quota, saved, textfile
from ansible_collections.bpfquota.nfs.plugins.module_utils.events import EventReader
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import MOUNTINFO
from ansible_collections.bpfquota.nfs.plugins.module_utils.usage import NOT_SCANNED
from ansible_collections.bpfquota.nfs.plugins.module_utils.watch import Watch
from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import WalkError, WalkTimeout, run_with_timeout

ROUTES_TIMEOUT = 30.0  # stat() of a route under a dead NFS server must not stall the agent
PLACE_GAP = 0.25  # seconds between placements the kernel asks for: one that can't place keeps asking
TICK = 60.0  # seconds between saves of the usage and retries of the scans of volumes whose usage is unknown
SUMMARY_INTERVAL = 60.0  # seconds between a volume's refusal summaries: at most one per volume per interval


def log(message):
    sys.stderr.write("bpfquota-agent: %s\n" % message)
    sys.stderr.flush()


def refresh_routes(maps, timeout=ROUTES_TIMEOUT, unplaced=None, homes=None, errors=None):
    """Key every volume again and place every NFS fsid and mount root this host has (a mount may
    have appeared or gone, in any mount namespace); the stat()s get `timeout` seconds, as they
    hold the lock that apply and reconcile wait for. `unplaced` ({access: reason}) remembers what
    was last left unplaced, so each is logged once; `homes` ({name: path its tree is walked
    through}) is brought up to date; `errors` (a Counter) counts a failure under "routes". Returns
    the names of the volumes a mount reaches now that none did before (their scan is due), or None
    when nothing could be refreshed."""
    applied = quota.applied_volumes(maps)
    names = sorted(applied)
    current_groups = maps.nfs_groups()
    try:
        found = run_with_timeout(identity.identities, (names, current_groups), timeout)
    except (WalkTimeout, WalkError) as e:
        log("routes not refreshed: %s" % e)
        _count(errors, "routes")
        return None
    found = identity.keep_missing(found, quota.stored_route_keys(maps, applied, list(found.missing) + list(found.unmounted)),
                                  current_groups)
    ids = dict((name, vol_id) for name, (vol_id, dummy) in applied.items())
    want = identity.wanted_keys(found, ids)
    if quota.sync_keys(maps, want, found.groups, found.watch):
        log("routes updated: %d keys for %d volumes, %d NFS filesystems" % (len(want), len(names), len(set(found.groups.values()))))
    quota.mark_unmounted(maps, ids, found.unmounted)
    if unplaced is not None:
        now = dict((access, reason) for dummy, access, reason in found.unplaced)
        for access in sorted(set(now) - set(unplaced)):
            log("%s: growth is refused below it until it can be placed" % now[access])
        unplaced.clear()
        unplaced.update(now)
    homes = {} if homes is None else homes
    arrived = set(found.homes) - set(homes)
    homes.clear()
    homes.update(found.homes)
    return arrived


def reconcile_round(maps, scan_timeout, budget, start=0, homes=None, errors=None):
    """Scan volumes in name order from index `start`, in one batch of at most `budget` seconds;
    returns where the next round starts, so every volume gets its turn. Each is walked through its
    home ({name: path}; None: its name is its path); a volume no mount reaches is skipped. `errors`
    (a Counter) counts failed scans under "scan"."""
    volumes = [(name, entry) for name, entry in sorted(quota.applied_volumes(maps).items())
               if homes is None or name in homes]
    if not volumes:
        return 0
    start = start % len(volumes)
    order = volumes[start:] + volumes[:start]
    results = enforcement.scan_named(maps, [(vol_id, name) for name, (vol_id, dummy) in order],
                                     homes if homes is not None else dict((name, name) for name, dummy in order),
                                     scan_timeout, budget, log)
    for index, result in enumerate(results):
        if result.ok:
            log("reconciled %s: %d bytes in %d files (%.2fs)" % (result.path, result.used_bytes, result.used_files,
                                                                 result.seconds))
        elif result.reason.startswith(NOT_SCANNED):
            log("%d volumes left for the next round (%s)" % (len(results) - index, result.reason))
            return (start + index) % len(volumes)
        else:
            log("reconcile of %s failed: %s" % (result.path, result.reason))
            _count(errors, "scan")
    return 0


def unknown_volumes(maps, homes=None, only=None):
    """[(volume id, name)] of the volumes whose usage is unknown (their first scan failed or timed
    out, or no mount reached them yet), of those a mount reaches (homes; None: all) and, unless
    `only` is None, named in it."""
    applied = quota.applied_volumes(maps)
    cfgs = maps.vol_cfgs([vol_id for vol_id, dummy in applied.values()])
    return [(vol_id, name) for name, (vol_id, dummy) in sorted(applied.items())
            if cfgs[vol_id].flags & layout.USAGE_UNKNOWN and (homes is None or name in homes)
            and (only is None or name in only)]


def retry_unknown(maps, scan_timeout, budget, homes=None, only=None, errors=None):
    """Scan the volumes whose usage is unknown: they refuse growth (or count from zero) until then.
    `errors` (a Counter) counts failed scans under "scan"."""
    targets = unknown_volumes(maps, homes, only)
    named = homes if homes is not None else dict((name, name) for dummy, name in targets)
    for result in enforcement.scan_named(maps, targets, named, scan_timeout, budget, log) if targets else ():
        if result.ok:
            log("first scan of %s: %d bytes in %d files (%.2fs)"
                % (result.path, result.used_bytes, result.used_files, result.seconds))
        else:
            log("first scan of %s failed, retried in %gs: %s" % (result.path, TICK, result.reason))
            _count(errors, "scan")


def save_usage(maps, path=None, errors=None):
    """Save the usage of the volumes (read from the maps only), for apply to restore after a reboot.
    `errors` (a Counter) counts a failure under "save"."""
    try:
        saved.save(saved.snapshot(maps), path or saved.STATE_PATH)
    except (IOError, OSError) as e:
        log("usage not saved: %s" % e)
        _count(errors, "save")


def _count(errors, kind):
    if errors is not None:
        errors[kind] += 1


def new_health():
    """The agent's health as the metrics show it (metrics.render's `agent`)."""
    return {"rounds": 0, "last_round": None, "errors": collections.Counter()}


def round_done(health, now=None):
    health["rounds"] += 1
    health["last_round"] = time.time() if now is None else now


def write_metrics(maps, directory, health, problem=None):
    """Write the metrics file into `directory`. Returns what kept it from being written (None: it
    was), to be passed back next time: a problem is logged only when it differs from that one, so a
    directory that doesn't exist (node_exporter not installed yet) is said once, not every interval."""
    try:
        textfile.write_textfile(directory, textfile.metrics_text(maps, health))
    except (enforcement.BpfquotaError, libbpf.LibbpfError, OSError) as e:
        health["errors"]["metrics"] += 1
        if str(e) != problem:
            log("metrics not written: %s" % e)
        return str(e)
    if problem is not None:
        log("metrics written again to %s" % directory)
    return None


def _exit_on_sigterm(signum, frame):
    raise SystemExit(0)  # runs the finally blocks: the usage is saved, a scan in progress is ended


def check(watch, maps, lock, errors):
    """The watch's pass; a failure to read or write the maps is counted under "watch" and logged."""
    try:
        for name in watch.check(maps, lock, errors=errors):
            log("%s: grace flag changed" % name)
    except (libbpf.LibbpfError, OSError) as e:
        _count(errors, "watch")
        log("soft limits not checked: %s" % e)


def run_agent(interval, scan_timeout, budget, once=False, lock=None, metrics_dir=None, metrics_interval=15.0,
              warn_percent=(80.0, 95.0), summary_interval=SUMMARY_INTERVAL):
    """Runs until killed (or one round with once=True). `lock` serializes map writes with the CLI.
    Every TICK seconds (and after each round, and when stopped) the usage is saved, and volumes whose
    usage is unknown are scanned again. Every `metrics_interval` seconds (and after a round) the
    grace clocks are checked and the warnings said (usage past `warn_percent` of the limit, soft
    limits, refusals summarized every `summary_interval` seconds), then the metrics are written into
    `metrics_dir` (None: never); like the other timers these only set how long the loop waits for
    events, so mounts are placed as promptly as without them."""
    lock = lock or enforcement.exclusive
    maps = QuotaMaps()
    watch = Watch(warn_percent, summary_interval, log)
    unplaced = {}
    homes = {}
    asked = []  # the kernel met an NFS fsid or mount root not placed (its growth is refused meanwhile)
    health = new_health()
    errors = health["errors"]
    metrics_problem = None

    def on_event(event):
        if event.op == layout.OP_PLACE:
            asked.append(event)
        else:
            watch.refused(event)

    reader = EventReader(on_event)
    poller = select.poll()
    poller.register(reader.epoll_fd(), select.POLLIN)
    mountinfo = open(MOUNTINFO, "rb")  # only read to re-arm the notification: no decoding
    poller.register(mountinfo.fileno(), select.POLLPRI | select.POLLERR)  # signalled on any mount change
    next_round = next_tick = next_metrics = time.monotonic()
    next_place = 0.0
    next_volume = 0
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log("running: a round every %gs, NFS mounts placed as they appear, %s"
        % (interval, "metrics every %gs into %s" % (metrics_interval, metrics_dir) if metrics_dir else "no metrics"))
    try:
        while True:
            if time.monotonic() >= next_round:
                with lock():
                    refresh_routes(maps, min(ROUTES_TIMEOUT, scan_timeout), unplaced, homes, errors)
                    next_volume = reconcile_round(maps, scan_timeout, budget, next_volume, homes, errors)
                save_usage(maps, errors=errors)
                round_done(health)
                next_round = time.monotonic() + interval
                next_tick = time.monotonic() + TICK
                next_metrics = time.monotonic()  # the round's results, now
                if once:
                    reader.consume()
                    check(watch, maps, lock, errors)
                    if metrics_dir:
                        write_metrics(maps, metrics_dir, health)
                    return 0
            elif time.monotonic() >= next_tick:
                with lock():
                    retry_unknown(maps, scan_timeout, budget, homes, errors=errors)
                save_usage(maps, errors=errors)
                next_tick = time.monotonic() + TICK
            if asked and time.monotonic() >= next_place:
                del asked[:]
                with lock():
                    arrived = refresh_routes(maps, min(ROUTES_TIMEOUT, scan_timeout), unplaced, homes, errors)
                    if arrived:
                        retry_unknown(maps, scan_timeout, budget, homes, arrived, errors)
                next_place = time.monotonic() + PLACE_GAP
            if time.monotonic() >= next_metrics:
                check(watch, maps, lock, errors)  # before the metrics, so they show the flags it set
                if metrics_dir:
                    metrics_problem = write_metrics(maps, metrics_dir, health, metrics_problem)
                next_metrics = time.monotonic() + metrics_interval
            wake = min([next_round, next_tick, next_metrics] + ([next_place] if asked else []))
            timeout_ms = max(0, int((wake - time.monotonic()) * 1000))
            for fd, dummy in poller.poll(timeout_ms):
                if fd == mountinfo.fileno():
                    mountinfo.seek(0)
                    mountinfo.read()  # re-arms the notification
                    with lock():
                        arrived = refresh_routes(maps, min(ROUTES_TIMEOUT, scan_timeout), unplaced, homes, errors)
                        if arrived:
                            retry_unknown(maps, scan_timeout, budget, homes, arrived, errors)
                else:
                    reader.consume()
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        save_usage(maps)
        reader.close()
        mountinfo.close()
        maps.close()
