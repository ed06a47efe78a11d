"""Run one part's mesh work in a child process under a wall-time and a memory limit.

The service process (web pages and worker alike) never holds the mesh: a part that passes
its limits is killed alone, gets "too complex to repair automatically" with what was
measured, and the next part goes on. The limits come from ``WorkLimits`` (file size before
the file is read, triangle count after); the memory limit is the child's address space
(RLIMIT_AS), which it sets on itself before loading any mesh library.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict

from pocprint.mesh.errors import MeshError, TooComplex
from pocprint.mesh.limits import WorkLimits

VERDICT_TEXT = "too complex to repair automatically"
_FINAL = ("done", "too_complex", "mesh_error", "error")
# glibc keeps one 64 MB arena per thread by default: address space, not memory, but
# RLIMIT_AS counts it.
_CHILD_ENV = {"MALLOC_ARENA_MAX": "2"}


def run_bounded(request: dict, limits: WorkLimits, file_bytes: int) -> dict:
    """The child's "done" payload; raises ``TooComplex`` past a limit, ``MeshError`` for a
    bad file, ``RuntimeError`` for any other failure (transient: the caller retries)."""
    reading = limits.for_part(file_bytes, None)
    message = dict(request, limits=_limits_dict(limits), reading=reading, file_bytes=file_bytes)
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "pocprint.mesh.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, **_CHILD_ENV},
        )
        events: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_events, args=(child, events), daemon=True)
        reader.start()
        try:
            child.stdin.write(json.dumps(message).encode())
            child.stdin.close()
        except BrokenPipeError:
            pass
        started = time.monotonic()
        current, final, timed_out = reading, None, False
        while final is None:
            remaining = started + current["seconds"] - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                event = events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if event is None:  # the child closed its output: ended or died
                break
            if event["event"] == "read":
                current = event
            elif event["event"] in _FINAL:
                final = event
        if timed_out or final is None:
            _kill(child)
        elapsed = time.monotonic() - started
        status, peak_mb = _reap(child)
        reader.join(5)
        errors.seek(0)
        stderr_tail = errors.read()[-2000:].decode("utf-8", "replace")
    measured = {
        "limit_s": current["seconds"],
        "memory_limit_mb": current["memory_mb"],
        "basis": current["basis"],
        "triangles": current.get("triangles"),
        "file_bytes": file_bytes,
        "elapsed_s": round(elapsed, 2),
        "peak_memory_mb": round(peak_mb),
    }
    if timed_out:
        raise TooComplex(
            f"{VERDICT_TEXT}: still working after {current['seconds']:g} s, the time limit for "
            f"this part ({current['basis']}); stopped, peak memory {peak_mb:.0f} MB",
            {**measured, "exceeded": "time"},
        )
    if final is None:
        if (status < 0 and peak_mb >= 0.5 * current["memory_mb"]) or "bad_alloc" in stderr_tail:
            raise _memory_exceeded(measured, current)
        raise RuntimeError(
            f"the mesh work stopped without a result (exit status {status}): "
            + (stderr_tail.strip().splitlines() or ["no message"])[-1]
        )
    if final["event"] == "done":
        return {k: v for k, v in final.items() if k != "event"}
    if final["event"] == "too_complex":
        if final.get("message") == "memory":
            raise _memory_exceeded(measured, current)
        raise TooComplex(
            final["message"], {**measured, **final.get("measured", {}), "exceeded": "step bound"}
        )
    if final["event"] == "mesh_error":
        raise MeshError(final["code"], final["message"])
    raise RuntimeError(final["message"])


def _memory_exceeded(measured: dict, current: dict) -> TooComplex:
    return TooComplex(
        f"{VERDICT_TEXT}: it needed more than {current['memory_mb']:g} MB, the memory limit "
        f"for this part ({current['basis']}); stopped",
        {**measured, "exceeded": "memory"},
    )


def _limits_dict(limits: WorkLimits) -> dict:
    return asdict(limits)


def _read_events(child: subprocess.Popen, events: queue.Queue) -> None:
    try:
        for line in child.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
    finally:
        events.put(None)


def _kill(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)


def _reap(child: subprocess.Popen) -> tuple[int, float]:
    """(exit status as subprocess reports it, peak resident memory in MB) of the child."""
    deadline = time.monotonic() + 30
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            _kill(child)
            deadline = time.monotonic() + 30
        time.sleep(0.05)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024
