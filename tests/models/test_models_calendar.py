"""The hybrid's calendar context reads the bars' real day of week and month of year, by name."""

from __future__ import annotations

import pytest
import torch
from model_cases import A, B, L, random_inputs

from quantray import models

NAMES = ("log_return", "day_of_week_sin", "day_of_week_cos", "month_of_year_sin")


def build(feature_names: tuple[str, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("hybrid", n_assets=A, n_features=len(feature_names), lookback=L, d_model=16, n_heads=2,
                        n_experts=2, dropout=0.0, feature_names=feature_names).eval()


def test_build_finds_the_calendar_columns_by_name() -> None:
    assert build(NAMES).calendar_features == (1, 2, 3)
    assert build(("day_of_week_cos", "log_return", "volatility_10", "month_of_year_sin")).calendar_features == (0, 3)
    assert build(("log_return", "volatility_10", "rsi_14", "macd")).calendar_features == ()  # window positions
    assert "calendar_features" not in models.defaults("hybrid")  # a shape argument, not an architecture one


def test_the_output_moves_with_the_calendar_columns() -> None:
    model = build(NAMES)
    x, asset_ids, mask = random_inputs(batch=B)
    reference = model(x, asset_ids, mask).position
    other_weekday = x.clone()
    other_weekday[..., 1] = -other_weekday[..., 1]  # the same prices on other days of the week
    assert not torch.allclose(model(other_weekday, asset_ids, mask).position, reference)
    # a masked asset's calendar columns, even NaN, reach nothing
    junk = x.clone()
    junk[~mask] = float("nan")
    out = model(junk, asset_ids, mask).position
    assert torch.isfinite(out).all() and torch.equal(out, reference)


def test_a_calendar_index_beyond_the_features_is_named() -> None:
    with pytest.raises(ValueError, match="calendar_features"):
        models.family_class("hybrid")(n_assets=A, n_features=2, lookback=L, calendar_features=(5,))
