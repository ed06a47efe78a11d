"""Electronic signatures bound to the hash of the exact content signed.

A signature is valid while its content hash equals the hash of the current content and no
later signature withdraws it. Callers build `content` from what is being signed (files'
SHA-256 and the relevant fields); any change to it voids the signature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from pocprint.config import Settings
from pocprint.faults import kill_point
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound
from pocprint.services.users import reauthenticate
from pocprint.store.models import Signature

WITHDRAWAL = "withdrew signature"


def canonical(content: dict[str, Any]) -> str:
    return json.dumps(audit.plain(content), sort_keys=True, separators=(",", ":"))


def content_digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def sign(
    session: Session,
    actor: Actor,
    password: str,
    *,
    settings: Settings,
    meaning: str,
    entity: str,
    entity_id: Any,
    content: dict[str, Any],
    comment: str = "",
) -> Signature:
    """Re-authenticate the signer and record the signature and its audit event. A wrong
    password abandons the use case and counts toward the lockout (users.reauthenticate)."""
    signer = reauthenticate(session, settings, actor, password, f"the signature ({meaning})")
    signature = Signature(
        user_id=signer.id,
        signer_name=signer.full_name,
        meaning=meaning,
        entity=entity,
        entity_id=str(entity_id),
        content_sha256=content_digest(content),
        content=json.loads(canonical(content)),
        comment=(comment or "").strip(),
    )
    session.add(signature)
    session.flush()
    audit.record(
        session,
        actor,
        "signature.signed",
        entity,
        entity_id,
        after=manifest(signature),
        reason=signature.comment or None,
    )
    kill_point("signature.before_commit")
    return signature


def withdraw(
    session: Session,
    settings: Settings,
    actor: Actor,
    password: str,
    signature_id: int,
    reason: str,
) -> Signature:
    """Withdraw a signature with a new, signed record; the original stays as it was."""
    if not (reason or "").strip():
        raise Invalid("a withdrawal needs a reason")
    original = session.get(Signature, signature_id)
    if original is None:
        raise NotFound(f"no signature {signature_id}")
    if original.meaning == WITHDRAWAL:
        raise Invalid("a withdrawal cannot itself be withdrawn")
    if _withdrawal_of(session, original.id) is not None:
        raise Invalid("that signature is already withdrawn")
    signer = reauthenticate(session, settings, actor, password, "the withdrawal")
    withdrawal = Signature(
        user_id=signer.id,
        signer_name=signer.full_name,
        meaning=WITHDRAWAL,
        entity=original.entity,
        entity_id=original.entity_id,
        content_sha256=original.content_sha256,
        content={"withdraws": original.id, "meaning": original.meaning},
        comment=reason.strip(),
        withdraws_id=original.id,
    )
    session.add(withdrawal)
    session.flush()
    audit.record(
        session,
        actor,
        "signature.withdrawn",
        original.entity,
        original.entity_id,
        before=manifest(original),
        after=manifest(withdrawal),
        reason=withdrawal.comment,
    )
    return withdrawal


def _withdrawal_of(session: Session, signature_id: int) -> Signature | None:
    return session.exec(select(Signature).where(Signature.withdraws_id == signature_id)).first()


@dataclass(frozen=True)
class SignatureStatus:
    """`valid` when a signature signs the current content; otherwise why not."""

    state: str  # "valid", "void" (content changed), "withdrawn", "missing"
    signature: Signature | None

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def status(
    session: Session, *, meaning: str, entity: str, entity_id: Any, content: dict[str, Any]
) -> SignatureStatus:
    """The latest signature of this meaning on this entity, judged against the current content."""
    latest = session.exec(
        select(Signature)
        .where(
            Signature.meaning == meaning,
            Signature.entity == entity,
            Signature.entity_id == str(entity_id),
        )
        .order_by(Signature.id.desc())
    ).first()
    if latest is None:
        return SignatureStatus("missing", None)
    if _withdrawal_of(session, latest.id) is not None:
        return SignatureStatus("withdrawn", latest)
    if latest.content_sha256 != content_digest(content):
        return SignatureStatus("void", latest)
    return SignatureStatus("valid", latest)


def manifest(signature: Signature) -> dict[str, Any]:
    """What a signature shows: printed name, date and time, meaning, and the hash signed."""
    return {
        "id": signature.id,
        "signer": signature.signer_name,
        "user_id": signature.user_id,
        "meaning": signature.meaning,
        "signed_at": signature.signed_at,
        "content_sha256": signature.content_sha256,
        "withdraws": signature.withdraws_id,
    }
