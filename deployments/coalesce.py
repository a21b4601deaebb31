"""Ingress-side coalescing: concurrent single-item calls to one node become one bulk call.

Why: with one handle call per request, every call pays Ray's per-call overhead on both sides
and the node's batch queue never fills, so the model runs tiny batches; sending the texts that
arrive within a few milliseconds as one ``predict_many`` call fills the node's batches (the
measurement is in docs/benchmarks.md, "W3"). One handle hop per batch, not per request.

Pure asyncio (no Ray imports): the ingress passes the bulk call to make, so this module is
unit-tested without Ray.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BulkCall = Callable[[list[Any]], Awaitable[Sequence[Any]]]


@dataclass
class _Waiting:
    item: Any
    future: asyncio.Future[Any]
    queued_at_s: float = field(default_factory=time.monotonic)


class CallCoalescer:
    """Collects items submitted one at a time and sends them to `bulk_call` in batches.

    A batch leaves when ``max_batch_size`` items wait, or ``batch_wait_timeout_s`` after its
    first item arrived. At most ``max_concurrent_batches`` bulk calls run at once; while all
    are busy, new items keep queueing, so the next batch is fuller (that is the point under
    load). Each submitter gets its own item's result, or the exception the bulk call raised
    (every item of a failed batch gets it). A submitter that is cancelled before its batch
    leaves is dropped from it.
    """

    def __init__(
        self,
        bulk_call: BulkCall,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        max_concurrent_batches: int,
    ) -> None:
        """Create an idle coalescer; its dispatcher starts with the first `submit`."""
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size}; use 1 or more")
        if batch_wait_timeout_s < 0:
            raise ValueError(f"batch_wait_timeout_s={batch_wait_timeout_s}; use 0 or more")
        if max_concurrent_batches < 1:
            raise ValueError(f"max_concurrent_batches={max_concurrent_batches}; use 1 or more")
        self._bulk_call = bulk_call
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self.max_concurrent_batches = max_concurrent_batches
        self._waiting: list[_Waiting] = []
        self._arrived: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self.batches_sent = 0
        self.items_sent = 0

    async def submit(self, item: Any) -> Any:
        """`item`'s result from the next batch (or the exception that batch raised)."""
        self._closing = False
        self._start()
        assert self._arrived is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, future))
        self._arrived.set()
        return await future

    def close(self) -> None:
        """Stop the dispatcher once nothing waits; batches in flight still finish.

        A later `submit` starts it again, so a caller that fetched this coalescer just
        before a reconfigure replaced it is still answered.
        """
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()

    def _start(self) -> None:
        if self._dispatcher is not None and not self._dispatcher.done():
            return
        # Created here, inside the running loop (the ingress builds coalescers lazily there).
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(self.max_concurrent_batches)
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name="call-coalescer"
        )

    async def _dispatch(self) -> None:
        assert self._arrived is not None and self._slots is not None
        while True:
            await self._arrived.wait()
            self._drop_cancelled()
            if not self._waiting:
                if self._closing:
                    return
                self._arrived.clear()
                continue
            # Wait for a full batch or the first item's deadline, whichever comes first.
            deadline_s = self._waiting[0].queued_at_s + self.batch_wait_timeout_s
            while len(self._waiting) < self.max_batch_size:
                remaining_s = deadline_s - time.monotonic()
                if remaining_s <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining_s)
                except TimeoutError:
                    break
            await self._slots.acquire()
            # Items that came while every slot was busy join this batch (up to the maximum).
            self._drop_cancelled()
            batch = self._waiting[: self.max_batch_size]
            del self._waiting[: self.max_batch_size]
            if not self._waiting:
                self._arrived.clear()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _drop_cancelled(self) -> None:
        self._waiting = [w for w in self._waiting if not w.future.done()]

    async def _send(self, batch: list[_Waiting]) -> None:
        assert self._slots is not None
        try:
            self.batches_sent += 1
            self.items_sent += len(batch)
            results = await self._bulk_call([w.item for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"bulk call returned {len(results)} results for {len(batch)}")
        except asyncio.CancelledError:
            # The loop is shutting down: nobody may wait forever on this batch.
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every submitter of this batch
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
        else:
            for waiting, result in zip(batch, results, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result(result)
        finally:
            self._slots.release()

    def stats(self) -> dict[str, float]:
        """Batches and items sent so far, and their mean batch size (for /health)."""
        mean = self.items_sent / self.batches_sent if self.batches_sent else 0.0
        return {
            "batches_sent": self.batches_sent,
            "items_sent": self.items_sent,
            "mean_batch_size": round(mean, 2),
        }
