"""OctoPrint connector against a real OctoPrint 1.11 with its virtual printer (no mocks).

The server runs from .venv-octoprint (installed by `make test`); tests skip if it is missing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocprint.connectors.base import (
    ConnectorError,
    PrinterConnector,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
    check_remote_name,
)
from pocprint.connectors.octoprint import OctoPrintAccessDenied, OctoPrintConnector, map_state
from pocprint.connectors.registry import make_connector
from pocprint.demo.octoprint_server import OctoPrintServer, free_port, prepare_basedir

from octoprint_fixtures import (
    LONG_FEED,
    LONG_MOVES,
    api,
    connect_printer,
    ensure_idle,
    running_octoprint,
    wait_for,
    write_gcode,
)

octoprint = pytest.mark.octoprint


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    started = time.monotonic()
    with running_octoprint(tmp_path_factory.mktemp("octoprint")) as srv:
        print(f"OctoPrint ready in {time.monotonic() - started:.1f} s")
        yield srv


@pytest.fixture
def octo(server: OctoPrintServer) -> Iterator[OctoPrintConnector]:
    """A connector to the module's printer, idle before and after the test."""
    connector = OctoPrintConnector(server.url, server.api_key)
    ensure_idle(server, connector)
    yield connector
    ensure_idle(server, connector)


def _uploaded(octo: OctoPrintConnector, tmp_path: Path, name: str, **gcode: int) -> Path:
    path = write_gcode(tmp_path / name, **gcode)
    octo.upload(path, name)
    return path


def _printing(octo: OctoPrintConnector, name: str) -> PrinterStatus:
    def probe() -> PrinterStatus | None:
        status = octo.status()
        ok = status.state is PrinterState.PRINTING and status.job_file == name
        return status if ok else None

    return wait_for(probe, 10, f"{name} to be printing")


def _idle(octo: OctoPrintConnector, timeout: float = 20) -> PrinterStatus:
    def probe() -> PrinterStatus | None:
        status = octo.status()
        return status if status.state is PrinterState.IDLE else None

    return wait_for(probe, timeout, "the printer to be idle")


# --------------------------------------------------------------------------- no server needed


@pytest.mark.parametrize(
    "name",
    [
        "../evil.gcode",
        "a/b.gcode",
        "/abs.gcode",
        "..gcode",
        "x..y.gcode",
        ".hidden.gcode",
        "sp ace.gcode",
        "semi;colon.gcode",
        "ümlaut.gcode",
        "part.stl",
        "part.GCODE",
        ".gcode",
        "",
        "a" * 300 + ".gcode",
    ],
)
def test_unsafe_remote_names_are_rejected_before_any_request(name: str) -> None:
    # Nothing listens on this port: reaching the network would raise PrinterUnreachable.
    connector = OctoPrintConnector(f"http://127.0.0.1:{free_port()}", "key")
    with pytest.raises(ValueError):
        check_remote_name(name)
    for call in (connector.file_info, connector.start, connector.delete):
        with pytest.raises(ValueError):
            call(name)
    with pytest.raises(ValueError):
        connector.upload(Path(__file__), name)
    with pytest.raises(ValueError):
        connector.download(name, Path("/tmp/never-written.gcode"))


def test_safe_remote_names_pass() -> None:
    for name in ("job-12_v2.gcode", "A.B.gcode", "x.gcode"):
        assert check_remote_name(name) == name


def test_status_with_nothing_listening_is_offline_not_an_exception() -> None:
    connector = OctoPrintConnector(f"http://127.0.0.1:{free_port()}", "secret-key-xyz", timeout=2)
    started = time.monotonic()
    status = connector.status()
    assert time.monotonic() - started < 2
    assert status.state is PrinterState.OFFLINE
    assert status.detail == "Unreachable"
    assert status.error and "connection refused" in status.error
    assert "secret-key-xyz" not in status.error and "secret-key-xyz" not in repr(connector)
    with pytest.raises(PrinterUnreachable):
        connector.pause()


def test_state_mapping() -> None:
    assert map_state("Operational") is PrinterState.IDLE
    assert map_state("Printing") is PrinterState.PRINTING
    assert map_state("Printing from SD") is PrinterState.PRINTING
    assert map_state("Paused") is PrinterState.PAUSED
    for busy in ("Starting", "Cancelling", "Finishing", "Pausing", "Resuming", "Connecting"):
        assert map_state(busy) is PrinterState.BUSY
    assert map_state("Detecting serial connection") is PrinterState.BUSY
    assert map_state("Offline after error") is PrinterState.ERROR
    assert map_state("Error: Thermal runaway") is PrinterState.ERROR
    assert map_state("Offline") is PrinterState.OFFLINE
    assert map_state("Closed") is PrinterState.OFFLINE
    assert map_state("Something new") is PrinterState.BUSY  # never mistaken for idle


def test_registry() -> None:
    connector = make_connector("octoprint", url="http://127.0.0.1:5000", api_key="k", timeout=3)
    assert isinstance(connector, OctoPrintConnector)
    assert isinstance(connector, PrinterConnector)
    assert connector.timeout == 3
    with pytest.raises(ValueError, match="octoprint"):
        make_connector("bambu", url="http://x", api_key="k")
    with pytest.raises(ValueError):
        make_connector("octoprint", url="http://127.0.0.1:5000", api_key=None)


def test_prepare_basedir_is_idempotent(tmp_path: Path) -> None:
    prepare_basedir(tmp_path, "key-one")
    first = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    prepare_basedir(tmp_path, "key-one")
    again = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert first == again
    assert b'"key-one"' in first["users.yaml"]
    assert b"M220 S1000" in first["beforePrintStarted"]
    prepare_basedir(tmp_path, "key-two")
    users = (tmp_path / "users.yaml").read_text()
    assert "key-two" in users and "key-one" not in users


# --------------------------------------------------------------------------- real OctoPrint


@octoprint
def test_status_idle_with_temperatures(octo: OctoPrintConnector) -> None:
    status = wait_for(lambda: (s := octo.status()).temperatures and s, 10, "temperature reports")
    assert status.state is PrinterState.IDLE
    assert status.detail == "Operational"
    assert status.error is None
    assert set(status.temperatures) >= {"tool0", "bed"}
    assert isinstance(status.temperatures["tool0"]["actual"], float)
    assert status.temperatures["bed"]["target"] is not None


@octoprint
def test_upload_reports_sha1_and_download_is_identical(
    octo: OctoPrintConnector, tmp_path: Path
) -> None:
    path = write_gcode(tmp_path / "upload-check.gcode", moves=30)
    data = path.read_bytes()
    remote = octo.upload(path, "upload-check.gcode")
    assert remote.name == "upload-check.gcode"
    assert remote.size == len(data)
    assert remote.sha1 == hashlib.sha1(data).hexdigest()  # noqa: S324 - OctoPrint's hash
    assert remote.prints_success == remote.prints_failure == 0
    assert remote.last_print_at is None
    assert octo.status().state is PrinterState.IDLE  # uploaded, not started

    dest = tmp_path / "back.gcode"
    octo.download("upload-check.gcode", dest)
    assert dest.read_bytes() == data
    assert octo.file_info("upload-check.gcode") == remote

    # Same name, new bytes: the printer's hash follows the content.
    path.write_bytes(data + b"G1 X1 Y1\n")
    changed = octo.upload(path, "upload-check.gcode")
    assert changed.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324
    assert changed.sha1 != remote.sha1


@octoprint
def test_missing_files(octo: OctoPrintConnector, tmp_path: Path) -> None:
    assert octo.file_info("never-uploaded.gcode") is None
    with pytest.raises(ConnectorError, match="not stored"):
        octo.start("never-uploaded.gcode")
    with pytest.raises(ConnectorError, match="not stored"):
        octo.download("never-uploaded.gcode", tmp_path / "x.gcode")
    assert not (tmp_path / "x.gcode").exists()
    assert octo.status().state is PrinterState.IDLE


@octoprint
def test_delete(octo: OctoPrintConnector, tmp_path: Path) -> None:
    _uploaded(octo, tmp_path, "to-delete.gcode")
    assert octo.file_info("to-delete.gcode") is not None
    octo.delete("to-delete.gcode")
    assert octo.file_info("to-delete.gcode") is None
    octo.delete("to-delete.gcode")  # already gone: no error


@octoprint
def test_print_runs_to_completion_and_is_recorded(octo: OctoPrintConnector, tmp_path: Path) -> None:
    _uploaded(octo, tmp_path, "complete.gcode")
    started = time.monotonic()
    octo.start("complete.gcode")
    status = _printing(octo, "complete.gcode")
    assert status.progress is not None and 0 <= status.progress <= 100
    done = _idle(octo)
    elapsed = time.monotonic() - started
    # ~20 s of moves at the virtual printer's normal pace: proves OctoPrint's M220/M221 S1000
    # scripts speed it up (measured ~2 s).
    assert elapsed < 10, f"print took {elapsed:.1f} s"
    assert done.error is None

    info = octo.file_info("complete.gcode")
    assert info is not None
    assert info.last_print_success is True
    assert info.prints_success == 1 and info.prints_failure == 0
    assert info.last_print_at is not None and abs(time.time() - info.last_print_at) < 60


@octoprint
def test_start_of_a_tiny_file_is_confirmed(octo: OctoPrintConnector, tmp_path: Path) -> None:
    # Done in a fraction of a second: start() may only see it in the print history.
    _uploaded(octo, tmp_path, "tiny.gcode", moves=3)
    octo.start("tiny.gcode")
    _idle(octo)
    info = octo.file_info("tiny.gcode")
    assert info is not None and info.prints_success == 1


@octoprint
def test_start_while_printing_is_refused(octo: OctoPrintConnector, tmp_path: Path) -> None:
    _uploaded(octo, tmp_path, "first.gcode", moves=LONG_MOVES, feed=LONG_FEED)
    _uploaded(octo, tmp_path, "second.gcode")
    octo.start("first.gcode")
    with pytest.raises(ConnectorError, match="first.gcode"):
        octo.start("second.gcode")
    with pytest.raises(ConnectorError, match="currently"):
        octo.delete("first.gcode")  # in use
    status = octo.status()
    assert status.job_file == "first.gcode"
    assert status.state in (PrinterState.PRINTING, PrinterState.BUSY)
    second = octo.file_info("second.gcode")
    assert second is not None and second.prints_success + second.prints_failure == 0


@octoprint
def test_cancel_is_recorded_as_failed_print(octo: OctoPrintConnector, tmp_path: Path) -> None:
    _uploaded(octo, tmp_path, "cancel-me.gcode", moves=LONG_MOVES, feed=LONG_FEED)
    octo.start("cancel-me.gcode")
    _printing(octo, "cancel-me.gcode")
    octo.cancel()
    _idle(octo)
    info = octo.file_info("cancel-me.gcode")
    assert info is not None
    assert info.last_print_success is False
    assert info.prints_failure == 1 and info.prints_success == 0
    with pytest.raises(ConnectorError, match="neither printing nor paused"):
        octo.cancel()


@octoprint
def test_pause_and_resume(octo: OctoPrintConnector, tmp_path: Path) -> None:
    with pytest.raises(ConnectorError):
        octo.pause()  # nothing to pause
    _uploaded(octo, tmp_path, "pause-me.gcode", moves=LONG_MOVES, feed=LONG_FEED)
    octo.start("pause-me.gcode")
    _printing(octo, "pause-me.gcode")
    octo.pause()
    paused = wait_for(lambda: (s := octo.status()).state is PrinterState.PAUSED and s, 10, "Paused")
    assert paused.job_file == "pause-me.gcode"
    time.sleep(0.5)
    still = octo.status()
    assert still.state is PrinterState.PAUSED
    assert still.progress == paused.progress  # nothing moves while paused
    octo.resume()
    resumed = _printing(octo, "pause-me.gcode")
    assert resumed.progress is not None
    wait_for(
        lambda: (octo.status().progress or 0) > (paused.progress or 0), 10, "progress after resume"
    )


@octoprint
def test_wrong_api_key(server: OctoPrintServer, tmp_path: Path) -> None:
    bad = OctoPrintConnector(server.url, "not-the-key")
    status = bad.status()
    assert status.state is PrinterState.OFFLINE
    assert status.detail == "Access denied"
    assert status.error and "API key" in status.error
    with pytest.raises(OctoPrintAccessDenied, match="API key"):
        bad.upload(write_gcode(tmp_path / "k.gcode"), "k.gcode")
    with pytest.raises(OctoPrintAccessDenied):
        bad.file_info("k.gcode")


@octoprint
def test_disconnected_and_error_states(
    server: OctoPrintServer, octo: OctoPrintConnector, tmp_path: Path
) -> None:
    _uploaded(octo, tmp_path, "wont-start.gcode")
    # Reachable, but not connected to its printer: /api/printer answers 409.
    api(server, "POST", "/api/connection", json={"command": "disconnect"})
    offline = wait_for(
        lambda: (s := octo.status()).state is PrinterState.OFFLINE and s, 10, "Offline"
    )
    assert offline.detail in ("Offline", "Closed")
    assert offline.error and "not connected" in offline.error
    with pytest.raises(ConnectorError, match="Offline"):
        octo.start("wont-start.gcode")

    # A firmware fault simulated by the virtual printer.
    connect_printer(server)
    api(
        server,
        "POST",
        "/api/printer/command",
        json={"commands": ["!!DEBUG:trigger_fatal_error_marlin"]},
    )
    # OctoPrint passes through "Error" on its way to "Offline after error"; both are errors.
    failed = wait_for(
        lambda: (s := octo.status()).detail == "Offline after error" and s, 10, "error state"
    )
    assert failed.state is PrinterState.ERROR
    assert failed.error and "Thermal Runaway" in failed.error
    with pytest.raises(ConnectorError, match="Thermal Runaway"):
        octo.start("wont-start.gcode")
    info = octo.file_info("wont-start.gcode")
    assert info is not None and info.prints_success + info.prints_failure == 0
    connect_printer(server)
    assert octo.status().state is PrinterState.IDLE


@octoprint
def test_printer_vanishing_mid_print_then_coming_back(tmp_path: Path) -> None:
    with running_octoprint(tmp_path / "vanishing") as srv:
        octo = OctoPrintConnector(srv.url, srv.api_key, timeout=2)
        path = _uploaded(octo, tmp_path, "vanish.gcode", moves=LONG_MOVES, feed=LONG_FEED)
        octo.start("vanish.gcode")
        _printing(octo, "vanish.gcode")
        srv.kill()
        assert not srv.is_running()
        status = octo.status()
        assert status.state is PrinterState.OFFLINE
        assert status.error and srv.url in status.error
        with pytest.raises(PrinterUnreachable):
            octo.start("vanish.gcode")
        with pytest.raises(PrinterUnreachable):
            octo.upload(path, "vanish.gcode")

        # Restart on the same base folder (config now rewritten by OctoPrint in YAML).
        srv.start()
        assert octo.status().state is PrinterState.IDLE
        info = octo.file_info("vanish.gcode")
        assert info is not None
        assert info.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324

        # A second server cannot silently take over a port that is in use.
        other = OctoPrintServer(tmp_path / "other", srv.port, "other-key")
        with pytest.raises(RuntimeError, match="already in use"):
            other.start(timeout=5)
        assert not other.is_running()
