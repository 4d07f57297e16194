"""Verbs up to one build: promote, fetch, verify, status, build, image (build, ship, pin)."""

from __future__ import annotations

from pathlib import Path

import click

from kabuild.cli.app import (
    emit_json,
    flavor_choice,
    get_ctx,
    host_for_build,
    json_option,
    kernel_options,
    main,
    not_empty,
    progress,
)
from kabuild.config import manifest as fleet_mod
from kabuild.config.nodes import load_nodes

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
    from kabuild.inputs.promotion import promote_host

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
    from kabuild.inputs.sources import SourceCache

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
    series, the patches and every file of each PKGBUILD directory (inputs, recipes,
    baseline, SOURCE_DATE_EPOCH, output hashes); any difference is refused with exit 3,
    naming the field ("recipe changed since promote: <package>: PKGBUILD edited").  So is a PKGBUILD directory's
    copy of the cumulative patch that differs from the lock (both hashes named).
    build, reproduce and publish run the same check first.
    """
    from kabuild.inputs import lock as lock_mod
    from kabuild.report.status import recipe_changes_since_latest

    c = get_ctx()
    manifest, _ = c.load(host)
    lock = lock_mod.require_verified(c.root, manifest)
    _drifted, unchecked = lock_mod.drift(manifest, lock)
    since_run = recipe_changes_since_latest(c.root, manifest)
    if as_json:
        emit_json({"host": host, "lock": str(lock.path), "state": "fresh", "drift": [],
                   "unchecked": unchecked, "sha256": lock.output.digest.sha256,
                   "recipes": {r.package: r.sha256 for r in lock.promoted.recipes},
                   "recipe_changed_since_run": ({"run_id": since_run[0], "packages": since_run[1]}
                                                if since_run and since_run[1] else None)})
        return
    click.echo(f"verified {host}: manifest.lock fresh, {len(manifest.packages) - len(unchecked)} PKGBUILD patch "
               f"copy(ies) match sha256 {lock.output.digest.sha256}, recipes as promoted")
    for name in unchecked:
        click.echo(f"  note: package {name} carries no copy of the cumulative patch (no `patch:` in the manifest)")
    if since_run and since_run[1]:
        click.echo(f"  note: recipe changed since the last run ({since_run[0]}): {', '.join(since_run[1])}; "
                   f"its verdict is not theirs (kabuild reproduce {host})")


# --------------------------------------------------------------------------- status


@main.command()
@click.argument("host")
@json_option
def status(host: str, as_json: bool) -> None:
    """Show HOST's manifest summary, lock state, drift, the latest build and reproduce verdict,
    and every value the manifest still misses."""
    from kabuild.report.status import host_status

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
        if rep["recipe_changed"]:
            click.echo(f"  RECIPE     changed since the last run ({rep['run_id']}): {', '.join(rep['recipe_changed'])}; "
                       "that verdict is not theirs (reproduce again)")
        click.echo(f"  report     {rep['report']}")
    ins = st.lock.install if st.lock else None
    if ins is not None:
        click.echo(f"  installed  {ins.release} on {ins.board} at {ins.installed_at}: "
                   + ", ".join(p.file for p in ins.packages) + f" (backup {ins.backup})")
    absent = [f"{t.name} ({t.package})" for t, path in st.tools if path is None]
    click.echo(f"  tools      {len(st.tools) - len(absent)} of {len(st.tools)} found"
               + (f"; missing: {', '.join(absent)}" if absent else ""))
    for m in st.missing:
        click.echo(f"  missing    {m}")
    for u in st.untested:
        click.echo(f"  untested   {u}")


# --------------------------------------------------------------------------- build


@main.command()
@click.argument("host")
@click.option("--node", metavar="NAME", callback=not_empty, help="Build on this node (from fleet/nodes.yaml) instead of the manifest's "
                                             "control node; no fallback.")
@click.option("--flavor", type=flavor_choice, help="Build in this image flavor instead of the manifest's.")
@kernel_options
@json_option
def build(host: str, node: str | None, flavor: str | None, cross: bool, kernel_config: str | None,
          as_json: bool) -> None:
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
    from kabuild.build.host import build_host

    c = get_ctx()
    manifest, nodes = host_for_build(c, host, flavor, None, "build", cross=cross, kernel_config=kernel_config)
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


_flavor_opt = click.option("--flavor", type=flavor_choice, default="debian", show_default=True, help="Image flavor.")
_arch_opt = click.option("--arch", type=click.Choice([a.value for a in fleet_mod.Arch]), default="aarch64",
                         show_default=True, help="Target architecture.")


@image.command("build")
@_flavor_opt
@_arch_opt
@click.option("--node", default="local", show_default=True, metavar="NAME", callback=not_empty, help="Node to import the image into.")
@json_option
def image_build(flavor: str, arch: str, node: str, as_json: bool) -> None:
    """Build the image for FLAVOR/ARCH (tagged by its recipe hash) and import it into NODE.

    The root filesystem is made once per recipe hash and cached; the package list
    (toolchain) is recorded as an image label and in a sidecar file.
    """
    from kabuild.build import images

    c = get_ctx()
    nodes = load_nodes(c.root)
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
    """Send the FLAVOR/ARCH image to NODE with save/load through the Docker API (no registry).

    Once per image ID: when NODE already holds the same image (the same ID) nothing is sent.
    A progress line every 10 seconds; a transfer with no progress for 600 seconds fails (exit 5).
    """
    from kabuild.build import images

    c = get_ctx()
    nodes = load_nodes(c.root)
    info = images.ship_between(c.root, nodes, source, node, fleet_mod.Flavor(flavor), fleet_mod.Arch(arch), progress)
    click.echo(f"{info.tag} is on {node} ({info.id[:19]})")


@image.command("pin")
@click.argument("flavor", type=click.Choice([fleet_mod.Flavor.ARCHLINUXARM.value]), metavar="archlinuxarm")
@click.option("--tarball", required=True, metavar="FILE|URL", help="The Arch Linux ARM root tarball (a file, or "
              "an http, https or file URL to download).")
@click.option("--signature", required=True, metavar="FILE|URL", help="Its detached OpenPGP signature (.sig).")
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The public key file that must have made the signature (no keyserver is asked).")
@click.option("--fingerprint", metavar="FPR", help="The signing key's fingerprint as confirmed at archlinuxarm.org; "
              "required for the first pin, later pins must match the pinned one unless it is given.")
@click.option("--mirror", metavar="URL", help="Also pin the package mirror stage 2 installs from: a pacman Server "
              "URL with $repo (a dated snapshot or your own mirror, http(s):// or file:///); '' unpins it.")
@json_option
def image_pin(flavor: str, tarball: str, signature: str, key: Path, fingerprint: str | None, mirror: str | None,
              as_json: bool) -> None:
    """Verify the Arch Linux ARM root tarball and pin it in containers/archlinuxarm/recipe.yaml.

    The detached signature is verified offline against --key in a temporary GnuPG home; the
    signature must come from the pinned key (or --fingerprint).  Then the tarball's sha256
    and the key's fingerprint are written into the recipe atomically.  A bad signature, another
    key or another fingerprint is refused (exit 3) and the recipe is left as it was.
    """
    from kabuild.build import rootfs

    c = get_ctx()
    pinned = rootfs.pin(c.root, tarball=tarball, signature=signature, key=key, fingerprint=fingerprint,
                        mirror=mirror, progress=progress)
    if as_json:
        emit_json({"recipe": str(pinned.recipe), "rootfs_sha256": pinned.rootfs_sha256,
                   "signing_key_fingerprint": pinned.fingerprint, "signer": pinned.signer,
                   "changed": pinned.changed, "mirror": pinned.mirror})
        return
    click.echo(f"signature good: {pinned.signer} ({pinned.fingerprint})")
    if pinned.previous_fingerprint:
        click.echo(f"  the signing key changes from {pinned.previous_fingerprint}")
    state = "pinned" if pinned.changed else "already pinned"
    click.echo(f"{state}: rootfs_sha256 {pinned.rootfs_sha256} in {rootfs.RECIPE}")
    mirror_text = pinned.mirror or "the tarball's own mirror list (it moves; pin one with --mirror)"
    click.echo(f"  package mirror: {mirror_text}")
    click.echo(f"  next: containers/archlinuxarm/mkimage.sh <tarball> <signature> {key} <output.tar>")
