"""Fixtures for integration tests that use a real Docker engine, real makepkg and real diffoscope.

The engines are brought up by `make test` (containers/host-setup.sh all second-engine).
Outside CI a missing engine skips these tests; in CI a skip is a failure.  Helpers that
tests import live in itest.py, not here.
"""

from __future__ import annotations

import pytest
from itest import REPO, note_stale

from kabuild.build.engines import connect
from kabuild.config.nodes import load_nodes
from kabuild.errors import ToolError


def _engine(name: str):
    try:
        e = connect(load_nodes(REPO).get(name))
    except ToolError as err:
        pytest.skip(f"Docker engine {name!r} not available: {err} (run containers/host-setup.sh all second-engine)")
    note_stale(e)
    return e


@pytest.fixture(scope="session")
def engine():
    e = _engine("local")
    yield e
    e.close()


@pytest.fixture(scope="session")
def engine2():
    e = _engine("local-2")
    yield e
    e.close()


