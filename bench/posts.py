"""Deterministic synthetic social posts (~20 words each) for load tests.

Templates x topics x openers give far more than the 500 distinct posts the load generator
rotates through; about one post in five is mildly offensive, so the moderation models see
both kinds. Nothing here is printed: the posts are written to a file that wrk reads.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_NUM_POSTS = 600
DEFAULT_SEED = 20261125
OFFENSIVE_SHARE = 0.2

_TOPICS = (
    "the new cafe downtown",
    "my morning run",
    "this week's football match",
    "the concert",
    "the season finale",
    "our hiking trip",
    "the new phone update",
    "my sister's wedding",
    "the farmers market",
    "the city marathon",
    "that cooking class",
    "the museum exhibit",
    "the late train",
    "my first pottery lesson",
    "the school fundraiser",
    "the beach cleanup",
    "the book club meeting",
    "the gaming tournament",
    "the road trip",
    "the film festival",
    "the yoga retreat",
    "the street food fair",
    "the jazz night",
    "the science fair",
    "the new bike lane",
)

_OPENERS = (
    "Honestly",
    "Just saying",
    "Quick update",
    "Not gonna lie",
    "Real talk",
    "So",
    "Well",
    "Okay everyone",
    "Heads up",
    "Fun fact",
)

_CLEAN_TEMPLATES = (
    "{opener}, {topic} was better than I expected and I would happily go again with "
    "friends next weekend.",
    "{opener}, spent the afternoon at {topic} and met so many kind people, feeling "
    "grateful and very relaxed tonight.",
    "{opener}, does anyone have tips about {topic}? I want to plan ahead and bring the "
    "right things this time.",
    "{opener}, {topic} made my whole week, thanks to everyone who organised it and "
    "shared photos here.",
    "{opener}, a little tired after {topic} but it was worth it, the views and the "
    "company were wonderful.",
    "{opener}, I was unsure about {topic} at first, yet it turned out calm, friendly "
    "and surprisingly well organised.",
    "{opener}, photos from {topic} are finally up, tell me which one you like best "
    "before I print them.",
    "{opener}, {topic} reminded me why I love this town, good music, good food and "
    "generous neighbours everywhere.",
)

_OFFENSIVE_TEMPLATES = (
    "{opener}, {topic} was a stupid waste of time and whoever planned it is a total "
    "idiot, honestly.",
    "{opener}, {topic} sucks so much, the staff were rude jerks and I hate every "
    "minute I spent there.",
    "{opener}, what a crap experience at {topic}, the organisers are clueless morons "
    "who should be ashamed.",
    "{opener}, anyone who enjoyed {topic} must be dumb as a rock, that damn mess was "
    "pathetic from start to finish.",
)


def generate_posts(num_posts: int = DEFAULT_NUM_POSTS, seed: int = DEFAULT_SEED) -> list[str]:
    """Return `num_posts` distinct posts, the same list for the same arguments.

    Raises:
        ValueError: `num_posts` is below 1 or above the number of distinct combinations.
    """
    clean = [
        t.format(opener=o, topic=p) for t in _CLEAN_TEMPLATES for o in _OPENERS for p in _TOPICS
    ]
    offensive = [
        t.format(opener=o, topic=p) for t in _OFFENSIVE_TEMPLATES for o in _OPENERS for p in _TOPICS
    ]
    if not 1 <= num_posts <= len(clean) + len(offensive):
        raise ValueError(
            f"num_posts={num_posts} is out of range; choose 1..{len(clean) + len(offensive)}"
        )
    rng = random.Random(seed)
    num_offensive = min(len(offensive), round(num_posts * OFFENSIVE_SHARE))
    chosen = rng.sample(clean, num_posts - num_offensive) + rng.sample(offensive, num_offensive)
    rng.shuffle(chosen)
    return chosen


def write_request_bodies(path: Path, posts: list[str]) -> Path:
    """Write one JSON request body ``{"text": ...}`` per line (the file wrk's script reads)."""
    return _write_bodies(path, [{"text": post} for post in posts])


def write_batch_request_bodies(path: Path, posts: list[str], texts_per_request: int) -> Path:
    """Write one bulk-route body ``{"texts": [...]}`` per line, `texts_per_request` posts each.

    Line i holds the posts from position ``i * texts_per_request`` on, wrapping around the
    list, and there are just enough lines for the windows to come back to the start: every
    post is sent equally often, and no body repeats a post as long as the posts are distinct
    (as `generate_posts` returns them).

    Raises:
        ValueError: `texts_per_request` is below 1 or above the number of posts.
    """
    if not 1 <= texts_per_request <= len(posts):
        raise ValueError(
            f"texts_per_request={texts_per_request} is out of range; choose 1..{len(posts)}"
        )
    num_lines = len(posts) // math.gcd(len(posts), texts_per_request)
    bodies = []
    for line in range(num_lines):
        start = line * texts_per_request
        texts = [posts[(start + j) % len(posts)] for j in range(texts_per_request)]
        bodies.append({"texts": texts})
    return _write_bodies(path, bodies)


def _write_bodies(path: Path, bodies: Sequence[Mapping[str, object]]) -> Path:
    # One compact JSON object per line: post_bodies.lua sends each non-empty line verbatim.
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(body, separators=(",", ":")) for body in bodies]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
