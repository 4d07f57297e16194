"""Recorded references: what a package must be, byte for byte, and what built it.

``references/<host>/<package>/reference.yaml`` holds, per package file, its hashes
and size, the image (recipe hash, tag) and toolchain it was built with, and
optionally where the artifact itself is (a path beside the YAML, or a URL) so
diffoscope can show what changed.  ``.BUILDINFO`` and ``.PKGINFO`` are kept beside it.
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from . import __version__
from .errors import ChecksumError, KabuildError, RefusalError
from .files import atomic_write, digest_file
from .fleet import Source
from .run import run, tool_path
from .sources import SourceCache
from .yamlio import load_yaml, write_yaml

REF_SCHEMA = 1
MAX_STORED_ARTIFACT = 5 * 1024 * 1024  # larger artifacts are recorded by hash (and URL) only


@dataclass(frozen=True)
class Reference:
    package: str
    file: str
    sha256: str
    b2sum: str
    size: int
    image_recipe_hash: str
    image_tag: str
    toolchain: tuple[str, ...]
    artifact: str | None  # file name beside reference.yaml, or a URL
    yaml_path: Path

    def as_report(self, root: Path) -> dict:
        return {"sha256": self.sha256, "b2sum": self.b2sum, "size": self.size,
                "source": _rel(self.yaml_path, root)}


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def ref_dir(root: Path, host: str, package: str) -> Path:
    return root / "references" / host / package


def load(root: Path, host: str, package: str) -> dict[str, Reference]:
    """References of one package, by file name; empty when none is recorded."""
    path = ref_dir(root, host, package) / "reference.yaml"
    if not path.is_file():
        return {}
    data = load_yaml(path, _rel(path, root))
    out = {}
    for item in data.get("artifacts", []):
        out[item["file"]] = Reference(
            package=package, file=item["file"], sha256=item["sha256"], b2sum=item["b2sum"], size=item["size"],
            image_recipe_hash=data.get("image", {}).get("recipe_hash", ""),
            image_tag=data.get("image", {}).get("tag", ""),
            toolchain=tuple(data.get("toolchain", [])), artifact=item.get("artifact"), yaml_path=path,
        )
    return out


def artifact_path(ref: Reference) -> Path | None:
    """The reference artifact on disk (fetched and verified when it is a URL), or None."""
    if not ref.artifact:
        return None
    if urlparse(ref.artifact).scheme in ("http", "https", "file"):
        try:
            return SourceCache().fetch(Source(ref.artifact, ref.sha256, ref.b2sum), ref.yaml_path.parent).path
        except (KabuildError, OSError):  # an unreachable reference only costs the diffoscope view
            return None
    path = ref.yaml_path.parent / ref.artifact
    return path if path.is_file() else None


def toolchain_changes(reference: tuple[str, ...], current: tuple[str, ...]) -> list[str]:
    """'name old -> new', '+name ver', '-name ver' between two package lists."""
    def as_map(items):
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
    result = run([tool_path("bsdtar", "libarchive-tools"), "-xOf", str(pkg), name], check=False, text=False, timeout=300)
    return result.stdout if result.returncode == 0 else None


def record(root: Path, report: dict, run_dir: Path, *, store_artifacts: bool | None = None,
           artifact_url: str | None = None) -> list[Path]:
    """Record references from a run in which every package was reproducible; refuse otherwise."""
    bad = [f"{p['name']}: {p['verdict']}" for p in report["packages"] if not p.get("reproducible")]
    if bad or not report["packages"]:
        raise RefusalError(
            f"run {report['run_id']} is not reproducible ({'; '.join(bad) or 'no packages'}); "
            "references are recorded from reproducible runs only"
        )
    host = report["host"]
    by_package: dict[str, list[dict]] = {}
    for p in report["packages"]:
        by_package.setdefault(p["name"], []).append(p)
    written = []
    for package, entries in sorted(by_package.items()):
        d = ref_dir(root, host, package)
        d.mkdir(parents=True, exist_ok=True)
        artifacts = []
        for p in entries:
            src = run_dir / p["build1"]["path"]
            digest = digest_file(src)
            if digest.sha256 != p["build1"]["sha256"]:
                raise ChecksumError(f"{src}: sha256 {digest.sha256} is not the {p['build1']['sha256']} the report names")
            item = {"file": p["file"], **digest.as_dict()}
            keep = store_artifacts if store_artifacts is not None else digest.size <= MAX_STORED_ARTIFACT
            if artifact_url:
                item["artifact"] = artifact_url.rstrip("/") + "/" + p["file"]
            elif keep:
                tmp = d / f".{p['file']}.tmp"
                shutil.copyfile(src, tmp)
                os.replace(tmp, d / p["file"])
                item["artifact"] = p["file"]
            for member, out in ((".BUILDINFO", f"{p['file']}.BUILDINFO"), (".PKGINFO", f"{p['file']}.PKGINFO")):
                data = _member(src, member)
                if data is not None:
                    atomic_write(d / out, data)
            artifacts.append(item)
        recorded = {
            "schema": REF_SCHEMA,
            "kabuild_version": __version__,
            "host": host,
            "package": package,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "from_run": report["run_id"],
            "lock_hash": report["lock_hash"],
            "source_date_epoch": report["source_date_epoch"],
            "image": {k: report["image"][k] for k in ("tag", "recipe_hash", "flavor", "arch")},
            "toolchain": list(report.get("toolchain", [])),
            "artifacts": artifacts,
        }
        path = d / "reference.yaml"
        write_yaml(path, recorded)
        written.append(path)
    return written
