"""The fleet benchmark's OctoPrint load generator speaks the protocol pocprint polls.

A handful of simulated printers (every state of the benchmark's mix) are defined with the
benchmark's own printer files and polled by the real polling service on a real database;
each printer's row must say exactly what the load generator reports. No timings here: the
figures live in bench/results/fleet.json.
"""

from __future__ import annotations

import sys

import pytest
from sqlmodel import select

from pocprint.config import REPO_ROOT
from pocprint.connectors.base import ConnectorError
from pocprint.services.polling import poll_printers
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, Printer

sys.path.insert(0, str(REPO_ROOT))  # the benchmark package lives beside the tests

from bench.fleet import write_fleet  # noqa: E402
from bench.octoprint_loadgen import (  # noqa: E402
    ERROR_TEXT,
    FLEET_MIX,
    OCTOPRINT_STATE,
    LoadGenerator,
    simulated_printer,
)

COUNT = len(FLEET_MIX)  # one of each simulated state


@pytest.fixture(scope="module")
def loadgen():
    with LoadGenerator(COUNT, latency_ms=(0.0, 2.0)) as generator:
        yield generator


@pytest.fixture
def printers_dir(tmp_path, loadgen):
    """The benchmark's printer files (lab's format), plus one printer with a wrong API key."""
    directory = tmp_path / "printers"
    secrets_dir = tmp_path / "data" / "secrets"
    write_fleet(directory, loadgen.urls, loadgen.api_key, secrets_dir)
    wrong = (directory / "loadgen-000.toml").read_text()
    wrong = wrong.replace('name = "loadgen-000"', 'name = "loadgen-wrong-key"')
    wrong = wrong.replace("loadgen.octoprint-key", "wrong.octoprint-key")
    (directory / "loadgen-wrong-key.toml").write_text(wrong)
    (secrets_dir / "wrong.octoprint-key").write_text("not-the-key")
    return directory


def _rows(lab) -> dict[str, Printer]:
    with read_session(lab.engine) as session:
        return {p.name: p for p in session.exec(select(Printer)).all()}


def test_polling_reads_every_simulated_printer_as_the_load_generator_reports_it(lab):
    assert poll_printers(lab) == COUNT + 1
    rows = _rows(lab)
    for index in range(COUNT):
        sim = simulated_printer(index)
        row = rows[f"loadgen-{index:03d}"]
        assert row.state == sim.kind, (index, row.state, row.error)
        assert row.state_detail == OCTOPRINT_STATE[sim.kind]
        assert row.job_file == sim.job_file
        assert row.failed_polls == 0 and row.last_seen_at is not None
        if sim.has_job:
            assert 0.0 <= row.progress <= 100.0
            assert 0 < row.print_time_left_s <= sim.print_duration_s
        else:
            assert row.progress is None and row.print_time_left_s is None
        if sim.kind == "error":
            assert row.error == ERROR_TEXT
            assert row.temperatures == {}  # OctoPrint answers 409 for a printer in error
        else:
            assert row.error is None
            assert row.temperatures["tool0"]["target"] == sim.nozzle_c
            assert row.temperatures["bed"]["target"] == sim.bed_c
            assert abs(row.temperatures["tool0"]["actual"] - (sim.nozzle_c or 23.0)) < 1.0

    # The load generator checks the API key as OctoPrint does.
    wrong = rows["loadgen-wrong-key"]
    assert wrong.state == "offline" and wrong.state_detail == "Access denied"
    assert "rejected the API key" in wrong.error and wrong.failed_polls == 1


def test_a_second_cycle_records_no_new_state_changes_and_progress_moves_on(lab):
    poll_printers(lab)
    before = _rows(lab)
    poll_printers(lab)
    after = _rows(lab)
    with read_session(lab.engine) as session:
        changes = session.exec(select(AuditEvent).where(AuditEvent.action == "printer.state")).all()
    # One change per printer from the registered "offline" to what it reports, then none;
    # the wrong-key printer stays offline and is never recorded as changing.
    assert sorted(e.entity_id for e in changes) == sorted(f"loadgen-{i:03d}" for i in range(COUNT))
    printing = [i for i in range(COUNT) if simulated_printer(i).kind == "printing"]
    paused = [i for i in range(COUNT) if simulated_printer(i).kind == "paused"]
    for index in printing:
        name = f"loadgen-{index:03d}"
        assert after[name].print_time_left_s <= before[name].print_time_left_s
    for index in paused:
        name = f"loadgen-{index:03d}"
        assert after[name].progress == before[name].progress


def test_the_load_generator_refuses_every_printer_command(loadgen, tmp_path):
    """It is a load generator, not a printer: nothing can be uploaded, started or cancelled."""
    from pocprint.connectors.octoprint import OctoPrintConnector

    connector = OctoPrintConnector(loadgen.urls[0], loadgen.api_key)
    assert connector.file_info("anything.gcode") is None
    with pytest.raises(ConnectorError, match="load generator, not a printer"):
        connector.cancel()
    gcode = tmp_path / "part.gcode"
    gcode.write_text("G28\n")
    with pytest.raises(ConnectorError, match="load generator, not a printer"):
        connector.upload(gcode, "part.gcode")
    with pytest.raises(ConnectorError, match="not stored"):
        connector.start("part.gcode")
