"""What every batched model node shares: config parsing, batch settings, info, bulk calls.

Each node still declares its own ``@serve.batch`` method, because Ray keeps one batch queue per
decorated function and two node classes must never share a queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, cast, overload

import ray
from ray import serve

from configs.nodes import ModelNodeConfig, RegisteredModelRef, ResultCacheConfig
from configs.settings import get_settings
from deployments.coalesce import CallCoalescer
from deployments.metrics import record_batch, record_cache
from models.answers import (
    AliasFollowInfo,
    Answer,
    BatchModel,
    JsonObject,
    ModelInfo,
    ModelNodeInfo,
    ModelRef,
    json_object,
)
from models.device import cuda_status
from models.text_classifier import TextClassifierModel, load_text_classifier
from models.text_vectors import TextEncoder
from storage.registry import fetch_registered_head, model_source, resolve_registered_version
from storage.result_cache import ResultCache

logger = logging.getLogger("ray.serve")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _BatchedMethod(Protocol):
    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...
    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...


class BatchedNodeMixin(Generic[ItemT, ResultT]):
    """Shared behaviour of model nodes; subclasses set ``model`` and define ``predict``.

    `ItemT` is what one request sends (a text, an image, a typed request) and `ResultT` what
    the model computes for it; every answer is an ``Answer[ResultT]``.
    """

    model: BatchModel[ItemT, ResultT]
    # The type results are cached as (nodes that may cache set it; see `result_cache_allowed`).
    result_type: Any = Any
    node_config: ModelNodeConfig = ModelNodeConfig()
    # Nodes that can serve a registered head set these (see `load_registered_head`).
    head_task: str | None = None
    model_device: str = "auto"
    model_update_error: str | None = None
    # Set by nodes whose __init__ loaded a registered head from the application args: an
    # alias there is followed like one in user_config.model.
    init_registry_ref: RegisteredModelRef | None = None
    # Only nodes whose result is a pure function of (input, model version) and JSON may
    # cache it (user_config.cache); the others refuse cache.enabled.
    result_cache_allowed: bool = False
    result_cache: ResultCache | None = None
    # Load options that change answers but not the model version (part of every cache key).
    result_cache_variant: str = ""
    alias_follow_error: str | None = None
    # Why this node serves a fallback instead of its configured model (a refused shipped
    # head); every answer and info() carry it. A successful registry swap clears it.
    degraded_reason: str | None = None
    _alias_task: asyncio.Task[None] | None = None
    _alias_generation: int = 0
    _swap_lock: threading.Lock | None = None
    # Created on first use, inside the replica's event loop (see `_compute`).
    _model_lock: asyncio.Lock | None = None
    _bulk: CallCoalescer | None = None

    def _head_embedder(self) -> TextEncoder | None:
        """The encoder a head this node loads embeds with; None: the process-shared MiniLM."""
        return None

    def _batched(self) -> _BatchedMethod:
        return self.predict  # type: ignore[attr-defined,no-any-return]

    @property
    def node_name(self) -> str:
        """The deployment class name: metric label and part of every cache key."""
        return type(self).__name__

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply ``user_config`` (batching, model, alias following, cache) without a restart.

        Async, with the model load in a worker thread: the replica keeps answering on the
        old model while a new one downloads and loads.
        """
        config = ModelNodeConfig.model_validate(user_config or {})
        if config.cache.enabled and not self.result_cache_allowed:
            raise ValueError(
                f"user_config.cache.enabled is true but {self.node_name} results cannot be "
                "cached (only TextModeration and Sentiment); remove `cache` from this "
                "deployment's user_config"
            )
        self._swap_lock = self._swap_lock or threading.Lock()
        self.node_config = config
        batching = config.batching
        self._batched().set_max_batch_size(batching.max_batch_size)
        self._batched().set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        logger.info(
            "batching set: max_batch_size=%d batch_wait_timeout_s=%.4f",
            batching.max_batch_size,
            batching.batch_wait_timeout_s,
        )
        self._stop_alias_follow()
        await self._configure_cache(config.cache)
        if config.model is not None:
            await asyncio.to_thread(self._swap_model, config.model)
        self._ensure_alias_follow()

    async def check_health(self) -> None:
        """Serve's periodic health check; starts alias following for nodes never reconfigured."""
        self._ensure_alias_follow()

    def _swap_model(self, ref: RegisteredModelRef, generation: int | None = None) -> None:
        """Load the registered head `ref` names and swap it in when it is not already serving.

        The swap is one attribute assignment: batches already running hold the old model
        object and finish on it; the next batch uses the new one. A failed load keeps the old
        model serving (a bad registry entry must not take the node down) and is reported in
        ``info()`` as ``model_update_error``. `generation` (alias following): skip the swap
        when a reconfigure has replaced that follower since it decided to swap.
        """
        if self.head_task is None:
            raise ValueError(
                f"user_config.model is set but {type(self).__name__} cannot load registered "
                "heads; remove `model` from this deployment's user_config"
            )
        # One load at a time: a follower's swap and a reconfigure's must not interleave.
        with self._swap_lock or threading.Lock():
            if generation is not None and generation != self._alias_generation:
                return
            try:
                new_model = load_registered_head(
                    self.head_task,
                    ref,
                    self.model_device,
                    current=self.model.info,
                    embedder=self._head_embedder(),
                )
            except (LookupError, OSError, ValueError) as exc:
                self.model_update_error = f"{type(exc).__name__}: {exc}"
                logger.error("model update to %s failed, old model kept: %s", ref, exc)
                return
            self.model_update_error = None
            if generation is not None and generation != self._alias_generation:
                return
            if new_model is not None:
                old = self.model.info
                # A head of this node's task (head_task): it answers the node's result type.
                self.model = cast(BatchModel[ItemT, ResultT], new_model)
                self.degraded_reason = None
                logger.info(
                    "model swapped: %s %s -> %s", old.name, old.version, new_model.info.version
                )

    # ---- alias following ------------------------------------------------------------------
    def _followed_ref(self) -> RegisteredModelRef | None:
        """The registered head to follow: user_config.model, else the args' registry ref."""
        ref = self.node_config.model or self.init_registry_ref
        if ref is None or ref.alias is None or self.head_task is None:
            return None
        return ref if self.node_config.registry_poll_s > 0 else None

    def _ensure_alias_follow(self) -> None:
        """Start this replica's alias follower when one is configured and none runs."""
        ref = self._followed_ref()
        if ref is None or (self._alias_task is not None and not self._alias_task.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the replica's event loop: the next async call starts it
        self._swap_lock = self._swap_lock or threading.Lock()
        generation = self._alias_generation

        async def swap(pinned: RegisteredModelRef) -> None:
            await asyncio.to_thread(self._swap_model, pinned, generation)

        def serving_version() -> str:
            return str(self.model.info.version)

        def report(error: str | None) -> None:
            self.alias_follow_error = error

        self._alias_task = loop.create_task(
            follow_alias(ref, self.node_config.registry_poll_s, serving_version, swap, report),
            name=f"{self.node_name}-alias-follow",
        )

    def _stop_alias_follow(self) -> None:
        """Cancel the follower; a swap it already started is dropped (generation bump)."""
        self._alias_generation += 1
        task, self._alias_task = self._alias_task, None
        if task is not None:
            task.cancel()
        self.alias_follow_error = None

    # ---- result cache -----------------------------------------------------------------------
    async def _configure_cache(self, config: ResultCacheConfig) -> None:
        """Keep the cache (and its counters) when its config is unchanged, else rebuild it."""
        old = self.result_cache
        if old is not None and config.enabled and old.config == config:
            return
        self.result_cache = None
        if config.enabled:
            self.result_cache = ResultCache(
                self.node_name,
                config,
                get_settings().redis_url,
                count=record_cache,
                result_type=self.result_type,
            )
            logger.info("result cache on: %s, ttl %.0f s", self.result_cache.backend, config.ttl_s)
        if old is not None:
            await old.aclose()

    async def _run_model(self, items: list[ItemT]) -> list[Answer[ResultT]]:
        # One read of self.model: a reconfigure may swap it while this batch runs, and the
        # answer must name the model that really computed it.
        model, degraded_reason = self.model, self.degraded_reason
        self._ensure_alias_follow()
        # Each answer carries the model that produced it: versions can change under
        # reconfigure, and every response must name the version that answered.
        model_ref = ModelRef.of(model.info)
        cache = self.result_cache
        if cache is None:
            results = await self._compute(model, items)
        else:
            results = await self._compute_cached(cache, model, model_ref, items)
        record_batch(self.node_name, model_ref.version, len(items))
        return [Answer(result, model_ref, degraded_reason) for result in results]

    async def _compute(
        self, model: BatchModel[ItemT, ResultT], items: list[ItemT]
    ) -> list[ResultT]:
        """``model.predict_batch`` in a worker thread, checked to return one result per item.

        One model call at a time per replica: `predict_many`'s bulk batches and the
        ``@serve.batch`` batches share the node's cores, and two forwards at once would only
        split them (and double the peak memory).
        """
        if self._model_lock is None:
            self._model_lock = asyncio.Lock()
        async with self._model_lock:
            # In a worker thread, so the replica's event loop keeps queueing the next batch
            # while this one computes (torch and sklearn release the GIL in their kernels).
            results = await asyncio.to_thread(model.predict_batch, items)
        if len(results) != len(items):
            raise RuntimeError(f"model returned {len(results)} results for {len(items)} inputs")
        return results

    async def _compute_cached(
        self,
        cache: ResultCache,
        model: BatchModel[ItemT, ResultT],
        model_ref: ModelRef,
        items: list[ItemT],
    ) -> list[ResultT]:
        """Results from the cache where present; the model computes the rest once each."""
        variant = self.result_cache_variant
        keys = [cache.key(model_ref.name, model_ref.version, item, variant) for item in items]
        found = await cache.get_many(keys)
        # Key -> item, first occurrence only: a text repeated in one batch is computed once.
        missing: dict[str, ItemT] = {}
        for key, item, value in zip(keys, items, found, strict=True):
            if not cache.found(value):
                missing.setdefault(key, item)
        fresh: dict[str, ResultT] = {}
        if missing:
            computed = await self._compute(model, list(missing.values()))
            fresh = dict(zip(missing, computed, strict=True))
        await cache.put_many(fresh, computed=sum(not cache.found(value) for value in found))
        return [
            value if cache.found(value) else fresh[key]
            for key, value in zip(keys, found, strict=True)
        ]

    def _bulk_batcher(self) -> CallCoalescer:
        """This replica's batcher of bulk items, rebuilt when ``max_batch_size`` changes."""
        size = self.node_config.batching.max_batch_size
        batcher = self._bulk
        if batcher is None or batcher.max_batch_size != size:
            if batcher is not None:
                batcher.close()  # its batches in flight still finish
            # No wait: a bulk call is a batch already. One model call at a time; items
            # that arrive meanwhile make the next batch (up to max_batch_size).
            batcher = self._bulk = CallCoalescer(self._run_model, size, 0.0, 1)
        return batcher

    async def predict_many(self, items: list[ItemT]) -> list[Answer[ResultT]]:
        """Score many items in one handle call, in model batches of up to ``max_batch_size``.

        The items of concurrent bulk calls are merged while the model is busy, so the next
        model call takes every item waiting (up to ``max_batch_size``). Not through the
        ``@serve.batch`` queue, item by item: that leaves the model a mix of small batches
        where this gives it full ones (measured in docs/benchmarks.md, "W3").
        """
        batcher = self._bulk_batcher()
        return list(await asyncio.gather(*(batcher.submit(item) for item in items)))

    def info(self) -> ModelNodeInfo:
        """Model name, version, device and labels, the batching in force, cache and follower."""
        cache = None
        if self.result_cache_allowed:
            result_cache = self.result_cache
            cache = json_object(result_cache.info() if result_cache else {"state": "off"})
        followed = self._followed_ref()
        alias_follow = None
        if followed is not None:
            alias_follow = AliasFollowInfo(
                model_name=followed.model_name,
                alias=followed.alias,
                poll_s=self.node_config.registry_poll_s,
                running=self._alias_task is not None and not self._alias_task.done(),
                last_error=self.alias_follow_error,
            )
        return ModelNodeInfo(
            model=self.model.info,
            batching=self.node_config.batching,
            replica_id=str(serve.get_replica_context().replica_id.unique_id),
            model_update_error=self.model_update_error,
            cache=cache,
            alias_follow=alias_follow,
            model_source=model_source(str(self.model.info.version)),
            degraded_reason=self.degraded_reason,
            accelerator=accelerator_info(self.model.info.device),
        )


def accelerator_info(model_device: str) -> JsonObject | None:
    """The replica's GPUs and share of them (``ray_actor_options.num_gpus``) and where its
    model runs; None without a GPU. A model on the CPU in a replica given a GPU says why
    (``fallback``)."""
    if not ray.is_initialized():
        return None  # a node built outside Ray (unit tests) holds no GPU
    gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    if not gpu_ids:
        return None
    # The share this replica reserved (ray_actor_options.num_gpus), as Ray assigned it.
    assigned: dict[str, float] = ray.get_runtime_context().get_assigned_resources()  # type: ignore[no-untyped-call]
    share = assigned.get("GPU", 0.0)
    info: dict[str, Any] = {"gpu_ids": gpu_ids, "gpu_share": share, "device": model_device}
    if not model_device.startswith("cuda"):
        info["fallback"] = f"the replica holds a GPU but its model runs on the CPU: {cuda_status()}"
    return json_object(info)


async def follow_alias(
    ref: RegisteredModelRef,
    poll_s: float,
    serving_version: Callable[[], str],
    swap: Callable[[RegisteredModelRef], Awaitable[None]],
    report: Callable[[str | None], None],
    resolve: Callable[[RegisteredModelRef], str] | None = None,
) -> None:
    """Every `poll_s`: resolve `ref`'s alias; when it names another version, `swap` to it.

    `swap` receives the resolved version pinned (not the alias), so the version loaded is
    the one compared, even if the alias moves again meanwhile. `serving_version()` is the
    node's current ``"<name>/<version>"``. Registry errors are passed to `report` (None once
    a check succeeds again) and never end the loop: a registry outage must not stop it.
    """
    resolve = resolve or resolve_registered_version
    while True:
        await asyncio.sleep(poll_s)
        try:
            version = await asyncio.to_thread(resolve, ref)
            if f"{ref.model_name}/{version}" != serving_version():
                logger.info(
                    "alias %r of %s now names version %s; swapping it in",
                    ref.alias,
                    ref.model_name,
                    version,
                )
                pinned = RegisteredModelRef(
                    model_name=ref.model_name, version=int(version), tracking_uri=ref.tracking_uri
                )
                await swap(pinned)
            report(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the follower must outlive any registry error
            report(f"{type(exc).__name__}: {exc}"[:300])
            logger.warning("alias check of %s failed: %s", ref.model_name, exc)


@overload
def load_registered_head(
    task: str,
    ref: RegisteredModelRef,
    device: str,
    current: None = None,
    embedder: TextEncoder | None = None,
) -> TextClassifierModel[Any]: ...


@overload
def load_registered_head(
    task: str,
    ref: RegisteredModelRef,
    device: str,
    current: ModelInfo,
    embedder: TextEncoder | None = None,
) -> TextClassifierModel[Any] | None: ...


def load_registered_head(
    task: str,
    ref: RegisteredModelRef,
    device: str,
    current: ModelInfo | None = None,
    embedder: TextEncoder | None = None,
) -> TextClassifierModel[Any] | None:
    """Fetch a registered head (MLflow) and load it; None when `current` is that version.

    The reported version is ``"<registered name>/<version>"``, e.g. ``heads-moderation/3``.
    `embedder`: the encoder the head embeds with (None: the process-shared MiniLM).
    """
    head_dir, name, version = fetch_registered_head(ref)
    label = f"{name}/{version}"
    if current is not None and current.version == label:
        return None
    return load_text_classifier(
        task, "head", head_dir, device, name=name, version=label, embedder=embedder
    )
