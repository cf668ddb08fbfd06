# -*- coding: utf-8 -*-
"""Fixtures for the tests that run inside the test-bed VM (python3 -m testbed pytest -- tests/vm).

The VM exports /srv/nfs over NFS to itself and mounts it at /mnt/nfs3 (NFSv3) and
/mnt/nfs4 (NFSv4.2): every volume here is a directory of that export, reached
through a real NFS mount.
"""
import contextlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from ansible_collections.bpfquota.nfs.plugins.module_utils import cli  # noqa: E402

EXPORT = "/srv/nfs"
MOUNTS = {"nfs3": "/mnt/nfs3", "nfs4": "/mnt/nfs4"}
OBJECT = os.path.join(ROOT, "build", "bpfquota.bpf.o")
WPATH = os.path.join(ROOT, "build", "wpath")
MiB = 1 << 20


def pytest_collection_modifyitems(config, items):
    if not os.path.isdir(EXPORT):
        # Never skip silently: running these on the host is a mistake, and says how to run them.
        raise pytest.UsageError("tests/vm run inside the test-bed VM: python3 -m testbed pytest -- tests/vm")


def bq(*args):
    """Run the CLI in this process (Python start-up is slow under TCG). Returns (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def bq_ok(*args):
    rc, out, err = bq(*args)
    assert rc == 0, "bpfquota %s failed (rc %d): %s%s" % (" ".join(map(str, args)), rc, out, err)
    return out


def bq_process(*args, user=None):
    """The CLI as its own process, as a user runs it."""
    cmd = [sys.executable, os.path.join(ROOT, "bin", "bpfquota")] + [str(a) for a in args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)


@pytest.fixture(scope="session", autouse=True)
def enforcer():
    subprocess.run(["testbed-mount-nfs"], check=True)
    bq_ok("load", "--object", OBJECT)
    yield
    bq("apply", write_volumes_file("/tmp/bpfquota-none.yaml", []))


def write_volumes_file(path, volumes):
    with open(path, "w") as f:
        json.dump({"volumes": volumes}, f)
    return path


class Share:
    """A fresh directory of the export for one test, seen through both NFS mounts."""

    def __init__(self):
        self.name = "t-" + uuid.uuid4().hex[:8]
        self.server = os.path.join(EXPORT, self.name)
        os.makedirs(self.server)
        os.chmod(self.server, 0o777)

    def mkdir(self, rel, mode=0o777):
        path = os.path.join(self.server, rel)
        os.makedirs(path)
        os.chmod(path, mode)
        return rel

    def client(self, rel="", mount="nfs4"):
        return os.path.join(MOUNTS[mount], self.name, rel).rstrip("/")

    def apply(self, *volumes, **options):
        """Apply exactly these volumes: dicts with 'path' relative to the share (client path via nfs4)."""
        entries = []
        for v in volumes:
            entry = dict(v)
            entry["path"] = self.client(v["path"], v.get("mount", "nfs4"))
            entry.pop("mount", None)
            entries.append(entry)
        bq_ok("apply", write_volumes_file("/tmp/%s.yaml" % self.name, entries), *options.get("args", ()))

    def cleanup(self):
        bq("apply", write_volumes_file("/tmp/%s.yaml" % self.name, []))
        shutil.rmtree(self.server, ignore_errors=True)


@pytest.fixture
def share():
    s = Share()
    yield s
    s.cleanup()


def report():
    """{path: row} from `bpfquota report --json`."""
    return dict((row["path"], row) for row in json.loads(bq_ok("report", "--json"))["volumes"])


def counted_usage(root):
    """(bytes, inodes) below root as a scan counts them: regular files' apparent sizes, every inode
    once (hard links too), directories 0 bytes."""
    sizes = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                info = os.lstat(os.path.join(parent, name))
            except FileNotFoundError:
                continue  # gone since listed: an NFS silly-renamed .nfsXXXX whose delete just completed, say
            sizes[info.st_ino] = info.st_size if stat.S_ISREG(info.st_mode) else 0
    return sum(sizes.values()), len(sizes)


def fill(path, chunk=MiB, max_chunks=64):
    """Append `chunk`-byte writes until one is refused; returns (bytes written, errno)."""
    written = 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as e:
        return written, e.errno
    try:
        for dummy in range(max_chunks):
            try:
                written += os.write(fd, b"x" * chunk)
            except OSError as e:
                return written, e.errno
    finally:
        os.close(fd)
    return written, None


def journal_entries(volume, since):
    """The journal's entries about `volume` (its BPFQUOTA_VOLUME field) since unix time `since`."""
    out = subprocess.run(["journalctl", "-o", "json", "--no-pager", "--since", "@%d" % since, "BPFQUOTA_VOLUME=" + volume],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]
