"""Where the recommender jobs read interactions: a JSONL export, MongoDB, or the running
Recommender node (paged through its handle). Every source yields the same rows, with the user
id already hashed with the job's salt:

    {"user_hash": str, "post_id": str, "type": str, "timestamp_s": float}

Shared by `pipelines.recommender_mf` and `pipelines.ranking_blend`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configs.settings import get_settings
from models.ranking import hash_user_id
from pipelines.jobs import read_jsonl
from storage.documents import InteractionRepository, open_database

if TYPE_CHECKING:
    from pymongo.database import Database
    from ray.serve.handle import DeploymentHandle

__all__ = [
    "INTERACTION_FIELDS",
    "jsonl_interactions",
    "mongodb_database",
    "mongodb_interactions",
    "recommender_handle",
    "service_interactions",
]

INTERACTION_FIELDS = "user_id or user_hash, post_id, type, timestamp_s"
# A page of the service's export can be a few thousand rows on a busy node.
_EXPORT_TIMEOUT_S = 120


def jsonl_interactions(path: Path, salt: str, path_field: str) -> Iterator[dict[str, Any]]:
    """The interactions of a JSONL export; `path_field` names the config field for errors.

    Raises:
        ValueError: The file is missing, or a line is not an interaction.
    """
    if not path.is_file():
        raise ValueError(
            f"interactions file {str(path)!r} does not exist; export one (one JSON object per "
            f"line: {INTERACTION_FIELDS}) or fix {path_field}"
        )

    def interaction(row: Any) -> dict[str, Any]:
        user = row["user_hash"] if "user_hash" in row else hash_user_id(str(row["user_id"]), salt)
        return {
            "user_hash": str(user),
            "post_id": str(row["post_id"]),
            "type": str(row["type"]),
            "timestamp_s": float(row["timestamp_s"]),
        }

    yield from read_jsonl(path, interaction, "an interaction", INTERACTION_FIELDS)


def mongodb_database() -> Database[Any]:
    """The document store at MONGODB_URL.

    Raises:
        ValueError: MONGODB_URL is not set.
    """
    url = get_settings().mongodb_url
    if not url:
        raise ValueError(
            'source "mongodb" needs MONGODB_URL; set it, or use source "service" / "jsonl"'
        )
    return open_database(url)[0]


def mongodb_interactions(
    database: Database[Any], page_size: int, salt: str
) -> Iterator[dict[str, Any]]:
    """Every interaction in the store, in pages of `page_size`, user ids hashed."""
    repository = InteractionRepository(database)
    after: str | None = None
    while True:
        page = repository.page_after(after, page_size)
        for doc in page:
            yield {
                "user_hash": hash_user_id(str(doc["user_id"]), salt),
                "post_id": str(doc["post_id"]),
                "type": str(doc["type"]),
                "timestamp_s": float(doc["timestamp_s"]),
            }
        if len(page) < page_size:
            return
        after = str(page[-1]["_id"])


def recommender_handle(app_name: str) -> DeploymentHandle[Any]:
    """The Recommender deployment of Serve app `app_name` on this Ray cluster.

    Raises:
        ValueError: No such deployment here.
    """
    from ray import serve

    try:
        return serve.get_deployment_handle("Recommender", app_name=app_name)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"no Recommender deployment in Serve app {app_name!r} on this Ray cluster "
            f"({exc}); run the job on the service's cluster (RAY_ADDRESS) or fix app_name"
        ) from exc


def service_interactions(
    handle: DeploymentHandle[Any], page_size: int, salt: str
) -> Iterator[dict[str, Any]]:
    """Every interaction the node holds, paged through ``export_interactions`` (the node
    hashes the user ids with `salt` before they leave it)."""
    after: str | None = None
    while True:
        page = handle.export_interactions.remote(after, page_size, salt).result(
            timeout_s=_EXPORT_TIMEOUT_S
        )
        yield from (asdict(row) for row in page.interactions)
        after = page.next_after
        if after is None:
            return
