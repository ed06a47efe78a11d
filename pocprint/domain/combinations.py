"""Validated combinations: which printer, material and slicer profile the lab has validated
for which device type. Nothing is sliced or printed outside them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Combination:
    profile: str
    material: str
    device_types: frozenset[str]
    printers: frozenset[str] = frozenset()  # empty: any printer whose definition lists the profile
    printer_models: frozenset[str] = frozenset()
    validation: str = ""  # the lab's validation record, e.g. "VAL-2026-014"

    def allows(
        self, printer: str, model: str, printer_profiles: frozenset[str], device_type: str
    ) -> bool:
        """True if this combination covers this printer for this device type.

        The printer's own definition must list the profile (its model was validated with it);
        a combination that names printers or printer models narrows that further.
        """
        if device_type not in self.device_types or self.profile not in printer_profiles:
            return False
        if self.printers or self.printer_models:
            return printer in self.printers or model in self.printer_models
        return True


def same_material(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().casefold() == b.strip().casefold()


def validated_profiles(
    combinations: tuple[Combination, ...] | list[Combination],
    printer: str,
    model: str,
    printer_profiles: frozenset[str],
    device_type: str,
) -> dict[str, str]:
    """Profile -> material of every combination that covers this printer for this device type."""
    return {
        c.profile: c.material
        for c in combinations
        if c.allows(printer, model, printer_profiles, device_type)
    }


def materials_for(
    combinations: tuple[Combination, ...] | list[Combination], device_type: str
) -> tuple[str, ...]:
    """The materials the lab validated for a device type, as the combinations spell them."""
    seen: dict[str, str] = {}
    for c in combinations:
        if device_type in c.device_types:
            seen.setdefault(c.material.casefold(), c.material)
    return tuple(sorted(seen.values()))
