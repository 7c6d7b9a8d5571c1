"""The callback dialer against a real Asterisk 22 (issue #15 defects 2 and 4): the counsellor
answers, then the citizen's side answers 486 Busy Here — the attempt is busy with DialStatus
BUSY and cause 17, not done —, 503 (congestion, cause 34) or 200 — done; either way on the
original contact, with no stranger contact.

Runs whenever an ``asterisk`` binary and SIPp are installed (as tests/test_asterisk_real.py,
whose Asterisk set-up it uses)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.ami.service import AmiBridge
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import CallbackRequest, Channel, Contact, ContactEvent
from ivr.records import get_or_create_citizen, open_contact
from tests.test_asterisk_real import (
    ASTERISK,
    SIPP,
    agent_login,
    agent_ready,
    citizen_scenario,
    configure,
    free_port,
    sipp,
    start_pbx,
    stop_pbx,
    wait_until,
)

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(150),
]

REFUSING_CITIZEN = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="citizen's side refuses">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]busy[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]></send>
  <recv request="ACK"/>
</scenario>
"""


@pytest.mark.parametrize(("answer", "expected"), [
    ("486 Busy Here", ("waiting", "busy: DialStatus BUSY, cause 17 (User busy)")),
    ("503 Service Unavailable", ("waiting", "congestion: DialStatus CONGESTION, cause 34 (Circuit/channel congestion)")),
    ("200 OK", ("done", "answered")),
])
async def test_the_citizens_leg_decides_and_the_call_is_the_original_contacts(
        tmp_path: Path, settings: Settings, answer: str, expected: tuple[str, str]) -> None:
    if SIPP is None:
        pytest.fail("SIPp (Debian package sip-tester) is not installed")
    citizen_port = free_port(socket.SOCK_DGRAM)
    configure(settings, tmp_path)
    settings.asterisk.trunk_contact = f"sip:127.0.0.1:{citizen_port}"
    extension, secret = agent_login(settings)
    prompts = tmp_path / "no-prompts"
    prompts.mkdir()
    pbx = await asyncio.to_thread(start_pbx, settings, tmp_path, prompts)
    db = Database(settings.database_url)
    ctx = AppContext(settings, db, MemoryBus())
    bridge: AmiBridge | None = None
    phone = citizen = None
    try:
        async with db.transaction() as s:
            citizen_row = await get_or_create_citizen(s, "phone", "01012345678")
            contact = await open_contact(s, Channel.voice, citizen_row, call_id="earlier-call", outcome="callback")
            request = CallbackRequest(contact_id=contact.id, phone="01012345678", queue="general-ko", language="ko",
                                      requested_at=datetime.now(UTC) - timedelta(minutes=5))
            s.add(request)
            await s.flush()
            request_id, contact_id = request.id, contact.id
        phone = await agent_ready(tmp_path, pbx, extension, secret, talk_ms=30000, timeout=90)
        scenario = (citizen_scenario("01012345678") if answer == "200 OK"
                    else REFUSING_CITIZEN.replace("{status}", answer))
        citizen = await sipp(tmp_path, "citizen", scenario, pbx, citizen_port, timeout=90)
        bridge = AmiBridge(ctx, metrics_interval=0.5, callbacks=True)
        await bridge.start()

        async def attempted() -> CallbackRequest | None:
            async with db.session() as s:
                row = await s.get(CallbackRequest, request_id)
            return row if row is not None and row.attempts == 1 and row.status != "dialing" else None

        row = await wait_until(attempted, timeout=100, what="the first callback attempt to finish")
        assert (row.status, row.last_result) == expected
        assert "Called PJSIP/01012345678@trunk" in pbx.console()
        assert await bridge.wait_idle(30)
        async with db.session() as s:
            kinds = [e.kind for e in (await s.execute(select(ContactEvent).where(
                ContactEvent.contact_id == contact_id).order_by(ContactEvent.id))).scalars()]
            strangers = list((await s.execute(select(Contact.call_id).where(Contact.id != contact_id))).scalars())
        assert "callback_leg" in kinds and "agent_connected" in kinds, kinds
        assert kinds[-1] == "callback_result" or "callback_result" in kinds
        assert strangers == [], strangers  # no "callback-N-M" contact with citizen "120"
    finally:
        if bridge is not None:
            await bridge.stop()
        for proc in (phone, citizen):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        await db.dispose()
        await asyncio.to_thread(stop_pbx, pbx)
