"""Slicing: profile validation, G-code metadata parsing and the real PrusaSlicer CLI."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pocprint.slicing.gcode import GcodeMetadata, parse_duration, read_gcode_metadata
from pocprint.slicing.profiles import (
    REQUIRED_KEYS,
    ProfileError,
    SlicerProfile,
    load_profile,
    load_profiles,
)
from pocprint.slicing.prusaslicer import (
    SlicerError,
    SliceResult,
    slice_mesh,
    slicer_binary,
    slicer_version,
)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "printers" / "profiles"
PROFILE_PATH = PROFILES_DIR / "generic-fff-250x210_pla.ini"

MINIMAL_PROFILE = """\
# test profile
bed_shape = 0x0,200x0,200x180,0x180
max_print_height = 150
nozzle_diameter = 0.4
filament_type = PETG
filament_density = 1.27
gcode_flavor = marlin2
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def slicer_bin() -> str:
    """The real PrusaSlicer binary, or skip: these tests are about its actual behaviour."""
    name = os.environ.get("POCPRINT_PRUSASLICER") or "prusa-slicer"
    if shutil.which(name) is None:
        pytest.skip(
            f"PrusaSlicer binary {name!r} not found on PATH "
            "(apt-get install -y prusa-slicer, or set POCPRINT_PRUSASLICER)"
        )
    return slicer_binary()


@pytest.fixture(scope="module")
def profile() -> SlicerProfile:
    return load_profile(PROFILE_PATH)


@pytest.fixture(scope="module")
def cube_gcode(tmp_path_factory, slicer_bin, profile) -> SliceResult:
    """A 20 mm cube sliced once and shared by the read-only tests."""
    work = tmp_path_factory.mktemp("cube")
    mesh = work / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(mesh)
    return slice_mesh(mesh, profile, work / "out" / "S-0001.gcode", binary=slicer_bin)


def _write_profile(tmp_path: Path, text: str, name: str = "test_profile.ini") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _open_box(path: Path) -> Path:
    """A 20 mm box with its +X side missing: slices to nothing in PrusaSlicer."""
    box = trimesh.creation.box(extents=(20, 20, 20))
    keep = box.face_normals[:, 0] < 0.9
    assert keep.sum() == len(box.faces) - 2
    trimesh.Trimesh(box.vertices, box.faces[keep], process=False).export(path)
    return path


def _sphere_with_missing_band(path: Path) -> Path:
    """A 20 mm sphere with a belt of triangles removed: rc 0 but 'Empty layer' warnings."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10)
    band = np.abs(sphere.triangles_center[:, 2] - 2.0) < 0.6
    assert band.sum() > 100
    trimesh.Trimesh(sphere.vertices, sphere.faces[~band], process=False).export(path)
    return path


def _assert_no_output(output: Path) -> None:
    assert not output.exists()
    # no stray work directories or temporary G-code next to the output either
    if output.parent.exists():
        assert list(output.parent.iterdir()) == []


# --------------------------------------------------------------------------- parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("59s", 59),
        ("13m 45s", 13 * 60 + 45),
        ("2h 50m 59s", 2 * 3600 + 50 * 60 + 59),
        ("36d 7h 21m 42s", 36 * 86400 + 7 * 3600 + 21 * 60 + 42),
        ("1d 0h 0m 1s", 86401),
        ("  4h 2s ", 4 * 3600 + 2),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "12", "5 m", "3x", "1h1m", "45s 2m", "2m 2m", "-3s", "1.5h", "1h abc"],
)
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --------------------------------------------------------------------------- profiles


def test_shipped_profile_is_valid_lab_data(profile: SlicerProfile) -> None:
    data = PROFILE_PATH.read_bytes()
    assert profile.id == "generic-fff-250x210_pla"
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.bed_min_xy == (0.0, 0.0)
    assert profile.bed_max_xy == (250.0, 210.0)
    assert profile.bed_size == (250.0, 210.0)
    assert profile.bed_center == (125.0, 105.0)
    assert profile.max_print_height == 210.0
    assert profile.nozzle_diameter == 0.4
    assert profile.filament_type == "PLA"
    assert profile.filament_density == 1.24
    settings = profile.settings
    assert settings["gcode_flavor"] == "marlin2"
    assert 0.2 <= float(settings["layer_height"]) <= 0.3
    assert float(settings["filament_cost"]) > 0
    assert "inherits" not in settings
    # the comment header says what it is for and that it is validated lab data
    header = data.decode().splitlines()[:10]
    assert all(line.startswith("#") for line in header[:5])
    assert "validated lab data" in " ".join(header)
    # start/end G-code must not pull in file names (which could carry patient data)
    for key in ("start_gcode", "end_gcode"):
        assert settings[key], key
        placeholders = set(re.findall(r"[\[{]\s*(\w+)", settings[key]))
        assert placeholders <= {"first_layer_temperature", "first_layer_bed_temperature"}, key


def test_load_minimal_profile(tmp_path: Path) -> None:
    path = _write_profile(tmp_path, MINIMAL_PROFILE + "\n; semicolon comment\n  \n")
    prof = load_profile(path)
    assert prof.id == "test_profile"
    assert prof.bed_size == (200.0, 180.0)
    assert prof.bed_center == (100.0, 90.0)
    assert prof.filament_type == "PETG"
    assert prof.filament_density == 1.27
    assert set(prof.settings) == set(REQUIRED_KEYS)


def test_bed_with_offset_origin(tmp_path: Path) -> None:
    text = MINIMAL_PROFILE.replace("0x0,200x0,200x180,0x180", "-100x-90,100x-90,100x90,-100x90")
    prof = load_profile(_write_profile(tmp_path, text))
    assert prof.bed_size == (200.0, 180.0)
    assert prof.bed_center == (0.0, 0.0)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_profile_missing_required_key(tmp_path: Path, key: str) -> None:
    lines = [ln for ln in MINIMAL_PROFILE.splitlines() if not ln.startswith(f"{key} =")]
    path = _write_profile(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert f"'{key}'" in str(info.value)
    assert "missing" in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("replace", "by", "key", "words"),
    [
        ("filament_density = 1.27", "filament_density = 0", "filament_density", "> 0"),
        ("filament_density = 1.27", "filament_density = heavy", "filament_density", "number"),
        ("max_print_height = 150", "max_print_height = -5", "max_print_height", "> 0"),
        ("nozzle_diameter = 0.4", "nozzle_diameter = 0.4,0.6", "nozzle_diameter", "multi"),
        ("filament_type = PETG", "filament_type = ", "filament_type", "empty"),
        ("bed_shape = 0x0,200x0,200x180,0x180", "bed_shape = 0x0,200x0", "bed_shape", "3 points"),
        ("bed_shape = 0x0,200x0,200x180,0x180", "bed_shape = 0x0,abc", "bed_shape", "points"),
    ],
)
def test_profile_bad_values(tmp_path: Path, replace: str, by: str, key: str, words: str) -> None:
    assert replace in MINIMAL_PROFILE
    path = _write_profile(tmp_path, MINIMAL_PROFILE.replace(replace, by))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert f"'{key}'" in str(info.value)
    assert words in str(info.value)


def test_profile_with_inherits_is_rejected(tmp_path: Path) -> None:
    path = _write_profile(tmp_path, MINIMAL_PROFILE + "inherits = Original Prusa i3 MK3S\n")
    with pytest.raises(ProfileError, match="'inherits'"):
        load_profile(path)


def test_profile_with_sections_is_rejected(tmp_path: Path) -> None:
    # PrusaSlicer silently ignores every key inside a [section] when using --load
    path = _write_profile(tmp_path, "[print:My print]\n" + MINIMAL_PROFILE)
    with pytest.raises(ProfileError, match="section"):
        load_profile(path)


def test_profile_duplicate_key_and_bad_line(tmp_path: Path) -> None:
    dup = _write_profile(tmp_path, MINIMAL_PROFILE + "filament_density = 1.3\n", "dup.ini")
    with pytest.raises(ProfileError, match="'filament_density'.*duplicate"):
        load_profile(dup)
    bad = _write_profile(tmp_path, MINIMAL_PROFILE + "this is not a pair\n", "bad.ini")
    with pytest.raises(ProfileError, match="line 8"):
        load_profile(bad)


def test_profile_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.ini")
    with pytest.raises(ProfileError, match="not found"):
        load_profiles(tmp_path / "nodir")


def test_load_profiles(tmp_path: Path) -> None:
    _write_profile(tmp_path, MINIMAL_PROFILE, "a.ini")
    _write_profile(tmp_path, MINIMAL_PROFILE.replace("PETG", "PLA"), "b.ini")
    (tmp_path / "README.txt").write_text("not a profile")
    profiles = load_profiles(tmp_path)
    assert sorted(profiles) == ["a", "b"]
    assert profiles["b"].filament_type == "PLA"
    assert profiles["a"].sha256 != profiles["b"].sha256
    _write_profile(tmp_path, MINIMAL_PROFILE.replace("1.27", "0"), "c.ini")
    with pytest.raises(ProfileError, match="c.ini"):
        load_profiles(tmp_path)


def test_shipped_profiles_directory_loads() -> None:
    profiles = load_profiles(PROFILES_DIR)
    assert "generic-fff-250x210_pla" in profiles


# --------------------------------------------------------------------------- G-code metadata


def _fake_gcode(body_lines: int, config_extra: str = "") -> str:
    footer = (
        "; filament used [mm] = 1000.50\n"
        "; filament used [cm3] = 2.41\n"
        "; filament used [g] = 2.99\n"
        "; filament cost = 0.07\n"
        "; total filament used [g] = 2.99\n"
        "; estimated printing time (normal mode) = 1d 2h 3m 4s\n"
        "\n"
        "; prusaslicer_config = begin\n"
        "; layer_height = 0.2\n"
        "; start_gcode = G28 ; home\\nG1 Z5\n"
        "; thumbnails = \n"
        f"{config_extra}"
        "; prusaslicer_config = end\n"
    )
    body = "G1 X10.5 Y20.25 E0.0123\n" * body_lines
    return "; generated by PrusaSlicer 2.5.0 on 2026-01-01 at 10:00:00 UTC\n\n" + body + footer


@pytest.mark.parametrize("body_lines", [0, 10, 300_000])
def test_read_gcode_metadata_synthetic(tmp_path: Path, body_lines: int) -> None:
    path = tmp_path / "x.gcode"
    path.write_text(_fake_gcode(body_lines))
    meta = read_gcode_metadata(path)
    assert meta == GcodeMetadata(
        slicer_name="PrusaSlicer",
        slicer_version="2.5.0",
        estimated_time_s=86400 + 2 * 3600 + 3 * 60 + 4,
        filament_mm=1000.5,
        filament_cm3=2.41,
        filament_g=2.99,
        config={"layer_height": "0.2", "start_gcode": "G28 ; home\\nG1 Z5", "thumbnails": ""},
    )
    assert meta.config == {
        "layer_height": "0.2",
        "start_gcode": "G28 ; home\\nG1 Z5",
        "thumbnails": "",
    }


def test_read_gcode_metadata_footer_larger_than_first_window(tmp_path: Path) -> None:
    # a config block bigger than the first 64 KiB tail read must still be found whole
    extra = "".join(f"; key_{i:05d} = {'v' * 40}\n" for i in range(3000))
    path = tmp_path / "big.gcode"
    path.write_text(_fake_gcode(200_000, extra))
    meta = read_gcode_metadata(path)
    assert meta.filament_mm == 1000.5
    assert meta.estimated_time_s == 93784
    assert len(meta.config) == 3 + 3000
    assert meta.config["key_00000"] == "v" * 40


def test_read_gcode_metadata_missing_parts(tmp_path: Path) -> None:
    path = tmp_path / "plain.gcode"
    path.write_text("G28\nG1 X10 Y10\n; total filament used [g] = 0.00\n")
    meta = read_gcode_metadata(path)
    assert (meta.slicer_name, meta.slicer_version) == ("", "")
    assert meta.estimated_time_s is None
    assert meta.filament_mm is None and meta.filament_cm3 is None
    assert meta.filament_g is None  # 0.00 only means the density was unknown
    assert meta.config == {}


# --------------------------------------------------------------------------- real PrusaSlicer


@pytest.mark.slicer
def test_slicer_version(slicer_bin: str) -> None:
    version = slicer_version(slicer_bin)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert slicer_version() == version


def test_slicer_binary_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCPRINT_PRUSASLICER", "/nonexistent/prusa-slicer-xyz")
    with pytest.raises(SlicerError, match="apt-get install"):
        slicer_binary()


@pytest.mark.slicer
def test_slice_cube(cube_gcode: SliceResult, profile: SlicerProfile) -> None:
    result = cube_gcode
    meta = result.metadata
    assert result.gcode_path.is_file()
    assert result.gcode_path.name == "S-0001.gcode"
    assert list(result.gcode_path.parent.iterdir()) == [result.gcode_path]  # no leftovers
    assert result.profile_id == "generic-fff-250x210_pla"
    assert result.profile_sha256 == hashlib.sha256(PROFILE_PATH.read_bytes()).hexdigest()
    assert result.slicer_version == slicer_version()
    assert meta.slicer_name == "PrusaSlicer"
    assert meta.slicer_version.startswith("2.")
    assert meta.estimated_time_s is not None and meta.estimated_time_s > 60
    assert meta.filament_mm is not None and meta.filament_mm > 100
    assert meta.filament_cm3 is not None and meta.filament_cm3 > 0.5
    # 20 mm cube = 8 cm3 solid; at 15 % infill it needs well under that
    assert meta.filament_cm3 < 8
    assert meta.filament_g == pytest.approx(meta.filament_cm3 * 1.24, abs=0.02)
    assert meta.config["layer_height"] == "0.2"
    assert meta.config["filament_density"] == "1.24"
    assert result.duration_s > 0
    assert result.warnings == []
    cmd = result.command
    assert cmd[cmd.index("--load") + 1] == str(PROFILE_PATH)
    assert cmd[cmd.index("--center") + 1] == "125.000,105.000"
    assert cmd[cmd.index("--output") + 1] == str(result.gcode_path)


@pytest.mark.slicer
def test_profile_is_read_completely_by_prusaslicer(
    cube_gcode: SliceResult, profile: SlicerProfile
) -> None:
    # the '#' header lines are ignored and every key we ship is the effective value
    config = cube_gcode.metadata.config
    assert len(config) > 200  # the full effective config, not just our overrides
    for key, value in profile.settings.items():
        assert config.get(key) == value, key


@pytest.mark.slicer
def test_read_gcode_metadata_real_file(cube_gcode: SliceResult) -> None:
    path = cube_gcode.gcode_path
    text = path.read_text()
    assert text.startswith("; generated by PrusaSlicer ")
    meta = read_gcode_metadata(path)
    assert meta == cube_gcode.metadata
    time_line = re.search(r"^; estimated printing time \(normal mode\) = (.+)$", text, re.M)
    assert time_line is not None
    assert meta.estimated_time_s == parse_duration(time_line.group(1))
    mm_line = re.search(r"^; filament used \[mm\] = ([\d.]+)$", text, re.M)
    assert mm_line is not None and meta.filament_mm == float(mm_line.group(1))
    # the config block is the last thing in the file and was parsed whole
    begin = text.index("; prusaslicer_config = begin")
    block = text[begin:].splitlines()[1:-1]
    assert len(meta.config) == len(block)
    # no patient-identifying file name or path leaked into the G-code
    assert "cube" not in text


@pytest.mark.slicer
def test_slice_with_custom_center(tmp_path: Path, slicer_bin: str, profile) -> None:
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(mesh)
    out = tmp_path / "out" / "c.gcode"
    slice_mesh(mesh, profile, out, center_xy=(60.0, 70.0), binary=slicer_bin)
    xs, ys = [], []
    in_print = False
    for line in out.read_text().splitlines():
        if line.startswith(";LAYER_CHANGE"):
            in_print = True
        elif line.startswith("; pocprint") and in_print:
            break  # end G-code
        m = re.match(r"G1 X([\d.]+) Y([\d.]+) E[\d.]+", line)
        if in_print and m:
            xs.append(float(m.group(1)))
            ys.append(float(m.group(2)))
    assert xs and ys
    assert (min(xs) + max(xs)) / 2 == pytest.approx(60.0, abs=1.0)
    assert (min(ys) + max(ys)) / 2 == pytest.approx(70.0, abs=1.0)
    assert max(xs) - min(xs) < 40  # cube plus skirt, not the whole bed


@pytest.mark.slicer
def test_open_box_fails_with_no_layers(tmp_path: Path, slicer_bin: str, profile) -> None:
    mesh = _open_box(tmp_path / "open.stl")
    out = tmp_path / "out" / "open.gcode"
    with pytest.raises(SlicerError) as info:
        slice_mesh(mesh, profile, out, binary=slicer_bin)
    assert "no layers" in str(info.value).lower()
    assert info.value.returncode == 1
    assert "Initializing StaticPrintConfigs" not in info.value.log
    _assert_no_output(out)


@pytest.mark.slicer
def test_empty_layer_warning_is_a_failure(tmp_path: Path, slicer_bin: str, profile) -> None:
    mesh = _sphere_with_missing_band(tmp_path / "band.stl")
    out = tmp_path / "out" / "band.gcode"
    with pytest.raises(SlicerError) as info:
        slice_mesh(mesh, profile, out, binary=slicer_bin)
    assert "Empty layer" in str(info.value)
    assert info.value.returncode == 0  # PrusaSlicer itself reports success here
    assert "print warning" in info.value.log
    _assert_no_output(out)


@pytest.mark.slicer
def test_failure_keeps_existing_output_untouched(tmp_path: Path, slicer_bin: str, profile) -> None:
    mesh = _sphere_with_missing_band(tmp_path / "band.stl")
    out = tmp_path / "out" / "job.gcode"
    out.parent.mkdir()
    out.write_text("previous good G-code\n")
    with pytest.raises(SlicerError):
        slice_mesh(mesh, profile, out, binary=slicer_bin)
    assert out.read_text() == "previous good G-code\n"
    assert list(out.parent.iterdir()) == [out]


@pytest.mark.slicer
def test_garbage_file_fails(tmp_path: Path, slicer_bin: str, profile) -> None:
    mesh = tmp_path / "garbage.stl"
    mesh.write_bytes(b"this is not a mesh at all\n" * 20)
    out = tmp_path / "out" / "garbage.gcode"
    with pytest.raises(SlicerError) as info:
        slice_mesh(mesh, profile, out, binary=slicer_bin)
    assert "Loading of a model file failed" in str(info.value)
    assert info.value.returncode == 1
    _assert_no_output(out)


@pytest.mark.slicer
def test_missing_mesh_fails(tmp_path: Path, slicer_bin: str, profile) -> None:
    out = tmp_path / "out" / "x.gcode"
    with pytest.raises(SlicerError, match="mesh file not found"):
        slice_mesh(tmp_path / "nope.stl", profile, out, binary=slicer_bin)
    assert not out.exists()


@pytest.mark.slicer
def test_profile_changed_on_disk_is_refused(tmp_path: Path, slicer_bin: str) -> None:
    prof_path = tmp_path / "p.ini"
    prof_path.write_bytes(PROFILE_PATH.read_bytes())
    prof = load_profile(prof_path)
    prof_path.write_text(prof_path.read_text().replace("layer_height = 0.2", "layer_height = 0.3"))
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(mesh)
    out = tmp_path / "out" / "x.gcode"
    with pytest.raises(SlicerError, match="changed on disk"):
        slice_mesh(mesh, prof, out, binary=slicer_bin)
    assert not out.exists()


@pytest.mark.slicer
def test_timeout_kills_slicer(tmp_path: Path, slicer_bin: str, profile) -> None:
    # ~82k triangles, 80 mm sphere: about 3 s of slicing on a 2-core machine
    mesh = tmp_path / "big.stl"
    trimesh.creation.icosphere(subdivisions=6, radius=40).export(mesh)
    out = tmp_path / "out" / "big.gcode"
    started = time.monotonic()
    with pytest.raises(SlicerError) as info:
        slice_mesh(mesh, profile, out, timeout_s=0.4, binary=slicer_bin)
    elapsed = time.monotonic() - started
    assert str(info.value) == "slicer timed out after 0.4 s"
    assert info.value.returncode is None
    assert elapsed < 2.0
    _assert_no_output(out)
