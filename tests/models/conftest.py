"""Fixtures for the model tests; helpers live in model_cases.py."""

from __future__ import annotations

from typing import Any

import pytest
from model_cases import CASE_IDS, CASES

from quantray import models


@pytest.fixture(params=models.FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(family, arch): every family at its defaults and every option case."""
    return request.param
