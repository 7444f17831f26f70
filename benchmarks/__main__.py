"""`make bench`: run every benchmark module in turn and sum up the figures against targets."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import time
import traceback
from collections.abc import Sequence

from benchmarks import Figure

# In order; a module runs through its main() (agent_bench is written separately).
MODULES = (
    "skeleton_bench",
    "agent_bench",
    "sandbox_bench",
    "airflow_bench",
    "load_bench",
    "fleet_bench",
    "store_bench",
)


def run_module(name: str) -> tuple[list[Figure], bool]:
    """Run benchmarks.<name>.main(); (its figures, whether it ran without crashing)."""
    module_name = f"benchmarks.{name}"
    if importlib.util.find_spec(module_name) is None:
        print(f"== {name}: benchmarks/{name}.py does not exist yet: skipped ==", flush=True)
        return [], True
    module = importlib.import_module(module_name)
    main = getattr(module, "main", None)
    if not callable(main):
        print(f"== {name}: no main() in benchmarks/{name}.py: skipped ==", flush=True)
        return [], True
    started = time.perf_counter()
    try:
        result = main()
    except Exception:  # one broken benchmark must not hide the others' figures
        traceback.print_exc()
        print(f"== {name}: crashed after {time.perf_counter() - started:.0f} s ==", flush=True)
        return [], False
    print(f"   ({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
    figures = result if isinstance(result, list) else []
    return [f for f in figures if isinstance(f, Figure)], True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark modules: {', '.join(unknown)}")
    figures: list[Figure] = []
    crashed: list[str] = []
    for name in args.modules or MODULES:
        found, ok = run_module(name)
        figures += found
        if not ok:
            crashed.append(name)
    checked = [f for f in figures if f.ok is not None]
    missed = [f for f in checked if not f.ok]
    print(f"== summary: {len(checked) - len(missed)} of {len(checked)} targets met ==")
    for figure in missed:
        print(f"MISSED  {figure.line()}")
    if crashed:
        print(f"crashed: {', '.join(crashed)}")
    return 1 if crashed else 0  # a missed target is a figure, not a failure


if __name__ == "__main__":
    raise SystemExit(main())
