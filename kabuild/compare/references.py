"""Recorded references: what a package must be, byte for byte, and what built it.

``references/<host>/<package>/reference.yaml`` holds, per package file, its hashes
and size, the image (recipe hash, tag) and toolchain it was built with, optionally
where the artifact itself is (a path beside the YAML, or a URL) so diffoscope can
show what changed, and the sha256 of its own content (``document_sha256``).
``.BUILDINFO`` and ``.PKGINFO`` are kept beside it.  A reference is evidence: the YAML
is a typed document (:class:`ReferenceDoc`), and a damaged, unreadable or hand-edited
one (the digest no longer matches, a stored artifact no longer hashes to what it
records) is one line naming the file and key, exit 3, never "no reference".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kabuild import __version__, tools
from kabuild.compare.acceptance import Report
from kabuild.config.document import HEX64, NAME, PKGFILE, ImageRecord, check_header, read_digest, yaml_section
from kabuild.config.manifest import Source
from kabuild.config.yamlio import write_yaml
from kabuild.errors import ChecksumError, ConfigError, DocumentError, KabuildError, RefusalError
from kabuild.files import Digest, atomic_write, digest_file
from kabuild.inputs.sources import SourceCache
from kabuild.process import run
from kabuild.timestamps import utc_now

REF_SCHEMA = 1
MAX_STORED_ARTIFACT = 5 * 1024 * 1024  # larger artifacts are recorded by hash (and URL) only


@dataclass(frozen=True)
class Reference:
    """One package file's reference, as reproduce checks parity against it."""

    package: str
    file: str
    digest: Digest
    image: ImageRecord
    toolchain: tuple[str, ...]
    artifact: str | None  # file name beside reference.yaml, or a URL
    yaml_path: Path
    index: int = 0  # its place in the document's artifacts list (errors name artifacts[index])
    display: str = ""  # reference.yaml as errors name it

    def source(self, root: Path) -> str:
        return _rel(self.yaml_path, root)

    def key(self, name: str) -> str:
        return f"{self.display or self.yaml_path}: artifacts[{self.index}].{name}"


@dataclass(frozen=True)
class ReferenceDoc:
    host: str
    package: str
    kabuild_version: str
    recorded_at: str
    from_run: str
    lock_hash: str
    source_date_epoch: int
    image: ImageRecord
    toolchain: tuple[str, ...]
    artifacts: tuple[tuple[str, Digest, str | None], ...]  # file, digest, artifact
    # as read back: the document_sha256 it records and that key's line (to_dict computes it afresh)
    recorded_sha256: str = field(default="", compare=False)
    recorded_line: int | None = field(default=None, compare=False)

    def content(self) -> dict[str, Any]:
        image = self.image.to_dict()
        image.pop("id")  # the engine's image id is local to one engine; the recipe hash names the image
        return {
            "schema": REF_SCHEMA, "kabuild_version": self.kabuild_version, "host": self.host,
            "package": self.package, "recorded_at": self.recorded_at, "from_run": self.from_run,
            "lock_hash": self.lock_hash, "source_date_epoch": self.source_date_epoch, "image": image,
            "toolchain": list(self.toolchain),
            "artifacts": [{"file": f, **d.as_dict(), **({"artifact": a} if a else {})} for f, d, a in self.artifacts],
        }

    @property
    def document_sha256(self) -> str:
        """sha256 of the canonical content: any hand edit or damage that still parses changes it."""
        text = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.content(), "document_sha256": self.document_sha256}


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def ref_dir(root: Path, host: str, package: str) -> Path:
    return root / "references" / host / package


def read_doc(path: Path, display: str) -> ReferenceDoc:
    top = yaml_section(path, display)
    check_header(top, schema=REF_SCHEMA)
    image = top.section("image")
    assert image is not None
    artifacts = []
    for s in top.items("artifacts"):
        file = str(s.text("file", pattern=PKGFILE, what="a package file name"))
        artifact = s.text("artifact", required=False, what="a file name beside reference.yaml, or a URL")
        if artifact is not None and urlparse(artifact).scheme not in ("http", "https", "file") and (
                "/" in artifact or artifact in (".", "..")):
            s.fail("artifact", f"expected a file name beside reference.yaml or an http(s)/file URL, got {artifact!r}")
        artifacts.append((file, read_digest(s), artifact))
        s.done()
    if not artifacts:
        top.fail("artifacts", "expected at least one artifact")
    doc = ReferenceDoc(
        host=str(top.text("host", pattern=NAME, what="a host name")),
        package=str(top.text("package", pattern=NAME, what="a package name")),
        kabuild_version=str(top.text("kabuild_version")), recorded_at=str(top.text("recorded_at")),
        from_run=str(top.text("from_run")),
        lock_hash=str(top.text("lock_hash", pattern=HEX64, what="64 lowercase hex digits")),
        source_date_epoch=int(top.integer("source_date_epoch", minimum=1) or 0),
        image=ImageRecord.from_section(image, need_id=False), toolchain=top.texts("toolchain"),
        artifacts=tuple(artifacts),
        recorded_sha256=str(top.text("document_sha256", pattern=HEX64, what="64 lowercase hex digits")),
        recorded_line=top.line_of("document_sha256"),
    )
    top.done()
    return doc


def _check_intact(doc: ReferenceDoc, display: str, root_hint: str) -> None:
    if doc.recorded_sha256 != doc.document_sha256:
        where = f"{display}:{doc.recorded_line}" if doc.recorded_line else display
        raise DocumentError(f"{where}: document_sha256: records {doc.recorded_sha256}, but the document hashes to "
                            f"{doc.document_sha256}: a reference edited by hand or damaged is not evidence; restore it "
                            f"or record it again (`kabuild reference record {root_hint}`)")


def load(root: Path, host: str, package: str) -> dict[str, Reference]:
    """References of one package, by file name; empty only when none was ever recorded.

    A reference is evidence: a reference.yaml that is damaged, unreadable, a dangling link, gone from a
    directory that still holds its files, or whose stored artifact does not hash to what it records
    (a hand-edited hash) is a DocumentError (exit 3) naming the file and the key, never "no reference"."""
    directory = ref_dir(root, host, package)
    path = directory / "reference.yaml"
    display = _rel(path, root)
    if not path.exists() and not path.is_symlink():
        left = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        if left:
            raise DocumentError(f"{display}: file not found, but {_rel(directory, root)}/ still holds "
                                f"{', '.join(left[:3])}{' …' if len(left) > 3 else ''}: a reference that lost its "
                                "record is not 'no reference'; restore reference.yaml or remove the directory")
        return {}
    doc = read_doc(path, display)
    if (doc.host, doc.package) != (host, package):
        raise DocumentError(f"{display}: host/package: records {doc.host}/{doc.package}, "
                            f"but it lies in references/{host}/{package}/")
    refs = {f: Reference(package, f, d, doc.image, doc.toolchain, a, path, i, display)
            for i, (f, d, a) in enumerate(doc.artifacts)}
    for ref in refs.values():
        _check_stored(ref)
    _check_intact(doc, display, host)
    return refs


def _is_url(artifact: str) -> bool:
    return urlparse(artifact).scheme in ("http", "https", "file")


def _check_stored(ref: Reference) -> None:
    """An artifact stored beside reference.yaml must be there and be what the document says it is."""
    if not ref.artifact or _is_url(ref.artifact):
        return
    path = ref.yaml_path.parent / ref.artifact
    try:
        actual = digest_file(path)
    except FileNotFoundError:
        raise DocumentError(f"{ref.key('artifact')}: names {ref.artifact} beside reference.yaml, which does "
                            "not exist") from None
    except OSError as e:
        raise DocumentError(f"{ref.key('artifact')}: {ref.artifact} cannot be read: {e.strerror or e}") from None
    for key in ("sha256", "b2sum", "size"):
        recorded, found = getattr(ref.digest, key), getattr(actual, key)
        if recorded != found:
            raise DocumentError(f"{ref.key(key)}: records {recorded}, but the stored artifact {ref.artifact} has "
                                f"{found} (a hand-edited reference or a damaged artifact is not evidence)")


def artifact_path(ref: Reference) -> Path | None:
    """The reference artifact on disk (fetched and verified when it is a URL), or None when it is not
    kept or cannot be fetched.  Bytes that do not match the reference are a DocumentError (exit 3)."""
    if not ref.artifact:
        return None
    if _is_url(ref.artifact):
        try:
            source = Source(ref.artifact, ref.digest.sha256, ref.digest.b2sum)
            return SourceCache().fetch(source, ref.yaml_path.parent).path
        except ChecksumError as e:
            raise DocumentError(f"{ref.key('artifact')}: {e}: the reference does not describe the artifact it "
                                "names") from None
        except (KabuildError, OSError):  # an unreachable reference only costs the diffoscope view
            return None
    _check_stored(ref)
    return ref.yaml_path.parent / ref.artifact


def toolchain_changes(reference: tuple[str, ...], current: tuple[str, ...]) -> list[str]:
    """'name old -> new', '+name ver', '-name ver' between two package lists."""
    def as_map(items: tuple[str, ...]) -> dict[str, str]:
        return dict((i.split(" ", 1) + [""])[:2] for i in items)
    a, b = as_map(reference), as_map(current)
    changes = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            changes.append(f"-{name} {a[name]}")
        elif name not in a:
            changes.append(f"+{name} {b[name]}")
        elif a[name] != b[name]:
            changes.append(f"{name} {a[name]} -> {b[name]}")
    return changes


def _member(pkg: Path, name: str) -> bytes | None:
    result = run([tools.find("bsdtar"), "-xOf", str(pkg), name], check=False, text=False,
                 timeout=300)
    return result.stdout if result.returncode == 0 else None


def _check_artifact_url(url: str) -> None:
    """--artifact-url must be what read_doc accepts back: an http(s) URL with a host, or file:///path."""
    try:
        parsed = urlparse(url)
    except ValueError as e:
        raise ConfigError(f"--artifact-url {url!r}: not a valid URL ({e})") from None
    if parsed.scheme in ("http", "https") and parsed.hostname:
        return
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and parsed.path.startswith("/"):
        return
    raise ConfigError(f"--artifact-url {url!r}: expected an http(s)://host/... or file:///path URL "
                      "(the directory the package files can be fetched from)")


def _built_for(pkginfo: bytes | None) -> str | None:
    """The ``arch`` a package's .PKGINFO declares."""
    for line in (pkginfo or b"").decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key.strip() == "arch":
            return value.strip()
    return None


def _check_arch(file: str, pkginfo: bytes | None, host: tuple[str, str]) -> None:
    """Only packages of the host's architecture (or ``any``) become its references."""
    name_arch = file.split(".pkg.tar", 1)[0].rsplit("-", 1)[-1]
    declared = _built_for(pkginfo)
    for what, arch in ((file, name_arch), (f"{file} (.PKGINFO)", declared)):
        if arch is not None and arch not in (host[1], "any"):
            raise RefusalError(f"{what} is built for {arch}, but host {host[0]} is {host[1]}: references are "
                               f"recorded for {host[1]} or any packages only")
    if declared is not None and declared != name_arch:
        raise RefusalError(f"{file}: .PKGINFO says arch {declared}, the file name says {name_arch}")


def record(root: Path, report: Report, run_dir: Path, *, store_artifacts: bool | None = None,
           artifact_url: str | None = None, host: tuple[str, str] | None = None) -> list[Path]:
    """Record references from a run in which every package was reproducible; refuse otherwise.

    ``host`` (name, architecture): the packages must be built for it (or be ``any``).  Everything is
    checked before the first file is written."""
    if artifact_url is not None:
        _check_artifact_url(artifact_url)
    tools.require("reference")
    bad = [f"{p.name}: {p.verdict}" for p in report.packages if not p.reproducible]
    if bad:
        raise RefusalError(f"run {report.run_id} is not reproducible ({'; '.join(bad)}); "
                           "references are recorded from reproducible runs only")
    by_package: dict[str, list] = {}
    for p in report.packages:
        by_package.setdefault(p.name, []).append(p)
    checked: dict[str, tuple[Path, Digest, dict[str, bytes | None]]] = {}
    for p in report.packages:
        assert p.build1 is not None and p.file is not None  # reproducible implies both builds
        src = run_dir / p.build1.path
        if not src.is_file():
            raise RefusalError(f"{src}: the package build 1 made in run {report.run_id} is missing; "
                               f"references are recorded from a run's own files (run `kabuild reproduce "
                               f"{report.host} --rebuild`)")
        digest = digest_file(src)
        if digest != p.build1.digest:
            raise ChecksumError(f"{src}: sha256 {digest.sha256} is not the {p.build1.digest.sha256} the report names")
        members = {m: _member(src, m) for m in (".BUILDINFO", ".PKGINFO")}
        if host is not None:
            _check_arch(p.file, members[".PKGINFO"], host)
        checked[p.file] = (src, digest, members)
    written = []
    for package, entries in sorted(by_package.items()):
        d = ref_dir(root, report.host, package)
        d.mkdir(parents=True, exist_ok=True)
        artifacts = []
        for p in entries:
            src, digest, members = checked[p.file]
            keep = store_artifacts if store_artifacts is not None else digest.size <= MAX_STORED_ARTIFACT
            artifact = None
            if artifact_url:
                artifact = artifact_url.rstrip("/") + "/" + p.file
            elif keep:
                tmp = d / f".{p.file}.tmp"
                shutil.copyfile(src, tmp)
                os.replace(tmp, d / p.file)
                artifact = p.file
            for member, out in ((".BUILDINFO", f"{p.file}.BUILDINFO"), (".PKGINFO", f"{p.file}.PKGINFO")):
                data = members[member]
                if data is not None:
                    atomic_write(d / out, data)
            artifacts.append((p.file, digest, artifact))
        # the image the package was really built in (its dependency layer, when it has one) and its
        # full package list: the toolchain parity is checked against later
        use = report.image_use(entries[0].image_id)
        image, toolchain = (use.image, use.packages) if use is not None else (report.image, report.toolchain)
        doc = ReferenceDoc(host=report.host, package=package, kabuild_version=__version__, recorded_at=utc_now(),
                           from_run=report.run_id, lock_hash=report.lock_hash,
                           source_date_epoch=report.source_date_epoch, image=image,
                           toolchain=toolchain, artifacts=tuple(artifacts))
        path = d / "reference.yaml"
        write_yaml(path, doc.to_dict())
        written.append(path)
    return written
