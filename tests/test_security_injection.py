"""Issue #21, critical part: nothing a user types reaches Asterisk as a command.

Each finding is replayed as the security test found it, over real sockets: a pause reason with
line breaks through the console API to an AMI peer, a menu whose sound folder carries an
``EXEC`` line over FastAGI, a time zone that Asterisk would evaluate, a music class that turns
a section into a template, and a quote in an agent's name inside ``callerid``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.agi.wire import parse_args
from ivr.ami.agents import AgentCommandError
from ivr.ami.connection import AmiConnection
from ivr.ami.models import AgentState
from ivr.ami.service import AmiBridge
from ivr.ami.wire import UnsafeAmiValue
from ivr.asterisk.apply import AmiSession
from ivr.asterisk.render import RenderError, render
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
from ivr.db import Database
from ivr.engine.menu import load_menus
from ivr.queues import load_queues
from ivr.yamlfile import DataError
from tests.support.ami_harness import rig, wait_for
from tests.support.ami_peer import AmiPeer
from tests.support.console import PASSWORD, Console, prepare_settings, serve_console
from tests.support.ivr_harness import IvrHarness

# The payloads of the security test (issue #21).
PAUSE_INJECTION = ("x\r\n\r\nAction: Originate\r\nChannel: Local/s@dasan-ivr\r\nApplication: MixMonitor\r\n"
                   "Data: /tmp/m.wav,,id >/tmp/PWNED\r\nAsync: true")
FOLDER_INJECTION = 'dasan\nEXEC MixMonitor "/tmp/m2.wav,,id >/tmp/PWNED"\nNOOP'
DANGEROUS_ACTIONS = {"originate", "dbput", "command", "updateconfig", "moduleload"}


def _dangerous(actions: list[dict[str, str]]) -> list[dict[str, str]]:
    return [a for a in actions if a.get("Action", "").lower() in DANGEROUS_ACTIONS]


# ---------------------------------------------------------------------------------------
# AMI: the pause reason


@pytest.fixture
async def console_with_bridge(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[Console, AmiPeer]]:
    """The console and the AMI bridge on one context, the bridge logged in to an AMI peer."""
    prepare_settings(settings, tmp_path)
    peer = AmiPeer(settings.ami.username, settings.ami.secret)
    peer.queues |= {"general-wide", "en"}
    settings.ami.port = await peer.start()
    settings.ami.enabled = True
    async with serve_console(settings) as console:
        bridge = AmiBridge(console.ctx, metrics_interval=0.05, callbacks=False)
        await bridge.start()
        try:
            await peer.wait_login(1)
            yield console, peer
        finally:
            await bridge.stop()
            await peer.close()


async def _sign_in(session: aiohttp.ClientSession, console: Console, username: str) -> str:
    async with session.post(f"{console.url}/api/login", json={"username": username, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["csrf_token"])


async def test_pause_reason_with_line_breaks_is_refused_and_nothing_reaches_asterisk(
        console_with_bridge: tuple[Console, AmiPeer]) -> None:
    console, peer = console_with_bridge
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        csrf = await _sign_in(session, console, "kim.minji")

        async def post(body: dict[str, Any]) -> tuple[int, Any]:
            async with session.post(f"{console.url}/api/console/agent/state", json=body,
                                    headers={"X-CSRF-Token": csrf}) as r:
                return r.status, await r.json()

        assert (await post({"action": "login"}))[0] == 202
        await wait_for(lambda: len(peer.members) == 3, timeout=15)
        for reason in (PAUSE_INJECTION, "lunch\nAction: DBPut\nFamily: pwned\nKey: by\nVal: x", "a\rb", "a\x00b"):
            status, answer = await post({"action": "pause", "reason": reason})
            assert status == 400, answer
            assert "reason" in answer["error"] and "줄바꿈" in answer["error"]
        # The path is live: a plain reason is paused with, and only it arrives.
        assert (await post({"action": "pause", "reason": "교육 training"}))[0] == 202
        await wait_for(lambda: any(a.get("Action") == "QueuePause" for a in peer.actions), timeout=15)
    pauses = [a for a in peer.actions if a.get("Action") == "QueuePause"]
    assert [a.get("Reason") for a in pauses] == ["교육 training"]
    assert _dangerous(peer.actions) == []
    assert {a["Action"] for a in peer.actions} <= {"Login", "Ping", "QueueStatus", "CoreShowChannels", "QueueAdd",
                                                  "QueuePause"}


async def test_agent_job_with_line_breaks_sends_nothing_and_the_bridge_goes_on(settings: Settings,
                                                                                sqlite_url: str) -> None:
    """A job queued before the console checked reasons (or by anything else) is refused at the wire."""
    bus = MemoryBus()
    errors = await bus.subscribe("live.agents")
    async with rig(settings, sqlite_url, bus) as r:
        r.peer.queues |= {"vi", "general-wide"}
        await bus.enqueue("agent.commands", {"action": "login", "username": "nguyen.thu"})
        await bus.enqueue("agent.commands", {"action": "pause", "username": "nguyen.thu", "reason": PAUSE_INJECTION})
        await bus.enqueue("agent.commands", {"action": "pause", "username": "nguyen.thu", "reason": "break"})
        await wait_for(lambda: any(a.get("Reason") == "break" for a in r.peer.actions), timeout=15)
        while True:  # the refused job is reported to the console, with the reason why
            event = await errors.get(timeout=5)
            if event.get("error"):
                break
        assert "줄바꿈" in event["error"] and event["username"] == "nguyen.thu"
        with pytest.raises(AgentCommandError, match="line breaks"):
            await r.bridge.control.pause("nguyen.thu", "a\r\nAction: Command\r\nCommand: core stop now")
    assert _dangerous(r.peer.actions) == []
    assert all("\n" not in v and "\r" not in v for a in r.peer.actions for v in a.values())


async def test_a_stored_reason_with_line_breaks_does_not_stop_a_restore(settings: Settings, sqlite_url: str) -> None:
    """A pause reason stored before reasons were checked: the member is re-added, the reason one line."""
    async with rig(settings, sqlite_url, MemoryBus()) as r:
        r.peer.queues |= {"vi", "general-wide"}
        async with r.ctx.db.transaction() as session:
            state = await session.get(AgentState, "nguyen.thu")
            assert state is not None
            state.logged_in, state.paused, state.reason = True, True, "old\r\nAction: DBPut\x00"
        done = await r.bridge.control.restore()
    assert [d for d in done if d.startswith("nguyen.thu: re-added")], done
    adds = [a for a in r.peer.actions if a.get("Action") == "QueueAdd"]
    assert adds and all(a.get("Reason") == "old Action: DBPut" and a.get("Paused") == "true" for a in adds), adds
    assert _dangerous(r.peer.actions) == []


async def test_every_ami_session_refuses_line_breaks_in_any_header(settings: Settings) -> None:
    peer = AmiPeer(settings.ami.username, settings.ami.secret)
    port = await peer.start()
    conn = AmiConnection("127.0.0.1", port, settings.ami.username, settings.ami.secret)
    conn.start()
    try:
        await asyncio.wait_for(conn.logged_in.wait(), 10)
        bad_actions: list[dict[str, Any]] = [
            {"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "true", "Reason": PAUSE_INJECTION},
            {"Action": "Originate", "Channel": "Local/1@x", "Exten": "010\r\nAction: DBPut", "Context": "c"},
            {"Action": "Originate", "Channel": "Local/1@x", "Variable": ["A=1", "B=2\nAction: Command"]},
            {"Action": "Ping", "X-Evil: 1\r\nAction": "Command"},
            {"Action": "Ping\x00", "ActionID": "1"},
        ]
        for action in bad_actions:
            with pytest.raises(UnsafeAmiValue):
                await conn.send(action)
        assert (await conn.send({"Action": "Ping"})).get("Response") == "Success"  # the session lives
        # `dasan asterisk apply`'s session goes through the same gate.
        async with AmiSession("127.0.0.1", port, settings.ami.username, settings.ami.secret) as session:
            with pytest.raises(UnsafeAmiValue):
                await session.action({"Action": "Reload", "Module": "app_queue.so\r\nAction: Command"})
            assert (await session.action({"Action": "Ping"})).get("Response") == "Success"
    finally:
        await conn.close()
        await peer.close()
    assert [a["Action"] for a in peer.actions] == ["Login", "Ping", "Login", "Ping", "Logoff", "Logoff"] or \
        sorted(a["Action"] for a in peer.actions) == ["Login", "Login", "Logoff", "Logoff", "Ping", "Ping"]


# ---------------------------------------------------------------------------------------
# AGI: the sound folder


def _menu_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (DEFAULT_MENUS / "main.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "menus" / "main.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "key"), [
    ("sound_folder: dasan", f"sound_folder: {json.dumps(FOLDER_INJECTION)}", "sound_folder"),
    ("sound_folder: dasan", "sound_folder: ../../../../etc", "sound_folder"),
    ("sound_folder: dasan", "sound_folder: /var/spool", "sound_folder"),
    ('lang-en: {en: "', 'lang-en: {"en\\nEXEC System id": "', "prompts.lang-en"),
    ("topic: waste", 'topic: "waste\\nEXEC System id"', "topic"),
])
def test_menu_fields_that_reach_asterisk_are_refused_with_file_and_line(tmp_path: Path, old: str, new: str,
                                                                        key: str) -> None:
    path = _menu_with(tmp_path, old, new)
    with pytest.raises(DataError) as caught:
        load_menus(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if new in text)
    assert any(p.startswith(f"{path}:{line}: ") and key in p for p in caught.value.problems), caught.value.problems


@pytest.fixture
async def ivr(sqlite_url: str) -> AsyncIterator[IvrHarness]:
    db = Database(sqlite_url)
    harness = await IvrHarness(db, MemoryBus()).start()
    yield harness
    await harness.stop()
    await db.dispose()


async def test_a_sound_folder_with_line_breaks_never_becomes_a_second_agi_command(ivr: IvrHarness) -> None:
    """A menu loaded before the check (the attribute set past validation): the wire refuses it."""
    ivr.engine.menus.sound_folder = FOLDER_INJECTION
    log = await ivr.dial("1")
    assert log.commands, "the call reached the IVR"
    assert not any(c.upper().startswith(("EXEC", "NOOP")) for c in log.commands), log.commands
    assert all("PWNED" not in c for c in log.commands)


async def test_a_sound_name_with_space_and_quote_arrives_as_one_argument(ivr: IvrHarness) -> None:
    ivr.engine.menus.sound_folder = 'my "dasan" \\ sounds'
    log = await ivr.dial("T T T T")
    plays = [c for c in log.commands if c.startswith(("STREAM FILE", "GET DATA"))]
    assert plays
    for command in plays:
        args = parse_args(command)
        assert args[2].startswith('my "dasan" \\ sounds/') or '/my "dasan" \\ sounds/' in args[2], command
        assert len(args) == (4 if command.startswith("STREAM FILE") else 5), (command, args)
    assert 'my "dasan" \\ sounds/main-menu' in log.heard, log.heard


# ---------------------------------------------------------------------------------------
# Rendered files: time zone, music class, callerid


def _queues_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = tmp_path / "queues"
    if not folder.exists():
        shutil.copytree(DEFAULT_QUEUES, folder)
    path = folder / file
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize(("file", "old", "new", "key"), [
    ("queues.yaml", "timezone: Asia/Seoul", "timezone: ${DB(pwned/by)}", "timezone"),
    ("queues.yaml", "timezone: Asia/Seoul", "timezone: Asia/Nowhere", "timezone"),
    ("queues.yaml", "timezone: Asia/Seoul", "timezone: '../../etc/localtime'", "timezone"),
    ("queues.yaml", "musicclass: default", "musicclass: x](!)", "defaults.musicclass"),
    ("queues.yaml", "musicclass: default", "musicclass: ../../..", "defaults.musicclass"),
    ("agents.yaml", "name: 김민지", 'name: "김민지\\n[agent9999]"', "agents.0.name"),
    ("agents.yaml", "language: vi", "language: 'vi;x'", "agents.3.language"),
])
def test_queue_fields_rendered_into_asterisk_are_checked_with_file_and_line(
        tmp_path: Path, settings: Settings, file: str, old: str, new: str, key: str) -> None:
    settings.queues_dir = _queues_with(tmp_path, file, old, new)
    with pytest.raises(DataError) as caught:
        load_queues(settings.queues_dir)
    path = settings.queues_dir / file
    where = f"{path}:{_line_of(path, new)}: {key}: "
    assert any(p.startswith(where) for p in caught.value.problems), (where, caught.value.problems)
    with pytest.raises(DataError):  # the renderer loads the same way: nothing is written
        render(settings)


def test_a_name_ending_in_a_line_break_is_refused_when_loaded(tmp_path: Path) -> None:
    """Names are checked whole: Python's ``$`` also matches before a final line break, so a prompt
    or queue name "x\\n" once passed ``^...$`` (and failed only later, at the wire or the renderer)."""
    menu = _menu_with(tmp_path, "\n  main-menu:\n", '\n  "main-menu\\n":\n')
    with pytest.raises(DataError) as caught:
        load_menus(menu)
    where = f"{menu}:{_line_of(menu, chr(34) + 'main-menu')}: prompts.main-menu"
    assert any(p.startswith(where) and "prompt names are" in p for p in caught.value.problems), caught.value.problems
    folder = _queues_with(tmp_path, "queues.yaml", "\n  zh:\n", '\n  "zh\\n":\n')
    with pytest.raises(DataError) as caught:
        load_queues(folder)
    assert any("queue name 'zh\\n' (expected" in p for p in caught.value.problems), caught.value.problems


def test_render_refuses_what_bypassed_the_loader(tmp_path: Path, settings: Settings) -> None:
    q = load_queues(DEFAULT_QUEUES)
    assert "SITE_TZ=Asia/Seoul" in render(settings, q)["extensions.conf"]
    for field, value in (("timezone", "${DB(pwned/by)}"), ("timezone", "Mars/Base")):
        bad = q.model_copy(update={field: value})
        with pytest.raises(RenderError, match="time zone"):
            render(settings, bad)
    for musicclass in ("x](!)", "default\n"):  # checked whole: "$" also matches before a final "\n"
        bad_defaults = q.defaults.model_copy(update={"musicclass": musicclass})
        with pytest.raises(RenderError, match="musicclass"):
            render(settings, q.model_copy(update={"defaults": bad_defaults}))
    settings.ami.username = "dasan\n"
    with pytest.raises(RenderError, match=r"ami\.username"):
        render(settings, q)
    settings.ami.username = "dasan"
    settings.recordings.dir = tmp_path / "rec ${DB(pwned/by)}"
    with pytest.raises(RenderError, match=r"recordings\.dir"):
        render(settings, q)


def test_a_quote_in_an_agent_name_stays_inside_callerid(tmp_path: Path, settings: Settings) -> None:
    settings.queues_dir = _queues_with(tmp_path, "agents.yaml", "name: 김민지", 'name: \'Kim "MJ" <666> \\ x; y\'')
    pjsip = render(settings)["pjsip.conf"]
    line = next(text for text in pjsip.splitlines() if text.startswith("callerid") and "agent1001" in text)
    assert line == r'callerid = "Kim \"MJ\" <666> \\ x\; y" <agent1001>'
    value = config_value(line)
    assert callerid_parse(value) == ('Kim "MJ" <666> \\ x; y', "agent1001")


# Asterisk's readers, ported for the checks above and the property test.


def config_value(line: str) -> str:
    """The value of ``key = value`` as main/config.c reads it: ``\\;`` is a ';', a bare ';' a comment."""
    out, i = "", 0
    _key, _, rest = line.partition("=")
    while i < len(rest):
        ch = rest[i]
        if ch == ";":
            if out.endswith("\\"):
                out = out[:-1] + ";"
                i += 1
                continue
            break
        out += ch
        i += 1
    return out.strip()


def _strip_quoted(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


def _unescape_quoted(s: str) -> str:
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\":
            i += 1
            if i >= len(s):
                break
        out += s[i]
        i += 1
    return out


def callerid_parse(value: str) -> tuple[str, str]:
    """main/callerid.c ``ast_callerid_parse`` for the ``"name" <number>`` form."""
    instr = _strip_quoted(value)
    ls = instr.rfind("<")
    assert ls >= 0
    le = instr.rfind(">", ls)
    number = instr[ls + 1: le if le >= 0 else len(instr)]
    return _unescape_quoted(_strip_quoted(instr[:ls])), number


# ---------------------------------------------------------------------------------------
# The console: a bad value is a 422 with the message, never a 500


async def test_console_refuses_bad_fields_and_the_admin_page_survives_a_bad_file(settings: Settings,
                                                                                  tmp_path: Path) -> None:
    async with serve_console(prepare_settings(settings, tmp_path)) as console:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            csrf = await _sign_in(session, console, "super1")

            async def save(key: str, old: str, new: str) -> tuple[int, Any]:
                async with session.get(f"{console.url}/api/console/admin/file", params={"file": key}) as r:
                    current = await r.json()
                assert old in current["text"], old
                body = {"text": current["text"].replace(old, new, 1), "sha256": current["sha256"]}
                async with session.post(f"{console.url}/api/console/admin/file", params={"file": key}, json=body,
                                        headers={"X-CSRF-Token": csrf}) as r:
                    return r.status, await r.json()

            for key, old, new, field in (
                    ("menu:main.yaml", "sound_folder: dasan", f"sound_folder: {json.dumps(FOLDER_INJECTION)}",
                     "sound_folder"),
                    ("queues", "timezone: Asia/Seoul", "timezone: ${DB(pwned/by)}", "timezone"),
                    ("queues", "musicclass: default", "musicclass: x](!)", "defaults.musicclass"),
                    ("agents", "name: 김민지", 'name: "김민지\\"\\n[x]"', "agents.0.name")):
                status, answer = await save(key, old, new)
                assert status == 422, answer
                path = {"queues": settings.queues_dir / "queues.yaml", "agents": settings.queues_dir / "agents.yaml",
                        "menu:main.yaml": settings.agi.menus_dir / "main.yaml"}[key]
                expect = f"{path.name}:{_line_of(path, old)}: {field}: "  # the file kept its old text
                assert any(p.startswith(expect) for p in answer["problems"]), (expect, answer["problems"])
            # A file broken on disk (written before these checks): the page names the problem.
            path = settings.queues_dir / "queues.yaml"
            path.write_text(path.read_text().replace("timezone: Asia/Seoul", "timezone: ${DB(pwned/by)}"))
            async with session.get(f"{console.url}/console/admin") as r:
                page = await r.text()
                assert r.status == 200, page[:2000]
            assert re.search(rf"queues\.yaml:{_line_of(path, 'timezone:')}: timezone", page)
