"""Real parts for the scale-out tests: a private redis-server, `pocprint worker` processes,
and a web process on the Celery engine, each a separate OS process stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from pocprint.demo.octoprint_server import free_port

from conftest import NOT_APPLICABLE
from service_process import ServiceProcess

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
ON_SQLITE = (
    f"{NOT_APPLICABLE} the Celery engine spreads work over machines, which needs PostgreSQL; "
    "SQLite is the single-machine layout"
)


def postgres_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip(ON_SQLITE)


def redis_or_skip() -> str:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("real Redis needed: redis-server is not installed (make test-system-deps)")
    return REDIS_SERVER


class RedisServer:
    """redis-server on a free loopback port, without persistence: a restart loses every
    queued message, the worst case the engine must survive."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                redis_or_skip(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def llen(self, queue: str) -> int:
        return redis.Redis.from_url(self.url).llen(queue)


@contextmanager
def running_redis(workdir: Path):
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


class WorkerProcess(ServiceProcess):
    """`pocprint worker` as its own process (and process group)."""

    def __init__(self, settings, log_path: Path, broker_url: str, queues: str = ""):
        super().__init__(settings, log_path)
        self.queues = queues
        self.extra_env.update(POCPRINT_WORKER_ENGINE="celery", POCPRINT_BROKER_URL=broker_url)

    def arguments(self) -> list[str]:
        return ["worker", "--queues", self.queues] if self.queues else ["worker"]

    def ready(self) -> bool:
        return " ready." in self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid


def celery_web(settings, log_path: Path, broker_url: str) -> ServiceProcess:
    web = ServiceProcess(settings, log_path)
    web.extra_env.update(POCPRINT_WORKER_ENGINE="celery", POCPRINT_BROKER_URL=broker_url)
    return web


def pids_alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive
