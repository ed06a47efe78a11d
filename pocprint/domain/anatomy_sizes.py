"""Expected sizes of anatomy (the ``[[sizes]]`` rows of config/anatomy.toml), so the unit of a
mesh file is decided by what the order says the part is, not by size alone.

A 33 mm aneurysm sac read in centimetres is 330 mm, which size alone finds as plausible as
33 mm; the order's "Abdomen / Vessels / Abdominal aorta" expects 25-240 mm, so only
millimetres fit. Each row names its published source, recorded with the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

# Without rows, the size rule's fixed band (mesh/units.py) applies.
MIN_CORE_MM = 10.0


@dataclass(frozen=True)
class SizeRange:
    """Largest extent (mm) a printed part of one structure has."""

    name: str
    codes: tuple[str, ...]
    low_mm: float
    high_mm: float
    source: str

    def fits(self, largest_mm: float) -> bool:
        return self.low_mm <= largest_mm <= self.high_mm

    def to_dict(self) -> dict:
        out = asdict(self)
        out["codes"] = list(self.codes)
        return out


def parse_sizes(rows: Iterable[dict], where: str = "anatomy.toml") -> tuple[SizeRange, ...]:
    """Checked rows; a bad row stops the start with a message naming it."""
    out: list[SizeRange] = []
    names: set[str] = set()
    for n, row in enumerate(rows, start=1):
        label = f"{where} [[sizes]] row {n}"
        if not isinstance(row, dict):
            raise ValueError(f"{label}: must be a table")
        unknown = set(row) - {"name", "codes", "largest_mm", "source"}
        if unknown:
            raise ValueError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}")
        name = str(row.get("name") or "").strip().lower()
        if not name or name in names:
            raise ValueError(f"{label}: needs a name of its own (got {row.get('name')!r})")
        names.add(name)
        source = str(row.get("source") or "").strip()
        if not source:
            raise ValueError(f"{label} ({name}): every size needs its source")
        span = row.get("largest_mm")
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in span)
        ):
            raise ValueError(f"{label} ({name}): largest_mm must be [smallest, largest] in mm")
        low, high = float(span[0]), float(span[1])
        if not 0 < low < high:
            raise ValueError(f"{label} ({name}): largest_mm needs 0 < smallest < largest")
        if high >= 10 * low:
            raise ValueError(
                f"{label} ({name}): largest_mm {low:g}-{high:g} spans x10 or more, so a "
                "millimetre and a centimetre reading could both fit; narrow it"
            )
        codes = row.get("codes", [])
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise ValueError(
                f"{label} ({name}): codes must be a list of 'Region/Subregion[/Structure]'"
            )
        out.append(SizeRange(name, tuple(c.strip() for c in codes), low, high, source))
    return tuple(out)


def _code_matches(code: str, part: dict) -> bool:
    bits = [b.strip() for b in code.split("/")]
    have = [(part.get(k) or "").strip() for k in ("region", "subregion", "structure")]
    return bits == have[: len(bits)] if len(bits) < 3 else bits == have


def ranges_for(anatomy: Sequence[dict] | None, sizes: Sequence[SizeRange]) -> list[SizeRange]:
    """The size rows that apply to an order's anatomy parts (each row once)."""
    found: list[SizeRange] = []
    for part in anatomy or []:
        for row in sizes:
            if row not in found and any(_code_matches(c, part) for c in row.codes):
                found.append(row)
    return found


def by_name(name: str, sizes: Sequence[SizeRange]) -> SizeRange:
    wanted = name.strip().lower()
    for row in sizes:
        if row.name == wanted:
            return row
    raise ValueError(
        f"unknown anatomy {name!r}; expected one of {', '.join(r.name for r in sizes)}"
    )


def plausible_band(
    sizes: Sequence[SizeRange], bed_extents_mm: Sequence[float]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(plausible, well inside) ranges of a largest extent in mm, for files whose order names
    no sized anatomy: plausible from the smallest to the largest anatomy in the table; well
    inside from twice the smallest (at least 10 mm) to 1.5x the largest bed dimension (parts
    larger than a bed are printed in sections or scaled). None without rows or beds."""
    if not sizes or not bed_extents_mm:
        return None
    low = min(r.low_mm for r in sizes)
    high = max(r.high_mm for r in sizes)
    core_low = max(2 * low, MIN_CORE_MM)
    core_high = min(1.5 * max(bed_extents_mm), high)
    if not low < core_low < core_high <= high:
        return None
    return (low, high), (core_low, core_high)
