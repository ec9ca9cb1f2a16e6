"""`make bench`: every figure the issues ask for, measured in one run, printed as one table with its goal.

Each module exposes `run(ctx) -> list[Figure]`; ratios compare our path with the bare minimum measured in the same
run (timings on shared 2-core machines vary by ±30 %, ratios much less). Modules register in __main__.BENCHES.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str = ""
    goal: str = ""
    ok: bool | None = None  # None: informational, no goal
    detail: str = ""

    def cell(self) -> str:
        if self.unit == "x":
            return f"{self.value:.2f}x"
        if self.unit in ("s", "ms"):
            return f"{self.value:.3f} {self.unit}" if self.unit == "s" else f"{self.value:.1f} {self.unit}"
        if self.unit == "MB":
            return f"{self.value:.1f} MB"
        return f"{self.value:g} {self.unit}".strip()


@dataclass
class BenchContext:
    """Shared services for one benchmark run (started lazily, stopped at the end)."""

    quick: bool = False
    _closers: list[Callable[[], None]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        while self._closers:
            try:
                self._closers.pop()()
            except Exception as exc:  # a failed stop must not hide the table
                print(f"(cleanup failed: {exc})")


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 0) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def interleaved_medians(a: Callable[[], object], b: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median seconds of a and b, alternating so that machine noise hits both alike."""
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(repeat):
        for fn, samples in ((a, sa), (b, sb)):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
    return statistics.median(sa), statistics.median(sb)
