"""Builds the IVR from the configuration: menus, queues (hours), database and bus -> routes.

An admin's edit of the menu or queue files (console or by hand) reaches the next call without
a restart: the routes go to the current engine, rebuilt when the files change; calls already
in the IVR finish on the menus they started with. Files that do not load leave the running
menus as they are (and the log says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from ivr.context import AppContext
from ivr.engine.channel import Channel
from ivr.engine.engine import IvrEngine
from ivr.engine.menu import MenuSet, check_queues, load_menus
from ivr.queues import QueueConfig, load_queues
from ivr.yamlfile import DataError

log = logging.getLogger("dasan.ivr")
MENU_FILE = "main.yaml"
CHECK_SECONDS = 1.0  # how often the files' modification times are looked at (a few stat calls)
Route = Callable[[Channel], Awaitable[None]]


def load_checked(menus_dir: Path, queues_dir: Path) -> tuple[MenuSet, QueueConfig]:
    """The menu file and the queues it names, cross-checked (errors name file and line)."""
    queues = load_queues(queues_dir)
    path = menus_dir / MENU_FILE
    menus = load_menus(path)
    check_queues(menus, path, set(queues.queues))
    return menus, queues


class IvrRuntime:
    def __init__(self, engine: IvrEngine, menus_dir: Path | None = None, queues_dir: Path | None = None) -> None:
        self.engine = engine
        self._dirs = (menus_dir, queues_dir) if menus_dir is not None and queues_dir is not None else None
        self._stamp = self._files_stamp()
        self._next_check = time.monotonic() + CHECK_SECONDS

    @classmethod
    def from_settings(cls, ctx: AppContext, clock: Callable[[], datetime | None] = lambda: None) -> IvrRuntime:
        menus_dir, queues_dir = ctx.settings.agi.menus_dir, ctx.settings.queues_dir
        menus, queues = load_checked(menus_dir, queues_dir)
        return cls(IvrEngine(menus, queues, ctx.db, ctx.bus, clock, settings=ctx.settings), menus_dir, queues_dir)

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        if self._dirs is None:
            return ()
        menus_dir, queues_dir = self._dirs
        stamp = []
        for path in [menus_dir / MENU_FILE, *sorted(queues_dir.glob("*.yaml"))]:
            try:
                info = path.stat()
                stamp.append((str(path), info.st_mtime_ns, info.st_size))
            except OSError:
                stamp.append((str(path), 0, -1))
        return tuple(stamp)

    def current(self) -> IvrEngine:
        """The engine for a new call: rebuilt first if the menu or queue files changed."""
        if self._dirs is None or time.monotonic() < self._next_check:
            return self.engine
        self._next_check = time.monotonic() + CHECK_SECONDS
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return self.engine
        self._stamp = stamp
        try:
            menus, queues = load_checked(*self._dirs)
        except DataError as exc:
            log.error("menus or queues changed but do not load; calls keep the running ones:\n%s", exc)
            return self.engine
        old = self.engine
        self.engine = IvrEngine(menus, queues, old.db, old.bus, old.clock, writer=old.writer, settings=old.settings)
        log.info("menus and queues reloaded for new calls")
        return self.engine

    def routes(self) -> dict[str, Route]:
        async def main(ch: Channel) -> None:
            await self.current().main(ch)

        async def survey(ch: Channel) -> None:
            await self.current().survey(ch)

        async def callback(ch: Channel) -> None:
            await self.current().callback(ch)

        return {"main": main, "survey": survey, "callback": callback}
