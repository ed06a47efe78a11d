"""`pocprint printers check`: validate every printer definition, slicer profile and validated
combination, and ask each networked printer whether it answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pocprint.config import Settings
from pocprint.connectors.base import PrinterState
from pocprint.services.build_planning import candidates
from pocprint.services.lab import build_lab

OK, INVALID, UNREACHABLE = 0, 1, 2


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    exit_code: int = OK

    def say(self, text: str) -> None:
        self.lines.append(text)


def check_printers(settings: Settings) -> CheckReport:
    """Exit code 0: everything valid and every networked printer answers; 1: a definition,
    profile or combination is invalid (nothing else is checked); 2: a printer does not answer
    or has no API key."""
    report = CheckReport()
    try:
        lab = build_lab(settings)
    except ValueError as exc:  # DefinitionError, ProfileError, CombinationError
        report.say(f"INVALID: {exc}")
        report.exit_code = INVALID
        return report
    try:
        report.say(f"{len(lab.profiles)} slicer profile(s) valid:")
        for pid, profile in sorted(lab.profiles.items()):
            bx, by = profile.bed_size
            report.say(
                f"  {pid}: {profile.filament_type} {profile.filament_density:g} g/cm³, "
                f"bed {bx:g} x {by:g} x {profile.max_print_height:g} mm, "
                f"sha256 {profile.sha256[:12]}"
            )
        report.say(f"{len(lab.combinations)} validated combination(s):")
        for combo in lab.combinations:
            where = (
                ", ".join(sorted(combo.printers | combo.printer_models)) or "printers listing it"
            )
            report.say(
                f"  {combo.profile} ({combo.material}) for {', '.join(sorted(combo.device_types))}"
                f" on {where}" + (f" — {combo.validation}" if combo.validation else "")
            )
        for device_type in sorted({t for c in lab.combinations for t in c.device_types}):
            usable = candidates(lab.combinations, lab.printers, lab.profiles, device_type)
            if not usable:
                report.say(
                    f"WARNING: no defined printer may build {device_type.replace('_', ' ')}s"
                )
        report.say(f"{len(lab.printers)} printer(s):")
        names = sorted(lab.printers)
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
            statuses = dict(zip(names, pool.map(lambda n: _status(lab, n), names), strict=True))
        for name in names:
            d = lab.printers[name]
            facts = (
                f"{d.technology}, {' x '.join(f'{v:g}' for v in d.build_volume)} mm, "
                f"{d.material}, S/N {d.serial}, calibration due {d.calibration_due}"
            )
            answer, problem = statuses[name]
            report.say(f"  {name} ({d.connector}; {facts}): {answer}")
            if problem:
                report.exit_code = UNREACHABLE
            if d.min_feature_mm is None:
                report.say(f"    note: {name} states no min_feature_mm")
    finally:
        lab.engine.dispose()
    return report


def _status(lab, name: str) -> tuple[str, bool]:
    definition = lab.printers[name]
    if definition.manual:
        return "manual printer (no network API; the technician confirms start and end)", False
    if not definition.api_key(lab.settings.secrets_dir):
        source = definition.api_key_env or definition.api_key_file
        return f"NO API KEY (looked for {source})", True
    status = lab.connector(name).status()
    text = f"{status.state} ({status.detail})" + (f" — {status.error}" if status.error else "")
    return ("answers: " if status.state is not PrinterState.OFFLINE else "DOES NOT ANSWER: ") + (
        text
    ), status.state is PrinterState.OFFLINE
