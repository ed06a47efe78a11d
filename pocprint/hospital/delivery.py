"""Sending notifications: e-mail over SMTP and webhooks signed with HMAC-SHA256, and the
[notifications] settings that say which role hears of which event, where.

A webhook call carries `X-Pocprint-Timestamp` (Unix seconds) and `X-Pocprint-Signature:
sha256=<hex HMAC of "<timestamp>.<body>">` with the webhook's secret, so the receiver can
check the sender and refuse a replayed old call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import requests

from pocprint.hospital.errors import ConfigError, PeerError
from pocprint.hospital.secrets import read_secret, refuse_inline

EVENTS = (
    "part_needs_attention",
    "awaiting_review",
    "awaiting_approval",
    "job_at_risk",
    "print_failed",
    "ready_for_release",
)
ROLES = ("admin", "technician", "prescriber", "radiologist", "lab_manager", "auditor")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: str = field(repr=False)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Subscription:
    role: str
    events: frozenset[str]
    email: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotifyConfig:
    smtp: SmtpConfig | None
    webhooks: dict[str, Webhook]
    subscriptions: tuple[Subscription, ...]

    def destinations(self, event: str) -> list[tuple[str, str]]:
        """(channel, destination) for an event, each once however many roles share it."""
        out: list[tuple[str, str]] = []
        for sub in self.subscriptions:
            if event not in sub.events:
                continue
            for address in sub.email:
                if ("email", address) not in out:
                    out.append(("email", address))
            for name in sub.webhooks:
                if ("webhook", name) not in out:
                    out.append(("webhook", name))
        return out


def _port(section: str, value, default: int) -> int:
    value = default if value is None else value
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"[{section}] port must be a port number (1-65535), not {value!r}")
    return value


def notify_config(raw: dict | None, secrets_dir: Path) -> NotifyConfig | None:
    """[notifications] of config/pocprint.toml; None when nothing is configured."""
    if not raw:
        return None
    smtp = None
    if email := raw.get("email"):
        section = "notifications.email"
        refuse_inline(section, email, "password")
        if not email.get("host") or "@" not in str(email.get("sender", "")):
            raise ConfigError(f"[{section}] needs host and sender (an e-mail address)")
        smtp = SmtpConfig(
            host=str(email["host"]),
            port=_port(section, email.get("port"), 25),
            sender=str(email["sender"]),
            starttls=bool(email.get("starttls", False)),
            username=email.get("username") or None,
            password=read_secret(section, email, "password", secrets_dir),
            timeout_s=float(email.get("timeout_s", 10)),
        )
    webhooks = {}
    for name, hook in (raw.get("webhooks") or {}).items():
        section = f"notifications.webhooks.{name}"
        refuse_inline(section, hook, "secret")
        url = str(hook.get("url", ""))
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"[{section}] url must be an http:// or https:// address")
        secret = read_secret(section, hook, "secret", secrets_dir)
        if not secret or len(secret) < 16:
            raise ConfigError(
                f"[{section}] needs a signing secret of at least 16 characters "
                "(secret_env or secret_file)"
            )
        webhooks[name] = Webhook(name, url, secret, float(hook.get("timeout_s", 10)))
    subscriptions = []
    for role, sub in (raw.get("roles") or {}).items():
        section = f"notifications.roles.{role}"
        if role not in ROLES:
            raise ConfigError(f"[{section}] {role} is not a role ({', '.join(ROLES)})")
        events = sub.get("events", [])
        unknown = set(events) - set(EVENTS)
        if unknown:
            raise ConfigError(
                f"[{section}] events: unknown {', '.join(sorted(unknown))} "
                f"(known: {', '.join(EVENTS)})"
            )
        email = tuple(str(a) for a in sub.get("email", []))
        if email and smtp is None:
            raise ConfigError(f"[{section}] email needs [notifications.email] (the SMTP server)")
        if bad := [a for a in email if "@" not in a]:
            raise ConfigError(f"[{section}] email: {', '.join(bad)} is not an e-mail address")
        hooks = tuple(str(h) for h in sub.get("webhooks", []))
        if missing := [h for h in hooks if h not in webhooks]:
            raise ConfigError(
                f"[{section}] webhooks: {', '.join(missing)} is not under [notifications.webhooks]"
            )
        subscriptions.append(Subscription(role, frozenset(events), email, hooks))
    return NotifyConfig(smtp, webhooks, tuple(subscriptions))


def send_email(smtp: SmtpConfig, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise PeerError(f"the mail server {smtp.host}:{smtp.port} did not take it: {exc}") from exc


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def send_webhook(hook: Webhook, payload: dict) -> int:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Pocprint-Timestamp": stamp,
        "X-Pocprint-Signature": signature(hook.secret, stamp, body),
    }
    try:
        response = requests.post(hook.url, data=body, headers=headers, timeout=hook.timeout_s)
    except requests.RequestException as exc:
        raise PeerError(f"webhook {hook.name} does not answer: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        raise PeerError(f"webhook {hook.name} answered HTTP {response.status_code}")
    return response.status_code
