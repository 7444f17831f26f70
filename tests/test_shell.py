"""shell: commands with timeouts and bounded output, no secrets in their environment; redact."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from codybatch.redact import MASK, redact, redact_text
from codybatch.sandbox import Sandbox, SandboxUnavailable, detect
from codybatch.shell import SECRET_VARIABLES, CommandResult, clean_environment, truncate
from codybatch.shell import run_command as run_sandboxed

HOST = Sandbox("container")


@pytest.fixture(autouse=True)
def _bwrap(bwrap: Sandbox) -> None:
    """Every command of these tests runs in bubblewrap unless it says otherwise."""


def run_command(command: str, cwd: Path, timeout: float, **kwargs: Any) -> CommandResult:
    return run_sandboxed(command, cwd, timeout, sandbox=kwargs.pop("sandbox", detect()), **kwargs)


def test_run_command_in_the_checkout_with_stdout_and_stderr(tmp_path: Path) -> None:
    done = run_command("pwd; echo out; echo err >&2; exit 0", tmp_path, timeout=10)
    assert done.ok and done.exit_code == 0 and not done.timed_out
    assert done.output.splitlines() == ["/repo", "out", "err"]  # the checkout, in the sandbox
    bare = run_command("pwd", tmp_path, timeout=10, sandbox=HOST)
    assert bare.output.strip() == str(tmp_path)  # CODYBATCH_SANDBOX=container: as it is
    assert done.to_dict()["command"].startswith("pwd")


def test_non_zero_exit_is_not_ok(tmp_path: Path) -> None:
    done = run_command("echo failing; exit 3", tmp_path, timeout=10)
    assert not done.ok and done.exit_code == 3
    assert "failing" in done.output


def test_stdin_is_closed(tmp_path: Path) -> None:
    done = run_command("cat; echo done", tmp_path, timeout=10)
    assert done.ok and done.output.strip() == "done"


def test_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    done = run_command("sleep 60.75 & echo started; sleep 60", tmp_path, timeout=0.5)
    assert done.timed_out and not done.ok and done.exit_code is None
    assert "started" in done.output and "[timed out after 0.5 s: the command and" in done.output
    for _ in range(100):
        if not _sleeping("60.75"):
            break
        time.sleep(0.05)
    assert not _sleeping("60.75"), "a command's background child outlived the timeout"


def test_a_command_needs_a_sandbox(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="bwrap is missing"):
        run_command("touch ran", tmp_path, timeout=10, sandbox=Sandbox("none", "bwrap is missing"))
    assert not (tmp_path / "ran").exists()


def _sleeping(seconds: str) -> bool:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                return _alive(int(proc.name))
        except OSError:
            continue
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_output_is_bounded_keeping_head_and_tail(tmp_path: Path) -> None:
    done = run_command(
        "echo FIRST; yes middle | head -n 20000; echo LAST", tmp_path, timeout=10, output_limit=300
    )
    assert done.ok
    assert done.output.startswith("FIRST")
    assert done.output.rstrip().endswith("LAST")
    assert "characters elided" in done.output
    assert len(done.output) < 400


def test_undecodable_output_is_replaced_not_fatal(tmp_path: Path) -> None:
    done = run_command(r"printf '\377\376ok'", tmp_path, timeout=10)
    assert done.ok and done.output.endswith("ok")


def test_truncate() -> None:
    assert truncate("short", 10) == "short"
    text = "a" * 50 + "b" * 50
    out = truncate(text, 30)
    assert out.startswith("a" * 20) and out.endswith("b" * 10)
    assert "[... 70 characters elided ...]" in out
    assert "70 lines elided" in truncate(text, 30, what="lines")


def test_steps_see_only_the_allowlisted_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.setenv(name, f"value-of-{name}")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.extraheader")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Authorization: Basic c2VjcmV0")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("UNLISTED", "hidden")
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=512")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")

    done = run_command("env", tmp_path, timeout=10, passthrough=["NODE_OPTIONS", "GITHUB_TOKEN"])

    assert "PATH=" in done.output and "LC_ALL=C.UTF-8" in done.output
    assert "NODE_OPTIONS=--max-old-space-size=512" in done.output  # asked for by name
    for name in (*SECRET_VARIABLES, "GIT_CONFIG_VALUE_0", "AWS_ACCESS_KEY_ID", "UNLISTED"):
        assert f"{name}=" not in done.output  # a secret stays out even when asked for
    assert "value-of-" not in done.output and "c2VjcmV0" not in done.output
    assert "HOME=/home/sandbox" in done.output and "TMPDIR=/tmp" in done.output
    assert "PAGER=cat" in done.output
    assert {"GITHUB_TOKEN", "ANTHROPIC_API_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"} <= (
        SECRET_VARIABLES
    )


def test_clean_environment_adds_extra_and_leaves_os_environ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    env = clean_environment({"EXTRA": "1"})
    assert env["EXTRA"] == "1" and "GITHUB_TOKEN" not in env
    assert os.environ["GITHUB_TOKEN"] == "ghp_x"


# redact


def test_redact_text_replaces_every_secret() -> None:
    text = "token sk-ant-123456 and ghp_abcdef twice ghp_abcdef"
    assert redact_text(text, ["sk-ant-123456", "ghp_abcdef"]) == (
        f"token {MASK} and {MASK} twice {MASK}"
    )


def test_redact_ignores_empty_and_very_short_secrets() -> None:
    assert redact_text("a b c", ["", "a"]) == "a b c"
    assert redact({"x": "a"}, ["", "a"]) == {"x": "a"}


def test_redact_walks_json_like_values() -> None:
    value = {"messages": [{"content": 'key=sk-secret-1 "quoted"\n'}], "n": 3, "ok": True}
    out = redact(value, ["sk-secret-1"])
    assert out == {"messages": [{"content": f'key={MASK} "quoted"\n'}], "n": 3, "ok": True}
    assert value["messages"][0]["content"].startswith("key=sk-secret-1")  # a copy


def test_redact_a_secret_with_json_special_characters() -> None:
    secret = 'pa"ss\\word'
    assert redact({"v": f"x{secret}y"}, [secret]) == {"v": f"x{MASK}y"}


def test_redact_a_non_ascii_secret_and_secrets_in_keys() -> None:
    secret = "clé-secrète"
    out = redact({secret: [f"a {secret} b", ("t", secret)]}, [secret])
    assert out == {MASK: [f"a {MASK} b", ["t", MASK]]}
