# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host command as one zipapp: reproducible, complete, runnable."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import os
import subprocess
import sys
import zipfile

from ansible_collections.bpfquota.nfs.plugins.module_utils import bundle

MODULE_UTILS = os.path.join(os.path.dirname(os.path.abspath(bundle.__file__)))


def test_the_same_sources_give_the_same_bytes():
    assert bundle.zipapp_bytes(bundle.module_sources()) == bundle.zipapp_bytes(bundle.module_sources())


def test_a_changed_source_changes_the_bytes():
    sources = bundle.module_sources()
    changed = dict(sources, cli=sources["cli"] + b"\n# edited\n")
    assert bundle.zipapp_bytes(changed) != bundle.zipapp_bytes(sources)


def test_it_carries_every_module_util_and_the_package_inits():
    data = bundle.zipapp_bytes(bundle.module_sources())
    assert data.startswith(b"#!/usr/bin/python3\n")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    on_disk = sorted(n for n in os.listdir(MODULE_UTILS) if n.endswith(".py"))
    prefix = "ansible_collections/bpfquota/nfs/plugins/module_utils/"
    assert sorted(n[len(prefix):] for n in names if n.startswith(prefix) and n != prefix + "__init__.py") == on_disk
    for package in ("ansible_collections", "ansible_collections/bpfquota", "ansible_collections/bpfquota/nfs",
                    "ansible_collections/bpfquota/nfs/plugins", prefix.rstrip("/")):
        assert package + "/__init__.py" in names
    assert "__main__.py" in names


def test_it_runs_on_its_own(tmp_path):
    app = tmp_path / "bpfquota"
    app.write_bytes(bundle.zipapp_bytes(bundle.module_sources()))
    # Run from an empty directory with no PYTHONPATH: only the archive can provide the imports.
    env = dict((k, v) for k, v in os.environ.items() if k != "PYTHONPATH")
    out = subprocess.run([sys.executable, str(app), "--help"], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert out.returncode == 0, out.stdout
    assert "apply" in out.stdout and "report" in out.stdout


def installed(tmp_path):
    """The zipapp as the role installs it, in an install directory of its own."""
    install_dir = tmp_path / "usr-lib-bpfquota"
    install_dir.mkdir()
    app = install_dir / "bpfquota"
    app.write_bytes(bundle.zipapp_bytes(bundle.module_sources()))
    return app


def run_installed(app, *args):
    env = dict((k, v) for k, v in os.environ.items() if k != "PYTHONPATH")
    return subprocess.run([sys.executable, str(app)] + list(args), cwd="/", env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


def test_the_installed_command_looks_for_the_object_beside_itself(tmp_path):
    # Its default paths used to point inside its own archive (.../bpfquota/ansible_collections/...).
    app = installed(tmp_path)
    out = run_installed(app, "load")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == ("bpfquota: BPF object %s not found: build it with 'bpfquota build' or pass --object"
                                  % (app.parent / "bpfquota.bpf.o"))


def test_the_installed_command_says_why_it_cannot_build(tmp_path):
    # It carries no BPF sources: one clear error, not NotADirectoryError from inside the archive.
    app = installed(tmp_path)
    out = run_installed(app, "build", "--out", str(tmp_path / "out.bpf.o"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("bpfquota: the installed command (%s) carries no BPF sources" % app)


def test_listing_names_each_member_with_its_hash():
    lines = bundle.listing(bundle.zipapp_bytes({"cli": b"print(1)\n"}))
    assert "%s  ansible_collections/bpfquota/nfs/plugins/module_utils/cli.py" % hashlib.sha256(b"print(1)\n").hexdigest() in lines
    assert bundle.listing(b"not a zip") == []
