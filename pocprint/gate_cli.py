"""Command-line tools of the clinical gate: the appropriateness catalog as CSV, and the key
that encrypts patient identifiers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pocprint.config import Settings


def add_gate_commands(sub) -> None:
    cat = sub.add_parser("catalog", help="appropriateness catalog (CSV import/export)")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True)
    export = cat_sub.add_parser("export", help="write the active rows as CSV")
    export.add_argument("file", nargs="?", help="output file (default: standard output)")
    imp = cat_sub.add_parser("import", help="add or update rows from a CSV (all or none)")
    imp.add_argument("file")
    sub.add_parser(
        "identifiers-key",
        help="create the key that encrypts patient identifiers (data/secrets/identifiers.key)",
    )


def run_gate_command(settings: Settings, args) -> int:
    if args.command == "identifiers-key":
        return _identifiers_key(settings)
    from pocprint.domain.roles import Role
    from pocprint.services import catalog
    from pocprint.services.actors import Actor
    from pocprint.services.errors import Invalid
    from pocprint.services.lab import build_lab
    from pocprint.store.db import upgrade

    lab = build_lab(settings)
    upgrade(settings.database_url)
    catalog.load_shipped(lab)
    if args.catalog_command == "export":
        text = catalog.export_csv(lab)
        if args.file:
            Path(args.file).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    cli_manager = Actor(None, "cli", "command line", frozenset({Role.LAB_MANAGER}))
    try:
        counts = catalog.import_csv(lab, cli_manager, Path(args.file).read_text(encoding="utf-8"))
    except Invalid as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 1
    print(f"{counts['added']} added, {counts['changed']} changed, {counts['unchanged']} unchanged")
    return 0


def _identifiers_key(settings: Settings) -> int:
    from pocprint.services.identifiers import new_key

    path = settings.secrets_dir / "identifiers.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        print(f"{path} already exists; a new key would make stored identifiers unreadable")
        return 1
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(new_key())
    print(f'key written to {path}; set key_file = "identifiers.key" under [identifiers]')
    print("in config/pocprint.toml and keep a backup of the key with the database backups.")
    return 0
