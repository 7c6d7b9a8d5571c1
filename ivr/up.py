"""``dasan up``: every service in one process on the configured (default: embedded) back-ends."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
from collections.abc import Callable

from ivr import services
from ivr.config import Settings
from ivr.context import AppContext

log = logging.getLogger("dasan.up")
GC_THRESHOLDS = (100_000, 20, 20)  # young-generation allocations, then collections per older one
# The settings section (host, port) each listening service binds to.
LISTEN_SETTINGS = {"web": "web", "agi": "agi", "metrics": "metrics"}


class AddressInUse(Exception):
    """A service could not listen because its address is taken; the message names the setting."""


def address_in_use(name: str, settings: Settings) -> AddressInUse:
    section = LISTEN_SETTINGS.get(name, name)
    where = getattr(settings, section, None)
    address = f"{where.host}:{where.port}" if where is not None else "its address"
    return AddressInUse(f"{name} cannot listen on {address}: the port is in use; set {section}.port in the "
                        f"configuration (or DASAN__{section.upper()}__PORT) to a free port")


async def _first_admin(ctx: AppContext) -> str | None:
    """On an empty database, create an admin account so the console can be opened at all.

    Services started together (``dasan up --only ...`` each) race here: one statement inserts
    the admin only while no user exists, and a concurrent twin's row makes it do nothing, so
    exactly one process creates the account (and prints its password)."""
    import secrets
    from datetime import UTC, datetime

    from sqlalchemy import exists, literal, select

    from ivr.db.models import User
    from ivr.records import insert_for
    from ivr.web.auth import hash_password

    password = secrets.token_urlsafe(9)
    users = User.__table__
    row = select(literal("admin"), literal("Administrator"), literal(hash_password(password)), literal("admin"),
                 literal("ko"), literal(True), literal(datetime.now(UTC))).where(~exists().select_from(users))
    async with ctx.db.transaction() as session:
        statement = (insert_for(session, users)
                     .from_select(["username", "display_name", "password_hash", "role", "language", "active",
                                   "created_at"], row)
                     .on_conflict_do_nothing(index_elements=["username"]).returning(users.c.id))
        created = (await session.execute(statement)).first()
    return password if created is not None else None


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the servers run on: uvloop (libuv, in Cython; a FastAGI command costs
    about a third less CPU than on asyncio's own loop, see docs/benchmarks.md) when configured
    and installed, else asyncio's own (None)."""
    if kind != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("event_loop: uvloop is not installed; running on asyncio's own loop")
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


async def run(settings: Settings, only: list[str] | None = None, ready: asyncio.Event | None = None) -> None:
    from ivr.site_secrets import load_secrets

    # Before anything starts: a published, empty or short secret stops here (SecretError);
    # secrets left empty are taken from, or generated into, <data_dir>/secrets.yaml.
    secret_notes = load_secrets(settings)
    ctx = await AppContext.create(settings)
    started: list[services.Service] = []
    addresses_by_service: list[tuple[str, str]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    try:
        print(f"dasan: database {settings.database_url.split('@')[-1]}", flush=True)
        print(f"dasan: bus {settings.bus.backend}", flush=True)
        print(f"dasan: event loop {loop_name()}", flush=True)
        for note in secret_notes:
            print(f"dasan: {note}", flush=True)

        async def start(service: services.Service) -> None:
            try:
                addresses = await service.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                await service.stop()  # what it opened before binding (client sessions, ...)
                raise address_in_use(service.name, settings) from None
            started.append(service)
            for address in addresses:
                print(f"dasan: {service.name:<10} {address}", flush=True)
                addresses_by_service.append((service.name, address))

        names = only or list(services.REGISTRY)
        for name in names:
            await start(services.build(name, ctx))
        if settings.metrics.enabled and settings.metrics.port is not None:
            from ivr.web.metrics import MetricsListener

            # /metrics on an address of its own in every process (ivr.web.metrics)
            await start(MetricsListener(ctx, site_figures="web" in names))
        web = next((a for name, a in addresses_by_service if name == "web"), None)
        if web:
            base = web.rstrip("/")
            for label, path in (("console", "/login"), ("wallboard", "/console/wallboard"),
                                ("citizen chat", "/chat"), ("citizen calls", "/call"),
                                ("Open311", "/open311/v2/discovery.json"),
                                ("API description", "/openapi.json")):
                print(f"dasan: {label:<16} {base}{path}", flush=True)
        password = await _first_admin(ctx)
        if password:
            print(f"dasan: first run: console user 'admin', password '{password}' "
                  "(change it: dasan user add --username admin --role admin --password ...)", flush=True)
        # Everything loaded so far (modules, models, compiled statements) lives as long as the
        # process: keep it out of the collector's scans, so a full collection under load is short.
        gc.freeze()
        # Under load a thousand calls' state is young and alive: with the default thresholds the
        # collector walks it every 700 allocations, pausing every call a few ms each time.
        gc.set_threshold(*GC_THRESHOLDS)
        print("dasan: ready (Ctrl-C stops)", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        print("dasan: stopping", flush=True)
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", service.name)
        await ctx.close()
        print("dasan: stopped", flush=True)
