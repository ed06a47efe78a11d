"""Array primitives every mesh step shares: exact welding, face keys and areas, the sorted edge
table, components, winding, signed volume, non-manifold vertices, boundary loops, and the one
way to flip faces while keeping their edge table right. Pure numpy/scipy, no mesh library."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# A face counts as degenerate when its area is at most this fraction of the squared largest
# extent (at least 1): the same rule as the corpus manifest, so figures are comparable.
DEGENERATE_AREA_RATIO = 1e-12


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
    # Each face is linked to one face of each of its edges (whichever the assignment keeps):
    # a graph of faces only, much smaller than a face-edge graph. Labels count components in
    # the order of their lowest face, as before.
    rows = np.repeat(np.arange(n_faces), 3)
    cols = edge_id.ravel()
    if only_manifold_edges:
        keep = counts[cols] == 2
        rows, cols = rows[keep], cols[keep]
    one_face = np.zeros(len(counts), dtype=np.int64)
    one_face[cols] = rows
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, one_face[cols])), shape=(n_faces, n_faces)
    )
    n, labels = connected_components(graph, directed=False)
    return int(n), labels.astype(np.int64, copy=False)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed enclosed volume (positive when normals point outwards), centred for precision."""
    if len(faces) == 0:
        return 0.0
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    tri = vertices[faces] - centre
    det = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    return float(det.sum() / 6.0)


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
    # The two face slots of one manifold edge (no sort): one slot per edge is kept by the
    # assignment, the other is the slot that was not.
    kept = np.full(len(counts), -1, dtype=np.int64)
    kept[flat_edge[slot]] = slot
    second = slot[kept[flat_edge[slot]] != slot]
    first = kept[flat_edge[second]]
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


def flip_faces(
    faces: np.ndarray, edges: tuple[np.ndarray, np.ndarray], flip: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Reverse the winding of the ``flip`` faces; their rows of the edge table follow."""
    edge_id, counts = edges
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    edge_id = edge_id.copy()  # (a,b,c) -> (c,b,a): edges (c,b),(b,a),(a,c) = old 1, 0, 2
    edge_id[flip] = edge_id[flip][:, [1, 0, 2]]
    return faces, (edge_id, counts)
