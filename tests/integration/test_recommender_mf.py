"""Recommender retraining end to end on the session Ray: export from the running node (user ids
hashed), BPR under Ray Train, MLflow register + promote, and the Recommender node serving the
promoted factors after a live reconfigure (no restart: its in-memory event store survives).

The Embedder is a stand-in (hash-seeded unit vectors): this module is about the collaborative
term, and MiniLM would only add start-up time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import serve

from configs.pipelines import RecommenderMFJobConfig
from deployments.nodes.recommender import Recommender
from models.answers import Answer, ModelRef
from models.embeddings import EMBEDDING_DIM
from models.recommender import Interaction, InteractionPage, NewPost
from pipelines.synthetic_social import generate

pytestmark = pytest.mark.integration

APP_NAME = "mf-test"
MODEL_NAME = "recommender-mf-it"
MODULE = "tests.integration.test_recommender_mf"


@serve.deployment(name="Embedder", ray_actor_options={"num_cpus": 0.05})
class FakeEmbedder:
    """Deterministic unit vectors per text, in the Embedder node's answer shape."""

    def predict_many(self, texts: list[str]) -> list[Answer[list[float]]]:
        answers = []
        model = ModelRef(name="fake-embedder", version="1", device="cpu")
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).normal(size=EMBEDDING_DIM)
            answers.append(Answer((vector / np.linalg.norm(vector)).tolist(), model))
        return answers


def build_app(args: dict[str, Any]) -> Any:
    """Import-path builder (Serve config deploys keep the code version: reconfigure only)."""
    return Recommender.bind(FakeEmbedder.bind())


def _deploy(recommender_user_config: dict[str, Any]) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    config = {
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": None,
                "import_path": f"{MODULE}:build_app",
                "args": {},
                "deployments": [
                    {
                        "name": "Recommender",
                        "ray_actor_options": {"num_cpus": 0.1},
                        "user_config": recommender_user_config,
                    }
                ],
            }
        ]
    }
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("recommender-mf")
    previous = os.environ.get("SOCIALPLAY_STATE_DIR")
    os.environ["SOCIALPLAY_STATE_DIR"] = str(root / "state")
    yield root
    if previous is None:
        os.environ.pop("SOCIALPLAY_STATE_DIR", None)
    else:
        os.environ["SOCIALPLAY_STATE_DIR"] = previous


@pytest.fixture(scope="module")
def handle(serve_port: int, workdir: Path) -> Iterator[Any]:
    """The Recommender node, filled with a small synthetic history."""
    _deploy({"cache_ttl_s": 0})
    recommender = serve.get_deployment_handle("Recommender", app_name=APP_NAME)
    network = generate(n_users=60, n_posts=240, days=8, seed=1)
    posts = [NewPost(**p) for p in network.posts]
    events = [Interaction(**e) for e in network.interactions]
    for start in range(0, len(posts), 120):
        recommender.ingest_posts.remote(posts[start : start + 120]).result()
    for start in range(0, len(events), 2000):
        recommender.ingest_interactions.remote(events[start : start + 2000]).result()
    yield recommender
    serve.delete(APP_NAME)


def _job(workdir: Path) -> RecommenderMFJobConfig:
    return RecommenderMFJobConfig.model_validate(
        {
            "source": "service",
            "app_name": APP_NAME,
            "page_size": 1500,
            "rank": 8,
            "epochs": 8,
            "storage_path": str(workdir / "ray_results"),
            "output_dir": str(workdir / "models"),
            "report_dir": str(workdir / "reports"),
            "mlflow": {
                "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
                "artifact_location": (workdir / "mlartifacts").as_uri(),
                "experiment_name": "test-recommender",
                "registered_model_name": MODEL_NAME,
            },
        }
    )


def test_export_pages_out_hashed_user_ids(handle: Any) -> None:
    page = handle.export_interactions.remote(None, 50, "salt").result()
    assert isinstance(page, InteractionPage)
    assert len(page.interactions) == 50 and page.next_after is not None
    row = page.interactions[0]
    assert set(asdict(row)) == {"event_id", "user_hash", "post_id", "type", "timestamp_s"}
    assert not any(r.user_hash.startswith("user-") for r in page.interactions)
    following = handle.export_interactions.remote(page.next_after, 50, "salt").result()
    assert following.interactions[0].event_id > page.next_after


def test_promoted_factors_are_served_after_live_reconfigure(handle: Any, workdir: Path) -> None:
    from pipelines.recommender_mf import run_job

    candidates = [f"post-{i:05d}" for i in range(200, 240)]
    before = handle.rank_feed.remote("user-0003", candidates, 10).result()
    assert before.terms.collaborative.used is False

    started_s = time.monotonic()
    result = run_job(_job(workdir))
    registration = result.registration
    assert registration.version == "1" and registration.promotion.promoted is True
    assert result.collaborative_model_path is not None
    report = result.report
    assert set(report["test"]) == {"model", "popularity"}  # nothing served before
    assert report["counts"]["test"] > 0
    stored = (result.collaborative_model_path / "factors.npz").read_bytes()
    assert b"user-0003" not in stored  # hashed ids only
    print(f"job took {time.monotonic() - started_s:.1f} s")

    events_before = len(handle.export_interactions.remote(None, 100_000, "s").result().interactions)
    _deploy({"cache_ttl_s": 0, "collaborative_model_path": str(result.collaborative_model_path)})
    after = handle.rank_feed.remote("user-0003", candidates, 10).result()
    collaborative = after.terms.collaborative
    assert collaborative.used is True
    assert collaborative.model_version == f"{MODEL_NAME}/1"
    # Same replica: the in-memory event store still holds every event (no restart).
    events_after = len(handle.export_interactions.remote(None, 100_000, "s").result().interactions)
    assert events_after == events_before > 0
