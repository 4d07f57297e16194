"""Verdicts that cannot be weakened (issue 15), on real engines, makepkg, gpg and repo-add.

Native x86_64 fixture packages (seconds per build); each module fixture runs one flow once and the
tests assert on what it recorded:

- ``edited``: a reproducible package is recorded, published, then its PKGBUILD is edited.  The lock says
  "recipe changed since promote", publish refuses (stale lock, then the run's recipe is not the one on
  disk), reproduce rebuilds without --rebuild, and the old recipe's package is never signed again.
- ``upstream``: a PKGBUILD whose source= is an https release URL builds offline from the baseline.
- ``evidence``: an x86_64 run of a host retargeted to aarch64 is refused by reference record and the gate;
  a damaged or hand-edited reference is exit 3 naming the file and key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from itest import Result, copy_real_repo, kabuild, leftovers, make_repo

pytestmark = pytest.mark.docker

HOST = "vx"  # not "fx": other sessions build fixtures as "fx" on the same engines at the same time
PUBLISH = f"publish:\n  repository: {HOST}\n  key: throwaway\n  destination: build/{HOST}/repo\n"


def _stop_gpg(root: Path) -> None:
    home = root / "build" / HOST / "gnupg"
    if home.is_dir():
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=30)


def _repo_files(root: Path) -> list[str]:
    live = root / "build" / HOST / "repo"
    return sorted(p.name for p in live.iterdir()) if live.exists() else []


# --------------------------------------------------------------------------- an edited recipe


@pytest.fixture(scope="module")
def edited(tmp_path_factory, engine, engine2):
    base = tmp_path_factory.mktemp("edited")
    root = make_repo(base, HOST, ["steady"], control="local", experiment="local-2")
    with open(root / "fleet" / f"{HOST}.yaml", "a") as f:
        f.write(PUBLISH)
    steps: dict[str, Result] = {}
    seen: dict[str, list[str]] = {}
    try:
        assert kabuild(root, "promote", HOST).code == 0
        steps["first"] = kabuild(root, "reproduce", HOST, "--vary=hostname,user", "--json")
        steps["record"] = kabuild(root, "reference", "record", HOST)
        steps["accepted"] = kabuild(root, "reproduce", HOST, "--vary=hostname,user", "--json")
        steps["publish"] = kabuild(root, "publish", HOST, "--json")
        seen["published"] = _repo_files(root)

        pkgbuild = root / "pkgs" / "steady" / "PKGBUILD"
        pkgbuild.write_text(pkgbuild.read_text().replace("pkgrel=1", "pkgrel=2"))
        steps["verify-edited"] = kabuild(root, "verify", HOST)
        steps["status-edited"] = kabuild(root, "status", HOST)
        steps["publish-edited"] = kabuild(root, "publish", HOST)
        steps["reproduce-edited"] = kabuild(root, "reproduce", HOST, "--vary=hostname,user")
        steps["promote"] = kabuild(root, "promote", HOST)
        steps["status-promoted"] = kabuild(root, "status", HOST)
        steps["publish-promoted"] = kabuild(root, "publish", HOST)
        seen["after-refusals"] = _repo_files(root)
        steps["rebuilt"] = kabuild(root, "reproduce", HOST, "--vary=hostname,user", "--json")
        steps["publish-rebuilt"] = kabuild(root, "publish", HOST)
        steps["record-rebuilt"] = kabuild(root, "reference", "record", HOST)
        steps["with-parity"] = kabuild(root, "reproduce", HOST, "--vary=hostname,user")
        steps["publish-recorded"] = kabuild(root, "publish", HOST, "--json")
        seen["final"] = _repo_files(root)
        yield root, steps, seen
    finally:
        _stop_gpg(root)
        assert not leftovers(engine, HOST)


def test_before_the_edit_the_recipe_is_accepted_and_published(edited):
    _root, steps, seen = edited
    for name in ("first", "record", "accepted", "publish"):
        assert steps[name].code == 0, steps[name]
    accepted = json.loads(steps["accepted"].out)
    assert accepted["answered_from"] == json.loads(steps["first"].out)["run_id"]
    assert accepted["packages"][0]["verdict"] == "accepted"
    assert list(accepted["recipes"]) == ["steady"]
    assert "steady-1-1-x86_64.pkg.tar.zst" in seen["published"]


def test_an_edited_recipe_makes_the_lock_stale_and_is_not_published(edited):
    _root, steps, seen = edited
    for name in ("verify-edited", "publish-edited", "reproduce-edited"):
        r = steps[name]
        assert r.code == 3, r
        assert "recipe changed since promote: steady (pkgs/steady): PKGBUILD edited" in r.err, r
        assert "Traceback" not in r.err
    assert "recipe changed since promote" in steps["status-edited"].out
    assert steps["promote"].code == 0
    assert "RECIPE     changed since the last run" in steps["status-promoted"].out
    refused = steps["publish-promoted"]
    assert refused.code == 3, refused
    assert "its recipe changed since run" in refused.err and "stale report" in refused.err
    assert seen["after-refusals"] == seen["published"]  # nothing signed, nothing swapped in


def test_an_edited_recipe_is_rebuilt_without_rebuild_and_needs_its_own_reference(edited):
    _root, steps, seen = edited
    rebuilt = steps["rebuilt"]
    assert rebuilt.code == 0, rebuilt
    assert "answering from its builds" not in rebuilt.err
    data = json.loads(rebuilt.out)
    assert data["answered_from"] is None
    assert data["packages"][0]["file"] == "steady-1-2-x86_64.pkg.tar.zst"
    assert data["packages"][0]["verdict"] == "no-reference"  # the reference is the old recipe's package
    assert data["recipes"]["steady"] != json.loads(steps["first"].out)["recipes"]["steady"]
    no_ref = steps["publish-rebuilt"]
    assert no_ref.code == 3 and "no reference build: parity unknown" in no_ref.err, no_ref
    assert steps["record-rebuilt"].code == 0, steps["record-rebuilt"]
    assert steps["with-parity"].code == 0 and "answering from its builds" in steps["with-parity"].err
    assert steps["publish-recorded"].code == 0, steps["publish-recorded"]
    assert "steady-1-2-x86_64.pkg.tar.zst" in seen["final"]


# --------------------------------------------------------------------------- an upstream-style source=


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, engine):
    base = tmp_path_factory.mktemp("upstream")
    root = make_repo(base, HOST, ["upstream-hello"], control="local", experiment="local")
    built = kabuild(root, "build", HOST, "--json")
    # the same recipe asking for a release nobody has: refused before any container exists
    pkgbuild = root / "pkgs" / "upstream-hello" / "PKGBUILD"
    pkgbuild.write_text(pkgbuild.read_text().replace("4b6efb13", "5b6efb13").replace("v${pkgver}", "v9.9"))
    assert kabuild(root, "promote", HOST).code == 0
    since_ns = time.time_ns()
    unserved = kabuild(root, "build", HOST)
    until = int(time.time()) + 1
    events = list(engine.client.events(since=since_ns // 10**9 - 1, until=until, decode=True,
                                       filters={"type": "container", "event": "create"}))
    # the events API counts in whole seconds: only what was created after the refused build started counts
    created = [e for e in events if e.get("Actor", {}).get("Attributes", {}).get("org.kabuild.host") == HOST
               and e.get("timeNano", 0) >= since_ns]
    yield root, built, unserved, created
    assert not leftovers(engine, HOST)


def test_an_https_source_whose_file_is_the_baseline_builds_offline(upstream):
    root, built, _unserved, _created = upstream
    assert built.code == 0, built
    (pkg,) = json.loads(built.out)["packages"].keys()
    assert pkg == "upstream-hello-1.0-1-x86_64.pkg.tar.zst"
    listing = subprocess.run(["bsdtar", "-tf", str(root / f"build/{HOST}/v1.0/last-build" / pkg)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "usr/bin/kabuild-hello" in listing


def test_a_source_that_cannot_be_served_is_one_line_before_any_container(upstream):
    _root, _built, unserved, created = upstream
    assert unserved.code == 2, unserved
    lines = unserved.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kabuild: error: pkgs/upstream-hello/PKGBUILD: source[0] "
                                                   "'https://example.invalid/kabuild-hello/archive/refs/tags/v9.9.tar.gz' "
                                                   "cannot be served offline"), unserved
    assert f"add the URL to baseline.sources in fleet/{HOST}.yaml" in lines[0]
    assert created == []


# --------------------------------------------------------------------------- architectures and references


@pytest.fixture(scope="module")
def evidence(tmp_path_factory, engine):
    base = tmp_path_factory.mktemp("evidence")
    root = make_repo(base, HOST, ["steady"], control="local", experiment="local-2")
    with open(root / "fleet" / f"{HOST}.yaml", "a") as f:
        f.write(PUBLISH)
    steps: dict[str, Result] = {}
    try:
        assert kabuild(root, "promote", HOST).code == 0
        steps["first"] = kabuild(root, "reproduce", HOST, "--vary=hostname")
        steps["record"] = kabuild(root, "reference", "record", HOST)
        ref = root / "references" / HOST / "steady" / "reference.yaml"
        good = ref.read_bytes()
        data = yaml.safe_load(good)
        data["artifacts"][0]["sha256"] = "0" * 64
        ref.write_text(yaml.safe_dump(data))
        steps["hash-edited"] = kabuild(root, "reproduce", HOST, "--vary=hostname")
        ref.write_bytes(good[: len(good) // 2])
        steps["truncated"] = kabuild(root, "reproduce", HOST, "--vary=hostname")
        ref.write_bytes(good)
        steps["restored"] = kabuild(root, "reproduce", HOST, "--vary=hostname")

        # the host is retargeted: its runs made x86_64 packages, it is now an aarch64 host
        manifest = root / "fleet" / f"{HOST}.yaml"
        manifest.write_text(manifest.read_text().replace("arch: x86_64", "arch: aarch64"))
        ref_dir = ref.parent
        before = {p.name: p.read_bytes() for p in ref_dir.iterdir()}
        steps["record-retargeted"] = kabuild(root, "reference", "record", HOST)
        steps["reference-untouched"] = Result(int({p.name: p.read_bytes() for p in ref_dir.iterdir()} != before), "", "")
        assert kabuild(root, "promote", HOST).code == 0
        steps["publish-retargeted"] = kabuild(root, "publish", HOST)
        steps["repo-untouched"] = Result(int((root / "build" / HOST / "repo").exists()), "", "")

        demo = copy_real_repo(base)
        assert kabuild(demo, "promote", "demo").code == 0
        steps["cross-demo"] = kabuild(demo, "reproduce", "demo", "--cross", "--node", "local")
        yield root, steps
    finally:
        _stop_gpg(root)
        assert not leftovers(engine, HOST)
        shutil.rmtree(base / "real", ignore_errors=True)


def test_a_hand_edited_or_damaged_reference_is_exit_3_naming_file_and_key(evidence):
    _root, steps = evidence
    assert steps["first"].code == 0 and steps["record"].code == 0
    edited_hash = steps["hash-edited"]
    assert edited_hash.code == 3, edited_hash
    (line,) = edited_hash.err.splitlines()
    assert line.startswith(f"kabuild: error: references/{HOST}/steady/reference.yaml: artifacts[0].sha256: records "
                           + "0" * 64 + ", but the stored artifact steady-1-1-x86_64.pkg.tar.zst has "), line
    assert "identical" not in line
    truncated = steps["truncated"]
    assert truncated.code == 3 and f"references/{HOST}/steady/reference.yaml" in truncated.err, truncated
    assert "no recorded reference" not in truncated.out
    assert steps["restored"].code == 0, steps["restored"]


def test_an_artifact_of_another_architecture_is_refused_by_record_and_gate(evidence):
    _root, steps = evidence
    record = steps["record-retargeted"]
    assert record.code == 3, record
    assert (f"steady-1-1-x86_64.pkg.tar.zst is built for x86_64, but host {HOST} is aarch64: references are recorded "
            "for aarch64 or any packages only") in record.err
    assert steps["reference-untouched"].code == 0
    gate = steps["publish-retargeted"]
    assert gate.code == 3, gate
    assert f"steady-1-1-x86_64.pkg.tar.zst is built for x86_64, but host {HOST} is aarch64" in gate.err
    assert steps["repo-untouched"].code == 0  # nothing published


def test_cross_on_a_host_that_is_not_a_kernel_is_a_usage_error(evidence):
    _root, steps = evidence
    r = steps["cross-demo"]
    assert r.code == 2, r
    assert r.err.strip() == ("kabuild: error: --cross: demo is not a kernel host (fleet/demo.yaml has no kernel: "
                             "section); a cross build is for kernel recipes, any other recipe would build a package "
                             "of this machine's architecture")

