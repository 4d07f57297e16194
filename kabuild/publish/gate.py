"""The publish gate: only what the latest acceptance report proved, byte for byte, goes on.

Every package of the report must be reproducible AND in parity with its reference, the
report must name the current manifest.lock, the run must have built the recipe (PKGBUILD
directory) that is on disk now, for the host's architecture (or ``any``), and the file about
to be signed must hash to exactly what the report names (hashed again here).  Anything else is a
:class:`PublishRefused` (exit 3) naming every package and why.  There is no override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kabuild.compare.acceptance import PackageResult, Report, RunVerdict, Verdict
from kabuild.errors import RefusalError
from kabuild.files import digest_file
from kabuild.publish.pacman import arch_problem, parse_pkgfile


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    sha256: str
    b2sum: str


@dataclass(frozen=True)
class Refusal:
    subject: str  # a package name, or "report"
    reason: str


class PublishRefused(RefusalError):
    """The publish gate said no; ``refusals`` lists every package (or the report) and why."""

    def __init__(self, refusals: Sequence[Refusal], total: int):
        self.refusals = tuple(refusals)
        parts = "; ".join(f"{r.subject}: {r.reason}" for r in self.refusals)
        subjects = {r.subject for r in self.refusals if r.subject != "report"}
        scope = f" ({len(subjects)} of {total} package(s))" if subjects and total else ""
        super().__init__(f"publish refused{scope}: {parts} (only packages the latest acceptance report calls "
                         "reproducible with parity are published; there is no override)")


def latest_run(root: Path, host: str, baseline_ref: str) -> Path:
    """The run directory ``build/<host>/<ref>/runs/latest`` points at (resolved)."""
    latest = Path(root) / "build" / host / baseline_ref / "runs" / "latest"
    if not latest.exists():
        raise RefusalError(f"no acceptance report for {host} ({baseline_ref}): {latest} does not exist; "
                           f"run `kabuild reproduce {host}` first")
    return latest.resolve()


def _check(p: PackageResult, run_dir: Path, host: tuple[str, str] | None) -> tuple[list[str], Candidate | None]:
    reasons: list[str] = []
    parsed = parse_pkgfile(p.file) if p.file else None
    if parsed is None:
        reasons.append(f"package file name {p.file!r} is not a pacman package file name")
    elif host is not None:
        problem = arch_problem(parsed.file, parsed.arch, *host)
        if problem:
            reasons.append(problem)
    elif parsed.name != p.name and not parsed.name.startswith(p.name + "-"):
        # a split PKGBUILD (a kernel and its -headers) reports each file under its pkgbase
        reasons.append(f"package file {p.file} does not belong to package {p.name} (nor to a split "
                       f"package {p.name}-*)")
    if not p.reproducible:
        reasons.append("not reproducible (build1 and build2 differ)")
    if p.parity is None:
        reasons.append("no reference build: parity unknown")
    elif p.parity is False:
        ref = p.reference.digest.sha256 if p.reference else "unknown"
        built = p.build1.digest.sha256 if p.build1 else "unknown"
        reasons.append(f"parity with the reference build failed (reference sha256 {ref}, build 1 sha256 {built})")
    if not reasons and p.verdict is not Verdict.ACCEPTED:
        reasons.append(f"report verdict is {p.verdict!r}, not 'accepted'")
    if p.build1 is None or p.build2 is None:
        reasons.append("a build is missing from the report")
        return reasons, None
    if p.build1.digest != p.build2.digest:
        reasons.append("build1 and build2 hashes differ" + (" although the report says reproducible"
                                                               if p.reproducible else ""))
    rel = Path(p.build1.path)
    if p.file is not None and rel.name != p.file:
        reasons.append(f"build1 path {rel} does not name the package file {p.file}")
        return reasons, None
    path = run_dir / rel
    if not path.is_file():
        reasons.append(f"artifact missing: {rel} is not in the run directory")
        return reasons, None
    try:
        actual = digest_file(path)
    except OSError as exc:
        reasons.append(f"artifact {rel} is unreadable: {exc.strerror or exc}")
        return reasons, None
    if actual != p.build1.digest:
        reasons.append(f"artifact {rel} does not match the report (sha256 {actual.sha256[:12]}, report says "
                       f"{p.build1.digest.sha256[:12]}): modified since the report was written")
    if reasons:
        return reasons, None
    return reasons, Candidate(parsed.name if parsed else p.name, path, actual.sha256, actual.b2sum)


def _recipe_problem(report: Report, package: str, recipes: Mapping[str, str]) -> str | None:
    """The run must have built the recipe that is on disk now: an edited PKGBUILD is another package."""
    ran, now = report.recipe_of(package), recipes.get(package)
    if now is None:
        return "no longer a package of the manifest"
    if ran is None:
        return f"run {report.run_id} records no recipe digest for it (made by an older kabuild); run reproduce again"
    if ran != now:
        return (f"its recipe changed since run {report.run_id} (the run built recipe {ran[:12]}, the PKGBUILD "
                f"directory is now {now[:12]}); run reproduce again")
    return None


def gate(report: Report, run_dir: Path, lock_hash: str, *, recipes: Mapping[str, str] | None = None,
         host: tuple[str, str] | None = None, single_engine_allowed: bool = False) -> tuple[Candidate, ...]:
    """Every package of the report proven publishable, or a PublishRefused (exit 3).

    ``recipes`` (package -> digest of its PKGBUILD directory now) and ``host`` (name, architecture)
    are what the packages must have been built from and for; a single-engine run (both builds on one
    engine) only when ``single_engine_allowed`` (the manifest's build.single_engine)."""
    refusals: list[Refusal] = []
    if report.same_engine and not single_engine_allowed:
        n = report.build2_node
        why = f" because {n.requested} did not answer" if n.fell_back else ""
        refusals.append(Refusal("report", f"single-engine run: both builds ran on {report.build1_node.node}{why}, so "
                                          "the node variation was not exercised; reproduce on two engines, or set "
                                          "build.single_engine: allowed in the manifest (an owner with one build host)"))
    if report.lock_hash != lock_hash:
        refusals.append(Refusal("report", f"stale report: made for manifest.lock {report.lock_hash[:12]}, "
                                          f"the current lock is {lock_hash[:12]}; run reproduce again"))
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for p in report.packages:
        reasons, candidate = _check(p, Path(run_dir), host)
        problem = _recipe_problem(report, p.name, recipes) if recipes is not None else None
        if problem:
            reasons.append(problem)
            candidate = None
        parsed = parse_pkgfile(p.file) if p.file else None
        key = parsed.name if parsed else p.name  # the file's pkgname: split packages share p.name
        if key in seen:
            reasons.append("listed twice in the report")
        seen.add(key)
        if reasons:
            refusals.append(Refusal(p.name, ", ".join(reasons)))
        elif candidate is not None:
            candidates.append(candidate)
    if not refusals and report.verdict is not RunVerdict.ACCEPTED:
        refusals.append(Refusal("report", f"report verdict is {report.verdict!r}, not 'accepted'"))
    if refusals:
        raise PublishRefused(refusals, len(report.packages))
    return tuple(candidates)
