"""The first message: task, compact listing and identifier hits, bounded in size."""

from __future__ import annotations

from pathlib import Path

from codybatch.agent.context import (
    HITS_BUDGET,
    LISTING_BUDGET,
    build_first_message,
    identifiers,
    overview,
)
from tests.helpers import make_repo


def test_identifiers_pick_code_names_not_prose() -> None:
    prompt = (
        "Rename `load_config` to readConfig in src/app/main.py and config.yaml, e.g. use "
        "os.path; and/or the HTTP API. Also `Widget` and LoadSettings."
    )
    assert identifiers(prompt) == [
        "load_config",
        "Widget",
        "readConfig",
        "src/app/main.py",
        "config.yaml",
        "os.path",
    ]
    assert identifiers("Please make the tests pass and tidy up the code.") == []


def test_small_repository_is_listed_in_full() -> None:
    files = ["README.md", "src/a.py", "src/b.py", "tests/test_a.py"]
    text = overview(files)
    assert text.splitlines()[1:] == ["./: README.md", "src/: a.py b.py", "tests/: test_a.py"]
    assert "folded" not in text


def test_large_listing_folds_to_fit() -> None:
    files = [f"pkg{i}/sub{j}/deep/f{k}.py" for i in range(20) for j in range(10) for k in range(50)]
    files += ["README.md", "setup.py"]
    text = overview(files)
    assert text.startswith("10,002 files")
    assert len(text) <= LISTING_BUDGET + 300
    assert "README.md" in text and "pkg0/ (500 files)" in text
    assert "folded" in text


def test_one_huge_directory_is_cut_to_the_budget() -> None:
    files = [f"f{i:05d}_with_a_rather_long_name.txt" for i in range(20_000)]
    text = overview(files, budget=1_000)
    assert len(text) < 1_300 and "more" in text


def test_first_message_has_task_listing_and_hits(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {
            "src/config.py": "def load_config(path):\n    return {}\n",
            "src/main.py": "from config import load_config\n\nload_config('x')\n",
            "README.md": "# r\n",
        },
    )
    text = build_first_message(repo, "Make `load_config` cache its result.", "pytest -q")
    assert text.startswith("<task>\nMake `load_config` cache its result.\n</task>")
    assert "src/: config.py main.py" in text
    assert "`load_config` (3 hits):" in text
    assert "src/config.py:1: def load_config(path):" in text
    assert "`pytest -q`" in text
    assert str(tmp_path) not in text


def test_first_message_stays_bounded_as_the_repository_grows(tmp_path: Path) -> None:
    prompt = "Replace every call of `fetch_data` with fetch_records; keep DataClient intact."
    sizes = []
    for count in (10, 1_000):
        files = {
            f"svc{i % 7}/mod{i % 13}/file_{i}.py": f"from x import fetch_data\nfetch_data({i})\n"
            for i in range(count)
        }
        repo = make_repo(tmp_path / f"repo{count}", files)
        sizes.append(len(build_first_message(repo, prompt)))
    for size in sizes:
        assert size <= len(prompt) + LISTING_BUDGET + HITS_BUDGET + 1_000
