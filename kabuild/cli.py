"""The kabuild command line: it parses, calls the module that owns the work, and renders.

This is the only place where errors become exit codes (:func:`run_cli`).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from . import __version__
from . import fleet as fleet_mod
from .errors import ConfigError, ExitCode, KabuildError

log = logging.getLogger("kabuild")


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class Ctx:
    root: Path

    def load(self, host: str) -> tuple[fleet_mod.Manifest, fleet_mod.Nodes]:
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


def progress(message: str) -> None:
    click.echo(f"kabuild: {message}", err=True)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kabuild")
@click.option("--root", envvar="KABUILD_ROOT", metavar="DIR",
              help="Repository root holding fleet/ and patches/ (default: the nearest one above the current directory).")
@click.option("--debug", is_flag=True, help="Show debug logging and Python tracebacks.")
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


# --------------------------------------------------------------------------- promote, fetch, verify


@main.command()
@click.argument("host")
@json_option
def promote(host: str, as_json: bool) -> None:
    """Concatenate HOST's patch series into one cumulative patch and write manifest.lock.

    The included series are taken in the manifest's apply_order; the result lands in
    build/<host>/<baseline_ref>/ together with manifest.lock, which records every input
    file with its sha256 and b2sum.  When the baseline tarball is at hand (in the
    source cache, checksum verified) the patch is applied to a copy of it; otherwise
    the check is skipped and the lock says why.  A damaged previous lock is replaced.
    """
    from .promotion import promote_host

    c = get_ctx()
    manifest, _nodes = c.load(host)
    done = promote_host(c.root, manifest)
    promo, check, lock = done.promotion, done.check, done.lock
    if as_json:
        emit_json({"host": host, "patch": str(done.patch), "lock": str(lock.path), "patches": list(promo.patches),
                   "b2sum": promo.digest.b2sum, "sha256": promo.digest.sha256, "size": promo.digest.size,
                   "apply_check": {"status": check.status.value, "detail": check.detail},
                   "lock_hash": lock.promotion_hash})
        return
    click.echo(f"promoted {host}: {len(promo.patches)} patch(es) from {len(manifest.includes)} series -> {done.patch}")
    click.echo(f"  b2sum  {promo.digest.b2sum}")
    click.echo(f"  sha256 {promo.digest.sha256}")
    click.echo(f"  apply check: {check.status.value} ({check.detail})")
    click.echo(f"  lock: {lock.path}")
    if not promo.patches:
        click.echo(f"  note: {host} includes no patch series; the cumulative patch is empty")


@main.command()
@click.argument("host")
@json_option
def fetch(host: str, as_json: bool) -> None:
    """Fetch HOST's baseline sources into the checksum-addressed source cache.

    Each source is downloaded once (mirrors tried in order), verified against the
    manifest's sha256/b2sum and stored under its hash; a mismatch is refused (exit 3).
    """
    from .sources import SourceCache

    c = get_ctx()
    manifest, _ = c.load(host)
    cache = SourceCache()
    got = [cache.fetch(s, c.root, progress) for s in manifest.baseline.sources]
    if as_json:
        emit_json([{"url": g.source.url, "path": str(g.path), **g.digest.as_dict()} for g in got])
        return
    for g in got:
        click.echo(f"{g.source.filename}: verified ({g.digest.size} bytes) at {g.path}")


@main.command()
@click.argument("host")
@json_option
def verify(host: str, as_json: bool) -> None:
    """Check that HOST's manifest.lock is intact and fresh and the PKGBUILD copies match it.

    Everything the lock's promotion part records is recomputed from the manifest, the
    series and the patches (inputs, baseline, SOURCE_DATE_EPOCH, output hashes); any
    difference is refused with exit 3, naming the field.  So is a PKGBUILD directory's
    copy of the cumulative patch that differs from the lock (both hashes named).
    build, reproduce and publish run the same check first.
    """
    from . import lock as lock_mod

    c = get_ctx()
    manifest, _ = c.load(host)
    lock = lock_mod.require_verified(c.root, manifest)
    _drifted, unchecked = lock_mod.drift(manifest, lock)
    if as_json:
        emit_json({"host": host, "lock": str(lock.path), "state": "fresh", "drift": [],
                   "unchecked": unchecked, "sha256": lock.output.digest.sha256})
        return
    click.echo(f"verified {host}: manifest.lock fresh, {len(manifest.packages) - len(unchecked)} PKGBUILD patch "
               f"copy(ies) match sha256 {lock.output.digest.sha256}")
    for name in unchecked:
        click.echo(f"  note: package {name} carries no copy of the cumulative patch (no `patch:` in the manifest)")


# --------------------------------------------------------------------------- status


@main.command()
@click.argument("host")
@json_option
def status(host: str, as_json: bool) -> None:
    """Show HOST's manifest summary, lock state, drift, the latest build and reproduce verdict,
    and every value the manifest still misses."""
    from .status import host_status

    c = get_ctx()
    manifest, nodes = c.load(host)
    st = host_status(c.root, manifest, nodes)
    data = st.to_dict()
    if as_json:
        emit_json(data)
        return
    b, n = manifest.baseline, manifest.build.nodes
    click.echo(f"{host} ({manifest.arch}) {manifest.description}".rstrip())
    click.echo(f"  baseline   {b.name} {b.version} (ref {b.ref}), SOURCE_DATE_EPOCH={b.source_date_epoch}")
    click.echo(f"  series     {', '.join(data['includes']) or '(none)'}")
    click.echo(f"  packages   {', '.join(data['packages'])}")
    click.echo(f"  nodes      control={n.control} experiment={n.experiment} fallback={n.fallback or '-'} "
               f"(image flavor {manifest.build.flavor})")
    click.echo(f"  publish    {data['publish'] or '(not configured)'}")
    fresh = st.freshness
    click.echo(f"  lock       {fresh.state}" + (f": {'; '.join(fresh.reasons)}" if fresh.reasons else f" ({st.lock_file})"))
    if st.lock is not None:
        click.echo(f"  patch      b2sum {st.lock.output.digest.b2sum[:32]}… "
                   f"({st.lock.promoted.apply_check.status} apply check)")
        for d in st.drifted:
            click.echo(f"  DRIFT      {d.package}: {d.file} sha256 {d.actual or 'missing'} != lock {d.expected}")
        if not st.drifted:
            click.echo("  drift      none" + (f" (unchecked: {', '.join(st.unchecked)})" if st.unchecked else ""))
    last = st.lock.build if st.lock else None
    click.echo(f"  last build {f'{last.built_at} on {last.node}' if last else 'never'}")
    for f in last.packages if last else ():
        click.echo(f"    {f.file}  b2sum {f.digest.b2sum}")
    rep = st.last_reproduce
    if rep is None:
        click.echo("  reproduce  never")
    elif rep["verdict"] == "unreadable":
        click.echo(f"  reproduce  unreadable report: {rep['error']}")
    else:
        click.echo(f"  reproduce  {rep['verdict']} (run {rep['run_id']}, {rep['finished_at']}): "
                   + ", ".join(f"{p['file']} {p['verdict']}" for p in rep["packages"]))
        click.echo(f"  report     {rep['report']}")
    ins = st.lock.install if st.lock else None
    if ins is not None:
        click.echo(f"  installed  {ins.release} on {ins.board} at {ins.installed_at}: "
                   + ", ".join(p.file for p in ins.packages) + f" (backup {ins.backup})")
    for m in st.missing:
        click.echo(f"  missing    {m}")


# --------------------------------------------------------------------------- build


_flavor_choice = click.Choice([f.value for f in fleet_mod.Flavor])


def _host_for_build(c: Ctx, host: str, flavor: str | None, node: str | None, verb: str):
    from .status import preflight

    manifest, nodes = c.load(host)
    manifest = fleet_mod.with_overrides(manifest, nodes, flavor=flavor, node=node)
    preflight(c.root, manifest, nodes, verb)
    return manifest, nodes


@main.command()
@click.argument("host")
@click.option("--node", metavar="NAME", help="Build on this node (from fleet/nodes.yaml) instead of the manifest's "
                                             "control node; no fallback.")
@click.option("--flavor", type=_flavor_choice, help="Build in this image flavor instead of the manifest's.")
@json_option
def build(host: str, node: str | None, flavor: str | None, as_json: bool) -> None:
    """Build HOST's packages with makepkg in a fresh, clean container on a build node.

    \b
    Steps: verify manifest.lock and PKGBUILD drift (exit 3 on drift or a stale lock);
    verify every source by checksum (exit 3 on mismatch, before any container exists);
    connect to the manifest's control node, or its fallback when it does not answer;
    make sure the build image is there (built or shipped once, keyed by recipe hash);
    run makepkg with network none, a non-root user, no-new-privileges, no
    capabilities and every CPU of the node; copy the packages out; record b2sum,
    sha256 and size in the `build:` block of manifest.lock.  A failed build exits 4
    with the log's path.
    """
    from .build import build_host

    c = get_ctx()
    manifest, nodes = _host_for_build(c, host, flavor, None, "build")
    done = build_host(c.root, manifest, nodes, node, progress)
    if as_json:
        emit_json({"host": host, "out": str(done.directory), **done.block.to_dict()})
        return
    for r in done.results:
        for a in r.artifacts:
            click.echo(f"{a.name}  ({a.digest.size} bytes, {r.duration:.0f}s on {r.node}, {r.spec.cpus} CPU(s))")
            click.echo(f"  b2sum  {a.digest.b2sum}")
            click.echo(f"  sha256 {a.digest.sha256}")
    click.echo(f"packages in {done.directory}; recorded in {done.lock.path}")


# --------------------------------------------------------------------------- image


@main.group()
def image() -> None:
    """Build images: build them on the main node, ship them to build nodes."""


_flavor_opt = click.option("--flavor", type=_flavor_choice, default="debian", show_default=True, help="Image flavor.")
_arch_opt = click.option("--arch", type=click.Choice([a.value for a in fleet_mod.Arch]), default="aarch64",
                         show_default=True, help="Target architecture.")


@image.command("build")
@_flavor_opt
@_arch_opt
@click.option("--node", default="local", show_default=True, metavar="NAME", help="Node to import the image into.")
@json_option
def image_build(flavor: str, arch: str, node: str, as_json: bool) -> None:
    """Build the image for FLAVOR/ARCH (tagged by its recipe hash) and import it into NODE.

    The root filesystem is made once per recipe hash and cached; the package list
    (toolchain) is recorded as an image label and in a sidecar file.
    """
    from . import images

    c = get_ctx()
    nodes = fleet_mod.load_nodes(c.root)
    info = images.build_on(c.root, nodes, node, fleet_mod.Flavor(flavor), fleet_mod.Arch(arch), progress)
    if as_json:
        emit_json({**info.record().to_dict(), "node": node, "packages": list(info.packages)})
        return
    click.echo(f"{info.tag} on {node}: {info.id[:19]}, {len(info.packages)} packages (recipe {info.recipe_hash[:16]})")


@image.command("ship")
@click.argument("node")
@click.option("--from", "source", default="local", show_default=True, metavar="NAME", help="Node that has the image.")
@_flavor_opt
@_arch_opt
def image_ship(node: str, source: str, flavor: str, arch: str) -> None:
    """Send the FLAVOR/ARCH image to NODE with save/load through the Docker API (no registry)."""
    from . import images

    c = get_ctx()
    nodes = fleet_mod.load_nodes(c.root)
    info = images.ship_between(c.root, nodes, source, node, fleet_mod.Flavor(flavor), fleet_mod.Arch(arch), progress)
    click.echo(f"{info.tag} is on {node} ({info.id[:19]})")


# --------------------------------------------------------------------------- reproduce, report, reference


def _vary_help() -> str:
    from . import variations as v

    lines = [f"{x.value}: {v.DESCRIPTIONS[x]}" for x in v.ORDER]
    return ("Variations between build 1 and build 2: '+x,-y' edits the default set, 'x,y' names the set, "
            "'all' or 'none'; 'cpus=N' gives the experiment N CPUs. Default: " + ",".join(v.ordered(v.DEFAULT))
            + ". Known: " + "; ".join(lines) + ".")


@main.command()
@click.argument("host")
@click.option("--vary", metavar="SPEC", help=_vary_help())
@click.option("--find-culprit", is_flag=True,
              help="When the builds differ, rebuild the experiment once per variation and name the variation(s) "
                   "that change the bytes (costs one build per variation, so it is not automatic).")
@click.option("--rebuild", is_flag=True, help="Build even when an earlier completed run had the same lock, image and variations.")
@click.option("--whole-diffoscope", is_flag=True,
              help="Run diffoscope over the whole packages; by default it runs only on the members that differ "
                   "(every member is hashed first, which takes seconds even for a kernel).")
@click.option("--node", metavar="NAME", help="Run both builds on this node instead of the manifest's nodes.")
@click.option("--flavor", type=_flavor_choice, help="Build in this image flavor instead of the manifest's.")
@json_option
def reproduce(host: str, vary: str | None, find_culprit: bool, rebuild: bool, whole_diffoscope: bool,
              node: str | None, flavor: str | None, as_json: bool) -> int:
    """Build HOST's packages twice, on two nodes, with variations; compare; write the acceptance report.

    \b
    Build 1 (control) runs on the manifest's control node with every CPU it has;
    build 2 (experiment) on its experiment node (the fallback when that one is down;
    the same engine when only one answers) with another CPU count, both from the same
    image and SOURCE_DATE_EPOCH.  Packages are compared by hash; when they differ,
    every member is hashed and the differing members are named, and diffoscope
    explains those.  Each package is checked against its recorded reference in
    references/<host>/.  The build path stays /build in both builds because
    pacman's .BUILDINFO records it.

    Exit 0 when every package is reproducible and matches its reference (where one
    exists), 1 when any is not, 4 when a build failed, 3 on a stale lock or drift,
    2 when the host cannot be built here (everything missing is named).
    """
    from . import report as report_mod
    from . import reproduce as reproduce_mod
    from . import variations

    spec = variations.parse_spec(vary)
    c = get_ctx()
    manifest, nodes = _host_for_build(c, host, flavor, node, "reproduce")
    opts = reproduce_mod.Options(variations=spec.variations, experiment_cpus=spec.cpus, find_culprit=find_culprit,
                                 rebuild=rebuild, whole_diffoscope=whole_diffoscope)
    report, run_dir = reproduce_mod.reproduce(c.root, manifest, nodes, opts, progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report_mod.render_text(report, report_mod.paths_of(run_dir)))
    return report.exit_code


@main.command()
@click.argument("host")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md", "html"]), default="text", show_default=True,
              help="Output format of the latest acceptance report.")
def report(host: str, fmt: str) -> int:
    """Render the acceptance report of HOST's latest reproduce run again.

    Exits like the run did: 0 accepted, 1 not reproducible or parity failed, 4 build
    failed; 3 when the report is damaged.
    """
    from . import acceptance
    from . import report as report_mod
    from .reproduce import load_latest

    c = get_ctx()
    manifest, _ = c.load(host)
    latest = load_latest(c.root, manifest)
    if latest is None:
        raise ConfigError(f"{host}: no reproduce run yet; run `kabuild reproduce {host}`")
    data, run_dir = latest
    render: dict[str, Callable[[acceptance.Report], str]] = {
        "md": report_mod.render_markdown, "html": report_mod.render_html, "json": acceptance.dumps,
        "text": lambda r: report_mod.render_text(r, report_mod.paths_of(run_dir))}
    click.echo(render[fmt](data), nl=False)
    return data.exit_code


@main.group()
def reference() -> None:
    """Recorded references in references/<host>/ that reproduce checks byte parity against."""


@reference.command("record")
@click.argument("host")
@click.option("--artifact-url", metavar="URL", help="Record that the artifacts can be fetched from URL/<file> instead of storing them.")
@click.option("--store/--no-store", "store", default=None,
              help="Store the artifacts beside reference.yaml (default: only when at most 5 MiB).")
def reference_record(host: str, artifact_url: str | None, store: bool | None) -> None:
    """Record HOST's latest reproduce run as its reference (refused unless it was reproducible)."""
    from . import references
    from .reproduce import load_latest

    c = get_ctx()
    manifest, _ = c.load(host)
    latest = load_latest(c.root, manifest)
    if latest is None:
        raise ConfigError(f"{host}: no reproduce run yet; run `kabuild reproduce {host}`")
    data, run_dir = latest
    for w in references.record(c.root, data, run_dir, store_artifacts=store, artifact_url=artifact_url):
        click.echo(f"recorded {w.relative_to(c.root)} from run {data.run_id}")


# --------------------------------------------------------------------------- publish


@main.command()
@click.argument("host")
@click.option("--gnupghome", type=click.Path(path_type=Path), envvar="KABUILD_GNUPGHOME",
              help="GnuPG home holding the signing key (default: $GNUPGHOME or ~/.gnupg; "
                   "build/<host>/gnupg for a throwaway key).")
@click.option("--passphrase-env", metavar="VAR", help="Read the key's passphrase from this environment variable.")
@click.option("--passphrase-file", type=click.Path(path_type=Path, dir_okay=False), help="Read the key's passphrase from this file.")
@json_option
def publish(host: str, gnupghome: Path | None, passphrase_env: str | None, passphrase_file: Path | None,
            as_json: bool) -> None:
    """Sign and publish HOST's packages, only if the latest report accepted them.

    \b
    The gate: the latest acceptance report must say reproducible AND parity for every
    package, name the current manifest.lock, and the files about to be signed must
    hash to exactly what the report names.  Anything else is refused (exit 3) with the
    reason per package.  There is no override.  Signing happens here, on the main node;
    the repository (repo-add database, detached signatures) is swapped in atomically.
    """
    from .publish import publish_host
    from .signing import passphrase_from

    c = get_ctx()
    manifest, _ = c.load(host)
    done = publish_host(c.root, manifest, gnupghome=gnupghome,
                        passphrase=passphrase_from(passphrase_env, passphrase_file), progress=progress)
    r = done.result
    if as_json:
        emit_json({"host": host, "location": str(r.location), "repository": r.repository,
                   "published": [str(p) for p in r.published], "pacman_conf": r.pacman_conf,
                   "key": done.fingerprint, "key_file": str(done.key_file), "run": done.run_id})
        return
    click.echo(r.describe().replace("<exported public key>", str(done.key_file)))


# --------------------------------------------------------------------------- later verbs


@main.command()
@click.argument("host")
@click.option("--version", "version", metavar="V", help="Install this published version (pkgver or pkgver-pkgrel) "
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
    from . import install as install_mod
    from . import installplan

    c = get_ctx()
    manifest, _ = c.load(host)
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
    if done.already:
        click.echo(f"{host} already runs {done.release} ({', '.join(p.file for p in done.packages)})")
    else:
        click.echo(f"installed {', '.join(p.file for p in done.packages)} on {host}: it runs {done.release} "
                   f"(replaced {done.replaced or 'nothing'} / {done.replaced_release}; backup in {done.backup})")


# --------------------------------------------------------------------------- entry point


def run_cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        rc = main.main(args=argv, prog_name="kabuild", standalone_mode=False)
        # A verb may return an exit code that is a result, not an error (1: not reproducible).
        return int(rc) if isinstance(rc, int) else ExitCode.OK
    except KabuildError as e:
        if debug:
            traceback.print_exc()
        hint = f" ({e.hint})" if e.hint else ""
        click.echo(f"kabuild: error: {_one_line(str(e))}{_one_line(hint)}", err=True)
        return int(e.exit_code)
    except OSError as e:
        # Disk full, permissions, a vanished file: expected in the field, reported in one line.
        if debug:
            traceback.print_exc()
        click.echo(f"kabuild: error: {_one_line(str(e))}", err=True)
        return ExitCode.ENVIRONMENT
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"kabuild: error: {_one_line(e.format_message())} (see `kabuild --help`)", err=True)
        return ExitCode.CONFIG
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("kabuild: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception as e:  # a bug: never let it masquerade as exit 1 ("not reproducible")
        if debug:
            traceback.print_exc()
        click.echo(f"kabuild: internal error: {type(e).__name__}: {_one_line(str(e))} "
                   "(run with --debug for the traceback)", err=True)
        return ExitCode.INTERNAL


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def entry() -> None:
    sys.exit(run_cli())
