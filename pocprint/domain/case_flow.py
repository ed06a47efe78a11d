"""Where a case is in the lab's workflow, who acts next and what that person does.

One ordered list of steps for every case, from the order to the delivery. Each step of a
case is done, current, held (something must change), waiting (nobody may act yet) or
stopped (rejected). The first step that is not done is where the case is; its `actor` says
who acts next and `action` names the one thing to do, with the permission it needs, so a
page can offer it only to the right person. Pure: the facts come from reads/case_flow.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEPS = (
    ("order", "Order"),
    ("review", "Review"),
    ("mesh", "Mesh"),
    ("signoff", "Sign-off"),
    ("approval", "Approval"),
    ("slicing", "Slicing"),
    ("print", "Print"),
    ("post", "Post-processing"),
    ("qa", "QA"),
    ("release", "Release"),
    ("delivery", "Delivery"),
)
STEP_LABELS = dict(STEPS)
ROLE_WORDS = {
    "technician": "a technician",
    "radiologist": "a radiologist",
    "prescriber": "the requesting clinician or a radiologist",
    "lab_manager": "the lab manager",
    "worker": "pocprint (automatic)",
    "printer": "the printer",
    "nobody": "nobody: the case is closed",
}


@dataclass(frozen=True)
class Action:
    label: str
    permission: str  # domain.roles.Permission value the person must hold
    target: str  # where to do it: "case", "review", "repair", "device", "board", "edit"
    anchor: str = ""
    part_id: int | None = None
    serial: str | None = None


@dataclass(frozen=True)
class Position:
    """The case's current step, in words: what it waits for, who acts, the action."""

    step: str
    status: str  # current | held | waiting | stopped | done (the whole case is delivered)
    summary: str  # e.g. "Waiting for the appropriateness review"
    actor: str  # key of ROLE_WORDS
    action: Action | None = None
    reasons: tuple[str, ...] = ()

    @property
    def who(self) -> str:
        return ROLE_WORDS.get(self.actor, self.actor)

    @property
    def label(self) -> str:
        return STEP_LABELS[self.step]


@dataclass(frozen=True)
class PartFacts:
    """What the flow needs of one part and its latest build."""

    part_id: int
    label: str
    part_state: str  # queued, processing, awaiting_units, processed, rejected, approved
    usable: bool  # repaired, or needs attention and accepted by a technician
    signoff_valid: bool
    design_state: str  # gate step state of the design approval: valid, missing, void...
    job_state: str | None = None
    serial: str | None = None
    outcome: str | None = None
    holds: tuple[str, ...] = ()
    job_error: str | None = None
    post_open: bool = False  # a checklist step recorded on a form is open
    qa_state: str = "open"  # open | done | failed
    disposition: str | None = None  # reprint | scrap, after a failed QA or a rejected build
    release_valid: bool = False
    delivered: bool = False
    too_complex: bool = False  # stopped at a limit: no repaired mesh to accept


@dataclass(frozen=True)
class CaseFacts:
    review_status: str  # awaiting_review, info_requested, approved, rejected
    review_state: str  # gate step state: valid, missing, void, rejected...
    parts: tuple[PartFacts, ...] = field(default_factory=tuple)


def _part_position(p: PartFacts) -> Position:
    part = p.part_id
    if p.part_state in ("queued", "processing"):
        return Position("mesh", "waiting", f"{p.label}: analysis and repair running", "worker")
    if p.part_state == "awaiting_units":
        return Position(
            "mesh",
            "current",
            f"{p.label}: the file's unit must be confirmed",
            "technician",
            Action("Confirm the unit", "confirm_units", "case", f"part-{part}", part),
        )
    if p.part_state == "rejected":
        return Position(
            "mesh",
            "held",
            f"{p.label}: the file is not a usable mesh",
            "technician",
            Action("Upload a corrected mesh", "upload_mesh", "case", "upload", part),
        )
    if p.too_complex:
        return Position(
            "mesh",
            "held",
            f"{p.label}: too complex to repair automatically",
            "technician",
            Action("Upload a repaired mesh", "upload_mesh", "case", "upload", part),
        )
    if not p.usable:
        return Position(
            "mesh",
            "current",
            f"{p.label}: the repair needs attention",
            "technician",
            Action("Check the repair and accept it", "accept_repair", "repair", "", part),
        )
    if not p.signoff_valid:
        return Position(
            "signoff",
            "current",
            f"{p.label}: waiting for the segmentation sign-off",
            "radiologist",
            Action("Sign the segmentation", "sign_segmentation", "case", f"signoff-{part}", part),
        )
    if p.job_state is None or p.design_state != "valid":
        return Position(
            "approval",
            "current",
            f"{p.label}: waiting for the design approval",
            "prescriber",
            Action("Approve the design", "approve_design", "repair", "approve", part),
        )
    return _build_position(p)


def _build_position(p: PartFacts) -> Position:
    s, part = p.serial, p.part_id
    device = dict(part_id=part, serial=s)
    if p.holds and p.job_state in ("slice_queued", "ready"):
        step = "slicing" if p.job_state == "slice_queued" else "print"
        return Position(step, "held", f"{s} is held", "technician", None, p.holds)
    if p.job_state in ("slice_queued", "slicing"):
        return Position("slicing", "waiting", f"{s} is being sliced", "worker")
    if p.job_state == "slice_failed":
        return Position(
            "slicing",
            "held",
            f"{s}: slicing failed",
            "technician",
            Action("See why on the board", "operate_printers", "board"),
            (p.job_error,) if p.job_error else (),
        )
    if p.job_state == "ready":
        return Position(
            "print",
            "current",
            f"{s} waits for a printer",
            "technician",
            Action("Confirm a plate clear on the board", "operate_printers", "board"),
        )
    if p.job_state in ("dispatching", "printing"):
        return Position("print", "waiting", f"{s} is printing", "printer")
    if p.job_state == "interrupted":
        return Position(
            "print",
            "held",
            f"{s}: the print was interrupted",
            "technician",
            Action("Resolve the interruption", "operate_printers", "device", "", **device),
        )
    if p.job_state in ("printed", "failed", "cancelled"):
        return Position(
            "print",
            "current",
            f"{s}: print ended, record the outcome",
            "technician",
            Action("Record the build outcome", "record_outcome", "device", "", **device),
        )
    if p.disposition == "scrap":
        return Position("print", "stopped", f"{s} was scrapped", "nobody")
    # After the outcome: the first of these whose condition holds is where the device is.
    after_outcome = (
        (p.outcome == "rejected", "print", "build rejected, reprint or scrap it", "technician",
         "Reprint or scrap", "record_post_processing", "qa"),
        (p.post_open, "post", "post-processing", "technician",
         "Record post-processing", "record_post_processing", "post"),
        (p.qa_state == "failed", "qa", "failed QA: reprint or scrap it", "technician",
         "Reprint or scrap", "record_post_processing", "qa"),
        (p.qa_state == "open", "qa", "QA measurements", "technician",
         "Add QA measurements", "record_post_processing", "qa"),
        (not p.release_valid, "release", "waits for the release", "lab_manager",
         "Sign the release", "release_device", "release"),
        (not p.delivered, "delivery", "is released: record the delivery", "technician",
         "Record the delivery", "record_post_processing", "release"),
    )  # fmt: skip
    for applies, step, summary, actor, label, permission, anchor in after_outcome:
        if applies:
            action = Action(label, permission, "device", anchor, **device)
            return Position(step, "current", f"{s}: {summary}", actor, action)
    return Position("delivery", "done", f"{s} delivered", "nobody")


def position(facts: CaseFacts) -> Position:
    """Where the case is. With several parts, the part furthest behind leads."""
    if facts.review_status == "rejected" or facts.review_state == "rejected":
        return Position("review", "stopped", "Rejected at the appropriateness review", "nobody")
    if facts.review_status == "info_requested":
        return Position(
            "order",
            "current",
            "The radiologist asked for more information",
            "prescriber",
            Action("Answer the question: edit the order", "create_case", "edit"),
        )
    review = None
    if facts.review_state != "valid":
        review = Position(
            "review",
            "current",
            "Waiting for the appropriateness review"
            + (" (the order changed since it was signed)" if facts.review_state == "void" else ""),
            "radiologist",
            Action("Review appropriateness", "review_appropriateness", "review"),
        )
    if not facts.parts:
        upload = Position(
            "mesh",
            "current",
            "Waiting for the mesh upload",
            "technician",
            Action("Upload the mesh", "upload_mesh", "case", "upload"),
        )
        return review or upload
    if review is not None:
        return review
    order = [key for key, _label in STEPS]
    positions = [_part_position(p) for p in facts.parts]
    live = [p for p in positions if p.status != "stopped"] or positions
    return min(live, key=lambda p: (order.index(p.step), p.status == "done"))


def bar(current: Position) -> list[dict]:
    """The step bar: every step with done / current / held / waiting / stopped / todo."""
    keys = [key for key, _label in STEPS]
    at = keys.index(current.step)
    out = []
    for i, (key, label) in enumerate(STEPS):
        if current.status == "done" or i < at:
            state = "done"
        elif i == at:
            state = current.status
        else:
            state = "todo"
        out.append({"key": key, "label": label, "state": state})
    return out
