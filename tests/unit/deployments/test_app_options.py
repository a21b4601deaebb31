"""Options build_graph gives every deployment (no Ray instance: the graph is only built)."""

from __future__ import annotations

from configs.app import AppArgs
from deployments.app import GRACEFUL_SHUTDOWN_WAIT_LOOP_S, HEALTH_CHECK_PERIOD_S, build_graph


def test_every_deployment_is_checked_often_and_stops_soon_unless_overridden() -> None:
    app = build_graph(AppArgs(), {"Sentiment": {"health_check_period_s": 7.0}})
    ingress = app._bound_deployment
    configs = {"Ingress": ingress._deployment_config}
    for bound in ingress.init_kwargs.values():
        deployment = getattr(bound, "_bound_deployment", None)
        if deployment is not None:
            configs[deployment.name] = deployment._deployment_config
    assert {"Ingress", "TextModeration", "Sentiment"} <= set(configs), configs
    assert configs["Ingress"].health_check_period_s == HEALTH_CHECK_PERIOD_S
    assert configs["TextModeration"].health_check_period_s == HEALTH_CHECK_PERIOD_S
    assert configs["Sentiment"].health_check_period_s == 7.0, "an override wins"
    for config in configs.values():
        assert config.graceful_shutdown_wait_loop_s == GRACEFUL_SHUTDOWN_WAIT_LOOP_S
