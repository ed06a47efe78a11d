"""Does a part fit a printer? PrusaSlicer does not refuse a part that is too tall or
hangs off the bed when it is centred, so the check is ours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildVolume:
    x: float
    y: float
    z: float


def fit_problems(extents: tuple[float, float, float], volume: BuildVolume) -> list[str]:
    """Human-readable reasons why a part of these extents (mm, as oriented) does not fit."""
    problems = []
    for axis, size, limit in zip("XYZ", extents, (volume.x, volume.y, volume.z), strict=True):
        if size > limit:
            what = "tall" if axis == "Z" else "wide" if axis == "X" else "deep"
            problems.append(
                f"part is too {what}: {size:.1f} mm along {axis}, the printer allows {limit:.1f} mm"
            )
    return problems
