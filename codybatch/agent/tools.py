"""The model's tools: Anthropic's text editor, a search over the checkout, run_command
(see commands.py) and finish.

Every file access is confined to the checkout: the resolved path (symlinks followed)
must stay inside it and never enter `.git`. Only regular files are read or written;
writes go to a new file renamed over the target, so no existing inode (a hard link to
a file elsewhere, say) is ever modified. Refusals and mistakes come back as tool errors
the model can read; nothing here raises into the loop.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from codybatch.agent.commands import SHELL, ShellPolicy, run_shell
from codybatch.settings import Settings
from codybatch.shell import clean_environment, truncate

if TYPE_CHECKING:
    from codybatch.agent.context import Instructions

ROOT = "/repo"  # where the model sees the repository; the same for every repository
EDITOR = "str_replace_based_edit_tool"
SEARCH = "search"
FINISH = "finish"

MAX_FILE_BYTES = 2_000_000
MAX_CREATE_CHARS = 1_000_000
MAX_CREATED_FILES = 2_000  # per Workspace, i.e. per agent run
# Per run, bytes the edits may add to the checkout: each write is charged the growth of its
# file and nothing is refunded, so rewriting a large file many times stays possible.
MAX_ADDED_BYTES = 50_000_000
OUTPUT_LIMIT = 16_000  # characters of one tool result; the rest is elided mid-way
MAX_SEARCH_HITS = 100
MAX_HIT_CHARS = 300
MAX_DIRECTORY_ENTRIES = 300
SEARCH_TIMEOUT = 30.0
SNIPPET_CONTEXT = 4

GIT = ("git", "-c", "core.hooksPath=/dev/null", "-c", "core.quotePath=false")

EDITOR_TOOL: dict[str, Any] = {
    "type": "text_editor_20250728",
    "name": EDITOR,
    "max_characters": OUTPUT_LIMIT,
}
SEARCH_TOOL: dict[str, Any] = {
    "name": SEARCH,
    "description": (
        "Search the repository's files (those not ignored by .gitignore) for a regular "
        "expression (Perl syntax). Returns one `path:line: text` hit per matching line, "
        f"at most {MAX_SEARCH_HITS}; narrow with `path` or `glob` when there are more. "
        "Use it to find definitions, call sites and every place a change must reach."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "pattern": {
                "type": "string",
                "description": "Regular expression, e.g. `def load_config\\b` or `TODO|FIXME`.",
            },
            "path": {
                "type": "string",
                "description": "Directory or file to search in, e.g. `/repo/src`. Default: all.",
            },
            "glob": {
                "type": "string",
                "description": "Only files whose path matches this glob, e.g. `*.py`.",
            },
            "ignore_case": {"type": "boolean", "description": "Match case-insensitively."},
        },
        "required": ["pattern"],
    },
}
FINISH_TOOL: dict[str, Any] = {
    "name": FINISH,
    "description": (
        "Call exactly once, when the task is complete (or when you have established that "
        "the repository needs no change). Your edits on disk are the result; this records "
        "whether changes were necessary, a summary for the pull request body, and its title."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "changes_necessary": {
                "type": "boolean",
                "description": "true if you changed files to complete the task; false if the "
                "repository already satisfies it and you changed nothing.",
            },
            "summary": {
                "type": "string",
                "description": "What you changed and why (or why nothing needed to change), "
                "in a few sentences or a short list, for reviewers.",
            },
            "pr_title": {
                "type": "string",
                "description": "A one-line pull request title (imperative mood, under 72 "
                "characters). Required when changes_necessary is true.",
            },
        },
        "required": ["changes_necessary", "summary"],
    },
}


class ToolError(Exception):
    """A refusal or a mistake, reported to the model as a tool error."""


@dataclass
class ToolResult:
    text: str
    is_error: bool = False
    edited: bool = False


@dataclass(frozen=True)
class Finish:
    changes_necessary: bool
    summary: str
    pr_title: str | None


def list_files(root: Path) -> list[str]:
    """Files of the checkout not ignored by .gitignore, as sorted relative POSIX paths."""
    try:
        proc = subprocess.run(
            [*GIT, "ls-files", "-z", "-c", "-o", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=60,
            env=clean_environment(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    if proc is None or proc.returncode != 0:
        return _walk(root)
    names = {n for n in proc.stdout.decode("utf-8", "replace").split("\0") if n}
    # The index lists files deleted from the work tree too: show what is on disk.
    return sorted(n for n in names if os.path.lexists(root / n))


def _walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(dirpath).relative_to(root)
        found.extend((base / f).as_posix() for f in filenames)
    return sorted(found)


def _is_git(root: Path) -> bool:
    return (root / ".git").exists()


class Workspace:
    """The checkout as the tools see it (with the job's shell, when it has one)."""

    def __init__(
        self,
        checkout: Path,
        shell: ShellPolicy | None = None,
        settings: Settings | None = None,
        instructions: Instructions | None = None,
    ):
        self.root = Path(checkout).resolve()
        self.files_created = 0
        self.bytes_added = 0
        self.shell, self.settings, self.instructions = shell, settings, instructions

    # -- dispatch ---------------------------------------------------------

    def run(self, name: str, tool_input: Any) -> ToolResult:
        """Run one tool call; every failure becomes an error result."""
        try:
            if not isinstance(tool_input, dict):
                raise ToolError(f"the input of {name} must be a JSON object of parameters")
            if name == EDITOR:
                return self.with_instructions(self.edit(tool_input), tool_input)
            if name == SEARCH:
                return ToolResult(self.search(tool_input))
            if name == SHELL and self.shell is not None and self.settings is not None:
                text, is_error = run_shell(tool_input, self.root, self.shell, self.settings)
                # A command may change files: counted as an edit, like the editor's.
                return ToolResult(text, is_error=is_error, edited=not is_error)
            tools = ", ".join([EDITOR, SEARCH, *([SHELL] if self.shell else []), FINISH])
            raise ToolError(f"there is no tool named {name!r}: use {tools}")
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        except Exception as exc:  # a tool failure is the model's to read, never the loop's
            return ToolResult(f"Error: {type(exc).__name__}: {exc}", is_error=True)

    def with_instructions(self, result: ToolResult, tool_input: dict[str, Any]) -> ToolResult:
        """The result, followed by the nearest instruction file above the path the first time
        Claude works under a directory that has its own (AGENTS.md or CLAUDE.md)."""
        if self.instructions is None or result.is_error:
            return result
        try:
            path, _ = self.resolve(tool_input.get("path"))
        except ToolError:
            return result
        extra = self.instructions.nearest(path)
        if extra:
            result.text = f"{result.text}\n\n{extra}"
        return result

    def edit(self, tool_input: dict[str, Any]) -> ToolResult:
        command = tool_input.get("command")
        if command == "view":
            return ToolResult(self.view(tool_input))
        if command == "create":
            return ToolResult(self.create(tool_input), edited=True)
        if command == "str_replace":
            return ToolResult(self.str_replace(tool_input), edited=True)
        if command == "insert":
            return ToolResult(self.insert(tool_input), edited=True)
        if command == "undo_edit":
            raise ToolError("undo_edit is not available: use str_replace to put the text back")
        raise ToolError(
            f"unknown command {command!r}: use one of view, create, str_replace, insert"
        )

    # -- paths ------------------------------------------------------------

    def resolve(self, raw: Any) -> tuple[Path, str]:
        """The real path inside the checkout and the name shown to the model; refuse escapes."""
        if not isinstance(raw, str) or not raw.strip():
            raise ToolError(f"`path` is required: a path under {ROOT}, e.g. {ROOT}/src/app.py")
        text = raw.strip()
        if "\0" in text:
            raise ToolError("the path contains a NUL character")
        if text == ROOT or text.startswith(ROOT + "/"):
            relative = text[len(ROOT) :].lstrip("/")
        elif text.startswith(("/", "~", "\\")):
            raise ToolError(
                f"{text} is outside the repository: paths must be under {ROOT} "
                f"(e.g. {ROOT}/src/app.py) or relative to it"
            )
        else:
            relative = text
        if _touches_git(PurePosixPath(relative).parts):
            raise ToolError(f"{text}: the .git directory is off limits")
        try:
            resolved = (self.root / relative).resolve()
        except (OSError, RuntimeError) as exc:
            raise ToolError(f"{text} cannot be resolved: {exc}") from None
        try:
            inside = resolved.relative_to(self.root)
        except ValueError:
            raise ToolError(
                f"{text} resolves outside the repository (through '..' or a symbolic link): refused"
            ) from None
        if _touches_git(inside.parts):
            raise ToolError(f"{text} leads into the .git directory, which is off limits")
        shown = ROOT if not inside.parts else f"{ROOT}/{inside.as_posix()}"
        return resolved, shown

    def _read_text(self, path: Path, shown: str) -> str:
        data = _read_regular(path, shown)
        size = len(data)
        if b"\0" in data[:8192]:
            raise ToolError(f"{shown} is a binary file ({size:,} bytes): it cannot be viewed")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{shown} is not UTF-8 text ({size:,} bytes): refused") from None

    def _editable(self, path: Path, shown: str) -> os.stat_result | None:
        """The target's lstat, or None if it does not exist; refuse what must not be edited."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ToolError(f"{shown} cannot be examined: {exc.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown} is {_kind(info.st_mode)}, not a regular file: refused")
        if info.st_nlink > 1:
            raise ToolError(
                f"{shown} is hard-linked; refusing to edit it (it shares its contents "
                f"with {info.st_nlink - 1} other name(s), possibly outside the repository)"
            )
        return info

    def _write_text(self, path: Path, shown: str, text: str) -> bool:
        """Replace (or create) the file with text; True if it was created."""
        data = text.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise ToolError(
                f"{shown} would be {len(data):,} bytes, over the {MAX_FILE_BYTES:,}-byte "
                "limit for one file: nothing was written"
            )
        before = self._editable(path, shown)
        if before is None and self.files_created >= MAX_CREATED_FILES:
            raise ToolError(
                f"{shown} was not created: this run has already created "
                f"{self.files_created:,} files, the limit is {MAX_CREATED_FILES:,}"
            )
        growth = max(len(data) - (before.st_size if before else 0), 0)
        if self.bytes_added + growth > MAX_ADDED_BYTES:
            raise ToolError(
                f"{shown} was not written: it would add {growth:,} bytes to the "
                f"{self.bytes_added:,} bytes this run's edits have added to the repository; "
                f"the limit is {MAX_ADDED_BYTES:,} bytes"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            mode = stat.S_IMODE(before.st_mode) & 0o777 if before else None
            _replace(directory, path.name, data, mode)
        finally:
            os.close(directory)
        self.bytes_added += growth
        if before is None:
            self.files_created += 1
        return before is None

    # -- editor commands --------------------------------------------------

    def view(self, tool_input: dict[str, Any]) -> str:
        path, shown = self.resolve(tool_input.get("path"))
        if path.is_dir():
            if tool_input.get("view_range") is not None:
                raise ToolError("view_range applies to files, not directories")
            return self._view_directory(path, shown)
        content = self._read_text(path, shown)
        lines = content.splitlines()
        start, end = 1, len(lines)
        view_range = tool_input.get("view_range")
        if view_range is not None:
            if (
                not isinstance(view_range, list)
                or len(view_range) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)
            ):
                raise ToolError("view_range must be two line numbers [start, end] (end -1: to EOF)")
            start, end = view_range
            if end == -1:
                end = len(lines)
            if not 1 <= start <= max(len(lines), 1) or end < start:
                raise ToolError(
                    f"view_range {view_range} is invalid: {shown} has {len(lines)} lines; "
                    "give 1 <= start <= end, or end -1 for the end of the file"
                )
            end = min(end, len(lines))
        if not lines:
            return f"{shown} is empty"
        body = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))
        head = f"{shown}, lines {start}-{end} of {len(lines)}:\n"
        if len(body) > OUTPUT_LIMIT:
            body = truncate(body, OUTPUT_LIMIT) + "\n[use view_range to see the elided lines]"
        return head + body

    def _view_directory(self, path: Path, shown: str) -> str:
        base = path.relative_to(self.root)
        prefix = "" if not base.parts else base.as_posix() + "/"
        entries: dict[str, int] = {}
        for name in list_files(self.root):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            if len(parts) <= 2:
                entries["/".join(parts)] = 0
            else:
                key = "/".join(parts[:2]) + "/"
                entries[key] = entries.get(key, 0) + 1
        if not entries:
            return f"{shown} has no files (ignored files are not shown)"
        lines = [f"{k} ({n} files)" if n else k for k, n in sorted(entries.items())]
        note = ""
        if len(lines) > MAX_DIRECTORY_ENTRIES:
            note = f"\n[{len(lines) - MAX_DIRECTORY_ENTRIES:,} more entries: view a subdirectory]"
            lines = lines[:MAX_DIRECTORY_ENTRIES]
        return f"Files in {shown}, two levels deep:\n" + "\n".join(lines) + note

    def create(self, tool_input: dict[str, Any]) -> str:
        path, shown = self.resolve(tool_input.get("path"))
        text = tool_input.get("file_text")
        if not isinstance(text, str):
            raise ToolError("create needs `file_text`: the whole content of the file")
        if len(text) > MAX_CREATE_CHARS:
            raise ToolError(f"file_text is {len(text):,} characters: at most {MAX_CREATE_CHARS:,}")
        verb = "Created" if self._write_text(path, shown, text) else "Overwrote"
        return f"{verb} {shown} ({len(text.splitlines())} lines)"

    def str_replace(self, tool_input: dict[str, Any]) -> str:
        path, shown = self.resolve(tool_input.get("path"))
        old = tool_input.get("old_str")
        new = tool_input.get("new_str", "")
        if not isinstance(old, str) or old == "":
            raise ToolError("str_replace needs `old_str`: the exact, non-empty text to replace")
        if new is None:
            new = ""
        if not isinstance(new, str):
            raise ToolError("`new_str` must be a string")
        self._editable(path, shown)  # refuse a hard link before its contents shape the reply
        content = self._read_text(path, shown)
        positions = _find_all(content, old)
        if not positions and "\r\n" in content and "\n" in old and "\r\n" not in old:
            # The model writes \n; the file uses CRLF.
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            positions = _find_all(content, old)
        if not positions:
            raise ToolError(_no_match(content, old, shown))
        if len(positions) > 1:
            lines = ", ".join(str(content.count("\n", 0, p) + 1) for p in positions[:20])
            more = "" if len(positions) <= 20 else ", ..."
            raise ToolError(
                f"No replacement was performed: old_str appears {len(positions)} times in "
                f"{shown}, at lines {lines}{more}. Include more surrounding lines so that "
                "it matches exactly once."
            )
        at = positions[0]
        updated = content[:at] + new + content[at + len(old) :]
        self._write_text(path, shown, updated)
        first = content.count("\n", 0, at) + 1
        last = first + new.count("\n")
        return f"Edited {shown}. The lines around the change now read:\n" + _snippet(
            updated, first, last
        )

    def insert(self, tool_input: dict[str, Any]) -> str:
        path, shown = self.resolve(tool_input.get("path"))
        line = tool_input.get("insert_line")
        text = tool_input.get("insert_text", tool_input.get("new_str"))
        if not isinstance(line, int) or isinstance(line, bool):
            raise ToolError("insert needs `insert_line`: the line number to insert after (0: top)")
        if not isinstance(text, str):
            raise ToolError("insert needs `insert_text`: the text to insert")
        self._editable(path, shown)
        content = self._read_text(path, shown)
        lines = content.splitlines(keepends=True)
        if not 0 <= line <= len(lines):
            raise ToolError(
                f"insert_line {line} is out of range: {shown} has {len(lines)} lines "
                "(0 inserts at the top)"
            )
        newline = "\r\n" if "\r\n" in content else "\n"
        if text and not text.endswith(("\n", "\r")):
            text += newline
        if line == len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        updated = "".join(lines[:line]) + text + "".join(lines[line:])
        self._write_text(path, shown, updated)
        added = len(text.splitlines())
        return f"Inserted {added} lines after line {line} of {shown}:\n" + _snippet(
            updated, line + 1, line + max(added, 1)
        )

    # -- search -----------------------------------------------------------

    def search(self, tool_input: dict[str, Any]) -> str:
        pattern = tool_input.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("search needs `pattern`: a regular expression")
        if len(pattern) > 1000:
            raise ToolError("the pattern is longer than 1,000 characters")
        where = tool_input.get("path") or ROOT
        path, shown = self.resolve(where)
        if not path.exists():
            raise ToolError(f"{shown} does not exist")
        glob = tool_input.get("glob")
        if glob is not None and (not isinstance(glob, str) or "\0" in glob):
            raise ToolError("glob must be a string such as `*.py`")
        ignore_case = tool_input.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise ToolError("ignore_case must be true or false")
        relative = path.relative_to(self.root).as_posix()
        hits, complete, problem = self.grep(pattern, relative, glob or None, ignore_case)
        if problem and not hits:
            raise ToolError(problem)
        note = f"[{problem}]" if problem else ""
        scope = shown + (f" (files matching {glob})" if glob else "")
        if not hits:
            return f"No matches for /{pattern}/ in {scope}."
        head = f"{len(hits)} hits for /{pattern}/ in {scope}"
        if not complete:
            head = (
                f"First {len(hits)} hits for /{pattern}/ in {scope}; more exist: "
                "narrow with path or glob"
            )
        text = head + ":\n" + "\n".join(hits) + (f"\n{note}" if note else "")
        return truncate(text, OUTPUT_LIMIT)

    def grep(
        self,
        pattern: str,
        relative: str = ".",
        glob: str | None = None,
        ignore_case: bool = False,
        *,
        fixed: bool = False,
        max_hits: int = MAX_SEARCH_HITS,
    ) -> tuple[list[str], bool, str]:
        """Hits as `path:line: text`, whether they are all of them, and a problem (or "")."""
        if not _is_git(self.root):
            return self._grep_python(pattern, relative, glob, ignore_case, fixed, max_hits)
        spec = "." if relative in ("", ".") else relative
        if glob:
            base = "" if spec == "." else spec.rstrip("/") + "/"
            spec = f":(glob){base}**/{glob.lstrip('/')}" if "/" not in glob else f":(glob){glob}"
        args = [*GIT, "grep", "-n", "-I", "--untracked", "--no-color"]
        args += ["-i"] if ignore_case else []
        args += ["-F", "-w"] if fixed else ["-P"]
        args += ["-e", pattern, "--", spec]
        return _stream_hits(args, self.root, max_hits)

    def _grep_python(
        self,
        pattern: str,
        relative: str,
        glob: str | None,
        ignore_case: bool,
        fixed: bool,
        max_hits: int,
    ) -> tuple[list[str], bool, str]:
        flags = re.IGNORECASE if ignore_case else 0
        try:
            regex = re.compile(rf"\b{re.escape(pattern)}\b" if fixed else pattern, flags)
        except re.error as exc:
            return [], True, f"invalid regular expression: {exc}"
        prefix = "" if relative in ("", ".") else relative.rstrip("/")
        hits: list[str] = []
        for name in list_files(self.root):
            if prefix and name != prefix and not name.startswith(prefix + "/"):
                continue
            if glob and not PurePosixPath(name).match(glob):
                continue
            target = self.root / name
            if target.is_symlink():
                continue
            try:
                data = _read_regular(target, name)
            except ToolError:  # not a regular file, too large or unreadable
                continue
            if b"\0" in data[:8192]:
                continue
            for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if regex.search(line):
                    if len(hits) == max_hits:
                        return hits, False, ""
                    hits.append(_hit(name, number, line))
        return hits, True, ""


def _stream_hits(args: list[str], cwd: Path, max_hits: int) -> tuple[list[str], bool, str]:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environment(),
    )
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        proc.kill()

    timer = threading.Timer(SEARCH_TIMEOUT, stop)
    timer.start()
    hits: list[str] = []
    complete = True
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if len(hits) == max_hits:
                complete = False
                break
            name, _, rest = raw.decode("utf-8", "replace").rstrip("\n").partition(":")
            number, _, text = rest.partition(":")
            hits.append(_hit(name, int(number) if number.isdigit() else 0, text))
    finally:
        timer.cancel()
        if not complete:
            proc.kill()
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        proc.wait()
    if fired.is_set():
        return hits, False, f"search stopped after {SEARCH_TIMEOUT:g} s: narrow the pattern"
    if complete and proc.returncode not in (0, 1):
        message = stderr.strip().splitlines()[-1] if stderr.strip() else "search failed"
        return hits, True, message.removeprefix("fatal: ")
    return hits, complete, ""


def _read_regular(path: Path, shown: str) -> bytes:
    """The bytes of a regular file under the size cap; never opens a FIFO or a device."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ToolError(f"{shown} does not exist") from None
    except OSError as exc:
        raise ToolError(f"{shown} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f"{shown} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{shown} is {_kind(info.st_mode)}, not a regular file: refused")
    try:
        # O_NONBLOCK: should a FIFO replace the file after the stat, open still returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        raise ToolError(f"{shown} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown} is {_kind(info.st_mode)}, not a regular file: refused")
        if info.st_size > MAX_FILE_BYTES:
            raise ToolError(
                f"{shown} is {info.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit: "
                "use search to find the lines you need"
            )
        return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]


def _replace(directory: int, name: str, data: bytes, mode: int | None) -> None:
    """Write data to a new file in directory and rename it over name (mode None: new file)."""
    temporary = f".codybatch-{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temporary, flags, 0o644 if mode is None else 0o600, dir_fd=directory)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a special file"


def _hit(name: str, number: int, text: str) -> str:
    text = text.rstrip("\r")
    if len(text) > MAX_HIT_CHARS:
        text = text[:MAX_HIT_CHARS] + " [...]"
    return f"{name}:{number}: {text}"


def _touches_git(parts: tuple[str, ...]) -> bool:
    return any(part.lower() == ".git" for part in parts)


def _find_all(content: str, needle: str) -> list[int]:
    positions, start = [], 0
    while (at := content.find(needle, start)) != -1:
        positions.append(at)
        start = at + len(needle)
    return positions


def _no_match(content: str, old: str, shown: str) -> str:
    message = f"No replacement was performed: old_str did not appear verbatim in {shown}."
    wanted = [line.strip() for line in old.strip("\n").splitlines()]
    lines = [line.strip() for line in content.splitlines()]
    near = [
        i + 1
        for i in range(len(lines) - len(wanted) + 1)
        if wanted and lines[i : i + len(wanted)] == wanted
    ]
    if near:
        where = ", ".join(map(str, near[:10]))
        message += (
            f" Text differing only in indentation or trailing spaces starts at line(s) {where}."
        )
    elif wanted and wanted[0]:
        first = [i + 1 for i, line in enumerate(lines) if wanted[0] in line]
        if first:
            message += f" Its first line occurs at line(s) {', '.join(map(str, first[:10]))}."
    return message + " View the file and copy the exact text, including whitespace."


def _snippet(content: str, first: int, last: int) -> str:
    lines = content.splitlines()
    start = max(first - SNIPPET_CONTEXT, 1)
    end = min(last + SNIPPET_CONTEXT, len(lines))
    body = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))
    return truncate(body, OUTPUT_LIMIT // 2)


def parse_finish(tool_input: Any) -> Finish:
    """Validate finish's input; ToolError says what to fix."""
    if not isinstance(tool_input, dict):
        raise ToolError("the input of finish must be a JSON object")
    changes = tool_input.get("changes_necessary")
    if not isinstance(changes, bool):
        raise ToolError("finish needs `changes_necessary`: true or false")
    summary = tool_input.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise ToolError("finish needs `summary`: what you changed and why")
    title = tool_input.get("pr_title")
    if title is not None and not isinstance(title, str):
        raise ToolError("`pr_title` must be a string")
    title = " ".join((title or "").split())[:200] or None
    if changes and not title:
        raise ToolError("finish needs `pr_title` when changes_necessary is true")
    return Finish(changes, truncate(summary.strip(), 20_000), title)
