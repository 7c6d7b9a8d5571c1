"""Inbound SMS/MMS -> counselling inquiry, or a report the citizen confirms before it is filed.

The rules are data (``intake.yaml``, Korean and English): a message is an inquiry for an agent
unless the citizen clearly reports (a photo, a ``#keyword``, a report word or phrase, and no
question). A report is not filed at once: the citizen gets "file this as a <service> report?
reply YES/NO" and only a confirming reply files the request (from the first message, so its
text, photo and ``source_ref`` are the report's). The question is an ``open311.proposed`` row
on the report's contact timeline; the answer an ``open311.answered`` row (``external_id``
``open311:answered:<message id of the report>``), so a replayed job changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records, yamlfile
from ivr.context import AppContext
from ivr.contracts import Stream
from ivr.db.models import Citizen, Contact, ContactEvent
from ivr.languages import Languages
from ivr.open311.catalog import Catalog, Service
from ivr.open311.models import ServiceRequest

DEFAULT_RULES = Path(__file__).with_name("intake.yaml")
SMS_STREAM = Stream.SMS_OUTBOUND
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[\w']+")


class _Words(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ko: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.ko, *self.en]


class _Texts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ask: str
    declined: str


class IntakeRules(BaseModel):
    """``intake.yaml``, checked on load (errors name file:line)."""

    model_config = ConfigDict(extra="forbid")
    report_words: _Words
    report_phrases: _Words
    question_words: _Words
    question_marks: list[str]
    confirm_words: list[str]
    decline_words: list[str]
    reply_max_words: int = Field(4, ge=1)
    confirm_hours: float = Field(24, gt=0)
    texts: dict[Literal["ko", "en"], _Texts]
    _report: re.Pattern[str] = PrivateAttr()
    _phrase: re.Pattern[str] = PrivateAttr()
    _question: re.Pattern[str] = PrivateAttr()
    _confirm: set[str] = PrivateAttr()
    _decline: set[str] = PrivateAttr()

    def model_post_init(self, _context: Any) -> None:
        self._report = _matcher(self.report_words.all())
        self._phrase = _matcher(self.report_phrases.all())
        self._question = _matcher(self.question_words.all())
        self._confirm = {w.casefold() for w in self.confirm_words}
        self._decline = {w.casefold() for w in self.decline_words}


def _matcher(words: list[str]) -> re.Pattern[str]:
    """Korean anywhere (endings attach to the word), anything else as whole words."""
    parts = [re.escape(w.casefold()) if _HANGUL.search(w) else rf"(?<!\w){re.escape(w.casefold())}(?!\w)"
             for w in sorted(set(words), key=len, reverse=True)]
    return re.compile("|".join(parts) or r"(?!)")


def load_rules(path: Path = DEFAULT_RULES) -> IntakeRules:
    return yamlfile.validate(IntakeRules, yamlfile.load(path))


def rules_path(data_dir: Path) -> Path:
    override = data_dir / "open311" / "intake.yaml"
    return override if override.exists() else DEFAULT_RULES


Kind = Literal["report", "inquiry", "confirm", "decline"]


@dataclass
class Reading:
    kind: Kind
    service: Service | None = None
    description: str = ""
    why: str = ""  # which rule decided (kept on the timeline, shown in tests)


def language_of(text: str) -> Literal["ko", "en"]:
    return "ko" if _HANGUL.search(text) else "en"


def find_service(catalog: Catalog, text: str) -> tuple[Service, str] | None:
    """A service keyword starting the text (the rest is the description), else one inside it
    (a Korean keyword with its particle: "쓰레기가"; others as whole words): the whole text."""
    matched = catalog.match_keyword(text)
    if matched is not None:
        return matched
    folded = text.casefold()
    best: tuple[int, Service] | None = None
    for service in catalog.services:
        for keyword in service.keywords:
            k = keyword.casefold()
            pattern = re.escape(k) if not k.isascii() else rf"(?<!\w){re.escape(k)}(?!\w)"
            if re.search(pattern, folded) and (best is None or len(k) > best[0]):
                best = (len(k), service)
    return (best[1], text.strip()) if best else None


def read_message(rules: IntakeRules, catalog: Catalog, body: str, has_photo: bool) -> Reading:
    """What the citizen means: a reply to our question, a report, or an inquiry for an agent."""
    text = body.strip()
    folded = text.casefold()
    words = _WORD.findall(folded)
    if words and len(words) <= rules.reply_max_words and not has_photo:
        if words[0] in rules._confirm:
            return Reading("confirm", why=f"reply {words[0]!r}")
        if words[0] in rules._decline:
            return Reading("decline", why=f"reply {words[0]!r}")
    phrase = rules._phrase.search(folded)
    question = rules._question.search(folded) or any(m in text for m in rules.question_marks)
    hashtag = text.startswith("#") and catalog.match_keyword(text) is not None
    report = rules._report.search(folded)
    if has_photo:
        why = "photo"
    elif phrase:
        why = f"report phrase {phrase.group(0)!r}"
    elif question:
        return Reading("inquiry", why="a question")
    elif hashtag:
        why = "#keyword"
    elif report:
        why = f"report word {report.group(0)!r}"
    else:
        return Reading("inquiry", why="no report word")
    found = find_service(catalog, text)
    if found is None and has_photo and catalog.photo_service:
        found = (catalog.get(catalog.photo_service), text)  # type: ignore[assignment]
    if found is None:
        return Reading("inquiry", why=f"{why} but no service named")
    service, rest = found
    return Reading("report", service, rest, why)


@dataclass
class Pending:
    """A question we asked and the citizen has not answered: the report's job and service."""

    event_id: int
    contact_id: int
    job: dict[str, Any]
    service_code: str
    description: str


async def pending_report(session: AsyncSession, citizen: Citizen, message_id: Any, now: datetime,
                         hours: float) -> tuple[Pending | None, bool]:
    """The citizen's latest unanswered question (or the one this very reply answered: a
    replayed job), and whether it was already answered by this message."""
    rows = (await session.execute(
        select(ContactEvent).join(Contact, Contact.id == ContactEvent.contact_id)
        .where(Contact.citizen_id == citizen.id, ContactEvent.kind == "open311.proposed",
               ContactEvent.at > now - timedelta(hours=hours))
        .order_by(ContactEvent.id.desc()).limit(10))).scalars().all()
    if not rows:
        return None, False
    keys = [answered_key(r.data.get("job", {}).get("message_id")) for r in rows]
    answers = {e.external_id: e.data for e in (await session.execute(
        select(ContactEvent).where(ContactEvent.external_id.in_(keys)))).scalars()}
    for row, key in zip(rows, keys, strict=True):
        pending = Pending(row.id, row.contact_id, dict(row.data.get("job", {})), str(row.data.get("service_code")),
                          str(row.data.get("description") or ""))
        answer = answers.get(key)
        if answer is None:
            return pending, False
        if str(answer.get("by_message")) == str(message_id):
            return pending, True
    return None, False


def answered_key(message_id: Any) -> str:
    return f"open311:answered:{message_id}"


def proposed_key(message_id: Any) -> str:
    return f"open311:proposed:{message_id}"


async def request_of(session: AsyncSession, report_message_id: Any) -> ServiceRequest | None:
    return (await session.execute(select(ServiceRequest).where(
        ServiceRequest.source_ref == f"message:{report_message_id}"))).scalar_one_or_none()


class Desk(Protocol):
    """What the intake needs of the service-request desk (``ivr.open311.service.Open311``)."""

    ctx: AppContext

    @property
    def catalog(self) -> Catalog: ...

    @property
    def intake_rules(self) -> IntakeRules: ...

    @property
    def languages(self) -> Languages: ...

    async def file_message(self, job: dict[str, Any], service: Service, rest: str, *,
                           redelivered: bool = False) -> ServiceRequest: ...


class Intake:
    """One inbound job through the rules: ask, file on a confirming reply, or leave to agents."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.rules = desk.intake_rules

    async def handle(self, job: dict[str, Any], *, redelivered: bool = False) -> ServiceRequest | None:
        message_id = job["message_id"]
        body = str(job.get("body") or "")
        photos = [m for m in job.get("media") or []
                  if str(m.get("content_type", "")).startswith("image/") and m.get("path")]
        reading = read_message(self.rules, self.desk.catalog, body, bool(photos))
        if reading.kind == "inquiry":
            return None
        now = utcnow()
        sms: list[dict[str, Any]] = []
        to_file: Pending | None = None
        async with self.desk.ctx.db.transaction() as session:
            contact = await session.get(Contact, int(job["contact_id"])) if job.get("contact_id") else None
            citizen = await citizen_of(session, job, contact)
            if contact is None or citizen is None or citizen.identity_kind != "phone":
                return None  # nobody to ask: the agents answer it
            site = self.desk.ctx.settings.site_name
            if reading.kind == "report":
                assert reading.service is not None
                language = language_of(body)
                inserted = await records.record_event(
                    session, contact.id, "open311.proposed", str(job.get("channel") or "sms"),
                    external_id=proposed_key(message_id),
                    data={"job": job, "service_code": reading.service.service_code,
                          "description": reading.description, "why": reading.why})
                if inserted or redelivered:
                    sms.append({"to": citizen.identity, "contact_id": contact.id, "kind": "open311_confirm",
                                "idempotency_key": proposed_key(message_id),
                                "body": self.rules.texts[language].ask.format(
                                    site=site, service=self.desk.languages.service_name(
                                        language, reading.service.service_code, reading.service.service_name))})
            else:
                pending, answered_here = await pending_report(session, citizen, message_id, now,
                                                              self.rules.confirm_hours)
                if pending is None:
                    return None  # a "yes" to nothing we asked: an ordinary message
                if not answered_here:
                    await records.record_event(
                        session, pending.contact_id, "open311.answered", str(job.get("channel") or "sms"),
                        external_id=answered_key(pending.job.get("message_id")),
                        data={"answer": reading.kind, "by_message": message_id})
                if reading.kind == "confirm":
                    to_file = pending
                elif not answered_here or redelivered:
                    language = language_of(str(pending.job.get("body") or body))
                    sms.append({"to": citizen.identity, "contact_id": contact.id, "kind": "open311_declined",
                                "idempotency_key": answered_key(pending.job.get("message_id")),
                                "body": self.rules.texts[language].declined.format(site=site)})
        for message in sms:  # after the commit: never announce what a rollback took back
            await self.desk.ctx.bus.enqueue(SMS_STREAM, message)
        if to_file is None:
            return None
        service = self.desk.catalog.get(to_file.service_code)
        if service is None:
            return None  # the service left the catalogue meanwhile: the agents file it by hand
        return await self.desk.file_message(to_file.job, service, to_file.description, redelivered=redelivered)


async def citizen_of(session: AsyncSession, job: dict[str, Any], contact: Contact | None) -> Citizen | None:
    citizen = await session.get(Citizen, contact.citizen_id) if contact is not None and contact.citizen_id else None
    if citizen is None and job.get("sender"):
        citizen = await records.get_or_create_citizen(session, "phone", str(job["sender"]))
    return citizen


def utcnow() -> datetime:
    return datetime.now(UTC)
