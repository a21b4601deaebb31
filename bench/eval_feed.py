"""Offline evaluation of the feed ranking: on a ratings file, or on the synthetic network.

Two modes, named in the output:

    .venv/bin/python -m bench.eval_feed --ratings PATH [--max-users N]      # ratings file
    .venv/bin/python -m bench.eval_feed [--users 300 --posts 2400 --days 14 --test-days 4]

Ratings mode (issue 20's protocol; see `evaluate_ratings`): any file in the MovieLens
``user item rating timestamp`` layout (tab, comma or ``::`` separated; a header line is
skipped), given by path: nothing is downloaded, nothing committed. Per user, ratings in time
order, the last 20% held out; the earlier ones go in as posts and interactions (rating >= 4:
``like``, else ``view``), then each user with a held-out positive gets a feed over 100
candidates (their held-out positives plus posts they never rated). NDCG@20 and recall@20 for
ours, ours without freshness, ours without diversity, popularity, item-kNN and random, in
one run. ``--url`` sends the same events and feed requests through the HTTP API of a running
service instead (ours only). ``--blend`` also learns the blend of the terms from simulated
impressions (`simulate_blend`) and reports ours with the learned weights next to ours with the
hand-set ones, both fed the same events.

Synthetic mode (``pipelines/synthetic_social.py``) replays the history in time order through
`RecommenderService` (embedded stores, the real MiniLM vectors): posts are ingested when they
are created, interactions when they happen.
Over the last ``--test-days``, once per ``--step-hours`` it ranks, for every user, the posts of
the last three days (the candidates a feed service would be sent) and compares the top 20 with
the posts that user likes, comments on or shares before the next step. Reported: recall@20 and
NDCG@20 (binary relevance), averaged over (user, step) pairs with at least one such post, for
our ranking, our ranking without diversity (MMR lambda 1), popularity, and random.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from configs.pipelines import load_blend_job_config
from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService, embed_missing
from models.blend import (
    TERMS,
    BlendWeights,
    blend_ndcg,
    feed_ndcgs,
    fit_blend,
    label_impressions,
    paired_gain_lower_bound,
    time_holdout,
)
from models.ranking import ScoreWeights, hash_user_id
from models.recommender import Interaction, NewPost
from pipelines.synthetic_social import DAY_S, SyntheticSocial, generate

POSITIVE = frozenset({"like", "comment", "share"})
K = 20
CANDIDATE_WINDOW_S = 3 * DAY_S


def recall_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    """Share of the relevant posts found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    """Binary-relevance NDCG: DCG of the ranking over DCG of a perfect one."""
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(
    network: SyntheticSocial,
    embed: Callable[[list[str]], list[list[float]]],
    test_days: float = 4.0,
    step_hours: float = 12.0,
    seed: int = 0,
    config: RecommenderConfig | None = None,
) -> dict[str, Any]:
    """Replay ``network`` and score each ranker; returns metrics per ranker and counts."""
    base = config or RecommenderConfig(cache_ttl_s=0)
    services = {
        "ours": RecommenderService(base),
        "ours_no_mmr": RecommenderService(base.model_copy(update={"mmr_lambda": 1.0})),
    }
    rng = random.Random(seed)
    popularity: dict[str, float] = {}
    weights = base.event_weights
    posts, events = network.posts, network.interactions
    test_start = network.end_s - test_days * DAY_S
    step_s = step_hours * 3600.0
    # Embed every text once; both services then reuse the vectors (as the node would).
    vectors: dict[str, list[float]] = {}

    def cached_embed(texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in vectors]
        if missing:
            for text, vector in zip(missing, embed(missing), strict=True):
                vectors[text] = vector
        return [vectors[t] for t in texts]

    post_i = event_i = 0

    def advance(until_s: float) -> None:
        nonlocal post_i, event_i
        new_posts: list[dict[str, Any]] = []
        while post_i < len(posts) and posts[post_i]["created_at_s"] < until_s:
            new_posts.append(posts[post_i])
            post_i += 1
        if new_posts:
            typed_posts = [NewPost(**p) for p in new_posts]
            for service in services.values():
                embed_missing(service, typed_posts, cached_embed)
        new_events: list[dict[str, Any]] = []
        while event_i < len(events) and events[event_i]["timestamp_s"] < until_s:
            new_events.append(events[event_i])
            event_i += 1
        for start in range(0, len(new_events), 500):
            batch = [Interaction(**e) for e in new_events[start : start + 500]]
            for service in services.values():
                service.ingest_interactions(batch)
        for event in new_events:
            weight = getattr(weights, event["type"])
            if weight > 0:
                popularity[event["post_id"]] = popularity.get(event["post_id"], 0.0) + weight

    scores: dict[str, dict[str, list[float]]] = {
        name: {"recall": [], "ndcg": []} for name in [*services, "popularity", "random"]
    }
    rank_ms: list[float] = []
    advance(test_start)
    now = test_start
    while now < network.end_s:
        horizon = min(now + step_s, network.end_s)
        candidates = [
            p["post_id"] for p in posts if now - CANDIDATE_WINDOW_S <= p["created_at_s"] < now
        ]
        truth: dict[str, set[str]] = {}
        window = set(candidates)
        for event in events:
            if now <= event["timestamp_s"] < horizon and event["type"] in POSITIVE:
                if event["post_id"] in window:
                    truth.setdefault(event["user_id"], set()).add(event["post_id"])
        for user, relevant in sorted(truth.items()):
            ranked: dict[str, list[str]] = {}
            for name, service in services.items():
                began = time.perf_counter()
                answer = service.rank_feed(user, candidates, K, now_s=now, use_cache=False)
                rank_ms.append((time.perf_counter() - began) * 1000)
                ranked[name] = [item.post_id for item in answer.posts]
            ranked["popularity"] = sorted(candidates, key=lambda p: -popularity.get(p, 0.0))
            shuffled = list(candidates)
            rng.shuffle(shuffled)
            ranked["random"] = shuffled
            for name, order in ranked.items():
                scores[name]["recall"].append(recall_at_k(order, relevant))
                scores[name]["ndcg"].append(ndcg_at_k(order, relevant))
        advance(horizon)
        now = horizon
    pairs = len(scores["random"]["recall"])
    return {
        "metrics": {
            name: {
                "recall@20": round(float(np.mean(v["recall"])), 4) if pairs else 0.0,
                "ndcg@20": round(float(np.mean(v["ndcg"])), 4) if pairs else 0.0,
            }
            for name, v in scores.items()
        },
        "evaluated_user_steps": pairs,
        "posts": len(posts),
        "interactions": len(events),
        "rank_ms_p50": round(float(np.percentile(rank_ms, 50)), 2) if rank_ms else None,
    }


# ---- ratings files (real data) -------------------------------------------------------------
POSITIVE_RATING = 4
HELD_OUT_SHARE = 0.2
CANDIDATES = 100
MIN_RATINGS = 5


@dataclass(frozen=True)
class Rating:
    """One line of a ratings file."""

    user: str
    item: str
    rating: float
    timestamp_s: float


def read_ratings(path: Path) -> list[Rating]:
    """Ratings in the MovieLens ``user item rating timestamp`` layout: tab, comma or ``::``
    separated (sniffed from the first line), an optional header line skipped.

    Raises:
        ValueError: A line without four fields, or with a rating or time that is not a number
            (its line number is named).
    """
    ratings: list[Rating] = []
    separator: str | None = None
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            if separator is None:
                separator = next((s for s in ("\t", "::", ",") if s in line), None)
                if separator is None:
                    raise ValueError(
                        f"{path}:{number}: no tab, comma or '::' between fields; the layout is "
                        "user, item, rating, timestamp"
                    )
            fields = [f.strip() for f in line.split(separator)]
            if len(fields) < 4:
                raise ValueError(
                    f"{path}:{number}: {len(fields)} fields; need user, item, rating, timestamp"
                )
            try:
                rating, timestamp = float(fields[2]), float(fields[3])
            except ValueError:
                if number == 1:
                    continue  # a header line
                raise ValueError(
                    f"{path}:{number}: rating {fields[2]!r} or timestamp {fields[3]!r} is not "
                    "a number"
                ) from None
            ratings.append(Rating(fields[0], fields[1], rating, timestamp))
    if not ratings:
        raise ValueError(f"{path} holds no ratings")
    return ratings


@dataclass
class RatingsSplit:
    """Issue 20's temporal split of a ratings file."""

    train: list[Rating]
    held_out: dict[str, list[Rating]]
    items: list[str]
    first_seen_s: dict[str, float]


def split_ratings(ratings: list[Rating], held_out_share: float = HELD_OUT_SHARE) -> RatingsSplit:
    """Per user, ratings in time order; the last ``held_out_share`` (at least one) held out.
    Users with fewer than ``MIN_RATINGS`` ratings are all training."""
    by_user: dict[str, list[Rating]] = {}
    for rating in ratings:
        by_user.setdefault(rating.user, []).append(rating)
    train: list[Rating] = []
    held_out: dict[str, list[Rating]] = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: (r.timestamp_s, r.item))
        cut = (
            len(rows)
            if len(rows) < MIN_RATINGS
            else len(rows) - max(1, round(held_out_share * len(rows)))
        )
        train += rows[:cut]
        if cut < len(rows):
            held_out[user] = rows[cut:]
    train.sort(key=lambda r: r.timestamp_s)
    first_seen: dict[str, float] = {}
    for rating in sorted(ratings, key=lambda r: r.timestamp_s):
        first_seen.setdefault(rating.item, rating.timestamp_s)
    return RatingsSplit(train, held_out, sorted(first_seen), first_seen)


def interaction_of(rating: Rating, index: int) -> Interaction:
    """A training rating as the interaction a feed service would see."""
    kind = "like" if rating.rating >= POSITIVE_RATING else "view"
    return Interaction(f"r{index}", rating.user, rating.item, kind, rating.timestamp_s)


def item_knn_scores(train: list[Rating]) -> Callable[[str, list[str]], list[float]]:
    """Item-to-item cosine over the whole training history (binary: positive ratings), the
    classic baseline (Sarwar et al., 2001): a candidate's score is the sum of its
    similarities to every item the user rated positively."""
    users: dict[str, set[str]] = {}
    for rating in train:
        if rating.rating >= POSITIVE_RATING:
            users.setdefault(rating.user, set()).add(rating.item)
    co: dict[str, dict[str, float]] = {}
    count: dict[str, float] = {}
    for liked in users.values():
        for item in liked:
            count[item] = count.get(item, 0.0) + 1.0
            row = co.setdefault(item, {})
            for other in liked:
                if other != item:
                    row[other] = row.get(other, 0.0) + 1.0

    def score(user: str, candidates: list[str]) -> list[float]:
        liked = users.get(user, set())
        result = []
        for candidate in candidates:
            row = co.get(candidate, {})
            result.append(
                sum(row.get(i, 0.0) / math.sqrt(count[i] * count[candidate]) for i in liked)
                if row
                else 0.0
            )
        return result

    return score


class HttpFeed:
    """The events and feed routes of a running service (``--url``), for ours over HTTP."""

    def __init__(self, url: str, api_key: str, run_id: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=120.0)
        self.prefix = run_id + "-"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    def ingest_posts(self, posts: list[NewPost]) -> None:
        """``POST /api/v1/events/posts`` in requests of 500."""
        for start in range(0, len(posts), 500):
            body = [
                {
                    "post_id": self.prefix + p.post_id,
                    "author_id": p.author_id,
                    "text": p.text,
                    "created_at": _iso(p.created_at_s),
                }
                for p in posts[start : start + 500]
            ]
            self._post("/api/v1/events/posts", {"posts": body})

    def ingest_interactions(self, events: list[Interaction]) -> None:
        """``POST /api/v1/events/interactions`` (one request)."""
        body = [
            {
                "event_id": self.prefix + e.event_id,
                "user_id": self.prefix + e.user_id,
                "post_id": self.prefix + e.post_id,
                "type": e.type,
                "timestamp": _iso(e.timestamp_s),
            }
            for e in events
        ]
        self._post("/api/v1/events/interactions", {"interactions": body})

    def rank(self, user: str, candidates: list[str]) -> list[str]:
        """``POST /api/v1/recommendations/feed``, limit 20: the post ids, best first."""
        answer = self._post(
            "/api/v1/recommendations/feed",
            {
                "user_id": self.prefix + user,
                "candidate_post_ids": [self.prefix + c for c in candidates],
                "limit": K,
            },
        )
        return [p["post_id"][len(self.prefix) :] for p in answer["posts"]]


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


LOG_SHARE = 0.3
LOG_STEPS = 6
LOG_CANDIDATES = 50
LOG_USERS_PER_STEP = 300


@dataclass
class SimulatedBlend:
    """What `simulate_blend` produced: the event stream with its views, the learned weights."""

    events: list[Interaction]
    weights: ScoreWeights
    report: dict[str, Any]


def simulate_blend(
    split: RatingsSplit,
    posts: list[NewPost],
    events: list[Interaction],
    base: RecommenderConfig,
    seed: int = 0,
) -> SimulatedBlend:
    """Impressions from the training part of a ratings file, and the blend learned on them.

    The first ``1 - LOG_SHARE`` of the training interactions (by time) go in as usual. The
    rest, the logging window, is cut into ``LOG_STEPS`` slices; at the start of each, every
    user with a positive rating in the slice (at most ``LOG_USERS_PER_STEP``, sampled) is
    served a feed (limit 20) over ``LOG_CANDIDATES`` candidates: the items they rate in the
    slice and items they never rated. The service logs what it showed (its impression log);
    each shown post the user does not rate in the slice gets a ``view`` event (seen, ignored);
    rated ones already have their ``like`` (positive) or ``view`` from the ratings. Then the
    slice's events go in. At the end the job's own steps run on the log: labels
    (`label_impressions`), the latest 20% of feeds held out, `fit_blend`, NDCG@20 of the
    learned and the hand-set blend on the held-out feeds.
    """
    rng = random.Random(seed + 1)
    service = RecommenderService(base)
    service.ingest_posts(posts, {})
    cut = int(len(events) * (1.0 - LOG_SHARE))
    stream: list[Interaction] = list(events[:cut])
    for start in range(0, cut, 500):
        service.ingest_interactions(events[start : min(start + 500, cut)])
    window = events[cut:]
    rating_of = {(r.user, r.item): r.rating for r in split.train}
    rated: dict[str, set[str]] = {}
    for event in events:
        rated.setdefault(event.user_id, set()).add(event.post_id)
    step_size = max(1, math.ceil(len(window) / LOG_STEPS))
    span_s = 0.0
    views = feeds = 0
    for begin in range(0, len(window), step_size):
        part = window[begin : begin + step_size]
        served_s = part[0].timestamp_s - 1.0
        span_s = max(span_s, part[-1].timestamp_s - served_s)
        in_part: dict[str, list[str]] = {}
        for event in part:
            in_part.setdefault(event.user_id, []).append(event.post_id)
        users = sorted(
            u
            for u, items in in_part.items()
            if any(rating_of[(u, i)] >= POSITIVE_RATING for i in items)
        )
        if len(users) > LOG_USERS_PER_STEP:
            users = sorted(rng.sample(users, LOG_USERS_PER_STEP))
        extra: list[Interaction] = []
        for user in users:
            own = list(dict.fromkeys(in_part[user]))[: LOG_CANDIDATES // 2]
            pool = [i for i in split.items if i not in rated.get(user, set())]
            candidates = own + rng.sample(pool, min(len(pool), LOG_CANDIDATES - len(own)))
            rng.shuffle(candidates)
            answer = service.rank_feed(user, candidates, K, now_s=served_s, use_cache=False)
            feeds += 1
            for item in answer.posts:
                if item.post_id not in in_part[user]:
                    views += 1
                    extra.append(
                        Interaction(f"sv{views}", user, item.post_id, "view", served_s + 1.0)
                    )
        batch = sorted(part + extra, key=lambda e: e.timestamp_s)
        for start in range(0, len(batch), 500):
            service.ingest_interactions(batch[start : start + 500])
        stream += batch
    salt = base.impressions.user_id_salt
    impressions: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = service.export_impressions(after, 10_000)
        impressions += [
            {
                f: getattr(row, f)
                for f in ("feed_id", "user_hash", "post_id", "served_at_s", "position", *TERMS)
            }
            for row in page.impressions
        ]
        after = page.next_after
        if after is None:
            break
    logged_events = [
        {
            "user_hash": hash_user_id(e.user_id, salt),
            "post_id": e.post_id,
            "type": e.type,
            "timestamp_s": e.timestamp_s,
        }
        for e in stream[cut:]
    ]
    data = label_impressions(impressions, logged_events, span_s + 1.0)
    train, held_out = time_holdout(data, 0.2)
    weights, stats = fit_blend(train)
    hand = ScoreWeights(**base.weights.model_dump())
    report = {
        "feeds_logged": feeds,
        "impressions_logged": data.logged,
        "impressions_seen": len(data),
        "engaged": int(data.positive.sum()),
        "synthetic_views": views,
        "learned_weights": {t: getattr(weights, t) for t in TERMS},
        "held_out_feeds_ndcg@20": {
            "learned": round(blend_ndcg(weights, held_out, K)["ndcg_at_k"], 4),
            "hand_set": round(blend_ndcg(hand, held_out, K)["ndcg_at_k"], 4),
            "feeds": int(blend_ndcg(hand, held_out, K)["feeds"]),
        },
        "fit": {k: round(v, 4) for k, v in stats.items()},
        "gate": _gate(weights, hand, held_out),
    }
    return SimulatedBlend(stream, weights, report)


def _gate(learned: ScoreWeights, hand: ScoreWeights, held_out: Any) -> dict[str, Any]:
    """What the job's promotion gate decides on these held-out feeds (the committed job
    config's margin and confidence): the mean per-feed gain, its lower bound, and whether it
    would promote."""
    defaults = load_blend_job_config(
        Path(__file__).resolve().parents[1] / "configs" / "pipelines" / "ranking_blend.yaml"
    )
    candidate = feed_ndcgs(learned, held_out, K)
    baseline = feed_ndcgs(hand, held_out, K)
    mean_gain = float((candidate - baseline).mean())
    lower = paired_gain_lower_bound(
        candidate, baseline, defaults.gain_confidence, defaults.bootstrap_rounds, defaults.seed
    )
    margin = defaults.mlflow.promotion_margin
    return {
        "mean_gain": round(mean_gain, 4),
        "gain_lower_bound": round(lower, 4),
        "confidence": defaults.gain_confidence,
        "margin": margin,
        "would_promote": mean_gain > margin and lower > 0.0,
    }


def evaluate_ratings(
    ratings: list[Rating],
    max_users: int | None = None,
    seed: int = 0,
    config: RecommenderConfig | None = None,
    http: HttpFeed | None = None,
    blend_dir: Path | None = None,
) -> dict[str, Any]:
    """Issue 20's protocol on a ratings file; metrics per ranker and counts.

    Posts are the items (no text in this layout, so the content term stays off), created at
    their first rating; training ratings are sent in time order in requests of 500. Each
    evaluated user (a held-out positive, at least one training rating) gets 100 candidates:
    their held-out positives (at most 50) and items they never rated before the split,
    drawn uniformly. Feeds are ranked after all training events, at the service's clock.

    With ``blend_dir`` (a scratch directory), `simulate_blend` learns the blend's weights,
    and two more rankers run: ``ours_hand_set_logged`` and ``ours_learned_blend``, both fed
    the training events plus the simulated views, one with the hand-set weights, one with
    the learned ones (written to ``blend_dir`` and loaded as the node loads them).
    """
    split = split_ratings(ratings)
    base = config or RecommenderConfig(cache_ttl_s=0)
    services: dict[str, Any] = {}
    if http is not None:
        services["ours (HTTP)"] = http
    else:
        services = {
            "ours": RecommenderService(base),
            "ours_no_freshness": RecommenderService(
                base.model_copy(
                    update={"weights": base.weights.model_copy(update={"freshness": 0.0})}
                )
            ),
            "ours_no_mmr": RecommenderService(base.model_copy(update={"mmr_lambda": 1.0})),
        }
    posts = [
        NewPost(post_id=item, author_id="catalogue", created_at_s=split.first_seen_s[item])
        for item in split.items
    ]
    events = [interaction_of(r, i) for i, r in enumerate(split.train)]
    streams: dict[str, list[Interaction]] = {}
    blend_report: dict[str, Any] | None = None
    if blend_dir is not None and http is None:
        simulated = simulate_blend(split, posts, events, base, seed)
        blend_report = simulated.report
        BlendWeights(simulated.weights, "bench-learned").save(blend_dir)
        services["ours_hand_set_logged"] = RecommenderService(base)
        services["ours_learned_blend"] = RecommenderService(
            base.model_copy(update={"blend_weights_path": str(blend_dir)})
        )
        streams = dict.fromkeys(list(services)[-2:], simulated.events)
    ingest_s: dict[str, float] = {}
    for name, service in services.items():
        began = time.perf_counter()
        if http is not None:
            service.ingest_posts(posts)
        else:
            service.ingest_posts(posts, {})
        stream = streams.get(name, events)
        for start in range(0, len(stream), 500):
            service.ingest_interactions(stream[start : start + 500])
        ingest_s[name] = round(time.perf_counter() - began, 1)
    popularity: dict[str, float] = {}
    weights = base.event_weights
    for event in events:
        popularity[event.post_id] = popularity.get(event.post_id, 0.0) + max(
            getattr(weights, event.type), 0.0
        )
    knn = item_knn_scores(split.train)
    rated: dict[str, set[str]] = {}
    for rating in split.train:
        rated.setdefault(rating.user, set()).add(rating.item)
    rng = random.Random(seed)
    eligible = sorted(
        user
        for user, rows in split.held_out.items()
        if user in rated and any(r.rating >= POSITIVE_RATING for r in rows)
    )
    if max_users is not None and len(eligible) > max_users:
        eligible = sorted(rng.sample(eligible, max_users))
    names = [*services, "popularity", "item_knn", "random"]
    scores: dict[str, dict[str, list[float]]] = {n: {"recall": [], "ndcg": []} for n in names}
    for user in eligible:
        relevant = {r.item for r in split.held_out[user] if r.rating >= POSITIVE_RATING}
        positives = sorted(relevant)[: CANDIDATES // 2]
        relevant = set(positives)
        seen = rated[user] | {r.item for r in split.held_out[user]}
        pool = [i for i in split.items if i not in seen]
        candidates = positives + rng.sample(pool, min(len(pool), CANDIDATES - len(positives)))
        rng.shuffle(candidates)
        ranked: dict[str, list[str]] = {}
        for name, service in services.items():
            if http is not None:
                ranked[name] = service.rank(user, candidates)
            else:
                answer = service.rank_feed(user, candidates, K, use_cache=False)
                ranked[name] = [item.post_id for item in answer.posts]
        ranked["popularity"] = sorted(candidates, key=lambda p: -popularity.get(p, 0.0))
        knn_scores = knn(user, candidates)
        order = sorted(range(len(candidates)), key=lambda i: -knn_scores[i])
        ranked["item_knn"] = [candidates[i] for i in order]
        shuffled = list(candidates)
        rng.shuffle(shuffled)
        ranked["random"] = shuffled
        for name, ranking in ranked.items():
            scores[name]["recall"].append(recall_at_k(ranking, relevant))
            scores[name]["ndcg"].append(ndcg_at_k(ranking, relevant))
    result: dict[str, Any] = {
        "mode": "ratings",
        "metrics": {
            name: {
                "ndcg@20": round(float(np.mean(v["ndcg"])), 4) if v["ndcg"] else 0.0,
                "recall@20": round(float(np.mean(v["recall"])), 4) if v["recall"] else 0.0,
            }
            for name, v in scores.items()
        },
        "evaluated_users": len(eligible),
        "ratings": len(ratings),
        "train_interactions": len(events),
        "posts": len(posts),
        "ingest_s": ingest_s,
    }
    if blend_report is not None:
        result["blend"] = blend_report
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the mode the arguments name and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ratings",
        type=Path,
        default=None,
        help="ratings mode: a user/item/rating/timestamp file (else the synthetic network)",
    )
    parser.add_argument("--max-users", type=int, default=None, help="ratings mode: sample")
    parser.add_argument("--url", default=None, help="ratings mode: a running service's URL")
    parser.add_argument("--api-key", default="", help="with --url: the service's API key")
    parser.add_argument(
        "--blend",
        action="store_true",
        help="ratings mode: also learn the blend from simulated impressions (simulate_blend)",
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--posts", type=int, default=2400)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--test-days", type=float, default=4.0)
    parser.add_argument("--step-hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # The service logs impressions with keyed user hashes; they never leave this process, so
    # the public development key does (a secret set in the environment is used instead).
    os.environ.setdefault("SOCIALPLAY_DEV_MODE", "1")
    began = time.perf_counter()
    if args.ratings is not None:
        http = None
        if args.url:
            http = HttpFeed(args.url, args.api_key, f"eval-{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory() as scratch:
            result = evaluate_ratings(
                read_ratings(args.ratings),
                args.max_users,
                args.seed,
                http=http,
                blend_dir=Path(scratch) / "blend" if args.blend else None,
            )
        result["file"] = args.ratings.name
    else:
        from models.embeddings import MiniLMEmbedder

        network = generate(n_users=args.users, n_posts=args.posts, days=args.days, seed=args.seed)
        embedder = MiniLMEmbedder.load(device="cpu")
        result = evaluate(
            network, embedder.predict_batch, args.test_days, args.step_hours, args.seed
        )
        result["mode"] = "synthetic social network"
    result["args"] = {k: str(v) for k, v in vars(args).items() if k != "api_key"}
    result["wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
