"""Fixtures for integration tests that use a real Docker engine, real makepkg and real diffoscope.

The engines are brought up by `make test` (containers/host-setup.sh all second-engine).
Outside CI a missing engine skips these tests; in CI a skip is a failure.  Helpers that
tests import live in itest.py, not here.
"""

from __future__ import annotations

import pytest
from itest import REPO, note_stale

from kabuild.build import images
from kabuild.build.engines import connect
from kabuild.config.manifest import Arch, Flavor
from kabuild.config.nodes import load_nodes
from kabuild.errors import ToolError

# The build images every integration test uses: made once per test run (on a new machine the
# root filesystems are built with mmdebstrap, a few minutes each; later runs find them on the
# engines), before the first test, so no test pays for them and their cost shows as one setup.
IMAGES = ((Flavor.DEBIAN, Arch.X86_64), (Flavor.DEBIAN, Arch.AARCH64))


def _engine(name: str):
    try:
        e = connect(load_nodes(REPO).get(name))
    except ToolError as err:
        pytest.skip(f"Docker engine {name!r} not available: {err} (run containers/host-setup.sh all second-engine)")
    note_stale(e)
    return e


@pytest.fixture(scope="session")
def build_images():
    """The debian build images (x86_64 and aarch64) on both local engines, made once per run."""
    engines = [_engine("local"), _engine("local-2")]
    try:
        for flavor, arch in IMAGES:
            recipe = images.recipe(REPO, flavor, arch)
            # made on local, shipped to local-2 by image ID: the same image on both, as reproduce uses it
            info = images.ensure(REPO, engines[0], recipe, lambda m: print(f"kabuild: {m}"))
            images.ship(engines[0], engines[1], info, lambda m: print(f"kabuild: {m}"))
    finally:
        for e in engines:
            e.close()


@pytest.fixture(scope="session")
def engine(build_images):
    e = _engine("local")
    yield e
    e.close()


@pytest.fixture(scope="session")
def engine2(build_images):
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
