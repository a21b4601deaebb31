"""Trends node: trending topics and topic sentiment over the posts the Recommender stores.

A background loop in the replica runs every ``period_s``: it reads the posts of the last two
windows from the Recommender (one handle call, newest first, at most ``max_posts``), has the
Sentiment node label the posts it has not labelled yet (bulk ``predict_many`` calls; labels
are kept here by post id and text hash), then runs `models.trends.TrendDetector` in a worker
thread. Requests for the background window read its latest result; another window is computed
on demand (bounded by ``on_demand_max_posts``) and reused for ``on_demand_cache_s``.

Each run notes the Recommender's posts watermark (it changes whenever a post is stored or
changed) before it reads the store. A read whose watermark differs finds the result dirty: it
recomputes the background window at once, or, within ``dirty_min_interval_s`` of the last
run, answers ``stale: true`` with ``next_run_in_s`` and wakes the loop then; an on-demand
result is not reused.

One replica (more refuse to start, `single_replica`): the label cache and the latest report
are replica state, and one loop is enough
(the computation is measured in docs/benchmarks.md, "Trends").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.trends import TrendsNodeConfig
from deployments.nodes.single_replica import require_one_replica
from models.answers import Answer
from models.aspect_types import AspectAnswer, AspectRequest, topic_label
from models.recommender import RecentPost, RecentPosts
from models.sentiment import SentimentScores
from models.trend_inputs import (
    HIDDEN_ACTIONS,
    LabelCache,
    resolve_topic,
    snapshot_freshness,
    trend_posts,
)
from models.trends import (
    TopicSentimentAnswer,
    TrendConfig,
    TrendDetector,
    TrendRun,
    TrendRunSummary,
    TrendsAnswer,
    TrendsNodeInfo,
    topic_pattern,
    topic_sentiment,
)

logger = logging.getLogger("ray.serve")

# A background result older than this many periods is reported as stale (runs failing or
# taking longer than the period).
STALE_AFTER_PERIODS = 2.0
# Labels are kept for at most this many times max_posts posts before old ones are dropped.
LABEL_CACHE_FACTOR = 2
# Most on-demand windows kept: a window is any number of hours, so callers could otherwise
# grow the cache without bound.
MAX_ON_DEMAND_WINDOWS = 16


def _topic_key(row: RecentPost, terms: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
    # The text's hash: an edited post is labelled again.
    digest = row.text_hash or hashlib.sha256(row.text.encode("utf-8")).hexdigest()
    return row.post_id, digest, terms


def detector_for(config: TrendsNodeConfig) -> TrendDetector:
    """The detector with the configured thresholds (everything else: model defaults)."""
    tuning = config.detector
    return TrendDetector(
        TrendConfig(
            min_cluster_posts=tuning.min_cluster_posts,
            min_df=min(2, tuning.min_cluster_posts),
            min_growth=tuning.min_growth,
            kmeans_clusters=tuning.kmeans_clusters,
        )
    )


@serve.deployment(name="Trends", num_replicas=1, max_ongoing_requests=32)
class Trends:
    """Latest trends of the background window, other windows on demand, topic sentiment."""

    def __init__(
        self,
        recommender: DeploymentHandle[Any],
        sentiment: DeploymentHandle[Any],
        aspects: DeploymentHandle[Any] | None = None,
    ) -> None:
        require_one_replica("Trends", "the label cache and the background trend loop")
        self.recommender = recommender
        self.sentiment = sentiment
        # Optional: with it, topic sentiment labels each post for the topic's own words.
        self.aspects = aspects
        self._topic_labels: OrderedDict[tuple[str, str, tuple[str, ...]], str] = OrderedDict()
        self.config = TrendsNodeConfig()
        self.detector = detector_for(self.config)
        self.labels = LabelCache()
        self._latest: TrendRun | None = None
        # The posts watermark the latest run read under, and when (monotonic) it finished.
        self._latest_watermark: str | None = None
        self._latest_at_s = 0.0
        self._on_demand: dict[float, tuple[float, TrendRun, str | None]] = {}
        # One detection at a time: a run takes a core for seconds, and two would only slow
        # each other down on a small node.
        self._run_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._runs = 0
        self._ensure_loop()

    def _ensure_loop(self) -> None:
        """Start the background loop (again, if it ever died) on the replica's event loop."""
        if self._loop_task is not None and not self._loop_task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # constructed outside an event loop: the first async call starts it
        self._loop_task = loop.create_task(self._background())

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Period, window, bounds and thresholds, live; a new window or threshold reruns now."""
        new = TrendsNodeConfig.model_validate(user_config or {})
        rerun = (new.window_hours, new.detector) != (self.config.window_hours, self.config.detector)
        self.config = new
        self.detector = detector_for(new)
        if rerun:
            self._latest = None
            self._on_demand.clear()
            self._wakeup.set()
        self._ensure_loop()

    async def _background(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the loop must outlive a failed run; the next one retries
                self._last_error = f"{type(exc).__name__}"
                logger.warning("trend run failed (%s); retrying next period", type(exc).__name__)
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self.config.period_s)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def refresh(self) -> TrendRun:
        """Compute the background window now (the loop calls it; tests call it through a
        handle instead of waiting a period). Returns the new run."""
        async with self._run_lock:
            run, watermark = await self._compute(self.config.window_hours, self.config.max_posts)
        self._latest = run
        self._latest_watermark = watermark
        self._latest_at_s = time.monotonic()
        self._last_error = None
        self._runs += 1
        report = run.report
        logger.info(
            "trends computed: window_h=%.1f posts=%d previous=%d trends=%d detect_s=%.2f "
            "run_s=%.2f labelled=%d",
            report.window_hours,
            report.window_post_count,
            report.previous_window_post_count,
            len(report.trends),
            report.duration_s,
            run.run_s,
            run.newly_labelled,
        )
        return run

    async def _fetch(self, since: datetime, limit: int) -> tuple[list[RecentPost], bool]:
        answer: RecentPosts = await asyncio.wait_for(
            self.recommender.recent_posts.remote(since.timestamp(), limit),
            timeout=self.config.store_timeout_s,
        )
        return list(answer.posts), answer.truncated

    async def _watermark(self) -> str | None:
        """The Recommender's posts watermark; None when it does not answer (the snapshot is
        then served as it is: a run could not read the store either)."""
        try:
            watermark: str = await asyncio.wait_for(
                self.recommender.posts_watermark.remote(), timeout=self.config.store_timeout_s
            )
        except Exception as exc:  # a dirty check must never fail the read it guards
            logger.warning("posts watermark not read (%s)", type(exc).__name__)
            return None
        return watermark

    async def _label(self, rows: list[RecentPost]) -> int:
        """Label the rows without a label through the Sentiment node; returns how many.

        A failed call stops labelling for this run: those posts stay unlabelled (answers
        count them) and the next run tries again.
        """
        missing = [
            r for r in self.labels.unlabelled(rows) if r.moderation_action not in HIDDEN_ACTIONS
        ]
        stored = 0
        batch = self.config.label_batch_size
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            try:
                outputs: list[Answer[SentimentScores]] = await asyncio.wait_for(
                    self.sentiment.predict_many.remote([r.text for r in chunk]),
                    timeout=self.config.label_timeout_s,
                )
            except Exception as exc:  # labelling is best effort; counts say what is missing
                logger.warning(
                    "sentiment labelling stopped after %d of %d posts (%s)",
                    stored,
                    len(missing),
                    type(exc).__name__,
                )
                break
            stored += self.labels.put(chunk, [o.result.label for o in outputs])
        return stored

    async def _compute(self, window_hours: float, max_posts: int) -> tuple[TrendRun, str | None]:
        """Read both windows, label new posts, detect; returns the run and the posts watermark
        read before the store (a post stored meanwhile makes the run dirty, never lost).

        Callers hold ``_run_lock``: one detection at a time.
        """
        started_s = time.perf_counter()
        watermark = await self._watermark()
        now = datetime.now(UTC)
        rows, truncated = await self._fetch(now - timedelta(hours=2 * window_hours), max_posts)
        newly_labelled = await self._label(rows)
        posts = trend_posts(rows, self.labels)
        report = await asyncio.to_thread(
            self.detector.detect, posts, now, window_hours, self.config.top_trends
        )
        self.labels.prune((r.post_id for r in rows), LABEL_CACHE_FACTOR * self.config.max_posts)
        run = TrendRun(
            report=report,
            truncated=truncated,
            run_s=round(time.perf_counter() - started_s, 3),
            newly_labelled=newly_labelled,
            unlabelled_posts=sum(p.sentiment_label is None for p in posts),
        )
        return run, watermark

    async def trends(self, window_hours: float, limit: int) -> TrendsAnswer:
        """The top `limit` trends of `window_hours`, with where the answer came from.

        ``source``: ``background`` (the loop's latest run), ``cache`` (an on-demand result of
        this window, younger than ``on_demand_cache_s``) or ``on_demand`` (computed now).
        """
        self._ensure_loop()
        config = self.config
        next_run_in_s: float | None = None
        stale = False
        if window_hours == config.window_hours:
            run, stale, next_run_in_s = await self._background_run()
            source = "background"
        else:
            run, source = await self._on_demand_run(window_hours)
        age_s = max((datetime.now(UTC) - run.report.computed_at).total_seconds(), 0.0)
        return TrendsAnswer(
            report=replace(run.report, trends=run.report.trends[:limit]),
            truncated=run.truncated,
            run_s=run.run_s,
            newly_labelled=run.newly_labelled,
            unlabelled_posts=run.unlabelled_posts,
            source=source,
            age_s=round(age_s, 3),
            stale=stale,
            period_s=config.period_s,
            next_run_in_s=next_run_in_s,
        )

    async def _background_run(self) -> tuple[TrendRun, bool, float]:
        """The background window's run, recomputed first when posts arrived since it read the
        store (and it is old enough); returns the run, whether it is stale, and the seconds
        until the next run."""
        config = self.config
        if self._latest is None:
            run = await self.refresh()
            return run, False, config.period_s
        watermark = await self._watermark()
        dirty = watermark is not None and watermark != self._latest_watermark
        decision = snapshot_freshness(
            dirty,
            time.monotonic() - self._latest_at_s,
            config.period_s,
            config.dirty_min_interval_s,
            STALE_AFTER_PERIODS * config.period_s,
        )
        if decision.recompute:
            run = await self.refresh()
            return run, False, config.period_s
        if dirty:
            # The loop runs as soon as the interval allows, so a later read finds it done.
            asyncio.get_running_loop().call_later(decision.next_run_in_s, self._wakeup.set)
        return self._latest, decision.stale, decision.next_run_in_s

    async def _on_demand_run(self, window_hours: float) -> tuple[TrendRun, str]:
        """A fresh cached report of this window, or one computed now (and cached)."""
        max_age_s = self.config.on_demand_cache_s
        cached = self._on_demand.get(window_hours)
        watermark = await self._watermark() if cached is not None else None

        def reusable(entry: tuple[float, TrendRun, str | None] | None) -> bool:
            # Not when posts arrived since it read the store (the dirty rule, as above).
            return (
                entry is not None
                and time.monotonic() - entry[0] <= max_age_s
                and (watermark is None or entry[2] == watermark)
            )

        if cached is not None and reusable(cached):
            return cached[1], "cache"
        async with self._run_lock:
            # Requests for the same window that queued behind this lock reuse its result.
            cached = self._on_demand.get(window_hours)
            if cached is not None and reusable(cached):
                return cached[1], "cache"
            run, read_under = await self._compute(window_hours, self.config.on_demand_max_posts)
        now_s = time.monotonic()
        self._on_demand = {
            w: entry for w, entry in self._on_demand.items() if now_s - entry[0] <= max_age_s
        }
        if len(self._on_demand) >= MAX_ON_DEMAND_WINDOWS:
            oldest = min(self._on_demand, key=lambda w: self._on_demand[w][0])
            del self._on_demand[oldest]
        self._on_demand[window_hours] = (now_s, run, read_under)
        return run, "on_demand"

    async def topic_sentiment(self, topic: str, window_hours: float) -> TopicSentimentAnswer:
        """Counts and percentages of labels over the window's posts on `topic`.

        `topic` is a trend id of a recent report (its keywords are matched) or a keyword or
        phrase. Posts on the topic without a label yet are labelled first, so the answer is
        measured, not sampled.
        """
        self._ensure_loop()
        runs = [self._latest] if self._latest is not None else []
        runs += [cached for _, cached, _ in self._on_demand.values()]
        resolved = resolve_topic(topic, [run.report for run in runs])
        _, pattern = topic_pattern(resolved.terms)
        now = datetime.now(UTC)
        rows, truncated = await self._fetch(
            now - timedelta(hours=window_hours), self.config.on_demand_max_posts
        )
        on_topic = [r for r in rows if pattern.search(r.text) is not None]
        await self._label(on_topic)
        topic_labels = await self._topic_labels_of(on_topic, resolved.terms)
        result = topic_sentiment(
            trend_posts(on_topic, self.labels), resolved.terms, now, window_hours, topic_labels
        )
        return TopicSentimentAnswer(
            sentiment=result,
            kind=resolved.kind,
            trend_id=resolved.trend_id,
            computed_at=now.isoformat(),
            truncated=truncated,
        )

    async def _topic_labels_of(
        self, rows: list[RecentPost], terms: tuple[str, ...]
    ) -> dict[str, str]:
        """Post id -> the aspect model's label of the topic in that post (kept per post, text
        and topic). Best effort like `_label`: without the node, or when a call fails, the
        remaining posts count by their whole-post label."""
        labels: dict[str, str] = {}
        if self.aspects is None:
            return labels
        missing = []
        for row in rows:
            cached = self._topic_labels.get(_topic_key(row, terms))
            if cached is not None:
                labels[row.post_id] = cached
            elif row.moderation_action not in HIDDEN_ACTIONS:
                missing.append(row)
        batch = self.config.label_batch_size
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            try:
                outputs: list[Answer[AspectAnswer]] = await asyncio.wait_for(
                    self.aspects.predict_many.remote(
                        [AspectRequest(r.text, aspects=terms) for r in chunk]
                    ),
                    timeout=self.config.label_timeout_s,
                )
            except Exception as exc:  # best effort: these posts keep their post label
                logger.warning(
                    "aspect labelling stopped after %d of %d posts (%s)",
                    start,
                    len(missing),
                    type(exc).__name__,
                )
                break
            for row, output in zip(chunk, outputs, strict=True):
                label = topic_label(output.result)
                if label is None:
                    continue
                labels[row.post_id] = label
                self._topic_labels[_topic_key(row, terms)] = label
        while len(self._topic_labels) > LABEL_CACHE_FACTOR * self.config.on_demand_max_posts:
            self._topic_labels.popitem(last=False)
        return labels

    async def info(self) -> TrendsNodeInfo:
        """Loop settings, the last run and the label cache, for /health."""
        self._ensure_loop()
        latest = self._latest
        last_run = None
        if latest is not None:
            last_run = TrendRunSummary(
                computed_at=latest.report.computed_at.isoformat(),
                duration_s=round(latest.report.duration_s, 3),
                run_s=latest.run_s,
                window_post_count=latest.report.window_post_count,
                trends=len(latest.report.trends),
                truncated=latest.truncated,
            )
        return TrendsNodeInfo(
            name="trends",
            window_hours=self.config.window_hours,
            period_s=self.config.period_s,
            runs=self._runs,
            last_run=last_run,
            last_error=self._last_error,
            labelled_posts=len(self.labels),
        )
