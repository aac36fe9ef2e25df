"""quantray.jobs.k8s: the RayJob builder, and clear errors when no Kubernetes API is there.

No Kubernetes API can be reached where these tests run; the builder's output is checked
against the Kubernetes schemas here and against the Helm chart's RayJob in tests/helm.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from quantray.cli import build_parser, main
from quantray.jobs import k8s
from quantray.recipes.options import TuneOptions

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"


@pytest.fixture
def no_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod either
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def test_status_without_kubeconfig_is_one_line_exit_2(no_kubernetes: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cluster", "status", "--k8s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quantray: error: no Kubernetes configuration: /nonexistent")
    assert "\n" not in err


def test_submit_without_kubeconfig_is_one_line_exit_2(no_kubernetes: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", "--k8s", str(QUICKSTART)]) == 2
    assert "no Kubernetes configuration" in capsys.readouterr().err


def test_unreachable_api_server_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "me", "user": {"token": "x"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "me"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert main(["cluster", "status", "--k8s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("quantray: error: cannot reach the Kubernetes API at https://127.0.0.1:9")


def built(space: Path = QUICKSTART) -> tuple[k8s.RayJobRequest, dict]:
    options = TuneOptions(trials=16, gpus_per_trial=1.0, experiment="sweep")
    request = k8s.tune_request(space, options, namespace="research", image="registry.example/quantray:1", release="qr")
    return request, k8s.rayjob_manifest(request)


def test_rayjob_runs_tune_on_the_mounted_space() -> None:
    request, job = built()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["metadata"]["name"] == request.name and job["metadata"]["namespace"] == "research"
    command = shlex.split(job["spec"]["entrypoint"])
    args = build_parser().parse_args(command[3:])
    assert (args.verb, args.space, args.trials) == ("tune", Path("/etc/quantray/space/quickstart.yaml"), 16)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert {"name": "space", "configMap": {"name": request.space_configmap}} in head["volumes"]
    assert {"name": "space", "mountPath": "/etc/quantray/space", "readOnly": True} in head["containers"][0]["volumeMounts"]


def test_rayjob_metadata_names_what_was_submitted() -> None:
    """The dashboard's job page says which space, experiment and budget a RayJob runs."""
    _, job = built()
    assert job["spec"]["metadata"] == {"submitted_by": "quantray", "space": "quickstart.yaml",
                                       "experiment": "sweep", "trials": "16"}
    request = k8s.tune_request(QUICKSTART, TuneOptions(), namespace="research", image="i", release="qr")
    assert request.job_metadata == {"submitted_by": "quantray", "space": "quickstart.yaml"}


def test_rayjob_is_ephemeral_authenticated_and_gpu() -> None:
    _, job = built()
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"
    (workers,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    worker = workers["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert k8s.GPU_TOLERATION in worker["tolerations"]
    env = {e["name"]: e.get("value") for e in worker["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://qr-quantray-mlflow:5000"


def test_rayjob_pods_pass_the_kubernetes_schema_and_are_locked_down() -> None:
    import kubernetes_validate

    _, job = built()
    spec = job["spec"]
    pods = [spec["submitterPodTemplate"]["spec"], spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"],
            spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]]
    for pod in pods:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod},
                                     kubernetes_validate.latest_version(), strict=True)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]) == {"requests", "limits"}


def test_space_configmap_is_owned_by_the_rayjob() -> None:
    import kubernetes_validate

    request, job = built()
    created = {**job, "metadata": {**job["metadata"], "uid": "0b6ad6a4-7a1c-4b59-9f7b-2f6f6d1b2f11"}}
    configmap = k8s.space_configmap(request.space_configmap, "research", QUICKSTART, "qr", owner=created)
    kubernetes_validate.validate(configmap, kubernetes_validate.latest_version(), strict=True)
    assert configmap["data"] == {"quickstart.yaml": QUICKSTART.read_text()}
    (owner,) = configmap["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("RayJob", request.name, created["metadata"]["uid"])


def test_derived_names_fit_kubernetes_limits() -> None:
    request, _ = built(Path("an extremely long search space file name.yaml"))
    assert len(request.name) <= 46 and len(request.space_configmap) <= 63
    assert k8s.fullname("quantray") == "quantray" and k8s.fullname("prod") == "prod-quantray"
