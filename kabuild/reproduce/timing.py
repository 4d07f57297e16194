"""Where a run's time went, phase by phase, for the report (after mkosi's timed steps)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class Timings:
    """(phase, seconds) in the order the phases ended; a phase that runs twice is added up."""

    def __init__(self) -> None:
        self._spent: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._spent[phase] = self._spent.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - t0)

    def items(self) -> tuple[tuple[str, float], ...]:
        with self._lock:
            return tuple((k, round(v, 2)) for k, v in self._spent.items())
