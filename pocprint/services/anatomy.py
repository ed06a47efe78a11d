"""The anatomy file (config/anatomy.toml): the order taxonomy and the expected sizes of
structures (its ``[[sizes]]`` rows), read once per path."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pocprint.domain.anatomy_sizes import SizeRange, parse_sizes

SIZES_KEY = "sizes"


@lru_cache(maxsize=4)
def _raw(path: Path) -> dict:
    with Path(path).open("rb") as fh:
        return tomllib.load(fh)


def taxonomy(path: Path) -> dict[str, dict[str, list[str]]]:
    """region -> subregion -> structures (every table of the file except the sizes)."""
    return {k: v for k, v in _raw(Path(path)).items() if k != SIZES_KEY}


@lru_cache(maxsize=4)
def size_ranges(path: Path) -> tuple[SizeRange, ...]:
    return parse_sizes(_raw(Path(path)).get(SIZES_KEY, []), where=str(path))
