"""bubblewrap around every command run in a checkout: Claude's commands, steps and verify.

Inside: the system directories read-only, the checkout read-write at /repo (its .git/config and
.git/hooks read-only), a private /tmp and an empty HOME, /proc of a new PID namespace (no other
process, so no other process's environment), no network unless the job allows it, no
capabilities, and limits on processes, file size and memory. Nothing else of the host is
mounted: not CODYBATCH_HOME, AIRFLOW_HOME, the worker's home, nor any other checkout.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INSIDE = "/repo"  # the checkout's path inside the sandbox; the model sees the same
HOME = "/home/sandbox"
MODES = ("auto", "container")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Under /etc, hidden from commands: password hashes, host keys, database settings.
HIDDEN = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/postgresql",
    "/etc/security/opasswd",
)
# Kernel switches a process running as root could write even without capabilities.
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be started here; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed command (and everything it starts)."""

    processes: int = 256
    file_bytes: int = 2 * 1024**3  # the largest file a command may write
    address_space_bytes: int = 8 * 1024**3  # virtual memory of one process
    memory_bytes: int = 4 * 1024**3  # memory of all its processes, where a cgroup can be made
    tmp_bytes: int = 1024**3  # the private /tmp and HOME live in memory, each this large


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Sandbox:
    """How commands are isolated in this process: `bwrap`, `container`, or `none` (why)."""

    kind: str
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.kind in ("bwrap", "container")

    def require(self) -> None:
        if not self.available:
            raise SandboxUnavailable(
                f"commands run only in a sandbox, and none works here: {self.reason}"
            )


def detect(mode: str = "auto") -> Sandbox:
    """The sandbox this process can use; detected once per process (a ~10 ms probe)."""
    if mode == "container":
        return Sandbox("container", "CODYBATCH_SANDBOX=container: the container is the boundary")
    if mode not in MODES:
        return Sandbox("none", f"CODYBATCH_SANDBOX={mode!r} is not one of {', '.join(MODES)}")
    return _probe(shutil.which("bwrap") or "")


@functools.cache
def _probe(bwrap: str) -> Sandbox:
    if not bwrap:
        return Sandbox("none", _why("bubblewrap (bwrap) is not installed"))
    if not shutil.which("prlimit"):
        return Sandbox("none", _why("prlimit (util-linux) is not installed"))
    with (
        tempfile.TemporaryDirectory(prefix="codybatch-probe-") as tmp,
        confined(["/bin/true"], Path(tmp), network=False, bwrap=bwrap) as argv,
    ):
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=20,
                env={"PATH": "/usr/bin:/bin"},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Sandbox("none", _why(f"bwrap could not start: {exc}"))
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return Sandbox("none", _why(f"bwrap could not start: {' '.join(message[-2:])}"))
    return Sandbox("bwrap")


def _why(problem: str) -> str:
    return (
        f"{problem}. Install bubblewrap (`apt-get install bubblewrap`; `make install` does it) "
        "and allow user namespaces, or set CODYBATCH_SANDBOX=container when the container "
        "the worker runs in is itself the boundary (see the README)"
    )


def forbidden_paths() -> list[Path]:
    """Places no sandbox may mount, even when they hold a tool: the worker's state."""
    names = ("CODYBATCH_HOME", "AIRFLOW_HOME", "HOME")
    found = [Path(os.environ[n]).resolve() for n in names if os.environ.get(n)]
    return [*found, Path.home().resolve()]


def _tool_prefixes() -> list[str]:
    """Python installations the worker runs from (a venv and its base), read-only inside.

    Repositories' tests often need Python; its prefix holds code, never secrets. A prefix
    that contains or lies inside the worker's state (a venv inside CODYBATCH_HOME, say)
    is left out."""
    out: list[str] = []
    for prefix in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if any(str(prefix).startswith(s) for s in SYSTEM) or not prefix.is_dir():
            continue
        if any(_overlaps(prefix, f) for f in forbidden_paths() if f != Path.home().resolve()):
            continue
        if prefix == Path.home().resolve():
            continue
        out.append(str(prefix))
    return sorted(out)


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def bwrap_args(checkout: Path, *, network: bool, limits: Limits, bwrap: str = "bwrap") -> list[str]:
    """The bwrap command line (up to the command) that confines a command to checkout."""
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-all",
        "--cap-drop",
        "ALL",
        *(["--share-net"] if network else []),
    ]
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in HIDDEN:
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--tmpfs", path]
        elif os.path.lexists(path):
            args += ["--ro-bind", "/dev/null", path]
    for prefix in _tool_prefixes():
        args += ["--ro-bind", prefix, prefix]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for path in PROC_READ_ONLY:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    size = str(limits.tmp_bytes)
    args += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", HOME]
    checkout = checkout.resolve()
    args += ["--bind", str(checkout), INSIDE]
    git_dir = checkout / ".git"
    if git_dir.is_dir() and not git_dir.is_symlink():
        # The worker's own git runs later in this checkout: no hook or config planted here.
        # The rest stays writable, so `git mv` or `git add` in a step work.
        (git_dir / "hooks").mkdir(exist_ok=True)
        for name in ("config", "hooks"):
            if (git_dir / name).exists() and not (git_dir / name).is_symlink():
                args += ["--ro-bind", str(git_dir / name), f"{INSIDE}/.git/{name}"]
    # The sandbox's own root (a tmpfs holding the mount points) takes no files.
    args += ["--remount-ro", "/", "--chdir", INSIDE]
    return args


def environment(env: dict[str, str], network: bool) -> dict[str, str]:
    """The environment inside: the allowlisted one with HOME and TMPDIR of the sandbox."""
    inside = {**env, "HOME": HOME, "TMPDIR": "/tmp", "PWD": INSIDE}
    if not network:
        for name in [n for n in inside if n.lower() in ("http_proxy", "https_proxy")]:
            del inside[name]  # nothing to reach without a network; a proxy URL can hold a password
    return inside


@contextlib.contextmanager
def confined(
    command: list[str],
    checkout: Path,
    *,
    network: bool,
    limits: Limits = DEFAULT_LIMITS,
    bwrap: str = "bwrap",
) -> Iterator[list[str]]:
    """The argv that runs `command` in the sandbox, with a process cgroup when one can be made."""
    rlimits = [
        "prlimit",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_bytes}",
        f"--as={limits.address_space_bytes}",
        "--core=0",
        "--",
    ]
    argv = [*rlimits, *bwrap_args(checkout, network=network, limits=limits, bwrap=bwrap), *command]
    with _cgroup(limits) as procs:
        if procs:
            # Join the cgroups before bwrap starts, so every process of the command counts.
            join = 'IFS=:; for f in $0; do echo $$ > "$f"; done; unset IFS; exec "$@"'
            argv = ["/bin/sh", "-c", join, ":".join(procs), *argv]
        yield argv


@contextlib.contextmanager
def _cgroup(limits: Limits) -> Iterator[list[str]]:
    """cgroup.procs files limiting processes and memory, where this process may make them.

    RLIMIT_NPROC does not bind a worker running as root; a pids cgroup does."""
    made: list[Path] = []
    procs: list[str] = []
    name = f"codybatch-{uuid.uuid4().hex[:12]}"
    for controller, settings in (
        ("pids", {"pids.max": str(limits.processes)}),
        ("memory", {"memory.limit_in_bytes": str(limits.memory_bytes)}),
    ):
        base = _cgroup_base(controller)
        if base is None:
            continue
        path = base / name
        try:
            path.mkdir()
        except OSError:
            continue
        made.append(path)
        try:
            for key, value in settings.items():
                (path / key).write_text(value)
        except OSError:
            continue
        procs.append(str(path / "cgroup.procs"))
    try:
        yield procs
    finally:
        for path in made:
            _remove_cgroup(path)


def _remove_cgroup(path: Path) -> None:
    """Kill whatever is left in the cgroup (only the command's processes), then remove it."""
    for _ in range(300):  # a dying fork bomb takes a moment to leave
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


@functools.cache
def _cgroup_base(controller: str) -> Path | None:
    """Where a child cgroup of this process for `controller` (cgroup v1) can be made, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            base = Path("/sys/fs/cgroup", controller, path.lstrip("/"))
            if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
                return base
    return None
