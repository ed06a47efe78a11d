"""Topology and size figures of a triangle mesh, computed with numpy in one pass.

trimesh's cached properties (``is_watertight`` alone takes ~2 s on 1M triangles) are too slow
for the repair report, so the counts here are derived from one sorted edge table. All figures
are measured after exact vertex welding, which is what a repair tool and a slicer see.

Two figures are optional because they cost more: self-intersecting faces (MeshLab, ~1.5-2 s
per million triangles) and the thin-wall estimate (rays cast from a bounded sample of faces,
~1.5 s per million triangles). ``analyse`` computes them only when asked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pocprint.mesh.ray import RayCaster

# A face counts as degenerate when its area is at most this fraction of the squared largest
# extent (at least 1): the same rule as the corpus manifest, so figures are comparable.
DEGENERATE_AREA_RATIO = 1e-12

# Thin-wall estimate: at most this many rays (one per sampled face), seeded, so the cost is
# bounded on any mesh and the same file always gives the same figures.
THIN_WALL_SAMPLES = 20_000
THIN_WALL_SEED = 0
# Warn when more than this share of the (sampled) surface area is thinner than the minimum.
THIN_WALL_WARN_SHARE = 0.01
# Rays look this many minimum-feature sizes deep; thicker walls are reported as "thicker".
THIN_WALL_DEPTH_FACTOR = 3.0
# Grid look-ups plus candidate (ray, face) pairs per thin-wall estimate (a few seconds).
_WORK_BUDGET = 15_000_000


@dataclass(frozen=True)
class MeshAnalysis:
    """What a technician needs to judge a mesh before printing; lengths in file units (mm)."""

    triangles: int
    vertices: int
    shells: int
    boundary_edges: int
    non_manifold_edges: int
    watertight: bool
    winding_consistent: bool
    volume_mm3: float | None
    area_mm2: float
    bbox_min: tuple[float, float, float]
    bbox_max: tuple[float, float, float]
    extents: tuple[float, float, float]
    duplicate_faces: int
    degenerate_faces: int
    # Added later; defaults keep older positional construction and stored reports valid.
    # Vertices where separate surface fans meet in one point ("bow-tie"); vertices that
    # only lie on a non-manifold edge are not counted again (MeshLab's rule).
    non_manifold_vertices: int = 0
    # Boundary loops (holes, or the rim of an open sheet) and the edge count of the largest.
    holes: int = 0
    largest_hole_edges: int = 0
    inside_out: bool = False  # closed, but the signed volume is negative
    self_intersecting_faces: int | None = None  # None: not checked (optional, costly)
    thin_walls: dict | None = None  # thin_wall_warning() result; None: not checked

    def to_dict(self) -> dict:
        """Plain JSON-ready values (lists instead of tuples, Python floats and ints)."""
        out = asdict(self)
        for key in ("bbox_min", "bbox_max", "extents"):
            out[key] = [float(x) for x in out[key]]
        return out


def group_identical_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label rows of an (n, 3) float array by bit-exact equality (``-0.0`` equals ``0.0``).

    Returns (label per row, index of each label's first row); labels are numbered in order
    of first occurrence. Rows are hashed and sorted once (a 3-key lexsort is ~10x slower on
    millions of vertices); every hash group is verified, with an exact fallback on collision.
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bits = np.ascontiguousarray(np.asarray(points, dtype=np.float64) + 0.0).view(np.uint64)
    bits = bits.reshape(n, 3)
    with np.errstate(over="ignore"):
        h = bits[:, 0] * np.uint64(0x9E3779B97F4A7C15)
        h ^= bits[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)
        h = (h ^ (h >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
        h ^= bits[:, 2] * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    order = np.argsort(h)
    sorted_h = h[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = sorted_h[1:] != sorted_h[:-1]
    group_sorted = np.cumsum(starts) - 1
    same = ~starts[1:]  # rows sharing a hash with the previous row must be identical
    collision = False
    for column in range(3):
        values = bits[:, column][order]
        collision |= not np.array_equal(values[1:][same], values[:-1][same])
    if collision:
        order = np.lexsort((bits[:, 2], bits[:, 1], bits[:, 0]))
        sorted_bits = bits[order]
        starts[1:] = np.any(sorted_bits[1:] != sorted_bits[:-1], axis=1)
        group_sorted = np.cumsum(starts) - 1
    first = np.minimum.reduceat(order, np.flatnonzero(starts))
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    labels = np.empty(n, dtype=np.int64)
    labels[order] = rank[group_sorted]
    return labels, np.sort(first)


def weld_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices with bit-identical positions and drop unreferenced ones.

    STL stores every triangle with its own three corners, so without this no two triangles
    share an edge. Only exact duplicates are merged (``-0.0`` equals ``0.0``): merging by a
    tolerance would change the geometry the clinician approved. The first occurrence of each
    position keeps its relative order, so a mesh without duplicates comes back unchanged.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros((0, 3), dtype=np.float64), np.zeros((0, 3), dtype=np.int64)
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    used_idx = np.flatnonzero(used)
    pts = vertices[used_idx] + 0.0  # turns -0.0 into 0.0
    labels, first = group_identical_rows(pts)
    new_index = np.full(len(vertices), -1, dtype=np.int64)
    new_index[used_idx] = labels
    return pts[first], new_index[faces]


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(id per value, count per id) with ids in sorted value order, for 1-D integer keys.

    Sort-based: numpy 2.4's hash-based ``np.unique(return_inverse=True)`` is ~4x slower on
    the millions of edge keys of a large mesh.
    """
    values = np.asarray(values).ravel()
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(values)
    sorted_values = values[order]
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    ids = np.empty(len(values), dtype=np.int64)
    ids[order] = np.cumsum(starts) - 1
    counts = np.diff(np.append(np.flatnonzero(starts), len(values)))
    return ids, counts


def isin_sorted(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``np.isin`` for 1-D integer keys via one sort and a binary search."""
    if len(reference) == 0:
        return np.zeros(len(values), dtype=bool)
    ref = np.sort(reference)
    pos = np.minimum(np.searchsorted(ref, values), len(ref) - 1)
    return ref[pos] == values


def face_keys(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """One integer per face, equal for faces with the same three vertices in any order."""
    s = np.sort(faces, axis=1)
    n = np.int64(max(n_vertices, 1))
    if n_vertices < 2**21:
        return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]
    pair_id = unique_inverse(s[:, 0] * n + s[:, 1])[0]  # two stages keep it exact in int64
    return pair_id * n + s[:, 2]


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of each triangle."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return 0.5 * np.sqrt(np.einsum("ij,ij->i", cross, cross))


def degenerate_mask(vertices: np.ndarray, faces: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Faces with a repeated corner or (almost) zero area: they carry no surface.

    ``vertices`` must all be referenced (as after ``weld_exact``): they set the size scale.
    """
    if len(faces) == 0:
        return np.zeros(0, dtype=bool)
    span = float(np.ptp(vertices, axis=0).max())
    limit = DEGENERATE_AREA_RATIO * max(1.0, span) ** 2
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
    repeated |= faces[:, 0] == faces[:, 2]
    return repeated | (areas <= limit)


def edge_table(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges of all faces: (edge id of each face's three edges, use count per edge)."""
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = directed.min(axis=1) * np.int64(n_vertices) + directed.max(axis=1)
    edge_id, counts = unique_inverse(key)
    return edge_id.reshape(-1, 3), counts


def winding_consistent(faces: np.ndarray, edge_id: np.ndarray, n_edges: int) -> bool:
    """True when every edge shared by exactly two faces is traversed in opposite directions.

    Faces with a repeated corner have no orientation and are left out.
    """
    proper = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
    proper &= faces[:, 0] != faces[:, 2]
    ids = edge_id[proper].ravel()
    f = faces[proper]
    sign = np.where(f[:, [0, 1, 2]] < f[:, [1, 2, 0]], 1, -1).ravel()
    uses = np.bincount(ids, minlength=n_edges)
    sign_sum = np.bincount(ids, weights=sign, minlength=n_edges)
    return bool(np.all(sign_sum[uses == 2] == 0))


def face_components(
    edge_id: np.ndarray, counts: np.ndarray, only_manifold_edges: bool = True
) -> tuple[int, np.ndarray]:
    """Groups of faces joined across edges: (count, label per face).

    By default faces are joined only across edges shared by exactly two faces (trimesh's
    ``split`` rule, used by the corpus manifest), so parts touching at a non-manifold edge
    count as separate shells.
    """
    n_faces = len(edge_id)
    if n_faces == 0:
        return 0, np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(n_faces), 3)
    cols = edge_id.ravel()
    if only_manifold_edges:
        keep = counts[cols] == 2
        rows, cols = rows[keep], cols[keep]
    size = n_faces + len(counts)
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, n_faces + cols)), shape=(size, size)
    )
    _, labels = connected_components(graph, directed=False)
    present = np.zeros(labels.max() + 1, dtype=bool)
    present[labels[:n_faces]] = True
    compact = (np.cumsum(present) - 1)[labels[:n_faces]]
    return int(present.sum()), compact


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive when normals point outwards), centred for precision."""
    if len(faces) == 0:
        return 0.0
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    tri = vertices[faces] - centre
    det = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    return float(det.sum() / 6.0)


def analyse(
    mesh: trimesh.Trimesh,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> MeshAnalysis:
    """Measure a mesh (exactly welded first); volume only when it is watertight.

    ``self_intersections`` adds MeshLab's count of self-intersecting faces; ``min_feature_mm``
    adds the thin-wall estimate (coordinates must then be in mm). Both are off by default
    because they cost seconds on large meshes.
    """
    vertices, faces = weld_exact(mesh.vertices, mesh.faces)
    return analyse_welded(
        vertices, faces, self_intersections=self_intersections, min_feature_mm=min_feature_mm
    )


def analyse_welded(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> MeshAnalysis:
    """``analyse`` for arrays already welded by ``weld_exact``; ``edges`` from ``edge_table``
    may be passed when the caller has it (it is the costly part on large meshes)."""
    return analyse_welded_details(
        vertices, faces, edges, self_intersections=self_intersections, min_feature_mm=min_feature_mm
    )[0]


def analyse_welded_details(
    vertices: np.ndarray,
    faces: np.ndarray,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    self_intersections: bool = False,
    min_feature_mm: float | None = None,
) -> tuple[MeshAnalysis, dict]:
    """``analyse_welded`` plus the intermediate arrays, so a caller (the repair) can reuse
    them instead of computing them again: ``edges`` (``edge_table``), ``shell_labels`` (shell
    of each face, shells joined across manifold edges only), ``shell_faces`` (face count
    per shell) and ``non_manifold_vertex_mask``."""
    if len(faces) == 0:
        zero = (0.0, 0.0, 0.0)
        empty = MeshAnalysis(0, 0, 0, 0, 0, False, True, None, 0.0, zero, zero, zero, 0, 0)
        none = np.zeros(0, dtype=np.int64)
        return empty, {
            "edges": (none.reshape(0, 3), none),
            "shell_labels": none,
            "shell_faces": none,
        }
    areas = face_areas(vertices, faces)
    degenerate = int(degenerate_mask(vertices, faces, areas).sum())
    edge_id, counts = edges if edges is not None else edge_table(faces, len(vertices))
    boundary = int((counts == 1).sum())
    non_manifold = int((counts > 2).sum())
    watertight = boundary == 0 and non_manifold == 0
    shells, shell_labels = face_components(edge_id, counts)
    unique_faces = len(unique_inverse(face_keys(faces, len(vertices)))[1])
    loops = boundary_loops(faces, (edge_id, counts)) if boundary else []
    volume = signed_volume(vertices, faces) if watertight else None
    lo = vertices.min(axis=0)
    hi = vertices.max(axis=0)
    pinched = non_manifold_vertex_mask(faces, (edge_id, counts), len(vertices))
    details = {
        "edges": (edge_id, counts),
        "shell_labels": shell_labels,
        "shell_faces": np.bincount(shell_labels, minlength=shells),
        "non_manifold_vertex_mask": pinched,
    }
    analysis = MeshAnalysis(
        triangles=len(faces),
        vertices=len(vertices),
        shells=int(shells),
        boundary_edges=boundary,
        non_manifold_edges=non_manifold,
        watertight=bool(watertight),
        winding_consistent=winding_consistent(faces, edge_id, len(counts)),
        volume_mm3=volume,
        area_mm2=float(areas.sum()),
        bbox_min=tuple(float(x) for x in lo),
        bbox_max=tuple(float(x) for x in hi),
        extents=tuple(float(x) for x in hi - lo),
        duplicate_faces=int(len(faces) - unique_faces),
        degenerate_faces=degenerate,
        non_manifold_vertices=int(pinched.sum()),
        holes=len(loops),
        largest_hole_edges=loops[0] if loops else 0,
        inside_out=bool(volume is not None and volume < 0),
        self_intersecting_faces=(
            count_self_intersections(vertices, faces) if self_intersections else None
        ),
        thin_walls=(
            thin_walls(vertices, faces, min_feature_mm) if min_feature_mm is not None else None
        ),
    )
    return analysis, details


def non_manifold_vertex_mask(
    faces: np.ndarray, edges: tuple[np.ndarray, np.ndarray], n_vertices: int
) -> np.ndarray:
    """Vertices whose incident faces form more than one fan ("bow-tie" or pinch vertices).

    Corners of the same vertex are linked across each edge shared by exactly two faces; a
    manifold vertex has all its corners in one linked group. Vertices on a non-manifold edge
    are left out (the edge is already counted), which reproduces MeshLab's
    ``non_two_manifold_vertices`` on every corpus file. Faces with a repeated corner carry no
    surface and are ignored.
    """
    edge_id, counts = edges
    mask = np.zeros(n_vertices, dtype=bool)
    if len(faces) == 0:
        return mask
    proper = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
    proper &= faces[:, 0] != faces[:, 2]
    flat_edge = edge_id.ravel()
    slot = np.flatnonzero((counts[flat_edge] == 2) & np.repeat(proper, 3))
    slot = slot[np.argsort(flat_edge[slot], kind="stable")]
    pair = np.flatnonzero(flat_edge[slot[1:]] == flat_edge[slot[:-1]])
    first, second = slot[pair], slot[pair + 1]  # the two face slots of one manifold edge
    flat = faces.ravel()
    first_next = first - first % 3 + (first % 3 + 1) % 3  # slot of the edge's other end
    second_next = second - second % 3 + (second % 3 + 1) % 3
    same_start = flat[first] == flat[second]
    a = np.concatenate([first, first_next])
    b = np.concatenate(
        [np.where(same_start, second, second_next), np.where(same_start, second_next, second)]
    )
    n_corners = len(flat)
    graph = coo_matrix(
        (np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_corners, n_corners)
    ).tocsr()
    n_groups, labels = connected_components(graph, directed=False)
    corners = np.flatnonzero(np.repeat(proper, 3))
    group_vertex = np.full(n_groups, -1, dtype=np.int64)
    group_vertex[labels[corners]] = flat[corners]
    fans = np.bincount(group_vertex[group_vertex >= 0], minlength=n_vertices)
    mask = fans > 1
    bad = np.flatnonzero(counts[flat_edge] > 2)  # slots of non-manifold edges
    if len(bad):
        mask[flat[bad]] = False
        mask[flat[bad - bad % 3 + (bad % 3 + 1) % 3]] = False
    return mask


def boundary_loops(faces: np.ndarray, edges: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Edge count of each open border (hole or open rim), largest first.

    Borders are the connected groups of boundary edges; two holes touching at one vertex
    count as one border.
    """
    edge_id, counts = edges
    on_border = counts[edge_id] == 1
    if not on_border.any():
        return []
    pairs = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2)[on_border]
    nodes, inverse = np.unique(pairs.ravel(), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(inverse), dtype=np.int8), (inverse[:, 0], inverse[:, 1])),
        shape=(len(nodes), len(nodes)),
    )
    _, labels = connected_components(graph, directed=False)
    return sorted(np.bincount(labels[inverse[:, 0]]).tolist(), reverse=True)


def count_self_intersections(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Faces that intersect another face of the mesh (MeshLab), measured on a copy.

    Self-intersections do not stop a watertight check but make slicers fill or drop regions
    unpredictably. pymeshlab is imported here so reading files (web requests) stays light.
    """
    if len(faces) == 0:
        return 0
    return int(self_intersection_mask(vertices, faces).sum())


def self_intersection_mask(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per face: does it intersect another face (MeshLab's rule, measured on a copy)?

    MeshLab tests every pair of faces whose bounding boxes overlap, once, the lower face
    index first; faces sharing vertices get its special shared-vertex/edge tests.
    """
    if len(faces) == 0:
        return np.zeros(0, dtype=bool)
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(
        pymeshlab.Mesh(
            vertex_matrix=np.asarray(vertices, dtype=np.float64),
            face_matrix=np.asarray(faces, dtype=np.int32),
        )
    )
    return select_self_intersections(ms)


def select_self_intersections(ms) -> np.ndarray:
    """Run MeshLab's self-intersection selection on the current mesh of a MeshSet and return
    the per-face mask; the selection is cleared again, so later filters see none."""
    ms.compute_selection_by_self_intersections_per_face()
    mask = np.asarray(ms.current_mesh().face_selection_array(), dtype=bool).copy()
    ms.set_selection_none(allfaces=True, allverts=True)
    return mask


def thin_wall_warning(
    mesh: trimesh.Trimesh,
    min_feature_mm: float,
    *,
    max_samples: int = THIN_WALL_SAMPLES,
    warn_share: float = THIN_WALL_WARN_SHARE,
    seed: int = THIN_WALL_SEED,
) -> dict:
    """Estimate where walls are thinner than the printer's minimum feature size (mm).

    A warning for the technician, never a gate: the local wall thickness is measured by a
    ray cast inwards (along the negative face normal) from the centroid of each sampled face
    to the next surface. See ``thin_walls`` for the figures returned.
    """
    return thin_walls(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int64),
        min_feature_mm,
        max_samples=max_samples,
        warn_share=warn_share,
        seed=seed,
    )


def thin_walls(
    vertices: np.ndarray,
    faces: np.ndarray,
    min_feature_mm: float,
    *,
    max_samples: int = THIN_WALL_SAMPLES,
    warn_share: float = THIN_WALL_WARN_SHARE,
    seed: int = THIN_WALL_SEED,
) -> dict:
    """``thin_wall_warning`` on arrays.

    Up to ``max_samples`` faces are drawn with probability proportional to their area
    (seeded; every face when the mesh has fewer), so ``thin_share`` estimates the share of
    surface area whose wall is thinner than ``min_feature_mm``. Rays look
    ``THIN_WALL_DEPTH_FACTOR`` x ``min_feature_mm`` deep: walls beyond that count as thick
    and ``min_thickness_mm`` is None when no ray hit anything within that depth. Overlapping
    parts and near-coincident surfaces also measure as thin.

    trimesh's ray intersector needs rtree or embree, neither of which is a dependency here,
    so the cast is done in numpy: candidate faces come from a hashed grid of face centroids
    (one per face-size class), Moller-Trumbore tests them. Rays are processed in random
    batches under a work budget (grid look-ups plus candidate pairs), so a pathological mesh
    (e.g. a part still in inches, smaller than the minimum feature) uses fewer samples
    instead of minutes; ``samples`` and ``sampling`` say how many were used.
    """
    started = time.perf_counter()
    min_feature_mm = float(min_feature_mm)
    if not np.isfinite(min_feature_mm) or min_feature_mm <= 0:
        raise ValueError(f"min_feature_mm must be a positive number of mm, got {min_feature_mm}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    depth = THIN_WALL_DEPTH_FACTOR * min_feature_mm
    result = {
        "min_feature_mm": min_feature_mm,
        "search_depth_mm": round(depth, 6),
        "method": "inward ray from face centroids along the negative face normal",
        "samples": 0,
        "sampling": "none",
        "thin_share": 0.0,
        "thin_area_mm2_estimate": 0.0,
        "min_thickness_mm": None,
        "warn_share": warn_share,
        "warning": None,
    }
    tri = vertices[faces]
    if len(faces):
        e1 = tri[:, 1] - tri[:, 0]
        e2 = tri[:, 2] - tri[:, 0]
        cross = np.cross(e1, e2)
        double_area = np.sqrt(np.einsum("ij,ij->i", cross, cross))
        span = float(np.ptp(vertices, axis=0).max())
        valid = double_area > 2 * DEGENERATE_AREA_RATIO * max(1.0, span) ** 2
    if len(faces) == 0 or not valid.any():
        result["duration_s"] = round(time.perf_counter() - started, 4)
        return result
    usable = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    if len(usable) <= max_samples:
        draws = rng.permutation(usable)
        weights = double_area[draws]
        result["sampling"] = "every face, weighted by area"
    else:
        probability = double_area[usable] / double_area[usable].sum()
        draws = rng.choice(usable, size=max_samples, p=probability)
        weights = np.ones(len(draws))
        result["sampling"] = f"{max_samples} area-weighted random draws (seed {seed})"
    caster = RayCaster(tri, e1, e2, valid, depth, eps=1e-9 * max(1.0, span))
    origins = tri[draws].mean(axis=1)
    directions = -cross[draws] / double_area[draws, None]
    hit_distance = np.full(len(draws), np.inf)
    done = 0
    batch = 512  # the first batch measures the cost per ray; later ones are sized from it
    while done < len(draws) and caster.work < _WORK_BUDGET:
        stop = min(len(draws), done + batch)
        hit_distance[done:stop] = caster.first_hits(
            origins[done:stop], directions[done:stop], draws[done:stop]
        )
        done = stop
        per_ray = max(caster.work / done, 1.0)
        batch = int(np.clip((_WORK_BUDGET - caster.work) / per_ray, 256, 8192))
    if done < len(draws):
        result["sampling"] += f"; stopped after {done} rays (work budget reached)"
    hit_distance, weights = hit_distance[:done], weights[:done]
    thin = hit_distance < min_feature_mm
    share = float(weights[thin].sum() / weights.sum())
    measured = hit_distance[np.isfinite(hit_distance)]
    result.update(
        samples=done,
        thin_share=share,
        thin_area_mm2_estimate=share * float(double_area[usable].sum()) / 2.0,
        min_thickness_mm=float(measured.min()) if len(measured) else None,
    )
    if share > warn_share:
        result["warning"] = (
            f"About {share:.1%} of the surface has walls thinner than the minimum feature "
            f"size of {min_feature_mm:g} mm (thinnest measured {measured.min():.2f} mm; "
            f"estimated from {done} sampled faces). Such walls may not print or may "
            "break: thicken them in the design software or check the printer's limits. "
            "Overlapping parts also show up here."
        )
    result["duration_s"] = round(time.perf_counter() - started, 4)
    return result
