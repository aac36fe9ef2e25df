"""The risk model (`data.risk`): causal, right on a market whose betas are known, carried by
every batch of the one pipeline, validated when the config is read."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from quantray.config import DataConfig, RiskConfig, SplitConfig, resolve
from quantray.data.pipeline import prepare
from quantray.data.risk import build_risk, one_factor
from quantray.data.sources import load_panel
from quantray.errors import BadInput

ONE_FACTOR = RiskConfig(model="one_factor", halflife=20.0)


def test_betas_and_variances_of_a_known_factor_market() -> None:
    rng = np.random.default_rng(0)
    T, beta, idio_sd = 5000, np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.01, 0.02, 0.01, 0.03])
    factor = rng.normal(0.0, 0.01, T)
    returns = beta * factor[:, None] + rng.normal(0.0, 1.0, (T, 4)) * idio_sd
    risk = one_factor(returns, halflife=500.0)
    market = returns.mean(axis=1)  # the model's market is the equal-weight mean, so its betas are relative to it
    expected = np.array([np.cov(returns[:, a], market)[0, 1] for a in range(4)]) / market.var(ddof=1)
    np.testing.assert_allclose(risk.beta[-1], expected, atol=0.1)
    np.testing.assert_allclose(risk.market_var[-1], market.var(), rtol=0.15)
    residual = returns - expected * market[:, None]
    np.testing.assert_allclose(risk.idio_var[-1], residual.var(axis=0), rtol=0.2)


def test_a_date_uses_no_later_return() -> None:
    panel = load_panel("synthetic:seed=3,assets=5,days=400")
    cut = 250
    changed = panel.values.copy()
    changed[cut:, :, :4] *= np.random.default_rng(1).uniform(0.5, 1.5, (400 - cut, 5, 1))  # every price from cut on
    before = build_risk(panel, ONE_FACTOR)
    after = build_risk(dataclasses.replace(panel, values=changed), ONE_FACTOR)
    for name in ("beta", "idio_var", "market_var"):
        np.testing.assert_array_equal(getattr(before, name)[:cut], getattr(after, name)[:cut], err_msg=name)
        assert not np.array_equal(getattr(before, name)[cut:], getattr(after, name)[cut:]), name


def test_gaps_and_late_listings_give_finite_positive_risk() -> None:
    panel = load_panel("synthetic:seed=3,assets=5,days=300")
    mask = panel.mask.copy()
    mask[:120, 2] = False  # listed late
    mask[150:170, 4] = False  # a trading halt
    risk = build_risk(dataclasses.replace(panel, mask=mask), ONE_FACTOR)
    assert np.isfinite(risk.beta).all() and (risk.idio_var > 0).all() and (risk.market_var > 0).all()
    assert (risk.beta[:120, 2] == 0).all()  # no history, no beta
    assert risk.beta[150:170, 4].std() == 0  # moments hold still while it does not trade


def test_every_batch_of_the_pipeline_carries_the_same_risk() -> None:
    config = DataConfig(source="synthetic:seed=2,assets=4,days=500", lookback=16, horizon=3,
                        splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=3), risk=ONE_FACTOR)
    prepared = prepare(config)
    test = prepared.windows("test")
    served = prepared.pipeline(0).windows(prepared.panel, test.dates_idx)  # what backtest, pyfunc and server build
    rows = np.arange(len(test))
    trained, inferred = test.batch(rows), served.batch(rows)
    for key in ("beta", "idio_var", "market_var"):
        assert trained[key].dtype == np.float32
        np.testing.assert_array_equal(trained[key], inferred[key], err_msg=key)
    assert trained["beta"].shape == (len(test), 4) and trained["market_var"].shape == (len(test),)
    assert "beta" not in prepare(dataclasses.replace(config, risk=RiskConfig())).windows("test").batch(rows)


@pytest.mark.parametrize(("risk", "named"), [({"model": "two_factor"}, "data.risk.model"),
                                             ({"halflife": 0}, "data.risk.halflife"),
                                             ({"half_life": 20}, "half_life")])
def test_a_bad_risk_section_is_named(risk: dict, named: str) -> None:
    with pytest.raises(BadInput, match=named):
        resolve(DataConfig, {"risk": risk}, where="space.yaml", key="data")
