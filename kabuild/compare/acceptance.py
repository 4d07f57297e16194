"""The acceptance report as a typed document: what one reproduce run found, package by package.

:mod:`kabuild.reproduce.runner` builds a :class:`Report`; :mod:`kabuild.report.render` renders it (JSON,
Markdown, HTML, terminal); the publish gate and ``kabuild reference record`` read it back
with :func:`load`, which validates every key (a damaged report is one located line,
exit 3, in every verb).  Paths inside the document are relative to the run directory.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kabuild.build.variations import Row
from kabuild.compare.differences import Comparison
from kabuild.compare.explanation import Explanation
from kabuild.config.document import (
    HEX64,
    NAME,
    PKGFILE,
    ImageRecord,
    check_header,
    dict_section,
    read_digest,
    read_json,
    run_path,
)
from kabuild.config.schema import Section
from kabuild.errors import DocumentError, ExitCode
from kabuild.files import Digest, atomic_write

SCHEMA = 3  # 3: evidence (explanation), culprit rebuild counts and the null hypothesis, timings, variation rows
KIND = "kabuild-acceptance-report"
FILENAME = "report.json"


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    NOT_REPRODUCIBLE = "not-reproducible"
    PARITY_FAILED = "parity-failed"
    NO_REFERENCE = "no-reference"
    BUILD_FAILED = "build-failed"


VERDICT_TEXT = {
    Verdict.ACCEPTED: "reproducible and bit-identical to the reference",
    Verdict.NOT_REPRODUCIBLE: "build 1 and build 2 differ",
    Verdict.PARITY_FAILED: "reproducible, but differs from the reference",
    Verdict.NO_REFERENCE: "reproducible; no reference to compare with",
    Verdict.BUILD_FAILED: "the build failed",
}


class RunVerdict(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class BuildMode(enum.StrEnum):
    NATIVE = "native"  # the node's own architecture
    EMULATED = "emulated"  # a foreign architecture through qemu-user binfmt
    CROSS = "cross"  # the node's architecture with the target's cross toolchain


# --------------------------------------------------------------------------- a package


@dataclass(frozen=True)
class BuiltArtifact:
    digest: Digest
    path: str  # relative to the run directory
    duration: float
    log: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.digest.as_dict(), "path": self.path, "duration": self.duration, "log": self.log}

    @classmethod
    def from_section(cls, sec: Section) -> BuiltArtifact:
        a = cls(read_digest(sec), str(run_path(sec, "path", required=True)),
                float(sec.number("duration", minimum=0) or 0.0), str(run_path(sec, "log", required=True)))
        sec.done()
        return a


@dataclass(frozen=True)
class ReferenceSeen:
    digest: Digest
    source: str  # the reference.yaml it came from

    def to_dict(self) -> dict[str, Any]:
        return {**self.digest.as_dict(), "source": self.source}

    @classmethod
    def from_section(cls, sec: Section) -> ReferenceSeen:
        r = cls(read_digest(sec), str(sec.text("source")))
        sec.done()
        return r


@dataclass(frozen=True)
class ToolchainCheck:
    matches_reference: bool | None = None
    changed: tuple[str, ...] = ()
    reference_image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"matches_reference": self.matches_reference, "changed": list(self.changed),
                "reference_image": self.reference_image}

    @classmethod
    def from_section(cls, sec: Section) -> ToolchainCheck:
        t = cls(sec.optional_flag("matches_reference"), sec.texts("changed"),
                sec.text("reference_image", required=False))
        sec.done()
        return t


TESTED = ("same", "differs", "build-failed")


@dataclass(frozen=True)
class Culprits:
    """Culprit finding by rebuilding (``--find-culprit``): what was rebuilt and what it showed."""

    variations: tuple[str, ...]  # named by a rebuild
    tested: tuple[tuple[str, str], ...]  # (what was varied: "none", "hostname", "hostname+domain", result)
    nondeterministic: bool = False  # the rebuild with no variation already differed: nothing is blamed
    builds: int = 0  # rebuilds this search cost
    from_evidence: tuple[str, ...] = ()  # named from evidence and not rebuilt (without --confirm-culprits)
    evidence: Explanation | None = None  # build 1 against the rebuild with no variation, when it differed

    def to_dict(self) -> dict[str, Any]:
        return {"variations": list(self.variations),
                "tested": [{"varied": k, "result": v} for k, v in self.tested],  # a list: the search's order
                "nondeterministic": self.nondeterministic, "builds": self.builds,
                "from_evidence": list(self.from_evidence),
                "evidence": self.evidence.to_dict() if self.evidence is not None else None}

    @classmethod
    def from_section(cls, sec: Section) -> Culprits:
        tested = []
        for t in sec.items("tested", required=False):
            if t.text("result") not in TESTED:
                t.fail("result", f"expected same, differs or build-failed, got {t.text('result')!r}")
            tested.append((str(t.text("varied")), str(t.text("result"))))
            t.done()
        ev = sec.section("evidence", required=False)
        c = cls(sec.texts("variations"), tuple(tested), sec.flag("nondeterministic"),
                int(sec.integer("builds", minimum=0, required=False) or 0), sec.texts("from_evidence"),
                Explanation.from_section(ev) if ev is not None else None)
        sec.done()
        return c


@dataclass(frozen=True)
class PackageResult:
    name: str
    file: str | None
    build1: BuiltArtifact | None
    build2: BuiltArtifact | None
    reproducible: bool
    verdict: Verdict
    reference: ReferenceSeen | None = None
    parity: bool | None = None
    build1_vs_build2: Comparison | None = None
    build1_vs_reference: Comparison | None = None
    toolchain: ToolchainCheck = field(default_factory=ToolchainCheck)
    culprits: Culprits | None = None
    error: str | None = None
    image_id: str | None = None  # the image both builds used (base + dependency layer): Report.images
    explanation: Explanation | None = None  # build 1 vs build 2 explained from their bytes

    @property
    def label(self) -> str:
        """The package as a reader knows it: the file's pkgname (the split packages of one PKGBUILD
        share ``name``, their recipe's), else ``name``."""
        if self.file and self.file.count("-") >= 3:
            return self.file.rsplit("-", 3)[0]
        return self.name

    def to_dict(self) -> dict[str, Any]:
        def opt(x: Any) -> Any:
            return x.to_dict() if x is not None else None
        return {"name": self.name, "file": self.file, "build1": opt(self.build1), "build2": opt(self.build2),
                "reproducible": self.reproducible, "verdict": str(self.verdict), "reference": opt(self.reference),
                "parity": self.parity, "build1_vs_build2": opt(self.build1_vs_build2),
                "build1_vs_reference": opt(self.build1_vs_reference), "toolchain": self.toolchain.to_dict(),
                "culprits": opt(self.culprits), "error": self.error, "image_id": self.image_id,
                "explanation": opt(self.explanation)}

    @classmethod
    def from_section(cls, sec: Section) -> PackageResult:
        def sub(key: str, kind: Any) -> Any:
            s = sec.section(key, required=False)
            return kind.from_section(s) if s is not None else None
        tc = sec.section("toolchain", required=False)
        p = cls(
            name=str(sec.text("name", pattern=r"[a-z0-9][a-z0-9._+-]*", what="a package name")),
            file=sec.text("file", required=False, pattern=PKGFILE, what="a package file name"),
            build1=sub("build1", BuiltArtifact), build2=sub("build2", BuiltArtifact),
            reproducible=sec.flag("reproducible"),
            verdict=sec.choice("verdict", Verdict),
            reference=sub("reference", ReferenceSeen), parity=sec.optional_flag("parity"),
            build1_vs_build2=sub("build1_vs_build2", Comparison),
            build1_vs_reference=sub("build1_vs_reference", Comparison),
            toolchain=ToolchainCheck.from_section(tc) if tc is not None else ToolchainCheck(),
            culprits=sub("culprits", Culprits), error=sec.text("error", required=False, controls=True),
            image_id=sec.text("image_id", required=False, pattern=IMAGE_ID, what="an image id (sha256:…)"),
            explanation=sub("explanation", Explanation),
        )
        sec.done()
        if p.verdict is not verdict_of(p):
            sec.fail("verdict", f"{p.verdict} contradicts the package's own facts (they say {verdict_of(p)})")
        return p


def verdict_of(p: PackageResult) -> Verdict:
    """The verdict the facts of one package imply."""
    if p.build1 is None or p.build2 is None:
        return Verdict.BUILD_FAILED
    if not p.reproducible:
        return Verdict.NOT_REPRODUCIBLE
    if p.parity is False:
        return Verdict.PARITY_FAILED
    if p.parity is None:
        return Verdict.NO_REFERENCE
    return Verdict.ACCEPTED


def overall(packages: tuple[PackageResult, ...] | list[PackageResult]) -> tuple[RunVerdict, int]:
    """The run's verdict and exit code from its packages' verdicts."""
    if any(p.verdict is Verdict.BUILD_FAILED for p in packages):
        return RunVerdict.REJECTED, int(ExitCode.BUILD_FAILED)
    if packages and all(p.verdict in (Verdict.ACCEPTED, Verdict.NO_REFERENCE) for p in packages):
        return RunVerdict.ACCEPTED, int(ExitCode.OK)
    return RunVerdict.REJECTED, int(ExitCode.NOT_REPRODUCIBLE)


# --------------------------------------------------------------------------- the run

IMAGE_ID = r"sha256:[0-9a-f]{64}"


@dataclass(frozen=True)
class ImageUse:
    """An image the builds really used (the base image, or its dependency layer) and everything
    installed in it, with versions: the toolchain."""

    image: ImageRecord
    packages: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.image.to_dict(), "packages": list(self.packages)}

    @classmethod
    def from_section(cls, sec: Section) -> ImageUse:
        packages = sec.texts("packages")  # read first: ImageRecord's reader closes the section
        image = ImageRecord.from_section(sec)
        if not re.fullmatch(IMAGE_ID, image.id):
            sec.fail("id", f"expected an image id (sha256:…), got {image.id!r}")
        return cls(image, packages)


@dataclass(frozen=True)
class NodeUse:
    node: str
    requested: str
    fell_back: bool
    reason: str = ""
    cpus: int | None = None  # CPUs the engine has

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "requested": self.requested, "fell_back": self.fell_back,
                "reason": self.reason or None, "cpus": self.cpus}

    @classmethod
    def from_section(cls, sec: Section) -> NodeUse:
        n = cls(str(sec.text("node")), str(sec.text("requested")), sec.flag("fell_back"),
                sec.text("reason", required=False, default="", controls=True) or "",
                sec.integer("cpus", required=False, minimum=1))
        sec.done()
        return n


@dataclass(frozen=True)
class BuildConditions:
    """What one build ran under (the varied fields of its spec)."""

    values: tuple[tuple[str, Any], ...]  # sorted by key: the JSON form is sorted too

    @classmethod
    def of(cls, mapping: dict[str, Any]) -> BuildConditions:
        return cls(tuple(sorted(mapping.items())))

    def get(self, key: str) -> Any:
        return dict(self.values).get(key)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_section(cls, sec: Section) -> BuildConditions:
        out = []
        for key, value in sec.data.items():
            sec.seen.add(key)
            if not isinstance(key, str):
                sec.fail(str(key), "expected a string key")
            if isinstance(value, dict):
                if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                    sec.fail(key, "expected a mapping of strings")
            elif value is not None and not isinstance(value, (str, int)):
                sec.fail(key, f"expected a string or a number, got {type(value).__name__}")
            out.append((key, value))
        return cls(tuple(sorted(out)))


@dataclass(frozen=True)
class Report:
    kabuild_version: str
    host: str
    arch: str
    run_id: str
    inputs_key: str
    started_at: str
    finished_at: str
    duration: float
    baseline: tuple[str, str, str]  # name, version, ref
    source_date_epoch: int
    lock_hash: str
    lock_path: str
    image: ImageRecord
    toolchain: tuple[str, ...]
    build_mode: BuildMode
    node_arch: str  # the architecture of the engine(s) that built
    build1_node: NodeUse
    build2_node: NodeUse
    same_engine: bool
    variations: tuple[str, ...]
    control: BuildConditions
    experiment: BuildConditions
    packages: tuple[PackageResult, ...]
    answered_from: str | None = None
    notes: tuple[str, ...] = ()
    completed: bool = True
    recipes: tuple[tuple[str, str], ...] = ()  # (package, digest of its PKGBUILD directory), sorted
    images: tuple[ImageUse, ...] = ()  # every image the builds used, by id (PackageResult.image_id)
    changes: tuple[Row, ...] = ()  # each applied variation: what it sets, both builds' values
    timings: tuple[tuple[str, float], ...] = ()  # (phase, seconds) in the order they ran

    def recipe_of(self, package: str) -> str | None:
        return dict(self.recipes).get(package)

    def image_use(self, image_id: str | None) -> ImageUse | None:
        return next((u for u in self.images if u.image.id == image_id), None)

    @property
    def verdict(self) -> RunVerdict:
        return overall(self.packages)[0]

    @property
    def exit_code(self) -> int:
        return overall(self.packages)[1]

    def to_dict(self) -> dict[str, Any]:
        name, version, ref = self.baseline
        return {
            "schema": SCHEMA, "kind": KIND, "kabuild_version": self.kabuild_version, "host": self.host,
            "arch": self.arch, "run_id": self.run_id, "inputs_key": self.inputs_key, "completed": self.completed,
            "started_at": self.started_at, "finished_at": self.finished_at, "duration": self.duration,
            "baseline": {"name": name, "version": version, "ref": ref},
            "source_date_epoch": self.source_date_epoch, "lock_hash": self.lock_hash, "lock_path": self.lock_path,
            "recipes": dict(self.recipes), "image": self.image.to_dict(), "toolchain": list(self.toolchain),
            "images": [u.to_dict() for u in self.images],
            "build_mode": {"mode": str(self.build_mode), "target_arch": self.arch, "node_arch": self.node_arch},
            "nodes": {"build1": self.build1_node.to_dict(), "build2": self.build2_node.to_dict(),
                      "same_engine": self.same_engine},
            "variations": {"applied": list(self.variations), "control": self.control.to_dict(),
                           "experiment": self.experiment.to_dict(),
                           "changes": [{"name": r.name, "sets": r.sets, "control": r.control,
                                        "experiment": r.experiment} for r in self.changes]},
            "timings": [{"phase": p, "seconds": t} for p, t in self.timings],
            "answered_from": self.answered_from,
            "packages": [p.to_dict() for p in self.packages],
            "verdict": str(self.verdict), "exit_code": self.exit_code, "notes": list(self.notes),
        }


def from_section(top: Section) -> Report:
    check_header(top, schema=SCHEMA, kind=KIND)
    b = top.section("baseline")
    baseline = (str(b.text("name")), str(b.text("version")), str(b.text("ref")))
    b.done()
    mode = top.section("build_mode")
    build_mode = mode.choice("mode", BuildMode)
    node_arch = str(mode.text("node_arch"))
    target = str(mode.text("target_arch"))
    mode.done()
    nodes = top.section("nodes")
    n1, n2 = NodeUse.from_section(nodes.section("build1")), NodeUse.from_section(nodes.section("build2"))
    same_engine = nodes.flag("same_engine")
    nodes.done()
    var = top.section("variations")
    applied = var.texts("applied")
    control, experiment = (BuildConditions.from_section(var.section("control")),
                           BuildConditions.from_section(var.section("experiment")))
    changes = []
    for r in var.items("changes", required=False):
        changes.append(Row(str(r.text("name")), str(r.text("sets")), str(r.text("control")),
                           str(r.text("experiment"))))
        r.done()
    var.done()
    timings = []
    for t in top.items("timings", required=False):
        timings.append((str(t.text("phase")), float(t.number("seconds", minimum=0))))
        t.done()
    recipes = []
    rs = top.section("recipes")
    for name, digest in rs.data.items():
        rs.seen.add(name)
        if not isinstance(digest, str) or not re.fullmatch(HEX64, digest):
            rs.fail(str(name), f"expected the recipe's digest (64 lowercase hex digits), got {digest!r}")
        recipes.append((str(name), digest))
    packages = tuple(PackageResult.from_section(s) for s in top.items("packages"))
    images = tuple(ImageUse.from_section(s) for s in top.items("images", required=False))
    for i, p in enumerate(packages):
        if p.image_id is not None and not any(u.image.id == p.image_id for u in images):
            top.fail("packages", f"item {i}: image_id {p.image_id} is not one of the report's images")
    if not packages:
        top.fail("packages", "expected at least one package (an empty report proves nothing)")
    report = Report(
        kabuild_version=str(top.text("kabuild_version")), host=str(top.text("host", pattern=NAME, what="a host name")),
        arch=str(top.text("arch")), run_id=str(top.text("run_id", pattern=r"[A-Za-z0-9._-]+", what="a run id")),
        inputs_key=str(top.text("inputs_key", pattern=HEX64, what="64 lowercase hex digits")),
        started_at=str(top.text("started_at")), finished_at=str(top.text("finished_at")),
        duration=float(top.number("duration", minimum=0) or 0.0), baseline=baseline,
        source_date_epoch=int(top.integer("source_date_epoch", minimum=1) or 0),
        lock_hash=str(top.text("lock_hash", pattern=HEX64, what="64 lowercase hex digits")),
        lock_path=str(top.text("lock_path")), image=ImageRecord.from_section(top.section("image")),
        toolchain=top.texts("toolchain"), build_mode=build_mode, node_arch=node_arch,
        build1_node=n1, build2_node=n2, same_engine=same_engine, variations=applied, control=control,
        experiment=experiment, packages=packages, answered_from=top.text("answered_from", required=False),
        notes=top.texts("notes", controls=True), completed=top.flag("completed"), recipes=tuple(sorted(recipes)),
        images=images, changes=tuple(changes), timings=tuple(timings),
    )
    if target != report.arch:
        mode.fail("target_arch", f"expected the report's arch {report.arch!r}, got {target!r}")
    for key, value in (("verdict", str(report.verdict)), ("exit_code", report.exit_code)):
        found = top.text(key) if key == "verdict" else top.integer(key)
        if found != value:
            top.fail(key, f"{found!r} contradicts the packages' verdicts (they say {value!r})")
    top.done()
    return report


def check_origin(report: Report, host: str, ref: str, display: str) -> Report:
    """A report read from build/<host>/<ref>/runs/ must be about that host and baseline: a copied or
    hand-edited one would otherwise record references, or pass the gate, for another host."""
    if report.host != host or report.baseline[2] != ref:
        raise DocumentError(f"{display}: host/baseline.ref: records {report.host}/{report.baseline[2]}, "
                            f"but it lies in build/{host}/{ref}/runs/")
    return report


# --------------------------------------------------------------------------- files


def load(path: Path, display: str | None = None) -> Report:
    """Read a report.json back; DocumentError (exit 3) naming the file, line and key when it is damaged."""
    return read_json(path, display or str(path), from_section)


def from_dict(data: Any, display: str = "report.json") -> Report:
    return from_section(dict_section(data, display))


def dumps(report: Report) -> str:
    return json.dumps(report.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, report: Report) -> None:
    # backslashreplace: a member name with undecodable bytes (a lone surrogate) cannot break the write.
    atomic_write(path, dumps(report).encode("utf-8", "backslashreplace"))

