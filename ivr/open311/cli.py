"""``dasan open311 key create|revoke``, ``dasan open311 check``, ``dasan open311 status``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ivr.cli import settings_from, with_context


def _run(args: argparse.Namespace, fn: Any) -> int:
    return asyncio.run(with_context(args, fn))


def _key_create(args: argparse.Namespace) -> int:
    from ivr.open311.keys import create_key

    async def run(ctx: Any) -> int:
        try:
            key = await create_key(ctx.db, args.name, args.scopes, args.agency)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"api key for {args.name} ({args.scopes}); shown once, store it now / 한 번만 표시됩니다:")
        print(key)
        return 0

    return _run(args, run)


def _key_revoke(args: argparse.Namespace) -> int:
    from ivr.open311.keys import revoke_key

    async def run(ctx: Any) -> int:
        if not await revoke_key(ctx.db, args.name):
            print(f"error: no key named {args.name} / 그런 키가 없습니다", file=sys.stderr)
            return 1
        print(f"revoked {args.name}")
        return 0

    return _run(args, run)


def _check(args: argparse.Namespace) -> int:
    from ivr.open311.catalog import catalog_path, load_catalog

    path = catalog_path(settings_from(args).data_dir)
    catalog = load_catalog(path)  # DataError is printed by ivr.cli with file:line
    print(f"{path}: {len(catalog.services)} services OK ({', '.join(s.service_code for s in catalog.services)})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ivr.open311.service import Open311

    async def run(ctx: Any) -> int:
        print(await Open311(ctx).status_text(args.number, args.language))
        return 0

    return _run(args, run)


def register(sub: Any) -> None:
    top = sub.add_parser("open311", help="Open311 service requests: API keys, catalogue, status")
    o_sub = top.add_subparsers(dest="open311_command", required=True)
    key = o_sub.add_parser("key", help="API keys for clients (submit) and departments (update)")
    k_sub = key.add_subparsers(dest="key_command", required=True)
    create = k_sub.add_parser("create", help="make or replace a key; prints it once")
    create.add_argument("name")
    create.add_argument("--scopes", default="submit", help="submit, update or submit,update")
    create.add_argument("--agency", help="department name used as agency_responsible")
    create.set_defaults(func=_key_create)
    revoke = k_sub.add_parser("revoke", help="disable a key")
    revoke.add_argument("name")
    revoke.set_defaults(func=_key_revoke)
    check = o_sub.add_parser("check", help="validate the service catalogue (services.yaml)")
    check.set_defaults(func=_check)
    status = o_sub.add_parser("status", help="what the IVR says for a tracking number")
    status.add_argument("number")
    status.add_argument("--language", default="ko")
    status.set_defaults(func=_status)
