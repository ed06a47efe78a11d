"""The manufacturer and label settings of the site (`config/traceability.toml`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pocprint.config import REPO_ROOT

DEFAULT_FILE = REPO_ROOT / "config" / "traceability.toml"
LABEL_SIZES = ("62mm", "4x6")


@dataclass(frozen=True)
class Site:
    name: str
    address: str = ""
    sites: tuple[str, ...] = ()
    authorised_representative: str = ""
    compliance_person: str = ""
    gspr_statement: str = ""
    gspr_exceptions: str = ""
    label_size: str = "62mm"
    gtins: dict[str, str] = field(default_factory=dict)


def gtin_valid(gtin: str) -> bool:
    """GS1 mod-10 check digit over 14 digits."""
    if len(gtin) != 14 or not gtin.isdigit():
        return False
    digits = [int(d) for d in gtin]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(digits[:-1]))
    return (10 - total % 10) % 10 == digits[-1]


def load_site(path: Path | None = None) -> Site:
    path = Path(path or os.environ.get("POCPRINT_TRACEABILITY_FILE", DEFAULT_FILE))
    raw = {}
    if path.exists():
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    m = raw.get("manufacturer", {})
    labels = raw.get("labels", {})
    size = labels.get("size", "62mm")
    if size not in LABEL_SIZES:
        raise ValueError(f"{path}: labels.size must be one of {', '.join(LABEL_SIZES)}")
    gtins = {k: str(v) for k, v in (labels.get("gtin") or {}).items()}
    for device_type, gtin in gtins.items():
        if not gtin_valid(gtin):
            raise ValueError(f"{path}: labels.gtin.{device_type} is not a valid GTIN-14")
    return Site(
        name=m.get("name", "Point-of-care 3D printing lab"),
        address=m.get("address", ""),
        sites=tuple(m.get("sites", ())),
        authorised_representative=m.get("authorised_representative", ""),
        compliance_person=m.get("compliance_person", ""),
        gspr_statement=m.get("gspr_statement", ""),
        gspr_exceptions=m.get("gspr_exceptions", ""),
        label_size=size,
        gtins=gtins,
    )
