"""Calls of a dead Asterisk node: their contacts are closed by the survivors as lost with the node.

A node's calls are known by their call id: Asterisk's Linkedid, which starts with the node's
``systemname`` (``<node>-<epoch>.<n>``, ``dasan asterisk render --node``), so closing one node's
calls can never touch another's. Idempotent: two dasan nodes may both do it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.ami.ingest import MESSAGE_CHANNELS, UNOBSERVED
from ivr.ami.models import LiveCall
from ivr.db.models import Contact, ContactEvent
from ivr.records import insert_for, lock_contacts

LOST_WITH_NODE = "lost_with_node"


def node_prefix(node: str) -> str:
    return f"{node}-"


async def close_node_calls(session: AsyncSession, node: str, now: datetime) -> list[int]:
    """Close the open call contacts of ``node``; returns their ids.

    Each gets ``ended_at`` (if empty), the outcome ``lost_with_node`` where it had none (or only
    ``unobserved``; an answered call keeps ``answered``) and a ``lost_with_node`` timeline row.
    The node's live calls (waiting or talking) are removed.
    """
    prefix = node_prefix(node)
    ids = list(await session.scalars(
        select(Contact.id).where(Contact.call_id.startswith(prefix, autoescape=True),
                                 Contact.channel.not_in(MESSAGE_CHANNELS),
                                 or_(Contact.ended_at.is_(None), Contact.outcome.is_(None),
                                     Contact.outcome == UNOBSERVED))
        .order_by(Contact.id)))
    await session.execute(delete(LiveCall).where(LiveCall.linkedid.startswith(prefix, autoescape=True)))
    if not ids:
        return []
    await lock_contacts(session, ids)
    table: Any = Contact.__table__
    await session.execute(
        update(table).where(table.c.id.in_(ids))
        .values(ended_at=func.coalesce(table.c.ended_at, now),
                outcome=func.coalesce(func.nullif(table.c.outcome, UNOBSERVED), LOST_WITH_NODE),
                updated_at=now))
    for contact_id in ids:
        await session.execute(
            insert_for(session, ContactEvent.__table__).values(
                contact_id=contact_id, kind=LOST_WITH_NODE, source="cluster",
                external_id=f"cluster:{LOST_WITH_NODE}:{contact_id}",
                data={"node": node, "note": "the Asterisk node carrying the call stopped"}, at=now,
            ).on_conflict_do_nothing(index_elements=["external_id"]))
    return ids


__all__ = ["LOST_WITH_NODE", "close_node_calls", "node_prefix"]
