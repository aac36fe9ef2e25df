"""helm/quantray: it lints, renders with Helm's engine, validates, and keeps its secure defaults."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import CHART, CI_VALUES, NAMESPACE, as_pod, by_kind, containers, load_values, pod_specs, render

CORE_KINDS = {
    "Deployment", "Service", "StatefulSet", "NetworkPolicy", "ServiceAccount", "Secret", "PersistentVolumeClaim",
    "ConfigMap", "Ingress",
}


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda path: path.stem)
def ci_case(request: pytest.FixtureRequest) -> tuple[Path, list[dict[str, Any]]]:
    return request.param, render(load_values(request.param))


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


def test_there_are_default_gpu_and_production_values_files() -> None:
    assert {path.stem for path in CI_VALUES} >= {"default-values", "gpu-values", "production-values"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda path: path.stem)
def test_chart_lints_strictly(values_file: Path) -> None:
    import helm_python

    report = helm_python.lint(CHART, load_values(values_file), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert [m["error"] for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


def test_every_declared_dependency_is_present() -> None:
    """Helm refuses to install a chart with a declared dependency missing from charts/, whatever its condition."""
    import helm_python

    missing = [d for d in helm_python.dependency_list(CHART) if d["status"] != "ok"]
    assert missing == []


def test_install_goes_through_helms_own_checks(tmp_path: Path) -> None:
    """`helm install --dry-run=client`: Helm's dependency check, the schema and the templates, no cluster."""
    import helm_python

    unreachable = tmp_path / "kubeconfig"  # never read by a client-side dry run; keeps ~/.kube out of it
    unreachable.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {}}],
    }))
    with helm_python.Config(kubeconfig_path=unreachable, namespace=NAMESPACE, storage_driver="memory") as config:
        release = config.install(CHART, "quantray", dry_run="client", namespace=NAMESPACE)
    kinds = {doc["kind"] for doc in yaml.safe_load_all(release["manifest"]) if doc}
    assert {"RayCluster", "Deployment", "StatefulSet"} <= kinds
    assert "helm install kuberay-operator kuberay/kuberay-operator" in release["notes"]


def test_the_operator_is_installed_by_its_own_chart_not_this_one() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert "dependencies" not in chart
    assert not (CHART / "charts").exists()
    docs = (CHART.parents[1] / "docs" / "cluster.md").read_text()
    assert "helm install kuberay-operator kuberay/kuberay-operator" in docs


def test_values_for_the_removed_operator_subchart_are_refused() -> None:
    """An old values file that turns the subchart on fails loudly instead of installing no operator."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart, pytest.raises(helm_python.HelmValuesError, match="kuberay-operator"):
        chart.validate_schema({"kuberay-operator": {"enabled": True}})


def test_core_objects_pass_the_kubernetes_schema(ci_case: tuple[Path, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    _, docs = ci_case
    checked = 0
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
        else:
            assert doc["apiVersion"] == "ray.io/v1", doc["kind"]
        # KubeRay objects are CRDs: their pod templates are Pods, check those
        for where, pod in pod_specs(doc):
            kubernetes_validate.validate(as_pod(where, pod), version, strict=True)
    assert checked >= 5


def test_schema_validation_catches_a_broken_object() -> None:
    """The validator above is not a rubber stamp."""
    import kubernetes_validate

    (service,) = [d for d in render() if d["kind"] == "Service" and d["metadata"]["name"].endswith("-mlflow")]
    service["spec"]["ports"][0]["port"] = "five thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, kubernetes_validate.latest_version(), strict=True)


def test_default_render_has_the_whole_platform(default_docs: list[dict[str, Any]]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in default_docs}
    assert names >= {
        ("RayCluster", "quantray-ray"),
        ("Deployment", "quantray-mlflow"), ("Service", "quantray-mlflow"),
        ("PersistentVolumeClaim", "quantray-mlflow-artifacts"),
        ("StatefulSet", "quantray-postgresql"), ("Service", "quantray-postgresql"),
        ("Secret", "quantray-postgresql"), ("Secret", "quantray-ray-auth"),
        ("ServiceAccount", "quantray"),
        ("NetworkPolicy", "quantray-ray"), ("NetworkPolicy", "quantray-mlflow"), ("NetworkPolicy", "quantray-postgresql"),
    }
    assert not by_kind(default_docs, "Ingress"), "ingress is off by default"
    assert not by_kind(default_docs, "RayJob"), "the tuning job is off by default"
    assert not by_kind(default_docs, "RayService"), "serving on Ray Serve is off by default"
    (statefulset,) = by_kind(default_docs, "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_every_container_is_unprivileged_and_bounded(ci_case: tuple[Path, list[dict[str, Any]]]) -> None:
    _, docs = ci_case
    seen = 0
    for doc in docs:
        for where, pod in pod_specs(doc):
            pod_context = pod.get("securityContext", {})
            assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            for container in containers(pod):
                seen += 1
                context = container.get("securityContext", {})
                label = f"{where} {container['name']}"
                assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, label
                assert context.get("allowPrivilegeEscalation") is False, label
                assert "ALL" in context.get("capabilities", {}).get("drop", []), label
                assert context.get("readOnlyRootFilesystem") is True, label
                assert not context.get("privileged", False), label
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(container.get("resources", {}).get(kind, {})), f"{label} {kind}"
        if doc["kind"] == "RayCluster" and doc["spec"].get("enableInTreeAutoscaling"):
            autoscaler = doc["spec"]["autoscalerOptions"]  # KubeRay's sidecar container
            assert autoscaler["securityContext"]["allowPrivilegeEscalation"] is False
            assert set(autoscaler["resources"]) == {"requests", "limits"}
    assert seen >= 4


def test_services_are_cluster_internal(ci_case: tuple[Path, list[dict[str, Any]]]) -> None:
    _, docs = ci_case
    for service in by_kind(docs, "Service"):
        assert service["spec"]["type"] == "ClusterIP", service["metadata"]["name"]
    for cluster in by_kind(docs, "RayCluster"):
        assert cluster["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"


def test_every_workload_has_a_network_policy(ci_case: tuple[Path, list[dict[str, Any]]]) -> None:
    _, docs = ci_case
    selectors = [p["spec"]["podSelector"]["matchLabels"] for p in by_kind(docs, "NetworkPolicy")]
    for policy in by_kind(docs, "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
    for doc in docs:
        for where, _ in pod_specs(doc):
            labels = pod_labels(doc, where)
            if labels.get("app.kubernetes.io/component") == "ray-job-submitter":
                continue  # a client: it listens on nothing
            assert any(selector.items() <= labels.items() for selector in selectors), where


def pod_labels(doc: dict[str, Any], where: str) -> dict[str, str]:
    spec = doc["spec"]
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return spec["template"]["metadata"]["labels"]
    if where.endswith("submitter"):
        return spec["submitterPodTemplate"]["metadata"]["labels"]
    spec = spec.get("rayClusterSpec", spec.get("rayClusterConfig", spec))
    if where.endswith("head"):
        return spec["headGroupSpec"]["template"]["metadata"]["labels"]
    return spec["workerGroupSpecs"][0]["template"]["metadata"]["labels"]


def test_postgres_is_reachable_only_from_mlflow(default_docs: list[dict[str, Any]]) -> None:
    (policy,) = [p for p in by_kind(default_docs, "NetworkPolicy") if p["metadata"]["name"].endswith("postgresql")]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mlflow"
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]


def ray_env(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_ray_token_auth_is_on_by_default_from_the_chart_secret(default_docs: list[dict[str, Any]]) -> None:
    (cluster,) = by_kind(default_docs, "RayCluster")
    (secret,) = [s for s in by_kind(default_docs, "Secret") if s["metadata"]["name"] == "quantray-ray-auth"]
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    assert len(token) == 64 and token.isalnum()
    for where, pod in pod_specs(cluster):
        for container in pod["containers"]:
            env = ray_env(container)
            assert env["RAY_AUTH_MODE"]["value"] == "token", where
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "quantray-ray-auth", "key": "auth_token"}
    autoscaler_env = {e["name"]: e for e in cluster["spec"]["autoscalerOptions"]["env"]}
    assert autoscaler_env["RAY_AUTH_MODE"]["value"] == "token"


def test_existing_secrets_replace_the_generated_ones() -> None:
    docs = render({"ray": {"auth": {"existingSecret": "my-ray-token"}},
                   "postgresql": {"auth": {"existingSecret": "my-db", "passwordKey": "pw"}}})
    assert not by_kind(docs, "Secret")
    (cluster,) = by_kind(docs, "RayCluster")
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert ray_env(head)["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "my-ray-token"
    (statefulset,) = by_kind(docs, "StatefulSet")
    password = ray_env(statefulset["spec"]["template"]["spec"]["containers"][0])["POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "my-db", "key": "pw"}


def test_operator_managed_token_uses_authoptions() -> None:
    docs = render({"ray": {"auth": {"tokenSource": "operator"}}})
    (cluster,) = by_kind(docs, "RayCluster")
    assert cluster["spec"]["authOptions"] == {"mode": "token"}
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("ray-auth")]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "RAY_AUTH_TOKEN" not in ray_env(head), "KubeRay injects it; a second one would shadow it"


def test_mlflow_reads_the_database_password_from_the_secret(default_docs: list[dict[str, Any]]) -> None:
    (deployment,) = [d for d in by_kind(default_docs, "Deployment") if d["metadata"]["name"] == "quantray-mlflow"]
    env = ray_env(deployment["spec"]["template"]["spec"]["containers"][0])
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "quantray-postgresql"
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == (
        "postgresql://mlflow:$(DB_PASSWORD)@quantray-postgresql:5432/mlflow")
    assert "quantray-mlflow:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")


def test_gpu_workers_request_gpus_and_tolerate_gpu_taints() -> None:
    docs = render(load_values(CHART / "ci" / "gpu-values.yaml"))
    for doc in by_kind(docs, "RayCluster") + by_kind(docs, "RayJob"):
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        (group,) = spec["workerGroupSpecs"]
        assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (1, 2, 8)
        pod = group["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 2
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"]["limits"]


def test_tuning_rayjob_runs_tune_on_an_ephemeral_authenticated_cluster() -> None:
    docs = render(load_values(CHART / "ci" / "gpu-values.yaml"))
    (job,) = by_kind(docs, "RayJob")
    (configmap,) = by_kind(docs, "ConfigMap")
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert job["spec"]["entrypoint"] == (
        "python -m quantray.cli tune /etc/quantray/space/space.yaml --address auto --trials 32 "
        "--experiment gpu-sweep --gpus-per-trial 1 --workers-per-trial 2")
    assert yaml.safe_load(configmap["data"]["space.yaml"])["name"] == "gpu-sweep"
    volumes = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert {"name": "space", "configMap": {"name": configmap["metadata"]["name"]}} in volumes
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"


def test_python_rayjob_builder_matches_the_chart() -> None:
    """`quantray submit --k8s` and the chart's tuneJob build one RayJob shape."""
    from quantray.jobs import k8s
    from quantray.jobs.submit import TuneOptions

    docs = render({"tuneJob": {"enabled": True, "spaceYaml": "name: probe\n", "trials": 4, "experiment": "exp",
                               "data": "synthetic", "gpusPerTrial": 1, "workersPerTrial": 2}})
    (chart_job,) = by_kind(docs, "RayJob")
    options = TuneOptions(data="synthetic", trials=4, experiment="exp", gpus_per_trial=1.0, workers_per_trial=2)
    request = k8s.tune_request(Path("space.yaml"), options, namespace=NAMESPACE, image=k8s.DEFAULT_IMAGE,
                               release="quantray")
    request = dataclasses.replace(request, name="quantray-tune", space_configmap="quantray-tune-space")
    python_job = k8s.rayjob_manifest(request)
    for job in (chart_job, python_job):
        job["spec"]["runtimeEnvYAML"] = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert python_job["spec"] == chart_job["spec"]
    assert python_job["metadata"]["labels"].items() <= chart_job["metadata"]["labels"].items()


def test_ingress_is_optional_and_routes_to_cluster_services() -> None:
    docs = render(load_values(CHART / "ci" / "production-values.yaml"))
    (ingress,) = by_kind(docs, "Ingress")
    backends = {rule["host"]: rule["http"]["paths"][0]["backend"]["service"] for rule in ingress["spec"]["rules"]}
    assert backends == {
        "mlflow.example.com": {"name": "quantray-mlflow", "port": {"number": 5000}},
        "models.example.com": {"name": "quantray-serving", "port": {"number": 8080}},
    }
    (mlflow,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "quantray-mlflow"]
    env = ray_env(mlflow["spec"]["template"]["spec"]["containers"][0])
    assert "mlflow.example.com" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "quantray-mlflow-db"


def test_serving_deployment_serves_the_champion() -> None:
    docs = render({"serving": {"enabled": True, "modelName": "qr-ensemble"}})
    (serving,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "quantray-serving"]
    container = serving["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "models", "serve"]
    assert "--model-uri=models:/qr-ensemble@champion" in container["args"]
    assert ray_env(container)["MLFLOW_TRACKING_URI"]["value"] == "http://quantray-mlflow:5000"


def test_rayservice_serves_the_champion_from_the_charts_mlflow() -> None:
    """`quantray serve`'s application on KubeRay: the import path the package has, the champion of the
    chart's MLflow, a ClusterIP head, non-root pods with limits, reachable on 8000 from the namespace."""
    from quantray.serve import app

    docs = render({"rayService": {"enabled": True, "modelName": "qr-ensemble", "replicas": 2, "pollSeconds": 2}})
    (service,) = by_kind(docs, "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (application,) = config["applications"]
    module, builder = application["import_path"].split(":")
    assert module == app.__name__ and callable(getattr(app, builder))
    assert set(application["args"]) <= set(app.BUILDER_ARGS)
    assert application["args"] == {"model": "models:/qr-ensemble@champion", "tracking_uri": "http://quantray-mlflow:5000",
                                   "poll_s": 2, "replicas": 2, "replica_cpus": 1}
    assert config["http_options"]["port"] == 8000
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP" and cluster["authOptions"] == {"mode": "token"}
    assert "workerGroupSpecs" not in cluster
    ((_, pod),) = list(pod_specs(service))
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    (policy,) = [d for d in by_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == "quantray-rayservice"]
    assert {"from": [{"podSelector": {}}], "ports": [{"port": 8000, "protocol": "TCP"}]} in policy["spec"]["ingress"]


@pytest.mark.parametrize("values, complaint", [
    ({"ray": {"workers": {"gpus": "two"}}}, "/ray/workers/gpus"),
    ({"replicaCount": 3}, "additional properties 'replicaCount' not allowed"),
    ({"containerSecurityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": True,
                                   "capabilities": {"drop": ["ALL"]}}}, "allowPrivilegeEscalation"),
    ({"ray": {"auth": {"tokenSource": "none"}}}, "tokenSource"),
    ({"tuneJob": {"experiment": "x; rm -rf /"}}, "experiment"),
    ({"mlflow": {"resources": {"limits": None}}}, "limits"),  # null deletes a default
    ({"rayService": {"pollSeconds": 0}}, "pollSeconds"),
    ({"rayService": {"alias": "champion; rm -rf /"}}, "alias"),
])
def test_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match=complaint.replace("/", ".")):
        render(values)


def test_external_database_needs_its_secret() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match="mlflow.backendStore.existingSecret"):
        render({"postgresql": {"enabled": False}})


def test_release_name_shapes_the_names() -> None:
    docs = render(release="prod")
    names = {d["metadata"]["name"] for d in docs}
    assert {"prod-quantray-ray", "prod-quantray-mlflow", "prod-quantray-postgresql"} <= names
