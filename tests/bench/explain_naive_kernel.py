"""Benchmark: explaining the naive kernel's difference, from evidence and by rebuilding.

The naive kernel (the shared recipe without KBUILD_BUILD_*, see tests/integration/naive_kernel.py)
is reproduced with --find-culprit; the report's per-phase timings give

- builds done -> culprits named from evidence: member hashing + evidence search;
- the whole explanation: member hashing + evidence + diffoscope, as a ratio to one build;
- what --find-culprit costs on top (its rebuilds: the null hypothesis, which already differs for
  this kernel), next to the old search's one rebuild per variation (ten builds, estimated from one).

Prints medians and ratios, never asserts.  `make bench-explain` (RUNS=n), also run by `make bench`.
A run is two kernel builds and one rebuild: about ten minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from naive_kernel import LONG, NAIVE, naive_repo  # noqa: E402

EXPLAINING = ("member hashing", "evidence", "diffoscope")


def one_run(root: Path) -> dict[str, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "kabuild", "--root", str(root), "reproduce", NAIVE, "--find-culprit",
                        "--json"], capture_output=True, text=True, timeout=3 * LONG)
    wall = time.monotonic() - t0
    if p.returncode not in (0, 1):
        sys.exit(f"reproduce failed (exit {p.returncode}): {p.stderr[-2000:]}")
    data = json.loads(p.stdout)
    spent = {t["phase"]: t["seconds"] for t in data["timings"]}
    one_build = spent[f"build 1 linux-{NAIVE}"]
    named = sorted({v for pkg in data["packages"] for v in (pkg.get("explanation") or {}).get("variations", [])})
    null = [pkg["culprits"]["nondeterministic"] for pkg in data["packages"] if pkg.get("culprits")]
    print(f"  named from evidence: {', '.join(named)}; rebuild with no variation differs: {all(null)}", flush=True)
    for pkg in data["packages"]:
        d = (pkg.get("build1_vs_build2") or {}).get("diffoscope") or {}
        print(f"  diffoscope {pkg['file']}: {d.get('status')}{' (truncated)' if d.get('truncated') else ''}"
              f"{': ' + d['error'] if d.get('error') else ''}; left out: {'; '.join(d.get('cut') or []) or 'nothing'}",
              flush=True)
    return {
        "wall": wall,
        "builds": spent["builds (wall clock)"],
        "one build": one_build,
        "to culprits (hashing + evidence)": spent["member hashing"] + spent["evidence"],
        "diffoscope": spent["diffoscope"],
        "explanation (hashing + evidence + diffoscope)": sum(spent[p] for p in EXPLAINING),
        "--find-culprit rebuilds": spent["culprit rebuilds"],
        "old search, 1 build per variation (10, estimated)": 10 * one_build,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kabuild-bench-explain-") as tmp:
        root = naive_repo(Path(tmp))
        runs = []
        for i in range(args.runs):
            runs.append(one_run(root))
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[-1].items()), flush=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print()
    print(f"{'naive kernel, ' + str(len(runs)) + ' run(s)':56} {'median s':>9}")
    for k, v in med.items():
        print(f"{k:56} {v:9.1f}")
    print(f"{'ratio: builds done -> culprits named / one build':56} {med['to culprits (hashing + evidence)'] / med['one build']:9.3f}")
    print(f"{'ratio: explanation / one build':56} {med['explanation (hashing + evidence + diffoscope)'] / med['one build']:9.3f}")
    print(f"{'ratio: --find-culprit rebuilds / evidence':56} "
          f"{med['--find-culprit rebuilds'] / max(med['to culprits (hashing + evidence)'], 0.01):9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
