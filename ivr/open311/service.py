"""The service-request desk: create requests (API, calls, SMS/MMS), update their status, look
them up. Shared by the HTTP API, the inbound-message consumer, the agent console and the IVR.

Writes commit before anything is acknowledged; SMS notifications are enqueued on
``sms.outbound`` only after the commit (a notification never announces a request that a
rollback took back).
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import records
from ivr.context import AppContext
from ivr.contracts import Stream
from ivr.db import Database
from ivr.db.models import Citizen, Contact
from ivr.languages import Languages, load_languages
from ivr.open311 import texts
from ivr.open311.catalog import Catalog, Service, catalog_path, load_catalog
from ivr.open311.formats import Open311Error, as_utc
from ivr.open311.intake import Intake, IntakeRules, load_rules, rules_path
from ivr.open311.models import Open311ApiKey, ServiceRequest, ServiceRequestUpdate

SMS_STREAM = Stream.SMS_OUTBOUND
INBOUND_STREAM = Stream.MESSAGES_INBOUND
MEDIA_ROUTE = "/open311/v2/media/"
MAX_DESCRIPTION = 4000
# "37.5665, 126.9780" anywhere in a message: a shared location.
_LATLONG = re.compile(r"(-?\d{1,2}\.\d{3,})\s*,\s*(-?\d{1,3}\.\d{3,})")

_catalogs: dict[tuple[Path, float], Catalog] = {}
_rules: dict[tuple[Path, float], IntakeRules] = {}


def get_catalog(data_dir: Path) -> Catalog:
    """The catalogue, re-read when its file changes (admins edit it while serving)."""
    path = catalog_path(data_dir)
    key = (path, path.stat().st_mtime)
    if key not in _catalogs:
        _catalogs.clear()
        _catalogs[key] = load_catalog(path)
    return _catalogs[key]


def parse_datetime(value: str, name: str, tz: ZoneInfo) -> datetime:
    """A W3C/ISO 8601 date-time; without an offset it is local time of the site."""
    try:
        # A '+' offset left unescaped in a query string arrives as a space: put it back.
        text = value.strip()
        text = text[:10] + text[10:].replace(" ", "+") if "T" in text else text
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C date-time like 2026-11-25T09:30:00+09:00, "
                                f"got {value!r}") from None
    return as_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=tz))


@dataclass
class NewRequest:
    """What a citizen asks for, from any channel, before validation."""

    service_code: str
    lat: str | float | None = None
    long: str | float | None = None
    address_string: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    description: str | None = None
    media_url: str | None = None
    attributes: dict[str, str | list[str]] = field(default_factory=dict)
    email: str | None = None
    device_id: str | None = None
    account_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    language: str | None = None


def _clean(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise Open311Error(400, f"{name} is longer than {limit} characters")
    return value or None


def _coordinate(value: str | float | None, name: str, bound: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Open311Error(400, f"{name} must be a number, got {value!r}") from None
    if not -bound <= number <= bound:
        raise Open311Error(400, f"{name} must be between -{bound:g} and {bound:g}")
    return number


def validate_attributes(service: Service, given: dict[str, str | list[str]],
                        tz: ZoneInfo, require: bool = True) -> dict[str, Any]:
    """Check attribute answers against the service definition; the normalized answers."""
    out: dict[str, Any] = {}
    for code in given:
        attr = service.attribute(code)
        if attr is None or not attr.variable:
            raise Open311Error(400, f"attribute[{code}] is not an attribute of service {service.service_code}")
    for attr in service.attributes:
        if not attr.variable:
            continue
        raw = given.get(attr.code)
        values = [v for v in ([raw] if isinstance(raw, str) else (raw or [])) if v.strip()]
        if not values:
            if attr.required and require:
                raise Open311Error(400, f"attribute[{attr.code}] is required for service {service.service_code}")
            continue
        keys = {v.key for v in attr.values}
        if attr.datatype == "multivaluelist":
            wrong = [v for v in values if v not in keys]
            if wrong:
                raise Open311Error(400, f"attribute[{attr.code}]: {', '.join(wrong)} not one of {', '.join(sorted(keys))}")
            out[attr.code] = values
            continue
        if len(values) > 1:
            raise Open311Error(400, f"attribute[{attr.code}] takes one value")
        value = values[0].strip()
        if attr.datatype == "singlevaluelist" and value not in keys:
            raise Open311Error(400, f"attribute[{attr.code}]: {value} not one of {', '.join(sorted(keys))}")
        if attr.datatype == "number":
            try:
                float(value)
            except ValueError:
                raise Open311Error(400, f"attribute[{attr.code}] must be a number") from None
        if attr.datatype == "datetime":
            value = parse_datetime(value, f"attribute[{attr.code}]", tz).isoformat()
        out[attr.code] = value
    return out


class Open311:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.tz = ZoneInfo(ctx.settings.timezone)

    @property
    def catalog(self) -> Catalog:
        return get_catalog(self.ctx.settings.data_dir)

    @property
    def languages(self) -> Languages:
        """The site's language registry (re-read when edited): the replies' texts."""
        return load_languages(self.ctx.settings.agi.menus_dir)

    @property
    def base_url(self) -> str:
        return self.ctx.settings.web.public_url.rstrip("/") + "/open311/v2"

    # -- creating -------------------------------------------------------------------------

    def check(self, new: NewRequest, need_location: bool = True,
              require_attributes: bool = True) -> tuple[Service, dict[str, Any]]:
        """Validate against the catalogue (raises ``Open311Error``)."""
        if not new.service_code:
            raise Open311Error(400, "service_code was not provided")
        service = self.catalog.get(new.service_code)
        if service is None:
            raise Open311Error(404, f"service_code {new.service_code} was not found")
        lat = _coordinate(new.lat, "lat", 90)
        long = _coordinate(new.long, "long", 180)
        if (lat is None) != (long is None):
            raise Open311Error(400, "lat and long must be given together")
        if need_location and lat is None and not (new.address_string or "").strip() \
                and not (new.address_id or "").strip():
            raise Open311Error(400, "a location is required: lat and long, address_string or address_id")
        if new.description and len(new.description) > MAX_DESCRIPTION:
            raise Open311Error(400, f"description is longer than {MAX_DESCRIPTION} characters")
        if new.media_url and not re.match(r"^https?://\S+$", new.media_url.strip()):
            raise Open311Error(400, "media_url must be an http or https URL")
        if new.email and "@" not in new.email:
            raise Open311Error(400, "email is not an e-mail address")
        return service, validate_attributes(service, new.attributes, self.tz, require_attributes)

    async def create(
        self,
        session: AsyncSession,
        new: NewRequest,
        *,
        source: str,
        contact: Contact | None = None,
        citizen: Citizen | None = None,
        api_key: Open311ApiKey | None = None,
        source_ref: str | None = None,
        media: tuple[str, str] | None = None,
        need_location: bool = True,
        require_attributes: bool = True,
    ) -> tuple[ServiceRequest, bool]:
        """Validate and insert; returns (request, created). A known ``source_ref`` returns the
        existing request (replayed inbound job) with created=False."""
        if source_ref is not None:
            existing = (await session.execute(
                select(ServiceRequest).where(ServiceRequest.source_ref == source_ref))).scalar_one_or_none()
            if existing is not None:
                return existing, False
        service, attributes = self.check(new, need_location, require_attributes)
        phone = (records.normalize_phone(new.phone) or None) if new.phone else None
        if citizen is None and phone:
            citizen = await records.get_or_create_citizen(session, "phone", phone)
        if phone is None and citizen is not None and citizen.identity_kind == "phone":
            phone = citizen.identity
        language = texts.lang(
            self.languages,
            (new.language or "")[:2].lower()
            or (contact.language if contact else None)
            or (citizen.preferred_language if citizen else None)
        )
        lat, long = _coordinate(new.lat, "lat", 90), _coordinate(new.long, "long", 180)
        now = datetime.now(UTC)
        for attempt in range(20):
            sr = ServiceRequest(
                service_request_id=await self._new_id(session, contact if attempt == 0 else None, now),
                token=secrets.token_hex(16),
                service_code=service.service_code,
                service_name=service.service_name,
                status="open",
                description=_clean(new.description, "description", MAX_DESCRIPTION),
                agency_responsible=service.agency,
                service_notice=service.service_notice,
                requested_datetime=now,
                updated_datetime=now,
                address=_clean(new.address_string, "address_string", 500),
                address_id=_clean(new.address_id, "address_id", 120),
                zipcode=_clean(new.zipcode, "zipcode", 20),
                lat=lat,
                long=long,
                media_url=_clean(new.media_url, "media_url", 1000),
                attributes=attributes,
                source=source,
                source_ref=source_ref,
                contact_id=contact.id if contact else None,
                citizen_id=citizen.id if citizen else None,
                api_key_id=api_key.id if api_key else None,
                language=language,
                phone=phone,
                email=_clean(new.email, "email", 200),
                first_name=_clean(new.first_name, "first_name", 120),
                last_name=_clean(new.last_name, "last_name", 120),
                device_id=_clean(new.device_id, "device_id", 200),
                account_id=_clean(new.account_id, "account_id", 200),
            )
            if media is not None:
                path, content_type = media
                sr.media_key = secrets.token_urlsafe(18)
                sr.media_path, sr.media_content_type = path, content_type
                ext = mimetypes.guess_extension(content_type) or ""
                sr.media_url = f"{self.base_url}/media/{sr.media_key}{ext}"
            try:
                # A savepoint: a clash of the random id (or a concurrent replay) retries alone.
                async with session.begin_nested():
                    session.add(sr)
                    await session.flush()
            except IntegrityError:
                if source_ref is not None:
                    existing = (await session.execute(select(ServiceRequest).where(
                        ServiceRequest.source_ref == source_ref))).scalar_one_or_none()
                    if existing is not None:
                        return existing, False
                continue
            if contact is not None:
                await records.record_event(
                    session, contact.id, "open311.created", _event_source(source),
                    external_id=f"open311:{sr.service_request_id}:created",
                    data={"service_request_id": sr.service_request_id, "service_code": sr.service_code},
                )
            return sr, True
        raise Open311Error(500, "could not allocate a service_request_id; try again")

    async def _new_id(self, session: AsyncSession, contact: Contact | None, now: datetime) -> str:
        """The contact's own tracking number for its first request (the citizen keeps one
        number: the one the sidecar's receipt SMS or the agent already gave), else a fresh
        12-digit number that is neither a request's nor a contact's."""
        if contact is not None and contact.tracking_number:
            taken = (await session.execute(select(ServiceRequest.id).where(
                ServiceRequest.service_request_id == contact.tracking_number))).first()
            if taken is None:
                return contact.tracking_number
        while True:
            candidate = records.new_tracking_number(now)
            clash = (await session.execute(select(Contact.id).where(
                Contact.tracking_number == candidate))).first()
            if clash is None:
                return candidate

    async def create_from_contact(
        self, contact_id: int, new: NewRequest, *, by: str = "", notify: bool = True
    ) -> ServiceRequest:
        """An agent files a request from a call's record form; the caller hears the returned
        ``service_request_id`` and, with ``notify``, also gets it by SMS."""
        async with self.ctx.db.transaction() as session:
            contact = await session.get(Contact, contact_id)
            if contact is None:
                raise Open311Error(404, f"contact {contact_id} was not found")
            citizen = await session.get(Citizen, contact.citizen_id) if contact.citizen_id else None
            source = "call" if contact.channel == "voice" else "console"
            sr, _ = await self.create(session, new, source=source, contact=contact, citizen=citizen)
            if by:
                await records.record_event(session, contact.id, "open311.filed_by", "web",
                                           external_id=f"open311:{sr.service_request_id}:by",
                                           data={"by": by})
        if notify:
            await self.notify_received(sr)
        return sr

    async def create_from_message(self, job: dict[str, Any], *, redelivered: bool = False) -> ServiceRequest | None:
        """An inbound SMS/MMS (``messages.inbound`` job): a counselling inquiry for the agents
        (None) unless the citizen clearly reports and then confirms by reply; the confirming
        reply files the request (the rules: ``ivr/open311/intake.py``, ``intake.yaml``)."""
        channel = str(job.get("channel") or "sms")
        if channel not in ("sms", "mms"):
            return None  # SNS/chat threads are answered by agents (no SMS to reply to)
        return await Intake(self).handle(job, redelivered=redelivered)

    @property
    def intake_rules(self) -> IntakeRules:
        path = rules_path(self.ctx.settings.data_dir)
        key = (path, path.stat().st_mtime)
        if key not in _rules:
            _rules.clear()
            _rules[key] = load_rules(path)
        return _rules[key]

    async def file_message(self, job: dict[str, Any], service: Service, rest: str, *,
                           redelivered: bool = False) -> ServiceRequest:
        """File the request of a confirmed SMS/MMS report (``job`` is the report's message).

        A ``redelivered`` job (its first delivery may have died between the commit and the
        "received" SMS) enqueues that SMS again; its ``idempotency_key`` sends it once."""
        channel = str(job.get("channel") or "sms")
        photos = [m for m in job.get("media") or []
                  if str(m.get("content_type", "")).startswith("image/") and m.get("path")]
        new = NewRequest(service_code=service.service_code, description=rest or None)
        found = _LATLONG.search(rest)
        if found:
            new.lat, new.long = found.group(1), found.group(2)
        # The rest of the text stays in the request's private record (description, the
        # message itself), never in the public ``address``: a citizen's SMS is not published.
        media = (str(photos[0]["path"]), str(photos[0]["content_type"])) if photos else None
        async with self.ctx.db.transaction() as session:
            contact = await session.get(Contact, int(job["contact_id"])) if job.get("contact_id") else None
            citizen = None
            if contact is not None and contact.citizen_id:
                citizen = await session.get(Citizen, contact.citizen_id)
            if citizen is None and job.get("sender"):
                citizen = await records.get_or_create_citizen(session, "phone", str(job["sender"]))
            # An SMS cannot answer the service's questions: an agent completes them later.
            sr, created = await self.create(
                session, new, source=channel,
                contact=contact, citizen=citizen, source_ref=f"message:{job['message_id']}",
                media=media, need_location=False, require_attributes=False)
        if created or redelivered:
            await self.notify_received(sr)
        return sr

    # -- status ---------------------------------------------------------------------------

    async def update_status(
        self,
        service_request_id: str,
        status: str,
        *,
        status_notes: str | None = None,
        agency_responsible: str | None = None,
        expected_datetime: str | datetime | None = None,
        by: str = "",
        notify: bool = True,
    ) -> ServiceRequest:
        """A department changes the status; the citizen is told by SMS (when a phone is known)."""
        if status not in ("open", "closed"):
            raise Open311Error(400, "status must be open or closed")
        expected = None
        if isinstance(expected_datetime, datetime):
            expected = as_utc(expected_datetime)
        elif expected_datetime:
            expected = parse_datetime(expected_datetime, "expected_datetime", self.tz)
        notes = _clean(status_notes, "status_notes", MAX_DESCRIPTION)
        agency = _clean(agency_responsible, "agency_responsible", 200)
        async with self.ctx.db.transaction() as session:
            sr = (await session.execute(
                select(ServiceRequest).where(ServiceRequest.service_request_id == service_request_id)
                .with_for_update())).scalar_one_or_none()
            if sr is None:
                raise Open311Error(404, f"service_request_id {service_request_id} was not found")
            now = datetime.now(UTC)
            sr.status, sr.status_notes, sr.updated_datetime = status, notes, now
            if agency:
                sr.agency_responsible = agency
            if expected is not None:
                sr.expected_datetime = expected
            phone = sr.phone if notify else None
            update = ServiceRequestUpdate(request_id=sr.id, at=now, status=status, status_notes=notes,
                                          agency_responsible=sr.agency_responsible,
                                          expected_datetime=sr.expected_datetime, by=by, sms_to=phone)
            session.add(update)
            await session.flush()
            if sr.contact_id is not None:
                await records.record_event(
                    session, sr.contact_id, "open311.status", "web",
                    external_id=f"open311:{sr.service_request_id}:update:{update.id}",
                    data={"service_request_id": sr.service_request_id, "status": status,
                          "status_notes": notes, "by": by})
        if phone:
            await self.ctx.bus.enqueue(SMS_STREAM, {
                "to": phone, "contact_id": sr.contact_id, "kind": "open311_status",
                "body": texts.status_sms(self.languages, sr.language, self.ctx.settings.site_name,
                                         self._name(sr, sr.language), sr.service_request_id,
                                         sr.status, sr.status_notes, sr.expected_datetime)})
        return sr

    async def notify_received(self, sr: ServiceRequest) -> None:
        if sr.phone:
            await self.ctx.bus.enqueue(SMS_STREAM, {
                "to": sr.phone, "contact_id": sr.contact_id, "kind": "open311_received",
                "idempotency_key": f"open311:{sr.service_request_id}:received",
                "body": texts.received_sms(self.languages, sr.language, self.ctx.settings.site_name,
                                           self._name(sr, sr.language), sr.service_request_id)})

    def _name(self, sr: ServiceRequest, language: str) -> str:
        """The request's service in ``language`` (the registry's ``services``), else its name."""
        return self.languages.service_name(language, sr.service_code, sr.service_name)

    # -- looking up -----------------------------------------------------------------------

    async def lookup(self, digits: str) -> ServiceRequest | None:
        return await find_request(self.ctx.db, digits)

    async def status_text(self, digits: str, language: str) -> str:
        """What the IVR says for a keyed-in tracking number, in the caller's language."""
        sr = await self.lookup(digits)
        clean = "".join(ch for ch in digits if ch.isdigit())
        if sr is None:
            return texts.spoken_not_found(self.languages, language, clean)
        expected = as_utc(sr.expected_datetime).astimezone(self.tz) if sr.expected_datetime else None
        registry = self.languages
        return texts.spoken_status(registry, language, self._name(sr, texts.lang(registry, language)),
                                   sr.service_request_id, sr.status, sr.status_notes, expected)

    def media_file(self, sr: ServiceRequest) -> Path | None:
        if not sr.media_path:
            return None
        path = Path(sr.media_path)
        return path if path.is_absolute() else self.ctx.settings.data_dir / path


async def find_request(db: Database, digits: str) -> ServiceRequest | None:
    """By service_request_id; a contact's tracking number finds that contact's latest request."""
    digits = "".join(ch for ch in digits if ch.isdigit())
    if not digits:
        return None
    async with db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(
            ServiceRequest.service_request_id == digits))).scalar_one_or_none()
        if sr is None:
            sr = (await session.execute(
                select(ServiceRequest).join(Contact, Contact.id == ServiceRequest.contact_id)
                .where(Contact.tracking_number == digits)
                .order_by(ServiceRequest.id.desc()).limit(1))).scalar_one_or_none()
        return sr


def _event_source(source: str) -> str:
    return {"call": "web", "console": "web", "api": "web", "mms": "sms"}.get(source, source)


async def create_from_contact(ctx: AppContext, contact_id: int, service_code: str, *,
                              by: str = "", notify: bool = True, **fields: Any) -> ServiceRequest:
    """For the agent record form / web console: file a request for a contact (see ``Open311``)."""
    return await Open311(ctx).create_from_contact(
        contact_id, NewRequest(service_code=service_code, **fields), by=by, notify=notify)


def default_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    return now - timedelta(days=90), now
