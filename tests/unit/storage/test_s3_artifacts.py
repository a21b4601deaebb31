"""MLflow artifacts on S3-compatible storage, against a local S3 server (moto's server mode).

Unit level, no Ray: the tracking store is a local sqlite file, the artifact root an
``s3://`` bucket on a moto server started here (a child process on a free port). A head is
logged and registered through the jobs' code path (`pipelines.registry.log_and_register` with
the text-head pyfunc wrapper) and loaded back the way a serving node loads a registered head
(`deployments.nodes.base.load_registered_head` -> `storage.registry.fetch_registered_head`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from configs.nodes import RegisteredModelRef
from configs.pipelines import MlflowConfig
from configs.settings import Settings
from models.answers import ModelInfo
from models.heads import MODERATION_HEAD_LABELS, HeadConfig, TextHead, load_head, save_head
from tests.fixtures.s3_server import S3Server, moto_s3_server

BUCKET = "socialplay-models"
PREFIX = "mlflow/test"
MODEL_NAME = "heads-moderation-s3"


class FakeEmbedder:
    """Deterministic 384-d vectors: the node's head runs without loading MiniLM."""

    info = ModelInfo("fake-embedder", "0", "cpu", ())

    def embed(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        rows = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3_server(BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite tracking store for the module: creating its tables takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"


@pytest.fixture
def s3_environment(
    s3: S3Server, tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The service's environment for a sqlite tracking store with artifacts on the bucket."""
    state = tmp_path / "state"
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(state))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", f"s3://{BUCKET}/{PREFIX}")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return state


def _register_head(head_dir: Path, experiment: str) -> str:
    from pipelines.registry import PyfuncModel, RunRecord, ServingScore, log_and_register
    from pipelines.text_heads import head_pyfunc_model

    labels = list(MODERATION_HEAD_LABELS)
    registration = log_and_register(
        MlflowConfig(registered_model_name=MODEL_NAME, experiment_name=experiment),
        "s3-artifacts-test",
        RunRecord(params={"hidden_dim": 8}, history=[], metrics={"val_auc": 0.5}, reports=[]),
        PyfuncModel(
            python_model=head_pyfunc_model(),
            artifacts={"head": str(head_dir)},
            input_example=pd.DataFrame({"text": ["a made-up example post"]}),
            output_example=pd.DataFrame([[0.5] * len(labels)], columns=labels),
            pip_requirements=["torch"],
        ),
        "val_auc",
        0.5,
        lambda: ServingScore(None),
    )
    assert registration.promotion.promoted  # the first version takes the serving alias
    return registration.version


def test_a_registered_head_goes_to_the_bucket_and_a_node_loads_it_back(
    s3: S3Server, s3_environment: Path, tmp_path: Path
) -> None:
    from deployments.nodes.base import load_registered_head
    from storage.registry import SOURCE_REGISTRY, model_source

    torch.manual_seed(0)
    module = TextHead(HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS, hidden_dim=8))
    head_dir = save_head(tmp_path / "trained" / "best_head", module, version="s3-test")
    version = _register_head(head_dir, "s3-artifacts")

    # The checkpoint's bytes are in the bucket under the configured prefix, not on local disk.
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    keys = [item["Key"] for item in listed.get("Contents", [])]
    weights = [k for k in keys if k.startswith(f"{PREFIX}/") and k.endswith("/best_head/head.pt")]
    assert weights, keys
    assert not (s3_environment / "mlartifacts").exists()

    # A serving node: resolve the alias, download from the bucket, load the head.
    ref = RegisteredModelRef(model_name=MODEL_NAME, alias="serving")
    info = ModelInfo("none", "none", "cpu", ())
    model = load_registered_head("moderation", ref, "cpu", info, embedder=FakeEmbedder())
    assert model is not None
    assert model.info.version == f"{MODEL_NAME}/{version}"
    assert model_source(f"{MODEL_NAME}/{version}") == SOURCE_REGISTRY
    [scores] = model.predict_batch(["a post to score"])
    assert set(scores) == set(MODERATION_HEAD_LABELS)

    downloaded = next((s3_environment / "registry-cache" / MODEL_NAME / version).rglob("head.pt"))
    loaded = load_head(downloaded.parent)
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value), key


def test_a_missing_bucket_fails_the_job_instead_of_registering_nothing(
    s3: S3Server, s3_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job must fail loudly rather than register a version whose files are not stored.
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", f"s3://no-such-bucket-socialplay/{PREFIX}")
    head_dir = save_head(
        tmp_path / "head",
        TextHead(HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS, hidden_dim=8)),
    )
    with pytest.raises(Exception, match="NoSuchBucket|does not exist"):
        _register_head(head_dir, "s3-artifacts-missing-bucket")


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"MLFLOW_ARTIFACT_ROOT": "s3://"}, "MLFLOW_ARTIFACT_ROOT|bucket"),
        ({"MLFLOW_ARTIFACT_ROOT": "s3://Bad_Bucket/x"}, "not a valid S3 bucket name"),
        ({"MLFLOW_ARTIFACT_ROOT": "gs://bucket/x"}, "MLFLOW_ARTIFACT_ROOT='gs://bucket/x'"),
        ({"MLFLOW_ARTIFACT_ROOT": "relative/dir"}, "absolute path"),
        ({"MLFLOW_S3_ENDPOINT_URL": "minio:9000"}, "MLFLOW_S3_ENDPOINT_URL='minio:9000'"),
        ({"MLFLOW_S3_ENDPOINT_URL": "http://minio:9000/bucket"}, "endpoint only"),
        ({"AWS_ACCESS_KEY_ID": "key"}, "AWS_SECRET_ACCESS_KEY is not"),
        ({"AWS_SECRET_ACCESS_KEY": "secret"}, "AWS_ACCESS_KEY_ID is not"),
    ],
)
def test_bad_artifact_store_settings_name_the_variable_and_the_fix(
    environment: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "MLFLOW_ARTIFACT_ROOT",
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings(_env_file=None).artifact_store()  # type: ignore[call-arg]


def test_good_artifact_store_settings_reach_mlflows_s3_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from storage.registry import default_artifact_location, export_artifact_store_environment

    monkeypatch.chdir(tmp_path)  # a .env file here, as an operator would write it
    for name in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", "s3://socialplay-models/mlflow/")
    (tmp_path / ".env").write_text(
        "MLFLOW_S3_ENDPOINT_URL=http://minio:9000\nAWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n"
    )
    store = Settings().artifact_store()
    assert store.is_s3 and store.artifact_root == "s3://socialplay-models/mlflow"
    assert "s" not in repr(store.secret_access_key).replace("SecretStr", "")
    export_artifact_store_environment()
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s"
    assert default_artifact_location("http://mlflow:5000") == "s3://socialplay-models/mlflow"
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT")
    from configs.settings import get_settings

    get_settings.cache_clear()
    assert default_artifact_location("http://mlflow:5000") is None
