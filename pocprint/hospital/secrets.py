"""Secrets for hospital systems: from an environment variable or a file under the data
directory's secrets/, never written in config/pocprint.toml."""

from __future__ import annotations

import os
from pathlib import Path

from pocprint.hospital.errors import ConfigError


def refuse_inline(section: str, raw: dict, *keys: str) -> None:
    for key in keys:
        if key in raw:
            raise ConfigError(
                f"[{section}] {key}: a secret is never written in the configuration; "
                f"use {key}_env (an environment variable) or {key}_file (under secrets/)"
            )


def read_secret(section: str, raw: dict, key: str, secrets_dir: Path) -> str | None:
    """The value of `<key>_env` or `<key>_file`; None when neither is set."""
    env, file = raw.get(f"{key}_env"), raw.get(f"{key}_file")
    if env:
        value = os.environ.get(str(env), "").strip()
        if not value:
            raise ConfigError(f"[{section}] {key}_env: the environment variable {env} is empty")
        return value
    if file:
        path = Path(str(file))
        path = path if path.is_absolute() else secrets_dir / path
        if not path.exists():
            raise ConfigError(f"[{section}] {key}_file: {path} does not exist")
        return path.read_text().strip()
    return None
