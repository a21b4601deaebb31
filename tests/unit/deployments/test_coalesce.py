"""CallCoalescer: concurrent single-item calls leave as bounded bulk calls (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployments.coalesce import CallCoalescer


class RecordingBulk:
    """A bulk call that records each batch and answers ``item * 10`` after `delay_s`."""

    def __init__(self, delay_s: float = 0.0, fail_on: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_s = delay_s
        self.fail_on = fail_on or set()

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail_on & set(items):
                raise RuntimeError("node failed")
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1


def test_concurrent_items_share_calls_and_get_their_own_answers() -> None:
    async def scenario() -> tuple[list[int], RecordingBulk]:
        bulk = RecordingBulk(delay_s=0.01)
        coalescer = CallCoalescer(bulk, 8, 0.01, 2)
        answers = await asyncio.gather(*(coalescer.submit(i) for i in range(40)))
        return list(answers), bulk

    answers, bulk = asyncio.run(scenario())
    assert answers == [i * 10 for i in range(40)]
    assert all(len(batch) <= 8 for batch in bulk.batches)
    assert sorted(i for batch in bulk.batches for i in batch) == list(range(40))
    # 40 items, at most 8 per call: 5 calls, not 40.
    assert len(bulk.batches) == 5


def test_a_lone_item_leaves_after_the_wait_without_a_full_batch() -> None:
    async def scenario() -> tuple[int, RecordingBulk]:
        bulk = RecordingBulk()
        coalescer = CallCoalescer(bulk, 16, 0.005, 1)
        return await asyncio.wait_for(coalescer.submit(3), timeout=2.0), bulk

    answer, bulk = asyncio.run(scenario())
    assert answer == 30
    assert bulk.batches == [[3]]


def test_busy_slots_bound_calls_in_flight_and_fill_the_next_batch() -> None:
    async def scenario() -> RecordingBulk:
        bulk = RecordingBulk(delay_s=0.05)
        coalescer = CallCoalescer(bulk, 32, 0.0, 1)
        first = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.01)  # the first call is now in flight alone
        later = [asyncio.ensure_future(coalescer.submit(i)) for i in range(1, 11)]
        await asyncio.gather(first, *later)
        return bulk

    bulk = asyncio.run(scenario())
    assert bulk.max_in_flight == 1
    # The ten items that queued while the only slot was busy left together.
    assert bulk.batches == [[0], list(range(1, 11))]


def test_a_failed_batch_raises_in_each_of_its_callers_only() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        bulk = RecordingBulk(fail_on={2})
        coalescer = CallCoalescer(bulk, 4, 0.01, 1)
        failed = await asyncio.gather(
            *(coalescer.submit(i) for i in range(4)), return_exceptions=True
        )
        healthy = await asyncio.gather(*(coalescer.submit(i) for i in range(4, 8)))
        return list(failed), list(healthy)

    failed, healthy = asyncio.run(scenario())
    assert all(isinstance(result, RuntimeError) for result in failed)
    assert healthy == [40, 50, 60, 70]


def test_a_bulk_answer_of_the_wrong_length_is_an_error_not_a_misattribution() -> None:
    async def short_answer(items: list[Any]) -> list[Any]:
        return items[:-1]

    async def scenario() -> list[Any]:
        coalescer = CallCoalescer(short_answer, 4, 0.01, 1)
        return list(
            await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
        )

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) and "2 results for 3" in str(r) for r in results)


def test_a_caller_cancelled_before_its_batch_leaves_is_dropped() -> None:
    async def scenario() -> tuple[RecordingBulk, int]:
        bulk = RecordingBulk(delay_s=0.05)
        coalescer = CallCoalescer(bulk, 8, 0.0, 1)
        busy = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.01)
        dropped = asyncio.ensure_future(coalescer.submit(1))
        kept = asyncio.ensure_future(coalescer.submit(2))
        await asyncio.sleep(0)
        dropped.cancel()
        await busy
        return bulk, await kept

    bulk, kept_answer = asyncio.run(scenario())
    assert kept_answer == 20
    assert bulk.batches == [[0], [2]]


def test_close_lets_the_dispatcher_end_and_a_later_submit_still_answers() -> None:
    async def scenario() -> tuple[bool, int]:
        coalescer = CallCoalescer(RecordingBulk(), 4, 0.0, 1)
        assert await coalescer.submit(1) == 10
        coalescer.close()
        await asyncio.sleep(0.01)
        dispatcher = coalescer._dispatcher
        ended = dispatcher is not None and dispatcher.done()
        return ended, await coalescer.submit(5)

    ended, answer = asyncio.run(scenario())
    assert ended
    assert answer == 50


def test_stats_report_batches_and_mean_size() -> None:
    async def scenario() -> dict[str, float]:
        coalescer = CallCoalescer(RecordingBulk(delay_s=0.01), 4, 0.01, 1)
        await asyncio.gather(*(coalescer.submit(i) for i in range(8)))
        return coalescer.stats()

    stats = asyncio.run(scenario())
    assert stats == {"batches_sent": 2, "items_sent": 8, "mean_batch_size": 4.0}


@pytest.mark.parametrize(
    ("size", "wait_s", "concurrent", "field"),
    [(0, 0.0, 1, "max_batch_size"), (1, -1.0, 1, "batch_wait_timeout_s"),
     (1, 0.0, 0, "max_concurrent_batches")],
)  # fmt: skip
def test_bad_settings_name_the_field(size: int, wait_s: float, concurrent: int, field: str) -> None:
    async def bulk(items: list[Any]) -> list[Any]:
        return items

    with pytest.raises(ValueError, match=field):
        CallCoalescer(bulk, size, wait_s, concurrent)
