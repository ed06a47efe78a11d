"""`pocprint tokens create|list|revoke`: API tokens from the command line (the same services
as the admin page; every change audited, the token shown once)."""

from __future__ import annotations

import sys

from pocprint.config import Settings


def add_token_commands(sub) -> None:
    tokens = sub.add_parser("tokens", help="API tokens: create, list, revoke")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="a new token for a user (printed once)")
    create.add_argument("username")
    create.add_argument("--name", required=True, help="what uses it, e.g. 'PACS bridge'")
    create.add_argument("--days", type=int, default=None, help="days until it expires")
    listing = tokens_sub.add_parser("list", help="tokens with their state and last use")
    listing.add_argument("--user", default=None)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", type=int)
    revoke.add_argument("--reason", default="")


def run_token_command(settings: Settings, args) -> int:
    from pocprint.reads.tokens import token_rows
    from pocprint.services import tokens
    from pocprint.services.errors import ServiceError
    from pocprint.services.lab import build_lab
    from pocprint.store.db import read_session, upgrade

    lab = build_lab(settings)
    upgrade(settings.database_url)
    try:
        if args.tokens_command == "create":
            token_id, token = tokens.create_token(
                lab, tokens.CLI, args.username, args.name, args.days
            )
            print(f"token {token_id} for {args.username} (shown once):", file=sys.stderr)
            print(token)
        elif args.tokens_command == "revoke":
            tokens.revoke_token(lab, tokens.CLI, args.token_id, args.reason)
            print(f"token {args.token_id} revoked")
        else:
            with read_session(lab.engine) as session:
                rows = token_rows(session, args.user)
            for r in rows:
                used = f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never"
                print(
                    f"{r['id']}\t{r['user']}\t{r['name']}\t{r['state']}\t"
                    f"expires {r['expires_at']:%Y-%m-%d}\tlast used {used}"
                    if r["expires_at"]
                    else f"{r['id']}\t{r['user']}\t{r['name']}\t{r['state']}"
                )
    except ServiceError as exc:
        print(f"pocprint tokens: {exc}", file=sys.stderr)
        return 1
    return 0
