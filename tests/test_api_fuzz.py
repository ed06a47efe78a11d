"""Schemathesis 4 against the live service: `st run` reads /api/openapi.json of a real
`pocprint serve` and sends generated requests (examples, boundary values, random and invalid
data) to every operation, with the token of each role in turn. Bounded examples and a fixed
seed keep the run reproducible and a few minutes long.

Required: 0 server errors and 0 answers that break the document (status code, content type,
headers, body schema). The figures go to var/test-artifacts/api-fuzz-<database>.json. On
PostgreSQL only the fuzzing phase runs, to keep the suite's time in bounds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pocprint.config import REPO_ROOT
from pocprint.store.db import upgrade

from conftest import ROLE_USERS, make_settings, write_printer
from service_process import ServiceProcess
from spine_helpers import make_people

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = int(os.environ.get("POCPRINT_FUZZ_EXAMPLES", "6"))
SEED = 14
# Every role by default; POCPRINT_FUZZ_ROLES=tech,rad narrows a run by hand.
ROLES = [r for r in os.environ.get("POCPRINT_FUZZ_ROLES", ",".join(ROLE_USERS)).split(",") if r]
RESULTS = REPO_ROOT / "var" / "test-artifacts"


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if not found:
        pytest.skip("schemathesis is not installed (it is in the [test] extra)")
    return found


def _run(
    st: str, service: ServiceProcess, token: str, report: Path, phases: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            st,
            "run",
            f"{service.url}/api/openapi.json",
            "--url",
            service.url,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--phases",
            phases,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--no-shrink",
            "--generation-database",
            "none",
            "--generation-with-security-parameters",
            "false",
            "--request-timeout",
            "60",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=report.parent,
    )


def _figures(report: Path) -> dict:
    """Requests sent and problems found, read from the run's NDJSON event stream."""
    cases, failures = 0, []
    for line in report.read_text().splitlines():
        event = json.loads(line)
        for kind, body in event.items():
            if kind != "ScenarioFinished":
                continue
            recorder = body.get("recorder") or {}
            cases += len(recorder.get("cases") or {})
            for check_list in (recorder.get("checks") or {}).values():
                for check in check_list:
                    if str(check.get("status")).lower() != "success":
                        failures.append(
                            {
                                "check": check.get("name"),
                                "operation": recorder.get("label"),
                                "detail": str(check.get("failure_info") or "")[:400],
                            }
                        )
    return {"cases": cases, "failures": failures}


def _seed_cases(settings) -> None:
    """A few cases, so generated ids (1, 2, 3...) reach real rows and not only 404s."""
    from pocprint.services.cases import create_case
    from pocprint.services.lab import build_lab
    from pocprint.services.users import authenticate

    from conftest import PASSWORD, order_fields

    lab = build_lab(settings)
    tech = authenticate(lab, "tech", PASSWORD)
    for n in range(3):
        create_case(lab, tech, **order_fields(patient_code=f"PX-F{n}", accession_number=f"ACC{n}"))
    lab.engine.dispose()


@pytest.mark.timeout(2400)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    tmp_path, database_url
):
    st = _st()
    printers_dir = tmp_path / "printers"
    write_printer(printers_dir, "fuzz-offline", "http://127.0.0.1:9", key="unused")
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    _seed_cases(settings)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    # On SQLite every phase; on PostgreSQL the random fuzzing only (the boundary values of
    # the coverage phase test the API's own checks, which do not depend on the database).
    phases = "examples,coverage,fuzzing" if database_url.startswith("sqlite") else "fuzzing"
    totals = {"roles": {}, "cases": 0, "failures": [], "phases": phases}
    try:
        for role in ROLES:
            report = tmp_path / f"st-{role}.ndjson"
            run = _run(st, service, tokens[role], report, phases)
            assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
            figures = _figures(report)
            totals["roles"][role] = {"cases": figures["cases"], "exit": run.returncode}
            totals["cases"] += figures["cases"]
            totals["failures"] += [{"role": role, **f} for f in figures["failures"]]
            if run.returncode not in (0, 1):  # 1: checks failed (listed); other: the tool broke
                pytest.fail(f"schemathesis ended with {run.returncode}:\n{run.stdout[-4000:]}")
            if run.returncode == 1 and not figures["failures"]:
                pytest.fail(
                    f"schemathesis reported failures it did not record:\n{run.stdout[-4000:]}"
                )
            assert service.process.poll() is None, service.log_tail()
    finally:
        service.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    (RESULTS / f"api-fuzz-{dialect}.json").write_text(json.dumps(totals, indent=1))
    assert totals["cases"] >= 34 * len(ROLES)  # every operation, every role
    assert totals["failures"] == [], json.dumps(totals["failures"][:20], indent=1)
