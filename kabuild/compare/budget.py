"""The run's diffoscopes: queued while the packages are compared, then run in parallel within one
time budget, after every build of the run is done.

diffoscope explains what the member hashes and the evidence search already found; on a kernel it can
cost more than the build.  So it gets one budget for the whole run (``--diffoscope-budget``; by default
a tenth of one build, less what hashing and the evidence search took, at least :data:`MIN_BUDGET`), its
slow commands are left out unless ``--full-diffoscope`` asks for them, and a comparison the budget cut
says so.  diffoscope writes its text and JSON reports first and is asked to stop going deeper (its own
``--timeout``) before the budget ends, so what it found by then is kept; the HTML report, most of a
big diff's cost, is rendered from the JSON afterwards while the budget lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from kabuild.compare import diffoscope
from kabuild.compare.differences import DiffResult, DiffStatus
from kabuild.process import wait_futures

Progress = Callable[[str], None]

MIN_BUDGET = 10.0
SHARE_OF_BUILD = 0.10  # the explanation (hashing, evidence, diffoscope) should cost no more than this of one build
SOFT = 0.5  # of the time left: when diffoscope stops going deeper and writes what it has (that takes time too)


def default_budget(build_seconds: float, spent: float = 0.0) -> float:
    """A tenth of one build (the slowest control build), less what explaining has cost already
    (``spent``: member hashing and the evidence search); at least MIN_BUDGET seconds."""
    return max(MIN_BUDGET, SHARE_OF_BUILD * build_seconds - spent)


@dataclass(frozen=True)
class Job:
    key: tuple[str, str]  # (package file, "build1_vs_build2" | "build1_vs_reference")
    first: Path
    second: Path
    names: tuple[str, ...] | None  # the differing members; None: the whole packages
    out: Path
    what: str


@dataclass
class Queue:
    full: bool = False  # run diffoscope's slow commands too
    jobs: list[Job] = field(default_factory=list)

    def add(self, job: Job) -> None:
        self.jobs.append(job)

    def run(self, budget: float, workers: int, progress: Progress) -> dict[tuple[str, str], DiffResult]:
        """Every job, at most ``workers`` at a time, none past the budget (results: absolute paths)."""
        if not self.jobs:
            return {}
        deadline = time.monotonic() + budget
        progress(f"diffoscope: {len(self.jobs)} comparison(s), {min(workers, len(self.jobs))} at a time, within "
                 f"{budget:.0f} s" + ("" if self.full else " (slow commands left out: --full-diffoscope runs them)"))

        def one(job: Job) -> DiffResult:
            left = deadline - time.monotonic()
            if left < 1:
                return DiffResult(DiffStatus.ERROR, error=f"not run: the run's diffoscope budget of {budget:.0f} s "
                                                          "was spent (--diffoscope-budget)")
            progress(f"{job.what}: diffoscope on "
                     + (f"the {len(job.names)} differing member(s)" if job.names is not None else "the whole packages"))
            soft = max(1.0, SOFT * left)
            # text and JSON first; the HTML report (most of a big diff's cost) from the JSON if time is left
            if job.names is None:
                r = diffoscope.diffoscope(job.first, job.second, job.out / "packages", timeout=left, full=self.full,
                                          cancel=cancel, soft_timeout=soft, html=False)
            else:
                r = diffoscope.diffoscope_members(job.first, job.second, job.names, job.out / "members",
                                                  timeout=left, full=self.full, cancel=cancel, soft_timeout=soft,
                                                  html=False)
            if r.status is DiffStatus.ERROR and time.monotonic() >= deadline - 1:
                return replace(r, error=f"cut by the run's diffoscope budget of {budget:.0f} s (--diffoscope-budget); "
                                        "the member hashes and the evidence above still stand")
            if r.status is DiffStatus.DIFFERENT:
                r = diffoscope.render_html(r, timeout=max(1.0, deadline - time.monotonic()), cancel=cancel)
            return r

        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(self.jobs)))) as pool:
            try:
                futures = [pool.submit(one, job) for job in self.jobs]
                wait_futures(futures)  # Ctrl-C-interruptible, whichever thread the signal reaches
                results = [f.result() for f in futures]
            except BaseException:
                cancel.set()  # Ctrl-C reaches this thread only: stop the diffoscopes the workers run
                raise
        return {job.key: r for job, r in zip(self.jobs, results, strict=True)}
