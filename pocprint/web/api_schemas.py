"""Marshmallow schemas of the JSON API (they also generate its OpenAPI document)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from pocprint.domain.cases import DeviceType


class AnatomyPart(ma.Schema):
    region = ma.fields.String(required=True)
    subregion = ma.fields.String(required=True)
    structure = ma.fields.String(load_default="")
    laterality = ma.fields.String(required=True, metadata={"description": "left, right, ..."})
    comment = ma.fields.String(load_default="")


class PatientIdentifiers(ma.Schema):
    name = ma.fields.String()
    record_number = ma.fields.String()
    birth_date = ma.fields.String()


class CaseIn(ma.Schema):
    """The order; the service checks every rule and reports all problems at once."""

    patient_code = ma.fields.String(required=True, metadata={"description": "pseudonymous code"})
    indication = ma.fields.String(required=True)
    device_type = ma.fields.String(
        required=True, validate=validate.OneOf([t.value for t in DeviceType])
    )
    needed_by = ma.fields.Date(required=True)
    ordering_clinician = ma.fields.String(required=True)
    ordering_contact = ma.fields.String(load_default="")
    icd10_code = ma.fields.String(load_default=None, allow_none=True)
    intended_use = ma.fields.String(required=True)
    diagnostic_use = ma.fields.Boolean(required=True)
    anatomy = ma.fields.List(ma.fields.Nested(AnatomyPart), required=True)
    procedure_date = ma.fields.Date(load_default=None, allow_none=True)
    accession_number = ma.fields.String(load_default=None, allow_none=True)
    modality = ma.fields.String(load_default=None, allow_none=True)
    slice_thickness_mm = ma.fields.Float(load_default=None, allow_none=True)
    segmentation_software = ma.fields.String(load_default="")
    segmentation_version = ma.fields.String(load_default="")
    regulatory_route = ma.fields.String(load_default="in_house")
    prescriber_name = ma.fields.String(load_default="")
    prescriber_qualification = ma.fields.String(load_default="")
    design_characteristics = ma.fields.String(load_default="")
    material = ma.fields.String(
        load_default="", metadata={"description": "validated material the device is printed in"}
    )
    patient_identifiers = ma.fields.Nested(
        PatientIdentifiers,
        load_default=None,
        allow_none=True,
        load_only=True,
        metadata={"description": "only where the site configured an identifiers key"},
    )


class CaseChange(ma.Schema):
    """Only the fields sent are changed; the whole order is validated again."""

    patient_code = ma.fields.String()
    indication = ma.fields.String()
    device_type = ma.fields.String()
    needed_by = ma.fields.Date()
    ordering_clinician = ma.fields.String()
    ordering_contact = ma.fields.String()
    icd10_code = ma.fields.String(allow_none=True)
    intended_use = ma.fields.String()
    diagnostic_use = ma.fields.Boolean()
    anatomy = ma.fields.List(ma.fields.Nested(AnatomyPart))
    procedure_date = ma.fields.Date(allow_none=True)
    accession_number = ma.fields.String(allow_none=True)
    modality = ma.fields.String(allow_none=True)
    slice_thickness_mm = ma.fields.Float(allow_none=True)
    segmentation_software = ma.fields.String()
    segmentation_version = ma.fields.String()
    regulatory_route = ma.fields.String()
    prescriber_name = ma.fields.String()
    prescriber_qualification = ma.fields.String()
    design_characteristics = ma.fields.String()
    material = ma.fields.String()


class ReviewIn(ma.Schema):
    decision = ma.fields.String(
        required=True, validate=validate.OneOf(["approve", "reject", "more_info"])
    )
    scenario = ma.fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "scenario_id@catalog_version, or null: no catalog match"},
    )
    justification = ma.fields.String(load_default="")
    password = ma.fields.String(load_default="", load_only=True)


class SignIn(ma.Schema):
    password = ma.fields.String(required=True, load_only=True)
    comment = ma.fields.String(load_default="")


class WithdrawIn(ma.Schema):
    password = ma.fields.String(required=True, load_only=True)
    reason = ma.fields.String(required=True)


class IdOut(ma.Schema):
    id = ma.fields.Integer()


class StepOut(ma.Schema):
    step = ma.fields.String()
    meaning = ma.fields.String()
    state = ma.fields.String()
    part_id = ma.fields.Integer(allow_none=True)
    signature = ma.fields.Dict(allow_none=True)


class ScenarioOut(ma.Schema):
    key = ma.fields.String()
    scenario_id = ma.fields.String()
    catalog_version = ma.fields.String()
    specialty = ma.fields.String()
    condition_group = ma.fields.String()
    scenario_text = ma.fields.String()
    rating = ma.fields.Integer(allow_none=True)
    band = ma.fields.String()
    source_doi = ma.fields.String()
    source_table = ma.fields.String()
    status = ma.fields.String()


class CaseOut(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    patient_code = ma.fields.String()
    indication = ma.fields.String()
    device_type = ma.fields.String()
    needed_by = ma.fields.Date()
    created_at = ma.fields.DateTime()
    ordering_clinician = ma.fields.String()
    icd10_code = ma.fields.String(allow_none=True)
    intended_use = ma.fields.String()
    diagnostic_use = ma.fields.Boolean()
    anatomy = ma.fields.List(ma.fields.Dict())
    procedure_date = ma.fields.Date(allow_none=True)
    slice_thickness_mm = ma.fields.Float(allow_none=True)
    regulatory_route = ma.fields.String()
    review_status = ma.fields.String()
    material = ma.fields.String(allow_none=True)


class PartOut(ma.Schema):
    id = ma.fields.Integer()
    case_id = ma.fields.Integer()
    label = ma.fields.String()
    fmt = ma.fields.String()
    state = ma.fields.String()
    error = ma.fields.String(allow_none=True)
    verdict = ma.fields.String(allow_none=True)
    source_sha256 = ma.fields.String()
    source_bytes = ma.fields.Integer()
    repaired_sha256 = ma.fields.String(allow_none=True)
    units = ma.fields.String(allow_none=True)
    scale_to_mm = ma.fields.Float(allow_none=True)
    units_guess = ma.fields.Dict(allow_none=True)
    accepted_reason = ma.fields.String(allow_none=True)
    accepted_at = ma.fields.DateTime(allow_none=True)
    analysis_before = ma.fields.Dict(allow_none=True)
    analysis_after = ma.fields.Dict(allow_none=True)
    repair_report = ma.fields.Dict(allow_none=True)
    uploaded_at = ma.fields.DateTime()
    processed_at = ma.fields.DateTime(allow_none=True)


class JobOut(ma.Schema):
    id = ma.fields.Integer()
    serial = ma.fields.String()
    case_id = ma.fields.Integer()
    part_id = ma.fields.Integer()
    state = ma.fields.String()
    error = ma.fields.String(allow_none=True)
    profile_id = ma.fields.String()
    printer_id = ma.fields.Integer(allow_none=True)
    mesh_sha256 = ma.fields.String()
    gcode_sha256 = ma.fields.String(allow_none=True)
    gcode_sha1 = ma.fields.String(allow_none=True)
    printer_sha1 = ma.fields.String(allow_none=True)
    slicer_version = ma.fields.String(allow_none=True)
    profile_sha256 = ma.fields.String(allow_none=True)
    estimated_time_s = ma.fields.Integer(allow_none=True)
    filament_mm = ma.fields.Float(allow_none=True)
    filament_g = ma.fields.Float(allow_none=True)
    progress = ma.fields.Float(allow_none=True)
    outcome = ma.fields.String(allow_none=True)
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)
    material = ma.fields.String(allow_none=True)
    orientation = ma.fields.String()
    placement = ma.fields.Dict(allow_none=True)
    urgent = ma.fields.Boolean()
    urgent_reason = ma.fields.String(allow_none=True)
    cancel_reason = ma.fields.String(allow_none=True)
    controls = ma.fields.List(ma.fields.Dict(), allow_none=True)


class SliceOut(ma.Schema):
    id = ma.fields.Integer()
    profile_id = ma.fields.String()
    profile_sha256 = ma.fields.String()
    material = ma.fields.String()
    gcode_sha256 = ma.fields.String()
    gcode_sha1 = ma.fields.String()
    gcode_bytes = ma.fields.Integer()
    slicer_name = ma.fields.String()
    slicer_version = ma.fields.String()
    estimated_time_s = ma.fields.Integer(allow_none=True)
    filament_mm = ma.fields.Float(allow_none=True)
    filament_cm3 = ma.fields.Float(allow_none=True)
    filament_g = ma.fields.Float(allow_none=True)
    placement = ma.fields.Dict(allow_none=True)
    sliced_at = ma.fields.DateTime()


class CaseDetailOut(CaseOut):
    parts = ma.fields.List(ma.fields.Nested(PartOut))
    jobs = ma.fields.List(ma.fields.Nested(JobOut))


class QueueItemOut(ma.Schema):
    id = ma.fields.Integer()
    serial = ma.fields.String()
    state = ma.fields.String()
    error = ma.fields.String(allow_none=True)
    case_code = ma.fields.String()
    needed_by = ma.fields.Date()
    profile = ma.fields.String()
    estimated_time_s = ma.fields.Integer(allow_none=True)
    predicted_finish = ma.fields.DateTime(allow_none=True)
    at_risk = ma.fields.Boolean()
    device_type = ma.fields.String()
    profiles = ma.fields.List(ma.fields.String())
    urgent = ma.fields.Boolean()
    urgent_reason = ma.fields.String(allow_none=True)
    orientation = ma.fields.String()


class PrinterOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    serial = ma.fields.String()
    material = ma.fields.String()
    state = ma.fields.String()
    detail = ma.fields.String()
    error = ma.fields.String(allow_none=True)
    plate_clear = ma.fields.Boolean()
    progress = ma.fields.Float(allow_none=True)
    temperatures = ma.fields.Dict()
    job = ma.fields.Dict(allow_none=True)
    connector = ma.fields.String()
    manual = ma.fields.Boolean()
    technology = ma.fields.String()
    build_volume = ma.fields.List(ma.fields.Float())
    min_feature_mm = ma.fields.Float(allow_none=True)
    calibration_due = ma.fields.Date(allow_none=True)
    time_left_s = ma.fields.Integer(allow_none=True)
    eta = ma.fields.DateTime(allow_none=True)
    alerts = ma.fields.List(ma.fields.String())


class MeshUpload(ma.Schema):
    mesh = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})
    label = ma.fields.String(load_default="", metadata={"description": "part name, e.g. tumour"})


class ApprovalIn(ma.Schema):
    password = ma.fields.String(
        required=True, load_only=True, metadata={"description": "signer re-enters the password"}
    )
    comment = ma.fields.String(load_default="")


class ApprovalOut(ma.Schema):
    job_id = ma.fields.Integer()
    serial = ma.fields.String()


class UnitsIn(ma.Schema):
    units = ma.fields.String(required=True, validate=validate.OneOf(["mm", "cm", "m", "in"]))


class ReasonIn(ma.Schema):
    reason = ma.fields.String(required=True)


class UrgentIn(ReasonIn):
    urgent = ma.fields.Boolean(load_default=True)


class OrientationIn(ReasonIn):
    orientation = ma.fields.String(
        required=True, validate=validate.OneOf(["stable", "as_designed"])
    )


class NoteIn(ma.Schema):
    note = ma.fields.String(load_default="")


class ManualStartIn(NoteIn):
    confirm_file = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "the technician confirms the file started at the printer is the "
            "G-code downloaded from pocprint (its SHA-256 checked at download)"
        },
    )


class ManualEndIn(NoteIn):
    result = ma.fields.String(required=True, validate=validate.OneOf(["printed", "failed"]))


class ResolveIn(ReasonIn):
    resolution = ma.fields.String(
        required=True, validate=validate.OneOf(["printed", "failed", "reprint"])
    )


class OutcomeIn(ma.Schema):
    outcome = ma.fields.String(required=True, validate=validate.OneOf(["accepted", "rejected"]))
    note = ma.fields.String(load_default="")
