"""`quantray submit` / `jobs` without a cluster: the entrypoint, the packaged project, the errors."""

from __future__ import annotations

import calendar
import shlex
from pathlib import Path

import pytest

from quantray.cli import build_parser, main
from quantray.errors import BadInput
from quantray.jobs import dashboard, submit
from quantray.recipes.options import TuneOptions
from quantray.tune.space import load_space

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"
LOADED = load_space(QUICKSTART)
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_entrypoint_runs_quantray_tune_with_the_given_options() -> None:
    options = TuneOptions(data="synthetic:assets=4", trials=2, experiment="exp one", gpus_per_trial=0.5,
                                 workers_per_trial=2, tracking_uri="http://mlflow:5000", storage="/shared/tune")
    command = shlex.split(submit.cli_entrypoint(submit.tune_arguments("spaces/q.yaml", options)))
    assert command[:3] == ["python", "-m", "quantray.cli"]
    args = build_parser().parse_args(command[3:])  # what the job runs is a valid `quantray tune`
    assert args.verb == "tune" and args.space == Path("spaces/q.yaml") and args.address == "auto"
    assert (args.data, args.trials, args.experiment) == ("synthetic:assets=4", 2, "exp one")
    assert (args.gpus_per_trial, args.workers_per_trial) == (0.5, 2)
    assert (args.tracking_uri, args.storage) == ("http://mlflow:5000", Path("/shared/tune"))


def test_unset_options_are_left_to_tune() -> None:
    arguments = submit.tune_arguments("spaces/q.yaml", TuneOptions(gpus_per_trial=1.0))
    assert arguments == ["tune", "spaces/q.yaml", "--address", "auto", "--gpus-per-trial", "1"]


def test_submission_id_names_the_space_and_fits_kubernetes_names() -> None:
    now = calendar.timegm((2026, 3, 4, 5, 6, 7))
    assert submit.submission_id(Path("quickstart.yaml"), now) == "quantray-tune-quickstart-20260304-050607"
    long_id = submit.submission_id(Path("My Very_Long space name for GPUs!.yml"), now)
    assert long_id == "quantray-tune-my-very-long-spa-20260304-050607"
    # KubeRay appends -xxxxx for the cluster and -head-svc for its Service: all must stay <= 63
    assert len(long_id) + len("-abcde-head-svc") <= 63


def test_working_dir_is_the_project_in_installed_layout(tmp_path: Path) -> None:
    staged = submit.stage_working_dir(tmp_path / "job", (QUICKSTART,))
    assert (staged / "quantray" / "cli" / "__main__.py").is_file()
    assert (staged / "quantray" / "jobs" / "submit.py").is_file()
    assert (staged / "quantray" / "models" / "__init__.py").is_file()
    assert (staged / "spaces" / "quickstart.yaml").read_text() == QUICKSTART.read_text()
    assert not list(staged.rglob("__pycache__"))
    assert not (staged / ".venv").exists() and not (staged / ".git").exists()
    assert submit.directory_size(staged) < 20e6, "the upload stays small"


def test_bad_space_fails_before_contacting_the_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["submit", str(tmp_path / "missing.yaml"), "--address", UNREACHABLE]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "cannot reach" not in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodle: {}\n")
    assert main(["submit", str(broken), "--address", UNREACHABLE]) == 2
    assert "modle" in capsys.readouterr().err


def test_unreachable_dashboard_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(QUICKSTART), "--address", UNREACHABLE]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"quantray: error: cannot reach Ray dashboard at {UNREACHABLE}")
    assert "\n" not in err
    for verb in (["jobs", "list"], ["jobs", "logs", "some-job"], ["jobs", "stop", "some-job"]):
        assert main([*verb, "--address", UNREACHABLE]) == 2
        assert "cannot reach Ray dashboard" in capsys.readouterr().err


def test_address_comes_from_flag_then_ray_address_then_default(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "http://head.example:8265/")
    assert dashboard.resolve_address(None, workdir) == "http://head.example:8265"
    assert dashboard.resolve_address("10.0.0.5:8265", workdir) == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # a GCS address is not a dashboard
    assert dashboard.resolve_address(None, workdir) == dashboard.DEFAULT_ADDRESS
    with pytest.raises(BadInput, match="--address"):
        dashboard.normalize_address("ftp://head:8265")


def test_token_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cret\n")
    assert dashboard.resolve_token("http://head:8265", "MY_TOKEN", workdir) == "s3cret"
    assert dashboard.resolve_token("http://head:8265", "UNSET_TOKEN_VARIABLE", workdir) is None
    assert dashboard.auth_headers("s3cret") == {"Authorization": "Bearer s3cret"}


def test_stop_and_status_without_a_head_say_so(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert main(["cluster", "stop"]) == 2
    assert "nothing to stop" in capsys.readouterr().err
    assert main(["cluster", "status"]) == 2
    assert "quantray cluster start" in capsys.readouterr().err


def test_every_verb_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in (["cluster", "start"], ["cluster", "stop"], ["cluster", "status"], ["submit"], ["jobs", "list"],
                 ["jobs", "logs"], ["jobs", "stop"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*verb, "--help"])
        assert exit_info.value.code == 0
        assert "usage: quantray" in capsys.readouterr().out


def test_job_metadata_names_the_experiment_space_and_budget() -> None:
    metadata = submit.job_metadata(QUICKSTART, LOADED, TuneOptions(trials=3, experiment="exp1"), "quantray-tune-x")
    assert metadata["experiment"] == "exp1" and metadata["space"] == "quickstart.yaml"
    assert (metadata["trials"], metadata["concurrency"], metadata["epochs_per_trial"]) == ("3", "2", "8")
    assert metadata["data"].startswith("synthetic:")
    assert all(isinstance(v, str) for v in metadata.values())  # Ray's job metadata is str -> str


def test_a_submitted_search_names_its_experiment_in_the_entrypoint_and_the_metadata() -> None:
    now = calendar.timegm((2026, 3, 4, 5, 6, 7))
    options = submit.with_experiment(LOADED, TuneOptions(trials=2), now)
    assert options.experiment is not None and options.experiment.startswith("quickstart-2026030")
    arguments = submit.tune_arguments("spaces/quickstart.yaml", options)
    assert arguments[arguments.index("--experiment") + 1] == options.experiment
    assert submit.job_metadata(QUICKSTART, LOADED, options, "quantray-tune-x")["experiment"] == options.experiment
    assert submit.with_experiment(LOADED, TuneOptions(experiment="mine"), now).experiment == "mine"
    resumed = submit.with_experiment(LOADED, TuneOptions(resume=True), now)
    assert resumed.experiment is None  # the job picks the space's latest experiment on the cluster
    assert "latest quickstart-*" in submit.job_metadata(QUICKSTART, LOADED, resumed, "quantray-tune-x")["experiment"]
