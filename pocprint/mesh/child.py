"""Entry point of the child process that does one part's mesh work (``python -m
pocprint.mesh.child``), so a file that needs hours or gigabytes never stalls or grows the
service: the parent (``pocprint.mesh.bounded``) watches the clock and kills it if need be.

Protocol: one JSON request on stdin; JSON event lines on the original stdout ("read" with
the limits once the triangle count is known, then exactly one of "done", "too_complex",
"mesh_error", "error"). Anything a library prints goes to stderr instead.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import traceback


def _limit_memory(megabytes: float) -> None:
    """Lower the address-space limit (never raise it: the parent's ceiling holds)."""
    wanted = int(megabytes * 1_048_576)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft == resource.RLIM_INFINITY or wanted < soft:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted))


def _die_with_parent() -> None:
    """SIGKILL this child when the service that started it dies (Linux), so no orphan keeps
    working with nobody to watch its clock."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


def _plain(value):
    """numpy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def main() -> int:
    _die_with_parent()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter on stdout must not corrupt the protocol
    request = json.load(sys.stdin)

    def send(event: str, **data) -> None:
        protocol.write(json.dumps({"event": event, **data}, default=_plain) + "\n")
        protocol.flush()

    _limit_memory(request["reading"]["memory_mb"])  # before the libraries are loaded
    from pocprint.mesh.errors import MeshError, TooComplex
    from pocprint.mesh.intake import work_on_part
    from pocprint.mesh.limits import WorkLimits

    limits = WorkLimits(**request["limits"])

    def on_read(triangles: int) -> None:
        part = limits.for_part(request["file_bytes"], triangles)
        _limit_memory(part["memory_mb"])
        send("read", triangles=triangles, **part)

    try:
        payload = work_on_part(request, on_read)
    except TooComplex as exc:
        send("too_complex", message=exc.message, measured=exc.measured)
    except MemoryError:
        send("too_complex", message="memory", measured={"exceeded": "memory"})
    except MeshError as exc:
        send("mesh_error", code=exc.code, message=exc.message)
    except Exception as exc:  # reported to the parent, which retries (transient)
        if "bad_alloc" in str(exc):  # MeshLab's C++ out of memory, under our limit
            send("too_complex", message="memory", measured={"exceeded": "memory"})
            return 0
        traceback.print_exc()
        send("error", message=f"{type(exc).__name__}: {exc}")
    else:
        send("done", **payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
