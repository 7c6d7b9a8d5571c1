"""Counselling database: models, engine and migrations."""

from ivr.db.database import Database
from ivr.db.models import Base

__all__ = ["Base", "Database"]
