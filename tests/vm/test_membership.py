# -*- coding: utf-8 -*-
"""A file's volume is never "none" because it could not be resolved (SOUNDNESS.md #15, #17, #18):
deep trees stay enforced after every cached answer is dropped, and deeper than the walk reaches is
"unknown", which refuses growth instead of allowing it."""
import errno
import os

import pytest

from conftest import MiB, fill, report

LIMIT = 4 * MiB


def forget_cached_volumes(share, vol):
    """What a tenant (or root, or memory pressure) can do: a new generation, and no inode cached."""
    share.mkdir("other")
    share.apply({"path": "pv", "limit": LIMIT}, {"path": "other", "limit": LIMIT})  # a new key set: gen bumped
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")


def nested(base, depth):
    return os.path.join(base, *(["d"] * depth))


def make_nested(base, depth):
    """base/d/d/.../d, `depth` levels (os.makedirs recurses once per level)."""
    for level in range(1, depth + 1):
        os.mkdir(nested(base, level))
    return nested(base, depth)


def remove_nested(base, depth):
    for level in range(depth, 0, -1):
        path = nested(base, level)
        if not os.path.isdir(path):
            continue
        for name in os.listdir(path):
            if name != "d":
                os.unlink(os.path.join(path, name))
        os.rmdir(path)


@pytest.fixture
def volume(share):
    share.mkdir("pv")
    share.apply({"path": "pv", "limit": LIMIT})
    return share, share.client("pv")


def test_a_tree_70_levels_deep_stays_enforced_after_cached_answers_are_dropped(volume):
    share, vol = volume
    deep = make_nested(vol, 70)
    forget_cached_volumes(share, vol)
    assert fill(os.path.join(deep, "f")) == (LIMIT, errno.EDQUOT)
    assert report()[vol]["used_bytes"] == LIMIT


def test_deeper_than_the_walk_reaches_refuses_growth_and_allows_the_rest(volume):
    share, vol = volume
    deep = make_nested(vol, 1100)
    try:
        with open(os.path.join(deep, "kept"), "wb") as f:
            f.write(b"k" * 100)
        forget_cached_volumes(share, vol)
        with open(os.path.join(deep, "kept"), "rb") as f:  # reads work
            assert f.read() == b"k" * 100
        with open(os.path.join(deep, "kept"), "r+b") as f:  # an overwrite adds nothing: allowed
            f.write(b"o" * 100)
        assert fill(os.path.join(deep, "kept"), chunk=1, max_chunks=1) == (0, errno.EDQUOT)  # growth: unknown volume
        with pytest.raises(OSError) as exc:
            open(os.path.join(deep, "new"), "wb").close()
        assert exc.value.errno == errno.EDQUOT
        os.unlink(os.path.join(deep, "kept"))  # deletes work
        assert report()[vol]["used_bytes"] <= 100
    finally:
        remove_nested(vol, 1100)  # shutil.rmtree (the share's clean-up) recurses once per level
