"""What people are told, and when: the events that notify, and the words of each message.

A message carries codes only (case code, pseudonymous patient code, device serial or part
number) and a link to the page: never a name, record number, indication or free text that
could identify the patient.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    PART_NEEDS_ATTENTION = "part_needs_attention"
    AWAITING_REVIEW = "awaiting_review"
    AWAITING_APPROVAL = "awaiting_approval"
    JOB_AT_RISK = "job_at_risk"
    PRINT_FAILED = "print_failed"
    READY_FOR_RELEASE = "ready_for_release"

    @property
    def title(self) -> str:
        return {
            "part_needs_attention": "A part needs attention",
            "awaiting_review": "A case awaits the appropriateness review",
            "awaiting_approval": "A design awaits approval",
            "job_at_risk": "A job may miss its needed-by date",
            "print_failed": "A print failed or was interrupted",
            "ready_for_release": "A device is ready for release",
        }[self.value]


# Why a part needs attention, by the state it moved to (or the repair verdict).
_PART_REASONS = {
    "awaiting_units": "its unit is not clear-cut: a technician chooses it",
    "rejected": "the file is not a usable mesh",
    "needs_attention": "the repair needs attention: a technician accepts it or uploads again",
    "too_complex": "too complex to repair automatically: a technician repairs the file and "
    "uploads it again",
}


def events_for_part(target: str, verdict: str | None) -> list[tuple[Event, str]]:
    """(event, reason) when a part moves to `target`."""
    if target in ("awaiting_units", "rejected"):
        return [(Event.PART_NEEDS_ATTENTION, _PART_REASONS[target])]
    if target == "processed" and verdict in ("needs_attention", "too_complex"):
        return [(Event.PART_NEEDS_ATTENTION, _PART_REASONS[verdict])]
    if target == "processed" and verdict == "repaired":
        return [(Event.AWAITING_APPROVAL, "repaired: the design approval can be signed")]
    return []


def events_for_job(target: str) -> list[tuple[Event, str]]:
    if target == "failed":
        return [(Event.PRINT_FAILED, "the printer reported the print failed or stopped")]
    if target == "interrupted":
        return [
            (Event.PRINT_FAILED, "the print was interrupted: a technician decides what happened")
        ]
    return []


def message(
    event: Event,
    *,
    case_code: str | None,
    patient_code: str | None,
    subject: str,
    reason: str,
    link: str,
) -> dict:
    """The e-mail subject and text, and the webhook body, of one notification."""
    about = " · ".join(x for x in (f"case {case_code}" if case_code else "", subject) if x)
    lines = [event.title + ".", ""]
    if case_code:
        lines.append(f"Case: {case_code} (patient code {patient_code})")
    if subject and subject != case_code:
        lines.append(f"About: {subject}")
    if reason:
        lines.append(f"Why: {reason}")
    lines += ["", f"Open: {link}", "", "pocprint: this message carries no patient identity."]
    return {
        "title": f"[pocprint] {event.title}: {about}",
        "text": "\n".join(lines) + "\n",
        "body": {
            "event": event.value,
            "title": event.title,
            "case": case_code,
            "patient_code": patient_code,
            "subject": subject,
            "reason": reason,
            "link": link,
        },
    }
