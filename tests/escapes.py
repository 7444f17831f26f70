"""Escape attempts for sandbox tests: what lies outside a checkout and how to tell whether a
command reached it. The `host` fixture: the worker (this process) and a neighbour hold the
secrets in their environments, a local server listens on 127.0.0.1, a store, an Airflow
database, a home with ~/.ssh and another checkout lie beside the checkout.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from codybatch import git
from codybatch.sandbox import Sandbox
from tests.fakes.serving import start_server, stop_server
from tests.helpers import git as run_git_here
from tests.helpers import make_repo

SYSCTL = Path("/proc/sys/kernel/printk_ratelimit")
PROC_STEP = (
    "for p in /proc/[0-9]*; do tr '\\0' '\\n' <$p/environ; done | "
    "grep -E '^(GITHUB_TOKEN|ANTHROPIC_API_KEY)=' | rev"
)


@dataclass
class Host:
    """What lies outside the checkout, and how to tell whether a command reached it."""

    root: Path
    checkout: Path
    remote: Path
    token: str
    key: str
    hits: list[str]
    port: int
    neighbour: int
    sysctl_before: str = field(default_factory=lambda: SYSCTL.read_text().strip())

    @property
    def tmp_marker(self) -> str:
        """A name in the host's own /tmp, unique to this test."""
        return f"/tmp/codybatch-escape-{self.token[-12:]}"

    @property
    def sysctl_escape_value(self) -> str:
        """A value the host's sysctl does not hold, so a write that got through shows."""
        return str(int(self.sysctl_before) + 1)

    @property
    def secrets(self) -> tuple[str, str]:
        return (self.token, self.key)

    def escapes(self) -> dict[str, str]:
        """Escape attempts by name: each a shell command run from the checkout."""
        r = self.root
        return {
            "absolute write": f"echo pwned > {r}/outside/abs.txt",
            "dotdot write": "echo pwned > ../dotdot.txt; echo pwned > /repo/../../dotdot.txt",
            "symlink write": f"ln -s {r}/outside out && echo pwned > out/sym.txt",
            "tmp write": f"echo pwned > {r}/tmp-marker; echo pwned > {self.tmp_marker}",
            "read ssh": f"cat ~/.ssh/id_ed25519 {r}/home/.ssh/id_ed25519 /root/.ssh/*",
            "read store": f"cat {r}/codybatch-home/codybatch.db {r}/codybatch-home/*/*",
            "read airflow": f"cat {r}/airflow/airflow.db {r}/airflow/passwords.json",
            "read other checkout": f"cat {r}/other-checkout/secret.txt",
            "env": "env; set",
            "proc environ": PROC_STEP,
            "proc environ base64": "cat /proc/*/environ | base64",
            "network": (
                "python3 -c 'import socket; socket.create_connection"
                f'(("127.0.0.1", {self.port}), 2)\'; '
                f"wget -q -T 2 -O- http://127.0.0.1:{self.port}/ ; "
                f"curl -s -m 2 http://127.0.0.1:{self.port}/"
            ),
            "git push": (
                f"git remote set-url origin {r}/evil.git; "
                f"git push file://{self.remote} HEAD:refs/heads/evil"
            ),
            "git hooks and config": (
                f"printf '#!/bin/sh\\ntouch {r}/hook-ran\\n' > .git/hooks/pre-commit; "
                "chmod +x .git/hooks/pre-commit; "
                f"git config core.hooksPath {r}/hooks; "
                f"git config filter.x.clean 'touch {r}/filter-ran; cat'; "
                "echo '* filter=x' > .gitattributes"
            ),
            "sysctl": f"echo {self.sysctl_escape_value} > {SYSCTL}",
            "sandbox root": "head -c 100M /dev/zero > /filler; ls -la /filler",
        }

    def assert_contained(self, *texts: str) -> None:
        """Nothing outside the checkout changed, nothing listened to, no secret in texts."""
        r = self.root
        assert sorted(p.name for p in (r / "outside").iterdir()) == ["keep.txt"]
        for name in ("dotdot.txt", "tmp-marker", "hook-ran", "filter-ran", "evil.git"):
            assert not (r / name).exists(), name
        assert not Path(self.tmp_marker).exists()
        assert not Path("/dotdot.txt").exists()
        assert self.hits == [], "a command reached the local server"
        branches = run_git_here(self.remote, "branch", "--list").split()
        assert "evil" not in branches
        assert SYSCTL.read_text().strip() == self.sysctl_before
        for text in texts:
            for form in secret_forms(self.secrets):
                assert form not in text
            assert "ssh-private-marker" not in text and "store-marker" not in text
            assert "airflow-marker" not in text and "other-checkout-marker" not in text


def secret_forms(values: tuple[str, ...]) -> list[str]:
    """Each secret plain, reversed, and base64 of either (at three alignments)."""
    forms = []
    for value in values:
        for text in (value, value[::-1]):
            forms.append(text)
            for skip in range(3):  # base64 of a longer stream: any alignment
                encoded = base64.b64encode(text[skip:].encode()).decode()
                forms.append(encoded[4 : len(encoded) - 4])
    return forms


@pytest.fixture(name="host")
def host_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bwrap: Sandbox) -> Iterator[Host]:
    token = "ghp_" + secrets.token_hex(18)
    key = "sk-ant-api03-" + secrets.token_hex(20)
    # The worker (this process) and a long-lived neighbour both hold the secrets.
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    neighbour = subprocess.Popen(["sleep", "120"], env={**os.environ})
    for name, content in {
        "outside/keep.txt": "keep\n",
        "home/.ssh/id_ed25519": "ssh-private-marker\n",
        "codybatch-home/codybatch.db": "store-marker\n",
        "airflow/airflow.db": "airflow-marker\n",
        "airflow/passwords.json": '{"admin": "airflow-marker"}\n',
        "other-checkout/secret.txt": "other-checkout-marker\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    hits: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = start_server(Record)
    remote = make_repo(tmp_path / "remote.git", {"app.py": "oldFunction()\n"}, bare=True)
    checkout = git.clone(str(remote), tmp_path / "work" / "checkout")
    try:
        yield Host(
            tmp_path, checkout, remote, token, key, hits, server.server_address[1], neighbour.pid
        )
    finally:
        stop_server(server)
        neighbour.kill()
        neighbour.wait()
