"""Units by anatomy (issue 15, part 1): the order's anatomy code gives an expected size, so
the unit whose size fits it is clear-cut and recorded with the row's source; a technician is
asked only when the anatomy fits no unit or several. The plausible band comes from the
anatomy table and the printers' beds instead of a fixed 5-600 mm."""

from __future__ import annotations

import json
import math

import pytest
import trimesh
from sqlmodel import select

from pocprint.domain.anatomy_sizes import by_name, parse_sizes, plausible_band, ranges_for
from pocprint.domain.states import PartState
from pocprint.mesh.cli import main as mesh_cli
from pocprint.mesh.units import UNIT_TO_MM, guess_units
from pocprint.services import cases
from pocprint.services.anatomy import size_ranges, taxonomy
from pocprint.services.mesh_processing import process_part
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, Part

from conftest import REPO_ROOT, order_fields

ANATOMY_FILE = REPO_ROOT / "config" / "anatomy.toml"
SIZES = size_ranges(ANATOMY_FILE)
ROWS = {row.name: row for row in SIZES}


def middle(row) -> float:
    return math.sqrt(row.low_mm * row.high_mm)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_range_decides_its_unit_from_the_anatomy_alone(name):
    """A part in the middle of its structure's range, stored in any unit, gets that unit."""
    row = ROWS[name]
    size_mm = middle(row)
    for unit, factor in UNIT_TO_MM.items():
        extents = [size_mm / factor, size_mm / factor * 0.6, size_mm / factor * 0.4]
        guess = guess_units(extents, anatomy=[row.to_dict()])
        fits = [u for u, f in UNIT_TO_MM.items() if row.fits(size_mm / factor * f)]
        assert unit in fits
        assert guess.clear is (len(fits) == 1), (unit, fits, guess.reasons)
        if guess.clear:
            assert guess.proposed == unit and row.source in " ".join(guess.reasons)
            assert guess.anatomy == [row.to_dict()]
        if unit == "mm":  # every other reading is x10 or more: a range under x10 never fits
            assert guess.clear


@pytest.mark.parametrize("name", sorted(ROWS))
def test_each_range_asks_a_person_outside_it(name):
    row = ROWS[name]
    too_small = row.low_mm / 30  # no unit reading (x1, x10, x25.4, x1000) lands inside
    guess = guess_units([too_small, too_small, too_small], anatomy=[row.to_dict()])
    fits = [u for u, c in guess.candidates.items() if c["anatomy_fit"]]
    assert guess.clear is (len(fits) == 1)
    if not fits:
        assert guess.reasons[0].startswith("no unit fits the part's anatomy")


def test_every_row_names_its_source_and_spans_less_than_x10():
    assert len(SIZES) >= 12
    for row in SIZES:
        assert row.source and row.high_mm < 10 * row.low_mm, row


def test_the_issues_examples_are_clear_with_the_order_and_unclear_without():
    aneurysm = [ROWS["aneurysm"].to_dict()]
    assert not guess_units([33.2, 22.6, 23.0]).clear  # mm or cm: size cannot decide
    sac = guess_units([33.2, 22.6, 23.0], anatomy=aneurysm)
    assert sac.clear and sac.proposed == "mm"
    femur = [ROWS["femur"].to_dict()]
    assert not guess_units([453.0, 60.0, 50.0]).clear  # near the edge of 5-600 mm
    assert guess_units([453.0, 60.0, 50.0], anatomy=femur).proposed == "mm"
    assert guess_units([45.3, 6.0, 5.0], anatomy=femur).proposed == "cm"


def test_several_fitting_units_are_never_clear():
    # A 15-unit part: 150 mm in cm and 381 mm in inches both fit a femur.
    guess = guess_units([15.0, 4.0, 3.0], anatomy=[ROWS["femur"].to_dict()])
    assert not guess.clear
    assert guess.reasons[0].startswith("several units fit the part's anatomy")


def test_order_codes_pick_their_rows():
    aaa = {"region": "Abdomen", "subregion": "Vessels", "structure": "Abdominal aorta"}
    knee = {"region": "Lower extremity", "subregion": "Knee", "structure": "Bone"}
    other = {"region": "Breast", "subregion": "Tumour", "structure": ""}
    assert [r.name for r in ranges_for([aaa], SIZES)] == ["aneurysm"]
    assert [r.name for r in ranges_for([knee, aaa, knee], SIZES)] == ["knee", "aneurysm"]
    assert ranges_for([other], SIZES) == [] and ranges_for(None, SIZES) == []


def test_every_code_is_in_the_order_taxonomy_and_the_sizes_are_not_a_region():
    tree = taxonomy(ANATOMY_FILE)
    assert "sizes" not in tree
    for row in SIZES:
        for code in row.codes:
            bits = code.split("/")
            assert bits[0] in tree and bits[1] in tree[bits[0]], code
            if len(bits) == 3:
                assert bits[2] in tree[bits[0]][bits[1]], code


def test_the_plausible_band_comes_from_the_beds_and_the_anatomy():
    (low, high), (core_low, core_high) = plausible_band(SIZES, [250, 210, 210])
    assert low == min(r.low_mm for r in SIZES) and high == max(r.high_mm for r in SIZES)
    assert core_high == 375 and core_low == max(2 * low, 10)
    band = plausible_band(SIZES, [250])
    assert guess_units([453.0, 60.0, 50.0], band=band).clear  # a femur on a 250 mm bed lab
    assert plausible_band(SIZES, []) is None and plausible_band((), [250]) is None


def test_bad_size_rows_stop_the_start_naming_the_row():
    good = {"name": "x", "codes": [], "largest_mm": [10, 50], "source": "a book"}
    parse_sizes([good])
    with pytest.raises(ValueError, match="row 1 .x.: every size needs its source"):
        parse_sizes([{**good, "source": ""}])
    with pytest.raises(ValueError, match="spans x10 or more"):
        parse_sizes([{**good, "largest_mm": [10, 100]}])
    with pytest.raises(ValueError, match="unknown key"):
        parse_sizes([{**good, "size": 3}])
    with pytest.raises(ValueError, match="a name of its own"):
        parse_sizes([good, good])
    with pytest.raises(ValueError, match="unknown anatomy 'spleen'"):
        by_name("spleen", SIZES)


def test_cli_anatomy_makes_the_unit_clear(tmp_path, capsys):
    path = tmp_path / "sac.stl"
    trimesh.creation.icosphere(subdivisions=2, radius=16.5).export(path)  # 33 mm, no unit
    out, report = tmp_path / "out.stl", tmp_path / "report.json"
    args = ["repair", str(path), "-o", str(out), "--report", str(report)]
    assert mesh_cli(args) == 3  # unclear without the anatomy
    assert not out.exists()
    assert mesh_cli([*args, "--anatomy", "aneurysm"]) == 0
    units = json.loads(report.read_text())["units"]
    assert units["unit"] == "mm" and units["source"] == "the named anatomy's size (clear-cut)"
    assert units["guess"]["anatomy"][0]["name"] == "aneurysm"
    assert mesh_cli([*args, "--anatomy", "spleen"]) == 2
    assert "unknown anatomy 'spleen'" in capsys.readouterr().err


def test_the_orders_anatomy_decides_the_unit_of_an_upload_with_its_evidence(lab, people, tmp_path):
    tech = people["tech"]
    aaa = [
        {
            "region": "Abdomen",
            "subregion": "Vessels",
            "structure": "Abdominal aorta",
            "laterality": "midline",
        }
    ]
    case_id = cases.create_case(lab, tech, **order_fields(anatomy=aaa))
    path = tmp_path / "sac.stl"
    trimesh.creation.icosphere(subdivisions=2, radius=16.5).export(path)
    part_id = cases.upload_part(lab, tech, case_id, "sac.stl", path)
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
        reasons = s.exec(
            select(AuditEvent.reason).where(
                AuditEvent.action == "part.units_detected", AuditEvent.entity_id == str(part_id)
            )
        ).all()
    assert part.state == PartState.PROCESSED and part.units == "mm"
    assert part.units_decided_by is None  # automatic, with the evidence kept
    assert part.units_guess["anatomy"][0]["name"] == "aneurysm"
    assert "aneurysm" in reasons[0] and "Chaikof" in reasons[0]


def test_without_a_sized_anatomy_the_same_upload_asks_for_the_unit(lab, people, tmp_path):
    tech = people["tech"]
    breast = [{"region": "Breast", "subregion": "Tumour", "structure": "", "laterality": "left"}]
    case_id = cases.create_case(lab, tech, **order_fields(anatomy=breast))
    path = tmp_path / "sac.stl"
    trimesh.creation.icosphere(subdivisions=2, radius=16.5).export(path)
    part_id = cases.upload_part(lab, tech, case_id, "sac.stl", path)
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
    assert part.state == PartState.AWAITING_UNITS
    assert part.units_guess["anatomy"] in (None, [])
