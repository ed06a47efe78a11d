"""Real hospital peers for the integration tests (issue 11), each started by the test on a
free loopback port with its own generated configuration in a temporary folder, and stopped
by its process id: Debian's Orthanc (PACS), Debian's slapd (directory), aiosmtpd (SMTP) and
a small HTTP receiver that checks webhook signatures. Never the Debian-configured services.

In CI a missing binary fails the test (see conftest.py); elsewhere the test skips saying which
package `make test` installs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from pocprint.demo.octoprint_server import free_port

ORTHANC_BIN = "/usr/sbin/Orthanc"
SLAPD_BIN = "/usr/sbin/slapd"
SLAPADD_BIN = "/usr/sbin/slapadd"


def binary_or_skip(path: str, package: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"real {package} needed: {path} is missing (`make test` installs `{package}`)")
    return path


def _wait_port(port: int, process: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} in {timeout:g} s")


def _stop(process: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM by PID, then SIGKILL if it does not end."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# ------------------------------------------------------------------ Orthanc (PACS)


@dataclass
class OrthancServer:
    """Orthanc with its own JSON configuration: DICOM and HTTP on loopback, pocprint's AE
    registered as a modality (C-FIND allowed only to registered modalities)."""

    folder: Path
    aet: str = "TESTPACS"
    client_aet: str = "POCPRINT"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict:
        return {
            "Name": "pocprint-test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"pocprint": [self.client_aet, "127.0.0.1", 104]},
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowStore": True,
            "StorageAccessOnFind": "Always",
            "Plugins": [],
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 4,
        }

    def start(self, timeout: float = 60) -> OrthancServer:
        binary = binary_or_skip(ORTHANC_BIN, "orthanc")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "orthanc.json"
        conf.write_text(json.dumps(self.config(), indent=2))
        log = self.folder / "orthanc.log"
        self.process = subprocess.Popen(
            [binary, str(conf)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        _wait_port(self.http_port, self.process, "Orthanc", log, timeout)
        _wait_port(self.dicom_port, self.process, "Orthanc", log, timeout)
        return self

    def stop(self) -> None:
        _stop(self.process)

    def upload(self, path: Path) -> dict:
        response = requests.post(self.url + "/instances", data=path.read_bytes(), timeout=30)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> requests.Response:
        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response


@dataclass(frozen=True)
class CtStudy:
    study_uid: str
    series_uid: str
    thin_series_uid: str
    accession: str
    patient_name: str
    patient_id: str
    files: tuple[Path, ...]
    instance_uids: tuple[str, ...]


def make_ct_study(
    folder: Path,
    *,
    accession: str = "ACC-2026-0001",
    patient_name: str = "Testpatient^Erika",
    patient_id: str = "MRN-99887766",
) -> CtStudy:
    """A small synthetic CT study made with pydicom: a 3 mm scout series of 2 slices and a
    1 mm series of 4 slices (16 x 16 pixels), abdomen, with the patient's name and ID."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid, frame = generate_uid(), generate_uid()
    series = [
        (generate_uid(), 1, "Scout 3 mm", 3.0, 2),
        (generate_uid(), 2, "Arterial 1 mm", 1.0, 4),
    ]
    files, instances = [], []
    for series_uid, number, description, thickness, count in series:
        for i in range(count):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = "19600101"
            ds.PatientSex = "F"
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = date.today().strftime("%Y%m%d")
            ds.StudyTime = "101500"
            ds.StudyID = "1"
            ds.AccessionNumber = accession
            ds.StudyDescription = "CT abdomen angiography"
            ds.ReferringPhysicianName = ""
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SeriesDescription = description
            ds.Modality = "CT"
            ds.BodyPartExamined = "ABDOMEN"
            ds.FrameOfReferenceUID = frame
            ds.InstanceNumber = i + 1
            ds.SliceThickness = thickness
            ds.ImagePositionPatient = [0, 0, i * thickness]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing = [0.7, 0.7]
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.PixelData = (np.arange(256, dtype=np.int16) * (i + 1)).tobytes()
            path = folder / f"ct-{number}-{i + 1}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
            if number == 2:
                instances.append(ds.SOPInstanceUID)
    return CtStudy(
        study_uid=study_uid,
        series_uid=series[0][0],
        thin_series_uid=series[1][0],
        accession=accession,
        patient_name=patient_name,
        patient_id=patient_id,
        files=tuple(files),
        instance_uids=tuple(instances),
    )


# ------------------------------------------------------------------ slapd (directory)

BASE_DN = "dc=hospital,dc=test"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root secret for the test directory"  # noqa: S105 (throw-away test directory)
SERVICE_DN = f"cn=pocprint,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "service account secret 2026"  # noqa: S105


@dataclass
class SlapdServer:
    """slapd with its own slapd.conf (mdb database in the folder), loaded with slapadd before
    it starts, listening on ldap://127.0.0.1:<free port>."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _conf(self) -> str:
        schema = "/etc/ldap/schema"
        return "\n".join(
            [
                f"include {schema}/core.schema",
                f"include {schema}/cosine.schema",
                f"include {schema}/inetorgperson.schema",
                f"include {schema}/nis.schema",
                f"pidfile {self.folder}/slapd.pid",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "access to attrs=userPassword by self read by anonymous auth by * none",
                f'access to * by dn.exact="{SERVICE_DN}" read by self read by * none',
                "database mdb",
                "maxsize 10485760",
                f'suffix "{BASE_DN}"',
                f'rootdn "{ROOT_DN}"',
                f'rootpw "{ROOT_PASSWORD}"',
                f"directory {self.folder}/db",
                "",
            ]
        )

    def start(self, ldif: str, timeout: float = 30) -> SlapdServer:
        binary_or_skip(SLAPD_BIN, "slapd")
        slapadd = binary_or_skip(SLAPADD_BIN, "slapd")
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "slapd.conf"
        conf.write_text(self._conf())
        data = self.folder / "data.ldif"
        data.write_text(ldif)
        subprocess.run([slapadd, "-f", str(conf), "-l", str(data)], check=True, capture_output=True)
        return self.restart(timeout)

    def restart(self, timeout: float = 30) -> SlapdServer:
        """Start slapd on the directory already loaded (after `start` or a `stop`)."""
        log = self.folder / "slapd.log"
        self.process = subprocess.Popen(
            [SLAPD_BIN, "-f", str(self.folder / "slapd.conf"), "-h", self.url + "/", "-d", "0"],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        _wait_port(self.port, self.process, "slapd", log, timeout)
        return self

    def stop(self) -> None:
        _stop(self.process)

    def set_password(self, uid: str, password: str) -> None:
        """Change a person's password in the running directory (as the directory admin)."""
        import ldap3

        conn = ldap3.Connection(
            ldap3.Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True, receive_timeout=10
        )
        conn.modify(
            f"uid={uid},ou=people,{BASE_DN}", {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]}
        )
        conn.unbind()


def directory_ldif(people: dict[str, tuple[str, str, list[str]]]) -> str:
    """The test directory: `people` maps uid to (full name, password, group cns)."""
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Test Hospital\ndc: hospital",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services",
        f"dn: {SERVICE_DN}\nobjectClass: person\ncn: pocprint\nsn: service\n"
        f"userPassword: {SERVICE_PASSWORD}",
    ]
    groups: dict[str, list[str]] = {}
    for uid, (name, password, member_of) in people.items():
        given, _, family = name.rpartition(" ")
        entries.append(
            f"dn: uid={uid},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {name}\nsn: {family}\ngivenName: {given or family}\n"
            f"displayName: {name}\nmail: {uid}@hospital.test\nuserPassword: {password}"
        )
        for group in member_of:
            groups.setdefault(group, []).append(f"uid={uid},ou=people,{BASE_DN}")
    for group, members in groups.items():
        lines = "\n".join(f"member: {m}" for m in members)
        entries.append(
            f"dn: cn={group},ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: {group}\n{lines}"
        )
    return "\n\n".join(entries) + "\n"


# ------------------------------------------------------------------ SMTP and webhooks


class SmtpServer:
    """A real SMTP server (aiosmtpd) in a thread on a free loopback port; keeps the messages."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict] = []
        self.port = free_port()
        self.refuse = False
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                if outer.refuse:
                    return "451 mailbox busy, try again later"
                outer.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "data": envelope.content.decode("utf-8", "replace"),
                    }
                )
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class WebhookReceiver:
    """A local HTTP receiver that checks each call's HMAC-SHA256 signature (over the timestamp
    and the body) and answers 401 to a bad one; keeps what it accepted and refused."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.accepted: list[dict] = []
        self.refused: list[str] = []
        self.fail_next = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stamp = self.headers.get("X-Pocprint-Timestamp", "")
                given = self.headers.get("X-Pocprint-Signature", "")
                expected = (
                    "sha256="
                    + hmac.new(
                        outer.secret, stamp.encode() + b"." + body, hashlib.sha256
                    ).hexdigest()
                )
                if outer.fail_next > 0:
                    outer.fail_next -= 1
                    self.send_response(503)
                elif not hmac.compare_digest(given, expected):
                    outer.refused.append(given)
                    self.send_response(401)
                else:
                    outer.accepted.append({"timestamp": stamp, "body": json.loads(body)})
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/pocprint"

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
