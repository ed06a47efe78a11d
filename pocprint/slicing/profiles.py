"""Validated PrusaSlicer profiles (one flat ``key = value`` ini per printer + material).

PrusaSlicer 2.5 cannot pick vendor profiles by name and silently ignores ``[section]``
bundles with ``inherits``, so the lab ships one flat file per printer/material pair.
Loading checks what PrusaSlicer itself would not (bed shape, density > 0, no sections),
and records the SHA-256 of the exact bytes so every job can prove which profile it used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_KEYS = (
    "bed_shape",
    "max_print_height",
    "nozzle_diameter",
    "filament_type",
    "filament_density",
    "gcode_flavor",
)


class ProfileError(ValueError):
    """A profile file is missing or invalid; the message names the file and the key."""

    def __init__(self, path: Path | str, message: str, key: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        where = f"{self.path}: key '{key}'" if key else str(self.path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SlicerProfile:
    """One loaded, validated profile; ``sha256`` identifies the exact file content."""

    id: str
    path: Path
    sha256: str
    bed_min_xy: tuple[float, float]
    bed_max_xy: tuple[float, float]
    max_print_height: float
    nozzle_diameter: float
    filament_type: str
    filament_density: float
    settings: dict[str, str] = field(hash=False, repr=False)

    @property
    def bed_size(self) -> tuple[float, float]:
        """Bed extent in X and Y (mm), from the bounding box of ``bed_shape``."""
        return (
            self.bed_max_xy[0] - self.bed_min_xy[0],
            self.bed_max_xy[1] - self.bed_min_xy[1],
        )

    @property
    def bed_center(self) -> tuple[float, float]:
        """Centre of the bed in printer coordinates (the default ``--center``)."""
        return (
            (self.bed_min_xy[0] + self.bed_max_xy[0]) / 2.0,
            (self.bed_min_xy[1] + self.bed_max_xy[1]) / 2.0,
        )


def _parse_settings(path: Path, text: str) -> dict[str, str]:
    """Parse flat ``key = value`` lines the way PrusaSlicer reads them, but stricter."""
    settings: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            raise ProfileError(
                path,
                f"line {lineno}: section header {line!r} found; only flat profiles are "
                "supported (PrusaSlicer ignores keys inside sections)",
            )
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ProfileError(path, f"line {lineno}: expected 'key = value', got {line!r}")
        if key in settings:
            raise ProfileError(path, f"line {lineno}: duplicate key", key=key)
        settings[key] = value.strip()
    return settings


def _single_value(path: Path, settings: dict[str, str], key: str) -> str:
    value = settings[key].strip().strip('"').strip()
    if not value:
        raise ProfileError(path, "must not be empty", key=key)
    if "," in value or ";" in value:
        raise ProfileError(
            path, f"multi-extruder values are not supported (got {value!r})", key=key
        )
    return value


def _positive_float(path: Path, settings: dict[str, str], key: str) -> float:
    value = _single_value(path, settings, key)
    try:
        number = float(value)
    except ValueError:
        raise ProfileError(path, f"must be a number (got {value!r})", key=key) from None
    if not number > 0:
        raise ProfileError(path, f"must be > 0 (got {value!r})", key=key)
    return number


def _parse_bed_shape(path: Path, value: str) -> tuple[tuple[float, float], tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for item in value.split(","):
        x_text, sep, y_text = item.strip().partition("x")
        try:
            if not sep:
                raise ValueError
            points.append((float(x_text), float(y_text)))
        except ValueError:
            raise ProfileError(
                path,
                f"expected points like '0x0,250x0,250x210,0x210' (got {value!r})",
                key="bed_shape",
            ) from None
    if len(points) < 3:
        raise ProfileError(path, f"needs at least 3 points (got {value!r})", key="bed_shape")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    if max(xs) <= min(xs) or max(ys) <= min(ys):
        raise ProfileError(path, f"bed has zero area (got {value!r})", key="bed_shape")
    return (min(xs), min(ys)), (max(xs), max(ys))


def load_profile(path: Path) -> SlicerProfile:
    """Load and validate one profile so that bad lab data fails before any slicing."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(path, "profile file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(path, f"not valid UTF-8 ({exc})") from None
    settings = _parse_settings(path, text)

    if settings.get("inherits", "").strip().strip('"'):
        raise ProfileError(
            path,
            f"'inherits' is not supported by 'prusa-slicer --load' (got {settings['inherits']!r});"
            " save a flat profile instead",
            key="inherits",
        )
    for key in REQUIRED_KEYS:
        if key not in settings:
            raise ProfileError(path, "required key is missing", key=key)
    technology = settings.get("printer_technology", "FFF").strip()
    if technology != "FFF":
        raise ProfileError(
            path, f"only FFF printers are supported (got {technology!r})", key="printer_technology"
        )
    if not settings["gcode_flavor"].strip():
        raise ProfileError(path, "must not be empty", key="gcode_flavor")

    bed_min, bed_max = _parse_bed_shape(path, settings["bed_shape"])
    return SlicerProfile(
        id=path.stem,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        bed_min_xy=bed_min,
        bed_max_xy=bed_max,
        max_print_height=_positive_float(path, settings, "max_print_height"),
        nozzle_diameter=_positive_float(path, settings, "nozzle_diameter"),
        filament_type=_single_value(path, settings, "filament_type"),
        filament_density=_positive_float(path, settings, "filament_density"),
        settings=settings,
    )


def load_profiles(directory: Path) -> dict[str, SlicerProfile]:
    """Load every ``*.ini`` in ``directory``, keyed by file stem; any invalid file is fatal."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ProfileError(directory, "profile directory not found")
    return {p.stem: load_profile(p) for p in sorted(directory.glob("*.ini")) if p.is_file()}
