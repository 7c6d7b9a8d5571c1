"""Property test (issue #21): any string a user can type, driven through every path to Asterisk.

Arbitrary text (with CR, LF, NUL, quotes, ``${``, ``$[``, ``]``, ``;`` mixed in) goes into each
user field that reaches Asterisk and through the real encoders and the real renderer:

- a pause reason and an Originate value over a real AMI socket to an AMI peer;
- AGI arguments (sound names, variable values, prompts) over a real FastAGI socket, and a menu's
  sound folder through the IVR engine;
- queue, agent and menu fields into the rendered configuration files.

Either the value is refused with the clear error (``UnsafeAmiValue``, ``UnsafeAgiValue``, a
validation error naming the field, ``RenderError``), or the output has exactly the expected
structure: one AMI action with the same headers and the value intact, the AGI arguments Asterisk's
parser reads, and files with the same sections, keys, templates and variable expansions.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from ivr.agi.caller import ScriptedCaller
from ivr.agi.protocol import parse_reply
from ivr.agi.server import FastAgiServer
from ivr.agi.wire import UnsafeAgiValue, agi_arg, parse_args
from ivr.ami.agents import AgentCommandError
from ivr.ami.connection import AmiConnection
from ivr.ami.models import AgentState
from ivr.ami.wire import UnsafeAmiValue
from ivr.asterisk.render import RenderError, render
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.db import Database
from ivr.engine.channel import Channel
from ivr.queues import QueueConfig
from ivr.yamlfile import DataError
from tests.support.agi_captures import connections
from tests.support.ami_harness import rig
from tests.support.ami_peer import AmiPeer
from tests.support.data import CAPTURES
from tests.support.ivr_harness import IvrHarness

# Text with the characters that matter over-represented; no lone surrogates (not UTF-8 at all).
SPECIAL = ["\r", "\n", "\r\n", "\x00", '"', "\\", "${", "$[", "]", "[", ";", "(!)", ",", ")", " ", "\t", ": ",
           "Action: Originate", "EXEC System id", "#include", "=>", "/", "..", "김"]
TEXT = st.lists(st.one_of(st.sampled_from(SPECIAL), st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)),
                max_size=8).map("".join)
UNSAFE = re.compile(r"[\r\n\x00]")


# ---------------------------------------------------------------------------------------
# AMI


def test_ami_values_never_add_a_header_or_an_action(settings: Settings) -> None:
    loop = asyncio.new_event_loop()
    peer = AmiPeer(settings.ami.username, settings.ami.secret)
    port = loop.run_until_complete(peer.start())
    conn = AmiConnection("127.0.0.1", port, settings.ami.username, settings.ami.secret)

    async def login() -> None:
        conn.start()
        await asyncio.wait_for(conn.logged_in.wait(), 10)

    loop.run_until_complete(login())

    async def send(action: dict[str, Any]) -> None:
        before = len(peer.actions)
        try:
            await conn.send(action)
        except UnsafeAmiValue:
            refused = True
        except TimeoutError:  # an Originate the peer leaves pending is fine: we only read the wire
            refused = False
        else:
            refused = False
        await conn.send({"Action": "Ping"})  # everything sent before it has been read
        new = peer.actions[before:]
        flat = [v for value in action.values() for v in (value if isinstance(value, list) else [value])]
        assert refused == any(UNSAFE.search(v) for v in flat)
        if refused:
            assert [a["Action"] for a in new] == ["Ping"]
            return
        assert len(new) == 2 and new[1]["Action"] == "Ping"
        got = new[0]
        assert set(got) == set(action) | {"ActionID"}
        for key, value in action.items():
            if not isinstance(value, list):
                assert got[key] == value.strip(" ") or got[key] == value

    @hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(TEXT)
    def run(value: str) -> None:
        loop.run_until_complete(send({"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "true",
                                      "Reason": value}))
        loop.run_until_complete(send({"Action": "QueueAdd", "Queue": "general-ko", "Interface": "PJSIP/agent1001",
                                      "MemberName": value, "Variable": [f"X={value}"]}))

    try:
        run()
    finally:
        loop.run_until_complete(conn.close())
        loop.run_until_complete(peer.close())
        loop.close()
    assert not [a for a in peer.actions if a.get("Action", "").lower() in ("originate", "dbput", "command")]


def test_pause_reasons_through_the_agent_commands_never_add_a_header(settings: Settings, sqlite_url: str) -> None:
    """The pause reason's own path below the console: the bridge's AgentControl pauses with it
    (an ``agent.commands`` job), and re-applies a reason stored in the database when Asterisk
    lost the member (restore). Either the pause is refused naming the line break and nothing is
    sent, or exactly one QueuePause carries the reason unchanged; a stored reason comes back as
    one line with its words, in one QueueAdd per queue."""
    loop = asyncio.new_event_loop()
    manager = rig(settings, sqlite_url, MemoryBus())
    r = loop.run_until_complete(manager.__aenter__())
    r.peer.queues |= {"vi", "general-wide"}
    skills = ["general-wide", "vi"]  # nguyen.thu's queues (agents.yaml)
    loop.run_until_complete(r.bridge.control.login("nguyen.thu"))

    async def since(before: int) -> list[dict[str, str]]:
        """What reached the peer since ``before``, but the bridge's own Ping/QueueStatus/CoreShowChannels."""
        await r.settle()  # every action sent has been read, every event it caused committed
        return [a for a in r.peer.actions[before:] if a["Action"] not in ("Ping", "QueueStatus", "CoreShowChannels")]

    async def pause(value: str) -> None:
        before = len(r.peer.actions)
        try:
            await r.bridge.control.pause("nguyen.thu", value)
        except AgentCommandError as exc:
            assert UNSAFE.search(value) and "line breaks" in str(exc), (value, exc)
            assert await since(before) == []
            return
        assert not UNSAFE.search(value), value
        [sent] = await since(before)
        assert sent["Action"] == "QueuePause" and sent["Interface"] == "PJSIP/agent1004"
        assert sent.get("Reason") == (value or None)

    async def restore(value: str) -> None:
        for key in [k for k in r.peer.members if k[1] == "PJSIP/agent1004"]:
            del r.peer.members[key]  # Asterisk restarted: the member is gone
        async with r.ctx.db.transaction() as session:
            state = await session.get(AgentState, "nguyen.thu")
            assert state is not None
            state.logged_in, state.paused, state.reason = True, True, value
        before = len(r.peer.actions)
        await r.bridge.control.restore()
        sent = await since(before)
        assert [(a["Action"], a.get("Queue"), a.get("Paused")) for a in sent] == [("QueueAdd", q, "true") for q in skills], sent
        for action in sent:
            reason = action.get("Reason", "")
            assert not UNSAFE.search(reason) and reason.split() == value.replace("\x00", " ").split(), (value, action)

    @hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(TEXT)
    def run(value: str) -> None:
        loop.run_until_complete(pause(value))
        loop.run_until_complete(restore(value))

    try:
        run()
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()
    assert not [a for a in r.peer.actions if a.get("Action", "").lower() in ("originate", "dbput", "command")]


# ---------------------------------------------------------------------------------------
# AGI


def test_agi_arguments_are_read_back_exactly_or_refused() -> None:
    @hsettings(max_examples=1000, deadline=None)
    @given(TEXT)
    def run(value: str) -> None:
        try:
            line = f"STREAM FILE {agi_arg(value)} {agi_arg('')}"
        except UnsafeAgiValue:
            assert UNSAFE.search(value)
            return
        assert "\n" not in line and "\r" not in line and "\x00" not in line
        assert parse_args(line) == ["STREAM", "FILE", value, ""]

    run()


def test_the_parser_port_reads_the_recorded_commands_as_asterisk_22_did() -> None:
    """In the captures, a value set with SET VARIABLE came back from GET VARIABLE exactly as
    res_agi.c's parse_args read it: our port reads the same, and agi_arg writes it back."""
    checked = 0
    for log in sorted(CAPTURES.glob("*/agi.log")):
        for frames in connections(log).values():
            values: dict[str, str] = {}
            for i, frame in enumerate(frames):
                if frame.direction != "S>A":
                    continue
                args = parse_args(frame.data.decode().rstrip("\n"))
                if args[:2] == ["SET", "VARIABLE"] and len(args) == 4:
                    values[args[2]] = args[3]
                    assert parse_args(f"SET VARIABLE {args[2]} {agi_arg(args[3])}") == args
                elif args[:2] == ["GET", "VARIABLE"] and args[2] in values:
                    answer = next(f for f in frames[i + 1:] if f.direction == "A>S").data.decode()
                    line = next(x for x in answer.splitlines() if x and x != "HANGUP")
                    assert parse_reply(line).data == values[args[2]], (args, line)
                    checked += 1
    assert checked >= 2  # "hello world" and "한국어 값" were read back by Asterisk 22


def test_agi_commands_over_fastagi_keep_their_arguments() -> None:
    loop = asyncio.new_event_loop()
    holder: dict[str, str] = {}
    outcome: dict[str, BaseException | None] = {}

    async def probe(ch: Channel) -> None:
        value = holder["value"]
        try:
            await ch.set_variable("PROBE", value)
            await ch.play(value, "12")
            await ch.read_digits(value, 1, 2)
            outcome["error"] = None
        except UnsafeAgiValue as exc:
            outcome["error"] = exc

    server = FastAgiServer({"probe": probe}, "127.0.0.1", 0, command_timeout=5)
    (host, port), *_ = loop.run_until_complete(server.start())

    @hsettings(max_examples=120, deadline=None)
    @given(TEXT)
    def run(value: str) -> None:
        holder["value"] = value
        outcome.clear()
        log = loop.run_until_complete(ScriptedCaller("T T T", route="probe", then="timeout").call(host, port, 10))
        unsafe = bool(UNSAFE.search(value))
        assert isinstance(outcome.get("error"), UnsafeAgiValue) == unsafe
        sent = [parse_args(c) for c in log.commands if not c.startswith(("GET VARIABLE", "GET FULL"))]
        if unsafe:
            assert sent == []  # refused before the first byte of the first command
            return
        prompt = value or "silence/1"  # read_digits without a prompt waits on silence
        assert sent[:3] == [["SET", "VARIABLE", "PROBE", value], ["STREAM", "FILE", value, "12"],
                            ["GET", "DATA", prompt, "1000", "2"]]
        assert log.variables["PROBE"] == value and log.heard[:2] == [value, prompt]

    try:
        run()
    finally:
        loop.run_until_complete(server.stop())
        loop.close()


KNOWN_VERBS = {("ANSWER",), ("STREAM", "FILE"), ("GET", "DATA"), ("SET", "VARIABLE"), ("GET", "VARIABLE"),
               ("GET", "FULL"), ("WAIT", "FOR"), ("CHANNEL", "STATUS"), ("VERBOSE",), ("HANGUP",), ("SAY", "DIGITS"),
               ("SAY", "ALPHA")}


def test_menu_sound_folder_through_the_engine_never_adds_an_agi_command(sqlite_url: str) -> None:
    """Even a sound folder that got past the menu loader: every command the IVR sends is one
    known command, and each sound is read back by Asterisk's parser as <folder>/<prompt>."""
    loop = asyncio.new_event_loop()
    db = Database(sqlite_url)
    ivr = loop.run_until_complete(IvrHarness(db, MemoryBus()).start())

    @hsettings(max_examples=60, deadline=None)
    @given(TEXT)
    def run(folder: str) -> None:
        ivr.engine.menus.sound_folder = folder
        log = loop.run_until_complete(ivr.dial("1"))
        for command in log.commands:
            args = parse_args(command)
            assert (tuple(args[:1]) in KNOWN_VERBS or tuple(args[:2]) in KNOWN_VERBS), command
            if tuple(args[:2]) in (("STREAM", "FILE"), ("GET", "DATA")) and args[2] != "silence/1":
                assert args[2].startswith(f"{folder}/") or f"/{folder}/" in args[2], (folder, command)
        if UNSAFE.search(folder):
            assert not [c for c in log.commands if c.startswith(("STREAM FILE", "GET DATA"))]

    try:
        run()
    finally:
        loop.run_until_complete(ivr.stop())
        loop.run_until_complete(db.dispose())
        loop.close()


# ---------------------------------------------------------------------------------------
# Rendered files


_SECTION = re.compile(r"^\[([^\]]*)\](.*)$")


def _shape(text: str) -> list[tuple[str, ...]]:
    """What a file means to Asterisk's config parser, without the values' text: each section
    (with its template/inheritance part), each key, and the expansions in each value."""
    shape: list[tuple[str, ...]] = []
    for raw in text.split("\n"):
        line, i = "", 0
        while i < len(raw):  # main/config.c: ';' starts a comment unless escaped
            if raw[i] == ";" and not line.endswith("\\"):
                break
            line += raw[i]
            i += 1
        line = line.strip()
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            shape.append(("section", m[2]))
            continue
        key, sep, value = line.partition("=")
        assert sep, f"a line that is neither a section nor key = value: {raw!r}"
        shape.append(("key", key.strip().rstrip(">"), str(value.count("${")), str(value.count("$["))))
    return shape


def _shapes(files: dict[str, str]) -> dict[str, list[tuple[str, ...]]]:
    return {name: _shape(text) for name, text in files.items()}


def _base_data(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    queues = yaml.safe_load((settings.queues_dir / "queues.yaml").read_text(encoding="utf-8"))
    agents = yaml.safe_load((settings.queues_dir / "agents.yaml").read_text(encoding="utf-8"))
    queues["queues"]["general-ko"]["musicclass"] = "probe"  # two music classes in every render
    return queues, agents


def _config(queues: dict[str, Any], agents: dict[str, Any]) -> QueueConfig:
    return QueueConfig.model_validate({**queues, "agents": agents["agents"]})


Setter = Callable[[dict[str, Any], dict[str, Any], str], None]
FIELDS: dict[str, tuple[Setter, str]] = {
    "timezone": (lambda q, a, v: q.__setitem__("timezone", v), "Asia/Seoul"),
    "musicclass": (lambda q, a, v: q["queues"]["general-ko"].__setitem__("musicclass", v), "probe"),
    "description": (lambda q, a, v: q["queues"]["general-ko"].__setitem__("description", v), "d"),
    "language": (lambda q, a, v: q["queues"]["general-ko"].__setitem__("language", v), "ko"),
    "agent name": (lambda q, a, v: a["agents"][0].__setitem__("name", v), "김민지"),
    "agent secret": (lambda q, a, v: a["agents"][0].__setitem__("secret", "pw-long-enough-9" + v), "pw-long-enough-9"),
    "agent language": (lambda q, a, v: a["agents"][0].__setitem__("language", v), "ko"),
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_queue_and_agent_fields_never_change_the_rendered_structure(settings: Settings, field: str) -> None:
    setter, safe = FIELDS[field]
    base_q, base_a = _base_data(settings)
    q, a = copy.deepcopy(base_q), copy.deepcopy(base_a)
    setter(q, a, safe)
    expected = _shapes(render(settings, _config(q, a)))

    @hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(TEXT)
    def run(value: str) -> None:
        q, a = copy.deepcopy(base_q), copy.deepcopy(base_a)
        setter(q, a, value)
        try:
            files = render(settings, _config(q, a))
        except ValidationError as exc:  # loading from a file turns this into file:line (DataError)
            assert exc.errors() and all(e["msg"] for e in exc.errors())
            return
        except RenderError as exc:
            assert str(exc)
            return
        assert _shapes(files) == expected, value

    run()


def test_menu_fields_never_change_the_rendered_dialplan(settings: Settings, tmp_path: Path) -> None:
    """The sound folder reaches extensions.conf (the survey's fallback prompts) and the AGI wire."""
    menu_file = settings.agi.menus_dir / "main.yaml"
    base = yaml.safe_load(menu_file.read_text(encoding="utf-8"))
    expected = _shapes(render(settings))

    @hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(TEXT, st.sampled_from(["sound_folder", "prompt language"]))
    def run(value: str, field: str) -> None:
        data = copy.deepcopy(base)
        if field == "sound_folder":
            data["sound_folder"] = value
        else:
            data["prompts"]["survey-question"] = {value: "x"}
        menu_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        try:
            files = render(settings)
        except DataError as exc:
            assert any(str(menu_file) in p for p in exc.problems), exc.problems
            return
        assert _shapes(files) == expected, value

    try:
        run()
    finally:
        menu_file.write_text(yaml.safe_dump(base, allow_unicode=True), encoding="utf-8")
