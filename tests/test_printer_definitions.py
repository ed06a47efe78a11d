"""Printer definition files, validated combinations and `pocprint printers check`: lab data is
validated at start with a message naming the file and the field."""

from __future__ import annotations

import pytest

from pocprint.config import REPO_ROOT
from pocprint.connectors.definitions import DefinitionError, load_definition, load_definitions
from pocprint.connectors.manual import ManualConnector, ManualOperation
from pocprint.connectors.registry import make_connector
from pocprint.services.printer_check import check_printers
from pocprint.slicing.combinations import CombinationError, load_combinations
from pocprint.slicing.profiles import load_profiles

from conftest import make_settings, write_printer
from fleet_helpers import PETG_250, PLA_180, PLA_250, write_combinations
from octoprint_fixtures import running_octoprint

PROFILES = load_profiles(REPO_ROOT / "printers" / "profiles")


def test_shipped_definitions_profiles_and_combinations_are_valid():
    printers = load_definitions(REPO_ROOT / "printers", set(PROFILES))
    assert set(printers) == {"demo-printer-a", "demo-printer-b"}  # validated.toml is not one
    a = printers["demo-printer-a"]
    assert a.technology == "material extrusion" and a.min_feature_mm == 0.8
    assert a.serial and a.calibration_due and a.material == "PLA"
    combos = load_combinations(REPO_ROOT / "printers" / "validated.toml", PROFILES, printers)
    assert {c.profile for c in combos} == {PLA_250, PETG_250, PLA_180}
    assert PROFILES[PETG_250].filament_density == 1.27


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"technology": "fdm"}, "ISO/ASTM 52900"),
        ({"calibration_due": None}, "missing required field 'calibration_due'"),
        ({"calibraton_due": "2030-01-01"}, "unknown field(s) calibraton_due"),
        ({"connector": "klipper"}, "connector must be one of octoprint, manual"),
        ({"url": "127.0.0.1:5000"}, "needs a 'url' starting with http://"),
        ({"api_key_file": None}, "needs api_key_env"),
        ({"api_key": "secret"}, "API keys must not be written in printer files"),
        ({"min_feature_mm": -1}, "'min_feature_mm' must be a positive number"),
        ({"build_volume_mm": [250, 210]}, "build_volume_mm must be three positive numbers"),
        ({"profiles": ["no-such-profile"]}, "profile 'no-such-profile' not found"),
        ({"serial": ""}, "serial must not be empty"),
    ],
)
def test_bad_definitions_are_refused_naming_file_and_field(tmp_path, change, message):
    change = dict(change)
    url = change.pop("url", "http://127.0.0.1:1")
    path = write_printer(tmp_path / "printers", "p1", url, **change)
    if "calibration_due" in change and change["calibration_due"] is None:
        path.write_text(
            "\n".join(
                line
                for line in path.read_text().splitlines()
                if not line.startswith("calibration_due")
            )
        )
    with pytest.raises(DefinitionError) as err:
        load_definition(path, set(PROFILES))
    assert message in str(err.value) and "p1.toml" in str(err.value)


def test_manual_printer_needs_no_address_and_refuses_network_actions(tmp_path):
    path = write_printer(
        tmp_path / "printers",
        "m1",
        None,
        connector="manual",
        api_key_file=None,
        profiles=[PLA_180],
        min_feature_mm=0.5,
    )
    definition = load_definition(path, set(PROFILES))
    assert definition.manual and definition.url is None and definition.min_feature_mm == 0.5
    connector = make_connector("manual", url="", api_key=None)
    assert isinstance(connector, ManualConnector)
    assert connector.status().state == "idle"
    with pytest.raises(ManualOperation, match="confirm it on the tablet"):
        connector.upload(path, "x.gcode")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"profile": "nope", "material": "PLA", "device_types": ["anatomical_model"]}, "not found"),
        (
            {"profile": PLA_250, "material": "PETG", "device_types": ["anatomical_model"]},
            "differs from the profile's filament_type 'PLA'",
        ),
        (
            {"profile": PLA_250, "material": "PLA", "device_types": ["implant"]},
            "unknown device type(s) implant",
        ),
        ({"profile": PLA_250, "material": "PLA", "device_types": []}, "at least one device type"),
        (
            {
                "profile": PLA_250,
                "material": "PLA",
                "device_types": ["anatomical_model"],
                "printers": ["ghost"],
            },
            "printer 'ghost' is not defined",
        ),
        (
            {
                "profile": PLA_180,
                "material": "PLA",
                "device_types": ["anatomical_model"],
                "printers": ["p1"],
            },
            "does not list profile",
        ),
        (
            {
                "profile": PLA_250,
                "material": "PLA",
                "device_types": ["anatomical_model"],
                "colour": "red",
            },
            "unknown field(s) colour",
        ),
    ],
)
def test_bad_combinations_are_refused_with_the_reason(tmp_path, entry, message):
    write_printer(tmp_path / "printers", "p1", "http://127.0.0.1:1", key="k")
    printers = load_definitions(tmp_path / "printers", set(PROFILES))
    path = write_combinations(tmp_path / "validated.toml", entry)
    with pytest.raises(CombinationError) as err:
        load_combinations(path, PROFILES, printers)
    assert message in str(err.value) and "validated.toml: combination 1" in str(err.value)


def test_printers_check_reports_invalid_files(tmp_path):
    d = tmp_path / "printers"
    write_printer(d, "p1", "http://127.0.0.1:1", key="k", technology="fdm")
    report = check_printers(make_settings(tmp_path, f"sqlite:///{tmp_path}/db", d))
    assert report.exit_code == 1
    assert "INVALID: p1.toml" in report.lines[0] and "ISO/ASTM 52900" in report.lines[0]


@pytest.mark.octoprint
def test_printers_check_says_which_printer_answers(tmp_path):
    from pocprint.demo.octoprint_server import free_port

    d = tmp_path / "printers"
    write_printer(d, "silent", f"http://127.0.0.1:{free_port()}", key="k")
    write_printer(d, "by-hand", None, connector="manual", api_key_file=None, profiles=[PLA_180])
    with running_octoprint(tmp_path / "octo") as server:
        write_printer(d, "live", server.url, key=server.api_key)
        report = check_printers(make_settings(tmp_path, f"sqlite:///{tmp_path}/db", d))
    text = "\n".join(report.lines)
    assert report.exit_code == 2, text
    assert "live (octoprint;" in text and "answers: idle (Operational)" in text
    assert "silent (octoprint;" in text and "DOES NOT ANSWER: offline" in text
    assert "by-hand (manual;" in text and "manual printer (no network API" in text
    assert "3 validated combination(s)" in text


def test_the_service_refuses_to_start_with_an_invalid_definition(tmp_path):
    import os
    import subprocess
    import sys

    d = tmp_path / "printers"
    write_printer(d, "p1", "http://127.0.0.1:1", key="k", build_volume_mm=[250, 0, 210])
    env = dict(
        os.environ,
        POCPRINT_PRINTERS_DIR=str(d),
        POCPRINT_PROFILES_DIR=str(REPO_ROOT / "printers" / "profiles"),
        POCPRINT_DATA_DIR=str(tmp_path / "data"),
        POCPRINT_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pocprint.cli", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "pocprint cannot start: p1.toml: build_volume_mm must be three positive numbers" in (
        done.stderr
    )
