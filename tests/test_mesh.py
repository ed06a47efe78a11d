"""Mesh intake: strict reading, analysis, repair verdicts and fidelity, on real libraries.

Bad-input files are built byte by byte here (independently of the code under test); real
defective meshes come from tests/data/meshes (MIT, see ATTRIBUTION.md) and, where present,
from the shared corpus ../shared/data/meshes.
"""

from __future__ import annotations

import io
import json
import pickle
import tempfile
import zipfile
from pathlib import Path

import manifold3d
import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocprint.mesh.analyse import analyse
from pocprint.mesh.errors import MESH_ERROR_CODES, MeshError
from pocprint.mesh.fidelity import fidelity as _fidelity
from pocprint.mesh.fidelity import fidelity_reasons as _fidelity_reasons
from pocprint.mesh.read import (
    SUPPORTED_FORMATS,
    check_upload,
    detect_format,
    load_mesh,
    load_parts,
    save_mesh,
)
from pocprint.mesh.repair import RepairSettings, repair
from pocprint.mesh.topology import weld_exact

DATA = Path(__file__).resolve().parent / "data" / "meshes"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meshes"
LIMIT = 50_000_000


def corpus_file(name: str) -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/data/meshes not present (it exists in CI, not in a fresh clone)")
    return CORPUS / name


# ----------------------------------------------------------------------------- builders


def stl_bytes(triangles: np.ndarray, header: bytes = b"test", count: int | None = None) -> bytes:
    """A binary STL written by hand: 80-byte header, uint32 count, 50-byte records."""
    triangles = np.asarray(triangles, dtype="<f4").reshape(-1, 3, 3)
    records = np.zeros(len(triangles), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    records["v"] = triangles
    n = len(triangles) if count is None else count
    return header.ljust(80, b" ")[:80] + np.uint32(n).tobytes() + records.tobytes()


def box_triangles(size: float = 10.0) -> np.ndarray:
    box = trimesh.creation.box(extents=(size, size, size))
    return box.vertices[box.faces]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def threemf_bytes(model_xml: str, extra: dict[str, bytes] | None = None, rels: str | None = None):
    """A 3MF package (zip) with the given model part."""
    rels = rels or (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model"'
        ' Id="r0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
        "</Relationships>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("_rels/.rels", rels)
        zf.writestr("3D/3dmodel.model", model_xml)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def cube_object(object_id: int, name: str, offset: float = 0.0) -> str:
    box = trimesh.creation.box(extents=(1, 1, 1))
    verts = "".join(f'<vertex x="{x + offset}" y="{y}" z="{z}"/>' for x, y, z in box.vertices + 0.5)
    tris = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in box.faces)
    return (
        f'<object id="{object_id}" name="{name}" type="model"><mesh><vertices>{verts}'
        f"</vertices><triangles>{tris}</triangles></mesh></object>"
    )


def model_xml(objects: str, items: str, unit: str = "millimeter") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><model unit="{unit}" xmlns="http://schemas.'
        f'microsoft.com/3dmanufacturing/core/2015/02"><resources>{objects}</resources>'
        f"<build>{items}</build></model>"
    )


def assert_mesh_error(code: str, func, *args) -> MeshError:
    with pytest.raises(MeshError) as info:
        func(*args)
    assert info.value.code == code, str(info.value)
    return info.value


# ----------------------------------------------------------------------------- errors, formats


def test_mesh_error_keeps_code_and_readable_message_and_survives_pickling():
    error = MeshError("truncated", "The file was cut off.")
    assert isinstance(error, ValueError)
    assert str(error) == "The file was cut off."
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.code, str(copy)) == ("truncated", "The file was cut off.")
    with pytest.raises(ValueError):
        MeshError("no_such_code", "x")
    assert "bad_3mf" in MESH_ERROR_CODES


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("Knee.STL", "stl"), ("a.b.obj", "obj"), ("scan.Ply", "ply"), ("C:\\cases\\guide.3MF", "3mf")],
)
def test_detect_format_uses_the_lower_case_extension(name, fmt):
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["report.pdf", "model.stl.zip", "README", ".stl"])
def test_detect_format_refuses_other_extensions(name):
    error = assert_mesh_error("unsupported_format", detect_format, name)
    assert "STL, OBJ, PLY and 3MF" in str(error)


def test_unsupported_format_message_never_echoes_the_file_name():
    error = assert_mesh_error("unsupported_format", detect_format, "Doe_Jane_1961-knee.docx")
    assert "Doe" not in str(error) and "'.docx'" in str(error)


# ----------------------------------------------------------------------------- bad input


def test_empty_file_is_refused_on_upload_and_on_load(tmp_path):
    path = write(tmp_path, "a.stl", b"")
    assert "empty" in str(assert_mesh_error("empty", check_upload, path, "stl", LIMIT))
    assert_mesh_error("empty", load_mesh, path, "obj")


def test_oversized_upload_names_size_and_limit(tmp_path):
    path = write(tmp_path, "a.stl", stl_bytes(box_triangles()))
    error = assert_mesh_error("too_large", check_upload, path, "stl", 100)
    assert "limit is 0.0 MB" in str(error) and "0.0 MB" in str(error)


def test_truncated_binary_stl_is_reported_as_cut_off(tmp_path):
    data = stl_bytes(box_triangles())
    path = write(tmp_path, "a.stl", data[: 84 + 50 * 5 + 17])
    error = assert_mesh_error("truncated", check_upload, path, "stl", LIMIT)
    assert "cut off" in str(error) and "12 triangles" in str(error)
    assert_mesh_error("truncated", load_mesh, path, "stl")
    tiny = write(tmp_path, "b.stl", b"\x01\x02\x03" * 10)
    assert_mesh_error("truncated", check_upload, tiny, "stl", LIMIT)


def test_binary_stl_with_wrong_triangle_count_is_a_count_mismatch(tmp_path):
    path = write(tmp_path, "a.stl", stl_bytes(box_triangles(), count=20))
    error = assert_mesh_error("count_mismatch", check_upload, path, "stl", LIMIT)
    assert "declares 20 triangles" in str(error) and "12" in str(error)
    path = write(tmp_path, "b.stl", stl_bytes(box_triangles(), count=5))
    assert_mesh_error("count_mismatch", load_mesh, path, "stl")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "PNG image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 50, "PDF document"),
        (b"Patient scan notes\nsegmented by hand\n" * 20, "text file"),
        (b"solid but not really\nhello world\n" * 5, "no 'facet normal'"),
        (b"\xff\xd8\xff\xe0" + bytes(300), "JPEG image"),
    ],
)
def test_non_mesh_files_named_stl_are_not_a_mesh(tmp_path, data, words):
    path = write(tmp_path, "model.stl", data)
    error = assert_mesh_error("not_a_mesh", check_upload, path, "stl", LIMIT)
    assert words in str(error)
    assert_mesh_error("not_a_mesh", load_mesh, path, "stl")


def test_png_named_obj_ply_or_3mf_is_not_a_mesh(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(500)
    for fmt in ("obj", "ply", "3mf"):
        path = write(tmp_path, f"m.{fmt}", png)
        assert "PNG" in str(assert_mesh_error("not_a_mesh", check_upload, path, fmt, LIMIT))


def test_nan_coordinates_are_refused_in_binary_and_ascii_stl(tmp_path):
    triangles = box_triangles()
    triangles[3, 1, 2] = np.nan
    triangles[7, 0, 0] = np.inf
    path = write(tmp_path, "a.stl", stl_bytes(triangles))
    error = assert_mesh_error("nan_coordinates", check_upload, path, "stl", LIMIT)
    assert "2 of 12 triangles" in str(error)
    assert_mesh_error("nan_coordinates", load_mesh, path, "stl")
    ascii_stl = (
        b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\n"
        b"vertex nan 1 0\nendloop\nendfacet\nendsolid x\n"
    )
    assert_mesh_error("nan_coordinates", load_mesh, write(tmp_path, "b.stl", ascii_stl), "stl")


def test_zero_triangles_in_every_format(tmp_path):
    empty_binary = write(tmp_path, "a.stl", stl_bytes(np.zeros((0, 3, 3))))
    assert "no triangles" in str(
        assert_mesh_error("no_triangles", check_upload, empty_binary, "stl", LIMIT)
    )
    empty_ascii = write(tmp_path, "b.stl", b"solid empty\nendsolid empty\n")
    assert_mesh_error("no_triangles", check_upload, empty_ascii, "stl", LIMIT)
    points = write(tmp_path, "c.obj", b"# points only\nv 0 0 0\nv 1 0 0\nv 0 1 0\n")
    assert "point cloud" in str(
        assert_mesh_error("no_triangles", check_upload, points, "obj", LIMIT)
    )
    assert_mesh_error("no_triangles", load_mesh, points, "obj")
    cloud = write(
        tmp_path,
        "d.ply",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
        b"property float z\nend_header\n0 0 0\n",
    )
    assert_mesh_error("no_triangles", check_upload, cloud, "ply", LIMIT)


def test_all_degenerate_triangles_are_refused_on_load(tmp_path):
    line = np.array([[[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 0, 0], [0, 0, 0], [5, 0, 0]]])
    path = write(tmp_path, "a.stl", stl_bytes(line))
    check_upload(path, "stl", LIMIT)  # structurally fine: only the full load sees it
    error = assert_mesh_error("all_degenerate", load_mesh, path, "stl")
    assert "zero area" in str(error)


@pytest.mark.parametrize("bad", [b"f 1 2 9\n", b"f 1 2 -9\n", b"f 1 2 0\n", b"f 1/1/1 2//2 4\n"])
def test_obj_face_pointing_at_a_missing_vertex(tmp_path, bad):
    data = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n" + bad
    path = write(tmp_path, "a.obj", data)
    check_upload(path, "obj", LIMIT)
    error = assert_mesh_error("bad_face_index", load_mesh, path, "obj")
    assert "do" in str(error) and "exist" in str(error)


def test_ply_face_pointing_at_a_missing_vertex(tmp_path):
    data = (
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nelement face 2\nproperty list uchar int vertex_indices\n"
        b"end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 7\n"
    )
    error = assert_mesh_error("bad_face_index", load_mesh, write(tmp_path, "a.ply", data), "ply")
    assert "1 triangle(s)" in str(error)


def test_ply_header_declaring_more_data_than_the_file_holds_is_truncated(tmp_path):
    data = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 100000000\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 1\n"
        b"property list uchar int vertex_indices\nend_header\n" + bytes(64)
    )
    assert_mesh_error("truncated", check_upload, write(tmp_path, "a.ply", data), "ply", LIMIT)


# ----------------------------------------------------------------------------- good input


def test_binary_stl_whose_header_starts_with_solid_is_read_as_binary(tmp_path):
    path = write(tmp_path, "a.stl", stl_bytes(box_triangles(), header=b"solid Exported by CAD"))
    check_upload(path, "stl", LIMIT)
    mesh = load_mesh(path, "stl")
    assert len(mesh.faces) == 12 and len(mesh.vertices) == 8  # exact duplicates welded
    assert analyse(mesh).volume_mm3 == pytest.approx(1000.0)


def test_ascii_stl_with_upper_case_keywords_loads(tmp_path):
    facets = "".join(
        "FACET NORMAL 0 0 0\n OUTER LOOP\n"
        + "".join(f"  VERTEX {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in tri)
        + " ENDLOOP\nENDFACET\n"
        for tri in box_triangles(2.0)
    )
    path = write(tmp_path, "a.stl", f"SOLID block\n{facets}ENDSOLID block\n".encode())
    check_upload(path, "stl", LIMIT)
    assert analyse(load_mesh(path, "stl")).volume_mm3 == pytest.approx(8.0)


def test_obj_polygons_are_fan_triangulated_and_relative_indices_resolved(tmp_path):
    data = (
        b"# quad and a triangle with relative indices\nmtllib missing.mtl\no part\n"
        b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n"
        b"f 1/1/1 2/1/1 3/1/1 4/1/1\nv 0 0 1\nf -1 -4 -5\n"
    )
    mesh = load_mesh(write(tmp_path, "a.obj", data), "obj")
    assert len(mesh.faces) == 3
    assert analyse(mesh).area_mm2 == pytest.approx(1.5)


@pytest.mark.parametrize("suffix", ["stl", "ply", "obj", "3mf"])
def test_save_mesh_round_trips_atomically(tmp_path, suffix):
    box = trimesh.creation.box(extents=(3, 4, 5))
    path = tmp_path / f"out.{suffix}"
    save_mesh(box, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left over
    check_upload(path, suffix, LIMIT)
    again = analyse(load_mesh(path, suffix))
    assert again.triangles == 12 and again.watertight
    assert again.volume_mm3 == pytest.approx(60.0, rel=1e-6)


# ----------------------------------------------------------------------------- analysis


def test_analysis_of_a_closed_box_and_json_export():
    result = analyse(trimesh.creation.box(extents=(2, 3, 4)))
    assert (result.triangles, result.vertices, result.shells) == (12, 8, 1)
    assert result.watertight and result.winding_consistent
    assert result.volume_mm3 == pytest.approx(24.0)
    assert result.area_mm2 == pytest.approx(52.0)
    assert result.extents == pytest.approx((2.0, 3.0, 4.0))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["bbox_min"] == pytest.approx([-1.0, -1.5, -2.0])


def test_analysis_reports_holes_flips_and_inside_out():
    box = trimesh.creation.box()
    opened = analyse(trimesh.Trimesh(box.vertices, box.faces[1:], process=False))
    assert opened.boundary_edges == 3 and not opened.watertight and opened.volume_mm3 is None
    faces = box.faces.copy()
    faces[0] = faces[0][::-1]
    assert not analyse(trimesh.Trimesh(box.vertices, faces, process=False)).winding_consistent
    inside_out = analyse(trimesh.Trimesh(box.vertices, box.faces[:, ::-1], process=False))
    assert inside_out.volume_mm3 == pytest.approx(-1.0)


def test_analysis_welds_exact_duplicates_only():
    triangles = box_triangles(1.0).reshape(-1, 3)
    soup = trimesh.Trimesh(triangles, np.arange(36).reshape(-1, 3), process=False)
    assert analyse(soup).watertight
    nudged = triangles.copy()
    nudged[35, 0] += 1e-9
    vertices, _ = weld_exact(nudged, soup.faces)
    assert len(vertices) == 9  # a 1e-9 offset is a different vertex: no tolerance merging


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("defect_soup.stl", {"shells": 100, "boundary_edges": 300, "non_manifold_edges": 0}),
        ("defect_nonmanifold_shared_edge.stl", {"shells": 2, "non_manifold_edges": 1}),
        (
            "defect_nonmanifold_tetrahedra.obj",
            {"shells": 4, "non_manifold_edges": 3, "duplicate_faces": 1},
        ),
        ("defect_winding_multibody_ascii.stl", {"shells": 2, "winding_consistent": False}),
    ],
)
def test_analysis_matches_the_corpus_table(name, expected):
    result = analyse(load_mesh(DATA / name, detect_format(name)))
    assert {key: getattr(result, key) for key in expected} == expected


# ----------------------------------------------------------------------------- repair


def manifold_accepts(mesh: trimesh.Trimesh) -> bool:
    solid = manifold3d.Manifold(
        manifold3d.Mesh64(
            vert_properties=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
            tri_verts=np.ascontiguousarray(mesh.faces, dtype=np.uint64),
        )
    )
    return solid.status() == manifold3d.Error.NoError and not solid.is_empty()


def assert_gate_and_verdict_agree(result) -> None:
    """A "repaired" verdict must hold up to an independent check of the returned mesh."""
    if result.verdict == "repaired":
        assert result.reasons == []
        assert result.gate["passed"]
        assert manifold_accepts(result.mesh)
        after = analyse(result.mesh)
        assert after.watertight and after.volume_mm3 > 0
    else:
        assert result.verdict == "needs_attention" and result.reasons
    if not result.gate["passed"]:
        assert result.verdict == "needs_attention"


def test_clean_box_is_repaired_without_changes_and_the_report_is_json():
    result = repair(trimesh.creation.box(extents=(20, 20, 20)))
    assert result.verdict == "repaired" and result.reasons == []
    assert result.fidelity["invented"]["area_mm2"] == 0.0
    assert result.fidelity["removed"]["components"] == 0
    assert result.fidelity["kept_surface"]["max_mm"] == 0.0
    assert set(result.library_versions) == {"trimesh", "pymeshlab", "manifold3d", "numpy"}
    assert {"analysis", "repair", "fidelity"} <= set(result.duration_s)
    assert [s["filter"] for s in result.steps][:2] == [
        "meshing_remove_duplicate_vertices",
        "meshing_remove_duplicate_faces",
    ]
    holes = next(s for s in result.steps if s["filter"] == "meshing_close_holes")
    assert holes["params"]["maxholesize"] == 100
    report = json.loads(json.dumps(result.report()))
    assert "mesh" not in report and report["verdict"] == "repaired"
    assert_gate_and_verdict_agree(result)


def test_small_hole_is_closed_and_the_patch_is_reported():
    box = trimesh.creation.box(extents=(4, 4, 4))
    missing_area = float(box.area_faces[0])
    result = repair(trimesh.Trimesh(box.vertices, box.faces[1:], process=False))
    assert result.before.boundary_edges == 3 and result.after.watertight
    invented = result.fidelity["invented"]
    assert invented["patches"] == 1 and invented["faces"] == 1
    assert invented["area_mm2"] == pytest.approx(missing_area)
    assert invented["largest_patch_diameter_mm"] == pytest.approx(np.sqrt(32))
    assert result.verdict == "repaired"
    strict = repair(
        trimesh.Trimesh(box.vertices, box.faces[1:], process=False),
        RepairSettings(max_invented_patch_diameter_mm=5.0),
    )
    assert strict.verdict == "needs_attention"
    assert any("5.7 mm across (limit 5.0 mm" in r for r in strict.reasons), strict.reasons
    assert_gate_and_verdict_agree(strict)


def test_inside_out_box_is_inverted():
    box = trimesh.creation.box(extents=(10, 10, 10))
    result = repair(trimesh.Trimesh(box.vertices, box.faces[:, ::-1], process=False))
    assert result.before.volume_mm3 == pytest.approx(-1000.0)
    assert result.after.volume_mm3 == pytest.approx(1000.0)
    assert result.verdict == "repaired"
    assert result.steps[-1]["filter"] == "invert_inside_out_shells"


def test_internal_cavity_keeps_its_inward_normals():
    outer = trimesh.creation.box(extents=(10, 10, 10))
    inner = trimesh.creation.box(extents=(4, 4, 4))
    hollow = trimesh.Trimesh(
        np.vstack([outer.vertices, inner.vertices]),
        np.vstack([outer.faces, inner.faces[:, ::-1] + 8]),
        process=False,
    )
    result = repair(hollow)
    assert result.after.volume_mm3 == pytest.approx(1000.0 - 64.0)
    assert not any(s["filter"] == "invert_inside_out_shells" for s in result.steps)
    assert result.verdict == "repaired"


def test_removed_noise_is_measured_and_large_removals_need_attention():
    box = trimesh.creation.box(extents=(20, 20, 20))
    speck = np.array([[30, 0, 0], [30.5, 0, 0], [30, 0.5, 0]])
    sliver = np.array([[40, 0, 0], [48, 0, 0], [40, 1, 0]])  # an 8 mm loose triangle: noise
    for extra in (speck, sliver):
        mesh = trimesh.Trimesh(
            np.vstack([box.vertices, extra]), np.vstack([box.faces, [[8, 9, 10]]]), process=False
        )
        result = repair(mesh)
        assert result.fidelity["removed"]["components"] == 1
        assert result.fidelity["removed"]["pieces"][0]["kind"] == "noise shell"
        assert result.verdict == "repaired", result.reasons
        assert_gate_and_verdict_agree(result)
    # A loose 8 mm tetrahedron encloses volume: removing it may lose anatomy.
    tetra = np.array([[40, 0, 0], [48, 0, 0], [40, 8, 0], [40, 0, 8]], dtype=float)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]) + 8
    mesh = trimesh.Trimesh(
        np.vstack([box.vertices, tetra]), np.vstack([box.faces, faces]), process=False
    )
    result = repair(mesh)
    assert result.fidelity["removed"]["pieces"][0]["kind"] == "shell"
    assert result.verdict == "needs_attention"
    assert_gate_and_verdict_agree(result)
    assert any("13.9 mm across (limit 5.0 mm)" in r for r in result.reasons), result.reasons


def test_kept_surface_deviation_is_measured_when_a_vertex_moves():
    box = trimesh.creation.box(extents=(10, 10, 10))
    moved = np.array(box.vertices, dtype=np.float64)
    moved[0] += [0.0, 0.0, -0.3]  # pushed 0.3 mm off the original surface
    fidelity = _fidelity(np.asarray(box.vertices), np.asarray(box.faces), moved, box.faces)
    kept = fidelity["kept_surface"]
    assert kept["moved_vertices"] == 1 and kept["faces"] == 12
    assert kept["max_mm"] == pytest.approx(0.3, abs=0.02)
    assert fidelity["invented"]["patches"] == 0
    reasons = _fidelity_reasons(fidelity, RepairSettings())
    assert len(reasons) == 1 and "limit 0.1 mm" in reasons[0]


@pytest.mark.parametrize(
    ("name", "why", "closed_candidate"),
    [
        # 100 loose triangles: nothing closed can be made of them (tests/test_mesh_candidate.py)
        ("defect_soup.stl", "boundary edges remain open", False),
        # Two cubes sharing an edge: the standard repair cannot, the candidate cuts them apart.
        ("defect_nonmanifold_shared_edge.stl", "non-manifold edges remain", True),
    ],
)
def test_meshes_the_pipeline_cannot_fix_need_attention(name, why, closed_candidate):
    result = repair(load_mesh(DATA / name, detect_format(name)))
    assert result.verdict == "needs_attention"
    assert result.gate["passed"] is closed_candidate
    assert result.candidate["used"] is closed_candidate
    assert any(why in reason for reason in result.reasons), result.reasons
    assert_gate_and_verdict_agree(result)


def test_bundled_meshes_gate_and_verdict_agree():
    for path in sorted(DATA.iterdir()):
        if path.suffix.lower() in (".stl", ".obj", ".ply", ".3mf"):
            assert_gate_and_verdict_agree(repair(load_mesh(path, detect_format(path.name))))


@pytest.mark.corpus
def test_corpus_clean_watertight_aorta_is_repaired_with_nothing_invented():
    mesh = load_mesh(corpus_file("anat_aorta_segment_vmtk.stl"), "stl")
    result = repair(mesh)
    assert result.verdict == "repaired"
    assert result.fidelity["invented"]["area_mm2"] == 0.0
    assert result.after.volume_mm3 == pytest.approx(result.before.volume_mm3)


@pytest.mark.corpus
def test_corpus_inside_out_aorta_is_repaired_with_positive_volume():
    result = repair(load_mesh(corpus_file("defect_inverted_aorta_vmtk.stl"), "stl"))
    assert result.before.volume_mm3 < 0
    assert result.verdict == "repaired"
    assert result.after.volume_mm3 == pytest.approx(-result.before.volume_mm3)


@pytest.mark.corpus
def test_corpus_open_vessel_ends_report_invented_caps_against_the_thresholds():
    mesh = load_mesh(corpus_file("defect_open_ends_aorta_vmtk.stl"), "stl")
    result = repair(mesh)
    invented = result.fidelity["invented"]
    assert invented["patches"] > 0 and invented["area_mm2"] > 0
    assert result.verdict == "needs_attention"
    if invented["largest_patch_diameter_mm"] > RepairSettings().max_invented_patch_diameter_mm:
        number = f"{invented['largest_patch_diameter_mm']:.1f} mm across"
        assert any(number in r for r in result.reasons), result.reasons
    assert_gate_and_verdict_agree(result)


@pytest.mark.corpus
def test_corpus_small_hole_is_closed_and_passes_the_thresholds():
    result = repair(load_mesh(corpus_file("defect_hole_hourglass_ascii.stl"), "stl"))
    assert result.fidelity["invented"]["patches"] == 1
    assert result.verdict == "repaired"


CORPUS_FILES = [
    "anat_aneurysm_sofa.ply",
    "anat_cartilage_femoral_open_ssm.ply",
    "anat_femur_distal_ssm.ply",
    "anat_heart_inverted_sofa.ply",
    "anat_liver_sofa.obj",
    "anat_mandible_m_myosim.stl",
    "anat_skull_lowpoly_m_myosim.stl",
    "anat_skull_makerbot.stl",
    "anat_skull_teeth_cm_sofa.obj",
    "anat_spine_m_myosim.stl",
    "anat_tooth_open_sofa.obj",
    "defect_degenerate_conveyor_ascii.stl",
    "defect_flipped_facet_block_inch_ascii.stl",
    "defect_hole_block_inch_ascii.stl",
    "defect_holes_scan_bunny_100k.ply",
    "defect_nearby_verts_block_inch_ascii.stl",
    "defect_nonmanifold_gears.3mf",
    "defect_selfintersect_cycloidal.ply",
    "defect_unconnected_block_ascii.stl",
    "defect_winding_hourglass_ascii.stl",
    "fmt_block_inch_ascii_uppercase.stl",
    "fmt_multibody_chain.3mf",
    "perf_counter_mm_84k.stl",
]


@pytest.mark.corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_gate_and_verdict_agree(name):
    path = corpus_file(name)
    check_upload(path, detect_format(name), LIMIT)
    assert_gate_and_verdict_agree(repair(load_mesh(path, detect_format(name))))


# ----------------------------------------------------------------------------- 3MF


def test_3mf_inch_file_is_scaled_to_millimetres():
    path = DATA / "fmt_featuretype_inch.3mf"
    check_upload(path, "3mf", LIMIT)
    parts = load_parts(path, "3mf")
    assert [name for name, _ in parts] == ["Cut-Extrude6"]
    assert parts[0][1].extents == pytest.approx((127.0, 63.5, 34.925), abs=1e-3)


@pytest.mark.parametrize(
    ("unit", "mm"),
    [
        ("micron", 0.001),
        ("millimeter", 1.0),
        ("centimeter", 10.0),
        ("inch", 25.4),
        ("foot", 304.8),
        ("meter", 1000.0),
    ],
)
def test_3mf_units_are_honoured(tmp_path, unit, mm):
    xml = model_xml(cube_object(1, "cube"), '<item objectid="1"/>', unit=unit)
    mesh = load_mesh(write(tmp_path, "a.3mf", threemf_bytes(xml)), "3mf")
    assert mesh.extents == pytest.approx((mm, mm, mm))


def test_3mf_objects_become_named_parts_with_transforms_and_components(tmp_path):
    objects = (
        cube_object(1, "femur guide")
        + cube_object(2, "tibia guide")
        + '<object id="3" name="assembly"><components><component objectid="1" '
        'transform="1 0 0 0 1 0 0 0 1 100 0 0"/><component objectid="2" '
        'transform="1 0 0 0 1 0 0 0 1 200 0 0"/></components></object>'
    )
    items = '<item objectid="1"/><item objectid="2" transform="2 0 0 0 2 0 0 0 2 10 0 0"/>'
    path = write(
        tmp_path, "a.3mf", threemf_bytes(model_xml(objects, items + '<item objectid="3"/>'))
    )
    parts = load_parts(path, "3mf")
    assert [name for name, _ in parts] == ["femur guide", "tibia guide", "assembly"]
    assert parts[1][1].bounds[0] == pytest.approx((10, 0, 0))
    assert parts[1][1].extents == pytest.approx((2, 2, 2))
    assert parts[2][1].bounds.ravel() == pytest.approx([100, 0, 0, 201, 1, 1])
    assert analyse(parts[2][1]).shells == 2
    assert len(load_mesh(path, "3mf").faces) == 12 * 4


def test_3mf_model_part_named_in_rels_is_used(tmp_path):
    rels = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Target="/3D/other.model" Id="r0" '
        'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>'
    )
    xml = model_xml(cube_object(1, "c"), '<item objectid="1"/>', unit="centimeter")
    data = threemf_bytes("<not used/>", extra={"3D/other.model": xml.encode()}, rels=rels)
    assert load_mesh(write(tmp_path, "a.3mf", data), "3mf").extents == pytest.approx((10, 10, 10))


def test_3mf_zip_bomb_is_refused_from_the_directory_alone(tmp_path):
    xml = model_xml(cube_object(1, "c"), '<item objectid="1"/>')
    data = threemf_bytes(xml, extra={"Metadata/padding.bin": bytes(50_000_000)})
    path = write(tmp_path, "bomb.3mf", data)
    assert path.stat().st_size < 200_000
    error = assert_mesh_error("bad_3mf", check_upload, path, "3mf", LIMIT)
    assert "zip bomb" in str(error)


def test_3mf_path_traversal_entry_is_refused(tmp_path):
    xml = model_xml(cube_object(1, "c"), '<item objectid="1"/>')
    path = write(tmp_path, "a.3mf", threemf_bytes(xml, extra={"../../etc/evil": b"x"}))
    error = assert_mesh_error("bad_3mf", check_upload, path, "3mf", LIMIT)
    assert "'..'" in str(error) and "evil" not in str(error)


def test_3mf_component_fan_out_bomb_is_refused(tmp_path):
    levels = [cube_object(1, "leaf")]
    for level in range(2, 10):  # each level references the previous one 10 times: 12e8 faces
        refs = "".join(f'<component objectid="{level - 1}"/>' for _ in range(10))
        levels.append(f'<object id="{level}"><components>{refs}</components></object>')
    xml = model_xml("".join(levels), '<item objectid="9"/>')
    path = write(tmp_path, "a.3mf", threemf_bytes(xml))
    assert "triangles" in str(assert_mesh_error("bad_3mf", load_mesh, path, "3mf"))


def test_3mf_with_entity_declarations_is_refused(tmp_path):
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE model [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<model unit="millimeter"><resources/><build/></model>'
    )
    path = write(tmp_path, "a.3mf", threemf_bytes(laughs))
    assert "DOCTYPE" in str(assert_mesh_error("bad_3mf", load_mesh, path, "3mf"))


def test_3mf_structural_failures(tmp_path):
    no_model = io.BytesIO()
    with zipfile.ZipFile(no_model, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    path = write(tmp_path, "a.3mf", no_model.getvalue())
    assert "no model part" in str(assert_mesh_error("bad_3mf", check_upload, path, "3mf", LIMIT))
    broken_zip = write(tmp_path, "b.3mf", b"PK\x03\x04" + bytes(100))
    assert_mesh_error("bad_3mf", check_upload, broken_zip, "3mf", LIMIT)
    bad_index = model_xml(
        cube_object(1, "c").replace('v3="', 'v3="9'), '<item objectid="1"/>'
    )  # "9x" indices point past the 8 vertices
    path = write(tmp_path, "c.3mf", threemf_bytes(bad_index))
    assert_mesh_error("bad_face_index", load_mesh, path, "3mf")
    odd_unit = model_xml(cube_object(1, "c"), '<item objectid="1"/>', unit="furlong")
    path = write(tmp_path, "d.3mf", threemf_bytes(odd_unit))
    assert "furlong" in str(assert_mesh_error("bad_3mf", load_mesh, path, "3mf"))
    no_items = write(tmp_path, "e.3mf", threemf_bytes(model_xml(cube_object(1, "c"), "")))
    assert_mesh_error("no_triangles", load_mesh, no_items, "3mf")
    not_xml = write(tmp_path, "f.3mf", threemf_bytes("<model><unclosed>"))
    assert_mesh_error("bad_3mf", load_mesh, not_xml, "3mf")


@pytest.mark.corpus
def test_corpus_3mf_with_many_objects_gives_one_part_each():
    parts = load_parts(corpus_file("defect_nonmanifold_gears.3mf"), "3mf")
    assert len(parts) == 17
    assert sum(len(mesh.faces) for _, mesh in parts) == 25692


# ----------------------------------------------------------------------------- fuzzing


def _seed_files() -> list[tuple[str, bytes]]:
    box = trimesh.creation.box(extents=(5, 5, 5))
    ascii_stl = trimesh.exchange.stl.export_stl_ascii(box).encode()
    obj = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 2 3 4\nf 3 1 4\n"
    ply = trimesh.exchange.ply.export_ply(box, encoding="binary")
    xml = model_xml(cube_object(1, "c"), '<item objectid="1"/>')
    return [
        ("stl", stl_bytes(box.vertices[box.faces])),
        ("stl", ascii_stl),
        ("obj", obj),
        ("ply", ply),
        ("3mf", threemf_bytes(xml)),
    ]


SEEDS = _seed_files()


@st.composite
def mutated_files(draw):
    fmt, data = draw(st.sampled_from(SEEDS))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 200))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        else:
            chunk = draw(st.binary(min_size=1, max_size=12))
            data[at : at + len(chunk)] = chunk
    fmt = draw(st.sampled_from([fmt, *SUPPORTED_FORMATS]))
    return fmt, bytes(data)


random_files = st.tuples(st.sampled_from(SUPPORTED_FORMATS), st.binary(max_size=3000))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_files(), random_files))
def test_fuzz_reading_raises_only_mesh_errors(case):
    fmt, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload.{fmt}"
        path.write_bytes(data)
        for step in (lambda: check_upload(path, fmt, LIMIT), lambda: load_mesh(path, fmt)):
            try:
                result = step()
            except MeshError as error:
                assert error.code in MESH_ERROR_CODES and str(error)
                continue
            if result is not None:
                assert len(result.faces) > 0 and np.isfinite(result.vertices).all()
