# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Usage of one volume, measured by walking its tree, and a way to run such a walk that can't hang
# the caller: on NFS any stat may block until a dead server returns, so the walk runs in a forked
# child that is abandoned (killed, reaped later) when its time is up.

import errno
import os
import pickle
import select
import signal
import stat
import time
from array import array

from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import MountTable, read_mountinfo

# Errors that mean "the entry went away while we looked": not a problem, just a moving tree.
_VANISHED = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)
_DEADLINE_CHECK_EVERY = 64  # entries between clock reads inside one large directory


class WalkError(Exception):
    """The walk function failed in the child; the message names the original exception."""


class WalkTimeout(Exception):
    """The walk function did not finish in time; its child was killed."""


class WalkResult:
    """What walk_tree found below one directory (the directory itself not counted)."""

    def __init__(self, root):
        self.root = root
        self.files = 0         # inodes below root of any type, hard links once
        self.bytes = 0         # apparent size (st_size) of regular files, hard links once
        self.errors = 0        # entries or directories that couldn't be read (other than vanished)
        self.complete = True   # False when the deadline cut the walk short
        self.inos = array("Q")   # inode number of each inode counted ...
        self.sizes = array("q")  # ... and the bytes it counted for (st_size of regular files, else 0)

    def __repr__(self):
        return ("WalkResult(root=%r, files=%d, bytes=%d, errors=%d, complete=%r)"
                % (self.root, self.files, self.bytes, self.errors, self.complete))


def walk_tree(root, deadline=None, skip=None):
    """Count the inodes and regular-file bytes below root without leaving its filesystem or mount.

    deadline is a time.monotonic() value; once passed, the walk stops and complete is False.
    skip holds paths not to descend into; by default the mount points below root from
    /proc/self/mountinfo, so a bind mount of the same filesystem (same st_dev) isn't walked
    either: its files aren't in the volume for the BPF side, which follows dentry parents.
    """
    result = WalkResult(root)
    root = os.path.realpath(root)  # the mount table speaks in canonical paths
    root_dev = os.stat(root).st_dev
    if skip is None:
        skip = _mount_points_below(root)
    skip = frozenset(skip)
    linked = set()  # (ino) of regular files with more than one link already counted
    pending = [root]  # directories still to list; a list, not recursion: trees go 64+ levels deep
    checked = 0
    while pending:
        if _expired(deadline):
            result.complete = False
            return result
        directory = pending.pop()
        try:
            # Subdirectories are only queued, so one directory is open at a time.
            with os.scandir(directory) as entries:
                for entry in entries:
                    checked += 1
                    if checked % _DEADLINE_CHECK_EVERY == 0 and _expired(deadline):
                        result.complete = False
                        return result
                    _count_entry(entry, root_dev, skip, linked, pending, result)
        except OSError as error:
            if error.errno not in _VANISHED:
                result.errors += 1
    return result


def _count_entry(entry, root_dev, skip, linked, pending, result):
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as error:
        if error.errno not in _VANISHED:
            result.errors += 1
        return
    if st.st_dev != root_dev or entry.path in skip:
        return  # another filesystem or mount: nothing in there belongs to this volume
    if stat.S_ISDIR(st.st_mode):
        _record(result, st.st_ino, 0)  # directories can't be hard-linked
        pending.append(entry.path)
        return
    if st.st_nlink > 1:
        if st.st_ino in linked:
            return
        linked.add(st.st_ino)
    # Symlinks, fifos, sockets, devices: an inode each, no data bytes.
    _record(result, st.st_ino, st.st_size if stat.S_ISREG(st.st_mode) else 0)


def _record(result, ino, size):
    """Count one inode; every inode is listed so a scan can correct any it saw (usage.py)."""
    result.files += 1
    result.bytes += size
    result.inos.append(ino)
    result.sizes.append(size)


def _mount_points_below(root):
    try:
        return MountTable(read_mountinfo()).mount_points_below(root)
    except (OSError, ValueError):
        return ()


def _expired(deadline):
    return deadline is not None and time.monotonic() >= deadline


# Children killed after a timeout; a child stuck in uninterruptible NFS I/O can only die (and be
# reaped) once the server answers, so they are reaped later, never waited for.
_unreaped = set()


def reap_children():
    """Reap killed walk children that have died since; returns how many are still around."""
    for pid in list(_unreaped):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # reaped elsewhere
        if done:
            _unreaped.discard(pid)
    return len(_unreaped)


def run_with_timeout(func, args, timeout):
    """func(*args) run in a forked child; its (picklable) result, or WalkTimeout after timeout seconds.

    An exception in the child comes back as WalkError("<type>: <message>"). timeout None waits
    forever. On timeout the child is SIGKILLed and left to reap_children().
    """
    reap_children()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(func, args, write_fd)  # never returns
    os.close(write_fd)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        payload = _read_until(read_fd, deadline)
    finally:
        os.close(read_fd)
    if payload is None:
        _abandon(pid)
        raise WalkTimeout("%s did not finish within %s seconds" % (_name(func), timeout))
    _reap_finished(pid)
    if not payload:
        raise WalkError("%s: child process died without a result" % (_name(func),))
    outcome, value = pickle.loads(payload)
    if outcome == "error":
        raise WalkError(value)
    return value


def _child(func, args, write_fd):
    # os._exit everywhere: the child must not run the parent's atexit handlers or flush its buffers.
    status = 0
    try:
        try:
            payload = pickle.dumps(("ok", func(*args)), pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # the parent gets every failure, KeyboardInterrupt included
            status = 1
            message = type(error).__name__ + (": %s" % (error,) if str(error) else "")
            payload = pickle.dumps(("error", message), pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        status = 2
    finally:
        os._exit(status)


def _read_until(read_fd, deadline):
    """Everything the child writes until EOF, or None when deadline passes first."""
    chunks = []
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        ready, _w, _x = select.select([read_fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _abandon(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _unreaped.add(pid)
    reap_children()


def _reap_finished(pid):
    # The child closed the pipe, so it is exiting; give it a moment, but never block on it.
    for _attempt in range(100):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)
    _unreaped.add(pid)


def _name(func):
    return getattr(func, "__name__", repr(func))
