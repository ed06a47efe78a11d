"""Phase timings of the mesh pipeline, for the repair report's ``duration_s``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Seconds spent per named phase; a phase timed twice adds up. Phases named at the start
    are reported even when they never ran (0 s)."""

    def __init__(self, phases: tuple[str, ...] = ()) -> None:
        self.spent: dict[str, float] = dict.fromkeys(phases, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds

    def rounded(self, digits: int = 4) -> dict[str, float]:
        return {name: round(value, digits) for name, value in self.spent.items()}
