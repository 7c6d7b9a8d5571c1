"""Writing the counselling record: citizens, contacts and their timeline.

Every channel (IVR, AMI bridge, SMS/chat sidecar, web console) writes through these helpers,
so one inquiry is one record whatever the channel. Writes happen inside the caller's
transaction (``Database.transaction()``) and are durable once it commits; events carry an
``external_id`` so a replayed event is stored once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import sitetime
from ivr.db.database import Executor, among, dialect_name
from ivr.db.json_insert import json_insert, json_lock
from ivr.db.models import Channel, Citizen, Contact, ContactEvent, ContactStatus

# How long an open contact keeps absorbing new messages of the same citizen before a new
# inquiry starts (an SMS the day after a call about the same pothole is the same inquiry).
THREAD_WINDOW = timedelta(hours=24)


def insert_for(session: Executor, table: Any) -> Any:
    """INSERT with the back-end's ON CONFLICT clauses (PostgreSQL or SQLite)."""
    return (postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert)(table)


# Phone numbers are stored in E.164 (+821012345678) so a call from 010-1234-5678 and an SMS
# from +82 10-1234-5678 are one citizen; numbers in national form (a leading 0) belong to the
# home country. Trunks dial the national form again (``dial_number``).
HOME_COUNTRY_CODE = "82"


def normalize_phone(number: str) -> str:
    """'010-1234-5678', '+82 10-1234-5678', '0082 10 1234 5678' -> '+821012345678';
    '+1 212 555 0100' -> '+12125550100'; short codes ('120') stay as they are."""
    number = number.strip()
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.startswith("00"):  # international prefix dialled as 00
        return "+" + digits[2:]
    if number.startswith("+"):
        if digits.startswith(HOME_COUNTRY_CODE + "0"):  # '+82 (0)10 ...'
            digits = HOME_COUNTRY_CODE + digits[len(HOME_COUNTRY_CODE) + 1 :]
        return "+" + digits
    if digits.startswith("0") and len(digits) >= 9:
        return "+" + HOME_COUNTRY_CODE + digits[1:]
    return digits


def dial_number(number: str) -> str:
    """The form a trunk dials: national for the home country ('01012345678'), else +E.164."""
    normalized = normalize_phone(number)
    if normalized.startswith("+" + HOME_COUNTRY_CODE):
        return "0" + normalized[len(HOME_COUNTRY_CODE) + 1 :]
    return normalized


async def get_or_create_citizen(
    session: AsyncSession, identity_kind: str, identity: str, **fields: Any
) -> Citizen:
    """Race-free upsert: concurrent first contacts of one number create one citizen."""
    if identity_kind == "phone":
        identity = normalize_phone(identity)
    stmt = insert_for(session, Citizen.__table__).values(
        identity_kind=identity_kind, identity=identity, created_at=datetime.now(UTC), **fields
    ).on_conflict_do_nothing(index_elements=["identity_kind", "identity"])
    await session.execute(stmt)
    citizen = (
        await session.execute(
            select(Citizen).where(Citizen.identity_kind == identity_kind, Citizen.identity == identity)
        )
    ).scalar_one()
    return citizen


def new_tracking_number(now: datetime | None = None) -> str:
    """A tracking number a caller can key in: YYMMDD (the site's day) + 6 random digits (12 digits)."""
    return sitetime.local(now).strftime("%y%m%d") + f"{secrets.randbelow(10**6):06d}"


def tracking_numbers(count: int, now: datetime | None = None) -> list[str]:
    """``count`` tracking numbers like ``new_tracking_number``'s, from one draw of the system's
    randomness (a batch of contacts asks the kernel once, not once a number)."""
    prefix = sitetime.local(now).strftime("%y%m%d")
    raw = secrets.token_bytes(8 * count)  # 64 bits a number: the bias of "% 10**6" is nil
    return [prefix + f"{int.from_bytes(raw[i : i + 8]) % 10**6:06d}" for i in range(0, 8 * count, 8)]


async def free_tracking_number(session: AsyncSession) -> str:
    """A tracking number no contact has yet. A day has a million numbers, so a busy day
    (tens of thousands of contacts) draws a taken one now and then: draw again."""
    while True:
        number = new_tracking_number()
        taken = await session.scalar(select(Contact.id).where(Contact.tracking_number == number))
        if taken is None:
            return number


def _chunks(items: Sequence[Any], size: int = 500) -> list[list[Any]]:
    """IN lists kept well under SQLite's bound-parameter limit."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call that needs its contact: Asterisk's Linkedid, the caller (E.164 or '') and language."""

    call_id: str
    phone: str = ""
    language: str = "ko"
    channel: str = Channel.voice.value  # video / web_voice for browser calls (ivr.webrtc.slots)


async def ensure_call_contacts(
    session: Executor, calls: Sequence[NewCall], now: datetime | None = None
) -> dict[str, tuple[int, int | None]]:
    """The contact of every call (call_id -> (contact id, citizen id)), created where missing.

    Set-based so a batch of a thousand calls costs a handful of statements, not thousands: the
    IVR's group commit and the AMI bridge both open contacts this way. Idempotent by
    ``call_id`` (whoever comes first, IVR or AMI, creates it; the other finds it); new contacts
    get a tracking number and the caller's citizen (created on first contact).
    """
    now = now or datetime.now(UTC)
    wanted: dict[str, NewCall] = {}
    for call in calls:
        wanted.setdefault(call.call_id, call)
    found: dict[str, tuple[int, int | None]] = {}
    phones = sorted({call.phone for call in wanted.values() if call.phone})
    citizens: dict[str, int] = {}
    if phones:
        await insert_citizens(session, [{"identity_kind": "phone", "identity": phone, "display_name": None,
                                         "created_at": now} for phone in phones])
        for part in _chunks(phones):
            rows = await session.execute(select(Citizen.identity, Citizen.id).where(
                Citizen.identity_kind == "phone", among(session, Citizen.identity, part)))
            citizens.update({str(identity): citizen_id for identity, citizen_id in rows})
    new = [{"channel": call.channel, "status": ContactStatus.open.value, "call_id": call.call_id,
             "citizen_id": citizens.get(call.phone), "started_at": now, "updated_at": now,
             "language": call.language, "ivr_path": "", "notes": ""}
           for call in sorted(wanted.values(), key=lambda c: c.call_id)]  # one insert order: no deadlock
    for call_id, (contact_id, citizen_id, _number) in (await insert_contacts(session, new, "call_id", now)).items():
        found[str(call_id)] = (contact_id, citizen_id)
    skipped = [call_id for call_id in wanted if call_id not in found]  # opened by the other side first
    for part in _chunks(skipped):
        existing = await session.execute(
            select(Contact.call_id, Contact.id, Contact.citizen_id).where(among(session, Contact.call_id, part)))
        for call_id, contact_id, citizen_id in existing:
            found[str(call_id)] = (contact_id, citizen_id)
    return found


CONTACT_COLUMNS = ("channel", "status", "call_id", "citizen_id", "started_at", "updated_at", "language",
                   "ivr_path", "notes")  # what a new contact's row gives (insert_contacts)


async def lock_contacts(session: Executor, ids: Iterable[int]) -> None:
    """Lock these contacts' rows in id order (``ivr.db.json_insert.JsonLock``) before changing
    them. Every writer that changes several contacts in one transaction (the IVR's record, the
    AMI bridge) does so first, so two of them wait for each other in one order and never
    deadlock; and its inserts (citizens by number, contacts by call id) go in sorted too."""
    await json_lock(session, cast(Table, Contact.__table__), "id").execute(session, [{"id": i} for i in sorted(set(ids))])


async def insert_citizens(session: Executor, rows: Sequence[dict[str, Any]]) -> None:
    """Citizens (identity_kind, identity, display_name, created_at) not there yet, in one statement."""
    await json_insert(session, cast(Table, Citizen.__table__), ("identity_kind", "identity", "display_name", "created_at"),
                      ("identity_kind", "identity")).execute(session, rows)


async def insert_contacts(session: Executor, rows: Sequence[dict[str, Any]], key: str,
                          now: datetime | None = None) -> dict[Any, tuple[int, int | None, str]]:
    """Insert contacts in one statement, each with a fresh tracking number; returns
    ``row[key]`` -> (id, citizen id, tracking number) for the rows that went in.

    No conflict target: a row whose ``call_id`` is already there is skipped (left out of the
    answer), and a row whose tracking number was drawn twice is drawn again."""
    table = cast(Table, Contact.__table__)
    column = table.c[key]
    inserted: dict[Any, tuple[int, int | None, str]] = {}
    pending = list(rows)
    statement = json_insert(session, table, [*CONTACT_COLUMNS, "tracking_number"],
                            returning=(key, "id", "citizen_id", "tracking_number"))
    while pending:
        numbers = tracking_numbers(len(pending), now)
        result = await statement.execute(session, [{**row, "tracking_number": number}
                                                   for row, number in zip(pending, numbers, strict=True)])
        for value, contact_id, citizen_id, number in result:
            inserted[value] = (contact_id, citizen_id, number)
        pending = [row for row in pending if row[key] not in inserted]
        if pending and key == "call_id":
            keys = [row[key] for row in pending]
            taken = set()
            for part in _chunks(keys):
                taken |= set(await session.scalars(select(column).where(among(session, column, part))))
            pending = [row for row in pending if row[key] not in taken]
    return inserted


async def open_contact(
    session: AsyncSession,
    channel: Channel,
    citizen: Citizen | None = None,
    call_id: str | None = None,
    **fields: Any,
) -> Contact:
    """Create a contact, or return the existing one for this ``call_id`` (idempotent)."""
    if call_id is not None:
        existing = (
            await session.execute(select(Contact).where(Contact.call_id == call_id))
        ).scalar_one_or_none()
        if existing is not None:
            return existing
    contact = Contact(
        channel=channel,
        citizen_id=citizen.id if citizen else None,
        call_id=call_id,
        tracking_number=await free_tracking_number(session),
        **fields,
    )
    session.add(contact)
    await session.flush()
    return contact


async def find_open_contact(
    session: AsyncSession, citizen: Citizen, window: timedelta = THREAD_WINDOW
) -> Contact | None:
    """The citizen's newest open contact still within the threading window."""
    since = datetime.now(UTC) - window
    return (
        await session.execute(
            select(Contact)
            .where(
                Contact.citizen_id == citizen.id,
                Contact.status == ContactStatus.open,
                Contact.started_at >= since,
            )
            .order_by(Contact.started_at.desc(), Contact.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def record_event(
    session: AsyncSession,
    contact_id: int,
    kind: str,
    source: str,
    external_id: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> bool:
    """Append to the contact's timeline; returns False when ``external_id`` was seen before."""
    stmt = insert_for(session, ContactEvent.__table__).values(
        contact_id=contact_id,
        kind=kind,
        source=source,
        external_id=external_id,
        data=data or {},
        at=at or datetime.now(UTC),
    )
    if external_id is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["external_id"])
    # RETURNING tells reliably on both back-ends whether a row went in.
    inserted = await session.execute(stmt.returning(ContactEvent.__table__.c.id))
    return inserted.first() is not None


async def earlier_contacts(session: AsyncSession, citizen_id: int, limit: int = 20) -> list[Contact]:
    """The citizen's inquiries, newest first (the agent's screen-pop)."""
    return list(
        (
            await session.execute(
                select(Contact)
                .where(Contact.citizen_id == citizen_id)
                .order_by(Contact.started_at.desc(), Contact.id.desc())
                .limit(limit)
            )
        ).scalars()
    )
