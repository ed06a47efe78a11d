"""A printed model as a DICOM instance: Encapsulated STL (Supplement 205) in the study it was
made from, referencing the images of the segmented series, so radiologists see the model
next to the images.

The mesh archived is the approved repaired mesh, always STL. DICOM defines Encapsulated STL,
OBJ and MTL storage; pydicom's UID registry (and DCMTK's) has no Encapsulated 3MF class, so a
part that came as 3MF is archived as the STL that was approved and printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EncapsulatedSTLStorage, ExplicitVRLittleEndian

from pocprint.hospital.dicom import Study

MODEL_MODALITY = "M3D"


@dataclass(frozen=True)
class ModelInstance:
    """What pocprint stores in the study: the UIDs are chosen when the archive is queued, so
    a retry stores the same instance again (the PACS keeps one)."""

    sop_instance_uid: str
    series_uid: str
    series_number: int
    title: str  # e.g. "D2026-000012 anatomical model (approved design A3-1f2e...)"
    manufacturer: str
    software_version: str
    device_serial: str


def encapsulated_stl(
    mesh: bytes,
    model: ModelInstance,
    study: Study,
    source_series_uid: str | None,
    sources: list[tuple[str, str]],
    now: datetime | None = None,
) -> Dataset:
    """An Encapsulated STL instance (Supplement 205) in the given study, its patient module
    copied from the PACS's own answer, referencing the images it was made from."""
    now = now or datetime.now(UTC)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedSTLStorage
    meta.MediaStorageSOPInstanceUID = model.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = EncapsulatedSTLStorage
    ds.SOPInstanceUID = model.sop_instance_uid
    # Patient and study: as the PACS has them, so the instance joins that study.
    ds.PatientName = study.patient.name
    ds.PatientID = study.patient.id
    ds.PatientBirthDate = study.patient.birth_date
    ds.PatientSex = study.patient.sex
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = study.date.strftime("%Y%m%d") if study.date else ""
    ds.StudyTime = study.time
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession
    ds.ReferringPhysicianName = study.referring_physician
    ds.StudyDescription = study.description
    # Encapsulated document series; the mesh's own frame (its coordinates were not
    # registered to the images by pocprint, so it does not claim the images' frame).
    ds.Modality = MODEL_MODALITY
    ds.SeriesInstanceUID = model.series_uid
    ds.SeriesNumber = model.series_number
    ds.SeriesDescription = "3D printed model (pocprint)"
    ds.FrameOfReferenceUID = _derived_uid(model.sop_instance_uid, "1")
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = model.manufacturer
    ds.ManufacturerModelName = "pocprint"
    ds.DeviceSerialNumber = model.device_serial
    ds.SoftwareVersions = model.software_version
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = model.title[:64]
    ds.ConceptNameCodeSequence = []
    units = Dataset()
    units.CodeValue = "mm"
    units.CodingSchemeDesignator = "UCUM"
    units.CodeMeaning = "mm"
    ds.MeasurementUnitsCodeSequence = [units]
    ds.MIMETypeOfEncapsulatedDocument = "model/stl"
    ds.EncapsulatedDocument = mesh + (b"\0" if len(mesh) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(mesh)
    references = []
    for sop_class, sop_instance in sources:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        references.append(item)
    ds.SourceInstanceSequence = references
    if source_series_uid:
        series = Dataset()
        series.SeriesInstanceUID = source_series_uid
        series.ReferencedInstanceSequence = [
            _ref(sop_class, sop_instance) for sop_class, sop_instance in sources
        ]
        ds.ReferencedSeriesSequence = [series]
    return ds


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def _derived_uid(uid: str, suffix: str) -> str:
    """A UID derived from one pocprint generated (same on every retry), within 64 chars."""
    derived = f"{uid}.{suffix}"
    return derived if len(derived) <= 64 else uid[: 63 - len(suffix)].rstrip(".") + "." + suffix
