"""The hospital's PACS: look the imaging study up for an order (C-FIND), and archive each
released device's approved mesh into that study as an Encapsulated STL instance (C-STORE).

The lookup is a read: it fills the order form and changes nothing. The archive is an outbox
step queued in the release's own transaction and sent by the worker afterwards, so a PACS
that is down never blocks a release and never holds a database transaction open; its
SOP instance UID is chosen when it is queued, so a retry stores the same instance.
The patient's name and ID from the PACS go only into the encrypted identifiers, and only where
the site keeps them; the archive reads them from the PACS again when it sends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from pydicom.uid import EncapsulatedSTLStorage, generate_uid
from sqlmodel import Session

from pocprint.domain.cases import MODALITIES
from pocprint.domain.roles import Permission
from pocprint.hospital import dicom, encapsulated
from pocprint.hospital.errors import PeerError
from pocprint.services import audit, outbox
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, ServiceError
from pocprint.services.lab import Lab
from pocprint.store.models import BuildJob, Case, OutboxMessage, Part, utcnow

MODEL_SERIES_NUMBER = 9001
DEVICE_TYPE_WORDS = {"anatomical_model": "anatomical model", "surgical_guide": "surgical guide"}


class PacsUnavailable(ServiceError):
    """The PACS did not answer or found nothing: the order can still be typed by hand."""

    http_status = 502


@dataclass(frozen=True)
class StudyLookup:
    """What a lookup puts on the order form, with where it came from."""

    fields: dict  # order fields: accession_number, modality, slice_thickness_mm
    imaging: dict  # the case's imaging study (UIDs, date, body part, series, source)
    identifiers: dict | None  # name and record number, only where the site keeps them
    source: str


def _modality(value: str) -> str:
    return value if value in MODALITIES else "other"


def lookup_study(
    lab: Lab, actor: Actor, *, accession: str | None = None, study_uid: str | None = None
) -> StudyLookup:
    """Find the study for an order; never written anywhere until the order is saved."""
    actor.require(Permission.CREATE_CASE)
    config = lab.hospital.pacs
    if config is None:
        raise Invalid(
            "this site has no PACS configured ([pacs] in config/pocprint.toml): "
            "type the imaging fields by hand"
        )
    try:
        study = dicom.find_study(config, accession=accession, study_uid=study_uid)
    except PeerError as exc:
        raise PacsUnavailable(f"{exc}. The order can still be typed by hand.") from exc
    source_series = dicom.choose_source_series(study.series)
    source = f"{config.label}, looked up {utcnow():%Y-%m-%d %H:%M} UTC"
    fields = {
        "accession_number": study.accession or (accession or ""),
        "modality": _modality(
            (source_series.modality if source_series else "")
            or (study.modalities[0] if study.modalities else "")
        ),
        "slice_thickness_mm": source_series.slice_thickness_mm if source_series else None,
    }
    imaging = {
        "study_instance_uid": study.uid,
        "study_date": study.date,
        "body_part": (source_series.body_part if source_series else "") or None,
        "imaging_series": [s.as_dict() for s in study.series],
        "source_series_uid": source_series.uid if source_series else None,
        "imaging_source": source,
    }
    identifiers = None
    if lab.settings.identifiers_key and (study.patient.name or study.patient.id):
        identifiers = {"name": study.patient.readable_name, "record_number": study.patient.id}
        if len(study.patient.birth_date) == 8 and study.patient.birth_date.isdigit():
            b = study.patient.birth_date
            identifiers["birth_date"] = f"{b[:4]}-{b[4:6]}-{b[6:]}"
    return StudyLookup(fields=fields, imaging=imaging, identifiers=identifiers, source=source)


def queue_archive(session: Session, lab: Lab, actor: Actor, job: BuildJob) -> OutboxMessage | None:
    """In the release's transaction: queue the C-STORE of the approved mesh into the case's
    study (nothing when the site has no PACS or the order names no study)."""
    config = lab.hospital.pacs
    case = session.get(Case, job.case_id)
    if config is None or not config.archive or not case.study_instance_uid:
        return None
    part = session.get(Part, job.part_id)
    payload = {
        "study_uid": case.study_instance_uid,
        "source_series_uid": case.source_series_uid,
        "mesh_sha256": job.mesh_sha256,
        "source_format": part.fmt,
        "sop_class_uid": str(EncapsulatedSTLStorage),
        "sop_instance_uid": generate_uid(prefix=None),  # 2.25.<UUID>: unique without a root
        "series_uid": generate_uid(prefix=None),
        "title": f"{job.serial} {DEVICE_TYPE_WORDS.get(case.device_type, 'model')}",
        "on_sent": {"action": "device.archived", "entity": "device", "entity_id": job.serial},
    }
    message = outbox.add(
        session, channel="dicom", destination=config.called_ae, subject=job.serial, payload=payload
    )
    audit.record(
        session,
        actor,
        "device.archive_queued",
        "device",
        job.serial,
        after={
            "pacs": config.label,
            "sop_instance_uid": payload["sop_instance_uid"],
            "study_uid": case.study_instance_uid,
            "outbox_message": message.id,
        },
    )
    return message


def _software_version() -> str:
    try:
        return f"pocprint {version('pocprint')}"
    except PackageNotFoundError:
        return "pocprint"


def send_archive(lab: Lab, message: OutboxMessage) -> dict:
    """The worker's sender for the "dicom" channel: one C-STORE into the study."""
    config = lab.hospital.pacs
    if config is None:
        raise PeerError("no PACS is configured any more ([pacs] in config/pocprint.toml)")
    p = message.payload or {}
    path = lab.blobs.path(p["mesh_sha256"])
    mesh = path.read_bytes()
    if hashlib.sha256(mesh).hexdigest() != p["mesh_sha256"]:
        raise PeerError(f"the stored mesh {p['mesh_sha256'][:12]}... does not match its hash")
    study = dicom.find_study(config, study_uid=p["study_uid"])
    sources = (
        dicom.source_instances(config, study.uid, p["source_series_uid"])
        if p.get("source_series_uid")
        else []
    )
    model = encapsulated.ModelInstance(
        sop_instance_uid=p["sop_instance_uid"],
        series_uid=p["series_uid"],
        series_number=MODEL_SERIES_NUMBER,
        title=p["title"],
        manufacturer=lab.settings.site_name[:64],
        software_version=_software_version(),
        device_serial=message.subject,
    )
    dataset = encapsulated.encapsulated_stl(mesh, model, study, p.get("source_series_uid"), sources)
    status = dicom.store(config, dataset)
    result = {
        "pacs": config.label,
        "sop_class_uid": p["sop_class_uid"],
        "sop_instance_uid": p["sop_instance_uid"],
        "series_uid": p["series_uid"],
        "study_uid": study.uid,
        "source_series_uid": p.get("source_series_uid"),
        "source_images": len(sources),
        "document_sha256": p["mesh_sha256"],
        "mime_type": "model/stl",
        "dicom_status": f"0x{status:04X}",
    }
    if p.get("source_format") == "3mf":
        result["note"] = (
            "the part came as 3MF; DICOM has no Encapsulated 3MF storage class (pydicom's UID "
            "registry), so the approved mesh was archived as Encapsulated STL"
        )
    return result
