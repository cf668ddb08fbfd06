# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection artifact of scripts/build-collection.sh, installed with ansible-galaxy into a
temporary collections path: it carries what the rollout needs (BPF sources, the prebuilt object,
module_utils, the CLI) and nothing built or cached besides, the rollout playbook resolves, and
bpf_build (action plugin and module, through ansible-playbook) hands out the prebuilt object on a
controller without clang, or says why it can't."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", ".."))
ANSIBLE_GALAXY = shutil.which("ansible-galaxy")
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook")
ANSIBLE_DOC = shutil.which("ansible-doc")

pytestmark = [
    pytest.mark.skipif(not (ANSIBLE_GALAXY and ANSIBLE_PLAYBOOK and ANSIBLE_DOC), reason="ansible-core is not installed"),
    pytest.mark.skipif(not shutil.which("clang"), reason="clang is needed to build the artifact"),
]

SHIPPED = [
    "bin/bpfquota",
    "bpf/bpfquota.bpf.c",
    "bpf/bpfquota.h",
    "bpf/vmlinux.h",
    "bpf/prebuilt/bpfquota.bpf.o",
    "bpf/prebuilt/bpfquota.bpf.o.digest",
    "plugins/action/bpf_build.py",
    "plugins/doc_fragments/bpfquota.py",
    "plugins/filter/pv_volumes.py",
    "plugins/module_utils/bpfbuild.py",
    "plugins/module_utils/cli.py",
    "plugins/module_utils/enforcement.py",
    "plugins/module_utils/pvs.py",
    "plugins/modules/bpf_build.py",
    "plugins/modules/bpf_program.py",
    "plugins/modules/host_command.py",
    "plugins/modules/lsm_boot.py",
    "plugins/modules/lsm_check.py",
    "plugins/modules/lsm_facts.py",
    "plugins/modules/quota.py",
    "plugins/modules/quota_info.py",
    "roles/enforcer/tasks/main.yml",
    "playbooks/rollout.yml",
    "meta/runtime.yml",
    "MANIFEST.json",
    "FILES.json",
]
NEVER_SHIPPED_DIRS = ("build", "ansible_collections", ".git", ".ansible", ".pytest_cache", "tests/output",
                      "bench", ".benchmarks", "testbed", "molecule", "scripts", ".ci", "tests/vm", "tests/role")

Installed = collections.namedtuple("Installed", "artifact collections root env")


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(argv, env, cwd, check=True):
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc %d):\n%s" % (" ".join(argv), proc.returncode, proc.stdout))
    return proc


def ansible_env(base, collections_path):
    """Ansible sees only the collections path given: no ~/.ansible copy, no ansible.cfg of the cwd."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("ANSIBLE_"):
            del env[name]
    config = base / "ansible.cfg"
    config.write_text("")
    env.update(ANSIBLE_HOME=str(base / "ansible-home"), ANSIBLE_COLLECTIONS_PATH=str(collections_path),
               ANSIBLE_CONFIG=str(config), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(base / "ansible-tmp"),
               ANSIBLE_RETRY_FILES_ENABLED="0")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("artifact")
    built = subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-collection.sh"), str(base / "dist")],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True)
    artifact = built.stdout.strip().splitlines()[-1]
    collections_path = base / "collections"
    env = ansible_env(base, collections_path)
    run([ANSIBLE_GALAXY, "collection", "install", "--offline", "-p", str(collections_path), artifact], env, str(base))
    root = collections_path / "ansible_collections" / "bpfquota" / "nfs"
    assert root.is_dir()
    return Installed(artifact, collections_path, root, env)


def without_clang_path(directory):
    """A PATH with every command of the current one except clang*: symlinks in `directory`."""
    directory.mkdir(exist_ok=True)
    for entry in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = os.path.join(entry, name)
            link = directory / name
            if name.startswith("clang") or os.path.lexists(str(link)) or not os.access(target, os.X_OK):
                continue
            os.symlink(target, str(link))
    return str(directory)


BUILD_PLAYBOOK = """\
- name: Build the BPF object on the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Build
      bpfquota.nfs.bpf_build:
        dest: "{{ out }}/bpfquota.bpf.o"
      register: built
      ignore_errors: true
    - name: Save the result
      ansible.builtin.copy:
        content: "{{ built | to_json }}"
        dest: "{{ out }}/result.json"
        mode: "0644"
"""


def build_without_clang(installed, tmp_path):
    """Run bpf_build (its default src: the installed collection's bpf/) with clang hidden; its result."""
    env = dict(installed.env, PATH=without_clang_path(tmp_path / "bin"))
    assert shutil.which("clang", path=env["PATH"]) is None
    playbook = tmp_path / "build.yml"
    playbook.write_text(BUILD_PLAYBOOK)
    out = tmp_path / "out"
    out.mkdir()
    run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
         "-e", "out=" + str(out), str(playbook)], env, str(tmp_path))
    with open(str(out / "result.json")) as f:
        return json.load(f), out


def test_the_artifact_carries_the_sources_the_object_the_cli_and_no_build_output(installed):
    with tarfile.open(installed.artifact) as tar:
        members = {member.name: member for member in tar.getmembers()}
    for name in SHIPPED:
        assert name in members, name
        assert (installed.root / name).is_file(), name
    for name in members:
        assert not name.startswith(tuple(d + "/" for d in NEVER_SHIPPED_DIRS)) and name not in NEVER_SHIPPED_DIRS, name
        assert "__pycache__" not in name and not name.endswith((".pyc", ".tar.gz")), name
    assert members["bin/bpfquota"].mode & stat.S_IXUSR
    assert os.access(str(installed.root / "bin" / "bpfquota"), os.X_OK)

    # The prebuilt object is the one of the shipped sources, and what a build from them here makes.
    sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))
    try:
        import bpfbuild
    finally:
        sys.path.pop(0)
    prebuilt = installed.root / "bpf" / "prebuilt" / "bpfquota.bpf.o"
    assert bpfbuild.read_stamp(str(prebuilt)) == bpfbuild.sources_digest(str(installed.root / "bpf"))
    assert bpfbuild.sources_digest(str(installed.root / "bpf")) == bpfbuild.sources_digest(os.path.join(ROOT, "bpf"))
    with open(str(prebuilt), "rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_the_rollout_playbook_resolves_from_the_installed_collection(installed, tmp_path):
    proc = run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "bpfquota.nfs.rollout", "--syntax-check"], installed.env,
               str(tmp_path))
    assert "playbook: %s" % (installed.root / "playbooks" / "rollout.yml") in proc.stdout


def test_the_module_docs_load_from_the_installed_collection(installed, tmp_path):
    modules = ["bpfquota.nfs." + name for name in ("bpf_build", "bpf_program", "host_command", "lsm_boot",
                                                   "lsm_check", "lsm_facts", "quota", "quota_info")]
    # lsm_check's deprecation (meta/runtime.yml) would be a warning among the JSON
    env = dict(installed.env, ANSIBLE_DEPRECATION_WARNINGS="False")
    proc = run([ANSIBLE_DOC, "--json", "-t", "module"] + modules, env, str(tmp_path))
    docs = json.loads(proc.stdout)
    assert sorted(docs) == sorted(modules)
    assert docs["bpfquota.nfs.lsm_check"]["doc"]["deprecated"]["removed_in"] == "0.2.0"
    assert "prebuilt" in docs["bpfquota.nfs.bpf_build"]["doc"]["options"]


OLD_NAME_PLAYBOOK = """\
- name: Install the host command under the module's old name
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Install (check mode)
      bpfquota.nfs.cli:
        dest: "{{ out }}/bpfquota"
      check_mode: true
      register: installed
    - name: Save the result
      ansible.builtin.copy:
        content: "{{ installed | to_json }}"
        dest: "{{ out }}/result.json"
        mode: "0644"
"""


def test_the_old_name_of_host_command_works_with_a_deprecation(installed, tmp_path):
    """bpfquota.nfs.cli is redirected to bpfquota.nfs.host_command (meta/runtime.yml) until 0.2.0."""
    playbook = tmp_path / "old-name.yml"
    playbook.write_text(OLD_NAME_PLAYBOOK)
    proc = run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                "-e", "out=" + str(tmp_path), str(playbook)], installed.env, str(tmp_path))
    with open(str(tmp_path / "result.json")) as f:
        result = json.load(f)
    assert result["changed"] is True and result["dest"] == str(tmp_path / "bpfquota")
    assert not (tmp_path / "bpfquota").exists()  # check mode
    output = " ".join(proc.stdout.split())  # older ansible-core wraps the warning
    assert ("[DEPRECATION WARNING]: bpfquota.nfs.cli has been deprecated. The module is now called "
            "bpfquota.nfs.host_command; use that name. This feature will be removed from collection 'bpfquota.nfs' "
            "version 0.2.0.") in output


def test_bpf_build_without_clang_copies_the_prebuilt_object(installed, tmp_path):
    result, out = build_without_clang(installed, tmp_path)
    prebuilt = installed.root / "bpf" / "prebuilt" / "bpfquota.bpf.o"
    assert result.get("failed") is not True, result
    assert result["changed"] is True and result["prebuilt"] is True
    assert os.path.samefile(result["src"], str(installed.root / "bpf"))
    assert result["sha256"] == sha256_of(str(prebuilt)) == sha256_of(str(out / "bpfquota.bpf.o"))
    with open(str(prebuilt) + ".digest") as f:
        assert result["digest"] == f.read().strip()


def test_bpf_build_without_clang_or_a_matching_prebuilt_object_says_so(installed, tmp_path):
    # A copy of the installed collection whose sources differ from the ones the object came from.
    collections_path = tmp_path / "collections"
    root = collections_path / "ansible_collections" / "bpfquota" / "nfs"
    shutil.copytree(str(installed.root), str(root))
    with open(str(root / "bpf" / "bpfquota.h"), "a") as f:
        f.write("\n/* edited after the build */\n")
    edited = installed._replace(collections=collections_path, root=root,
                                env=dict(installed.env, ANSIBLE_COLLECTIONS_PATH=str(collections_path)))
    result, out = build_without_clang(edited, tmp_path)
    assert result["failed"] is True
    assert result["msg"].startswith("clang not found: install clang")
    assert "the prebuilt object %s was built from other sources or flags" % (
        root / "bpf" / "prebuilt" / "bpfquota.bpf.o") in result["msg"]
    assert not (out / "bpfquota.bpf.o").exists()


def test_the_cli_runs_from_the_layout_the_role_installs(installed, tmp_path):
    """bin/bpfquota with the module_utils beside it under <prefix>/ansible_collections/bpfquota/nfs."""
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy(str(installed.root / "bin" / "bpfquota"), str(prefix / "bin" / "bpfquota"))
    shutil.copytree(str(installed.root / "plugins" / "module_utils"),
                    str(prefix / "ansible_collections" / "bpfquota" / "nfs" / "plugins" / "module_utils"))
    proc = run([str(prefix / "bin" / "bpfquota"), "--help"], dict(os.environ), str(tmp_path))
    assert proc.stdout.startswith("usage: bpfquota")
