"""Ray Data batch inference on the session Ray: a pool of model actors, resumable output."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from configs.pipelines import BatchInferenceJobConfig
from models.heads import HeadConfig, TextHead, save_head
from pipelines.synthetic_social import post_text

pytestmark = pytest.mark.integration


def test_rescore_resumes_and_never_writes_text(serve_port: int, tmp_path: Path) -> None:
    from pipelines.batch_inference import run_job

    rng = random.Random(5)
    posts = [{"post_id": f"p-{i:03d}", "text": post_text("cooking", rng)} for i in range(30)]
    posts.append({"post_id": "p-empty", "text": ""})
    source = tmp_path / "posts.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in posts + posts[:3]))
    head_dir = save_head(
        tmp_path / "head",
        TextHead(HeadConfig(task="moderation", labels=("hate_speech", "offensive"), hidden_dim=8)),
        version="head-test/1",
    )
    output = tmp_path / "out" / "scored.jsonl"
    config = {
        "input_path": str(source),
        "output_path": str(output),
        "moderation_head_path": str(head_dir),
        # One actor: the pool code is the same, and each run pays one MiniLM load, not two.
        "concurrency": 1,
        "cpus_per_actor": 0.25,
        "batch_size": 8,
    }

    # First run stops after 20 posts (as a killed job would); the rerun does the rest only.
    first = run_job(BatchInferenceJobConfig.model_validate({**config, "max_rows": 20}))
    assert first["processed"] == 20
    second = run_job(BatchInferenceJobConfig.model_validate(config))
    assert second == {**second, "already_done": 20, "processed": 11}
    assert run_job(BatchInferenceJobConfig.model_validate(config))["processed"] == 0

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["post_id"] for row in lines) == sorted(p["post_id"] for p in posts)
    by_id = {row["post_id"]: row for row in lines}
    assert len(by_id["p-000"]["embedding"]) == 384
    assert set(by_id["p-000"]["moderation"]) == {"hate_speech", "offensive"}
    assert by_id["p-000"]["moderation_version"] == "head-test/1"
    assert by_id["p-empty"]["embedding"] is None and by_id["p-empty"]["moderation"] is None
    assert posts[0]["text"] not in output.read_text()


def test_missing_input_is_a_clear_error_before_any_actor(tmp_path: Path) -> None:
    from pipelines.batch_inference import run_job

    config = BatchInferenceJobConfig(
        input_path=str(tmp_path / "none.jsonl"), output_path=str(tmp_path / "o.jsonl")
    )
    with pytest.raises(ValueError, match="does not exist"):
        run_job(config)
