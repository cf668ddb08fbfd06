"""Choose which files of a working tree get copied into the VM for a test run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable

from testbed.vm import walk_files

# Skipped when the source is not a git checkout (with git, .gitignore decides).
NON_GIT_SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache"}


class WorkspaceError(RuntimeError):
    """The working tree or an --include path is unusable."""


def source_files(src: Path, includes: Iterable[str] = ()) -> list[str]:
    """Relative paths to copy: git's tracked plus untracked-not-ignored files (or every file
    outside a git checkout), plus each include (a file, or a directory taken whole)."""
    src = src.resolve()
    if not src.is_dir():
        raise WorkspaceError(f"source directory {src} does not exist")
    listed = git_files(src)
    if listed is None:
        listed = plain_files(src)
    # Files deleted in the working tree are still in git's index.
    paths = {path for path in listed if os.path.lexists(src / path)}
    for include in includes:
        paths.update(included_files(src, include))
    return sorted_parents_first(paths)


def git_files(src: Path) -> list[str] | None:
    """None when ``src`` is not inside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=False,
        )
    except FileNotFoundError:
        return None
    if result.returncode != 0:
        return None
    return [path for path in result.stdout.decode().split("\0") if path]


def plain_files(src: Path) -> list[str]:
    found = []
    for current, dirs, files in os.walk(src):
        dirs[:] = [name for name in dirs if name not in NON_GIT_SKIPPED_DIRS]
        relative_dir = os.path.relpath(current, src)
        # A symlink to a directory is kept as a link, not descended into.
        links = [name for name in dirs if (Path(current) / name).is_symlink()]
        for name in files + links:
            found.append(os.path.normpath(os.path.join(relative_dir, name)))
    return found


def included_files(src: Path, include: str) -> list[str]:
    path = Path(include) if os.path.isabs(include) else src / include
    path = Path(os.path.normpath(path))
    try:
        relative = path.relative_to(src)
    except ValueError:
        raise WorkspaceError(f"--include {include} is outside the source directory {src}") from None
    if not os.path.lexists(path):
        raise WorkspaceError(f"--include {include} does not exist (was it built?)")
    if path.is_dir() and not path.is_symlink():
        return [str(relative / entry) for entry in walk_files(path)]
    return [str(relative)]


def sorted_parents_first(paths: set[str]) -> list[str]:
    """Every file with its parent directories listed before it, so tar recreates them."""
    with_parents = set(paths)
    for path in paths:
        parent = os.path.dirname(path)
        while parent:
            with_parents.add(parent)
            parent = os.path.dirname(parent)
    return sorted(with_parents, key=lambda path: path.split("/"))
