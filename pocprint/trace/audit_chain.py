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


# --- fast verification of a SQLite file (the embedded default) ------------------------------
# The same hash, built from the stored text without ORM or type processing, and the id range
# split over worker processes: each event's check needs only its own row and the stored hash
# of the row before it, so ranges verify independently and the boundaries are joined after.

_SELECT = (
    "SELECT id, at, actor, action, entity, entity_id, before, after, reason, prev_hash, hash "
    "FROM audit_event WHERE id BETWEEN ? AND ? ORDER BY id"
)


# The C encoder and scanner the json module uses, built once: json.dumps/loads with options
# build them again at every call, which is most of the cost of a walk over a million events.
_q = json.encoder.encode_basestring  # a JSON string (ensure_ascii=False)
_scan = json.scanner.make_scanner(json.JSONDecoder())
if json.encoder.c_make_encoder is not None:
    _encode = json.encoder.c_make_encoder(
        None, json.JSONEncoder().default, _q, None, ":", ",", True, False, True
    )
else:  # no C accelerator (e.g. PyPy): the same output, slower
    _slow = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def _encode(value, _level):
        return (_slow.encode(value),)


def _str(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _canonical_json(text: str | None, cache: dict) -> str:
    """Canonical form of stored JSON text; small repeated values ({"state": ...}) are cached."""
    if text is None:
        return "null"
    found = cache.get(text)
    if found is None:
        value, _end = _scan(text, 0)
        found = "".join(_encode(value, 0))
        if len(text) < 200 and len(cache) < 10_000:
            cache[text] = found
    return found


def _stored_time(text: str) -> str:
    """SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS[.ffffff]'; the hash covers the ISO form."""
    text = text.replace(" ", "T", 1)
    if text.endswith("+00:00"):
        text = text[:-6]
    if "." not in text:
        text += ".000000"
    return text + "Z"


def _verify_range(
    path: str, low: int, high: int
) -> tuple[str | None, str | None, int, int | None, str | None]:
    """(first prev_hash, last hash, events verified, first broken id, problem) for ids low..high."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sha256 = hashlib.sha256
        cache: dict[str, str] = {}
        first_prev = last = None
        count = 0
        cursor = conn.execute(_SELECT, (low, high))
        cursor.arraysize = 5000
        while rows := cursor.fetchmany():
            for (
                ev_id,
                at,
                actor,
                action,
                entity,
                entity_id,
                before,
                after,
                reason,
                prev,
                digest,
            ) in rows:
                if first_prev is None:
                    first_prev = prev
                elif prev != last:
                    return first_prev, last, count, ev_id, "previous-hash link does not match"
                body = (
                    f'{{"action":{_q(action)},"actor":{_q(actor)},'
                    f'"after":{_canonical_json(after, cache)},"at":"{_stored_time(at)}",'
                    f'"before":{_canonical_json(before, cache)},"entity":{_q(entity)},'
                    f'"entity_id":{_q(entity_id)},"prev":"{prev}","reason":{_str(reason)}}}'
                )
                if sha256(body.encode()).hexdigest() != digest:
                    return first_prev, last, count, ev_id, "event content does not match its hash"
                last = digest
                count += 1
        return first_prev, last, count, None, None
    finally:
        conn.close()


def verify_sqlite_file(
    path: str, workers: int | None = None, min_chunk: int = 50_000
) -> ChainCheck:
    """Verify every event of a SQLite database file, in parallel over id ranges.

    Workers are separate interpreters (`python -m pocprint.trace.audit_chain PATH LOW HIGH`):
    no fork of a threaded server, no re-import of the caller's main module.
    """
    import os
    import sqlite3
    import subprocess
    import sys

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        low, high = conn.execute("SELECT min(id), max(id) FROM audit_event").fetchone()
    finally:
        conn.close()
    if low is None:
        return ChainCheck(True, 0, GENESIS)
    workers = max(1, min(workers or os.cpu_count() or 1, (high - low) // min_chunk + 1))
    step = (high - low) // workers + 1
    ranges = [(a, min(a + step - 1, high)) for a in range(low, high + 1, step)]
    if len(ranges) == 1:
        results = [_verify_range(path, low, high)]
    else:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "pocprint.trace.audit_chain", path, str(a), str(b)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for a, b in ranges
        ]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"audit chain worker failed (exit {proc.returncode})")
            results.append(tuple(json.loads(out)))
    prev, total = GENESIS, 0
    for (a, _b), (first_prev, last, count, broken, problem) in zip(ranges, results, strict=True):
        if first_prev is not None and first_prev != prev:
            first = _first_id(path, a)
            return ChainCheck(False, total, prev, first, "previous-hash link does not match")
        if broken is not None:
            return ChainCheck(False, total + count, last or prev, broken, problem)
        total += count
        prev = last or prev
    return ChainCheck(True, total, prev)


def _first_id(path: str, low: int) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT min(id) FROM audit_event WHERE id >= ?", (low,)).fetchone()[0]
    finally:
        conn.close()


if __name__ == "__main__":  # a verification worker: PATH LOW HIGH -> JSON on stdout
    import sys

    print(json.dumps(_verify_range(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
