"""Verbs on two builds and their results: reproduce, report, reference record, publish."""

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
from kabuild.report.render import FORMATS

# --------------------------------------------------------------------------- reproduce, report, reference


def _vary_help() -> str:
    from kabuild.build import variations as v

    return v.help_text()


@main.command()
@click.argument("host")
@click.option("--vary", metavar="SPEC", help=_vary_help())
@click.option("--find-culprit", is_flag=True,
              help="When the builds differ, rebuild to name the variation(s) that change the bytes: first once with "
                   "no variation (if that already differs, the build is not deterministic by itself and nothing is "
                   "blamed), then only for what the evidence search could not explain, halving the candidates "
                   "(about log2 of them per culprit). Without it, culprits are named from evidence only.")
@click.option("--confirm-culprits", is_flag=True,
              help="With --find-culprit (implied): also rebuild for the variations named from evidence, one build "
                   "per selected variation, to confirm them.")
@click.option("--rebuild", is_flag=True, help="Build even when an earlier completed run had the same lock, recipes, image and variations.")
@click.option("--whole-diffoscope", is_flag=True,
              help="Run diffoscope over the whole packages; by default it runs only on the members that differ "
                   "(every member is hashed first, which takes seconds even for a kernel).")
@click.option("--full-diffoscope", is_flag=True,
              help="Let diffoscope run its slow commands too (disassembly, DWARF dumps); by default they are left "
                   "out, and the report says what was cut.")
@click.option("--diffoscope-budget", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Time for all of the run's diffoscopes together (they run in parallel); default: a tenth of one "
                   "build less what hashing and the evidence search took, at least 10 s. A comparison the budget cuts "
                   "says so; the member hashes and the evidence still stand.")
@click.option("--node", metavar="NAME", callback=not_empty, help="Run both builds on this node instead of the manifest's nodes.")
@click.option("--flavor", type=flavor_choice, help="Build in this image flavor instead of the manifest's.")
@kernel_options
@json_option
def reproduce(host: str, vary: str | None, find_culprit: bool, confirm_culprits: bool, rebuild: bool,
              whole_diffoscope: bool, full_diffoscope: bool, diffoscope_budget: float | None, node: str | None,
              flavor: str | None, cross: bool, kernel_config: str | None, as_json: bool) -> int:
    """Build HOST's packages twice, on two nodes, with variations; compare; write the acceptance report.

    \b
    Build 1 (control) runs on the manifest's control node with every CPU it has;
    build 2 (experiment) on its experiment node (the fallback when that one is down;
    the same engine when only one answers) with another CPU count, both from the same
    image and SOURCE_DATE_EPOCH.  Packages are compared by hash; when they differ,
    every member is hashed and the differing members are named; the values build 2
    had (hostname, user, dates, ...) are searched for in them, naming the culprit
    variations from evidence without a rebuild; diffoscope explains those members.
    Each package is checked against its recorded reference in
    references/<host>/.  The build path stays /build in both builds because
    pacman's .BUILDINFO records it.

    Exit 0 when every package is reproducible and matches its reference (where one
    exists), 1 when any is not, 4 when a build failed, 3 on a stale lock or drift,
    2 when the host cannot be built here (everything missing is named).
    """
    from kabuild.build import variations
    from kabuild.report import render as report_mod
    from kabuild.reproduce import Options, reproduce

    spec = variations.parse_spec(vary)
    c = get_ctx()
    manifest, nodes = host_for_build(c, host, flavor, node, "reproduce", cross=cross, kernel_config=kernel_config)
    opts = Options(variations=spec.variations, experiment_cpus=spec.cpus,
                   find_culprit=find_culprit or confirm_culprits, confirm_culprits=confirm_culprits, rebuild=rebuild,
                   whole_diffoscope=whole_diffoscope, full_diffoscope=full_diffoscope,
                   diffoscope_budget=diffoscope_budget)
    report, run_dir = reproduce(c.root, manifest, nodes, opts, progress)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report_mod.FORMATS["text"].render(report, run_dir))
    return report.exit_code


@main.command()
@click.argument("host")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text", show_default=True,
              help="Output format: " + "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()) + ".")
def report(host: str, fmt: str) -> int:
    """Render the acceptance report of HOST's latest reproduce run again.

    Exits like the run did: 0 accepted, 1 not reproducible or parity failed, 4 build
    failed; 3 when the report is damaged.
    """
    from kabuild.report import render as report_mod
    from kabuild.report.runs import require_latest

    c = get_ctx()
    manifest, _ = c.load(host)
    data, run_dir = require_latest(c.root, manifest)
    click.echo(report_mod.FORMATS[fmt].render(data, run_dir), nl=False)
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
    """Record HOST's latest reproduce run as its reference.

    Refused (exit 3) unless every package was reproducible and is built for HOST's architecture
    (or any); nothing is written then."""
    from kabuild.compare import references
    from kabuild.report.runs import require_latest

    c = get_ctx()
    manifest, _ = c.load(host)
    data, run_dir = require_latest(c.root, manifest)
    for w in references.record(c.root, data, run_dir, store_artifacts=store, artifact_url=artifact_url,
                               host=(manifest.host, manifest.arch.value)):
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
    from kabuild.publish import publish_host
    from kabuild.publish.signing import passphrase_from

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
