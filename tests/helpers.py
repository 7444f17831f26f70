"""Test helpers: real git repositories built from a dict of files, and tree comparisons."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

# git as the tests run it: no user or system config, a fixed identity, stable output.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    # Fixed dates: the same files make the same commits, whenever (and however slowly) made.
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    """Run git in cwd (isolated from the user's config) and return stdout as text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | GIT_ENV
    proc = subprocess.run(
        ["git", "-c", "core.autocrlf=false", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode("utf-8", "replace")


def write_files(root: Path, files: Mapping[str, bytes | str]) -> None:
    """Write files (text or bytes) under root, creating directories."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def make_repo(
    path: Path,
    files: Mapping[str, bytes | str],
    commits: int = 1,
    branch: str = "main",
    bare: bool = False,
) -> Path:
    """A real git repository at path holding files, with `commits` commits (extra ones empty).

    With bare=True, path becomes a bare repository holding the same history (a "remote").
    """
    path = Path(path).absolute()
    work = path.with_name(path.name + ".work") if bare else path
    work.mkdir(parents=True, exist_ok=True)
    git(work, "init", "--quiet", "-b", branch)
    write_files(work, files)
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "--allow-empty", "-m", "initial")
    for i in range(1, commits):
        git(work, "commit", "--quiet", "--allow-empty", "-m", f"commit {i + 1}")
    if bare:
        git(work.parent, "clone", "--quiet", "--bare", str(work), str(path))
    return path


def commit_all(repo: Path, message: str = "change") -> str:
    """Commit every change in repo; return the new sha."""
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def index_listing(checkout: Path) -> str:
    """`git ls-files -s` after staging everything: path, mode and content hash of each entry."""
    git(checkout, "add", "--all")
    return git(checkout, "ls-files", "-s")


def tree_snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under root except .git: ("link", target) / ("file"|"exec", bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*filenames, *(d for d in dirnames if os.path.islink(Path(dirpath, d)))]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path).encode())
            elif os.access(path, os.X_OK):
                out[rel] = ("exec", path.read_bytes())
            else:
                out[rel] = ("file", path.read_bytes())
    return out
