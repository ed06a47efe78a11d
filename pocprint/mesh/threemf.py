"""3MF packages: opening them safely, reading their meshes fast, and writing one.

A 3MF file is a ZIP package whose model part is XML, and nearly all of that XML is one
``<vertex>`` or ``<triangle>`` tag per vertex or triangle. Building an XML element and a Python
event for each of them costs about 18 s per million triangles, so the model part is read in
two layers:

* Runs of simple, repeated tags (vertices, triangles, texture coordinates, ...) are matched
  with compiled byte patterns derived from the first tag of each form. Vertex coordinates and
  triangle indices are pulled out of those runs in a few regular-expression passes and
  converted by numpy in one call each.
* Everything else, plus one sample tag of each form that uses namespace prefixes, is the
  "skeleton". It goes through the real XML parser, so namespaces, prefixes, quoting and
  well-formedness are still checked by expat, and units, objects, components and build items
  are read from the element tree.

Whenever a mesh holds something the fast patterns do not cover exactly (comments between
vertices, character references in a coordinate, a tag with children ...), that mesh is kept
in the skeleton and read from the parsed elements instead, which is slow but exact. Every
failure is a ``MeshError``; DTDs are refused before anything is parsed.

Over 400 lines for a reason: the 3MF package (zip vetting, XML parsing under limits, objects,
components and transforms) is one format's reader.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree as ET  # noqa: S405 - only fed bytes without DTDs, see _read_xml

import numpy as np

from pocprint.mesh._text import mb, printable
from pocprint.mesh.errors import MeshError

# 3MF packages are ZIP files: refuse archives that would expand beyond these limits.
MAX_3MF_UNCOMPRESSED_BYTES = 1024**3
MAX_3MF_COMPRESSION_RATIO = 100
MAX_3MF_ENTRIES = 10_000
MAX_3MF_COMPONENT_DEPTH = 16
# Components can reference an object many times over; cap what they may expand to.
MAX_3MF_TRIANGLES = 20_000_000
THREEMF_UNITS_TO_MM = {
    "micron": 0.001,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "inch": 25.4,
    "foot": 304.8,
    "meter": 1000.0,
}

_RELS_3DMODEL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
_CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
_DTD_PATTERN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING = re.compile(
    rb"(?:\xef\xbb\xbf)?<\?xml[ \t\r\n][^>]*?encoding[ \t\r\n]*=[ \t\r\n]*[\"']([A-Za-z0-9._\-]{1,40})[\"']"
)
# Declared encodings whose bytes are read as UTF-8 as they are (a "UTF-16" declaration on a
# file without a UTF-16 byte order mark or NUL bytes is wrong, and the bytes are 8-bit).
_AS_UTF8 = {"utf-8", "utf8", "us-ascii", "ascii", "utf-16", "utf16"}

T = TypeVar("T")


# ----------------------------------------------------------------------------- package


@contextmanager
def open_package(path: Path) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """The opened, vetted ZIP and the name of its root model part (closed on exit).

    Only the central directory is trusted for the bomb and path checks, so nothing is
    inflated before an archive has been refused.
    """
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # zipfile raises many types on hostile bytes
        raise MeshError(
            "bad_3mf",
            f"The 3MF package is a damaged ZIP file ({printable(str(exc), 120)}). Export it again.",
        ) from exc
    with zf:
        _vet_zip_entries(zf.infolist())
        yield zf, _root_model_part(zf)


def _vet_zip_entries(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse path tricks and zip bombs using only the central directory (nothing inflated)."""
    if len(infos) > MAX_3MF_ENTRIES:
        raise MeshError("bad_3mf", f"The 3MF package holds {len(infos)} entries; refused.")
    total = 0
    for info in infos:
        name = info.filename
        parts = re.split(r"[\\/]", name)
        if (
            name.startswith(("/", "\\"))
            or re.match(r"^[A-Za-z]:", name)
            or ".." in parts
            or "\x00" in name
        ):
            raise MeshError(
                "bad_3mf",
                "The 3MF package contains an entry with an absolute path or '..' (a path "
                "traversal attempt or a broken writer); refused.",
            )
        total += info.file_size
        ratio_limit = MAX_3MF_COMPRESSION_RATIO * max(info.compress_size, 1)
        if info.file_size > 1_000_000 and info.file_size > ratio_limit:
            raise MeshError(
                "bad_3mf",
                f"A 3MF entry would expand to {info.file_size} bytes from "
                f"{info.compress_size} (more than {MAX_3MF_COMPRESSION_RATIO}x): refused as a "
                "possible zip bomb.",
            )
    if total > MAX_3MF_UNCOMPRESSED_BYTES:
        raise MeshError(
            "bad_3mf",
            f"The 3MF package would expand to {mb(total)} (limit "
            f"{mb(MAX_3MF_UNCOMPRESSED_BYTES)}); refused.",
        )


def _root_model_part(zf: zipfile.ZipFile) -> str:
    """The model part named by ``_rels/.rels`` (3MF core spec), else ``3D/3dmodel.model``."""
    names = set(zf.namelist())
    target = None
    if "_rels/.rels" in names:
        rels = _parse_xml(_read_xml(zf, "_rels/.rels", limit=1_000_000), "_rels/.rels")
        for elem in rels.iter():
            if (
                _local(elem.tag) == "Relationship"
                and elem.get("Type", "").rstrip("/") == _RELS_3DMODEL
            ):
                target = elem.get("Target", "").lstrip("/")
                break
    if target is None:
        target = "3D/3dmodel.model"
    if target in names:
        return target
    lowered = {n.lower(): n for n in names}
    if target.lower() in lowered:
        return lowered[target.lower()]
    raise MeshError(
        "bad_3mf",
        f"The 3MF package has no model part '{printable(target)}'; it is not a complete 3MF file.",
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_xml(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """One XML part, inflated within ``limit``, as UTF-8, refused if it declares a DTD.

    The stdlib parser would expand internal entities ("billion laughs"); a 3MF never needs a
    DTD, so any ``<!DOCTYPE``/``<!ENTITY`` in the bytes rejects the file. The check runs after
    any transcoding, so a UTF-16 part cannot hide a declaration from it.
    """
    shown = printable(name)
    try:
        if zf.getinfo(name).file_size > limit:
            raise MeshError("bad_3mf", f"The 3MF part '{shown}' is too large; refused.")
        with zf.open(name) as fh:
            data = fh.read(limit + 1)
    except MeshError:
        raise
    except Exception as exc:  # zipfile/zlib raise many types on damaged archives
        raise MeshError(
            "bad_3mf",
            f"The 3MF part '{shown}' could not be read ({printable(str(exc), 120)}). Export "
            "it again.",
        ) from exc
    if len(data) > limit:
        raise MeshError("bad_3mf", f"The 3MF part '{shown}' is too large; refused.")
    data = _as_utf8(data, shown)
    if b"<!" in data and _DTD_PATTERN.search(data):
        raise MeshError(
            "bad_3mf",
            f"The 3MF part '{shown}' contains a DOCTYPE/ENTITY declaration, which 3MF never "
            "uses; refused for safety.",
        )
    return data


def _as_utf8(data: bytes, shown: str) -> bytes:
    """The part's bytes in UTF-8, which is how both the fast patterns and expat read them."""
    encoding = None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif data.startswith(b"<\x00"):
        encoding = "utf-16-le"
    elif data.startswith(b"\x00<"):
        encoding = "utf-16-be"
    elif (declared := _XML_ENCODING.match(data[:200])) is not None:
        name = declared.group(1).decode("ascii").lower()
        if name not in _AS_UTF8:
            encoding = name
    if encoding is not None:
        try:
            codecs.lookup(encoding)
            data = data.decode(encoding).encode("utf-8")
        except (LookupError, UnicodeError) as exc:
            raise MeshError(
                "bad_3mf",
                f"The 3MF part '{shown}' is not valid text in its declared encoding "
                f"'{printable(encoding, 40)}'. Export it again.",
            ) from exc
    if b"\x00" in data:
        raise MeshError(
            "bad_3mf", f"The 3MF part '{shown}' contains NUL bytes, so it is not XML text."
        )
    return data


def _parse_xml(data: bytes, shown_name: str) -> ET.Element:
    """Parse DTD-free UTF-8 bytes; any parser failure becomes a ``MeshError``."""
    try:
        parser = ET.XMLParser(encoding="utf-8")  # noqa: S314 - DTDs refused in _read_xml
        parser.feed(data)
        return parser.close()
    except Exception as exc:  # expat reports ParseError, but be strict about what escapes
        raise MeshError(
            "bad_3mf",
            f"The 3MF part '{printable(shown_name)}' could not be read "
            f"({printable(str(exc), 120)}). Export it again.",
        ) from exc


# ----------------------------------------------------------------------------- fast scan

_WS = rb"[ \t\r\n]"
# Loose name for finding tags: whatever cannot be markup or whitespace (non-ASCII allowed).
_LOOSE_NAME = rb"[^\x00-\x20\"'<>/=!?:;&]+"
_LOOSE_QNAME = _LOOSE_NAME + rb"(?::" + _LOOSE_NAME + rb")*"
_MARKUP = re.compile(rb"<(?:(!--)|(!\[CDATA\[)|(\?)|(/?)(" + _LOOSE_QNAME + rb"))")
_MARKUP_ENDS = {1: b"-->", 2: b"]]>", 3: b"?>"}
_START_TAG_REST = re.compile(
    rb"(?:" + _WS + rb"+" + _LOOSE_QNAME + _WS + rb"*=" + _WS + rb"*(?:\"[^\"<]*\"|'[^'<]*'))*+"
    + _WS + rb"*+(/?)>"
)  # fmt: skip
# Strict ASCII names and values for the tags the fast patterns take over.
_NAME = rb"[A-Za-z_][A-Za-z0-9_.\-]*+"
_QNAME = _NAME + rb"(?::" + _NAME + rb")?+"
_VALUE = rb"[\t\n\r !#-%(-;?-~]*+"  # printable ASCII without " ' & < = >
_TAG_SHAPE = re.compile(
    rb"<(" + _QNAME + rb")((?:" + _WS + rb"++" + _QNAME + _WS + rb"*+=" + _WS
    + rb"*+(?:\"[^\"<]*\"|'[^'<]*'))*+)" + _WS + rb"*+(/>|>" + _WS + rb"*+</(" + _QNAME
    + rb")" + _WS + rb"*+>)"
)  # fmt: skip
_ATTR_SHAPE = re.compile(rb"(" + _QNAME + rb")" + _WS + rb"*=" + _WS + rb"*([\"'])")
_MAX_FORMS = 16

# Elements the structural pass reads; they are never folded into runs.
_STRUCTURAL = frozenset(
    {
        b"model",
        b"resources",
        b"object",
        b"mesh",
        b"vertices",
        b"triangles",
        b"components",
        b"component",
        b"build",
        b"item",
        b"metadata",
        b"metadatagroup",
    }
)
_MESH_DATA = {b"vertex": (b"x", b"y", b"z"), b"triangle": (b"v1", b"v2", b"v3")}


def _attr_patterns(name: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A literal pattern for the usual ``name="value"`` and an exact one for any spacing."""
    canonical = re.compile(rb" " + re.escape(name) + rb'="([^"]*)"')
    spaced = re.compile(_WS + re.escape(name) + _WS + rb"*=" + _WS + rb"*[\"']([^\"']*)[\"']")
    return canonical, spaced


_ATTR_PATTERNS = {name: _attr_patterns(name) for names in _MESH_DATA.values() for name in names}


class _TagForms:
    """The tag forms seen so far in one context, and runs of tags that fit one of them.

    A form is a tag name, its attribute names in order with their quote characters, and its
    closing (``/>`` or an end tag). Values may vary, but only over printable ASCII without
    quotes, ``&``, ``<``, ``=`` or ``>``: then every tag matched by a form is well-formed if
    one sample of it is, and each ``=`` in a run belongs to an attribute. The first tag of a
    run, and a sample of each form with namespace prefixes, stay in the skeleton so expat can
    check where the run sits and that the prefixes are declared.
    """

    def __init__(self, allowed: Callable[[bytes], bool], required: tuple[bytes, ...] = ()):
        self.allowed = allowed
        self.required = required
        self.sources: set[bytes] = set()
        self.forms: list[re.Pattern[bytes]] = []
        self.sampled: list[re.Pattern[bytes]] = []
        self.run_pattern: re.Pattern[bytes] | None = None
        self.end_tags = False

    def run(self, data: bytes, start: int) -> int | None:
        """End of the run of known-form tags (and whitespace) at ``start``, or None."""
        pos = start
        while True:
            if self.run_pattern is not None:
                match = self.run_pattern.match(data, pos)
                if match is not None:
                    pos = match.end()
            if not self._learn(data, pos):
                break
        return pos if pos > start else None

    def samples(self, data: bytes, start: int, end: int) -> list[bytes]:
        """The run's first tag and one tag of each prefixed form in it, in document order.

        Keeping the first tag means a run can never vanish from the skeleton: if it sat
        where no tag may be (inside an attribute value, say), expat still sees its ``<``.
        """
        found = {}
        for form in self.forms:
            if (match := form.match(data, start)) is not None:
                found[start] = match.group()
                break
        for form in self.sampled:
            if (match := form.search(data, start, end)) is not None:
                found.setdefault(match.start(), match.group())
        return [found[at] for at in sorted(found)]

    def _learn(self, data: bytes, pos: int) -> bool:
        """Add the form of the tag at ``pos`` if it is one this context may fold."""
        if len(self.forms) >= _MAX_FORMS:
            return False
        shape = _TAG_SHAPE.match(data, pos)
        if shape is None:
            return False
        qname, attrs, closing, end_name = shape.groups()
        if not self.allowed(qname.rpartition(b":")[2]) or end_name not in (None, qname):
            return False
        named = _ATTR_SHAPE.findall(attrs)
        names = [name for name, _ in named]
        if len(set(names)) != len(names) or any(names.count(r) != 1 for r in self.required):
            return False
        parts = [re.escape(b"<" + qname)]
        for name, quote in named:
            equals = _WS + rb"*+=" + _WS + rb"*+"
            parts.append(_WS + rb"++" + re.escape(name) + equals + quote + _VALUE + quote)
        parts.append(_WS + rb"*+")
        parts.append(rb"/>" if closing == b"/>" else rb">" + _WS + rb"*+</" + re.escape(qname))
        if closing != b"/>":
            parts.append(_WS + rb"*+>")
        source = b"".join(parts)
        if source in self.sources:
            return False
        form = re.compile(source)
        if form.match(data, pos) is None:  # a value outside the safe characters
            return False
        self.sources.add(source)
        self.forms.append(form)
        if b":" in qname or any(b":" in name for name in names):
            self.sampled.append(form)
        self.end_tags = self.end_tags or closing != b"/>"
        alternatives = b"|".join(f.pattern for f in self.forms)
        self.run_pattern = re.compile(rb"(?:(?:" + alternatives + rb")" + _WS + rb"*+)++")
        return True


@dataclass
class _MeshBlock:
    """One ``<mesh>`` element: its coordinates and indices as text, if read by the fast path."""

    qname: bytes
    out_index: int
    emitted: int
    fast: bool = True
    values: dict[bytes, list[bytes]] = field(default_factory=dict)

    def add_run(self, data: bytes, start: int, end: int, kind: bytes, forms: _TagForms) -> None:
        """Collect the required attribute values of a run of vertex or triangle tags."""
        count = data.count(b"<", start, end)
        if forms.end_tags:
            count -= data.count(b"</", start, end)
        for name in _MESH_DATA[kind]:
            canonical, spaced = _ATTR_PATTERNS[name]
            found = canonical.findall(data, start, end)
            if len(found) != count:
                found = spaced.findall(data, start, end)
            if len(found) != count:  # cannot happen for a run; refuse rather than guess
                raise MeshError("bad_3mf", f"A 3MF {kind.decode()} tag could not be read.")
            self.values.setdefault(name, []).extend(found)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (n, 3) and triangles (m, 3), each converted by numpy in one call."""
        return (
            self._matrix(b"vertex", np.float64, "vertex coordinate"),
            self._matrix(b"triangle", np.int64, "triangle index"),
        )

    def _matrix(self, kind: bytes, dtype: type, what: str) -> np.ndarray:
        # Every run tag has each required attribute, so the columns have equal lengths.
        columns = [self.values.get(name, []) for name in _MESH_DATA[kind]]
        flat: list[bytes] = [b""] * (3 * len(columns[0]))
        for offset, column in enumerate(columns):
            flat[offset::3] = column
        return _convert(flat, dtype, what).reshape(-1, 3)


def _skeleton(data: bytes) -> tuple[bytes, list[_MeshBlock]]:
    """Fold runs of repeated tags out of a model part; returns the rest and its meshes.

    The result is the document with each run replaced by its samples; the meshes are listed
    in document order, which is also the order expat sees their ``<mesh>`` elements in.
    """
    out: list[bytes] = []
    blocks: list[_MeshBlock] = []
    block: _MeshBlock | None = None
    emitted = 0  # data[emitted:] is not in ``out`` yet
    pos = 0
    outside = _TagForms(lambda local: local not in _STRUCTURAL)
    inside = _TagForms(lambda local: local not in _STRUCTURAL and local not in _MESH_DATA)
    mesh_forms = {
        kind: _TagForms(lambda local, kind=kind: local == kind, required)
        for kind, required in _MESH_DATA.items()
    }
    while (markup := _MARKUP.search(data, pos)) is not None:
        start = markup.start()
        for group, closing in _MARKUP_ENDS.items():
            if markup.group(group):  # comment, CDATA or processing instruction: skip whole
                end = data.find(closing, markup.end())
                if end < 0:
                    raise MeshError(
                        "bad_3mf",
                        "The 3MF model has an unterminated comment, CDATA section or "
                        "processing instruction; the file is damaged.",
                    )
                pos = end + len(closing)
                break
        else:
            qname = markup.group(5)
            local = qname.rpartition(b":")[2]
            pos = markup.end()
            if markup.group(4):  # an end tag
                if block is not None and qname == block.qname:
                    block = None
                continue
            if local == b"mesh":
                if block is not None:
                    raise MeshError("bad_3mf", "A 3MF mesh contains another mesh.")
                rest = _START_TAG_REST.match(data, pos)
                if rest is None:
                    raise MeshError("bad_3mf", "A 3MF <mesh> tag is malformed.")
                blocks.append(_MeshBlock(qname, len(out), emitted))
                if not rest.group(1):  # not <mesh/>
                    block = blocks[-1]
                pos = rest.end()
                continue
            if local in _STRUCTURAL:
                continue
            if block is not None and local in _MESH_DATA:
                if not block.fast:
                    continue
                forms = mesh_forms[local]
                end = forms.run(data, start)
                if end is None:  # a form the patterns do not cover: parse this mesh as XML
                    block.fast = False
                    block.values.clear()
                    del out[block.out_index :]
                    emitted = block.emitted
                    continue
                block.add_run(data, start, end, local, forms)
            else:
                forms = outside if block is None else inside
                end = forms.run(data, start)
                if end is None:
                    continue
            out.append(data[emitted:start])
            out.extend(forms.samples(data, start, end))
            emitted = pos = end
    if block is not None:
        raise MeshError("bad_3mf", "A 3MF mesh is not closed; the file is cut off or damaged.")
    out.append(data[emitted:])
    return b"".join(out), blocks


# ----------------------------------------------------------------------------- model


@dataclass
class _Object:
    name: str
    kind: str
    vertices: np.ndarray | None = None
    triangles: np.ndarray | None = None
    components: list[tuple[str | None, str, np.ndarray]] = field(default_factory=list)


@dataclass
class _ModelPart:
    unit: str = "millimeter"
    objects: dict[str, _Object] = field(default_factory=dict)
    items: list[tuple[str | None, str, np.ndarray]] = field(default_factory=list)


def _path_attr(elem: ET.Element) -> str | None:
    for key, value in elem.attrib.items():
        if _local(key) == "path" and key != "path":
            return value.lstrip("/")
    return None


def _transform(text: str | None) -> np.ndarray:
    """3MF 3x4 affine (row-vector convention) as a 4x4 matrix: p' = [p 1] @ M."""
    matrix = np.eye(4)
    if text:
        try:
            values = np.array(text.split(), dtype=np.float64)
        except ValueError as exc:
            raise MeshError(
                "bad_3mf", "A 3MF transform holds a value that is not a number."
            ) from exc
        if values.shape != (12,) or not np.isfinite(values).all():
            raise MeshError("bad_3mf", "A 3MF transform does not have 12 finite numbers.")
        matrix[:, :3] = values.reshape(4, 3)
    return matrix


def _numbers(values: list, dtype: type, what: str) -> np.ndarray:
    """Attribute values (str, or None when absent) as one numpy array."""
    if any(v is None for v in values):
        raise MeshError("bad_3mf", f"A 3MF {what} attribute is missing.")
    return _convert(values, dtype, what)


def _convert(values: list, dtype: type, what: str) -> np.ndarray:
    try:
        return np.array(values, dtype=dtype)
    except (ValueError, OverflowError, TypeError) as exc:
        raise MeshError("bad_3mf", f"A 3MF {what} is not a number.") from exc


def _mesh_from_elements(mesh: ET.Element) -> tuple[np.ndarray, np.ndarray]:
    """The slow, exact reading of a mesh the fast patterns left in the skeleton."""
    verts: list[str | None] = []
    tris: list[str | None] = []
    for elem in mesh.iter():
        tag = _local(elem.tag)
        if tag == "vertex":
            verts.extend((elem.get("x"), elem.get("y"), elem.get("z")))
        elif tag == "triangle":
            tris.extend((elem.get("v1"), elem.get("v2"), elem.get("v3")))
    return (
        _numbers(verts, np.float64, "vertex coordinate").reshape(-1, 3),
        _numbers(tris, np.int64, "triangle index").reshape(-1, 3),
    )


def _parse_model_part(zf: zipfile.ZipFile, name: str) -> _ModelPart:
    """Units, objects (with their meshes), components and build items of one model part."""
    skeleton, blocks = _skeleton(_read_xml(zf, name, limit=MAX_3MF_UNCOMPRESSED_BYTES))
    root = _parse_xml(skeleton, name)
    model = _ModelPart()
    meshes = iter(blocks)
    # Depth-first in document order, each element with its object and build context.
    stack: list[tuple[ET.Element, _Object | None, bool]] = [(root, None, False)]
    while stack:
        elem, current, in_build = stack.pop()
        tag = _local(elem.tag)
        if tag == "mesh":
            block = next(meshes, None)
            if block is None:
                raise MeshError("bad_3mf", "The 3MF meshes could not be told apart.")
            if current is not None:
                if block.fast:
                    current.vertices, current.triangles = block.arrays()
                else:
                    current.vertices, current.triangles = _mesh_from_elements(elem)
            continue
        if tag == "model":
            model.unit = elem.get("unit", "millimeter")
        elif tag == "object":
            object_id = elem.get("id", "")
            current = _Object(elem.get("name") or f"object {object_id}", elem.get("type", "model"))
            model.objects[object_id] = current
        elif tag == "component" and current is not None:
            current.components.append(
                (_path_attr(elem), elem.get("objectid", ""), _transform(elem.get("transform")))
            )
        elif tag == "build":
            in_build = True
        elif tag == "item" and in_build:
            model.items.append(
                (_path_attr(elem), elem.get("objectid", ""), _transform(elem.get("transform")))
            )
        stack.extend((child, current, in_build) for child in reversed(elem))
    if next(meshes, None) is not None:
        raise MeshError("bad_3mf", "The 3MF meshes could not be told apart.")
    return model


def read_parts(path: Path, finish: Callable[[np.ndarray, np.ndarray], T]) -> list[tuple[str, T]]:
    """One (name, finish(vertices_mm, faces)) per printable build item, in build order.

    Components and build-item transforms are applied and ``unit`` is converted to
    millimetres. ``finish`` validates and packs each part; it is passed in so this module
    needs nothing from the format-independent reader.
    """
    with open_package(path) as (zf, root_name):
        models = {root_name: _parse_model_part(zf, root_name)}
        root = models[root_name]
        unit = root.unit.lower()
        if unit not in THREEMF_UNITS_TO_MM:
            raise MeshError(
                "bad_3mf",
                f"The 3MF declares the unknown unit '{printable(root.unit, 40)}' (allowed: "
                f"{', '.join(THREEMF_UNITS_TO_MM)}).",
            )
        scale = THREEMF_UNITS_TO_MM[unit]
        expanded: dict[tuple[str, str], int] = {}  # triangles an object expands to

        def model_for(part: str | None) -> _ModelPart:
            part = part or root_name
            if part not in models:
                if part not in zf.namelist():
                    raise MeshError(
                        "bad_3mf", f"The 3MF refers to a missing part '{printable(part)}'."
                    )
                models[part] = _parse_model_part(zf, part)
            return models[part]

        def count(part: str, object_id: str, depth: int) -> int:
            """Triangles an object expands to through its components (memoised, cheap)."""
            if depth > MAX_3MF_COMPONENT_DEPTH:
                raise MeshError("bad_3mf", "The 3MF components nest too deeply (a cycle?).")
            key = (part, object_id)
            if key not in expanded:
                obj = model_for(part).objects.get(object_id)
                if obj is None:
                    raise MeshError(
                        "bad_3mf",
                        f"The 3MF refers to a missing object id '{printable(object_id, 20)}'.",
                    )
                own = len(obj.triangles) if obj.triangles is not None else 0
                expanded[key] = own + sum(
                    count(cpart or part, cid, depth + 1) for cpart, cid, _ in obj.components
                )
            return expanded[key]

        def collect(part: str, object_id: str, matrix: np.ndarray, depth: int, out: dict) -> None:
            """Append an object's transformed triangles (and its components') to ``out``."""
            if depth > MAX_3MF_COMPONENT_DEPTH:
                raise MeshError("bad_3mf", "The 3MF components nest too deeply (a cycle?).")
            model = model_for(part)
            obj = model.objects.get(object_id)
            if obj is None:
                raise MeshError(
                    "bad_3mf",
                    f"The 3MF refers to a missing object id '{printable(object_id, 20)}'.",
                )
            if obj.vertices is not None and obj.triangles is not None and len(obj.triangles):
                tris = obj.triangles
                if tris.min() < 0 or tris.max() >= len(obj.vertices):
                    raise MeshError(
                        "bad_face_index",
                        f"3MF object id {printable(object_id, 20)} has triangles referring to "
                        f"vertices that do not exist (it defines {len(obj.vertices)}). The "
                        "file is corrupt.",
                    )
                if np.linalg.det(matrix[:3, :3]) < 0:  # a mirroring transform turns it inside out
                    tris = tris[:, ::-1]
                pts = obj.vertices @ matrix[:3, :3] + matrix[3, :3]
                out["faces"].append(tris + out["n"])
                out["vertices"].append(pts)
                out["n"] += len(pts)
            for comp_part, comp_id, comp_matrix in obj.components:
                collect(comp_part or part, comp_id, comp_matrix @ matrix, depth + 1, out)

        if not root.items:
            raise MeshError("no_triangles", "The 3MF build has no items: nothing to print.")
        parts: list[tuple[str, T]] = []
        seen: dict[str, int] = {}
        total = sum(count(part or root_name, object_id, 0) for part, object_id, _ in root.items)
        if total > MAX_3MF_TRIANGLES:
            raise MeshError(
                "bad_3mf",
                f"The 3MF build expands to {total} triangles through its components (limit "
                f"{MAX_3MF_TRIANGLES}); refused.",
            )
        for part, object_id, matrix in root.items:
            obj = model_for(part).objects.get(object_id)
            if obj is not None and obj.kind in ("support", "other"):
                continue
            out: dict = {"vertices": [], "faces": [], "n": 0}
            collect(part or root_name, object_id, matrix, 0, out)
            if not out["faces"]:
                continue
            mesh = finish(np.concatenate(out["vertices"]) * scale, np.concatenate(out["faces"]))
            name = obj.name if obj is not None else f"object {object_id}"
            seen[name] = seen.get(name, 0) + 1
            parts.append((name if seen[name] == 1 else f"{name} ({seen[name]})", mesh))
    if not parts:
        raise MeshError("no_triangles", "The 3MF build contains no triangles to print.")
    return parts


# ----------------------------------------------------------------------------- writing


def package_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """A minimal 3MF package (one object, one build item, millimetres) for one mesh."""
    out = io.StringIO()
    out.write(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<model unit="millimeter" xmlns="{_CORE_NS}">'
    )
    out.write('<resources><object id="1" type="model"><mesh><vertices>')
    out.writelines(f'<vertex x="{x!r}" y="{y!r}" z="{z!r}"/>' for x, y, z in vertices.tolist())
    out.write("</vertices><triangles>")
    out.writelines(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces.tolist())
    out.write('</triangles></mesh></object></resources><build><item objectid="1"/></build>')
    out.write("</model>\n")
    content_types = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/><Default Extension="model" '
        'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model"'
        f' Id="rel0" Type="{_RELS_3DMODEL}"/></Relationships>'
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", content_types)
        zf.writestr("_rels/.rels", rels)
        zf.writestr("3D/3dmodel.model", out.getvalue())
    return buffer.getvalue()
