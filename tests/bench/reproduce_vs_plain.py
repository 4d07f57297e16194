"""Benchmark: `kabuild reproduce demo` (two engines) against its floor, two plain sequential
`docker run … makepkg` builds of the same context in the same image.

Prints medians and the ratio; never asserts.  Run with `make bench` (RUNS=n).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kabuild.build import host as build_mod  # noqa: E402
from kabuild.build import images  # noqa: E402
from kabuild.build.context import context_tar, stage  # noqa: E402
from kabuild.build.engines import connect  # noqa: E402
from kabuild.config import manifest as fleet  # noqa: E402
from kabuild.inputs import lock  # noqa: E402
from kabuild.inputs.sources import SourceCache  # noqa: E402


def timed(argv: list[str], stdin: bytes | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, input=stdin, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def plain_pair(image: str, context: bytes, sde: int) -> float:
    """Two sequential plain builds: docker run, tar the context in on stdin, makepkg, discard."""
    total = 0.0
    for _ in range(2):
        total += timed(["docker", "run", "--rm", "-i", "--network", "none", "--user", "1000:1000",
                        "-e", f"SOURCE_DATE_EPOCH={sde}", image, "bash", "-c",
                        "tar -x --strip-components=1 -C /build/src && exec /usr/local/bin/kabuild-build"], stdin=context)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    manifest, _nodes = fleet.load(ROOT, "demo")
    kab = [str(Path(sys.executable).parent / "kabuild"), "--root", str(ROOT)]
    subprocess.run([*kab, "promote", "demo"], check=True, stdout=subprocess.DEVNULL)
    the_lock = lock.require_verified(ROOT, manifest)
    engine = connect(_nodes.get("local"))
    image = images.ensure(ROOT, engine, images.recipe(ROOT, manifest.build.flavor, manifest.arch), print)
    ctx = stage(ROOT, manifest, manifest.packages[0], the_lock, SourceCache())
    spec = build_mod.base_spec(manifest, manifest.packages[0], image)
    with context_tar(ctx, spec) as f:
        context = f.read()
    # warm up both engines (image import, page cache) so neither side pays for it
    subprocess.run([*kab, "reproduce", "demo", "--rebuild"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    rep, plain = [], []
    for i in range(args.runs):
        plain.append(plain_pair(image.tag, context, manifest.baseline.source_date_epoch))
        t0 = time.monotonic()
        subprocess.run([*kab, "reproduce", "demo", "--rebuild"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep.append(time.monotonic() - t0)
        print(f"run {i + 1}/{args.runs}: reproduce {rep[-1]:7.1f} s   two plain builds {plain[-1]:7.1f} s", flush=True)
    mr, mp = statistics.median(rep), statistics.median(plain)
    print()
    print(f"{'what':44} {'median s':>9} {'runs':>5}")
    print(f"{'kabuild reproduce demo (two engines)':44} {mr:9.1f} {len(rep):5d}")
    print(f"{'two sequential plain docker-run makepkg':44} {mp:9.1f} {len(plain):5d}")
    print(f"{'ratio reproduce / plain pair':44} {mr / mp:9.2f}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
