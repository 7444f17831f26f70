"""git operations for a checkout: clone, diff, apply, commit, push.

git runs as a subprocess with hooks disabled and the user's and system's git config
ignored; a token reaches git only through GIT_CONFIG_* environment variables
(an http.extraheader), so it is never written to .git/config or a remote URL.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from codybatch.shell import clean_environment

# Settings every git call gets: no hooks, no pager, no prompts, stable output.
BASE_CONFIG = (
    ("core.hooksPath", "/dev/null"),
    ("core.autocrlf", "false"),
    ("core.fsmonitor", "false"),
    ("core.quotePath", "false"),
    ("credential.helper", ""),
    ("advice.detachedHead", "false"),
    ("init.defaultBranch", "main"),
    ("protocol.file.allow", "always"),
)


class GitError(Exception):
    """A git command failed; the message carries git's own reason, without secrets."""


def _env(token: str | None) -> dict[str, str]:
    # Only the allowlisted environment: a filter or hook planted in a repository must not
    # find the worker's secrets in git's environment.
    env = clean_environment()
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/true",
        LC_ALL="C",
    )
    config = list(BASE_CONFIG)
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config.append(("http.extraheader", f"Authorization: Basic {basic}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "[REDACTED]")
        text = text.replace(base64.b64encode(f"x-access-token:{token}".encode()).decode(), "***")
    return re.sub(r"://[^/@\s]+@", "://***@", text)


def run_git(
    args: Sequence[str],
    cwd: Path | None = None,
    token: str | None = None,
    input: bytes | None = None,
) -> bytes:
    """Run git and return its stdout; raise GitError with its stderr on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_env(token),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
        raise GitError(f"git {args[0]} failed: {_scrub(message, token)}")
    return proc.stdout


def _url(url: str) -> str:
    # A plain path makes git ignore --depth; file:// keeps the clone shallow.
    return f"file://{url}" if url.startswith("/") else url


def clone(url: str, dest: Path, branch: str | None = None, token: str | None = None) -> Path:
    """Shallow, single-branch clone of `branch` (default: the remote's default branch)."""
    args = ["clone", "--depth", "1", "--single-branch", "--no-tags", "--quiet"]
    if branch:
        args += ["--branch", branch]
    run_git([*args, "--", _url(url), str(dest)], token=token)
    return dest


def read_config(checkout: Path) -> bytes:
    """The checkout's .git/config, to restore before git runs with a token on it."""
    return (checkout / ".git" / "config").read_bytes()


def restore_config(checkout: Path, config: bytes) -> None:
    """Put back .git/config as it was after the clone (whatever a step did to it)."""
    path = checkout / ".git" / "config"
    path.unlink(missing_ok=True)  # never write through a symlink planted there
    path.write_bytes(config)


def current_branch(checkout: Path) -> str:
    return run_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=checkout).decode().strip()


def diff(checkout: Path) -> bytes:
    """Everything the change did, staged: new, deleted, renamed, mode and binary files."""
    run_git(["add", "--all"], cwd=checkout)
    return run_git(
        ["diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "-M", "HEAD"],
        cwd=checkout,
    )


def changed_files(checkout: Path) -> list[str]:
    """Paths the staged change touches (after diff())."""
    out = run_git(["diff", "--cached", "--name-only", "-z", "-M", "HEAD"], cwd=checkout)
    return [p for p in out.decode().split("\0") if p]


def apply_patch(checkout: Path, patch: bytes) -> None:
    """Apply a patch made by diff() to a fresh checkout, index included."""
    if patch:
        run_git(["apply", "--index", "--binary", "--whitespace=nowarn", "-"], checkout, input=patch)


def commit_all(checkout: Path, message: str, author: str) -> str:
    """Commit every change as `author` ("Name <email>"); return the new commit's sha."""
    match = re.match(r"^\s*(.+?)\s*<([^>]+)>\s*$", author)
    if not match:
        raise GitError(f"author {author!r} is not 'Name <email>'")
    name, email = match.groups()
    run_git(["add", "--all"], cwd=checkout)
    run_git(
        [
            "-c",
            f"user.name={name}",
            "-c",
            f"user.email={email}",
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            "-m",
            message,
        ],
        cwd=checkout,
    )
    return run_git(["rev-parse", "HEAD"], cwd=checkout).decode().strip()


def push(
    checkout: Path, url: str, branch: str, token: str | None = None, force: bool = True
) -> None:
    """Push HEAD to `branch` at `url`; raise GitError with the rejection reason."""
    args = ["push", "--quiet", "--no-verify", "--porcelain"]
    if force:
        args.append("--force")
    run_git([*args, _url(url), f"HEAD:refs/heads/{branch}"], cwd=checkout, token=token)


def remote_branch_sha(url: str, branch: str, token: str | None = None) -> str | None:
    """The sha `branch` points at on the remote, or None when it does not exist."""
    out = run_git(["ls-remote", "--heads", _url(url), f"refs/heads/{branch}"], token=token)
    line = out.decode().strip()
    return line.split()[0] if line else None


def tree_sha(checkout: Path, rev: str = "HEAD") -> str:
    return run_git(["rev-parse", f"{rev}^{{tree}}"], cwd=checkout).decode().strip()


def clone_full(url: str, dest: Path, branch: str, token: str | None = None) -> Path:
    """A clone with history of every branch, checked out at `branch` (for follow-ups)."""
    run_git(["clone", "--no-tags", "--quiet", "--branch", branch, "--", _url(url), str(dest)],
            token=token)  # fmt: skip
    return dest


def authors(checkout: Path, base: str, head: str = "HEAD") -> list[str]:
    """Author emails of the commits in base..head, oldest first."""
    out = run_git(["log", "--reverse", "--format=%ae", f"{base}..{head}"], cwd=checkout)
    return [line for line in out.decode().splitlines() if line]


def rebase(checkout: Path, onto: str, author: str) -> bool:
    """Rebase HEAD onto `onto`; False (and nothing changed) when it does not apply cleanly."""
    match = re.match(r"^\s*(.+?)\s*<([^>]+)>\s*$", author)
    name, email = match.groups() if match else ("Cody Batch", "codybatch@localhost")
    identity = ["-c", f"user.name={name}", "-c", f"user.email={email}"]
    try:
        run_git([*identity, "rebase", "--quiet", "--no-autosquash", onto], cwd=checkout)
    except GitError:
        run_git(["rebase", "--abort"], cwd=checkout)
        return False
    return True


def push_with_lease(
    checkout: Path, url: str, branch: str, expected: str, token: str | None = None
) -> None:
    """Force-push HEAD to branch only if the remote branch is still at `expected`."""
    lease = f"--force-with-lease=refs/heads/{branch}:{expected}"
    args = ["push", "--quiet", "--no-verify", "--porcelain", lease]
    run_git([*args, _url(url), f"HEAD:refs/heads/{branch}"], cwd=checkout, token=token)
