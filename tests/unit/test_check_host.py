"""scripts/check-host.py: the guard that fails the test command early when set-up left a tool out."""

import importlib.util
import pathlib
import re
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-host.py"


def load_check_host():
    spec = importlib.util.spec_from_file_location("check_host", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_host = load_check_host()


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with nothing installed: a venv without pip."""
    path = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(path, with_pip=False)
    return str(path / "bin" / "python3")


def stand_ins(directory, names):
    """Executables named ``names`` in ``directory``: stand-ins the guard only looks up."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)


def python_of_this_test(directory):
    """A python3 in ``directory`` that is this test's interpreter, its packages included."""
    path = directory / "python3"
    path.write_text('#!/bin/sh\nexec %s "$@"\n' % sys.executable)
    path.chmod(0o755)


def run_guard(path, venv_dir):
    env = {"PATH": path, "BPFQUOTA_VENV": str(venv_dir)}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, check=False)


def test_a_checkout_directory_is_no_installed_module(bare_python):
    # The bug of the fresh machine: from the checkout's root, molecule/ (scenarios) imports as a
    # namespace package, so an import check passed and molecule was never installed.
    assert check_host.missing_modules(["molecule"], python=bare_python, cwd=str(ROOT)) == []
    problems = check_host.missing_modules(["molecule"], python=bare_python)
    assert [problem[0] for problem in problems] == ["molecule"]
    assert "No module named 'molecule'" in problems[0][1]


def test_guard_names_the_missing_tool_and_the_fix(tmp_path, bare_python):
    system_bin, venv_dir = tmp_path / "system", tmp_path / "venv"
    stand_ins(system_bin, check_host.SYSTEM_COMMANDS)
    stand_ins(venv_dir / "bin", [c for c in check_host.VENV_COMMANDS if c != "molecule"])
    python_of_this_test(venv_dir / "bin")
    result = run_guard("%s:%s" % (venv_dir / "bin", system_bin), venv_dir)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "check-host: missing: molecule (the molecule scenarios): not on PATH; run bash scripts/setup-host.sh,"
        " which installs scripts/requirements.txt into the venv"
    ]


def test_guard_refuses_a_python_tool_the_machine_happens_to_have(tmp_path):
    system_bin, venv_dir = tmp_path / "system", tmp_path / "venv"
    stand_ins(system_bin, list(check_host.SYSTEM_COMMANDS) + ["molecule"])
    stand_ins(venv_dir / "bin", [c for c in check_host.VENV_COMMANDS if c != "molecule"])
    python_of_this_test(venv_dir / "bin")
    result = run_guard("%s:%s" % (venv_dir / "bin", system_bin), venv_dir)
    assert result.returncode == 1
    assert "molecule (the molecule scenarios): found at %s/molecule, not in the venv" % system_bin in result.stderr


def test_guard_names_a_missing_system_command(tmp_path):
    system_bin, venv_dir = tmp_path / "system", tmp_path / "venv"
    stand_ins(system_bin, [c for c in check_host.SYSTEM_COMMANDS if c != "qemu-img"])
    stand_ins(venv_dir / "bin", check_host.VENV_COMMANDS)
    python_of_this_test(venv_dir / "bin")
    result = run_guard("%s:%s" % (venv_dir / "bin", system_bin), venv_dir)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "check-host: missing: qemu-img (the test-bed VMs' disks): not on PATH;"
        " install the Debian packages of scripts/setup-host.sh"
    ]


def test_every_python_requirement_is_pinned():
    lines = [line for line in (ROOT / "scripts" / "requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines
    unpinned = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", line)]
    assert unpinned == []
