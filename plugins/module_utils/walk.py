# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Usage of one volume, measured by walking its tree, and a way to run such a walk that can't hang
# the caller: on NFS any stat may block until a dead server returns, so the walk runs in a forked
# child that is abandoned (killed, reaped later) when its time is up.

import collections
import errno
import os
import pickle
import select
import signal
import stat
import struct
import time
from array import array

from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import MountTable, read_mountinfo

# Errors that mean "the entry went away while we looked": not a problem, just a moving tree.
_VANISHED = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE)
# Errors that mean a directory the walk queued is no longer there under its name: moved, removed,
# or replaced by a symlink (O_NOFOLLOW) or a file. ESTALE also stands for "another directory now".
_MOVED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ESTALE)
_DEADLINE_CHECK_EVERY = 64  # entries between clock reads inside one large directory
# Each directory is opened by name relative to its parent's fd: no path is ever too long, and a
# symlink swapped in for a directory is never followed.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN = 64  # directory fds kept open besides the root's; others are re-opened from an ancestor


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
        self.changed = False   # True when a directory was moved or replaced under the walk, which then stopped
        self.inos = array("Q")   # inode number of each inode counted ...
        self.sizes = array("q")  # ... and the bytes it counted for (st_size of regular files, else 0)

    def __repr__(self):
        return ("WalkResult(root=%r, files=%d, bytes=%d, errors=%d, complete=%r, changed=%r)"
                % (self.root, self.files, self.bytes, self.errors, self.complete, self.changed))


def walk_tree(root, deadline=None, skip=None, mounts=None):
    """Count the inodes and regular-file bytes below root without leaving its filesystem or mount.

    deadline is a time.monotonic() value; once passed, the walk stops and complete is False.
    skip holds paths not to descend into, in root's terms; by default the mount points below
    root, made canonical, in `mounts` (a MountTable; by default read from /proc/self/mountinfo), so
    a bind mount of the same filesystem (same st_dev) isn't walked either: its files aren't in the
    volume for the BPF side, which follows dentry parents.

    A directory found gone, a symlink or another inode when the walk enters it was moved (or
    removed) after its parent was listed: its files may have gone to a part already walked, so
    the walk stops with changed True and its counts are not the tree's.
    """
    result = WalkResult(root)
    if skip is None:
        root = os.path.realpath(root)  # the mount table speaks in canonical paths
        skip = (mounts or _mount_table()).mount_points_below(root)
    top = _Dir(None, root, root, None, None)
    top.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # root is a path: symlinks to it are fine
    walk = _Walk(result, frozenset(skip), deadline)
    try:
        st = os.fstat(top.fd)
        top.dev, top.ino = st.st_dev, st.st_ino
        walk.run(top)
    finally:
        walk.close_all()
        os.close(top.fd)
    return result


class _Dir:
    """A directory the walk found: where it is (parent and name, path for skip and messages),
    what it is (dev, ino), its fd while open, and how many of its subdirectories are queued."""

    __slots__ = ("parent", "name", "path", "dev", "ino", "fd", "waiting")

    def __init__(self, parent, name, path, dev, ino):
        self.parent = parent
        self.name = name
        self.path = path
        self.dev = dev
        self.ino = ino
        self.fd = None
        self.waiting = 0


class _Walk:
    """The state of one walk_tree(): depth first, so that the directory to enter next is most
    often a child of one whose fd is still open; at most _MAX_OPEN fds besides the root's."""

    def __init__(self, result, skip, deadline):
        self.result = result
        self.skip = skip
        self.deadline = deadline
        self.root_dev = None
        self.linked = set()  # (ino) of regular files with more than one link already counted
        self.pending = []    # _Dirs still to list; a list, not recursion: trees go thousands of levels deep
        self.open_dirs = collections.OrderedDict()  # _Dirs with an open fd (not the root), least recently used first
        self.checked = 0

    def run(self, top):
        self.root_dev = top.dev
        self.pending.append(top)
        while self.pending:
            if _expired(self.deadline):
                self.result.complete = False
                return
            directory = self.pending.pop()
            if not self._enter(directory):
                if self.result.changed:
                    return
                continue
            if not self._list(directory):
                return
            if not directory.waiting:
                self._close(directory)

    def _enter(self, directory):
        """Open a directory (the root is already); False, with why counted in the result, when it can't be."""
        try:
            self._fd_of(directory)
        except OSError as error:
            self._failed(error)
            return False
        finally:
            if directory.parent is not None:
                self._one_less_waiting(directory.parent)
        return True

    def _list(self, directory):
        """Count the entries of an open directory and queue its subdirectories; False when the
        walk must stop (deadline passed, tree changed)."""
        try:
            with os.scandir(directory.fd) as entries:
                for entry in entries:
                    self.checked += 1
                    if self.checked % _DEADLINE_CHECK_EVERY == 0 and _expired(self.deadline):
                        self.result.complete = False
                        return False
                    self._count(directory, entry.name)
        except OSError as error:
            self._failed(error)  # a directory gone while being listed may have had its entries moved out
        return not self.result.changed

    def _count(self, directory, name):
        try:
            st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        except OSError as error:
            if error.errno not in _VANISHED:
                self.result.errors += 1
            return  # an entry removed between listing and stat: it is no longer there to count
        path = os.path.join(directory.path, name)
        if st.st_dev != self.root_dev or path in self.skip:
            return  # another filesystem or mount: nothing in there belongs to this volume
        if stat.S_ISDIR(st.st_mode):
            _record(self.result, st.st_ino, 0)  # directories can't be hard-linked
            self.pending.append(_Dir(directory, name, path, st.st_dev, st.st_ino))
            directory.waiting += 1
            return
        if st.st_nlink > 1:
            if st.st_ino in self.linked:
                return
            self.linked.add(st.st_ino)
        # Symlinks, fifos, sockets, devices: an inode each, no data bytes.
        _record(self.result, st.st_ino, st.st_size if stat.S_ISREG(st.st_mode) else 0)

    def _failed(self, error):
        if error.errno in _MOVED:
            self.result.changed = True
        else:
            self.result.errors += 1  # EACCES (root_squash), EIO: a real read error

    def _fd_of(self, directory):
        """The directory's fd, opening it (and each ancestor whose fd was closed) by name from the
        nearest ancestor still open, the root at worst."""
        chain = []
        while directory.fd is None:
            chain.append(directory)
            directory = directory.parent
        self._used(directory)
        for child in reversed(chain):
            self._open(directory, child)
            directory = child
        return directory.fd

    def _open(self, parent, directory):
        """Open a directory by name from its parent's fd, and check it is the one listed there."""
        directory.fd = os.open(directory.name, _DIR_FLAGS, dir_fd=parent.fd)
        self.open_dirs[directory] = True  # from now on close_all() closes it, whatever happens
        while len(self.open_dirs) > _MAX_OPEN:
            self._close(next(iter(self.open_dirs)))
        st = os.fstat(directory.fd)
        if (st.st_dev, st.st_ino) != (directory.dev, directory.ino):
            self._close(directory)  # another directory (or a mount point) now has its name
            raise OSError(errno.ESTALE, "replaced during the walk", directory.path)

    def _used(self, directory):
        if directory in self.open_dirs:
            self.open_dirs.move_to_end(directory)

    def _one_less_waiting(self, directory):
        # Once all its subdirectories are entered, a directory's fd is only needed to re-open
        # theirs, which its own parent can do as well.
        directory.waiting -= 1
        if not directory.waiting:
            self._close(directory)

    def _close(self, directory):
        if directory in self.open_dirs:
            del self.open_dirs[directory]
            os.close(directory.fd)
            directory.fd = None

    def close_all(self):
        for directory in list(self.open_dirs):
            self._close(directory)


def _record(result, ino, size):
    """Count one inode; every inode is listed so a scan can correct any it saw (usage.py)."""
    result.files += 1
    result.bytes += size
    result.inos.append(ino)
    result.sizes.append(size)


def walk_trees(roots, timeout, deadline=None):
    """Yield walk_tree() of each root in turn, or the WalkError it raised, reading the mount table
    once for all. Each walk gets `timeout` seconds, and none goes past the time.monotonic()
    `deadline`. Made to run in a Worker: the walks of many volumes in one child."""
    mounts = _mount_table()
    parents = {}
    for root in roots:
        walk_deadline = time.monotonic() + timeout
        if deadline is not None:
            walk_deadline = min(walk_deadline, deadline)
        try:
            real = canonical(root, parents)
            yield walk_tree(real, walk_deadline, mounts.mount_points_below(real))
        except Exception as error:
            yield WalkError(describe_error(error))


def canonical(path, parents):
    """os.path.realpath(path) at the cost of one lstat: the parent directory's real path is
    kept in `parents` for its other children (volumes are mostly siblings)."""
    parent, name = os.path.split(path)
    if not name or path != os.path.normpath(path) or stat.S_ISLNK(os.lstat(path).st_mode):
        return os.path.realpath(path)  # "..", "//", a trailing "/": realpath knows best
    if parent not in parents:
        parents[parent] = os.path.realpath(parent)
    return os.path.join(parents[parent], name)


def _mount_table():
    try:
        return MountTable(read_mountinfo())
    except (OSError, ValueError):
        return MountTable([])  # no mount points known: walk everything on root's filesystem


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
    with Worker(lambda *args: [func(*args)], _name(func)) as worker:
        return list(worker.run(args, timeout))[0]


class Worker:
    """A forked child that runs a generator function on request and streams back each item it
    yields, so that many walks cost one fork. Like run_with_timeout, it can't hang the caller: a
    child that stays silent too long is SIGKILLed and left to reap_children().

        with Worker(walk_trees) as worker:
            for result in worker.run((roots, timeout), timeout + 5):
                ...
    """

    def __init__(self, func, name=None):
        self.name = name or _name(func)
        reap_children()
        request_read, self._requests = os.pipe()
        self._results, result_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._requests)
            os.close(self._results)
            _serve(func, _Reader(request_read), result_write)  # never returns
        os.close(request_read)
        os.close(result_write)
        self._reader = _Reader(self._results)
        self._busy = False  # a request is under way

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, args, silence, deadline=None, pace=0.0):
        """Yield the items of func(*args) as the child sends them.

        WalkTimeout when the child sends nothing for `silence` seconds (None: no limit) or
        anything after the time.monotonic() `deadline`: the child is killed and the worker closed.
        WalkError("<type>: <message>") when func raised, or when the child died. With `pace`,
        the pipe is read at most every `pace` seconds: waking up for every small item takes CPU
        from the child (walks took 3x as long in the test bed, where QEMU runs all vCPUs on one
        host thread).
        """
        if self.pid is None:
            raise WalkError("%s: its child process was killed after a timeout" % self.name)
        _send(self._requests, args)
        self._busy = True
        while True:
            limit = None if silence is None else time.monotonic() + silence
            if deadline is not None:
                limit = deadline if limit is None else min(limit, deadline)
            try:
                message = self._reader.next(limit, pace)
            except EOFError:
                raise WalkError("%s: child process died without a result" % self.name)
            if message is None:
                self._kill()
                raise WalkTimeout("%s did not finish within %s seconds" % (self.name, silence))
            kind, value = message
            self._busy = kind == "item"
            if kind == "end":
                return
            if kind == "error":
                raise WalkError(value)
            yield value

    def close(self):
        """Let the child go: it exits once its requests pipe is closed, or is killed if it is
        still working on a request nobody will read."""
        if self._busy:
            self._kill()
        if self.pid is not None:
            os.close(self._requests)
            os.close(self._results)
            _reap_finished(self.pid)
            self.pid = None

    def _kill(self):
        os.close(self._requests)
        os.close(self._results)
        _abandon(self.pid)
        self.pid = None
        self._busy = False


def _serve(func, requests, result_fd):
    """The child of a Worker: run each request until the parent closes the pipe."""
    # os._exit everywhere: the child must not run the parent's atexit handlers or flush its buffers.
    status = 0
    try:
        while True:
            args = requests.next(None)
            try:
                for value in func(*args):
                    _send(result_fd, ("item", value))
                message = ("end", None)
            except BaseException as error:  # the parent gets every failure, KeyboardInterrupt included
                message = ("error", describe_error(error))
            _send(result_fd, message)
    except EOFError:
        pass  # no more requests
    except BaseException:
        status = 2
    finally:
        os._exit(status)


def describe_error(error):
    """"<type>: <message>", as a WalkError from the child says it."""
    return type(error).__name__ + (": %s" % (error,) if str(error) else "")


_LENGTH = struct.Struct("=Q")


def _send(fd, message):
    """Write one message: its pickle's length, then the pickle."""
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


class _Reader:
    """The messages _send() writes into a pipe, one at a time."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = bytearray()

    def next(self, deadline, pace=0.0):
        """The next message, or None once the time.monotonic() deadline (None: none) has passed;
        EOFError when the writer closed the pipe before a whole message arrived. With `pace`,
        waits that long before each read, letting messages gather in the pipe."""
        while True:
            if len(self.buffer) >= _LENGTH.size:
                end = _LENGTH.size + _LENGTH.unpack_from(self.buffer)[0]
                if len(self.buffer) >= end:
                    message = pickle.loads(bytes(self.buffer[_LENGTH.size:end]))
                    del self.buffer[:end]
                    return message
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if pace:
                time.sleep(pace if remaining is None else min(pace, remaining))
            ready, _w, _x = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise EOFError("the writer closed the pipe")
                self.buffer += chunk


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
