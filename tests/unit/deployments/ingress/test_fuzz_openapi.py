"""Schemathesis over the ingress's own ``/openapi.json``: no generated request gets a 5xx.

The app is the real one (``build_fastapi_app``) in process, over a state whose nodes answer
without Ray: small fakes for the model nodes, the real Recommender and Trends node classes
(in-process stores; a fake embedder). Image URLs never leave the process: the fetcher's
resolver refuses every host, as DNS would for a made-up one.

About 300 cases by default (under a minute); ``SOCIALPLAY_FUZZ_CASES=5000`` for a long run.
The cases are derandomised: the same code gets the same cases, so a failure reproduces.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from deployments.ingress.app import build_fastapi_app
from deployments.ingress.image_fetch import ImageFetcher
from deployments.nodes.recommender import Recommender
from deployments.nodes.trends import Trends
from models.aspect_types import AspectAnswer
from models.detector import DetectedObjects
from models.faces import Faces
from models.nsfw import NsfwResult
from models.replies import ReplyDecision
from models.sentiment import PolarityScores, SentimentScores
from models.tag_types import ImageTags
from tests.unit.deployments.ingress.fakes import (
    TEST_KEY,
    FakeInfo,
    FakeNode,
    LocalNode,
    answer,
    fake_state,
)

FUZZ_CASES = int(os.environ.get("SOCIALPLAY_FUZZ_CASES", "300"))
EMBEDDING_DIM = 384


def _unit_vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8])
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def _sentiment() -> SentimentScores:
    return SentimentScores("neutral", PolarityScores(0.2, 0.2, 0.6), confidence=0.6)


def _nodes() -> dict[str, Any]:
    info = FakeInfo(name="fake", version="1", device="cpu")
    sentiment = FakeNode(
        "Sentiment",
        predict_many=lambda texts: [answer(_sentiment()) for _ in texts],
        info=info,
    )
    embedder = FakeNode(
        "Embedder",
        predict_many=lambda texts: [answer(_unit_vector(text)) for text in texts],
        info=info,
    )
    recommender = LocalNode("Recommender", lambda: Recommender.func_or_class(embedder, "sp:fuzz:"))
    return {
        "moderation": FakeNode(
            "TextModeration",
            predict_many=lambda texts: [answer({"offensive": 0.3}) for _ in texts],
            info=info,
        ),
        "sentiment": sentiment,
        "nsfw": FakeNode(
            "NsfwDetector", predict=answer(NsfwResult(0.9, 0.05, 0.05, ())), info=info
        ),
        "tagger": FakeNode(
            "ImageTagger",
            predict=answer(ImageTags(tags=(), faces=Faces(0, ()), models=("fake",))),
            info=info,
        ),
        "detector": FakeNode("ObjectDetector", predict=answer(DetectedObjects(())), info=info),
        "aspects": FakeNode("AspectSentiment", predict=answer(AspectAnswer("given")), info=info),
        "embedder": embedder,
        "recommender": recommender,
        "trends": LocalNode("Trends", lambda: Trends.func_or_class(recommender, sentiment)),
        "replies": FakeNode("SmartReply", predict=answer(ReplyDecision(suggestions=())), info=info),
    }


async def _no_dns(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, f"{host}: not resolved in the fuzz run")


@pytest.fixture(scope="module")
def schema() -> Iterator[Any]:
    # In-process stores: the Recommender must not reach a developer's Redis or MongoDB.
    saved = {name: os.environ.pop(name, None) for name in ("REDIS_URL", "MONGODB_URL")}
    try:
        state = fake_state(_nodes())
        state.image_fetcher = ImageFetcher(resolver=_no_dns)
        yield schemathesis.openapi.from_asgi("/openapi.json", build_fastapi_app(state))
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def test_no_generated_request_gets_a_server_error(schema: Any) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, "every route is in the schema"
    per_operation = max(1, FUZZ_CASES // len(operations))
    failures: list[str] = []
    cases = 0
    statuses: Counter[int] = Counter()

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            try:
                response = case.call(headers={"X-API-Key": TEST_KEY})
                statuses[response.status_code] += 1
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as failure:  # noqa: BLE001 - an unhandled app error is a finding
                # Collected, not raised: one run lists every route that fails.
                failures.append(f"{case.as_curl_command()}\n  -> {str(failure)[:400]}")

        run()

    print(
        f"\nschemathesis: {cases} cases over {len(operations)} operations, "
        f"statuses {sorted(statuses.items())}"
    )
    assert cases >= FUZZ_CASES // 2, f"hypothesis generated only {cases} cases"
    # The key is accepted and valid requests are among the cases: not everything is a 4xx.
    assert statuses[200] > 0, statuses
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
