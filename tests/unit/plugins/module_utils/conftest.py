# -*- coding: utf-8 -*-
"""Fixtures shared by the module_utils unit tests."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess

import pytest


@pytest.fixture
def mounted():
    """mount(*argv) that unmounts everything it mounted, last first."""
    targets = []

    def mount(*argv):
        subprocess.check_call(("mount",) + argv)
        targets.append(argv[-1])

    yield mount
    for target in reversed(targets):
        subprocess.call(("umount", "-l", target))
