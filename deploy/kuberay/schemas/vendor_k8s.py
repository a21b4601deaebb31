"""Put Kubernetes' own strict schemas into the vendored KubeRay schemas, offline.

    pip install kubernetes-validate==1.37.0     # PyPI; ships Kubernetes' JSON schemas
    python deploy/kuberay/schemas/vendor_k8s.py

KubeRay's CRDs embed Kubernetes' PodTemplateSpec for every pod (head, worker groups, a
RayJob's submitter). No package on our registries ships KubeRay's CRDs, so the RayService and
RayJob fields stay the hand-written subset in rayservice.json / rayjob.json; this script
replaces their pod templates with Kubernetes' full strict PodTemplateSpec (every container,
volume and securityContext field, closed), and cronjob.json with the full strict batch/v1
CronJob, both from kubernetes-validate's schemas of `K8S_VERSION`. The definitions they need
are embedded under ``definitions`` (descriptions dropped), so the tests read only these files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
K8S_VERSION = "1.33.0"
POD_TEMPLATE = "io.k8s.api.core.v1.PodTemplateSpec"
CRON_JOB = "io.k8s.api.batch.v1.CronJob"
# Where a pod template sits in the KubeRay schemas (property names whose value is one).
POD_TEMPLATE_KEYS = ("template", "submitterPodTemplate")


def k8s_definitions() -> dict[str, Any]:
    """Kubernetes' strict definitions of `K8S_VERSION`, from kubernetes-validate."""
    # Located, not imported: only its data files are read (its code needs more packages).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("kubernetes-validate is not installed: pip install kubernetes-validate")
    root = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    path = root / f"v{K8S_VERSION}-local-strict" / "_definitions.json"
    definitions: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["$defs"]
    return definitions


def _local(node: Any) -> Any:
    """Refs to draft-07's ``#/definitions/<name>``, descriptions dropped."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description":
                continue
            if key == "$ref":
                out[key] = "#/definitions/" + value.rsplit("/", 1)[-1]
            else:
                out[key] = _local(value)
        return out
    if isinstance(node, list):
        return [_local(v) for v in node]
    return node


def closure(definitions: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The definitions `roots` need, transitively, with local refs."""
    needed: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed[name] = _local(definitions[name])
        todo.extend(_refs(definitions[name]))
    return dict(sorted(needed.items()))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else []
        return found + [r for k, v in node.items() if k != "$ref" for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _replace_pod_templates(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out[key] = {
                    name: (
                        {"$ref": f"#/definitions/{POD_TEMPLATE}"}
                        if name in POD_TEMPLATE_KEYS
                        else _replace_pod_templates(schema)
                    )
                    for name, schema in value.items()
                }
            elif key != "definitions":
                out[key] = _replace_pod_templates(value)
        return out
    if isinstance(node, list):
        return [_replace_pod_templates(v) for v in node]
    return node


def vendor(name: str, definitions: dict[str, Any]) -> None:
    """Rewrite one KubeRay schema file with Kubernetes' PodTemplateSpec."""
    path = HERE / f"{name}.json"
    schema = _replace_pod_templates(json.loads(path.read_text(encoding="utf-8")))
    schema["description"] = (
        schema["description"].split(" Pod templates:")[0]
        + f" Pod templates: Kubernetes v{K8S_VERSION}'s strict PodTemplateSpec"
        " (deploy/kuberay/schemas/vendor_k8s.py)."
    )
    schema["definitions"] = closure(definitions, [POD_TEMPLATE])
    path.write_text(json.dumps(schema, indent=1) + "\n", encoding="utf-8")


def vendor_cronjob(definitions: dict[str, Any]) -> None:
    """cronjob.json: Kubernetes' full strict batch/v1 CronJob."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "description": f"batch/v1 CronJob: Kubernetes v{K8S_VERSION}'s strict schema "
        "(deploy/kuberay/schemas/vendor_k8s.py).",
        "$ref": f"#/definitions/{CRON_JOB}",
        "definitions": closure(definitions, [CRON_JOB]),
    }
    (HERE / "cronjob.json").write_text(json.dumps(schema, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    k8s = k8s_definitions()
    vendor("rayservice", k8s)
    vendor("rayjob", k8s)
    vendor_cronjob(k8s)
    sys.exit(0)
