"""`make demo`: example repositories, one job through Airflow, the results printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from codybatch.records import utcnow
from codybatch.settings import Settings
from codybatch.store import open_store

REPO_ROOT = Path(__file__).resolve().parent.parent

EXAMPLES = {
    "billing-service": {
        "src/invoice.js": "import { oldFunction } from 'legacy-lib';\n\n"
        "export function total(items) {\n  return oldFunction(items);\n}\n",
        "src/tax.js": "import { oldFunction } from 'legacy-lib';\n\n"
        "export const rate = (x) => oldFunction(x) * 0.2;\n",
        "README.md": "# billing-service\n",
    },
    "web-frontend": {
        "app.js": "const { oldFunction } = require('legacy-lib');\nconsole.log(oldFunction(42));\n",
    },
    "docs-site": {
        "index.js": "export const title = 'Docs';\n",
        "README.md": "# docs-site\nNothing deprecated here.\n",
    },
}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Cody Batch Demo", "-c", "user.email=demo@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_examples(root: Path) -> list[Path]:
    """(Re)create the example git repositories under root."""
    paths = []
    for name, files in EXAMPLES.items():
        repo = root / name
        shutil.rmtree(repo, ignore_errors=True)
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        _git(repo, "init", "-q", "-b", "main")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "initial commit")
        paths.append(repo)
    return paths


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    root = settings.home / "examples"
    if "--examples" in (argv if argv is not None else sys.argv[1:]):
        # `make up`: the example campaign works on these; keep existing ones.
        if not all((root / name / ".git").exists() for name in EXAMPLES):
            make_examples(root)
        return 0
    repos = make_examples(root)
    spec_file = (
        Path(__file__).resolve().parent.parent / "include/examples/replace-old-function.yaml"
    )
    conf = yaml.safe_load(spec_file.read_text())
    conf["repositories"] = [str(p) for p in repos]
    conf.pop("prompt")  # the demo runs the shell step, with no API key and no network
    env = {**os.environ, "CODYBATCH_ALLOWED_REPOSITORIES": f"{root}/*"}
    print(f"Example repositories in {root}: {', '.join(p.name for p in repos)}")
    print("Running the job through Airflow (airflow dags test codybatch_job) ...", flush=True)
    log = settings.home / "demo-airflow.log"
    started = utcnow()
    with log.open("w") as out:
        proc = subprocess.run(
            ["airflow", "dags", "test", "codybatch_job", "-c", json.dumps(conf)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    store = open_store(settings)
    jobs = store.list_jobs(limit=1, since=started)  # the job this run registered
    if not jobs:
        print(f"The run did not register a job; see {log}", file=sys.stderr)
        return 1
    job = jobs[0]
    print(f"\nJob {job.job_id}: {job.status.value} (Airflow exit {proc.returncode}; log {log})\n")
    for r in store.list_results(job.job_id):
        changed = {True: "changed", False: "unchanged", None: "-"}[r.were_changes_necessary]
        print(f"  {r.status.value:<9} {changed:<9} {r.repository}")
        if r.error:
            print(f"            error: {r.error}")
        if r.were_changes_necessary:
            print(f"            patch: .venv/bin/codybatch diff {job.job_id} {r.repository}")
    print(
        "\nSee it in the UI: make up, then http://localhost:8080 (admin/admin) -> Cody Batch."
        "\nWith Claude instead of the shell step: export ANTHROPIC_API_KEY=..., remove `steps`"
        f" from a copy of {spec_file}, fill in `repositories`"
        " and run: .venv/bin/codybatch run my-job.yaml"
    )
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
