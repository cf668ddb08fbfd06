# -*- coding: utf-8 -*-
"""The first scans of many new volumes, done in one batch by `apply` (usage.scan_volumes)."""
import os
import subprocess
import sys
import time

from conftest import bq, bq_ok, counted_usage, report, write_volumes_file

VOLUMES = 12


def populate(share, count, files):
    """count volume directories with `files` files each in two subdirectories, a hard link and a
    symlink, written server-side (this client's kernel never saw them: only a scan can count them)."""
    names = []
    for index in range(count):
        name = share.mkdir("pv%02d" % index)
        for sub in ("a", "b"):
            os.makedirs(os.path.join(share.server, name, sub))
            for number in range(files // 2):
                with open(os.path.join(share.server, name, sub, "f%04d" % number), "wb") as f:
                    f.write(b"p" * (index * 100 + number))
        os.link(os.path.join(share.server, name, "a", "f0000"), os.path.join(share.server, name, "hard"))
        os.symlink("a/f0000", os.path.join(share.server, name, "soft"))
        names.append(name)
    return names


def apply_all(share, names, *options, **entry):
    """Apply the volumes in one `apply`; its stderr (the warnings of failed first scans)."""
    volumes = [dict(entry, path=share.client(name), limit=1 << 40) for name in names]
    path = write_volumes_file("/tmp/%s.yaml" % share.name, volumes)
    rc, out, err = bq("apply", path, *options)
    assert rc == 0 and out.splitlines()[-1] == "%d added, 0 updated, 0 removed" % len(names)
    return err


def assert_usage_is_the_tree(share, names):
    rows = report()
    for name in names:
        vol = share.client(name)
        assert (rows[vol]["used_bytes"], rows[vol]["files"]) == counted_usage(vol), name


def test_a_batch_of_first_scans_counts_every_volume_exactly(share):
    names = populate(share, VOLUMES, 40)
    assert apply_all(share, names) == ""
    assert_usage_is_the_tree(share, names)
    assert report()[share.client(names[-1])]["used_bytes"] > 0


def test_writes_during_a_batch_of_first_scans_are_counted_once(share):
    names = populate(share, VOLUMES, 400)
    vols = [share.client(name) for name in names]
    code = ("import os, sys\ni = 0\nwhile not os.path.exists(sys.argv[1]):\n"
            "    vol = sys.argv[2 + i % (len(sys.argv) - 2)]\n"
            "    p = os.path.join(vol, 'a', 'w%d' % (i % 9))\n"
            "    with open(p, 'ab') as f:\n        f.write(b'w' * (512 * (1 + i % 7)))\n"
            "    if i % 5 == 4:\n        os.truncate(os.path.join(vol, 'b', 'f%04d' % (i % 200)), 10)\n"
            "    if i % 13 == 12:\n        os.unlink(p)\n    i += 1\nprint(i)\n")
    stop = "/tmp/%s-stop" % share.name
    writer = subprocess.Popen([sys.executable, "-c", code, stop] + vols, stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(vols[0], "a", "w0")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the writer is under way before the scans start
        warnings = apply_all(share, names, unknown_usage="allow")  # else the writer's writes are refused until scanned
    finally:
        open(stop, "w").close()
        writes = int(writer.communicate(timeout=120)[0])
    assert writer.returncode == 0 and writes > 0
    assert warnings == ""
    assert_usage_is_the_tree(share, names)


def test_volumes_the_budget_leaves_unscanned_are_unknown_until_reconciled(share):
    names = populate(share, 3, 10)
    err = apply_all(share, names, "--scan-budget", "0")
    assert err.count("not scanned: the 0s budget for scans ran out; it refuses growth until a scan succeeds") == 3
    assert [report()[share.client(name)]["usage"] for name in names] == ["unknown"] * 3
    bq_ok("reconcile")
    assert_usage_is_the_tree(share, names)
    assert [report()[share.client(name)]["usage"] for name in names] == ["scanned"] * 3
