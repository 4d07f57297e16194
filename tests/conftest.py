"""Shared fixtures for the kabuild test suite.

``repo`` is a throw-away copy of the repository's ``fleet/`` and ``patches/``
trees, so no test ever touches the real ones.  Helpers that write manifests and
series for the unit tests live in ``tests/unit/kbhelpers.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path) -> Path:
    """A private copy of the repository's fleet/ and patches/; returns its root."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(REPO_ROOT / "fleet", root / "fleet")
    shutil.copytree(REPO_ROOT / "patches", root / "patches")
    return root
