"""The hospital's PACS over DICOM (pynetdicom): find a study by accession number or study UID
(C-FIND, study root), list a series' images, and store an instance (C-STORE). The instance a
printed model becomes is made in `encapsulated.py`.

The patient's name and ID come back from a lookup; they are kept apart (`Patient`) so that
callers decide where they may go, and pynetdicom is told never to log query identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pocprint.hospital.errors import ConfigError, PeerError

# Query and answer identifiers hold patient names: never in pocprint's logs.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")
_WILDCARDS = set("*?\\")
PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class PacsConfig:
    host: str
    port: int
    called_ae: str  # the PACS's AE title
    calling_ae: str  # pocprint's own AE title (registered at the PACS)
    timeout_s: float = 10.0
    archive: bool = True  # store released models into their study

    @property
    def label(self) -> str:
        return f"PACS {self.called_ae} at {self.host}:{self.port}"


def pacs_config(section: dict | None) -> PacsConfig | None:
    """[pacs] of config/pocprint.toml; None when the site has no PACS configured."""
    if not section or not section.get("host"):
        return None
    port = section.get("port", 104)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"[pacs] port must be a port number (1-65535), not {port!r}")
    titles = {}
    for key in ("called_ae", "calling_ae"):
        value = section.get(key, "")
        if not isinstance(value, str) or not AE_TITLE.match(value):
            raise ConfigError(
                f"[pacs] {key} must be an AE title of 1-16 printable characters, not {value!r}"
            )
        titles[key] = value
    timeout = section.get("timeout_s", 10)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"[pacs] timeout_s must be a number of seconds (0-300], not {timeout!r}")
    unknown = set(section) - {"host", "port", "called_ae", "calling_ae", "timeout_s", "archive"}
    if unknown:
        raise ConfigError(f"[pacs] unknown option(s): {', '.join(sorted(unknown))}")
    return PacsConfig(
        host=str(section["host"]),
        port=port,
        timeout_s=float(timeout),
        archive=bool(section.get("archive", True)),
        **titles,
    )


@dataclass(frozen=True)
class Series:
    uid: str
    number: int | None
    description: str
    modality: str
    body_part: str
    slice_thickness_mm: float | None
    instances: int | None

    def as_dict(self) -> dict:
        return {
            "uid": self.uid,
            "number": self.number,
            "description": self.description,
            "modality": self.modality,
            "body_part": self.body_part,
            "slice_thickness_mm": self.slice_thickness_mm,
            "instances": self.instances,
        }


@dataclass(frozen=True)
class Patient:
    """Patient identity as the PACS holds it; never shown in a repr (tracebacks, logs)."""

    name: str  # as DICOM writes it: Family^Given^Middle^Prefix^Suffix
    id: str
    birth_date: str = ""
    sex: str = ""

    @property
    def readable_name(self) -> str:
        family, _, rest = self.name.partition("^")
        given = " ".join(p for p in rest.split("^") if p)
        return f"{given} {family}".strip() if given else family.strip()

    def __repr__(self) -> str:
        return "Patient(<identity withheld>)"


@dataclass(frozen=True)
class Study:
    uid: str
    accession: str
    date: date | None
    time: str
    description: str
    study_id: str
    referring_physician: str
    modalities: tuple[str, ...]
    series: tuple[Series, ...]
    patient: Patient


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, list | tuple) or getattr(value, "VM", 1) > 1:
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _number(ds: Dataset, keyword: str, kind=float):
    text = _text(ds, keyword)
    try:
        return kind(float(text)) if text else None
    except ValueError:
        return None


def _date(text: str) -> date | None:
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date() if text else None  # noqa: DTZ007
    except ValueError:
        return None


class _Association:
    """One association with the PACS for the given presentation contexts."""

    def __init__(self, config: PacsConfig, contexts: list[tuple[str, list[str] | None]]):
        ae = AE(ae_title=config.calling_ae)
        for timeout in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, timeout, config.timeout_s)
        for sop_class, syntaxes in contexts:
            if syntaxes:
                ae.add_requested_context(sop_class, syntaxes)
            else:
                ae.add_requested_context(sop_class)
        self.config = config
        try:
            self.assoc = ae.associate(config.host, config.port, ae_title=config.called_ae)
        except (OSError, ValueError) as exc:
            raise PeerError(f"the {config.label} cannot be reached: {exc}") from exc
        if not self.assoc.is_established:
            why = (
                "it refused pocprint's association (check that the PACS knows AE title "
                f"{config.calling_ae} and that its own AE title is {config.called_ae})"
                if self.assoc.is_rejected
                else "it does not answer"
            )
            raise PeerError(f"the {config.label}: {why}")

    def __enter__(self):
        return self.assoc

    def __exit__(self, *exc):
        if self.assoc.is_established:
            self.assoc.release()


def _find(assoc, query: Dataset, label: str) -> list[Dataset]:
    answers = []
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if not status:
            raise PeerError(f"the {label} stopped answering during the lookup")
        code = status.Status
        if code in PENDING:
            if identifier is not None:
                answers.append(identifier)
        elif code != 0x0000:
            raise PeerError(f"the {label} refused the lookup (DICOM status 0x{code:04X})")
    return answers


def _query(level: str, keys: dict[str, str], wanted: tuple[str, ...]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    for keyword in wanted:
        if keyword not in keys:
            setattr(ds, keyword, "")
    return ds


STUDY_KEYS = (
    "StudyInstanceUID",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "StudyID",
    "ReferringPhysicianName",
    "ModalitiesInStudy",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
)
SERIES_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "SliceThickness",
    "NumberOfSeriesRelatedInstances",
)


def lookup_problem(accession: str | None, study_uid: str | None) -> str | None:
    """Why this lookup cannot be sent (None: it can)."""
    accession, study_uid = (accession or "").strip(), (study_uid or "").strip()
    if bool(accession) == bool(study_uid):
        return "give an accession number or a study instance UID (one of them)"
    if study_uid and (len(study_uid) > 64 or not UID.match(study_uid)):
        return "a study instance UID is digits and dots (e.g. 1.2.840.113619.2.55.3), at most 64"
    if accession and (len(accession) > 16 or _WILDCARDS & set(accession)):
        return "an accession number has at most 16 characters and no wildcards (* ? \\)"
    return None


def find_study(
    config: PacsConfig, *, accession: str | None = None, study_uid: str | None = None
) -> Study:
    """The one study with this accession number (or UID) and its series."""
    if problem := lookup_problem(accession, study_uid):
        raise PeerError(problem)
    keys = (
        {"AccessionNumber": accession.strip()}
        if accession
        else {"StudyInstanceUID": study_uid.strip()}
    )
    what = f"accession number {accession}" if accession else f"study UID {study_uid}"
    with _Association(config, [(StudyRootQueryRetrieveInformationModelFind, None)]) as assoc:
        studies = _find(assoc, _query("STUDY", keys, STUDY_KEYS), config.label)
        if not studies:
            raise PeerError(f"the {config.label} has no study with {what}")
        if len(studies) > 1:
            raise PeerError(
                f"the {config.label} has {len(studies)} studies with {what}; "
                "look the study up by its study instance UID"
            )
        found = studies[0]
        uid = _text(found, "StudyInstanceUID")
        series = _find(
            assoc, _query("SERIES", {"StudyInstanceUID": uid}, SERIES_KEYS), config.label
        )
    return Study(
        uid=uid,
        accession=_text(found, "AccessionNumber"),
        date=_date(_text(found, "StudyDate")),
        time=_text(found, "StudyTime"),
        description=_text(found, "StudyDescription"),
        study_id=_text(found, "StudyID"),
        referring_physician=_text(found, "ReferringPhysicianName"),
        modalities=tuple(m for m in _text(found, "ModalitiesInStudy").split("\\") if m),
        series=tuple(
            sorted(
                (
                    Series(
                        uid=_text(s, "SeriesInstanceUID"),
                        number=_number(s, "SeriesNumber", int),
                        description=_text(s, "SeriesDescription"),
                        modality=_text(s, "Modality"),
                        body_part=_text(s, "BodyPartExamined"),
                        slice_thickness_mm=_number(s, "SliceThickness"),
                        instances=_number(s, "NumberOfSeriesRelatedInstances", int),
                    )
                    for s in series
                ),
                key=lambda s: (s.number is None, s.number or 0, s.uid),
            )
        ),
        patient=Patient(
            name=_text(found, "PatientName"),
            id=_text(found, "PatientID"),
            birth_date=_text(found, "PatientBirthDate"),
            sex=_text(found, "PatientSex"),
        ),
    )


def source_instances(config: PacsConfig, study_uid: str, series_uid: str) -> list[tuple[str, str]]:
    """(SOP class UID, SOP instance UID) of every image of the source series."""
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
    with _Association(config, [(StudyRootQueryRetrieveInformationModelFind, None)]) as assoc:
        answers = _find(
            assoc, _query("IMAGE", keys, ("SOPInstanceUID", "SOPClassUID")), config.label
        )
    return sorted((_text(a, "SOPClassUID"), _text(a, "SOPInstanceUID")) for a in answers)


def choose_source_series(series: tuple[Series, ...] | list[Series]) -> Series | None:
    """The series a model is most likely segmented from: the thinnest slices, CT/MR first."""
    usable = [s for s in series if s.modality in ("CT", "MR")] or list(series)
    if not usable:
        return None
    return min(usable, key=lambda s: (s.slice_thickness_mm is None, s.slice_thickness_mm or 0))


def store(config: PacsConfig, dataset: Dataset) -> int:
    """C-STORE one instance; returns the DICOM status (0 or a warning)."""
    contexts = [(str(dataset.SOPClassUID), [ExplicitVRLittleEndian])]
    with _Association(config, contexts) as assoc:
        if not assoc.accepted_contexts:
            raise PeerError(f"the {config.label} does not accept {dataset.SOPClassUID.name}")
        status = assoc.send_c_store(dataset)
    if not status:
        raise PeerError(f"the {config.label} did not confirm the storage")
    code = status.Status
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
        raise PeerError(f"the {config.label} refused to store the model (status 0x{code:04X})")
    return code
