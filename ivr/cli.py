"""``dasan``: the one command-line entry point.

Each feature adds its sub-commands from its own module (``COMMAND_MODULES``): a module has
``register(subparsers)`` that adds parsers whose ``func(args) -> int`` runs the command.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ivr import datafolder
from ivr.config import Settings, load_settings
from ivr.yamlfile import DataError

COMMAND_MODULES: list[str] = [
    "ivr.ami.cli",
    "ivr.recordings.cli",
    "ivr.speech.cli",
    "ivr.redaction.cli",
    "ivr.open311.cli",
    "ivr.asterisk.cli",
    "ivr.kamailio.cli",
    "ivr.cluster.cli",
    "ivr.console.cli",
    "ivr.agi.cli",
]


def settings_from(args: argparse.Namespace) -> Settings:
    """The command's settings; a fresh data folder gets the shipped menus and queues first."""
    settings = load_settings(getattr(args, "config", None))
    datafolder.seed(settings)
    from ivr.webrtc.site_settings import overlay

    overlay(settings)  # the browser-call settings edited in the admin console (<data_dir>/webrtc.yaml)
    if getattr(args, "command", None) not in ("up", "config"):  # up prints where they are; check only reads
        from ivr.site_secrets import load_secrets

        load_secrets(settings)  # secrets left empty: from (or generated into) <data_dir>/secrets.yaml
    return settings


async def with_context(args: argparse.Namespace, fn: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``fn(ctx)`` with an AppContext built from the command's configuration, then close it."""
    from ivr.context import AppContext

    ctx = await AppContext.create(settings_from(args))
    try:
        return int(await fn(ctx))
    finally:
        await ctx.close()


def _up(args: argparse.Namespace) -> int:
    from ivr import up

    settings = settings_from(args)
    try:
        with asyncio.Runner(loop_factory=up.loop_factory(settings.event_loop)) as runner:
            runner.run(up.run(settings, only=args.only or None))
    except KeyboardInterrupt:
        pass
    except up.AddressInUse as exc:
        print(f"dasan: {exc}", file=sys.stderr)
        return 1
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from ivr.db import Database

    settings = settings_from(args)
    Database(settings.database_url).upgrade(args.revision)
    print(f"database upgraded to {args.revision}: {settings.database_url}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from ivr.ami.callbacks import trunk_problem
    from ivr.messaging.providers import provider_named
    from ivr.queues import load_queues
    from ivr.site_secrets import SecretError, config_problems, load_secrets, secrets_file

    settings = settings_from(args)
    agents = load_queues(settings.queues_dir).agents
    problems = config_problems(settings, agents)
    try:  # the SMS provider named exists, and its own settings check out
        provider_named(settings.sms.provider).options(settings.sms)
    except ValueError as exc:
        problems.append(str(exc))
    if not problems:
        try:
            for note in load_secrets(settings, create=False) or [f"secrets: none yet; `dasan up` generates them "
                                                                 f"into {secrets_file(settings)}"]:
                print(note)
        except SecretError as exc:
            problems += exc.problems
    no_trunk = trunk_problem(settings.asterisk.trunk_contact)
    if no_trunk:  # the rest works without a trunk: said, not fatal
        print(f"warning: {no_trunk}")
    if problems:
        print("configuration problems:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"configuration OK ({settings.site_name}; database {settings.database_url})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dasan", description="120 / 311 contact center")
    parser.add_argument("--config", help="configuration file (default: $DASAN_CONFIG or ./dasan.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run every service in one process")
    up.add_argument("--only", action="append", help="run only this service (repeatable)")
    up.set_defaults(func=_up)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(func=_db_upgrade)

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the configuration and report errors")
    check.set_defaults(func=_config_check)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except DataError as exc:
        print("configuration error:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
