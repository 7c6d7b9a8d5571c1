"""An admin's change saved while Asterisk could not be reached (``asterisk.apply`` job) is applied
by the AMI bridge once it can: the files rendered, the modules reloaded over AMI, the job acked;
a failed apply is tried again. Real sockets (an ``AmiPeer`` speaking Asterisk 22's AMI), a real
SQLite database, the in-process bus."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ivr.ami import service
from ivr.asterisk.apply import APPLY_STREAM, read_pending
from ivr.bus.memory import MemoryBus
from ivr.config import Settings
from ivr.console.admin import apply_to_asterisk
from ivr.context import AppContext
from ivr.db import Database
from tests.support.ami_harness import rig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reloads(actions: list[dict[str, str]]) -> set[str]:
    return {a.get("Module", "") for a in actions if a.get("Action") == "Reload"}


async def _pending(bus: MemoryBus) -> int:
    return await bus.pending(APPLY_STREAM, service.COMMANDS_GROUP)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_a_change_saved_while_asterisk_was_away_is_applied_by_the_bridge(
        settings: Settings, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "APPLY_RETRY_SECONDS", 0.3)
    config_dir = tmp_path / "asterisk"
    settings.asterisk.config_dir = config_dir
    settings.ami.port = _free_port()  # nothing listens: Asterisk is away
    bus = MemoryBus()
    console = AppContext(settings, Database(sqlite_url), bus)
    status, message = await apply_to_asterisk(console, "admin")
    await console.db.dispose()
    assert status == "failed" and "queued" in message
    waiting = read_pending(config_dir)
    assert "app_queue.so" in waiting and "pbx_config.so" in waiting  # written, not reloaded

    async with rig(settings, sqlite_url, bus) as r:  # Asterisk is back, and so is the bridge

        async def applied() -> bool:
            return set(waiting) <= _reloads(r.peer.actions) and await _pending(bus) == 0

        await _until(applied)
        assert read_pending(config_dir) == []


async def test_a_failed_apply_is_tried_again(settings: Settings, sqlite_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(service, "APPLY_RETRY_SECONDS", 0.3)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the Asterisk folder should be")
    settings.asterisk.config_dir = blocked / "asterisk"  # the files cannot be written
    bus = MemoryBus()
    async with rig(settings, sqlite_url, bus) as r:
        await bus.enqueue(APPLY_STREAM, {"requested_by": "admin"})

        async def taken() -> bool:
            return await _pending(bus) == 1

        await _until(taken)  # handed to the bridge, failed, not acked

        async def tried_again() -> bool:  # after the retry interval: tried again, failed again
            return "(try 2) failed" in caplog.text

        await _until(tried_again)
        assert await _pending(bus) == 1 and not _reloads(r.peer.actions)
        settings.asterisk.config_dir = tmp_path / "asterisk"  # the admin fixes the folder

        async def applied() -> bool:
            return "app_queue.so" in _reloads(r.peer.actions) and await _pending(bus) == 0

        await _until(applied)
        assert (tmp_path / "asterisk" / "queues.conf").is_file()
