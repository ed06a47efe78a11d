"""The corpus verdicts, pinned per file (issue 15): a file that goes from "repaired" to "needs
attention" fails here, and so does the reverse, or a change in why a file needs attention,
until this table is updated with the reason for the change (a NOTE beside the row).

Each file is read as the service reads it without an order: the unit the file declares or
a clear-cut size guess is applied, otherwise the file's own numbers are used (as in
bench/mesh.py). Pinned on 2026-12-07 from the code before and after issue 15's changes (both
gave these verdicts).
"""

from __future__ import annotations

import pytest

from pocprint.mesh.intake import declared_unit
from pocprint.mesh.read import detect_format, load_mesh
from pocprint.mesh.repair import repair
from pocprint.mesh.units import UNIT_TO_MM, guess_units

from conftest import shared_mesh

# file -> (verdict, topics of the reasons it needs attention for)
PINNED = {
    "anat_aneurysm_sofa.ply": ("repaired", ()),
    "anat_aorta_segment_vmtk.stl": ("repaired", ()),
    "anat_body_surface_highpoly_m_myosim.stl": ("needs_attention", ("candidate", "open")),
    "anat_cartilage_femoral_open_ssm.ply": ("needs_attention", ("candidate", "invented", "open")),
    "anat_femur_distal_ssm.ply": ("repaired", ()),
    "anat_femur_right_m_myosim.stl": ("repaired", ()),
    "anat_heart_inverted_sofa.ply": ("repaired", ()),
    "anat_liver_sofa.obj": ("repaired", ()),
    "anat_malleus_sofa.obj": ("repaired", ()),
    "anat_mandible_m_myosim.stl": ("needs_attention", ("candidate", "invented", "open")),
    "anat_pelvis_sofa.obj": ("repaired", ()),
    "anat_skull_lowpoly_m_myosim.stl": (
        "needs_attention",
        ("candidate", "invented", "open", "removed"),
    ),
    "anat_skull_makerbot.stl": ("needs_attention", ("candidate", "not solid")),
    "anat_skull_teeth_cm_sofa.obj": ("needs_attention", ("candidate", "open", "removed")),
    "anat_spine_m_myosim.stl": ("needs_attention", ("candidate", "open")),
    "anat_tibia_proximal_ssm.ply": ("repaired", ()),
    "anat_tooth_open_sofa.obj": ("needs_attention", ("candidate", "invented", "open")),
    "defect_degenerate_conveyor_ascii.stl": ("needs_attention", ("candidate", "invented", "open")),
    "defect_flipped_facet_block_inch_ascii.stl": ("repaired", ()),
    "defect_hole_block_inch_ascii.stl": ("repaired", ()),
    "defect_hole_hourglass_ascii.stl": ("repaired", ()),
    "defect_holes_scan_bunny_100k.ply": ("needs_attention", ("candidate", "invented", "open")),
    "defect_inverted_aorta_vmtk.stl": ("repaired", ()),
    "defect_nearby_verts_block_inch_ascii.stl": ("repaired", ()),
    "defect_nonmanifold_gears.3mf": ("needs_attention", ("candidate", "open")),
    "defect_nonmanifold_shared_edge.stl": (
        "needs_attention",
        ("candidate", "standard repair failed"),
    ),
    "defect_nonmanifold_tetrahedra.obj": ("repaired", ()),
    "defect_open_ends_aorta_vmtk.stl": ("needs_attention", ("candidate", "invented", "open")),
    "defect_selfintersect_cycloidal.ply": ("needs_attention", ("candidate", "open")),
    "defect_soup.stl": ("needs_attention", ("not solid", "open")),
    "defect_unconnected_block_ascii.stl": ("repaired", ()),
    "defect_wallhole.obj": ("needs_attention", ("candidate", "invented", "open", "removed")),
    "defect_winding_hourglass_ascii.stl": ("repaired", ()),
    "defect_winding_multibody_ascii.stl": ("repaired", ()),
    "fmt_block_inch_ascii_uppercase.stl": ("repaired", ()),
    "fmt_featuretype_inch.3mf": (
        "needs_attention",
        ("candidate", "invented", "standard repair failed"),
    ),
    "fmt_multibody_chain.3mf": ("repaired", ()),
    "fmt_multipletextures_97k.3mf": ("repaired", ()),
    "perf_counter_mm_84k.stl": ("repaired", ()),
}


def reason_topics(reasons: list[str]) -> tuple[str, ...]:
    found = set()
    for reason in reasons:
        if reason.startswith("pocprint made a closed"):
            found.add("candidate")
        elif reason.startswith("Hole filling invented"):
            found.add("invented")
        elif reason.startswith("The repair removed"):
            found.add("removed")
        elif "boundary edges remain open" in reason:
            found.add("open")
        elif "manifold3d rejects" in reason:
            found.add("not solid")
        elif reason.startswith("Within the configured limits"):
            found.add("standard repair failed")
        else:
            found.add(reason[:40])  # a new kind of reason: it must be pinned by name
    return tuple(sorted(found))


def test_every_corpus_mesh_is_pinned():
    from conftest import SHARED_MESHES

    if not SHARED_MESHES.is_dir():
        shared_mesh("manifest.json")  # skips with the corpus message
    names = {
        p.name
        for p in SHARED_MESHES.iterdir()
        if p.suffix.lower() in (".stl", ".obj", ".ply", ".3mf")
    }
    assert names == set(PINNED)


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(PINNED))
def test_corpus_verdict_is_pinned(name):
    path = shared_mesh(name)
    fmt = detect_format(name)
    mesh = load_mesh(path, fmt)
    guess = guess_units(tuple(mesh.extents), None, declared_unit(path, fmt))
    if guess.clear and UNIT_TO_MM.get(guess.proposed, 1.0) != 1.0:
        mesh.apply_scale(UNIT_TO_MM[guess.proposed])
    result = repair(mesh)
    verdict, topics = PINNED[name]
    assert (result.verdict, reason_topics(result.reasons)) == (verdict, topics), result.reasons
