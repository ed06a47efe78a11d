"""Run the PrusaSlicer 2.5 CLI as a separate process and judge its result strictly.

PrusaSlicer exits 0 on some broken results (``print warning: Empty layer`` still exports
G-code), so a slice only succeeds if the exit code is 0, no print warning was reported, and
the G-code has its header, time estimate, filament use and config block. The output file is
written atomically: on any failure ``output_path`` is left untouched.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pocprint.faults import kill_point
from pocprint.slicing.gcode import GcodeMetadata, read_gcode_metadata
from pocprint.slicing.profiles import SlicerProfile

ENV_BINARY = "POCPRINT_PRUSASLICER"
DEFAULT_BINARY = "prusa-slicer"
INSTALL_HINT = (
    "install it with 'apt-get install -y prusa-slicer' (Debian 12: PrusaSlicer 2.5) "
    f"or point {ENV_BINARY} at the binary"
)

# Boost log lines: "[2026-11-22 06:52:59.164041] [0x00007f96...] [error]   message"
_LOG_RE = re.compile(r"^\[[^\]]*\]\s+\[0x[0-9a-fA-F]+\]\s+\[(?P<level>\w+)\]\s*(?P<msg>.*)$")
_PROGRESS_RE = re.compile(r"^\d+\s+=>\s")
_VERSION_RE = re.compile(r"PrusaSlicer-(\d+(?:\.\d+)+)")
_NOISE_LEVELS = {"trace", "debug"}
_LOG_TAIL_LINES = 200
_MESSAGE_MAX_CHARS = 1000
_KILLED_FROM_OUTSIDE = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class SlicerError(RuntimeError):
    """Slicing failed; ``str()`` is meant for the lab technician, ``log`` for support."""

    def __init__(self, message: str, *, returncode: int | None = None, log: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log = log

    @property
    def transient(self) -> bool:
        """PrusaSlicer was killed from outside (an operator, the OOM killer, a shutdown):
        the same input may well slice next time. Its own failures (no layers, abort on an
        impossible placement, timeouts) would repeat, so they are final."""
        return self.returncode is not None and -self.returncode in _KILLED_FROM_OUTSIDE


@dataclass(frozen=True)
class SliceResult:
    """A successful slice and everything needed to trace it later."""

    gcode_path: Path
    metadata: GcodeMetadata
    profile_id: str
    profile_sha256: str
    slicer_version: str
    command: list[str] = field(hash=False)
    duration_s: float
    warnings: list[str] = field(hash=False)


def slicer_binary() -> str:
    """Resolve the PrusaSlicer executable (``$POCPRINT_PRUSASLICER`` or ``prusa-slicer``)."""
    return _resolve_binary(os.environ.get(ENV_BINARY) or DEFAULT_BINARY)


def _resolve_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SlicerError(f"PrusaSlicer executable {name!r} not found; {INSTALL_HINT}")
    return found


def _clean_lines(text: str) -> list[str]:
    """Drop the trace/debug log noise PrusaSlicer prints on every start."""
    kept = []
    for line in text.splitlines():
        match = _LOG_RE.match(line)
        if match and match.group("level").lower() in _NOISE_LEVELS:
            continue
        kept.append(line.rstrip())
    return kept


def _run_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def slicer_version(binary: str | None = None) -> str:
    """Return the PrusaSlicer version (e.g. ``2.5.0``) from the first line of ``--help``."""
    return _cached_version(_resolve_binary(binary) if binary else slicer_binary())


@functools.lru_cache(maxsize=8)
def _cached_version(binary: str) -> str:
    # 2.5 has no --version; --help prints "PrusaSlicer-2.5.0+UNKNOWN based on Slic3r" and
    # exits 0.
    with tempfile.TemporaryDirectory(prefix="pocprint-slicer-home-") as home:
        try:
            proc = subprocess.run(
                [binary, "--help"],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=60,
                env=_run_env(Path(home)),
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlicerError(f"could not run {binary!r} --help: {exc}") from exc
    for line in _clean_lines(proc.stdout):
        match = _VERSION_RE.search(line)
        if match:
            return match.group(1)
    raise SlicerError(
        f"{binary!r} does not look like PrusaSlicer (no version in --help output)",
        returncode=proc.returncode,
        log="\n".join(_clean_lines(proc.stdout + proc.stderr)[-20:]),
    )


def _print_warnings(lines: list[str]) -> list[str]:
    """Collect each multi-line ``print warning:`` block as one string."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.lower().startswith("print warning:"):
            current = [stripped[len("print warning:") :].strip()]
            blocks.append(current)
        elif current is not None:
            if (
                _PROGRESS_RE.match(stripped)
                or _LOG_RE.match(stripped)
                or stripped.startswith("Slicing result exported")
            ):
                current = None
            elif stripped:
                current.append(stripped)
    return [" ".join(part for part in block if part) for block in blocks]


def _log_warnings(lines: list[str]) -> list[str]:
    """Non-fatal ``[warning]`` log lines, kept on the result for the job record."""
    found = []
    for line in lines:
        match = _LOG_RE.match(line)
        if match and match.group("level").lower() == "warning":
            found.append(match.group("msg").strip())
    return found


def _error_message(stderr_lines: list[str], stdout_lines: list[str], returncode: int) -> str:
    """Pick the lines a technician can act on: error log lines and stderr, else stdout's last."""

    def meaningful(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            match = _LOG_RE.match(line)
            text = match.group("msg").strip() if match else line.strip()
            if text and not _PROGRESS_RE.match(text):
                out.append(text)
        return out

    logged_errors = [
        match.group("msg").strip()
        for match in map(_LOG_RE.match, stdout_lines)
        if match and match.group("level").lower() in {"error", "fatal"}
    ]
    picked = logged_errors + meaningful(stderr_lines) or meaningful(stdout_lines)[-1:]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        suffix = f"PrusaSlicer was killed by {name}"
    else:
        suffix = f"PrusaSlicer exited with code {returncode}"
    if not picked:
        return suffix
    message = " ".join(picked)
    if len(message) > _MESSAGE_MAX_CHARS:
        message = message[: _MESSAGE_MAX_CHARS - 3] + "..."
    return f"{message} ({suffix})"


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def slice_mesh(
    mesh_path: Path,
    profile: SlicerProfile,
    output_path: Path,
    *,
    center_xy: tuple[float, float] | None = None,
    timeout_s: float = 900,
    binary: str | None = None,
) -> SliceResult:
    """Slice ``mesh_path`` with ``profile`` into ``output_path``, or raise SlicerError.

    The caller must have checked bed fit and height: PrusaSlicer does not with ``--center``.
    The profile bytes are re-hashed and a private copy is sliced, so the recorded
    ``profile_sha256`` is exactly what PrusaSlicer read. ``command`` is recorded with the
    profile's own path and the final output path (the private copies are deleted).
    """
    mesh_path = Path(mesh_path).absolute()  # PrusaSlicer runs with cwd = private work dir
    output_path = Path(output_path).absolute()
    exe = _resolve_binary(binary) if binary else slicer_binary()
    version = slicer_version(exe)

    if not mesh_path.is_file():
        raise SlicerError(f"mesh file not found: {mesh_path}")
    try:
        profile_bytes = profile.path.read_bytes()
    except OSError as exc:
        raise SlicerError(f"cannot read slicer profile {profile.path}: {exc}") from exc
    if hashlib.sha256(profile_bytes).hexdigest() != profile.sha256:
        raise SlicerError(
            f"slicer profile {profile.path} changed on disk since it was loaded; reload profiles"
        )
    cx, cy = center_xy if center_xy is not None else profile.bed_center
    output_path.parent.mkdir(parents=True, exist_ok=True)

    # Private work dir next to the output: same filesystem for os.replace, and any
    # temporary files PrusaSlicer creates disappear with it.
    workdir = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.", dir=output_path.parent))
    try:
        home = workdir / "home"
        home.mkdir()
        profile_copy = workdir / f"{profile.id}.ini"
        profile_copy.write_bytes(profile_bytes)
        tmp_gcode = workdir / "out.gcode"
        command = [
            exe,
            "--load",
            str(profile_copy),
            "--export-gcode",
            "--center",
            f"{cx:.3f},{cy:.3f}",
            "--output",
            str(tmp_gcode),
            str(mesh_path),
        ]

        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=_run_env(home),
            cwd=workdir,
            start_new_session=True,  # own process group, so a timeout kills everything
        )
        kill_point("job.slicer_running")
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stdout, stderr = proc.communicate()
            log = "\n".join((_clean_lines(stdout) + _clean_lines(stderr))[-_LOG_TAIL_LINES:])
            raise SlicerError(f"slicer timed out after {timeout_s:g} s", log=log) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        duration = time.monotonic() - started

        out_lines = _clean_lines(stdout)
        err_lines = _clean_lines(stderr)
        log = "\n".join((out_lines + err_lines)[-_LOG_TAIL_LINES:])
        rc = proc.returncode

        if rc != 0:
            raise SlicerError(_error_message(err_lines, out_lines, rc), returncode=rc, log=log)
        print_warnings = _print_warnings(out_lines + err_lines)
        if print_warnings:
            raise SlicerError(
                "PrusaSlicer print warning: " + " | ".join(print_warnings),
                returncode=rc,
                log=log,
            )
        if not tmp_gcode.is_file() or tmp_gcode.stat().st_size == 0:
            raise SlicerError(
                "PrusaSlicer reported success but wrote no G-code", returncode=rc, log=log
            )

        metadata = read_gcode_metadata(tmp_gcode)
        missing = []
        if metadata.slicer_name != "PrusaSlicer" or not metadata.slicer_version:
            missing.append("'; generated by PrusaSlicer' header")
        if metadata.estimated_time_s is None:
            missing.append("estimated printing time")
        if not metadata.filament_mm or metadata.filament_mm <= 0:
            missing.append("filament used [mm]")
        if not metadata.config:
            missing.append("prusaslicer_config block")
        if missing:
            raise SlicerError(
                "PrusaSlicer wrote incomplete G-code (missing " + ", ".join(missing) + ")",
                returncode=rc,
                log=log,
            )

        os.replace(tmp_gcode, output_path)
        return SliceResult(
            gcode_path=output_path,
            metadata=metadata,
            profile_id=profile.id,
            profile_sha256=profile.sha256,
            slicer_version=version,
            command=[
                str(profile.path)
                if arg == str(profile_copy)
                else str(output_path)
                if arg == str(tmp_gcode)
                else arg
                for arg in command
            ],
            duration_s=duration,
            warnings=_log_warnings(out_lines + err_lines),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
