"""What every batched model node shares: config parsing, batch settings, info, bulk calls.

Each node still declares its own ``@serve.batch`` method, because Ray keeps one batch queue per
decorated function and two node classes must never share a queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ray import serve

from configs.schemas import ModelNodeConfig
from models.device import ModelInfo

logger = logging.getLogger("ray.serve")


class _BatchedMethod(Protocol):
    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...
    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...
    async def __call__(self, item: Any) -> Any: ...


class _Model(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    def predict_batch(self, items: list[Any]) -> list[Any]: ...


class BatchedNodeMixin:
    """Shared behaviour of model nodes; subclasses set ``model`` and define ``predict``."""

    model: _Model
    node_config: ModelNodeConfig = ModelNodeConfig()

    def _batched(self) -> _BatchedMethod:
        return self.predict  # type: ignore[attr-defined,no-any-return]

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply ``user_config`` (batch size, wait time) without restarting the replica."""
        self.node_config = ModelNodeConfig.model_validate(user_config or {})
        batching = self.node_config.batching
        self._batched().set_max_batch_size(batching.max_batch_size)
        self._batched().set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        logger.info(
            "batching set: max_batch_size=%d batch_wait_timeout_s=%.4f",
            batching.max_batch_size,
            batching.batch_wait_timeout_s,
        )

    async def _run_model(self, items: list[Any]) -> list[Any]:
        # In a worker thread, so the replica's event loop keeps queueing the next batch
        # while this one computes (torch and sklearn release the GIL in their kernels).
        results = await asyncio.to_thread(self.model.predict_batch, items)
        if len(results) != len(items):
            raise RuntimeError(f"model returned {len(results)} results for {len(items)} inputs")
        # Each answer carries the model that produced it: versions can change under
        # reconfigure, and every response must name the version that answered.
        info = self.model.info.as_dict()
        model_ref = {key: info[key] for key in ("name", "version", "device")}
        return [{"result": result, "model": model_ref} for result in results]

    async def predict_many(self, items: list[Any]) -> list[Any]:
        """Score many items in one handle call; they join the same batch queue as single calls."""
        return list(await asyncio.gather(*(self._batched()(item) for item in items)))

    def info(self) -> dict[str, object]:
        """Model name, version, device and labels, plus the batching in force."""
        return {
            **self.model.info.as_dict(),
            "batching": self.node_config.batching.model_dump(),
            "replica_id": serve.get_replica_context().replica_id.unique_id,
        }
