"""Peers of the messaging sidecar for the SMS webhook benchmark, each an aiohttp server.

- ``--mode bare``: the ceiling. The same route and signature check as the sidecar, the body
  parsed as JSON, 200 at once: nothing stored. What aiohttp on this event loop can answer.
- ``--mode per-request``: the usual design, durable too. The same checks, then one
  transaction per webhook through the project's own record helpers (citizen, contact,
  message, timeline event; ``ivr.records``) and a commit before the 200: no group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from ivr.messaging.providers.generic import GENERIC_HEADER, verify_generic
from ivr.up import loop_factory

ROUTE = "/webhooks/sms"


def _checked(request_body: bytes, header: str | None, secret: str) -> dict[str, Any] | web.Response:
    if not header or not verify_generic(secret, request_body, header):
        return web.json_response({"error": "signature does not match"}, status=403)
    try:
        sms = json.loads(request_body)
    except ValueError:
        return web.json_response({"error": "not JSON"}, status=400)
    if not isinstance(sms, dict) or not sms.get("message_id") or not sms.get("from"):
        return web.json_response({"error": "message_id and from are required"}, status=400)
    return sms


def bare_app(secret: str) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        sms = _checked(await request.read(), request.headers.get(GENERIC_HEADER), secret)
        if isinstance(sms, web.Response):
            return sms
        return web.json_response({"message_id": sms["message_id"], "stored": False})

    app = web.Application()
    app.router.add_post(ROUTE, receive)
    return app


def per_request_app(secret: str, url: str) -> web.Application:
    from sqlalchemy import select

    from ivr import records
    from ivr.db import Database
    from ivr.db.models import Channel, Message

    db = Database(url)

    async def receive(request: web.Request) -> web.Response:
        sms = _checked(await request.read(), request.headers.get(GENERIC_HEADER), secret)
        if isinstance(sms, web.Response):
            return sms
        async with db.transaction() as session:
            found = await session.scalar(select(Message.id).where(
                Message.provider == "generic", Message.provider_message_id == str(sms["message_id"])))
            if found is not None:  # a provider's retry: stored once
                return web.json_response({"message_id": found, "duplicate": True})
            citizen = await records.get_or_create_citizen(session, "phone", str(sms["from"]))
            contact = (await records.find_open_contact(session, citizen)
                       or await records.open_contact(session, Channel.sms, citizen, language="ko"))
            message = Message(contact_id=contact.id, direction="in", channel=Channel.sms, provider="generic",
                              provider_message_id=str(sms["message_id"]), sender=citizen.identity,
                              body=str(sms.get("body", "")), status="received", data={})
            session.add(message)
            await session.flush()
            await records.record_event(session, contact.id, "sms_in", "sms",
                                       external_id=f"message:generic:{sms['message_id']}",
                                       data={"message_id": message.id})
        return web.json_response({"message_id": message.id, "contact_id": contact.id})

    async def close(_app: web.Application) -> None:
        await db.dispose()

    app = web.Application()
    app.router.add_post(ROUTE, receive)
    app.on_cleanup.append(close)
    return app


async def serve(args: argparse.Namespace) -> None:
    app = bare_app(args.secret) if args.mode == "bare" else per_request_app(args.secret, args.db)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(f"webhook peer {args.mode} listening port={port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["bare", "per-request"], required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--db", help="database URL (per-request)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
