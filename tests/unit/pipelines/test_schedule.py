"""Retraining schedules: which jobs are due, and what is submitted (a fake Job client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from configs.schedules import Schedules, load_schedules
from pipelines.schedule import due_jobs, main, submit_due

DAY_S = 86_400.0
NOW_S = 1_800_000_000.0


class FakeJobClient:
    """Same method names as ray.job_submission.JobSubmissionClient; records the calls."""

    def __init__(self, statuses: dict[str, str] | None = None) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.statuses = statuses or {}

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        return str(kwargs["submission_id"])

    def get_job_status(self, job_id: str) -> str:
        return self.statuses.get(job_id, "SUCCEEDED")


def _schedules() -> Schedules:
    return Schedules.model_validate(
        {
            "env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
            "jobs": [
                {
                    "name": "recommender-mf",
                    "job": "recommender_mf",
                    "config": "configs/pipelines/recommender_mf.yaml",
                    "every_s": DAY_S,
                },
                {
                    "name": "moderation-head",
                    "job": "text_heads",
                    "config": "configs/pipelines/moderation_head.yaml",
                    "every_s": 7 * DAY_S,
                },
                {
                    "name": "off",
                    "job": "text_heads",
                    "config": "x.yaml",
                    "every_s": 1,
                    "enabled": False,
                },
            ],
        }
    )


def test_due_logic_by_interval_disabled_and_running() -> None:
    state = {
        "recommender-mf": {"last_submitted_s": NOW_S - DAY_S - 1, "submission_id": "mf-1"},
        "moderation-head": {"last_submitted_s": NOW_S - DAY_S, "submission_id": "mod-1"},
    }
    verdicts = {v.schedule.name: v for v in due_jobs(_schedules(), state, NOW_S)}
    assert verdicts["recommender-mf"].due is True
    assert verdicts["moderation-head"].due is False
    assert "due in" in verdicts["moderation-head"].reason
    assert verdicts["off"].due is False
    # Due by time, but its previous run still holds the cluster: not twice.
    running = FakeJobClient({"mf-1": "RUNNING"})
    verdicts = {v.schedule.name: v for v in due_jobs(_schedules(), state, NOW_S, running)}
    assert verdicts["recommender-mf"].due is False
    assert "still RUNNING" in verdicts["recommender-mf"].reason


def test_submission_call_and_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    client = FakeJobClient()
    outcomes = submit_due(_schedules(), state_file, client, now_s=NOW_S)
    assert [o["name"] for o in outcomes if o.get("submitted")] == [
        "recommender-mf",
        "moderation-head",
    ]
    first = client.submitted[0]
    assert first["entrypoint"] == (
        "python -m pipelines.recommender_mf --config configs/pipelines/recommender_mf.yaml"
    )
    assert first["runtime_env"] == {
        "working_dir": ".",
        "env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    }
    assert first["submission_id"].startswith("recommender-mf-")
    state = json.loads(state_file.read_text())
    assert state["recommender-mf"]["last_submitted_s"] == NOW_S
    # An hour later nothing is due: nothing is submitted again.
    again = submit_due(_schedules(), state_file, client, now_s=NOW_S + 3600)
    assert len(client.submitted) == 2 and not any(o["due"] for o in again)


def test_dry_run_submits_nothing_and_keeps_no_state(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    outcomes = submit_due(_schedules(), state_file, None, now_s=NOW_S, dry_run=True)
    assert sum(o["due"] for o in outcomes) == 2
    assert not state_file.exists()


def test_the_shipped_schedule_file_is_valid_and_points_at_real_configs() -> None:
    schedules = load_schedules("configs/schedules.yaml")
    for job in schedules.jobs:
        assert Path(job.config).is_file(), job.config


def test_cli_dry_run_and_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.json"
    assert main(["--dry-run", "--state-file", str(state)]) == 0
    assert "recommender-mf" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  - name: x\n    job: nope\n    config: a\n    every_s: 1\n")
    assert main(["--dry-run", "--schedules", str(bad), "--state-file", str(state)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
