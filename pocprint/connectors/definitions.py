"""Printer definition files (`printers/*.toml`): one file per printer, edited by lab staff.

API keys never live in these files: a definition names an environment variable or a secret
file (relative paths are resolved in the data directory's `secrets/` folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

TECHNOLOGIES = (
    "binder jetting",
    "directed energy deposition",
    "material extrusion",
    "material jetting",
    "powder bed fusion",
    "sheet lamination",
    "vat photopolymerization",
)
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
CONNECTOR_KINDS = ("octoprint", "manual")
# The validated combinations live beside the printer files but are not a printer.
COMBINATIONS_FILE = "validated.toml"
FIELDS = frozenset(
    {
        "name",
        "serial",
        "model",
        "connector",
        "url",
        "api_key_env",
        "api_key_file",
        "technology",
        "build_volume_mm",
        "nozzle_mm",
        "min_feature_mm",
        "material",
        "profiles",
        "calibration_due",
        "demo",
    }
)


class DefinitionError(ValueError):
    """A printer definition that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class PrinterDefinition:
    name: str
    serial: str
    connector: str
    url: str | None
    api_key_env: str | None
    api_key_file: str | None
    model: str
    technology: str
    build_volume: tuple[float, float, float]
    nozzle_mm: float | None
    min_feature_mm: float | None
    material: str
    profiles: tuple[str, ...]
    calibration_due: date | None
    sha256: str
    path: Path
    demo: bool = False  # an OctoPrint virtual printer that `make run` starts itself

    @property
    def manual(self) -> bool:
        """No network API: the technician downloads the G-code and confirms start and end."""
        return self.connector == "manual"

    def api_key(self, secrets_dir: Path) -> str | None:
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value:
                return value.strip()
        if self.api_key_file:
            path = Path(self.api_key_file)
            if not path.is_absolute():
                path = secrets_dir / path
            if path.exists():
                return path.read_text().strip()
        return None


def _require(raw: dict, key: str, kind: type, path: Path):
    if key not in raw:
        raise DefinitionError(f"{path.name}: missing required field '{key}'")
    value = raw[key]
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise DefinitionError(f"{path.name}: field '{key}' must be {kind.__name__}")
    return value


def _optional_positive(raw: dict, key: str, path: Path) -> float | None:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DefinitionError(f"{path.name}: field '{key}' must be a positive number of mm")
    return float(value)


def load_definition(path: Path, known_profiles: set[str] | None = None) -> PrinterDefinition:
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path.name}: not valid TOML ({exc})") from exc
    if "api_key" in raw:
        raise DefinitionError(
            f"{path.name}: API keys must not be written in printer files; "
            "use api_key_env or api_key_file"
        )
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise DefinitionError(
            f"{path.name}: unknown field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(FIELDS))}"
        )
    name = _require(raw, "name", str, path)
    if not NAME.match(name):
        raise DefinitionError(f"{path.name}: name must be lower-case letters, digits and dashes")
    serial = _require(raw, "serial", str, path).strip()
    if not serial:
        raise DefinitionError(f"{path.name}: serial must not be empty")
    connector = _require(raw, "connector", str, path)
    if connector not in CONNECTOR_KINDS:
        raise DefinitionError(
            f"{path.name}: connector must be one of {', '.join(CONNECTOR_KINDS)} "
            f"(got {connector!r}); use 'manual' for a printer without a network API"
        )
    url = raw.get("url")
    if connector != "manual":
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise DefinitionError(
                f"{path.name}: connector '{connector}' needs a 'url' starting with http:// or https://"
            )
        if not raw.get("api_key_env") and not raw.get("api_key_file"):
            raise DefinitionError(
                f"{path.name}: connector '{connector}' needs api_key_env (an environment "
                "variable) or api_key_file (a file under the data directory's secrets/)"
            )
    technology = _require(raw, "technology", str, path)
    if technology not in TECHNOLOGIES:
        raise DefinitionError(
            f"{path.name}: technology must be an ISO/ASTM 52900 category: {', '.join(TECHNOLOGIES)}"
        )
    volume = _require(raw, "build_volume_mm", list, path)
    if len(volume) != 3 or not all(isinstance(v, int | float) and v > 0 for v in volume):
        raise DefinitionError(f"{path.name}: build_volume_mm must be three positive numbers")
    profiles = tuple(_require(raw, "profiles", list, path))
    if not profiles:
        raise DefinitionError(f"{path.name}: list at least one validated slicer profile")
    if known_profiles is not None:
        for profile in profiles:
            if profile not in known_profiles:
                raise DefinitionError(
                    f"{path.name}: profile '{profile}' not found in printers/profiles/"
                )
    due = _require(raw, "calibration_due", date, path)
    nozzle = _optional_positive(raw, "nozzle_mm", path)
    min_feature = _optional_positive(raw, "min_feature_mm", path)
    material = _require(raw, "material", str, path).strip()
    if not material:
        raise DefinitionError(f"{path.name}: material must name the loaded material, e.g. PLA")
    return PrinterDefinition(
        name=name,
        serial=serial,
        connector=connector,
        url=url,
        api_key_env=raw.get("api_key_env"),
        api_key_file=raw.get("api_key_file"),
        model=raw.get("model", ""),
        technology=technology,
        build_volume=tuple(float(v) for v in volume),
        nozzle_mm=nozzle,
        min_feature_mm=min_feature,
        material=material,
        profiles=profiles,
        calibration_due=due,
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
        demo=bool(raw.get("demo", False)),
    )


def load_definitions(
    directory: Path, known_profiles: set[str] | None = None
) -> dict[str, PrinterDefinition]:
    definitions: dict[str, PrinterDefinition] = {}
    directory = Path(directory)
    if not directory.is_dir():
        raise DefinitionError(f"printer directory {directory} not found")
    for path in sorted(directory.glob("*.toml")):
        if path.name == COMBINATIONS_FILE:
            continue
        definition = load_definition(path, known_profiles)
        if definition.name in definitions:
            raise DefinitionError(f"{path.name}: printer name '{definition.name}' is used twice")
        definitions[definition.name] = definition
    return definitions
