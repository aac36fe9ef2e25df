"""Fixtures of the data-layer tests."""

from __future__ import annotations

import pytest
from data_helpers import late_start_panel

from quantray.data.panel import Panel


@pytest.fixture
def small_panel() -> Panel:
    return late_start_panel()
