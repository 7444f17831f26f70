"""Agent context and caching figures (issue 3, section 8), with the fake model.

A fixed 10-turn session is replayed by the fake Messages API against generated
repositories of 100, 1,000 and 10,000 files, through the real SDK and agent loop:
- the first request's size (bytes, estimated tokens): flat as the repository grows
  (10,000 files within 1.2x of 100 files) and under about 8,000 tokens (32 KB)
- the total input across the session, and the share of it that sits before a cache
  breakpoint (target at least 80%)
- the cost of one repository at today's prices (genai-prices) for the current Sonnet, Opus
  and Haiku, each from the same session's per-call usage, with caching and without (every
  input token billed as plain input): caching saves at least half, and a repository costs
  under COST_TARGET dollars on Sonnet
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR, Figure, at_most, generate_repo, git, note, report
from codybatch.agent import run_agent
from codybatch.agent.pricing import cost, price_for
from codybatch.settings import Settings
from codybatch.spec import JobSpec
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    cached_prefix_bytes,
    create,
    finish,
    reply,
    search,
    str_replace,
    view,
)

SIZES = (100, 1_000, 10_000)
BYTES_PER_TOKEN = 4
FIRST_REQUEST_LIMIT = 32_000  # bytes, about 8,000 tokens
FLAT_RATIO = 1.2
CACHED_SHARE = 0.80
MODELS = ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5")
CACHE_SAVING = 0.50
COST_TARGET = {"claude-sonnet-5-5": 0.025, "claude-opus-5-5": 0.05, "claude-haiku-5-5": 0.005}
PROMPT = (
    "Rename `function_1_3` to compute_total and update every caller. Keep the behaviour "
    "of function_2_5 unchanged, and add a short note to CHANGELOG.md."
)
FIRST = "src/pkg000/module00001.py"
SECOND = "src/pkg000/module00002.py"


def session() -> list[dict[str, Any]]:
    """The fixed 10-turn script (the same files exist in every generated repository)."""
    return [
        reply("Let me find the function.", search(r"def function_1_3\b")),
        reply(view(f"/repo/{FIRST}")),
        reply(search(r"function_1_3\(", glob="*.py")),
        reply(view(f"/repo/{SECOND}", [1, 20])),
        reply(str_replace(FIRST, "def function_1_3(x):", "def compute_total(x):")),
        reply(view("/repo/src/pkg000")),
        reply(str_replace(SECOND, "return x * 5 + 0  # file 2", "return x * 5 + 1  # file 2")),
        reply(create("/repo/CHANGELOG.md", "# Changes\n\n- Rename function_1_3.\n")),
        reply(view(f"/repo/{FIRST}", [1, 12])),
        reply(finish(True, "Renamed function_1_3 to compute_total.", "Rename function_1_3")),
    ]


def measure(repo: Path, fake: FakeAnthropic, settings: Settings) -> dict[str, Any]:
    """Replay the session on repo; the request figures of this run."""
    start = len(fake.answered)
    fake.script(*session())
    spec = JobSpec(name="bench", repositories=(str(repo),), prompt=PROMPT)
    threads: list[dict[str, Any]] = []
    try:
        outcome = run_agent(repo, spec, settings, threads.append)
    finally:
        git("reset", "-q", "--hard", cwd=repo)
        git("clean", "-fdq", cwd=repo)
    requests = fake.answered[start:]
    if outcome.stop_reason != "finished" or len(requests) != 10:
        raise RuntimeError(f"the scripted session did not finish: {outcome}")
    prefix = [cached_prefix_bytes(r.body) for r in requests]
    return {
        "first_bytes": len(requests[0].raw),
        "total_bytes": sum(len(r.raw) for r in requests),
        "before_breakpoint": sum(p for p, _ in prefix) / sum(t for _, t in prefix),
        "usage": outcome.usage,
        "calls": [turn["response"]["usage"] for turn in threads[-1]["turns"]],
    }


def uncached(usage: dict[str, Any]) -> dict[str, Any]:
    """The same call with every input token billed as plain input."""
    total = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return {"input_tokens": total, "output_tokens": usage["output_tokens"]}


def repository_costs(calls: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """(with caching, without) USD of one repository's calls, per current model."""
    costs = {}
    for model in MODELS:
        price = price_for(model)
        cached = sum(cost(call, price) for call in calls)
        costs[model] = (cached, sum(cost(uncached(call), price) for call in calls))
    return costs


def run(bench_dir: Path = BENCH_DIR, sizes: Sequence[int] = SIZES) -> list[Figure]:
    figures: list[Figure] = []
    print("Agent context and caching (fake model, fixed 10-turn session)", flush=True)
    results: dict[int, dict[str, Any]] = {}
    with FakeAnthropic(bytes_per_token=BYTES_PER_TOKEN) as fake:
        settings = Settings(anthropic_api_key=fake.api_key, anthropic_base_url=fake.url)
        for files in sizes:
            repo = generate_repo(bench_dir / f"agent-{files}", files)
            results[files] = measure(repo, fake, settings)
    for files, r in results.items():
        first = r["first_bytes"]
        report(
            Figure(
                f"first request, {files:,} files",
                f"{first:,} bytes (~{first // BYTES_PER_TOKEN:,} tokens)",
                f"<= {FIRST_REQUEST_LIMIT:,} bytes",
                first <= FIRST_REQUEST_LIMIT,
            ),
            figures,
        )
    smallest, largest = results[min(sizes)], results[max(sizes)]
    report(
        at_most(
            f"first request, {max(sizes):,} vs {min(sizes):,} files",
            largest["first_bytes"] / smallest["first_bytes"],
            FLAT_RATIO,
        ),
        figures,
    )
    for files, r in results.items():
        usage = r["usage"]
        billed_input = (
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        )
        share = r["before_breakpoint"]
        report(
            Figure(
                f"session input before a cache breakpoint, {files:,} files",
                f"{share:.1%} of {r['total_bytes']:,} bytes",
                f">= {CACHED_SHARE:.0%}",
                share >= CACHED_SHARE,
            ),
            figures,
        )
        read_share = usage.cache_read_input_tokens / billed_input
        report(
            Figure(
                f"session input tokens read from the cache, {files:,} files",
                f"{read_share:.1%}",
            ),
            figures,
        )
        note(
            f"{billed_input:,} input tokens billed ({usage.cache_read_input_tokens:,} cache "
            f"reads, {usage.cache_creation_input_tokens:,} cache writes), "
            f"{usage.output_tokens:,} output tokens"
        )
        for model, (cached, plain) in repository_costs(r["calls"]).items():
            report(
                Figure(
                    f"cost per repository at today's {model} prices, {files:,} files",
                    f"${cached:.4f} with caching, ${plain:.4f} without "
                    f"({1 - cached / plain:.0%} saved)",
                    f"<= ${COST_TARGET[model]:g}, caching saves >= {CACHE_SAVING:.0%}",
                    cached <= COST_TARGET[model] and 1 - cached / plain >= CACHE_SAVING,
                ),
                figures,
            )
    return figures


def main(argv: Sequence[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="repository sizes in files"
    )
    args = parser.parse_args(argv or [])
    return run(sizes=args.sizes)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
