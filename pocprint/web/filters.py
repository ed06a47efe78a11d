"""Template filters: times in the site's time zone, durations, numbers and stored values in
the lab's words."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from flask import Flask, current_app

from pocprint.domain.times import local_input_value, local_text
from pocprint.domain.wording import device_status, event_words, say


def site_zone() -> str:
    lab = current_app.extensions.get("pocprint.lab")
    return lab.settings.time_zone if lab is not None else "UTC"


def dt(value) -> str:
    """A stored UTC time in the site's time zone, to the minute."""
    return local_text(value, site_zone())


def dts(value) -> str:
    """The same with seconds (audit events, where the order within a minute matters)."""
    return local_text(value, site_zone(), seconds=True)


def when(value) -> str:
    """A predicted time as people say it: 'Mon 07 Dec 14:00 CET' in the site's time zone."""
    return local_text(value, site_zone(), fmt="%a %d %b %H:%M %Z")


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


def _shown(value) -> str:
    """A recorded value as text: times in the site's zone to the second, never raw ISO."""
    if isinstance(value, datetime) or (
        isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T"
    ):
        return dts(value)
    return say(value) if isinstance(value, bool) else str(value)


def flat(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested event values as readable "a.b: value" pairs (empty values left out)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            pairs.extend(flat(inner, f"{prefix}{key}."))
    elif value not in (None, [], {}, ""):
        text = ", ".join(map(_shown, value)) if isinstance(value, list) else _shown(value)
        pairs.append((prefix.rstrip("."), text))
    return pairs


def from_json(text) -> list:
    """A JSON list carried in a hidden form field (e.g. the PACS series); [] if damaged."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def register(app: Flask) -> None:
    app.jinja_env.filters.update(
        dt=dt,
        dts=dts,
        dur=dur,
        when=when,
        num=num,
        extents=extents,
        flat=flat,
        say=say,
        event_words=event_words,
        from_json=from_json,
        local_input=lambda v: local_input_value(v, site_zone()),
    )
    app.jinja_env.globals["device_status"] = device_status
    app.jinja_env.globals["site_zone"] = site_zone
    app.jinja_env.globals["today"] = lambda: datetime.now(UTC).date()
    app.jinja_env.globals["date"] = date
