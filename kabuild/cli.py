"""The kabuild command line.  The only place where errors become exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__
from . import fleet as fleet_mod
from . import lock as lock_mod
from .errors import ConfigError, ExitCode, KabuildError, NotImplementedVerb
from .files import atomic_write
from .patches import ApplyCheck, ApplyStatus, check_applies, cumulative_name, promote as promote_series
from .sources import SourceCache

log = logging.getLogger("kabuild")


# --------------------------------------------------------------------------- context


@dataclass(frozen=True)
class Ctx:
    root: Path
    debug: bool

    def load(self, host: str):
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


def emit_json(data) -> None:
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
      verify     manifest.lock fresh, PKGBUILD copies without drift
      build      makepkg in a clean container on a build node
      reproduce  two builds on two nodes with variations, compared (byte parity)
      report     the acceptance report of the latest reproduce run
      publish    sign and publish only reproducible packages

    Exit codes: 0 ok, 1 not reproducible, 2 usage/configuration error,
    3 refused (drift, stale lock, checksum, publish gate), 4 build failed,
    5 tool or engine error, 70 internal error (a bug), 130 interrupted.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    if ctx.invoked_subcommand is None:
        return
    ctx.meta["kabuild.root"] = root
    ctx.meta["kabuild.debug"] = debug


def get_ctx() -> Ctx:
    c = click.get_current_context()
    return Ctx(find_root(c.meta.get("kabuild.root")), bool(c.meta.get("kabuild.debug")))


# --------------------------------------------------------------------------- promote


@main.command()
@click.argument("host")
@json_option
def promote(host: str, as_json: bool) -> None:
    """Concatenate HOST's patch series into one cumulative patch and write manifest.lock.

    The included series are taken in the manifest's apply_order; the result lands in
    build/<host>/<baseline_ref>/ together with manifest.lock, which records every input
    file with its sha256 and b2sum.  When the baseline tarball is at hand (in the
    source cache, checksum verified) the patch is dry-run applied to it; otherwise the
    check is skipped and the lock says why.
    """
    c = get_ctx()
    manifest, _nodes = c.load(host)
    promo = promote_series(c.root, manifest)
    bdir = lock_mod.build_dir(c.root, manifest)
    out = bdir / promo.filename
    check = _apply_check(c.root, manifest, promo.data, bdir)
    atomic_write(out, promo.data)
    path = lock_mod.lock_path(c.root, manifest)
    previous = None
    try:
        previous = lock_mod.read_lock(path)
    except KabuildError:
        previous = None  # an unreadable old lock is simply replaced
    lock = lock_mod.write_lock(path, lock_mod.promotion_record(manifest, promo, check), previous)
    result = {
        "host": host,
        "patch": str(out),
        "lock": str(path),
        "patches": list(promo.patches),
        "b2sum": promo.digest.b2sum,
        "sha256": promo.digest.sha256,
        "size": promo.digest.size,
        "apply_check": {"status": check.status.value, "detail": check.detail},
        "lock_hash": lock.promotion_hash,
    }
    if as_json:
        emit_json(result)
        return
    click.echo(f"promoted {host}: {len(promo.patches)} patch(es) from {len(manifest.includes)} series -> {out}")
    click.echo(f"  b2sum  {promo.digest.b2sum}")
    click.echo(f"  sha256 {promo.digest.sha256}")
    click.echo(f"  apply check: {check.status.value} ({check.detail})")
    click.echo(f"  lock: {path}")
    if not promo.patches:
        click.echo(f"  note: {host} includes no patch series; the cumulative patch is empty")


def _apply_check(root: Path, manifest, data: bytes, bdir: Path) -> ApplyCheck:
    baseline = manifest.baseline.sources[0]
    if not baseline.verifiable:
        return ApplyCheck(ApplyStatus.SKIPPED, f"baseline source {baseline.filename} has no checksum in the manifest")
    found = SourceCache().lookup(baseline, root)
    if found is None:
        return ApplyCheck(
            ApplyStatus.SKIPPED,
            f"baseline source {baseline.filename} is not in the source cache (run `kabuild fetch {manifest.host}`)",
        )
    bdir.mkdir(parents=True, exist_ok=True)
    tmp = bdir / ".apply-check.patch"
    try:
        tmp.write_bytes(data)
        return check_applies(tmp, found.path, cumulative_name(manifest.host, manifest.baseline.ref))
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- fetch


@main.command()
@click.argument("host")
@json_option
def fetch(host: str, as_json: bool) -> None:
    """Fetch HOST's baseline sources into the checksum-addressed source cache.

    Each source is downloaded once (mirrors tried in order), verified against the
    manifest's sha256/b2sum and stored under its hash; a mismatch is refused (exit 3).
    """
    c = get_ctx()
    manifest, _ = c.load(host)
    cache = SourceCache()
    got = [cache.fetch(s, c.root, progress) for s in manifest.baseline.sources]
    if as_json:
        emit_json([{"url": g.source.url, "path": str(g.path), **g.digest.as_dict()} for g in got])
        return
    for g in got:
        click.echo(f"{g.source.filename}: verified ({g.digest.size} bytes) at {g.path}")


# --------------------------------------------------------------------------- verify


@main.command()
@click.argument("host")
@json_option
def verify(host: str, as_json: bool) -> None:
    """Check that HOST's manifest.lock is fresh and the PKGBUILD copies match it.

    Refuses with exit 3 when the lock is missing or stale, or when a PKGBUILD
    directory's copy of the cumulative patch differs from manifest.lock (each file is
    named with both hashes).  build, reproduce and publish run the same check first.
    """
    c = get_ctx()
    manifest, _ = c.load(host)
    lock = lock_mod.require_verified(c.root, manifest)
    _drifted, unchecked = lock_mod.drift(manifest, lock)
    if as_json:
        emit_json({"host": host, "lock": str(lock.path), "state": "fresh", "drift": [],
                   "unchecked": unchecked, "sha256": lock.output["sha256"]})
        return
    click.echo(f"verified {host}: manifest.lock fresh, {len(manifest.packages) - len(unchecked)} PKGBUILD patch copy(ies) match "
               f"sha256 {lock.output['sha256']}")
    for name in unchecked:
        click.echo(f"  note: package {name} carries no copy of the cumulative patch (no `patch:` in the manifest)")


# --------------------------------------------------------------------------- status


@main.command()
@click.argument("host")
@json_option
def status(host: str, as_json: bool) -> None:
    """Show HOST's manifest summary, lock state and the latest build/reproduce verdicts."""
    c = get_ctx()
    manifest, nodes = c.load(host)
    path = lock_mod.lock_path(c.root, manifest)
    lock = lock_mod.read_lock(path)
    fresh = lock_mod.freshness(c.root, manifest, lock)
    drifted, unchecked = lock_mod.drift(manifest, lock) if lock else ([], [])
    missing = _missing_values(manifest)
    b = manifest.baseline
    data = {
        "host": host,
        "arch": manifest.arch.value,
        "description": manifest.description,
        "baseline": {"name": b.name, "version": b.version, "ref": b.ref, "source_date_epoch": b.source_date_epoch},
        "includes": [f"{i.scope}/{i.series}" for i in manifest.ordered_includes()],
        "packages": [p.name for p in manifest.packages],
        "nodes": {k: (getattr(manifest.build.nodes, k), nodes.nodes[v].url if (v := getattr(manifest.build.nodes, k)) else None)
                  for k in ("control", "experiment", "fallback")},
        "flavor": manifest.build.flavor.value,
        "publish": manifest.publish.repository if manifest.publish else None,
        "lock": {
            "path": str(path),
            "state": fresh.state.value,
            "reasons": list(fresh.reasons),
            "sha256": lock.output["sha256"] if lock else None,
            "b2sum": lock.output["b2sum"] if lock else None,
            "drift": [{"package": d.package, "file": str(d.file), "expected": d.expected, "actual": d.actual} for d in drifted],
        },
        "last_build": lock.build if lock else None,
        "last_reproduce": _last_reproduce(c.root, manifest),
        "missing": missing,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(f"{host} ({manifest.arch}) {manifest.description}".rstrip())
    click.echo(f"  baseline   {b.name} {b.version} (ref {b.ref}), SOURCE_DATE_EPOCH={b.source_date_epoch}")
    click.echo(f"  series     {', '.join(data['includes']) or '(none)'}")
    click.echo(f"  packages   {', '.join(data['packages'])}")
    n = manifest.build.nodes
    click.echo(f"  nodes      control={n.control} experiment={n.experiment} fallback={n.fallback or '-'} "
               f"(image flavor {manifest.build.flavor})")
    click.echo(f"  publish    {data['publish'] or '(not configured)'}")
    state = fresh.state.value
    click.echo(f"  lock       {state}" + (f": {'; '.join(fresh.reasons)}" if fresh.reasons else f" ({path})"))
    if lock:
        click.echo(f"  patch      b2sum {lock.output['b2sum'][:32]}… ({lock.data['apply_check']['status']} apply check)")
        if drifted:
            for d in drifted:
                click.echo(f"  DRIFT      {d.package}: {d.file} sha256 {d.actual or 'missing'} != lock {d.expected}")
        else:
            click.echo("  drift      none" + (f" (unchecked: {', '.join(unchecked)})" if unchecked else ""))
    click.echo(f"  last build {_build_summary(lock.build) if lock and lock.build else 'never'}")
    for name, rec in sorted(((lock.build or {}).get("packages") or {}).items()) if lock else ():
        click.echo(f"    {name}  b2sum {rec['b2sum']}")
    rep = data["last_reproduce"]
    if rep is None:
        click.echo("  reproduce  never")
    else:
        click.echo(f"  reproduce  {rep['verdict']} (run {rep['run_id']}, {rep['finished_at']}): "
                   + ", ".join(f"{p['file']} {p['verdict']}" for p in rep["packages"]))
        click.echo(f"  report     {rep['report']}")
    for m in missing:
        click.echo(f"  missing    {m}")


def _last_reproduce(root: Path, manifest) -> dict | None:
    from . import report as report_mod
    from . import reproduce as reproduce_mod

    path = reproduce_mod.latest_report(root, manifest)
    if path is None:
        return None
    try:
        data = report_mod.load(path)
    except KabuildError as e:
        return {"verdict": f"unreadable ({e})", "run_id": "?", "finished_at": "?", "packages": [],
                "report": str(path)}
    return {"verdict": data.get("verdict"), "run_id": data.get("run_id"), "finished_at": data.get("finished_at"),
            "exit_code": data.get("exit_code"), "report": str(path.resolve().parent / "report.html"),
            "packages": [{"file": p.get("file"), "verdict": p.get("verdict")} for p in data.get("packages", [])]}


def _build_summary(build: dict) -> str:
    return f"{build.get('built_at', '?')} on {build.get('node', '?')}"


def _missing_values(manifest) -> list[str]:
    """Values a real manifest leaves out because they cannot be known from here."""
    out = []
    for s in manifest.baseline.sources:
        if not s.verifiable:
            out.append(f"baseline source {s.url} has no checksum")
    if manifest.publish is None:
        out.append("publish: section not configured")
    else:
        if manifest.publish.key is None:
            out.append("publish.key: signing key fingerprint not set")
        if manifest.publish.destination is None:
            out.append("publish.destination: not set")
    if manifest.build.nodes.fallback is None:
        out.append("build.nodes.fallback: no fallback build node")
    for p in manifest.packages:
        if not (p.pkgbuild / "PKGBUILD").is_file():
            out.append(f"package {p.name}: no PKGBUILD at {p.pkgbuild_display}")
    return out


# --------------------------------------------------------------------------- build


def _connect_role(c: Ctx, manifest, nodes, node: str | None):
    from .nodes import select

    wanted = node or manifest.build.nodes.control
    fallback = None if node else manifest.build.nodes.fallback
    sel = select(nodes, wanted, fallback)
    if sel.fell_back:
        progress(f"node {wanted} is unreachable ({sel.reason}); using fallback node {sel.engine.name}")
    return sel


@main.command()
@click.argument("host")
@click.option("--node", metavar="NAME", help="Build on this node (from fleet/nodes.yaml) instead of the manifest's control node; no fallback.")
@json_option
def build(host: str, node: str | None, as_json: bool) -> None:
    """Build HOST's packages with makepkg in a fresh, clean container on a build node.

    \b
    Steps: verify manifest.lock and PKGBUILD drift (exit 3 on drift or a stale lock);
    verify every source by checksum (exit 3 on mismatch, before any container exists);
    connect to the manifest's control node, or its fallback when it does not answer;
    make sure the build image is there (built or shipped once, keyed by recipe hash);
    run makepkg with network none, a non-root user, no-new-privileges and no
    capabilities; copy the packages out; record b2sum, sha256 and size in the
    `build:` block of manifest.lock.  A failed build exits 4 with the log's path.
    """
    import datetime

    from . import build as build_mod
    from . import images

    c = get_ctx()
    manifest, nodes = c.load(host)
    lock = lock_mod.require_verified(c.root, manifest)
    cache = SourceCache()
    contexts = [build_mod.stage(c.root, manifest, p, lock, cache, progress) for p in manifest.packages]
    sel = _connect_role(c, manifest, nodes, node)
    engine = sel.engine
    try:
        recipe = images.recipe(c.root, manifest.build.flavor, manifest.arch)
        image = images.ensure(c.root, engine, recipe, progress)
        images.check_emulation(engine, image, manifest.arch)
        bdir = lock_mod.build_dir(c.root, manifest)
        # Every build gets its own directory (logs of failed builds stay where the error
        # says); last-build points at the latest successful one.
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = bdir / "builds" / f"{stamp}-{os.getpid()}"
        results = []
        for ctx in contexts:
            pkg_image = images.with_dependencies(engine, image, manifest.build.flavor, ctx.dependencies, progress)
            spec = build_mod.base_spec(manifest, ctx.package, pkg_image)
            progress(f"building {ctx.package.name} for {manifest.arch} on node {engine.name} ({pkg_image.tag})")
            results.append(build_mod.run_build(engine, pkg_image, spec, ctx, out, "build", progress))
        final = bdir / "last-build"
        tmp = bdir / f".last-build.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(out.relative_to(bdir), tmp)
        os.replace(tmp, final)
    finally:
        engine.close()
    built_at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    record = build_mod.build_record(results, sel, image, built_at)
    lock_mod.update_lock(lock, "build", record)
    if as_json:
        emit_json({"host": host, "out": str(final), **record})
        return
    for r in results:
        for a in r.artifacts:
            click.echo(f"{a.name}  ({a.digest.size} bytes, {r.duration:.0f}s on {r.node})")
            click.echo(f"  b2sum  {a.digest.b2sum}")
            click.echo(f"  sha256 {a.digest.sha256}")
    click.echo(f"packages in {final}; recorded in {lock.path}")


# --------------------------------------------------------------------------- image


@main.group()
def image() -> None:
    """Build images: build them on the main node, ship them to build nodes."""


_flavor_opt = click.option("--flavor", type=click.Choice([f.value for f in fleet_mod.Flavor]), default="debian",
                           show_default=True, help="Image flavor.")
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
    from .nodes import connect

    c = get_ctx()
    nodes = fleet_mod.load_nodes(c.root)
    r = images.recipe(c.root, fleet_mod.Flavor(flavor), fleet_mod.Arch(arch))
    engine = connect(nodes.get(node))
    try:
        info = images.ensure(c.root, engine, r, progress)
    finally:
        engine.close()
    if as_json:
        emit_json({**info.as_dict(), "node": node, "packages": list(info.packages)})
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
    from .nodes import connect

    c = get_ctx()
    nodes = fleet_mod.load_nodes(c.root)
    r = images.recipe(c.root, fleet_mod.Flavor(flavor), fleet_mod.Arch(arch))
    src = connect(nodes.get(source))
    dst = connect(nodes.get(node))
    try:
        info = images.ship(src, dst, r, progress)
    finally:
        src.close()
        dst.close()
    click.echo(f"{info.tag} is on {node} ({info.id[:19]})")


# --------------------------------------------------------------------------- reproduce


def _vary_help() -> str:
    from . import variations as v

    lines = [f"{x.value}: {v.DESCRIPTIONS[x]}" for x in v.ORDER]
    return ("Variations between build 1 and build 2: '+x,-y' edits the default set, 'x,y' names the set, "
            "'all' or 'none'. Default: " + ",".join(v.ordered(v.DEFAULT)) + ". Known: " + "; ".join(lines) + ".")


@main.command()
@click.argument("host")
@click.option("--vary", metavar="SPEC", help=_vary_help())
@click.option("--find-culprit", is_flag=True,
              help="When the builds differ, rebuild the experiment once per variation and name the variation(s) "
                   "that change the bytes (costs one build per variation, so it is not automatic).")
@click.option("--rebuild", is_flag=True, help="Build even when an earlier completed run had the same lock, image and variations.")
@json_option
def reproduce(host: str, vary: str | None, find_culprit: bool, rebuild: bool, as_json: bool) -> int:
    """Build HOST's packages twice, on two nodes, with variations; compare; write the acceptance report.

    \b
    Build 1 (control) runs on the manifest's control node, build 2 (experiment) on its
    experiment node (the fallback when that one is down; the same engine when only one
    answers), both from the same image and SOURCE_DATE_EPOCH.  Packages are compared by
    hash; diffoscope explains any difference; each is checked against its recorded
    reference in references/<host>/.  The build path stays /build in both builds
    because pacman's .BUILDINFO records it.

    Exit 0 when every package is reproducible and matches its reference (where one
    exists), 1 when any is not, 4 when a build failed, 3 on a stale lock or drift.
    """
    from . import report as report_mod
    from . import reproduce as reproduce_mod
    from . import variations

    c = get_ctx()
    manifest, nodes = c.load(host)
    opts = reproduce_mod.Options(variations=variations.parse(vary), find_culprit=find_culprit, rebuild=rebuild)
    data, run_dir = reproduce_mod.reproduce(c.root, manifest, nodes, opts, progress)
    if as_json:
        emit_json(data)
    else:
        paths = {k: run_dir / f"report.{k}" for k in ("json", "md", "html")}
        click.echo(report_mod.render_text(data, paths))
    return data["exit_code"]


@main.command()
@click.argument("host")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md", "html"]), default="text", show_default=True,
              help="Output format of the latest acceptance report.")
def report(host: str, fmt: str) -> int:
    """Render the acceptance report of HOST's latest reproduce run again.

    Exits like the run did: 0 accepted, 1 not reproducible or parity failed, 4 build failed.
    """
    from . import report as report_mod
    from . import reproduce as reproduce_mod

    c = get_ctx()
    manifest, _ = c.load(host)
    path = reproduce_mod.latest_report(c.root, manifest)
    if path is None:
        raise ConfigError(f"{host}: no reproduce run yet; run `kabuild reproduce {host}`")
    data = report_mod.load(path)
    render = {"text": report_mod.render_text, "md": report_mod.render_markdown, "html": report_mod.render_html,
              "json": lambda d: json.dumps(d, indent=2, sort_keys=True)}[fmt]
    if fmt == "text":
        run_dir = path.resolve().parent
        click.echo(report_mod.render_text(data, {k: run_dir / f"report.{k}" for k in ("json", "md", "html")}))
    else:
        click.echo(render(data))
    return int(data.get("exit_code", ExitCode.NOT_REPRODUCIBLE))


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
    from . import report as report_mod
    from . import reproduce as reproduce_mod

    c = get_ctx()
    manifest, _ = c.load(host)
    path = reproduce_mod.latest_report(c.root, manifest)
    if path is None:
        raise ConfigError(f"{host}: no reproduce run yet; run `kabuild reproduce {host}`")
    data = report_mod.load(path)
    written = references.record(c.root, data, path.parent, store_artifacts=store, artifact_url=artifact_url)
    for w in written:
        click.echo(f"recorded {w.relative_to(c.root)} from run {data['run_id']}")


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
    from . import publish as publish_mod
    from . import signing

    c = get_ctx()
    manifest, _ = c.load(host)
    if manifest.publish is None:
        raise ConfigError(f"{host}: the manifest has no publish: section")
    if manifest.publish.key is None:
        raise ConfigError(f"{host}: publish.key (signing key fingerprint) is not set in {manifest.display}")
    if manifest.publish.destination is None:
        raise ConfigError(f"{host}: publish.destination is not set in {manifest.display}")
    lock = lock_mod.require_verified(c.root, manifest)
    run_dir = publish_mod.latest_run(c.root, host, manifest.baseline.ref)
    report_data = publish_mod.load_report(run_dir)
    candidates = publish_mod.gate(report_data, run_dir, lock.promotion_hash)
    if manifest.publish.key == "throwaway":
        home = gnupghome or (lock_mod.build_dir(c.root, manifest).parent / "gnupg")
        fingerprint = signing.ensure_throwaway(home, f"kabuild {host} throwaway key <kabuild-{host}@localhost>")
        progress(f"signing with the throwaway key {fingerprint} in {home}")
    else:
        home = gnupghome or Path(os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg"))
        fingerprint = manifest.publish.key
    signer = signing.Signer.open(home, fingerprint, signing.passphrase_from(passphrase_env, passphrase_file))
    result = publish_mod.publish(candidates, repository=manifest.publish.repository,
                                 destination=manifest.publish.destination, signer=signer,
                                 keep=manifest.publish.keep, root=c.root, progress=progress)
    # The public key next to the repository's build directory, so the pacman-key line is concrete.
    key_file = lock_mod.build_dir(c.root, manifest).parent / f"{manifest.publish.repository}.asc"
    atomic_write(key_file, signing.export_public(home, fingerprint))
    if as_json:
        emit_json({"host": host, "location": str(result.location), "repository": result.repository,
                   "published": [str(p) for p in result.published], "pacman_conf": result.pacman_conf,
                   "key": fingerprint, "key_file": str(key_file), "run": report_data.get("run_id")})
        return
    click.echo(result.describe().replace("<exported public key>", str(key_file)))


# --------------------------------------------------------------------------- later verbs


def _later(verb: str, issue: str):
    def cmd(**_kw):
        raise NotImplementedVerb(f"`kabuild {verb}` is not implemented in this version yet ({issue})")
    return cmd


for _name, _help, _issue in (
    ("install", "Install HOST's published kernel package on the board over ssh.", "install"),
):
    main.command(name=_name, help=_help + " (Not implemented yet.)")(click.argument("host")(_later(_name, _issue)))


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
        click.echo(f"kabuild: error: {e}", err=True)
        if e.hint:
            click.echo(f"kabuild: hint: {e.hint}", err=True)
        return int(e.exit_code)
    except OSError as e:
        # Disk full, permissions, a vanished file: expected in the field, reported in one line.
        if debug:
            traceback.print_exc()
        click.echo(f"kabuild: error: {e}", err=True)
        return ExitCode.ENVIRONMENT
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return ExitCode.CONFIG
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("kabuild: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception as e:  # a bug: never let it masquerade as exit 1 ("not reproducible")
        if debug:
            traceback.print_exc()
        click.echo(f"kabuild: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", err=True)
        return ExitCode.INTERNAL


def entry() -> None:
    sys.exit(run_cli())
