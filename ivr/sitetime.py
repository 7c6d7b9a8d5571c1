"""The site's time zone (``timezone:`` in the configuration) for calendar days people read.

A tracking number starts with the day of the inquiry and recordings are filed under the day of
the call (docs/contracts.md): the day as the city lives it, not UTC's. At 08:50 KST on
7 December UTC still says 6 December. ``AppContext.create`` sets the zone from the settings
for the whole process (one site, one zone); until then it is the settings' default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ivr.config import Settings

_zone = ZoneInfo(str(Settings.model_fields["timezone"].default))


def use(name: str) -> None:
    """Make ``name`` (an IANA zone such as 'Asia/Seoul') the site's zone for this process."""
    global _zone
    _zone = ZoneInfo(name)


def zone() -> ZoneInfo:
    return _zone


def local(moment: datetime | None = None) -> datetime:
    """``moment`` (now if None; a naive one is taken as UTC) on the site's clock."""
    if moment is None:
        return datetime.now(_zone)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(_zone)
