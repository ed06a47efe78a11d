"""One junk file must not stop the lab's mesh work (issue 15, part 5).

A soup of random triangles kept MeshLab's self-intersection search busy for minutes at
gigabytes inside the service. Each part's mesh work now runs in a child process under a wall
time and a memory limit derived from its size and triangle count, and the costliest step on a
soup has its own bound; past any of them the part is "too complex to repair automatically"
with what was measured, the service does not grow and the next part is processed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from sqlmodel import select

from pocprint.domain.states import PartState, Verdict
from pocprint.mesh.bounded import VERDICT_TEXT, run_bounded
from pocprint.mesh.errors import TooComplex
from pocprint.mesh.limits import WorkLimits
from pocprint.mesh.read import binary_stl_bytes
from pocprint.services import cases
from pocprint.services.errors import WrongState
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import accept_repair
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import AuditEvent, Part

from conftest import REPO_ROOT, make_settings, order_fields, order_json
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import make_people

SOUP_TRIANGLES = 30_000
# An order whose anatomy has an expected size (config/anatomy.toml): the 100 mm soup and the
# 60 mm ball are clear-cut millimetres, so no unit is asked for.
AORTA = [
    {
        "region": "Abdomen",
        "subregion": "Vessels",
        "structure": "Abdominal aorta",
        "laterality": "midline",
    }
]


def write_soup(path: Path, triangles: int = SOUP_TRIANGLES, seed: int = 15) -> Path:
    """Random triangles with corners anywhere in a 100 mm cube: a 1.5 MB binary STL."""
    rng = np.random.default_rng(seed)
    vertices = rng.uniform(0.0, 100.0, size=(triangles * 3, 3))
    faces = np.arange(triangles * 3).reshape(-1, 3)
    path.write_bytes(binary_stl_bytes(vertices, faces))
    return path


def write_sphere(path: Path) -> Path:
    trimesh.creation.icosphere(subdivisions=3, radius=30).export(path)
    return path


def unbounded_search_config(tmp_path: Path) -> Path:
    """The shipped repair settings, with the soup's own bound lifted (so the process limits
    are what stops it)."""
    text = (REPO_ROOT / "config" / "repair.toml").read_text()
    text = text.replace("max_box_overlaps_per_face = 500.0", "max_box_overlaps_per_face = 1e9")
    assert "1e9" in text
    path = tmp_path / "repair.toml"
    path.write_text(text)
    return path


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a process, from the kernel (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def soup_request(tmp_path: Path) -> tuple[dict, int]:
    soup = write_soup(tmp_path / "soup.stl")
    request = {
        "source": str(soup),
        "fmt": "stl",
        "units": "mm",
        "device_type": "anatomical_model",
        "out": str(tmp_path / "out.stl"),
    }
    return request, soup.stat().st_size


# ----------------------------------------------------------------------------- limits


def test_limits_grow_with_file_size_and_triangles_up_to_their_ceiling():
    limits = WorkLimits()
    small = limits.for_part(1_500_000, 30_000)
    large = limits.for_part(100_000_000, 2_000_000)
    assert small["seconds"] < large["seconds"] <= limits.max_s
    assert small["memory_mb"] < large["memory_mb"] <= limits.max_memory_mb
    assert small["seconds"] == pytest.approx(120 + 1.0 * 1.5e6 / 2**20 + 240 * 0.03, abs=0.1)
    assert small["memory_mb"] == round(1536 + 2.0 * 1.5e6 / 2**20 + 2500 * 0.03)
    huge = limits.for_part(10**9, 10**9)
    assert (huge["seconds"], huge["memory_mb"]) == (limits.max_s, limits.max_memory_mb)
    reading = limits.for_part(1_500_000, None)
    assert reading["memory_mb"] == limits.max_memory_mb and "being read" in reading["basis"]


def test_a_mistyped_limit_stops_the_start_naming_it():
    with pytest.raises(ValueError, match="unknown key 'max_seconds'"):
        WorkLimits.from_config({"max_seconds": 10})
    with pytest.raises(ValueError, match="base_memory_mb must be between"):
        WorkLimits.from_config({"base_memory_mb": 10})
    assert WorkLimits.from_config({"parallel_parts": 3}).slots() == 3
    assert WorkLimits().slots() >= 1


# ----------------------------------------------------------------------------- child process


def test_a_soup_is_stopped_by_the_bound_of_the_self_intersection_search(tmp_path):
    request, size = soup_request(tmp_path)
    with pytest.raises(TooComplex) as caught:
        run_bounded(request, WorkLimits(), size)
    measured = caught.value.measured
    assert str(caught.value).startswith(VERDICT_TEXT)
    assert measured["exceeded"] == "step bound"
    assert measured["box_overlaps_per_face"] > 10 * measured["max_box_overlaps_per_face"]
    assert measured["triangles"] == SOUP_TRIANGLES
    assert measured["elapsed_s"] < 30
    assert not Path(request["out"]).exists()


def test_past_its_time_limit_the_child_is_killed_with_what_was_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("POCPRINT_REPAIR_CONFIG", str(unbounded_search_config(tmp_path)))
    request, size = soup_request(tmp_path)
    limits = WorkLimits(base_s=4, s_per_file_mb=0, s_per_million_triangles=0, base_memory_mb=16000)
    with pytest.raises(TooComplex) as caught:
        run_bounded(request, limits, size)
    measured = caught.value.measured
    assert measured["exceeded"] == "time", measured
    assert measured["limit_s"] == 4 and 4 <= measured["elapsed_s"] < 15
    assert "still working after 4 s" in str(caught.value)
    assert measured["triangles"] == SOUP_TRIANGLES


def test_past_its_memory_limit_the_child_stops_with_what_was_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("POCPRINT_REPAIR_CONFIG", str(unbounded_search_config(tmp_path)))
    request, size = soup_request(tmp_path)
    limits = WorkLimits(
        base_s=300, base_memory_mb=1200, memory_mb_per_file_mb=0, memory_mb_per_million_triangles=0
    )
    with pytest.raises(TooComplex) as caught:
        run_bounded(request, limits, size)
    measured = caught.value.measured
    assert measured["exceeded"] == "memory", measured
    assert measured["memory_limit_mb"] == 1200
    assert measured["peak_memory_mb"] <= 1200
    assert "more than 1200 MB" in str(caught.value)


# ----------------------------------------------------------------------------- service


def test_a_part_past_its_limits_is_recorded_too_complex_and_the_next_is_repaired(
    lab, people, tmp_path, monkeypatch
):
    monkeypatch.setenv("POCPRINT_REPAIR_CONFIG", str(unbounded_search_config(tmp_path)))
    lab.settings = lab.settings.with_(
        mesh_limits=WorkLimits(
            base_s=4, s_per_file_mb=0, s_per_million_triangles=0, base_memory_mb=16000
        )
    )
    tech = people["tech"]
    case_id = cases.create_case(lab, tech, **order_fields(anatomy=AORTA))
    soup_id = cases.upload_part(lab, tech, case_id, "soup.stl", write_soup(tmp_path / "s.stl"))
    ball_id = cases.upload_part(lab, tech, case_id, "ball.stl", write_sphere(tmp_path / "b.stl"))
    assert process_part(lab, soup_id) and process_part(lab, ball_id)
    with read_session(lab.engine) as s:
        soup, ball = s.get(Part, soup_id), s.get(Part, ball_id)
        actions = s.exec(select(AuditEvent.action).where(AuditEvent.entity_id == str(soup_id)))
        actions = list(actions)
    assert soup.state == PartState.PROCESSED and soup.verdict == Verdict.TOO_COMPLEX
    assert soup.repaired_sha256 is None
    bounds = soup.repair_report["bounds"]
    assert bounds["exceeded"] == "time" and bounds["limit_s"] == 4, bounds
    assert bounds["triangles"] == SOUP_TRIANGLES
    assert soup.repair_report["reasons"][0].startswith(VERDICT_TEXT)
    assert "part.too_complex" in actions
    assert ball.state == PartState.PROCESSED and ball.verdict == Verdict.REPAIRED
    with pytest.raises(WrongState, match="only a processed part whose repair needs attention"):
        accept_repair(lab, tech, soup_id, "looks fine to me, accept it")


def test_a_soup_uploaded_to_the_running_service_leaves_it_small_and_the_next_part_repaired(
    tmp_path, database_url, printers_dir
):
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        tech = Api(service.url, tokens["tech"])
        before_mb = vm_hwm_mb(service.process.pid)
        r = tech.post("/cases", json=order_json(indication="soup test", anatomy=AORTA))
        assert r.status_code == 201, r.text
        case_id = r.json()["id"]
        ids = []
        for mesh in (write_soup(tmp_path / "soup.stl"), write_sphere(tmp_path / "ball.stl")):
            with mesh.open("rb") as fh:
                r = tech.post(f"/cases/{case_id}/parts", files={"mesh": (mesh.name, fh)})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        done = [
            wait_for(
                lambda i=i: tech.get(f"/parts/{i}").json(),
                lambda p: p["state"] not in ("queued", "processing"),
                120,
                f"part {i}",
            )
            for i in ids
        ]
        soup, ball = done
        assert soup["verdict"] == "too_complex", soup
        assert soup["repair_report"]["reasons"][0].startswith(VERDICT_TEXT)
        bounds = soup["repair_report"]["bounds"]
        assert bounds["triangles"] == SOUP_TRIANGLES
        assert bounds["box_overlaps_per_face"] > bounds["max_box_overlaps_per_face"]
        assert bounds["memory_limit_mb"] > 0 and bounds["limit_s"] > 0
        assert ball["verdict"] == "repaired" and ball["repaired_sha256"], ball
        after_mb = vm_hwm_mb(service.process.pid)
        # The web process never held the soup: its peak grew by the upload check at most.
        assert after_mb - before_mb < 150, (before_mb, after_mb)
        assert os.path.exists(f"/proc/{service.process.pid}")
    except BaseException:
        print(service.log_tail(60))
        raise
    finally:
        service.stop()


def test_the_worker_works_on_parts_side_by_side_in_its_slots(lab, people, tmp_path, monkeypatch):
    """With two slots, a part past its limits does not hold back the one uploaded after it:
    the second is repaired while the first is still being worked on."""
    from pocprint.scheduler import MeshSlots

    monkeypatch.setenv("POCPRINT_REPAIR_CONFIG", str(unbounded_search_config(tmp_path)))
    lab.settings = lab.settings.with_(
        mesh_limits=WorkLimits(
            base_s=8, s_per_file_mb=0, s_per_million_triangles=0, base_memory_mb=16000
        )
    )
    tech = people["tech"]
    case_id = cases.create_case(lab, tech, **order_fields(anatomy=AORTA))
    soup_id = cases.upload_part(lab, tech, case_id, "soup.stl", write_soup(tmp_path / "s.stl"))
    ball_id = cases.upload_part(lab, tech, case_id, "ball.stl", write_sphere(tmp_path / "b.stl"))
    freed = []  # the worker looks for waiting parts each time a slot comes free
    slots = MeshSlots(2, on_free=lambda: freed.append(True))
    try:
        assert slots.fill(lab) == 2
        assert slots.fill(lab) == 0  # both slots busy, nothing else waiting

        def states():
            with read_session(lab.engine) as s:
                return s.get(Part, soup_id).state, s.get(Part, ball_id).state

        soup_state, ball_state = wait_for(
            states, lambda st: st[1] == PartState.PROCESSED, 60, "the second part"
        )
        assert soup_state == PartState.PROCESSING  # still at work, within its 8 s
        wait_for(states, lambda st: st[0] == PartState.PROCESSED, 60, "the soup stopped")
        wait_for(lambda: len(freed), lambda n: n == 2, 10, "both slots freed")
    finally:
        slots.shutdown()
    with read_session(lab.engine) as s:
        assert s.get(Part, soup_id).verdict == Verdict.TOO_COMPLEX
        assert s.get(Part, ball_id).verdict == Verdict.REPAIRED
