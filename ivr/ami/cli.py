"""``dasan agent login|logout|pause|unpause USER``, ``dasan metrics``, ``dasan callbacks``.

Agent commands open their own short AMI session (the running bridge sees the resulting
QueueMember events), so they work whatever the bus back-end is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ivr.cli import with_context as _with_context


def _agent(args: argparse.Namespace) -> int:
    from ivr.ami.agents import AgentCommandError, AgentControl, sync_agents
    from ivr.ami.connection import AmiConnection
    from ivr.queues import load_queues

    async def run(ctx: Any) -> int:
        s = ctx.settings.ami
        qconf = load_queues(ctx.settings.queues_dir)
        await sync_agents(ctx.db, qconf)
        conn = AmiConnection(s.host, s.port, s.username, s.secret, reconnect_max=2.0)
        conn.start()
        try:
            try:
                await asyncio.wait_for(conn.logged_in.wait(), args.timeout)
            except TimeoutError:
                print(f"error: cannot log in to {conn.address} ({conn.state}) / Asterisk AMI에 연결할 수 없습니다",
                      file=sys.stderr)
                return 1
            control = AgentControl(conn, ctx.db, qconf)
            try:
                result = await control.run({"action": args.agent_command, "username": args.username,
                                            "reason": getattr(args, "reason", None)})
            except AgentCommandError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"{result.username}: {result.message} [{', '.join(result.queues)}]")
            return 0
        finally:
            await conn.close()

    return asyncio.run(_with_context(args, run))


def _metrics(args: argparse.Namespace) -> int:
    from ivr.ami.metrics import current_metrics

    async def run(ctx: Any) -> int:
        print(json.dumps(await current_metrics(ctx), ensure_ascii=False, indent=2))
        return 0

    return asyncio.run(_with_context(args, run))


def _callbacks(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ivr.db.models import CallbackRequest

    async def run(ctx: Any) -> int:
        async with ctx.db.session() as session:
            stmt = select(CallbackRequest).order_by(CallbackRequest.requested_at)
            if args.status:
                stmt = stmt.where(CallbackRequest.status == args.status)
            rows = list((await session.execute(stmt)).scalars())
        print(f"{'id':>5} {'queue':<12} {'phone':<16} {'status':<8} {'tries':>5}  requested / last result")
        for r in rows:
            print(f"{r.id:>5} {r.queue:<12} {r.phone:<16} {r.status:<8} {r.attempts:>5}  "
                  f"{r.requested_at:%Y-%m-%d %H:%M} {r.last_result or ''}")
        print(f"{len(rows)} callback request(s) / 콜백 요청 {len(rows)}건")
        return 0

    return asyncio.run(_with_context(args, run))


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="log agents in/out of their skill queues, pause them (AMI)")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    for name, help_text in (("login", "add to the queues of the agent's skills (penalty 5 - proficiency)"),
                            ("logout", "remove from all of the agent's queues"),
                            ("pause", "pause in every queue, with a reason"),
                            ("unpause", "take calls again")):
        p = agent_sub.add_parser(name, help=help_text)
        p.add_argument("username")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the AMI login")
        if name == "pause":
            p.add_argument("--reason", help="e.g. 'lunch', 'training' (shown on the wallboard)")
        p.set_defaults(func=_agent)
    metrics = sub.add_parser("metrics", help="live queue/agent figures as JSON (the wallboard's data)")
    metrics.set_defaults(func=_metrics)
    callbacks = sub.add_parser("callbacks", help="list queue callback requests and their attempts")
    callbacks.add_argument("--status", choices=["waiting", "dialing", "done", "failed"])
    callbacks.set_defaults(func=_callbacks)
