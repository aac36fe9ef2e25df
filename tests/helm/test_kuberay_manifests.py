"""cluster/: the plain KubeRay manifests and the Dockerfiles they run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import REPO, as_pod, containers, pod_specs

CLUSTER = REPO / "cluster"
MANIFESTS = sorted(CLUSTER.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return doc


def test_there_is_a_raycluster_and_a_rayjob() -> None:
    assert {load(path)["kind"] for path in MANIFESTS} == {"RayCluster", "RayJob"}
    assert (CLUSTER / "README.md").exists()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_pod_templates_pass_the_kubernetes_schema(path: Path) -> None:
    import kubernetes_validate

    doc = load(path)
    assert doc["apiVersion"] == "ray.io/v1"
    pods = list(pod_specs(doc))
    assert pods
    for where, pod in pods:
        kubernetes_validate.validate(as_pod(where, pod), kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_secure_defaults(path: Path) -> None:
    doc = load(path)
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    for where, pod in pod_specs(doc):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["readOnlyRootFilesystem"] is True, where
            assert set(container["resources"]) == {"requests", "limits"}, where


def test_gpu_worker_group() -> None:
    spec = load(CLUSTER / "raycluster.yaml")["spec"]
    (group,) = spec["workerGroupSpecs"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert spec["enableInTreeAutoscaling"] is True


def test_rayjob_tunes_a_space_that_ships_in_the_image() -> None:
    job = load(CLUSTER / "rayjob.yaml")
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    command = shlex.split(job["spec"]["entrypoint"])
    assert command[:4] == ["python", "-m", "quantray.cli", "tune"]
    assert (REPO / command[4]).is_file(), "the Dockerfile copies search_spaces/ to WORKDIR /app"
    # every option is one `quantray tune` knows
    from quantray.cli import build_parser

    build_parser().parse_args(command[3:])


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfile_copies_what_exists_and_pins_torch(dockerfile: str) -> None:
    text = (REPO / "docker" / dockerfile).read_text()
    copied = [source for line in text.splitlines() if line.startswith("COPY")
              for source in line.split()[1:-1]]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
    assert re.search(r"pip install torch==2\.13\.0", text)
    assert "USER 1000:1000" in text  # the chart's runAsUser
    ignore = (REPO / "docker" / f"{dockerfile}.dockerignore").read_text()
    assert all(f"!{source}" in ignore for source in copied)
