"""The life of one outbox message (an e-mail, a webhook call, a DICOM archive): written in
the transaction of the event, claimed by the worker under a lease, then sent, or back to
waiting with a back-off, or failed after the last attempt until an administrator retries."""

from __future__ import annotations

from enum import StrEnum


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by a worker, under a lease
    SENT = "sent"
    FAILED = "failed"  # the last attempt failed: shown on the admin outbox page


OUTBOX_TRANSITIONS: dict[OutboxState, frozenset[OutboxState]] = {
    OutboxState.PENDING: frozenset({OutboxState.SENDING}),
    OutboxState.SENDING: frozenset({OutboxState.SENT, OutboxState.PENDING, OutboxState.FAILED}),
    OutboxState.SENT: frozenset(),
    OutboxState.FAILED: frozenset({OutboxState.PENDING}),  # an administrator retries it
}
LEASED_OUTBOX_STATES = frozenset({OutboxState.SENDING})


def retry_delay_s(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential back-off after the n-th failed attempt."""
    return min(base_s * 2 ** max(attempts - 1, 0), max_s)
