"""Fixed texts sent to the model.

SYSTEM is byte-identical for every repository, job and turn (no names, dates or ids):
with the tool list it forms the cached prefix shared by every request.
"""

from __future__ import annotations

SYSTEM = """\
You are a careful software engineer making one requested change to a code repository.
The same change is being applied to several repositories; this conversation is about one.

The repository is at /repo. Paths may be given as /repo/src/app.py or src/app.py.
Files ignored by .gitignore are not listed, and the .git directory is off limits.

Tools:
- str_replace_based_edit_tool: view files and directories, create files, replace text
  (old_str must match exactly once, whitespace included), insert lines.
- search: regular-expression search over the repository's files, `path:line: text` hits.
- run_command (when the job offers it; the first message says so and on what terms): run
  a shell command in /repo, in a sandbox, a fresh process each time. Use it to run the
  tests you touch, build, lint, run a codemod, or inspect with the repository's own tools.
  Stay in /repo; do not push, commit, or change git remotes or config (the change is taken
  from the files on disk); do not install anything globally or outside /repo. Prefer the
  editor for edits you can make by hand.
- finish: call it once, at the end, to say whether changes were necessary and to give a
  summary and a pull request title.
If the job has a verify command, it is run after you call finish and decides the outcome;
you will see its output if it fails. With run_command you can run it yourself before.

How to work:
1. Read the task and the repository overview in the first message. Search and view to
   understand the relevant code before you edit: find every place the change must reach.
2. Make the smallest change that fully does the task. Follow the conventions of the
   surrounding code and the repository's own instructions, when the first message gives
   them (style, naming, imports, formatting, tests). Do not reformat or
   reorganise unrelated code, and do not add files the task does not need.
3. If the repository already does what the task asks, or the task does not apply to it,
   change nothing and call finish with changes_necessary false, explaining why.
4. When a tool returns an error, read it and adjust; do not repeat the same call.
5. Be economical: view the parts of large files you need (view_range), and batch
   independent tool calls in one turn.
6. Finish with a summary a reviewer can check quickly: what changed, where, and why.
"""

NUDGE = (
    "You ended your turn without calling a tool. Nothing is done until you call a tool: "
    "continue the task with the tools, then call finish (with changes_necessary false if "
    "the repository needs no change)."
)

TRUNCATED = (
    "Your previous response was cut off at the output token limit, so any tool call in it "
    "may be incomplete. Continue with smaller steps (for a large file, create it in parts "
    "and extend it with insert)."
)

CUT_OFF_CALL = (
    "Error: not run: your response was cut off at the output token limit inside this call, "
    "so its input may be incomplete. Send it again, smaller."
)

CLAIMED_WITHOUT_EDITS = (
    "You called finish with changes_necessary true, but you have not changed any file in "
    "this session. Make the changes with str_replace_based_edit_tool and then call finish "
    "again, or call finish with changes_necessary false if nothing needs to change."
)


def verify_failed(command: str, exit_code: int | None, tail: str, rounds_left: int) -> str:
    """What the model reads when the job's verify command fails after finish."""
    status = "timed out" if exit_code is None else f"exited with code {exit_code}"
    return (
        f"The verify command `{command}` {status}. The end of its output:\n"
        f"```\n{tail}\n```\n"
        f"Fix the cause with the tools, then call finish again ({rounds_left} verify "
        f"round{'s' if rounds_left != 1 else ''} left)."
    )


def first_message(
    prompt: str,
    overview: str,
    hits: str,
    verify: str | None,
    shell: str = "",
    instructions: str = "",
) -> str:
    """The job's first user message: the task, the repository's instructions, the shell's
    terms, the repository overview, search hits."""
    parts = [f"<task>\n{prompt.strip()}\n</task>"]
    if instructions:
        parts.append(instructions)
    parts.append(f"<repository>\n{overview}\n</repository>")
    if hits:
        parts.append(f"<search_hits>\n{hits}\n</search_hits>")
    if shell:
        parts.append(shell)
    if verify:
        parts.append(
            "After you call finish, this verify command runs in the repository; if it fails "
            f"you will see its output and can fix the problem:\n`{verify}`"
        )
    parts.append("Make the change with the tools, then call finish.")
    return "\n\n".join(parts)
