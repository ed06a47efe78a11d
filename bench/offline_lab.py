"""A lab for benchmarks that need no printer to answer: one offline printer definition, the
repository's profiles and a fresh SQLite database in a work directory."""

from __future__ import annotations

import secrets
from pathlib import Path

from pocprint.config import REPO_ROOT, Settings, load_settings
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import Lab, build_lab
from pocprint.store.db import upgrade

PROFILE = "generic-fff-250x210_pla"
PRINTER = f"""name = "bench-printer"
serial = "BENCH-1"
connector = "octoprint"
url = "http://127.0.0.1:9"
api_key_env = "POCPRINT_BENCH_UNUSED"
technology = "material extrusion"
build_volume_mm = [250, 210, 210]
material = "PLA"
profiles = ["{PROFILE}"]
calibration_due = 2099-01-01
"""


def offline_lab(workdir: Path, database: str) -> tuple[Settings, Lab]:
    """Settings and a migrated lab with the offline bench printer registered."""
    printers = workdir / "printers"
    printers.mkdir(parents=True)
    (printers / "bench-printer.toml").write_text(PRINTER)
    settings = load_settings(
        data_dir=workdir / "data",
        database_url=f"sqlite:///{workdir / database}",
        printers_dir=printers,
        profiles_dir=REPO_ROOT / "printers" / "profiles",
        secret_key=secrets.token_hex(16),
    )
    upgrade(settings.database_url)
    lab = build_lab(settings)
    sync_printers(lab)
    return settings, lab
