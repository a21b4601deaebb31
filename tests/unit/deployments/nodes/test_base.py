"""BatchedNodeMixin.predict_many without Ray: bulk calls go to the model whole, in batches of
at most max_batch_size, concurrent calls merge while the model is busy, one model call runs
at a time, and a failing batch fails only its own callers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from deployments.nodes.base import BatchedNodeMixin
from models.answers import Answer, ModelInfo


class RecordingModel:
    """Remembers the size of every batch; slow enough that calls overlap."""

    def __init__(self, delay_s: float = 0.05, fail_on: str | None = None) -> None:
        self.info = ModelInfo(name="fake", version="v1", device="cpu", labels=("offensive",))
        self.batches: list[list[str]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self._running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def predict_batch(self, items: list[str]) -> list[dict[str, float]]:
        with self._lock:
            self._running += 1
            self.max_running = max(self.max_running, self._running)
        try:
            time.sleep(self.delay_s)
            self.batches.append(list(items))
            if self.fail_on is not None and self.fail_on in items:
                raise RuntimeError("model failed on this batch")
            return [{"offensive": float(len(text))} for text in items]
        finally:
            with self._lock:
                self._running -= 1


class Node(BatchedNodeMixin[str, dict[str, float]]):
    def __init__(self, model: RecordingModel, max_batch_size: int) -> None:
        self.model = model
        self.node_config = self.node_config.model_copy(
            update={
                "batching": self.node_config.batching.model_copy(
                    update={"max_batch_size": max_batch_size}
                )
            }
        )


def scores(answers: list[Answer[dict[str, float]]]) -> list[float]:
    return [answer.result["offensive"] for answer in answers]


def test_a_bulk_call_reaches_the_model_whole_and_in_order() -> None:
    model = RecordingModel(delay_s=0.0)
    node = Node(model, max_batch_size=16)
    texts = [f"text number {i}" + "x" * i for i in range(10)]
    answers = asyncio.run(node.predict_many(texts))
    assert scores(answers) == [float(len(t)) for t in texts]
    assert [len(batch) for batch in model.batches] == [10]
    assert all(answer.model.version == "v1" for answer in answers)


def test_a_call_larger_than_max_batch_size_is_split() -> None:
    model = RecordingModel(delay_s=0.0)
    node = Node(model, max_batch_size=4)
    texts = [str(i) * (i + 1) for i in range(10)]
    answers = asyncio.run(node.predict_many(texts))
    assert scores(answers) == [float(len(t)) for t in texts]
    assert [len(batch) for batch in model.batches] == [4, 4, 2]


def test_calls_waiting_for_a_busy_model_are_merged_into_one_batch() -> None:
    model = RecordingModel(delay_s=0.1)
    node = Node(model, max_batch_size=32)

    async def scenario() -> list[list[Answer[dict[str, float]]]]:
        first = asyncio.create_task(node.predict_many([f"a{i}" for i in range(8)]))
        await asyncio.sleep(0.02)  # the first batch is running now
        rest = [node.predict_many([f"{name}{i}" for i in range(8)]) for name in "bcd"]
        return [await first, *await asyncio.gather(*rest)]

    answers = asyncio.run(scenario())
    assert [len(batch) for batch in model.batches] == [8, 24]
    assert model.max_running == 1
    # Each caller gets its own texts' answers back.
    for name, own in zip("abcd", answers, strict=True):
        assert scores(own) == [float(len(f"{name}{i}")) for i in range(8)]


def test_a_failed_batch_fails_its_callers_and_the_next_call_works() -> None:
    model = RecordingModel(delay_s=0.0, fail_on="boom")
    node = Node(model, max_batch_size=8)

    async def scenario() -> list[Answer[dict[str, float]]]:
        with pytest.raises(RuntimeError, match="model failed"):
            await node.predict_many(["fine", "boom"])
        return await node.predict_many(["fine again"])

    assert scores(asyncio.run(scenario())) == [10.0]


def test_bulk_and_single_batches_never_run_the_model_at_once() -> None:
    model = RecordingModel(delay_s=0.05)
    node = Node(model, max_batch_size=8)

    async def scenario() -> None:
        # _run_model is what the @serve.batch method calls for single texts.
        await asyncio.gather(
            node.predict_many(["x", "y"]), node._run_model(["single"]), node._run_model(["z"])
        )

    asyncio.run(scenario())
    assert model.max_running == 1
    assert sorted(len(batch) for batch in model.batches) == [1, 1, 2]


def test_a_new_max_batch_size_takes_effect_for_bulk_calls() -> None:
    model = RecordingModel(delay_s=0.0)
    node = Node(model, max_batch_size=8)

    async def scenario() -> None:
        await node.predict_many([str(i) for i in range(8)])
        node.node_config = node.node_config.model_copy(
            update={"batching": node.node_config.batching.model_copy(update={"max_batch_size": 3})}
        )
        await node.predict_many([str(i) for i in range(8)])

    asyncio.run(scenario())
    assert [len(batch) for batch in model.batches] == [8, 3, 3, 2]
