"""Removed surface judged by what it was (issue 15, part 2): zero-area slivers, duplicates,
fins and shells under the noise limit are noise; removed real surface (area, volume) is
anatomy and alone counts against the removal limit. The report lists every piece."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pocprint.mesh.removed import _kind, removed_pieces
from pocprint.mesh.repair import repair

SPHERE = trimesh.creation.icosphere(subdivisions=3, radius=20)


def with_extra(pieces: list[tuple[np.ndarray, np.ndarray]]) -> trimesh.Trimesh:
    vertices, faces = [np.asarray(SPHERE.vertices)], [np.asarray(SPHERE.faces)]
    offset = len(SPHERE.vertices)
    for v, f in pieces:
        vertices.append(np.asarray(v, dtype=float))
        faces.append(np.asarray(f) + offset)
        offset += len(v)
    return trimesh.Trimesh(np.vstack(vertices), np.vstack(faces), process=False)


def test_zero_area_slivers_35_mm_long_are_noise_and_the_repair_is_sound():
    slivers = []
    for i in range(20):
        p = np.array([30.0, 3.0 * i, 0.0])
        slivers.append((np.array([p, p + [35, 0, 0], p + [17.5, 1e-7, 0]]), np.array([[0, 1, 2]])))
    result = repair(with_extra(slivers))
    removed = result.fidelity["removed"]
    assert result.verdict == "repaired", result.reasons
    assert removed["largest_diameter_mm"] == pytest.approx(35.0)  # still measured and shown
    assert removed["largest_anatomy_diameter_mm"] == 0.0
    assert removed["by_kind"]["degenerate"]["pieces"] == 20
    assert len(removed["pieces"]) == 20
    assert all(p["kind"] == "degenerate" and p["noise"] for p in removed["pieces"])
    assert {"kind", "area_mm2", "diameter_mm", "faces", "centre"} <= set(removed["pieces"][0])


def test_a_small_open_shell_under_the_noise_limit_is_noise():
    flap = np.array([[30, 0, 0], [36, 0, 0], [30, 1, 0], [36, 1, 0.1]], dtype=float)
    result = repair(with_extra([(flap, np.array([[0, 1, 2], [1, 3, 2]]))]))
    removed = result.fidelity["removed"]
    assert result.verdict == "repaired", result.reasons
    assert removed["pieces"][0]["kind"] == "noise shell"
    assert removed["largest_diameter_mm"] > 5.0  # over the old diameter-only limit


def test_a_removed_closed_shell_with_volume_is_anatomy_and_needs_attention():
    box = trimesh.creation.box(extents=[8, 8, 8])  # 12 faces: under the 25-face limit
    box.apply_translation([40, 0, 0])
    result = repair(with_extra([(box.vertices, box.faces)]))
    removed = result.fidelity["removed"]
    assert result.verdict == "needs_attention"
    assert removed["pieces"][0]["kind"] == "shell"
    assert removed["pieces"][0]["volume_mm3"] == pytest.approx(512.0)
    assert any("piece(s) of real surface" in r for r in result.reasons)


def test_removed_surface_cut_out_of_the_manifold_is_anatomy():
    v, f = np.asarray(SPHERE.vertices), np.asarray(SPHERE.faces)
    removed = np.zeros(len(f), dtype=bool)
    removed[:3] = True
    pieces = removed_pieces(v, f, removed, 25, 1.0)
    assert {p["kind"] for p in pieces} == {"surface"} and not pieces[0]["noise"]


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        (dict(area=0.01, diameter=35.0), "degenerate"),
        (dict(twins=4), "duplicate"),
        (dict(touches=True, ordinary=False), "fin"),
        (dict(touches=True, ordinary=False, volume=50.0), "shell"),
        (dict(touches=True, ordinary=True), "surface"),
        (dict(faces=10), "noise shell"),
        (dict(faces=10, volume=5.0), "shell"),
        (dict(faces=100), "shell"),
    ],
)
def test_each_kind_of_removed_piece(facts, kind):
    base = dict(
        area=20.0,
        diameter=10.0,
        faces=4,
        twins=0,
        volume=0.0,
        touches=False,
        ordinary=False,
        min_component_faces=25,
        noise_volume_mm3=1.0,
    )
    assert _kind(**{**base, **facts}) == kind
