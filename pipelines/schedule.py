"""Submit the retraining jobs that are due to a running Ray cluster (Job Submission API).

    python -m pipelines.schedule --address http://127.0.0.1:8265 \\
        [--schedules configs/schedules.yaml] [--state-file <state_dir>/schedule_state.json] \\
        [--dry-run]

Run it often (cron every 15 minutes, a Kubernetes CronJob): each run reads the schedules
(`configs.schedules`), the time each job was last submitted (the state file), and submits the
jobs whose interval has passed, as ``python -m pipelines.<job> --config <config>`` with the
project as the runtime_env working_dir (or the cluster image's installed package). A job whose
previous submission is still pending or running is not submitted twice. The state file is
written after each successful submission (atomically), so a crash never re-submits a job that
went out, and a failed submission is retried on the next run.

Needs the cluster's dashboard (the Job Submission API listens on port 8265).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from configs.schedules import JobSchedule, Schedules, load_schedules
from configs.settings import get_settings

__all__ = ["Due", "JobClient", "due_jobs", "load_state", "main", "submit_due", "save_state"]

logger = logging.getLogger("pipelines.schedule")

# Statuses of ray.job_submission.JobStatus in which a job still holds (or waits for) resources.
ACTIVE_STATUSES = frozenset({"PENDING", "RUNNING"})


class JobClient(Protocol):
    """The part of `ray.job_submission.JobSubmissionClient` this command uses."""

    def submit_job(self, **kwargs: Any) -> str: ...

    def get_job_status(self, job_id: str) -> Any: ...


@dataclass(frozen=True)
class Due:
    """A schedule's verdict for this run."""

    schedule: JobSchedule
    due: bool
    reason: str


def load_state(path: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"last_submitted_s": float, "submission_id": str}}``; empty when no file yet."""
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"schedule state file {str(path)!r} is unreadable ({exc}); fix or delete it "
            "(deleting makes every job due once)"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"schedule state file {str(path)!r} must hold a JSON object")
    return state


def save_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    """Write the state atomically (a killed run never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    partial.replace(path)


def _status_name(status: Any) -> str:
    # JobStatus is a str enum; a fake client may return plain strings.
    return str(getattr(status, "value", status)).upper()


def due_jobs(
    schedules: Schedules,
    state: dict[str, dict[str, Any]],
    now_s: float,
    client: JobClient | None = None,
) -> list[Due]:
    """Every schedule with whether it is due now and why (client: to skip running jobs)."""
    verdicts: list[Due] = []
    for schedule in schedules.jobs:
        previous = state.get(schedule.name, {})
        last_s = previous.get("last_submitted_s")
        if not schedule.enabled:
            verdicts.append(Due(schedule, False, "disabled"))
            continue
        if last_s is not None and now_s - float(last_s) < schedule.every_s:
            wait_s = schedule.every_s - (now_s - float(last_s))
            verdicts.append(Due(schedule, False, f"not yet: due in {wait_s:.0f} s"))
            continue
        submission = previous.get("submission_id")
        if schedule.skip_while_running and client is not None and submission:
            status = _status_name(client.get_job_status(submission))
            if status in ACTIVE_STATUSES:
                verdicts.append(Due(schedule, False, f"previous {submission} still {status}"))
                continue
        reason = (
            "never submitted" if last_s is None else f"last submitted {now_s - last_s:.0f} s ago"
        )
        verdicts.append(Due(schedule, True, reason))
    return verdicts


def _submission(schedules: Schedules, schedule: JobSchedule, now_s: float) -> dict[str, Any]:
    runtime_env: dict[str, Any] = {}
    if schedules.working_dir is not None:
        runtime_env["working_dir"] = schedules.working_dir
    if schedules.env_vars:
        runtime_env["env_vars"] = dict(schedules.env_vars)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_s))
    return {
        "entrypoint": f"python -m pipelines.{schedule.job} --config {schedule.config}",
        "submission_id": f"{schedule.name}-{stamp}",
        "runtime_env": runtime_env or None,
        "entrypoint_num_cpus": schedule.entrypoint_num_cpus,
        "metadata": {"schedule": schedule.name, "job": schedule.job},
    }


def submit_due(
    schedules: Schedules,
    state_file: Path,
    client: JobClient | None,
    now_s: float | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Submit the due jobs (none with `dry_run`); returns one line of outcome per schedule."""
    now_s = time.time() if now_s is None else now_s
    state = load_state(state_file)
    outcomes: list[dict[str, Any]] = []
    for verdict in due_jobs(schedules, state, now_s, None if dry_run else client):
        outcome: dict[str, Any] = {
            "name": verdict.schedule.name,
            "due": verdict.due,
            "reason": verdict.reason,
        }
        if verdict.due:
            request = _submission(schedules, verdict.schedule, now_s)
            outcome["entrypoint"] = request["entrypoint"]
            if dry_run or client is None:
                outcome["submitted"] = None
            else:
                submission_id = client.submit_job(**request)
                state[verdict.schedule.name] = {
                    "last_submitted_s": now_s,
                    "submission_id": submission_id,
                }
                # After each submission: a crash later in this run never re-submits this one.
                save_state(state_file, state)
                outcome["submitted"] = submission_id
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring. Exit 2 on a config or state error, 1 on a failed submit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_JOB_ADDRESS", "http://127.0.0.1:8265"),
        help="Ray dashboard / Job Submission address (default RAY_JOB_ADDRESS or local)",
    )
    parser.add_argument("--schedules", default="configs/schedules.yaml", help="schedule YAML")
    parser.add_argument(
        "--state-file",
        default=None,
        help="last-submitted times (default <state_dir>/schedule_state.json)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what is due; submit nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    state_file = (
        Path(args.state_file)
        if args.state_file
        else Path(get_settings().state_dir).resolve() / "schedule_state.json"
    )
    try:
        schedules = load_schedules(args.schedules)
        client: JobClient | None = None
        if not args.dry_run:
            from ray.job_submission import JobSubmissionClient

            # cast: its keyword-only submit_job signature is richer than the Protocol.
            client = cast(JobClient, JobSubmissionClient(args.address))
        outcomes = submit_due(schedules, state_file, client, dry_run=args.dry_run)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, RuntimeError) as exc:
        # JobSubmissionClient raises these when the dashboard is unreachable or refuses.
        print(
            f"error: job submission to {args.address} failed ({exc}); is the cluster up with "
            "its dashboard (port 8265)?",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(outcomes, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
