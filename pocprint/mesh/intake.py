"""The mesh work of one uploaded part, as the child process runs it (``pocprint.mesh.child``):
read, decide the unit, scale to millimetres, repair, gate and measure, save the repaired mesh.

Everything it returns is plain JSON, so it crosses the process boundary as it is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pocprint.mesh.read import load_mesh
from pocprint.mesh.repair import repair, save_mesh
from pocprint.mesh.settings import load_repair_settings
from pocprint.mesh.units import UNIT_TO_MM, declared_unit_from_header, guess_units


def declared_unit(source: Path, fmt: str) -> str | None:
    if fmt == "3mf":
        return "mm"  # the 3MF reader applies the file's own `unit` attribute
    return declared_unit_from_header(source, fmt)


def work_on_part(request: dict, on_read: Callable[[int], None] = lambda _n: None) -> dict:
    """Request: source, fmt, units (None: decide), device_type, out (where the repaired
    binary STL goes); to decide the unit also anatomy (the order's size rows) and band (the
    plausible sizes, see ``units.size_score``). ``on_read(triangles)`` is called once the file is read. Returns
    ``{"unclear": guess}`` when the unit must be confirmed, else the repair's record."""
    source, fmt = Path(request["source"]), request["fmt"]
    units = request.get("units")
    started = time.perf_counter()
    mesh = load_mesh(source, fmt)
    on_read(len(mesh.faces))
    loaded = time.perf_counter()
    guess = None
    if units is None:
        # Size decides; the volume is only shown, and trimesh's is_volume costs seconds.
        band = request.get("band")
        guess = guess_units(
            tuple(mesh.extents),
            None,
            declared_unit(source, fmt),
            anatomy=request.get("anatomy"),
            band=None if band is None else (tuple(band[0]), tuple(band[1])),
        )
        if not guess.clear:
            return {"unclear": guess.to_dict()}
        units = guess.proposed
    if UNIT_TO_MM[units] != 1.0:
        mesh.apply_scale(UNIT_TO_MM[units])
    result = repair(mesh, load_repair_settings(request.get("device_type")))
    repaired = time.perf_counter()
    save_mesh(result.mesh, Path(request["out"]))
    report = result.report()
    report["units"] = {"unit": units, "scale_to_mm": UNIT_TO_MM[units]}
    report["service_timings_s"] = {
        "read": round(loaded - started, 4),
        "analyse_and_repair": round(repaired - loaded, 4),
        "save": round(time.perf_counter() - repaired, 4),
    }
    return {
        "verdict": result.verdict,
        "reasons": list(result.reasons),
        "before": result.before.to_dict(),
        "after": result.after.to_dict(),
        "report": report,
        "units": units,
        "guess": None if guess is None else guess.to_dict(),
    }
