"""Fault-injection figures: runs the kill-point suite (tests/test_faults.py) on SQLite and,
where POCPRINT_TEST_DATABASE_URL is set, PostgreSQL, with the real OctoPrint and PrusaSlicer,
and collects what each run wrote: kill points tried, restarts, jobs lost, jobs sent twice,
half-written records, whether the audit chain still verifies (target 0, 0, 0, yes).

Writes bench/results/faults.json. `python -m bench.faults`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pocprint.config import REPO_ROOT

OUT = REPO_ROOT / "bench" / "results" / "faults.json"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pocprint-faults-") as tmp:
        env = {**os.environ, "POCPRINT_FAULT_FIGURES": tmp}
        started = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_faults.py",
            ],
            cwd=REPO_ROOT,
            env=env,
        )
        seconds = round(time.monotonic() - started, 1)
        runs = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*.json"))]
    totals = {
        key: sum(r[key] for r in runs)
        for key in ("kill_points_tried", "restarts", "jobs_lost", "jobs_sent_twice")
    }
    totals["half_written_records"] = sum(r["half_written_records"] for r in runs)
    result = {
        "benchmark": "faults",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "suite_passed": run.returncode == 0,
        "seconds": seconds,
        "databases": [r["database"] for r in runs],
        "totals": totals,
        "target": {"jobs_lost": 0, "jobs_sent_twice": 0, "half_written_records": 0},
        "runs": runs,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("suite_passed", "databases", "totals")}, indent=2))
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
