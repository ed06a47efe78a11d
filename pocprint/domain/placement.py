"""Does a part fit a printer? PrusaSlicer does not refuse a part that is too tall or
hangs off the bed when it is centred, so the check is ours."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Orientation(StrEnum):
    STABLE = "stable"  # laid on its largest stable face (the default)
    AS_DESIGNED = "as_designed"  # kept exactly as approved, e.g. chosen by the clinician


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


def turn_to_fit(extents: tuple[float, float, float], volume: BuildVolume) -> bool:
    """Whether a quarter turn about Z lets the part fit the bed better (long side along the
    long side of the bed). Never turns a part that already fits."""
    x, y, z = extents
    if not fit_problems(extents, volume):
        return False
    return not fit_problems((y, x, z), volume)


def smallest_volume(volumes: list[BuildVolume]) -> BuildVolume:
    """The volume both a profile's bed and a printer's definition allow."""
    return BuildVolume(
        min(v.x for v in volumes), min(v.y for v in volumes), min(v.z for v in volumes)
    )
