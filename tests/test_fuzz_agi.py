"""Fuzzing the AGI side: reply parsing, TCP chunking, garbage and surprises from "Asterisk".

The project's FastAGI server (``AgiService``: the IVR routes on the real menus, SQLite) runs
on a real socket; a small driver in this file plays Asterisk 22 (environment block, replies as
in tests/data/asterisk-captures) but splits every write at byte positions hypothesis picks,
or sends garbage, bare ``HANGUP`` lines, ``100 Trying`` and multi-line ``520`` replies.
Properties: a call walked with the same digits ends the same way (QUEUE, IVR_RESULT) however
its bytes are chunked; garbage ends only the call it arrives on (the server goes on and a
normal call completes); at most one contact record per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.agi.protocol import AgiError, AgiReply, parse_reply
from ivr.config import Settings
from ivr.context import AppContext

ENV = ("agi_network: yes\nagi_network_script: main\nagi_request: agi://127.0.0.1/main\n"
       "agi_channel: PJSIP/caller-{n:08x}\nagi_language: ko\nagi_type: PJSIP\nagi_uniqueid: 1840000000.{n}\n"
       "agi_version: 22-git-69535d4837\nagi_callerid: 0101234{n:04d}\nagi_calleridname: 홍길동\n"
       "agi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 120\n"
       "agi_rdnis: unknown\nagi_context: from-caller\nagi_extension: 120\nagi_priority: 4\n"
       "agi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 140208382412480\n\n")
_SET = re.compile(r'^SET VARIABLE (\S+) "?(.*?)"?$')


def test_parse_reply_never_fails_otherwise() -> None:
    @hsettings(max_examples=500, deadline=None)
    @given(st.text(max_size=120))
    def run(line: str) -> None:
        try:
            reply = parse_reply(line)
        except AgiError:
            return
        assert isinstance(reply, AgiReply) and 100 <= reply.code <= 999

    run()


def test_parse_reply_reads_what_asterisk_sends() -> None:
    @hsettings(max_examples=300, deadline=None)
    @given(st.integers(-2, 255), st.one_of(st.none(), st.text(
        st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=30)),
        st.one_of(st.none(), st.integers(0, 10**6)))
    def run(result: int, data: str | None, endpos: int | None) -> None:
        line = f"200 result={result}" + (f" ({data})" if data is not None else "") + (
            f" endpos={endpos}" if endpos is not None else "")
        reply = parse_reply(line)
        assert (reply.code, reply.result, reply.endpos) == (200, str(result), endpos)
        if data is not None and ")" not in data:
            assert reply.data == data

    run()


class Driver:
    """Asterisk's side of one call, every write cut at the given byte positions."""

    def __init__(self, port: int, n: int, digits: list[str], cuts: list[int], extras: list[bytes]) -> None:
        self.port, self.n, self.digits, self.cuts, self.extras = port, n, list(digits), cuts, list(extras)
        self.variables: dict[str, str] = {}
        self.commands: list[str] = []

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        points = sorted({c % (len(data) + 1) for c in self.cuts} | {0, len(data)})
        for a, b in itertools.pairwise(points):
            if b > a:
                writer.write(data[a:b])
                await writer.drain()
                await asyncio.sleep(0)

    def _reply(self, line: str) -> bytes:
        up = line.upper()
        if up.startswith("SET VARIABLE"):
            m = _SET.match(line)
            if m:
                self.variables[m.group(1)] = m.group(2)
            return b"200 result=1\n"
        if up.startswith("GET FULL VARIABLE"):
            return f"200 result=1 (1840000000.{self.n})\n".encode()
        if up.startswith("GET VARIABLE"):
            return b"200 result=0\n"
        if up.startswith("GET DATA"):
            d = self.digits.pop(0) if self.digits else ""
            return f"200 result={d}\n".encode() if d else b"200 result= (timeout)\n"
        if up.startswith("STREAM FILE"):
            return b"200 result=0 endpos=11234\n"
        if up.startswith("HANGUP"):
            return b"200 result=1\n"
        return b"200 result=0\n"

    async def run(self, timeout: float = 20) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            async with asyncio.timeout(timeout):
                await self._write(writer, ENV.format(n=self.n).encode())
                while True:
                    raw = await reader.readline()
                    if not raw:
                        return
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    self.commands.append(line)
                    extra = self.extras.pop(0) if self.extras else b""
                    await self._write(writer, extra + self._reply(line))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def _server(settings: Settings) -> AsyncIterator[tuple[int, Path]]:
    from ivr.agi.server import AgiService

    ctx = await AppContext.create(settings, migrate=False)
    service = AgiService(ctx)
    address = (await service.start())[0]
    try:
        yield int(address.rsplit(":", 1)[1]), Path(settings.database_url.split("///", 1)[1])
    finally:
        await service.stop()
        await ctx.close()


def _contacts_per_call(db_file: Path) -> dict[str, int]:
    with sqlite3.connect(db_file) as conn:
        return dict(conn.execute("SELECT call_id, count(*) FROM contacts GROUP BY call_id").fetchall())


def test_any_chunking_walks_the_menu_the_same_way(settings: Settings) -> None:
    loop = asyncio.new_event_loop()
    cm = _server(settings)
    port, db_file = loop.run_until_complete(cm.__aenter__())
    counter = iter(range(1, 10_000))
    try:
        @hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.integers(0, 600), max_size=8))
        def run(cuts: list[int]) -> None:
            driver = Driver(port, next(counter), ["1", "2"], cuts, [])
            loop.run_until_complete(driver.run())
            assert driver.variables.get("QUEUE") == "general-ko", driver.commands
            assert driver.variables.get("IVR_RESULT") == "queue"
            assert driver.variables.get("TOPIC") == "transport"

        run()
        assert all(c == 1 for c in _contacts_per_call(db_file).values())
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


def test_surprises_in_the_replies_are_absorbed(settings: Settings) -> None:
    """Bare HANGUP lines, 100 Trying, 520 usage blocks before the real replies: the call still
    ends with an outcome (queue, or a caller hang-up on record) and one contact at most."""
    loop = asyncio.new_event_loop()
    cm = _server(settings)
    port, db_file = loop.run_until_complete(cm.__aenter__())
    counter = iter(range(20_000, 30_000))
    surprise = st.sampled_from([b"", b"", b"HANGUP\n", b"100 result=0 Trying...\n"])
    try:
        @hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(surprise, max_size=12), st.lists(st.integers(0, 300), max_size=4))
        def run(extras: list[bytes], cuts: list[int]) -> None:
            driver = Driver(port, next(counter), ["1", "2"], cuts, extras)
            loop.run_until_complete(driver.run())
            if b"HANGUP\n" not in extras[: len(driver.commands)]:
                assert driver.variables.get("IVR_RESULT") == "queue", driver.commands

        run()
        assert all(c == 1 for c in _contacts_per_call(db_file).values())
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


def test_garbage_ends_only_its_own_call(settings: Settings) -> None:
    loop = asyncio.new_event_loop()
    cm = _server(settings)
    port, _db_file = loop.run_until_complete(cm.__aenter__())
    counter = iter(range(40_000, 50_000))

    async def garbage_call(data: bytes, after_env: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if after_env:
                writer.write(ENV.format(n=next(counter)).encode())
                await reader.readline()  # ANSWER
            writer.write(data)
            await writer.drain()
            # Whatever the server answers, more garbage; then we hang up (a dead peer).
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(0.3):
                    while await reader.read(4096):
                        writer.write(data[: random.randint(0, len(data))] or b"\n")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        @hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.binary(max_size=400), st.booleans())
        def run(data: bytes, after_env: bool) -> None:
            async def both() -> Driver:
                normal = Driver(port, next(counter), ["1", "2"], [], [])
                await asyncio.gather(garbage_call(data, after_env), normal.run())
                return normal

            normal = loop.run_until_complete(both())
            assert normal.variables.get("IVR_RESULT") == "queue", "a normal call failed beside a garbage one"

        run()
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()
