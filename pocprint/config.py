"""Site settings: `config/pocprint.toml`, overridden by environment variables.

Secrets never come from the repository: the Flask secret key is read from the
environment or generated once into the data directory's `secrets/` folder.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from pocprint.domain.patient_code import DEFAULT_HINT, DEFAULT_PATTERN
from pocprint.mesh.limits import WorkLimits

REPO_ROOT = Path(__file__).resolve().parent.parent
# Default pseudonymous code: a letter prefix, a dash, then letters and digits with at least one
# digit (e.g. PX-0001, VASC-24A17): a name ("DoeJane", "Jane-Doe") cannot have that shape.
PATIENT_CODE_PATTERN = DEFAULT_PATTERN
PATIENT_CODE_HINT = DEFAULT_HINT


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    printers_dir: Path
    profiles_dir: Path
    secret_key: str
    # validated printer + material + profile + device type combinations (see README)
    combinations_file: Path | None = None
    site_name: str = "Point-of-care 3D printing lab"
    # Times are stored in UTC and shown and entered in this zone (IANA name).
    time_zone: str = "UTC"
    # The address people reach pocprint at (QR links on labels); None: the request's own.
    public_base_url: str | None = None
    max_upload_bytes: int = 200 * 1024 * 1024
    # Uploads up to this size are read completely inside the request, so a damaged or hostile
    # file is refused at once (4xx) and never stored; larger ones get the quick structural
    # check there and the full read in the worker (the part then fails with the reason).
    upload_full_check_bytes: int = 20 * 1024 * 1024
    slicer_timeout_s: float = 900.0
    # Wall time and memory of one part's mesh work (a child process), and parts at a time.
    mesh_limits: WorkLimits = field(default_factory=WorkLimits)
    mesh_interval_s: float = 1.0
    slicing_interval_s: float = 1.0
    dispatch_interval_s: float = 1.0
    poll_interval_s: float = 2.0
    printer_timeout_s: float = 4.0
    # Worker steps hold a lease, renewed while they run; an expired lease is swept (re-queued
    # or, for a dispatch, followed or marked interrupted). Transient errors retry with an
    # exponential back-off, at most max_attempts times.
    lease_s: float = 60.0
    sweep_interval_s: float = 5.0
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    max_attempts: int = 5
    session_timeout_minutes: int = 30
    # Clinical gate: account lockout, patient-identifier key (Fernet), catalog and taxonomy.
    lockout_attempts: int = 5
    lockout_minutes: int = 15
    # zxcvbn score (0-4) a new password must reach (domain/passwords.py).
    min_password_score: int = 3
    # API tokens: days a new token lasts unless told otherwise, and the most it may last.
    token_days: int = 90
    token_max_days: int = 365
    # Reverse proxies in front of the service whose X-Forwarded-* headers are believed
    # (0: none, the service is reached directly; 1: one nginx, as in config/nginx/).
    trusted_proxies: int = 0
    identifiers_key: str | None = None
    # The site's pseudonymous patient code (a regular expression the whole code must match),
    # with the sentence shown when it does not; and the length range of the hospital's record
    # numbers, so an all-digit code of that length (an MRN typed by mistake) is refused.
    patient_code_pattern: str = PATIENT_CODE_PATTERN
    patient_code_hint: str = PATIENT_CODE_HINT
    record_number_digits: tuple[int, int] = (6, 12)
    catalog_dir: Path = REPO_ROOT / "config" / "appropriateness"
    anatomy_file: Path = REPO_ROOT / "config" / "anatomy.toml"
    # Hospital systems (issue 11): the raw [pacs], [directory], [notifications] and [fhir]
    # sections; each adapter checks its own options (pocprint/hospital/) at start.
    pacs: dict = field(default_factory=dict)
    directory: dict = field(default_factory=dict)
    notifications: dict = field(default_factory=dict)
    fhir: dict = field(default_factory=dict)
    # Lead-time forecast (issue 12): min_cases, default_median_h, default_p90_h.
    planning: dict = field(default_factory=dict)
    outbox_interval_s: float = 2.0
    # Outbox deliveries (e-mail, webhooks, PACS archive) are retried longer than worker steps:
    # a mail server or PACS down for an hour must not lose a message.
    outbox_retry_base_s: float = 30.0
    outbox_retry_max_s: float = 1800.0
    outbox_max_attempts: int = 10
    at_risk_interval_s: float = 60.0
    # Scale-out (issue 16): "embedded" runs the steps in the serving process (APScheduler);
    # "celery" makes `pocprint serve` only serve and enqueue, and `pocprint worker` processes
    # run them, taking messages from the broker (Redis). A queued row no message was seen
    # for in requeue_after_s is enqueued again by the dispatcher (a lost message loses nothing).
    worker_engine: str = "embedded"
    broker_url: str = "redis://127.0.0.1:6379/0"
    requeue_after_s: float = 30.0
    heartbeat_s: float = 5.0
    start_scheduler: bool = True
    testing: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)


def _read_toml(path: Path) -> dict:
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _secret_key(data_dir: Path) -> str:
    """Environment first; else one random key kept in the data directory (never in the repo)."""
    if key := os.environ.get("POCPRINT_SECRET_KEY"):
        return key
    path = data_dir / "secrets" / "flask-secret-key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def _identifiers_key(section: dict, data_dir: Path) -> str | None:
    """The Fernet key for patient identifiers: environment, else the configured key file
    (relative to the data directory's secrets/). None: this site stores no identifiers."""
    if key := os.environ.get("POCPRINT_IDENTIFIERS_KEY"):
        return key
    name = section.get("key_file")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else data_dir / "secrets" / name
    return path.read_text().strip() if path.exists() else None


def _time_zone(name: str | None) -> str:
    from pocprint.domain.times import zone

    zone(name)  # refuses to start with an unknown zone, naming it
    return name or "UTC"


def _base_url(url: str | None) -> str | None:
    """e.g. https://3dlab.hospital.example; the QR codes on labels link below it."""
    if not url:
        return None
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or " " in url:
        raise ValueError(
            f"public_base_url {url!r} must be an http:// or https:// address, e.g. "
            "https://3dlab.hospital.example"
        )
    return url


def _code_pattern(section: dict) -> tuple[str, str]:
    """The site's patient code pattern; a pattern that does not compile stops the start."""
    import re

    pattern = section.get("patient_code_pattern") or PATIENT_CODE_PATTERN
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"[identifiers] patient_code_pattern does not compile: {exc}") from exc
    hint = section.get("patient_code_hint") or (
        PATIENT_CODE_HINT if pattern == PATIENT_CODE_PATTERN else f"matching {pattern}"
    )
    return pattern, hint


def _digits_range(value) -> tuple[int, int]:
    low, high = (int(v) for v in (value or (6, 12)))
    if not 1 <= low <= high:
        raise ValueError("[identifiers] record_number_digits must be [shortest, longest]")
    return low, high


def _engine(value) -> str:
    value = value or "embedded"
    if value not in ("embedded", "celery"):
        raise ValueError(f'[worker] engine must be "embedded" or "celery", not {value!r}')
    return value


def load_settings(config_file: Path | None = None, **overrides) -> Settings:
    env = os.environ
    config_file = config_file or Path(
        env.get("POCPRINT_CONFIG", REPO_ROOT / "config/pocprint.toml")
    )
    raw = _read_toml(Path(config_file))
    storage = raw.get("storage", {})
    worker = raw.get("worker", {})
    data_dir = Path(env.get("POCPRINT_DATA_DIR", storage.get("data_dir", "var")))
    if not data_dir.is_absolute():
        data_dir = (REPO_ROOT / data_dir).resolve()
    data_dir = Path(overrides.pop("data_dir", data_dir))
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = env.get("POCPRINT_DATABASE_URL") or storage.get("database_url")
    if not database_url:
        database_url = f"sqlite:///{data_dir / 'pocprint.db'}"
    printers_dir = Path(env.get("POCPRINT_PRINTERS_DIR", REPO_ROOT / "printers"))
    values = dict(
        data_dir=data_dir,
        database_url=database_url,
        printers_dir=printers_dir,
        profiles_dir=Path(env.get("POCPRINT_PROFILES_DIR", printers_dir / "profiles")),
        secret_key=overrides.pop("secret_key", None) or _secret_key(data_dir),
        site_name=raw.get("site", {}).get("name", Settings.site_name),
        time_zone=_time_zone(env.get("POCPRINT_TIME_ZONE") or raw.get("site", {}).get("time_zone")),
        public_base_url=_base_url(
            env.get("POCPRINT_PUBLIC_BASE_URL") or raw.get("site", {}).get("public_base_url")
        ),
        max_upload_bytes=int(
            float(
                env.get("POCPRINT_MAX_UPLOAD_MB", raw.get("uploads", {}).get("max_upload_mb", 200))
            )
            * 1024
            * 1024
        ),
        upload_full_check_bytes=int(
            float(raw.get("uploads", {}).get("full_check_mb", 20)) * 1024 * 1024
        ),
        slicer_timeout_s=float(raw.get("slicing", {}).get("timeout_s", 900)),
        mesh_limits=WorkLimits.from_config(raw.get("mesh_limits", {})),
        mesh_interval_s=float(worker.get("mesh_interval_s", 1.0)),
        slicing_interval_s=float(worker.get("slicing_interval_s", 1.0)),
        dispatch_interval_s=float(worker.get("dispatch_interval_s", 1.0)),
        poll_interval_s=float(worker.get("poll_interval_s", 2.0)),
        printer_timeout_s=float(worker.get("printer_timeout_s", 4.0)),
        lease_s=float(worker.get("lease_s", 60.0)),
        sweep_interval_s=float(worker.get("sweep_interval_s", 5.0)),
        retry_base_s=float(worker.get("retry_base_s", 5.0)),
        retry_max_s=float(worker.get("retry_max_s", 300.0)),
        max_attempts=int(worker.get("max_attempts", 5)),
        session_timeout_minutes=int(raw.get("session", {}).get("timeout_minutes", 30)),
        lockout_attempts=int(raw.get("accounts", {}).get("lockout_attempts", 5)),
        lockout_minutes=int(raw.get("accounts", {}).get("lockout_minutes", 15)),
        min_password_score=int(raw.get("accounts", {}).get("min_password_score", 3)),
        token_days=int(raw.get("api", {}).get("token_days", 90)),
        token_max_days=int(raw.get("api", {}).get("token_max_days", 365)),
        trusted_proxies=int(
            env.get("POCPRINT_TRUSTED_PROXIES", raw.get("proxy", {}).get("trusted_proxies", 0))
        ),
        identifiers_key=_identifiers_key(raw.get("identifiers", {}), data_dir),
        pacs=raw.get("pacs", {}),
        directory=raw.get("directory", {}),
        notifications=raw.get("notifications", {}),
        fhir=raw.get("fhir", {}),
        planning=raw.get("planning", {}),
        outbox_interval_s=float(worker.get("outbox_interval_s", 2.0)),
        outbox_retry_base_s=float(worker.get("outbox_retry_base_s", 30.0)),
        outbox_retry_max_s=float(worker.get("outbox_retry_max_s", 1800.0)),
        outbox_max_attempts=int(worker.get("outbox_max_attempts", 10)),
        at_risk_interval_s=float(worker.get("at_risk_interval_s", 60.0)),
        worker_engine=_engine(env.get("POCPRINT_WORKER_ENGINE") or worker.get("engine")),
        broker_url=env.get("POCPRINT_BROKER_URL")
        or worker.get("broker_url", "redis://127.0.0.1:6379/0"),
        requeue_after_s=float(worker.get("requeue_after_s", 30.0)),
        heartbeat_s=float(worker.get("heartbeat_s", 5.0)),
        record_number_digits=_digits_range(raw.get("identifiers", {}).get("record_number_digits")),
    )
    values["patient_code_pattern"], values["patient_code_hint"] = _code_pattern(
        raw.get("identifiers", {})
    )
    values.update(overrides)
    if values.get("combinations_file") is None:
        default = Path(values["profiles_dir"]).parent / "validated.toml"
        values["combinations_file"] = Path(env.get("POCPRINT_VALIDATED_FILE", default))
    return Settings(**values)
