"""Verdicts that cannot be weakened, at the gate and the repository: the run's recipe must be the one on
disk, a package must be built for the host's architecture (or ``any``), a repository holds one
architecture, and a parity failure names both hashes.  Real package files (tar.xz with a .PKGINFO, read
by bsdtar as pacman's tools would); no Docker."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from reportdocs import report as report_of
from test_publish_gate import LOCK, _doc, _entry, _reasons, _report

from kabuild.errors import RefusalError
from kabuild.files import digest_file
from kabuild.publish import Candidate, PublishRefused, gate
from kabuild.publish.state import plan_for
from kabuild.report.facts import problems

pytestmark = pytest.mark.skipif(shutil.which("bsdtar") is None, reason="needs bsdtar (libarchive-tools)")
RECIPE = "7e" * 32  # what reportdocs records for kabuild-hello


def _refusal(report, run_dir: Path, **kw) -> dict[str, str]:
    with pytest.raises(PublishRefused) as info:
        gate(report, run_dir, LOCK, **kw)
    assert info.value.exit_code == 3
    return _reasons(info.value)


def test_the_runs_recipe_must_be_the_one_on_disk(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    report = _report(e)
    assert gate(report, tmp_path, LOCK, recipes={"kabuild-hello": RECIPE})
    reasons = _refusal(report, tmp_path, recipes={"kabuild-hello": "8f" * 32})
    assert reasons["kabuild-hello"] == (f"its recipe changed since run {report.run_id} (the run built recipe "
                                        f"{RECIPE[:12]}, the PKGBUILD directory is now {'8f' * 6}); run reproduce again")
    assert _refusal(report, tmp_path, recipes={})["kabuild-hello"] == "no longer a package of the manifest"
    older = report_of({**_doc(e), "recipes": {}})
    assert "records no recipe digest for it" in _refusal(older, tmp_path, recipes={"kabuild-hello": RECIPE})[
        "kabuild-hello"]


def test_a_package_for_another_architecture_is_refused_naming_both(tmp_path):
    report = _report(_entry(tmp_path, "kabuild-hello"))  # an aarch64 file
    assert gate(report, tmp_path, LOCK, host=("demo", "aarch64"))
    reasons = _refusal(report, tmp_path, host=("demo", "x86_64"))
    assert reasons["kabuild-hello"] == ("kabuild-hello-1.0-1-aarch64.pkg.tar.zst is built for aarch64, but host demo "
                                        "is x86_64 (only x86_64 or any packages belong to it)")


def test_a_parity_failure_names_both_hashes(tmp_path):
    e = _entry(tmp_path, "kabuild-hello")
    e["reference"]["sha256"] = "ab" * 32
    e["parity"], e["verdict"] = False, "parity-failed"
    report = _report(e)
    reason = _refusal(report, tmp_path)["kabuild-hello"]
    assert f"reference sha256 {'ab' * 32}, build 1 sha256 {e['build1']['sha256']}" in reason
    (line,) = [p for p in problems(report) if "differs from the reference" in p]
    assert line == (f"kabuild-hello: differs from the reference (reference sha256 {'ab' * 32}, build 1 sha256 "
                    f"{e['build1']['sha256']})")


# --------------------------------------------------------------------------- the repository's architecture


def _package(d: Path, name: str, version: str, arch: str, pkginfo_arch: str | None = None) -> Candidate:
    """A pacman package file (xz) with a .PKGINFO, as repo-add and pacman read it."""
    file = d / f"{name}-{version}-{arch}.pkg.tar.xz"
    info = f"pkgname = {name}\npkgver = {version}\narch = {pkginfo_arch or arch}\n".encode()
    with tarfile.open(file, "w:xz") as tf:
        member = tarfile.TarInfo(".PKGINFO")
        member.size = len(info)
        tf.addfile(member, io.BytesIO(info))
    digest = digest_file(file)
    return Candidate(name, file, digest.sha256, digest.b2sum)


def test_a_repository_never_receives_a_package_of_another_architecture(tmp_path):
    live, new = tmp_path / "live", tmp_path / "new"
    live.mkdir()
    new.mkdir()
    _package(live, "hello", "1.0-1", "aarch64")
    x86 = _package(new, "hello", "1.0-2", "x86_64")
    with pytest.raises(RefusalError) as e:
        plan_for([x86], live, "demo")
    assert str(e.value) == ("hello-1.0-2-x86_64.pkg.tar.xz is built for x86_64, but repository demo holds aarch64 "
                            "packages (it already holds hello-1.0-1-aarch64.pkg.tar.xz); a repository never receives "
                            "a package of another architecture")
    with pytest.raises(RefusalError, match="holds aarch64 packages \\(the host's architecture\\)"):
        plan_for([x86], None, "demo", "aarch64")
    docs = _package(new, "hello-docs", "1.0-2", "any")
    arm = _package(new, "hello", "1.0-3", "aarch64")
    assert [f for _c, f, _p in plan_for([docs, arm], live, "demo", "aarch64").new] == [docs.path.name, arm.path.name]


def test_one_publish_cannot_mix_architectures_and_pkginfo_must_agree(tmp_path):
    a = _package(tmp_path, "one", "1-1", "x86_64")
    b = _package(tmp_path, "two", "1-1", "aarch64")
    with pytest.raises(RefusalError, match="two-1-1-aarch64.pkg.tar.xz is built for aarch64, but repository demo "
                                           "holds x86_64 packages \\(one-1-1-x86_64.pkg.tar.xz in this publish\\)"):
        plan_for([a, b], None, "demo")
    lying = _package(tmp_path, "three", "1-1", "aarch64", pkginfo_arch="x86_64")
    with pytest.raises(RefusalError, match=".PKGINFO says arch x86_64, the file name says aarch64"):
        plan_for([lying], None, "demo")
