"""Fleet benchmark (issue 4): polling and dispatch at scale.

1. Poll cycle: 200 printer definitions (the same file format as printers/) point at the
   OctoPrint load generator (bench/octoprint_loadgen.py, one port per simulated printer,
   2-12 ms per answer). The real service code polls them: build_lab, sync_printers, the
   worker's poll pool and services.polling.poll_printers, writing to a real database
   (SQLite, and PostgreSQL in the same run when --database-url or POCPRINT_TEST_DATABASE_URL
   is given). One warm-up cycle registers every printer's first state; then each timed
   cycle reads all 200 printers and writes their state in one transaction.
   Target: one cycle under 1 s on this 2-core machine.
2. Plate clear to job started: a real OctoPrint with its virtual printer, pocprint running
   as its own process (`pocprint serve`, the site's default worker intervals) and several
   sliced, approved jobs waiting. The clock runs from the technician's plate-clear call
   (the real JSON endpoint) until OctoPrint itself reports the job's file printing; the
   job is then cancelled through pocprint and the next run waits for the printer to be
   idle again. Target: under 2 s.

Writes bench/results/fleet.json. `make bench-fleet` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import func, select

from bench.octoprint_loadgen import FLEET_MIX, LoadGenerator, simulated_printer
from pocprint.config import REPO_ROOT, load_settings
from pocprint.scheduler import Worker
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.services.polling import poll_printers
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import AuditEvent, Printer

RESULTS = REPO_ROOT / "bench" / "results" / "fleet.json"
PROFILE = "generic-fff-250x210_pla"
POLL_TARGET_S = 1.0
PLATE_CLEAR_TARGET_S = 2.0


def printer_definition(index: int, url: str) -> str:
    """A printer file as lab staff write it, pointing at one simulated printer."""
    return f"""# Simulated printer {index} of the fleet benchmark: its address is the OctoPrint
# load generator (bench/octoprint_loadgen.py), a load generator, not a printer.
name = "loadgen-{index:03d}"
serial = "LOADGEN-{index:04d}"
model = "simulated OctoPrint (load generator)"
connector = "octoprint"
url = "{url}"
api_key_file = "loadgen.octoprint-key"
technology = "material extrusion"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
material = "PLA"
profiles = ["{PROFILE}"]
calibration_due = 2099-01-01
"""


def write_fleet(directory: Path, urls: list[str], api_key: str, secrets_dir: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, url in enumerate(urls):
        (directory / f"loadgen-{index:03d}.toml").write_text(printer_definition(index, url))
    secrets_dir.mkdir(parents=True, exist_ok=True)
    key = secrets_dir / "loadgen.octoprint-key"
    key.write_text(api_key)
    key.chmod(0o600)


@contextmanager
def private_database(base_url: str | None, workdir: Path):
    """A fresh database: a SQLite file, or a private schema on the given PostgreSQL."""
    if base_url is None:
        yield f"sqlite:///{workdir / 'fleet.db'}"
        return
    schema = "bench_fleet_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def summary(samples: list[float], target: float, criterion: str = "p95") -> dict:
    """Median, p95 and max; the target is met when the ``criterion`` figure is under it."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(samples),
        "median_s": round(statistics.median(ordered), 4),
        "p95_s": round(p95, 4),
        "max_s": round(ordered[-1], 4),
        "min_s": round(ordered[0], 4),
        "target_s": target,
        "target_criterion": criterion,
        "target_met": (p95 if criterion == "p95" else ordered[-1]) < target,
    }


def poll_cycles(
    label: str, base_url: str | None, loadgen: LoadGenerator, cycles: int, workdir: Path
) -> dict:
    """Time `poll_printers` over the whole fleet on one database."""
    workdir.mkdir(parents=True)
    with private_database(base_url, workdir) as database_url:
        settings = load_settings(
            data_dir=workdir / "data",
            database_url=database_url,
            printers_dir=workdir / "printers",
            profiles_dir=REPO_ROOT / "printers" / "profiles",
            secret_key=secrets.token_hex(16),
        )
        write_fleet(settings.printers_dir, loadgen.urls, loadgen.api_key, settings.secrets_dir)
        upgrade(settings.database_url)
        lab = build_lab(settings)
        sync_printers(lab)
        worker = Worker(lab)  # not started: only its poll pool is used, as the worker does
        pool = worker.poll_pool
        names = sorted(lab.printers)
        try:
            t0 = time.perf_counter()
            first = poll_printers(lab, pool)
            warmup = time.perf_counter() - t0
            samples, reads_only = [], []
            for _ in range(cycles):
                time.sleep(0.2)
                t0 = time.perf_counter()
                polled = poll_printers(lab, pool)
                samples.append(time.perf_counter() - t0)
                if polled != len(names):
                    raise RuntimeError(f"a cycle polled {polled} of {len(names)} printers")
            # The same reads through the same pool without the database, to split the time.
            for _ in range(max(3, cycles // 4)):
                time.sleep(0.2)
                t0 = time.perf_counter()
                list(pool.map(lambda name: lab.connector(name).status(), names))
                reads_only.append(time.perf_counter() - t0)
            with read_session(lab.engine) as session:
                states = Counter(p.state for p in session.exec(select(Printer)).all())
                events = session.exec(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action == "printer.state")
                ).one()
        finally:
            pool.shutdown(wait=True)
            lab.engine.dispose()
    # The load generator's state names are pocprint's PrinterState values.
    expected = Counter(simulated_printer(i).kind for i in range(len(loadgen.urls)))
    if states != expected:
        raise RuntimeError(f"printer states {dict(states)} differ from the simulated {expected}")
    return {
        "database": label,
        "dialect": database_url.split(":", 1)[0],
        "printers": len(names),
        "poll_threads": pool._max_workers,
        "warmup_cycle_s": round(warmup, 4),
        "warmup_printers_polled": first,
        "state_change_events": events,
        "states_recorded": dict(states),
        "samples_s": [round(s, 4) for s in samples],
        "summary": summary(samples, POLL_TARGET_S),
        "status_reads_only_samples_s": [round(s, 4) for s in reads_only],
        "status_reads_only_median_s": round(statistics.median(reads_only), 4),
    }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def versions(database_urls: list[str]) -> dict:
    import requests
    import sqlalchemy

    out = {
        "pocprint_commit": _git_commit(),
        "sqlalchemy": sqlalchemy.__version__,
        "requests": requests.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    for url in database_urls:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            out["postgresql"] = conn.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
    return out


def _git_commit() -> str | None:
    head = REPO_ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (REPO_ROOT / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--plate-clear-runs", type=int, default=5)
    parser.add_argument("--skip-plate-clear", action="store_true")
    parser.add_argument("--skip-poll-cycle", action="store_true")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("POCPRINT_TEST_DATABASE_URL"),
        help="PostgreSQL to measure as well (a private schema is created and dropped)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    databases: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.database_url:
        databases.append(("postgresql", args.database_url))
    result: dict = {
        "benchmark": "fleet: poll cycle of 200 printers; plate clear to job started",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "versions": versions([u for _, u in databases if u]),
    }
    with tempfile.TemporaryDirectory(prefix="pocprint-fleet-") as tmp:
        if not args.skip_poll_cycle:
            result["poll_cycle"] = _poll_cycle_part(args, databases, Path(tmp))
        if not args.skip_plate_clear:
            from bench.fleet_plate_clear import plate_clear_runs

            result["plate_clear_to_started"] = plate_clear_runs(
                args.plate_clear_runs, Path(tmp) / "plate-clear", databases
            )
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = _targets(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["targets"], indent=2))
    return 0


def _poll_cycle_part(args: argparse.Namespace, databases: list, tmp: Path) -> dict:
    with LoadGenerator(args.printers) as loadgen:
        part = {
            "method": (
                f"{args.printers} printer definition files point at the OctoPrint load "
                "generator (one asyncio process, one loopback port per simulated printer, "
                f"{loadgen.latency_ms[0]:g}-{loadgen.latency_ms[1]:g} ms per answer, "
                f"state mix per 20 printers: {dict(Counter(FLEET_MIX))}). "
                "services.polling.poll_printers runs with the worker's poll pool against "
                "a real database: a warm-up cycle records each printer's first state, then "
                f"{args.cycles} timed cycles, 0.2 s apart, each reading every printer "
                "(GET /api/job and /api/printer) and writing all their states in one "
                "transaction. 'status_reads_only' repeats the HTTP reads without the "
                "database, to split the cycle."
            ),
            "runs": [
                poll_cycles(label, url, loadgen, args.cycles, tmp / label)
                for label, url in databases
            ],
        }
    for run in part["runs"]:
        s = run["summary"]
        print(
            f"poll cycle, {run['printers']} printers, {run['database']}: median "
            f"{s['median_s']:.3f} s, p95 {s['p95_s']:.3f} s, max {s['max_s']:.3f} s "
            f"(HTTP reads alone {run['status_reads_only_median_s']:.3f} s)",
            flush=True,
        )
    return part


def _targets(result: dict) -> dict:
    out = {}
    for run in (result.get("poll_cycle") or {}).get("runs", []):
        s = run["summary"]
        out[f"poll_cycle_{run['database']}"] = {
            "target": f"one poll cycle of {run['printers']} printers under {POLL_TARGET_S:g} s",
            "median_s": s["median_s"],
            "p95_s": s["p95_s"],
            "max_s": s["max_s"],
            "met": s["target_met"],
        }
    for run in (result.get("plate_clear_to_started") or {}).get("runs", []):
        s = run["summary"]
        out[f"plate_clear_to_started_{run['database']}"] = {
            "target": f"plate clear to job printing on OctoPrint under {PLATE_CLEAR_TARGET_S:g} s",
            "median_s": s["median_s"],
            "max_s": s["max_s"],
            "met": s["target_met"],
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
