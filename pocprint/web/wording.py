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
