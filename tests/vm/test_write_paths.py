# -*- coding: utf-8 -*-
"""Every growth path is refused with EDQUOT once a volume is full; everything else still works.

Each test fills a volume on a real NFS mount first: without the enforcer the
refused operations would succeed, so the tests would fail.
"""
import errno
import mmap
import os
import socket
import stat
import subprocess

import pytest

from conftest import MiB, WPATH, fill, report

LIMIT = 4 * MiB


@pytest.fixture(params=["nfs4", "nfs3"])
def full(request, share):
    """A full volume (4 MiB limit) on the given NFS version; returns (share, volume path)."""
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": LIMIT, "mount": request.param})
    vol = share.client("pv", request.param)
    with open(os.path.join(vol, "kept"), "wb"):
        pass
    written, err = fill(os.path.join(vol, "filler"))
    assert err == errno.EDQUOT, "the volume never filled up: %d bytes written" % written
    return share, vol


def expect_edquot(func, *args):
    with pytest.raises(OSError) as exc:
        func(*args)
    assert exc.value.errno == errno.EDQUOT, "expected EDQUOT, got %r" % exc.value


def test_one_writer_fills_the_volume_to_the_byte_and_no_further(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 10 * MiB + 1})
    path = os.path.join(share.client("pv"), "f")
    written, err = fill(path)
    assert (written, err) == (10 * MiB, errno.EDQUOT)  # the 11th MiB doesn't fit: refused whole
    assert fill(path, chunk=2) == (0, errno.EDQUOT)
    assert fill(path, chunk=1, max_chunks=2) == (1, errno.EDQUOT)  # the last byte fits
    assert os.stat(path).st_size == 10 * MiB + 1


def test_write_family(full):
    share, vol = full
    path = os.path.join(vol, "kept")
    fd = os.open(path, os.O_WRONLY)
    try:
        expect_edquot(os.write, fd, b"x")
        expect_edquot(os.pwrite, fd, b"x", 0)  # even an overwrite: at the limit, all growth paths close
        expect_edquot(os.writev, fd, [b"a", b"b"])
        expect_edquot(os.pwritev, fd, [b"a"], 0)
    finally:
        os.close(fd)


def test_o_direct(full):
    share, vol = full
    fd = os.open(os.path.join(vol, "kept"), os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT wants
    try:
        expect_edquot(os.write, fd, buf)
    finally:
        os.close(fd)


def test_sendfile_copy_file_range_and_splice(full):
    share, vol = full
    # Same filesystem, outside the volume: copy_file_range across filesystems is EXDEV anyway.
    src = os.path.join(os.path.dirname(vol), "src")
    with open(src, "wb") as f:
        f.write(b"s" * 8192)
    with open(src, "rb") as fin, open(os.path.join(vol, "kept"), "r+b") as fout:  # not O_APPEND: copy_file_range and splice refuse it
        expect_edquot(os.sendfile, fout.fileno(), fin.fileno(), 0, 8192)
        expect_edquot(os.copy_file_range, fin.fileno(), fout.fileno(), 8192, 0)
        r, w = os.pipe()
        os.write(w, b"p" * 4096)
        try:
            expect_edquot(os.splice, r, fout.fileno(), 4096)
        finally:
            os.close(r)
            os.close(w)


@pytest.mark.parametrize("path", ["aio", "io_uring"])
def test_async_io(full, path):
    share, vol = full
    out = subprocess.run([WPATH, path, os.path.join(vol, "kept")], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.split()
    assert out == ["errno", str(errno.EDQUOT)]


def test_fallocate(full):
    share, vol = full
    fd = os.open(os.path.join(vol, "kept"), os.O_WRONLY)
    try:
        expect_edquot(os.posix_fallocate, fd, 0, MiB)
    finally:
        os.close(fd)


def test_shared_writable_mmap_and_mprotect(full):
    share, vol = full
    path = os.path.join(vol, "filler")
    with open(path, "r+b") as f:
        expect_edquot(mmap.mmap, f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # A private writable mapping never reaches the file: allowed.
        mmap.mmap(f.fileno(), 4096, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE).close()
        # Read-only shared mapping allowed; upgrading it to writable is refused (mprotect).
        ro = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        ro.close()
    code = ("import ctypes, mmap, os, errno, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.mmap.restype = ctypes.c_void_p\n"
            "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]\n"
            "libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "addr = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)\n"
            "assert addr not in (None, ctypes.c_void_p(-1).value), 'mmap failed'\n"
            "rc = libc.mprotect(addr, 4096, mmap.PROT_READ | mmap.PROT_WRITE)\n"
            "print(rc, ctypes.get_errno())\n")
    out = subprocess.run(["python3", "-c", code, path], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout.split()
    assert out == ["-1", str(errno.EDQUOT)]


def test_truncate_growth_ftruncate_and_o_trunc(full):
    share, vol = full
    path = os.path.join(vol, "kept")
    expect_edquot(os.truncate, path, MiB)
    fd = os.open(path, os.O_WRONLY)
    try:
        expect_edquot(os.ftruncate, fd, MiB)
    finally:
        os.close(fd)
    # O_TRUNC of an empty file frees nothing: the extension after it is still refused.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        expect_edquot(os.write, fd, b"x" * 4096)
    finally:
        os.close(fd)


def test_truncate_that_would_cross_the_limit_is_refused_before_the_volume_is_full(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 4 * MiB})
    path = os.path.join(share.client("pv"), "sparse")
    open(path, "wb").close()
    expect_edquot(os.truncate, path, 5 * MiB)
    os.truncate(path, 3 * MiB)  # fits: allowed (apparent size counts)
    assert os.stat(path).st_size == 3 * MiB


def test_new_names_are_refused(full):
    share, vol = full
    expect_edquot(os.open, os.path.join(vol, "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    expect_edquot(os.mkdir, os.path.join(vol, "newdir"))
    expect_edquot(os.mknod, os.path.join(vol, "fifo"), 0o644 | stat.S_IFIFO)
    expect_edquot(os.symlink, "kept", os.path.join(vol, "sym"))
    expect_edquot(os.link, os.path.join(vol, "kept"), os.path.join(vol, "hard"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        expect_edquot(sock.bind, os.path.join(vol, "sock"))
    finally:
        sock.close()


def expect_exdev(func, *args):
    with pytest.raises(OSError) as exc:
        func(*args)
    assert exc.value.errno == errno.EXDEV, "expected EXDEV, got %r" % exc.value


def test_rename_and_link_into_a_volume_get_exdev(full, tmp_path):
    share, vol = full
    share.mkdir("outside")
    outside = os.path.join(share.client("outside", "nfs4" if "/nfs4/" in vol else "nfs3"), "f")
    with open(outside, "wb") as f:
        f.write(b"o" * 1000)
    expect_exdev(os.rename, outside, os.path.join(vol, "moved-in"))  # mv then copies: refused by EDQUOT
    expect_exdev(os.link, outside, os.path.join(vol, "linked-in"))
    assert os.path.exists(outside)


def test_rename_and_link_from_another_volume_get_exdev(share):
    share.mkdir("a")
    share.mkdir("b")
    share.apply({"path": "a", "limit": 4 * MiB}, {"path": "b", "limit": 2 * MiB})
    a, b = share.client("a"), share.client("b")
    assert fill(os.path.join(b, "filler"))[1] == errno.EDQUOT
    with open(os.path.join(a, "f"), "wb") as f:
        f.write(b"a" * 1000)
    expect_exdev(os.rename, os.path.join(a, "f"), os.path.join(b, "f"))
    expect_exdev(os.link, os.path.join(a, "f"), os.path.join(b, "f"))


def test_file_moved_between_volumes_takes_its_bytes_along(share):
    share.mkdir("a")
    share.mkdir("b")
    share.apply({"path": "a", "limit": 8 * MiB}, {"path": "b", "limit": 8 * MiB})
    a, b = share.client("a"), share.client("b")
    with open(os.path.join(a, "f"), "wb") as f:
        f.write(b"a" * (3 * MiB))
    expect_exdev(os.rename, os.path.join(a, "f"), os.path.join(b, "f"))
    subprocess.run(["mv", os.path.join(a, "f"), os.path.join(b, "f")], check=True)  # copies, then deletes
    rows = report()
    assert rows[a]["used_bytes"] == 0
    assert rows[b]["used_bytes"] == 3 * MiB


def test_directory_moved_into_an_enforced_volume_gets_exdev(share):
    share.mkdir("pv")
    share.mkdir("outside/dir")
    share.apply({"path": "pv", "limit": 8 * MiB})
    with pytest.raises(OSError) as exc:
        os.rename(share.client("outside/dir"), os.path.join(share.client("pv"), "dir"))
    assert exc.value.errno == errno.EXDEV  # like XFS project quotas: mv falls back to copying


def test_everything_that_does_not_grow_still_works_when_full(full):
    share, vol = full
    filler = os.path.join(vol, "filler")
    with open(filler, "rb") as f:
        assert f.read(10) == b"x" * 10
    assert os.stat(filler).st_size >= LIMIT
    assert "filler" in os.listdir(vol)
    os.truncate(filler, MiB)  # shrinking is allowed
    assert os.stat(filler).st_size == MiB


def test_deleting_files_makes_room_at_once(full):
    share, vol = full
    os.unlink(os.path.join(vol, "filler"))
    with open(os.path.join(vol, "again"), "wb") as f:  # no delay: unlink is accounted by the kernel
        f.write(b"y" * MiB)
    os.mkdir(os.path.join(vol, "d"))
    os.rmdir(os.path.join(vol, "d"))


def test_other_volumes_and_paths_outside_volumes_are_unaffected(share):
    share.mkdir("full")
    share.mkdir("roomy")
    share.mkdir("free")
    share.apply({"path": "full", "limit": 2 * MiB}, {"path": "roomy", "limit": 64 * MiB})
    assert fill(os.path.join(share.client("full"), "f"))[1] == errno.EDQUOT
    for where in (share.client("roomy"), share.client("free"), "/tmp"):
        with open(os.path.join(where, "ok"), "wb") as f:
            f.write(b"z" * (4 * MiB))
        os.unlink(os.path.join(where, "ok"))


def test_deep_trees(share):
    deep = os.path.join(*["d%02d" % i for i in range(40)])
    share.mkdir(os.path.join("pv", deep))
    share.apply({"path": "pv", "limit": 2 * MiB})
    leaf = os.path.join(share.client("pv"), deep)
    assert fill(os.path.join(leaf, "f"))[1] == errno.EDQUOT
    expect_edquot(os.mkdir, os.path.join(leaf, "more"))


def test_non_root_writers(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": 2 * MiB})
    path = os.path.join(share.client("pv"), "user-file")
    code = "import os\nfd = os.open(%r, os.O_WRONLY | os.O_CREAT, 0o644)\n" \
           "n = 0\ntry:\n    while n < 64:\n        os.write(fd, b'u' * (1 << 20)); n += 1\n" \
           "except OSError as e:\n    print(e.errno)\n" % path
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert out.stdout.strip() == str(errno.EDQUOT), out.stderr
    assert os.stat(path).st_uid == 65534
