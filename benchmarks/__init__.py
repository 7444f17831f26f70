"""Benchmarks for `make bench`: each module measures figures and prints them beside targets.

Benchmarks are not tests: they print what they measure and never fail the build.
Generated repositories and tool venvs are cached under .bench/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / ".bench"
PYTHON = sys.executable

# git run by the benchmarks themselves: no user/system config, fixed identity and dates.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its target; ok None means information only."""

    name: str
    shown: str
    target: str = ""
    ok: bool | None = None

    def line(self) -> str:
        target = f" (target {self.target})" if self.target else ""
        status = "" if self.ok is None else ("  OK" if self.ok else "  MISSED")
        return f"{self.name}: {self.shown}{target}{status}"


def at_most(name: str, value: float, limit: float, unit: str = "x", detail: str = "") -> Figure:
    """A figure whose target is an upper bound, e.g. a ratio to a baseline."""
    shown = f"{value:.2f}{unit}" + (f" {detail}" if detail else "")
    bound = f"{limit:.1f}" if unit == "x" else f"{limit:g}"
    return Figure(name, shown, f"<= {bound}{unit}", value <= limit)


def report(figure: Figure, figures: list[Figure] | None = None) -> Figure:
    """Print a figure line now (and keep it in `figures`)."""
    print(figure.line(), flush=True)
    if figures is not None:
        figures.append(figure)
    return figure


def note(text: str) -> None:
    """An indented detail line under a figure."""
    print(f"    {text}", flush=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """min-max of timings, to show the noise of a shared machine."""
    return f"{min(values):.3f}-{max(values):.3f} s over {len(values)} runs"


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    """Run git for the benchmarks' own set-up; raise on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


# ---- generated repositories -------------------------------------------------------------

OLD_CALL = "oldFunction"


def file_path(i: int, js_every: int) -> str:
    if js_every and i % js_every == 0:
        return f"web/part{i // 100:03d}/widget{i:05d}.js"
    return f"src/pkg{i // 100:03d}/module{i:05d}.py"


def file_content(i: int, version: int, js_every: int) -> bytes:
    """About 1 KB of source text, distinct per file and version."""
    if js_every and i % js_every == 0:
        body = "".join(
            f"export const value{j} = {OLD_CALL}({i} + {j}); // v{version}\n" for j in range(12)
        )
        return f"import {{ {OLD_CALL} }} from 'legacy-lib';\n\n{body}".encode()
    body = "".join(
        f"def function_{i}_{j}(x):\n    return x * {j} + {version}  # file {i}\n\n"
        for j in range(16)
    )
    return f'"""Module {i}, version {version}."""\n\n{body}'.encode()


def _fast_import_stream(files: int, commits: int, squash: bool, js_every: int) -> Iterator[bytes]:
    """A git fast-import stream: all files, then one file changed per commit."""
    version = [0] * files
    changes = [(k, (k * 7919) % files) for k in range(1, commits)]
    if squash:  # one commit holding the tree the whole history ends with
        for k, i in changes:
            version[i] = k
        changes = []
    when = 1_700_000_000

    def data(payload: bytes) -> bytes:
        return b"data %d\n%s\n" % (len(payload), payload)

    message = b"initial import" if not squash else b"initial import (squashed history)"
    head = b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % when
    yield head + data(message)
    for i in range(files):
        path = file_path(i, js_every).encode()
        yield b"M 100644 inline %s\n%s" % (path, data(file_content(i, version[i], js_every)))
    yield b"\n"
    for k, i in changes:
        when += 60
        path = file_path(i, js_every).encode()
        yield b"commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\n" % when
        yield data(b"change %d" % k)
        yield b"M 100644 inline %s\n%s\n" % (path, data(file_content(i, k, js_every)))


def generate_repo(
    path: Path, files: int, commits: int = 1, squash: bool = False, js_every: int = 0
) -> Path:
    """A git repository of `files` files and `commits` commits on main (cached by parameters).

    squash=True gives one commit with the same final tree as the `commits`-long history.
    js_every=N makes every Nth file a .js file that calls oldFunction (for sed jobs).
    """
    stamp = f"files={files} commits={commits} squash={squash} js_every={js_every} v1"
    marker = path / ".git" / "bench-generated"
    if marker.exists() and marker.read_text() == stamp:
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(path))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"],
        cwd=path,
        stdin=subprocess.PIPE,
        env={**os.environ, **GIT_ENV},
    )
    assert proc.stdin is not None
    for chunk in _fast_import_stream(files, commits, squash, js_every):
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {path}")
    # Pack like a real, maintained repository, and give it a working tree.
    git("repack", "-a", "-d", "-q", cwd=path)
    git("reset", "-q", "--hard", "main", cwd=path)
    marker.write_text(stamp)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a codybatch subprocess: no keys, tokens or stray settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CODYBATCH_", "ANTHROPIC_", "GITHUB_", "AWS_", "AIRFLOW"))
        and k not in ("ALLOWED_REPOSITORIES", "CLAUDE_API_KEY")
    }
    env["PATH"] = f"{Path(PYTHON).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env
