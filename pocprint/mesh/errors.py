"""The one exception the mesh adapters raise for bad input, so callers can map it to a message."""

from __future__ import annotations

MESH_ERROR_CODES = frozenset(
    {
        "empty",
        "too_large",
        "truncated",
        "count_mismatch",
        "not_a_mesh",
        "unsupported_format",
        "nan_coordinates",
        "no_triangles",
        "all_degenerate",
        "bad_face_index",
        "bad_3mf",
    }
)


class MeshError(ValueError):
    """A file that cannot be accepted as a mesh.

    ``code`` is stable and machine-readable (one of ``MESH_ERROR_CODES``); ``str(error)`` is a
    specific sentence a lab technician can act on (what is wrong and what to do about it).
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in MESH_ERROR_CODES:
            raise ValueError(f"unknown MeshError code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"MeshError({self.code!r}, {self.message!r})"

    def __reduce__(self):  # keep code and message when pickled to/from a worker process
        return (type(self), (self.code, self.message))


class TooComplex(Exception):
    """Mesh work that went past a bound (wall time, memory, or a step's own bound).

    Not a bad file: a sound but unusual mesh may hit it too, so a person repairs it by hand.
    ``measured`` holds the figures (what was measured, and the limit it passed) for the
    part's report; ``str(error)`` is the sentence shown to the technician.
    """

    def __init__(self, message: str, measured: dict) -> None:
        super().__init__(message)
        self.message = message
        self.measured = dict(measured)

    def __str__(self) -> str:
        return self.message
