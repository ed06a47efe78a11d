"""Post-processing and QA checklists: what a device type needs before release (pure rules).

The catalogue comes from `config/postprocessing.toml`; this module validates it, validates the
parameters of a recorded step, judges a QA measurement and says which steps are still open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MEASUREMENTS = "measurements"
FORM = "form"
PARAM_TYPES = ("text", "number", "choice")


class ChecklistError(ValueError):
    pass


@dataclass(frozen=True)
class Param:
    name: str
    label: str
    type: str = "text"
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    kind: str = FORM
    params: tuple[Param, ...] = ()
    min_measurements: int = 1


@dataclass(frozen=True)
class DeviceChecklist:
    device_type: str
    title: str
    status_text: str
    sterile: bool
    steps: tuple[Step, ...] = field(default_factory=tuple)


def parse_catalogue(raw: dict[str, Any]) -> dict[str, DeviceChecklist]:
    """Checklists by device type; a mistake in the file names the step and field."""
    steps: dict[str, Step] = {}
    for key, body in (raw.get("steps") or {}).items():
        kind = body.get("kind", FORM)
        if kind not in (FORM, MEASUREMENTS):
            raise ChecklistError(f"step {key}: kind must be form or measurements")
        params = []
        for p in body.get("params", []):
            if "name" not in p or p.get("type", "text") not in PARAM_TYPES:
                raise ChecklistError(f"step {key}: each parameter needs a name and a valid type")
            if p.get("type") == "choice" and not p.get("choices"):
                raise ChecklistError(f"step {key}, parameter {p['name']}: choices are missing")
            params.append(
                Param(
                    name=p["name"],
                    label=p.get("label", p["name"]),
                    type=p.get("type", "text"),
                    choices=tuple(p.get("choices", ())),
                    min=p.get("min"),
                    max=p.get("max"),
                    unit=p.get("unit", ""),
                )
            )
        steps[key] = Step(
            key=key,
            title=body.get("title", key),
            kind=kind,
            params=tuple(params),
            min_measurements=int(body.get("min_measurements", 1)),
        )
    out = {}
    for device_type, body in (raw.get("device_types") or {}).items():
        missing = [s for s in body.get("steps", []) if s not in steps]
        if missing:
            raise ChecklistError(f"device type {device_type}: unknown steps {missing}")
        out[device_type] = DeviceChecklist(
            device_type=device_type,
            title=body.get("title", device_type),
            status_text=body.get("status_text", ""),
            sterile=bool(body.get("sterile", False)),
            steps=tuple(steps[s] for s in body.get("steps", [])),
        )
    return out


def check_parameters(step: Step, values: dict[str, Any]) -> dict[str, Any]:
    """Every parameter given and valid; returns the cleaned values (numbers as floats)."""
    clean: dict[str, Any] = {}
    problems = []
    for p in step.params:
        raw = values.get(p.name)
        text = "" if raw is None else str(raw).strip()
        if not text:
            problems.append(f"{p.label} is required")
            continue
        if p.type == "number":
            try:
                number = float(text)
            except ValueError:
                problems.append(f"{p.label} must be a number")
                continue
            if (p.min is not None and number < p.min) or (p.max is not None and number > p.max):
                problems.append(f"{p.label} must be between {p.min} and {p.max} {p.unit}".strip())
                continue
            clean[p.name] = number
        elif p.type == "choice":
            if text not in p.choices:
                problems.append(f"{p.label} must be one of: {', '.join(p.choices)}")
                continue
            clean[p.name] = text
        else:
            if len(text) > 200:
                problems.append(f"{p.label} is longer than 200 characters")
                continue
            clean[p.name] = text
    unknown = set(values) - {p.name for p in step.params}
    if unknown:
        problems.append(f"unknown parameters: {', '.join(sorted(unknown))}")
    if problems:
        raise ChecklistError("; ".join(problems))
    return clean


def within_tolerance(designed: float, measured: float, tolerance: float) -> bool:
    return abs(measured - designed) <= tolerance + 1e-9


@dataclass(frozen=True)
class StepStatus:
    step: Step
    state: str  # done | open | failed
    detail: str = ""


def step_states(
    checklist: DeviceChecklist,
    recorded_steps: Iterable[str],
    measurements: Iterable[tuple[str, bool]],
) -> list[StepStatus]:
    """Status of each step from the recorded step keys and (feature, passed) measurements in
    the order they were taken (the latest per feature counts)."""
    recorded = set(recorded_steps)
    latest: dict[str, bool] = {}
    for feature, passed in measurements:
        latest[feature] = passed
    out = []
    for step in checklist.steps:
        if step.kind == MEASUREMENTS:
            failed = sorted(f for f, ok in latest.items() if not ok)
            if failed:
                out.append(StepStatus(step, "failed", "out of tolerance: " + ", ".join(failed)))
            elif len(latest) < step.min_measurements:
                out.append(
                    StepStatus(step, "open", f"{len(latest)} of {step.min_measurements} measured")
                )
            else:
                out.append(StepStatus(step, "done", f"{len(latest)} features within tolerance"))
        else:
            out.append(StepStatus(step, "done" if step.key in recorded else "open"))
    return out
