"""Shared fixtures for the kabuild test suite.

``repo`` is a throw-away copy of the repository's ``fleet/`` and ``patches/``
trees, so no test ever touches the real ones.  Helpers that write manifests and
series for the unit tests live in ``tests/unit/kbhelpers.py``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/daemons.py for every test directory

from daemons import daemons_under, gpg_agents  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def no_gpg_agent_left(tmp_path_factory):
    """The suite ends with no gpg-agent of its own: kabuild stops the agents of its own GnuPG homes after
    signing, and the agents that test helpers start (keys made for a test, pacman-key in a test client's
    root) are stopped here, for every home under this session's temporary directory."""
    yield
    from kabuild.process import stop_gpg_agent  # waits until the agent has exited

    base = tmp_path_factory.getbasetemp().resolve()
    for home in {home for _pid, home in gpg_agents() if base in home.resolve().parents}:
        stop_gpg_agent(home)


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


def pytest_sessionfinish(session, exitstatus):
    """The suite ends with no daemon of its own: an sshd, dockerd or gpg-agent still running with this
    session's temporary directory on its command line fails the run (fixtures must stop what they start)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    left = daemons_under(base)
    if left:
        import sys

        print("\nkabuild tests: daemons this session started are still running:", file=sys.stderr)
        for pid, cmd in left:
            print(f"  pid {pid}: {cmd[:200]}", file=sys.stderr)
        session.exitstatus = 1
