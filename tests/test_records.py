"""ivr.records, the one writer of citizens, contacts and their timeline, on SQLite and on the
real PostgreSQL server: phone numbers, tracking numbers (their day in the site's zone and
their digits from known random bytes), batch contact creation, threading and the timeline."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import func, select

from ivr import records, sitetime
from ivr.db import Database
from ivr.db.models import Channel, Citizen, Contact, ContactEvent, ContactStatus

NOW = datetime(2026, 1, 31, 23, 50, tzinfo=UTC)  # 08:50 on 1 February in Seoul (not today)


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive (they were stored in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.mark.parametrize(("number", "e164"), [
    ("010-1234-5678", "+821012345678"),
    (" 010 1234 5678 ", "+821012345678"),
    ("+82 10-1234-5678", "+821012345678"),
    ("+82 (0)10 1234 5678", "+821012345678"),
    ("0082 10 1234 5678", "+821012345678"),
    ("001 212 555 0100", "+12125550100"),
    ("+1 212 555 0100", "+12125550100"),
    ("02-123-4567", "+8221234567"),  # 9 digits: a Seoul number
    ("0123-4567", "01234567"),  # 8 digits with a 0: too short to be national, kept
    ("120", "120"),  # short codes stay
    ("", ""),
])
def test_normalize_phone(number: str, e164: str) -> None:
    assert records.normalize_phone(number) == e164


@pytest.mark.parametrize(("number", "dialled"), [
    ("+821012345678", "01012345678"),
    ("010-1234-5678", "01012345678"),
    ("+12125550100", "+12125550100"),
    ("120", "120"),
])
def test_dial_number(number: str, dialled: str) -> None:
    assert records.dial_number(number) == dialled


@pytest.fixture
def seoul(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitetime, "_zone", ZoneInfo("Asia/Seoul"))


@pytest.fixture
def local_clock_in_seoul() -> Iterator[None]:
    """The process's local time 9 h off UTC: a naive "now" anywhere would show."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Seoul"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_a_tracking_number_is_the_site_day_and_six_random_digits(seoul: None, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(records.secrets, "randbelow", lambda n: asked.append(n) or 4242)
    assert records.new_tracking_number(NOW) == "260201004242"
    assert asked == [10**6]


def test_tracking_numbers_come_from_eight_random_bytes_each(seoul: None, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    raw = b"\x00" * 7 + b"\x05" + b"\xff" * 8 + bytes(range(1, 9))

    def token_bytes(n: int) -> bytes:
        asked.append(n)
        return raw

    monkeypatch.setattr(records.secrets, "token_bytes", token_bytes)
    assert records.tracking_numbers(3, NOW) == ["260201000005", "260201551615", "260201382856"]
    assert asked == [24]


def test_chunks_keep_every_item_in_order() -> None:
    items = list(range(1001))
    parts = records._chunks(items)
    assert [len(p) for p in parts] == [500, 500, 1] and [i for p in parts for i in p] == items
    assert records._chunks([]) == []
    assert records._chunks([1, 2, 3], 2) == [[1, 2], [3]]


def test_a_new_call_defaults_to_korean_voice_without_a_number() -> None:
    call = records.NewCall("1796.1")
    assert (call.phone, call.language, call.channel) == ("", "ko", Channel.voice.value)


async def test_citizens_by_phone_are_one_whatever_the_spelling(db: Database) -> None:
    async with db.transaction() as s:
        first = await records.get_or_create_citizen(s, "phone", "010-5555-0001", display_name="김민수")
        chat = await records.get_or_create_citizen(s, "chat", " Visitor-01 ")
    async with db.transaction() as s:
        again = await records.get_or_create_citizen(s, "phone", "+82 10 5555 0001", display_name="other")
        assert (again.id, again.identity, again.display_name) == (first.id, "+821055550001", "김민수")
        assert chat.identity == " Visitor-01 " and chat.identity_kind == "chat"  # only phones are normalized
        assert _utc(again.created_at) <= datetime.now(UTC)
        assert await s.scalar(select(func.count()).select_from(Citizen)) == 2


async def test_a_taken_tracking_number_is_drawn_again(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with db.transaction() as s:
        taken = await records.open_contact(s, Channel.sms)
    draws = iter([taken.tracking_number, taken.tracking_number, "260201123456"])
    monkeypatch.setattr(records, "new_tracking_number", lambda now=None: next(draws))
    async with db.transaction() as s:
        assert await records.free_tracking_number(s) == "260201123456"


async def test_batch_of_calls_gets_one_contact_each(db: Database, seoul: None) -> None:
    calls = [records.NewCall("c.2", "+821055550002", "en"), records.NewCall("c.1", "+821055550001"),
             records.NewCall("c.2", "+821099999999", "zh"),  # the same call again: the first one counts
             records.NewCall("c.3", "", "ko", Channel.web_voice.value)]
    async with db.transaction() as s:
        found = await records.ensure_call_contacts(s, calls, NOW)
    assert set(found) == {"c.1", "c.2", "c.3"}
    async with db.session() as s:
        rows = {c.call_id: c for c in (await s.scalars(select(Contact))).all()}
        citizens = {c.id: c.identity for c in (await s.scalars(select(Citizen))).all()}
    assert sorted(citizens.values()) == ["+821055550001", "+821055550002"]
    for call_id, (contact_id, citizen_id) in found.items():
        assert rows[call_id].id == contact_id and rows[call_id].citizen_id == citizen_id
    assert citizens[found["c.1"][1]] == "+821055550001" and citizens[found["c.2"][1]] == "+821055550002"
    assert found["c.3"][1] is None
    c2, c3 = rows["c.2"], rows["c.3"]
    assert (c2.language, c2.channel, c2.status, c2.ivr_path, c2.notes) == ("en", Channel.voice, ContactStatus.open, "", "")
    assert c3.channel == Channel.web_voice
    assert _utc(c2.started_at) == NOW and _utc(c2.updated_at) == NOW
    numbers = [c.tracking_number or "" for c in rows.values()]
    assert len(set(numbers)) == 3 and all(len(n) == 12 and n.startswith("260201") for n in numbers)
    # Asked again (the AMI bridge after the IVR, or a retried batch): the same contacts.
    async with db.transaction() as s:
        again = await records.ensure_call_contacts(s, [*calls, records.NewCall("c.4")], NOW)
    assert {k: v for k, v in again.items() if k != "c.4"} == found
    assert again["c.4"][1] is None and again["c.4"][0] not in {v[0] for v in found.values()}
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Contact)) == 4


async def test_a_batch_without_a_time_is_stamped_now_in_utc(db: Database, local_clock_in_seoul: None) -> None:
    async with db.transaction() as s:
        found = await records.ensure_call_contacts(s, [records.NewCall("now.1")])
    async with db.session() as s:
        started = await s.scalar(select(Contact.started_at).where(Contact.id == found["now.1"][0]))
    assert started is not None and abs(_utc(started) - datetime.now(UTC)) < timedelta(minutes=5)


async def test_a_call_finds_the_phone_citizen_not_a_chat_identity_spelled_alike(db: Database) -> None:
    async with db.transaction() as s:
        phone = await records.get_or_create_citizen(s, "phone", "+821055550009")
        await records.get_or_create_citizen(s, "chat", "+821055550009")  # a chat name that looks like it
    async with db.transaction() as s:
        found = await records.ensure_call_contacts(s, [records.NewCall("look.1", "+821055550009")])
    assert found["look.1"][1] == phone.id


async def test_no_calls_no_contacts(db: Database) -> None:
    async with db.transaction() as s:
        assert await records.ensure_call_contacts(s, []) == {}


async def test_insert_contacts_draws_again_for_a_taken_number_and_skips_known_calls(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    async with db.transaction() as s:
        old = await records.open_contact(s, Channel.voice, call_id="known")
    real = records.tracking_numbers
    draws = iter([[old.tracking_number, "260201000002"], ["260201000003"]])
    monkeypatch.setattr(records, "tracking_numbers", lambda count, now=None: next(draws, None) or real(count, now))
    rows = [{"channel": "voice", "status": "open", "call_id": call_id, "citizen_id": None, "started_at": NOW,
             "updated_at": NOW, "language": "ko", "ivr_path": "", "notes": ""} for call_id in ("new", "new-2")]
    async with db.transaction() as s:
        inserted = await records.insert_contacts(s, rows, "call_id", NOW)
    # "new" drew the taken number and was drawn again; "new-2" went in at once.
    assert {key: number for key, (_id, _citizen, number) in inserted.items()} == {
        "new": "260201000003", "new-2": "260201000002"}
    async with db.transaction() as s:
        assert await records.insert_contacts(s, [{**rows[0], "call_id": "known"}], "call_id", NOW) == {}


async def test_insert_contacts_by_citizen_draws_again_even_for_a_citizen_with_contacts(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyed by citizen (new SMS threads): a row that lost its tracking number is drawn again,
    whatever contacts the citizen already has."""
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "010-5555-0010")
        old = await records.open_contact(s, Channel.sms, citizen)
    real = records.tracking_numbers
    draws = iter([[old.tracking_number]])
    monkeypatch.setattr(records, "tracking_numbers", lambda count, now=None: next(draws, None) or real(count, now))
    row = {"channel": "sms", "status": "open", "call_id": None, "citizen_id": citizen.id, "started_at": NOW,
           "updated_at": NOW, "language": "ko", "ivr_path": "", "notes": ""}
    async with db.transaction() as s:
        inserted = await records.insert_contacts(s, [row], "citizen_id", NOW)
    assert list(inserted) == [citizen.id] and inserted[citizen.id][2] != old.tracking_number


async def test_insert_contacts_leaves_out_every_known_call_of_a_long_batch(db: Database) -> None:
    calls = [records.NewCall(f"long.{i:04d}") for i in range(501)]  # two chunks of look-ups
    async with db.transaction() as s:
        await records.ensure_call_contacts(s, calls, NOW)
    rows = [{"channel": "voice", "status": "open", "call_id": c.call_id, "citizen_id": None, "started_at": NOW,
             "updated_at": NOW, "language": "ko", "ivr_path": "", "notes": ""} for c in calls]
    async with db.transaction() as s:
        assert await records.insert_contacts(s, rows, "call_id", NOW) == {}


async def test_insert_citizens_skips_the_ones_already_there(db: Database) -> None:
    rows = [{"identity_kind": "phone", "identity": n, "display_name": None, "created_at": NOW}
            for n in ("+821000000001", "+821000000002")]
    async with db.transaction() as s:
        await records.insert_citizens(s, rows[:1])
        await records.insert_citizens(s, rows)
        assert sorted(await s.scalars(select(Citizen.identity))) == ["+821000000001", "+821000000002"]


async def test_lock_contacts_holds_exactly_those_rows_until_the_end(pg_url: str) -> None:
    """PostgreSQL: the rows are locked (another connection cannot take them), the others not."""
    db = Database(pg_url)
    try:
        async with db.transaction() as s:
            a, b, c = [await records.open_contact(s, Channel.sms) for _ in range(3)]
        other = await psycopg.AsyncConnection.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"),
                                                      autocommit=True)
        try:
            async def free(contact_id: int) -> bool:
                try:
                    await other.execute("SELECT id FROM contacts WHERE id = %s FOR UPDATE NOWAIT", (contact_id,))
                except psycopg.errors.LockNotAvailable:
                    return False
                return True

            async with db.transaction() as s:
                await records.lock_contacts(s, [b.id, a.id, b.id])
                assert [await free(i) for i in (a.id, b.id, c.id)] == [False, False, True]
                await records.lock_contacts(s, [])
            assert [await free(i) for i in (a.id, b.id, c.id)] == [True, True, True]
        finally:
            await other.close()
    finally:
        await db.dispose()


async def test_open_contact_keeps_the_fields_and_finds_a_known_call(db: Database) -> None:
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "010-5555-0003")
        contact = await records.open_contact(s, Channel.chat, citizen, call_id="chat-1", language="en", notes="n")
        bare = await records.open_contact(s, Channel.sms)
    assert (contact.citizen_id, contact.channel, contact.language, contact.notes) == (citizen.id, Channel.chat, "en", "n")
    assert bare.citizen_id is None and bare.call_id is None and len(bare.tracking_number or "") == 12
    async with db.transaction() as s:
        same = await records.open_contact(s, Channel.voice, None, call_id="chat-1")
        assert same.id == contact.id and same.channel == Channel.chat
        other = await records.open_contact(s, Channel.sms, citizen)  # no call id: always a new one
        assert other.id not in (contact.id, bare.id)


async def test_find_open_contact_takes_the_citizens_newest_open_one_in_the_window(
        db: Database, local_clock_in_seoul: None) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "010-5555-0004")
        other = await records.get_or_create_citizen(s, "phone", "010-5555-0005")
        assert await records.find_open_contact(s, citizen) is None
        await records.open_contact(s, Channel.sms, citizen, started_at=now - timedelta(hours=25))
        newest = await records.open_contact(s, Channel.sms, citizen, started_at=now - timedelta(hours=1))
        older = await records.open_contact(s, Channel.sms, citizen, started_at=now - timedelta(hours=3))
        await records.open_contact(s, Channel.sms, citizen, started_at=now, status=ContactStatus.closed)
        await records.open_contact(s, Channel.sms, other, started_at=now)
    assert older.id > newest.id  # the later row is the older inquiry: the time decides
    async with db.session() as s:
        found = await records.find_open_contact(s, citizen)
        assert found is not None and found.id == newest.id
        assert await records.find_open_contact(s, citizen, window=timedelta(minutes=30)) is None
        wide = await records.find_open_contact(s, citizen, window=timedelta(hours=2))
        assert wide is not None and wide.id == newest.id


async def test_find_open_contact_breaks_a_tie_by_the_later_contact(db: Database) -> None:
    now = datetime.now(UTC) - timedelta(minutes=5)
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "010-5555-0007")
        first = await records.open_contact(s, Channel.sms, citizen, started_at=now)
        second = await records.open_contact(s, Channel.sms, citizen, started_at=now)
    await _rewrite(db, first.id)
    async with db.session() as s:
        found = await records.find_open_contact(s, citizen)
    assert found is not None and found.id == second.id


async def _rewrite(db: Database, contact_id: int) -> None:
    """An UPDATE: on PostgreSQL the row's new version lands after the others on disk, so an
    order that left ties to the table's physical order would now put it first."""
    async with db.transaction() as s:
        contact = await s.get(Contact, contact_id)
        assert contact is not None
        contact.notes = "edited"


async def test_threading_window_is_a_day() -> None:
    assert timedelta(hours=24) == records.THREAD_WINDOW


async def test_record_event_stores_the_event_once_per_external_id(db: Database, local_clock_in_seoul: None) -> None:
    at = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    async with db.transaction() as s:
        contact = await records.open_contact(s, Channel.voice, call_id="ev-1")
        assert await records.record_event(s, contact.id, "queue_join", "ami", "ami:ev-1:join", {"queue": "q"}, at)
        assert not await records.record_event(s, contact.id, "queue_join", "ami", "ami:ev-1:join", {"queue": "x"})
        assert await records.record_event(s, contact.id, "note", "web")
        assert await records.record_event(s, contact.id, "note", "web")
    async with db.session() as s:
        events = (await s.scalars(select(ContactEvent).where(ContactEvent.contact_id == contact.id)
                                  .order_by(ContactEvent.id))).all()
    assert [(e.kind, e.source, e.external_id, e.data) for e in events] == [
        ("queue_join", "ami", "ami:ev-1:join", {"queue": "q"}), ("note", "web", None, {}), ("note", "web", None, {})]
    assert _utc(events[0].at) == at
    assert abs(_utc(events[1].at) - datetime.now(UTC)) < timedelta(minutes=5)


async def test_earlier_contacts_newest_first_and_limited(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        citizen = await records.get_or_create_citizen(s, "phone", "010-5555-0006")
        made = [await records.open_contact(s, Channel.sms, citizen, started_at=now - timedelta(hours=h))
                for h in (5, 1, 3, 1)]
        await records.open_contact(s, Channel.sms, None, started_at=now)
    await _rewrite(db, made[1].id)
    async with db.session() as s:
        earlier = await records.earlier_contacts(s, citizen.id)
        assert [c.id for c in earlier] == [made[3].id, made[1].id, made[2].id, made[0].id]
        assert [c.id for c in await records.earlier_contacts(s, citizen.id, limit=2)] == [made[3].id, made[1].id]


async def test_earlier_contacts_shows_twenty_by_default(db: Database) -> None:
    async with db.transaction() as s:
        found = await records.ensure_call_contacts(s, [records.NewCall(f"e.{i}", "+821055550008") for i in range(21)])
    citizen_id = found["e.0"][1]
    assert citizen_id is not None
    async with db.session() as s:
        assert len(await records.earlier_contacts(s, citizen_id)) == 20
