"""Import every module that defines tables, so metadata (and Alembic) sees them all.

A feature that adds tables adds its models module here.
"""

from ivr.db import models  # noqa: F401
