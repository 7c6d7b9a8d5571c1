"""POST /api/webcall/survey: the satisfaction score of a browser call, given on screen.

The phone survey is spoken (press 1-5), which a deaf citizen cannot follow; the /call page
asks on screen once the counsellor has hung up. The page proves which call it was with the
credential it called with (the issuer remembers only a hash of the password, for a few
hours, and accepts one answer); the call's contact is the one whose queue_join came from
that endpoint after the credential was minted. Stored like the phone survey: the contact's
``satisfaction`` and a ``survey`` timeline event.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from pydantic import Field
from sqlalchemy import select, update

from ivr.console.render import ctx_of
from ivr.db.models import Contact, ContactEvent
from ivr.records import record_event
from ivr.web.bodies import Body, read_model
from ivr.webrtc.credentials import CredentialRefused, refusal_logged
from ivr.webrtc.state import webcall_state

RECENT_EVENTS = 2000  # queue_join rows looked at (newest first)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class SurveyIn(Body):
    score: int = Field(ge=1, le=5, description="1 (poor) to 5 (very good)")
    username: str = ""  # the call's SIP credential
    password: str = ""


async def survey(request: web.Request) -> web.Response:
    body = await read_model(request, SurveyIn)
    score = body.score
    address = request.remote or "?"
    try:
        issued = await webcall_state(request).issuer.redeem_survey(body.username, body.password)
    except CredentialRefused as exc:
        refusal_logged(exc.reason, address, f"survey: {exc}")
        return web.json_response({"error": str(exc), "reason": exc.reason}, status=403)
    since = datetime.fromtimestamp(issued.issued_at, UTC)
    prefix = f"PJSIP/{issued.username}-"
    async with ctx_of(request).db.transaction() as session:
        rows = (await session.execute(
            select(ContactEvent.contact_id, ContactEvent.at, ContactEvent.data).where(ContactEvent.kind == "queue_join")
            .order_by(ContactEvent.id.desc()).limit(RECENT_EVENTS))).all()
        matches = [(at, cid) for cid, at, data in rows
                   if str((data or {}).get("channel", "")).startswith(prefix) and _utc(at) >= since]
        if not matches:
            return web.json_response({"error": "no call was found for this credential"}, status=404)
        contact_id = min(matches)[1]  # the first call after the credential was minted: its call
        await session.execute(update(Contact).where(Contact.id == contact_id)
                              .values(satisfaction=score, updated_at=datetime.now(UTC)))
        await record_event(session, contact_id, "survey", "web", external_id=f"web:{contact_id}:survey",
                           data={"score": score})
    return web.json_response({"saved": True, "score": score})
