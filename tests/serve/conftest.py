"""The registry's fixtures (a real mlflow server, real members) for the serving tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "ensemble"))

from ensemble_cases import member_dirs, prepared  # noqa: E402,F401  (fixtures)


def _registry_fixtures():  # tests/registry/conftest.py under a name of its own (not `conftest`)
    spec = importlib.util.spec_from_file_location("registry_fixtures", TESTS / "registry" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["registry_fixtures"] = module
    spec.loader.exec_module(module)
    return module


_registry = _registry_fixtures()
free_port, mlflow_process, mlflow_server = _registry.free_port, _registry.mlflow_process, _registry.mlflow_server
