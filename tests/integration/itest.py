"""Helpers for the integration tests: a real kabuild subprocess, private repositories, leftovers.

An ordinary module (not conftest) so that any test file can import it in any order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "packages"
DEMO_TARBALL = "fleet/sources/kabuild-hello-1.0.tar.gz"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def kabuild(root: Path, *args: str, timeout: int = 1800, env: dict | None = None) -> Result:
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "kabuild", "--root", str(root), *args], capture_output=True,
                       text=True, timeout=timeout, env=full_env)
    return Result(p.returncode, p.stdout, p.stderr)


NODES = """\
schema: 1
nodes:
  local:
    url: unix:///var/run/docker.sock
  local-2:
    url: unix:///run/kabuild-docker2.sock
  dead:
    url: unix:///run/kabuild-no-such-engine.sock
    description: an engine that never answers, for fallback tests
"""


def make_repo(base: Path, host: str, packages: list[str], *, arch: str = "x86_64", control: str = "local",
              experiment: str = "local", fallback: str | None = "local", timeout: int = 600, nodes: str = "",
              single_engine: str | None = None) -> Path:
    """A private kabuild repository with a host whose packages are test fixtures; promoted.
    ``nodes``: more fleet/nodes.yaml entries (the remote nodes of remote_nodes.RemoteFleet)."""
    root = base / "repo"
    (root / "fleet" / "sources").mkdir(parents=True)
    shutil.copytree(REPO / "containers", root / "containers")
    shutil.copy(REPO / DEMO_TARBALL, root / DEMO_TARBALL)
    (root / "fleet" / "nodes.yaml").write_text(NODES + nodes)
    for name in packages:
        shutil.copytree(FIXTURES / name, root / "pkgs" / name)
    pkg_lines = "".join(f"  - name: {n}\n    pkgbuild: pkgs/{n}\n" for n in packages)
    fallback_line = f"    fallback: {fallback}\n" if fallback else ""
    (root / "fleet" / f"{host}.yaml").write_text(textwrap.dedent(f"""\
        schema: 1
        host: {host}
        arch: {arch}
        baseline:
          name: kabuild-hello
          version: "1.0"
          ref: v1.0
          source_date_epoch: 1767225600
          sources:
            - url: {DEMO_TARBALL}
              sha256: 4b6efb132d7cced2508f372ce6aab1e6dc1b58a1c50923326839c5a5f565299e
        includes: []
        apply_order: [soc, driver, board, module, subsystem, arch]
        packages:
        """) + pkg_lines + textwrap.dedent(f"""\
        build:
          flavor: debian
          timeout: {timeout}
        """) + (f"  single_engine: {single_engine}\n" if single_engine else "")
        + f"  nodes:\n    control: {control}\n    experiment: {experiment}\n" + fallback_line)
    r = kabuild(root, "promote", host)
    assert r.code == 0, str(r)
    return root


def copy_real_repo(base: Path) -> Path:
    """A private copy of the real repository's inputs (fleet, patches, containers, references)."""
    root = base / "real"
    root.mkdir()
    for d in ("fleet", "patches", "containers", "references"):
        if (REPO / d).exists():
            shutil.copytree(REPO / d, root / d)
    return root


# Containers that were already on an engine when this test session connected to it: left by an
# earlier run that was killed (an engine keeps them across restarts).  They are not this session's
# leftovers, so they never count against a test.
STALE: dict[str, set[str]] = {}


def note_stale(engine) -> None:
    from kabuild.build.containers import leftover_containers

    STALE[engine.node.name] = {c.id for c in leftover_containers(engine)}


def leftovers(engine, host: str | None = None) -> list:
    """Build containers kabuild left on ``engine`` for ``host`` (default: the fixture host "fx").

    Filtered by host so that another kabuild run on the same engine (the demo) never counts, and
    containers from before this test session (see STALE) are ignored.
    """
    from kabuild.build.containers import OWNER, leftover_containers, owner_alive

    host = host or "fx"
    stale = STALE.get(engine.node.name, set())
    # a container whose kabuild process still runs belongs to a run in progress (another engineer's
    # tests share the engines and the host name "fx"); what a finished kabuild left has a dead owner
    return [c for c in leftover_containers(engine)
            if c.labels.get("org.kabuild.host") == host and c.id not in stale
            and owner_alive(c.labels.get(OWNER, "")) is not True]


def running_of(engine, pid: int) -> list:
    """The running build containers that the kabuild process ``pid`` made on ``engine`` (its owner label)."""
    from kabuild.build.containers import OWNER, leftover_containers

    return [c for c in leftover_containers(engine)
            if c.status == "running" and c.labels.get(OWNER, "").split(":")[1:2] == [str(pid)]]
