"""The source root `platform/` must never shadow Python's standard `platform` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_platform_from_the_repository_root_is_the_standard_library():
    code = "import platform, quantray; print(platform.python_version()); print(platform.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    version, location = result.stdout.split()
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert not Path(location).is_relative_to(REPO)
    assert (REPO / "platform" / "quantray").is_dir() and not (REPO / "platform" / "__init__.py").exists()
