"""TLS through a reverse proxy: the repository's nginx configuration (config/nginx/pocprint.conf)
run by Debian's real nginx on free loopback ports, in front of the real `pocprint serve`, with
a self-signed certificate made here. Over HTTPS the session cookie is Secure, HSTS and the
security headers arrive, signing in works, uploads pass nginx's body limit; plain HTTP only
redirects to HTTPS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pocprint.config import REPO_ROOT
from pocprint.demo.octoprint_server import free_port
from pocprint.store.db import upgrade

from conftest import PASSWORD, make_settings, order_json, write_printer
from service_process import ServiceProcess
from spine_helpers import make_people

CONFIG = REPO_ROOT / "config" / "nginx" / "pocprint.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pocprint test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "pocprint.crt", directory / "pocprint.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    return crt, pem


def _site_config(upstream: int, http_port: int, https_port: int, crt: Path, key: Path) -> str:
    """The repository's file with this machine's ports and certificate; each replaced line
    must exist, so the file cannot drift away from what is tested."""
    text = CONFIG.read_text()
    for pattern, replacement in (
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream};"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen \[::\]:80;\n", ""),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        (r"listen \[::\]:443 ssl http2;\n", ""),
        (r"ssl_certificate /etc/ssl/certs/pocprint\.crt;", f"ssl_certificate {crt};"),
        (r"ssl_certificate_key /etc/ssl/private/pocprint\.key;", f"ssl_certificate_key {key};"),
    ):
        text, n = re.subn(pattern, replacement, text)
        assert n >= 1, f"config/nginx/pocprint.conf no longer has {pattern!r}"
    return text


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nginx did not listen on {port}")


@pytest.fixture
def nginx_in_front(tmp_path, database_url):
    if not Path(NGINX).exists():
        pytest.skip("Debian nginx is not installed (make test-system-deps installs it)")
    printers_dir = tmp_path / "printers"
    write_printer(printers_dir, "tls-offline", "http://127.0.0.1:9", key="unused")
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    make_people(settings)
    service = ServiceProcess(settings, tmp_path / "service.log")
    service.extra_env["POCPRINT_TRUSTED_PROXIES"] = "1"
    service.start()
    # nginx's workers drop to an unprivileged user: their folder must be reachable by it.
    prefix = Path(tempfile.mkdtemp(prefix="pocprint-nginx-"))
    prefix.chmod(0o755)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / sub).mkdir(mode=0o777)
        (prefix / sub).chmod(0o777)
    crt, key = _certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    (prefix / "pocprint.conf").write_text(
        _site_config(service.port, http_port, https_port, crt, key)
    )
    main = f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/pocprint.conf;
}}
"""
    (prefix / "nginx.conf").write_text(main)
    check = subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "logs/error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "logs/error.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(https_port, process, prefix / "logs/error.log")
        yield {
            "https": f"https://127.0.0.1:{https_port}",
            "http": f"http://127.0.0.1:{http_port}",
            "ca": str(crt),
            "service": service,
            "settings": settings,
        }
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGQUIT)  # graceful stop of the master we started
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        service.stop()
        shutil.rmtree(prefix, ignore_errors=True)


def test_over_https_cookies_are_secure_hsts_is_sent_and_sign_in_works(nginx_in_front):
    proxy = nginx_in_front
    browser = requests.Session()
    browser.trust_env = False  # REQUESTS_CA_BUNDLE would replace the test's certificate
    browser.verify = proxy["ca"]
    page = browser.get(proxy["https"] + "/login", timeout=30)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert "nginx/" not in page.headers.get("Server", "")  # server_tokens off
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    # Over HTTPS a form must also come from this site's own page (Flask-WTF checks the
    # Referer, which a browser sends under Referrer-Policy same-origin).
    form = {"username": "tech", "password": PASSWORD, "csrf_token": csrf}
    forged = browser.post(proxy["https"] + "/login", data=form, allow_redirects=False, timeout=30)
    assert forged.status_code == 303 and "/login" not in forged.headers.get("Location", "x")
    signed = browser.post(
        proxy["https"] + "/login",
        data=form,
        headers={"Referer": proxy["https"] + "/login"},
        allow_redirects=False,
        timeout=30,
    )
    assert signed.status_code == 302 and not signed.headers["Location"].startswith("http:")
    board = browser.get(proxy["https"] + "/board/", timeout=30)
    assert board.status_code == 200 and "Sign out" in board.text
    # The session cookie is never sent back over plain HTTP (requests honours Secure).
    plain = requests.get(proxy["http"] + "/board/", allow_redirects=False, timeout=30)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://")


def test_uploads_pass_the_proxy_and_the_api_works_over_https(nginx_in_front):
    proxy = nginx_in_front
    from pocprint.services.lab import build_lab
    from pocprint.services.tokens import create_api_token

    lab = build_lab(proxy["settings"])
    token = create_api_token(lab, "tech", "tls test")
    lab.engine.dispose()
    api = requests.Session()
    api.trust_env = False
    api.verify = proxy["ca"]
    api.headers["Authorization"] = f"Bearer {token}"
    created = api.post(proxy["https"] + "/api/v1/cases", json=order_json(), timeout=30)
    assert created.status_code == 201, created.text
    assert created.headers["Strict-Transport-Security"]
    # 3 MB: beyond nginx's default 1 MB body limit, within pocprint's; it reaches pocprint,
    # which judges the content (here: not a mesh).
    answer = api.post(
        proxy["https"] + f"/api/v1/cases/{created.json()['id']}/parts",
        files={"mesh": ("big.stl", b"\0" * (3 * 2**20), "application/octet-stream")},
        timeout=60,
    )
    assert answer.status_code == 422 and answer.json()["code"] in {"count_mismatch", "truncated"}
