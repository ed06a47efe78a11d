"""Mesh repair acceptance benchmark: pocprint against bare pymeshlab, PrusaSlicer, admesh and
pymeshfix, on every corpus mesh plus two large subdivided meshes (~1M and ~2M triangles).

Run from the repository root::

    .venv/bin/python -m bench.mesh

Every tool x file runs in a fresh child process with a timeout, under GNU time, whose peak
RSS figure is that command's alone (see ``run_child``). Every output is then checked here, in the
parent, the same way for every tool (``independent_check``): trimesh load (process=False),
exact weld, watertight, two-manifold (edges and vertex fans), winding, volume, manifold3d.
Writes bench/results/mesh.json and prints a short table. Scratch files go to bench/work/mesh.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import manifold3d
import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parent.parent
MESHES = ROOT.parent / "shared" / "data" / "meshes"
WORK = ROOT / "bench" / "work" / "mesh"
RESULTS = ROOT / "bench" / "results" / "mesh.json"
VENV_PYMESHFIX = ROOT / "bench" / "work" / "venv-pymeshfix"
PYTHON = ROOT / ".venv" / "bin" / "python"
GNU_TIME = "/usr/bin/time"
# Debian packages the benchmark runs (installed with apt-get when missing and root).
APT_TOOLS = {"prusa-slicer": "prusa-slicer", "admesh": "admesh", GNU_TIME: "time"}
TIMEOUT_S = 300
FORMATS = (".stl", ".obj", ".ply", ".3mf")
TOOLS = ("pocprint", "pymeshlab", "prusaslicer", "admesh", "pymeshfix")
BASELINES = ("pymeshlab", "prusaslicer", "admesh", "pymeshfix")
# Large inputs made at run time: (name, corpus source, subdivision rounds).
LARGE = (
    ("large_1m_femur_distal_sub3", "anat_femur_distal_ssm.ply", 3),
    ("large_2m_skull_makerbot_sub3", "anat_skull_makerbot.stl", 3),
)
ADMESH_ARGS = (
    "--exact",
    "--nearby",
    "--remove-unconnected",
    "--fill-holes",
    "--normal-directions",
    "--normal-values",
)
SPEED_TARGET_RATIO = 1.5
MEMORY_TARGET_MB = 2048
IMPORT_RETRIES = 3
IMPORT_RETRY_WAIT_S = 60


# ----------------------------------------------------------------------------- child processes


def run_child(cmd: list[str], timeout: float = TIMEOUT_S, log_stem: Path | None = None) -> dict:
    """Run one command in its own process group; wall time, rc and that command's peak RSS.

    The peak RSS comes from GNU time (``/usr/bin/time -f %M``), which forks the command
    itself. It cannot come from this process's ``wait4``/``RUSAGE_CHILDREN``: a child forked
    from a Python process inherits that process's RSS high-water mark through exec (measured:
    ``true`` forked from a 2.4 GB parent reports 2.4 GB), and this parent holds the large
    meshes it checks. On timeout the whole group is killed (and no peak is recorded).
    """
    out_path = log_stem.with_suffix(".stdout") if log_stem else None
    err_path = log_stem.with_suffix(".stderr") if log_stem else None
    time_path = WORK / "logs" / f".time.{os.getpid()}"
    time_path.unlink(missing_ok=True)
    cmd = [GNU_TIME, "-f", "%M", "-o", str(time_path), *cmd]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(out_path, "wb")) if out_path else subprocess.DEVNULL
        err = stack.enter_context(open(err_path, "wb")) if err_path else subprocess.DEVNULL
        reaped: dict = {}
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )

        def reap() -> None:
            _, status = os.waitpid(proc.pid, 0)
            reaped.update(status=status, end=time.perf_counter())

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        waiter.join(timeout)
        timed_out = waiter.is_alive()
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            waiter.join()
    status = reaped["status"]
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped here; keeps Popen from waiting again
    peak_kb = None
    if time_path.exists():  # "Command exited with non-zero status N" may come first
        lines = time_path.read_text().split()
        if lines and lines[-1].isdigit():
            peak_kb = int(lines[-1])
        time_path.unlink()
    result = {
        "rc": rc,
        "timed_out": timed_out,
        "process_wall_s": round(reaped["end"] - start, 4),
        "peak_rss_mb": None if peak_kb is None else round(peak_kb / 1024.0, 1),
    }
    if out_path:
        result["stdout"] = out_path.read_text(errors="replace")
        result["stderr"] = err_path.read_text(errors="replace")
    return result


def _tail(text: str, n: int = 600) -> str:
    text = "\n".join(
        line for line in text.splitlines() if "Initializing StaticPrintConfigs" not in line
    ).strip()
    return text[-n:]


# ----------------------------------------------------------------------------- independent check


def _weld_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertex positions (-0.0 equals 0.0)."""
    v = np.ascontiguousarray(vertices, dtype=np.float64) + 0.0
    if len(v) == 0:
        return v, faces
    bits = v.view(np.uint64).reshape(-1, 3)
    order = np.lexsort((bits[:, 2], bits[:, 1], bits[:, 0]))
    ordered = bits[order]
    new = np.ones(len(v), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    ids = np.cumsum(new) - 1
    inverse = np.empty(len(v), dtype=np.int64)
    inverse[order] = ids
    return v[order[new]], inverse[faces]


def _non_manifold_vertices(
    faces: np.ndarray, key: np.ndarray, counts: np.ndarray, n_vertices: int
) -> int:
    """Vertices whose incident faces form more than one fan.

    Nodes are face corners; two corners at the same vertex are joined when their faces share
    an edge through that vertex used by exactly two faces. A manifold vertex has one fan.
    """
    n_corners = faces.size
    order = np.argsort(key, kind="stable")
    paired = np.flatnonzero(counts[order] == 2)  # groups of exactly two, adjacent when sorted
    h1, h2 = order[paired[0::2]], order[paired[1::2]]
    flat = faces.ravel()

    def ends(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        face, k = h // 3, h % 3
        return 3 * face + k, 3 * face + (k + 1) % 3  # corner at the start, at the end

    s1, e1 = ends(h1)
    s2, e2 = ends(h2)
    same = flat[s1] == flat[s2]  # both half-edges run the same way (inconsistent winding)
    a = np.concatenate([s1, e1])
    b = np.concatenate([np.where(same, s2, e2), np.where(same, e2, s2)])
    graph = coo_matrix(
        (np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_corners, n_corners)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    pairs = np.unique(flat.astype(np.int64) * n_corners + labels)
    fans = np.bincount(pairs // n_corners, minlength=n_vertices)
    return int((fans > 1).sum())


def _shells(faces: np.ndarray, key: np.ndarray) -> int:
    """Edge-connected face groups (faces sharing any edge, manifold or not)."""
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    a, b = order[same] // 3, order[same + 1] // 3
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(faces), len(faces)))
    return int(connected_components(graph, directed=False)[0])


def _geometry(v: np.ndarray, f: np.ndarray) -> dict:
    tri = v[f]
    area = float(
        np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    )
    used = v[np.unique(f)]
    return {"area": area / 2.0, "bbox_diagonal": float(np.linalg.norm(np.ptp(used, axis=0)))}


def describe_input(path: Path) -> dict:
    """Triangles, shells, area and size of an input, read the way outputs are read."""
    mesh = trimesh.load(str(path), process=False, force="mesh")
    v, f = _weld_exact(np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64))
    half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = half.min(axis=1) * len(v) + half.max(axis=1)
    return {"triangles": len(f), "shells": _shells(f, key), **_geometry(v, f)}


def independent_check(path: Path) -> dict:
    """The same check for every tool's output (never the tool's own opinion)."""
    t0 = time.perf_counter()
    info: dict = {"loaded": False, "passes": False, "passes_strict": False}
    if not path.exists() or path.stat().st_size == 0:
        info["error"] = "no output file"
        return info
    try:
        mesh = trimesh.load(str(path), process=False, force="mesh")
    except Exception as exc:  # an unreadable output fails the check
        info["error"] = f"trimesh could not load it: {type(exc).__name__}: {exc}"
        return info
    raw_v = np.asarray(mesh.vertices, dtype=np.float64)
    raw_f = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    info["loaded"] = True
    info["triangles"] = len(raw_f)
    if len(raw_f) == 0:
        info["error"] = "no triangles"
        return info
    finite = bool(np.isfinite(raw_v).all())
    v, f = _weld_exact(raw_v, raw_f)
    nv = len(v)
    info["vertices_welded"] = nv
    info["finite"] = finite
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    half = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    lo, hi = half.min(axis=1), half.max(axis=1)
    key = lo * nv + hi
    _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    counts = cnt[inv]
    directed = half[:, 0] * nv + half[:, 1]
    info["index_degenerate_faces"] = int(degenerate.sum())
    info["boundary_edges"] = int((cnt == 1).sum())
    info["non_manifold_edges"] = int((cnt > 2).sum())
    info["watertight"] = bool((cnt == 2).all() and not degenerate.any())
    nm_vertices = _non_manifold_vertices(f, key, counts, nv)
    info["non_manifold_vertices"] = nm_vertices
    info["two_manifold"] = bool(
        info["non_manifold_edges"] == 0 and nm_vertices == 0 and not degenerate.any()
    )
    info["winding_consistent"] = bool(np.unique(directed).size == len(directed))
    tri = v[f] - 0.5 * (v.min(axis=0) + v.max(axis=0))
    volume = float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
    info["signed_volume"] = volume if np.isfinite(volume) else None
    info["shells"] = _shells(f, key)
    if finite:
        info.update(_geometry(v, f))
    info["volume_positive"] = bool(np.isfinite(volume) and volume > 0)
    if finite:
        solid = manifold3d.Manifold(
            manifold3d.Mesh(
                vert_properties=np.ascontiguousarray(v, dtype=np.float32),
                tri_verts=np.ascontiguousarray(f, dtype=np.uint32),
            )
        )
        info["manifold3d_status"] = solid.status().name
        info["manifold3d_empty"] = bool(solid.is_empty())
    else:
        info["manifold3d_status"] = "not run: non-finite coordinates"
        info["manifold3d_empty"] = True
    info["manifold3d_ok"] = info["manifold3d_status"] == "NoError"
    info["passes"] = bool(
        finite and info["watertight"] and info["two_manifold"] and info["manifold3d_ok"]
    )
    info["passes_strict"] = bool(
        info["passes"] and info["winding_consistent"] and info["volume_positive"]
    )
    info["check_s"] = round(time.perf_counter() - t0, 3)
    return info


# ----------------------------------------------------------------------------- inputs


def write_binary_stl(vertices: np.ndarray, faces: np.ndarray, path: Path) -> None:
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    record = np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")])
    data = np.zeros(len(tri), dtype=record)
    data["n"] = normals
    data["v"] = tri
    with open(path, "wb") as fh:
        fh.write(b"pocprint bench".ljust(80, b" "))
        fh.write(np.uint32(len(tri)).tobytes())
        fh.write(data.tobytes())


def make_large_inputs(folder: Path) -> list[dict]:
    made = []
    for name, source, rounds in LARGE:
        t0 = time.perf_counter()
        mesh = trimesh.load(str(MESHES / source), force="mesh")  # process=True: welded
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        for _ in range(rounds):
            vertices, faces = trimesh.remesh.subdivide(vertices, faces)
        path = folder / f"{name}.stl"
        write_binary_stl(vertices, faces, path)
        made.append(
            {
                "file": path.name,
                "path": str(path),
                "source": source,
                "method": f"trimesh.remesh.subdivide x{rounds} (loaded with process=True)",
                "source_triangles": len(mesh.faces),
                "triangles": len(faces),
                "make_s": round(time.perf_counter() - t0, 2),
            }
        )
    return made


def convert_to_stl(src: Path, folder: Path) -> tuple[Path, str]:
    """Binary STL for tools that cannot read the format (conversion time is not counted).

    OBJ/PLY go through trimesh (process=False); 3MF through pocprint's reader (trimesh needs
    networkx/lxml for 3MF, which the project venv lacks), which applies the 3MF unit.
    """
    out = folder / f"{src.stem}.{src.suffix.lower().lstrip('.')}.stl"
    if src.suffix.lower() == ".3mf":
        from pocprint.mesh.read import load_mesh

        mesh = load_mesh(src, "3mf")
        how = "pocprint.mesh.read.load_mesh (3MF, unit applied) -> binary STL"
    else:
        mesh = trimesh.load(str(src), process=False, force="mesh")
        how = "trimesh.load(process=False) -> binary STL"
    write_binary_stl(mesh.vertices, mesh.faces, out)
    return out, how


def ensure_tools() -> None:
    missing = sorted({pkg for tool, pkg in APT_TOOLS.items() if not shutil.which(tool)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing Debian packages: apt-get install -y {' '.join(missing)}")
    print("installing", *missing, flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)


def ensure_pymeshfix_venv() -> Path:
    python = VENV_PYMESHFIX / "bin" / "python"
    probe = [str(python), "-c", "import pymeshfix, trimesh, numpy"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print("creating", VENV_PYMESHFIX, flush=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(VENV_PYMESHFIX)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "pymeshfix", "trimesh", "numpy"], check=True
    )
    return python


# ----------------------------------------------------------------------------- tools


def _worker(python: Path, tool: str, src: Path, out: Path, logs: Path) -> dict:
    result_json = logs / f"{tool}.{out.stem}.json"
    result_json.unlink(missing_ok=True)
    cmd = [str(python), "-m", "bench.mesh_worker", tool, str(src), str(out), str(result_json)]
    proc = run_child(cmd, log_stem=logs / f"{tool}.{out.stem}")
    record = {k: proc[k] for k in ("rc", "timed_out", "process_wall_s", "peak_rss_mb")}
    if result_json.exists():
        record["worker"] = json.loads(result_json.read_text())
        record["time_s"] = record["worker"].get("time_s")
    else:
        record["worker"] = {"ok": False, "error": _tail(proc["stderr"]) or "no result written"}
        record["time_s"] = None
    if proc["timed_out"]:
        record["worker"]["error"] = f"timed out after {TIMEOUT_S} s"
    return record


_IMPORT_TROUBLE = ("ImportError", "ModuleNotFoundError", "SyntaxError", "IndentationError")


def run_pocprint(src: Path, out: Path, logs: Path) -> dict:
    """The service's pipeline; retried if a colleague's half-saved module breaks the import."""
    retries = 0
    while True:
        record = _worker(PYTHON, "pocprint", src, out, logs)
        error = str(record["worker"].get("error", ""))
        if not error.startswith(_IMPORT_TROUBLE) or retries >= IMPORT_RETRIES:
            break
        retries += 1
        print(f"  pocprint import failed ({error[:80]}); retry in {IMPORT_RETRY_WAIT_S} s")
        time.sleep(IMPORT_RETRY_WAIT_S)
    record["import_retries"] = retries
    return record


def _parse_info(text: str) -> dict:
    info: dict = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("["):
            key, _, value = line.partition("=")
            value = value.strip()
            try:
                info[key.strip()] = float(value) if "." in value else int(value)
            except ValueError:
                info[key.strip()] = value
    return info


def run_prusaslicer(src: Path, out: Path, logs: Path) -> dict:
    cmd = ["prusa-slicer", "--repair", "--export-stl", "-o", str(out), str(src)]
    proc = run_child(cmd, log_stem=logs / f"prusaslicer.{out.stem}")
    record = {k: proc[k] for k in ("rc", "timed_out", "process_wall_s", "peak_rss_mb")}
    record["time_s"] = proc["process_wall_s"]
    record["tool_output"] = _tail(proc["stdout"] + proc["stderr"], 300)
    if out.exists() and out.stat().st_size > 0:
        info = run_child(
            ["prusa-slicer", "--info", str(out)], timeout=120, log_stem=logs / f"info.{out.stem}"
        )
        parsed = _parse_info(info["stdout"])
        record["own_verdict"] = {
            "manifold": parsed.get("manifold"),
            "open_edges": parsed.get("open_edges", 0),
            "facets_reversed": parsed.get("facets_reversed", 0),
            "number_of_parts": parsed.get("number_of_parts"),
            "number_of_facets": parsed.get("number_of_facets"),
            "volume": parsed.get("volume"),
            "info_s": info["process_wall_s"],
        }
        record["own_says_ok"] = parsed.get("manifold") == "yes"
    return record


_ADMESH_PATTERNS = {
    "facets": r"Number of facets\s*:\s*(\d+)\s+(\d+)",
    "disconnected_facets": r"Total disconnected facets\s*:\s*(\d+)\s+(\d+)",
    "parts": r"Number of parts\s*:\s*(\d+)",
    "volume": r"Volume\s*:\s*(\S+)",
    "degenerate_facets": r"Degenerate facets\s*:\s*(\d+)",
    "edges_fixed": r"Edges fixed\s*:\s*(\d+)",
    "facets_removed": r"Facets removed\s*:\s*(\d+)",
    "facets_added": r"Facets added\s*:\s*(\d+)",
    "facets_reversed": r"Facets reversed\s*:\s*(\d+)",
    "backwards_edges": r"Backwards edges\s*:\s*(\d+)",
    "normals_fixed": r"Normals fixed\s*:\s*(\d+)",
}


def run_admesh(src: Path, out: Path, logs: Path) -> dict:
    cmd = ["admesh", *ADMESH_ARGS, f"--write-binary-stl={out}", str(src)]
    proc = run_child(cmd, log_stem=logs / f"admesh.{out.stem}")
    record = {k: proc[k] for k in ("rc", "timed_out", "process_wall_s", "peak_rss_mb")}
    record["time_s"] = proc["process_wall_s"]
    stats: dict = {}
    for key, pattern in _ADMESH_PATTERNS.items():
        match = re.search(pattern, proc["stdout"])
        if match:
            values = [float(g) if "." in g else int(g) for g in match.groups()]
            stats[key] = values if len(values) > 1 else values[0]
    record["own_verdict"] = stats
    if "disconnected_facets" in stats:
        record["own_says_ok"] = stats["disconnected_facets"][1] == 0
    if proc["rc"] != 0:
        record["tool_output"] = _tail(proc["stdout"] + proc["stderr"], 300)
    return record


# ----------------------------------------------------------------------------- run


def _versions(pymeshfix_python: Path) -> dict:
    out = {}
    for name in ("trimesh", "pymeshlab", "manifold3d", "numpy", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    probe = subprocess.run(
        [
            str(pymeshfix_python),
            "-c",
            "import importlib.metadata as m;"
            "print(m.version('pymeshfix'), m.version('trimesh'), m.version('numpy'))",
        ],
        capture_output=True,
        text=True,
    )
    parts = probe.stdout.split()
    if len(parts) == 3:
        out["pymeshfix_venv"] = {"pymeshfix": parts[0], "trimesh": parts[1], "numpy": parts[2]}
    prusa = subprocess.run(["prusa-slicer", "--help"], capture_output=True, text=True)
    out["prusa-slicer"] = next(
        (line.strip() for line in prusa.stdout.splitlines() if line.startswith("PrusaSlicer")),
        "unknown",
    )
    adm = subprocess.run(["admesh", "--version"], capture_output=True, text=True)
    out["admesh"] = adm.stdout.strip() or adm.stderr.strip()
    for pkg in ("prusa-slicer", "admesh"):
        deb = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True
        )
        out[f"{pkg} (deb)"] = deb.stdout.strip()
    return out


def _machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
    }


def _source_fingerprint() -> dict:
    """Hash of pocprint/mesh/*.py: colleagues edit it concurrently, so record what ran."""
    files = sorted((ROOT / "pocprint" / "mesh").glob("*.py"))
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"git_head": commit.stdout.strip(), "pocprint_mesh_sha256_16": hashes}


def _units_available() -> str:
    probe = subprocess.run(
        [str(PYTHON), "-c", "import pocprint.mesh.units"], cwd=ROOT, capture_output=True, text=True
    )
    return "yes" if probe.returncode == 0 else f"no ({_tail(probe.stderr, 120)})"


def _wait_for_pocprint_import() -> None:
    cmd = [str(PYTHON), "-c", "import pocprint.mesh.read, pocprint.mesh.repair"]
    for attempt in range(IMPORT_RETRIES + 1):
        probe = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if probe.returncode == 0:
            return
        print(f"pocprint import failed (attempt {attempt + 1}): {_tail(probe.stderr, 200)}")
        time.sleep(IMPORT_RETRY_WAIT_S)
    raise SystemExit("pocprint.mesh does not import; giving up")


# A tool that reads or writes another unit scales the whole model by one of these.
_UNIT_FACTORS = (25.4, 1 / 25.4, 10.0, 0.1, 1000.0, 0.001, 304.8, 1 / 304.8)


def _retention(record: dict, tool: str, reference: dict | None) -> dict | None:
    """Output against input: surface area and size kept (informational, not part of the check).

    pocprint's output is divided by the unit scale it applied, so mm outputs compare with
    file-unit inputs; a size ratio equal to a unit factor (e.g. 1/25.4) means the tool read
    the file in another unit, and the area ratio is corrected for it.
    """
    check = record["check"]
    if not reference or "area" not in check or not reference.get("area"):
        return None
    scale = 1.0
    if tool == "pocprint":
        scale = float((record["worker"].get("units") or {}).get("applied_scale") or 1.0)
    area_ratio = check["area"] / scale**2 / reference["area"]
    diag_ratio = check["bbox_diagonal"] / scale / reference["bbox_diagonal"]
    unit = next((u for u in _UNIT_FACTORS if abs(diag_ratio / u - 1.0) < 0.01), 1.0)
    return {
        "area_ratio": round(area_ratio, 4),
        "bbox_diagonal_ratio": round(diag_ratio, 4),
        "unit_factor": unit,
        "area_ratio_unit_corrected": round(area_ratio / unit**2, 4),
        "shells_in": reference["shells"],
        "shells_out": check["shells"],
        "triangles_in": reference["triangles"],
        "triangles_out": check["triangles"],
    }


def bench_file(
    src: Path, converted: Path | None, pymeshfix_python: Path, reference: dict | None
) -> dict:
    stem = src.stem
    logs = WORK / "logs"
    outs = {tool: WORK / "out" / tool / f"{stem}.stl" for tool in TOOLS}
    for path in outs.values():
        path.unlink(missing_ok=True)
    stl_input = converted or src
    fmt = src.suffix.lower()
    runs = {
        "pocprint": (run_pocprint(src, outs["pocprint"], logs), src),
        "pymeshlab": (_worker(PYTHON, "pymeshlab", src, outs["pymeshlab"], logs), src),
        "prusaslicer": (
            run_prusaslicer(stl_input if fmt == ".ply" else src, outs["prusaslicer"], logs),
            stl_input if fmt == ".ply" else src,
        ),
        "admesh": (run_admesh(stl_input, outs["admesh"], logs), stl_input),
        "pymeshfix": (
            _worker(pymeshfix_python, "pymeshfix", stl_input, outs["pymeshfix"], logs),
            stl_input,
        ),
    }
    tools = {}
    for tool, (record, used) in runs.items():
        out = outs[tool]
        record["input_used"] = "original" if used == src else f"converted: {used.name}"
        record["output"] = str(out.relative_to(ROOT))
        record["output_produced"] = out.exists() and out.stat().st_size > 0
        record["check"] = independent_check(out)
        record["retention"] = _retention(record, tool, reference)
        tools[tool] = record
    return tools


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def summarise(files: list[dict]) -> dict:
    n = len(files)
    corpus = [f for f in files if not f["large"]]
    per_tool = {}
    for tool in TOOLS:
        for label, subset in (("all", files), ("corpus", corpus)):
            recs = [f["tools"][tool] for f in subset]
            passes = sum(r["check"]["passes"] for r in recs)
            strict = sum(r["check"]["passes_strict"] for r in recs)
            entry = per_tool.setdefault(tool, {})
            entry[label] = {
                "files": len(recs),
                "outputs": sum(r["output_produced"] for r in recs),
                "independent_pass": passes,
                "independent_pass_share": _share(passes, len(recs)),
                "independent_pass_strict": strict,
                "independent_pass_strict_share": _share(strict, len(recs)),
                "timeouts": sum(r["timed_out"] for r in recs),
                "total_time_s": round(sum(r["time_s"] or 0 for r in recs), 2),
            }
            kept = sum(
                r["check"]["passes_strict"]
                and r["retention"] is not None
                and r["retention"]["area_ratio_unit_corrected"] >= 0.95
                for r in recs
            )
            entry[label]["strict_pass_keeping_95pct_area"] = kept
            entry[label]["strict_pass_keeping_95pct_area_share"] = _share(kept, len(recs))
            entry[label]["passes_keeping_under_95pct_area"] = sorted(
                f["file"]
                for f in subset
                if f["tools"][tool]["check"]["passes"]
                and (ret := f["tools"][tool]["retention"])
                and ret["area_ratio_unit_corrected"] < 0.95
            )
            entry[label]["passes_inside_out"] = sorted(
                f["file"]
                for f in subset
                if f["tools"][tool]["check"]["passes"]
                and not f["tools"][tool]["check"]["volume_positive"]
            )
            if tool == "pocprint":
                repaired = sum(r["worker"].get("verdict") == "repaired" for r in recs)
                entry[label]["repaired"] = repaired
                entry[label]["repaired_share"] = _share(repaired, len(recs))
            if tool in ("prusaslicer", "admesh"):
                own = sum(bool(r.get("own_says_ok")) for r in recs)
                entry[label]["own_verdict_ok"] = own
                entry[label]["own_ok_but_check_fails"] = sorted(
                    f["file"]
                    for f in subset
                    if f["tools"][tool].get("own_says_ok")
                    and not f["tools"][tool]["check"]["passes"]
                )
    silent = [
        f["file"]
        for f in files
        if f["tools"]["pocprint"]["worker"].get("verdict") == "repaired"
        and not f["tools"]["pocprint"]["check"]["passes"]
    ]
    silent_strict = [
        f["file"]
        for f in files
        if f["tools"]["pocprint"]["worker"].get("verdict") == "repaired"
        and not f["tools"]["pocprint"]["check"]["passes_strict"]
    ]
    conservative = [
        f["file"]
        for f in files
        if f["tools"]["pocprint"]["worker"].get("verdict") == "needs_attention"
        and f["tools"]["pocprint"]["check"]["passes"]
    ]
    repaired_share = per_tool["pocprint"]["all"]["repaired_share"]
    pass_share = per_tool["pocprint"]["all"]["independent_pass_share"]
    baseline_shares = {t: per_tool[t]["all"]["independent_pass_share"] for t in BASELINES}
    best = max(baseline_shares, key=baseline_shares.get)
    candidates = [
        f["file"]
        for f in files
        if f["tools"]["pocprint"]["worker"].get("candidate", {}).get("used")
    ]
    targets = {
        "silent_passes": {
            "target": "0 files where pocprint says 'repaired' but the independent check fails",
            "files": silent,
            "count": len(silent),
            "met": not silent,
            "also_failing_winding_or_volume": silent_strict,
        },
        "repaired_share_vs_best_baseline": {
            "measure": "share of files whose output passes the independent check (every "
            "tool's output, pocprint's closed candidates included); the share with the "
            "verdict 'repaired' is given apart and is no part of the comparison",
            "pocprint_independent_pass_share": pass_share,
            "pocprint_repaired_share": repaired_share,
            "baseline_independent_pass_shares": baseline_shares,
            "best_baseline": best,
            "met": pass_share >= baseline_shares[best],
            "files": n,
        },
        "needs_attention_but_check_passes": conservative,
        "closed_candidates_delivered": candidates,
    }
    for f in files:
        if f["large"]:
            targets[f["file"]] = speed_entry(f)
    return {"per_tool": per_tool, "targets": targets}


def speed_entry(f: dict) -> dict:
    """Speed and memory of pocprint against the bare pymeshlab sequence on one large file."""
    poc, bare = f["tools"]["pocprint"], f["tools"]["pymeshlab"]
    ratio = (
        round(poc["time_s"] / bare["time_s"], 3)
        if poc["time_s"] and bare["time_s"] and poc["worker"].get("ok")
        else None
    )
    return {
        "triangles": f["triangles"],
        "pocprint_time_s": poc["time_s"],
        "pymeshlab_bare_time_s": bare["time_s"],
        "ratio": ratio,
        "ratio_target": SPEED_TARGET_RATIO,
        "ratio_met": ratio is not None and ratio <= SPEED_TARGET_RATIO,
        "pocprint_process_wall_s": poc["process_wall_s"],
        "pymeshlab_process_wall_s": bare["process_wall_s"],
        "pocprint_peak_rss_mb": poc["peak_rss_mb"],
        "pymeshlab_peak_rss_mb": bare["peak_rss_mb"],
        "memory_target_mb": MEMORY_TARGET_MB,
        "memory_met": poc["peak_rss_mb"] is not None and poc["peak_rss_mb"] < MEMORY_TARGET_MB,
        "pocprint_vm_hwm_mb": poc["worker"].get("vm_hwm_mb"),
        "pocprint_verdict": poc["worker"].get("verdict"),
        "pocprint_breakdown_s": poc["worker"].get("timings_s"),
    }


def speed_only(output: Path) -> int:
    """Only the large inputs, only pocprint and the bare pymeshlab sequence (each in its own
    process, one after the other, as in the full run): their entries in ``output``'s
    targets are replaced and the run is recorded under ``speed_runs``; the rest is kept."""
    doc = json.loads(output.read_text())
    for sub in ("inputs", "logs", "out/pocprint", "out/pymeshlab"):
        (WORK / sub).mkdir(parents=True, exist_ok=True)
    _wait_for_pocprint_import()
    run = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_head": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "loadavg_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
        "files": {},
    }
    for made in make_large_inputs(WORK / "inputs"):
        src = Path(made["path"])
        load_before = round(os.getloadavg()[0], 2)
        tools = {}
        for tool in ("pocprint", "pymeshlab"):
            out = WORK / "out" / tool / f"{src.stem}.stl"
            out.unlink(missing_ok=True)
            logs = WORK / "logs"
            tools[tool] = (
                run_pocprint(src, out, logs)
                if tool == "pocprint"
                else _worker(PYTHON, tool, src, out, logs)
            )
        triangles = tools["pocprint"]["worker"].get("input_triangles")
        entry = speed_entry({"triangles": triangles, "tools": tools})
        entry["loadavg_1min_before"] = load_before
        doc["summary"]["targets"][made["file"]] = entry
        run["files"][made["file"]] = entry
        print(
            f"{made['file']}: pocprint {entry['pocprint_time_s']:.1f} s, pymeshlab "
            f"{entry['pymeshlab_bare_time_s']:.1f} s -> {entry['ratio']}x, peak "
            f"{entry['pocprint_peak_rss_mb']} MB (load {load_before})",
            flush=True,
        )
    run["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc.setdefault("speed_runs", []).append(run)
    output.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"updated the large-input entries of {output}")
    return 0


def compare_with_previous(previous: dict | None, files: list[dict]) -> dict | None:
    """pocprint per file, this run against the results file it replaces: the independent
    check, the verdict and the fidelity figures. ``worse`` lists files whose output passed
    before and fails now, lost the verdict "repaired", or (still repaired) invents, removes
    or moves more than before."""
    if not previous or not previous.get("files"):
        return None
    old = {f["file"]: f["tools"]["pocprint"] for f in previous["files"]}
    keys = ("invented_area_mm2", "removed_area_mm2", "kept_max_mm")
    rows, worse = {}, []
    for f in files:
        new = f["tools"]["pocprint"]
        if f["file"] not in old:
            continue
        before = old[f["file"]]
        row = {
            "passes": [before["check"]["passes"], new["check"]["passes"]],
            "verdict": [before["worker"].get("verdict"), new["worker"].get("verdict")],
            "fidelity": {
                k: [
                    (before["worker"].get("fidelity") or {}).get(k),
                    (new["worker"].get("fidelity") or {}).get(k),
                ]
                for k in keys
            },
        }
        rows[f["file"]] = row
        was_repaired = row["verdict"][0] == "repaired"
        more = any(
            a is not None and b is not None and b > a + 1e-9 for a, b in row["fidelity"].values()
        )
        if (
            (row["passes"][0] and not row["passes"][1])
            or (was_repaired and row["verdict"][1] != "repaired")
            or (was_repaired and more)
        ):
            worse.append(f["file"])
    return {
        "previous_run_date_utc": previous.get("date_utc"),
        "previous_git_head": (previous.get("source", {}).get("at_start") or {}).get("git_head"),
        "worse": worse,
        "newly_passing": sorted(n for n, r in rows.items() if r["passes"] == [False, True]),
        "newly_failing": sorted(n for n, r in rows.items() if r["passes"] == [True, False]),
        "per_file": rows,
    }


def _cell(rec: dict) -> str:
    if rec["timed_out"]:
        return "TIMEOUT"
    if not rec["output_produced"]:
        return "no output"
    mark = "pass" if rec["check"]["passes"] else "FAIL"
    t = rec["time_s"]
    return f"{mark} {t:6.2f}s" if t is not None else mark


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def print_table(files: list[dict], summary: dict) -> None:
    head = f"{'file':40} {'tris':>8}  {'pocprint':>22}" + "".join(f" {t:>14}" for t in BASELINES)
    print()
    print(head)
    print("-" * len(head))
    for f in files:
        poc = f["tools"]["pocprint"]
        verdict = {"repaired": "R", "needs_attention": "NA"}.get(poc["worker"].get("verdict"), "-")
        row = f"{f['file'][:40]:40} {f['triangles'] or 0:>8}  {verdict:>2} {_cell(poc):>19}"
        row += "".join(f" {_cell(f['tools'][t]):>14}" for t in BASELINES)
        print(row)
    print()
    print("R = pocprint verdict 'repaired', NA = 'needs_attention'; pass/FAIL = independent check")
    print()
    print(f"{'tool':12} {'indep. pass':>12} {'strict':>8} {'outputs':>8} {'time':>9}  (all files)")
    for tool, entry in summary["per_tool"].items():
        e = entry["all"]
        extra = f"   repaired verdict {e['repaired']}/{e['files']}" if tool == "pocprint" else ""
        print(
            f"{tool:12} {e['independent_pass']:>5}/{e['files']:<3} {e['independent_pass_strict']:>5}"
            f"   {e['outputs']:>5}   {e['total_time_s']:>7.1f}s{extra}"
        )
    t = summary["targets"]
    print()
    print(f"silent passes: {t['silent_passes']['count']} {t['silent_passes']['files']}")
    r = t["repaired_share_vs_best_baseline"]
    print(
        f"pocprint independent pass {r['pocprint_independent_pass_share']:.3f} "
        f"(verdict 'repaired' {r['pocprint_repaired_share']:.3f}) vs best baseline "
        f"{r['best_baseline']} {r['baseline_independent_pass_shares'][r['best_baseline']]:.3f}: "
        f"{'met' if r['met'] else 'MISSED'}"
    )
    for name, _, _ in LARGE:
        key = f"{name}.stl"
        if key in t:
            x = t[key]
            print(
                f"{key}: {x['triangles']} tris, pocprint {_secs(x['pocprint_time_s'])} vs bare "
                f"pymeshlab {_secs(x['pymeshlab_bare_time_s'])} -> ratio {x['ratio']} "
                f"({'met' if x['ratio_met'] else 'MISSED'} <= {SPEED_TARGET_RATIO}); pocprint "
                f"peak {x['pocprint_peak_rss_mb']} MB "
                f"({'met' if x['memory_met'] else 'MISSED'} < {MEMORY_TARGET_MB} MB)"
            )
            parts = x["pocprint_breakdown_s"] or {}
            steps = {k: v for k, v in parts.items() if k != "repair_breakdown"}
            steps.update(parts.get("repair_breakdown") or {})
            numbers = {k: v for k, v in steps.items() if isinstance(v, int | float)}
            print("    pocprint s: " + ", ".join(f"{k} {v:.2f}" for k, v in numbers.items()))
    compared = summary.get("compared_with_previous_run")
    if compared:
        print(
            f"against the previous run ({compared['previous_run_date_utc']}): worse "
            f"{compared['worse']}, newly passing {len(compared['newly_passing'])}, newly "
            f"failing {compared['newly_failing']}"
        )
    for tool, entry in summary["per_tool"].items():
        e = entry["all"]
        for key in ("passes_keeping_under_95pct_area", "passes_inside_out"):
            if e[key]:
                print(f"{tool}: {key}: {', '.join(e[key])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="development: corpus files whose name contains this")
    parser.add_argument("--no-large", action="store_true", help="development: skip large inputs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON path")
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the large inputs with pocprint and bare pymeshlab; updates their entries",
    )
    args = parser.parse_args(argv)
    if args.speed_only:
        return speed_only(args.output)
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for sub in ("inputs", "converted", "logs", *(f"out/{t}" for t in TOOLS)):
        (WORK / sub).mkdir(parents=True, exist_ok=True)
    ensure_tools()
    pymeshfix_python = ensure_pymeshfix_venv()
    _wait_for_pocprint_import()
    fingerprint_start = _source_fingerprint()
    git_status = subprocess.run(
        ["git", "status", "--short", "--", "pocprint"], cwd=ROOT, capture_output=True, text=True
    ).stdout.splitlines()
    load_start = os.getloadavg()
    units = _units_available()
    print(f"pocprint.mesh.units available: {units}", flush=True)

    corpus = sorted(p for p in MESHES.iterdir() if p.suffix.lower() in FORMATS)
    if args.only:
        corpus = [p for p in corpus if args.only in p.name]
    t0 = time.perf_counter()
    large = [] if args.no_large else make_large_inputs(WORK / "inputs")
    print(
        "large inputs: "
        + ", ".join(f"{m['file']} {m['triangles']} tris" for m in large)
        + f" ({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    inputs = [(p, False) for p in corpus] + [(Path(m["path"]), True) for m in large]

    files = []
    for src, is_large in inputs:
        converted, how = None, None
        if src.suffix.lower() != ".stl":
            converted, how = convert_to_stl(src, WORK / "converted")
        print(f"{src.name} ...", flush=True)
        try:
            reference = describe_input(converted if src.suffix.lower() == ".3mf" else src)
        except Exception as exc:  # informational only
            reference = {"error": f"{type(exc).__name__}: {exc}"}
        load_before = os.getloadavg()[0]
        tools = bench_file(src, converted, pymeshfix_python, reference)
        triangles = next(
            (
                tools[t]["worker"].get(k)
                for t, k in (("pocprint", "input_triangles"), ("pymeshlab", "loaded_faces"))
                if tools[t]["worker"].get(k)
            ),
            None,
        )
        files.append(
            {
                "file": src.name,
                "loadavg_1min_before": round(load_before, 2),
                "format": src.suffix.lower().lstrip("."),
                "large": is_large,
                "triangles": triangles,
                "bytes": src.stat().st_size,
                "conversion": how,
                "input": reference,
                "tools": tools,
            }
        )
        print(
            "  " + "  ".join(f"{t}: {_cell(tools[t])}" for t in TOOLS),
            flush=True,
        )
        (WORK / "raw_files.json").write_text(json.dumps(files, default=float))  # crash insurance

    summary = summarise(files)
    try:
        previous = json.loads(args.output.read_text()) if args.output.exists() else None
    except (OSError, ValueError):
        previous = None
    summary["compared_with_previous_run"] = compare_with_previous(previous, files)
    fingerprint_end = _source_fingerprint()
    doc = {
        "benchmark": "mesh repair acceptance: pocprint vs bare pymeshlab, PrusaSlicer, admesh, "
        "pymeshfix",
        "date_utc": date,
        "machine": {
            **_machine(),
            "loadavg_1_5_15_at_start": [round(x, 2) for x in load_start],
            "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "note": "other engineers work on the same machine; a high load average means "
            "the timings are inflated",
        },
        "versions": _versions(pymeshfix_python),
        "source": {
            "at_start": fingerprint_start,
            "pocprint_mesh_changed_during_run": sorted(
                name
                for name in set(fingerprint_start["pocprint_mesh_sha256_16"])
                | set(fingerprint_end["pocprint_mesh_sha256_16"])
                if fingerprint_start["pocprint_mesh_sha256_16"].get(name)
                != fingerprint_end["pocprint_mesh_sha256_16"].get(name)
            ),
            "git_status_short_at_start": git_status,
            "pocprint_mesh_units_available": units,
        },
        "method": {
            "timeout_s": TIMEOUT_S,
            "process": "each tool x file in a fresh child process under /usr/bin/time -f %M: "
            "peak_rss_mb is that command's own maximum RSS (the worker's VmHWM is recorded "
            "too for the Python tools)",
            "time_s": "python tools: in-process, from the start of reading to the end of "
            "saving (interpreter start-up and imports excluded; process_wall_s includes them); "
            "prusaslicer/admesh: process wall time",
            "pocprint": "load_mesh + (pocprint.mesh.units guess, scaled to mm only if clear-cut) "
            "+ repair() (analysis, repair, gate, fidelity; when the standard repair fails the "
            "gate, the closed candidate of pocprint.mesh.close is gated and saved instead, the "
            "verdict staying 'needs_attention') + save_mesh (binary STL)",
            "pymeshlab": "MeshSet.load_new_mesh (+ merge if a 3MF gives several meshes), one "
            "pass of the filters of pocprint's _run_filters in its order, save binary STL",
            "prusaslicer": "prusa-slicer --repair --export-stl -o OUT IN (PLY converted to "
            "binary STL first); its own verdict from --info on OUT",
            "admesh": "admesh " + " ".join(ADMESH_ARGS) + " --write-binary-stl=OUT IN "
            "(non-STL converted to binary STL first)",
            "pymeshfix": "own venv, trimesh.load(process=True) + MeshFix(points, faces)"
            ".repair() + binary STL (non-STL converted to binary STL first: that venv's "
            "trimesh lacks the optional packages its OBJ/3MF loaders may need)",
            "independent_check": "trimesh.load(process=False), exact weld; watertight = every "
            "edge used exactly twice and no face repeating a vertex; two_manifold = no edge used "
            "> 2 times, no vertex with more than one face fan, no face repeating a vertex; "
            "manifold3d.Manifold(Mesh(float32, uint32)).status() == NoError. passes = "
            "watertight and two_manifold and manifold3d; passes_strict adds consistent winding "
            "and positive signed volume",
            "large_inputs": large,
        },
        "summary": summary,
        "files": files,
        "run_s": round(time.perf_counter() - started, 1),
    }
    doc["complete_run"] = not (args.only or args.no_large)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print_table(files, summary)
    print(f"\nwrote {args.output} in {doc['run_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
