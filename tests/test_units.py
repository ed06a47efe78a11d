"""Unit detection: declared units, the size rule, and the corpus judgements of SOURCES.md.

Real files only: the corpus ../shared/data/meshes (skipped when absent) and tests/data/meshes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pocprint.mesh.analyse import analyse
from pocprint.mesh.read import detect_format, load_mesh
from pocprint.mesh.units import (
    DECLARED_UNIT_TO_MM,
    UNIT_TO_MM,
    declared_unit_from_header,
    guess_units,
    size_score,
)

DATA = Path(__file__).resolve().parent / "data" / "meshes"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meshes"


def corpus_file(name: str) -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/data/meshes not present (it exists in CI, not in a fresh clone)")
    return CORPUS / name


def guess_file(path: Path):
    """The guess as the CLI makes it: extents and volume in file units, plus the header."""
    fmt = detect_format(path.name)
    declared = declared_unit_from_header(path, fmt)
    result = analyse(load_mesh(path, fmt))
    extents, volume = list(result.extents), result.volume_mm3
    if fmt == "3mf":  # the reader returns mm; the guess works on the file's own numbers
        factor = DECLARED_UNIT_TO_MM[declared]
        extents = [x / factor for x in extents]
        volume = None if volume is None else volume / factor**3
    return guess_units(extents, volume, declared)


# Outcome for every corpus file: (proposed, clear). Judgement in SOURCES.md in the comment;
# "CONFLICT" marks where the size rule cannot reproduce it (see the notes in units.py).
CORPUS_OUTCOME = {
    "anat_aneurysm_sofa.ply": ("mm", False),  # mm; CONFLICT: cm gives 332 mm, plausible
    "anat_aorta_segment_vmtk.stl": ("mm", True),  # mm
    "anat_body_surface_highpoly_m_myosim.stl": ("in", False),  # m; CONFLICT: 1669 mm
    "anat_cartilage_femoral_open_ssm.ply": ("mm", True),  # mm
    "anat_femur_distal_ssm.ply": ("mm", True),  # mm
    "anat_femur_right_m_myosim.stl": ("in", False),  # m; CONFLICT: inch gives 11.5 mm
    "anat_heart_inverted_sofa.ply": ("mm", False),  # ambiguous, likely mm
    "anat_liver_sofa.obj": ("cm", True),  # unknown; CONFLICT: header declares cm
    "anat_malleus_sofa.obj": ("mm", False),  # mm (7 mm; cm gives 70 mm)
    "anat_mandible_m_myosim.stl": ("m", True),  # m
    "anat_pelvis_sofa.obj": ("in", False),  # unknown/normalised
    "anat_skull_lowpoly_m_myosim.stl": ("m", True),  # m
    "anat_skull_makerbot.stl": ("in", False),  # mm at miniature scale (3.9 mm as mm)
    "anat_skull_teeth_cm_sofa.obj": ("cm", True),  # cm, declared in the header
    "anat_spine_m_myosim.stl": ("in", False),  # m; CONFLICT: inch gives 13 mm
    "anat_tibia_proximal_ssm.ply": ("mm", True),  # mm
    "anat_tooth_open_sofa.obj": ("cm", True),  # unknown; CONFLICT: header declares cm
    "defect_degenerate_conveyor_ascii.stl": ("mm", False),  # mm, 1500 mm: not plausible
    "defect_flipped_facet_block_inch_ascii.stl": ("in", False),  # inch
    "defect_hole_block_inch_ascii.stl": ("in", False),  # inch
    "defect_hole_hourglass_ascii.stl": ("m", True),  # unknown; CONFLICT: only m is plausible
    "defect_holes_scan_bunny_100k.ply": ("mm", False),  # unknown (scaled)
    "defect_inverted_aorta_vmtk.stl": ("mm", True),  # mm
    "defect_nearby_verts_block_inch_ascii.stl": ("in", False),  # inch
    "defect_nonmanifold_gears.3mf": ("mm", True),  # mm, declared
    "defect_nonmanifold_shared_edge.stl": ("cm", False),  # unitless
    "defect_nonmanifold_tetrahedra.obj": ("in", False),  # unitless
    "defect_open_ends_aorta_vmtk.stl": ("mm", True),  # mm
    "defect_selfintersect_cycloidal.ply": ("in", False),  # likely inch
    "defect_soup.stl": ("in", False),  # unitless
    "defect_unconnected_block_ascii.stl": ("mm", False),  # inch (strays enlarge the bbox)
    "defect_wallhole.obj": ("mm", False),  # unknown
    "defect_winding_hourglass_ascii.stl": ("m", True),  # unknown; CONFLICT as the other
    "defect_winding_multibody_ascii.stl": ("in", False),  # unknown
    "fmt_block_inch_ascii_uppercase.stl": ("in", False),  # inch
    "fmt_featuretype_inch.3mf": ("in", True),  # inch, declared
    "fmt_multibody_chain.3mf": ("mm", True),  # mm, declared
    "fmt_multipletextures_97k.3mf": ("mm", True),  # mm, declared
    "perf_counter_mm_84k.stl": ("mm", True),  # mm
}


@pytest.mark.corpus
def test_the_outcome_table_covers_every_corpus_file():
    folder = corpus_file("SOURCES.md").parent
    names = {
        p.name for p in folder.iterdir() if p.suffix.lower() in (".stl", ".obj", ".ply", ".3mf")
    }
    assert names == set(CORPUS_OUTCOME)


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "expected"), sorted(CORPUS_OUTCOME.items()))
def test_corpus_unit_outcome(name, expected):
    guess = guess_file(corpus_file(name))
    assert (guess.proposed, guess.clear) == expected, guess.reasons
    assert guess.scale_to_mm == UNIT_TO_MM[guess.proposed]


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "anat_femur_distal_ssm.ply",
        "anat_tibia_proximal_ssm.ply",
        "anat_aorta_segment_vmtk.stl",
        "defect_open_ends_aorta_vmtk.stl",
    ],
)
def test_millimetre_anatomy_is_clear(name):
    guess = guess_file(corpus_file(name))
    assert guess.proposed == "mm" and guess.clear
    assert [u for u, c in guess.candidates.items() if c["plausible"]] == ["mm"]


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["anat_skull_lowpoly_m_myosim.stl", "anat_mandible_m_myosim.stl"])
def test_metre_files_are_clear_when_only_metres_fit(name):
    guess = guess_file(corpus_file(name))
    assert guess.proposed == "m" and guess.clear and guess.scale_to_mm == 1000.0
    assert 100 < guess.candidates["m"]["largest_mm"] < 200


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["anat_femur_right_m_myosim.stl", "anat_spine_m_myosim.stl"])
def test_whole_femur_and_spine_in_metres_are_never_read_as_clear_inch_parts(name):
    # With a 400 mm upper limit the metre reading (453/525 mm) dropped out and the inch
    # reading (11-13 mm) became a clear-cut wrong answer; 600 mm keeps both on the table.
    guess = guess_file(corpus_file(name))
    assert not guess.clear
    assert guess.candidates["m"]["plausible"] and guess.candidates["in"]["plausible"]


@pytest.mark.corpus
def test_inch_blocks_are_proposed_as_inches_but_not_clear_cut():
    # 3.937 units: cm gives a 39 mm block, inch a 100 mm block, both plausible. That x25.4
    # gives whole millimetres is a hint (mm design exported in inches), not proof.
    for name in (
        "fmt_block_inch_ascii_uppercase.stl",
        "defect_hole_block_inch_ascii.stl",
        "defect_flipped_facet_block_inch_ascii.stl",
    ):
        guess = guess_file(corpus_file(name))
        assert guess.proposed == "in" and not guess.clear
        assert guess.candidates["in"]["extents_mm"] == pytest.approx([100.0] * 3, abs=1e-3)
        assert not guess.candidates["mm"]["plausible"]  # a 3.9 mm block: below 5 mm
        assert any("whole millimetres" in r for r in guess.reasons)
        assert any("cm/inch" in r for r in guess.reasons)


@pytest.mark.corpus
def test_obj_header_declares_centimetres():
    path = corpus_file("anat_skull_teeth_cm_sofa.obj")
    assert declared_unit_from_header(path, "obj") == "cm"
    guess = guess_file(path)
    assert guess.clear and guess.proposed == "cm" and guess.declared == "cm"
    assert guess.candidates["cm"]["largest_mm"] == pytest.approx(86.58, abs=0.01)


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "anat_heart_inverted_sofa.ply",
        "anat_pelvis_sofa.obj",
        "defect_holes_scan_bunny_100k.ply",
        "defect_wallhole.obj",
        "defect_soup.stl",
        "defect_nonmanifold_shared_edge.stl",
        "defect_nonmanifold_tetrahedra.obj",
        "defect_winding_multibody_ascii.stl",
        "defect_selfintersect_cycloidal.ply",
    ],
)
def test_unknown_and_ambiguous_files_without_a_declaration_are_not_clear(name):
    path = corpus_file(name)
    assert declared_unit_from_header(path, detect_format(name)) is None
    guess = guess_file(path)
    assert not guess.clear
    assert sum(c["plausible"] for c in guess.candidates.values()) >= 2


def test_bundled_inverted_aorta_is_clear_mm_with_volume_per_candidate():
    guess = guess_file(DATA / "defect_inverted_aorta_vmtk.stl")
    assert guess.proposed == "mm" and guess.clear
    # Closed mesh: volumes per unit (absolute: this file is inside out), 13184 mm3.
    assert guess.candidates["mm"]["volume_cm3"] == pytest.approx(13.1843, rel=1e-4)
    assert guess.candidates["cm"]["volume_cm3"] == pytest.approx(13184.3, rel=1e-4)


def test_3mf_declared_unit_is_read_from_the_package():
    assert declared_unit_from_header(DATA / "fmt_featuretype_inch.3mf", "3mf") == "in"
    guess = guess_file(DATA / "fmt_featuretype_inch.3mf")
    assert guess.clear and guess.proposed == "in"
    assert guess.candidates["in"]["largest_mm"] == pytest.approx(127.0)


# ----------------------------------------------------------------------------- the rule


def test_size_score_band_and_core():
    assert size_score(4.9) == 0.0 and size_score(601.0) == 0.0
    assert size_score(10.0) == 1.0 and size_score(300.0) == 1.0
    assert 0.0 < size_score(7.0) < 1.0 and 0.0 < size_score(450.0) < 1.0
    assert size_score(float("nan")) == 0.0


def test_one_plausible_unit_well_inside_is_clear():
    guess = guess_units((120.0, 80.0, 60.0))  # cm gives 1.2 m: not plausible
    assert guess.clear and guess.proposed == "mm" and guess.scale_to_mm == 1.0
    metres = guess_units((0.12, 0.08, 0.06))
    assert metres.clear and metres.proposed == "m"


def test_one_plausible_unit_near_the_edge_is_not_clear():
    guess = guess_units((550.0, 200.0, 100.0))  # only mm fits, but 550 mm is at the edge
    assert guess.proposed == "mm" and not guess.clear
    assert "near the edge" in guess.reasons[0]


def test_ten_times_ambiguity_is_flagged():
    guess = guess_units((33.2, 22.6, 23.0))
    assert not guess.clear and guess.proposed == "mm"
    assert any("x10" in r and "mm/cm" in r for r in guess.reasons)


def test_nothing_plausible_proposes_the_nearest_unit():
    guess = guess_units((1500.0, 1000.0, 400.0))
    assert not guess.clear and guess.proposed == "mm"
    assert "no unit gives a plausible size" in guess.reasons[0]


def test_expected_size_decides_and_flags_the_ratio():
    guess = guess_units((3.937, 3.937, 3.937), expected_largest_mm=100.0)
    assert guess.clear and guess.proposed == "in"
    assert any("mm/inch" in r for r in guess.reasons)
    vessel = guess_units((33.2, 22.6, 23.0), expected_largest_mm=300.0)
    assert vessel.clear and vessel.proposed == "cm"
    none = guess_units((33.2, 22.6, 23.0), expected_largest_mm=100.0)  # 33 mm and 332 mm
    assert not none.clear


def test_declared_unit_is_clear_unless_the_size_is_impossible():
    assert guess_units((6.4, 4.9, 4.4), declared="cm").clear
    wrong = guess_units((2000.0, 10.0, 10.0), declared="cm")  # a 20 m "model"
    assert not wrong.clear and wrong.proposed == "cm"
    assert any("declaration may be wrong" in r for r in wrong.reasons)
    micron = guess_units((50_000.0, 1.0, 1.0), declared="um")
    assert micron.clear and micron.scale_to_mm == 0.001


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="three finite"):
        guess_units((1.0, 2.0))
    with pytest.raises(ValueError, match="three finite"):
        guess_units((1.0, float("nan"), 2.0))
    with pytest.raises(ValueError, match="unknown declared unit 'furlong'"):
        guess_units((1.0, 1.0, 1.0), declared="furlong")
    with pytest.raises(ValueError, match="expected_largest_mm"):
        guess_units((1.0, 1.0, 1.0), expected_largest_mm=-5)


def test_to_dict_is_json_ready():
    import json

    data = json.loads(json.dumps(guess_units((100.0, 50.0, 20.0), 1000.0).to_dict()))
    assert data["proposed"] == "mm" and data["candidates"]["cm"]["volume_cm3"] == 1000.0


# ----------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# This file uses centimeters as units for non-parametric coordinates.\n", "cm"),
        ("# units: mm\n", "mm"),
        ("# Units = in\n", "in"),
        ("# coordinates in units of metres\n", "m"),
        ("# exported in millimetre units\n", "mm"),
        ("# Blender v2.8 OBJ File\n# www.blender.org\n", None),
        ("# put in units later\n", None),  # "in" is only a unit right after "units:"
        ("# units: mm\n# units: cm\n", None),  # contradictory: not a declaration
        ("v 0 0 0\n# units: mm\n" + "v 0 0 0\n" * 2000, "mm"),  # within the first 4 KB
        ("v 0 0 0\n" * 2000 + "# units: mm\n", None),  # beyond: not read
    ],
)
def test_obj_header_comments(tmp_path, text, expected):
    path = tmp_path / "part.obj"
    path.write_text(text + "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert declared_unit_from_header(path, "obj") == expected


def test_ply_comment_and_stl_headers(tmp_path):
    ply = tmp_path / "a.ply"
    ply.write_bytes(
        b"ply\nformat ascii 1.0\ncomment units: cm\nelement vertex 0\nend_header\n"
        b"comment units: mm\n"
    )
    assert declared_unit_from_header(ply, "ply") == "cm"
    binary = tmp_path / "b.stl"
    binary.write_bytes(b"COLOR= UNITS=in".ljust(80, b" ") + struct.pack("<I", 0))
    assert declared_unit_from_header(binary, "stl") == "in"
    ascii_stl = tmp_path / "c.stl"
    ascii_stl.write_text("solid part units: mm\nfacet normal 0 0 1\n")
    assert declared_unit_from_header(ascii_stl, "stl") == "mm"
    plain = tmp_path / "d.stl"
    plain.write_text("solid part\nfacet normal 0 0 1\n")
    assert declared_unit_from_header(plain, "stl") is None
