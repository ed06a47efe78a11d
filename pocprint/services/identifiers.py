"""Patient identifiers, for sites that choose to store them: encrypted at rest (Fernet,
AES-128-CBC + HMAC-SHA256) with the key from the site configuration, kept in the case only.

The accession number is one of them: it leads straight back to the patient in the RIS. It is
stored encrypted with the others, and what signatures bind is its keyed hash (HMAC-SHA256
with a key derived from the identifiers key), never the number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pocprint.config import Settings
from pocprint.domain.patient_code import CodeRules
from pocprint.services.errors import Invalid
from pocprint.store.models import Case

FIELDS = ("name", "record_number", "birth_date")
ACCESSION = "accession_number"
STORED_FIELDS = (*FIELDS, ACCESSION)


def clean(identifiers: dict | None) -> dict | None:
    """Only the known fields, trimmed; None when nothing was given."""
    if not identifiers:
        return None
    unknown = set(identifiers) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown patient identifier fields: {', '.join(sorted(unknown))}")
    kept = {k: str(v).strip()[:200] for k, v in identifiers.items() if str(v or "").strip()}
    return kept or None


def normalised_accession(accession: str | None) -> str | None:
    text = " ".join((accession or "").split()).upper()
    return text or None


def keyed_hash(settings: Settings, accession: str) -> str:
    """HMAC-SHA256 of the accession number, keyed by a key derived from the identifiers key:
    equal numbers give equal hashes at this site, and the hash alone reveals nothing."""
    _fernet(settings)  # no key: refused with the same message as any identifier
    master = base64.urlsafe_b64decode(settings.identifiers_key.encode())
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"pocprint accession number"
    ).derive(master)
    return hmac.new(key, normalised_accession(accession).encode(), hashlib.sha256).hexdigest()


def read_stored(settings: Settings, token: str | None) -> dict:
    """A case's stored identifiers, or {} when it has none or the site has no key."""
    if not token or not settings.identifiers_key:
        return {}
    return decrypt(settings, token)


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


def code_rules(settings: Settings) -> CodeRules:
    return CodeRules(
        settings.patient_code_pattern, settings.patient_code_hint, settings.record_number_digits
    )


def seal(settings: Settings, case: Case, stored: dict, accession: str | None) -> None:
    """Store a case's identifiers (with the accession number) encrypted, and the accession
    number's keyed hash; the legacy plain column is emptied."""
    stored = {k: v for k, v in stored.items() if k != ACCESSION}
    if accession:
        stored[ACCESSION] = accession
    case.patient_identifiers = encrypt(settings, stored) if stored else None
    case.accession_hmac = keyed_hash(settings, accession) if accession else None
    case.accession_number = None


def audit_view(values: dict) -> dict:
    """Order values as the audit trail keeps them: the accession number never in clear."""
    out = dict(values)
    if "accession_number" in out:
        out["accession_number"] = "stored encrypted" if out["accession_number"] else None
    return out


def seal_plain_accessions(settings: Settings, engine) -> int:
    """At start: accession numbers stored in clear before 0010 are moved into the encrypted
    identifiers (audited per case). Without an identifiers key they stay, and this says so.
    A review signature that bound the clear number no longer matches (its content changed
    form) and the case shows the review as void: it must be reviewed again."""
    import logging

    from sqlmodel import select

    from pocprint.services import audit
    from pocprint.store.db import unit_of_work

    with unit_of_work(engine) as session:
        cases = session.exec(select(Case).where(Case.accession_number.is_not(None))).all()
        if cases and not settings.identifiers_key:
            logging.getLogger(__name__).warning(
                "%d case(s) hold an accession number in clear (from before 0010); configure "
                "an identifiers key so pocprint can encrypt them",
                len(cases),
            )
            return 0
        for case in cases:
            seal(
                settings,
                case,
                read_stored(settings, case.patient_identifiers),
                case.accession_number,
            )
            audit.record(
                session,
                "system",
                "case.accession_sealed",
                "case",
                case.code,
                after={"accession_number": "stored encrypted"},
                reason="accession numbers are kept encrypted with the patient identifiers (0010)",
            )
        return len(cases)
