"""Build a connector from a printer's configured kind, URL and key.

A plain dict of factories keeps adding a kind (e.g. "manual") to a one-line change.
"""

from __future__ import annotations

from collections.abc import Callable

from pocprint.connectors.base import PrinterConnector
from pocprint.connectors.manual import ManualConnector
from pocprint.connectors.octoprint import OctoPrintConnector

ConnectorFactory = Callable[..., PrinterConnector]


def _octoprint(*, url: str, api_key: str | None, timeout: float) -> PrinterConnector:
    if not api_key:
        raise ValueError("an OctoPrint printer needs an API key")
    return OctoPrintConnector(url, api_key, timeout=timeout)


def _manual(*, url: str, api_key: str | None, timeout: float) -> PrinterConnector:
    return ManualConnector()


CONNECTORS: dict[str, ConnectorFactory] = {
    "octoprint": _octoprint,
    "manual": _manual,
}


def make_connector(
    kind: str, *, url: str, api_key: str | None, timeout: float = 5.0
) -> PrinterConnector:
    """Return a connector for a printer of the given kind; ValueError names the known kinds."""
    factory = CONNECTORS.get(kind)
    if factory is None:
        known = ", ".join(sorted(CONNECTORS))
        raise ValueError(f"unknown printer connector kind {kind!r}; known kinds: {known}")
    return factory(url=url, api_key=api_key, timeout=timeout)
