"""Diffs and threads turned into what the pages show (no Airflow needed)."""

from __future__ import annotations

from pathlib import Path

from codybatch.airflow.ui.diffview import line_html, parse_patch, render_patch
from codybatch.airflow.ui.threadview import build_thread
from tests.helpers import commit_all, git, make_repo

XSS = "<script>alert(1)</script>"
ODD = "<img src=x onerror=alert(1)>.js"  # a file name cannot hold the "/" of </script>


def _real_patch(tmp_path: Path) -> bytes:
    """A patch from real git: modify, add, delete, rename, binary, mode, odd names."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "app.py": "def f():\n    return 1\n\n\ndef g():\n    return 2\n",
            "old_name.txt": "same content\nacross a rename\nthree\nfour\n",
            "gone.txt": "bye\n",
            "image.bin": b"\x00\x01\x02",
            "run.sh": "echo hi\n",
        },
    )
    (repo / "app.py").write_text("def f():\n    return 10\n\n\ndef g():\n    return 2\n")
    (repo / "old_name.txt").rename(repo / "new name.txt")
    (repo / "gone.txt").unlink()
    (repo / "image.bin").write_bytes(b"\x00\x09\x02")
    (repo / "run.sh").chmod(0o755)
    (repo / "café.txt").write_text("crème\n")  # git prints this name quoted, octal-escaped
    (repo / ODD).write_text(f"const x = '{XSS}';\n")
    git(repo, "add", "--all")
    patch = git(repo, "diff", "--cached", "--binary", "-M", "HEAD").encode()
    commit_all(repo)
    return patch


def test_a_real_git_patch_is_split_per_file(tmp_path: Path) -> None:
    files = {f.path: f for f in parse_patch(_real_patch(tmp_path))}
    assert set(files) == {
        "app.py",
        "new name.txt",
        "gone.txt",
        "image.bin",
        "run.sh",
        ODD,
        "café.txt",
    }
    app = files["app.py"]
    assert (app.status, app.additions, app.deletions) == ("modified", 1, 1)
    removed = next(line for line in app.lines if line.kind == "del")
    added = next(line for line in app.lines if line.kind == "add")
    assert (removed.text, removed.old, added.text, added.new) == (
        "    return 1",
        2,
        "    return 10",
        2,
    )
    assert files["new name.txt"].status == "renamed"
    assert files["new name.txt"].title == "old_name.txt → new name.txt"
    assert files["gone.txt"].status == "deleted" and files["gone.txt"].deletions == 1
    assert files["image.bin"].binary and not files["image.bin"].lines
    assert files["run.sh"].status == "mode"
    assert files[ODD].status == "added"


def test_highlighted_lines_are_escaped(tmp_path: Path) -> None:
    files = {f.path: f for f in render_patch(_real_patch(tmp_path))}
    line = next(line for line in files[ODD].lines if line.kind == "add")
    html = str(line_html(line))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="hl-' in html
    app = next(line for line in files["app.py"].lines if line.kind == "ctx")
    assert '<span class="hl-k">def</span>' in str(line_html(app))


def test_a_line_the_lexer_cannot_keep_is_plain_escaped_text() -> None:
    patch = f"diff --git a/x.txt b/x.txt\n--- a/x.txt\n+++ b/x.txt\n@@ -1 +1 @@\n-a\n+{XSS}\n"
    (diff,) = parse_patch(patch)
    added = diff.lines[-1]
    assert str(line_html(added)) == "&lt;script&gt;alert(1)&lt;/script&gt;"


# The shape codybatch.agent.loop writes ("codybatch-thread/1").
LOOP_THREAD = {
    "format": "codybatch-thread/1",
    "model": "claude-sonnet-4-5",
    "system": [{"type": "text", "text": "You change code."}],
    "turns": [
        {
            "index": 1,
            "request": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Task"}]}]
            },
            "response": {
                "content": [
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "t1", "name": "bash", "input": {"cmd": "ls"}},
                    {"type": "tool_use", "id": "t2", "name": "finish", "input": {"summary": "s"}},
                ],
                "stop_reason": "tool_use",
            },
            "usage": {"input_tokens": 10, "output_tokens": 5, "usd": 0.5},
        },
        {
            "index": 2,
            "request": {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": "a.py"},
                        ],
                    }
                ]
            },
            "error": "overloaded after 8 retries",
        },
    ],
    "unsent_messages": [
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "ok"}],
                    "is_error": True,
                }
            ],
        }
    ],
    "usage_total": {"input_tokens": 10, "output_tokens": 5, "usd": 0.5},
    "stop_reason": "error",
}


def test_the_agent_loop_thread() -> None:
    view = build_thread(LOOP_THREAD)
    assert view.prompt == "Task" and view.system == "You change code."
    first, second = view.turns
    assert first.texts == ["Looking."] and first.thinking == ["hmm"]
    bash, finish = first.tool_calls
    assert (bash.name, bash.result, bash.is_error) == ("bash", "a.py", False)
    assert '"cmd": "ls"' in bash.input
    assert (finish.result, finish.is_error) == ("ok", True)
    assert first.usage.usd == 0.5 and first.stop_reason == "tool_use"
    assert second.error == "overloaded after 8 retries" and not second.tool_calls
    assert view.usage.total_tokens == 15
    assert view.facts["stop_reason"] == "error"


def test_a_flat_message_list() -> None:
    view = build_thread(
        {
            "messages": [
                {"role": "user", "content": "do it"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "a", "name": "view", "input": {}}],
                    "usage": {"input_tokens": 3, "output_tokens": 1},
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a"}]},
                {"role": "assistant", "content": "done"},
            ]
        }
    )
    assert view.prompt == "do it"
    assert [len(t.tool_calls) for t in view.turns] == [1, 0]
    assert view.turns[0].tool_calls[0].result == ""
    assert view.turns[1].texts == ["done"]
    assert view.usage.total_tokens == 4


def test_unknown_shapes_do_not_break() -> None:
    for thread in (None, {}, {"turns": "seven"}, {"turns": [1, "x"]}, ["not", "messages"]):
        assert build_thread(thread).turns == []
