"""The lab's wiring: settings, database, file store, profiles, printers and their connectors.

Built once by the application factory (or a test) and handed to every service call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from pocprint.config import Settings
from pocprint.connectors.base import PrinterConnector
from pocprint.connectors.definitions import DefinitionError, PrinterDefinition, load_definitions
from pocprint.connectors.registry import make_connector
from pocprint.connectors.unusable import UnusableConnector
from pocprint.domain.combinations import Combination
from pocprint.domain.steps import PER_ROW, Step
from pocprint.hospital.errors import ConfigError
from pocprint.hospital.links import HospitalLinks, hospital_links
from pocprint.services import directory
from pocprint.slicing.combinations import CombinationError, load_combinations
from pocprint.slicing.profiles import ProfileError, SlicerProfile, load_profiles
from pocprint.store.blobs import BlobStore, FileStore
from pocprint.store.db import make_engine

# Lab data files that stop the start when invalid; each message names the file and field.
LabDataError = (DefinitionError, ProfileError, CombinationError, ConfigError)


@dataclass
class Lab:
    settings: Settings
    engine: Engine
    blobs: FileStore
    profiles: dict[str, SlicerProfile]
    printers: dict[str, PrinterDefinition]
    combinations: tuple[Combination, ...] = ()
    hospital: HospitalLinks = field(default_factory=HospitalLinks)  # PACS, directory, ...
    # The engine's hook for due steps (services/lab.py `due`); set by the running engine.
    on_due: Callable[[Step, int | None], None] = lambda _step, _row_id: None
    _connectors: dict[str, PrinterConnector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self, step: Step, row_id: int | None = None) -> None:
        """A step became due: called after the transaction that made it due committed, so
        whoever runs it sees the committed row. Losing this call loses nothing: the engine's
        periodic scan and the sweeper find the row again."""
        if (row_id is None) == (step in PER_ROW):
            raise ValueError(f"step {step} {'needs' if step in PER_ROW else 'takes no'} row id")
        self.on_due(step, row_id)

    def connector(self, printer_name: str) -> PrinterConnector:
        with self._lock:
            if printer_name in self._connectors:
                return self._connectors[printer_name]
            definition = self.printers[printer_name]
            try:
                connector = make_connector(
                    definition.connector,
                    url=definition.url or "",
                    api_key=definition.api_key(self.settings.secrets_dir),
                    timeout=self.settings.printer_timeout_s,
                )
            except ValueError as exc:  # not cached: the key may be provided later
                source = definition.api_key_env or definition.api_key_file
                return UnusableConnector(f"{exc} (looked for {source})")
            self._connectors[printer_name] = connector
            return connector


def build_lab(settings: Settings) -> Lab:
    """Load and validate everything a lab needs; bad definitions stop the start with a message."""
    profiles = load_profiles(settings.profiles_dir)
    printers = load_definitions(settings.printers_dir, set(profiles))
    combinations = load_combinations(
        settings.combinations_file or settings.printers_dir / "validated.toml", profiles, printers
    )
    for path in (settings.blob_dir, settings.work_dir, settings.secrets_dir):
        path.mkdir(parents=True, exist_ok=True)
    hospital = hospital_links(settings)
    lab = Lab(
        settings=settings,
        engine=make_engine(settings.database_url),
        blobs=BlobStore(settings.blob_dir),
        profiles=profiles,
        printers=printers,
        combinations=combinations,
        hospital=hospital,
    )
    directory.register(lab)  # directory accounts' passwords are checked for this lab's engine
    return lab
