"""Approximate nearest-neighbour index of post vectors (hnswlib, cosine space).

Kept in step with post events: a new post is added, an edited post's vector replaced, and a
post that moderation flagged is marked deleted (so it is never returned) until it is cleared.
"""

from __future__ import annotations

import threading

import hnswlib
import numpy as np

from models.embeddings import EMBEDDING_DIM


class PostIndex:
    """hnswlib HNSW graph over unit post vectors, addressed by post id."""

    def __init__(
        self,
        dim: int = EMBEDDING_DIM,
        initial_capacity: int = 1024,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
    ) -> None:
        self._index = hnswlib.Index(space="cosine", dim=dim)
        self._index.init_index(max_elements=initial_capacity, ef_construction=ef_construction, M=m)
        self._ef_search = ef_search
        self._index.set_ef(ef_search)
        self._labels: dict[str, int] = {}
        self._post_ids: list[str] = []
        self._deleted: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._labels) - len(self._deleted)

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._labels

    def upsert(self, post_id: str, vector: np.ndarray) -> None:
        """Add a post, or replace its vector when it is already indexed."""
        with self._lock:
            label = self._labels.get(post_id)
            if label is None:
                label = len(self._post_ids)
                if label >= self._index.get_max_elements():
                    # Doubling keeps the amortised cost of growth constant per insert.
                    self._index.resize_index(2 * self._index.get_max_elements())
                self._labels[post_id] = label
                self._post_ids.append(post_id)
            self._index.add_items(np.asarray(vector, dtype=np.float32)[None, :], [label])
            # hnswlib un-deletes a label when its vector is replaced; callers re-hide it.
            self._deleted.discard(label)

    def set_hidden(self, post_id: str, hidden: bool) -> None:
        """Exclude a post from answers (moderation flagged it) or bring it back."""
        with self._lock:
            label = self._labels.get(post_id)
            if label is None:
                return
            if hidden and label not in self._deleted:
                self._index.mark_deleted(label)
                self._deleted.add(label)
            elif not hidden and label in self._deleted:
                self._index.unmark_deleted(label)
                self._deleted.discard(label)

    def nearest(
        self, vector: np.ndarray, k: int, exclude: str | None = None
    ) -> list[tuple[str, float]]:
        """Up to ``k`` nearest posts as ``(post_id, cosine similarity)``, closest first."""
        with self._lock:
            excluded = self._labels.get(exclude) if exclude is not None else None
            available = len(self._labels) - len(self._deleted)
            if excluded is not None and excluded not in self._deleted:
                available -= 1
            want = min(k, available)
            if want <= 0:
                return []
            query = np.asarray(vector, dtype=np.float32)[None, :]
            # The search must be at least as wide as the answer.
            self._index.set_ef(max(self._ef_search, want + 1))

            def keep(label: int) -> bool:
                return label != excluded

            while True:
                try:
                    labels, distances = self._index.knn_query(query, k=want, filter=keep)
                    break
                except RuntimeError:
                    # HNSW is approximate: on a sparse graph it can find fewer than `want`.
                    if want == 1:
                        return []
                    want = max(1, want // 2)
            return [
                (self._post_ids[int(label)], float(1.0 - distance))
                for label, distance in zip(labels[0], distances[0], strict=True)
            ]
