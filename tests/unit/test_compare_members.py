"""kabuild.compare.members: packages compared member by member, on real archives (tar, zstd)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from kabuild.compare.differences import ArchiveDifference
from kabuild.compare.members import MAX_NAMED, compare_packages, extract_members, read_archive

BASE = {".PKGINFO": b"pkgname = x\n", "usr/bin/x": b"\x7fELF binary", "usr/share/x/a.txt": b"alpha\n"}


def _tar(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None,
         order: list[str] | None = None, mtime: int = 1767225600) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in order or sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(members[name]), mtime
            info.mode = (modes or {}).get(name, 0o644)
            tf.addfile(info, io.BytesIO(members[name]))
    return path


def _zst(tar: Path, level: int = 19) -> Path:
    out = tar.with_name(tar.name + ".zst")
    subprocess.run(["zstd", "-q", "-f", f"-{level}", "-o", str(out), str(tar)], check=True)
    return out


def _pkg(tmp_path: Path, name: str, members: dict[str, bytes], **kw) -> Path:
    return _zst(_tar(tmp_path / f"{name}.pkg.tar", members, **kw))


def test_identical_packages(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    assert compare_packages(a, a).kind is ArchiveDifference.NONE


def test_content_names_exactly_the_members_that_differ(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    b = _pkg(tmp_path, "b", {**BASE, "usr/share/x/a.txt": b"beta\n"})
    c = compare_packages(a, b)
    assert c.kind is ArchiveDifference.CONTENT and c.content == ("usr/share/x/a.txt",)
    assert c.culprits == ("usr/share/x/a.txt",) and c.members == 3
    assert c.summary() == "1 member(s) differ: usr/share/x/a.txt"


def test_members_on_one_side_only(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    b = _pkg(tmp_path, "b", {**BASE, "usr/share/x/new": b"n"})
    c = compare_packages(a, b)
    assert c.kind is ArchiveDifference.CONTENT and c.content == () and c.only_in_second == ("usr/share/x/new",)
    assert compare_packages(b, a).only_in_first == ("usr/share/x/new",)


def test_metadata_only(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    b = _pkg(tmp_path, "b", BASE, modes={"usr/bin/x": 0o755})
    c = compare_packages(a, b)
    assert c.kind is ArchiveDifference.METADATA and c.content == ()
    assert [(m.name, m.what) for m in c.metadata] == [("usr/bin/x", "mode 0644 -> 0755")]


def test_order_only(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    b = _pkg(tmp_path, "b", BASE, order=[".PKGINFO", "usr/share/x/a.txt", "usr/bin/x"])
    c = compare_packages(a, b)
    assert c.kind is ArchiveDifference.ORDER
    assert [(m.name, m.what) for m in c.order] == [("usr/bin/x", "entry 2 -> 3"), ("usr/share/x/a.txt", "entry 3 -> 2")]


def test_compression_only(tmp_path):
    tar = _tar(tmp_path / "a.pkg.tar", BASE)
    fast = _zst(tar, 1)
    slow = tmp_path / "b.pkg.tar.zst"
    subprocess.run(["zstd", "-q", "-f", "-19", "-o", str(slow), str(tar)], check=True)
    assert fast.read_bytes() != slow.read_bytes()
    assert compare_packages(fast, slow).kind is ArchiveDifference.COMPRESSION


def test_many_metadata_changes_are_capped_and_counted(tmp_path):
    many = {f"usr/share/x/{i:03d}": b"x" for i in range(MAX_NAMED + 5)}
    a = _pkg(tmp_path, "a", many)
    b = _pkg(tmp_path, "b", many, mtime=1767225601)
    c = compare_packages(a, b)
    assert c.kind is ArchiveDifference.METADATA and len(c.metadata) == MAX_NAMED and c.members == MAX_NAMED + 5


def test_an_unreadable_package_is_unknown_with_the_reason(tmp_path):
    a = _pkg(tmp_path, "a", BASE)
    broken = tmp_path / "broken.pkg.tar.xz"
    broken.write_bytes(b"not an archive")
    c = compare_packages(a, broken)
    assert c.kind is ArchiveDifference.UNKNOWN and c.error and "not comparable" in c.summary()


def test_read_archive_hashes_files_and_the_uncompressed_stream(tmp_path):
    tar = _tar(tmp_path / "a.pkg.tar", BASE)
    archive = read_archive(_zst(tar), tmp_path)
    import hashlib

    assert archive.tar_sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()
    by_name = {m.name: m for m in archive.members}
    assert by_name["usr/share/x/a.txt"].sha256 == hashlib.sha256(b"alpha\n").hexdigest()


@pytest.mark.parametrize("evil", ["../../outside", "/abs/outside", "./a/../../outside"])
def test_extract_members_never_writes_outside_its_directory(tmp_path, evil):
    pkg = _pkg(tmp_path, "a", {**BASE, evil: b"gotcha"})
    into = tmp_path / "into"
    extract_members(pkg, (evil, "usr/bin/x"), into)
    assert (into / "usr/bin/x").read_bytes() == b"\x7fELF binary"
    assert not (tmp_path / "outside").exists() and not Path("/abs/outside").exists()
    written = [p for p in into.rglob("*") if p.is_file()]
    assert all(into in p.parents for p in written) and any(p.read_bytes() == b"gotcha" for p in written)
