"""The saved ensemble: a round trip predicts the same, assets are matched by name, train_* scalers travel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ensemble_cases import DATA, train_member
from quantray.config import FeatureConfig
from quantray.data.panel import Panel
from quantray.data.pipeline import Prepared, prepare
from quantray.ensemble.artifact import Ensemble, load_ensemble, save_ensemble
from quantray.ensemble.fusion import FusionConfig, fit_fusion
from quantray.errors import BadInput
from quantray.train.checkpoint import load_checkpoint


def make_ensemble(prepared: Prepared, member_dirs: list[Path], method: str) -> Ensemble:
    members = [load_checkpoint(path) for path in member_dirs]
    model = fit_fusion(members, prepared.windows("val"), method, cost_bps=prepared.config.cost_bps,
                       config=FusionConfig(epochs=5))
    return Ensemble(model=model, pipeline=prepared.pipeline(), member_ids=tuple(p.name for p in member_dirs),
                    val_sharpe=1.0)


@pytest.mark.parametrize("method", ["concat", "attention", "hierarchical", "greedy", "mean"])
def test_round_trip_predicts_the_same(prepared: Prepared, member_dirs: list[Path], tmp_path: Path, method) -> None:
    ensemble = make_ensemble(prepared, member_dirs, method)
    directory = save_ensemble(tmp_path / "ens", ensemble)
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["ensemble.json", "members", "pipeline.json"] + ([] if method in ("greedy", "mean") else ["fusion.pt"]))
    meta = json.loads((directory / "ensemble.json").read_text())
    assert meta["method"] == method and meta["members"] == ["trial_0", "trial_1", "trial_2"]
    assert meta["head_groups"] == ([0, 1, 0] if method == "hierarchical" else None)  # by model family
    pipeline = json.loads((directory / "pipeline.json").read_text())
    assert pipeline["config"]["lookback"] == DATA.lookback and pipeline["asset_names"] == list(prepared.asset_names)

    expected = ensemble.predict(prepared.panel, embeddings=True)
    loaded = load_ensemble(directory)
    got = loaded.predict(prepared.panel, embeddings=True)
    np.testing.assert_array_equal(got.positions, expected.positions)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)
    np.testing.assert_array_equal(got.dates, prepared.panel.dates)
    assert got.assets == prepared.panel.assets
    # no positions before a full lookback of features, real ones on the validation block
    assert (got.positions[: DATA.lookback - 1] == 0).all()
    val = prepared.windows("val")
    np.testing.assert_allclose(got.positions[val.dates_idx], ensemble.model.run(val).positions, atol=1e-6)
    # saving again over an existing directory replaces it whole
    save_ensemble(directory, loaded)
    np.testing.assert_array_equal(load_ensemble(directory).predict(prepared.panel).positions, expected.positions)


def reorder(panel: Panel, order: list[int]) -> Panel:
    return Panel(panel.dates, tuple(panel.assets[i] for i in order), panel.fields, panel.values[:, order],
                 panel.mask[:, order])


def test_assets_are_matched_by_name(prepared: Prepared, member_dirs: list[Path]) -> None:
    ensemble = make_ensemble(prepared, member_dirs[:1], "greedy")
    expected = ensemble.predict(prepared.panel).positions
    shuffled = ensemble.predict(reorder(prepared.panel, [2, 0, 3, 1]))
    assert shuffled.assets == prepared.panel.assets  # the ensemble's order
    np.testing.assert_array_equal(shuffled.positions, expected)
    with pytest.raises(BadInput, match=f"asset '{prepared.panel.assets[1]}' is missing"):
        ensemble.predict(reorder(prepared.panel, [0, 2, 3]))


def test_train_normalization_stores_and_reuses_the_scaler(tmp_path: Path) -> None:
    data = dataclasses.replace(DATA, features=dataclasses.replace(DATA.features, normalization="train_zscore"))
    scaled = prepare(data)
    member = train_member(scaled, "cnn_lstm", {"d_model": 8, "kernel_size": 3}, seed=0, directory=tmp_path / "m",
                          steps=2, data=data)
    ensemble = make_ensemble(scaled, [member], "greedy")
    assert ensemble.pipeline.scaler is not None
    directory = save_ensemble(tmp_path / "ens", ensemble)
    assert (directory / "scaler.npz").exists()
    loaded = load_ensemble(directory)
    np.testing.assert_array_equal(loaded.pipeline.scaler.center, ensemble.pipeline.scaler.center)
    got = loaded.predict(scaled.panel).positions
    val = scaled.windows("val")  # the pipeline's scaled features: the same positions
    np.testing.assert_allclose(got[val.dates_idx], ensemble.model.run(val).positions, atol=1e-6)


def test_a_panel_without_the_trained_features_is_bad_input(prepared: Prepared, member_dirs: list[Path]) -> None:
    ensemble = make_ensemble(prepared, member_dirs[:1], "greedy")
    config = dataclasses.replace(ensemble.pipeline.config, features=FeatureConfig(names=("log_return",)))
    ensemble.pipeline = dataclasses.replace(ensemble.pipeline, config=config)
    with pytest.raises(BadInput, match="cannot build feature"):
        ensemble.predict(prepared.panel)
