# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent: periodic reconcile, routes kept in step with mounts, denial events to the log."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import select
import sys
import time

from ansible_collections.bpfquota.nfs.plugins.module_utils import quota
from ansible_collections.bpfquota.nfs.plugins.module_utils.events import EventReader, describe
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps
from ansible_collections.bpfquota.nfs.plugins.module_utils.usage import NOT_SCANNED, scan_volumes
from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import WalkError, WalkTimeout, run_with_timeout

ROUTES_TIMEOUT = 30.0  # stat() of a route under a dead NFS server must not stall the agent


def log(message):
    sys.stderr.write("bpfquota-agent: %s\n" % message)
    sys.stderr.flush()


def refresh_routes(maps):
    """Register every route to every volume (a mount may have appeared or gone)."""
    applied = quota.applied_volumes(maps)
    paths = sorted(applied)
    try:
        keys_by_path = run_with_timeout(quota.route_keys, (paths, quota.read_mounts()), ROUTES_TIMEOUT)
    except (WalkTimeout, WalkError) as e:
        log("routes not refreshed: %s" % e)
        return False
    want = {}
    for path, keys in keys_by_path.items():
        for key in keys:
            want[key] = applied[path][0]
    changed = quota.sync_keys(maps, want)
    if changed:
        log("routes updated: %d keys for %d volumes" % (len(want), len(paths)))
    return changed


def reconcile_round(maps, scan_timeout, budget, start=0):
    """Scan volumes in path order from index `start`, in one batch of at most `budget` seconds;
    returns where the next round starts, so every volume gets its turn."""
    volumes = sorted(quota.applied_volumes(maps).items())
    if not volumes:
        return 0
    order = volumes[start:] + volumes[:start]
    results = scan_volumes(maps, [(vol_id, path) for path, (vol_id, dummy) in order], scan_timeout, budget)
    for index, result in enumerate(results):
        if result.ok:
            log("reconciled %s: %d bytes in %d files (%.2fs)" % (result.path, result.used_bytes, result.used_files,
                                                                 result.seconds))
        elif result.reason.startswith(NOT_SCANNED):
            log("%d volumes left for the next round (%s)" % (len(results) - index, result.reason))
            return (start + index) % len(volumes)
        else:
            log("reconcile of %s failed: %s" % (result.path, result.reason))
    return 0


def run_agent(interval, scan_timeout, budget, once=False, lock=None):
    """Runs until killed (or one round with once=True). `lock` serializes map writes with the CLI."""
    from ansible_collections.bpfquota.nfs.plugins.module_utils.cli import exclusive
    lock = lock or exclusive
    maps = QuotaMaps()
    paths = maps.paths()
    reader = EventReader(lambda event: log(describe(event, paths)))
    poller = select.poll()
    poller.register(reader.epoll_fd(), select.POLLIN)
    mountinfo = open("/proc/self/mountinfo")
    poller.register(mountinfo.fileno(), select.POLLPRI | select.POLLERR)  # signalled on any mount change
    next_round = time.monotonic()
    next_volume = 0
    try:
        while True:
            if time.monotonic() >= next_round:
                with lock():
                    refresh_routes(maps)
                    next_volume = reconcile_round(maps, scan_timeout, budget, next_volume)
                    paths.clear()
                    paths.update(maps.paths())
                next_round = time.monotonic() + interval
                if once:
                    reader.consume()
                    return 0
            timeout_ms = max(0, int((next_round - time.monotonic()) * 1000))
            for fd, dummy in poller.poll(timeout_ms):
                if fd == mountinfo.fileno():
                    mountinfo.seek(0)
                    mountinfo.read()  # re-arms the notification
                    with lock():
                        refresh_routes(maps)
                else:
                    reader.consume()
    finally:
        reader.close()
        mountinfo.close()
        maps.close()
