"""Benchmark: shipping the demo's build image to an ssh node, against its floor.

Starts the test suite's remote node (tests/integration/remote_nodes.py: an sshd on a loopback port
in front of a dockerd of its own, which starts without images), then times
- kabuild: ``images.ship`` from the local engine to the ssh node through kabuild's ssh transport;
- the floor: ``docker save TAG | ssh NODE docker load`` with the same ssh and keys;
- and the second ship of the same image ID, which finds it there and sends nothing.
The image is removed from the node between runs.  Prints medians and the ratio; never asserts.
Run with `make bench` (RUNS=n); the daemons are stopped at the end.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from remote_nodes import Dockerd, Sshd  # noqa: E402

from kabuild.build import images  # noqa: E402
from kabuild.build.engines import connect  # noqa: E402
from kabuild.config import manifest as fleet  # noqa: E402
from kabuild.config.nodes import load_nodes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    manifest, nodes = fleet.load(ROOT, "demo")
    local = connect(nodes.get("local"))
    info = images.inspect(local, images.recipe(ROOT, manifest.build.flavor, manifest.arch))
    if info is None:
        print("the demo image is not on node local yet: run `make demo` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kabuild-bench-") as tmp:
        base = Path(tmp)
        dockerd = Dockerd(base / "dockerd").start()
        sshd = Sshd(base / "sshd", dockerd)
        try:
            sshd.start()
            (base / "fleet").mkdir()
            (base / "fleet" / "nodes.yaml").write_text(
                f"schema: 1\nnodes:\n  ssh:\n    url: ssh://root@127.0.0.1:{sshd.port}\n"
                f"    identity: {sshd.client_key}\n    known_hosts: {sshd.known_hosts}\n")
            node = load_nodes(base).get("ssh")
            ssh = ["ssh", "-p", str(sshd.port), "-i", str(sshd.client_key), "-o", "IdentitiesOnly=yes",
                   "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={sshd.known_hosts}", "root@127.0.0.1"]
            kabuild_times, floor_times, again_times = [], [], []
            for _ in range(args.runs):
                dockerd.docker("rmi", "-f", info.tag, check=False)
                remote = connect(node)
                t0 = time.monotonic()
                images.ship(local, remote, info, lambda _m: None)
                kabuild_times.append(time.monotonic() - t0)
                t0 = time.monotonic()
                images.ship(local, remote, info, lambda _m: None)
                again_times.append(time.monotonic() - t0)
                remote.close()
                dockerd.docker("rmi", "-f", info.tag, check=False)
                t0 = time.monotonic()
                subprocess.run(f"docker save {shlex.quote(info.tag)} | {shlex.join(ssh)} docker load",
                               shell=True, check=True, stdout=subprocess.DEVNULL)
                floor_times.append(time.monotonic() - t0)
            size = int(local.client.images.get(info.id).attrs.get("Size") or 0) >> 20
        finally:
            sshd.stop()
            dockerd.stop()
            local.close()
    k, f, a = (statistics.median(x) for x in (kabuild_times, floor_times, again_times))
    print(f"ship {info.tag} ({size} MiB) to a fresh ssh node, {args.runs} run(s):")
    print(f"  kabuild ship (own ssh transport)  median {k:6.1f} s  ({size / k:.0f} MiB/s)")
    print(f"  docker save | ssh docker load      median {f:6.1f} s  ({size / f:.0f} MiB/s)")
    print(f"  ratio kabuild / floor              {k / f:.2f}")
    print(f"  second ship of the same image ID   median {a:6.2f} s  (nothing sent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
