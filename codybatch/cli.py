"""The `codybatch` command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from codybatch.fleet_records import ErrorClass, FleetStatus
from codybatch.records import Job, JobStatus, Publishing, RepositoryResult
from codybatch.settings import Settings, SettingsError


def _store(settings: Settings):
    from codybatch.store import open_store

    return open_store(settings)


def _repo_key(raw: str) -> str:
    from codybatch.spec import parse_repository

    if not raw.startswith("/") and Path(raw).is_dir():
        raw = str(Path(raw).resolve())  # a local repository named relative to here
    return parse_repository(raw).key


def _load_spec_file(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    if path.endswith(".json"):
        return json.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _result_rows(results: Sequence[RepositoryResult]) -> str:
    rows = [["REPOSITORY", "STATUS", "CHANGED", "PR", "TOKENS", "USD", "NOTE"]]
    for r in results:
        note = r.error or (r.stop_reason if r.stop_reason not in (None, "finished") else "") or ""
        rows.append(
            [
                r.repository,
                r.status.value,
                _yes_no(r.were_changes_necessary),
                r.pr_url or "-",
                f"{r.usage.total_tokens:,}",
                f"{r.usage.usd:.4f}" + _price_flag(r),
                note.splitlines()[0][:80] if note else "",
            ]
        )
    return _table(rows)


def _price_flag(result: RepositoryResult) -> str:
    """' (price unknown)' when the cost is at the conservative rate, not the model's own."""
    unknown = result.agent is not None and not result.agent.price_known
    return " (price unknown)" if unknown else ""


def _job_dict(job: Job, results: Sequence[RepositoryResult]) -> dict[str, Any]:
    return {**job.to_dict(), "results": [r.to_dict() for r in results]}


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.checks import checked
    from codybatch.jobs import finalize_job, register_job
    from codybatch.live import job_display
    from codybatch.spec import JobSpec, SpecError
    from codybatch.worker import run_worker

    try:
        spec = JobSpec.parse(_load_spec_file(args.spec), settings, user_input=True)
        warnings = checked(spec, settings)  # before anything is cloned or called
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # missing file, YAML or JSON syntax
        print(f"cannot read the job spec {args.spec}: {exc}", file=sys.stderr)
        return 2
    store = _store(settings)
    job = register_job(spec, store, job_id=args.job_id, warnings=warnings)
    print(f"job {job.job_id}: {spec.name} ({len(spec.repositories)} repositories)", flush=True)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)

    with job_display(spec.repositories, sys.stdout) as display:

        def one(repository: str) -> RepositoryResult:
            result = run_worker(
                job.job_id, repository, settings=settings, store=store, on_progress=display.update
            )
            display.update(result)
            return result

        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            list(pool.map(one, spec.repositories))
    job = finalize_job(store, job.job_id)
    results = store.list_results(job.job_id)
    if args.json:
        print(json.dumps(_job_dict(job, results), indent=2))
    else:
        print()
        print(_result_rows(results))
        print(f"\njob {job.job_id}: {job.status.value}")
        print(f"patches: codybatch diff {job.job_id} REPOSITORY")
    return 0 if job.status == JobStatus.COMPLETED else 1


def _forbid_inspection() -> None:
    """Make this process undumpable, so steps running as the same (non-root) user cannot
    read its environment or memory (/proc/PID/environ, ptrace) and the secrets in them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        logging.getLogger("codybatch.worker").warning("could not make the worker undumpable")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.worker import WorkerError, exit_code, run_worker

    repository = _repo_key(args.repository)
    # Stopped from outside (a cancelled run, a terminated Batch job): unwind cleanly, so the
    # checkout is removed and the steps' process groups are killed.
    signal.signal(signal.SIGTERM, _stop)
    _forbid_inspection()
    try:
        result = run_worker(args.job_id, repository, settings=settings, force=args.force)
    except Exception as exc:
        # Not a recorded failure of the repository: the runner may retry (EX_TEMPFAIL).
        logging.getLogger("codybatch.worker").exception("worker error: %s", exc)
        return exc.exit_code if isinstance(exc, WorkerError) else WorkerError.exit_code
    print(
        json.dumps(
            {
                "job_id": result.job_id,
                "repository": result.repository,
                "status": result.status.value,
                "were_changes_necessary": result.were_changes_necessary,
                "error": result.error,
            }
        )
    )
    return exit_code(result)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    jobs = store.list_jobs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    if args.csv:
        from codybatch.reports import jobs_csv

        sys.stdout.write(jobs_csv(store, jobs))
        return 0
    rows = [["JOB", "STATUS", "NAME", "REPOS", "TOKENS", "USD", "CREATED", "NOTE"]]
    for j in jobs:
        refused = j.spec.get("errors") or []
        note = f"refused: {refused[0]['field']}: {refused[0]['message']}" if refused else ""
        if len(refused) > 1:
            note += f" (+{len(refused) - 1} more)"
        rows.append(
            [
                j.job_id,
                j.status.value,
                j.name[:40],
                str(len(j.repositories)),
                f"{j.usage.total_tokens:,}",
                f"{j.usage.usd:.4f}",
                j.created_at.isoformat(),
                note[:100],
            ]
        )
    print(_table(rows))
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    job = store.get_job(args.job_id)
    if job is None:
        print(f"job {args.job_id} not found", file=sys.stderr)
        return 1
    results = store.list_results(job.job_id)
    if args.json:
        print(json.dumps(_job_dict(job, results), indent=2))
        return 0
    if args.csv:
        from codybatch.reports import results_csv

        sys.stdout.write(results_csv(job, results))
        return 0
    print(f"job {job.job_id}: {job.name}  [{job.status.value}]")
    print(f"created {job.created_at.isoformat()}  updated {job.updated_at.isoformat()}")
    print(f"usage: {job.usage.total_tokens:,} tokens, ${job.usage.usd:.4f}")
    for warning in job.warnings:
        print(f"warning: {warning}")
    if job.error:
        print(job.error)
    print()
    print(_result_rows(results))
    for r in results:
        extra = []
        if r.summary:
            extra.append(f"summary: {r.summary}")
        if r.stop_reason and r.stop_reason != "finished":
            limit = r.agent.limit if r.agent else None
            extra.append(f"stop reason: {r.stop_reason}" + (f" ({limit})" if limit else ""))
        extra.extend(f"note: {warning}" for warning in r.warnings)
        if r.verify:
            outcome = "passed" if r.verify.passed else "FAILED"
            extra.append(f"verify: {outcome} ({r.verify.command})")
        if extra:
            print(f"\n{r.repository}:\n  " + "\n  ".join(extra))
    return 0


def _stored_result(settings: Settings, job_id: str, repository: str) -> tuple[Any, str] | None:
    """The store and the repository's key when the job has that repository, else None."""
    store, key = _store(settings), _repo_key(repository)
    if store.get_result(job_id, key) is None:
        print(f"no result for {repository} in job {job_id}", file=sys.stderr)
        return None
    return store, key


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    found = _stored_result(settings, args.job_id, args.repository)
    if found is None:
        return 1
    store, key = found
    sys.stdout.buffer.write(store.get_patch(args.job_id, key) or b"")
    return 0


def cmd_thread(args: argparse.Namespace, settings: Settings) -> int:
    found = _stored_result(settings, args.job_id, args.repository)
    if found is None:
        return 1
    store, key = found
    print(json.dumps(store.get_thread(args.job_id, key), indent=2))
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    count = _store(settings).purge_expired()
    print(f"purged {count} expired jobs")
    return 0


def cmd_store_migrate(args: argparse.Namespace, settings: Settings) -> int:
    count = _store(settings).migrate()
    print(f"migrated {count} records written before the store's current indexes")
    return 0


def cmd_repositories(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.github import GitHubError, list_repositories

    try:
        keys = list_repositories(settings)
    except GitHubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(keys, indent=2) if args.json else "\n".join(keys))
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.publish import PublishError, publish_stored

    repository = _repo_key(args.repository) if args.repository else None
    try:
        results = publish_stored(args.job_id, repository, settings, _store(settings))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = False
    for r in results:
        pr = r.publishing or Publishing(action="-")
        failed = failed or pr.action == "failed"
        print(f"{r.repository}: {pr.action}  {r.pr_url or ''}  {pr.reason}")
    return 1 if failed else 0


def cmd_merge(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.github import GitHubError
    from codybatch.merge import MergeError, merge_job

    repository = _repo_key(args.repository) if args.repository else None
    try:
        done = merge_job(args.job_id, repository, settings, _store(settings), by="cli")
    except (MergeError, GitHubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not done:
        print(f"job {args.job_id} has no open pull request")
    for result, attempt in done:
        print(f"{result.repository}: {attempt.outcome}  {attempt.reason}  {result.pr_url or ''}")
    return 0 if all(a.outcome == "merged" for _, a in done) else 1


def cmd_follow_up(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.followup import FollowUpError, run_followups
    from codybatch.github import GitHubError

    repository = _repo_key(args.repository) if args.repository else None
    try:
        done = run_followups(args.job_id, repository, settings, _store(settings))
    except (FollowUpError, GitHubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = False
    for result, fix in done:
        if fix is None:
            print(f"{result.repository}: nothing due")
            continue
        failed = failed or fix.outcome == "failed"
        print(
            f"{result.repository}: round {fix.number} ({fix.trigger}) {fix.outcome}  "
            f"{fix.note}  ${fix.usage.usd:.4f}"
        )
    return 1 if failed else 0


def cmd_campaign_retry(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.fleet import campaign_slug, request_retry

    name = campaign_slug(args.name)
    try:
        marked = request_retry(_store(settings), name, args.repo or (), failed=args.failed)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    if not marked:
        print(f"campaign {name}: nothing to retry (no failed repositories)")
        return 0
    print("\n".join(marked))
    print(
        f"{len(marked)} repositories run again at the campaign's next run; to start it now: "
        f"airflow dags trigger codybatch_campaign__{name} (or Retry on its page)",
        file=sys.stderr,
    )
    return 0


def cmd_campaign_fleet(args: argparse.Namespace, settings: Settings) -> int:
    from codybatch.fleet import campaign_slug

    name = campaign_slug(args.name)
    store = _store(settings)
    status = FleetStatus(args.status) if args.status else None
    error = ErrorClass(args.error_class) if args.error_class else None
    entries, after = [], None
    while page := store.fleet_page(name, status=status, error_class=error, after=after, limit=500):
        entries.extend(page)
        after = page[-1].repository
    if args.csv:
        from codybatch.reports import fleet_csv

        sys.stdout.write(fleet_csv(entries))
        return 0
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    rows = [["REPOSITORY", "STATUS", "ERROR", "PR", "USD", "JOBS"]]
    for e in entries:
        rows.append(
            [
                e.repository + ("" if e.member else " (left)"),
                e.status.value,
                e.error_class.value if e.error_class else "",
                e.pr_state or "",
                f"{e.total_usd:.4f}",
                str(e.jobs),
            ]
        )
    print(_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codybatch", description="Apply one AI-driven code change across repositories."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="validate, register and run a job here, without Airflow")
    p.add_argument("spec", help="job spec file (YAML or JSON; - for stdin)")
    p.add_argument("--job-id", help="reuse this job id (re-runs finish unfinished repositories)")
    p.add_argument("--parallel", type=int, default=5, help="repositories at once (default 5)")
    p.add_argument("--json", action="store_true", help="print the job and results as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("worker", help="process one repository of a registered job")
    p.add_argument("--job-id", required=True)
    p.add_argument("--repository", required=True)
    p.add_argument("--force", action="store_true", help="redo a repository already finished")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("jobs", help="list jobs, newest first")
    p.add_argument(
        "--status",
        type=str.upper,
        choices=[s.value for s in JobStatus],
        help="only jobs with this status (e.g. COMPLETED)",
    )
    p.add_argument("--limit", type=int, default=50)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true", help="one row per job")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("show", help="a job and its repository results")
    p.add_argument("job_id")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true", help="one row per repository")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("diff", help="the patch of one repository, on stdout")
    p.add_argument("job_id")
    p.add_argument("repository")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("thread", help="the Claude message thread of one repository (JSON)")
    p.add_argument("job_id")
    p.add_argument("repository")
    p.set_defaults(func=cmd_thread)

    p = sub.add_parser("purge", help="delete jobs and results past their expiry (30 days)")
    p.set_defaults(func=cmd_purge)

    store = sub.add_parser("store", help="the store itself")
    ssub = store.add_subparsers(dest="store_command", required=True)
    p = ssub.add_parser(
        "migrate", help="bring records from before the current indexes into them (AWS; once)"
    )
    p.set_defaults(func=cmd_store_migrate)

    p = sub.add_parser("repositories", help="GitHub repositories the token can see and may use")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_repositories)

    p = sub.add_parser("publish", help="open pull requests from a job's stored patches")
    p.add_argument("job_id")
    p.add_argument("repository", nargs="?", help="only this repository (default: all)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("merge", help="merge a job's pull requests that are green now")
    p.add_argument("job_id")
    p.add_argument("repository", nargs="?", help="only this repository (default: all)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "follow-up", help="refresh a job's open PRs and run the fix rounds that are due"
    )
    p.add_argument("job_id")
    p.add_argument("repository", nargs="?", help="only this repository (default: all)")
    p.set_defaults(func=cmd_follow_up)

    campaign = sub.add_parser("campaign", help="a campaign's fleet: list it, retry repositories")
    csub = campaign.add_subparsers(dest="campaign_command", required=True)
    p = csub.add_parser("retry", help="run repositories again at the campaign's next run")
    p.add_argument("name", help="the campaign (its file name)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--failed", action="store_true", help="every failed repository")
    which.add_argument("--repo", action="append", help="this repository (repeat for more)")
    p.set_defaults(func=cmd_campaign_retry)
    p = csub.add_parser("fleet", help="every repository of the campaign and its latest state")
    p.add_argument("name", help="the campaign (its file name)")
    p.add_argument("--status", type=str.upper, choices=[s.value for s in FleetStatus])
    p.add_argument("--error-class", choices=[c.value for c in ErrorClass])
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true", help="one row per repository")
    p.set_defaults(func=cmd_campaign_fleet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "worker" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings.from_env()  # read once here, passed down to everything
    except SettingsError as exc:
        print(f"codybatch: {exc}", file=sys.stderr)
        return 2  # as a usage error: the worker's task does not retry it
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main())
