"""The publish gate: only reproducible packages with parity, whose bytes are exactly the report's, pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kabuild.errors import ExitCode, RefusalError
from kabuild.files import digest_bytes
from kabuild.publish import Candidate, PublishRefused, gate, latest_run, load_report

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
        "build1": {**d, "path": f"build1/{file}"},
        "build2": {**d, "path": f"build2/{file}"},
        "reference": dict(d), "reproducible": True, "parity": True, "verdict": "accepted",
    }


def _report(*entries: dict, lock_hash: str = LOCK) -> dict:
    return {"schema": 1, "kind": "kabuild-acceptance-report", "host": "demo", "run_id": "r1",
            "lock_hash": lock_hash, "verdict": "accepted", "packages": list(entries)}


def _refused(report: dict, run_dir: Path) -> PublishRefused:
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
    failed.update(reproducible=False, parity=None, verdict="build-failed")
    (tmp_path / failed["build1"]["path"]).unlink()
    report = _report(good, nonrepro, noref, failed)
    report["verdict"] = "rejected"
    err = _refused(report, tmp_path)
    reasons = _reasons(err)
    assert set(reasons) == {"kabuild-nonrepro", "kabuild-noref", "kabuild-failed"}
    assert "not reproducible" in reasons["kabuild-nonrepro"]
    assert "no reference build" in reasons["kabuild-noref"]
    assert "not reproducible" in reasons["kabuild-failed"] and "artifact missing" in reasons["kabuild-failed"]
    for name in reasons:
        assert name in str(err)
    assert "kabuild-good" not in str(err)
    assert "3 of 4" in str(err)


def test_stale_report_and_bad_packages_are_all_named(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["reproducible"] = False
    err = _refused(_report(e, lock_hash="2" * 64), tmp_path)
    assert set(_reasons(err)) == {"report", "kabuild-hello"}


@pytest.mark.parametrize("path", ["../outside.pkg.tar.zst", "/etc/kabuild-hello-1.0-1-aarch64.pkg.tar.zst",
                                  "build1/../../kabuild-hello-1.0-1-aarch64.pkg.tar.zst"])
def test_paths_outside_the_run_dir_are_refused(tmp_path, path):
    run_dir = tmp_path / "run"
    e = _entry(run_dir, "kabuild-hello")
    e["build1"]["path"] = path
    err = _refused(_report(e), run_dir)
    assert "kabuild-hello" in _reasons(err)


def test_file_name_must_belong_to_the_package(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["name"] = "kabuild-other"
    err = _refused(_report(e), tmp_path)
    assert "does not belong to package kabuild-other" in _reasons(err)["kabuild-other"]


def test_inconsistent_verdict_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["verdict"] = "build-failed"
    err = _refused(_report(e), tmp_path)
    assert "verdict" in _reasons(err)["kabuild-hello"]


def test_report_level_rejection_is_refused(tmp_path):
    report = _report(_entry(tmp_path, "kabuild-hello"))
    report["verdict"] = "rejected"
    err = _refused(report, tmp_path)
    assert "report verdict" in _reasons(err)["report"]


def test_duplicate_package_is_refused(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    err = _refused(_report(e, copy.deepcopy(e)), tmp_path)
    assert "listed twice" in _reasons(err)["kabuild-hello"]


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(packages=[]),
    lambda r: r["packages"][0].pop("build1"),
    lambda r: r["packages"][0]["build1"].update(sha256="not-a-hash"),
    lambda r: r["packages"][0].update(parity="yes"),
    lambda r: r["packages"][0].update(reproducible="true"),
])
def test_malformed_reports_are_refused(tmp_path, mutate):
    report = _report(_entry(tmp_path, "kabuild-hello"))
    mutate(report)
    _refused(report, tmp_path)


@pytest.mark.parametrize("report", [{}, {"kind": "something-else", "schema": 1}, {"kind": "kabuild-acceptance-report", "schema": 2}, []])
def test_not_a_report_is_refused(tmp_path, report):
    with pytest.raises(RefusalError) as info:
        gate(report, tmp_path, LOCK)
    assert info.value.exit_code == 3


def test_latest_run_and_load_report(tmp_path):
    runs = tmp_path / "build" / "demo" / "v1.0" / "runs"
    with pytest.raises(RefusalError, match="reproduce"):
        latest_run(tmp_path, "demo", "v1.0")
    run_dir = runs / "20260101T000000Z"
    run_dir.mkdir(parents=True)
    (runs / "latest").symlink_to(run_dir.name)
    assert latest_run(tmp_path, "demo", "v1.0") == run_dir.resolve()
    with pytest.raises(RefusalError):
        load_report(run_dir)
    (run_dir / "report.json").write_text("{not json")
    with pytest.raises(RefusalError, match="unreadable"):
        load_report(run_dir)
    report = _report(_entry(run_dir, "kabuild-hello"))
    (run_dir / "report.json").write_text(json.dumps(report))
    assert [c.name for c in gate(load_report(run_dir), run_dir, LOCK)] == ["kabuild-hello"]
