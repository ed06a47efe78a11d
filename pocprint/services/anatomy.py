"""The anatomy taxonomy file (config/anatomy.toml), read once per path."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=4)
def taxonomy(path: Path) -> dict[str, dict[str, list[str]]]:
    with Path(path).open("rb") as fh:
        return tomllib.load(fh)
