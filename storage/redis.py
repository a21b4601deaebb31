"""Redis, written once: clients with short timeouts, and the outage rule every user shares.

Redis is an optimisation, never a dependency. Any error marks the connection down: for
``retry_s`` no network call is made (`RedisUnavailableError` is raised at once, and the caller
falls back: computes without the cache, encodes the text itself, serves from its in-process
mirror), then the next call tries Redis again, and the first one that succeeds marks it up.

Clients are built with the configured socket timeouts and no client-side retries: one failure
marks the connection down, so a dead Redis costs a request one timeout, not the client's
retries with backoff.

`RedisConnection` (sync: encoders and the feature store run in worker threads) and
`AsyncRedisConnection` (the result cache, on the replica's event loop) share the `RedisGate`
that holds the state, the last error and the counters /health reports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "AsyncClient",
    "AsyncRedisConnection",
    "RedisConnection",
    "RedisGate",
    "RedisHealth",
    "RedisUnavailableError",
    "SyncClient",
    "async_client",
    "describe_error",
    "sync_client",
]

logger = logging.getLogger("ray.serve")

T = TypeVar("T")
RedisState = Literal["up", "down"]
SyncClient = redis.Redis
AsyncClient = redis.asyncio.Redis

# Redis errors name the host and the command, never a key or a value; capped all the same.
_ERROR_CHARS = 300


class RedisUnavailableError(ConnectionError):
    """Redis failed less than ``retry_s`` ago: the call was skipped without a network call."""


def describe_error(exc: BaseException) -> str:
    """``"<type>: <message>"`` of a client error, short enough for /health and logs."""
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


@dataclass(frozen=True)
class RedisHealth:
    """What /health may say about one Redis connection."""

    state: RedisState
    last_error: str | None
    failures: int  # errors that marked the connection down
    skipped: int  # calls refused without a network call while it was down


class RedisGate:
    """The outage state of one Redis connection: down for ``retry_s`` after an error.

    `label` names the user in logs ("result cache of TextModeration"); `fallback` says what it
    does while Redis is down ("answering without the cache").
    """

    def __init__(
        self,
        label: str,
        retry_s: float,
        fallback: str,
        unavailable_error: type[RedisUnavailableError] = RedisUnavailableError,
    ) -> None:
        self.label = label
        self.retry_s = retry_s
        self.fallback = fallback
        self._unavailable_error = unavailable_error
        self._lock = threading.Lock()
        self._state: RedisState = "up"
        self._down_until_s = 0.0
        self.last_error: str | None = None
        self.failures = 0
        self.skipped = 0

    @property
    def state(self) -> RedisState:
        """``"up"`` or ``"down"`` (down stays down until a call succeeds again)."""
        return self._state

    @property
    def up(self) -> bool:
        """Whether the last call succeeded (or none failed yet)."""
        return self._state == "up"

    def available(self) -> bool:
        """Whether Redis may be called: it is up, or it failed ``retry_s`` ago or more."""
        return self._state == "up" or time.monotonic() >= self._down_until_s

    def check(self) -> None:
        """Raise when Redis failed less than ``retry_s`` ago (counted as skipped).

        Raises:
            RedisUnavailableError: (or the gate's subclass) Redis is skipped for now.
        """
        if self.available():
            return
        with self._lock:
            self.skipped += 1
        raise self._unavailable_error(
            f"redis skipped for {self.retry_s:.1f} s after: {self.last_error}"
        )

    def mark_down(self, error: str) -> None:
        """Record a failure: no call for ``retry_s``; logged once per outage."""
        with self._lock:
            self.last_error = error
            self.failures += 1
            if self._state == "up":
                logger.warning(
                    "%s: redis failed (%s); %s, retry in %.1f s",
                    self.label,
                    error,
                    self.fallback,
                    self.retry_s,
                )
            self._state = "down"
            self._down_until_s = time.monotonic() + self.retry_s

    def mark_up(self) -> bool:
        """Record a success; True when this ends an outage."""
        with self._lock:
            recovered = self._state == "down"
            if recovered:
                logger.info("%s: redis answers again", self.label)
            self._state = "up"
            return recovered

    def health(self) -> RedisHealth:
        """State, last error and counters."""
        return RedisHealth(self._state, self.last_error, self.failures, self.skipped)


def sync_client(url: str, socket_timeout_s: float) -> SyncClient:
    """A blocking client for `url`: `socket_timeout_s` to connect and to answer, no retries."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def async_client(url: str, socket_timeout_s: float) -> AsyncClient:
    """An asyncio client for `url` (bound to the loop it first runs on); see `sync_client`."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=AsyncRetry(NoBackoff(), 0),
    )


class RedisConnection:
    """A blocking Redis client behind a `RedisGate`; created on the first call."""

    def __init__(
        self,
        url: str,
        gate: RedisGate,
        socket_timeout_s: float,
        client: SyncClient | None = None,
    ) -> None:
        """`client` replaces the one built from `url` (tests)."""
        self.url = url
        self.gate = gate
        self.socket_timeout_s = socket_timeout_s
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> SyncClient:
        """The client, built on first use."""
        with self._lock:
            if self._client is None:
                self._client = sync_client(self.url, self.socket_timeout_s)
            return self._client

    @client.setter
    def client(self, client: SyncClient) -> None:
        with self._lock:
            self._client = client

    def run(self, action: Callable[[SyncClient], T]) -> T:
        """``action(client)``; any error marks Redis down and is raised again.

        Raises:
            RedisUnavailableError: Redis failed less than ``retry_s`` ago (no call made).
        """
        self.gate.check()
        try:
            result = action(self.client)
        except Exception as exc:
            self.gate.mark_down(describe_error(exc))
            raise
        self.gate.mark_up()
        return result

    def close(self) -> None:
        """Close the connection pool (the owner is replaced or the replica stops)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncRedisConnection:
    """An asyncio Redis client behind a `RedisGate`, created in (and bound to) the running loop."""

    def __init__(self, url: str, gate: RedisGate, socket_timeout_s: float) -> None:
        self.url = url
        self.gate = gate
        self.socket_timeout_s = socket_timeout_s
        self._client: AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _current_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = async_client(self.url, self.socket_timeout_s)
            self._client_loop = loop
        return self._client

    async def run(self, action: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``await action(client)``; any error marks Redis down and is raised again.

        Raises:
            RedisUnavailableError: Redis failed less than ``retry_s`` ago (no call made).
        """
        self.gate.check()
        try:
            result = await action(self._current_client())
        except Exception as exc:
            self.gate.mark_down(describe_error(exc))
            raise
        self.gate.mark_up()
        return result

    async def aclose(self) -> None:
        """Close the connections (the owner is replaced or the replica stops)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception as exc:  # noqa: BLE001 - closing a dead connection may fail
                logger.debug("%s: close failed: %s", self.gate.label, type(exc).__name__)
