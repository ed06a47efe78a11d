"""Command line: `pocprint serve`, `pocprint demo run`, user accounts, printers, database.

Run `pocprint --help` for the list. Everything here calls services; nothing writes tables.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from pocprint.config import Settings, load_settings
from pocprint.distributed.cli import add_commands as add_worker_commands
from pocprint.distributed.cli import run_status, run_worker
from pocprint.domain.roles import Role, parse_roles
from pocprint.gate_cli import add_gate_commands, run_gate_command
from pocprint.mesh.cli import add_mesh_commands, run_mesh_command
from pocprint.tokens_cli import add_token_commands, run_token_command

log = logging.getLogger("pocprint")


def _prepare(settings: Settings):
    """Schema, printers and recovery: everything that must happen before serving."""
    from pocprint.services.catalog import load_shipped
    from pocprint.services.fleet import sync_printers
    from pocprint.services.lab import build_lab
    from pocprint.services.sweeper import recover
    from pocprint.services.users import bootstrap_admin, has_users
    from pocprint.store.db import upgrade

    lab = build_lab(settings)
    upgrade(settings.database_url)
    sync_printers(lab)
    if loaded := load_shipped(lab):
        log.warning("appropriateness catalog: loaded %d shipped rows", loaded)
    if not has_users(lab):
        password = bootstrap_admin(lab)
        # Shown once, on the terminal only (never logged): there is no default password.
        print("\n=== First start: an administrator account was created ===", flush=True)
        print("    user name: admin", flush=True)
        print(f"    password:  {password}", flush=True)
        print(
            "    Write it down now; it is not shown again. The admin adds the lab's users",
            flush=True,
        )
        print("    with `pocprint users add`.\n", flush=True)
    from pocprint.services.identifiers import seal_plain_accessions

    if sealed := seal_plain_accessions(settings, lab.engine):
        log.warning("encrypted %d accession number(s) stored in clear before 0010", sealed)
    counts = recover(lab)
    if any(counts.values()):
        log.warning("recovered after restart: %s", counts)
    return lab


def serve(settings: Settings, host: str, port: int, demo: bool = False) -> None:
    import waitress

    from pocprint.scheduler import Worker
    from pocprint.web import create_app

    lab = _prepare(settings)
    if demo:
        _stock_demo_printers(lab)
    app = create_app(settings, lab)
    worker = None
    if settings.worker_engine == "celery":  # only serve and enqueue; workers run the steps
        from pocprint.distributed.app import make_celery
        from pocprint.distributed.engine import hand_to_broker

        hand_to_broker(lab, make_celery(settings.broker_url))
        log.warning("engine celery: steps go to %s for `pocprint worker`", _shown(settings))
    else:
        worker = Worker(lab)
        worker.start()
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host  # noqa: S104
    print(f"pocprint is running: open http://{shown}:{port}/ in a browser", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost") and settings.trusted_proxies == 0:
        log.warning(
            "serving plain HTTP on %s: passwords and patient data cross the network unencrypted. "
            "Put nginx with TLS in front (config/nginx/pocprint.conf) and serve on 127.0.0.1",
            host,
        )
    try:
        # Behind a proxy, the X-Forwarded-* headers reach the app, whose ProxyFix believes the
        # number of proxies configured; otherwise waitress drops them before anything reads them.
        waitress.serve(
            app,
            host=host,
            port=port,
            threads=8,
            _quiet=True,
            clear_untrusted_proxy_headers=settings.trusted_proxies == 0,
        )
    finally:
        if worker is not None:
            worker.shutdown()


def _shown(settings: Settings) -> str:
    """The broker's address without any password in it (for the log)."""
    parsed = urlparse(settings.broker_url)
    return parsed._replace(
        netloc=(parsed.hostname or "") + (f":{parsed.port}" if parsed.port else "")
    ).geturl()


def demo_run(settings: Settings, host: str, port: int) -> None:
    """Start the demo OctoPrint printers defined in printers/ (demo = true), then serve."""
    from pocprint.connectors.definitions import load_definitions
    from pocprint.demo.octoprint_server import start_server

    servers = []
    settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for definition in load_definitions(settings.printers_dir).values():
        if not definition.demo:
            continue
        key_path = Path(definition.api_key_file or f"{definition.name}.octoprint-key")
        if not key_path.is_absolute():
            key_path = settings.secrets_dir / key_path
        if not key_path.exists():
            key_path.write_text(secrets.token_hex(16))
            key_path.chmod(0o600)
        demo_port = urlparse(definition.url).port
        print(
            f"starting demo printer {definition.name} (OctoPrint on port {demo_port})…", flush=True
        )
        servers.append(
            start_server(
                settings.data_dir / "demo" / definition.name,
                port=demo_port,
                api_key=key_path.read_text().strip(),
            )
        )

    def _stop(*_args):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(settings, host, port, demo=True)
    finally:
        for server in servers:
            server.stop()


def _stock_demo_printers(lab) -> None:
    """Demo printers get a demo lot of their material, so a demo job can be dispatched.

    Only printers marked `demo = true`, and only while no lot is loaded; the lot says it is a
    demo lot, so it cannot be mistaken for a real one in a device record.
    """
    from datetime import timedelta

    from sqlmodel import select

    from pocprint.services import materials
    from pocprint.services.actors import Actor
    from pocprint.store.db import read_session
    from pocprint.store.models import MaterialLot, Printer, User, utcnow

    with read_session(lab.engine) as session:  # the lot is recorded as received by the admin
        admin_id = session.exec(
            select(User.id).where(User.roles.contains(Role.ADMIN.value)).order_by(User.id)
        ).first()
    demo = Actor(admin_id, "demo", "demo set-up", frozenset({Role.LAB_MANAGER}))
    for name, definition in lab.printers.items():
        if not definition.demo:
            continue
        with read_session(lab.engine) as session:
            printer = session.exec(select(Printer).where(Printer.name == name)).one()
            if materials.current_lot(session, printer.id) is not None:
                continue
            printer_id, material = printer.id, printer.material
            lot_number = f"DEMO-{material}-{printer_id}"
            earlier = session.exec(
                select(MaterialLot.id).where(
                    MaterialLot.lot_number == lot_number, MaterialLot.material == material
                )
            ).first()
        lot_id = earlier or materials.receive_lot(
            lab,
            demo,
            material=material,
            manufacturer="demo lot, not for clinical use",
            lot_number=lot_number,
            expiry=utcnow().date() + timedelta(days=365),
            quantity_g=1000,
        )
        materials.load_lot(lab, demo, printer_id, lot_id)
        print(f"demo printer {name}: loaded demo lot {lot_number}", flush=True)


def _user_command(settings: Settings, args) -> int:
    from pocprint.services import users
    from pocprint.services.actors import Actor
    from pocprint.services.lab import build_lab
    from pocprint.store.db import upgrade

    lab = build_lab(settings)
    upgrade(settings.database_url)
    if args.users_command == "create-admin":
        password = users.bootstrap_admin(lab, args.username, args.name)
        print(f"administrator {args.username} created; password (shown once): {password}")
    elif args.users_command == "add":
        roles = set(parse_roles(args.roles))
        password = users.generate_password()
        cli_admin = Actor(None, "cli", "command line", frozenset({Role.ADMIN}))
        users.create_user(lab, cli_admin, args.username, args.name, password, roles)
        print(
            f"user {args.username} created with roles {args.roles}; one-time password (shown "
            f"once, to be replaced at the first sign-in): {password}"
        )
    elif args.users_command == "token":  # kept for scripts; `pocprint tokens` does more
        from pocprint.services import tokens

        print(tokens.create_token(lab, tokens.CLI, args.username, args.label or "api")[1])
    return 0


def _printers_check(settings: Settings) -> int:
    from pocprint.services.printer_check import check_printers

    report = check_printers(settings)
    print("\n".join(report.lines), file=sys.stderr if report.exit_code == 1 else sys.stdout)
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pocprint", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "demo"):
        p = sub.add_parser(name, help="start the service" if name == "serve" else "demo printers")
        if name == "demo":
            p.add_argument("demo_command", choices=["run"])
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8080)
    add_worker_commands(sub)
    db = sub.add_parser("db", help="database schema")
    db.add_argument("db_command", choices=["upgrade"])
    users_p = sub.add_parser("users", help="user accounts and API tokens")
    users_sub = users_p.add_subparsers(dest="users_command", required=True)
    admin = users_sub.add_parser("create-admin", help="first administrator (only with no users)")
    admin.add_argument("username")
    admin.add_argument("--name", default="Administrator")
    add = users_sub.add_parser("add", help="add a user; prints a one-time password")
    add.add_argument("username")
    add.add_argument("--name", required=True, help="full name, printed on signatures")
    add.add_argument("--roles", required=True, help="comma-separated: " + ", ".join(Role))
    token = users_sub.add_parser("token", help="create an API token (see `pocprint tokens`)")
    token.add_argument("username")
    token.add_argument("--label", default="")
    printers = sub.add_parser("printers", help="printer definitions")
    printers.add_argument("printers_command", choices=["check"])
    audit_p = sub.add_parser("audit", help="the hash-chained audit trail")
    audit_p.add_argument("audit_command", choices=["verify", "head"])
    materials_p = sub.add_parser("materials", help="material lots and what each printer holds")
    materials_p.add_argument("materials_command", choices=["list"])
    add_mesh_commands(sub)
    add_gate_commands(sub)
    add_token_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "mesh":  # offline tool: no database, data directory or secrets
        return run_mesh_command(args)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # "skipped: maximum number of running instances" is the normal state of a busy step.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = load_settings()
    if args.command in ("serve", "demo"):
        from pocprint.services.lab import LabDataError

        try:
            if args.command == "serve":
                serve(settings, args.host, args.port)
            else:
                demo_run(settings, args.host, args.port)
        except LabDataError as exc:  # a printer, profile or combination file is invalid
            print(f"pocprint cannot start: {exc}", file=sys.stderr)
            return 2
    elif args.command == "db":
        from pocprint.store.db import upgrade

        upgrade(settings.database_url)
    elif args.command == "users":
        return _user_command(settings, args)
    elif args.command == "printers":
        return _printers_check(settings)
    elif args.command == "audit":
        if args.audit_command == "head":
            return _audit_head(settings)
        return _audit_verify(settings)
    elif args.command == "materials":
        return _materials_list(settings)
    elif args.command == "tokens":
        return run_token_command(settings, args)
    elif args.command == "worker":
        return run_worker(settings, args)
    elif args.command == "status":
        return run_status(settings, args)
    elif args.command in ("catalog", "identifiers-key"):
        return run_gate_command(settings, args)
    return 0


def _audit_head(settings: Settings) -> int:
    """Print the chain head (event count and hash) to copy to a record outside pocprint."""
    from pocprint.reads.audit import chain_head
    from pocprint.store.db import make_engine, read_session

    with read_session(make_engine(settings.database_url)) as session:
        head = chain_head(session)
    print(f"{head.events} events, head {head.hash}")
    return 0


def _materials_list(settings: Settings) -> int:
    """Lots (expiry, estimated use) and the lot on each printer with its calibration state."""
    from pocprint.reads import materials
    from pocprint.store.db import make_engine, read_session

    with read_session(make_engine(settings.database_url)) as session:
        lots, printers = materials.lots(session), materials.printers(session)
    for lot in lots:
        flag = " EXPIRED" if lot["expired"] else ""
        print(
            f"lot {lot['lot_number']} {lot['material']} ({lot['manufacturer']}) expiry "
            f"{lot['expiry']}{flag}: {lot['remaining_g']} of {lot['quantity_g']} g left, "
            f"{lot['builds']} build(s)"
        )
    for p in printers:
        loaded = p["lot"].lot_number if p["lot"] else "no lot loaded"
        cal = p["calibration"]
        print(f"printer {p['name']}: {loaded}; calibration {cal['state']} (due {cal['next_due']})")
    return 0


def _audit_verify(settings: Settings) -> int:
    """Walk the whole chain; exit 1 and name the first broken link if any event was altered."""
    from pocprint.reads.audit import verify_chain
    from pocprint.store.db import make_engine

    check = verify_chain(make_engine(settings.database_url))
    if check.ok:
        print(f"audit chain intact: {check.events} events, head {check.head}")
        return 0
    print(
        f"AUDIT CHAIN BROKEN at event {check.broken_at}: {check.problem} "
        f"({check.events} events before it verify)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
