"""Repair thresholds per device type, read from ``config/repair.toml``.

The lab sets the limits (how large a hole may be closed automatically, how far the kept
surface may move...) in one reviewed file instead of in code, and surgical guides get stricter
limits than anatomical models. All lengths are in mm. A missing or mistyped key is an error
naming the key: a repair must never run on limits nobody chose.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from pocprint.domain.cases import DeviceType

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config" / "repair.toml"
CONFIG_ENV = "POCPRINT_REPAIR_CONFIG"
DEFAULT_TABLE = "default"


@dataclass(frozen=True)
class RepairSettings:
    """Repair limits; lengths in mm (the mesh must already be in mm).

    The defaults equal the ``[default]`` table of ``config/repair.toml`` (a test checks it),
    so ``repair(mesh)`` without settings behaves as the shipped configuration.
    """

    max_hole_edges: int = 100  # holes with more boundary edges stay open (a human decides)
    min_component_faces: int = 25  # smaller loose shells are scan noise and are removed
    max_kept_surface_deviation_mm: float = 0.1
    max_invented_patch_diameter_mm: float = 10.0
    max_removed_diameter_mm: float = 5.0
    min_feature_mm: float = 0.8  # thinner walls give a warning (never a gate)
    thin_wall_warn_share: float = 0.01  # warn above this share of the surface area
    thin_wall_samples: int = 20_000  # rays cast at most, so the check stays bounded
    # Faces whose boxes overlap a face's, on average, above which MeshLab's self-intersection
    # search is not run and the part is "too complex" (surfaces: 7-40; a random soup: 20,000).
    max_box_overlaps_per_face: float = 500.0
    # A removed loose shell or fin enclosing less than this (mm3) is noise, not anatomy.
    noise_volume_mm3: float = 1.0
    device_type: str = DEFAULT_TABLE  # which table of the configuration was applied

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name), "RepairSettings")


# Per key: (type, minimum, maximum, inclusive minimum).
_RULES: dict[str, tuple[type, float, float, bool]] = {
    "max_hole_edges": (int, 3, 1_000_000, True),
    "min_component_faces": (int, 1, 1_000_000_000, True),
    "max_kept_surface_deviation_mm": (float, 0.0, 1000.0, False),
    "max_invented_patch_diameter_mm": (float, 0.0, 10_000.0, False),
    "max_removed_diameter_mm": (float, 0.0, 10_000.0, False),
    "min_feature_mm": (float, 0.0, 100.0, False),
    "thin_wall_warn_share": (float, 0.0, 1.0, True),
    "thin_wall_samples": (int, 1, 10_000_000, True),
    "max_box_overlaps_per_face": (float, 1.0, 1e9, True),
    "noise_volume_mm3": (float, 0.0, 1e9, True),
}


def device_types() -> list[str]:
    """Device types that may have their own table (the domain's DeviceType values)."""
    return [t.value for t in DeviceType]


def load_repair_settings(device_type: str | None, path: Path | None = None) -> RepairSettings:
    """Repair settings for a device type: ``[default]`` overlaid with the type's table.

    ``path`` defaults to ``$POCPRINT_REPAIR_CONFIG`` or ``<repo>/config/repair.toml``.
    ``device_type`` None means the default table only. Raises ``ValueError`` naming the file
    and the key for an unreadable file, an unknown table or key, a wrong type or a value out
    of range.
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else DEFAULT_CONFIG
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ValueError(f"repair settings file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"repair settings file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ValueError(f"repair settings file {path} cannot be read: {exc}") from exc
    known_tables = [DEFAULT_TABLE, *device_types()]
    for name, table in raw.items():
        if name not in known_tables:
            raise ValueError(
                f"{path}: unknown table [{name}]; allowed: "
                + ", ".join(f"[{t}]" for t in known_tables)
            )
        if not isinstance(table, dict):
            raise ValueError(f"{path}: '{name}' must be a table ([{name}]), not a value")
    if device_type is not None and device_type not in device_types():
        raise ValueError(
            f"unknown device type {device_type!r}; expected one of {', '.join(device_types())}"
        )
    values: dict[str, object] = {}
    for name in [DEFAULT_TABLE] + ([device_type] if device_type else []):
        for key, value in raw.get(name, {}).items():
            if key not in _RULES:
                raise ValueError(
                    f"{path}: unknown key '{key}' in [{name}]; allowed: {', '.join(_RULES)}"
                )
            _check(key, value, f"{path} [{name}]")
            values[key] = value
    return RepairSettings(**values, device_type=device_type or DEFAULT_TABLE)


def _check(key: str, value: object, where: str) -> None:
    """Type and range check of one setting, with a message naming it."""
    if key == "device_type":
        if not isinstance(value, str) or value not in (DEFAULT_TABLE, *device_types()):
            raise ValueError(f"{where}: device_type {value!r} is not a known device type")
        return
    kind, low, high, inclusive = _RULES[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: '{key}' must be a number, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ValueError(f"{where}: '{key}' must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be finite, got {value!r}")
    too_low = value < low if inclusive else value <= low
    if too_low or value > high:
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ValueError(f"{where}: '{key}' must be {bound} and <= {high:g}, got {value!r}")
