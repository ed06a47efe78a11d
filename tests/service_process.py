"""Runs pocprint as a real separate process (`pocprint serve`), so tests can drive it over
HTTP and stop or kill it like a crash or a restart would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import requests

from pocprint.config import REPO_ROOT, Settings
from pocprint.demo.octoprint_server import free_port


class ServiceProcess:
    def __init__(self, settings: Settings, log_path: Path):
        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.extra_env: dict[str, str] = {}  # e.g. the fault suite's kill point
        self.command_prefix: list[str] = []  # e.g. a private mount namespace for the process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            POCPRINT_DATA_DIR=str(s.data_dir),
            POCPRINT_DATABASE_URL=s.database_url,
            POCPRINT_PRINTERS_DIR=str(s.printers_dir),
            POCPRINT_PROFILES_DIR=str(s.profiles_dir),
            POCPRINT_SECRET_KEY=s.secret_key,
            POCPRINT_MAX_UPLOAD_MB=str(s.max_upload_bytes / 1024 / 1024),
            POCPRINT_CONFIG=str(REPO_ROOT / "tests" / "data" / "fast-worker.toml"),
            POCPRINT_TIME_ZONE=s.time_zone,
        )
        if s.public_base_url:
            env["POCPRINT_PUBLIC_BASE_URL"] = s.public_base_url
        env.update(self.extra_env)
        return env

    def arguments(self) -> list[str]:
        """The pocprint command this process runs (after `python -m pocprint.cli`)."""
        return ["serve", "--port", str(self.port)]

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/login", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float = 60) -> Self:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "pocprint.cli", *self.arguments()],
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pocprint {self.arguments()[0]} exited at start:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.2)
        raise TimeoutError(
            f"pocprint {self.arguments()[0]} not ready in {timeout} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to tidy up, as in a power cut or crash."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(15)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Api:
    """A bearer-token client of the JSON API."""

    def __init__(self, base: str, token: str):
        self.base = base.rstrip("/") + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw):
        return self.session.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, **kw):
        return self.session.post(self.base + path, timeout=60, **kw)


def wait_for(fetch, done, timeout: float, what: str, interval: float = 0.25):
    """Poll fetch() until done(value); fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
