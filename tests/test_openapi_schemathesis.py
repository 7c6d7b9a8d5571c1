"""Schemathesis against the served OpenAPI description, over real HTTP, on the real app with
every feature registered at the time: no operation may answer with a server error (5xx).

It runs signed in as an admin (so the fuzzer reaches past sign-in) and signs half of the
webhook requests with the real secret (``tests.support.schemathesis_hooks``), so handlers
behind the signature check get fuzzed too. Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import aiohttp
from sqlalchemy import select

from ivr.config import Settings
from ivr.context import AppContext
from ivr.db.models import Message
from ivr.web.auth import SessionUser, create_user, encode_session
from tests.support.web import serve

SECRET = "fuzz-secret"
PROJECT = str(Path(__file__).resolve().parent.parent)


async def test_schemathesis_finds_no_server_error(settings: Settings, tmp_path: Path) -> None:
    settings.web.rate_limit_per_minute = 0
    settings.sms.webhook_secret = SECRET
    settings.sms.twilio_api_base = "http://127.0.0.1:9"  # media fetches go nowhere off this machine
    ctx = await AppContext.create(settings, migrate=False)
    admin = await create_user(ctx, "fuzz-admin", "pw", "admin")
    cookie = encode_session(settings.web.secret_key, SessionUser(admin.id, "fuzz-admin", "admin", "ko", "csrf-fuzz",
                                                                 time.time() + 3600, admin.session_version))
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is installed in the venv by `pip install -e .[dev]`"
    try:
        async with serve(ctx) as base:
            async with aiohttp.ClientSession() as http, http.get(f"{base}/openapi.json") as resp:
                paths = (await resp.json())["paths"]
            assert "/webhooks/sms" in paths and "/api/messaging/chats" in paths
            env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.support.schemathesis_hooks",
                       DASAN_FUZZ_WEBHOOK_SECRET=SECRET, PYTHONPATH=PROJECT)
            # One worker: CPython 3.11.7's ast.parse is not thread-safe (gh-106905, "AST constructor
            # recursion depth mismatch"), and hypothesis parses lambdas in each worker thread.
            proc = await asyncio.create_subprocess_exec(
                exe, "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
                "--phases", "examples,coverage,fuzzing", "--max-examples", "3", "--workers", "1",
                "--seed", "120", "--no-shrink", "--suppress-health-check", "all", "--request-timeout", "20",
                "-H", f"Cookie: dasan_session={cookie}", "-H", "X-CSRF-Token: csrf-fuzz",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path)
            output, _ = await proc.communicate()
        async with ctx.db.session() as session:
            stored = (await session.execute(select(Message.provider).distinct())).scalars().all()
    finally:
        await ctx.close()
    text = output.decode(errors="replace")
    print("\n".join(line for line in text.splitlines() if "(in " in line or "Operations:" in line or "passed" in line))
    assert proc.returncode == 0, text[-6000:]
    # Every served operation (including the WebSocket endpoints' plain-GET refusal) was run.
    served = sum(len([m for m in ops if m in ("get", "post", "put", "patch", "delete")]) for ops in paths.values())
    assert f"Operations:       {served} selected / {served} total" in text, text[:2000]
    assert "Server error" not in text
    # Signed fuzz cases got past the signature checks into the handlers and were stored.
    assert "generic" in stored and any(p.startswith("sns:") for p in stored), stored
