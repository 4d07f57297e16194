"""Benchmark, kernel case: `kabuild reproduce kernel-demo` against ONE plain build of the same
package (`docker run … makepkg` of the same context, in the same image, every CPU).

The two builds of reproduce run at the same time, so one plain build is the floor; the
ratio says what reproducing costs on top of building once.  Prints and never asserts.
Run with `make bench-kernel` (RUNS=n; one run is a few minutes per side).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kabuild.build import host as build_mod  # noqa: E402
from kabuild.build.context import context_tar  # noqa: E402
from kabuild.build.engines import connect  # noqa: E402
from kabuild.config import manifest as fleet  # noqa: E402

HOST = "kernel-demo"


def plain_build(image: str, context: bytes, env: tuple[tuple[str, str], ...]) -> float:
    """One plain build: docker run, tar the context in on stdin, makepkg, discard the package."""
    args = [a for k, v in env for a in ("-e", f"{k}={v}")]
    t0 = time.monotonic()
    subprocess.run(["docker", "run", "--rm", "-i", "--network", "none", "--user", "1000:1000", *args, image,
                    "bash", "-c", "tar -x --strip-components=1 -C /build/src && exec /usr/local/bin/kabuild-build"],
                   input=context, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    kab = [str(Path(sys.executable).parent / "kabuild"), "--root", str(ROOT)]
    for verb in ("fetch", "promote"):
        subprocess.run([*kab, verb, HOST], check=True, stdout=subprocess.DEVNULL)
    manifest, nodes = fleet.load(ROOT, HOST)
    prepared = build_mod.prepare(ROOT, manifest, print)
    engine = connect(nodes.get("local"))
    image = build_mod.ready_image(ROOT, engine, prepared, print)
    (ctx,) = prepared.contexts
    pkg_image = build_mod.package_image(engine, image, prepared, ctx, print)
    spec = build_mod.base_spec(manifest, ctx.package, pkg_image, engine.cpus)
    with context_tar(ctx, spec) as f:
        context = f.read()
    env = tuple((k, v) for k, v in spec.environment() if k in ("SOURCE_DATE_EPOCH", "MAKEFLAGS", "TZ", "LANG"))
    # no warm-up reproduce (a kernel reproduce is minutes): the first timed one ships nothing
    # new when `kabuild reproduce kernel-demo` ran once before on this machine

    rep, plain = [], []
    for i in range(args.runs):
        plain.append(plain_build(pkg_image.tag, context, env))
        t0 = time.monotonic()
        subprocess.run([*kab, "reproduce", HOST, "--rebuild"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep.append(time.monotonic() - t0)
        print(f"run {i + 1}/{args.runs}: reproduce {rep[-1]:7.1f} s   one plain build {plain[-1]:7.1f} s", flush=True)
    mr, mp = statistics.median(rep), statistics.median(plain)
    print()
    print(f"{'what':48} {'median s':>9} {'runs':>5}")
    print(f"{'kabuild reproduce ' + HOST + ' (two engines)':48} {mr:9.1f} {len(rep):5d}")
    print(f"{f'one plain docker-run makepkg ({engine.cpus} CPUs)':48} {mp:9.1f} {len(plain):5d}")
    print(f"{'ratio reproduce / one plain build':48} {mr / mp:9.2f}")
    print(f"(machine: {os.cpu_count()} CPUs)")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
