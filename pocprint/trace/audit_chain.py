"""Hash chain over audit events: each event's SHA-256 covers its content and the previous hash,
so editing, removing or reordering any past event breaks every later link."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def _canonical_time(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    before: Any,
    after: Any,
    reason: str | None,
) -> str:
    body = {
        "prev": prev_hash,
        "at": _canonical_time(at),
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "before": before,
        "after": after,
        "reason": reason,
    }
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None  # id of the first event whose link does not hold
    problem: str | None = None


def verify(events: Iterable[Any]) -> ChainCheck:
    """Walk events in id order (objects with the AuditEvent fields)."""
    prev = GENESIS
    count = 0
    for ev in events:
        if ev.prev_hash != prev:
            return ChainCheck(False, count, prev, ev.id, "previous-hash link does not match")
        expected = event_hash(
            ev.prev_hash,
            ev.at,
            ev.actor,
            ev.action,
            ev.entity,
            ev.entity_id,
            ev.before,
            ev.after,
            ev.reason,
        )
        if expected != ev.hash:
            return ChainCheck(False, count, prev, ev.id, "event content does not match its hash")
        prev = ev.hash
        count += 1
    return ChainCheck(True, count, prev)
