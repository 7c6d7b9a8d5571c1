"""Database URLs: the async driver the services use and the sync one Alembic uses, for one database."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def sync_url(url: str) -> str:
    """The synchronous URL Alembic uses for the same database."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if parsed.drivername in ("postgresql+asyncpg", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The asynchronous URL (aiosqlite, psycopg) the services use."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=False)
