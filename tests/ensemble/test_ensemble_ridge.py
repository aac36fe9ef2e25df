"""The ridge baseline trades the same book as the members: its views through the data's risk model."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from quantray.ensemble.build import ridge_baseline
from quantray.train.risk import risk_positions


def test_the_ridge_views_go_through_the_members_risk_model(prepared) -> None:
    assert prepared.risk is not None  # ensemble_cases' data has a risk model
    dates = prepared.splits[0].test
    hedged = ridge_baseline(prepared, 0, dates)
    views = ridge_baseline(dataclasses.replace(prepared, risk=None), 0, dates)
    assert hedged.shape == views.shape and not np.allclose(hedged, views)
    batch = {key: torch.as_tensor(value) for key, value in prepared.windows("test").gather(dates).items()}
    np.testing.assert_allclose(hedged, risk_positions(torch.as_tensor(views, dtype=torch.float32), batch).numpy(),
                               atol=1e-6)
