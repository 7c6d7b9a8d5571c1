"""What every service shares in one process: settings, the database, the bus and the clock
that in-process time windows (the sign-in throttle) are measured on."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr import sitetime
from ivr.bus import Bus, create_bus
from ivr.config import Settings
from ivr.db import Database


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: Bus
    # Seconds on a clock that only moves forward; tests put their own here to step through a
    # window instead of waiting for it (a loaded machine would pass it before the next try).
    monotonic: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    async def create(cls, settings: Settings, migrate: bool = True) -> AppContext:
        sitetime.use(settings.timezone)  # tracking numbers and recording folders use the site's day
        db = Database(settings.database_url, echo=settings.database.echo)
        if migrate:
            await db.aupgrade()
        bus = create_bus(settings.bus.backend, settings.bus.redis_url, settings.bus.prefix)
        await bus.start()
        return cls(settings, db, bus)

    async def close(self) -> None:
        await self.bus.close()
        await self.db.dispose()
