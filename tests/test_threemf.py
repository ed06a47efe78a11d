"""3MF reading: the pattern-based fast parser against an independent ElementTree reading.

The reference below reads the same packages with ``xml.etree`` the plain way (one element per
vertex and triangle) and applies the 3MF rules itself, so the fast parser's vertices, faces,
part names and units are checked against code that shares nothing with it. Hand-built
packages cover the XML variations writers produce and the malformed or hostile inputs the
reader must refuse with a ``MeshError``.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET  # noqa: S405 - trusted test input

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocprint.mesh import threemf
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import check_upload, load_mesh, load_parts, save_mesh

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meshes"
CORPUS_3MF = [
    "fmt_multibody_chain.3mf",
    "fmt_multipletextures_97k.3mf",
    "fmt_featuretype_inch.3mf",
    "defect_nonmanifold_gears.3mf",
]
CORE = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
MATERIAL = "http://schemas.microsoft.com/3dmanufacturing/material/2015/02"
RELS_TYPE = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
UNITS = {"micron": 0.001, "millimeter": 1.0, "centimeter": 10.0, "inch": 25.4, "foot": 304.8}
UPLOAD_NAME = "Doe_Jane_1970-01-01_mandible.3mf"  # patient-like: must never appear in messages
LIMIT = 50_000_000


def corpus_file(name: str) -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/data/meshes not present (it exists in CI, not in a fresh clone)")
    return CORPUS / name


# ----------------------------------------------------------------------------- reference


def _q(tag: str) -> str:
    return f"{{{CORE}}}{tag}"


def _matrix(text: str | None) -> np.ndarray:
    matrix = np.eye(4)
    if text:
        matrix[:, :3] = np.array([float(v) for v in text.split()]).reshape(4, 3)
    return matrix


def reference_model(data: bytes) -> tuple[str, dict]:
    """Unit and {object id: (name, type, vertices, faces, components)} via plain ElementTree."""
    root = ET.fromstring(data)  # noqa: S314 - trusted test input
    objects = {}
    for obj in root.iter(_q("object")):
        mesh = obj.find(_q("mesh"))
        vertices = faces = None
        if mesh is not None:
            vertices = np.array(
                [[float(v.get(k)) for k in "xyz"] for v in mesh.iter(_q("vertex"))],
                dtype=np.float64,
            ).reshape(-1, 3)
            faces = np.array(
                [[int(t.get(k)) for k in ("v1", "v2", "v3")] for t in mesh.iter(_q("triangle"))],
                dtype=np.int64,
            ).reshape(-1, 3)
        components = [
            (c.get("objectid"), _matrix(c.get("transform"))) for c in obj.iter(_q("component"))
        ]
        objects[obj.get("id")] = (
            obj.get("name") or f"object {obj.get('id')}",
            obj.get("type", "model"),
            vertices,
            faces,
            components,
        )
    items = [
        (item.get("objectid"), _matrix(item.get("transform")))
        for build in root.iter(_q("build"))
        for item in build.iter(_q("item"))
    ]
    return root.get("unit", "millimeter"), {"objects": objects, "items": items}


def reference_parts(path: Path) -> tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Unit and (name, vertices in mm, faces) per build item, as the 3MF core spec reads."""
    with zipfile.ZipFile(path) as zf:
        rels = ET.fromstring(zf.read("_rels/.rels"))  # noqa: S314 - trusted test input
        target = next(
            r.get("Target").lstrip("/")
            for r in rels.iter()
            if r.get("Type", "").rstrip("/") == RELS_TYPE
        )
        unit, model = reference_model(zf.read(target))
    objects = model["objects"]

    def expand(object_id, matrix, vertices, faces, offset):
        _, _, v, f, components = objects[object_id]
        if v is not None and len(f):
            f = f[:, ::-1] if np.linalg.det(matrix[:3, :3]) < 0 else f
            vertices.append(v @ matrix[:3, :3] + matrix[3, :3])
            faces.append(f + offset)
            offset += len(v)
        for child, child_matrix in components:
            offset = expand(child, child_matrix @ matrix, vertices, faces, offset)
        return offset

    parts = []
    seen: dict[str, int] = {}
    for object_id, matrix in model["items"]:
        name, kind = objects[object_id][:2]
        if kind in ("support", "other"):
            continue
        vertices, faces = [], []
        expand(object_id, matrix, vertices, faces, 0)
        if faces:
            seen[name] = seen.get(name, 0) + 1
            shown = name if seen[name] == 1 else f"{name} ({seen[name]})"
            parts.append((shown, np.concatenate(vertices) * UNITS[unit], np.concatenate(faces)))
    return unit, parts


def fast_parts(path: Path) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """The fast reader's parts before validation and welding (an identity ``finish``)."""
    return threemf.read_parts(path, lambda vertices, faces: (vertices, faces))


def assert_matches_reference(path: Path) -> None:
    unit, expected = reference_parts(path)
    with threemf.open_package(path) as (zf, root_name):
        assert threemf._parse_model_part(zf, root_name).unit == unit
    got = fast_parts(path)
    assert [name for name, _ in got] == [name for name, _, _ in expected]
    for (_, (vertices, faces)), (_, ref_vertices, ref_faces) in zip(got, expected, strict=True):
        assert np.array_equal(vertices, ref_vertices)
        assert np.array_equal(faces, ref_faces)
    # End to end: validation and exact welding keep every triangle corner as it was.
    loaded = load_parts(path, "3mf")
    assert [name for name, _ in loaded] == [name for name, _, _ in expected]
    for (_, mesh), (_, ref_vertices, ref_faces) in zip(loaded, expected, strict=True):
        assert np.array_equal(np.asarray(mesh.vertices)[mesh.faces], ref_vertices[ref_faces])


# ----------------------------------------------------------------------------- builders

BOX_VERTICES = [
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 0),
    (0, 0, 1),
    (1, 0, 1),
    (1, 1, 1),
    (0, 1, 1),
]
BOX_FACES = [
    (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
    (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
]  # fmt: skip


def tag(name: str, attrs: list[tuple[str, object]], quote: str = '"', end: bool = False) -> str:
    text = " ".join(f"{key}={quote}{value}{quote}" for key, value in attrs)
    return f"<{name} {text}></{name}>" if end else f"<{name} {text}/>"


def box_object(
    object_id: int,
    name: str,
    prefix: str = "",
    offset: float = 0.25,
    vertex_tag=None,
    triangle_tag=None,
) -> str:
    vertex_tag = vertex_tag or (
        lambda p, x, y, z: tag(f"{p}vertex", [("x", x), ("y", y), ("z", z)])
    )
    triangle_tag = triangle_tag or (
        lambda p, i, a, b, c: tag(f"{p}triangle", [("v1", a), ("v2", b), ("v3", c)])
    )
    p = prefix
    vertices = "".join(vertex_tag(p, x + offset, y * 2.5, z - 0.125) for x, y, z in BOX_VERTICES)
    triangles = "".join(triangle_tag(p, i, *face) for i, face in enumerate(BOX_FACES))
    return (
        f'<{p}object id="{object_id}" name="{name}" type="model"><{p}mesh><{p}vertices>'
        f"{vertices}</{p}vertices><{p}triangles>{triangles}</{p}triangles></{p}mesh></{p}object>"
    )


def model_xml(
    objects: str,
    items: str = '<item objectid="1"/>',
    unit: str = "millimeter",
    prefix: str = "",
    head: str = '<?xml version="1.0" encoding="UTF-8"?>\n',
) -> str:
    xmlns = f'xmlns:{prefix[:-1]}="{CORE}"' if prefix else f'xmlns="{CORE}"'
    return (
        f'{head}<{prefix}model unit="{unit}" xml:lang="en-US" {xmlns} xmlns:m="{MATERIAL}">'
        f'<{prefix}metadata name="Title">test</{prefix}metadata><{prefix}resources>{objects}'
        f"</{prefix}resources><{prefix}build>{items}</{prefix}build></{prefix}model>"
    )


def package(model: str | bytes, extra: dict[str, bytes] | None = None) -> bytes:
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats'
        f'.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model" Id="r0" '
        f'Type="{RELS_TYPE}"/></Relationships>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("_rels/.rels", rels)
        zf.writestr("3D/3dmodel.model", model.encode() if isinstance(model, str) else model)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / UPLOAD_NAME
    path.write_bytes(data)
    return path


def refused(path: Path, code: str = "bad_3mf") -> str:
    """The message of the MeshError the full load raises; never echoes the upload's name."""
    with pytest.raises(MeshError) as info:
        load_parts(path, "3mf")
    message = str(info.value)
    assert info.value.code == code, message
    assert "Doe" not in message and "mandible" not in message
    return message


# ----------------------------------------------------------------------------- corpus


@pytest.mark.corpus
@pytest.mark.parametrize("name", CORPUS_3MF)
def test_corpus_3mf_matches_the_elementtree_reference(name):
    assert_matches_reference(corpus_file(name))


# ----------------------------------------------------------------------------- XML variations


def _pid_on_some(p, i, a, b, c):
    extra = [("pid", 1), ("p1", 0), ("p2", 0), ("p3", 0)] if i % 3 == 0 else []
    return tag(f"{p}triangle", [("v1", a), ("v2", b), ("v3", c), *extra])


def _ws(p, x, y, z):
    return f"<{p}vertex\n\tx = '{x}'\r\n  y=\"{y}\"   z\t=\t'{z}'   />\n"


def _quotes_vary(p, x, y, z):
    quote = "'" if x < 1 else '"'  # the canonical x="..." pattern sees only some tags
    return tag(f"{p}vertex", [("x", x), ("y", y), ("z", z)], quote=quote)


VARIANTS = {
    "plain": model_xml(box_object(1, "guide")),
    "prefixed namespace": model_xml(
        box_object(1, "guide", prefix="c:"), '<c:item objectid="1"/>', prefix="c:"
    ),
    "single quotes": model_xml(box_object(1, "guide").replace('"', "'")),
    "attributes in another order": model_xml(
        box_object(
            1,
            "guide",
            vertex_tag=lambda p, x, y, z: tag(f"{p}vertex", [("z", z), ("x", x), ("y", y)]),
            triangle_tag=lambda p, i, a, b, c: tag(
                f"{p}triangle", [("v3", c), ("v1", a), ("v2", b)]
            ),
        )
    ),
    "explicit end tags": model_xml(
        box_object(
            1,
            "guide",
            vertex_tag=lambda p, x, y, z: tag(
                f"{p}vertex", [("x", x), ("y", y), ("z", z)], end=True
            ),
            triangle_tag=lambda p, i, a, b, c: tag(
                f"{p}triangle", [("v1", a), ("v2", b), ("v3", c)], end=True
            ),
        )
    ),
    "whitespace and mixed quotes inside tags": model_xml(box_object(1, "guide", vertex_tag=_ws)),
    "quote style changing from tag to tag": model_xml(
        box_object(1, "guide", vertex_tag=_quotes_vary)
    ),
    "material attributes on some triangles": model_xml(
        '<m:colorgroup id="7"><m:color color="#FF0000"/><m:color color="#00FF00"/></m:colorgroup>'
        + box_object(1, "guide", triangle_tag=_pid_on_some)
    ),
    "comments and processing instructions between tags": model_xml(
        box_object(1, "guide")
        .replace("/><vertex", "/><!-- <vertex x='9' y='9' z='9'/> --><vertex", 3)
        .replace("/><triangle", "/><?writer note?><triangle", 2)
    ),
    "character reference in a coordinate (exact slow path)": model_xml(
        box_object(1, "guide").replace('x="1.25"', 'x="&#49;.25"', 1)
    ),
    "CDATA inside the vertex list": model_xml(
        box_object(1, "guide").replace(
            "<vertices>", "<vertices><![CDATA[<vertex x='9' y='9' z='9'/>]]>"
        )
    ),
    "inch, components, transforms and several parts": model_xml(
        box_object(1, "femur guide")
        + box_object(2, "tibia guide", offset=4.0)
        + '<object id="3" name="assembly"><components><component objectid="1" '
        'transform="1 0 0 0 1 0 0 0 1 100 0 0"/><component objectid="2" '
        'transform="-1 0 0 0 1 0 0 0 1 0 0 0"/></components></object>'
        + '<object id="4" name="support" type="support"><components><component objectid="1"/>'
        "</components></object>",
        '<item objectid="1"/><item objectid="2" transform="2 0 0 0 2 0 0 0 2 10 0 0"/>'
        '<item objectid="3"/><item objectid="1"/><item objectid="4"/>',
        unit="inch",
    ),
    "declared ISO-8859-1 with a non-ASCII name": model_xml(
        box_object(1, "Führung"), head='<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    ).encode("latin-1"),
    "UTF-16 with byte order mark": model_xml(
        box_object(1, "Führung"), head='<?xml version="1.0" encoding="UTF-16"?>\n'
    ).encode("utf-16"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_xml_variations_match_the_elementtree_reference(tmp_path, variant):
    path = write(tmp_path, package(VARIANTS[variant]))
    check_upload(path, "3mf", LIMIT)
    assert_matches_reference(path)


def test_units_are_reported_and_applied(tmp_path):
    for unit, mm in UNITS.items():
        path = write(tmp_path, package(model_xml(box_object(1, "c"), unit=unit)))
        assert reference_parts(path)[0] == unit
        assert load_mesh(path, "3mf").extents == pytest.approx((mm, 2.5 * mm, mm))


def test_vertex_and_triangle_tags_never_reach_the_xml_parser():
    """The speed rests on this: only a few sample tags are left for expat."""
    rng = np.random.default_rng(3)
    vertices = rng.random((3000, 3))
    faces = rng.integers(0, 3000, (6000, 3))
    zf = zipfile.ZipFile(io.BytesIO(threemf.package_bytes(vertices, faces)))
    data = zf.read("3D/3dmodel.model")
    skeleton, blocks = threemf._skeleton(data)
    assert [block.fast for block in blocks] == [True]
    assert skeleton.count(b"<vertex ") <= 2 and skeleton.count(b"<triangle ") <= 2
    assert len(skeleton) < 1000 < len(data) // 100
    got_vertices, got_faces = blocks[0].arrays()
    assert np.array_equal(got_vertices, vertices) and np.array_equal(got_faces, faces)


def test_saved_3mf_reads_back_exactly(tmp_path):
    mesh = load_mesh(write(tmp_path, package(VARIANTS["plain"])), "3mf")
    out = tmp_path / "out.3mf"
    save_mesh(mesh, out)
    again = load_mesh(out, "3mf")
    assert np.array_equal(again.vertices, mesh.vertices) and np.array_equal(again.faces, mesh.faces)


# ----------------------------------------------------------------------------- refusals


def test_missing_v3_is_refused(tmp_path):
    xml = model_xml(box_object(1, "c")).replace(' v3="1"/>', "/>", 1)
    assert "missing" in refused(write(tmp_path, package(xml)))


def test_non_numeric_coordinate_is_refused(tmp_path):
    xml = model_xml(box_object(1, "c")).replace('y="2.5"', 'y="2,5"', 1)
    assert "not a number" in refused(write(tmp_path, package(xml)))


@pytest.mark.parametrize("index", ["8", "-1", "99999999999"])
def test_triangle_index_out_of_range_or_negative_is_refused(tmp_path, index):
    xml = model_xml(box_object(1, "c")).replace('v2="2"', f'v2="{index}"', 1)
    assert "do not exist" in refused(write(tmp_path, package(xml)), code="bad_face_index")


def test_object_without_mesh(tmp_path):
    bare = '<object id="2" name="bare" type="model"/>'
    path = write(tmp_path, package(model_xml(bare, '<item objectid="2"/>')))
    refused(path, code="no_triangles")
    path = write(
        tmp_path,
        package(model_xml(box_object(1, "c") + bare, '<item objectid="2"/><item objectid="1"/>')),
    )
    assert [name for name, _ in load_parts(path, "3mf")] == ["c"]


def test_doctype_and_entities_are_refused_before_parsing(tmp_path):
    laughs = model_xml(box_object(1, "&a;")).replace(
        "\n", '\n<!DOCTYPE model [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;">]>\n', 1
    )
    assert "DOCTYPE" in refused(write(tmp_path, package(laughs)))
    hidden = laughs.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert "DOCTYPE" in refused(write(tmp_path, package(hidden)))


def test_path_traversal_entry_is_refused(tmp_path):
    data = package(model_xml(box_object(1, "c")), extra={"../../etc/cron.d/evil": b"x"})
    path = write(tmp_path, data)
    with pytest.raises(MeshError) as info:
        check_upload(path, "3mf", LIMIT)
    assert info.value.code == "bad_3mf" and "evil" not in str(info.value)
    assert "'..'" in refused(path)


def test_zip_bomb_is_refused_from_the_directory(tmp_path):
    data = package(model_xml(box_object(1, "c")), extra={"Metadata/pad.bin": bytes(60_000_000)})
    assert len(data) < 200_000
    assert "zip bomb" in refused(write(tmp_path, data))


MALFORMED = {
    "tag inside a coordinate value": lambda x: x.replace('z="-0.125"', 'z="<foo/>-0.125"', 1),
    "tag inside an end tag": lambda x: x.replace("</model>", "</mod<item objectid='1'/>el>"),
    "undeclared prefix on a vertex": lambda x: x.replace("<vertex ", "<q:vertex ", 1),
    "duplicate attribute": lambda x: x.replace('x="0.25"', 'x="0.25" x="7"', 1),
    "unterminated comment": lambda x: x.replace("<triangles>", "<triangles><!-- ", 1),
    "mesh not closed": lambda x: x[: x.index("</triangles>")],
    "mesh inside a mesh": lambda x: x.replace("<vertices>", "<vertices><mesh/>", 1),
    "unknown declared encoding": lambda x: x.replace("UTF-8", "UTF-W", 1),
    "NUL byte": lambda x: x.replace("<triangles>", "<triangles>\x00", 1),
    "vertex tag cut off": lambda x: x.replace('y="0.0" z="-0.125"/>', 'y="0.0', 1),
    "text where an attribute belongs": lambda x: x.replace('<vertex x="0.25"', "<vertex x", 1),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_xml_is_a_bad_3mf(tmp_path, case):
    xml = MALFORMED[case](model_xml(box_object(1, "c")))
    refused(write(tmp_path, package(xml)))


# ----------------------------------------------------------------------------- fuzzing

SEED_XML = model_xml(
    box_object(1, "a", triangle_tag=_pid_on_some) + box_object(2, "b", prefix="", offset=3.0),
    '<item objectid="1"/><item objectid="2" transform="1 0 0 0 1 0 0 0 1 5 0 0"/>',
).encode()
SEED_PACKAGE = package(SEED_XML)
TOKENS = [
    b"<",
    b">",
    b"/>",
    b'"',
    b"'",
    b"&#49;",
    b"<!-- c -->",
    b"<![CDATA[x]]>",
    b"<?pi?>",
    b"<vertex x='1' y='2' z='3'/>",
    b"</vertex>",
    b"<mesh>",
    b"</mesh>",
    b"q:",
    b' x="1"',
    b"\xff",
    b"\x00",
]


@st.composite
def mutated(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "token", "copy"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 80))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        else:
            start = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[start : start + draw(st.integers(1, 120))]
    return bytes(data)


def _load_or_mesh_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / UPLOAD_NAME
        path.write_bytes(data)
        try:
            check_upload(path, "3mf", LIMIT)
            parts = load_parts(path, "3mf")
        except MeshError as error:
            assert "Doe" not in str(error)
            return
    for _, mesh in parts:
        assert np.isfinite(mesh.vertices).all()
        assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)


@settings(max_examples=100, deadline=None)
@given(mutated(SEED_PACKAGE))
def test_mutated_package_bytes_load_or_raise_mesh_error(data):
    _load_or_mesh_error(data)


@settings(max_examples=100, deadline=None)
@given(mutated(SEED_XML))
def test_mutated_model_xml_loads_or_raises_mesh_error(data):
    _load_or_mesh_error(package(data))
