"""Marshmallow schemas of the JSON API (they also generate its OpenAPI document)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from pocprint.domain.cases import DeviceType


class CaseIn(ma.Schema):
    patient_code = ma.fields.String(required=True, metadata={"description": "pseudonymous code"})
    indication = ma.fields.String(required=True)
    device_type = ma.fields.String(
        required=True, validate=validate.OneOf([t.value for t in DeviceType])
    )
    needed_by = ma.fields.Date(required=True)


class CaseOut(ma.Schema):
    id = ma.fields.Integer()
    code = ma.fields.String()
    patient_code = ma.fields.String()
    indication = ma.fields.String()
    device_type = ma.fields.String()
    needed_by = ma.fields.Date()
    created_at = ma.fields.DateTime()


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


class ResolveIn(ReasonIn):
    resolution = ma.fields.String(required=True, validate=validate.OneOf(["printed", "failed"]))


class OutcomeIn(ma.Schema):
    outcome = ma.fields.String(required=True, validate=validate.OneOf(["accepted", "rejected"]))
    note = ma.fields.String(load_default="")
