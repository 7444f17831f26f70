"""git: shallow clones, a diff that reproduces every kind of change, no hooks, no token on disk."""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codybatch import git
from tests.helpers import commit_all, index_listing, make_repo, tree_snapshot
from tests.helpers import git as run

TOKEN = "secret-token-123"
TOKEN_B64 = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()


def blob(seed: int, size: int = 3000) -> bytes:
    """Random bytes with NULs and high bytes: git must treat them as binary."""
    data = random.Random(seed).randbytes(size)
    return b"\x00\xff" + data + b"\x00"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A repository with every kind of file a change can touch."""
    body = "".join(f"line {i}: some text that stays the same\n" for i in range(40))
    repo = make_repo(
        tmp_path / "source",
        {
            "README.md": "# Demo\n",
            "src/app.py": "def old():\n    return 1\n",
            "data.bin": blob(1),
            "binary_mod.bin": blob(2),
            "run.sh": "#!/bin/sh\necho run\n",
            "mode_only.sh": "#!/bin/sh\necho mode\n",
            "exec_to_plain.sh": "#!/bin/sh\necho plain\n",
            "delete_me.txt": "bye\n",
            "old_dir/a.txt": "a\n",
            "old_dir/b.bin": blob(3, 100),
            "rename_me.txt": body,
            "rename_and_edit.txt": body.replace("stays", "remains"),
            "to_symlink.txt": "will become a link\n",
            "crlf.txt": "one\r\ntwo\r\n",
            "no_newline.txt": "no newline at the end",
            "dir with space/ünïcode.txt": "ünï\n",
        },
    )
    os.chmod(repo / "run.sh", 0o755)
    os.chmod(repo / "exec_to_plain.sh", 0o755)
    os.symlink("README.md", repo / "link")
    os.symlink("src", repo / "dir_link")
    commit_all(repo, "modes and links")
    return repo


def change_everything(checkout: Path) -> None:
    (checkout / "new").mkdir()
    (checkout / "new/file.txt").write_text("brand new\n")
    (checkout / "new/blob.bin").write_bytes(blob(10))
    (checkout / "new/tool.sh").write_text("#!/bin/sh\necho tool\n")
    os.chmod(checkout / "new/tool.sh", 0o755)
    (checkout / "empty.txt").write_bytes(b"")
    os.symlink("../README.md", checkout / "new/link")
    (checkout / "src/app.py").write_text("def new():\n    return 2\n")
    (checkout / "delete_me.txt").unlink()
    shutil.rmtree(checkout / "old_dir")
    (checkout / "moved").mkdir()
    (checkout / "rename_me.txt").rename(checkout / "moved/renamed.txt")
    edited = (checkout / "rename_and_edit.txt").read_text().replace("line 3:", "LINE 3:")
    (checkout / "rename_and_edit.txt").unlink()
    (checkout / "moved/edited.txt").write_text(edited)
    os.chmod(checkout / "mode_only.sh", 0o755)
    os.chmod(checkout / "exec_to_plain.sh", 0o644)
    data = bytearray((checkout / "binary_mod.bin").read_bytes())
    data[100:110] = b"\x00" * 10
    (checkout / "binary_mod.bin").write_bytes(bytes(data) + b"\x01\x02")
    (checkout / "link").unlink()
    os.symlink("src/app.py", checkout / "link")
    (checkout / "to_symlink.txt").unlink()
    os.symlink("README.md", checkout / "to_symlink.txt")
    (checkout / "dir_link").unlink()
    (checkout / "dir_link").mkdir()
    (checkout / "dir_link/inside.txt").write_text("symlink became a directory\n")
    (checkout / "crlf.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    (checkout / "no_newline.txt").write_text("no newline at the end, still")
    (checkout / "dir with space/ünïcode.txt").write_text("ünïcödé\n")


# the diff round-trip


def test_diff_applied_to_a_fresh_clone_reproduces_the_tree_exactly(
    source: Path, tmp_path: Path
) -> None:
    checkout = git.clone(str(source), tmp_path / "changed")
    change_everything(checkout)
    patch = git.diff(checkout)
    assert b"GIT binary patch" in patch
    assert b"rename from rename_me.txt" in patch
    assert b"new mode 100755" in patch and b"new mode 100644" in patch
    assert b"deleted file mode" in patch
    assert b"new file mode 120000" in patch

    fresh = git.clone(str(source), tmp_path / "fresh")
    assert index_listing(fresh) != index_listing(checkout)
    git.apply_patch(fresh, patch)

    assert index_listing(fresh) == index_listing(checkout)
    assert tree_snapshot(fresh) == tree_snapshot(checkout)
    snapshot = tree_snapshot(fresh)
    assert snapshot["link"] == ("link", b"src/app.py")
    assert snapshot["to_symlink.txt"] == ("link", b"README.md")
    assert snapshot["new/link"] == ("link", b"../README.md")
    assert snapshot["mode_only.sh"][0] == "exec"
    assert snapshot["exec_to_plain.sh"][0] == "file"
    assert snapshot["new/blob.bin"] == ("file", blob(10))
    assert snapshot["empty.txt"] == ("file", b"")
    assert snapshot["crlf.txt"] == ("file", b"one\r\ntwo\r\nthree\r\n")
    assert "delete_me.txt" not in snapshot and "old_dir/a.txt" not in snapshot
    # the applied change is staged, so the same diff comes out again
    assert git.diff(fresh) == patch


def test_patch_also_applies_with_plain_git_apply(source: Path, tmp_path: Path) -> None:
    checkout = git.clone(str(source), tmp_path / "changed")
    change_everything(checkout)
    patch = git.diff(checkout)
    fresh = git.clone(str(source), tmp_path / "fresh")
    run(fresh, "apply", "--binary", "-", input=patch)
    assert tree_snapshot(fresh) == tree_snapshot(checkout)


def test_changed_files_lists_every_touched_path(source: Path, tmp_path: Path) -> None:
    checkout = git.clone(str(source), tmp_path / "changed")
    change_everything(checkout)
    git.diff(checkout)
    changed = set(git.changed_files(checkout))
    assert {
        "new/file.txt",
        "new/blob.bin",
        "delete_me.txt",
        "moved/renamed.txt",
        "mode_only.sh",
        "binary_mod.bin",
        "link",
        "dir with space/ünïcode.txt",
    } <= changed
    assert "README.md" not in changed


def test_unchanged_checkout_has_an_empty_diff(source: Path, tmp_path: Path) -> None:
    checkout = git.clone(str(source), tmp_path / "same")
    (checkout / "README.md").write_text("# Demo\n")  # rewritten with the same bytes
    assert git.diff(checkout) == b""
    assert git.changed_files(checkout) == []
    git.apply_patch(checkout, b"")  # an empty patch is a no-op


def test_diff_ignores_files_the_repository_ignores(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".gitignore": "build/\n", "a.txt": "a\n"})
    checkout = git.clone(str(repo), tmp_path / "c")
    (checkout / "build").mkdir()
    (checkout / "build/out.o").write_bytes(b"\x00obj")
    assert git.diff(checkout) == b""


def test_apply_of_a_patch_that_does_not_fit_raises(source: Path, tmp_path: Path) -> None:
    checkout = git.clone(str(source), tmp_path / "c")
    (checkout / "README.md").write_text("# Changed\n")
    patch = git.diff(checkout)
    other = make_repo(tmp_path / "other", {"README.md": "something else\n"})
    with pytest.raises(git.GitError, match="git apply failed"):
        git.apply_patch(other, patch)


# clone


def test_clone_is_shallow_and_single_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"}, commits=5)
    run(repo, "branch", "feature")
    run(repo, "tag", "v1")
    checkout = git.clone(str(repo), tmp_path / "c")
    assert run(checkout, "rev-list", "--count", "HEAD").strip() == "1"
    assert run(checkout, "rev-parse", "--is-shallow-repository").strip() == "true"
    refs = set(run(checkout, "for-each-ref", "--format=%(refname)").split())
    assert refs - {"refs/remotes/origin/HEAD"} == {"refs/heads/main", "refs/remotes/origin/main"}
    assert git.current_branch(checkout) == "main"
    assert git.tree_sha(checkout) == git.tree_sha(repo)


def test_clone_of_the_remote_default_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"}, branch="trunk")
    assert git.current_branch(git.clone(str(repo), tmp_path / "c")) == "trunk"


def test_clone_of_a_base_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "src", {"a.txt": "main\n"}, commits=3)
    run(repo, "checkout", "--quiet", "-b", "release/1.0")
    (repo / "a.txt").write_text("release\n")
    commit_all(repo, "release change")
    commit_all(repo, "another")
    run(repo, "checkout", "--quiet", "main")
    checkout = git.clone(str(repo), tmp_path / "c", branch="release/1.0")
    assert (checkout / "a.txt").read_text() == "release\n"
    assert git.current_branch(checkout) == "release/1.0"
    assert run(checkout, "rev-list", "--count", "HEAD").strip() == "1"
    refs = run(checkout, "for-each-ref", "--format=%(refname)", "refs/remotes").split()
    assert refs == ["refs/remotes/origin/release/1.0"]


def test_clone_of_a_missing_branch_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"})
    with pytest.raises(git.GitError, match="nope"):
        git.clone(str(repo), tmp_path / "c", branch="nope")


def test_clone_of_a_bare_remote(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "remote.git", {"a.txt": "1\n"}, commits=3, bare=True)
    checkout = git.clone(f"file://{bare}", tmp_path / "c")
    assert (checkout / "a.txt").read_text() == "1\n"
    assert run(checkout, "rev-list", "--count", "HEAD").strip() == "1"


# hooks never run


def _hook(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0" >> {marker}\n')
    os.chmod(path, 0o755)


HOOKS = ("post-checkout", "pre-commit", "commit-msg", "post-commit", "pre-push", "post-merge")


def test_hooks_in_the_source_repository_do_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"})
    for name in HOOKS:
        _hook(repo / ".git/hooks" / name, marker)
    git.clone(str(repo), tmp_path / "c")
    assert not marker.exists()


def test_hooks_from_the_user_config_do_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "ran"
    hooks = tmp_path / "user-hooks"
    templates = tmp_path / "templates"
    for name in HOOKS:
        _hook(hooks / name, marker)
        _hook(templates / "hooks" / name, marker)
    home = tmp_path / "home"
    home.mkdir()
    config = f"[core]\n\thooksPath = {hooks}\n[init]\n\ttemplateDir = {templates}\n"
    (home / ".gitconfig").write_text(config)
    (home / ".config/git").mkdir(parents=True)
    (home / ".config/git/config").write_text(config)
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_TEMPLATE_DIR"):
        monkeypatch.delenv(name, raising=False)

    # Control: a plain git clone with this HOME does run the user's hook.
    subprocess.run(
        ["git", "clone", "--quiet", str(repo), str(tmp_path / "plain")], check=True, cwd=tmp_path
    )
    assert marker.exists()
    marker.unlink()

    checkout = git.clone(str(repo), tmp_path / "c")
    (checkout / "a.txt").write_text("2\n")
    git.diff(checkout)
    git.commit_all(checkout, "change", "Cody Batch <bot@example.com>")
    bare = make_repo(tmp_path / "remote.git", {"a.txt": "1\n"}, bare=True)
    git.push(checkout, str(bare), "codybatch/change")
    assert not marker.exists()
    assert not any((checkout / ".git/hooks").glob("post-checkout"))


def test_hooks_written_into_the_checkout_do_not_run(tmp_path: Path) -> None:
    """A step can write .git/hooks/*: commit and push must still not run them."""
    marker = tmp_path / "ran"
    repo = make_repo(tmp_path / "src", {"a.txt": "1\n"})
    checkout = git.clone(str(repo), tmp_path / "c")
    for name in HOOKS:
        _hook(checkout / ".git/hooks" / name, marker)
    (checkout / "a.txt").write_text("2\n")
    git.diff(checkout)
    sha = git.commit_all(checkout, "change", "Cody Batch <bot@example.com>")
    # (a remote's own receive hooks are the remote's business: not tested here)
    bare = make_repo(tmp_path / "remote.git", {"a.txt": "1\n"}, bare=True)
    git.push(checkout, str(bare), "codybatch/change")
    assert git.remote_branch_sha(str(bare), "codybatch/change") == sha
    assert not marker.exists()

    # Control: plain git runs the hook the checkout holds.
    (checkout / "a.txt").write_text("3\n")
    subprocess.run(["git", "commit", "-qam", "x"], cwd=checkout, check=True, env=_identity())
    assert marker.exists()


def _identity() -> dict[str, str]:
    return os.environ | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


# commit and push


def test_commit_all_uses_the_author_and_commits_everything(source: Path, tmp_path: Path) -> None:
    checkout = git.clone(str(source), tmp_path / "c")
    change_everything(checkout)
    expected = index_listing(checkout)
    sha = git.commit_all(checkout, "Apply the change", "Cody Batch <bot@example.com>")
    assert run(checkout, "rev-parse", "HEAD").strip() == sha
    assert run(checkout, "log", "-1", "--format=%an <%ae>|%s").strip() == (
        "Cody Batch <bot@example.com>|Apply the change"
    )
    assert run(checkout, "status", "--porcelain") == ""
    assert run(checkout, "ls-files", "-s") == expected


@pytest.mark.parametrize("author", ["nobody", "Name <>", "<a@b.c>"])
def test_commit_all_refuses_a_malformed_author(tmp_path: Path, author: str) -> None:
    checkout = git.clone(str(make_repo(tmp_path / "s", {"a": "1"})), tmp_path / "c")
    (checkout / "a").write_text("2")
    with pytest.raises(git.GitError, match="Name <email>"):
        git.commit_all(checkout, "m", author)


def test_push_and_remote_branch_sha(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "remote.git", {"a.txt": "1\n"}, bare=True)
    checkout = git.clone(str(bare), tmp_path / "c")
    assert git.remote_branch_sha(str(bare), "codybatch/x") is None
    (checkout / "a.txt").write_text("2\n")
    first = git.commit_all(checkout, "one", "Bot <bot@example.com>")
    git.push(checkout, str(bare), "codybatch/x")
    assert git.remote_branch_sha(str(bare), "codybatch/x") == first
    # a re-run rewrites the branch (force) with a new commit on the base
    run(checkout, "reset", "--quiet", "--hard", "HEAD~1")
    (checkout / "a.txt").write_text("3\n")
    second = git.commit_all(checkout, "two", "Bot <bot@example.com>")
    with pytest.raises(git.GitError, match=r"rejected|non-fast-forward"):
        git.push(checkout, str(bare), "codybatch/x", force=False)
    git.push(checkout, str(bare), "codybatch/x")
    assert git.remote_branch_sha(str(bare), "codybatch/x") == second


# the token is never written to disk nor shown


def _files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def test_token_never_reaches_the_clone_or_the_remote(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "remote.git", {"a.txt": "1\n"}, bare=True)
    checkout = git.clone(f"file://{bare}", tmp_path / "c", token=TOKEN)
    config = (checkout / ".git/config").read_text()
    assert TOKEN not in config and TOKEN_B64 not in config
    assert "extraheader" not in config.lower()
    assert f"url = file://{bare}" in config
    (checkout / "a.txt").write_text("2\n")
    git.commit_all(checkout, "m", "Bot <bot@example.com>")
    git.push(checkout, f"file://{bare}", "codybatch/t", token=TOKEN)
    assert git.remote_branch_sha(str(bare), "codybatch/t", token=TOKEN)
    needles = [TOKEN.encode(), TOKEN_B64.encode()]
    assert _files_containing(checkout / ".git", needles) == []
    assert _files_containing(bare, needles) == []


def test_errors_never_show_the_token(tmp_path: Path) -> None:
    missing = tmp_path / f"no-such-{TOKEN}"
    with pytest.raises(git.GitError) as info:
        git.clone(str(missing), tmp_path / "c", token=TOKEN)
    assert TOKEN not in str(info.value)
    assert "[REDACTED]" in str(info.value)

    url = f"https://x-access-token:{TOKEN}@127.0.0.1:9/acme/widget.git"
    with pytest.raises(git.GitError) as info:
        git.clone(url, tmp_path / "c2")
    assert TOKEN not in str(info.value)

    checkout = git.clone(str(make_repo(tmp_path / "s", {"a": "1"})), tmp_path / "c3")
    with pytest.raises(git.GitError) as info:
        git.push(checkout, str(missing), "b", token=TOKEN)
    assert TOKEN not in str(info.value) and "git push failed" in str(info.value)
    assert not (tmp_path / "c").exists() or TOKEN not in (tmp_path / "c/.git/config").read_text()


class _AuthRecorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _AuthRecorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AuthRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_token_is_sent_as_an_http_header_only(http_server: str, tmp_path: Path) -> None:
    with pytest.raises(git.GitError) as info:
        git.clone(f"{http_server}/acme/widget.git", tmp_path / "c", token=TOKEN)
    assert _AuthRecorder.seen and set(_AuthRecorder.seen) == {f"Basic {TOKEN_B64}"}
    assert TOKEN not in str(info.value) and TOKEN_B64 not in str(info.value)


def test_no_token_no_header(http_server: str, tmp_path: Path) -> None:
    with pytest.raises(git.GitError):
        git.clone(f"{http_server}/acme/widget.git", tmp_path / "c")
    assert _AuthRecorder.seen and set(_AuthRecorder.seen) == {None}
