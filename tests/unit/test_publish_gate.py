"""The publish gate: only reproducible packages with parity, whose bytes are exactly the report's, pass.

Reports reach the gate as validated documents (kabuild.compare.acceptance); a report whose own facts
contradict each other is refused while it is read, with the same exit code (3) as the gate.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from reportdocs import document

from kabuild.compare import acceptance
from kabuild.config.document import dict_section
from kabuild.errors import DocumentError, ExitCode, RefusalError
from kabuild.files import digest_bytes
from kabuild.publish import Candidate, PublishRefused, gate, latest_run

LOCK = "1" * 64


def _entry(run_dir: Path, name: str, version: str = "1.0-1", *, data: bytes | None = None) -> dict:
    file = f"{name}-{version}-aarch64.pkg.tar.zst"
    data = data if data is not None else f"package bytes of {name} {version}".encode()
    for b in ("build1", "build2"):
        (run_dir / b).mkdir(parents=True, exist_ok=True)
        (run_dir / b / file).write_bytes(data)
    d = digest_bytes(data).as_dict()
    return {
        "name": name, "file": file,
        "build1": {**d, "path": f"build1/{file}", "duration": 1.0, "log": f"build1/{name}.log"},
        "build2": {**d, "path": f"build2/{file}", "duration": 1.0, "log": f"build2/{name}.log"},
        "reference": {**d, "source": f"references/demo/{name}/reference.yaml"}, "reproducible": True,
        "parity": True, "verdict": "accepted", "build1_vs_build2": None, "build1_vs_reference": None,
        "culprits": None, "error": None,
    }


def _doc(*entries: dict, lock_hash: str = LOCK) -> dict:
    pkgs = [acceptance.PackageResult.from_section(dict_section(e, "report.json")) for e in entries]
    verdict, code = acceptance.overall(pkgs)
    return document([copy.deepcopy(e) for e in entries], lock_hash=lock_hash, verdict=str(verdict), exit_code=code)


def _report(*entries: dict, lock_hash: str = LOCK) -> acceptance.Report:
    return acceptance.from_dict(_doc(*entries, lock_hash=lock_hash))


def _refused(report: acceptance.Report, run_dir: Path) -> PublishRefused:
    with pytest.raises(PublishRefused) as info:
        gate(report, run_dir, LOCK)
    err = info.value
    assert isinstance(err, RefusalError)
    assert err.exit_code == ExitCode.REFUSED == 3
    return err


def _reasons(err: PublishRefused) -> dict[str, str]:
    return {r.subject: r.reason for r in err.refusals}


def test_accepted_package_passes(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    (cand,) = gate(_report(e), tmp_path, LOCK)
    assert cand == Candidate("kabuild-hello", tmp_path / e["build1"]["path"], e["build1"]["sha256"], e["build1"]["b2sum"])


def test_several_accepted_packages_pass_in_report_order(tmp_path):
    es = [_entry(tmp_path, n) for n in ("linux-demo", "linux-demo-headers", "kabuild-hello")]
    assert [c.name for c in gate(_report(*es), tmp_path, LOCK)] == ["linux-demo", "linux-demo-headers", "kabuild-hello"]


def test_not_reproducible_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["reproducible"] = False
    e["verdict"] = "not-reproducible"
    err = _refused(_report(e), tmp_path)
    assert "not reproducible" in _reasons(err)["kabuild-hello"]
    assert "kabuild-hello: not reproducible" in str(err)


def test_parity_false_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["parity"] = False
    e["verdict"] = "parity-failed"
    err = _refused(_report(e), tmp_path)
    assert "parity with the reference build failed" in _reasons(err)["kabuild-hello"]


def test_parity_null_without_reference_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["parity"] = None
    e["reference"] = None
    e["verdict"] = "no-reference"
    err = _refused(_report(e), tmp_path)
    assert "no reference build" in _reasons(err)["kabuild-hello"]


def test_tampered_artifact_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    p = tmp_path / e["build1"]["path"]
    data = bytearray(p.read_bytes())
    data[3] ^= 0x01  # same size, one bit
    p.write_bytes(bytes(data))
    err = _refused(_report(e), tmp_path)
    assert "does not match the report" in _reasons(err)["kabuild-hello"]


def test_b2sum_mismatch_alone_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["build1"]["b2sum"] = e["build2"]["b2sum"] = "0" * 128
    err = _refused(_report(e), tmp_path)
    assert "does not match the report" in _reasons(err)["kabuild-hello"]


def test_missing_artifact_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    (tmp_path / e["build1"]["path"]).unlink()
    err = _refused(_report(e), tmp_path)
    assert "artifact missing" in _reasons(err)["kabuild-hello"]


def test_build1_differs_from_build2_is_refused_even_if_report_claims_reproducible(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    other = digest_bytes(b"another build")
    e["build2"].update(sha256=other.sha256, b2sum=other.b2sum)
    err = _refused(_report(e), tmp_path)
    assert "build1 and build2 hashes differ" in _reasons(err)["kabuild-hello"]


def test_stale_lock_hash_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    err = _refused(_report(e, lock_hash="2" * 64), tmp_path)
    assert "stale report" in _reasons(err)["report"]
    assert "stale report" in str(err)


def test_mixed_verdicts_refuse_everything_and_name_every_bad_package(tmp_path):
    good = _entry(tmp_path, "kabuild-good")
    nonrepro = _entry(tmp_path, "kabuild-nonrepro")
    nonrepro.update(reproducible=False, verdict="not-reproducible")
    noref = _entry(tmp_path, "kabuild-noref")
    noref.update(parity=None, reference=None, verdict="no-reference")
    failed = _entry(tmp_path, "kabuild-failed")
    failed.update(reproducible=False, parity=None, reference=None, verdict="build-failed", build2=None)
    err = _refused(_report(good, nonrepro, noref, failed), tmp_path)
    reasons = _reasons(err)
    assert set(reasons) == {"kabuild-nonrepro", "kabuild-noref", "kabuild-failed"}
    assert "not reproducible" in reasons["kabuild-nonrepro"]
    assert "no reference build" in reasons["kabuild-noref"]
    assert "not reproducible" in reasons["kabuild-failed"] and "a build is missing" in reasons["kabuild-failed"]
    for name in reasons:
        assert name in str(err)
    assert "kabuild-good" not in str(err)
    assert "3 of 4" in str(err)


def test_stale_report_and_bad_packages_are_all_named(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e.update(reproducible=False, verdict="not-reproducible")
    err = _refused(_report(e, lock_hash="2" * 64), tmp_path)
    assert set(_reasons(err)) == {"report", "kabuild-hello"}


def test_file_name_must_belong_to_the_package(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["name"] = "kabuild-other"
    err = _refused(_report(e), tmp_path)
    assert "does not belong to package kabuild-other" in _reasons(err)["kabuild-other"]


def test_duplicate_package_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    err = _refused(_report(e, copy.deepcopy(e)), tmp_path)
    assert "listed twice" in _reasons(err)["kabuild-hello"]


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.update(packages=[]), "packages"),
    (lambda r: r["packages"][0].update(verdict="build-failed"), "packages[0].verdict"),
    (lambda r: r["packages"][0]["build1"].update(sha256="not-a-hash"), "packages[0].build1.sha256"),
    (lambda r: r["packages"][0].update(parity="yes"), "packages[0].parity"),
    (lambda r: r["packages"][0].update(reproducible="true"), "packages[0].reproducible"),
    (lambda r: r.update(verdict="rejected"), "verdict"),
    (lambda r: r["packages"][0]["build1"].update(path="../outside.pkg.tar.zst"), "packages[0].build1.path"),
    (lambda r: r["packages"][0]["build1"].update(path="/etc/kabuild-hello-1.0-1-aarch64.pkg.tar.zst"),
     "packages[0].build1.path"),
    (lambda r: r.update(kind="something-else"), "kind"),
    (lambda r: r.update(schema=1), "schema"),
])
def test_malformed_and_contradictory_reports_are_refused_when_read(tmp_path, mutate, key):
    doc = _doc(_entry(tmp_path, "kabuild-hello"))
    mutate(doc)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DocumentError) as info:
        acceptance.load(path)
    assert info.value.exit_code == ExitCode.REFUSED == 3
    assert f"{path}: {key}:" in str(info.value) or f"{path}:" in str(info.value) and f" {key}:" in str(info.value)


def test_latest_run(tmp_path):
    runs = tmp_path / "build" / "demo" / "v1.0" / "runs"
    with pytest.raises(RefusalError, match="reproduce"):
        latest_run(tmp_path, "demo", "v1.0")
    run_dir = runs / "20260101T000000Z"
    run_dir.mkdir(parents=True)
    (runs / "latest").symlink_to(run_dir.name)
    assert latest_run(tmp_path, "demo", "v1.0") == run_dir.resolve()
    doc = _doc(_entry(run_dir, "kabuild-hello"))
    (run_dir / "report.json").write_text(json.dumps(doc))
    assert [c.name for c in gate(acceptance.load(run_dir / "report.json"), run_dir, LOCK)] == ["kabuild-hello"]


def test_split_packages_of_one_pkgbuild_are_published_under_their_own_names(tmp_path):
    kernel = _entry(tmp_path, "kabuild-hello")
    headers = _entry(tmp_path, "kabuild-hello-headers")
    headers["name"] = "kabuild-hello"  # the report names the manifest package (pkgbase) for both files
    candidates = gate(_report(kernel, headers), tmp_path, LOCK)
    assert sorted(c.name for c in candidates) == ["kabuild-hello", "kabuild-hello-headers"]


def test_a_single_engine_run_is_refused_unless_the_manifest_allows_it(tmp_path):
    doc = _doc(_entry(tmp_path, "kabuild-hello"))
    doc["nodes"]["build2"] = {**doc["nodes"]["build2"], "node": doc["nodes"]["build1"]["node"], "requested": "local-2",
                              "fell_back": True, "reason": "build node local-2 does not answer"}
    doc["nodes"]["same_engine"] = True
    report = acceptance.from_dict(doc)
    err = _refused(report, tmp_path)
    assert [r.subject for r in err.refusals] == ["report"]
    assert "single-engine run: both builds ran on" in str(err) and "local-2 did not answer" in str(err)
    assert "build.single_engine: allowed" in str(err)
    (candidate,) = gate(report, tmp_path, LOCK, single_engine_allowed=True)
    assert candidate.name == "kabuild-hello"
    # two engines: no opt-in needed
    two = _doc(_entry(tmp_path, "kabuild-hello"))
    assert not two["nodes"]["same_engine"]
    assert gate(acceptance.from_dict(two), tmp_path, LOCK)
