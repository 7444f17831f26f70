"""Walking-skeleton figures (issue 2, section 10) that need no Airflow.

- `codybatch run` of a 5-repository sed job vs all-repos-clone + all-repos-sed
- heavy modules (airflow, boto3, anthropic) kept off the shell-step CLI and worker path
- the worker's own overhead vs raw `git clone --depth 1` + `git diff`
- worker peak memory on a 20,000-file repository; clone time vs history length
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import (
    BENCH_DIR,
    OLD_CALL,
    PYTHON,
    Figure,
    at_most,
    clean_env,
    generate_repo,
    median,
    note,
    report,
    spread,
    timed,
)

ALL_REPOS_VERSION = "1.33.0"
SED_EXPRESSION = f"s/{OLD_CALL}/newFunction/g"
SED_FILES = "*.js"
# The same replacement all-repos-sed makes: git ls-files | xargs sed -i EXPRESSION.
SED_STEP = f"git ls-files -z -- '{SED_FILES}' | xargs -0 -r sed -i '{SED_EXPRESSION}'"
HEAVY_MODULES = ("airflow", "boto3", "botocore", "anthropic")


@dataclass(frozen=True)
class Sizes:
    """Repository sizes and repetitions; tiny() keeps the smoke test fast."""

    small_files: int = 100
    small_commits: int = 20
    medium_files: int = 2000
    history_commits: int = 5000
    large_files: int = 20000
    repeat: int = 7

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(20, 3, 40, 30, 200, 1)


def small_repos(bench_dir: Path, sizes: Sizes) -> list[Path]:
    """Five small repositories: four call oldFunction in .js files, the fifth does not."""
    return [
        generate_repo(
            bench_dir / "repos" / f"small-{n}",
            sizes.small_files,
            sizes.small_commits,
            js_every=10 if n < 5 else 0,
        )
        for n in range(1, 6)
    ]


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def _codybatch(*args: str) -> list[str]:
    return [PYTHON, "-m", "codybatch", *args]


# ---- 1. codybatch run vs all-repos ------------------------------------------------------


def install_all_repos(bench_dir: Path) -> Path:
    """all-repos in its own venv under .bench/ (installed once, then reused)."""
    venv = bench_dir / "all-repos-venv"
    marker = venv / f".installed-{ALL_REPOS_VERSION}"
    if not marker.exists():
        shutil.rmtree(venv, ignore_errors=True)
        _run([PYTHON, "-m", "venv", str(venv)])
        _run([str(venv / "bin/pip"), "install", "--quiet", f"all-repos=={ALL_REPOS_VERSION}"])
        marker.touch()
    return venv / "bin"


def all_repos_config(work: Path, repos: Sequence[Path]) -> Path:
    """A config for local repositories: json_file source, readonly push (nothing pushed)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "repos.json").write_text(json.dumps({p.name: str(p) for p in repos}))
    config = work / "all-repos.json"
    config.write_text(
        json.dumps(
            {
                "output_dir": "output",
                "source": "all_repos.source.json_file",
                "source_settings": {"filename": str(work / "repos.json")},
                "push": "all_repos.push.readonly",
                "push_settings": {},
            }
        )
    )
    config.chmod(0o600)  # all-repos refuses a config others can read
    return config


def run_all_repos(bin_dir: Path, config: Path) -> int:
    """Clone afresh and sed like the codybatch job; return how many repositories changed."""
    shutil.rmtree(config.parent / "output", ignore_errors=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    env |= {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env |= {"GIT_COMMITTER_EMAIL": "b@x"}
    common = ["-C", str(config), "--color", "never"]
    _run([str(bin_dir / "all-repos-clone"), *common, "-j", "5"], env=env, cwd=config.parent)
    out = _run(
        [str(bin_dir / "all-repos-sed"), *common, "-j", "5", SED_EXPRESSION, SED_FILES],
        env=env,
        cwd=config.parent,
    )
    return sum(1 for line in out.splitlines() if line.startswith("$ git commit"))


def run_codybatch(spec: Path, env: dict[str, str]) -> int:
    """`codybatch run` of the sed job; return how many repositories changed."""
    out = _run(_codybatch("run", str(spec), "--json"), env=env)
    results = json.loads(out[out.index("{") :])["results"]
    return sum(1 for r in results if r["were_changes_necessary"])


def bench_run_vs_all_repos(bench_dir: Path, sizes: Sizes, figures: list[Figure]) -> None:
    repos = small_repos(bench_dir, sizes)
    work = bench_dir / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = work / "spec.json"
    spec.write_text(
        json.dumps(
            {"name": "bench sed", "steps": [SED_STEP], "repositories": [str(p) for p in repos]}
        )
    )
    env = clean_env(
        CODYBATCH_HOME=str(work / "home"),
        CODYBATCH_ALLOWED_REPOSITORIES=f"{repos[0].parent}/*",
    )
    try:
        bin_dir = install_all_repos(bench_dir)
    except RuntimeError as exc:
        report(Figure("codybatch run vs all-repos", f"not measured: {exc}"), figures)
        return
    config = all_repos_config(work / "all-repos", repos)
    # Warm-up (caches, .pyc), and a check that both make the same change.
    ours, theirs = run_codybatch(spec, env), run_all_repos(bin_dir, config)
    if ours != theirs:
        note(f"WARNING: codybatch changed {ours} repositories, all-repos {theirs}")
    ours_t: list[float] = []
    theirs_t: list[float] = []
    for _ in range(sizes.repeat):  # interleaved, so load from others hits both alike
        ours_t.append(timed(lambda: run_codybatch(spec, env)))
        theirs_t.append(timed(lambda: run_all_repos(bin_dir, config)))
    ratio = median(ours_t) / median(theirs_t)
    report(
        at_most(
            "codybatch run, 5 local repositories (shell step)",
            ratio,
            1.0,
            detail=f"of all-repos-clone + all-repos-sed "
            f"({median(ours_t):.2f} s vs {median(theirs_t):.2f} s)",
        ),
        figures,
    )
    note(f"codybatch run: {spread(ours_t)}; all-repos: {spread(theirs_t)}")
    note(
        f"{len(repos)} repositories of {sizes.small_files} files, {sizes.small_commits} commits; "
        f"{ours} changed by both; all-repos {ALL_REPOS_VERSION} with -j 5, codybatch --parallel 5"
    )


# ---- 1b. the CLI path stays lean --------------------------------------------------------


def imported_modules(cmd: Sequence[str], env: dict[str, str]) -> tuple[set[str], float]:
    """Top-level modules a command imports (python -X importtime) and their total seconds."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr}")
    names: set[str] = set()
    total_us = 0
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "imported package" in line:
            continue
        name = parts[2].strip()
        names.add(name.split(".")[0])
        if not parts[2].startswith("  "):  # nested imports are indented further
            total_us += int(parts[1])
    return names, total_us / 1e6


def bench_lean_imports(bench_dir: Path, sizes: Sizes, figures: list[Figure]) -> None:
    repos = small_repos(bench_dir, sizes)[:2]
    work = bench_dir / "imports"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = work / "spec.json"
    spec.write_text(
        json.dumps({"name": "imports", "steps": ["true"], "repositories": [str(p) for p in repos]})
    )
    env = clean_env(CODYBATCH_HOME=str(work / "home"), CODYBATCH_LOCAL_ROOT=str(repos[0].parent))
    checks = {"codybatch --help": _codybatch("--help"), "codybatch run": _codybatch("run")}
    checks["codybatch run"].append(str(spec))
    job_id = _register(work / "home", [repos[0]], ["true"])
    checks["codybatch worker"] = _codybatch(
        "worker", "--job-id", job_id, "--repository", str(repos[0])
    )
    for label, cmd in checks.items():
        names, seconds = imported_modules(cmd, env)
        heavy = sorted(set(HEAVY_MODULES) & names)
        report(
            Figure(
                f"heavy modules imported by `{label}` (shell steps, local store)",
                ", ".join(heavy) if heavy else "none",
                "none of " + "/".join(HEAVY_MODULES),
                not heavy,
            ),
            figures,
        )
        note(f"{len(names)} top-level modules, {seconds * 1000:.0f} ms of imports")


# ---- 2. worker overhead vs raw git ------------------------------------------------------


def _register(home: Path, repos: Sequence[Path], steps: Sequence[str]) -> str:
    """Register a job in a local store at `home` (in-process, like `codybatch run` does)."""
    from codybatch.jobs import register_job
    from codybatch.settings import Settings
    from codybatch.spec import JobSpec
    from codybatch.store.local import LocalStore

    settings = Settings.from_env(
        {"CODYBATCH_HOME": str(home), "CODYBATCH_LOCAL_ROOT": str(repos[0].parent)}
    )
    spec = JobSpec.parse(
        {"name": "bench", "steps": list(steps), "repositories": [str(p) for p in repos]},
        settings,
    )
    return register_job(spec, LocalStore(home)).job_id


def _worker_cmd(job_id: str, repo: Path) -> list[str]:
    return _codybatch("worker", "--job-id", job_id, "--repository", str(repo), "--force")


def _raw_git(repo: Path, scratch: Path) -> float:
    """Seconds for `git clone --depth 1` + `git diff` (the clone removed afterwards)."""
    dest = scratch / "raw"

    def clone_and_diff() -> None:
        _run(["git", "clone", "--quiet", "--depth", "1", f"file://{repo}", str(dest)])
        _run(["git", "-C", str(dest), "diff"])

    seconds = timed(clone_and_diff)
    shutil.rmtree(dest)
    return seconds


def tmpfs() -> Path | None:
    """A writable tmpfs (/dev/shm), where clones cost no disk I/O; None if there is none."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def bench_worker_overhead(
    bench_dir: Path, sizes: Sizes, figures: list[Figure], tmp_root: Path | None = None
) -> None:
    """`codybatch worker` vs raw git, checkouts in tmp_root (default: the usual temp dir)."""
    from codybatch.settings import Settings
    from codybatch.worker import run_worker

    repo = generate_repo(
        bench_dir / "repos" / f"medium-{sizes.medium_files}-1",
        sizes.medium_files,
        sizes.history_commits,
        squash=True,
    )
    home = bench_dir / "worker" / "home"
    shutil.rmtree(home.parent, ignore_errors=True)
    job_id = _register(home, [repo], ["true"])
    root = tmp_root or Path(tempfile.gettempdir())
    env = clean_env(
        CODYBATCH_HOME=str(home), CODYBATCH_LOCAL_ROOT=str(repo.parent), TMPDIR=str(root)
    )
    settings = Settings.from_env(
        {"CODYBATCH_HOME": str(home), "CODYBATCH_LOCAL_ROOT": str(repo.parent)}
    )
    scratch = Path(tempfile.mkdtemp(prefix="codybatch-bench-", dir=root))
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, str(root)
    try:
        _run(_worker_cmd(job_id, repo), env=env)  # warm-up
        _raw_git(repo, scratch)
        worker_t: list[float] = []
        raw_t: list[float] = []
        inproc_t: list[float] = []
        for _ in range(sizes.repeat):  # interleaved, so load from others hits all alike
            worker_t.append(timed(lambda: _run(_worker_cmd(job_id, repo), env=env)))
            raw_t.append(_raw_git(repo, scratch))
            inproc_t.append(timed(lambda: run_worker(job_id, str(repo), settings, force=True)))
        startup_t = [timed(lambda: _run(_codybatch("--help"), env=env)) for _ in range(3)]
    finally:
        tempfile.tempdir = saved_tempdir
        shutil.rmtree(scratch, ignore_errors=True)
    where = "" if tmp_root is None else f", checkouts on tmpfs ({root})"
    report(
        at_most(
            f"worker overhead, {sizes.medium_files:,}-file repository{where}",
            median(worker_t) / median(raw_t),
            1.5,
            detail=f"raw git clone --depth 1 + git diff "
            f"({median(worker_t):.3f} s vs {median(raw_t):.3f} s)",
        ),
        figures,
    )
    note(f"worker: {spread(worker_t)}; raw git: {spread(raw_t)}; checkouts in {root}")
    note(
        f"python start-up + CLI imports {median(startup_t):.3f} s; the same worker in-process "
        f"(run_worker, no interpreter start) {median(inproc_t):.3f} s"
    )


# ---- 4. memory and history length -------------------------------------------------------

# Runs the worker in this interpreter and writes its own peak RSS (KB) to argv[1] at exit.
_RSS_WRAPPER = (
    "import atexit, resource, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write("
    "str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n"
    "sys.argv[0] = 'codybatch'\n"
    "runpy.run_module('codybatch', run_name='__main__', alter_sys=True)\n"
)


def worker_peak_rss(job_id: str, repo: Path, env: dict[str, str]) -> tuple[float, float]:
    """(MB of the worker's whole process tree, MB of its Python process alone)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as own:
        cmd = [PYTHON, "-c", _RSS_WRAPPER, own.name, *_worker_cmd(job_id, repo)[3:]]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait4's ru_maxrss is the peak of the child and every descendant it waited for (git).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        return usage.ru_maxrss / 1024, int(own.read() or 0) / 1024


def bench_memory(bench_dir: Path, sizes: Sizes, figures: list[Figure]) -> None:
    repo = generate_repo(bench_dir / "repos" / f"large-{sizes.large_files}", sizes.large_files)
    home = bench_dir / "memory" / "home"
    shutil.rmtree(home.parent, ignore_errors=True)
    job_id = _register(home, [repo], ["true"])
    env = clean_env(CODYBATCH_HOME=str(home), CODYBATCH_LOCAL_ROOT=str(repo.parent))
    tree_mb, python_mb = worker_peak_rss(job_id, repo, env)
    report(
        at_most(
            f"worker peak memory, {sizes.large_files:,}-file repository",
            tree_mb,
            250,
            unit=" MB",
        ),
        figures,
    )
    note(
        f"largest process of the worker's tree (python or a git child): {tree_mb:.0f} MB; "
        f"the python process alone: {python_mb:.0f} MB"
    )


def bench_clone_history(bench_dir: Path, sizes: Sizes, figures: list[Figure]) -> None:
    from codybatch import git

    repos = {
        n: generate_repo(
            bench_dir / "repos" / f"medium-{sizes.medium_files}-{n}",
            sizes.medium_files,
            sizes.history_commits,
            squash=(n == 1),
        )
        for n in (1, sizes.history_commits)
    }
    times: dict[int, list[float]] = {n: [] for n in repos}
    # On tmpfs when there is one: the history walk is what differs, not the disk writes.
    scratch = Path(tempfile.mkdtemp(prefix="codybatch-bench-", dir=tmpfs()))
    try:
        for rep in range(sizes.repeat + 1):
            for n, repo in repos.items():
                dest = scratch / f"clone-{n}"
                seconds = timed(lambda repo=repo, dest=dest: git.clone(str(repo), dest))
                if rep:  # the first round warms caches
                    times[n].append(seconds)
                shutil.rmtree(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    long_n = sizes.history_commits
    short, long = median(times[1]), median(times[long_n])
    report(
        at_most(
            f"clone time, {sizes.history_commits:,} vs 1 commit of history",
            long / short,
            1.2,
            detail=f"({long:.3f} s vs {short:.3f} s, same {sizes.medium_files:,}-file tree)",
        ),
        figures,
    )
    note(
        f"1 commit: {spread(times[1])}; {long_n}: {spread(times[long_n])}; "
        f"clones in {scratch.parent}"
    )


def run(
    bench_dir: Path = BENCH_DIR, sizes: Sizes | None = None, all_repos: bool = True
) -> list[Figure]:
    """Measure and print every figure of this module; return them."""
    sizes = sizes or Sizes()
    bench_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    print("== walking skeleton: CLI and worker ==", flush=True)
    if all_repos:
        bench_run_vs_all_repos(bench_dir, sizes, figures)
    bench_lean_imports(bench_dir, sizes, figures)
    bench_worker_overhead(bench_dir, sizes, figures)
    if tmpfs() is not None:
        bench_worker_overhead(bench_dir, sizes, figures, tmp_root=tmpfs())
    bench_memory(bench_dir, sizes, figures)
    bench_clone_history(bench_dir, sizes, figures)
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="repetitions per timing (default 7)")
    args = parser.parse_args(argv or [])
    sizes = Sizes() if args.repeat is None else replace(Sizes(), repeat=args.repeat)
    return run(sizes=sizes)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
