"""A/B and shadow experiments without Ray: arm choice, shadow isolation, statistics, configs."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from configs.app import AppArgs
from configs.experiments import ExperimentConfig
from configs.ingress import IngressConfig
from deployments import metrics
from deployments.ingress.experiments import (
    ExperimentRegistry,
    ExperimentState,
    LatencyWindow,
    RunningCorrelation,
    ShadowStats,
    assign_arm,
    missing_variant_nodes,
    node_key,
    sentiment_score,
)


@pytest.fixture(autouse=True)
def recorded_arms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Capture record_arm calls (and keep Ray's metrics out of unit tests)."""
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(metrics, "record_arm", lambda e, a: calls.append((e, a)))
    yield calls


def ab(*shares: tuple[str | None, float], task: str = "moderation") -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "task": task,
            "mode": "ab",
            "arms": [{"variant": variant, "share": share} for variant, share in shares],
        }
    )


def shadow(candidate: str = "v2", **overrides: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {"task": "moderation", "mode": "shadow", "candidate": candidate, **overrides}
    )


# ---- arm assignment -------------------------------------------------------------------------
def test_same_user_gets_the_same_arm_across_calls_and_fresh_objects() -> None:
    config = ab((None, 0.5), ("v2", 0.5))
    users = [f"user-{i}" for i in range(200)]
    first = {user: assign_arm("exp", config, user) for user in users}
    # A new registry (a restarted or other replica) agrees: nothing is remembered, only hashed.
    for _ in range(2):
        registry = ExperimentRegistry()
        registry.configure({"exp": config})
        for user in users:
            choice = registry.choose("moderation", user)
            assert choice.arm == first[user]
            assert choice.node_key == node_key("moderation", first[user])
    assert set(first.values()) == {"default", "v2"}


@pytest.mark.parametrize("control_share", [0.9, 0.5, 0.2])
def test_shares_hold_within_two_percent_over_ten_thousand_users(control_share: float) -> None:
    config = ab((None, control_share), ("v2", round(1 - control_share, 10)))
    counts = Counter(assign_arm("exp", config, f"u{i}") for i in range(10_000))
    assert abs(counts["default"] / 10_000 - control_share) < 0.02
    assert abs(counts["v2"] / 10_000 - (1 - control_share)) < 0.02


def test_three_arms_and_a_zero_share_arm() -> None:
    config = ab((None, 0.5), ("v2", 0.0), ("v3", 0.5))
    counts = Counter(assign_arm("exp", config, f"u{i}") for i in range(10_000))
    assert counts["v2"] == 0
    assert abs(counts["v3"] / 10_000 - 0.5) < 0.02


def test_the_experiment_name_reshuffles_users() -> None:
    config = ab((None, 0.5), ("v2", 0.5))
    users = [f"u{i}" for i in range(2000)]
    same = sum(assign_arm("a", config, u) == assign_arm("b", config, u) for u in users)
    # Independent hashes agree about half the time; identical ones would agree always.
    assert 0.4 < same / len(users) < 0.6


def test_no_user_id_goes_to_the_control_arm_and_counts_as_unassigned(
    recorded_arms: list[tuple[str, str]],
) -> None:
    registry = ExperimentRegistry()
    registry.configure({"exp": ab(("v2", 0.1), (None, 0.9))})
    choice = registry.choose("moderation", None)
    assert (choice.node_key, choice.variant, choice.experiment) == ("moderation:v2", "v2", "exp")
    choice.record(0.01)
    state = registry.get("exp")
    assert state is not None
    assert state.unassigned == 1
    assert all(arm.requests == 0 for arm in state.arms.values())
    assert recorded_arms == [("exp", "unassigned")]


def test_without_an_enabled_experiment_the_main_node_answers() -> None:
    registry = ExperimentRegistry()
    off = ab((None, 0.5), ("v2", 0.5)).model_copy(update={"enabled": False})
    registry.configure({"exp": off, "sent": ab((None, 0.5), ("v2", 0.5), task="sentiment")})
    choice = registry.choose("moderation", "user-1")
    assert (choice.node_key, choice.variant, choice.experiment) == ("moderation", None, None)
    assert registry.choose("sentiment", "user-1").experiment == "sent"


def test_ab_choice_records_counts_latency_and_the_metric(
    recorded_arms: list[tuple[str, str]],
) -> None:
    registry = ExperimentRegistry()
    registry.configure({"exp": ab((None, 0.5), ("v2", 0.5))})
    users = [f"u{i}" for i in range(40)]
    for user in users:
        registry.choose("moderation", user).record(0.02)
    registry.choose("moderation", "u0").record(0.0, ok=False)
    state = registry.get("exp")
    assert state is not None
    report = state.snapshot()
    by_arm = {arm["arm"]: arm for arm in report["arms"]}
    expected = Counter(assign_arm("exp", state.config, u) for u in users)
    first_arm = assign_arm("exp", state.config, "u0")
    assert by_arm["default"]["requests"] == expected["default"] + (first_arm == "default")
    assert by_arm["v2"]["requests"] == expected["v2"] + (first_arm == "v2")
    assert by_arm[first_arm]["errors"] == 1
    assert by_arm["v2"]["latency_p50_s"] == pytest.approx(0.02)
    assert Counter(arm for _, arm in recorded_arms) == expected + Counter({first_arm: 1})


def test_a_config_change_resets_statistics_and_an_unchanged_one_keeps_them() -> None:
    registry = ExperimentRegistry()
    config = ab((None, 0.5), ("v2", 0.5))
    registry.configure({"exp": config})
    registry.choose("moderation", "u1").record(0.01)
    before = registry.get("exp")
    registry.configure({"exp": ab((None, 0.5), ("v2", 0.5))})  # equal, new object
    assert registry.get("exp") is before
    registry.configure({"exp": ab((None, 0.9), ("v2", 0.1))})
    after = registry.get("exp")
    assert after is not before and after is not None
    assert sum(arm.requests for arm in after.arms.values()) == 0
    registry.configure({})
    assert registry.get("exp") is None and registry.names() == []


def test_missing_variant_nodes_names_what_the_graph_lacks() -> None:
    configs = {
        "a": ab((None, 0.5), ("v2", 0.5)),
        "b": shadow("v3").model_copy(update={"task": "sentiment"}),
        "off": ab((None, 0.5), ("v9", 0.5)).model_copy(update={"enabled": False}),
    }
    nodes = ["moderation", "sentiment", "moderation:v2"]
    assert missing_variant_nodes(configs, nodes) == ["sentiment:v3"]
    assert missing_variant_nodes(configs, [*nodes, "sentiment:v3"]) == []


# ---- shadow isolation -----------------------------------------------------------------------
async def _live_route(
    registry: ExperimentRegistry, shadow_call: Any
) -> tuple[str, asyncio.Task[None] | None]:
    """What a route does: answer from the live node, hand a copy to the shadow, return."""
    choice = registry.choose("moderation", "user-1")
    answer = "approve"
    assert choice.shadow is not None
    task = registry.launch_shadow(choice.shadow, shadow_call, [(answer, 0.1)], _summarise)
    return answer, task


def _summarise(output: dict[str, Any]) -> tuple[str, float]:
    return output["action"], output["score"]


def _registry(**overrides: Any) -> ExperimentRegistry:
    registry = ExperimentRegistry()
    registry.configure({"sh": shadow(**overrides)})
    return registry


def test_a_sleeping_shadow_does_not_hold_up_the_live_answer() -> None:
    async def scenario() -> None:
        registry = _registry(timeout_s=30.0)
        shadow_started = asyncio.Event()

        async def slow_shadow() -> list[dict[str, Any]]:
            shadow_started.set()
            await asyncio.sleep(2.0)
            return [{"action": "reject", "score": 0.9}]

        answer, task = await _live_route(registry, slow_shadow)
        assert answer == "approve"
        assert task is not None and not task.done()
        await asyncio.wait_for(shadow_started.wait(), timeout=1.0)
        # The live answer is back while the shadow still sleeps.
        assert not task.done()
        state = registry.get("sh")
        assert state is not None and state.shadow is not None
        assert state.shadow.in_flight == 1 and state.shadow.compared == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert state.shadow.in_flight == 0

    asyncio.run(scenario())


def test_a_failing_shadow_is_swallowed_and_counted() -> None:
    async def scenario() -> None:
        registry = _registry()

        async def broken_shadow() -> list[dict[str, Any]]:
            raise RuntimeError("candidate crashed")

        answer, task = await _live_route(registry, broken_shadow)
        assert answer == "approve" and task is not None
        await task  # does not raise
        state = registry.get("sh")
        assert state is not None and state.shadow is not None
        assert (state.shadow.errors, state.shadow.compared, state.shadow.in_flight) == (1, 0, 0)
        assert state.arms["v2"].errors == 1

    asyncio.run(scenario())


def test_a_shadow_past_its_timeout_is_counted_as_a_timeout() -> None:
    async def scenario() -> None:
        registry = _registry(timeout_s=0.05)

        async def slow_shadow() -> list[dict[str, Any]]:
            await asyncio.sleep(2.0)
            return [{"action": "approve", "score": 0.1}]

        _, task = await _live_route(registry, slow_shadow)
        assert task is not None
        await task
        state = registry.get("sh")
        assert state is not None and state.shadow is not None
        assert (state.shadow.timeouts, state.shadow.errors, state.shadow.in_flight) == (1, 0, 0)

    asyncio.run(scenario())


def test_a_shadow_with_the_wrong_number_of_answers_is_an_error() -> None:
    async def scenario() -> None:
        registry = _registry()

        async def short_shadow() -> list[dict[str, Any]]:
            return []

        _, task = await _live_route(registry, short_shadow)
        assert task is not None
        await task
        state = registry.get("sh")
        assert state is not None and state.shadow is not None
        assert (state.shadow.errors, state.shadow.compared) == (1, 0)

    asyncio.run(scenario())


def test_shadow_calls_over_max_in_flight_are_skipped() -> None:
    async def scenario() -> None:
        registry = _registry(max_in_flight=2, timeout_s=30.0)
        release = asyncio.Event()

        async def blocked_shadow() -> list[dict[str, Any]]:
            await release.wait()
            return [{"action": "approve", "score": 0.2}]

        tasks = [(await _live_route(registry, blocked_shadow))[1] for _ in range(5)]
        assert [task is not None for task in tasks] == [True, True, False, False, False]
        state = registry.get("sh")
        assert state is not None and state.shadow is not None
        assert (state.shadow.skipped, state.shadow.in_flight) == (3, 2)
        release.set()
        await asyncio.gather(*(t for t in tasks if t is not None))
        assert (state.shadow.compared, state.shadow.agreed, state.shadow.in_flight) == (2, 2, 0)
        assert state.arms["v2"].requests == 2

    asyncio.run(scenario())


def test_sample_rate_zero_copies_nothing() -> None:
    async def scenario() -> None:
        registry = _registry(sample_rate=0.0)

        async def never() -> list[dict[str, Any]]:
            raise AssertionError("not sampled, must not run")

        _, task = await _live_route(registry, never)
        assert task is None

    asyncio.run(scenario())


def test_sample_rate_copies_about_that_share() -> None:
    async def scenario() -> None:
        registry = ExperimentRegistry(rng=random.Random(7))
        registry.configure({"sh": shadow(sample_rate=0.25, max_in_flight=1024)})

        async def fast() -> list[dict[str, Any]]:
            return [{"action": "approve", "score": 0.1}]

        tasks = [(await _live_route(registry, fast))[1] for _ in range(1000)]
        started = [t for t in tasks if t is not None]
        await asyncio.gather(*started)
        assert 0.2 < len(started) / 1000 < 0.3

    asyncio.run(scenario())


def test_shadow_experiment_answers_from_the_main_node() -> None:
    registry = _registry()
    choice = registry.choose("moderation", "anyone")
    assert (choice.node_key, choice.variant, choice.experiment) == ("moderation", None, "sh")
    assert choice.shadow is registry.get("sh")
    no_shadow = ExperimentRegistry()
    no_shadow.configure({"exp": ab((None, 0.5), ("v2", 0.5))})
    assert no_shadow.choose("moderation", "u").shadow is None


# ---- statistics -----------------------------------------------------------------------------
def test_agreement_and_correlation_of_compared_answers() -> None:
    stats = ShadowStats()
    live = [("approve", 0.1), ("reject", 0.95), ("flag_for_review", 0.6), ("approve", 0.2)]
    cand = [("approve", 0.15), ("reject", 0.9), ("approve", 0.4), ("approve", 0.3)]
    for pair in zip(live, cand, strict=True):
        stats.compare(*pair)
    report = stats.snapshot()
    assert report["compared"] == 4
    assert report["agreement_rate"] == pytest.approx(0.75)
    expected = statistics.correlation([s for _, s in live], [s for _, s in cand])
    assert report["score_correlation"] == pytest.approx(expected)


def test_correlation_edge_cases() -> None:
    corr = RunningCorrelation()
    assert corr.value() is None
    corr.add(0.5, 0.1)
    assert corr.value() is None  # one pair
    corr.add(0.5, 0.9)
    assert corr.value() is None  # x never varies
    perfect = RunningCorrelation()
    for x in range(10):
        perfect.add(x / 10, 1 - x / 10)
    assert perfect.value() == pytest.approx(-1.0)
    assert ShadowStats().agreement_rate() is None


def test_latency_window_percentiles_and_bound() -> None:
    window = LatencyWindow(size=100)
    assert window.percentile(50) is None
    for value in range(1, 101):
        window.add(float(value))
    assert window.summary() == {
        "latency_p50_s": 50.0,
        "latency_p95_s": 95.0,
        "latency_p99_s": 99.0,
    }
    for _ in range(100):
        window.add(1000.0)  # the window keeps only the latest 100
    assert window.percentile(50) == 1000.0


def test_sentiment_score_uses_compound_else_positive_minus_negative() -> None:
    assert sentiment_score({"compound": -0.4, "scores": {"positive": 0.9, "negative": 0}}) == -0.4
    binary = {"compound": None, "scores": {"positive": 0.8, "negative": 0.2, "neutral": None}}
    assert sentiment_score(binary) == pytest.approx(0.6)


def test_snapshot_of_a_shadow_experiment() -> None:
    state = ExperimentState("sh", shadow("v2"))
    report = state.snapshot()
    assert [(a["arm"], a["variant"], a["role"]) for a in report["arms"]] == [
        ("default", None, "live"),
        ("v2", "v2", "candidate"),
    ]
    assert report["shadow"]["compared"] == 0
    assert report["shadow"]["agreement_rate"] is None
    assert math.isfinite(report["started_at_s"])


# ---- config validation ----------------------------------------------------------------------
AB = {"task": "moderation", "mode": "ab"}
SHADOW = {"task": "moderation", "mode": "shadow", "candidate": "v2"}
HALVES = [{"share": 0.5}, {"variant": "v2", "share": 0.5}]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**AB, "arms": [{"share": 0.9}, {"variant": "v2", "share": 0.2}]}, "sum to 1.1"),
        ({**AB, "arms": [{"share": 1.0}]}, "at least two arms"),
        ({**AB, "arms": [{"share": 0.5}, {"variant": "default", "share": 0.5}]}, "twice"),
        ({**AB, "arms": [{"share": 0.5}, {"variant": "V2!", "share": 0.5}]}, "'V2!' is not valid"),
        ({**AB, "arms": HALVES, "candidate": "v2"}, "for shadow experiments"),
        ({**SHADOW, "candidate": None}, "needs candidate"),
        ({**SHADOW, "candidate": "default"}, "needs candidate"),
        ({**SHADOW, "arms": [{"share": 1.0}]}, "remove arms"),
        ({**SHADOW, "sample_rate": 1.5}, "sample_rate"),
        ({**SHADOW, "max_in_flight": 0}, "max_in_flight"),
        ({**SHADOW, "task": "nsfw"}, "task"),
        ({**SHADOW, "typo": 1}, "typo"),
    ],
)
def test_invalid_experiment_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExperimentConfig.model_validate(config)


def test_at_most_one_enabled_experiment_per_task() -> None:
    arms = [{"share": 0.5}, {"variant": "v2", "share": 0.5}]
    one = {"task": "moderation", "mode": "ab", "arms": arms}
    with pytest.raises(ValidationError, match="enable at most one experiment per task"):
        IngressConfig.model_validate({"experiments": {"a": one, "b": one}})
    ok = IngressConfig.model_validate(
        {
            "experiments": {
                "a": one,
                "b": {**one, "enabled": False},
                "c": {**one, "task": "sentiment"},
            }
        }
    )
    assert sorted(ok.experiments) == ["a", "b", "c"]
    with pytest.raises(ValidationError, match="experiment name 'Bad Name'"):
        IngressConfig.model_validate({"experiments": {"Bad Name": one}})


def test_variant_names_in_app_args_are_checked() -> None:
    args = AppArgs.model_validate(
        {"moderation_variants": {"v2": {"kind": "profanity"}}, "sentiment_variants": {"b-1": {}}}
    )
    assert list(args.moderation_variants) == ["v2"]
    assert AppArgs().moderation_variants == {} and AppArgs().sentiment_variants == {}
    with pytest.raises(ValidationError, match='"default" is reserved'):
        AppArgs.model_validate({"moderation_variants": {"default": {}}})
    with pytest.raises(ValidationError, match="sentiment_variants name 'x+' is not valid"):
        AppArgs.model_validate({"sentiment_variants": {"x" * 40: {}}})
    with pytest.raises(ValidationError, match="needs moderation_model.path"):
        AppArgs.model_validate({"moderation_variants": {"v2": {"kind": "transformer"}}})
