"""Train the recommender's matrix factorisation (BPR) with Ray Train, evaluate, register, promote.

    python -m pipelines.recommender_mf --config configs/pipelines/recommender_mf.yaml

Steps, in order (each fails with a clear message before the next starts):
1. read the job config (`configs.pipelines.RecommenderMFJobConfig`);
2. read interactions from the event store -- the running Recommender node
   (``export_interactions``, paged), MongoDB at MONGODB_URL, or a JSONL export -- with user ids
   replaced by salted hashes at the source (`models.ranking.hash_user_id`): nothing downstream,
   logs, MLflow or the factors file, ever holds a raw user id;
3. keep the positive (user, post) pairs (first time each) and split them by time per user: the
   latest ``test_fraction`` is the held-out test part, the ``validation_fraction`` before it
   drives early stopping and promotion;
4. train BPR (Rendle et al., 2009: a positive must outscore uniformly sampled negatives) with a
   `TorchTrainer`, one progress line and a `ray.train.Checkpoint` per better epoch;
5. score recall@k / NDCG@k of the model, of popularity and of the version now serving, on the
   same validation and test users;
6. log everything to MLflow, register the factors, move the serving alias only when the
   candidate beats the serving version by the margin, and write the promoted factors where the
   Recommender node loads them (``collaborative_model_path``, applied live by reconfigure).

Ranking evaluation: every post seen in training is a candidate; a user's training positives
(and, for test, validation positives) are excluded; a held-out post the model never saw counts
as a miss for every ranker alike.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import ray.train
import ray.train.torch
import torch
from mlflow.pyfunc.model import PythonModel

from configs.pipelines import RecommenderMFJobConfig, load_mf_job_config
from models.ranking import CollaborativeModel
from pipelines.interaction_sources import (
    jsonl_interactions,
    mongodb_database,
    mongodb_interactions,
    recommender_handle,
    service_interactions,
)
from pipelines.jobs import job_dir, new_run_name, run_cli, say, write_json_report
from pipelines.ray_train import fit_torch, read_history, write_history
from pipelines.registry import (
    PyfuncModel,
    Registration,
    RunRecord,
    ServingScore,
    log_and_register,
    serving_version_files,
)

__all__ = [
    "Interactions",
    "MFJobResult",
    "TimeSplit",
    "evaluate_rankings",
    "fit_bpr",
    "load_interactions",
    "main",
    "run_job",
    "time_split",
    "train_factors",
]

logger = logging.getLogger("pipelines.recommender_mf")

FACTORS_FILENAME = "factors.npz"
# Rows of the score matrix scored at once: bounds memory at chunk x n_posts floats.
_EVAL_CHUNK_USERS = 512


# ---- 2. data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interactions:
    """Positive (user, post) pairs, first occurrence each: hashed users, raw post ids."""

    user_hashes: list[str]
    post_ids: list[str]
    users: np.ndarray  # int64 index into user_hashes
    posts: np.ndarray  # int64 index into post_ids
    times_s: np.ndarray  # float64 epoch seconds
    events_read: int


def load_interactions(config: RecommenderMFJobConfig) -> Interactions:
    """Read the configured source and keep first-time positive pairs (step 2).

    Raises:
        ValueError: Missing or malformed source, or too few positives to split.
    """
    if config.source == "jsonl":
        rows: Iterator[dict[str, Any]] = jsonl_interactions(
            Path(str(config.data_path)), config.user_id_salt, "data_path"
        )
    elif config.source == "mongodb":
        rows = mongodb_interactions(mongodb_database(), config.page_size, config.user_id_salt)
    else:
        rows = service_interactions(
            recommender_handle(config.app_name), config.page_size, config.user_id_salt
        )
    positive = set(config.positive_types)
    first_s: dict[tuple[str, str], float] = {}
    events = 0
    for row in rows:
        events += 1
        if row["type"] not in positive:
            continue
        key = (row["user_hash"], row["post_id"])
        at_s = float(row["timestamp_s"])
        if at_s < first_s.get(key, math.inf):
            first_s[key] = at_s
    if len(first_s) < 10:
        raise ValueError(
            f"only {len(first_s)} positive pairs ({sorted(positive)}) in {events} interactions "
            f"from source {config.source!r}; matrix factorisation needs more history"
        )
    user_hashes = sorted({u for u, _ in first_s})
    post_ids = sorted({p for _, p in first_s})
    user_index = {u: i for i, u in enumerate(user_hashes)}
    post_index = {p: i for i, p in enumerate(post_ids)}
    pairs = sorted(first_s.items(), key=lambda item: (item[1], item[0]))
    return Interactions(
        user_hashes,
        post_ids,
        np.array([user_index[u] for (u, _), _ in pairs], dtype=np.int64),
        np.array([post_index[p] for (_, p), _ in pairs], dtype=np.int64),
        np.array([t for _, t in pairs], dtype=np.float64),
        events,
    )


# ---- 3. split -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeSplit:
    """Row indices of `Interactions` per part; per user, test is latest, validation before."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def time_split(
    users: np.ndarray, times_s: np.ndarray, validation_fraction: float, test_fraction: float
) -> TimeSplit:
    """Per user, the latest ``test_fraction`` of positives to test, the ones before to validation.

    Users with fewer than 3 positives stay wholly in training (nothing to learn them from
    otherwise); everyone else keeps at least one training row.
    """
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    order = np.lexsort((times_s, users))
    boundaries = np.flatnonzero(np.diff(users[order])) + 1
    for rows in np.split(order, boundaries):
        count = len(rows)
        if count < 3:
            train.extend(rows.tolist())
            continue
        n_test = max(1, int(round(count * test_fraction)))
        n_val = max(1, int(round(count * validation_fraction)))
        n_train = max(1, count - n_test - n_val)
        train.extend(rows[:n_train].tolist())
        validation.extend(rows[n_train : n_train + n_val].tolist())
        test.extend(rows[n_train + n_val :].tolist())
    return TimeSplit(
        np.array(sorted(train), dtype=np.int64),
        np.array(sorted(validation), dtype=np.int64),
        np.array(sorted(test), dtype=np.int64),
    )


# ---- evaluation ---------------------------------------------------------------------------
def _group(users: np.ndarray, posts: np.ndarray) -> dict[int, set[int]]:
    grouped: dict[int, set[int]] = {}
    for user, post in zip(users.tolist(), posts.tolist(), strict=True):
        grouped.setdefault(user, set()).add(post)
    return grouped


def evaluate_rankings(
    scores_for: Any,
    relevant: dict[int, set[int]],
    exclude: dict[int, set[int]],
    n_posts: int,
    k: int,
    first_seen_s: np.ndarray | None = None,
    windows: dict[int, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Mean recall@k and NDCG@k (binary relevance) over the users in `relevant`.

    ``scores_for(user_rows) -> (len(user_rows), n_posts)`` scores every post; posts in the
    user's `exclude` set are never recommended. With `windows`, a user's candidates are only
    the posts first seen (`first_seen_s`) within their ``(from_s, to_s)`` window: the posts a
    feed request would have sent then, not two weeks of history.
    """
    users = sorted(relevant)
    if not users:
        return {"recall_at_k": float("nan"), "ndcg_at_k": float("nan"), "users": 0.0}
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for start in range(0, len(users), _EVAL_CHUNK_USERS):
        chunk = users[start : start + _EVAL_CHUNK_USERS]
        scores = np.array(scores_for(np.array(chunk, dtype=np.int64)), dtype=np.float64)
        for row, user in enumerate(chunk):
            seen = list(exclude.get(user, ()))
            if seen:
                scores[row, seen] = -np.inf
            if windows is not None and first_seen_s is not None and user in windows:
                from_s, to_s = windows[user]
                scores[row, (first_seen_s < from_s) | (first_seen_s > to_s)] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, n_posts)]
        for row, user in enumerate(chunk):
            wanted = relevant[user]
            hits = np.array([post in wanted for post in top[row]], dtype=np.float64)
            recalls.append(hits.sum() / len(wanted))
            ideal = discounts[: min(len(wanted), k)].sum()
            ndcgs.append(float(hits @ discounts[: len(hits)]) / ideal)
    return {
        "recall_at_k": float(np.mean(recalls)),
        "ndcg_at_k": float(np.mean(ndcgs)),
        "users": float(len(users)),
    }


@dataclass(frozen=True)
class _EvalSets:
    relevant_val: dict[int, set[int]]
    exclude_val: dict[int, set[int]]
    relevant_test: dict[int, set[int]]
    exclude_test: dict[int, set[int]]
    first_seen_s: np.ndarray
    window_val: dict[int, tuple[float, float]]
    window_test: dict[int, tuple[float, float]]

    def args(self, part: str) -> dict[str, Any]:
        """Keyword arguments of `evaluate_rankings` for "validation" or "test"."""
        if part == "validation":
            return {
                "relevant": self.relevant_val,
                "exclude": self.exclude_val,
                "first_seen_s": self.first_seen_s,
                "windows": self.window_val,
            }
        return {
            "relevant": self.relevant_test,
            "exclude": self.exclude_test,
            "first_seen_s": self.first_seen_s,
            "windows": self.window_test,
        }


def _windows(
    users: np.ndarray, times_s: np.ndarray, window_s: float
) -> dict[int, tuple[float, float]]:
    spans: dict[int, tuple[float, float]] = {}
    for user, at_s in zip(users.tolist(), times_s.tolist(), strict=True):
        low, high = spans.get(user, (at_s, at_s))
        spans[user] = (min(low, at_s), max(high, at_s))
    return {user: (low - window_s, high) for user, (low, high) in spans.items()}


def _eval_sets(data: Interactions, split: TimeSplit, window_s: float) -> _EvalSets:
    train = _group(data.users[split.train], data.posts[split.train])
    validation = _group(data.users[split.validation], data.posts[split.validation])
    before_test = {u: train.get(u, set()) | validation.get(u, set()) for u in set(train)}
    # When a post appeared, as far as the store shows: its first positive by anyone.
    first_seen_s = np.full(len(data.post_ids), np.inf)
    np.minimum.at(first_seen_s, data.posts, data.times_s)
    return _EvalSets(
        validation,
        train,
        _group(data.users[split.test], data.posts[split.test]),
        before_test,
        first_seen_s,
        _windows(data.users[split.validation], data.times_s[split.validation], window_s),
        _windows(data.users[split.test], data.times_s[split.test], window_s),
    )


def _factor_scorer(user_factors: np.ndarray, post_factors: np.ndarray) -> Any:
    return lambda rows: user_factors[rows] @ post_factors.T


# ---- 4. training --------------------------------------------------------------------------
class _BPR(torch.nn.Module):
    """User and post factors plus a post bias; score = user . post + bias."""

    def __init__(self, n_users: int, n_posts: int, rank: int) -> None:
        super().__init__()
        self.users = torch.nn.Embedding(n_users, rank)
        self.posts = torch.nn.Embedding(n_posts, rank)
        self.bias = torch.nn.Embedding(n_posts, 1)
        torch.nn.init.normal_(self.users.weight, std=0.1)
        torch.nn.init.normal_(self.posts.weight, std=0.1)
        torch.nn.init.zeros_(self.bias.weight)

    def forward(self, users: torch.Tensor, posts: torch.Tensor) -> torch.Tensor:
        dot = (self.users(users) * self.posts(posts)).sum(-1)
        result: torch.Tensor = dot + self.bias(posts).squeeze(-1)
        return result

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """Factors with the bias folded in (users get a constant 1 column), float32.

        ``user . post`` of the exported factors equals `forward`, so the serving term
        ``tanh(user . post)`` ranks exactly as the trained model does.
        """
        with torch.no_grad():
            users = self.users.weight.detach().cpu().numpy()
            posts = self.posts.weight.detach().cpu().numpy()
            bias = self.bias.weight.detach().cpu().numpy()
        ones = np.ones((users.shape[0], 1), dtype=np.float32)
        return (
            np.hstack([users, ones]).astype(np.float32),
            np.hstack([posts, bias]).astype(np.float32),
        )


def fit_bpr(
    arrays: dict[str, Any],
    loop_config: dict[str, Any],
    *,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
    wrap: Any = None,
    report: Any = None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """BPR with Adam, validation NDCG/recall each epoch, early stopping; no Ray needed.

    Returns the best epoch's exported (user, post) factors and the history. `wrap` prepares
    the module (Ray Train's ``prepare_model``); ``report(row, best_factors_or_None, history)``
    is called every epoch, with the best factors on an improvement and on the last epoch.
    Each worker trains on its shard (``rank::world``) of the positives.
    """
    device = device or torch.device("cpu")
    torch.manual_seed(loop_config["seed"])
    rng = np.random.default_rng(loop_config["seed"] + rank)
    n_users, n_posts = arrays["n_users"], arrays["n_posts"]
    module = _BPR(n_users, n_posts, loop_config["rank"])
    model = wrap(module) if wrap is not None else module.to(device)
    # prepare_model may move the module; DDP wraps it only with several workers.
    module = getattr(model, "module", model)
    optimizer = torch.optim.Adam(model.parameters(), lr=loop_config["learning_rate"])
    users_all = torch.from_numpy(np.array(arrays["train_users"], dtype=np.int64))
    posts_all = torch.from_numpy(np.array(arrays["train_posts"], dtype=np.int64))
    negatives = loop_config["negatives_per_positive"]
    metric, k = loop_config["metric"], loop_config["k"]

    history: list[dict[str, float]] = []
    best_score, best_epoch, stale = -np.inf, 0, 0
    best_factors = module.export()
    for epoch in range(loop_config["epochs"] + 1):
        started_s = time.monotonic()
        train_loss = float("nan")
        # Epoch 0 only evaluates the random init: a floor every trained epoch must beat.
        if epoch > 0:
            model.train()
            order = torch.from_numpy(rng.permutation(len(users_all))[rank::world])
            losses = []
            for start in range(0, len(order), loop_config["batch_size"]):
                rows = order[start : start + loop_config["batch_size"]]
                users = users_all[rows].repeat_interleave(negatives).to(device)
                positives = posts_all[rows].repeat_interleave(negatives).to(device)
                sampled = torch.from_numpy(rng.integers(0, n_posts, len(users))).to(device)
                optimizer.zero_grad()
                margin = model(users, positives) - model(users, sampled)
                # L2 on the rows this batch touched only (the classic BPR regulariser).
                penalty = (
                    module.users(users).pow(2).sum()
                    + module.posts(positives).pow(2).sum()
                    + module.posts(sampled).pow(2).sum()
                ) / len(users)
                loss = -torch.nn.functional.logsigmoid(margin).mean() + loop_config["l2"] * penalty
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            train_loss = float(np.mean(losses)) if losses else float("nan")
        factors = module.export()
        metrics = evaluate_rankings(
            _factor_scorer(*factors), n_posts=n_posts, k=k, **arrays["validation_sets"]
        )
        score = metrics[metric]
        row = {"epoch": float(epoch), "train_loss": train_loss, **metrics}
        row["epoch_s"] = time.monotonic() - started_s
        history.append(row)
        improved = score > best_score
        if improved:
            best_score, best_epoch, stale, best_factors = score, epoch, 0, factors
        elif epoch > 0:
            stale += 1
        if rank == 0:
            say(
                f"epoch {epoch:3d}/{loop_config['epochs']}: loss {train_loss:.4f} val "
                f"{metric.replace('_k', f'_{k}')} {score:.4f} (best {best_score:.4f} @ "
                f"{best_epoch}){' *best' if improved else ''}"
            )
        stop = stale >= loop_config["patience"] or epoch == loop_config["epochs"]
        if report is not None:
            row_out = {**row, "best_epoch": float(best_epoch), "best_score": float(best_score)}
            report(row_out, best_factors if (stop or improved) else None, history)
        if stop:
            if rank == 0 and epoch < loop_config["epochs"]:
                say(f"early stop: no better {metric} for {stale} epochs")
            break
    return best_factors[0], best_factors[1], history


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: `fit_bpr` with a checkpoint (best factors + history) per improvement.

    All workers see the same validation users and (DDP-synchronised) weights, so all stop on
    the same epoch; rank 0 writes the checkpoints, and the last one holds the best factors.
    """
    context = ray.train.get_context()
    rank = context.get_world_rank()

    def report(
        row: dict[str, float],
        best: tuple[np.ndarray, np.ndarray] | None,
        history: list[dict[str, float]],
    ) -> None:
        if best is None:
            ray.train.report(row)
            return
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                np.savez(Path(tmp) / FACTORS_FILENAME, users=best[0], posts=best[1])
                write_history(Path(tmp), history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(row, checkpoint=checkpoint)

    fit_bpr(
        ray.get(loop_config["arrays_ref"]),
        loop_config,
        rank=rank,
        world=context.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap=ray.train.torch.prepare_model,
        report=report,
    )


def training_arrays(data: Interactions, split: TimeSplit, sets: _EvalSets) -> dict[str, Any]:
    """What the BPR loop trains and validates on: the training pairs and the validation sets."""
    return {
        "n_users": len(data.user_hashes),
        "n_posts": len(data.post_ids),
        "train_users": data.users[split.train],
        "train_posts": data.posts[split.train],
        "validation_sets": sets.args("validation"),
    }


def loop_settings(config: RecommenderMFJobConfig) -> dict[str, Any]:
    """The BPR loop's hyperparameters and early-stopping rule, from the job config."""
    return {
        "seed": config.seed,
        "rank": config.rank,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "l2": config.l2,
        "negatives_per_positive": config.negatives_per_positive,
        "patience": config.early_stopping_patience,
        "metric": config.promotion_metric,
        "k": config.k,
    }


def train_factors(
    config: RecommenderMFJobConfig,
    data: Interactions,
    split: TimeSplit,
    sets: _EvalSets,
    run_name: str,
    storage_path: Path,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """Step 4: fit BPR with `TorchTrainer`; returns the best (user, post) factors and history."""
    arrays_ref = ray.put(training_arrays(data, split, sets))
    loop_config = {"arrays_ref": arrays_ref, **loop_settings(config)}
    checkpoint = fit_torch(
        _train_loop_per_worker,
        loop_config,
        config,
        run_name,
        storage_path,
        model_summary=f"rank {config.rank}, ",
    )
    with checkpoint.as_directory() as directory:
        with np.load(Path(directory) / FACTORS_FILENAME) as saved:
            users, posts = saved["users"], saved["posts"]
        history = read_history(Path(directory))
    return users, posts, history


# ---- 5. comparison ------------------------------------------------------------------------
def _popularity_scorer(data: Interactions, split: TimeSplit) -> Any:
    counts = np.bincount(data.posts[split.train], minlength=len(data.post_ids)).astype(float)
    return lambda rows: np.broadcast_to(counts, (len(rows), len(counts))).copy()


def _serving_scorer(model: CollaborativeModel, data: Interactions, popularity: Any) -> Any:
    """Scores of a served model on this run's index space.

    Posts it never saw cannot be recommended by it (-inf); users it does not know get
    popularity, as the live feed falls back to its other terms for them.
    """
    served_users = {u: i for i, u in enumerate(model.user_ids)}
    served_posts = {p: i for i, p in enumerate(model.post_ids)}
    user_rows = np.array([served_users.get(u, -1) for u in data.user_hashes])
    post_rows = np.array([served_posts.get(p, -1) for p in data.post_ids])
    known_posts = post_rows >= 0

    def scores(rows: np.ndarray) -> np.ndarray:
        result = np.full((len(rows), len(data.post_ids)), -np.inf)
        fallback = popularity(rows)
        for i, row in enumerate(rows):
            served = user_rows[row]
            if served < 0:
                result[i] = fallback[i]
            else:
                result[i, known_posts] = (
                    model.post_factors[post_rows[known_posts]] @ model.user_factors[served]
                )
        return result

    return scores


def _serving_model(
    config: RecommenderMFJobConfig,
) -> tuple[str | None, CollaborativeModel | None]:
    """The version holding the serving alias and its factors; (None, None) when none does."""
    serving = serving_version_files(config.mlflow, FACTORS_FILENAME, "pipelines.recommender_mf")
    if serving is None:
        return None, None
    version, directory = serving
    return version, CollaborativeModel.load(directory)


# ---- 6. MLflow ----------------------------------------------------------------------------
def _factors_pyfunc_model() -> PythonModel:
    """A pyfunc PythonModel instance scoring (user, post) pairs with its ``factors`` artifact.

    The class is built inside this function so that MLflow pickles it by value: loading the
    registered model needs ``models``, not this job's module.
    """

    class FactorsPyfunc(PythonModel):
        """pyfunc wrapper: ``user_hash``, ``post_id`` columns in, a ``score`` column out."""

        # No type hints on these two: MLflow reads them as a (wrong) input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            self._model = CollaborativeModel.load(context.artifacts["factors"])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            users = {u: i for i, u in enumerate(self._model.user_ids)}
            posts = {p: i for i, p in enumerate(self._model.post_ids)}
            scores = []
            for user, post in zip(model_input["user_hash"], model_input["post_id"], strict=True):
                row, column = users.get(str(user)), posts.get(str(post))
                known = row is not None and column is not None
                scores.append(
                    math.tanh(
                        float(self._model.user_factors[row] @ self._model.post_factors[column])
                    )
                    if known
                    else 0.0
                )
            return pd.DataFrame({"score": scores})

    return FactorsPyfunc()


def _register_and_promote(
    config: RecommenderMFJobConfig,
    run_name: str,
    factors_dir: Path,
    history: list[dict[str, float]],
    report: dict[str, Any],
    report_path: Path,
    serving_version: str | None,
) -> Registration:
    """Step 6: one MLflow run with params, metrics, report and factors; register; promote.

    The serving version was scored with the candidate in `report` (same users, same rows).
    """
    metric = config.promotion_metric
    params: dict[str, object] = dict(
        config.model_dump(exclude={"mlflow", "data_path", "user_id_salt"})
    )
    if config.data_path:
        params["data_file"] = Path(config.data_path).name  # never a home-directory path
    metrics = {
        f"{part}_{ranker}_{key}": value
        for part in ("validation", "test")
        for ranker, values in report[part].items()
        for key, value in values.items()
    }
    # A made-up pair: the input example must never be a row of the training data.
    example = pd.DataFrame({"user_hash": ["0" * 32], "post_id": ["post-example"]})
    model = PyfuncModel(
        python_model=_factors_pyfunc_model(),
        artifacts={"factors": str(factors_dir)},
        input_example=example,
        output_example=pd.DataFrame({"score": [0.0]}),
        pip_requirements=["numpy>=2.0", "pandas>=2.2"],
    )
    serving = ServingScore(serving_version, report["validation"].get("serving", {}).get(metric))
    return log_and_register(
        config.mlflow,
        run_name,
        RunRecord(params, history, metrics, (report_path,)),
        model,
        metric,
        float(report["validation"]["model"][metric]),
        lambda: serving,
    )


# ---- the job ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MFJobResult:
    """What a finished job produced."""

    run_name: str
    history: list[dict[str, float]]
    report: dict[str, Any]
    registration: Registration
    collaborative_model_path: Path | None  # set when promoted: give it to the Recommender


def run_job(config: RecommenderMFJobConfig) -> MFJobResult:
    """Run every step of the job; see the module docstring."""
    if not ray.is_initialized():
        # A local cluster unless RAY_ADDRESS points at a running one (needed for "service").
        ray.init(include_dashboard=False)
    data = load_interactions(config)
    split = time_split(data.users, data.times_s, config.validation_fraction, config.test_fraction)
    if len(split.validation) == 0 or len(split.test) == 0:
        raise ValueError(
            f"{len(data.user_hashes)} users but none has 3+ positives to hold out; collect "
            "more history before training"
        )
    say(
        f"data: {data.events_read} interactions -> {len(data.users)} positive pairs, "
        f"{len(data.user_hashes)} users, {len(data.post_ids)} posts; train {len(split.train)}, "
        f"validation {len(split.validation)}, test {len(split.test)} (held out, latest by time)"
    )
    sets = _eval_sets(data, split, config.candidate_window_s)
    run_name = new_run_name("recommender-mf")
    storage = job_dir(config.storage_path, "ray_results")
    users, posts, history = train_factors(config, data, split, sets, run_name, storage)

    n_posts = len(data.post_ids)
    popularity = _popularity_scorer(data, split)
    rankers: dict[str, Any] = {"model": _factor_scorer(users, posts), "popularity": popularity}
    serving_version, serving_model = _serving_model(config)
    if serving_model is not None:
        rankers["serving"] = _serving_scorer(serving_model, data, popularity)
    report: dict[str, Any] = {
        "run_name": run_name,
        "k": config.k,
        "counts": {
            "interactions": data.events_read,
            "positive_pairs": int(len(data.users)),
            "users": len(data.user_hashes),
            "posts": n_posts,
            "train": int(len(split.train)),
            "validation": int(len(split.validation)),
            "test": int(len(split.test)),
        },
        "serving_version": serving_version,
        "validation": {
            name: evaluate_rankings(scorer, n_posts=n_posts, k=config.k, **sets.args("validation"))
            for name, scorer in rankers.items()
        },
        "test": {
            name: evaluate_rankings(scorer, n_posts=n_posts, k=config.k, **sets.args("test"))
            for name, scorer in rankers.items()
        },
    }
    for part in ("validation", "test"):
        for name, values in report[part].items():
            say(
                f"{part:10s} {name:10s} recall@{config.k} {values['recall_at_k']:.4f} "
                f"NDCG@{config.k} {values['ndcg_at_k']:.4f} ({int(values['users'])} users)"
            )
    report_path = write_json_report(job_dir(config.report_dir, "reports"), run_name, report)

    factors_dir = storage / run_name / "factors"
    CollaborativeModel(
        data.user_hashes, data.post_ids, users, posts, run_name, config.user_id_salt
    ).save(factors_dir)
    registration = _register_and_promote(
        config, run_name, factors_dir, history, report, report_path, serving_version
    )
    served: Path | None = None
    if registration.promotion.promoted:
        # A fresh directory per version: the node reloads when collaborative_model_path
        # changes, and a replica still reading the old version is never disturbed.
        name, version = registration.model_name, registration.version
        served = job_dir(config.output_dir, "models") / name / f"v{version}"
        partial = served.with_name(f"{served.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(factors_dir, partial)
        (partial / "VERSION").write_text(f"{name}/{version}\n", encoding="utf-8")
        shutil.rmtree(served, ignore_errors=True)
        partial.replace(served)
        say(f"promoted: set the Recommender user_config collaborative_model_path: {served}")
    return MFJobResult(run_name, history, report, registration, served)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.recommender_mf --config <job YAML>``."""

    def run(config_path: str) -> dict[str, object]:
        result = run_job(load_mf_job_config(config_path))
        return {
            "run_name": result.run_name,
            "collaborative_model_path": str(result.collaborative_model_path or ""),
            **result.registration.as_dict(),
        }

    return run_cli(__doc__.split("\n\n")[0], argv, run)


if __name__ == "__main__":
    sys.exit(main())
