"""Unit-test-only fixtures: keep the caller's environment out of every unit test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def empty_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kabuild-cache")


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch, empty_cache_dir):
    """Point the source cache away from ~/.cache and ignore a KABUILD_ROOT set by the caller.

    No unit test fills the default cache (the demo baseline is found inside the
    repository copy), so one empty directory serves the whole session.
    """
    monkeypatch.setenv("KABUILD_CACHE", str(empty_cache_dir))
    monkeypatch.delenv("KABUILD_ROOT", raising=False)
