# -*- coding: utf-8 -*-
"""Growth is admitted with its byte count, all of it or nothing: no call size, number of files,
writers or write path takes a volume past its limit (SOUNDNESS.md section B: #8-#13).

Each test writes as a tenant would (uid 65534 where no privilege is needed) into an empty volume
on a real NFS mount and then checks the bytes on disk against the limit. Without admission by
byte count each of them ends far past the limit (the issue's table: 256 MiB from one dd, 128 MiB
from cp or fallocate, 64 MiB from 64 open files, ...).
"""
import errno
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import MiB, fill, report

LIMIT = 4 * MiB
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(params=["nfs4", "nfs3"])
def volume(request, share):
    """An empty, enforced 4 MiB volume on the given NFS version (world-writable); its client path."""
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": LIMIT, "mount": request.param})
    return share.client("pv", request.param)


def bytes_in(path):
    """Apparent bytes of every file below `path` (what a volume's usage counts)."""
    total = 0
    for parent, dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(parent, name)).st_size
    return total


def as_tenant(code, *args, cwd=None):
    """Run Python `code` as uid 65534; its stdout's words."""
    proc = subprocess.run(NOBODY + [sys.executable, "-c", textwrap.dedent(code)] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=cwd,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def used_bytes(path):
    return report()[path]["used_bytes"]


WRITE_ONE_CALL = """
import errno, os, sys
path, how, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
buf = b"x" * size
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
try:
    if how == "write":
        n = os.write(fd, buf)
    elif how == "pwrite":
        n = os.pwrite(fd, buf, 0)
    elif how == "writev":
        n = os.writev(fd, [buf[: size // 2], buf[size // 2:]])
    else:
        src = os.open(sys.argv[4], os.O_RDONLY)
        n = os.sendfile(fd, src, 0, size) if how == "sendfile" else os.copy_file_range(src, fd, size)
    print("ok", n)
except OSError as e:
    print("errno", e.errno)
"""


@pytest.mark.parametrize("how", ["write", "pwrite", "writev", "sendfile", "copy_file_range"])
def test_one_call_larger_than_the_room_is_refused_whole(volume, how):
    source = os.path.join(os.path.dirname(volume), "source")
    with open(source, "wb") as f:
        f.write(b"s" * (64 * MiB))
    path = os.path.join(volume, "big")
    assert as_tenant(WRITE_ONE_CALL, path, how, 64 * MiB, source) == ["errno", str(errno.EDQUOT)]
    assert os.stat(path).st_size == 0
    # What fits is still admitted, to the byte.
    assert as_tenant(WRITE_ONE_CALL, path, how, LIMIT, source) == ["ok", str(LIMIT)]
    assert bytes_in(volume) == LIMIT == used_bytes(volume)


def test_cp_of_a_file_larger_than_the_limit_fails_and_leaves_the_volume_within_it(volume):
    source = os.path.join(os.path.dirname(volume), "source")
    with open(source, "wb") as f:
        f.write(b"s" * (32 * MiB))
    proc = subprocess.run(NOBODY + ["cp", source, os.path.join(volume, "copy")], stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode != 0 and "Disk quota exceeded" in proc.stderr
    assert bytes_in(volume) <= LIMIT


FALLOCATE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for spec in sys.argv[2:]:
    mode, offset, length = (int(x) for x in spec.split(":"))
    print("ok" if libc.fallocate(fd, mode, offset, length) == 0 else "errno %d" % ctypes.get_errno())
"""
KEEP_SIZE = 1


def test_fallocate_is_admitted_with_its_length(volume):
    path = os.path.join(volume, "prealloc")
    out = as_tenant(FALLOCATE, path, "0:0:%d" % (32 * MiB), "0:0:%d" % (3 * MiB),
                    "%d:%d:%d" % (KEEP_SIZE, 3 * MiB, MiB))
    if "/nfs3/" in volume:  # NFSv3 has no ALLOCATE: admitted, the 3 MiB then fail in NFS itself
        assert out == ["errno", str(errno.EDQUOT), "errno", str(errno.EOPNOTSUPP), "errno", str(errno.EOPNOTSUPP)]
        assert bytes_in(volume) == 0
        return
    # 32 MiB refused whole; 3 MiB admitted; preallocating past the end while keeping the size
    # (real blocks the apparent size would never count) refused.
    assert out == ["errno", str(errno.EDQUOT), "ok", "errno", str(errno.EOPNOTSUPP)]
    assert bytes_in(volume) == 3 * MiB == used_bytes(volume)


def test_one_write_to_each_of_many_open_files(volume):
    out = as_tenant("""
        import os, sys
        fds = [os.open(os.path.join(sys.argv[1], "f%d" % i), os.O_WRONLY | os.O_CREAT, 0o644) for i in range(64)]
        written, refused = 0, 0
        for fd in fds:  # all open at once: nothing is charged late
            try:
                written += os.write(fd, b"x" * (1 << 20))
            except OSError:
                refused += 1
        print(written, refused)
        """, volume)
    assert out == [str(LIMIT), str(64 - LIMIT // MiB)]
    assert bytes_in(volume) == LIMIT == used_bytes(volume)


def test_concurrent_writers_on_one_file_and_on_many(volume):
    out = as_tenant("""
        import os, sys, threading
        path = sys.argv[1]
        fd = os.open(os.path.join(path, "shared"), os.O_WRONLY | os.O_CREAT, 0o644)
        buf = b"x" * (1 << 20)
        done = []
        def one_file(i):
            try:
                done.append(os.pwrite(fd, buf, i * len(buf)))
            except OSError:
                pass
        def own_file(i):
            own = os.open(os.path.join(path, "own%d" % i), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                done.append(os.write(own, buf))
            except OSError:
                pass
        threads = [threading.Thread(target=one_file, args=(i,)) for i in range(16)]
        threads += [threading.Thread(target=own_file, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(sum(done))
        """, volume)
    assert int(out[0]) <= LIMIT
    assert bytes_in(volume) <= LIMIT


def test_append_flag_of_one_call_counts_as_growth(volume):
    path = os.path.join(volume, "f")
    out = as_tenant("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * (3 << 20))
        buf = [b"y" * (2 << 20)]
        try:
            os.pwritev(fd, buf, 0, os.RWF_APPEND)  # looks like an overwrite at 0, lands at the end
            print("appended")
        except OSError as e:
            print("errno", e.errno)
        print(os.pwritev(fd, buf, 0))  # a real overwrite adds nothing: admitted
        """, path)
    assert out == ["errno", str(errno.EDQUOT), str(2 * MiB)]
    assert bytes_in(volume) == 3 * MiB


def test_at_the_limit_overwrites_are_admitted_and_growth_is_not(volume):
    path = os.path.join(volume, "f")
    written, err = fill(path)
    assert (written, err) == (LIMIT, errno.EDQUOT)
    with open(path, "r+b") as f:
        f.write(b"o" * MiB)  # overwrite at 0: adds nothing
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.pwrite(fd, b"x", LIMIT)
        assert exc.value.errno == errno.EDQUOT
    finally:
        os.close(fd)
    assert bytes_in(volume) == LIMIT == used_bytes(volume)


def test_a_sparse_write_counts_its_apparent_size(volume):
    out = as_tenant("""
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
        for offset in (1 << 40, (4 << 20) - 1):
            try:
                print(os.pwrite(fd, b"x", offset))
            except OSError as e:
                print("errno", e.errno)
        """, os.path.join(volume, "sparse"))
    assert out == ["errno", str(errno.EDQUOT), "1"]
    assert bytes_in(volume) == LIMIT


def test_a_core_dump_into_a_volume_is_admitted_with_its_size(volume):
    pattern_path = "/proc/sys/kernel/core_pattern"
    with open(pattern_path) as f:
        pattern = f.read()
    with open(pattern_path, "w") as f:
        f.write("core")
    try:
        proc = subprocess.run(NOBODY + ["sh", "-c", "ulimit -c unlimited; exec python3 -c "
                                        "'import os; b = bytearray(64 << 20); os.abort()'"],
                              cwd=volume, stderr=subprocess.PIPE, check=False)
    finally:
        with open(pattern_path, "w") as f:
            f.write(pattern)
    assert proc.returncode != 0  # SIGABRT
    assert bytes_in(volume) <= LIMIT
    assert used_bytes(volume) == bytes_in(volume)


def test_a_truncate_frees_its_room_once_it_has_happened(volume):
    path = os.path.join(volume, "f")
    assert fill(path) == (LIMIT, errno.EDQUOT)
    os.truncate(path, MiB)  # through the path: no open file to catch up at close
    assert used_bytes(volume) == MiB
    assert fill(os.path.join(volume, "g")) == (LIMIT - MiB, errno.EDQUOT)
    assert bytes_in(volume) == LIMIT == used_bytes(volume)


def test_a_truncate_that_fails_frees_nothing(volume, share):
    path = os.path.join(volume, "f")
    assert fill(path) == (LIMIT, errno.EDQUOT)
    server_side = os.path.join(share.server, "pv", "f")
    subprocess.run(["chattr", "+i", server_side], check=True)  # the server refuses the SETATTR
    try:
        with pytest.raises(OSError) as exc:
            os.truncate(path, 0)
        assert exc.value.errno in (errno.EPERM, errno.EACCES)
        assert fill(os.path.join(volume, "g")) == (0, errno.EDQUOT)
        assert used_bytes(volume) == LIMIT
    finally:
        subprocess.run(["chattr", "-i", server_side], check=True)
    os.truncate(path, 0)
    assert used_bytes(volume) == bytes_in(volume) == 0
