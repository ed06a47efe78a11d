"""Appropriateness criteria (RSNA 3D Printing SIG, ACR method): bands, catalog rows and the
justification rule of a review."""

from __future__ import annotations

import re
from enum import StrEnum


class Band(StrEnum):
    USUALLY = "usually"  # 7-9, usually appropriate
    MAY = "may"  # 4-6, may be appropriate
    USUALLY_NOT = "usually_not"  # 1-3, usually not appropriate

    @property
    def label(self) -> str:
        return {
            "usually": "Usually appropriate",
            "may": "May be appropriate",
            "usually_not": "Usually not appropriate",
        }[self.value]


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    MORE_INFO = "more_info"


RATING_DRIVEN_BY = ("literature", "expert")
PRINT_COMPLEXITY = ("basic", "intermediate", "complex")
ROW_STATUS = ("band_only", "transcribed", "verified")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,79}$")

# The CSV columns, in order (DOMAIN.md section 2, "Catalog row").
COLUMNS = (
    "scenario_id",
    "catalog_version",
    "specialty",
    "condition_group",
    "scenario_text",
    "rating",
    "band",
    "disagreement",
    "rating_driven_by",
    "evidence_category",
    "print_complexity",
    "source_doi",
    "source_table",
    "publication_year",
    "status",
)


def band_of(rating: int) -> Band:
    if not 1 <= rating <= 9:
        raise ValueError(f"rating {rating} is outside 1-9")
    if rating >= 7:
        return Band.USUALLY
    if rating >= 4:
        return Band.MAY
    return Band.USUALLY_NOT


def _int_or_none(value, name: str, low: int, high: int, problems: list[str]) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        problems.append(f"{name} must be a whole number, not {value!r}")
        return None
    if not low <= number <= high:
        problems.append(f"{name} must be between {low} and {high}")
        return None
    return number


def _choice(value, name: str, allowed: tuple[str, ...], problems: list[str]) -> str | None:
    text = (value or "").strip().lower()
    if not text:
        return None
    if text not in allowed:
        problems.append(f"{name} must be one of {', '.join(allowed)} (or empty)")
        return None
    return text


def clean_row(raw: dict) -> tuple[dict, list[str]]:
    """Validate one catalog row; the band is derived from the rating whenever there is one."""
    problems: list[str] = []
    row: dict = {}
    for name in ("scenario_id", "catalog_version"):
        value = (raw.get(name) or "").strip().lower()
        if not SLUG.match(value):
            problems.append(f"{name} must be a slug (lower-case letters, digits, dashes)")
        row[name] = value
    for name, limit, required in (
        ("specialty", 100, True),
        ("condition_group", 200, False),
        ("scenario_text", 2000, True),
        ("source_doi", 200, True),
        ("source_table", 100, False),
    ):
        value = (raw.get(name) or "").strip()
        if required and not value:
            problems.append(f"{name} is required")
        if len(value) > limit:
            problems.append(f"{name} is longer than {limit} characters")
        row[name] = value
    row["rating"] = _int_or_none(raw.get("rating"), "rating", 1, 9, problems)
    given_band = (raw.get("band") or "").strip().lower()
    if row["rating"] is not None:
        derived = band_of(row["rating"])
        if given_band and given_band != derived.value:
            problems.append(
                f"band {given_band!r} contradicts rating {row['rating']} ({derived.value})"
            )
        row["band"] = derived.value
    elif given_band in {b.value for b in Band}:
        row["band"] = given_band
    else:
        problems.append("a row needs a rating 1-9, or a band (usually, may, usually_not)")
        row["band"] = None
    row["disagreement"] = str(raw.get("disagreement") or "").strip().lower() in {
        "1",
        "true",
        "yes",
    }
    row["rating_driven_by"] = _choice(
        raw.get("rating_driven_by"), "rating_driven_by", RATING_DRIVEN_BY, problems
    )
    row["evidence_category"] = _int_or_none(
        raw.get("evidence_category"), "evidence_category", 1, 4, problems
    )
    row["print_complexity"] = _choice(
        raw.get("print_complexity"), "print_complexity", PRINT_COMPLEXITY, problems
    )
    row["publication_year"] = _int_or_none(
        raw.get("publication_year"), "publication_year", 1990, 2100, problems
    )
    status = _choice(raw.get("status"), "status", ROW_STATUS, problems)
    row["status"] = status or ("transcribed" if row["rating"] is not None else "band_only")
    if row["status"] == "band_only" and row["rating"] is not None:
        problems.append("status band_only means no rating was transcribed; clear the rating")
    return row, problems


def needs_justification(decision: Decision, band: str | None, in_catalog: bool) -> bool:
    """Approving needs a written reason unless the scenario is in the catalog and usually
    appropriate (rated 7-9); rejecting or asking for more information always needs one."""
    if decision != Decision.APPROVE:
        return True
    return not in_catalog or band != Band.USUALLY.value


_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "for",
        "with",
        "without",
        "in",
        "on",
        "to",
        "or",
        "by",
        "at",
        "from",
        "after",
        "before",
        "not",
        "no",
        "is",
        "are",
        "left",
        "right",
        "bilateral",
        "midline",
        "planning",
        "model",
        "guide",
        "surgical",
    ]
)


def _words(text: str) -> set[str]:
    cleaned = "".join(ch.lower() if ch.isalnum() else " " for ch in text or "")
    return {w.rstrip("s") for w in cleaned.split() if len(w) > 2 and w not in _STOP}


def rank_scenarios(scenarios: list, anatomy: list[dict] | None, indication: str) -> list:
    """Catalog rows ordered for the order under review: most words shared with the order's
    anatomy (region, subregion, structure) and indication first, then the catalog's own
    order. Each row is returned with its score: [(row, score), ...]."""
    anatomy_words: set[str] = set()
    for part in anatomy or []:
        for key in ("region", "subregion", "structure"):
            anatomy_words |= _words(part.get(key) or "")
    wanted = anatomy_words | _words(indication)
    scored = []
    for index, row in enumerate(scenarios):
        text = " ".join(
            [
                row.scenario_text or "",
                row.specialty or "",
                getattr(row, "condition_group", "") or "",
            ]
        )
        have = _words(text)
        score = 2 * len(have & anatomy_words) + len(have & wanted)
        scored.append((-score, index, row, score))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [(row, score) for _neg, _i, row, score in scored]
