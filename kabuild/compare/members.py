"""Packages compared member by member: hash every member of both archives, name what differs.

A kernel package has thousands of members; diffoscope over the whole archive takes a long
time to say which of them differ.  Hashing every member first takes seconds and names the
culprits; diffoscope then only runs on those (see :mod:`kabuild.reproduce.runner`).  When no
member's content differs but the archives do, the comparison still says what differs:
member metadata, member order, or only the compression.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kabuild import tools
from kabuild.compare.differences import ArchiveDifference, MemberChange, MemberComparison
from kabuild.files import CHUNK, digest_file
from kabuild.process import run

MAX_NAMED = 20  # metadata / order changes kept in the report; the count says how many there were
DECOMPRESS_TIMEOUT = 1800


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: float
    linkname: str
    sha256: str | None  # regular files only


@dataclass(frozen=True)
class Archive:
    members: tuple[Member, ...]
    tar_sha256: str  # of the uncompressed tar stream


_KINDS = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.LNKTYPE: "hardlink"}


def tar_of(package: Path, scratch: Path) -> Path:
    """The uncompressed tar of a package (zstd through the zstd tool; tarfile reads the others)."""
    if package.name.endswith((".zst", ".zstd")):
        out = scratch / "stream.tar"
        run([tools.find("zstd"), "-q", "-d", "-c", "-o", str(out), "--", str(package)],
            timeout=DECOMPRESS_TIMEOUT)
        return out
    return package


def read_archive(package: Path, scratch: Path) -> Archive:
    tar = tar_of(package, scratch)
    members = []
    with tarfile.open(tar, mode="r:*") as tf:
        for info in tf:
            sha = None
            if info.isfile():
                h = hashlib.sha256()
                src = tf.extractfile(info)
                assert src is not None
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                sha = h.hexdigest()
            members.append(Member(info.name, _KINDS.get(info.type, "other"), info.mode, info.uid, info.gid,
                                  info.uname, info.gname, info.mtime, info.linkname, sha))
    stream = digest_file(tar).sha256 if tar != package else _decompressed_sha256(package)
    return Archive(tuple(members), stream)


def _decompressed_sha256(package: Path) -> str:
    import bz2
    import gzip
    import lzma

    opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(package.suffix)
    h = hashlib.sha256()
    with (opener(package, "rb") if opener else open(package, "rb")) as f:  # type: ignore[operator]
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _metadata(a: Member, b: Member) -> str | None:
    parts = []
    if a.mode != b.mode:
        parts.append(f"mode {a.mode:04o} -> {b.mode:04o}")
    if (a.uid, a.gid) != (b.uid, b.gid):
        parts.append(f"owner {a.uid}:{a.gid} -> {b.uid}:{b.gid}")
    if (a.uname, a.gname) != (b.uname, b.gname):
        parts.append(f"owner names {a.uname}:{a.gname} -> {b.uname}:{b.gname}")
    if a.mtime != b.mtime:
        parts.append(f"mtime {a.mtime:g} -> {b.mtime:g}")
    if a.linkname != b.linkname:
        parts.append(f"link target {a.linkname} -> {b.linkname}")
    return "; ".join(parts) or None


def compare_archives(a: Archive, b: Archive) -> MemberComparison:
    """What differs between two archives that are not byte-identical."""
    if a.tar_sha256 == b.tar_sha256:
        return MemberComparison(ArchiveDifference.COMPRESSION, members=len(a.members))
    first = {m.name: m for m in a.members}
    second = {m.name: m for m in b.members}
    content = sorted(n for n in first.keys() & second.keys()
                     if first[n].sha256 != second[n].sha256 or first[n].kind != second[n].kind)
    only1 = sorted(first.keys() - second.keys())
    only2 = sorted(second.keys() - first.keys())
    if content or only1 or only2:
        return MemberComparison(ArchiveDifference.CONTENT, tuple(content), tuple(only1), tuple(only2),
                                members=len(a.members))
    metadata = [MemberChange(m.name, what) for m in a.members if (what := _metadata(m, second[m.name]))]
    if metadata:
        return MemberComparison(ArchiveDifference.METADATA, metadata=tuple(metadata[:MAX_NAMED]),
                                members=len(a.members))
    order2 = {m.name: i for i, m in enumerate(b.members)}
    moved = [MemberChange(m.name, f"entry {i + 1} -> {order2[m.name] + 1}")
             for i, m in enumerate(a.members) if order2[m.name] != i]
    if moved:
        return MemberComparison(ArchiveDifference.ORDER, order=tuple(moved[:MAX_NAMED]), members=len(a.members))
    # Same members, bytes, metadata and order: only the tar headers themselves (pax records, padding).
    return MemberComparison(ArchiveDifference.METADATA,
                            metadata=(MemberChange("(tar headers)", "the archive headers differ, members do not"),),
                            members=len(a.members))


def compare_packages(first: Path, second: Path) -> MemberComparison:
    """Hash every member of both packages and say what differs (NONE when byte-identical)."""
    if digest_file(first) == digest_file(second):
        return MemberComparison(ArchiveDifference.NONE)
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-members-"))
    try:
        (scratch / "1").mkdir()
        (scratch / "2").mkdir()
        return compare_archives(read_archive(first, scratch / "1"), read_archive(second, scratch / "2"))
    except (tarfile.TarError, OSError, EOFError) as e:
        return MemberComparison(ArchiveDifference.UNKNOWN, error=f"{type(e).__name__}: {e}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract_members(package: Path, names: tuple[str, ...], into: Path) -> None:
    """Write the named regular-file members of a package under ``into`` (for diffoscope)."""
    into.mkdir(parents=True, exist_ok=True)
    wanted = set(names)
    with tempfile.TemporaryDirectory(prefix="kabuild-extract-") as scratch:
        tar = tar_of(package, Path(scratch))
        with tarfile.open(tar, mode="r:*") as tf:
            for info in tf:
                if info.name not in wanted:
                    continue
                target = into / _safe(info.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                if info.isfile():
                    src = tf.extractfile(info)
                    assert src is not None
                    with open(target, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                elif info.issym():
                    target.write_text(f"symlink -> {info.linkname}\n")
                else:
                    target.write_text(f"{_KINDS.get(info.type, 'other')} entry\n")


def _safe(name: str) -> str:
    """A member name as a relative path that cannot leave the extraction directory."""
    parts = [p for p in Path(name).parts if p not in ("", ".", "..", "/")]
    return "/".join(parts) or "_"
