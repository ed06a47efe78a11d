"""The lab's words for stored values: pages and PDFs never show a program's value such as
"awaiting_units", "surgical_planning" or "needs_attention". One table, one filter (`say`);
an unknown value falls back to its words with underscores removed."""

from __future__ import annotations

WORDS = {
    # part states
    "queued": "waiting for analysis",
    "processing": "analysis and repair running",
    "awaiting_units": "unit to confirm",
    "processed": "analysed and repaired",
    "approved": "design approved",
    # verdicts
    "repaired": "repaired",
    "needs_attention": "needs attention",
    "too_complex": "too complex to repair automatically",
    # build job states
    "slice_queued": "waiting for slicing",
    "slicing": "slicing",
    "slice_failed": "slicing failed",
    "ready": "ready for a printer",
    "dispatching": "being sent to the printer",
    "printing": "printing",
    "printed": "printed",
    "failed": "print failed",
    "cancelled": "cancelled",
    "interrupted": "interrupted: check the printer",
    "completed": "outcome recorded",
    # outcomes
    "accepted": "build accepted",
    "rejected": "rejected",
    # review status
    "awaiting_review": "waiting for review",
    "info_requested": "more information requested",
    "more_info": "asked for more information",
    "approve": "approved",
    "reject": "rejected",
    # gate step states
    "valid": "signed",
    "missing": "not signed yet",
    "void": "void: signed content changed",
    "withdrawn": "withdrawn",
    "not_approved": "not approved",
    # device types, intended use, routes
    "anatomical_model": "anatomical model",
    "surgical_guide": "surgical guide",
    "surgical_planning": "surgical planning",
    "intraoperative_guide": "intra-operative guide",
    "patient_communication": "patient communication",
    "education": "education",
    "in_house": "in-house device (MDR Art. 5(5))",
    "custom_made": "custom-made device (MDR Art. 2(3))",
    "manufacturer_system": "manufacturer's validated system",
    "not_a_device": "not a medical device",
    # orientation, printer states
    "stable": "laid on a stable face",
    "as_designed": "kept as designed",
    "idle": "idle",
    "offline": "offline",
    "busy": "busy",
    "paused": "paused",
    "error": "error",
    "not_applicable": "n/a",
    # QA and post-processing
    "done": "done",
    "open": "to do",
    "reprint": "reprint",
    "scrap": "scrapped",
    # calibration
    "current": "current",
    "overdue": "overdue",
    "not_logged": "not logged",
}


def say(value) -> str:
    if value is None or value == "":
        return "—"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    text = str(value)
    return WORDS.get(text, text.replace("_", " "))


def device_status(state: str | None, outcome: str | None, released: bool = False) -> str:
    """One status for a build: never "completed" beside "rejected"."""
    if state == "completed":
        if outcome == "rejected":
            return "build rejected"
        if released:
            return "released"
        return "build accepted"
    return say(state)


EVENTS = {
    "case.created": "order created",
    "case.updated": "order changed",
    "case.identifiers_viewed": "patient identifiers viewed",
    "review.approve": "appropriateness approved",
    "review.reject": "appropriateness rejected",
    "review.more_info": "more information requested",
    "part.uploaded": "mesh uploaded",
    "part.units_detected": "unit read from the file",
    "part.units_unclear": "unit unclear: asked the technician",
    "part.units_confirmed": "unit confirmed",
    "part.repaired": "mesh analysed and repaired",
    "part.rejected": "mesh refused",
    "part.requeued": "mesh queued again",
    "part.repair_accepted": "repair accepted with a reason",
    "design.approved": "design approved",
    "signature.signed": "signed",
    "signature.withdrawn": "signature withdrawn",
    "gate.cleared": "clinical gate cleared",
    "gate.refused": "clinical gate refused",
    "job.created": "build job created",
    "job.sliced": "sliced",
    "job.slice_failed": "slicing failed",
    "job.orientation": "orientation changed",
    "job.priority": "priority changed",
    "job.dispatching": "sent to a printer",
    "job.dispatch_failed": "sending to the printer failed",
    "job.started": "print started",
    "job.printed": "print finished",
    "job.failed": "print failed",
    "job.cancelled": "cancelled",
    "job.interrupted": "interrupted",
    "job.interruption_resolved": "interruption resolved",
    "job.contact_restored": "printer contact restored",
    "job.recovered": "recovered after a restart",
    "job.requeued": "queued again",
    "job.gcode_downloaded": "G-code downloaded",
    "job.outcome": "build outcome recorded",
    "post.step": "post-processing step recorded",
    "qa.measured": "QA measurement",
    "qa.reprint": "reprint ordered",
    "qa.scrap": "scrapped",
    "device.delivered": "delivered",
    "printer.plate_clear": "plate confirmed clear",
    "printer.state": "printer state changed",
    "lot.loaded": "material lot loaded",
    "lot.unloaded": "material lot taken off",
    # hospital systems (issue 11)
    "device.archive_queued": "queued for the PACS archive",
    "device.archived": "archived in the PACS",
    "job.at_risk": "may miss its needed-by date",
    "outbox.sending": "sending",
    "outbox.sent": "sent",
    "outbox.retry_later": "not sent: will try again",
    "outbox.failed": "not sent: gave up",
    "outbox.retried": "sent again by an administrator",
    "outbox.lease_expired": "sending cut off: will try again",
    "user.directory_synced": "name or roles updated from the directory",
    # planning and outcomes (issue 12)
    "case.at_risk": "predicted ready after its needed-by date",
    "device.outcome": "clinical outcome recorded by the requesting clinician",
    "device.complaint": "complaint recorded",
    "device.incident": "incident recorded",
}


def event_words(action: str | None) -> str:
    """An audit action in words ("job.dispatching" -> "sent to a printer")."""
    if not action:
        return "—"
    return EVENTS.get(action, action.replace(".", ": ").replace("_", " "))
