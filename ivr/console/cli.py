"""``dasan user add|list``: console accounts (hashed passwords, role, language)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from ivr.cli import with_context


def _add(args: argparse.Namespace) -> int:
    from ivr.context import AppContext
    from ivr.web.auth import ROLES, create_user

    if args.role not in ROLES:
        print(f"role must be one of {', '.join(ROLES)}", file=sys.stderr)
        return 2
    password = args.password or os.environ.get("DASAN_USER_PASSWORD") or ""
    if not password and sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 8:
        print("password: at least 8 characters (--password, $DASAN_USER_PASSWORD or the prompt)", file=sys.stderr)
        return 2

    async def run(ctx: AppContext) -> int:
        user = await create_user(ctx, args.username, password, args.role,
                                 display_name=args.name or "", language=args.language)
        print(f"user {user.username}: role {user.role}, language {user.language}")
        return 0

    return asyncio.run(with_context(args, run))


def _set_active(args: argparse.Namespace) -> int:
    from ivr.context import AppContext
    from ivr.web.auth import set_active

    async def run(ctx: AppContext) -> int:
        found = await set_active(ctx, args.username, args.active)
        if not found:
            print(f"no user {args.username!r}", file=sys.stderr)
            return 1
        print(f"user {args.username}: {'active' if args.active else 'disabled (every session ended)'}")
        return 0

    return asyncio.run(with_context(args, run))


def _list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ivr.context import AppContext
    from ivr.db.models import User

    async def run(ctx: AppContext) -> int:
        async with ctx.db.session() as session:
            users = list((await session.execute(select(User).order_by(User.username))).scalars())
        for u in users:
            print(f"{u.username}\t{u.role}\t{u.language}\t{'active' if u.active else 'disabled'}")
        return 0

    return asyncio.run(with_context(args, run))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = sub.add_parser("user", help="console accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user, or reset an existing user's password/role")
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, help="agent | supervisor | admin | reviewer")
    add.add_argument("--password", help="(or $DASAN_USER_PASSWORD, or asked for on a terminal)")
    add.add_argument("--language", default="ko", choices=["ko", "en"])
    add.add_argument("--name", help="display name")
    add.set_defaults(func=_add)
    for name, active, text in (("disable", False, "disable a user and end every session of theirs"),
                               ("enable", True, "enable a disabled user")):
        toggle = user_sub.add_parser(name, help=text)
        toggle.add_argument("username")
        toggle.set_defaults(func=_set_active, active=active)
    lst = user_sub.add_parser("list", help="list users")
    lst.set_defaults(func=_list)
