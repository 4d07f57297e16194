"""The verb that reaches the board: install."""

from __future__ import annotations

import sys

import click

from kabuild import tools
from kabuild.cli.app import emit_json, get_ctx, json_option, main, not_empty, progress
from kabuild.errors import ConfigError

# --------------------------------------------------------------------------- later verbs


@main.command()
@click.argument("host")
@click.option("--version", "version", metavar="V", callback=not_empty, help="Install this published version (pkgver or pkgver-pkgrel) "
              "instead of the newest.")
@click.option("--dry-run", is_flag=True, help="Verify the package, look at the board (read only) and say what "
              "would be done; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@json_option
def install(host: str, version: str | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Install HOST's published kernel package on the board over ssh, with automatic rollback.

    \b
    Only a package from HOST's published repository is installed, and only after its
    detached signature verified with the repository key (unsigned/tampered: exit 3,
    the board untouched).  Steps: ssh connect, /boot free space, backup (verified
    by hash), pacman -U, boot entry (new default + previous kernel as fallback),
    reboot, heartbeat (uname -r == the package's release), record in manifest.lock.
    A board that does not come back on the new kernel is rolled back (exit 4).
    A rerun after an interrupted install undoes or finishes it first.
    Manifest keys: install: in fleet/HOST.yaml (README: "Installing on a board").
    """
    from kabuild.install import plan as installplan
    from kabuild.install import procedure as install_mod

    c = get_ctx()
    manifest, _ = c.load(host)
    tools.require("install")
    plan = installplan.plan(c.root, manifest, version=version, progress=progress)
    if dry_run:
        lines = installplan.dry_run(c.root, manifest, plan, progress)
        if as_json:
            emit_json({"host": host, "dry_run": True, "plan": lines})
        else:
            click.echo("\n".join(lines))
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"`kabuild install {host}` changes the board: confirm with --yes "
                              "(stdin is not a terminal)")
        click.echo("\n".join(plan.describe()), err=True)
        if not click.confirm("install now?", err=True):
            raise ConfigError("install not confirmed; nothing was changed")
    done = install_mod.install(c.root, manifest, plan, progress)
    if as_json:
        emit_json({"host": host, "release": done.release, "already": done.already, "replaced": done.replaced,
                   "replaced_release": done.replaced_release, "backup": done.backup,
                   "packages": [p.to_dict() for p in done.packages]})
        return
    click.echo(done.summary())
