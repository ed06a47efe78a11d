"""Patient identifiers, for sites that choose to store them: encrypted at rest (Fernet,
AES-128-CBC + HMAC-SHA256) with the key from the site configuration, kept in the case only."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken

from pocprint.config import Settings
from pocprint.services.errors import Invalid

FIELDS = ("name", "record_number", "birth_date")


def clean(identifiers: dict | None) -> dict | None:
    """Only the known fields, trimmed; None when nothing was given."""
    if not identifiers:
        return None
    unknown = set(identifiers) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown patient identifier fields: {', '.join(sorted(unknown))}")
    kept = {k: str(v).strip()[:200] for k, v in identifiers.items() if str(v or "").strip()}
    return kept or None


def _fernet(settings: Settings) -> Fernet:
    if not settings.identifiers_key:
        raise Invalid(
            "this site stores no patient identifiers (no identifiers key is configured); "
            "use the pseudonymous patient code only"
        )
    try:
        return Fernet(settings.identifiers_key.encode())
    except ValueError as exc:
        raise Invalid("the configured identifiers key is not a valid Fernet key") from exc


def encrypt(settings: Settings, identifiers: dict) -> str:
    return _fernet(settings).encrypt(json.dumps(identifiers, sort_keys=True).encode()).decode()


def decrypt(settings: Settings, token: str) -> dict:
    try:
        return json.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken as exc:
        raise Invalid("the patient identifiers cannot be read with the configured key") from exc


def new_key() -> str:
    return Fernet.generate_key().decode()
