"""Who may read and act on a contact: agents their own and their queues', everyone else all.

An agent's contacts are those assigned to them (``contacts.agent_id``), those of a queue they
serve (their skills in ``queues/agents.yaml``), and the shared text inbox (open SMS/MMS/SNS
contacts nobody has taken and no queue holds). Supervisors, reviewers and admins see every
contact; each time one of them (or anyone) opens a record that is not their own, the audit log
says so (``record_read`` with whose it was), so reading others' records leaves a trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ivr import yamlfile
from ivr.context import AppContext
from ivr.db.models import Agent, Channel, Contact, ContactStatus
from ivr.web.auth import SessionUser, audit

SEE_ALL = ("supervisor", "reviewer", "admin")
SHARED_INBOX = (Channel.sms, Channel.mms, Channel.sns)
_queue_cache: dict[Path, tuple[tuple[float, ...], dict[str, frozenset[str]]]] = {}


def _mtimes(folder: Path) -> tuple[float, ...]:
    out = []
    for name in ("queues.yaml", "agents.yaml"):
        try:
            out.append((folder / name).stat().st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


def queues_of(ctx: AppContext, username: str) -> frozenset[str]:
    """The queues ``username`` serves (skills in agents.yaml), re-read when the files change."""
    from ivr.queues import load_queues

    folder = ctx.settings.queues_dir
    stamp = _mtimes(folder)
    cached = _queue_cache.get(folder)
    if cached is None or cached[0] != stamp:
        try:
            by_agent = {a.username: frozenset(a.skills) for a in load_queues(folder).agents}
        except (yamlfile.DataError, OSError):
            by_agent = {}  # a broken file gives no queue: agents keep their own contacts
        cached = _queue_cache[folder] = (stamp, by_agent)
    return cached[1].get(username, frozenset())


@dataclass(frozen=True)
class Access:
    allowed: bool
    own: bool  # assigned to this user (no audit needed for reading it)


async def contact_access(ctx: AppContext, session: AsyncSession, user: SessionUser, contact: Contact) -> Access:
    agent_id = (await session.execute(select(Agent.id).where(Agent.username == user.username))).scalar_one_or_none()
    own = agent_id is not None and contact.agent_id == agent_id
    if own or user.role in SEE_ALL:
        return Access(True, own)
    if contact.queue is not None and contact.queue in queues_of(ctx, user.username):
        return Access(True, False)
    shared = (contact.agent_id is None and contact.queue is None and contact.channel in SHARED_INBOX
              and contact.status == ContactStatus.open)
    return Access(shared, False)


async def visible_filter(ctx: AppContext, session: AsyncSession, user: SessionUser) -> ColumnElement[bool] | None:
    """A WHERE clause for the contacts ``user`` may see in lists (None: all of them); the same
    rule as ``contact_access`` for the shared inbox, their own and their queues' contacts."""
    if user.role in SEE_ALL:
        return None
    agent_id = (await session.execute(select(Agent.id).where(Agent.username == user.username))).scalar_one_or_none()
    clauses = [and_(Contact.agent_id.is_(None), Contact.queue.is_(None))]
    if agent_id is not None:
        clauses.append(Contact.agent_id == agent_id)
    queues = queues_of(ctx, user.username)
    if queues:
        clauses.append(Contact.queue.in_(sorted(queues)))
    return or_(*clauses)


def refused() -> web.HTTPException:
    return web.HTTPForbidden(text='{"error": "this contact is another agent\'s / 다른 상담원의 문의입니다"}',
                             content_type="application/json")


async def audit_read(ctx: AppContext, request: web.Request, user: SessionUser, access: Access, what: str,
                     target: str) -> None:
    """An audit row for reading a record that is not the reader's own."""
    if not access.own:
        await audit(ctx, user.username, "record_read", target, ip=request.remote, what=what, role=user.role)
