"""Shared helpers for tests that drive a real OctoPrint with its virtual printer.

A plain module (imported by conftest and by test modules) so that end-to-end tests elsewhere
can reuse the server fixture. Talks to OctoPrint over HTTP only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from pocprint.connectors.base import PrinterState
from pocprint.connectors.octoprint import OctoPrintConnector
from pocprint.demo.octoprint_server import OctoPrintServer, octoprint_binary, start_server

T = TypeVar("T")

# With OctoPrint's M220/M221 S1000 scripts, a ~100 mm move at feed F takes about 60/F s on
# the virtual printer: QUICK_* prints in ~2 s, LONG_* runs ~15 s (long enough to pause,
# cancel or kill it, and always cancelled by the tests before it ends).
QUICK_MOVES, QUICK_FEED = 40, 1200
LONG_MOVES, LONG_FEED = 60, 240


def octoprint_or_skip() -> Path:
    """The OctoPrint executable, or skip the test with the reason."""
    try:
        return octoprint_binary()
    except FileNotFoundError as exc:
        pytest.skip(f"real OctoPrint needed: {exc}")


@contextmanager
def running_octoprint(basedir: Path, timeout: float = 90) -> Iterator[OctoPrintServer]:
    """Start an OctoPrint server in ``basedir`` on a free port and stop it afterwards."""
    octoprint_or_skip()
    server = start_server(basedir, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def octoprint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    """One real OctoPrint + virtual printer per test module."""
    with running_octoprint(tmp_path_factory.mktemp("octoprint")) as server:
        yield server


def write_gcode(path: Path, moves: int = QUICK_MOVES, feed: int = QUICK_FEED) -> Path:
    """A small hand-written G-code file: home, then ``moves`` ~100 mm zig-zag moves."""
    lines = [f"; pocprint test file: {moves} moves at F{feed}", "G21", "G90", "M82", "G28"]
    lines.append("G1 Z0.3 F600")
    for i in range(moves):
        x = 10 if i % 2 == 0 else 110
        lines.append(f"G1 X{x} Y{10 + i} E{0.1 * (i + 1):.2f} F{feed}")
    lines += ["G1 Z10 F600", "M84"]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def api(server: OctoPrintServer, method: str, path: str, **kwargs: object) -> requests.Response:
    """A raw OctoPrint API call for test set-up (connect, disconnect, debug commands)."""
    response = requests.request(
        method,
        server.url + path,
        headers={"X-Api-Key": server.api_key},
        timeout=10,
        **kwargs,  # type: ignore[arg-type]
    )
    response.raise_for_status()
    return response


def connect_printer(server: OctoPrintServer) -> None:
    """(Re)connect OctoPrint to its virtual printer and wait until it is Operational."""
    api(
        server,
        "POST",
        "/api/connection",
        json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200, "autoconnect": True},
    )
    wait_for(
        lambda: api(server, "GET", "/api/connection").json()["current"]["state"] == "Operational",
        15,
        "the virtual printer to be Operational",
    )


def ensure_idle(server: OctoPrintServer, connector: OctoPrintConnector) -> None:
    """Bring the printer back to IDLE whatever a previous test left behind."""
    status = connector.status()
    if status.state in (PrinterState.PRINTING, PrinterState.PAUSED):
        connector.cancel()
    elif status.state in (PrinterState.OFFLINE, PrinterState.ERROR) and server.is_running():
        connect_printer(server)
    wait_for(lambda: connector.status().state is PrinterState.IDLE, 20, "the printer to be idle")
