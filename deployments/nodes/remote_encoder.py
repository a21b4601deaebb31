"""One text encoder for the graph: a `TextEncoder` that asks the Embedder deployment.

With ``args.text_vectors.encoder: shared`` (the default) the head moderation / sentiment and
retrieval smart-reply nodes hold no MiniLM of their own: their models get a `RemoteTextEncoder`
where they would get the process's MiniLM, and each batch's texts go to the Embedder in one
handle call. The Embedder keeps the vector store, so a text embedded for one feature is not
encoded again for the next. What the hop costs against the memory it saves is measured in
docs/benchmarks.md ("One text encoder").
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray.serve.handle import DeploymentHandle

from models.answers import ModelInfo

# A batch of texts on a loaded 2-core machine can wait behind other callers' batches; past this
# the caller's model call fails and its node answers as it does for any model error.
DEFAULT_TIMEOUT_S = 60.0


class RemoteTextEncoder:
    """`models.text_vectors.TextEncoder` over the Embedder's handle (``embed_many``)."""

    def __init__(self, handle: DeploymentHandle[Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._handle = handle
        self._timeout_s = timeout_s
        self._info: ModelInfo | None = None

    @property
    def info(self) -> ModelInfo:
        """The Embedder's encoder (name, version, device), asked once."""
        if self._info is None:
            info = self._call("encoder_info")
            if not isinstance(info, ModelInfo):
                raise TypeError(f"Embedder.encoder_info answered {type(info).__name__}")
            self._info = info
        return self._info

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, encoded (or read from the store) by the Embedder."""
        vectors = np.asarray(self._call("embed_many", list(texts)), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(
                f"Embedder.embed_many answered shape {vectors.shape} for {len(texts)} texts"
            )
        return vectors

    def _call(self, method: str, *args: Any) -> Any:
        response = getattr(self._handle, method).remote(*args)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # A worker thread (a node's predict_batch runs in one): wait here.
            return response.result(timeout_s=self._timeout_s)
        # The replica's event loop thread (a node constructor embedding its reply bank): Serve
        # refuses a blocking wait on a loop, and the handle's router runs on its own thread, so
        # waiting from a helper thread neither trips that check nor deadlocks.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(response.result, timeout_s=self._timeout_s).result()
