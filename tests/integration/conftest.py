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




@pytest.fixture(scope="session")
def remote_fleet(tmp_path_factory):
    """Real remote nodes on this machine (tests/integration/remote_nodes.py): an sshd in front of a
    dockerd of its own, a --tlsverify dockerd with openssl-made certificates, a silent port and a
    clear-text port.  Started once per session when a test asks for them; every daemon is stopped and
    its data removed at the end."""
    import shutil
    from pathlib import Path

    from remote_nodes import RemoteFleet

    missing = [t for t in ("dockerd", "docker", "ssh", "ssh-keygen", "openssl") if shutil.which(t) is None]
    if missing or not Path("/usr/sbin/sshd").exists():
        pytest.skip(f"remote-node fixtures need dockerd, docker, sshd, ssh and openssl (missing: {missing or 'sshd'})")
    fleet = RemoteFleet(tmp_path_factory.mktemp("remote-nodes"))
    fleet.start()
    yield fleet
    fleet.stop()
