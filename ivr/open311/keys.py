"""API keys for Open311 clients (scope ``submit``) and departments (scope ``update``).

The key is shown once when made; only its SHA-256 is stored (a key is a long random
secret, so a fast hash is enough and lookups are one indexed equality).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from ivr.db import Database
from ivr.open311.models import Open311ApiKey

SCOPES = ("submit", "update")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(db: Database, name: str, scopes: str = "submit",
                     agency: str | None = None) -> str:
    """Make (or replace) the key called ``name``; returns the new secret key."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {scopes!r}")
    key = secrets.token_urlsafe(24)
    async with db.transaction() as session:
        row = (await session.execute(
            select(Open311ApiKey).where(Open311ApiKey.name == name))).scalar_one_or_none()
        if row is None:
            row = Open311ApiKey(name=name)
            session.add(row)
        row.key_hash, row.scopes, row.agency, row.active = hash_key(key), ",".join(wanted), agency, True
    return key


async def authenticate(db: Database, key: str | None, scope: str) -> Open311ApiKey | None:
    """The active key with ``scope``, or None."""
    if not key:
        return None
    async with db.session() as session:
        row = (await session.execute(
            select(Open311ApiKey).where(Open311ApiKey.key_hash == hash_key(key)))).scalar_one_or_none()
    if row is None or not row.allows(scope):
        return None
    now = datetime.now(UTC)
    last = row.last_used_at
    # Note the use at most once a minute: a commit per API call would halve SQLite's throughput.
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > timedelta(minutes=1):
        async with db.transaction() as session:
            await session.execute(update(Open311ApiKey).where(Open311ApiKey.id == row.id)
                                  .values(last_used_at=now))
    return row


async def revoke_key(db: Database, name: str) -> bool:
    async with db.transaction() as session:
        row = (await session.execute(
            select(Open311ApiKey).where(Open311ApiKey.name == name))).scalar_one_or_none()
        if row is None:
            return False
        row.active = False
    return True
