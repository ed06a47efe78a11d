"""OctoPrint load generator for the fleet benchmark: a load generator, not a printer.

One asyncio process listens on one loopback port per simulated printer and answers the
read-only OctoPrint endpoints pocprint polls (``/api/version``, ``/api/job``, ``/api/printer``,
``/api/connection``, ``/api/files/local/<file>``) with bodies shaped like OctoPrint 1.11's,
after a small random delay, over HTTP/1.1 keep-alive. It checks the ``X-Api-Key`` header as
OctoPrint does. It never accepts a control command (upload, start, pause, cancel): those
answer 405, so nothing can mistake it for a printer that printed something.

Run as ``python -m bench.octoprint_loadgen --printers 200``; the API key comes from the
environment variable ``POCPRINT_LOADGEN_API_KEY``. The first line on stdout is JSON with
the ports, in printer order; the process serves until stdin closes or it is terminated.
``LoadGenerator`` starts and stops it from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

API_KEY_ENV = "POCPRINT_LOADGEN_API_KEY"
OCTOPRINT_VERSION = "1.11.8"
SERVER_HEADER = "pocprint-loadgen (load generator, not a printer)"
MAX_HEADER_BYTES = 16 * 1024

# The state mix of a simulated fleet, repeated every 20 printers: half idle, most of the
# rest printing, a few paused, one whose host reports an error. None of these is "offline",
# so back-off never skips a printer and every poll cycle reads all of them.
FLEET_MIX = ("idle",) * 10 + ("printing",) * 7 + ("paused",) * 2 + ("error",)
OCTOPRINT_STATE = {
    "idle": "Operational",
    "printing": "Printing",
    "paused": "Paused",
    "error": "Offline after error",
}
ERROR_TEXT = "Thermal Runaway (simulated by the load generator)"


@dataclass(frozen=True)
class SimulatedPrinter:
    """What one simulated printer reports; deterministic from its index."""

    index: int
    kind: str  # a key of OCTOPRINT_STATE
    job_file: str | None
    print_duration_s: float
    nozzle_c: float
    bed_c: float

    @property
    def state_text(self) -> str:
        return OCTOPRINT_STATE[self.kind]

    @property
    def has_job(self) -> bool:
        return self.kind in ("printing", "paused")


def simulated_printer(index: int) -> SimulatedPrinter:
    kind = FLEET_MIX[index % len(FLEET_MIX)]
    job = f"LG{index:04d}-model.gcode" if kind in ("printing", "paused") else None
    return SimulatedPrinter(
        index=index,
        kind=kind,
        job_file=job,
        print_duration_s=3600.0 + 60.0 * (index % 37),
        nozzle_c=215.0 if kind == "printing" else 0.0,
        bed_c=60.0 if kind == "printing" else 0.0,
    )


def _progress(printer: SimulatedPrinter, elapsed: float) -> dict:
    if not printer.has_job:
        return {
            "completion": None,
            "filepos": None,
            "printTime": None,
            "printTimeLeft": None,
            "printTimeLeftOrigin": None,
        }
    # Each printer starts part-way through its print and advances in real time; paused
    # printers stay where they stopped.
    offset = (printer.index * 97.0) % printer.print_duration_s
    done = offset + (elapsed if printer.kind == "printing" else 0.0)
    done %= printer.print_duration_s
    return {
        "completion": 100.0 * done / printer.print_duration_s,
        "filepos": int(done * 10),
        "printTime": int(done),
        "printTimeLeft": int(printer.print_duration_s - done),
        "printTimeLeftOrigin": "estimate",
    }


def job_body(printer: SimulatedPrinter, elapsed: float) -> dict:
    """``GET /api/job`` as OctoPrint 1.11 answers it."""
    file = dict.fromkeys(("date", "display", "name", "origin", "path", "size"))
    job = {
        "averagePrintTime": None,
        "estimatedPrintTime": None,
        "filament": None,
        "file": file,
        "lastPrintTime": None,
        "user": None,
    }
    if printer.has_job:
        name = printer.job_file
        job.update(
            estimatedPrintTime=printer.print_duration_s,
            filament={"tool0": {"length": 4210.5, "volume": 10.1}},
            file={
                "date": 1795300000 + printer.index,
                "display": name,
                "name": name,
                "origin": "local",
                "path": name,
                "size": 1_845_000 + printer.index,
            },
            user="pocprint",
        )
    body = {"job": job, "progress": _progress(printer, elapsed), "state": printer.state_text}
    if printer.kind == "error":
        body["error"] = ERROR_TEXT
    return body


def printer_body(printer: SimulatedPrinter, rng: random.Random) -> dict:
    """``GET /api/printer?exclude=sd,state``: temperatures with a little sensor noise."""

    def sensor(target: float) -> dict:
        actual = (target or 23.0) + rng.uniform(-0.6, 0.6)
        return {"actual": round(actual, 2), "offset": 0, "target": target}

    return {"temperature": {"bed": sensor(printer.bed_c), "tool0": sensor(printer.nozzle_c)}}


def connection_body(printer: SimulatedPrinter) -> dict:
    state = "Error" if printer.kind == "error" else printer.state_text
    return {
        "current": {
            "baudrate": 115200,
            "port": "/dev/ttyACM0",
            "printerProfile": "_default",
            "state": state,
        },
        "options": {"ports": ["/dev/ttyACM0"], "baudrates": [250000, 115200]},
    }


def file_body(printer: SimulatedPrinter, name: str) -> dict | None:
    if name != printer.job_file:
        return None
    return {
        "date": 1795300000 + printer.index,
        "display": name,
        "hash": f"{printer.index:040x}",
        "name": name,
        "origin": "local",
        "path": name,
        "prints": {"failure": 0, "success": 0},
        "size": 1_845_000 + printer.index,
        "type": "machinecode",
        "typePath": ["machinecode", "gcode"],
    }


FORBIDDEN = {
    "error": "You don't have the permission to access the requested resource. "
    "It is either read-protected or not readable by the server."
}
REASONS = {
    200: "OK",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    405: "METHOD NOT ALLOWED",
    409: "CONFLICT",
}


class FleetServer:
    """The asyncio side: one listening socket per simulated printer."""

    def __init__(self, count: int, api_key: str, latency_ms: tuple[float, float], seed: int):
        self.printers = [simulated_printer(i) for i in range(count)]
        self.api_key = api_key
        self.latency_s = (latency_ms[0] / 1000.0, latency_ms[1] / 1000.0)
        self.rng = random.Random(seed)
        self.started = time.monotonic()
        self.requests = 0
        self.servers: list[asyncio.Server] = []

    async def start(self, host: str = "127.0.0.1") -> list[int]:
        ports = []
        for printer in self.printers:
            server = await asyncio.start_server(
                lambda r, w, p=printer: self._connection(p, r, w), host, 0, backlog=64
            )
            self.servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return ports

    def answer(
        self, printer: SimulatedPrinter, method: str, target: str, headers: dict
    ) -> tuple[int, dict]:
        if headers.get("x-api-key") != self.api_key:
            return 403, FORBIDDEN
        path = unquote(urlsplit(target).path)
        if method not in ("GET", "HEAD"):
            return 405, {"error": "load generator, not a printer: it accepts no commands"}
        elapsed = time.monotonic() - self.started
        if path == "/api/version":
            return 200, {"api": "0.1", "server": OCTOPRINT_VERSION, "text": "OctoPrint (sim)"}
        if path == "/api/job":
            return 200, job_body(printer, elapsed)
        if path == "/api/printer":
            if printer.kind == "error":
                return 409, {"error": "Printer is not operational"}
            return 200, printer_body(printer, self.rng)
        if path == "/api/connection":
            return 200, connection_body(printer)
        if path.startswith("/api/files/local/"):
            body = file_body(printer, path.removeprefix("/api/files/local/"))
            return (200, body) if body else (404, {"error": "File not found"})
        return 404, {"error": "Not found (load generator)"}

    async def _connection(
        self, printer: SimulatedPrinter, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                if length:
                    await reader.readexactly(length)
                self.requests += 1
                await asyncio.sleep(self.rng.uniform(*self.latency_s))
                status, body = self.answer(printer, method, target, headers)
                # OctoPrint pretty-prints its JSON; keep the same byte sizes on the wire.
                payload = json.dumps(body, indent=2, sort_keys=True).encode()
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                writer.write(
                    (
                        f"HTTP/1.1 {status} {REASONS.get(status, 'ERROR')}\r\n"
                        f"Server: {SERVER_HEADER}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(payload)}\r\n"
                        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
                    ).encode("latin-1")
                    + (b"" if method == "HEAD" else payload)
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


async def _serve(args: argparse.Namespace, api_key: str) -> None:
    fleet = FleetServer(args.printers, api_key, args.latency_ms, args.seed)
    ports = await fleet.start()
    print(json.dumps({"ports": ports, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:  # stop when the parent closes our stdin (done, or dead)
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await stop.wait()
    for server in fleet.servers:
        server.close()
    print(json.dumps({"requests_served": fleet.requests}), file=sys.stderr, flush=True)


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    values = (float(low), float(high or low))
    if values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError("latency must be MIN,MAX milliseconds with MIN <= MAX")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--printers", type=int, default=200)
    parser.add_argument(
        "--latency-ms", type=_latency, default=(2.0, 12.0), help="MIN,MAX per request"
    )
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV)
    if not api_key:
        print(f"set {API_KEY_ENV} to the API key the simulated printers accept", file=sys.stderr)
        return 2
    asyncio.run(_serve(args, api_key))
    return 0


class LoadGenerator:
    """Start the load generator as a child process; ``ports`` and ``urls`` in printer order."""

    def __init__(self, printers: int, latency_ms: tuple[float, float] = (2.0, 12.0), seed: int = 4):
        self.count = printers
        self.latency_ms = latency_ms
        self.seed = seed
        self.api_key = secrets.token_urlsafe(24)
        self.ports: list[int] = []
        self.process: subprocess.Popen | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self) -> LoadGenerator:
        low, high = self.latency_ms
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.octoprint_loadgen",
                "--printers",
                str(self.count),
                "--latency-ms",
                f"{low},{high}",
                "--seed",
                str(self.seed),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, API_KEY_ENV: self.api_key},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # empty if the process failed to start
        if not line:
            self.stop()
            raise RuntimeError("the OctoPrint load generator did not start")
        self.ports = json.loads(line)["ports"]
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process.stdout.close()
        self.process = None

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
