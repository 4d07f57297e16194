"""What one `kabuild reproduce` was asked to do."""

from __future__ import annotations

from dataclasses import dataclass

from kabuild.compare.parity import DiffoscopeOptions


@dataclass(frozen=True)
class Options:
    variations: frozenset
    experiment_cpus: int | None = None  # --vary cpus=N
    find_culprit: bool = False
    confirm_culprits: bool = False  # with find_culprit: rebuild each variation, also those named from evidence
    rebuild: bool = False
    whole_diffoscope: bool = False  # diffoscope over the whole packages, not only the differing members
    diffoscope_timeout: int = 600
    full_diffoscope: bool = False  # diffoscope's slow commands too (disassembly, debug-info dumps)
    diffoscope_budget: float | None = None  # seconds for all of the run's diffoscopes; None: from the builds

    @property
    def diffoscope(self) -> DiffoscopeOptions:
        return DiffoscopeOptions(self.whole_diffoscope, self.diffoscope_timeout, self.full_diffoscope,
                                 self.diffoscope_budget)
