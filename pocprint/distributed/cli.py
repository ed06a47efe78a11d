"""`pocprint worker` (a Celery worker on some of the queues) and `pocprint status`."""

from __future__ import annotations

import json
import os
import socket

from pocprint.config import Settings
from pocprint.domain.steps import QUEUES


def add_commands(sub) -> None:
    worker = sub.add_parser("worker", help="run steps from the broker (engine = celery)")
    worker.add_argument(
        "--queues",
        default=",".join(QUEUES),
        help="comma-separated, of: " + ", ".join(QUEUES) + " (default: all)",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="steps at once (threads)")
    worker.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="never take the dispatcher lock (printer I/O stays on other machines)",
    )
    status = sub.add_parser("status", help="workers alive, queue depths, oldest waiting step")
    status.add_argument("--json", action="store_true")


def parse_queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise SystemExit(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(QUEUES)}"
        )
    return queues


def run_worker(settings: Settings, args) -> int:
    from pocprint.distributed.app import make_celery, use_lab
    from pocprint.distributed.engine import Coordinator
    from pocprint.services.lab import build_lab

    queues = parse_queues(args.queues)
    lab = build_lab(settings)
    use_lab(lab)
    app = make_celery(settings.broker_url)
    coordinator = None if args.no_dispatcher else Coordinator(lab, app, queues).start()
    if coordinator is None:
        from pocprint.distributed.engine import hand_to_broker

        hand_to_broker(lab, app)
    name = f"pocprint-{os.getpid()}@{socket.gethostname()}"
    try:
        app.worker_main(
            [
                "worker",
                "--queues",
                ",".join(queues),
                "--pool",
                "threads",
                "--concurrency",
                str(max(args.concurrency, 1)),
                "--hostname",
                name,
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ]
        )
    finally:
        if coordinator is not None:
            coordinator.stop()
        lab.engine.dispose()
    return 0


def run_status(settings: Settings, args) -> int:
    from pocprint.distributed.queues import queue_depths
    from pocprint.reads.workers import status
    from pocprint.store.db import make_engine, read_session

    depths = queue_depths(settings.broker_url) if settings.worker_engine == "celery" else {}
    engine = make_engine(settings.database_url)
    with read_session(engine) as session:
        report = status(session, depths)
    engine.dispose()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"engine: {settings.worker_engine}; workers alive: {report['alive']}")
    for w in report["workers"]:
        role = " dispatcher" if w["dispatcher"] else ""
        state = "alive" if w["alive"] else "GONE"
        print(f"  {w['name']:<40} {state:<5} seen {w['seen_s_ago']} s ago, {w['queues']}{role}")
    for queue, depth in report["queues"].items():
        print(f"queue {queue}: {'broker unreachable' if depth is None else depth}")
    for row in report["waiting"]:
        oldest = "" if row["oldest_s"] is None else f", oldest {row['oldest_s']} s"
        print(f"waiting for {row['step']}: {row['waiting']}{oldest}")
    print(
        f"dispatcher: {report['dispatcher'] or 'none yet'}; takeovers: "
        f"{report['dispatcher_takeovers']}; expired leases handed on: {report['lease_takeovers']}"
    )
    return 0
