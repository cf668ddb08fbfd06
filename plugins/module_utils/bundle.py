# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host CLI as one Python zipapp built from these module_utils.

One file to install instead of a tree: one task, one comparison. The archive is reproducible
(fixed timestamps and order), so the same sources always give the same bytes and a re-run of
the role changes nothing.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import io
import pkgutil
import zipfile

from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import bytes_sha256

PACKAGE = "ansible_collections.bpfquota.nfs.plugins.module_utils"
SHEBANG = b"#!/usr/bin/python3\n"
MAIN = (b"import sys\n"
        b"from ansible_collections.bpfquota.nfs.plugins.module_utils.cli import main\n"
        b"sys.exit(main())\n")
# zipimport finds only regular packages: every level gets an empty __init__.py.
PACKAGE_INITS = ["/".join(PACKAGE.split(".")[:depth]) + "/__init__.py" for depth in range(1, len(PACKAGE.split(".")) + 1)]
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def module_sources(package_name=PACKAGE):
    """{module name: source bytes} of every module in the package, from files or a zipped payload."""
    package = importlib.import_module(package_name)
    sources = {}
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            spec = info.module_finder.find_spec(package_name + "." + info.name)
            sources[info.name] = spec.loader.get_source(spec.name).encode("utf-8")
    return sources


def zipapp_bytes(sources):
    """The zipapp (shebang + zip) of {module name: source bytes}; identical input, identical bytes."""
    members = dict((name, b"") for name in PACKAGE_INITS)
    prefix = PACKAGE.replace(".", "/") + "/"
    for name, source in sources.items():
        if name != "__init__":
            members[prefix + name + ".py"] = source
    members["__main__.py"] = MAIN
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            entry = zipfile.ZipInfo(name, ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, members[name])
    return SHEBANG + buf.getvalue()


def listing(data):
    """'sha256  name' lines of a zipapp's members, for a readable diff; [] when it isn't one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return ["%s  %s" % (bytes_sha256(archive.read(name)), name) for name in archive.namelist()]
    except zipfile.BadZipfile:
        return []
