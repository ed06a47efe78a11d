"""Real OctoPrint servers with OctoPrint's virtual printer, for ``make run`` and the tests.

OctoPrint (AGPL) lives in its own virtualenv and is only ever started as a separate process;
pocprint talks to it over HTTP like to any real printer. The base folder is set up headless
(no wizard, no online checks, API key preset) and the virtual printer is made fast with
OctoPrint's own G-code scripts, so pocprint itself never sends speed hacks to printers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
OCTOPRINT_BIN_ENV = "POCPRINT_OCTOPRINT_BIN"
USER_NAME = "pocprint"

# Bundled plugins that phone home or nag; pluginmanager cannot be disabled (harmless).
DISABLED_PLUGINS = [
    "announcements",
    "softwareupdate",
    "tracking",
    "errortracking",
    "discovery",
    "achievements",
    "pi_support",
    "firmware_check",
]

# The virtual printer sleeps 10 % of each move's real duration; M220/M221 scale that, but it
# resets them on every connection, so OctoPrint sends them after connecting and before each
# print (M220/M221 inside a G-code file still override them).
SPEEDUP_GCODE = "M220 S1000\nM221 S1000\n"
SPEEDUP_SCRIPTS = ("afterPrinterConnected", "beforePrintStarted")


def _settings() -> dict[str, Any]:
    """The config.yaml keys pocprint needs; everything else is left to OctoPrint."""
    return {
        "server": {
            "host": "127.0.0.1",
            "firstRun": False,
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
        },
        "plugins": {
            "_disabled": list(DISABLED_PLUGINS),
            "virtual_printer": {
                "enabled": True,
                # Heaters start above any target, so M109/M190 return at once.
                "ambientTemperature": 250,
                # The default injects resends at lines N100-N115 of every print.
                "simulated_errors": [],
            },
        },
        "serial": {"port": "VIRTUAL", "baudrate": 115200, "autoconnect": True},
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def octoprint_binary() -> Path:
    """Path of the ``octoprint`` command from the project's separate OctoPrint virtualenv."""
    override = os.environ.get(OCTOPRINT_BIN_ENV)
    path = Path(override) if override else REPO_ROOT / ".venv-octoprint" / "bin" / "octoprint"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"OctoPrint is not installed at {path}: run `make test` / `make run` to install it "
            f"(or point {OCTOPRINT_BIN_ENV} to an octoprint executable)"
        )
    return path


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file OctoPrint wrote, without adding a YAML dependency to pocprint: we write
    JSON (valid YAML), and fall back to the PyYAML inside OctoPrint's own virtualenv."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        try:
            python = octoprint_binary().parent / "python"
            out = subprocess.run(
                [
                    str(python),
                    "-c",
                    "import json, sys, yaml; "
                    "json.dump(yaml.safe_load(open(sys.argv[1])) or {}, sys.stdout)",
                    str(path),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            data = json.loads(out)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("could not read %s (%s); rewriting it", path, exc)
            return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)  # holds the API key and a password hash
    os.replace(tmp, path)


def _password_hash(password: str) -> str:
    from argon2 import PasswordHasher  # argon2-cffi, a pocprint dependency; OctoPrint reads it

    return PasswordHasher().hash(password)


def prepare_basedir(basedir: Path, api_key: str, password: str | None = None) -> None:
    """Set up (or repair) an OctoPrint base folder for headless use with ``api_key``.

    Idempotent: keys OctoPrint added itself (secret key, ...) and other users are kept.
    The key belongs to an admin user ``pocprint`` in users.yaml (the non-deprecated way; the
    global ``api.key`` is deprecated). ``password`` allows logging into the web UI; without
    it the user gets an unguessable password, or keeps the one it has.
    """
    if not api_key or any(c.isspace() for c in api_key):
        raise ValueError("the OctoPrint API key must be a non-empty string without spaces")
    basedir = Path(basedir)
    basedir.mkdir(parents=True, exist_ok=True)

    config_path = basedir / "config.yaml"
    existing = _read_yaml(config_path)
    config = _deep_merge(existing, _settings())
    if config != existing or not config_path.exists():
        _write_json(config_path, config)

    users_path = basedir / "users.yaml"
    users = _read_yaml(users_path)
    users.setdefault("_version", 2)
    previous = users.get(USER_NAME) if isinstance(users.get(USER_NAME), dict) else {}
    if password is not None:
        password_hash = _password_hash(password)
    else:
        password_hash = previous.get("password") or _password_hash(secrets.token_urlsafe(24))
    user = {
        "active": True,
        "apikey": api_key,
        "groups": ["admins"],
        "password": password_hash,
        "permissions": [],
        "roles": ["user", "admin"],
        "settings": previous.get("settings") or {},
    }
    if users.get(USER_NAME) != user:
        users[USER_NAME] = user
        _write_json(users_path, users)

    scripts = basedir / "scripts" / "gcode"
    scripts.mkdir(parents=True, exist_ok=True)
    for name in SPEEDUP_SCRIPTS:
        script = scripts / name
        if not script.exists() or script.read_text(encoding="utf-8") != SPEEDUP_GCODE:
            script.write_text(SPEEDUP_GCODE, encoding="utf-8")


@dataclass
class OctoPrintServer:
    """One OctoPrint process serving one virtual printer on 127.0.0.1:``port``."""

    basedir: Path
    port: int
    api_key: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default=Path())
    _log_file: IO[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.basedir = Path(self.basedir)
        if self.log_path == Path():
            self.log_path = self.basedir / "octoprint-serve.log"

    def __repr__(self) -> str:  # keep the API key out of logs and test output
        return f"OctoPrintServer(url={self.url!r}, basedir={str(self.basedir)!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 90) -> None:
        """Launch OctoPrint and return once the API accepts our key and the virtual printer
        is connected and Operational; raise RuntimeError (with the log tail) otherwise."""
        if self.is_running():
            return
        binary = octoprint_binary()
        # Otherwise a leftover OctoPrint on this port (e.g. from an interrupted run) would
        # answer the readiness probe while ours fails to bind and exits.
        if not _port_is_free(self.port):
            raise RuntimeError(
                f"port {self.port} on 127.0.0.1 is already in use (an OctoPrint left over from "
                "an earlier run?); stop that process or choose another port"
            )
        prepare_basedir(self.basedir, self.api_key)
        command = [
            str(binary),
            "--basedir",
            str(self.basedir),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--iknowwhatimdoing")  # OctoPrint refuses to run as root otherwise
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.basedir,
        )
        try:
            self._wait_operational(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_operational(self, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        headers = {"X-Api-Key": self.api_key}
        last = "no answer yet"
        connect_sent = False
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"OctoPrint exited with code {self.process.returncode} during startup; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    response = session.get(self.url + "/api/connection", headers=headers, timeout=2)
                    if response.status_code == 200:
                        state = response.json().get("current", {}).get("state") or "?"
                        last = f"printer connection state {state!r}"
                        if state == "Operational":
                            log.info(
                                "OctoPrint on %s ready in %.1f s",
                                self.url,
                                time.monotonic() - started,
                            )
                            return
                        # Autoconnect normally does this; ask explicitly if it did not.
                        if (
                            state in ("Offline", "Closed")
                            and not connect_sent
                            and time.monotonic() - started > 10
                        ):
                            session.post(
                                self.url + "/api/connection",
                                headers=headers,
                                json={
                                    "command": "connect",
                                    "port": "VIRTUAL",
                                    "baudrate": 115200,
                                    "autoconnect": True,
                                },
                                timeout=5,
                            )
                            connect_sent = True
                    else:
                        last = f"HTTP {response.status_code} from /api/connection"
                except (requests.RequestException, ValueError) as exc:
                    last = f"{type(exc).__name__}"
                time.sleep(0.1)
        raise RuntimeError(
            f"OctoPrint on {self.url} not ready after {timeout:g} s ({last}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of OctoPrint's output, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        """Shut OctoPrint down cleanly (SIGTERM), killing it if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the printer host vanishes without a goodbye (for failure tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> OctoPrintServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    basedir: Path,
    port: int | None = None,
    api_key: str | None = None,
    timeout: float = 90,
) -> OctoPrintServer:
    """Prepare ``basedir`` and start an OctoPrint server there (a free port and a random API
    key unless given); returns once its virtual printer is Operational."""
    server = OctoPrintServer(
        basedir=Path(basedir),
        port=port or free_port(),
        api_key=api_key or secrets.token_urlsafe(24),
    )
    server.start(timeout=timeout)
    return server


def main(argv: list[str] | None = None) -> int:
    """Run one demo OctoPrint in the foreground: ``python -m pocprint.demo.octoprint_server``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("basedir", type=Path)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = start_server(args.basedir, port=args.port, api_key=args.api_key)
    print(f"OctoPrint ready at {server.url} (API key in {server.basedir / 'users.yaml'})")
    print(f"log: {server.log_path}; Ctrl-C to stop")
    try:
        while server.is_running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
