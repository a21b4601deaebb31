"""Embed once (models/text_vectors.py, storage/vector_store.py, deployments/nodes/text_vectors.py),
without Ray.

A counting fake encoder stands in for MiniLM: the tests check what it was asked to encode.
Redis tests use the shared server with their own key prefix and delete their keys.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import redis
import torch
from pydantic import ValidationError
from ray.serve.deployment import Deployment

from configs.app import AppArgs
from configs.nodes import TextVectorCacheConfig
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import ModelInfo
from models.embeddings import text_hash
from models.heads import MODERATION_HEAD_LABELS, HeadConfig, HeadModerator, TextHead, save_head
from models.text_vectors import CachingEmbedder, LocalVectorStore, encoder_id
from storage.vector_store import (
    RedisVectorStore,
    VectorStoreUnavailableError,
    open_text_vector_store,
)
from tests.fixtures.redis_server import shared_redis_or_skip, unique_prefix

TEXTS = ["what a lovely morning run", "you absolute idiot", "the jazz night was great"]


class CountingEncoder:
    """Deterministic unit 384-d vectors from a text's bytes; remembers every call."""

    def __init__(self, version: str = "v1", max_length: int = 256) -> None:
        self.info = ModelInfo("fake-minilm", version, "cpu", ())
        self.max_length = max_length
        self.calls: list[list[str]] = []

    @property
    def encoded(self) -> list[str]:
        """Every text encoded so far, in call order."""
        return [text for call in self.calls for text in call]

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int(text_hash(text)[:8], 16) + int(self.info.version.strip("v") or 0)
            vector = np.random.default_rng(seed).normal(size=384).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)


class BrokenStore:
    """A store whose every call fails, like Redis going away mid-request."""

    def get_many(self, keys: Any) -> list[np.ndarray | None]:
        raise ConnectionError("redis went away")

    def put_many(self, vectors: Any) -> None:
        raise ConnectionError("redis went away")

    def info(self) -> dict[str, object]:
        return {"backend": "broken"}


def stats(embedder: CachingEmbedder) -> tuple[object, ...]:
    """(texts, hits, encoded, duplicates, store_errors)."""
    info = embedder.stats()
    return tuple(info[k] for k in ("texts", "hits", "encoded", "duplicates", "store_errors"))


# ---- CachingEmbedder over the in-process store -------------------------------------------


def test_a_text_embedded_by_one_feature_is_not_encoded_again_by_another() -> None:
    # Two nodes (a moderation head, then the recommender's Embedder) on one store.
    store = LocalVectorStore(100)
    encoder = CountingEncoder()
    moderation = CachingEmbedder(encoder, store)
    recommender = CachingEmbedder(encoder, store)

    first = moderation.embed(TEXTS)
    second = recommender.embed(TEXTS)

    assert encoder.encoded == TEXTS
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(second, CountingEncoder().embed(TEXTS))
    assert second.dtype == np.float32 and second.shape == (3, 384)
    assert stats(moderation) == (3, 0, 3, 0, 0)
    assert stats(recommender) == (3, 3, 0, 0, 0)


def test_rows_keep_input_order_with_duplicates_and_mixed_hits() -> None:
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, LocalVectorStore(100))
    embedder.embed(["b"])
    texts = ["a", "b", "a", "c", "b"]

    rows = embedder.embed(texts)

    # Only the misses, each distinct text once, in first-seen order.
    assert encoder.calls == [["b"], ["a", "c"]]
    np.testing.assert_array_equal(rows, CountingEncoder().embed(texts))
    assert stats(embedder) == (6, 1, 3, 2, 0)
    assert embedder.predict_batch(["c", "a"]) == CountingEncoder().embed(["c", "a"]).tolist()


def test_a_new_encoder_version_or_truncation_never_reads_old_vectors() -> None:
    store = LocalVectorStore(100)
    CachingEmbedder(CountingEncoder("v1"), store).embed(TEXTS)

    v2 = CountingEncoder("v2")
    rows = CachingEmbedder(v2, store).embed(TEXTS)
    assert v2.encoded == TEXTS
    np.testing.assert_array_equal(rows, CountingEncoder("v2").embed(TEXTS))

    # Same version, another max_length: a long post's vector differs, so the key does too.
    short = CountingEncoder("v1", max_length=128)
    CachingEmbedder(short, store).embed(TEXTS)
    assert short.encoded == TEXTS


def test_the_key_names_encoder_and_text_hash_but_not_the_text() -> None:
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, LocalVectorStore(10))
    key = embedder.key("you absolute idiot")
    assert key == f"{encoder_id(encoder.info, 'max_length=256')}:{text_hash('you absolute idiot')}"
    assert "idiot" not in key
    assert embedder.stats()["encoder"] == {
        "name": "fake-minilm",
        "version": "v1",
        "variant": "max_length=256",
        "id": key.split(":")[0],
    }


def test_store_errors_fall_back_to_encoding_and_are_counted() -> None:
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, BrokenStore())

    rows = embedder.embed(TEXTS)

    np.testing.assert_array_equal(rows, CountingEncoder().embed(TEXTS))
    assert encoder.encoded == TEXTS
    # One failed read and one failed write.
    assert stats(embedder) == (3, 0, 3, 0, 2)
    assert embedder.stats()["last_error"] == "ConnectionError: redis went away"


def test_a_stored_value_of_the_wrong_shape_is_re_encoded() -> None:
    store = LocalVectorStore(10)
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, store)
    store.put_many({embedder.key("a"): np.zeros(7, dtype=np.float32)})

    rows = embedder.embed(["a"])

    assert encoder.encoded == ["a"]
    np.testing.assert_array_equal(rows, CountingEncoder().embed(["a"]))


def test_empty_input_and_non_text_items() -> None:
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, LocalVectorStore(10))
    assert embedder.embed([]).shape == (0, 384)
    assert encoder.calls == []
    with pytest.raises(TypeError, match=r"texts\[1\] is int; send a str"):
        embedder.embed(["fine", 3])  # type: ignore[list-item]


def test_the_in_process_store_is_a_bounded_lru() -> None:
    store = LocalVectorStore(3)
    vectors = {key: np.full(384, i, dtype=np.float32) for i, key in enumerate("abcd")}
    store.put_many({k: vectors[k] for k in "abc"})
    store.get_many(["a"])  # "a" is now the most recently used, "b" the least
    store.put_many({"d": vectors["d"]})

    assert len(store) == 3
    found = store.get_many(["a", "b", "c", "d"])
    assert found[1] is None
    assert all(v is not None for i, v in enumerate(found) if i != 1)
    assert store.info() == {"backend": "in-process", "entries": 3, "max_entries": 3}
    with pytest.raises(ValueError, match="max_entries=0"):
        LocalVectorStore(0)


def test_a_real_head_scores_the_same_through_the_cache(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TextHead(HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS, hidden_dim=16))
    directory = save_head(tmp_path / "head", module, version="v-test")
    plain = HeadModerator.load(directory, "cpu", embedder=CountingEncoder())
    encoder = CountingEncoder()
    store = LocalVectorStore(100)
    cached = HeadModerator.load(directory, "cpu", embedder=CachingEmbedder(encoder, store))

    expected = plain.predict_batch(TEXTS)
    assert cached.predict_batch(TEXTS) == expected
    assert cached.predict_batch(TEXTS[::-1]) == expected[::-1]
    # The recommender's ingest then finds every vector the head computed.
    recommender = CachingEmbedder(encoder, store)
    recommender.predict_batch(TEXTS)
    assert encoder.encoded == TEXTS
    assert stats(recommender) == (3, 3, 0, 0, 0)


# ---- Redis store -----------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix) on the shared Redis; deletes exactly this test's keys afterwards."""
    url = shared_redis_or_skip()
    prefix = unique_prefix()
    yield url, prefix
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_shares_vectors_between_replicas_bit_for_bit(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    config = TextVectorCacheConfig(key_prefix=prefix, ttl_s=60)
    # One store (one connection pool) per replica, as in production.
    first_store, second_store = RedisVectorStore(url, config), RedisVectorStore(url, config)
    encoder = CountingEncoder()
    first = CachingEmbedder(encoder, first_store).embed(TEXTS)
    second_embedder = CachingEmbedder(encoder, second_store)
    second = second_embedder.embed(TEXTS)

    assert encoder.encoded == TEXTS
    np.testing.assert_array_equal(first, second)
    assert stats(second_embedder) == (3, 3, 0, 0, 0)
    client = redis.Redis.from_url(url)
    keys = [k.decode() for k in client.scan_iter(match=f"{prefix}*")]
    assert len(keys) == 3 and all("idiot" not in k for k in keys)
    assert 0 < client.pttl(keys[0]) <= 60_000
    assert len(client.get(keys[0]) or b"") == 384 * 4
    # A value of the wrong size (another writer, a truncated copy) reads as absent.
    client.set(keys[0], b"\x00" * 12)
    assert second_store.get_many([keys[0][len(prefix) :]]) == [None]
    client.close()
    assert second_store.info()["state"] == "up"
    first_store.close()
    second_store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_redis_is_skipped_for_retry_s_and_requests_still_answer() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    store = RedisVectorStore(url, TextVectorCacheConfig(retry_s=60, socket_timeout_s=0.2))
    encoder = CountingEncoder()
    embedder = CachingEmbedder(encoder, store)

    first = embedder.embed(TEXTS)
    second = embedder.embed(TEXTS)

    np.testing.assert_array_equal(first, second)
    assert encoder.calls == [TEXTS, TEXTS]
    info = embedder.stats()
    # A read and a write per call; only the first read tried to connect, the rest fail fast.
    assert info["store_errors"] == 4
    assert str(info["last_error"]).startswith("VectorStoreUnavailableError")
    store_info = info["store"]
    assert isinstance(store_info, dict) and store_info["state"] == "down"
    assert "ConnectionError" in str(store_info["last_error"])
    with pytest.raises(VectorStoreUnavailableError):
        store.get_many(["k"])


# ---- config and node wiring ------------------------------------------------------------------


def test_config_defaults_and_unknown_keys() -> None:
    config = AppArgs().text_vectors
    assert config.enabled is True and config.key_prefix == "sp:vec:"
    with pytest.raises(ValidationError, match="extra"):
        TextVectorCacheConfig.model_validate({"enabled": True, "max_entries": 5})
    with pytest.raises(ValidationError, match="ttl_s"):
        TextVectorCacheConfig(ttl_s=0)


def test_the_store_is_redis_only_when_a_url_is_set() -> None:
    config = TextVectorCacheConfig(local_max_entries=7)
    local = open_text_vector_store(config, redis_url="")
    assert isinstance(local, LocalVectorStore) and local.max_entries == 7
    assert "REDIS_URL is empty" in str(local.info()["reason"])
    remote = open_text_vector_store(config, redis_url="redis://127.0.0.1:1/0")
    assert isinstance(remote, RedisVectorStore) and remote.info()["backend"] == "redis"


class VectorNode(TextVectorNodeMixin):
    """A node with the mixin and a head-like model, outside Serve."""

    def __init__(self, args: dict[str, Any] | None, encoder: CountingEncoder) -> None:
        self._configure_text_vectors(args)
        # As the nodes build a head's embedder (`_head_embedder` wraps the shared MiniLM).
        embedder = self._cache_encoder(encoder)
        self.model = SimpleNamespace(info=ModelInfo("head", "1", "cpu", ()), embedder=embedder)


@pytest.fixture
def replica_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # info() names the replica; outside Serve there is none.
    context = SimpleNamespace(replica_id=SimpleNamespace(unique_id="replica-1"))
    monkeypatch.setattr("ray.serve.get_replica_context", lambda: context)
    monkeypatch.setenv("REDIS_URL", "")


@pytest.mark.usefixtures("replica_context")
def test_nodes_wrap_their_encoder_only_when_the_args_turn_it_on() -> None:
    encoder = CountingEncoder()
    on = VectorNode({}, encoder)
    assert isinstance(on.model.embedder, CachingEmbedder)  # type: ignore[attr-defined]
    on.model.embedder.embed(TEXTS)  # type: ignore[attr-defined]
    vectors = on.info().text_vectors
    assert isinstance(vectors, dict)
    assert vectors["state"] == "on" and vectors["encoded"] == 3
    assert isinstance(vectors["store"], dict) and vectors["store"]["backend"] == "in-process"

    # Bound without args (the embedding benchmark's app), or turned off: the raw encoder.
    for args, reason in ((None, "without text_vectors"), ({"enabled": False}, "false")):
        node = VectorNode(args, encoder)
        assert node.model.embedder is encoder  # type: ignore[attr-defined]
        off = node.info().text_vectors
        assert isinstance(off, dict) and off["state"] == "off" and reason in str(off["reason"])


def node_class(deployment: object) -> Any:
    """The class under ``@serve.deployment`` (mypy sees the undecorated class)."""
    return cast(Deployment, deployment).func_or_class


_TINY_BANK = """\
version: 1
intents:
  welcome:
    examples: ["Thanks a lot!"]
    replies: ["You're welcome!"]
  "yes":
    examples: ["Are you coming tonight?"]
    replies: ["Yes!"]
  "no":
    examples: ["Is it raining there?"]
    replies: ["Nope."]
"""


@pytest.mark.usefixtures("replica_context")
def test_real_nodes_embed_a_post_once_across_moderation_replies_and_ingest(
    tmp_path: Path, redis_prefix: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production node classes (no Ray), real MiniLM, vectors shared through Redis."""
    from deployments.nodes.embedder import Embedder
    from deployments.nodes.replies import SmartReply
    from deployments.nodes.text_classifier import TextClassifier
    from models.embeddings import MiniLMEmbedder
    from models.replies import ReplyQuery

    url, prefix = redis_prefix
    monkeypatch.setenv("REDIS_URL", url)
    args = {"key_prefix": prefix}
    torch.manual_seed(0)
    module = TextHead(HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS, hidden_dim=8))
    head_dir = save_head(tmp_path / "head", module, version="v-test")
    (tmp_path / "bank.yaml").write_text(_TINY_BANK, encoding="utf-8")

    moderation = node_class(TextClassifier)(
        "moderation", {"kind": "head", "path": str(head_dir), "device": "cpu"}, args
    )
    replies = node_class(SmartReply)(
        {"enabled": True, "device": "cpu", "bank_path": str(tmp_path / "bank.yaml")}, args
    )
    embedder = node_class(Embedder)({"device": "cpu"}, args)

    moderation.model.predict_batch(TEXTS)  # the post arrives: moderation embeds it
    replies.model.predict_batch([ReplyQuery(message=TEXTS[0], limit=3)])
    vectors = embedder.model.predict_batch(TEXTS)  # the recommender ingests it

    reference = MiniLMEmbedder.load(device="cpu").embed(TEXTS)
    np.testing.assert_allclose(np.array(vectors, dtype=np.float32), reference, atol=1e-6)
    moderation_info = moderation.info().text_vectors
    assert moderation_info["encoded"] == 3 and moderation_info["store"]["backend"] == "redis"
    reply_info = replies.info().text_vectors
    # The bank's 6 texts are encoded (and stored) at start; the message is a hit.
    assert (reply_info["encoded"], reply_info["hits"]) == (6, 1)
    ingest_info = embedder.info().text_vectors
    assert (ingest_info["texts"], ingest_info["hits"], ingest_info["encoded"]) == (3, 3, 0)
