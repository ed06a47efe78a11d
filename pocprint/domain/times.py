"""Times as the lab reads and types them: stored in UTC, shown and entered in the site's
time zone (config `[site] time_zone`), to the minute, with the zone's abbreviation."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use a name such as Europe/Berlin)") from exc


def as_datetime(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def local_text(value, zone_name: str | None, seconds: bool = False, fmt: str | None = None) -> str:
    """'2026-12-04 23:10 CET' for a UTC time (text left as it is when it is not a time)."""
    moment = as_datetime(value)
    if moment is None:
        return "—" if value in (None, "") else str(value)
    local = moment.astimezone(zone(zone_name))
    return local.strftime(fmt or ("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z"))


def from_local_input(text: str, zone_name: str | None) -> datetime:
    """A datetime-local field's value, read as the site's local time, as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(zone_name))
    return moment.astimezone(UTC)


def local_input_value(value, zone_name: str | None) -> str:
    """A stored UTC time as a datetime-local field's value in the site's time zone."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    return moment.astimezone(zone(zone_name)).strftime("%Y-%m-%dT%H:%M")
