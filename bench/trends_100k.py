"""Time `TrendDetector.detect` on 100,000 synthetic posts in the window (+ the previous window).

Run:
    .venv/bin/python -m bench.trends_100k                 # 100,000 + 100,000 posts
    .venv/bin/python -m bench.trends_100k --posts 20000   # smaller, for a quick look
    .venv/bin/python -m bench.trends_100k --cold-start    # worst case: no previous window,
                                                          # so every post is clustered

The stream mimics short social posts: 300 steady topics, one topic that surges in the current
window, and a long tail of filler words drawn from a synthetic vocabulary of ~5,000 words (so
TF-IDF sees a realistic vocabulary size, not a handful of template words). Generation is not
timed; the printed time covers windowing, TF-IDF, clustering, assignment of both windows and
ranking. Posts are never printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta

from models.trends import TrendConfig, TrendDetector, TrendPost

DEFAULT_POSTS = 100_000
DEFAULT_WINDOW_HOURS = 24.0
DEFAULT_SEED = 20261125
STEADY_TOPICS = 300
SURGE_TOPIC = "solar eclipse"
# Share of the current window taken by the surging topic, and its share last window.
SURGE_SHARE_NOW = 0.01
SURGE_SHARE_BEFORE = 0.0005
FILLER_VOCABULARY = 5_000
FILLER_WORDS_PER_POST = (6, 18)
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ba", "do", "fi", "gu", "ha")
_LABELS = ("positive", "negative", "neutral", None)


def _word(rng: random.Random, syllables: int) -> str:
    """A pronounceable synthetic word (never a stop word)."""
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables))


def synthetic_posts(
    n_posts: int, now: datetime, window_hours: float, seed: int
) -> tuple[list[TrendPost], int]:
    """`n_posts` posts in each of the two windows; returns (posts, surging-topic posts now)."""
    rng = random.Random(seed)
    filler = sorted({_word(rng, rng.randint(2, 4)) for _ in range(FILLER_VOCABULARY)})
    topics = [f"{_word(rng, 3)} {_word(rng, 3)}" for _ in range(STEADY_TOPICS)]
    posts: list[TrendPost] = []

    def add(topic: str, start_hours_ago: float, end_hours_ago: float) -> None:
        words = rng.sample(filler, rng.randint(*FILLER_WORDS_PER_POST))
        words.insert(rng.randrange(len(words) + 1), topic)
        created = now - timedelta(hours=rng.uniform(start_hours_ago, end_hours_ago))
        posts.append(TrendPost(f"p{len(posts)}", " ".join(words), created, rng.choice(_LABELS)))

    surge_now = int(n_posts * SURGE_SHARE_NOW)
    surge_before = int(n_posts * SURGE_SHARE_BEFORE)
    for _ in range(surge_now):
        add(SURGE_TOPIC, 0.0, window_hours / 4)
    for _ in range(n_posts - surge_now):
        add(rng.choice(topics), 0.0, window_hours * 0.999)
    for _ in range(surge_before):
        add(SURGE_TOPIC, window_hours * 1.001, 2 * window_hours)
    for _ in range(n_posts - surge_before):
        add(rng.choice(topics), window_hours * 1.001, 2 * window_hours)
    return posts, surge_now


def main(argv: list[str] | None = None) -> int:
    """Generate the stream, time one detection, print the result and how it was run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=DEFAULT_POSTS, help="posts per window")
    parser.add_argument("--window-hours", type=float, default=DEFAULT_WINDOW_HOURS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs (best is reported)")
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="drop the previous window: every term is bursty, so every post is clustered",
    )
    args = parser.parse_args(argv)

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    posts, surge_now = synthetic_posts(args.posts, now, args.window_hours, args.seed)
    if args.cold_start:
        window = timedelta(hours=args.window_hours)
        posts = [p for p in posts if p.created_at > now - window]
    detector = TrendDetector(TrendConfig())
    timings_s: list[float] = []
    report = None
    for _ in range(args.repeats):
        started_s = time.perf_counter()
        report = detector.detect(posts, now, args.window_hours, limit=10)
        timings_s.append(time.perf_counter() - started_s)
    assert report is not None

    shown_args = argv if argv is not None else sys.argv[1:]
    print("command: " + " ".join([".venv/bin/python -m bench.trends_100k", *shown_args]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}"
    )
    print(
        f"posts: {report.window_post_count} in window, "
        f"{report.previous_window_post_count} in previous window "
        f"(window {args.window_hours:g} h)"
    )
    print(
        f"detect time: best {min(timings_s):.2f} s over {len(timings_s)} run(s) "
        f"[{', '.join(f'{t:.2f}' for t in timings_s)}]"
    )
    print(f"trends: {len(report.trends)}")
    for trend in report.trends[:3]:
        print(
            f"  {trend.trend_id} keywords={list(trend.keywords)} posts={trend.post_count} "
            f"previous={trend.previous_count} growth={trend.growth:.1f}"
        )
    top = report.trends[0] if report.trends else None
    surge_found = top is not None and set(SURGE_TOPIC.split()) <= set(top.keywords)
    print(f"surging topic ranked first: {surge_found} ({surge_now} posts now)")
    return 0 if surge_found else 1


if __name__ == "__main__":
    raise SystemExit(main())
