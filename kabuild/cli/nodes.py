"""`kabuild nodes`: the build nodes of fleet/nodes.yaml, checked."""

from __future__ import annotations

import click

from kabuild.cli.app import emit_json, get_ctx, json_option, main
from kabuild.config.nodes import load_nodes
from kabuild.errors import ExitCode


@main.command()
@click.argument("names", nargs=-1, metavar="[NAME...]")
@json_option
def nodes(names: tuple[str, ...], as_json: bool) -> int:
    """Check the build nodes of fleet/nodes.yaml (all, or the NAMEs), in parallel.

    \b
    For each node: reachable or not (with the one-line reason), the engine's version,
    its native architecture and CPUs, whether it runs containers of the other
    architecture (qemu emulation; tried with a kabuild image of that architecture when
    the node holds one), the kabuild images it holds, and the round-trip time of a ping.
    Each node is checked within its own bounds (connect_timeout + 5 s).
    Exit 0 when every checked node answers, 5 when one does not.
    """
    from kabuild.build.nodecheck import check_nodes

    found = check_nodes(load_nodes(get_ctx().root), list(names))
    if as_json:
        emit_json([c.to_dict() for c in found])
    else:
        for c in found:
            click.echo(f"{c.name}  {c.url}" + (f"  ({c.description})" if c.description else ""))
            if not c.reachable:
                click.echo(f"  reachable  no: {c.reason}")
                continue
            click.echo(f"  reachable  yes, round trip {c.rtt_ms} ms (checked in {c.seconds:.1f}s)")
            click.echo(f"  engine     {c.version}, {c.arch}, {c.cpus} CPU(s)")
            if c.emulation:
                click.echo(f"  emulation  {c.emulation}")
            click.echo(f"  images     {', '.join(c.images) if c.images else 'no kabuild image'}")
    return ExitCode.OK if all(c.reachable for c in found) else ExitCode.ENVIRONMENT
