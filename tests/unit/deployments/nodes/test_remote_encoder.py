"""One text encoder for the graph: the remote encoder and which nodes get the Embedder's handle
(no Ray instance: a fake handle, and the graph is only built)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from configs.app import AppArgs
from deployments.app import build_graph, shares_text_encoder
from deployments.nodes.remote_encoder import RemoteTextEncoder
from models.answers import ModelInfo

INFO = ModelInfo("all-MiniLM-L6-v2", "v1", "cpu", ())


class _Response:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout_s: float | None = None) -> Any:
        # What Serve does: a blocking wait on a thread that runs an event loop is refused.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.value
        raise RuntimeError("Sync methods should not be called from within an asyncio event loop")


class _Method:
    def __init__(self, answer: Any, calls: list[tuple[Any, ...]]) -> None:
        self.answer, self.calls = answer, calls

    def remote(self, *args: Any) -> _Response:
        self.calls.append(args)
        return _Response(self.answer(*args))


class _FakeEmbedderHandle:
    """``embed_many`` answers one row per text: its length, then ones."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.embed_many = _Method(
            lambda texts: np.array([[len(t), 1.0, 1.0] for t in texts], dtype=np.float64),
            self.calls,
        )
        self.encoder_info = _Method(lambda: INFO, self.calls)


def test_embed_asks_the_embedder_once_per_batch_and_keeps_input_order() -> None:
    handle = _FakeEmbedderHandle()
    encoder = RemoteTextEncoder(handle)  # type: ignore[arg-type]
    vectors = encoder.embed(["a", "abcd", "ab"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 3)
    assert vectors[:, 0].tolist() == [1.0, 4.0, 2.0]
    assert handle.calls == [(["a", "abcd", "ab"],)]
    assert encoder.info == INFO and encoder.info == INFO
    assert len(handle.calls) == 2, "the encoder's identity is asked once"


def test_embed_works_on_the_replicas_event_loop_thread() -> None:
    # A node constructor (smart replies embedding their bank) runs on the replica's loop.
    encoder = RemoteTextEncoder(_FakeEmbedderHandle())  # type: ignore[arg-type]

    async def construct() -> np.ndarray:
        return encoder.embed(["hello", "hi"])

    vectors = asyncio.run(construct())
    assert vectors[:, 0].tolist() == [5.0, 2.0]


def test_a_wrong_shaped_answer_is_an_error_naming_the_shape() -> None:
    handle = _FakeEmbedderHandle()
    handle.embed_many = _Method(lambda texts: np.zeros((1, 3)), handle.calls)
    with pytest.raises(ValueError, match=r"shape \(1, 3\) for 2 texts"):
        RemoteTextEncoder(handle).embed(["a", "b"])  # type: ignore[arg-type]


def _bound(app: Any) -> dict[str, Any]:
    """Deployment name -> its bound init args, for every node the ingress is bound to."""
    ingress = app._bound_deployment
    return {
        bound._bound_deployment.name: bound._bound_deployment
        for bound in ingress.init_kwargs.values()
        if getattr(bound, "_bound_deployment", None) is not None
    }


def test_the_default_graph_binds_one_embedder_to_every_head_node() -> None:
    args = AppArgs()
    assert shares_text_encoder(args), "the shipped heads embed with MiniLM"
    nodes = _bound(build_graph(args))
    moderation, sentiment = nodes["TextModeration"], nodes["Sentiment"]
    encoder = moderation.init_args[3]
    assert encoder is not None and encoder._bound_deployment.name == "Embedder"
    assert sentiment.init_args[3] is encoder, "one Embedder, bound once"


def test_embedded_kinds_per_node_and_custom_paths_keep_no_shared_encoder() -> None:
    embedded = AppArgs.model_validate(
        {"moderation_model": {"kind": "profanity"}, "sentiment_model": {"kind": "vader"}}
    )
    assert not shares_text_encoder(embedded)
    assert "Embedder" not in _bound(build_graph(embedded)), "nothing needs MiniLM"
    per_node = AppArgs.model_validate({"text_vectors": {"encoder": "per_node"}})
    assert not shares_text_encoder(per_node)
    assert _bound(build_graph(per_node))["TextModeration"].init_args[3] is None
    custom = AppArgs.model_validate(
        {"recommender": {"enabled": True, "embedding_model": {"path": "/models/minilm-custom"}}}
    )
    assert not shares_text_encoder(custom), "a custom Embedder checkpoint is not the heads'"
    with pytest.raises(ValueError, match="encoder"):
        AppArgs.model_validate({"text_vectors": {"encoder": "everywhere"}})
