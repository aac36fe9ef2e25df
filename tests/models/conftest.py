"""Fixtures for the model tests; helpers live in model_cases.py."""

from __future__ import annotations

import pytest

from quantray import models


@pytest.fixture(params=models.FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param
