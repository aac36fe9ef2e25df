"""Search-space YAML: every shipped space validates; bad ones fail with the file and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from quantray.cli import main
from quantray.config import TrainConfig
from quantray.errors import BadInput
from quantray.tune.search import searcher
from quantray.tune.space import load_space

ROOT = Path(__file__).resolve().parents[2]
# every space in the repo: the shipped ones and the benchmarks' own
SHIPPED = sorted([*(ROOT / "search_spaces").rglob("*.yaml"), *(ROOT / "benchmarks").rglob("*.yaml")])

GOOD = """
name: tiny
seed: 3
data: {source: "synthetic:assets=4,days=400", lookback: 16, horizon: 3}
model:
  family: transformer
  arch: {d_model: {choice: [8, 16]}, cross_layers: {int: [1, 2]}, dropout: {float: [0.0, 0.2]}}
loss: {sharpe: 1.0, direction: {float: [0.0, 0.5]}}
optim: {lr: {float: [0.0001, 0.01], log: true}, epochs: 2, batch_dates: 32}
budget: {trials: 4, concurrency: 2}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_shipped_spaces_are_found() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"quickstart", "transformer", "gnn", "multitask", "all"} <= names
    assert {"cross_attention_etf", "cnn_lstm_classifier", "hybrid_network"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_space_validates_and_resolves(path: Path) -> None:
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        config = space.resolve(space.suggest(trial))
        assert isinstance(config, TrainConfig)
        assert config.model.family in space.families


def test_a_search_tries_every_family_once_before_it_chooses() -> None:
    space = load_space(ROOT / "search_spaces" / "all.yaml")
    search = searcher(dataclasses.replace(space, budget=dataclasses.replace(space.budget, reproducible=False)))
    first = [search.suggest(f"trial{i}") for i in range(len(space.families) + 1)]
    assert [params["model.family"] for params in first[:-1]] == list(space.families)
    # the rest of each enqueued trial is sampled: its own family's arch, nothing else
    assert all(key.startswith(f"model.arch.{params['model.family']}.")
               for params in first for key in params if key.startswith("model.arch."))
    assert first[-1]["model.family"] in space.families


def test_conditional_space_samples_only_the_chosen_familys_arch() -> None:
    space = load_space(ROOT / "search_spaces" / "all.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(20):
        params = space.suggest(study.ask())
        family = params["model.family"]
        seen.add(family)
        arch_keys = [k for k in params if k.startswith("model.arch.")]
        assert all(k.startswith(f"model.arch.{family}.") for k in arch_keys)
        assert space.resolve(params).model.family == family
    assert len(seen) >= 3


def test_resolve_fills_sampled_values(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, GOOD))
    config = space.resolve({"model.arch.d_model": 16, "model.arch.cross_layers": 2, "model.arch.dropout": 0.1,
                            "loss.direction": 0.3, "optim.lr": 0.001})
    assert config.model.arch["d_model"] == 16
    assert config.loss.direction == 0.3
    assert config.optim.lr == 0.001
    assert config.data.lookback == 16


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("budget: {trials: 4", "budgets: {trials: 4", "key 'budgets'"),
        ("optim: {lr:", "optim: {lrate:", "key 'optim.lrate'"),
        ("cross_layers: {int: [1, 2]}", "cross_layers: {int: [2, 1]}", "key 'model.arch.cross_layers.int'"),
        ("log: true", "log: yes_please", "key 'optim.lr.log'"),
        ("[0.0001, 0.01], log", "[0.0, 0.01], log", "key 'optim.lr.float'"),
        ("dropout: {float", "dropoutt: {float", "dropoutt"),
        ("family: transformer", "family: lstm9000", "key 'model.family'"),
        ("lookback: 16", "lookback: {int: [8, 16]}", "key 'data.lookback'"),
        ("horizon: 3", "horizon: three", "data.horizon: expected a number of bars or a duration"),
        ("horizon: 3", "horizon: 0", "data.horizon: must be at least 1 bar"),
        ("epochs: 2,", "epochs: {int: [2, 4]},", "key 'optim.epochs': must be a fixed number"),
        ("epochs: 2,", "epochs: 2, patience: {int: [1, 3]},", "key 'optim.patience': must be a fixed number"),
        ("epochs: 2,", "epochs: 2, patience: -1,", "optim.patience: must be 0 (off) or a number of epochs"),
        # a section per family, written for a space with one family
        ("arch: {d_model: {choice: [8, 16]}, cross_layers", "arch: {transformer: {d_model: 16}, cross_layers",
         "key 'model.arch.transformer': with one family its arguments go straight under model.arch"),
    ],
)
def test_bad_space_names_the_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(BadInput) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_pretraining_is_refused_for_a_family_without_an_encoder(tmp_path: Path) -> None:
    """The linear family's embedding is its input: a space that would pretrain it fails at load."""
    families = GOOD.replace("family: transformer", "family: {choice: [transformer, linear]}").replace(
        "arch: {d_model", "arch: {linear: {bars: 1}, transformer: {d_model").replace(
        "dropout: {float: [0.0, 0.2]}}", "dropout: {float: [0.0, 0.2]}}}")
    assert load_space(write(tmp_path, families)).families == ("transformer", "linear")
    path = write(tmp_path, families + "pretrain: {epochs: 1}\n")
    with pytest.raises(BadInput, match="key 'pretrain.epochs': the linear family has no encoder to pretrain") as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert load_space(write(tmp_path, GOOD + "pretrain: {epochs: 1}\n")).families == ("transformer",)


def test_cli_rejects_bad_space_with_exit_2_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, GOOD.replace("optim: {lr:", "optim: {lrate:"))
    code = main(["tune", str(path), "--storage", str(tmp_path / "tune")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "optim.lrate" in err and "Traceback" not in err
    assert not (tmp_path / "tune").exists()


def test_cli_rejects_missing_space_and_not_yaml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["tune", str(tmp_path / "nope.yaml")]) == 2
    assert "no such search-space file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    assert main(["tune", str(bad)]) == 2
    assert f"{bad}:" in capsys.readouterr().err
