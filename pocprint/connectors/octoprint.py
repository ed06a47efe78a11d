"""OctoPrint connector: plain HTTP against OctoPrint's REST API (never its AGPL Python code).

OctoPrint answers quickly but reports several things asynchronously (file hash, print start),
so the operations that matter for traceability (upload, start) poll briefly until OctoPrint
confirms what happened instead of trusting the first answer.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from pocprint.connectors.base import (
    ConnectorError,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
    RemoteFile,
    check_remote_name,
)
from pocprint.domain.verification import Evidence

log = logging.getLogger(__name__)

# OctoPrint's state texts (util/comm.py getStateString), mapped to our coarse states.
_STATE_MAP: dict[str, PrinterState] = {
    "Operational": PrinterState.IDLE,
    "Printing": PrinterState.PRINTING,
    "Printing from SD": PrinterState.PRINTING,
    "Paused": PrinterState.PAUSED,
    "Starting": PrinterState.BUSY,
    "Starting print from SD": PrinterState.BUSY,
    "Starting to send file to SD": PrinterState.BUSY,
    "Sending file to SD": PrinterState.BUSY,
    "Transferring file to SD": PrinterState.BUSY,
    "Pausing": PrinterState.BUSY,
    "Resuming": PrinterState.BUSY,
    "Cancelling": PrinterState.BUSY,
    "Finishing": PrinterState.BUSY,
    "Connecting": PrinterState.BUSY,
    "Opening serial connection": PrinterState.BUSY,
    "Detecting serial connection": PrinterState.BUSY,
    "Offline": PrinterState.OFFLINE,
    "Closed": PrinterState.OFFLINE,
    "Offline after error": PrinterState.ERROR,
    "Error": PrinterState.ERROR,
}

# States in which the selected file is known to have started printing.
_STARTED_DETAILS = frozenset(
    {
        "Starting",
        "Starting print from SD",
        "Printing",
        "Printing from SD",
        "Pausing",
        "Paused",
        "Resuming",
        "Finishing",
        "Cancelling",
    }
)


class OctoPrintAccessDenied(ConnectorError):
    """OctoPrint answered but rejected the API key (wrong key, or the user lacks rights)."""


def map_state(text: str) -> PrinterState:
    """Map an OctoPrint state text to a PrinterState; unknown texts count as BUSY so that a
    printer in an unexpected state is never considered free for a new job."""
    if text in _STATE_MAP:
        return _STATE_MAP[text]
    if text.startswith("Error") or "error" in text.lower():
        return PrinterState.ERROR
    if text.startswith("Offline"):
        return PrinterState.OFFLINE
    return PrinterState.BUSY


def _as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _reason(exc: requests.RequestException) -> str:
    """A short, technician-readable reason for a transport failure (no URL dumps, no keys)."""
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if "Name or service not known" in str(seen) or "NameResolution" in type(seen).__name__:
            return "host name not found"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "connection closed by the printer"
    return type(exc).__name__


def _error_message(response: requests.Response) -> str:
    """OctoPrint's own explanation from an error answer (JSON ``error`` or Flask's HTML)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "description"):
            if isinstance(data.get(key), str) and data[key].strip():
                return data[key].strip()
    text = response.text or ""
    paragraph = re.search(r"<p>(.*?)</p>", text, re.S)
    if paragraph:
        text = paragraph.group(1)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text[:300] or response.reason or f"HTTP {response.status_code}"


def _session_reading_environment_once(base_url: str) -> requests.Session:
    """A Session with the proxy and CA-bundle environment variables applied once.

    requests otherwise scans the whole environment on every request, about a fifth of the
    CPU time of a status read, which adds up over a fleet polled every few seconds
    (bench/fleet.py); the environment does not change while the service runs.
    """
    session = requests.Session()
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False
    return session


class OctoPrintConnector:
    """PrinterConnector for one OctoPrint instance (``X-Api-Key`` authentication)."""

    #: what proves the printer holds the approved file: OctoPrint's SHA-1 of it
    evidence = Evidence.PRINTER_SHA1

    #: how long upload() waits for OctoPrint to compute the file's SHA-1
    hash_wait_s: float = 3.0
    #: how long start() waits for OctoPrint to report that the print really started
    start_confirm_s: float = 10.0
    #: poll interval for the two waits above
    poll_interval_s: float = 0.1
    #: read timeout for uploads and downloads (seconds without any byte)
    transfer_timeout_s: float = 120.0

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"OctoPrint URL must look like http://host:port, got {base_url!r}")
        if not api_key:
            raise ValueError("OctoPrint needs an API key")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._session = session or _session_reading_environment_once(self.base_url)

    def __repr__(self) -> str:  # never show the API key
        return f"OctoPrintConnector({self.base_url!r})"

    # ------------------------------------------------------------------ HTTP plumbing

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        expect: tuple[int, ...] = (200,),
        allow: tuple[int, ...] = (),
        timeout: float | tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request; raise PrinterUnreachable/ConnectorError unless the status is in
        ``expect`` or ``allow`` (``allow`` lets callers handle e.g. 404 or 409 themselves)."""
        url = self.base_url + path
        headers = {"X-Api-Key": self._api_key, **kwargs.pop("headers", {})}
        log.debug("OctoPrint %s %s%s", method, self.base_url, path)
        try:
            response = self._session.request(
                method, url, headers=headers, timeout=timeout or self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise PrinterUnreachable(
                f"Cannot reach OctoPrint at {self.base_url} to {what}: {_reason(exc)}"
            ) from None
        if response.status_code in expect or response.status_code in allow:
            return response
        message = _error_message(response)
        # A request with an unknown key counts as a browser request: 403 for reads, and
        # 400 "CSRF validation failed" for writes.
        if response.status_code in (401, 403) or (
            response.status_code == 400 and "CSRF" in message
        ):
            raise OctoPrintAccessDenied(
                f"OctoPrint at {self.base_url} rejected the API key while trying to {what} "
                f"(HTTP {response.status_code}); check the printer's API key in pocprint"
            )
        raise ConnectorError(
            f"OctoPrint at {self.base_url} refused to {what}: {message} "
            f"(HTTP {response.status_code})"
        )

    @staticmethod
    def _file_path(remote_name: str) -> str:
        return "/api/files/local/" + quote(check_remote_name(remote_name), safe="")

    # ------------------------------------------------------------------ status

    def status(self) -> PrinterStatus:
        """Job state from ``/api/job`` plus temperatures from ``/api/printer`` (2 requests);
        any failure to get an answer is reported as OFFLINE, never raised."""
        try:
            job = self._request("GET", "/api/job", what="read the job state").json()
        except ConnectorError as exc:
            if isinstance(exc, PrinterUnreachable):
                detail = "Unreachable"
            elif isinstance(exc, OctoPrintAccessDenied):
                detail = "Access denied"
            else:
                detail = "No answer"
            return PrinterStatus(state=PrinterState.OFFLINE, detail=detail, error=str(exc))
        except ValueError:
            return PrinterStatus(
                state=PrinterState.OFFLINE,
                detail="No answer",
                error=f"OctoPrint at {self.base_url} sent an unreadable job state",
            )

        detail = str(job.get("state") or "Unknown")
        state = map_state(detail)
        error = job.get("error") or None
        if state is PrinterState.ERROR and not error:
            error = detail
        if state is PrinterState.OFFLINE and not error:
            error = "OctoPrint is running but not connected to the printer"
        file_info = (job.get("job") or {}).get("file") or {}
        progress = job.get("progress") or {}

        temperatures: dict[str, dict[str, float | None]] = {}
        if state not in (PrinterState.OFFLINE, PrinterState.ERROR):
            try:
                response = self._request(
                    "GET",
                    "/api/printer",
                    what="read temperatures",
                    allow=(409,),
                    params={"exclude": "sd,state"},
                )
            except PrinterUnreachable as exc:
                return PrinterStatus(
                    state=PrinterState.OFFLINE, detail="Unreachable", error=str(exc)
                )
            except ConnectorError:
                response = None
            if response is not None and response.status_code == 200:
                try:
                    raw = response.json().get("temperature") or {}
                except ValueError:
                    raw = {}
                for sensor, values in raw.items():
                    if sensor == "history" or not isinstance(values, dict):
                        continue
                    temperatures[sensor] = {
                        "actual": _as_float(values.get("actual")),
                        "target": _as_float(values.get("target")),
                    }

        return PrinterStatus(
            state=state,
            detail=detail,
            job_file=file_info.get("path") or None,
            progress=_as_float(progress.get("completion")),
            print_time_s=_as_int(progress.get("printTime")),
            print_time_left_s=_as_int(progress.get("printTimeLeft")),
            temperatures=temperatures,
            error=str(error) if error else None,
        )

    # ------------------------------------------------------------------ files

    @staticmethod
    def _remote_file(data: dict[str, Any]) -> RemoteFile:
        prints = data.get("prints") or {}
        last = prints.get("last") or {}
        success = last.get("success")
        return RemoteFile(
            name=str(data.get("path") or data.get("name")),
            size=_as_int(data.get("size")) or 0,
            sha1=data.get("hash") or None,
            last_print_at=_as_float(last.get("date")),
            last_print_success=success if isinstance(success, bool) else None,
            prints_success=_as_int(prints.get("success")) or 0,
            prints_failure=_as_int(prints.get("failure")) or 0,
        )

    def file_info(self, remote_name: str) -> RemoteFile | None:
        """Size, SHA-1 and print history of a stored file, or None if it is not there."""
        response = self._request(
            "GET",
            self._file_path(remote_name),
            what=f"describe {remote_name}",
            allow=(404,),
        )
        if response.status_code == 404:
            return None
        return self._remote_file(response.json())

    def upload(self, local_path: Path, remote_name: str) -> RemoteFile:
        """Upload without selecting or printing, then wait (bounded) for OctoPrint's SHA-1.

        Raises ConnectorError if OctoPrint stored the file under another name or size.
        ``sha1`` is None only if OctoPrint has not hashed the file within ``hash_wait_s``.
        """
        check_remote_name(remote_name)
        local_path = Path(local_path)
        expected_size = local_path.stat().st_size
        with local_path.open("rb") as fh:
            response = self._request(
                "POST",
                "/api/files/local",
                what=f"store {remote_name}",
                expect=(200, 201),
                files={"file": (remote_name, fh, "application/octet-stream")},
                data={"select": "false", "print": "false"},
                timeout=(self.timeout, max(self.timeout, self.transfer_timeout_s)),
            )
        try:
            stored = ((response.json().get("files") or {}).get("local") or {}).get("path")
        except ValueError:
            stored = None
        if stored != remote_name:
            raise ConnectorError(
                f"OctoPrint at {self.base_url} stored {remote_name} as {stored!r}; "
                "the file cannot be traced reliably"
            )

        deadline = time.monotonic() + self.hash_wait_s
        while True:
            info = self.file_info(remote_name)
            if info is None:
                raise ConnectorError(
                    f"OctoPrint at {self.base_url} accepted {remote_name} but does not list it"
                )
            if info.size != expected_size:
                raise ConnectorError(
                    f"OctoPrint at {self.base_url} stored {info.size} bytes of {remote_name}, "
                    f"{expected_size} were sent"
                )
            if info.sha1 or time.monotonic() >= deadline:
                return info
            time.sleep(self.poll_interval_s)

    def download(self, remote_name: str, dest: Path) -> None:
        """Fetch the stored bytes into ``dest`` (written atomically)."""
        path = "/downloads/files/local/" + quote(check_remote_name(remote_name), safe="")
        dest = Path(dest)
        response = self._request(
            "GET",
            path,
            what=f"download {remote_name}",
            allow=(404,),
            stream=True,
            timeout=(self.timeout, max(self.timeout, self.transfer_timeout_s)),
        )
        with response:
            if response.status_code == 404:
                raise ConnectorError(f"{remote_name} is not stored on OctoPrint at {self.base_url}")
            fd, tmp_name = tempfile.mkstemp(
                dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
            )
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        out.write(chunk)
                os.replace(tmp_name, dest)
            except requests.RequestException as exc:
                Path(tmp_name).unlink(missing_ok=True)
                raise PrinterUnreachable(
                    f"Download of {remote_name} from {self.base_url} broke off: {_reason(exc)}"
                ) from None
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise

    def delete(self, remote_name: str) -> None:
        """Delete a stored file; a file that is already gone is not an error."""
        self._request(
            "DELETE",
            self._file_path(remote_name),
            what=f"delete {remote_name}",
            expect=(200, 204),
            allow=(404,),
        )

    # ------------------------------------------------------------------ printing

    def start(self, remote_name: str) -> None:
        """Select and print a stored file, then confirm OctoPrint really started it.

        OctoPrint accepts the command before the print begins, and a printer that is not
        connected can silently ignore it, so we watch ``/api/job`` for up to
        ``start_confirm_s`` until it shows this file starting/printing (or already finished,
        proven by a new entry in the file's print history).
        """
        before = self.file_info(remote_name)
        if before is None:
            raise ConnectorError(f"{remote_name} is not stored on OctoPrint at {self.base_url}")
        # OctoPrint answers 409 "already printing" even when it is merely disconnected, so say
        # what is really going on before asking (OctoPrint still refuses if this races).
        current = self.status()
        if current.state is not PrinterState.IDLE:
            busy_with = f" ({current.job_file})" if current.job_file else ""
            reason = f": {current.error}" if current.error else ""
            error = PrinterUnreachable if current.detail == "Unreachable" else ConnectorError
            raise error(
                f"Cannot start {remote_name}: the printer is {current.detail}{busy_with}{reason}"
            )
        prints_before = before.prints_success + before.prints_failure
        self._request(
            "POST",
            self._file_path(remote_name),
            what=f"start printing {remote_name}",
            expect=(200, 204),
            json={"command": "select", "print": True},
        )

        deadline = time.monotonic() + self.start_confirm_s
        last_detail = "unknown"
        while True:
            current = self.status()
            last_detail = current.detail
            if current.detail == "Unreachable":
                raise PrinterUnreachable(
                    f"Lost contact with OctoPrint at {self.base_url} right after asking it to "
                    f"print {remote_name}; check the printer before retrying"
                )
            if current.state in (PrinterState.OFFLINE, PrinterState.ERROR):
                raise ConnectorError(
                    f"{remote_name} did not start: the printer is {current.detail}"
                    + (f" ({current.error})" if current.error else "")
                )
            if current.job_file == remote_name and current.detail in _STARTED_DETAILS:
                return
            if current.job_file not in (None, remote_name) and current.state in (
                PrinterState.PRINTING,
                PrinterState.PAUSED,
            ):
                raise ConnectorError(
                    f"{remote_name} did not start: the printer is printing {current.job_file}"
                )
            if current.state is PrinterState.IDLE and current.job_file == remote_name:
                after = self.file_info(remote_name)
                if (
                    after is not None
                    and after.prints_success + after.prints_failure > prints_before
                ):
                    return  # a very short file was already printed between two polls
            if time.monotonic() >= deadline:
                raise ConnectorError(
                    f"{remote_name} was sent to OctoPrint at {self.base_url} but the printer did "
                    f"not start printing within {self.start_confirm_s:g} s "
                    f"(printer state: {last_detail})"
                )
            time.sleep(self.poll_interval_s)

    def _job_command(self, payload: dict[str, str], what: str) -> None:
        self._request("POST", "/api/job", what=what, expect=(200, 204), json=payload)

    def pause(self) -> None:
        """Pause the running print (OctoPrint refuses with 409 if nothing is printing)."""
        self._job_command({"command": "pause", "action": "pause"}, "pause the print")

    def resume(self) -> None:
        """Resume a paused print."""
        self._job_command({"command": "pause", "action": "resume"}, "resume the print")

    def cancel(self) -> None:
        """Cancel the running or paused print."""
        self._job_command({"command": "cancel"}, "cancel the print")
