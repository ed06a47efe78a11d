"""`pocprint mesh inspect|repair`: exit codes, files written or not, report contents.

Most cases call ``run_mesh_command`` with arguments parsed by the real argparse setup; two
run the module as a process, as a technician would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pocprint.mesh.analyse import analyse
from pocprint.mesh.cli import ATTENTION_MARK, add_mesh_commands, run_mesh_command
from pocprint.mesh.read import load_mesh

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "meshes"
CORPUS = ROOT.parent / "shared" / "data" / "meshes"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pocprint")
    add_mesh_commands(parser.add_subparsers(dest="command", required=True))
    return run_mesh_command(parser.parse_args(["mesh", *argv]))


def inch_block(tmp_path: Path) -> Path:
    """A 100 mm cube written in inches (ASCII STL without any unit statement)."""
    box = trimesh.creation.box(extents=(100 / 25.4,) * 3)
    path = tmp_path / "block.stl"
    path.write_text(trimesh.exchange.stl.export_stl_ascii(box))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- inspect


def test_inspect_prints_a_table_with_the_unit_guess(capsys):
    assert run(["inspect", str(DATA / "defect_inverted_aorta_vmtk.stl")]) == 0
    out = capsys.readouterr().out
    assert "Units: mm (x1 to mm), size guess (clear-cut)" in out
    assert "inside out                     YES" in out
    assert "self-intersecting faces        not checked" in out


def test_inspect_json_with_units_and_optional_checks(tmp_path, capsys):
    path = inch_block(tmp_path)
    code = run(
        ["inspect", str(path), "--json", "--units", "in", "--self-intersections"]
        + ["--min-feature-mm", "0.8"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lengths_in"] == "mm" and data["units"]["scale_to_mm"] == 25.4
    assert data["analysis"]["extents"] == pytest.approx([100.0] * 3, abs=1e-3)
    assert data["analysis"]["self_intersecting_faces"] == 0
    assert data["analysis"]["thin_walls"]["warning"] is None
    assert data["units"]["guess"]["clear"] is False  # the file alone is not clear-cut


def test_inspect_without_a_unit_stays_in_file_units_and_skips_thin_walls(tmp_path, capsys):
    assert run(["inspect", str(inch_block(tmp_path)), "--json", "--min-feature-mm", "0.8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lengths_in"] == "file units" and data["units"]["scale_to_mm"] is None
    assert data["analysis"]["thin_walls"] is None and "not clear-cut" in data["note"]


def test_inspect_3mf_uses_its_declared_unit(capsys):
    assert run(["inspect", str(DATA / "fmt_featuretype_inch.3mf"), "--json"]) == 0
    units = json.loads(capsys.readouterr().out)["units"]
    assert units["unit"] == "in" and units["scale_to_mm"] == 1.0  # the reader applied it
    assert "declared in the 3MF" in units["source"]


def test_inspect_unreadable_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "scan.stl"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    assert run(["inspect", str(bad)]) == 2
    assert "PNG image" in capsys.readouterr().err
    assert run(["inspect", str(tmp_path / "missing.stl")]) == 2


# ----------------------------------------------------------------------------- repair


def test_repair_with_units_writes_a_millimetre_mesh_and_the_report(tmp_path, capsys):
    source, out, report = inch_block(tmp_path), tmp_path / "out.stl", tmp_path / "r.json"
    code = run(["repair", str(source), "-o", str(out), "--units", "in", "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    repaired = analyse(load_mesh(out, "stl"))
    assert repaired.extents == pytest.approx((100.0, 100.0, 100.0), abs=1e-3)
    assert repaired.watertight and repaired.volume_mm3 == pytest.approx(1e6, rel=1e-5)
    data = json.loads(report.read_text())
    assert data["verdict"] == "repaired" and data["printable"] is True
    assert data["units"]["unit"] == "in" and data["units"]["scale_to_mm"] == 25.4
    assert data["units"]["source"] == "--units in"
    assert data["input"]["sha256"] == sha256(source)
    assert data["output"]["sha256"] == sha256(out)
    assert data["after"]["self_intersecting_faces"] == 0 and data["warnings"] == []
    assert data["device_type"] == "default" and data["settings"]["max_hole_edges"] == 100
    assert out.read_bytes()[:19] == b"pocprint binary STL"


def test_repair_clear_unit_needs_no_option(tmp_path):
    out, report = tmp_path / "aorta.3mf", tmp_path / "aorta.json"
    code = run(
        ["repair", str(DATA / "defect_inverted_aorta_vmtk.stl"), "-o", str(out)]
        + ["--report", str(report), "--device-type", "anatomical_model"]
    )
    assert code == 0
    data = json.loads(report.read_text())
    assert data["units"]["source"] == "size guess (clear-cut)"
    assert data["before"]["inside_out"] and not data["after"]["inside_out"]
    assert data["device_type"] == "anatomical_model"
    assert analyse(load_mesh(out, "3mf")).volume_mm3 > 0


def test_repair_with_unclear_units_exits_3_and_writes_nothing(tmp_path, capsys):
    out, report = tmp_path / "out.stl", tmp_path / "r.json"
    code = run(["repair", str(inch_block(tmp_path)), "-o", str(out), "--report", str(report)])
    assert code == 3
    err = capsys.readouterr().err
    assert "--units" in err and "in (100 x 100 x 100 mm)" in err
    assert not out.exists() and not report.exists()


def test_repair_needing_attention_exits_1_and_marks_output_and_report(tmp_path, capsys):
    out, report = tmp_path / "soup.stl", tmp_path / "soup.json"
    code = run(
        ["repair", str(DATA / "defect_soup.stl"), "-o", str(out), "--units", "cm"]
        + ["--report", str(report)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert ATTENTION_MARK in err and "reason: " in err and "boundary edges remain" in err
    assert out.read_bytes().startswith(f"pocprint {ATTENTION_MARK}".encode())
    data = json.loads(report.read_text())
    assert data["verdict"] == "needs_attention" and data["printable"] is False
    assert data["status"] == ATTENTION_MARK == data["output"]["status"]
    assert data["reasons"] and data["output"]["sha256"] == sha256(out)
    load_mesh(out, "stl")  # the marked file is still a valid STL


@pytest.mark.parametrize("suffix", ["ply", "obj"])
def test_marked_ply_and_obj_outputs_stay_readable(tmp_path, suffix):
    out, report = tmp_path / f"soup.{suffix}", tmp_path / "soup.json"
    code = run(
        ["repair", str(DATA / "defect_soup.stl"), "-o", str(out), "--units", "cm"]
        + ["--report", str(report)]
    )
    assert code == 1
    assert ATTENTION_MARK.encode() in out.read_bytes()[:200]
    assert len(load_mesh(out, suffix).faces) > 0


def test_repair_unreadable_input_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.stl"
    bad.write_text("solid x\nendsolid x\n")
    out, report = tmp_path / "out.stl", tmp_path / "r.json"
    assert run(["repair", str(bad), "-o", str(out), "--report", str(report)]) == 2
    assert "no triangles" in capsys.readouterr().err
    assert not out.exists() and not report.exists()


def test_repair_refuses_bad_output_and_settings_before_reading(tmp_path, capsys):
    source = DATA / "defect_inverted_aorta_vmtk.stl"
    report = tmp_path / "r.json"
    assert (
        run(["repair", str(source), "-o", str(tmp_path / "out.step"), "--report", str(report)]) == 2
    )
    assert "'.step'" in capsys.readouterr().err
    assert run(["repair", str(source), "-o", str(source), "--report", str(report)]) == 2
    assert "three different files" in capsys.readouterr().err
    settings = tmp_path / "repair.toml"
    settings.write_text("[default]\nmax_hole_edges = -1\n")
    out = tmp_path / "out.stl"
    code = run(
        ["repair", str(source), "-o", str(out), "--report", str(report)]
        + ["--settings", str(settings)]
    )
    assert code == 2 and "'max_hole_edges'" in capsys.readouterr().err
    assert not out.exists() and not report.exists()


def test_unknown_device_type_is_an_argument_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run(["repair", "a.stl", "-o", "b.stl", "--report", "c.json", "--device-type", "implant"])
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- as a process


def test_module_runs_inspect_as_a_process():
    proc = subprocess.run(
        [sys.executable, "-m", "pocprint.mesh.cli", "mesh", "inspect"]
        + [str(DATA / "defect_nonmanifold_tetrahedra.obj"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["analysis"]["non_manifold_edges"] == 3
    assert data["units"]["guess"]["clear"] is False


def test_module_repair_exit_code_3_as_a_process(tmp_path):
    out, report = tmp_path / "o.stl", tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pocprint.mesh.cli", "repair", str(inch_block(tmp_path))]
        + ["-o", str(out), "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3 and "not clear-cut" in proc.stderr
    assert proc.stdout == "" and not out.exists()


@pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason="../shared/data/meshes not present (it exists in CI, not in a fresh clone)",
)
def test_corpus_metre_mandible_is_scaled_by_the_clear_guess(tmp_path):
    out, report = tmp_path / "jaw.stl", tmp_path / "jaw.json"
    code = run(
        ["repair", str(CORPUS / "anat_mandible_m_myosim.stl"), "-o", str(out)]
        + ["--report", str(report)]
    )
    data = json.loads(report.read_text())
    assert data["units"]["unit"] == "m" and data["units"]["scale_to_mm"] == 1000.0
    extents = np.asarray(analyse(load_mesh(out, "stl")).extents)
    assert 100 < extents.max() < 110  # 0.107 m
    assert code == (0 if data["verdict"] == "repaired" else 1)


def test_main_command_line_runs_mesh_inspect_without_a_data_directory(tmp_path):
    """`pocprint mesh ...` is an offline tool: it must not create var/ or need a database."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, POCPRINT_DATA_DIR=str(tmp_path / "data"))
    mesh = Path(__file__).parent / "data" / "meshes" / "defect_inverted_aorta_vmtk.stl"
    out = subprocess.run(
        [sys.executable, "-m", "pocprint.cli", "mesh", "inspect", str(mesh), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["analysis"]["inside_out"] is True
    assert not (tmp_path / "data").exists()
