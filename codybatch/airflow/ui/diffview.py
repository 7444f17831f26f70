"""A git patch split per file, with syntax-highlighted lines, ready for a template.

Highlighted HTML comes from Pygments, which escapes the source; everything else is
plain text that the templates escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from markupsafe import Markup, escape

MAX_HIGHLIGHT_LINES = 5_000  # per file: beyond this, plain text (fast and still readable)
MAX_LINES = 20_000  # per file shown; the .patch download holds everything

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f"}


@dataclass
class Line:
    kind: str  # "add", "del", "ctx", "hunk", "note"
    text: str
    old: int | None = None
    new: int | None = None
    html: Markup | None = None

    @property
    def sign(self) -> str:
        return {"add": "+", "del": "-", "ctx": " "}.get(self.kind, "")


@dataclass
class FileDiff:
    old_path: str | None
    new_path: str | None
    status: str = "modified"  # added, deleted, renamed, modified, mode
    binary: bool = False
    meta: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    additions: int = 0
    deletions: int = 0
    truncated: bool = False

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "?"

    @property
    def title(self) -> str:
        if self.status == "renamed" and self.old_path != self.new_path:
            return f"{self.old_path} → {self.new_path}"
        return self.path


def _unquote(name: str) -> str:
    """A path as git prints it: C-quoted when unusual characters are in it."""
    if not (len(name) >= 2 and name.startswith('"') and name.endswith('"')):
        return name
    body, out = name[1:-1], bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.extend(_ESCAPES.get(nxt, nxt).encode())
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    return out.decode("utf-8", "replace")


def _strip_prefix(name: str) -> str | None:
    name = _unquote(name.strip())
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def _paths_from_header(rest: str) -> tuple[str | None, str | None]:
    quoted = re.match(r'^("(?:[^"\\]|\\.)*"|\S+) ("(?:[^"\\]|\\.)*"|\S+)$', rest)
    if quoted and (rest.startswith('"') or rest.count(" ") == 1):
        return _strip_prefix(quoted.group(1)), _strip_prefix(quoted.group(2))
    # Unquoted names with spaces: "a/X b/X" where both halves are the same path.
    half = (len(rest) - 1) // 2
    if rest[half] == " " and rest[2:half] == rest[half + 3 :]:
        return rest[2:half], rest[half + 3 :]
    parts = rest.split(" b/", 1)
    return _strip_prefix(parts[0]), (parts[1] if len(parts) > 1 else None)


def parse_patch(patch: bytes | str) -> list[FileDiff]:
    """Split a `git diff` into files with numbered lines (no highlighting)."""
    text = patch.decode("utf-8", "replace") if isinstance(patch, bytes) else patch
    files: list[FileDiff] = []
    current: FileDiff | None = None
    old_no = new_no = 0
    in_binary = False
    for raw in text.split("\n"):
        line = raw.rstrip("\r") if raw.endswith("\r") else raw
        if line.startswith("diff --git "):
            old, new = _paths_from_header(line[len("diff --git ") :])
            current = FileDiff(old, new)
            files.append(current)
            in_binary = False
            continue
        if current is None:
            continue
        if in_binary:
            continue
        if line.startswith("@@"):
            match = _HUNK.match(line)
            if match:
                old_no, new_no = int(match.group(1)), int(match.group(3))
            current.lines.append(Line("hunk", line))
            continue
        in_hunk = bool(current.lines)
        if in_hunk and line.startswith("+"):
            current.additions += 1
            current.lines.append(Line("add", line[1:], new=new_no))
            new_no += 1
        elif in_hunk and line.startswith("-"):
            current.deletions += 1
            current.lines.append(Line("del", line[1:], old=old_no))
            old_no += 1
        elif in_hunk and line.startswith(" "):
            current.lines.append(Line("ctx", line[1:], old=old_no, new=new_no))
            old_no += 1
            new_no += 1
        elif in_hunk and line.startswith("\\"):
            current.lines.append(Line("note", line))
        elif line.startswith("--- "):
            current.old_path = _strip_prefix(line[4:])
        elif line.startswith("+++ "):
            current.new_path = _strip_prefix(line[4:])
        elif line.startswith("new file mode"):
            current.status = "added"
            current.old_path = None
            current.meta.append(line)
        elif line.startswith("deleted file mode"):
            current.status = "deleted"
            current.new_path = None
            current.meta.append(line)
        elif line.startswith("rename from "):
            current.status = "renamed"
            current.old_path = _unquote(line[len("rename from ") :])
        elif line.startswith("rename to "):
            current.status = "renamed"
            current.new_path = _unquote(line[len("rename to ") :])
            current.meta.append(f"renamed from {current.old_path}")
        elif line.startswith(("old mode", "new mode", "similarity index")):
            current.meta.append(line)
        elif line.startswith("GIT binary patch") or (
            line.startswith("Binary files ") and line.endswith(" differ")
        ):
            current.binary = True
            current.meta.append("binary file changed (download the .patch to see it)")
            in_binary = line.startswith("GIT binary patch")
    for f in files:
        if f.status == "modified" and not f.lines and any("mode" in m for m in f.meta):
            f.status = "mode"
        if len(f.lines) > MAX_LINES:
            f.lines = f.lines[:MAX_LINES]
            f.truncated = True
    return files


@lru_cache(maxsize=256)
def _lexer_for(path: str):
    from pygments.lexers import get_lexer_for_filename
    from pygments.lexers.special import TextLexer
    from pygments.util import ClassNotFound

    try:
        return get_lexer_for_filename(path, stripnl=False, stripall=False, ensurenl=False)
    except (ClassNotFound, ValueError):
        return TextLexer(stripnl=False, ensurenl=False)


def _highlight(lines: list[Line], path: str) -> list[Markup] | None:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    source = "\n".join(line.text for line in lines)
    html = highlight(source, _lexer_for(path), HtmlFormatter(nowrap=True, classprefix="hl-"))
    out = html.split("\n")
    if out and out[-1] == "" and len(out) == len(lines) + 1:
        out.pop()
    if len(out) != len(lines):
        return None  # the lexer changed the line structure: keep plain (escaped) text
    return [Markup(part) for part in out]  # Pygments escaped the source


def _highlight_hunk(lines: list[Line], path: str) -> None:
    # Each side is a contiguous piece of a real file, so the lexer sees valid code.
    for side in ("del", "add"):
        chosen = [line for line in lines if line.kind in ("ctx", side)]
        parts = _highlight(chosen, path)
        if parts is None:
            continue
        for line, part in zip(chosen, parts, strict=True):
            if line.kind == side or side == "add":
                line.html = part


def highlight_file(diff: FileDiff) -> FileDiff:
    """Highlight each hunk of a file: old and new sides lexed separately."""
    if diff.binary or len(diff.lines) > MAX_HIGHLIGHT_LINES:
        return diff
    block: list[Line] = []
    for line in [*diff.lines, Line("hunk", "")]:
        if line.kind in ("add", "del", "ctx"):
            block.append(line)
        elif line.kind == "hunk" and block:
            _highlight_hunk(block, diff.path)
            block = []
    return diff


def render_patch(patch: bytes | str) -> list[FileDiff]:
    """Parse and highlight a patch for the diff page."""
    return [highlight_file(f) for f in parse_patch(patch)]


def line_html(line: Line) -> Markup:
    """The line's highlighted HTML, or its escaped text."""
    return line.html if line.html is not None else escape(line.text)


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """Pygments' colours for the `hl-` classes."""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default", classprefix="hl-").get_style_defs(".code")
