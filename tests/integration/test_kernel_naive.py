"""The naive kernel recipe, a real kernel (weekly): culprits named from evidence, and the null hypothesis.

A kernel packaged without KBUILD_BUILD_USER/HOST/TIMESTAMP writes the build user, host and time into
its version string.  One `reproduce --find-culprit` here costs two kernel builds and one rebuild
(about 10 minutes on this machine), so it runs under the `weekly` marker (`make test-weekly`);
`make test` leaves it out and runs the same checks on the cheap kernel-like fixture leaky-kversion
(test_reproduce.py).
"""

from __future__ import annotations

import json

import pytest
from itest import kabuild, leftovers
from naive_kernel import LONG, NAIVE, naive_repo

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.kernel, pytest.mark.weekly]


def test_naive_kernel_culprits_from_evidence_and_not_deterministic_by_itself(tmp_path, engine, engine2):
    root = naive_repo(tmp_path)
    r = kabuild(root, "reproduce", NAIVE, "--find-culprit", "--json", timeout=LONG)
    assert r.code == 1, r
    data = json.loads(r.out)
    by_file = {p["file"].split("-6.12.107")[0]: p for p in data["packages"]}
    kernel, headers = by_file["linux-kernel-naive"], by_file["linux-kernel-naive-headers"]
    for pkg in (kernel, headers):
        assert pkg["reproducible"] is False and pkg["verdict"] == "not-reproducible"
        explained = pkg["explanation"]
        # user, hostname and clock, named from the bytes (the timezone too, where the date shows it)
        assert {"user", "hostname", "clock"} <= set(explained["variations"]), explained
        causes = {h["cause"]: h for h in explained["hints"]}
        assert "KBUILD_BUILD_USER" in causes["kernel version string"]["hint"], causes
        # the null hypothesis: the kernel writes its own build time, so a rebuild with no variation differs
        c = pkg["culprits"]
        assert c["nondeterministic"] is True and c["variations"] == [] and c["builds"] == 1, c
        assert c["evidence"]["own_time"] is True, c["evidence"]
    boot = [f for f in kernel["explanation"]["findings"] if "vmlinuz" in f["member"]]
    assert {v for f in boot for v in f["variations"]} >= {"user", "hostname"}, kernel["explanation"]["findings"]
    compile_h = [f for f in headers["explanation"]["findings"] if f["member"].endswith("generated/compile.h")]
    assert {v for f in compile_h for v in f["variations"]} >= {"user", "hostname"}, headers["explanation"]
    phases = dict((t["phase"], t["seconds"]) for t in data["timings"])
    assert {"member hashing", "evidence", "diffoscope", "culprit rebuilds"} <= set(phases), phases
    text = " ".join(kabuild(root, "report", NAIVE).out.split())
    assert "from evidence, not rebuilt" in text and "not deterministic by itself" in text
    assert not leftovers(engine, NAIVE) and not leftovers(engine2, NAIVE)
