"""Template filters: times in UTC, durations and numbers as the lab reads them."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask


def dt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def dur(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def num(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def extents(value) -> str:
    if not value:
        return "—"
    return " × ".join(f"{float(v):.1f}" for v in value)


def flat(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested event values as readable "a.b: value" pairs (empty values left out)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            pairs.extend(flat(inner, f"{prefix}{key}."))
    elif value not in (None, [], {}, ""):
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        pairs.append((prefix.rstrip("."), text))
    return pairs


def register(app: Flask) -> None:
    app.jinja_env.filters.update(dt=dt, dur=dur, num=num, extents=extents, flat=flat)
    app.jinja_env.globals["today"] = lambda: datetime.now(UTC).date()
    app.jinja_env.globals["date"] = date
