"""The IVR engine on its own: the shipped menus driven through a ``Channel`` without sockets
(``tests.support.fake_channel``), its contact records on a real SQLite database.

The FastAGI transport and the dialplan around it are tested elsewhere (test_agi_*, the real
Asterisk tests); here a menu's behaviour is checked step by step, fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr.bus import MemoryBus
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
from ivr.db import Database
from ivr.db.models import Contact
from ivr.engine.engine import IvrEngine
from ivr.engine.runtime import load_checked
from tests.support.fake_channel import FakeChannel

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=ZoneInfo("Asia/Seoul"))  # a Wednesday, lines open
NIGHT = datetime(2026, 11, 25, 23, 30, tzinfo=ZoneInfo("Asia/Seoul"))  # foreign-language lines closed


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[IvrEngine]:
    menus, queues = load_checked(DEFAULT_MENUS, DEFAULT_QUEUES)
    db = Database(sqlite_url)
    ivr = IvrEngine(menus, queues, db, MemoryBus(), clock=lambda: NOON)
    yield ivr
    await db.dispose()


async def _contact(engine: IvrEngine, call_id: str) -> Contact:
    async with engine.db.session() as session:
        return (await session.execute(select(Contact).where(Contact.call_id == call_id))).scalar_one()


async def test_a_korean_caller_asks_for_a_counsellor(engine: IvrEngine) -> None:
    ch = FakeChannel(["0"])
    call = await engine.main(ch)
    assert ch.answered and ch.heard[0] == "dasan/main-menu"
    assert call.result == "queue"
    assert ch.variables["QUEUE"] == "general-ko" and ch.variables["IVR_RESULT"] == "queue"
    assert ch.variables["LANG"] == "ko" and ch.variables["CONTACT_ID"] == str(call.contact_id)
    contact = await _contact(engine, ch.linkedid)
    assert contact.id == call.contact_id and contact.queue == "general-ko" and contact.language == "ko"


async def test_nine_then_one_continues_in_english(engine: IvrEngine) -> None:
    ch = FakeChannel(["9", "1", "0"])
    call = await engine.main(ch)
    assert ch.heard[:2] == ["dasan/main-menu", "en/dasan/lang-en"]  # one-language prompts from their folder
    assert ch.variables["CHANNEL(language)"] == "en" and ch.variables["LANG"] == "en"
    assert call.language == "en" and ch.variables["QUEUE"] == "en"
    assert (await _contact(engine, ch.linkedid)).language == "en"


async def test_wrong_keys_and_silence_end_at_the_menus_on_failure(engine: IvrEngine) -> None:
    ch = FakeChannel(["8", "T", "T"])  # max_failures is 3: a wrong key and two timeouts
    call = await engine.main(ch)
    assert "dasan/invalid" in ch.heard
    assert ch.heard.count("dasan/main-menu") == 3
    assert call.result == "queue" and ch.variables["QUEUE"] == "general-ko"  # on_failure: counsellor


async def test_a_caller_who_hangs_up_in_the_menu_is_recorded_as_such(engine: IvrEngine) -> None:
    ch = FakeChannel(["9", "H"])
    call = await engine.main(ch)
    assert call.result == "caller_hangup" and ch.hung_up
    assert "QUEUE" not in ch.variables and "IVR_RESULT" not in ch.variables
    contact = await _contact(engine, ch.linkedid)
    assert contact.id is not None and contact.queue is None


async def test_at_night_a_closed_line_takes_its_night_route(engine: IvrEngine) -> None:
    engine.clock = lambda: NIGHT
    ch = FakeChannel(["9", "1", "0"])
    call = await engine.main(ch)
    # The English line is closed at 23:30: its night route registers a callback and says so.
    assert ch.heard[-1] == "dasan/night-callback"
    assert call.result == "hangup" and "QUEUE" not in ch.variables
    assert (ch.variables["NIGHT_ROUTE"], ch.variables["IVR_RESULT"]) == ("callback", "hangup")
    assert ch.script == []
