"""One makepkg run in a fresh build container, and what the entry script's exit codes mean."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kabuild.build.containers import run_container
from kabuild.build.context import context_tar
from kabuild.build.engines import Engine
from kabuild.build.images import ImageInfo
from kabuild.build.spec import (
    BUILD_PATH,
    OUT_DIR,
    PACKAGE_RE,
    Artifact,
    BuildResult,
    BuildSpec,
    Context,
)
from kabuild.errors import BuildError
from kabuild.files import digest_file

# The entry script's own exit codes (containers/common/kabuild-build); anything else is makepkg's.
ENTRY_CONTRACT_ERROR = 100  # refused before makepkg ran (SOURCE_DATE_EPOCH, umask, no PKGBUILD, /build/out)


ENTRY_NO_PACKAGE = 101  # makepkg succeeded but no package file landed in /build/out


_CONTRACT_MARK = "==> kabuild: failed contract: "


def _contract_reason(tail: list[str]) -> str:
    """The entry script's own reason, from its '==> kabuild: failed contract: <reason>' marker."""
    for line in reversed(tail):
        if line.strip().startswith(_CONTRACT_MARK):
            return line.strip()[len(_CONTRACT_MARK):]
    return "no reason in the log"


def run_build(engine: Engine, image: ImageInfo, spec: BuildSpec, ctx: Context, out_dir: Path,
              label: str, progress: Callable[[str], None], final_dir: Path | None = None) -> BuildResult:
    """Run makepkg in a fresh container; BuildError (exit 4) with the log tail on failure.

    ``final_dir``: where ``out_dir`` will be once the caller renames it (a reproduce run's
    ``.partial`` directory); messages name the log there, where the user will find it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = out_dir / f"{spec.package}.log"
    log = (final_dir or out_dir) / written.name
    started = time.monotonic()
    tail: list[str] = []

    def on_line(line: str) -> None:
        tail.append(line)
        del tail[:-20]
        if line.startswith("==>") or line.startswith("  ->") and "rror" in line:
            elapsed = int(time.monotonic() - started)
            progress(f"[{label} {engine.name} {elapsed // 60:02d}:{elapsed % 60:02d}] {line.strip()}")

    with context_tar(ctx, spec) as tar:
        outcome = run_container(
            engine, spec.container(label), put=((BUILD_PATH, tar),), get=OUT_DIR, into=out_dir,
            log_path=written, timeout=spec.timeout, on_line=on_line, keep_if=lambda n: bool(PACKAGE_RE.match(n)),
        )
    if outcome.timed_out:
        raise BuildError(f"{label}: {spec.package} on {engine.name} timed out after {spec.timeout}s; log: {log}")
    if outcome.exit_code == ENTRY_CONTRACT_ERROR:
        # the entry script refused before makepkg ran: kabuild or the image broke the contract
        raise BuildError(f"{label}: the build container of {spec.package} on {engine.name} refused to start makepkg "
                        f"(kabuild-build contract error, exit {ENTRY_CONTRACT_ERROR}): {_contract_reason(tail)}; "
                        f"kabuild and image {spec.image} disagree about the build contract; "
                        f"log: {log}")
    if outcome.exit_code == ENTRY_NO_PACKAGE:
        raise BuildError(f"{label}: makepkg of {spec.package} on {engine.name} succeeded but wrote no package file "
                         f"(kabuild-build exit {ENTRY_NO_PACKAGE}: does the PKGBUILD's package() produce one, and is "
                         f"PKGDEST left alone?); log: {log}")
    if outcome.exit_code != 0:
        # the build's own last words: the entry script's "==> kabuild:" markers say nothing of why,
        # and stdout and stderr may interleave, so the cause can sit a few lines up
        own = [line.strip() for line in tail if line.strip() and not line.startswith("==> kabuild:")]
        last = " | ".join(own[-5:])
        raise BuildError(f"{label}: makepkg of {spec.package} failed on {engine.name} (exit {outcome.exit_code}): "
                         f"{last}; full log: {log}")
    if not outcome.files:
        raise BuildError(f"{label}: {spec.package} on {engine.name} produced no package; log: {log}")
    artifacts = tuple(Artifact(p.name, p, digest_file(p)) for p in outcome.files)
    return BuildResult(spec, engine.name, image, artifacts, written, outcome.duration)
