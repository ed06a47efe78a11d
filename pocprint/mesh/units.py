"""Which length unit a mesh file is in, and how sure we can be.

STL, OBJ and PLY carry no unit. A model read in the wrong unit prints 10x, 25.4x or 1000x
off, and a wrong-size surgical guide is worse than none, so a guess is only called clear when
the file declares its unit or when exactly one unit gives a plausible size. Everything else
goes back to a person, with the candidates and the reasons shown.

The size rule looks at the largest bounding-box extent the mesh would have in each unit:

* plausible: 5 mm to 600 mm. 5 mm is about the smallest anatomy printed (ossicles); 600 mm
  covers whole long bones and spines (450-525 mm in the corpus), which arrive even though
  most printers stop near 300-400 mm and they are printed in sections or scaled. With an
  upper limit of 400 mm, a femur stored in metres (453 mm) came out as a clear 11.5 mm part
  in inches.
* well inside: 10 mm to 300 mm scores 1; the score falls linearly in log-size to 0 at the
  plausible limits. ``clear`` needs exactly one plausible unit scoring at least 0.5.

Size alone cannot tell a 33 mm aneurysm from a 332 mm object in centimetres, or a 7 mm ossicle
from a 70 mm part in centimetres: such files stay unclear, with millimetres proposed first
(segmentation software exports mm; DICOM patient coordinates are mm).

Over 400 lines for a reason: the unit rules (declared, size band, expected size, anatomy)
and the header readers of every format that may state one.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

UNIT_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}
# Units a file may declare (3MF also allows micron and foot); never guessed from size.
DECLARED_UNIT_TO_MM = {**UNIT_TO_MM, "um": 0.001, "ft": 304.8}
THREEMF_UNITS = {
    "micron": "um",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "inch": "in",
    "foot": "ft",
}
UNIT_NAMES = {
    "mm": "millimetres",
    "cm": "centimetres",
    "m": "metres",
    "in": "inches",
    "um": "micrometres",
    "ft": "feet",
}

PLAUSIBLE_MM = (5.0, 600.0)  # largest extent of anything a lab plausibly receives
WELL_INSIDE_MM = (10.0, 300.0)  # typical prints: score 1
CLEAR_SCORE = 0.5
# With an expected size, a unit matches when its largest extent is within this factor of it;
# 1.5 < sqrt(2.54) keeps at most one unit matching.
EXPECTED_FACTOR = 1.5
# Ratios between units that cause the classic mix-ups.
CONFUSION_RATIOS = {10.0: "mm/cm", 25.4: "mm/inch", 1000.0: "mm/m", 2.54: "cm/inch", 100.0: "cm/m"}
# Tie-break order for proposals when nothing is clear: mm is the norm in medical exports.
_PREFERENCE = ("mm", "in", "cm", "m")
_HEADER_BYTES = 4096


@dataclass(frozen=True)
class UnitGuess:
    """The proposed unit, whether it is clear-cut, and the evidence for the technician."""

    proposed: str
    scale_to_mm: float
    clear: bool
    reasons: list[str] = field(default_factory=list)
    # Per unit: extents_mm, largest_mm, volume_cm3 (closed meshes), score, plausible.
    candidates: dict[str, dict] = field(default_factory=dict)
    declared: str | None = None
    # The order's anatomy size rows weighed (name, low_mm, high_mm, source), if any.
    anatomy: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready copy for reports."""
        return {
            "proposed": self.proposed,
            "scale_to_mm": self.scale_to_mm,
            "clear": self.clear,
            "declared": self.declared,
            "anatomy": [dict(a) for a in self.anatomy],
            "reasons": list(self.reasons),
            "candidates": {u: dict(c) for u, c in self.candidates.items()},
        }


def size_score(largest_mm: float, band: tuple | None = None) -> float:
    """Plausibility of a largest extent in mm: 1 well inside, 0 outside, log-linear between.

    ``band`` is ((plausible low, high), (well-inside low, high)) in mm; None: the fixed
    5-600 / 10-300 mm (domain.anatomy_sizes.plausible_band makes one from the lab's anatomy
    table and printer beds)."""
    (lo, hi), (core_lo, core_hi) = band or (PLAUSIBLE_MM, WELL_INSIDE_MM)
    if not math.isfinite(largest_mm) or largest_mm < lo or largest_mm > hi:
        return 0.0
    if largest_mm < core_lo:
        return math.log(largest_mm / lo) / math.log(core_lo / lo)
    if largest_mm > core_hi:
        return math.log(hi / largest_mm) / math.log(hi / core_hi)
    return 1.0


def guess_units(
    extents: Sequence[float],
    volume: float | None = None,
    declared: str | None = None,
    *,
    expected_largest_mm: float | None = None,
    anatomy: Sequence[dict] | None = None,
    band: tuple | None = None,
) -> UnitGuess:
    """Guess the unit of a mesh from its bounding-box extents (in file units).

    ``volume`` (file units cubed, closed meshes) is only reported per candidate. ``declared``
    is a unit the file states (a key of ``DECLARED_UNIT_TO_MM``); it is clear-cut unless the
    size it gives is outside the plausible range, which points to a wrong declaration.
    ``expected_largest_mm`` (e.g. from the case or the source scan) replaces the size band:
    the unit whose largest extent is within x1.5 of it is clear if it is the only one.
    ``anatomy``: the size rows of the order's anatomy (``SizeRange.to_dict()``); the unit whose
    size falls in a row's range is clear if it is the only one; if none or several fit, the
    guess is never clear. ``band`` replaces the fixed plausible range (see ``size_score``).
    """
    ext = [float(x) for x in extents]
    if len(ext) != 3 or not all(math.isfinite(x) and x >= 0 for x in ext):
        raise ValueError(f"extents must be three finite non-negative numbers, got {extents!r}")
    band = band or (PLAUSIBLE_MM, WELL_INSIDE_MM)
    candidates = {
        unit: _candidate(ext, volume, factor, band) for unit, factor in UNIT_TO_MM.items()
    }
    reasons: list[str] = []
    if declared is not None:
        return _declared_guess(declared, ext, volume, candidates, reasons, band)
    if expected_largest_mm is not None:
        return _expected_guess(float(expected_largest_mm), candidates, reasons)
    if anatomy:
        rows = [dict(r) for r in anatomy]
        decided = _anatomy_guess(rows, candidates, reasons)
        if decided is not None:
            return decided
        why = reasons.pop(0)  # the anatomy fits no unit or several: a person confirms
        guess = _size_guess(candidates, reasons, band)
        return replace(guess, clear=False, anatomy=rows, reasons=[why, *guess.reasons])
    return _size_guess(candidates, reasons, band)


def _size_guess(candidates: dict, reasons: list[str], band: tuple) -> UnitGuess:
    """Size alone decides: exactly one unit gives a plausible size, well inside the band."""
    plausible_mm = band[0]

    plausible = [u for u, c in candidates.items() if c["plausible"]]
    for unit in plausible:
        c = candidates[unit]
        reasons.append(
            f"in {UNIT_NAMES[unit]} the model would be {_dims(c['extents_mm'])} mm "
            f"(plausibility {c['score']:.2f})"
        )
    reasons.extend(_confusions(plausible, candidates))
    round_units = [u for u in plausible if _whole_mm(candidates[u]["extents_mm"])]
    if len(round_units) == 1 and round_units[0] != "mm":
        unit = round_units[0]
        reasons.append(
            f"x{UNIT_TO_MM[unit]:g} gives whole millimetres "
            f"({_dims(candidates[unit]['extents_mm'])} mm), typical of a design in mm "
            f"exported in {UNIT_NAMES[unit]}; a hint only, not proof"
        )
    if len(plausible) == 1 and candidates[plausible[0]]["score"] >= CLEAR_SCORE:
        unit = plausible[0]
        reasons.insert(0, f"only {UNIT_NAMES[unit]} give a plausible size")
        return _guess(unit, True, reasons, candidates)
    if not plausible:
        unit = min(
            candidates, key=lambda u: _distance_to_band(candidates[u]["largest_mm"], plausible_mm)
        )
        reasons.insert(
            0,
            f"no unit gives a plausible size ({plausible_mm[0]:g}-{plausible_mm[1]:g} mm "
            f"largest extent); nearest is {UNIT_NAMES[unit]} "
            f"({candidates[unit]['largest_mm']:.4g} mm)",
        )
        return _guess(unit, False, reasons, candidates)
    if len(plausible) == 1:
        unit = plausible[0]
        reasons.insert(
            0,
            f"only {UNIT_NAMES[unit]} give a plausible size, but it is near the edge of the "
            f"plausible range ({candidates[unit]['largest_mm']:.4g} mm)",
        )
        return _guess(unit, False, reasons, candidates)
    if "mm" in plausible:
        unit = "mm"
    elif len(round_units) == 1:
        unit = round_units[0]
    else:
        best = max(candidates[u]["score"] for u in plausible)
        unit = next(u for u in _PREFERENCE if u in plausible and candidates[u]["score"] == best)
    names = ", ".join(UNIT_NAMES[u] for u in plausible)
    reasons.insert(0, f"several units give a plausible size ({names}): size cannot decide")
    return _guess(unit, False, reasons, candidates)


def declared_unit_from_header(path: Path, fmt: str) -> str | None:
    """A unit the file itself states, read from its first few KB only; None if it states none.

    3MF: the ``unit`` attribute of ``<model>`` (default millimetre, per the 3MF core spec).
    OBJ/PLY/ASCII STL: a comment such as "This file uses centimeters as units" or
    "units: mm"; binary STL: the same in the 80-byte header. Several different units named,
    or none, give None: an ambiguous statement is not a declaration. The result is a key of
    ``UNIT_TO_MM``, except that a 3MF may also declare "um" or "ft" (``DECLARED_UNIT_TO_MM``).
    """
    path = Path(path)
    fmt = str(fmt).lower().lstrip(".")
    if fmt == "3mf":
        return _threemf_unit(path)
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_BYTES)
    if fmt == "stl":
        if not head.lstrip().lower().startswith(b"solid") or b"\x00" in head[:80]:
            text = head[:80].decode("latin-1")  # binary STL: only the header is text
        else:
            text = head.decode("latin-1").splitlines()[0] if head else ""
        return _unit_in_text([text])
    text = head.decode("latin-1", errors="replace")
    if fmt == "ply":
        end = text.find("end_header")
        lines = text[: end if end >= 0 else len(text)].splitlines()
        return _unit_in_text([ln[len("comment") :] for ln in lines if ln.startswith("comment")])
    if fmt == "obj":
        return _unit_in_text([ln[1:] for ln in text.splitlines() if ln.lstrip().startswith("#")])
    return None


# ----------------------------------------------------------------------------- helpers


def _candidate(ext: list[float], volume: float | None, factor: float, band: tuple) -> dict:
    extents_mm = [x * factor for x in ext]
    largest = max(extents_mm)
    score = size_score(largest, band)
    return {
        "extents_mm": extents_mm,
        "largest_mm": largest,
        "volume_cm3": None if volume is None else abs(float(volume)) * factor**3 / 1000.0,
        "score": round(score, 3),
        "plausible": score > 0,
    }


def _guess(unit: str, clear: bool, reasons: list[str], candidates: dict, declared=None, anatomy=()):
    return UnitGuess(
        proposed=unit,
        scale_to_mm=DECLARED_UNIT_TO_MM[unit],
        clear=clear,
        reasons=reasons,
        candidates=candidates,
        declared=declared,
        anatomy=list(anatomy),
    )


def _anatomy_guess(rows: list[dict], candidates: dict, reasons: list[str]) -> UnitGuess | None:
    """Clear when exactly one unit gives a size inside the range of the order's anatomy."""
    for c in candidates.values():
        c["anatomy_fit"] = [
            r["name"] for r in rows if r["low_mm"] <= c["largest_mm"] <= r["high_mm"]
        ]
    fitting = [u for u, c in candidates.items() if c["anatomy_fit"]]
    ranges = ", ".join(f"{r['name']} {r['low_mm']:g}-{r['high_mm']:g} mm" for r in rows)
    if len(fitting) == 1:
        unit = fitting[0]
        c = candidates[unit]
        reasons.insert(
            0,
            f"the part's anatomy expects a largest extent of {ranges}: only "
            f"{UNIT_NAMES[unit]} fit ({c['largest_mm']:.4g} mm)",
        )
        reasons.extend(
            f"{r['name']} size: {r['source']}" for r in rows if r["name"] in c["anatomy_fit"]
        )
        return _guess(unit, True, reasons, candidates, anatomy=rows)
    if fitting:
        sizes = "; ".join(f"{UNIT_NAMES[u]} {candidates[u]['largest_mm']:.4g} mm" for u in fitting)
        reasons.insert(0, f"several units fit the part's anatomy ({ranges}): {sizes}")
    else:
        reasons.insert(
            0,
            f"no unit fits the part's anatomy ({ranges}): check the file and the order",
        )
    return None


def _declared_guess(declared, ext, volume, candidates, reasons, band) -> UnitGuess:
    unit = _normalise_unit(declared)
    if unit is None:
        raise ValueError(
            f"unknown declared unit {declared!r}; expected one of {', '.join(DECLARED_UNIT_TO_MM)}"
        )
    if unit not in candidates:
        candidates[unit] = _candidate(ext, volume, DECLARED_UNIT_TO_MM[unit], band)
    chosen = candidates[unit]
    reasons.append(f"the file declares {UNIT_NAMES[unit]}")
    if not chosen["plausible"]:
        reasons.append(
            f"but in {UNIT_NAMES[unit]} the model would be {_dims(chosen['extents_mm'])} mm, "
            f"outside the plausible {band[0][0]:g}-{band[0][1]:g} mm: the "
            "declaration may be wrong; confirm the unit"
        )
        return _guess(unit, False, reasons, candidates, declared=unit)
    reasons.append(f"giving {_dims(chosen['extents_mm'])} mm")
    return _guess(unit, True, reasons, candidates, declared=unit)


def _expected_guess(expected: float, candidates: dict, reasons: list[str]) -> UnitGuess:
    if not math.isfinite(expected) or expected <= 0:
        raise ValueError(f"expected_largest_mm must be a positive number, got {expected}")
    matching = []
    for unit, c in candidates.items():
        ratio = c["largest_mm"] / expected
        c["ratio_to_expected"] = ratio
        if 1 / EXPECTED_FACTOR <= ratio <= EXPECTED_FACTOR:
            matching.append(unit)
    mm_ratio = candidates["mm"]["ratio_to_expected"]
    flag = _near_confusion(mm_ratio) or _near_confusion(1 / mm_ratio if mm_ratio else 0.0)
    if flag:
        reasons.append(
            f"read as mm the model is {mm_ratio:.3g}x the expected {expected:g} mm: near the "
            f"{flag} ratio"
        )
    if len(matching) == 1:
        unit = matching[0]
        reasons.insert(
            0,
            f"only {UNIT_NAMES[unit]} match the expected size of {expected:g} mm "
            f"({candidates[unit]['largest_mm']:.4g} mm)",
        )
        return _guess(unit, True, reasons, candidates)
    unit = min(candidates, key=lambda u: abs(math.log(candidates[u]["ratio_to_expected"] or 1e-30)))
    reasons.insert(0, f"no unit matches the expected size of {expected:g} mm within x1.5")
    return _guess(unit, False, reasons, candidates)


def _confusions(plausible: list[str], candidates: dict) -> list[str]:
    out = []
    for i, a in enumerate(plausible):
        for b in plausible[i + 1 :]:
            ratio = candidates[b]["largest_mm"] / candidates[a]["largest_mm"]
            ratio = ratio if ratio >= 1 else 1 / ratio
            flag = _near_confusion(ratio)
            if flag:
                out.append(f"{a} and {b} readings differ by x{ratio:g} (the {flag} mix-up)")
    return out


def _near_confusion(ratio: float) -> str | None:
    for value, name in CONFUSION_RATIOS.items():
        if ratio > 0 and abs(math.log(ratio / value)) < math.log(1.15):
            return name
    return None


def _whole_mm(extents_mm: list[float]) -> bool:
    """All extents within 1e-5 (relative) of whole millimetres, and at least 1 mm."""
    return all(x >= 1.0 and abs(x - round(x)) <= max(1e-5 * x, 1e-4) for x in extents_mm)


def _distance_to_band(largest_mm: float, plausible_mm: tuple = PLAUSIBLE_MM) -> float:
    lo, hi = plausible_mm
    if largest_mm <= 0:
        return math.inf
    return max(math.log(lo / largest_mm), math.log(largest_mm / hi), 0.0)


def _dims(values: list[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


_UNIT_WORDS = {
    "mm": r"millimet(?:er|re)s?|mm",
    "cm": r"centimet(?:er|re)s?|cm",
    "m": r"met(?:er|re)s?",
    "in": r"inch(?:es)?",
}
# Short forms that are also ordinary words ("in", "m") only count right after "unit(s)=/:".
_UNIT_SHORT = {"mm": "mm", "cm": "cm", "m": "m", "in": "in", "inch": "in"}


def _normalise_unit(text: str) -> str | None:
    t = str(text).strip().lower()
    if t in DECLARED_UNIT_TO_MM:
        return t
    if t in THREEMF_UNITS:
        return THREEMF_UNITS[t]
    for unit, pattern in _UNIT_WORDS.items():
        if re.fullmatch(pattern, t):
            return unit
    return None


def _unit_in_text(lines: list[str]) -> str | None:
    """The one unit named as "the units" in comment lines, else None."""
    found: set[str] = set()
    words = "|".join(f"(?P<{u}>{p})" for u, p in _UNIT_WORDS.items())
    patterns = [
        # "uses centimeters as units", "millimetre units"
        re.compile(rf"\b(?:{words})\s+(?:as\s+)?(?:the\s+)?units?\b", re.IGNORECASE),
        # "units are millimetres", "unit: centimeter", "in units of inches"
        re.compile(rf"\bunits?\s*(?:[:=]|is|are|of|in)\s*(?:{words})\b", re.IGNORECASE),
    ]
    short = re.compile(r"\bunits?\s*[:=]\s*(mm|cm|m|in|inch)\b", re.IGNORECASE)
    for line in lines:
        for pattern in patterns:
            for match in pattern.finditer(line):
                found.update(u for u, v in match.groupdict().items() if v)
        for match in short.finditer(line):
            found.add(_UNIT_SHORT[match.group(1).lower()])
    return found.pop() if len(found) == 1 else None


def _threemf_unit(path: Path) -> str | None:
    """The ``unit`` attribute of the root 3MF model, from its first few KB (no full parse)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            model = next((n for n in names if n.lower() == "3d/3dmodel.model"), None)
            if model is None:
                model = next((n for n in names if n.lower().endswith(".model")), None)
            if model is None:
                return None
            with zf.open(model) as fh:
                head = fh.read(_HEADER_BYTES).decode("utf-8", errors="replace")
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, NotImplementedError):
        return None
    match = re.search(r"<(?:\w+:)?model\b[^>]*?\bunit\s*=\s*[\"']([^\"']*)[\"']", head)
    if match is None:
        return "mm" if re.search(r"<(?:\w+:)?model\b", head) else None
    return THREEMF_UNITS.get(match.group(1).strip().lower())
