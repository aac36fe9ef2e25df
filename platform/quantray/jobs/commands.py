"""`quantray cluster start|stop|status`, `quantray submit`, `quantray jobs list|logs|stop`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from quantray.errors import BadInput
from quantray.jobs import dashboard, k8s, local, submit
from quantray.jobs.dashboard import DEFAULT_TOKEN_ENV
from quantray.config import add_options, options_from
from quantray.recipes.options import TuneOptions

ADDRESS_HELP = ("Ray dashboard URL, e.g. http://HOST:8265 (default: RAY_ADDRESS when it is a URL, else the head "
                "`quantray cluster start` runs here, else http://127.0.0.1:8265)")
TOKEN_HELP = (f"environment variable holding the cluster's Ray auth token (default {DEFAULT_TOKEN_ENV}); unset, the "
              "token is read where Ray's clients read it: RAY_AUTH_TOKEN_PATH's file, else ~/.ray/auth_token (the head "
              "started here needs none)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cluster`, `submit` and `jobs` to the `quantray` parser."""
    register_cluster(subparsers)
    register_submit(subparsers)
    register_jobs(subparsers)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help=ADDRESS_HELP)
    parser.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME", help=TOKEN_HELP)


def register_cluster(subparsers: argparse._SubParsersAction) -> None:
    cluster = subparsers.add_parser(
        "cluster", help="start, stop or inspect a local Ray head with the dashboard",
        description="A local Ray head with the dashboard and token authentication, owned by this project: its "
                    "state lives in ./.quantray/cluster.json and `stop` ends only the processes it started.",
    )
    actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)

    start = actions.add_parser("start", help="start a Ray head with the dashboard (token auth on)",
                               description="Start `ray start --head` with the dashboard on HOST:PORT.")
    start.add_argument("--dashboard-port", type=int, default=8265, help="dashboard port (default 8265)")
    start.add_argument("--host", default="127.0.0.1", help="dashboard bind address (default 127.0.0.1)")
    start.add_argument("--num-cpus", type=int, help="CPUs the head offers (default: all)")
    start.add_argument("--num-gpus", type=int, help="GPUs the head offers (default: all it finds)")
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the head (default 120)")
    start.set_defaults(handler=cluster_start)

    stop = actions.add_parser("stop", help="stop the head `cluster start` started (never other Ray instances)",
                              description="SIGTERM the recorded head's process session, then SIGKILL stragglers.")
    stop.set_defaults(handler=cluster_stop)

    status = actions.add_parser("status", help="address, dashboard, nodes, CPUs and GPUs",
                                description="Describe the local head (or --address), or with --k8s the "
                                            "RayClusters, RayJobs and GPU nodes of the current kube context.")
    add_connection_arguments(status)
    status.add_argument("--k8s", action="store_true", help="describe the Kubernetes cluster of the current context")
    status.add_argument("--namespace", help="with --k8s: one namespace (default: all)")
    status.set_defaults(handler=cluster_status)


def register_submit(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser(
        "submit", help="run `quantray tune SPACE.yaml` on a Ray cluster (Jobs API) or as a KubeRay RayJob",
        description="Send a tuning job to a Ray cluster through the Ray Jobs API: the project and the space travel "
                    "as the job's working_dir. With --k8s, create a RayJob (an ephemeral RayCluster) instead.",
    )
    submit.add_argument("space", type=Path, metavar="SPACE.yaml", help="search-space file")
    add_connection_arguments(submit)
    # the search's own options, as `quantray tune` has them (--address is the cluster's, above); for the
    # head started here, results and MLflow default to this project's ./.quantray/
    add_options(submit, TuneOptions, skip=("address",))
    submit.add_argument("--k8s", action="store_true", help="create a KubeRay RayJob in the current kube context")
    submit.add_argument("--namespace", default="default", help="with --k8s: namespace (default: default)")
    submit.add_argument("--image", help="with --k8s: the quantray image (default: the chart's)")
    submit.add_argument("--release", default="quantray",
                        help="with --k8s: the Helm release whose MLflow and ServiceAccount the job uses")
    submit.set_defaults(handler=submit_command)


def register_jobs(subparsers: argparse._SubParsersAction) -> None:
    jobs = subparsers.add_parser("jobs", help="list, follow or stop Ray jobs",
                                 description="Jobs on a Ray cluster, through its dashboard's Jobs API.")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="jobs, newest first", description="List the cluster's jobs.")
    add_connection_arguments(listing)
    listing.set_defaults(handler=jobs_list)

    logs = actions.add_parser("logs", help="a job's logs", description="Print a job's logs.")
    logs.add_argument("job_id", metavar="JOB_ID", help="submission id (see `quantray jobs list`)")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends")
    add_connection_arguments(logs)
    logs.set_defaults(handler=jobs_logs)

    stop = actions.add_parser("stop", help="stop a running job", description="Ask the cluster to stop a job.")
    stop.add_argument("job_id", metavar="JOB_ID", help="submission id")
    add_connection_arguments(stop)
    stop.set_defaults(handler=jobs_stop)


# handlers ------------------------------------------------------------------------------------


def cluster_start(args: argparse.Namespace) -> int:
    state = local.start_head(Path.cwd(), host=args.host, dashboard_port=args.dashboard_port, num_cpus=args.num_cpus,
                             num_gpus=args.num_gpus, timeout_s=args.timeout)
    print(f"Ray head started (pid {state.leader_pid}, {len(state.pids)} processes)")
    print(f"  address    {state.gcs_address}")
    print(f"  dashboard  {state.dashboard_url}  (token: {state.token_path})")
    print(f"  submit     quantray submit SPACE.yaml --address {state.dashboard_url}")
    print("  stop       quantray cluster stop")
    return 0


def cluster_stop(args: argparse.Namespace) -> int:
    stopped = local.stop_head(Path.cwd())
    print(f"Ray head stopped ({len(stopped)} processes)" if stopped else "the recorded Ray head was not running")
    return 0


def cluster_status(args: argparse.Namespace) -> int:
    if args.k8s:
        print("\n".join(k8s.cluster_summary(args.namespace)))
        return 0
    root = Path.cwd()
    state = local.read_state(root)
    if args.address is None and (state is None or not local.is_running(state)):
        raise BadInput(f"no Ray head running from {local.state_path(root)}: run `quantray cluster start` or pass "
                       "--address http://HOST:8265")
    address = dashboard.resolve_address(args.address, root)
    token = dashboard.resolve_token(address, args.token_env, root)
    version = dashboard.check_reachable(address, token)
    nodes = dashboard.nodes(address, token)
    alive = [node for node in nodes if node["alive"]]
    totals: dict[str, float] = {}
    for node in alive:
        for name, amount in node["resources"].items():
            totals[name] = totals.get(name, 0.0) + amount
    if state is not None and state.dashboard_url == address:
        print(f"address    {state.gcs_address}  (pid {state.leader_pid}, temp dir {state.temp_dir})")
    print(f"dashboard  {address}  (Ray {version}, auth {'token' if token else 'none'})")
    print(f"nodes      {len(alive)} alive" + (f", {len(nodes) - len(alive)} dead" if len(nodes) > len(alive) else ""))
    print(f"CPUs       {totals.get('CPU', 0):g}")
    print(f"GPUs       {totals.get('GPU', 0):g}")
    print(f"memory     {totals.get('memory', 0) / 2**30:.1f} GiB")
    return 0


def submit_command(args: argparse.Namespace) -> int:
    options = options_from(TuneOptions, args, address=None)
    if args.k8s:
        return submit_to_kubernetes(args, options)
    root = Path.cwd()
    address = dashboard.resolve_address(args.address, root)
    token = dashboard.resolve_token(address, args.token_env, root)
    options = submit.with_local_defaults(options, address, root)
    options = submit.with_job_data(args.space, options, cluster_sees_local_files=submit.is_local_head(address, root))
    submitted = submit.submit_tune(address, token, args.space, options)
    print(f"submitted  {submitted.job_id}  ({submitted.upload_bytes / 1e6:.1f} MB working dir)")
    print(f"dashboard  {address}/#/jobs/{submitted.job_id}")
    print(f"logs       quantray jobs logs {submitted.job_id} --follow --address {address}")
    print(f"stop       quantray jobs stop {submitted.job_id} --address {address}")
    return 0


def submit_to_kubernetes(args: argparse.Namespace, options: TuneOptions) -> int:
    options = submit.with_job_data(args.space, options, cluster_sees_local_files=False)
    request = k8s.submit_tune(args.space, options, namespace=args.namespace, image=args.image or k8s.DEFAULT_IMAGE,
                              release=args.release)
    print(f"created RayJob {request.namespace}/{request.name} (space in ConfigMap {request.space_configmap})")
    print(f"status     kubectl -n {request.namespace} get rayjob {request.name}")
    print(f"dashboard  kubectl -n {request.namespace} port-forward svc/$(kubectl -n {request.namespace} get rayjob "
          f"{request.name} -o jsonpath='{{.status.rayClusterName}}')-head-svc 8265:8265")
    return 0


def connection(args: argparse.Namespace) -> tuple[str, str | None]:
    root = Path.cwd()
    address = dashboard.resolve_address(args.address, root)
    return address, dashboard.resolve_token(address, args.token_env, root)


def jobs_list(args: argparse.Namespace) -> int:
    address, token = connection(args)
    listed = submit.list_jobs(address, token)
    if not listed:
        print(f"no jobs on {address}")
        return 0
    print(f"{'JOB':<44} {'STATUS':<10} {'STARTED (UTC)':<19}  ENTRYPOINT")
    for job in listed:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((job.get("start_time") or 0) / 1000))
        job_id = job.get("submission_id") or job.get("job_id") or "?"
        entrypoint = (job.get("entrypoint") or "")[:80]
        print(f"{job_id:<44} {job.get('status', '?'):<10} {started:<19}  {entrypoint}")
    return 0


def jobs_logs(args: argparse.Namespace) -> int:
    address, token = connection(args)
    if not args.follow:
        print(submit.job_logs(address, token, args.job_id), end="")
        return 0
    for chunk in submit.follow_logs(address, token, args.job_id):
        print(chunk, end="", flush=True)
    status = submit.job_status(address, token, args.job_id)
    print(f"\njob {args.job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def jobs_stop(args: argparse.Namespace) -> int:
    address, token = connection(args)
    stopped = submit.stop_job(address, token, args.job_id)
    print(f"stopping {args.job_id}" if stopped else f"{args.job_id} had already ended")
    return 0
