"""Builds the IVR from the configuration: menus, queues (hours), database and bus -> routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from ivr.context import AppContext
from ivr.engine.channel import Channel
from ivr.engine.engine import IvrEngine
from ivr.engine.menu import MenuSet, check_queues, load_menus
from ivr.queues import QueueConfig, load_queues

MENU_FILE = "main.yaml"
Route = Callable[[Channel], Awaitable[None]]


def load_checked(menus_dir: Path, queues_dir: Path) -> tuple[MenuSet, QueueConfig]:
    """The menu file and the queues it names, cross-checked (errors name file and line)."""
    queues = load_queues(queues_dir)
    path = menus_dir / MENU_FILE
    menus = load_menus(path)
    check_queues(menus, path, set(queues.queues))
    return menus, queues


class IvrRuntime:
    def __init__(self, engine: IvrEngine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, ctx: AppContext, clock: Callable[[], datetime | None] = lambda: None) -> IvrRuntime:
        menus, queues = load_checked(ctx.settings.agi.menus_dir, ctx.settings.queues_dir)
        return cls(IvrEngine(menus, queues, ctx.db, ctx.bus, clock))

    def routes(self) -> dict[str, Route]:
        engine = self.engine

        async def main(ch: Channel) -> None:
            await engine.main(ch)

        async def survey(ch: Channel) -> None:
            await engine.survey(ch)

        async def callback(ch: Channel) -> None:
            await engine.callback(ch)

        return {"main": main, "survey": survey, "callback": callback}
