"""How many messages wait in each queue of the broker (Redis lists, one per queue)."""

from __future__ import annotations

import redis

from pocprint.domain.steps import QUEUES

# Celery's Redis transport keeps a queue's prioritised messages in sibling lists.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(broker_url: str, timeout_s: float = 2.0) -> dict[str, int | None]:
    """Messages waiting per queue; None for every queue when the broker does not answer."""
    try:
        client = redis.Redis.from_url(
            broker_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            return {q: sum(client.llen(q + s) for s in _PRIORITY_SUFFIXES) for q in QUEUES}
        finally:
            client.close()
    except redis.RedisError:
        return dict.fromkeys(QUEUES)
