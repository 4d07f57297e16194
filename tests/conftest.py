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


def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure: every tool the suite needs must be there (GUIDE.md)."""
    import os

    import pytest as _pytest

    if not os.environ.get("CI") or call.excinfo is None:
        return None
    if call.excinfo.errisinstance(_pytest.skip.Exception) and not hasattr(call.excinfo.value, "__kabuild_ok__"):
        reason = str(call.excinfo.value)
        report = _pytest.TestReport.from_item_and_call(item, call)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI ({reason}): CI must run every test"
        return report
    return None
