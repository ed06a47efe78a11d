"""A corpus of hostile uploads, made at run time: each kind is a file name and its bytes, built
to break a parser, exhaust memory or disk, or smuggle something past the checks.

Used by tests/test_hostile_uploads.py, which sends every one through the live API."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable

import numpy as np

CUBE_V = [
    (0, 0, 0),
    (10, 0, 0),
    (10, 10, 0),
    (0, 10, 0),
    (0, 0, 10),
    (10, 0, 10),
    (10, 10, 10),
    (0, 10, 10),
]
CUBE_F = [
    (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
    (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
]  # fmt: skip


def _binary_stl(tris: np.ndarray, count: int | None = None) -> bytes:
    records = np.zeros(len(tris), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    records["v"] = tris
    n = len(tris) if count is None else count
    return b"hostile".ljust(80, b" ") + struct.pack("<I", n) + records.tobytes()


def _cube_tris() -> np.ndarray:
    v = np.array(CUBE_V, dtype=np.float32)
    return v[np.array(CUBE_F)]


def _ascii_stl(coord: str = "1") -> bytes:
    facets = []
    for tri in _cube_tris():
        rows = "\n".join(f"      vertex {x:g} {y:g} {z:g}" for x, y, z in tri)
        facets.append(f"  facet normal 0 0 0\n    outer loop\n{rows}\n    endloop\n  endfacet")
    facets[-1] = facets[-1].replace("vertex 0 10 10", f"vertex {coord} 10 10", 1)
    return ("solid hostile\n" + "\n".join(facets) + "\nendsolid hostile\n").encode()


def _obj(faces: str, vertices: str | None = None) -> bytes:
    v = vertices or "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V)
    return (v + faces).encode()


def _ply(header_vertices: int, header_faces: int, body_vertices: int, face_line: str) -> bytes:
    head = (
        "ply\nformat ascii 1.0\n"
        f"element vertex {header_vertices}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {header_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = "".join(f"{x} {y} {z}\n" for x, y, z in CUBE_V[:body_vertices])
    return (head + body + face_line).encode()


MODEL_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="model" ContentType="application/'
    'vnd.ms-package.3dmanufacturing-3dmodel+xml"/><Default Extension="rels" ContentType='
    '"application/vnd.openxmlformats-package.relationships+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
    'org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>'
)


def _model(body: str, prolog: str = "", unit: str = "millimeter") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<model unit="{unit}" xmlns="{MODEL_NS}">'
        f"{body}</model>"
    )


def _cube_object(obj_id: int = 1) -> str:
    verts = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in CUBE_V)
    tris = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in CUBE_F)
    return (
        f'<object id="{obj_id}" type="model"><mesh><vertices>{verts}</vertices>'
        f"<triangles>{tris}</triangles></mesh></object>"
    )


def _threemf(model: str | bytes, extra: dict[str, bytes] | None = None, compress=True) -> bytes:
    out = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", mode) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", RELS)
        zf.writestr("3D/3dmodel.model", model if isinstance(model, bytes) else model.encode())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out.getvalue()


def _cube_3mf(**kw) -> bytes:
    return _threemf(
        _model(f'<resources>{_cube_object()}</resources><build><item objectid="1"/></build>', **kw)
    )


def _zip_bomb() -> bytes:
    """3MF whose model part inflates from about 1 MB to 1 GiB of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", RELS)
        with zf.open("3D/3dmodel.model", "w", force_zip64=True) as fh:
            block = b"\x00" * (1 << 20)
            for _ in range(1024):
                fh.write(block)
    return out.getvalue()


def _nested_zip() -> bytes:
    inner = _cube_3mf()
    return _threemf(_model("<resources/>"), extra={"3D/inner.3mf": inner})


def _billion_laughs() -> bytes:
    lol = (
        '<!DOCTYPE model [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
        + "]>"
    )
    return _threemf(
        _model(
            '<resources><object id="1"><metadata>&j;</metadata></object></resources>', prolog=lol
        )
    )


def _external_entity() -> bytes:
    xxe = '<!DOCTYPE model [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    return _threemf(_model('<resources><object id="1" name="&x;"/></resources>', prolog=xxe))


def _deep_xml() -> bytes:
    depth = 200_000
    return _threemf(_model("<metadata>" * depth + "</metadata>" * depth))


def _component_cycle() -> bytes:
    body = (
        '<resources><object id="1" type="model"><components><component objectid="2"/>'
        '</components></object><object id="2" type="model"><components>'
        '<component objectid="1"/></components></object></resources>'
        '<build><item objectid="1"/></build>'
    )
    return _threemf(_model(body))


def _traversal_entries() -> bytes:
    return _threemf(
        _model(f'<resources>{_cube_object()}</resources><build><item objectid="1"/></build>'),
        extra={"../../../../tmp/pocprint-pwned.txt": b"owned", "/etc/cron.d/evil": b"* * * * *"},
    )


def _many_entries() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        zf.writestr("_rels/.rels", RELS)
        for i in range(20_000):
            zf.writestr(f"Metadata/{i}.txt", b"")
    return out.getvalue()


def _huge_triangle_claim_3mf() -> bytes:
    # an index far past the vertex list, and a vertex with an exponent that overflows
    verts = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in CUBE_V)
    body = (
        f'<resources><object id="1" type="model"><mesh><vertices>{verts}'
        '<vertex x="1e999" y="0" z="0"/></vertices><triangles>'
        '<triangle v1="0" v2="1" v3="4294967295"/></triangles></mesh></object></resources>'
        '<build><item objectid="1"/></build>'
    )
    return _threemf(_model(body))


def kinds(max_upload_bytes: int) -> dict[str, Callable[[], tuple[str, bytes]]]:
    """Every hostile kind: name -> (file name sent, bytes)."""
    tris = _cube_tris()
    nan_tris = tris.copy()
    nan_tris[3, 1, 2] = np.nan
    inf_tris = tris.copy()
    inf_tris[5, 0, 0] = np.inf
    return {
        "empty file": lambda: ("a.stl", b""),
        "over the size limit": lambda: ("big.stl", b"\0" * (max_upload_bytes + 1)),
        "binary STL with NaN coordinates": lambda: ("nan.stl", _binary_stl(nan_tris)),
        "binary STL with infinite coordinates": lambda: ("inf.stl", _binary_stl(inf_tris)),
        "binary STL claiming 4 billion triangles": lambda: (
            "huge.stl",
            _binary_stl(tris, 0xFFFFFFFF),
        ),
        "binary STL cut off mid-record": lambda: ("cut.stl", _binary_stl(tris)[:-17]),
        "binary STL header only": lambda: ("hdr.stl", _binary_stl(tris[:0])),
        "ASCII STL with nan vertex": lambda: ("nan-ascii.stl", _ascii_stl("nan")),
        "ASCII STL with inf vertex": lambda: ("inf-ascii.stl", _ascii_stl("inf")),
        "ASCII STL with 1e999 vertex": lambda: ("overflow.stl", _ascii_stl("1e999")),
        "ASCII STL without endsolid": lambda: (
            "open.stl",
            _ascii_stl().replace(b"endsolid hostile\n", b""),
        ),
        "ASCII STL, facet with four vertices": lambda: (
            "quad.stl",
            _ascii_stl().replace(b"    endloop", b"      vertex 1 2 3\n    endloop", 1),
        ),
        "OBJ with negative index past the start": lambda: ("neg.obj", _obj("f -1 -2 -99\n")),
        "OBJ with index zero": lambda: ("zero.obj", _obj("f 0 1 2\n")),
        "OBJ with index far past the end": lambda: ("far.obj", _obj("f 1 2 999999999999\n")),
        "OBJ with NaN vertex": lambda: (
            "nan.obj",
            _obj("f 1 2 3\n", "v nan 0 0\nv 1 0 0\nv 0 1 0\n"),
        ),
        "OBJ with text where numbers go": lambda: (
            "text.obj",
            _obj("f 1 2 3\n", "v x y z\nv 1 0 0\nv 0 1 0\n"),
        ),
        "PLY declaring more vertices than it holds": lambda: (
            "short.ply",
            _ply(8, 1, 3, "3 0 1 2\n"),
        ),
        "PLY declaring a trillion vertices": lambda: (
            "trillion.ply",
            _ply(10**12, 1, 8, "3 0 1 2\n"),
        ),
        "PLY with negative face index": lambda: ("neg.ply", _ply(8, 1, 8, "3 0 -5 2\n")),
        "PLY face index past the vertices": lambda: (
            "past.ply",
            _ply(8, 1, 8, "3 0 1 4000000000\n"),
        ),
        "PLY face list count larger than its indices": lambda: (
            "list.ply",
            _ply(8, 1, 8, "255 0 1 2\n"),
        ),
        "PLY with negative element count": lambda: ("negcount.ply", _ply(-3, 1, 8, "3 0 1 2\n")),
        "3MF zip bomb (1 GiB of zeros)": lambda: ("bomb.3mf", _zip_bomb()),
        "3MF with billion-laughs entities": lambda: ("laughs.3mf", _billion_laughs()),
        "3MF with an external entity (XXE)": lambda: ("xxe.3mf", _external_entity()),
        "3MF with 200,000 nested XML elements": lambda: ("deep.3mf", _deep_xml()),
        "3MF with a component cycle": lambda: ("cycle.3mf", _component_cycle()),
        "3MF with path-traversal entry names": lambda: ("traversal.3mf", _traversal_entries()),
        "3MF with 20,000 entries": lambda: ("entries.3mf", _many_entries()),
        "3MF with a nested archive and no mesh": lambda: ("nested.3mf", _nested_zip()),
        "3MF with overflowing numbers and index": lambda: (
            "overflow.3mf",
            _huge_triangle_claim_3mf(),
        ),
        "3MF in an unknown unit": lambda: ("unit.3mf", _cube_3mf(unit="lightyear")),
        "3MF that is not a zip": lambda: ("notzip.3mf", b"PK\x03\x04 this is not really a zip"),
        "PNG named .stl": lambda: ("photo.stl", b"\x89PNG\r\n\x1a\n" + b"\0" * 200),
        "program named .obj": lambda: ("run.obj", b"\x7fELF" + b"\0" * 200),
        "traversal file name": lambda: ("../../../../etc/passwd", _binary_stl(tris)),
        "traversal name with a mesh extension and bad content": lambda: (
            "..\\..\\windows\\evil.stl",
            b"solid x\nendsolid x\n",
        ),
        "file name with a newline and NUL": lambda: ("x\n\x00.stl", b"solid x\nendsolid x\n"),
        "HTML named .ply": lambda: ("page.ply", b"<!doctype html><script>alert(1)</script>"),
    }
