"""The hospital systems a lab is linked to, read from the configuration once at start (a bad
option stops the start with a message naming it)."""

from __future__ import annotations

from dataclasses import dataclass

from pocprint.config import Settings
from pocprint.hospital.delivery import NotifyConfig, notify_config
from pocprint.hospital.dicom import PacsConfig, pacs_config
from pocprint.hospital.directory import DirectoryConfig, directory_config
from pocprint.hospital.errors import ConfigError

DEFAULT_PATIENT_CODE_SYSTEM = "urn:pocprint:patient-code"


@dataclass(frozen=True)
class HospitalLinks:
    pacs: PacsConfig | None = None
    directory: DirectoryConfig | None = None
    notify: NotifyConfig | None = None
    # FHIR: the identifier system of the lab's pseudonymous patient codes.
    patient_code_system: str = DEFAULT_PATIENT_CODE_SYSTEM


def hospital_links(settings: Settings) -> HospitalLinks:
    fhir = settings.fhir or {}
    system = str(fhir.get("patient_code_system", DEFAULT_PATIENT_CODE_SYSTEM))
    if not system or " " in system:
        raise ConfigError("[fhir] patient_code_system must be a URI without spaces")
    return HospitalLinks(
        pacs=pacs_config(settings.pacs),
        directory=directory_config(settings.directory, settings.secrets_dir),
        notify=notify_config(settings.notifications, settings.secrets_dir),
        patient_code_system=system,
    )
