"""How much wall time and memory the mesh work of one part may take.

A junk file (a soup of random triangles) can keep MeshLab busy for hours and take gigabytes;
so each part's work runs in a child process under limits derived from what is known of the
part: its file size before it is read, its triangle count once it is. The figures come from
``[mesh_limits]`` of ``config/pocprint.toml``; exceeding them gives the verdict "too complex to
repair automatically" with what was measured (``pocprint.mesh.bounded``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

# Each key: (minimum, maximum).
_RANGES: dict[str, tuple[float, float]] = {
    "base_s": (1, 86_400),
    "s_per_file_mb": (0, 3_600),
    "s_per_million_triangles": (0, 86_400),
    "max_s": (1, 86_400),
    "base_memory_mb": (256, 1_048_576),
    "memory_mb_per_file_mb": (0, 10_000),
    "memory_mb_per_million_triangles": (0, 1_048_576),
    "max_memory_mb": (256, 1_048_576),
    "parallel_parts": (0, 64),
}


@dataclass(frozen=True)
class WorkLimits:
    """Per part: seconds = base + per MB + per million triangles, at most max_s; memory
    (address space, MB) likewise. ``parallel_parts`` 0 means one less than the cores
    (at least one, at most four)."""

    base_s: float = 120.0
    s_per_file_mb: float = 1.0
    s_per_million_triangles: float = 240.0
    max_s: float = 3_600.0
    base_memory_mb: float = 1_536.0
    memory_mb_per_file_mb: float = 2.0
    memory_mb_per_million_triangles: float = 2_500.0
    max_memory_mb: float = 16_384.0
    parallel_parts: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = _RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"[mesh_limits] {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or not low <= value <= high:
                raise ValueError(
                    f"[mesh_limits] {f.name} must be between {low:g} and {high:g}, got {value!r}"
                )

    @classmethod
    def from_config(cls, section: dict) -> WorkLimits:
        """From the ``[mesh_limits]`` table; an unknown key stops the start, named."""
        known = {f.name for f in fields(cls)}
        for key in section:
            if key not in known:
                raise ValueError(
                    f"[mesh_limits] unknown key {key!r}; allowed: {', '.join(sorted(known))}"
                )
        values = dict(section)
        if "parallel_parts" in values:
            values["parallel_parts"] = int(values["parallel_parts"])
        return cls(**values)

    def for_part(self, file_bytes: int, triangles: int | None) -> dict:
        """The limits of one part; ``triangles`` None before the file was read (then the
        upper limits hold while reading)."""
        file_mb = file_bytes / 1_048_576
        if triangles is None:  # reading: time from the size; memory lowered once read
            seconds = self.base_s + self.s_per_file_mb * file_mb
            return {
                "seconds": round(min(seconds, self.max_s), 1),
                "memory_mb": round(self.max_memory_mb),
                "basis": f"{file_mb:.3g} MB file, being read",
            }
        millions = triangles / 1_000_000
        seconds = (
            self.base_s + self.s_per_file_mb * file_mb + self.s_per_million_triangles * millions
        )
        memory = (
            self.base_memory_mb
            + self.memory_mb_per_file_mb * file_mb
            + self.memory_mb_per_million_triangles * millions
        )
        return {
            "seconds": round(min(seconds, self.max_s), 1),
            "memory_mb": round(min(memory, self.max_memory_mb)),
            "basis": f"{file_mb:.3g} MB file, {triangles} triangles",
        }

    def slots(self) -> int:
        """How many parts may be worked on at once."""
        if self.parallel_parts:
            return int(self.parallel_parts)
        return max(1, min(4, (os.cpu_count() or 1) - 1))
