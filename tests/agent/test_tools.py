"""The tools against real checkouts: editing, viewing, searching, and confinement."""

from __future__ import annotations

from pathlib import Path

import pytest

from codybatch.agent import tools
from codybatch.agent.tools import ToolError, Workspace, list_files, parse_finish
from tests.helpers import make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            ".gitignore": "build/\n*.log\n",
            "src/app.py": "import os\n\n\ndef run():\n    return os.getcwd()\n",
            "src/pkg/deep/mod.py": "VALUE = 1\n",
            "data.bin": b"\x89PNG\r\n\x1a\n\x00\x00binary",
            "latin1.txt": "caf\xe9\n".encode("latin-1"),
            "crlf.txt": b"one\r\ntwo\r\nthree\r\n",
            "docs/guide.md": "# Guide\n\nrun() starts it.\n",
        },
    )


def edit(ws: Workspace, **kwargs) -> tools.ToolResult:
    return ws.run(tools.EDITOR, kwargs)


def test_view_file_numbers_lines_and_ranges(repo: Path) -> None:
    ws = Workspace(repo)
    out = edit(ws, command="view", path="/repo/src/app.py")
    assert not out.is_error
    assert out.text.splitlines()[0] == "/repo/src/app.py, lines 1-5 of 5:"
    assert "     4\tdef run():" in out.text
    ranged = edit(ws, command="view", path="src/app.py", view_range=[4, -1]).text
    assert "     4\tdef run():" in ranged and "import os" not in ranged
    bad = edit(ws, command="view", path="src/app.py", view_range=[7, 9])
    assert bad.is_error and "has 5 lines" in bad.text


def test_view_directory_two_levels_respecting_gitignore(repo: Path) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "out.txt").write_text("ignored")
    (repo / "debug.log").write_text("ignored")
    ws = Workspace(repo)
    text = edit(ws, command="view", path="/repo").text
    assert "src/app.py" in text and "src/pkg/ (1 files)" in text
    assert "build" not in text and "debug.log" not in text and ".git/" not in text


def test_view_refuses_binary_non_utf8_and_huge_files(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace(repo)
    binary = edit(ws, command="view", path="data.bin")
    assert binary.is_error and "binary" in binary.text
    latin = edit(ws, command="view", path="latin1.txt")
    assert latin.is_error and "not UTF-8" in latin.text
    monkeypatch.setattr(tools, "MAX_FILE_BYTES", 10)
    huge = edit(ws, command="view", path="src/app.py")
    assert huge.is_error and "over the 10-byte limit" in huge.text
    missing = edit(ws, command="view", path="nope.py")
    assert missing.is_error and "does not exist" in missing.text


def test_long_view_keeps_head_and_tail(repo: Path) -> None:
    (repo / "big.py").write_text("".join(f"line_{i} = {i}\n" for i in range(5000)))
    text = edit(Workspace(repo), command="view", path="big.py").text
    assert len(text) < tools.OUTPUT_LIMIT + 500
    assert "line_0 = 0" in text and "line_4999 = 4999" in text
    assert "characters elided" in text and "view_range" in text


def test_str_replace_exactly_once(repo: Path) -> None:
    ws = Workspace(repo)
    out = edit(
        ws,
        command="str_replace",
        path="src/app.py",
        old_str="os.getcwd()",
        new_str="os.getcwd() or '.'",
    )
    assert not out.is_error and out.edited
    assert "return os.getcwd() or '.'" in out.text  # the snippet shows the result
    assert (repo / "src/app.py").read_text().endswith("return os.getcwd() or '.'\n")


def test_str_replace_reports_misses_and_duplicates_precisely(repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\ny = 2\nx = 1\n\n    x = 1\n")
    ws = Workspace(repo)
    dup = edit(ws, command="str_replace", path="dup.py", old_str="x = 1", new_str="x = 3")
    assert dup.is_error and "appears 3 times" in dup.text and "at lines 1, 3, 5" in dup.text
    miss = edit(ws, command="str_replace", path="dup.py", old_str="z = 9", new_str="")
    assert miss.is_error and "did not appear verbatim" in miss.text
    indent = edit(
        ws,
        command="str_replace",
        path="src/app.py",
        old_str="def run():\nreturn os.getcwd()",
        new_str="",
    )
    assert "differing only in indentation" in indent.text and "line(s) 4" in indent.text
    empty = edit(ws, command="str_replace", path="dup.py", old_str="", new_str="x")
    assert empty.is_error and "non-empty" in empty.text
    assert (repo / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n\n    x = 1\n"


def test_str_replace_and_insert_keep_crlf(repo: Path) -> None:
    ws = Workspace(repo)
    assert not edit(
        ws, command="str_replace", path="crlf.txt", old_str="one\ntwo", new_str="1\n2"
    ).is_error
    assert not edit(
        ws, command="insert", path="crlf.txt", insert_line=3, insert_text="four"
    ).is_error
    assert (repo / "crlf.txt").read_bytes() == b"1\r\n2\r\nthree\r\nfour\r\n"


def test_insert_and_create(repo: Path) -> None:
    ws = Workspace(repo)
    assert not edit(
        ws, command="insert", path="src/app.py", insert_line=0, insert_text="# header"
    ).is_error
    assert (repo / "src/app.py").read_text().startswith("# header\nimport os\n")
    (repo / "nonl.txt").write_text("a")
    edit(ws, command="insert", path="nonl.txt", insert_line=1, insert_text="b\n")
    assert (repo / "nonl.txt").read_text() == "a\nb\n"
    created = edit(ws, command="create", path="/repo/new/dir/file.py", file_text="x = 1\n")
    assert not created.is_error and "Created /repo/new/dir/file.py" in created.text
    again = edit(ws, command="create", path="new/dir/file.py", file_text="x = 2\n")
    assert "Overwrote" in again.text and (repo / "new/dir/file.py").read_text() == "x = 2\n"
    assert edit(ws, command="create", path="src", file_text="x").is_error
    assert edit(ws, command="undo_edit", path="src/app.py").is_error


@pytest.mark.parametrize(
    "path",
    [
        "../outside.txt",
        "/tmp/outside.txt",
        "/repo/../outside.txt",
        "src/../../outside.txt",
        "~/outside.txt",
        ".git/config",
        "/repo/.git/hooks/pre-commit",
        "src/../.git/HEAD",
        ".Git/config",
        "link_out/x.txt",
        "file_link",
        "git_link/config",
        "",
        "bad\0name",
    ],
)
def test_every_access_outside_the_checkout_is_refused(repo: Path, path: str) -> None:
    outside = repo.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "x.txt").write_text("outside\n")
    (repo.parent / "outside.txt").write_text("outside\n")
    (repo / "link_out").symlink_to(outside)
    (repo / "file_link").symlink_to(outside / "x.txt")
    (repo / "git_link").symlink_to(repo / ".git")
    ws = Workspace(repo)
    before = {p: p.read_bytes() for p in repo.parent.rglob("*") if p.is_file()}
    for command in (
        {"command": "view"},
        {"command": "create", "file_text": "pwned\n"},
        {"command": "str_replace", "old_str": "outside", "new_str": "pwned"},
        {"command": "insert", "insert_line": 0, "insert_text": "pwned"},
    ):
        result = edit(ws, path=path, **command)
        assert result.is_error, (command, result.text)
        assert "outside\n" not in result.text
    assert ws.run(tools.SEARCH, {"pattern": "outside", "path": path or "/x"}).is_error
    after = {p: p.read_bytes() for p in repo.parent.rglob("*") if p.is_file()}
    assert after == before


def test_a_symlink_inside_the_checkout_is_followed(repo: Path) -> None:
    (repo / "alias.py").symlink_to(repo / "src" / "app.py")
    ws = Workspace(repo)
    out = edit(ws, command="view", path="alias.py")
    assert not out.is_error and "/repo/src/app.py" in out.text


def test_search_hits_respect_gitignore_and_caps(repo: Path, monkeypatch) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "gen.py").write_text("def run(): pass\n")
    (repo / "untracked.py").write_text("run()\n")
    ws = Workspace(repo)
    text = ws.run(tools.SEARCH, {"pattern": r"run\(\)"}).text
    assert "src/app.py:4: def run():" in text
    assert "docs/guide.md:3: run() starts it." in text
    assert "untracked.py:1: run()" in text
    assert "build/" not in text
    only_py = ws.run(tools.SEARCH, {"pattern": r"run\(\)", "glob": "*.py", "path": "/repo/src"})
    assert "src/app.py:4:" in only_py.text and "guide.md" not in only_py.text
    assert "untracked" not in only_py.text
    case = ws.run(tools.SEARCH, {"pattern": "GUIDE", "ignore_case": True}).text
    assert "docs/guide.md:1: # Guide" in case
    (repo / "many.txt").write_text("hit\n" * 500)
    monkeypatch.setattr(tools, "MAX_SEARCH_HITS", 100)
    many = ws.run(tools.SEARCH, {"pattern": "^hit$"}).text
    assert many.startswith("First 100 hits") and many.count("many.txt:") == 100
    (repo / "long.txt").write_text("needle" + "x" * 5000 + "\n")
    long = ws.run(tools.SEARCH, {"pattern": "needle"}).text
    assert len(long) < 600 and long.rstrip().endswith("[...]")


def test_search_errors_are_tool_errors(repo: Path) -> None:
    ws = Workspace(repo)
    bad = ws.run(tools.SEARCH, {"pattern": "run("})
    assert bad.is_error and "Error:" in bad.text
    assert ws.run(tools.SEARCH, {"pattern": ""}).is_error
    assert ws.run(tools.SEARCH, {"pattern": "x", "ignore_case": "yes"}).is_error
    none = ws.run(tools.SEARCH, {"pattern": "no_such_thing_anywhere"})
    assert not none.is_error and none.text.startswith("No matches")


def test_search_without_git_falls_back(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "a").mkdir(parents=True)
    (plain / "a" / "x.py").write_text("alpha = 1\n")
    ws = Workspace(plain)
    assert "a/x.py:1: alpha = 1" in ws.run(tools.SEARCH, {"pattern": "alpha"}).text
    assert list_files(plain) == ["a/x.py"]


def test_list_files_skips_deleted_and_ignored(repo: Path) -> None:
    (repo / "docs/guide.md").unlink()
    (repo / "x.log").write_text("ignored")
    names = list_files(repo)
    assert "docs/guide.md" not in names and "x.log" not in names
    assert "src/pkg/deep/mod.py" in names and ".gitignore" in names


def test_parse_finish() -> None:
    done = parse_finish(
        {"changes_necessary": True, "summary": " Did it. ", "pr_title": "Fix\nthe   thing"}
    )
    assert done == tools.Finish(True, "Did it.", "Fix the thing")
    assert parse_finish({"changes_necessary": False, "summary": "No."}).pr_title is None
    for bad in (
        {"summary": "x"},
        {"changes_necessary": "true", "summary": "x"},
        {"changes_necessary": True, "summary": "x"},
        {"changes_necessary": False, "summary": ""},
        {"changes_necessary": False, "summary": "x", "pr_title": 3},
        [],
    ):
        with pytest.raises(ToolError):
            parse_finish(bad)
