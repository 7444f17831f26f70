"""Hard links, FIFOs, file modes and the write caps: the editor never writes in place."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codybatch.agent import tools
from codybatch.agent.tools import Workspace
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    create,
    finish,
    insert,
    reply,
    search,
    str_replace,
    view,
)
from tests.helpers import make_repo

# A FIFO opened for writing (or reading) without O_NONBLOCK waits for a peer forever.
FIFO_GUARD = pytest.mark.timeout(60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"src/app.py": "VALUE = 1\n", "run.sh": "#!/bin/sh\necho one\n"},
    )


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside.txt"
    secret.write_text("outside contents\n")
    return secret


def edit(ws: Workspace, **kwargs) -> tools.ToolResult:
    return ws.run(tools.EDITOR, kwargs)


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob(".codybatch-*") if ".git" not in p.parts]


def test_a_hard_link_to_an_outside_file_is_never_edited(repo: Path, outside: Path) -> None:
    os.link(outside, repo / "inside.txt")
    inode = outside.stat().st_ino
    ws = Workspace(repo)
    for command in (
        {"command": "create", "file_text": "pwned\n"},
        {"command": "str_replace", "old_str": "outside", "new_str": "pwned"},
        {"command": "insert", "insert_line": 0, "insert_text": "pwned"},
    ):
        for path in ("/repo/inside.txt", "inside.txt"):
            result = edit(ws, path=path, **command)
            assert result.is_error, (command, result.text)
            assert "is hard-linked; refusing to edit it" in result.text
            assert "outside contents" not in result.text
    assert outside.read_text() == "outside contents\n"
    assert outside.stat().st_ino == inode and outside.stat().st_nlink == 2
    assert (repo / "inside.txt").stat().st_ino == inode
    assert ws.files_created == 0 and ws.bytes_added == 0
    assert no_temporaries(repo)


def test_a_symlink_to_a_hard_linked_file_is_refused_too(repo: Path, outside: Path) -> None:
    os.link(outside, repo / "inside.txt")
    (repo / "alias.txt").symlink_to("inside.txt")
    result = edit(Workspace(repo), command="create", path="alias.txt", file_text="pwned\n")
    assert result.is_error and "/repo/inside.txt is hard-linked" in result.text
    assert outside.read_text() == "outside contents\n"


@FIFO_GUARD
def test_a_fifo_is_refused_without_blocking(repo: Path) -> None:
    os.mkfifo(repo / "pipe")
    ws = Workspace(repo)
    for command in (
        {"command": "view"},
        {"command": "create", "file_text": "data\n"},
        {"command": "str_replace", "old_str": "a", "new_str": "b"},
        {"command": "insert", "insert_line": 0, "insert_text": "x"},
    ):
        result = edit(ws, path="/repo/pipe", **command)
        assert result.is_error, (command, result.text)
        assert "is a named pipe (FIFO), not a regular file" in result.text
    assert stat.S_ISFIFO(os.lstat(repo / "pipe").st_mode)
    hits = ws.run(tools.SEARCH, {"pattern": "VALUE"})
    assert not hits.is_error and "src/app.py:1: VALUE = 1" in hits.text
    assert no_temporaries(repo)


@FIFO_GUARD
def test_a_fifo_swapped_in_after_the_check_is_not_opened_blocking(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = repo / "late"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(repo / "src/app.py")
    # The stat says "regular file"; the open must still not wait for a writer.
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if Path(p) == fifo else real_stat(p))
    result = edit(Workspace(repo), command="view", path="late")
    assert result.is_error and "named pipe (FIFO)" in result.text


@FIFO_GUARD
def test_search_without_git_skips_a_fifo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("needle\n")
    os.mkfifo(plain / "b.txt")
    text = Workspace(plain).run(tools.SEARCH, {"pattern": "needle"}).text
    assert "a.txt:1: needle" in text and "b.txt" not in text


def test_edits_replace_the_file_and_keep_its_mode(repo: Path) -> None:
    script = repo / "run.sh"
    script.chmod(0o755)
    private = repo / "src/app.py"
    private.chmod(0o600)
    ws = Workspace(repo)
    for step in (
        {"command": "str_replace", "old_str": "echo one", "new_str": "echo two"},
        {"command": "insert", "insert_line": 2, "insert_text": "echo three"},
        {"command": "create", "file_text": "#!/bin/sh\necho four\n"},
    ):
        before = script.read_bytes()
        with script.open("rb") as old:  # the old inode, held open across the edit
            result = edit(ws, path="run.sh", **step)
            assert not result.is_error, result.text
            assert old.read() == before  # never rewritten in place
            assert os.fstat(old.fileno()).st_ino != script.stat().st_ino
        assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_text() == "#!/bin/sh\necho four\n"
    assert os.access(script, os.X_OK)
    assert not edit(ws, command="str_replace", path="src/app.py", old_str="1", new_str="2").is_error
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "VALUE = 2\n"
    assert not edit(ws, command="create", path="new/file.py", file_text="x = 1\n").is_error
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((repo / "new/file.py").stat().st_mode) == 0o644 & ~umask
    assert no_temporaries(repo)


def test_a_symlinked_file_is_edited_through_its_link(repo: Path) -> None:
    (repo / "alias.py").symlink_to("src/app.py")
    ws = Workspace(repo)
    assert not edit(ws, command="str_replace", path="alias.py", old_str="1", new_str="3").is_error
    assert (repo / "alias.py").is_symlink()
    assert (repo / "src/app.py").read_text() == "VALUE = 3\n"


def test_create_caps_the_number_of_files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "MAX_CREATED_FILES", 3)
    ws = Workspace(repo)
    for i in range(3):
        assert not edit(ws, command="create", path=f"gen/{i}.txt", file_text="x\n").is_error
    refused = edit(ws, command="create", path="gen/3.txt", file_text="x\n")
    assert refused.is_error
    assert "/repo/gen/3.txt was not created: this run has already created 3 files" in refused.text
    assert "the limit is 3" in refused.text
    assert not (repo / "gen/3.txt").exists()
    # Overwriting an existing file creates nothing and stays possible.
    assert not edit(ws, command="create", path="gen/0.txt", file_text="y\n").is_error
    assert ws.files_created == 3


def test_edits_cap_the_bytes_added_in_a_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "MAX_ADDED_BYTES", 100)
    ws = Workspace(repo)
    assert not edit(ws, command="create", path="a.txt", file_text="a" * 60).is_error
    refused = edit(ws, command="create", path="b.txt", file_text="b" * 60)
    assert refused.is_error and "would add 60 bytes to the 60 bytes" in refused.text
    assert "the limit is 100 bytes" in refused.text
    assert not (repo / "b.txt").exists()
    grow = edit(ws, command="insert", path="src/app.py", insert_line=1, insert_text="c" * 50)
    assert grow.is_error and "was not written" in grow.text
    assert (repo / "src/app.py").read_text() == "VALUE = 1\n"
    # Shrinking or rewriting at the same size adds nothing: such edits go on working.
    assert not edit(ws, command="create", path="a.txt", file_text="A" * 60).is_error
    assert not edit(ws, command="str_replace", path="a.txt", old_str="A" * 60, new_str="z").is_error
    assert ws.bytes_added == 60


def test_a_file_over_the_size_cap_is_not_written(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "MAX_FILE_BYTES", 40)
    ws = Workspace(repo)
    big = edit(ws, command="create", path="big.txt", file_text="é" * 25)  # 50 bytes in UTF-8
    assert big.is_error
    assert "/repo/big.txt would be 50 bytes, over the 40-byte limit" in big.text
    assert not (repo / "big.txt").exists()
    grow = edit(ws, command="str_replace", path="src/app.py", old_str="1", new_str="1" * 40)
    assert grow.is_error and "over the 40-byte limit" in grow.text
    assert (repo / "src/app.py").read_text() == "VALUE = 1\n"
    assert ws.files_created == 0 and ws.bytes_added == 0


@FIFO_GUARD
def test_hard_links_and_fifos_through_the_loop(
    api: FakeAnthropic, agent, repo: Path, outside: Path
) -> None:
    os.link(outside, repo / "inside.txt")
    os.mkfifo(repo / "pipe")
    attempts = [
        create("/repo/inside.txt", "pwned\n"),
        str_replace("inside.txt", "outside", "pwned"),
        insert("/repo/inside.txt", 0, "pwned"),
        view("/repo/pipe"),
        create("/repo/pipe", "data\n"),
        str_replace("pipe", "a", "b"),
    ]
    api.script(
        reply(*attempts),
        reply(search("outside contents"), create("/repo/run.sh", "#!/bin/sh\necho two\n")),
        reply(finish(True, "Edited the script.", "Edit the script")),
    )
    (repo / "run.sh").chmod(0o755)
    run = agent(repo, "Overwrite inside.txt and pipe.")
    results = [
        b for b in api.answered[1].body["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert len(results) == len(attempts)
    for attempt, result in zip(attempts, results, strict=True):
        assert result.get("is_error") is True, (attempt["input"], result["content"])
    assert all("is hard-linked; refusing to edit it" in r["content"] for r in results[:3])
    assert all("named pipe (FIFO), not a regular file" in r["content"] for r in results[3:])
    later = [
        b for b in api.answered[2].body["messages"][-1]["content"] if b["type"] == "tool_result"
    ]
    assert not any(r.get("is_error") for r in later)
    assert run.outcome.stop_reason == "finished"
    assert outside.read_text() == "outside contents\n"
    assert stat.S_ISFIFO(os.lstat(repo / "pipe").st_mode)
    assert (repo / "run.sh").read_text() == "#!/bin/sh\necho two\n"
    assert stat.S_IMODE((repo / "run.sh").stat().st_mode) == 0o755
