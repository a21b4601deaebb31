"""A synthetic social network: a data source for offline evaluation, tests and benchmarks.

Users have hidden interests (a Dirichlet mix over topics, concentrated on one to three);
posts are written on one topic from topic-specific templates, so their MiniLM vectors cluster
by topic the way real posts do; each post has a hidden quality. Users open the app in
sessions, see recent posts and react with probabilities that follow their interest in the
post's topic and the post's quality: views, likes, comments and shares for what they like,
hides (and rarely reports) for what they do not.

Deterministic for a given seed. ``generate()`` returns plain dicts in the shapes the event
routes accept (times as epoch seconds under ``created_at_s`` / ``timestamp_s``).

It lives in ``pipelines`` because both sides use it: the recommender's unit and integration
tests feed it through the service, and the offline evaluation and benchmarks (``bench/``)
replay it; its interactions written as JSONL (``python -m bench.export_interactions``) are a
``source: jsonl`` input of ``pipelines.recommender_mf``. Nothing in the serving path imports it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

DAY_S = 86_400.0

# Per topic: templates with {slots} and the words that fill them (data, kept out of the code).
TOPICS_FILE = Path(__file__).resolve().with_name("synthetic_topics.yaml")
TOPICS: dict[str, dict[str, Any]] = yaml.safe_load(TOPICS_FILE.read_text(encoding="utf-8"))
TOPIC_NAMES = list(TOPICS)


@dataclass
class SyntheticSocial:
    """The generated network: users' hidden interests, posts and time-ordered interactions."""

    interests: dict[str, npt.NDArray[np.float64]]
    posts: list[dict[str, Any]]
    interactions: list[dict[str, Any]]
    post_topic: dict[str, str] = field(default_factory=dict)
    start_s: float = 0.0
    end_s: float = 0.0


def post_text(topic: str, rng: random.Random) -> str:
    """One post on ``topic`` from its templates, slots filled at random."""
    spec = TOPICS[topic]
    template: str = rng.choice(spec["templates"])
    values = {slot: rng.choice(words) for slot, words in spec["slots"].items()}
    return template.format(**values)


def generate(
    n_users: int = 200,
    n_posts: int = 1500,
    days: float = 14.0,
    sessions_per_day: float = 1.5,
    impressions_per_session: int = 12,
    seed: int = 0,
    start_s: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    topics: list[str] | None = None,
) -> SyntheticSocial:
    """Generate users, posts and interactions; everything sorted by time."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    names = topics or TOPIC_NAMES
    end_s = start_s + days * DAY_S
    users = [f"user-{i:04d}" for i in range(n_users)]
    interests = {u: np_rng.dirichlet([0.25] * len(names)) for u in users}
    posts: list[dict[str, Any]] = []
    topic_of: dict[str, str] = {}
    quality: dict[str, float] = {}
    for i in range(n_posts):
        topic = rng.choice(names)
        post_id = f"post-{i:05d}"
        tags = [topic] if rng.random() < 0.8 else []
        posts.append(
            {
                "post_id": post_id,
                "author_id": rng.choice(users),
                "text": post_text(topic, rng),
                "image_urls": [],
                "tags": tags,
                "created_at_s": start_s + rng.random() * (end_s - start_s),
            }
        )
        topic_of[post_id] = topic
        quality[post_id] = float(np_rng.lognormal(0.0, 0.5))
    posts.sort(key=lambda p: p["created_at_s"])
    created = np.array([p["created_at_s"] for p in posts])
    topic_index = {t: i for i, t in enumerate(names)}
    interactions: list[dict[str, Any]] = []
    for user in users:
        n_sessions = np_rng.poisson(sessions_per_day * days)
        for t in sorted(start_s + np_rng.random(n_sessions) * (end_s - start_s)):
            # A session shows posts from the last three days, newest more likely.
            low = int(np.searchsorted(created, t - 3 * DAY_S))
            high = int(np.searchsorted(created, t))
            if high <= low:
                continue
            shown = rng.sample(range(low, high), min(impressions_per_session, high - low))
            for k, index in enumerate(shown):
                post = posts[index]
                affinity = float(interests[user][topic_index[topic_of[post["post_id"]]]])
                boost = min(quality[post["post_id"]], 3.0)
                at = float(t) + 5.0 * k
                kinds: list[str] = []
                if rng.random() < 0.3:
                    kinds.append("view")
                if rng.random() < min(0.9, 0.8 * affinity * boost):
                    kinds.append("like")
                    if rng.random() < 0.25:
                        kinds.append("comment")
                    if rng.random() < 0.12:
                        kinds.append("share")
                elif rng.random() < 0.08 * (1.0 - affinity):
                    kinds.append("report" if rng.random() < 0.1 else "hide")
                for kind in kinds:
                    interactions.append(
                        {
                            "event_id": f"ev-{len(interactions):07d}",
                            "user_id": user,
                            "post_id": post["post_id"],
                            "type": kind,
                            "timestamp_s": at,
                        }
                    )
                    at += 1.0
    interactions.sort(key=lambda e: (e["timestamp_s"], e["event_id"]))
    return SyntheticSocial(interests, posts, interactions, topic_of, start_s, end_s)
