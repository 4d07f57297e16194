"""What one `kabuild reproduce` was asked to do."""

from __future__ import annotations

from dataclasses import dataclass

from kabuild.compare.parity import DiffoscopeOptions


@dataclass(frozen=True)
class Options:
    variations: frozenset
    experiment_cpus: int | None = None  # --vary cpus=N
    find_culprit: bool = False
    rebuild: bool = False
    whole_diffoscope: bool = False  # diffoscope over the whole packages, not only the differing members
    diffoscope_timeout: int = 600

    @property
    def diffoscope(self) -> DiffoscopeOptions:
        return DiffoscopeOptions(self.whole_diffoscope, self.diffoscope_timeout)
