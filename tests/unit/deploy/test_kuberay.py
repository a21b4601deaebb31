"""KubeRay manifests (deploy/kuberay/) validated offline against the vendored schemas.

The schemas (deploy/kuberay/schemas/) are the subset of KubeRay's ray.io/v1 CRDs that the
manifests use, with Kubernetes' own strict PodTemplateSpec for every pod, and Kubernetes'
strict batch/v1 CronJob (both from kubernetes-validate: schemas/vendor_k8s.py). As
`kubeconform -strict` does, every object without `additionalProperties` or
`x-kubernetes-preserve-unknown-fields` is closed here, so a misspelt or misplaced field fails.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from configs.schedules import load_schedules

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBERAY = REPO_ROOT / "deploy/kuberay"
SCHEMA_OF_KIND = {"RayService": "rayservice", "RayJob": "rayjob", "CronJob": "cronjob"}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((KUBERAY / "schemas" / f"{SCHEMA_OF_KIND[kind]}.json").read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def _manifests() -> list[Path]:
    return sorted(p for p in KUBERAY.glob("*.yaml") if not p.name.endswith(".template.yaml"))


def _errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(document["kind"]).iter_errors(document)
    ]


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_matches_its_schema(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _errors(document) == []


def _rayservice() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUBERAY / "rayservice.yaml").read_text())
    return document


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("a misspelt spec field", lambda d: d["spec"].update(serveConfigV3="x")),
        (
            "a field at the wrong level",
            lambda d: d["spec"]["rayClusterConfig"].update(rayStartParams={}),
        ),
        (
            "a wrong type",
            lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(maxReplicas="4"),
        ),
        ("a value outside the enum", lambda d: d["spec"]["upgradeStrategy"].update(type="Blue")),
        (
            "a misspelt container field",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0].update(imagePullPolcy="Always"),
        ),
        (
            "a wrong type deep in a pod (Kubernetes' own PodSpec)",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0]["ports"][0].update(containerPort="8000"),
        ),
        (
            "a misspelt securityContext field",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
                "securityContext"
            ].update(runAsNonroot=True),
        ),
    ],
)
def test_a_mutated_manifest_fails(where: str, mutate: Any) -> None:
    document = copy.deepcopy(_rayservice())
    mutate(document)
    assert _errors(document) != [], f"{where} passed validation"


def test_the_rayservice_serves_serve_config_yaml() -> None:
    spec = importlib.util.spec_from_file_location("render", KUBERAY / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert (KUBERAY / "rayservice.yaml").read_text(encoding="utf-8") == render.render(), (
        "deploy/kuberay/rayservice.yaml is stale: run python deploy/kuberay/render.py"
    )
    served = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    shipped = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    shipped["http_options"]["host"] = "0.0.0.0"
    assert served == shipped


def _containers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_the_rayservice_has_secrets_bounds_and_the_fast_path() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert cluster["headGroupSpec"]["rayStartParams"]["metrics-export-port"] == "8080"
    for container in _containers(cluster):
        env = {e["name"]: e for e in container["env"]}
        for secret in ("API_KEYS", "SOCIALPLAY_HASH_SECRET"):
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "socialplay-secrets"
            assert "value" not in env[secret]
        assert env["RAY_SERVE_ENABLE_HA_PROXY"]["value"] == "1"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["image"] == _containers(cluster)[0]["image"]


def test_every_enabled_schedule_has_a_rayjob_and_the_cronjob_runs_the_scheduler() -> None:
    schedules = load_schedules(REPO_ROOT / "configs/schedules.yaml")
    for schedule in schedules.jobs:
        path = KUBERAY / f"rayjob-{schedule.name}.yaml"
        job = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert job["spec"]["entrypoint"] == (
            f"python -m pipelines.{schedule.job} --config {schedule.config}"
        )
        assert (REPO_ROOT / schedule.config).is_file()
        assert job["spec"]["shutdownAfterJobFinishes"] is True
    cronjob = yaml.safe_load((KUBERAY / "cronjob-retraining.yaml").read_text(encoding="utf-8"))
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "pipelines.schedule"]
    args = container["args"]
    assert args[args.index("--schedules") + 1] == "configs/schedules.yaml"
    # The RayService's head service (KubeRay names it <name>-head-svc), dashboard port.
    assert (
        args[args.index("--address") + 1]
        == f"http://{_rayservice()['metadata']['name']}-head-svc:8265"
    )
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def _rayjob_containers(path: Path) -> list[dict[str, Any]]:
    job = yaml.safe_load(path.read_text(encoding="utf-8"))
    return _containers(job["spec"]["rayClusterSpec"])


def test_serving_and_training_pods_reach_the_same_s3_artifact_store() -> None:
    # The jobs upload registered models to the bucket and the serving pods download them:
    # both need the same root and endpoint, and the keys only from a secret.
    containers = _containers(_rayservice()["spec"]["rayClusterConfig"])
    for path in sorted(KUBERAY.glob("rayjob-*.yaml")):
        containers += _rayjob_containers(path)
    roots = set()
    for container in containers:
        env = {e["name"]: e for e in container["env"]}
        roots.add((env["MLFLOW_ARTIFACT_ROOT"]["value"], env["MLFLOW_S3_ENDPOINT_URL"]["value"]))
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "value" not in env[name], f"{container['name']}: {name} inline"
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "socialplay-s3"
    [(root, endpoint)] = roots
    from configs.settings import Settings

    store = Settings.model_validate(
        {"MLFLOW_ARTIFACT_ROOT": root, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    ).artifact_store()
    assert store.is_s3


# Objects that are maps by design (any key): labels, Ray's start parameters, resource
# quantities (nvidia.com/gpu is a key like cpu). Every other object must reject a stray field.
MAP_OBJECTS = {"labels", "annotations", "rayStartParams", "requests", "limits", "nodeSelector"}


def _objects(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _objects(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, (*path, index))


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_a_stray_field_fails_in_every_object_of_the_manifest(path: Path) -> None:
    # Every object of every manifest, from the top to a volume's claim: a misspelt field
    # there (`claimname`, `imagePullPolcy`, `serveConfigV3`) must fail the check.
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    checked, open_objects = 0, []
    for where in _objects(document):
        if where and where[-1] in MAP_OBJECTS:
            continue
        mutated = copy.deepcopy(document)
        node = mutated
        for key in where:
            node = node[key]
        node["strayField"] = "x"  # a string: valid wherever any value would be
        checked += 1
        if not _errors(mutated):
            open_objects.append("/".join(map(str, where)) or "(top)")
    assert open_objects == [], f"objects that accept any field: {open_objects}"
    assert checked >= 10


def test_the_gpu_rayservice_serves_the_gpu_profile_on_enough_gpus() -> None:
    from configs.profiles import apply_profile, load_profile

    spec = importlib.util.spec_from_file_location("render", KUBERAY / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    text = (KUBERAY / "rayservice.gpu.yaml").read_text(encoding="utf-8")
    assert text == render.render_gpu(), (
        "deploy/kuberay/rayservice.gpu.yaml is stale: run python deploy/kuberay/render.py"
    )
    service = yaml.safe_load(text)
    profile = load_profile(REPO_ROOT / "serve_config.gpu.yaml")
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    cpu_served = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    assert served == apply_profile(cpu_served, profile)
    cluster = service["spec"]["rayClusterConfig"]
    [group] = cluster["workerGroupSpecs"]
    [worker] = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert group["rayStartParams"]["num-gpus"] == "1"
    # Every replica's GPU share fits the GPU pods the group keeps at its minimum.
    assert group["minReplicas"] >= profile.gpus
    for container in _containers(cluster):
        assert container["image"].endswith("-gpu")
        env = {e["name"]: e for e in container["env"]}
        assert env["API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "socialplay-secrets"
