"""The one text classifier node, configured by task, without Ray: what each task loads, the
name it answers under (metrics, cache keys), its typed answers and its /health part."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from ray.serve.deployment import Deployment

from configs.nodes import ModerationModelSpec, SentimentModelSpec
from deployments.nodes.text_classifier import TextClassifier, text_classifier_deployment
from models.answers import Answer
from models.heads import HeadModerator
from models.moderation import ProfanityModerator
from models.sentiment import SentimentScores, VaderSentiment
from models.shipped import SHIPPED_HEADS


def node_class() -> Any:
    """The class under ``@serve.deployment`` (mypy sees the undecorated class)."""
    return cast(Deployment, TextClassifier).func_or_class


@pytest.fixture(autouse=True)
def replica_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # info() names the replica; outside Serve there is none.
    context = SimpleNamespace(replica_id=SimpleNamespace(unique_id="replica-1"))
    monkeypatch.setattr("ray.serve.get_replica_context", lambda: context)
    monkeypatch.setenv("REDIS_URL", "")


def test_each_task_loads_its_model_and_answers_typed_results() -> None:
    moderation = node_class()("moderation", ModerationModelSpec(kind="profanity"), None)
    sentiment = node_class()("sentiment", {"kind": "vader"}, None)
    assert isinstance(moderation.model, ProfanityModerator)
    assert isinstance(sentiment.model, VaderSentiment)
    # The deployment names of the main nodes: metric label and part of every cache key.
    assert (moderation.node_name, sentiment.node_name) == ("TextModeration", "Sentiment")
    assert sentiment.result_type is SentimentScores

    async def answers() -> tuple[list[Answer[Any]], list[Answer[Any]]]:
        return (
            await moderation._run_model(["you idiot"]),
            await sentiment._run_model(["I love this"]),
        )

    (offensive,), (love,) = asyncio.run(answers())
    assert offensive.result["offensive"] > 0.5 and offensive.model.name == "alt-profanity-check"
    assert isinstance(love.result, SentimentScores) and love.result.label == "positive"
    assert love.model.name == "vader"


def test_a_spec_of_the_other_task_is_refused() -> None:
    with pytest.raises(ValueError, match="SentimentModelSpec"):
        node_class()("sentiment", ModerationModelSpec(kind="profanity"), None)
    with pytest.raises(ValueError, match="kind"):
        node_class()("moderation", {"kind": "vader"}, None)


def test_health_part_is_the_json_the_node_always_answered() -> None:
    node = node_class()("sentiment", SentimentModelSpec(kind="vader"), {"enabled": False})
    info = node.info().as_json()
    assert list(info) == [
        "name",
        "version",
        "device",
        "labels",
        "batching",
        "replica_id",
        "cache",
        "text_vectors",
    ]
    assert info["labels"] == ["positive", "negative", "neutral"]
    assert info["batching"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}
    assert info["cache"] == {"state": "off"}
    assert info["text_vectors"] == {"state": "off", "reason": "args.text_vectors.enabled is false"}


def test_deployments_are_named_per_task_and_variant() -> None:
    assert text_classifier_deployment("moderation").name == "TextModeration"
    assert text_classifier_deployment("sentiment", "candidate").name == "Sentiment-candidate"


def test_the_default_kind_serves_the_shipped_head_and_a_refused_one_serves_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = node_class()("moderation", ModerationModelSpec(), {"enabled": False})
    assert isinstance(shipped.model, HeadModerator) and shipped.degraded_reason is None
    assert "degraded_reason" not in shipped.info().as_json()

    # A copy whose head_config.json lost a byte: refused at start-up, the node still starts.
    copy = tmp_path / "moderation-head"
    shutil.copytree(SHIPPED_HEADS["moderation"], copy)
    config = copy / "head_config.json"
    config.write_bytes(config.read_bytes()[:-1])
    monkeypatch.setitem(SHIPPED_HEADS, "moderation", copy)
    node = node_class()("moderation", ModerationModelSpec(), {"enabled": False})
    assert isinstance(node.model, ProfanityModerator)

    (answer,) = asyncio.run(node._run_model(["you idiot"]))
    assert answer.model.name == "alt-profanity-check"
    assert answer.degraded_reason and "shipped moderation head refused" in answer.degraded_reason
    info = node.info().as_json()
    assert info["name"] == "alt-profanity-check"
    assert info["degraded_reason"] == answer.degraded_reason
