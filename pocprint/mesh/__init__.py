"""Mesh intake for pocprint: strict reading, topology analysis, repair and fidelity measurement.

Kept as an adapter layer (``read``, ``analyse``, ``repair``) so services never touch trimesh,
pymeshlab or manifold3d directly; every failure a technician can act on is a ``MeshError``.
"""
