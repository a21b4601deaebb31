"""The Recommender's and Trends' state lives in one replica: more refuse to start (no Ray)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import deployments.nodes.single_replica as single_replica


def deployed_as(monkeypatch: pytest.MonkeyPatch, **config: Any) -> None:
    """Make the replica context report a deployment config with `config`."""
    settings = {"num_replicas": 1, "autoscaling_config": None, **config}
    context = SimpleNamespace(_deployment_config=SimpleNamespace(**settings))
    monkeypatch.setattr(single_replica.serve, "get_replica_context", lambda: context)


def test_two_replicas_are_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    deployed_as(monkeypatch, num_replicas=2)
    with pytest.raises(ValueError, match=r"Recommender has num_replicas=2.*num_replicas: 1"):
        single_replica.require_one_replica("Recommender", "the vector index")


def test_autoscaling_above_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    autoscaling = SimpleNamespace(max_replicas=4)
    deployed_as(monkeypatch, num_replicas=None, autoscaling_config=autoscaling)
    with pytest.raises(ValueError, match=r"autoscaling_config.max_replicas=4"):
        single_replica.require_one_replica("Trends", "the label cache")


def test_one_replica_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    deployed_as(monkeypatch, num_replicas=1)
    single_replica.require_one_replica("Recommender", "the vector index")
    deployed_as(monkeypatch, num_replicas=None, autoscaling_config=SimpleNamespace(max_replicas=1))
    single_replica.require_one_replica("Trends", "the label cache")
