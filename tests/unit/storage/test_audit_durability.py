"""The audit log's durable queues: nothing queued is lost to a crash, a restart or a Redis
outage; a full queue counts its drops; a graceful stop writes what is queued (no Ray).

A "crash" drops the `AuditLog` without `shutdown` and releases the queue's file lock, as the
dying process would; the next replica's queue adopts what was left.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mongomock
import pytest

from storage.audit_log import (
    AuditLog,
    AuditStoreError,
    DecisionRepository,
    FileQueue,
    RedisStreamQueue,
    decode_decision,
    encode_decision,
    new_decision_id,
)
from tests.fixtures.audit import EMBEDDED, config, repository, run, wait_until_written
from tests.fixtures.redis_server import shared_redis_or_skip, throwaway_redis, unique_prefix


class DownRepository(DecisionRepository):
    """A store that never accepts a write."""

    def __init__(self) -> None:
        super().__init__(mongomock.MongoClient(tz_aware=True)["down"])

    def insert_many(self, documents: Any) -> None:
        raise ConnectionError("store down")


def record_many(log: AuditLog, count: int) -> list[str]:
    """Record `count` decisions (the stored shape: an id, a datetime, JSON); their ids."""
    ids = []
    for _ in range(count):
        document = {"_id": new_decision_id(), "created_at": datetime.now(UTC), "action": "reject"}
        log.record(document)
        ids.append(document["_id"])
    return ids


def crash(log: AuditLog, queue: FileQueue) -> None:
    """The process dies: no flush, no close; the OS releases the file lock."""
    queue._file.close()
    assert log.buffered > 0


def stored_ids(repo: DecisionRepository, ids: list[str]) -> list[str]:
    return [i for i in ids if repo.get(i) is not None]


def test_decisions_survive_a_crash_in_the_file_queue(tmp_path: Path) -> None:
    down = DownRepository()

    async def before_crash() -> list[str]:
        queue = FileQueue(tmp_path, capacity=10)
        log = AuditLog(config(flush_interval_s=3600), down, EMBEDDED, queue=queue)
        ids = record_many(log, 7)
        with pytest.raises(AuditStoreError):
            await log.flush()  # the store is down: taken, not written, still queued
        await log.close()
        crash(log, queue)
        return ids

    ids = run(before_crash())
    repo = repository()

    async def next_replica() -> AuditLog:
        queue = FileQueue(tmp_path, capacity=10)
        assert queue.adopted == 7
        log = AuditLog(config(), repo, EMBEDDED, queue=queue)
        await log.flush()
        await log.shutdown(5.0)
        return log

    log = run(next_replica())
    assert stored_ids(repo, ids) == ids
    assert log.written == 7 and log.dropped == 0
    assert list(tmp_path.glob("*.jsonl")) == []  # empty queues leave no file behind


def test_graceful_shutdown_writes_what_is_queued(tmp_path: Path) -> None:
    repo = repository()

    async def scenario() -> tuple[list[str], int]:
        log = AuditLog(config(flush_interval_s=3600), repo, EMBEDDED, queue=FileQueue(tmp_path, 10))
        ids = record_many(log, 3)
        return ids, await log.shutdown(5.0)

    ids, left = run(scenario())
    assert left == 0 and stored_ids(repo, ids) == ids


def test_full_queue_drops_the_newcomer_counts_it_and_shows_it(tmp_path: Path) -> None:
    counted: list[int] = []

    async def scenario() -> AuditLog:
        log = AuditLog(
            config(flush_interval_s=3600),
            DownRepository(),
            EMBEDDED,
            queue=FileQueue(tmp_path, 10),
            on_dropped=counted.append,
        )
        record_many(log, 12)
        await log.close()
        return log

    log = run(scenario())
    status = log.status()
    assert status["dropped"] == 2 and sum(counted) == 2
    assert status["buffered"] == 10 and status["queue"] == "file"


def test_documents_round_trip_through_the_queue_encoding() -> None:
    document: dict[str, Any] = {"_id": "x", "created_at": datetime.now(UTC), "scores": {"a": 0.5}}
    assert decode_decision(encode_decision(document)) == document


def test_redis_stream_entries_of_a_dead_replica_are_claimed_and_written(tmp_path: Path) -> None:
    url = shared_redis_or_skip()
    key = unique_prefix() + "audit"
    import redis

    client = redis.Redis.from_url(url)
    try:

        async def dead_replica() -> list[str]:
            queue = RedisStreamQueue(url, 10, FileQueue(tmp_path / "a", 10), key=key)
            log = AuditLog(
                config(flush_interval_s=3600),
                DownRepository(),
                EMBEDDED,
                queue=queue,
            )
            ids = record_many(log, 5)
            with pytest.raises(AuditStoreError):
                await log.flush()  # taken by this consumer, never acknowledged
            await log.close()
            return ids

        ids = run(dead_replica())
        repo = repository()

        async def next_replica() -> AuditLog:
            queue = RedisStreamQueue(
                url, 10, FileQueue(tmp_path / "b", 10), key=key, claim_idle_ms=0
            )
            log = AuditLog(config(), repo, EMBEDDED, queue=queue)
            await log.flush()
            return log

        log = run(next_replica())
        assert stored_ids(repo, ids) == ids and log.written == 5
        assert client.xlen(key) == 0  # written entries are deleted from the stream
    finally:
        client.delete(key)


def test_redis_outage_spills_to_the_file_and_loses_nothing(tmp_path: Path) -> None:
    repo = repository()
    with throwaway_redis() as (url, process):

        async def scenario() -> tuple[list[str], AuditLog, str]:
            queue = RedisStreamQueue(url, 50, FileQueue(tmp_path, 50), retry_s=0.1)
            log = AuditLog(
                config(flush_interval_s=3600, buffer_size=50), repo, EMBEDDED, queue=queue
            )
            ids = record_many(log, 3)
            os.kill(process.pid, signal.SIGSTOP)
            try:
                ids += record_many(log, 4)  # the first times out, the rest skip Redis
            finally:
                os.kill(process.pid, signal.SIGCONT)
            spilled = queue.spill.pending()
            await asyncio.sleep(0.3)  # past retry_s: the stream is read again
            await log.flush()
            await wait_until_written(log, 7)
            return ids, log, f"{spilled}"

        ids, log, spilled = run(scenario())
    assert spilled == "4"
    assert stored_ids(repo, ids) == ids and log.dropped == 0
