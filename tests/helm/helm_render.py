"""Rendering helm/quantray with Helm's own engine (helm-python-sdk), and walking the result.

A plain module (not conftest.py) with a unique name, so test files import it unambiguously.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "quantray"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "quantray", "ml"


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> list[dict[str, Any]]:
    """The chart's objects for `values` (NOTES.txt left out)."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name=release, namespace=NAMESPACE)
    return [
        doc
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod an object creates, KubeRay's included."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        yield name, spec["template"]["spec"]
    if doc["kind"] == "RayJob":
        yield f"{name} submitter", spec["submitterPodTemplate"]["spec"]
        spec = spec["rayClusterSpec"]
    if doc["kind"] == "RayService":
        spec = spec["rayClusterConfig"]
    if doc["kind"] in ("RayCluster", "RayJob", "RayService"):
        yield f"{name} head", spec["headGroupSpec"]["template"]["spec"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{name} {group['groupName']}", group["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def as_pod(where: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A pod template's spec as a Pod, so the Kubernetes schema can check a CRD's insides."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": pod_spec}

