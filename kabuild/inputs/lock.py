"""manifest.lock: what promotion produced from which inputs, and what later steps recorded.

The lock lives in the per-host, per-baseline build directory
``build/<host>/<baseline_ref>/manifest.lock``.  Its promotion part is a pure function
of the inputs (no timestamps), so promoting twice gives the same bytes; later verbs
add their own blocks (``build:``, ``install:``) without touching the promotion part.

The lock is a typed document (:class:`Lock`): reading it validates every key, so a
damaged or hand-edited lock is one located line (exit 3), and :func:`integrity`
recomputes everything the promotion part records from the manifest and the files.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kabuild import __version__
from kabuild.config.document import HEX64, HEX128, read_digest, yaml_section
from kabuild.config.manifest import Manifest
from kabuild.config.schema import Section
from kabuild.config.yamlio import dump_yaml, write_yaml
from kabuild.errors import ConfigError, DriftError, KabuildError, LockError, ManifestError
from kabuild.files import Digest, digest_file
from kabuild.inputs import recipes as recipes_mod
from kabuild.inputs.patches import ApplyCheck, ApplyStatus, Promotion, promote
from kabuild.inputs.recipes import RecipePin
from kabuild.inputs.records import BuildBlock, InstallRecord

LOCK_SCHEMA = 1
PROMOTION_KEYS = ("schema", "kabuild_version", "host", "baseline", "inputs", "recipes", "output", "apply_check")


def build_dir(root: Path, manifest: Manifest) -> Path:
    return root / "build" / manifest.host / manifest.baseline.ref


def lock_path(root: Path, manifest: Manifest) -> Path:
    return build_dir(root, manifest) / "manifest.lock"


# --------------------------------------------------------------------------- the promotion part


@dataclass(frozen=True)
class SourcePin:
    url: str
    sha256: str | None
    b2sum: str | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("url", self.url), ("sha256", self.sha256), ("b2sum", self.b2sum)) if v}


@dataclass(frozen=True)
class BaselinePin:
    name: str
    version: str
    ref: str
    source_date_epoch: int
    sources: tuple[SourcePin, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref,
                "source_date_epoch": self.source_date_epoch, "sources": [s.to_dict() for s in self.sources]}


@dataclass(frozen=True)
class InputPin:
    path: str  # repository-relative
    sha256: str
    b2sum: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "b2sum": self.b2sum}


@dataclass(frozen=True)
class OutputPin:
    file: str  # the cumulative patch, beside the lock
    digest: Digest

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, **self.digest.as_dict()}


@dataclass(frozen=True)
class Promoted:
    """The promotion part: a pure function of the manifest, the series and the patches."""

    schema: int
    kabuild_version: str
    host: str
    baseline: BaselinePin
    inputs: tuple[InputPin, ...]
    output: OutputPin
    apply_check: ApplyCheck
    recipes: tuple[RecipePin, ...] = ()  # every package's PKGBUILD directory (kabuild.inputs.recipes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "kabuild_version": self.kabuild_version,
            "host": self.host,
            "baseline": self.baseline.to_dict(),
            "inputs": [i.to_dict() for i in self.inputs],
            "recipes": [r.to_dict() for r in self.recipes],
            "output": self.output.to_dict(),
            "apply_check": {"status": self.apply_check.status.value, "detail": self.apply_check.detail},
        }


def promoted(manifest: Manifest, promo: Promotion, check: ApplyCheck) -> Promoted:
    b = manifest.baseline
    return Promoted(
        schema=LOCK_SCHEMA,
        kabuild_version=__version__,
        host=manifest.host,
        baseline=BaselinePin(b.name, b.version, b.ref, b.source_date_epoch,
                             tuple(SourcePin(s.url, s.sha256, s.b2sum) for s in b.sources)),
        inputs=tuple(InputPin(i.path, i.digest.sha256, i.digest.b2sum) for i in promo.inputs),
        output=OutputPin(promo.filename, promo.digest),
        apply_check=check,
        recipes=recipes_mod.pins(manifest),
    )


# --------------------------------------------------------------------------- later blocks


# --------------------------------------------------------------------------- the lock


@dataclass(frozen=True)
class Lock:
    path: Path
    promoted: Promoted
    build: BuildBlock | None = None
    install: InstallRecord | None = None  # the last install on the board (kabuild.install.procedure)

    @property
    def output(self) -> OutputPin:
        return self.promoted.output

    def to_dict(self) -> dict[str, Any]:
        d = self.promoted.to_dict()
        if self.build is not None:
            d["build"] = self.build.to_dict()
        if self.install is not None:
            d["install"] = self.install.to_dict()
        return d

    @property
    def promotion_hash(self) -> str:
        """sha256 of the canonical promotion part: names exactly what was promoted."""
        return hashlib.sha256(dump_yaml(self.promoted.to_dict()).encode()).hexdigest()


def read_lock(path: Path, display: str | None = None) -> Lock | None:
    """The lock at ``path``, None when there is none; DocumentError (exit 3) when it is damaged."""
    if not path.exists() and not path.is_symlink():
        return None
    top = yaml_section(path, display or str(path))
    return lock_from_section(path, top)


def lock_from_section(path: Path, top: Section) -> Lock:
    schema = top.integer("schema", what=f"the lock schema version ({LOCK_SCHEMA})")
    if schema != LOCK_SCHEMA:
        top.fail("schema", f"this kabuild reads lock schema {LOCK_SCHEMA}, got {schema}; run `kabuild promote` again")
    b = top.section("baseline")
    assert b is not None
    sources = []
    for s in b.items("sources"):
        sources.append(SourcePin(str(s.text("url")),
                                 s.text("sha256", required=False, pattern=HEX64, what="64 lowercase hex digits"),
                                 s.text("b2sum", required=False, pattern=HEX128, what="128 lowercase hex digits")))
        s.done()
    baseline = BaselinePin(
        name=str(b.text("name")), version=str(b.text("version")), ref=str(b.text("ref")),
        source_date_epoch=int(b.integer("source_date_epoch", minimum=1) or 0), sources=tuple(sources))
    if not sources:
        b.fail("sources", "expected at least one source")
    b.done()
    inputs = []
    for s in top.items("inputs"):
        inputs.append(InputPin(str(s.text("path", what="a repository-relative path")),
                               str(s.text("sha256", pattern=HEX64, what="64 lowercase hex digits")),
                               str(s.text("b2sum", pattern=HEX128, what="128 lowercase hex digits"))))
        s.done()
    if "recipes" not in top.data:
        top.fail("recipes", "is missing: this lock was written before kabuild recorded the recipe digests; "
                 "run `kabuild promote` again")
    recipes = tuple(RecipePin.from_section(s) for s in top.items("recipes"))
    out = top.section("output")
    assert out is not None
    output = OutputPin(str(out.text("file", pattern=r"[^/]+", what="a file name beside the lock")), read_digest(out))
    out.done()
    ac = top.section("apply_check")
    assert ac is not None
    check = ApplyCheck(ac.choice("status", ApplyStatus), str(ac.text("detail")))
    ac.done()
    prom = Promoted(schema=LOCK_SCHEMA, kabuild_version=str(top.text("kabuild_version")),
                    host=str(top.text("host")), baseline=baseline, inputs=tuple(inputs), output=output,
                    apply_check=check, recipes=recipes)
    bs = top.section("build", required=False)
    build = BuildBlock.from_section(bs) if bs is not None else None
    ins = top.section("install", required=False)
    install = _read_install(ins) if ins is not None else None
    top.done()
    return Lock(path, prom, build, install)


def _read_install(sec: Section) -> InstallRecord:
    return InstallRecord.from_section(sec)


def write_lock(path: Path, record: Promoted, previous: Lock | None) -> Lock:
    """Write a freshly promoted lock; later blocks stay only while the output is the same bytes."""
    lock = Lock(path, record)
    if previous is not None and previous.output.digest.sha256 == record.output.digest.sha256:
        # the last build was of another recipe once a PKGBUILD changed: it no longer describes this lock
        same_recipes = recipes_mod.digests(previous.promoted.recipes) == recipes_mod.digests(record.recipes)
        lock = replace(lock, build=previous.build if same_recipes else None, install=previous.install)
    write_yaml(path, lock.to_dict())
    return lock


def with_build(lock: Lock, block: BuildBlock) -> Lock:
    updated = replace(lock, build=block)
    write_yaml(lock.path, updated.to_dict())
    return updated


def with_install(lock: Lock, record: InstallRecord) -> Lock:
    updated = replace(lock, install=record)
    write_yaml(lock.path, updated.to_dict())
    return updated


# --------------------------------------------------------------------------- integrity


class LockState(enum.StrEnum):
    MISSING = "missing"
    FRESH = "fresh"
    STALE = "stale"


@dataclass(frozen=True)
class Freshness:
    state: LockState
    reasons: tuple[str, ...] = ()


def integrity(root: Path, manifest: Manifest, lock: Lock | None) -> Freshness:
    """Recompute everything the promotion part records and name every field that differs."""
    if lock is None:
        return Freshness(LockState.MISSING, ("no manifest.lock: run `kabuild promote " + manifest.host + "`",))
    try:
        promo = promote(root, manifest)
        now = promoted(manifest, promo, lock.promoted.apply_check)
    except ManifestError as e:
        return Freshness(LockState.STALE, (str(e),))
    rec = lock.promoted
    reasons = _input_changes(rec.inputs, now.inputs)
    changed_inputs = bool(reasons)
    reasons += [f"recipe changed since promote: {c}" for c in recipes_mod.changes(rec.recipes, now.recipes)]
    for field, old, new in (
        ("host", rec.host, now.host),
        ("kabuild_version", rec.kabuild_version, now.kabuild_version),
        ("baseline.name", rec.baseline.name, now.baseline.name),
        ("baseline.version", rec.baseline.version, now.baseline.version),
        ("baseline.ref", rec.baseline.ref, now.baseline.ref),
        ("baseline.source_date_epoch", rec.baseline.source_date_epoch, now.baseline.source_date_epoch),
        ("baseline.sources", rec.baseline.sources, now.baseline.sources),
        ("output.file", rec.output.file, now.output.file),
        ("output.sha256", rec.output.digest.sha256, now.output.digest.sha256),
        ("output.b2sum", rec.output.digest.b2sum, now.output.digest.b2sum),
        ("output.size", rec.output.digest.size, now.output.digest.size),
    ):
        if old != new and not (field.startswith("output.") and changed_inputs):
            reasons.append(f"{field}: the lock says {_show(old)}, recomputed {_show(new)}")
    out = lock.path.parent / rec.output.file
    if not out.is_file():
        reasons.append(f"{rec.output.file}: cumulative patch missing")
    elif digest_file(out) != rec.output.digest:
        reasons.append(f"{rec.output.file}: differs from the hash recorded in manifest.lock")
    return Freshness(LockState.STALE if reasons else LockState.FRESH, tuple(reasons))


freshness = integrity  # the name the status and verify output use


def _input_changes(recorded: tuple[InputPin, ...], now: tuple[InputPin, ...]) -> list[str]:
    reasons = []
    old = {i.path: i for i in recorded}
    new = {i.path: i for i in now}
    for path in sorted(set(old) | set(new)):
        if path not in new:
            reasons.append(f"{path}: no longer an input")
        elif path not in old:
            reasons.append(f"{path}: new input")
        elif old[path].sha256 != new[path].sha256:
            reasons.append(f"{path}: changed (sha256 {old[path].sha256[:12]}… → {new[path].sha256[:12]}…)")
        elif old[path].b2sum != new[path].b2sum:
            reasons.append(f"inputs: {path}: the lock's b2sum differs from the file's")
    if not reasons and [i.path for i in recorded] != [i.path for i in now]:
        reasons.append("the order of the inputs changed")
    return reasons


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, SourcePin):
        return f"{value.url} sha256 {(value.sha256 or '-')[:12]}… b2sum {(value.b2sum or '-')[:12]}…"
    text = str(value)
    return repr(text[:12] + "…") if len(text) > 40 else repr(value)


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class Drift:
    package: str
    file: Path
    expected: str
    actual: str | None  # None: the copy is missing


def drift(manifest: Manifest, lock: Lock) -> tuple[list[Drift], list[str]]:
    """Compare each PKGBUILD-side copy of the cumulative patch with manifest.lock.

    Returns (drifted copies, packages without a copy to check).  A PKGBUILD directory
    that does not exist at all is a configuration error, not drift.
    """
    drifted, unchecked = [], []
    expected = lock.output.digest.sha256
    for index, pkg in enumerate(manifest.packages):
        if not pkg.pkgbuild.is_dir():  # with or without a patch copy: a typo is not "nothing to check"
            raise ConfigError(f"{manifest.display}: packages[{index}].pkgbuild: the directory "
                              f"{pkg.pkgbuild_display} does not exist (checked {pkg.pkgbuild})")
        if pkg.patch is None:
            unchecked.append(pkg.name)
            continue
        copy = pkg.pkgbuild / pkg.patch
        actual = digest_file(copy).sha256 if copy.is_file() else None
        if actual != expected:
            drifted.append(Drift(pkg.name, copy, expected, actual))
    return drifted, unchecked


def require_verified(root: Path, manifest: Manifest) -> Lock:
    """The check every verb after promote runs first: lock present, intact and fresh, no drift."""
    path = lock_path(root, manifest)
    lock = read_lock(path, display_path(root, path))
    recipes_mod.require_directories(manifest)
    fresh = integrity(root, manifest, lock)
    if fresh.state is LockState.MISSING or lock is None:
        raise LockError(f"{manifest.host}: manifest.lock is missing; run `kabuild promote {manifest.host}` first")
    if fresh.state is LockState.STALE:
        raise LockError(
            f"{manifest.host}: manifest.lock is stale ({'; '.join(fresh.reasons)}); run `kabuild promote {manifest.host}`"
        )
    drifted, _ = drift(manifest, lock)
    if drifted:
        source = lock.path.parent / lock.output.file
        raise DriftError(
            f"{manifest.host}: PKGBUILD patch drift: "
            + "; ".join(f"{d.file}: expected sha256 {d.expected}, got {d.actual or 'missing file'}" for d in drifted)
            + f" (the lock is the truth: copy {source} over "
            + ", ".join(str(d.file) for d in drifted)
            + f", or change the series and run `kabuild promote {manifest.host}`)"
        )
    return lock


def read_for(root: Path, manifest: Manifest) -> Lock | None:
    """The host's lock, for verbs that only look at it (status); damaged -> DocumentError."""
    path = lock_path(root, manifest)
    return read_lock(path, display_path(root, path))


def read_replaceable(root: Path, manifest: Manifest) -> Lock | None:
    """The previous lock for promote, which can always replace a damaged one."""
    try:
        return read_for(root, manifest)
    except KabuildError:
        return None


def display_path(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
