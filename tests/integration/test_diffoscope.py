"""The real diffoscope on small real .pkg.tar.zst archives made the way makepkg makes them (bsdtar + zstd).

Needs the Debian packages diffoscope-minimal (with python3-libarchive-c), zstd and
libarchive-tools (bsdtar); skipped with the reason when one is missing.  One test also
renders a report in headless Chromium when the chromium package is installed.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kabuild.compare import acceptance
from kabuild.compare.differences import ArchiveDifference, Comparison
from kabuild.compare.diffoscope import DiffStatus, diffoscope, same
from kabuild.compare.parity import DiffoscopeOptions, compare_pair
from kabuild.config.document import ImageRecord
from kabuild.files import digest_file
from kabuild.report import render as report

MISSING = [t for t in ("diffoscope", "bsdtar", "zstd") if not shutil.which(t)]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"missing host tools: {', '.join(MISSING)}"),
]

SDE = 1767225600
PKG = "kabuild-test-1.0-1-aarch64.pkg.tar.zst"


def make_pkg(path: Path, files: dict[str, str], *, builddate: int = SDE, reverse: bool = False,
             modes: dict[str, int] | None = None, level: int = 19) -> Path:
    """A minimal pacman package: .PKGINFO, .BUILDINFO, .MTREE and ``files``, all mtimes clamped."""
    root = path.parent / f".{path.name}.root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / ".PKGINFO").write_text(
        f"pkgname = kabuild-test\npkgbase = kabuild-test\npkgver = 1.0-1\npkgdesc = test\n"
        f"builddate = {builddate}\npackager = Unknown Packager\nsize = 42\narch = aarch64\n")
    (root / ".BUILDINFO").write_text(
        "format = 2\npkgname = kabuild-test\npkgver = 1.0-1\npkgarch = aarch64\nbuilddir = /build\n"
        "buildenv = !distcc\ninstalled = gcc-12.2.0-14-aarch64\n")
    for name, content in files.items():
        f = root / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    members = [".PKGINFO", ".BUILDINFO", *sorted({n.split("/")[0] for n in files})]
    for name, mode in (modes or {}).items():
        os.chmod(root / name, mode)
    for p in [root, *root.rglob("*")]:
        os.utime(p, (SDE, SDE), follow_symlinks=False)
    env = {**os.environ, "LANG": "C", "TZ": "UTC"}
    mtree = subprocess.run(
        ["bsdtar", "-cf", "-", "--format=mtree", "--uid", "0", "--gid", "0",
         "--options=!all,use-set,type,uid,gid,mode,time,size,sha256,link", *members],
        cwd=root, env=env, check=True, capture_output=True).stdout
    (root / ".MTREE").write_bytes(gzip.compress(mtree, mtime=0))
    os.utime(root / ".MTREE", (SDE, SDE))
    # The archive lists every entry explicitly (no recursion), so ``reverse`` really reverses it.
    entries = [".MTREE", ".PKGINFO", ".BUILDINFO"] + sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith("."))
    if reverse:
        entries = entries[:3] + entries[3:][::-1]
    tar = subprocess.run(["bsdtar", "-cf", "-", "-n", "--uid", "0", "--gid", "0", "--uname", "root", "--gname", "root",
                          "--no-fflags", *entries], cwd=root, env=env, check=True, capture_output=True).stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(subprocess.run(["zstd", "-c", "-T0", f"-{level}", "-q"], input=tar, check=True,
                                    capture_output=True).stdout)
    shutil.rmtree(root)
    return path


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"


def _pair(run_dir: Path, files1: dict[str, str], files2: dict[str, str], **kw) -> tuple[Path, Path]:
    return (make_pkg(run_dir / "build1" / PKG, files1, **kw), make_pkg(run_dir / "build2" / PKG, files2, **kw))


BASE = {"usr/share/kabuild-test/foo.txt": "hello world\n", "usr/share/kabuild-test/same.txt": "unchanged\n"}


def test_identical_builds_are_same(run_dir):
    a, b = _pair(run_dir, BASE, BASE)
    assert same(digest_file(a), digest_file(b)), "the helper builds byte-identical packages from identical input"
    out = run_dir / "diffoscope" / "kabuild-test" / "build1-vs-build2"
    r = diffoscope(a, b, out)
    assert r.status is DiffStatus.SAME
    assert r.files == () and r.html is r.text is r.json is r.error is None and not r.truncated
    assert out.is_dir()
    assert sorted(p.name for p in out.parent.iterdir()) == ["build1-vs-build2"]


def test_different_builds_name_the_inner_file(run_dir):
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/foo.txt": "hello there\n"})
    assert not same(digest_file(a), digest_file(b))
    out = run_dir / "diffoscope" / "kabuild-test" / "build1-vs-build2"
    r = diffoscope(a, b, out)
    assert r.status is DiffStatus.DIFFERENT, r
    assert "usr/share/kabuild-test/foo.txt" in r.files
    assert "usr/share/kabuild-test/same.txt" not in r.files
    assert set(r.files) <= {"usr/share/kabuild-test/foo.txt", ".MTREE"}, r.files  # .MTREE records foo's hash
    assert not any(f in ("file list", "") or f.endswith((".pkg.tar", "-content")) for f in r.files)
    for p in (r.html, r.text, r.json):
        assert p is not None and Path(p).is_file() and Path(p).is_relative_to(out)
    assert r.html == str(out / "html" / "index.html")
    assert "usr/share/kabuild-test/foo.txt" in Path(r.html).read_text()
    assert "+hello there" in Path(r.text).read_text()
    tree = json.loads(Path(r.json).read_text())
    assert tree["source1"] == f"build1/{PKG}" and tree["source2"] == f"build2/{PKG}"
    assert r.error is None and not r.truncated
    d = r.relative_to(run_dir).to_dict()
    assert d["html"] == "diffoscope/kabuild-test/build1-vs-build2/html/index.html"
    assert sorted(p.name for p in out.parent.iterdir()) == ["build1-vs-build2"], "no staging directory is left"
    # The HTML does not depend on files outside its directory (no jQuery symlink).
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_metadata_and_added_files(run_dir):
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/new.txt": "new\n"}, builddate=SDE)
    b2 = make_pkg(run_dir / "build3" / PKG, BASE, builddate=SDE + 1)
    r = diffoscope(a, b, run_dir / "d1")
    assert r.status is DiffStatus.DIFFERENT and "usr/share/kabuild-test/new.txt" in r.files
    r = diffoscope(a, b2, run_dir / "d2")
    assert r.status is DiffStatus.DIFFERENT and r.files == (".MTREE", ".PKGINFO"), r.files  # .MTREE hashes .PKGINFO


def test_rerun_replaces_previous_output(run_dir):
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/foo.txt": "hello there\n"})
    out = run_dir / "diffoscope" / "x"
    first = diffoscope(a, b, out)
    (out / "stale.txt").write_text("old")
    second = diffoscope(a, b, out)
    assert second == first
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["x"]
    third = diffoscope(a, a, out)
    assert third.status is DiffStatus.SAME and not (out / "html").exists()


def test_missing_input_is_an_error_not_an_exception(run_dir):
    a, _ = _pair(run_dir, BASE, BASE)
    r = diffoscope(a, run_dir / "build2" / "nope.pkg.tar.zst", run_dir / "d")
    assert r.status is DiffStatus.ERROR
    assert r.error and "\n" not in r.error and "nope.pkg.tar.zst" in r.error
    assert r.html is r.text is r.json is None
    assert (run_dir / "d" / "diffoscope.log").is_file()
    r = diffoscope(a, run_dir / "no-such-dir" / "nope.pkg.tar.zst", run_dir / "d")
    assert r.status is DiffStatus.ERROR and "nope.pkg.tar.zst" in r.error


def test_corrupt_archive_is_a_difference_without_inner_files(run_dir):
    # diffoscope cannot decompress a truncated .zst; it says so and compares the bytes:
    # that is data (the packages differ), not a crash.
    a, b = _pair(run_dir, BASE, BASE)
    b.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
    r = diffoscope(a, b, run_dir / "d")
    assert r.status is DiffStatus.DIFFERENT
    assert r.files == ()
    assert "zstd" in Path(r.text).read_text()


def test_impossible_timeout_is_an_error(run_dir):
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/foo.txt": "x\n"})
    out = run_dir / "d"
    r = diffoscope(a, b, out, timeout=0.001)
    assert r.status is DiffStatus.ERROR
    assert r.error == "diffoscope timed out after 0.001s"
    assert sorted(p.name for p in run_dir.iterdir()) == ["build1", "build2", "d"]


def test_size_limits_are_passed_and_reported(run_dir):
    big1 = "".join(f"line {i}\n" for i in range(6000))
    big2 = "".join(f"line {i} changed\n" for i in range(6000))
    a, b = _pair(run_dir, {"usr/share/kabuild-test/big.txt": big1}, {"usr/share/kabuild-test/big.txt": big2})
    r = diffoscope(a, b, run_dir / "small", max_report_size=30_000, max_text=4_000)
    assert r.status is DiffStatus.DIFFERENT and r.truncated
    assert "usr/share/kabuild-test/big.txt" in r.files
    html = "".join(p.read_text() for p in (run_dir / "small" / "html").glob("*.html"))
    assert "reached" in html  # diffoscope's own "Max ... reached" marker
    assert "Max text output size reached." in Path(r.text).read_text()
    html_bytes = sum(p.stat().st_size for p in (run_dir / "small" / "html").glob("*.html"))
    assert html_bytes < 200_000


def _report_for(run_dir: Path, a: Path, b: Path, comparison: Comparison) -> acceptance.Report:
    """The acceptance report a reproduce run writes for one not-reproducible package."""
    da, db = digest_file(a), digest_file(b)
    result = acceptance.PackageResult(
        name="kabuild-test", file=PKG, build1=acceptance.BuiltArtifact(da, f"build1/{PKG}", 1.0, "build1/x.log"),
        build2=acceptance.BuiltArtifact(db, f"build2/{PKG}", 1.0, "build2/x.log"), reproducible=False,
        verdict=acceptance.Verdict.NOT_REPRODUCIBLE, build1_vs_build2=comparison)
    node = acceptance.NodeUse("local", "local", False, "", 2)
    return acceptance.Report(
        kabuild_version="0.1.0", host="demo<script>", arch="aarch64", run_id="run-1", inputs_key="0" * 64,
        started_at="2026-11-22T00:00:00+00:00", finished_at="2026-11-22T00:00:01+00:00", duration=1.0,
        baseline=("kabuild-test", "1.0", "v1.0"), source_date_epoch=SDE, lock_hash="1" * 64, lock_path="x.lock",
        image=ImageRecord("kabuild/debian-aarch64:0123456789abcdef", "sha256:" + "0" * 64, "2" * 64, "debian",
                          "aarch64"),
        toolchain=(), build_mode=acceptance.BuildMode.EMULATED, node_arch="x86_64", build1_node=node,
        build2_node=node, same_engine=True, variations=("hostname",), control=acceptance.BuildConditions(()),
        experiment=acceptance.BuildConditions(()), packages=(result,))


def _compare(run_dir: Path, a: Path, b: Path, **opts) -> Comparison:
    return compare_pair(a, b, run_dir / "diffoscope" / "kabuild-test" / "build1-vs-build2", run_dir,
                        DiffoscopeOptions(**opts), lambda _m: None, "test")


def test_differing_members_are_named_and_only_they_go_through_diffoscope(run_dir):
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/foo.txt": "hello there\n"})
    c = _compare(run_dir, a, b)
    assert c.members.kind is ArchiveDifference.CONTENT
    # the file and the .MTREE that records its hash; nothing else
    assert c.members.content == (".MTREE", "usr/share/kabuild-test/foo.txt")
    assert c.diffoscope.status is DiffStatus.DIFFERENT and c.diffoscope.files == c.members.content
    text = (run_dir / c.diffoscope.text).read_text()
    assert "hello there" in text and "unchanged" not in text, "same.txt was not handed to diffoscope"
    assert (run_dir / c.diffoscope.html).is_file()
    whole = _compare(run_dir, a, b, whole=True)
    assert whole.diffoscope.status is DiffStatus.DIFFERENT and "packages" in whole.diffoscope.html


def test_member_order_only_is_named_as_such(run_dir):
    a, b = _pair(run_dir, {**BASE, "usr/share/kabuild-test/zzz.txt": "z\n"},
                 {**BASE, "usr/share/kabuild-test/zzz.txt": "z\n"})
    b = make_pkg(run_dir / "build2" / PKG, {**BASE, "usr/share/kabuild-test/zzz.txt": "z\n"}, reverse=True)
    assert not same(digest_file(a), digest_file(b))
    c = _compare(run_dir, a, b)
    assert c.members.kind is ArchiveDifference.ORDER, c.members
    assert c.members.content == () and c.diffoscope is None
    assert c.members.order[0].name.startswith("usr")
    text = report.render_text(_report_for(run_dir, a, b, c))
    assert "not reproducible: member order only, first at usr" in " ".join(text.split())


def test_member_metadata_only_is_named_as_such(run_dir):
    a = make_pkg(run_dir / "build1" / PKG, BASE)
    b = make_pkg(run_dir / "build2" / PKG, BASE, modes={"usr/share/kabuild-test/foo.txt": 0o664})
    c = _compare(run_dir, a, b)
    assert c.members.kind is ArchiveDifference.CONTENT  # .MTREE records the mode, so its bytes differ too
    assert c.members.content == (".MTREE",)
    text = report.render_text(_report_for(run_dir, a, b, c))
    assert "1 member(s) differ: .MTREE" in " ".join(text.split())


def test_compression_only_is_named_as_such(run_dir):
    a = make_pkg(run_dir / "build1" / PKG, BASE, level=19)
    b = make_pkg(run_dir / "build2" / PKG, BASE, level=1)
    assert not same(digest_file(a), digest_file(b))
    c = _compare(run_dir, a, b)
    assert c.members.kind is ArchiveDifference.COMPRESSION and c.diffoscope is None
    assert "compression only" in report.render_text(_report_for(run_dir, a, b, c))


def test_report_with_real_diffoscope_renders_in_chromium(run_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed (Debian package: chromium)")
    a, b = _pair(run_dir, BASE, {**BASE, "usr/share/kabuild-test/foo.txt": "<script>alert(1)</script>\n"})
    doc = _report_for(run_dir, a, b, _compare(run_dir, a, b))
    paths = report.write(run_dir, doc)
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          paths["html"].as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "REJECTED" in dom.stdout and "usr/share/kabuild-test/foo.txt" in dom.stdout
    assert 'href="diffoscope/kabuild-test/build1-vs-build2/members/html/index.html"' in dom.stdout
    assert "<script" not in dom.stdout.lower()
    assert (run_dir / "diffoscope/kabuild-test/build1-vs-build2/members/html/index.html").is_file()
