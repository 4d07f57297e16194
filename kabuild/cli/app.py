"""The command group and what every verb shares: the repository root, progress, JSON output."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from kabuild import __version__
from kabuild.config import manifest as fleet_mod
from kabuild.config.nodes import Nodes
from kabuild.errors import ConfigError

log = logging.getLogger("kabuild")


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class Ctx:
    root: Path

    def load(self, host: str) -> tuple[fleet_mod.Manifest, Nodes]:
        return fleet_mod.load(self.root, host)


def find_root(explicit: str | None) -> Path:
    if explicit:
        root = Path(explicit).resolve()
        if not (root / "fleet").is_dir():
            raise ConfigError(f"--root {explicit}: no fleet/ directory there")
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "fleet" / "nodes.yaml").is_file():
            return candidate
    raise ConfigError("not inside a kabuild repository (no fleet/nodes.yaml here or above); use --root or KABUILD_ROOT")


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option given as "" would read as not given (``--node ''`` built on the manifest's node)."""
    if value is not None and not value.strip():
        raise click.BadParameter("an empty value; leave the option out instead")
    return value


def progress(message: str) -> None:
    click.echo(f"kabuild: {message}", err=True)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kabuild")
@click.option("--root", envvar="KABUILD_ROOT", metavar="DIR",
              help="Repository root holding fleet/ and patches/ (default: the nearest one above the current directory).")
@click.option("--debug", is_flag=True, help="Show debug logging and Python tracebacks (anywhere on the command line).")
@click.pass_context
def main(ctx: click.Context, root: str | None, debug: bool) -> None:
    """kabuild: reproducible pacman package builds for a fleet of Arch Linux ARM boards.

    \b
    The flow for one board (a "host" with a manifest in fleet/<host>.yaml):
      promote    patch series -> one cumulative patch + manifest.lock
      verify     manifest.lock intact and fresh, PKGBUILD copies without drift
      build      makepkg in a clean container on a build node
      reproduce  two builds on two nodes with variations, compared (byte parity)
      report     the acceptance report of the latest reproduce run
      publish    sign and publish only reproducible packages
      install    put a published kernel on the board (backup, heartbeat, rollback)

    \b
    Exit codes: 0 ok, 1 not reproducible, 2 usage/configuration error,
    3 refused (drift, stale or damaged lock, damaged report or reference,
    checksum, publish gate, unsigned package), 4 build failed (install: the
    new kernel failed and was rolled back), 5 tool, engine or board unreachable,
    70 internal error (a bug), 130 interrupted.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    ctx.meta["kabuild.root"] = root


def get_ctx() -> Ctx:
    return Ctx(find_root(click.get_current_context().meta.get("kabuild.root")))


flavor_choice = click.Choice([f.value for f in fleet_mod.Flavor])


def kernel_options(f: Callable) -> Callable:
    """--cross and --kernel-config: how a board's kernel recipe is exercised on a machine that is
    not one of its build nodes (README: Board workflow)."""
    f = click.option("--kernel-config", type=click.Choice(["test"]),
                     help="Build the manifest's kernel.test configuration (small, minutes) instead of its own.")(f)
    return click.option("--cross", is_flag=True,
                        help="Build an aarch64 host in an image of this node's architecture with the aarch64 "
                             "cross toolchain (reported as build mode cross) instead of emulating it.")(f)


def host_for_build(c: Ctx, host: str, flavor: str | None, node: str | None, verb: str, *,
                   cross: bool = False, kernel_config: str | None = None):
    from kabuild.build.preflight import preflight

    manifest, nodes = c.load(host)
    manifest = fleet_mod.with_overrides(manifest, nodes, flavor=flavor, node=node, cross=cross,
                                        kernel_config=kernel_config)
    preflight(c.root, manifest, nodes, verb)
    return manifest, nodes
