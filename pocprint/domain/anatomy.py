"""Anatomy parts of an order, coded as in the ACR-RSNA 3D Printing Registry:
region / subregion / structure / laterality (DOMAIN.md section 3)."""

from __future__ import annotations

LATERALITY = ("left", "right", "midline", "bilateral", "not_applicable")
SIDE_LABELS = {
    "left": "left",
    "right": "right",
    "midline": "midline",
    "bilateral": "bilateral",
    "not_applicable": "n/a (no side)",
}
MAX_PARTS = 20  # the registry takes 1-20 parts per case, dominant first


def anatomy_problems(parts: list[dict], taxonomy: dict[str, dict[str, list[str]]]) -> list[str]:
    """`taxonomy` maps region -> subregion -> allowed structures (see config/anatomy.toml)."""
    problems: list[str] = []
    if not parts:
        return ["at least one anatomy part is required (region, subregion, structure, side)"]
    if len(parts) > MAX_PARTS:
        problems.append(f"at most {MAX_PARTS} anatomy parts per case")
    for n, part in enumerate(parts, start=1):
        region = (part.get("region") or "").strip()
        subregion = (part.get("subregion") or "").strip()
        structure = (part.get("structure") or "").strip()
        side = (part.get("laterality") or "").strip()
        where = f"anatomy part {n}"
        if region not in taxonomy:
            problems.append(f"{where}: unknown region {region!r}")
            continue
        if subregion not in taxonomy[region]:
            problems.append(f"{where}: {subregion!r} is not a subregion of {region}")
            continue
        if structure and structure not in taxonomy[region][subregion]:
            problems.append(f"{where}: {structure!r} is not a structure of {region} / {subregion}")
        if side not in LATERALITY:
            problems.append(
                f"{where}: choose the side (left, right, midline, bilateral or n/a); "
                "there is no default"
            )
        if len(part.get("comment") or "") > 200:
            problems.append(f"{where}: comment is longer than 200 characters")
    return problems


def clean_parts(parts: list[dict]) -> list[dict]:
    return [
        {
            "region": p.get("region", "").strip(),
            "subregion": p.get("subregion", "").strip(),
            "structure": (p.get("structure") or "").strip(),
            "laterality": p.get("laterality", "").strip(),
            "comment": (p.get("comment") or "").strip(),
        }
        for p in parts
    ]


def describe(part: dict) -> str:
    bits = [part.get("region"), part.get("subregion"), part.get("structure")]
    text = " - ".join(b for b in bits if b)
    side = part.get("laterality")
    if side and side != "not_applicable":
        text += f" ({SIDE_LABELS.get(side, side)})"
    return text
