"""Load the lab's validated combinations (`printers/validated.toml`).

Each ``[[combination]]`` names a slicer profile, the material it was validated with and the
device types it may build; optionally it narrows the printers (by name or model). A missing
file means nothing is validated: slicing and dispatch then refuse every job, saying why.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pocprint.domain.cases import DeviceType
from pocprint.domain.combinations import Combination, same_material
from pocprint.slicing.profiles import SlicerProfile

FIELDS = frozenset(
    {"profile", "material", "device_types", "printers", "printer_models", "validation"}
)


class CombinationError(ValueError):
    """The combinations file is unusable; the message names the entry and the field."""


def _strings(entry: dict, key: str, where: str) -> frozenset[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CombinationError(f"{where}: '{key}' must be a list of names")
    return frozenset(v.strip() for v in value)


def load_combinations(
    path: Path,
    profiles: dict[str, SlicerProfile],
    printers: dict | None = None,
) -> tuple[Combination, ...]:
    """Read and check every combination against the loaded profiles (and printers, if given)."""
    path = Path(path)
    if not path.is_file():
        return ()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CombinationError(f"{path.name}: not valid TOML ({exc})") from exc
    unknown_top = sorted(set(raw) - {"combination"})
    if unknown_top:
        raise CombinationError(
            f"{path.name}: unknown table(s) {', '.join(unknown_top)}; use [[combination]] entries"
        )
    entries = raw.get("combination", [])
    if not isinstance(entries, list):
        raise CombinationError(f"{path.name}: use [[combination]] entries")
    known_types = {t.value for t in DeviceType}
    out: list[Combination] = []
    seen: set[tuple] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{path.name}: combination {index}"
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise CombinationError(
                f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}"
            )
        profile_id = entry.get("profile")
        if not isinstance(profile_id, str) or not profile_id:
            raise CombinationError(f"{where}: 'profile' is required")
        where = f"{path.name}: combination {index} ({profile_id})"
        profile = profiles.get(profile_id)
        if profile is None:
            raise CombinationError(
                f"{where}: profile '{profile_id}' not found in printers/profiles/"
            )
        material = entry.get("material")
        if not isinstance(material, str) or not material.strip():
            raise CombinationError(f"{where}: 'material' is required, e.g. \"PLA\"")
        if not same_material(material, profile.filament_type):
            raise CombinationError(
                f"{where}: material {material!r} differs from the profile's filament_type "
                f"{profile.filament_type!r}"
            )
        device_types = _strings(entry, "device_types", where)
        if not device_types:
            raise CombinationError(f"{where}: 'device_types' must list at least one device type")
        bad = sorted(device_types - known_types)
        if bad:
            raise CombinationError(
                f"{where}: unknown device type(s) {', '.join(bad)}; "
                f"known: {', '.join(sorted(known_types))}"
            )
        names = _strings(entry, "printers", where)
        models = _strings(entry, "printer_models", where)
        if printers is not None:
            for name in sorted(names):
                definition = printers.get(name)
                if definition is None:
                    raise CombinationError(f"{where}: printer '{name}' is not defined in printers/")
                if profile_id not in definition.profiles:
                    raise CombinationError(
                        f"{where}: printer '{name}' does not list profile '{profile_id}' "
                        "in its definition"
                    )
        validation = entry.get("validation", "")
        if not isinstance(validation, str):
            raise CombinationError(f"{where}: 'validation' must be text")
        key = (profile_id, names, models)
        if key in seen:
            raise CombinationError(f"{where}: the same combination is listed twice")
        seen.add(key)
        out.append(
            Combination(
                profile=profile_id,
                material=profile.filament_type,
                device_types=device_types,
                printers=names,
                printer_models=models,
                validation=validation.strip(),
            )
        )
    return tuple(out)
