"""`pocprint mesh inspect|repair`: the mesh pipeline on single files, without the service.

For a technician or a script checking a file before upload or repairing it offline, with the
same reader, unit rule, repair and gate as the worker. Exit codes of ``mesh repair``:
0 repaired, 1 needs attention (output and report still written, both marked), 2 unreadable
input or unusable arguments (nothing written), 3 unit not clear-cut (nothing written; pass
``--units``). ``mesh inspect`` exits 0, or 2 for unreadable input.

The main CLI adds these with ``add_mesh_commands(sub)`` and dispatches ``args.command ==
"mesh"`` to ``run_mesh_command(args)``; ``python -m pocprint.mesh.cli mesh ...`` runs them
directly.

Over 400 lines for a reason: two commands with their own report and table output; the
pipeline itself is in the step modules.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import trimesh

from pocprint.domain.anatomy_sizes import by_name, parse_sizes
from pocprint.mesh.analyse import MeshAnalysis, analyse
from pocprint.mesh.errors import MeshError, TooComplex
from pocprint.mesh.read import detect_format, load_mesh, save_mesh, write_atomic
from pocprint.mesh.settings import device_types, load_repair_settings
from pocprint.mesh.topology import edge_table, signed_volume, weld_exact
from pocprint.mesh.units import (
    DECLARED_UNIT_TO_MM,
    UNIT_NAMES,
    UNIT_TO_MM,
    UnitGuess,
    declared_unit_from_header,
    guess_units,
)

ANATOMY_FILE = Path(__file__).resolve().parents[2] / "config" / "anatomy.toml"
_ANATOMY_HELP = (
    "what the part is (a [[sizes]] name of config/anatomy.toml, e.g. femur, aneurysm, skull): "
    "the unit whose size fits it is clear-cut"
)
EXIT_OK = 0
EXIT_NEEDS_ATTENTION = 1
EXIT_UNREADABLE = 2
EXIT_UNITS_UNCLEAR = 3
ATTENTION_MARK = "NEEDS ATTENTION - not approved for printing"


def add_mesh_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mesh`` command (sub-commands ``inspect`` and ``repair``) to a CLI."""
    mesh = subparsers.add_parser("mesh", help="inspect or repair a mesh file offline")
    sub = mesh.add_subparsers(dest="mesh_command", required=True)

    inspect = sub.add_parser("inspect", help="analysis and unit guess of a mesh file")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.add_argument("--units", choices=list(UNIT_TO_MM), help="the file's unit")
    inspect.add_argument("--anatomy", metavar="STRUCTURE", help=_ANATOMY_HELP)
    inspect.add_argument(
        "--self-intersections",
        action="store_true",
        help="count self-intersecting faces (about 2 s per million triangles)",
    )
    inspect.add_argument(
        "--min-feature-mm",
        type=float,
        metavar="MM",
        help="also estimate walls thinner than this (needs a known unit)",
    )

    rep = sub.add_parser("repair", help="scale to mm, repair, gate and write the result")
    rep.add_argument("file", type=Path)
    rep.add_argument("-o", "--output", type=Path, required=True, help="repaired mesh file")
    rep.add_argument("--report", type=Path, required=True, help="JSON report to write")
    rep.add_argument("--units", choices=list(UNIT_TO_MM), help="the file's unit")
    rep.add_argument("--anatomy", metavar="STRUCTURE", help=_ANATOMY_HELP)
    rep.add_argument(
        "--device-type", choices=device_types(), help="use this device type's repair limits"
    )
    rep.add_argument(
        "--settings",
        type=Path,
        help="repair settings file (default: $POCPRINT_REPAIR_CONFIG or config/repair.toml)",
    )


def run_mesh_command(args: argparse.Namespace) -> int:
    """Run a parsed ``mesh`` command; returns the process exit code."""
    if args.mesh_command == "inspect":
        return _inspect(args)
    if args.mesh_command == "repair":
        return _repair(args)
    raise ValueError(f"unknown mesh command {args.mesh_command!r}")


# ----------------------------------------------------------------------------- inspect


def _inspect(args: argparse.Namespace) -> int:
    try:
        fmt, declared, mesh = _read(args.file)
    except MeshError as exc:
        return _fail(EXIT_UNREADABLE, f"{args.file}: {exc}")
    except OSError as exc:
        return _fail(EXIT_UNREADABLE, f"cannot read {args.file}: {exc}")
    try:
        anatomy = _anatomy_rows(args.anatomy)
    except ValueError as exc:
        return _fail(EXIT_UNREADABLE, f"--anatomy: {exc}")
    units = _decide_units(fmt, declared, mesh, args.units, anatomy)
    lengths_in = "mm" if units["scale_to_mm"] is not None else "file units"
    if units["scale_to_mm"] is not None and units["scale_to_mm"] != 1.0:
        mesh = _scaled(mesh, units["scale_to_mm"])
    min_feature = args.min_feature_mm
    note = None
    if min_feature is not None and lengths_in != "mm":
        note = "thin walls not estimated: the unit is not clear-cut (pass --units)"
        min_feature = None
    try:
        analysis = analyse(
            mesh, self_intersections=args.self_intersections, min_feature_mm=min_feature
        )
    except ValueError as exc:
        return _fail(EXIT_UNREADABLE, f"{args.file}: {exc}")
    if args.json:
        out = {
            "file": str(args.file),
            "format": fmt,
            "lengths_in": lengths_in,
            "units": units,
            "analysis": analysis.to_dict(),
        }
        if note:
            out["note"] = note
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"{args.file} ({fmt.upper()})")
    print(_units_text(units))
    print(f"Analysis (lengths in {lengths_in}):")
    print(_analysis_table(analysis, lengths_in))
    if note:
        print(f"Note: {note}")
    return EXIT_OK


# ----------------------------------------------------------------------------- repair


def _repair(args: argparse.Namespace) -> int:
    from pocprint.mesh.repair import repair  # pymeshlab/manifold3d load only when needed

    source, out, report_path = Path(args.file), Path(args.output), Path(args.report)
    try:
        out_fmt = detect_format(out.name)
    except MeshError as exc:
        return _fail(EXIT_UNREADABLE, f"output {out}: {exc}")
    paths = [_resolved(p) for p in (source, out, report_path)]
    if len(set(paths)) < 3:
        return _fail(
            EXIT_UNREADABLE, "the input, the output and the report must be three different files"
        )
    for target in (out, report_path):
        if not target.parent.is_dir():
            return _fail(EXIT_UNREADABLE, f"the directory of {target} does not exist")
    try:
        settings = load_repair_settings(args.device_type, args.settings)
    except ValueError as exc:
        return _fail(EXIT_UNREADABLE, f"repair settings: {exc}")
    try:
        fmt, declared, mesh = _read(source)
    except MeshError as exc:
        return _fail(EXIT_UNREADABLE, f"{source}: {exc}")
    except OSError as exc:
        return _fail(EXIT_UNREADABLE, f"cannot read {source}: {exc}")
    try:
        anatomy = _anatomy_rows(args.anatomy)
    except ValueError as exc:
        return _fail(EXIT_UNREADABLE, f"--anatomy: {exc}")
    units = _decide_units(fmt, declared, mesh, args.units, anatomy)
    if units["scale_to_mm"] is None:
        guess = units["guess"]
        options = ", ".join(
            f"{unit} ({_dims(c['extents_mm'])} mm)"
            for unit, c in guess["candidates"].items()
            if c["plausible"]
        )
        details = "".join(f"\n  - {reason}" for reason in guess["reasons"])
        return _fail(
            EXIT_UNITS_UNCLEAR,
            f"{source}: the unit is not clear-cut; nothing was written. Plausible readings: "
            f"{options or 'none'}. Check the model's real size and pass --units mm|cm|m|in."
            f"{details}",
        )
    if units["scale_to_mm"] != 1.0:
        mesh = _scaled(mesh, units["scale_to_mm"])
    try:
        result = repair(mesh, settings)
    except MeshError as exc:
        return _fail(EXIT_UNREADABLE, f"{source}: {exc}")
    except TooComplex as exc:
        return _fail(EXIT_NEEDS_ATTENTION, f"{source}: {exc}; nothing was written")
    ok = result.verdict == "repaired"
    status = "repaired" if ok else ATTENTION_MARK
    _write_mesh(result.mesh, out, None if ok else ATTENTION_MARK)
    report = {
        "tool": "pocprint mesh repair",
        "pocprint_version": _version("pocprint"),
        "status": status,
        "printable": ok,
        "input": _file_record(source, fmt),
        "output": {**_file_record(out, out_fmt), "status": status},
        "units": units,
        "device_type": settings.device_type,
        "settings_file": str(args.settings) if args.settings else _default_settings_path(),
        **result.report(),
    }
    write_atomic(report_path, (json.dumps(report, indent=2) + "\n").encode())
    if ok:
        print(f"repaired: {out} (report {report_path})")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_OK
    print(f"{ATTENTION_MARK}: {out} (report {report_path})", file=sys.stderr)
    for reason in result.reasons:
        print(f"reason: {reason}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_NEEDS_ATTENTION


# ----------------------------------------------------------------------------- helpers


def _read(path: Path) -> tuple[str, str | None, trimesh.Trimesh]:
    """(format, declared unit, mesh); a bad file raises MeshError, a missing one OSError."""
    fmt = detect_format(path.name)
    if not path.is_file():
        raise FileNotFoundError("no such file, or not a regular file")
    return fmt, declared_unit_from_header(path, fmt), load_mesh(path, fmt)


def _anatomy_rows(name: str | None) -> list[dict]:
    """The size row named by ``--anatomy``, from config/anatomy.toml."""
    if not name:
        return []
    with ANATOMY_FILE.open("rb") as fh:
        rows = parse_sizes(tomllib.load(fh).get("sizes", []), where=str(ANATOMY_FILE))
    return [by_name(name, rows).to_dict()]


def _decide_units(
    fmt: str,
    declared: str | None,
    mesh: trimesh.Trimesh,
    given: str | None,
    anatomy: list[dict] | None = None,
):
    """Which scale takes the loaded coordinates to mm, and why (``scale_to_mm`` None: unclear).

    The 3MF reader already applies the file's own unit, so a 3MF is in mm once loaded; a
    ``--units`` that contradicts a 3MF's unit replaces it (the file's unit is then wrong).
    """
    lo, hi = np.asarray(mesh.vertices).min(axis=0), np.asarray(mesh.vertices).max(axis=0)
    extents = [float(x) for x in hi - lo]
    volume = _closed_volume(mesh)
    if fmt == "3mf":
        file_unit = declared or "mm"
        factor = DECLARED_UNIT_TO_MM[file_unit]
        file_extents = [x / factor for x in extents]
        file_volume = None if volume is None else volume / factor**3
        guess = guess_units(file_extents, file_volume, file_unit)
        if given is None or given == file_unit:
            return {
                "unit": file_unit,
                "scale_to_mm": 1.0,
                "source": "declared in the 3MF file (applied by the reader)",
                "guess": guess.to_dict(),
            }
        return {
            "unit": given,
            "scale_to_mm": UNIT_TO_MM[given] / factor,
            "source": f"--units {given}, replacing the 3MF's declared {UNIT_NAMES[file_unit]}",
            "guess": guess.to_dict(),
        }
    guess: UnitGuess = guess_units(extents, volume, declared, anatomy=anatomy)
    if given is not None:
        source = f"--units {given}"
        if guess.clear and guess.proposed != given:
            source += f" (the file's own evidence points to {UNIT_NAMES[guess.proposed]})"
        return {
            "unit": given,
            "scale_to_mm": UNIT_TO_MM[given],
            "source": source,
            "guess": guess.to_dict(),
        }
    if guess.clear:
        return {
            "unit": guess.proposed,
            "scale_to_mm": guess.scale_to_mm,
            "source": "declared in the file"
            if guess.declared
            else "the named anatomy's size (clear-cut)"
            if guess.anatomy
            else "size guess (clear-cut)",
            "guess": guess.to_dict(),
        }
    return {"unit": None, "scale_to_mm": None, "source": "unclear", "guess": guess.to_dict()}


def _closed_volume(mesh: trimesh.Trimesh) -> float | None:
    """Enclosed volume in file units cubed when the (welded) surface is closed, else None."""
    vertices, faces = weld_exact(mesh.vertices, mesh.faces)
    if len(faces) == 0:
        return None
    _, counts = edge_table(faces, len(vertices))
    return signed_volume(vertices, faces) if bool((counts == 2).all()) else None


def _scaled(mesh: trimesh.Trimesh, factor: float) -> trimesh.Trimesh:
    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64) * factor,
        faces=np.asarray(mesh.faces),
        process=False,
        validate=False,
    )


def _write_mesh(mesh: trimesh.Trimesh, out: Path, mark: str | None) -> None:
    """``save_mesh``, then (for a result needing attention) a mark inside the file itself.

    STL gets it in the 80-byte header, PLY and OBJ as a comment line; 3MF is left as written
    (the report carries the mark). The marked file replaces ``out`` atomically.
    """
    if mark is None:
        save_mesh(mesh, out)
        return
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".pocprint-") as tmp:
        plain = Path(tmp) / f"mesh{out.suffix.lower()}"
        save_mesh(mesh, plain)
        data = plain.read_bytes()
    text = f"pocprint {mark}"
    fmt = detect_format(out.name)
    if fmt == "stl":
        data = text.encode("ascii").ljust(80, b" ")[:80] + data[80:]
    elif fmt == "ply":
        first, rest = data.split(b"\n", 2)[:2], data.split(b"\n", 2)[2]
        data = b"\n".join([*first, f"comment {text}".encode("ascii"), rest])
    elif fmt == "obj":
        data = f"# {text}\n".encode("ascii") + data
    write_atomic(out, data)


def _file_record(path: Path, fmt: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "path": str(path),
        "format": fmt,
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _default_settings_path() -> str:
    from pocprint.mesh.settings import CONFIG_ENV, DEFAULT_CONFIG

    return os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _dims(values: list[float]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _units_text(units: dict) -> str:
    guess = units["guess"]
    lines = []
    if units["scale_to_mm"] is None:
        lines.append(f"Units: NOT CLEAR (best guess {guess['proposed']}); pass --units to decide")
    else:
        lines.append(f"Units: {units['unit']} (x{units['scale_to_mm']:g} to mm), {units['source']}")
    lines.extend(f"  - {reason}" for reason in guess["reasons"])
    return "\n".join(lines)


_LABELS = {
    "triangles": "triangles",
    "vertices": "vertices",
    "shells": "shells (closed or open parts)",
    "watertight": "watertight",
    "winding_consistent": "winding consistent",
    "inside_out": "inside out",
    "boundary_edges": "boundary edges",
    "holes": "holes (open borders)",
    "largest_hole_edges": "largest hole (edges)",
    "non_manifold_edges": "non-manifold edges",
    "non_manifold_vertices": "non-manifold vertices",
    "duplicate_faces": "duplicate faces",
    "degenerate_faces": "degenerate faces",
    "self_intersecting_faces": "self-intersecting faces",
    "volume_mm3": "volume",
    "area_mm2": "surface area",
    "extents": "extents",
}


def _analysis_table(analysis: MeshAnalysis, lengths_in: str) -> str:
    data = analysis.to_dict()
    unit = "mm" if lengths_in == "mm" else "units"
    rows = []
    for key, label in _LABELS.items():
        value = data[key]
        if value is None:
            text = "not checked" if key == "self_intersecting_faces" else "- (not closed)"
        elif isinstance(value, bool):
            text = "yes" if value else "NO" if key in ("watertight", "winding_consistent") else "no"
            if key == "inside_out" and value:
                text = "YES"
        elif key == "volume_mm3":
            text = f"{value:.6g} {unit}^3"
        elif key == "area_mm2":
            text = f"{value:.6g} {unit}^2"
        elif key == "extents":
            text = f"{_dims(value)} {unit}"
        else:
            text = str(value)
        rows.append((label, text))
    walls = data.get("thin_walls")
    if walls:
        thinnest = walls["min_thickness_mm"]
        rows.append(
            (
                f"thin walls (< {walls['min_feature_mm']:g} mm)",
                f"{walls['thin_share']:.1%} of the area, thinnest "
                + (
                    f"{thinnest:.3g} mm"
                    if thinnest is not None
                    else f"> {walls['search_depth_mm']:g} mm"
                )
                + f" ({walls['samples']} samples)",
            )
        )
    width = max(len(label) for label, _ in rows)
    lines = [f"  {label.ljust(width)}  {text}" for label, text in rows]
    if walls and walls.get("warning"):
        lines.append(f"  WARNING: {walls['warning']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m pocprint.mesh.cli [mesh] inspect|repair ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("inspect", "repair"):
        argv.insert(0, "mesh")
    parser = argparse.ArgumentParser(prog="pocprint")
    sub = parser.add_subparsers(dest="command", required=True)
    add_mesh_commands(sub)
    args = parser.parse_args(argv)
    return run_mesh_command(args)


if __name__ == "__main__":
    sys.exit(main())
