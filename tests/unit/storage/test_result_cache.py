"""The node result cache (storage/result_cache.py via BatchedNodeMixin._run_model) and
registry alias following, without Ray: a small BatchedNodeMixin subclass with a counting model.

Redis tests use the shared server with their own key prefix; the outage test runs a private
redis-server, kills it, and starts another on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from configs.nodes import RegisteredModelRef
from deployments.nodes import base as _node
from deployments.nodes.base import BatchedNodeMixin, follow_alias
from models.answers import Answer, ModelInfo, ModelRef
from models.sentiment import PolarityScores, SentimentScores
from storage.result_cache import cache_key
from tests.fixtures.redis_server import shared_redis_or_skip, throwaway_redis, unique_prefix


class CountingModel:
    """A fake moderation model: remembers every text it scored."""

    def __init__(self, version: str = "v1", name: str = "fake-moderator") -> None:
        self.info = ModelInfo(name=name, version=version, device="cpu", labels=("offensive",))
        self.calls: list[str] = []

    def predict_batch(self, items: list[Any]) -> list[Any]:
        self.calls.extend(items)
        return [{"offensive": len(text) / 100, "version": self.info.version} for text in items]


class FakeBatched:
    """Stands in for the @serve.batch method (which needs a replica context)."""

    def __init__(self) -> None:
        self.max_batch_size = 0
        self.wait_s = 0.0

    def set_max_batch_size(self, new_max_batch_size: int) -> None:
        self.max_batch_size = new_max_batch_size

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None:
        self.wait_s = new_batch_wait_timeout_s


class CacheNode(BatchedNodeMixin):
    result_cache_allowed = True
    model: CountingModel

    def cache_info(self) -> dict[str, Any]:
        """``info().cache``, typed for the assertions."""
        cache = self.info().cache
        assert isinstance(cache, dict)
        return cache

    def __init__(self, model: CountingModel | None = None) -> None:
        self.model = model or CountingModel()
        self.predict = FakeBatched()


class UncachedNode(CacheNode):
    result_cache_allowed = False


@pytest.fixture(autouse=True)
def replica_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # info() names the replica; outside Serve there is none.
    context = SimpleNamespace(replica_id=SimpleNamespace(unique_id="replica-1"))
    monkeypatch.setattr("ray.serve.get_replica_context", lambda: context)


@pytest.fixture
def shared_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(url, prefix) on the shared Redis; deletes exactly this test's keys afterwards."""
    url = shared_redis_or_skip()
    prefix = unique_prefix()
    monkeypatch.setenv("REDIS_URL", url)
    yield url, prefix
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def results(answers: list[Answer[Any]]) -> list[Any]:
    return [answer.result for answer in answers]


def cache_config(prefix: str = "sp-unit:", **overrides: Any) -> dict[str, Any]:
    return {"cache": {"enabled": True, "key_prefix": prefix, **overrides}}


def test_key_depends_on_model_version_and_input_and_hides_the_text() -> None:
    key = cache_key("p:", "TextModeration", "m", "v1", "you idiot")
    assert key.startswith("p:") and "idiot" not in key
    assert key == cache_key("p:", "TextModeration", "m", "v1", "you idiot")
    assert key != cache_key("p:", "TextModeration", "m", "v2", "you idiot")
    assert key != cache_key("p:", "Sentiment", "m", "v1", "you idiot")
    assert key != cache_key("p:", "TextModeration", "m", "v1", "you idiot!")
    # Load options that change answers (e.g. the sentiment neutral band) change the key too.
    assert key != cache_key("p:", "TextModeration", "m", "v1", "you idiot", '{"stride": 32}')


def test_in_process_cache_answers_the_second_call_without_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "")

    async def scenario() -> None:
        node = CacheNode()
        await node.reconfigure(cache_config())
        first = await node._run_model(["hello there", "you idiot"])
        second = await node._run_model(["you idiot", "hello there", "new text"])
        assert node.model.calls == ["hello there", "you idiot", "new text"]
        assert results(second)[:2] == results(first)[::-1]
        assert second[0].model == ModelRef(name="fake-moderator", version="v1", device="cpu")
        cache = node.cache_info()
        assert cache["backend"] == "in-process" and cache["state"] == "up"
        assert (cache["hits"], cache["misses"], cache["errors"]) == (2, 3, 0)
        assert "REDIS_URL is empty" in cache["reason"]

    asyncio.run(scenario())


def test_in_process_cache_is_bounded_and_computes_a_repeated_text_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "")

    async def scenario() -> None:
        node = CacheNode()
        await node.reconfigure(cache_config(local_max_entries=2))
        answers = await node._run_model(["a", "a", "b", "c"])
        assert node.model.calls == ["a", "b", "c"]
        assert results(answers)[0] == results(answers)[1]
        assert node.cache_info()["entries"] == 2
        await node._run_model(["a"])  # evicted (least recently used): computed again
        assert node.model.calls == ["a", "b", "c", "a"]

    asyncio.run(scenario())


def test_redis_cache_is_shared_and_a_new_model_version_misses(
    shared_redis: tuple[str, str],
) -> None:
    url, prefix = shared_redis

    async def scenario() -> None:
        first_replica, second_replica = CacheNode(), CacheNode()
        for node in (first_replica, second_replica):
            await node.reconfigure(cache_config(prefix))
        computed = await first_replica._run_model(["hello", "world"])
        cached = await second_replica._run_model(["world", "hello"])
        assert second_replica.model.calls == []
        assert results(cached) == results(computed)[::-1]
        assert second_replica.cache_info()["backend"] == "redis"
        assert second_replica.cache_info()["hits"] == 2

        # Other load options (same version): other keys.
        second_replica.result_cache_variant = '{"neutral_threshold": 0.2}'
        await second_replica._run_model(["hello"])
        assert second_replica.model.calls == ["hello"]
        second_replica.result_cache_variant = ""

        # A new version: same texts, new keys, so the model answers and says so.
        second_replica.model = CountingModel(version="v2")
        fresh = await second_replica._run_model(["hello"])
        assert second_replica.model.calls == ["hello"]  # the new model's first call
        assert fresh[0].result["version"] == "v2"
        assert fresh[0].model.version == "v2"
        for node in (first_replica, second_replica):
            await node.result_cache.aclose()  # type: ignore[union-attr]

    asyncio.run(scenario())
    assert len(list(redis.Redis.from_url(url).scan_iter(match=f"{prefix}*"))) == 4


def test_redis_entries_expire_after_ttl(shared_redis: tuple[str, str]) -> None:
    url, prefix = shared_redis

    async def scenario() -> None:
        node = CacheNode()
        await node.reconfigure(cache_config(prefix, ttl_s=0.5))
        await node._run_model(["short lived"])
        (key,) = redis.Redis.from_url(url).keys(f"{prefix}*")
        assert 0 < redis.Redis.from_url(url).pttl(key) <= 500
        await node._run_model(["short lived"])
        assert node.model.calls == ["short lived"]
        await asyncio.sleep(0.8)
        await node._run_model(["short lived"])
        assert node.model.calls == ["short lived", "short lived"]
        await node.result_cache.aclose()  # type: ignore[union-attr]

    asyncio.run(scenario())


def _redis_on(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            return process
        except redis.RedisError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


def test_dead_redis_is_skipped_reported_and_used_again_once_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with throwaway_redis() as (url, process):
        monkeypatch.setenv("REDIS_URL", url)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        restarted: subprocess.Popen[bytes] | None = None

        async def scenario() -> None:
            nonlocal restarted
            node = CacheNode()
            await node.reconfigure(cache_config(unique_prefix(), retry_s=0.5))
            before = await node._run_model(["cached text"])
            assert results(await node._run_model(["cached text"])) == results(before)
            assert node.cache_info()["state"] == "up"

            process.kill()
            process.wait(timeout=10)
            during = await node._run_model(["cached text", "another"])
            assert results(during)[0] == results(before)[0]
            assert node.model.calls == ["cached text", "cached text", "another"]
            cache = node.cache_info()
            assert cache["state"] == "down" and cache["errors"] == 2
            assert "ConnectionError" in cache["last_error"]
            # Within retry_s Redis is not even tried: still answered, still counted.
            await node._run_model(["third"])
            assert node.cache_info()["errors"] == 3

            restarted = _redis_on(port)
            await asyncio.sleep(0.7)
            await node._run_model(["after restart"])
            await node._run_model(["after restart"])
            cache = node.cache_info()
            assert cache["state"] == "up"
            assert node.model.calls[-1] == "after restart"
            assert cache["hits"] == 2 and cache["misses"] == 2
            await node.result_cache.aclose()  # type: ignore[union-attr]

        try:
            asyncio.run(scenario())
        finally:
            if restarted is not None:
                restarted.kill()
                restarted.wait(timeout=10)


def test_cache_survives_unrelated_reconfigure_and_rebuilds_on_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "")

    async def scenario() -> None:
        node = CacheNode()
        await node.reconfigure(cache_config())
        await node._run_model(["x"])
        await node.reconfigure({**cache_config(), "batching": {"max_batch_size": 4}})
        assert node.predict.max_batch_size == 4
        await node._run_model(["x"])
        assert node.model.calls == ["x"] and node.cache_info()["hits"] == 1
        await node.reconfigure(cache_config(ttl_s=10))
        assert node.cache_info()["hits"] == 0
        await node._run_model(["x"])  # a new, empty cache
        assert node.model.calls == ["x", "x"]
        await node.reconfigure({})
        assert node.result_cache is None and node.cache_info() == {"state": "off"}
        await node._run_model(["x"])
        assert node.model.calls == ["x", "x", "x"]

    asyncio.run(scenario())


def test_nodes_that_did_not_opt_in_refuse_the_cache() -> None:
    node = UncachedNode()
    with pytest.raises(ValueError, match="cache.*UncachedNode"):
        asyncio.run(node.reconfigure(cache_config()))
    assert node.info().cache is None
    assert "cache" not in node.info().as_json()


def test_results_that_are_not_json_are_answered_but_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "")

    class NanModel(CountingModel):
        def predict_batch(self, items: list[Any]) -> list[Any]:
            self.calls.extend(items)
            return [{"offensive": float("nan")} for _ in items]

    async def scenario() -> None:
        node = CacheNode(NanModel())
        await node.reconfigure(cache_config())
        await node._run_model(["x"])
        await node._run_model(["x"])
        assert node.model.calls == ["x", "x"]
        cache = node.cache_info()
        assert cache["errors"] == 2 and "JSON" in cache["last_error"]

    asyncio.run(scenario())


class SentimentLikeModel(CountingModel):
    """Answers typed results, as the Sentiment node's models do."""

    def predict_batch(self, items: list[Any]) -> list[Any]:
        self.calls.extend(items)
        return [
            SentimentScores("neutral", PolarityScores(0.1, 0.2, None), len(text) / 100)
            for text in items
        ]


class TypedCacheNode(CacheNode):
    result_type = SentimentScores


@pytest.mark.parametrize("backend", ["in-process", "redis"])
def test_typed_results_come_back_from_the_cache_as_the_same_types(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = shared_redis_or_skip() if backend == "redis" else ""
    prefix = unique_prefix()
    monkeypatch.setenv("REDIS_URL", url)

    async def scenario() -> None:
        computing, reading = TypedCacheNode(SentimentLikeModel()), TypedCacheNode()
        for node in (computing, reading):
            await node.reconfigure(cache_config(prefix))
        computed = await computing._run_model(["hello there"])
        # The in-process LRU belongs to one replica: read it back through the same node.
        other = reading if backend == "redis" else computing
        cached = await other._run_model(["hello there"])
        assert other.cache_info()["hits"] == 1
        assert isinstance(cached[0].result, SentimentScores)
        assert cached[0].result == computed[0].result
        assert cached[0].result.scores.neutral is None
        for node in (computing, reading):
            await node.result_cache.aclose()  # type: ignore[union-attr]

    try:
        asyncio.run(scenario())
    finally:
        if url:
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)


# ---- alias following ------------------------------------------------------------------------
REF = RegisteredModelRef(model_name="heads-x", alias="serving", tracking_uri="sqlite:///x.db")


def test_follow_alias_swaps_once_per_new_version_and_outlives_registry_errors() -> None:
    answers: list[str | Exception] = ["1", LookupError("registry down"), "1", "2", "2"]
    serving = {"version": "heads-x/1"}
    swapped: list[RegisteredModelRef] = []
    reports: list[str | None] = []

    def resolve(ref: RegisteredModelRef) -> str:
        answer = answers.pop(0) if answers else "2"
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def swap(pinned: RegisteredModelRef) -> None:
        swapped.append(pinned)
        serving["version"] = f"{pinned.model_name}/{pinned.version}"

    async def scenario() -> None:
        task = asyncio.create_task(
            follow_alias(REF, 0.01, lambda: serving["version"], swap, reports.append, resolve)
        )
        while answers:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert swapped == [
        RegisteredModelRef(model_name="heads-x", version=2, tracking_uri="sqlite:///x.db")
    ]
    assert serving["version"] == "heads-x/2"
    assert reports[1] == "LookupError: registry down" and reports[-1] is None


class HeadNode(CacheNode):
    head_task = "moderation"


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The alias's current version; load_registered_head builds a CountingModel of it."""
    registry = {"serving": "1"}

    def resolve(ref: RegisteredModelRef) -> str:
        return registry["serving"] if ref.alias is not None else str(ref.version)

    def load(
        task: str, ref: RegisteredModelRef, device: str, current: Any = None, embedder: Any = None
    ) -> Any:
        label = f"{ref.model_name}/{resolve(ref)}"
        if current is not None and current.version == label:
            return None
        return CountingModel(version=label, name=ref.model_name)

    monkeypatch.setattr(_node, "resolve_registered_version", resolve)
    monkeypatch.setattr(_node, "load_registered_head", load)
    return registry


async def _wait_for_version(node: BatchedNodeMixin, version: str) -> None:
    deadline = time.monotonic() + 10
    while node.model.info.version != version:
        assert time.monotonic() < deadline, f"still {node.model.info.version}"
        await asyncio.sleep(0.02)


def test_node_follows_the_alias_of_its_init_registry_ref(fake_registry: dict[str, str]) -> None:
    async def scenario() -> None:
        node = HeadNode(CountingModel(version="heads-x/1", name="heads-x"))
        node.init_registry_ref = REF
        await node.reconfigure({"registry_poll_s": 0.02})
        first_task = node._alias_task
        follow = node.info().alias_follow
        assert follow is not None and follow.running is True
        assert (follow.alias, follow.last_error) == ("serving", None)

        fake_registry["serving"] = "2"
        await _wait_for_version(node, "heads-x/2")
        answer = await node._run_model(["hello"])
        assert answer[0].model.version == "heads-x/2"

        # A reconfigure replaces the follower (one per replica); poll 0 stops it.
        await node.reconfigure({"registry_poll_s": 0.02})
        assert node._alias_task is not first_task and first_task is not None
        await asyncio.sleep(0)
        assert first_task.cancelled()
        await node.reconfigure({"registry_poll_s": 0})
        assert node._alias_task is None and node.info().alias_follow is None
        fake_registry["serving"] = "3"
        await asyncio.sleep(0.1)
        assert node.model.info.version == "heads-x/2"

    asyncio.run(scenario())


def test_node_follows_the_alias_of_user_config_model(fake_registry: dict[str, str]) -> None:
    async def scenario() -> None:
        node = HeadNode()
        await node.reconfigure({"model": REF.model_dump(), "registry_poll_s": 0.02})
        assert node.model.info.version == "heads-x/1"
        fake_registry["serving"] = "2"
        await _wait_for_version(node, "heads-x/2")
        # A pinned version is not followed.
        await node.reconfigure(
            {"model": {"model_name": "heads-x", "version": 2}, "registry_poll_s": 0.02}
        )
        assert node._alias_task is None

    asyncio.run(scenario())


def test_check_health_starts_following_without_any_reconfigure(
    fake_registry: dict[str, str],
) -> None:
    async def scenario() -> None:
        node = HeadNode(CountingModel(version="heads-x/1", name="heads-x"))
        node.init_registry_ref = REF
        assert node._alias_task is None
        await node.check_health()
        fake_registry["serving"] = "2"
        await _wait_for_version(node, "heads-x/2")
        node._stop_alias_follow()

    # The default poll is 30 s: shorten it through the config the node reads.
    HeadNode.node_config = HeadNode.node_config.model_copy(update={"registry_poll_s": 0.02})
    try:
        asyncio.run(scenario())
    finally:
        del HeadNode.node_config
