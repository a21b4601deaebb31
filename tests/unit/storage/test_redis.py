"""The shared Redis adapter (storage/redis.py): down after an error, no call during retry_s,
back after it. The happy path uses the shared Redis; outages use a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import redis

from storage.redis import (
    AsyncClient,
    AsyncRedisConnection,
    RedisConnection,
    RedisGate,
    RedisUnavailableError,
    SyncClient,
)
from tests.fixtures.redis_server import shared_redis_or_skip, unique_prefix


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"redis://127.0.0.1:{port}/0"


class CountingClient:
    """Wraps a real client and counts every command sent through it."""

    def __init__(self, client: SyncClient) -> None:
        self.client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        self.calls += 1
        return getattr(self.client, name)


def test_a_live_redis_answers_and_stays_up() -> None:
    url = shared_redis_or_skip()
    key = unique_prefix() + "k"
    connection = RedisConnection(url, RedisGate("test", 60.0, "testing"), 0.5)
    try:
        connection.run(lambda client: client.set(key, b"v", px=10_000))
        assert connection.run(lambda client: client.get(key)) == b"v"
        health = connection.gate.health()
        assert (health.state, health.last_error, health.failures, health.skipped) == (
            "up",
            None,
            0,
            0,
        )
    finally:
        connection.run(lambda client: client.delete(key))
        connection.close()


def test_an_error_marks_redis_down_and_no_call_is_made_during_retry_s() -> None:
    gate = RedisGate("test", 60.0, "testing")
    counting = CountingClient(redis.Redis.from_url(_closed_port_url(), socket_timeout=0.2))
    connection = RedisConnection("unused", gate, 0.2, client=counting)  # type: ignore[arg-type]

    with pytest.raises(redis.ConnectionError):
        connection.run(lambda client: client.get("k"))
    assert gate.state == "down" and "ConnectionError" in str(gate.last_error)
    assert counting.calls == 1

    started_s = time.monotonic()
    for _ in range(5):
        with pytest.raises(RedisUnavailableError, match="skipped for 60.0 s"):
            connection.run(lambda client: client.get("k"))
    # Refused at once: the client was not even touched.
    assert counting.calls == 1 and time.monotonic() - started_s < 0.1
    health = gate.health()
    assert (health.failures, health.skipped) == (1, 5)


def test_redis_is_tried_again_after_retry_s_and_comes_back() -> None:
    url = shared_redis_or_skip()
    gate = RedisGate("test", 0.2, "testing")
    connection = RedisConnection(_closed_port_url(), gate, 0.2)
    with pytest.raises(redis.ConnectionError):
        connection.run(lambda client: client.ping())
    with pytest.raises(RedisUnavailableError):
        connection.run(lambda client: client.ping())
    # Redis "restarts" (here: the client is pointed at a live server), then retry_s passes.
    connection.client = redis.Redis.from_url(url, socket_timeout=0.5)
    time.sleep(0.25)
    assert gate.available()
    assert connection.run(lambda client: client.ping()) is True
    assert gate.state == "up" and gate.up
    # The last error stays for /health after the recovery.
    assert "ConnectionError" in str(gate.last_error)
    connection.close()


def test_the_gate_raises_its_owners_error_type() -> None:
    class StoreUnavailable(RedisUnavailableError):
        pass

    gate = RedisGate("test", 60.0, "testing", unavailable_error=StoreUnavailable)
    gate.mark_down("ConnectionError: gone")
    with pytest.raises(StoreUnavailable, match="after: ConnectionError: gone"):
        gate.check()
    assert gate.mark_up() is True and gate.mark_up() is False


def test_async_connection_down_skipped_and_back() -> None:
    url = shared_redis_or_skip()
    key = unique_prefix() + "k"

    async def scenario() -> None:
        dead = AsyncRedisConnection(_closed_port_url(), RedisGate("test", 60.0, "testing"), 0.2)

        async def read(client: AsyncClient) -> Any:
            return await client.get(key)

        with pytest.raises(redis.ConnectionError):
            await dead.run(read)
        with pytest.raises(RedisUnavailableError):
            await dead.run(read)
        assert dead.gate.health().skipped == 1
        await dead.aclose()

        live = AsyncRedisConnection(url, RedisGate("test", 0.1, "testing"), 0.5)
        live.gate.mark_down("ConnectionError: earlier outage")
        with pytest.raises(RedisUnavailableError):
            await live.run(read)
        await asyncio.sleep(0.15)
        assert await live.run(read) is None
        assert live.gate.state == "up"
        await live.aclose()

    asyncio.run(scenario())
