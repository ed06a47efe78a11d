"""Reading uploaded mesh files: a fast structural check for the web request, a strict full load.

``check_upload`` only looks at sizes, headers and a few kilobytes (plus one vectorised pass over
binary STL coordinates), so a technician gets an immediate, specific answer for the common
failures (empty, cut-off, wrong file). ``load_mesh``/``load_parts`` run in the worker, parse
everything and refuse anything that is not a usable triangle mesh. Every rejection is a
``MeshError``; parsers of third-party libraries are wrapped so no other exception escapes.

Over 400 lines for a reason: one strict reader per format (STL, OBJ, PLY, 3MF entry), each
with its own structural checks; split per format when a fifth format comes.
"""

from __future__ import annotations

import itertools
import mmap
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from pocprint.mesh._text import mb as _mb
from pocprint.mesh._text import printable as _printable
from pocprint.mesh.errors import MeshError

# The 3MF limits live with the 3MF reader; re-exported here, where they were first defined.
from pocprint.mesh.threemf import MAX_3MF_COMPONENT_DEPTH as MAX_3MF_COMPONENT_DEPTH
from pocprint.mesh.threemf import MAX_3MF_COMPRESSION_RATIO as MAX_3MF_COMPRESSION_RATIO
from pocprint.mesh.threemf import MAX_3MF_ENTRIES as MAX_3MF_ENTRIES
from pocprint.mesh.threemf import MAX_3MF_TRIANGLES as MAX_3MF_TRIANGLES
from pocprint.mesh.threemf import MAX_3MF_UNCOMPRESSED_BYTES as MAX_3MF_UNCOMPRESSED_BYTES
from pocprint.mesh.threemf import THREEMF_UNITS_TO_MM as THREEMF_UNITS_TO_MM
from pocprint.mesh.threemf import open_package, package_bytes, read_parts
from pocprint.mesh.topology import degenerate_mask, face_areas, weld_exact

SUPPORTED_FORMATS = ("stl", "obj", "ply", "3mf")

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
_HEAD_BYTES = 4096
_OTHER_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0", "a Microsoft Office document"),
    (b"\x7fELF", "a program"),
    (b"{\\rtf", "an RTF document"),
)


def detect_format(filename: str) -> str:
    """Format from the file name's extension, so the right parser and checks are chosen."""
    base = os.path.basename(str(filename).replace("\\", "/")).strip()
    suffix = base.rsplit(".", 1)[1].lower() if "." in base.strip(".") else ""
    if suffix in SUPPORTED_FORMATS:
        return suffix
    # The name itself is never echoed: file names often carry patient identity.
    shown = f"a '.{_printable(suffix, 10)}' file" if suffix else "a file without an extension"
    raise MeshError(
        "unsupported_format",
        f"This is {shown}; accepted mesh formats are STL, OBJ, PLY and 3MF. Export the "
        "model from the segmentation or CAD software in one of these formats.",
    )


def check_upload(path: Path, fmt: str, max_bytes: int) -> None:
    """Cheap structural checks run inside the upload request, before the file is stored.

    No full parse: headers, sizes and a few kilobytes are read (and, for binary STL, one numpy
    pass over the coordinates), so this stays fast for 50 MB files.
    """
    path = Path(path)
    fmt = _known_format(fmt)
    size = path.stat().st_size
    if size == 0:
        raise MeshError(
            "empty", "The file is empty (0 bytes). The export or the upload failed; export again."
        )
    if size > max_bytes:
        raise MeshError(
            "too_large",
            f"The file is {_mb(size)}; the upload limit is {_mb(max_bytes)}. Reduce the "
            "triangle count (decimate) in the design software, or ask an administrator to "
            "raise the limit.",
        )
    _check_structure(path, fmt, size)


def load_mesh(path: Path, fmt: str) -> trimesh.Trimesh:
    """Strict full load as one mesh (all 3MF parts together), exactly welded.

    Coordinates are in file units for STL/OBJ/PLY (they carry none) and in millimetres for 3MF,
    whose ``unit`` attribute is honoured.
    """
    parts = load_parts(path, fmt)
    if len(parts) == 1:
        return parts[0][1]
    vertices = []
    faces = []
    offset = 0
    for _, part in parts:
        vertices.append(np.asarray(part.vertices))
        faces.append(np.asarray(part.faces) + offset)
        offset += len(part.vertices)
    return _finish(np.concatenate(vertices), np.concatenate(faces))


def load_parts(path: Path, fmt: str) -> list[tuple[str, trimesh.Trimesh]]:
    """Strict full load as (name, mesh) parts: one per 3MF build item, one for other formats."""
    path = Path(path)
    fmt = _known_format(fmt)
    size = path.stat().st_size
    if size == 0:
        raise MeshError(
            "empty", "The file is empty (0 bytes). The export or the upload failed; export again."
        )
    kind = _check_structure(path, fmt, size)
    if fmt == "3mf":
        return _load_3mf(path)
    if kind == "binary_stl":
        vertices, faces = _parse_binary_stl(path)
    elif kind == "ascii_stl":
        vertices, faces = _parse_ascii_stl(path.read_bytes())
    elif fmt == "obj":
        vertices, faces = _parse_obj(path.read_bytes())
    else:
        vertices, faces = _parse_ply(path)
    return [(path.stem, _finish(vertices, faces))]


def save_mesh(mesh: trimesh.Trimesh, path: Path) -> None:
    """Write a mesh (binary STL for .stl; also .ply, .obj, .3mf in mm) atomically.

    The file appears complete or not at all (temporary file in the same directory, fsync,
    ``os.replace``), so a crashed worker never leaves a half-written model for the slicer.
    """
    path = Path(path)
    fmt = detect_format(path.name)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if fmt == "stl":
        data = binary_stl_bytes(vertices, faces)
    elif fmt == "3mf":
        data = package_bytes(vertices, faces)
    else:
        plain = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
        exported = plain.export(file_type=fmt)
        data = exported.encode() if isinstance(exported, str) else exported
    write_atomic(path, data)


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader never
    sees a half-written mesh, and a crash leaves the old file (or none)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- shared helpers


def _known_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in SUPPORTED_FORMATS:
        raise MeshError(
            "unsupported_format",
            f"'{fmt}' is not a supported mesh format; accepted are STL, OBJ, PLY and 3MF.",
        )
    return fmt


def _read_head(path: Path, n: int = _HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _read_tail(path: Path, size: int, n: int = _HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(max(0, size - n))
        return fh.read(n)


def _is_text(chunk: bytes) -> bool:
    """True for bytes that look like plain text (no NUL, almost only printable characters)."""
    if not chunk or b"\x00" in chunk:
        return False
    printable = sum(1 for b in chunk if b >= 32 or b in (9, 10, 13))
    return printable >= 0.95 * len(chunk)


def _reject_other_formats(head: bytes, expected: str) -> None:
    """Name what a misnamed upload really is (a PNG renamed .stl is a common mistake)."""
    for signature, what in _OTHER_SIGNATURES:
        if head.startswith(signature):
            raise MeshError(
                "not_a_mesh",
                f"This file is {what}, not a {expected} mesh. Upload the exported model file.",
            )
    if head[128:132] == b"DICM":
        raise MeshError(
            "not_a_mesh",
            f"This file is a DICOM image, not a {expected} mesh. Segment the scan and export "
            "the model as STL, OBJ, PLY or 3MF.",
        )
    lowered = head[:64].lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml")):
        raise MeshError("not_a_mesh", f"This file is an HTML/XML document, not a {expected} mesh.")


def _check_structure(path: Path, fmt: str, size: int) -> str:
    """Format-specific structural checks; returns the detected kind of file."""
    if fmt == "stl":
        return _check_stl(path, size)
    if fmt == "obj":
        _check_obj(path, size)
        return "obj"
    if fmt == "ply":
        _ply_header(path, size)
        return "ply"
    with _open_3mf(path) as (_zf, _model_part):
        return "3mf"


def _finish(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    """Validate parsed arrays strictly, then weld exact duplicate vertices."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise MeshError(
            "no_triangles",
            "The file contains no triangles (perhaps only points or lines); a printable model "
            "needs a closed triangle surface.",
        )
    if len(vertices) == 0 or faces.min() < 0 or faces.max() >= len(vertices):
        bad = int(((faces < 0) | (faces >= len(vertices))).any(axis=1).sum())
        raise MeshError(
            "bad_face_index",
            f"{bad} triangle(s) refer to vertices that do not exist (the file defines "
            f"{len(vertices)} vertices). The file is corrupt or was cut off; export it again.",
        )
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        raise MeshError(
            "nan_coordinates",
            f"{int((~finite).sum())} vertex coordinate(s) are NaN or infinite, so the shape "
            "is undefined. The exporting software produced an invalid file; export again.",
        )
    vertices, faces = weld_exact(vertices, faces)
    if degenerate_mask(vertices, faces, face_areas(vertices, faces)).all():
        raise MeshError(
            "all_degenerate",
            f"All {len(faces)} triangles have zero area (their corners coincide or lie on a "
            "line), so there is no surface to print.",
        )
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)


# ----------------------------------------------------------------------------- STL


def _looks_like_ascii_stl(head: bytes) -> bool:
    low = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return (
        low.startswith(b"solid")
        and re.search(rb"facet\s+normal", low) is not None
        and b"vertex" in low
        and b"\x00" not in low
    )


def _check_stl(path: Path, size: int) -> str:
    head = _read_head(path)
    _reject_other_formats(head, "STL")
    count = int.from_bytes(head[80:84], "little") if size >= 84 else -1
    # A binary STL's 80-byte header may itself start with "solid", so the size rule decides.
    if count > 0 and size == 84 + 50 * count and not _looks_like_ascii_stl(head):
        _check_binary_stl_coordinates(path, count)
        return "binary_stl"
    low = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if low.startswith(b"solid") and _is_text(head):
        if _looks_like_ascii_stl(head):
            tail = _read_tail(path, size).lower()
            if b"endsolid" not in tail:
                raise MeshError(
                    "truncated",
                    "The ASCII STL file ends without its closing 'endsolid' line: it was cut "
                    "off during export or upload. Upload the complete file.",
                )
            return "ascii_stl"
        if b"facet" not in low and b"endsolid" in low:
            raise MeshError(
                "no_triangles",
                "The ASCII STL file contains no triangles ('solid' ... 'endsolid' with nothing "
                "between). The export selected nothing; export the model again.",
            )
        raise MeshError(
            "not_a_mesh",
            "The file starts with 'solid' but has no 'facet normal' / 'vertex' lines, so it "
            "is not an STL mesh.",
        )
    if _is_text(head):
        raise MeshError(
            "not_a_mesh",
            "This is a text file but not an STL: an ASCII STL starts with 'solid' followed by "
            "'facet normal' and 'vertex' lines. Upload the exported model file.",
        )
    raise _binary_stl_size_error(size, count)


def _binary_stl_size_error(size: int, count: int) -> MeshError:
    """The specific error for a binary STL whose size does not match 84 + 50 * count."""
    if size < 84:
        return MeshError(
            "truncated",
            f"The binary STL file is only {size} bytes; even its header needs 84. The file was "
            "cut off; upload it again.",
        )
    complete, partial = divmod(size - 84, 50)
    if count == 0:
        if size == 84:
            return MeshError(
                "no_triangles",
                "The STL file contains no triangles (its header declares 0). The export "
                "selected nothing; export the model again.",
            )
        return MeshError(
            "count_mismatch",
            f"The STL header declares 0 triangles but the file holds data for {complete}. The "
            "exporter wrote a wrong header; export the model again.",
        )
    expected = 84 + 50 * count
    if size < expected and partial:
        return MeshError(
            "truncated",
            f"The binary STL file is cut off: its header declares {count} triangles "
            f"({expected} bytes) but only {size} bytes arrived ({complete} complete "
            "triangles). Upload the complete file.",
        )
    return MeshError(
        "count_mismatch",
        f"The binary STL header declares {count} triangles but the file holds "
        f"{complete} triangle records{' plus stray bytes' if partial else ''}. The file is "
        "damaged or the exporter wrote a wrong count; export the model again.",
    )


def _check_binary_stl_coordinates(path: Path, count: int) -> None:
    """One vectorised pass over the triangle records (memory-mapped, no copy)."""
    records = np.memmap(path, dtype=_STL_RECORD, mode="r", offset=84, shape=(count,))
    try:
        finite = np.isfinite(records["vertices"]).reshape(count, 9).all(axis=1)
        bad = int(count - np.count_nonzero(finite))
    finally:
        del records
    if bad:
        raise MeshError(
            "nan_coordinates",
            f"{bad} of {count} triangles have NaN or infinite coordinates, so the shape is "
            "undefined. The exporting software produced an invalid file; export again.",
        )


def _parse_binary_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    records = np.fromfile(path, dtype=_STL_RECORD, offset=84)
    vertices = records["vertices"].reshape(-1, 3).astype(np.float64)
    return vertices, np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)


def _parse_ascii_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    loops = len(re.findall(rb"\bouter\s+loop\b", data, re.IGNORECASE))
    ends = len(re.findall(rb"\bendloop\b", data, re.IGNORECASE))
    coords = re.findall(rb"\bvertex\s+(\S+)\s+(\S+)\s+(\S+)", data, re.IGNORECASE)
    if loops != ends or len(coords) != 3 * loops:
        raise MeshError(
            "not_a_mesh",
            f"The ASCII STL is malformed: {loops} facets ('outer loop') with {ends} 'endloop' "
            f"and {len(coords)} vertex lines (each facet needs exactly 3).",
        )
    try:
        vertices = np.array(coords, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise MeshError(
            "not_a_mesh", "The ASCII STL has a vertex coordinate that is not a number."
        ) from exc
    return vertices, np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)


def binary_stl_bytes(
    vertices: np.ndarray, faces: np.ndarray, header: bytes = b"pocprint binary STL"
) -> bytes:
    """Binary STL with triangles in face order (face i is STL triangle i)."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records = np.zeros(len(faces), dtype=_STL_RECORD)
    records["normal"] = normals
    records["vertices"] = tri
    return header.ljust(80, b" ")[:80] + np.uint32(len(faces)).tobytes() + records.tobytes()


# ----------------------------------------------------------------------------- OBJ


def _check_obj(path: Path, size: int) -> None:
    head = _read_head(path, 65536)
    _reject_other_formats(head, "OBJ")
    if b"\x00" in head or not _is_text(head[:4096]):
        raise MeshError("not_a_mesh", "This file is not a text file, so it cannot be an OBJ mesh.")
    if re.search(rb"^[ \t]*v[ \t]", head, re.MULTILINE) is None:
        raise MeshError(
            "not_a_mesh",
            "No vertex ('v x y z') lines at the start of the file, so it is not an OBJ mesh.",
        )
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        # Faces usually follow the vertices, so searching from the end is fast; the regex
        # pass (indented face lines) only runs when that finds nothing.
        has_face = (
            mm[:2] in (b"f ", b"f\t")
            or any(mm.rfind(marker) >= 0 for marker in (b"\nf ", b"\nf\t", b"\rf "))
            or re.search(rb"^[ \t]*f[ \t]", mm, re.MULTILINE) is not None
        )
    if not has_face:
        raise MeshError(
            "no_triangles",
            "The OBJ file has vertices but no face ('f') lines: it is a point cloud or "
            "wireframe, not a surface. Export the model with faces.",
        )


def _parse_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if b"\x00" in data:
        raise MeshError("not_a_mesh", "The OBJ file contains binary data; it is damaged.")
    data = data.replace(b"\\\r\n", b" ").replace(b"\\\n", b" ")
    v_lines: list[bytes] = []
    f_lines: list[bytes] = []
    f_base: list[int] = []  # vertices defined before each face (for negative indices)
    for raw in data.splitlines():
        line = raw.strip()
        head = line[:2]
        if head in (b"v ", b"v\t"):
            v_lines.append(line[2:])
        elif head in (b"f ", b"f\t"):
            f_lines.append(line[2:])
            f_base.append(len(v_lines))
    vertices = _obj_vertices(v_lines)
    if not f_lines:
        raise MeshError("no_triangles", "The OBJ file has no face ('f') lines.")
    rows = [row.split() for row in re.sub(rb"/\S*", b"", b"\n".join(f_lines)).split(b"\n")]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if (counts < 3).any():
        first = int(np.argmax(counts < 3)) + 1
        raise MeshError(
            "not_a_mesh", f"OBJ face number {first} has fewer than 3 vertices; the file is damaged."
        )
    try:
        flat = np.array(list(itertools.chain.from_iterable(rows)), dtype=np.int64)
    except (ValueError, OverflowError) as exc:
        raise MeshError(
            "not_a_mesh", "An OBJ face line holds something that is not a vertex number."
        ) from exc
    base = np.repeat(np.asarray(f_base, dtype=np.int64), counts)
    if (flat == 0).any():
        raise MeshError(
            "bad_face_index",
            "An OBJ face refers to vertex 0, which does not exist (OBJ counts from 1). The "
            "file is corrupt; export it again.",
        )
    index = np.where(flat > 0, flat - 1, base + flat)
    bad = (index < 0) | (index >= len(vertices))
    if bad.any():
        face_of = np.repeat(np.arange(len(rows)), counts)
        raise MeshError(
            "bad_face_index",
            f"{len(np.unique(face_of[bad]))} OBJ face(s) refer to vertices that do not exist "
            f"(the file defines {len(vertices)} vertices; first bad reference: "
            f"{int(flat[bad][0])}). The file is corrupt or was cut off; export it again.",
        )
    # Fan-triangulate polygons: (v0, vi, vi+1) for i = 1 .. n-2.
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    tri_per_face = counts - 2
    face_of_tri = np.repeat(np.arange(len(rows)), tri_per_face)
    first_tri = np.concatenate(([0], np.cumsum(tri_per_face)[:-1]))
    local = np.arange(int(tri_per_face.sum())) - first_tri[face_of_tri] + 1
    s = starts[face_of_tri]
    faces = np.stack([index[s], index[s + local], index[s + local + 1]], axis=1)
    return vertices, faces


def _obj_vertices(v_lines: list[bytes]) -> np.ndarray:
    if not v_lines:
        return np.zeros((0, 3), dtype=np.float64)
    tokens = b" ".join(v_lines).split()
    if len(tokens) == 3 * len(v_lines):
        rows: list = tokens  # fast path: exactly x y z on every line
    else:  # "v x y z w" or "v x y z r g b": keep x y z
        rows = [line.split()[:3] for line in v_lines]
        if any(len(row) < 3 for row in rows):
            raise MeshError("not_a_mesh", "An OBJ vertex line has fewer than 3 coordinates.")
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise MeshError(
            "not_a_mesh", "An OBJ vertex line holds a coordinate that is not a number."
        ) from exc


# ----------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2,
    "uint16": 2, "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4,
    "double": 8, "float64": 8,
}  # fmt: skip


@dataclass
class _PlyElement:
    name: str
    count: int
    fixed_bytes: int = 0
    lists: list[tuple[str, int, int]] = field(default_factory=list)  # (name, len, item)
    props: list[str] = field(default_factory=list)


def _ply_header(path: Path, size: int) -> tuple[str, list[_PlyElement]]:
    """Parse and sanity-check a PLY header; refuses bodies too small for the declared counts.

    Checking counts against the file size first keeps a forged header from making the full
    parser allocate gigabytes.
    """
    head = _read_head(path, 65536)
    _reject_other_formats(head, "PLY")
    if not re.match(rb"ply\r?\n", head):
        raise MeshError("not_a_mesh", "The file does not start with 'ply', so it is not a PLY.")
    end = re.search(rb"end_header\r?\n", head)
    if end is None:
        raise MeshError(
            "not_a_mesh", "The PLY header has no 'end_header' line; the file is damaged."
        )
    try:
        lines = head[: end.start()].decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise MeshError("not_a_mesh", "The PLY header is not plain text; damaged file.") from exc
    fmt = ""
    elements: list[_PlyElement] = []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        bad = MeshError("not_a_mesh", f"The PLY header line '{line[:60]}' is not valid.")
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_PlyElement(words[1], int(words[2])))
        elif words[0] == "property" and elements:
            if len(words) == 5 and words[1] == "list":
                if words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                    raise bad
                elements[-1].lists.append((words[4], _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].fixed_bytes += _PLY_TYPES[words[1]]
                elements[-1].props.append(words[2])
            else:
                raise bad
        else:
            raise bad
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshError("not_a_mesh", f"The PLY format '{fmt}' is not a known PLY encoding.")
    by_name = {e.name: e for e in elements}
    vertex = by_name.get("vertex")
    face = by_name.get("face")
    if vertex is None or not {"x", "y", "z"} <= set(vertex.props):
        raise MeshError("not_a_mesh", "The PLY file declares no vertices with x, y, z.")
    if face is None or face.count == 0 or not face.lists:
        raise MeshError(
            "no_triangles",
            "The PLY file declares no faces: it is a point cloud, not a surface. Export the "
            "model with faces.",
        )
    body = size - end.end()
    if fmt == "ascii":
        needed = sum(e.count * 2 * (len(e.props) + len(e.lists)) for e in elements)
    else:
        needed = sum(e.count * (e.fixed_bytes + sum(n for _, n, _ in e.lists)) for e in elements)
        needed += face.count * 3 * face.lists[0][2]
    if body < needed:
        raise MeshError(
            "truncated",
            f"The PLY file is cut off: its header declares {vertex.count} vertices and "
            f"{face.count} faces, which need at least {needed} bytes, but only {body} follow "
            "the header. Upload the complete file.",
        )
    return fmt, elements


def _check_ascii_ply_lists(path: Path, elements: list[_PlyElement]) -> None:
    """In an ASCII PLY each list states its own length: a line whose count does not match the
    numbers that follow (a face "255 0 1 2") is damage the PLY reader would read past."""
    data = path.read_bytes()
    body = data[re.search(rb"end_header\r?\n", data).end() :].splitlines()
    row = 0
    for element in elements:
        lines = body[row : row + element.count]
        row += element.count
        if len(element.lists) != 1 or element.props:  # the count must be the first word
            continue
        fixed = 0
        for n, line in enumerate(lines, start=1):
            words = line.split()
            if not words or not words[0].isdigit() or int(words[0]) + 1 + fixed != len(words):
                raise MeshError(
                    "not_a_mesh",
                    f"PLY {element.name} {n} declares a list of "
                    f"{_printable(words[0].decode('ascii', 'replace') if words else '', 12)} "
                    f"values but holds {max(len(words) - 1 - fixed, 0)}: the file is damaged.",
                )


def _parse_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fmt, elements = _ply_header(path, path.stat().st_size)
    if fmt == "ascii":
        _check_ascii_ply_lists(path, elements)
    try:
        with open(path, "rb") as fh:
            loaded = trimesh.exchange.ply.load_ply(fh, skip_materials=True)
        vertices = np.asarray(loaded.get("vertices", np.zeros((0, 3))), dtype=np.float64)
        faces = loaded.get("faces")
        faces = np.zeros((0, 3), dtype=np.int64) if faces is None else np.asarray(faces)
        if faces.ndim != 2 or (len(faces) and faces.shape[1] != 3):
            raise MeshError("not_a_mesh", "The PLY faces could not be read as triangles.")
        return vertices.reshape(-1, 3), faces.astype(np.int64)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many types on malformed bytes
        raise MeshError(
            "not_a_mesh",
            f"The PLY file could not be read ({type(exc).__name__}: {_printable(str(exc), 120)}). It is "
            "damaged or not a valid PLY file.",
        ) from exc


# ----------------------------------------------------------------------------- 3MF


@contextmanager
def _open_3mf(path: Path) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """An opened, vetted 3MF zip and the name of its root model part."""
    head = _read_head(path, 512)
    if not head.startswith(b"PK\x03\x04"):
        _reject_other_formats(head, "3MF")
        raise MeshError("not_a_mesh", "This is not a 3MF file: a 3MF file is a ZIP package.")
    with open_package(path) as opened:
        yield opened


def _load_3mf(path: Path) -> list[tuple[str, trimesh.Trimesh]]:
    """3MF parts (parsed in ``threemf``), each validated and welded like any other format."""
    return read_parts(path, _finish)
