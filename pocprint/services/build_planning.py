"""Build preparation before slicing: which validated profiles a job may use, and how the part
is laid on the bed (oriented, centred, checked against width, depth and height).

PrusaSlicer drops a part onto the bed and centres it, but does not refuse one that is too
tall or hangs off the bed, so every candidate is checked here first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from pocprint.domain.combinations import Combination, same_material
from pocprint.domain.placement import BuildVolume, Orientation, fit_problems, turn_to_fit
from pocprint.slicing.profiles import SlicerProfile


@dataclass(frozen=True)
class Candidate:
    """A validated profile the job may be sliced with, and the build volume that limits it."""

    profile: SlicerProfile
    material: str
    volume: BuildVolume
    printers: tuple[str, ...]
    min_feature_mm: float | None = None  # the coarsest of those printers' minimum features


def candidates(
    combinations: tuple[Combination, ...],
    printers: dict,
    profiles: dict,
    device_type: str,
    material: str | None = None,
) -> list[Candidate]:
    """Every validated profile for this device type, in the ordered material, offered by at
    least one defined printer (`material` None: a case from before orders named it, any).

    The build volume is the smallest of the profile's bed and the printers' own volumes, so a
    part that fits the slice fits every printer that may print it.
    """
    found: dict[str, Candidate] = {}
    for combo in combinations:
        if material is not None and not same_material(combo.material, material):
            continue
        users = [
            d
            for d in printers.values()
            if combo.allows(d.name, d.model, frozenset(d.profiles), device_type)
        ]
        profile = profiles.get(combo.profile)
        if not users or profile is None:
            continue
        bx, by = profile.bed_size
        volumes = [BuildVolume(bx, by, profile.max_print_height)] + [
            BuildVolume(*d.build_volume) for d in users
        ]
        previous = found.get(combo.profile)
        names = tuple(sorted({d.name for d in users} | set(previous.printers if previous else ())))
        features = [d.min_feature_mm for d in users if d.min_feature_mm]
        if previous is not None and previous.min_feature_mm:
            features.append(previous.min_feature_mm)
        found[combo.profile] = Candidate(
            profile=profile,
            material=combo.material,
            volume=BuildVolume(
                min(v.x for v in volumes), min(v.y for v in volumes), min(v.z for v in volumes)
            ),
            printers=names,
            min_feature_mm=max(features) if features else None,
        )
    return [found[k] for k in sorted(found)]


def feature_warning(analysis: dict | None, candidate: Candidate) -> str | None:
    """A warning when the repaired part has walls thinner than the candidate printers'
    minimum feature size (from the mesh analysis' thin-wall estimate); it does not refuse."""
    walls = (analysis or {}).get("thin_walls") or {}
    thinnest = walls.get("min_thickness_mm")
    limit = candidate.min_feature_mm
    if thinnest is None or limit is None or thinnest >= limit:
        return None
    return (
        f"walls down to {thinnest:.2f} mm; {', '.join(candidate.printers)} reproduce "
        f"{limit:g} mm and more"
    )


def _stable_rotation(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    """Rotation that lays the part on its largest convex-hull face whose support polygon
    holds the centre of mass (so it rests without toppling), and that face's area (mm²)."""
    hull = mesh.convex_hull
    normals = np.round(hull.face_normals, 5)
    keys, inverse = np.unique(normals, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    areas = np.bincount(inverse, weights=hull.area_faces)
    centre = mesh.center_mass if mesh.is_volume else mesh.centroid
    for group in np.argsort(-areas):
        normal = keys[group] / np.linalg.norm(keys[group])
        rotation = trimesh.geometry.align_vectors(normal, [0.0, 0.0, -1.0])
        faces = hull.faces[inverse == group]
        points = trimesh.transform_points(hull.vertices[np.unique(faces)], rotation)[:, :2]
        c = trimesh.transform_points([centre], rotation)[0, :2]
        if _inside_convex(points, c):
            return rotation, float(areas[group])
    return np.eye(4), 0.0


def _inside_convex(points: np.ndarray, p: np.ndarray) -> bool:
    """Is p inside the convex hull of 2-D points (within 1 µm)?"""
    if len(points) < 3:
        return False
    centre = points.mean(axis=0)
    order = np.argsort(np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0]))
    ring = points[order]
    signs = []
    for a, b in zip(ring, np.roll(ring, -1, axis=0), strict=True):
        cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
        if abs(cross) > 1e-3:
            signs.append(cross > 0)
    return all(signs) or not any(signs)


def place(
    mesh: trimesh.Trimesh, orientation: str, volume: BuildVolume
) -> tuple[trimesh.Trimesh, dict, list[str]]:
    """Orient and centre a copy of the part for this build volume.

    Returns the placed mesh (its bounding box centred on the origin in X and Y, resting on
    Z = 0), the placement record for the job, and the reasons it does not fit (empty: fits).
    """
    mode = Orientation(orientation)
    placed = mesh.copy()
    transform = np.eye(4)
    base_area = None
    if mode is Orientation.STABLE:
        transform, base_area = _stable_rotation(placed)
        placed.apply_transform(transform)
    # A part kept as designed is never turned; a laid-down part may take a quarter turn.
    turned = mode is Orientation.STABLE and turn_to_fit(
        tuple(float(v) for v in placed.extents), volume
    )
    if turned:
        quarter = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
        placed.apply_transform(quarter)
        transform = quarter @ transform
    lower, upper = placed.bounds
    shift = trimesh.transformations.translation_matrix(
        [-(lower[0] + upper[0]) / 2, -(lower[1] + upper[1]) / 2, -lower[2]]
    )
    placed.apply_transform(shift)
    transform = shift @ transform
    extents = [round(float(v), 3) for v in placed.extents]
    record = {
        "orientation": mode.value,
        "transform": [[round(float(v), 6) for v in row] for row in transform],
        "extents_mm": extents,
        "turned_quarter": bool(turned),
        "base_area_mm2": round(base_area, 1) if base_area is not None else None,
        "build_volume_mm": [volume.x, volume.y, volume.z],
    }
    return placed, record, fit_problems(tuple(extents), volume)
