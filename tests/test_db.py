"""The counselling database on SQLite and on the real PostgreSQL server, same code."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from sqlalchemy import func, select

from ivr import records
from ivr.db import Database
from ivr.db.models import (
    Channel,
    Contact,
    ContactEvent,
    Recording,
    TranscriptSegment,
)
from ivr.search import search_text


async def test_contact_with_citizen_and_earlier_inquiries(db: Database) -> None:
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "+82 10-1234-5678")
        first = await records.open_contact(s, Channel.voice, citizen, call_id="111.1", queue="general-ko")
        await records.open_contact(s, Channel.sms, citizen)
    async with db.transaction() as s:
        again = await records.get_or_create_citizen(s, "phone", "010-1234-5678")
        assert again.id == citizen.id
        earlier = await records.earlier_contacts(s, citizen.id)
        assert [c.channel for c in earlier] == [Channel.sms, Channel.voice]
        assert first.tracking_number and len(first.tracking_number) == 12
        # open_contact with a known call id returns the same contact
        same = await records.open_contact(s, Channel.voice, citizen, call_id="111.1")
        assert same.id == first.id


async def test_concurrent_first_contacts_create_one_citizen(db: Database) -> None:
    async def one() -> int:
        async with db.transaction() as s:
            return (await records.get_or_create_citizen(s, "phone", "0212345678")).id

    ids = await asyncio.gather(*(one() for _ in range(10)))
    assert len(set(ids)) == 1


async def test_same_event_twice_is_stored_once(db: Database) -> None:
    async with db.transaction() as s:
        contact = await records.open_contact(s, Channel.voice, call_id="222.2")
        assert await records.record_event(s, contact.id, "queue_join", "ami", "ami:222.2:join", {"q": 1})
    async with db.transaction() as s:
        assert not await records.record_event(s, contact.id, "queue_join", "ami", "ami:222.2:join", {"q": 1})
        assert await records.record_event(s, contact.id, "note", "web")  # no external id: always new
    async with db.session() as s:
        n = await s.scalar(select(func.count()).select_from(ContactEvent).where(ContactEvent.contact_id == contact.id))
        assert n == 2


async def test_korean_text_search_over_notes_and_transcripts(db: Database) -> None:
    async with db.transaction() as s:
        c1 = await records.open_contact(s, Channel.voice, notes="버스 노선 변경 문의")
        c2 = await records.open_contact(s, Channel.voice, notes="")
        rec = Recording(contact_id=c2.id, path="2026/11/25/x.wav")
        s.add(rec)
        await s.flush()
        s.add(TranscriptSegment(recording_id=rec.id, contact_id=c2.id, speaker="caller",
                                start=3.5, end=5.0, text="쓰레기 수거 일정이 궁금합니다", confidence=0.9))
    async with db.session() as s:
        hits = await search_text(s, "버스")  # two syllables: shorter than a trigram
        assert [(h.contact_id, h.kind) for h in hits] == [(c1.id, "notes")]
        hits = await search_text(s, "수거 일정")
        assert [(h.contact_id, h.kind, h.start) for h in hits] == [(c2.id, "segment", 3.5)]
        assert await search_text(s, "지하철") == []
    async with db.transaction() as s:
        contact = await s.get(Contact, c1.id)
        assert contact is not None
        contact.notes = "지하철 요금 문의"
    async with db.session() as s:
        assert await search_text(s, "버스") == []
        assert [h.contact_id for h in await search_text(s, "지하철 요금")] == [c1.id]


def test_contact_is_durable_once_acknowledged(db_url: str) -> None:
    """A process writes a contact, prints 'ack' after commit and is killed at once (SIGKILL):
    the contact must be there for a fresh connection."""
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from ivr import records
        from ivr.db import Database
        from ivr.db.models import Channel
        async def main():
            db = Database({db_url!r})
            async with db.transaction() as s:
                c = await records.open_contact(s, Channel.voice, call_id="durable-1")
            print("ack", c.id, flush=True)
            time.sleep(60)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.kill()
    proc.wait()
    assert line.startswith("ack ")

    async def check() -> str | None:
        fresh = Database(db_url)
        async with fresh.session() as s:
            found = await s.scalar(select(Contact.call_id).where(Contact.id == int(line.split()[1])))
        await fresh.dispose()
        return found

    assert asyncio.run(check()) == "durable-1"


async def test_tracking_numbers_stay_unique_when_a_draw_is_taken(db: Database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    draws = iter(["261125000001", "261125000001", "261125000001", "261125000002"])
    monkeypatch.setattr(records, "new_tracking_number", lambda now=None: next(draws))
    async with db.transaction() as s:
        first = await records.open_contact(s, Channel.sms)
        second = await records.open_contact(s, Channel.sms)
    assert (first.tracking_number, second.tracking_number) == ("261125000001", "261125000002")
