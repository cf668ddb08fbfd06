# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pathlib
import pickle
import shutil
import tempfile
import time

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import walk
from ansible_collections.bpfquota.nfs.plugins.module_utils.walk import (
    WalkError,
    WalkTimeout,
    Worker,
    canonical,
    reap_children,
    run_with_timeout,
    walk_tree,
    walk_trees,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def write(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return os.stat(str(path)).st_ino


def test_counts_files_dirs_and_apparent_bytes(tmp_path):
    a = write(tmp_path / "a", 100)
    b = write(tmp_path / "dir" / "b", 5000)
    (tmp_path / "dir" / "empty").mkdir()
    with open(str(tmp_path / "sparse"), "wb") as handle:
        handle.truncate(10 * 1024 * 1024)  # 10 MiB apparent, no blocks
    sparse = os.stat(str(tmp_path / "sparse")).st_ino

    result = walk_tree(str(tmp_path))

    assert result.complete is True
    assert result.errors == 0
    assert result.files == 5  # a, dir, dir/b, dir/empty, sparse (not the root itself)
    assert result.bytes == 100 + 5000 + 10 * 1024 * 1024
    dirs = [os.stat(str(tmp_path / "dir")).st_ino, os.stat(str(tmp_path / "dir" / "empty")).st_ino]
    # Every counted inode is listed; directories count no bytes.
    assert sorted(zip(result.inos, result.sizes)) == sorted(
        [(a, 100), (b, 5000), (sparse, 10 * 1024 * 1024), (dirs[0], 0), (dirs[1], 0)])
    assert result.inos.typecode == "Q" and result.sizes.typecode == "q"


def test_hard_links_count_once(tmp_path):
    write(tmp_path / "one", 300)
    os.link(str(tmp_path / "one"), str(tmp_path / "two"))
    (tmp_path / "sub").mkdir()
    os.link(str(tmp_path / "one"), str(tmp_path / "sub" / "three"))
    result = walk_tree(str(tmp_path))
    assert (result.files, result.bytes, len(result.inos)) == (2, 300, 2)  # one inode + sub


def test_symlinks_are_inodes_without_bytes_and_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    write(outside / "big", 10000)
    volume = tmp_path / "volume"
    volume.mkdir()
    os.symlink(str(outside), str(volume / "to-dir"))
    os.symlink(str(outside / "big"), str(volume / "to-file"))
    os.symlink("dangling", str(volume / "dangling"))
    os.mkfifo(str(volume / "fifo"))
    result = walk_tree(str(volume))
    assert (result.files, result.bytes, len(result.inos)) == (4, 0, 4)
    assert set(result.sizes) == {0}


def test_deep_tree_has_no_recursion_limit(tmp_path):
    path = tmp_path
    for level in range(70):
        path = path / ("d%d" % level)
    write(path / "leaf", 7)
    result = walk_tree(str(tmp_path))
    assert (result.files, result.bytes, result.complete) == (71, 7, True)


def test_deadline_passed_stops_with_incomplete_result(tmp_path):
    for index in range(200):
        write(tmp_path / ("d%d" % (index % 10)) / ("f%d" % index), 1)
    result = walk_tree(str(tmp_path), deadline=time.monotonic() - 1)
    assert result.complete is False
    assert result.files == 0
    full = walk_tree(str(tmp_path), deadline=time.monotonic() + 60)
    assert (full.complete, full.files, full.bytes) == (True, 210, 200)


def test_deadline_expiring_inside_a_large_directory_stops_promptly(tmp_path, monkeypatch):
    for index in range(1000):
        write(tmp_path / ("f%d" % index), 1)
    checks = []

    def expires_on_third_check(deadline):
        checks.append(deadline)
        return len(checks) >= 3

    monkeypatch.setattr(walk, "_expired", expires_on_third_check)
    result = walk_tree(str(tmp_path), deadline=1.0, skip=())
    assert result.complete is False
    assert 0 < result.files < 1000


def test_vanished_entries_are_skipped_silently(tmp_path, monkeypatch):
    write(tmp_path / "stays", 10)
    write(tmp_path / "goes", 20)
    real_scandir = os.scandir

    def scandir_then_delete(path):
        entries = list(real_scandir(path))
        if os.path.exists(str(tmp_path / "goes")):
            os.unlink(str(tmp_path / "goes"))  # deleted after listing, before its stat
        return _Listing(entries)

    monkeypatch.setattr(walk.os, "scandir", scandir_then_delete)
    result = walk_tree(str(tmp_path), skip=())
    assert (result.files, result.bytes, result.errors) == (1, 10, 0)


class _Listing(list):
    """A directory listing made in advance; after() runs when the walk is done with it."""

    after = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.after:
            self.after()
        return False


@pytest.fixture
def shared_tmp():
    """A directory that the user nobody can reach, unlike tmp_path (below a 0700 directory)."""
    root = tempfile.mkdtemp(prefix="bpfquota-walk-")
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        for path, dirs, dummy_files in os.walk(root):
            for name in dirs:
                os.chmod(os.path.join(path, name), 0o755)  # before os.walk lists it: what a test locked
        shutil.rmtree(root)


def _walk_as_nobody(root):
    if os.geteuid() == 0:  # root reads everything: drop to nobody, as root_squash does over NFS
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return walk_tree(root, skip=())


def test_a_directory_that_cannot_be_read_is_an_error(shared_tmp):
    write(pathlib.Path(shared_tmp, "public"), 1)
    write(pathlib.Path(shared_tmp, "locked", "f"), 1)
    os.chmod(os.path.join(shared_tmp, "public"), 0o644)
    os.chmod(os.path.join(shared_tmp, "locked"), 0o700 if os.geteuid() == 0 else 0o000)
    result = run_with_timeout(_walk_as_nobody, (shared_tmp,), 30)
    assert (result.files, result.errors, result.changed, result.complete) == (2, 1, False, True)


def make_nested(top, names):
    """Directories names[0]/names[1]/... below top, each holding a file "f" of 10 bytes, made
    relative to directory fds: the path of the deepest may be longer than PATH_MAX."""
    fd = os.open(str(top), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            data = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(data, b"0123456789")
            os.close(data)
    finally:
        os.close(fd)


def test_a_tree_deeper_than_path_max_is_counted_completely(tmp_path):
    names = [("%02d" % level) + "n" * 248 for level in range(20)]
    assert len(str(tmp_path)) + 251 * len(names) > os.pathconf("/", "PC_PATH_MAX")
    make_nested(tmp_path, names)
    try:
        result = walk_tree(str(tmp_path))
        assert (result.files, result.bytes, result.errors, result.complete, result.changed) == (40, 200, 0, True, False)
    finally:
        shutil.rmtree(str(tmp_path / names[0]))  # rmtree works by dir fds too


def sorted_listings(monkeypatch, listed=None):
    """Make os.scandir list in name order (so the walk enters the last name first); `listed(fd)`
    is called after each listing."""
    real_scandir = os.scandir

    def scandir(fd):
        with real_scandir(fd) as entries:
            listing = _Listing(sorted(entries, key=lambda entry: entry.name))
        listing.after = (lambda: listed(fd)) if listed else None
        return listing

    monkeypatch.setattr(walk.os, "scandir", scandir)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_open_fds_stay_bounded_and_closed_ancestors_are_reopened(tmp_path, monkeypatch):
    # Each level holds a side directory with a file, and the next level; the walk goes down to
    # the bottom first, so 30 directories wait for their side directory to be entered.
    level = tmp_path
    for index in range(30):
        write(level / "a-side" / "f", 1)
        level = level / "z-next"
    level.mkdir()
    monkeypatch.setattr(walk, "_MAX_OPEN", 4)
    before = open_fds()
    peak = []
    sorted_listings(monkeypatch, lambda fd: peak.append(open_fds()))
    opens = []
    real_open = os.open

    def counting_open(*args, **kwargs):
        opens.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(walk.os, "open", counting_open)
    result = walk_tree(str(tmp_path), skip=())
    assert (result.files, result.bytes, result.errors, result.complete, result.changed) == (90, 30, 0, True, False)
    assert max(peak) <= before + 1 + 4 + 1  # the root, _MAX_OPEN others, the fd counting them
    assert opens.count("z-next") > 30  # directories closed for the bound were re-opened by name
    assert open_fds() == before


def swap_after_listing(monkeypatch, directory, swap):
    """Run swap() once `directory` has been listed (and its entries stat'ed) by the walk: after
    the walk queued its subdirectories, before it enters them."""
    ino = os.stat(str(directory)).st_ino
    done = []

    def listed(fd):
        if os.fstat(fd).st_ino == ino and not done:
            done.append(True)
            swap()

    sorted_listings(monkeypatch, listed)
    return done


@pytest.fixture
def moving_tree(tmp_path):
    """volume/x/sub holds 300 bytes; outside/ 10000 bytes that are not the volume's."""
    write(tmp_path / "outside" / "big", 10000)
    volume = tmp_path / "volume"
    write(volume / "x" / "sub" / "data", 300)
    write(volume / "x" / "y" / "other", 5)
    return volume


def test_a_queued_directory_replaced_by_a_symlink_is_not_followed(moving_tree, tmp_path, monkeypatch):
    sub = moving_tree / "x" / "sub"

    def to_symlink():
        os.rename(str(sub), str(moving_tree / "x" / "sub.r"))
        os.symlink(str(tmp_path / "outside"), str(sub))

    done = swap_after_listing(monkeypatch, moving_tree / "x", to_symlink)
    result = walk_tree(str(moving_tree), skip=())
    assert done and (result.changed, result.errors) == (True, 0)
    assert os.stat(str(tmp_path / "outside" / "big")).st_ino not in result.inos
    assert result.bytes < 10000


def test_a_queued_directory_renamed_away_changes_the_walk(moving_tree, monkeypatch):
    # Into the root, already listed: the walk would never see its 300 bytes.
    sub = moving_tree / "x" / "sub"
    done = swap_after_listing(monkeypatch, moving_tree / "x",
                              lambda: os.rename(str(sub), str(moving_tree / "sub")))
    result = walk_tree(str(moving_tree), skip=())
    assert done and (result.changed, result.errors) == (True, 0)
    monkeypatch.undo()
    whole = walk_tree(str(moving_tree), skip=())
    assert (whole.changed, whole.bytes, whole.files) == (False, 305, 5)


@pytest.mark.parametrize("replacement", ["directory", "file"])
def test_a_queued_directory_replaced_by_another_inode_changes_the_walk(moving_tree, monkeypatch, replacement):
    sub = moving_tree / "x" / "sub"

    def replace():
        os.rename(str(sub), str(moving_tree / "sub"))
        if replacement == "directory":
            sub.mkdir()
        else:
            write(sub, 1)

    done = swap_after_listing(monkeypatch, moving_tree / "x", replace)
    result = walk_tree(str(moving_tree), skip=())
    assert done and (result.changed, result.errors) == (True, 0)


def test_an_ancestor_moved_before_it_is_reopened_changes_the_walk(tmp_path, monkeypatch):
    # With one fd besides the root's, a/ is closed while its last subdirectory waits; when a/ has
    # moved meanwhile, re-opening it by name finds nothing there.
    write(tmp_path / "a" / "a-side" / "f", 1)
    write(tmp_path / "a" / "z-next" / "deeper" / "f", 1)
    monkeypatch.setattr(walk, "_MAX_OPEN", 1)
    done = swap_after_listing(monkeypatch, tmp_path / "a" / "z-next" / "deeper",
                              lambda: os.rename(str(tmp_path / "a"), str(tmp_path / "b")))
    result = walk_tree(str(tmp_path), skip=())
    assert done and (result.changed, result.errors) == (True, 0)


def test_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        walk_tree(str(tmp_path / "nope"))


@needs_root
def test_other_filesystem_below_root_is_not_crossed(tmp_path, mounted):
    write(tmp_path / "mine", 10)
    (tmp_path / "tmpfs").mkdir()
    mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(tmp_path / "tmpfs"))
    write(tmp_path / "tmpfs" / "theirs", 1000)
    # even without the mount table, st_dev tells the filesystems apart
    for skip in (None, ()):
        result = walk_tree(str(tmp_path), skip=skip)
        assert (result.files, result.bytes) == (1, 10)


@needs_root
def test_bind_mount_of_the_same_filesystem_below_root_is_not_walked(tmp_path, mounted):
    volume = tmp_path / "volume"
    write(volume / "mine", 10)
    write(tmp_path / "elsewhere" / "theirs", 1000)
    (volume / "bind").mkdir()
    (volume / "loop").mkdir()
    mounted("--bind", str(tmp_path / "elsewhere"), str(volume / "bind"))
    mounted("--bind", str(volume), str(volume / "loop"))  # the volume inside itself
    result = walk_tree(str(volume))
    assert (result.files, result.bytes, result.complete) == (1, 10, True)


def test_run_with_timeout_returns_the_result(tmp_path):
    write(tmp_path / "f", 42)
    result = run_with_timeout(walk_tree, (str(tmp_path),), 30)
    assert (result.files, result.bytes, list(result.sizes)) == (1, 42, [42])


def test_run_with_timeout_carries_a_large_result():
    assert run_with_timeout(bytes, (5 * 1024 * 1024,), 30) == bytes(5 * 1024 * 1024)


def test_run_with_timeout_times_out_without_waiting_for_the_child():
    started = time.monotonic()
    with pytest.raises(WalkTimeout):
        run_with_timeout(time.sleep, (30,), 0.5)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while reap_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reap_children() == 0


def test_run_with_timeout_reraises_the_child_exception(tmp_path):
    with pytest.raises(WalkError, match=r"^FileNotFoundError: .*nope"):
        run_with_timeout(walk_tree, (str(tmp_path / "nope"),), 30)


def _fail_plainly():
    raise KeyError("volume-7")


def _exit_hard():
    os._exit(3)


def test_run_with_timeout_reports_exceptions_and_dead_children():
    with pytest.raises(WalkError, match=r"^KeyError: 'volume-7'$"):
        run_with_timeout(_fail_plainly, (), 30)
    with pytest.raises(WalkError, match="died without a result"):
        run_with_timeout(_exit_hard, (), 30)
    with pytest.raises(WalkError, match="^PicklingError|^AttributeError|^TypeError"):
        run_with_timeout(lambda: (lambda: None), (), 30)  # a result that can't be pickled


def test_walk_result_pickles():
    result = walk_tree(os.path.dirname(__file__), skip=())
    again = pickle.loads(pickle.dumps(result))
    assert (again.files, again.bytes, list(again.inos)) == (result.files, result.bytes, list(result.inos))


# --- Worker and walk_trees: many walks in one child -----------------------------------------

def _numbers(count, pause=0.0):
    for number in range(count):
        time.sleep(pause)
        yield (os.getpid(), number)


def _fail_after(count):
    yield from range(count)
    raise KeyError("volume-%d" % count)


def wait_for_reaped_children():
    deadline = time.monotonic() + 5
    while reap_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return reap_children()


def test_a_worker_serves_many_requests_from_one_child():
    with Worker(_numbers) as worker:
        first = list(worker.run((3,), 30))
        started = time.monotonic()
        second = list(worker.run((2,), 30, pace=0.1))
        assert time.monotonic() - started >= 0.1  # read after a pause, both at once
    assert [n for pid, n in first] == [0, 1, 2] and [n for pid, n in second] == [0, 1]
    assert len(set(pid for pid, n in first + second)) == 1 and first[0][0] != os.getpid()
    assert wait_for_reaped_children() == 0


def test_a_worker_streams_items_before_its_request_ends():
    with Worker(_numbers) as worker:
        got = []
        with pytest.raises(WalkTimeout):
            for item in worker.run((5, 0.4), 2.0, deadline=time.monotonic() + 1.0):
                got.append(item[1])
        assert 1 <= len(got) < 5  # what arrived before the deadline is kept
        with pytest.raises(WalkError, match="killed after a timeout"):
            list(worker.run((1,), 30))
    assert wait_for_reaped_children() == 0


def test_a_silent_worker_is_killed_after_the_silence_allowed():
    started = time.monotonic()
    with Worker(_numbers) as worker:
        with pytest.raises(WalkTimeout):
            list(worker.run((2, 30), 0.5))
    assert time.monotonic() - started < 5
    assert wait_for_reaped_children() == 0


def test_a_worker_reports_a_failed_request_and_serves_the_next():
    with Worker(_fail_after) as worker:
        for count in (2, 1):
            got = []
            with pytest.raises(WalkError, match=r"^KeyError: 'volume-%d'$" % count):
                for item in worker.run((count,), 30):
                    got.append(item)
            assert got == list(range(count))
    with Worker(lambda: [os._exit(3)]) as worker:
        with pytest.raises(WalkError, match="died without a result"):
            list(worker.run((), 30))


def _one_then_sleep():
    yield 1
    time.sleep(30)
    yield 2


def test_closing_a_worker_in_the_middle_of_a_request_kills_its_child():
    started = time.monotonic()
    with Worker(_one_then_sleep) as worker:
        assert next(worker.run((), 60)) == 1
    assert wait_for_reaped_children() == 0
    assert time.monotonic() - started < 10


def test_walk_trees_walks_each_root_within_its_time(tmp_path):
    for name, size in (("a", 10), ("b", 20)):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "f", size)
    roots = [str(tmp_path / "a"), str(tmp_path / "gone"), str(tmp_path / "b")]
    a, gone, b = walk_trees(roots, 30)
    assert (a.bytes, b.bytes, a.complete, b.complete) == (10, 20, True, True)
    assert isinstance(gone, WalkError) and str(gone).startswith("FileNotFoundError")
    late = list(walk_trees(roots[:1], 30, deadline=time.monotonic() - 1))[0]
    assert late.complete is False  # the deadline passed before the walk began


def test_walk_trees_in_a_worker(tmp_path):
    write(tmp_path / "f", 7)
    with Worker(walk_trees) as worker:
        (result,) = worker.run(([str(tmp_path)], 30), 35)
    assert (result.files, result.bytes) == (1, 7)


def test_canonical_is_realpath_resolving_each_parent_once(tmp_path):
    (tmp_path / "real" / "vol").mkdir(parents=True)
    (tmp_path / "real" / "target").mkdir()
    os.symlink(str(tmp_path / "real"), str(tmp_path / "link"))
    os.symlink("target", str(tmp_path / "real" / "alias"))
    parents = {}
    for path in ("link/vol", "link/vol/", "link/alias", "real/vol", "link/../real/vol", "/"):
        assert canonical(str(tmp_path / path), parents) == os.path.realpath(str(tmp_path / path))
    assert str(tmp_path / "link") in parents
    with pytest.raises(FileNotFoundError):
        canonical(str(tmp_path / "link" / "gone"), parents)
