"""include/worker/Dockerfile: its shape, and its install steps replayed in a fresh venv.

No Docker engine here, so the image is not built; the test installs the core the way the
Dockerfile does, into a venv without Airflow, and runs the image's entrypoint from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "include" / "worker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def one(name: str) -> str:
    (value,) = [args for instruction, args in instructions() if instruction == name]
    return value


def test_dockerfile_builds_a_slim_non_root_worker_without_airflow() -> None:
    assert one("FROM") == "python:3.11-slim"
    runs = " ".join(args for instruction, args in instructions() if instruction == "RUN")
    assert "git" in runs.split() and "pip install ." in runs
    assert "airflow" not in runs.replace("rm -rf codybatch/airflow", "")
    assert one("USER") not in ("root", "0")
    assert json.loads(one("CMD")) == ["worker", "--help"]
    assert json.loads(one("ENTRYPOINT"))[-1] == "codybatch"


@pytest.mark.timeout(900)
def test_core_installs_and_the_worker_runs_without_airflow(tmp_path: Path) -> None:
    # The Dockerfile's steps: copy pyproject.toml and codybatch/, drop codybatch/airflow,
    # `pip install .` (PyPI, or pip's cache on later runs).
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(
        ROOT / "codybatch", source / "codybatch", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.rmtree(source / "codybatch" / "airflow")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        timeout=840,
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}

    imports = subprocess.run(
        [python, "-c", "import codybatch.worker, codybatch.store.aws, codybatch.cli"], env=env
    )
    assert imports.returncode == 0
    no_airflow = subprocess.run(
        [python, "-c", "import airflow"], env=env, capture_output=True, text=True
    )
    assert "ModuleNotFoundError" in no_airflow.stderr

    entrypoint = json.loads(one("ENTRYPOINT"))
    for command in (json.loads(one("CMD")), ["codybatch", "worker", "--help"]):
        # The image's entrypoint, run as Docker would: ENTRYPOINT + CMD (or Batch's command).
        shown = subprocess.run(
            [*entrypoint, *command], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert shown.returncode == 0, shown.stderr
        assert "--job-id" in shown.stdout and "--repository" in shown.stdout
    assert not os.path.exists(venv / "lib" / "python3.11" / "site-packages" / "airflow")
