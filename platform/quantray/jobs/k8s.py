"""Kubernetes: what runs where (RayClusters, RayJobs, GPUs), and a tuning RayJob from a space.

`rayjob_manifest` builds the same RayJob as the Helm chart's `templates/rayjob.yaml` (an
ephemeral RayCluster with the chart's pod shape and security settings; tests/helm checks
that the two agree), so `quantray submit --k8s` and `helm install --set tuneJob.enabled=true`
run one kind of job. The search space travels in a ConfigMap mounted on the head, where the
job's driver runs; the ConfigMap is owned by the RayJob, so deleting the job deletes it.

The `kubernetes` client is imported lazily and never configured process-wide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantray.errors import BadInput
from quantray.jobs.submit import JOB_ENV_VARS, cli_entrypoint, submission_id, tune_arguments, validate_space
from quantray.recipes.options import TuneOptions

RAY_GROUP, RAY_API_VERSION = "ray.io", "v1"
RAY_VERSION = "2.60.0"
DEFAULT_IMAGE = "quantray/quantray:0.1.0-cuda"
DEFAULT_RELEASE = "quantray"
CHART_NAME = "quantray"
SPACE_MOUNT = "/etc/quantray/space"
GPU_TOLERATION = {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
POD_SECURITY_CONTEXT = {
    "fsGroup": 1000,
    "runAsGroup": 1000,
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}


def bounded(cpu: str, memory: str) -> dict[str, dict[str, Any]]:
    """Requests equal to limits: the pod gets what it asks for and no more."""
    return {"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": cpu, "memory": memory}}


@dataclass(frozen=True)
class RayGroup:
    """One Ray node group's pod shape (the chart's ray.head / ray.workers values)."""

    resources: dict[str, dict[str, Any]]
    shm_size: str
    tmp_size: str
    gpus: int = 0
    ray_start_params: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


HEAD = RayGroup(bounded("2", "8Gi"), shm_size="2Gi", tmp_size="20Gi", ray_start_params={"dashboard-host": "0.0.0.0"})
GPU_WORKER = RayGroup(bounded("8", "32Gi"), shm_size="8Gi", tmp_size="50Gi", gpus=1, tolerations=(GPU_TOLERATION,))


@dataclass(frozen=True)
class RayJobRequest:
    """A tuning RayJob; the defaults are the chart's defaults."""

    name: str
    namespace: str
    entrypoint: str
    image: str = DEFAULT_IMAGE
    release: str = DEFAULT_RELEASE  # the Helm release whose ServiceAccount and MLflow the job uses
    space_configmap: str = ""  # mounted at SPACE_MOUNT on the head
    job_metadata: dict[str, str] = field(default_factory=dict)  # the Ray dashboard's job page shows it
    head: RayGroup = HEAD
    worker: RayGroup = GPU_WORKER
    worker_replicas: int = 1
    min_workers: int = 0
    max_workers: int = 4
    autoscaling: bool = True
    ttl_seconds_after_finished: int = 3600
    mlflow: bool = True


def fullname(release: str) -> str:
    """The chart's `quantray.fullname`: the release name alone when it holds the chart name."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:63].rstrip("-")


def selector_labels(release: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": release, "app.kubernetes.io/name": CHART_NAME}


def ray_env(request: RayJobRequest) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
        {"name": "RAY_TRAIN_ENABLE_STATE_TRACKING", "value": "1"},
    ]
    if request.mlflow:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": f"http://{fullname(request.release)}-mlflow:5000"})
    return env


def ray_resources(group: RayGroup) -> dict[str, dict[str, Any]]:
    resources = {kind: dict(values) for kind, values in group.resources.items()}
    if group.gpus > 0:
        for kind in ("requests", "limits"):
            resources[kind]["nvidia.com/gpu"] = group.gpus
    return resources


def ray_pod_template(request: RayJobRequest, group: RayGroup, *, head: bool) -> dict[str, Any]:
    """The chart's `quantray.rayPodTemplate` for a RayJob's cluster (auth wired by KubeRay)."""
    space = head and bool(request.space_configmap)
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": request.image,
        "imagePullPolicy": "IfNotPresent",
    }
    if head:
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ]
    container["env"] = ray_env(request)
    container["resources"] = ray_resources(group)
    container["securityContext"] = CONTAINER_SECURITY_CONTEXT
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": group.tmp_size}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": group.shm_size}},
    ]
    if space:
        container["volumeMounts"].append({"name": "space", "mountPath": SPACE_MOUNT, "readOnly": True})
        volumes.append({"name": "space", "configMap": {"name": request.space_configmap}})
    spec: dict[str, Any] = {}
    # with autoscaling the head keeps KubeRay's autoscaler ServiceAccount: it patches pods
    if not (head and request.autoscaling):
        spec["serviceAccountName"] = fullname(request.release)
        spec["automountServiceAccountToken"] = False
    spec["securityContext"] = POD_SECURITY_CONTEXT
    spec["containers"] = [container]
    spec["volumes"] = volumes
    if group.node_selector:
        spec["nodeSelector"] = dict(group.node_selector)
    if group.tolerations:
        spec["tolerations"] = [dict(t) for t in group.tolerations]
    labels = {**selector_labels(request.release), "app.kubernetes.io/component": "ray"}
    return {"metadata": {"labels": labels}, "spec": spec}


def ray_cluster_spec(request: RayJobRequest) -> dict[str, Any]:
    """An ephemeral cluster with token auth managed by KubeRay (authOptions)."""
    spec: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
        "authOptions": {"mode": "token"},
        "enableInTreeAutoscaling": request.autoscaling,
    }
    if request.autoscaling:
        spec["autoscalerOptions"] = {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 300,
            "resources": bounded("500m", "512Mi"),
            "securityContext": CONTAINER_SECURITY_CONTEXT,
        }
    spec["headGroupSpec"] = {
        "serviceType": "ClusterIP",
        "rayStartParams": dict(request.head.ray_start_params),
        "template": ray_pod_template(request, request.head, head=True),
    }
    spec["workerGroupSpecs"] = [
        {
            "groupName": "gpu" if request.worker.gpus else "cpu",
            "replicas": request.worker_replicas,
            "minReplicas": request.min_workers,
            "maxReplicas": request.max_workers,
            "rayStartParams": dict(request.worker.ray_start_params),
            "template": ray_pod_template(request, request.worker, head=False),
        }
    ]
    return spec


def submitter_pod_template(request: RayJobRequest) -> dict[str, Any]:
    """The pod that runs `ray job submit`; KubeRay adds its command and the auth token."""
    return {
        "metadata": {"labels": {**selector_labels(request.release), "app.kubernetes.io/component": "ray-job-submitter"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": fullname(request.release),
            "automountServiceAccountToken": False,
            "securityContext": POD_SECURITY_CONTEXT,
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": request.image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "HOME", "value": "/tmp"}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "512Mi"},
                        "requests": {"cpu": "200m", "memory": "256Mi"},
                    },
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }


def rayjob_manifest(request: RayJobRequest) -> dict[str, Any]:
    import yaml

    return {
        "apiVersion": f"{RAY_GROUP}/{RAY_API_VERSION}",
        "kind": "RayJob",
        "metadata": {
            "name": request.name,
            "namespace": request.namespace,
            "labels": {**selector_labels(request.release), "app.kubernetes.io/component": "tune"},
        },
        "spec": {
            "entrypoint": request.entrypoint,
            "metadata": request.job_metadata,
            "runtimeEnvYAML": yaml.safe_dump({"env_vars": JOB_ENV_VARS}, sort_keys=True),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": request.ttl_seconds_after_finished,
            "submitterPodTemplate": submitter_pod_template(request),
            "rayClusterSpec": ray_cluster_spec(request),
        },
    }


def space_configmap(name: str, namespace: str, space: Path, release: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    """The search space as a ConfigMap; `owner` (the created RayJob) garbage-collects it."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**selector_labels(release), "app.kubernetes.io/component": "tune"},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": False,
                "blockOwnerDeletion": False,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {space.name: space.read_text()}}


def tune_request(
    space: Path, options: TuneOptions, *, namespace: str, image: str, release: str, now: float | None = None
) -> RayJobRequest:
    """A RayJob running `quantray tune` on `space`, which a ConfigMap mounts on the head."""
    name = submission_id(space, now)
    return RayJobRequest(
        name=name,
        namespace=namespace,
        entrypoint=cli_entrypoint(tune_arguments(f"{SPACE_MOUNT}/{space.name}", options)),
        image=image,
        release=release,
        space_configmap=f"{name}-space",
        job_metadata=rayjob_metadata(space.name, options),
    )


def rayjob_metadata(space_name: str, options: TuneOptions) -> dict[str, str]:
    """What the chart's RayJob also knows without reading the space: the options given, the space's
    file name (`quantray submit` to a running cluster adds the space's budget and epochs)."""
    given = {"experiment": options.experiment, "data": options.data,
             "trials": str(options.trials) if options.trials else None}
    return {"submitted_by": "quantray", "space": space_name, **{k: v for k, v in given.items() if v}}


# Talking to a cluster --------------------------------------------------------------------------


def api_client() -> Any:
    """An ApiClient for the current kubeconfig context, or the pod's service account."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:
        raise BadInput("the Kubernetes client is not installed: pip install 'quantray[k8s]'") from exc
    # read KUBECONFIG now: the client captures it once, when first imported
    kubeconfig = os.environ.get("KUBECONFIG", "~/.kube/config")
    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError) as exc:
        kubeconfig_error = exc
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        raise BadInput(
            f"no Kubernetes configuration: {kubeconfig} is missing or unusable ({kubeconfig_error}) and this is not a pod"
        ) from None
    return client.ApiClient(configuration)


def call(api_call: Any, *args: Any, what: str, **kwargs: Any) -> Any:
    """Run one API call; unreachable, forbidden or missing CRDs -> BadInput with one line."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return api_call(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404 and "ray.io" in what:
            raise BadInput(f"{what}: the KubeRay CRDs (ray.io/v1) are not installed; install the KubeRay operator") from None
        if exc.status in (401, 403):
            raise BadInput(f"{what}: forbidden by the Kubernetes API ({exc.reason})") from None
        raise BadInput(f"{what}: the Kubernetes API answered {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        host = getattr(getattr(api_call, "__self__", None), "api_client", None)
        address = host.configuration.host if host is not None else "the Kubernetes API"
        raise BadInput(f"cannot reach the Kubernetes API at {address} ({type(exc).__name__})") from None


def list_ray_objects(api: Any, plural: str, namespace: str | None) -> list[dict[str, Any]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    what = f"listing {plural}.ray.io"
    if namespace:
        listed = call(custom.list_namespaced_custom_object, RAY_GROUP, RAY_API_VERSION, namespace, plural, what=what,
                      _request_timeout=10)
    else:
        listed = call(custom.list_cluster_custom_object, RAY_GROUP, RAY_API_VERSION, plural, what=what,
                      _request_timeout=10)
    return list(listed.get("items", []))


def gpu_capacity(api: Any) -> list[tuple[str, int, int]]:
    """(node, allocatable nvidia.com/gpu, capacity) for every node with GPUs."""
    from kubernetes import client

    nodes = call(client.CoreV1Api(api).list_node, what="listing nodes", _request_timeout=10)
    found = []
    for node in nodes.items:
        allocatable = int((node.status.allocatable or {}).get("nvidia.com/gpu", 0))
        capacity = int((node.status.capacity or {}).get("nvidia.com/gpu", 0))
        if capacity:
            found.append((node.metadata.name, allocatable, capacity))
    return found


def cluster_summary(namespace: str | None) -> list[str]:
    """Lines describing the RayClusters, RayJobs and GPU nodes of the current context."""
    api = api_client()
    lines = [f"Kubernetes API  {api.configuration.host}"]
    clusters = list_ray_objects(api, "rayclusters", namespace)
    lines.append(f"RayClusters     {len(clusters)}")
    for item in clusters:
        status = item.get("status", {})
        lines.append(
            f"  {item['metadata']['namespace']}/{item['metadata']['name']}: {status.get('state', 'pending')}, "
            f"workers {status.get('readyWorkerReplicas', 0)}/{status.get('desiredWorkerReplicas', 0)}, "
            f"GPUs {status.get('desiredGPU', '0')}"
        )
    jobs = list_ray_objects(api, "rayjobs", namespace)
    lines.append(f"RayJobs         {len(jobs)}")
    for item in jobs:
        status = item.get("status", {})
        lines.append(
            f"  {item['metadata']['namespace']}/{item['metadata']['name']}: "
            f"{status.get('jobDeploymentStatus', 'New')}, job {status.get('jobStatus', '-')}"
        )
    gpus = gpu_capacity(api)
    lines.append(f"GPU nodes       {len(gpus)} ({sum(a for _, a, _ in gpus)} nvidia.com/gpu allocatable)")
    lines += [f"  {name}: {allocatable}/{capacity}" for name, allocatable, capacity in gpus]
    return lines


def submit_tune(space: Path, options: TuneOptions, *, namespace: str, image: str, release: str) -> RayJobRequest:
    """Validate the space here, then create its RayJob in the current kube context."""
    validate_space(space)
    request = tune_request(space, options, namespace=namespace, image=image, release=release)
    create_rayjob(request, space)
    return request


def create_rayjob(request: RayJobRequest, space: Path) -> dict[str, Any]:
    """Create the RayJob, then its space ConfigMap owned by it; returns the created RayJob."""
    from kubernetes import client

    api = api_client()
    manifest = rayjob_manifest(request)
    created = call(
        client.CustomObjectsApi(api).create_namespaced_custom_object,
        RAY_GROUP, RAY_API_VERSION, request.namespace, "rayjobs", manifest,
        what=f"creating RayJob {request.namespace}/{request.name}", _request_timeout=30,
    )
    configmap = space_configmap(request.space_configmap, request.namespace, space, request.release, owner=created)
    call(
        client.CoreV1Api(api).create_namespaced_config_map, request.namespace, configmap,
        what=f"creating ConfigMap {request.namespace}/{request.space_configmap}", _request_timeout=30,
    )
    return created
