"""The FastAGI server survives what Asterisk 22 really sends, one bad call never stalls others.

Each failure case runs while a batch of ordinary scripted calls goes through the real IVR on
the same server; they must all end in their queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr.agi.caller import ScriptedCaller, environment
from ivr.agi.channel import AgiChannel
from ivr.agi.protocol import AgiReply
from ivr.bus import MemoryBus
from ivr.db import Database
from ivr.db.models import Contact
from tests.support.ivr_harness import IvrHarness
from tests.support.waiting import eventually

DAY = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Asia/Seoul"))
BYSTANDERS = 20


@pytest.fixture
async def ivr(sqlite_url: str) -> AsyncIterator[IvrHarness]:
    db = Database(sqlite_url)
    harness = await IvrHarness(db, MemoryBus(), now=DAY, command_timeout=1.0, env_timeout=1.0).start()
    yield harness
    await harness.stop()
    await db.dispose()


async def with_bystanders(ivr: IvrHarness, trouble: Callable[[], Awaitable[object]]) -> object:
    """Run ``trouble`` while ordinary calls go on; they must all reach their queue."""
    scripts = ["3", "9 1 4", "9 2 0", "1 2", "9 5 2 2"]
    expected = ["general-ko", "en", "zh", "general-ko", "mn"]
    calls = [ivr.dial(scripts[i % 5], delay=0.01) for i in range(BYSTANDERS)]
    results = await asyncio.gather(trouble(), *calls)
    for i, log in enumerate(results[1:]):
        assert log.variables.get("IVR_RESULT") == "queue", log  # type: ignore[attr-defined]
        assert log.variables["QUEUE"] == expected[i % 5]  # type: ignore[attr-defined]
    return results[0]


async def raw(ivr: IvrHarness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(ivr.host, ivr.port)


async def no_calls_left(ivr: IvrHarness) -> None:
    """Every troubled connection was accepted by now (each exchanged bytes with the server or
    was seen to end), so the calls still open are exactly the ones to wait for."""
    assert ivr.server is not None
    if ivr.server.calls:  # a bound, not a speed check: a spinning task would never end
        await asyncio.wait(set(ivr.server.calls), timeout=10)
    assert not ivr.server.calls


async def test_socket_closed_before_the_environment_ends(ivr: IvrHarness) -> None:
    async def trouble() -> None:
        for cut in (0, 1, 100, 382, 483):  # nothing, mid-line, first chunk, all but the blank line
            _reader, writer = await raw(ivr)
            writer.write(b"".join(environment())[:cut])
            await writer.drain()
            writer.close()
        await eventually(lambda: ivr.server is not None and ivr.server.failed == 5, "the five cut calls to end")

    await with_bystanders(ivr, trouble)
    await no_calls_left(ivr)
    assert ivr.server is not None and ivr.server.served == BYSTANDERS


async def test_environment_that_never_ends_times_out(ivr: IvrHarness) -> None:
    async def trouble() -> bytes:
        reader, writer = await raw(ivr)
        writer.write(environment()[0])  # first chunk only, then silence
        await writer.drain()
        data = await reader.read()  # the server gives up after env_timeout and closes
        writer.close()
        return data

    assert await with_bystanders(ivr, trouble) == b""
    await no_calls_left(ivr)


async def test_caller_hangs_up_during_a_command(ivr: IvrHarness) -> None:
    async def trouble() -> list[object]:
        # H: 200 result=-1 for the prompt, then the unsolicited HANGUP line and 511s
        return await asyncio.gather(*(ivr.dial(s) for s in ("H", "9 H", "9 1 H", "1 2 H")))

    logs = await with_bystanders(ivr, trouble)
    for log in logs:  # type: ignore[attr-defined]
        assert log.hung_up and "IVR_RESULT" not in log.variables
        # the engine stops driving the call at the hang-up: nothing is sent after it
        assert log.commands[-1].startswith(("STREAM FILE", "GET DATA", "CHANNEL STATUS")), log.commands
        async with ivr.db.session() as session:
            row = (await session.execute(select(Contact).where(
                Contact.call_id == log.variables["CHANNEL(linkedid)"]))).scalar_one()
        assert row.hangup_side == "caller" and row.ivr_path.endswith("hangup")


async def test_dead_channel_511_and_hangup_line_on_a_stream(ivr: IvrHarness) -> None:
    replies: list[tuple[AgiReply, bool]] = []

    async def probe(ch: AgiChannel) -> None:
        for cmd in ('STREAM FILE dasan/main-menu ""', "WAIT FOR DIGIT 1000", "GET VARIABLE X",
                    'SET VARIABLE FOO "bar"', 'STREAM FILE beep ""', 'VERBOSE "after" 1'):
            replies.append((await ch.stream.command(cmd), ch.stream.hung_up))

    assert ivr.server is not None
    ivr.server.routes["probe"] = probe
    await with_bystanders(ivr, lambda: ScriptedCaller("H", route="probe", variables={"X": "y"}).call(ivr.host, ivr.port))
    codes = [(r.code, r.result, hung) for r, hung in replies]
    assert codes == [(200, "-1", False), (511, "", True), (200, "1", True), (200, "1", True),
                     (511, "", True), (200, "1", True)]


async def test_trying_520_510_and_utf8(ivr: IvrHarness) -> None:
    seen: dict[str, AgiReply] = {}

    async def probe(ch: AgiChannel) -> None:
        seen["exec"] = await ch.stream.command("EXEC Playback beep")
        seen["usage"] = await ch.stream.command("GET DATA")
        seen["unknown"] = await ch.stream.command("FROBNICATE THE WIDGET")
        await ch.set_variable("KOVAR", "한국어 값 \"인용\"")
        seen["korean"] = await ch.stream.command("GET FULL VARIABLE ${KOVAR}")
        await ch.verbose("안녕하세요 고객센터입니다")

    assert ivr.server is not None
    ivr.server.routes["probe"] = probe
    log = await with_bystanders(ivr, lambda: ScriptedCaller("", route="probe", trying=True).call(ivr.host, ivr.port))
    assert seen["exec"] == AgiReply(200, "0")  # the 100 Trying line was absorbed
    assert seen["usage"].code == 520 and "DTMF" in seen["usage"].extra
    assert seen["unknown"].code == 510
    assert seen["korean"].data == '한국어 값 "인용"'
    assert log.variables["KOVAR"] == '한국어 값 "인용"'  # type: ignore[attr-defined]


async def test_broken_utf8_and_garbage_end_only_that_call(ivr: IvrHarness) -> None:
    async def trouble() -> None:
        reader, writer = await raw(ivr)
        writer.write(b"".join(environment()))
        await reader.readline()  # ANSWER
        writer.write(b"200 result=0\n")
        await reader.readline()  # GET FULL VARIABLE ${CHANNEL(linkedid)}
        writer.write(b"200 result=1 (\xff\xfe\xc3)\n")  # not UTF-8: decoded leniently
        await reader.readline()  # SET VARIABLE CONTACT_ID
        writer.write(b"this is not AGI\n")
        assert await reader.read() == b""  # the server ended this call and closed
        writer.close()

    await with_bystanders(ivr, trouble)
    await no_calls_left(ivr)
    assert ivr.server is not None and ivr.server.failed == 1


async def test_silent_client_times_out_alone(ivr: IvrHarness) -> None:
    async def trouble() -> object:
        return await ScriptedCaller("9 S").call(ivr.host, ivr.port)  # stops answering mid-menu

    log = await with_bystanders(ivr, trouble)
    assert log.closed_by_server  # type: ignore[attr-defined]
    async with ivr.db.session() as session:
        row = (await session.execute(select(Contact).where(
            Contact.call_id == log.variables["CHANNEL(linkedid)"]))).scalar_one()  # type: ignore[attr-defined]
    assert row.ivr_path == "main:9 > hangup"  # the record says where the call was lost


async def test_abrupt_close_and_unknown_route(ivr: IvrHarness) -> None:
    async def trouble() -> list[object]:
        return await asyncio.gather(ScriptedCaller("9 X").call(ivr.host, ivr.port),
                                    ScriptedCaller("", route="nosuchroute").call(ivr.host, ivr.port))

    closed, unknown = await with_bystanders(ivr, trouble)  # type: ignore[misc]
    assert closed.hung_up
    assert unknown.closed_by_server and unknown.commands == ['VERBOSE "dasan: no AGI route nosuchroute" 1']
    await no_calls_left(ivr)


async def test_asterisk_gone_without_a_hangup_leaves_the_call_open(ivr: IvrHarness) -> None:
    """The socket closing with no HANGUP from Asterisk (its node died) is no caller hang-up:
    the IVR keeps its path and leaves the end and outcome to the AMI bridge or the cluster
    watch (lost_with_node); a hang-up Asterisk announced still closes the call as ivr_hangup."""
    async def trouble() -> list[object]:
        return await asyncio.gather(ivr.dial("9 X"), ivr.dial("9 H"))

    gone, hung_up = await with_bystanders(ivr, trouble)  # type: ignore[misc]
    await no_calls_left(ivr)
    async with ivr.db.session() as session:
        rows = {c.call_id: c for c in (await session.scalars(select(Contact).where(Contact.call_id.in_(
            [gone.variables["CHANNEL(linkedid)"], hung_up.variables["CHANNEL(linkedid)"]])))).all()}
    lost, ended = rows[gone.variables["CHANNEL(linkedid)"]], rows[hung_up.variables["CHANNEL(linkedid)"]]
    assert lost.ivr_path == "main:9 > link_lost"
    assert lost.ended_at is None and lost.outcome is None and lost.hangup_side is None
    assert ended.ivr_path == "main:9 > hangup" and ended.outcome == "ivr_hangup" and ended.ended_at is not None


async def test_shutdown_drains_calls_in_progress(ivr: IvrHarness) -> None:
    # slow channels: every reply takes 50 ms, so the calls are mid-menu when stop() begins
    calls = [asyncio.create_task(ivr.dial("9 1 4", delay=0.05)) for _ in range(10)]
    await eventually(lambda: ivr.server is not None and ivr.server.served == 10, "all ten calls in the menu")
    assert ivr.server is not None and len(ivr.server.calls) == 10
    await ivr.stop()
    logs = await asyncio.gather(*calls)
    assert all(log.variables.get("QUEUE") == "en" for log in logs)
    # and the server no longer accepts calls
    with pytest.raises(OSError):
        await asyncio.open_connection(ivr.host, ivr.port)


async def test_database_down_callers_still_reach_their_queue(tmp_path: Path) -> None:
    # a database without tables: every write fails, the menus and routing go on
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    harness = await IvrHarness(db, MemoryBus(), now=DAY).start()
    try:
        logs = await asyncio.gather(*(harness.dial(s) for s in ("3", "9 2 1 2", "1 1")))
    finally:
        await harness.stop()
        await db.dispose()
    assert [(log.variables.get("IVR_RESULT"), log.variables.get("QUEUE")) for log in logs] == \
        [("queue", "general-ko"), ("queue", "zh"), ("hangup", None)]
    assert all("CONTACT_ID" not in log.variables for log in logs)
    assert harness.server is not None and harness.server.failed == 0


async def test_missing_prompt_files_do_not_end_the_call(ivr: IvrHarness) -> None:
    # Asterisk 22 answers -1 at once for a missing sound (seen on a real Asterisk, see
    # test_agi_asterisk.py); the channel still lives, so keys are read with WAIT FOR DIGIT.
    missing = {"dasan/main-menu", "dasan/transport-menu", "dasan/transfer", "dasan/goodbye"}

    async def trouble() -> object:
        return await asyncio.gather(ScriptedCaller("1 2", missing=missing).call(ivr.host, ivr.port),
                                    ScriptedCaller("6 12345#", missing=missing).call(ivr.host, ivr.port))

    to_queue, lookup = await with_bystanders(ivr, trouble)  # type: ignore[misc]
    assert (to_queue.variables["QUEUE"], to_queue.variables["TOPIC"]) == ("general-ko", "transport")
    assert "CHANNEL STATUS" in to_queue.commands and "WAIT FOR DIGIT 5000" in to_queue.commands
    assert lookup.variables["IVR_RESULT"] == "hangup" and ivr.call_for(lookup).path[-1] == "status:12345"
