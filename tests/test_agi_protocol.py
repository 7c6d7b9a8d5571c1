"""The AGI protocol layer against real Asterisk 22 bytes (tests/data/asterisk-captures).

Every recorded FastAGI connection is replayed against our server chunk for chunk: the
server sends the recorded commands through ``AgiStream`` and must get the same replies,
including the unsolicited HANGUP line, 511 on a dead channel, 520 usage blocks and UTF-8.
"""

from __future__ import annotations

import pytest

from ivr.agi.channel import AgiChannel
from ivr.agi.protocol import AgiReply, parse_reply, quote
from ivr.agi.server import FastAgiServer
from tests.support.agi_captures import CaptureReplay, commands, connections, read_frames
from tests.support.data import CAPTURES

LOGS = sorted(CAPTURES.glob("*/agi.log"))


@pytest.mark.parametrize(("line", "expected"), [
    ("200 result=0", AgiReply(200, "0")),
    ("200 result=0 endpos=11234", AgiReply(200, "0", None, 11234)),
    ("200 result=-1 endpos=36160", AgiReply(200, "-1", None, 36160)),
    ("200 result= (timeout)", AgiReply(200, "", "timeout")),
    ("200 result=12 (timeout)", AgiReply(200, "12", "timeout")),
    ("200 result=1*3", AgiReply(200, "1*3")),
    ("200 result=1 (hello world)", AgiReply(200, "1", "hello world")),
    ("200 result=1 ()", AgiReply(200, "1", "")),
    ("200 result=1 (한국어 값)", AgiReply(200, "1", "한국어 값")),
    ("200 result=-2", AgiReply(200, "-2")),
    ("100 result=0 Trying...", AgiReply(100, "0", extra="Trying...")),
    ("510 Invalid or unknown command", AgiReply(510, extra="Invalid or unknown command")),
    ("511 Command Not Permitted on a dead channel or intercept routine",
     AgiReply(511, extra="Command Not Permitted on a dead channel or intercept routine")),
])
def test_parse_reply(line: str, expected: AgiReply) -> None:
    assert parse_reply(line) == expected


def test_quote_escapes_and_refuses_line_breaks() -> None:
    assert quote('say "hi" now') == '"say \\"hi\\" now"'
    assert quote("0123456789#*") == '"0123456789#*"'
    for bad in ('say "hi"\nnow', "a\rb", "a\x00b"):
        with pytest.raises(ValueError, match="line breaks"):  # ivr.agi.wire.UnsafeAgiValue
            quote(bad)


def test_framed_captures_parse_exactly() -> None:
    for log in LOGS:
        frames = read_frames(log)
        rx = b"".join(f.data for f in frames if f.direction == "A>S")
        tx = b"".join(f.data for f in frames if f.direction == "S>A")
        assert rx == (log.parent / "agi.rx.raw").read_bytes(), log
        assert tx == (log.parent / "agi.tx.raw").read_bytes(), log
        assert b"\r" not in rx  # AGI is LF only


def _all_connections() -> list[tuple[str, int]]:
    return [(log.parent.name, conn) for log in LOGS for conn in connections(log)]


@pytest.mark.parametrize(("scenario", "conn"), _all_connections())
async def test_replay_capture(scenario: str, conn: int) -> None:
    frames = connections(CAPTURES / scenario / "agi.log")[conn]
    sent = commands(frames)
    replies: list[AgiReply] = []
    hung_up_after: list[bool] = []
    envs: list[dict[str, str]] = []

    async def replay(ch: AgiChannel) -> None:
        envs.append(dict(ch.env))
        for command in sent:
            replies.append(await ch.stream.command(command))
            hung_up_after.append(ch.stream.hung_up)

    env_text = b"".join(f.data for f in frames if f.direction == "A>S").decode()
    script = next(line.split(": ", 1)[1] for line in env_text.splitlines() if line.startswith("agi_network_script"))
    server = FastAgiServer({script: replay}, "127.0.0.1", 0, command_timeout=5)
    (host, port), *_ = await server.start()
    try:
        await CaptureReplay(frames).run(host, port)
    finally:
        await server.stop()
    assert server.failed == 0 and len(replies) == len(sent)
    assert envs[0]["agi_version"].startswith("22") and envs[0]["agi_network"] == "yes"
    by_command = dict(zip(sent, replies, strict=False))
    if scenario == "fastagi-env" and envs[0]["agi_type"] == "PJSIP":
        assert by_command["GET DATA beep 7000 1"] == AgiReply(200, "1")
        assert by_command["WAIT FOR DIGIT 6000"].value == ord("2")
        assert by_command["GET DATA"].code == 520
        assert "<replaceable>file</replaceable>" in by_command["GET DATA"].extra
        assert "<literal>-1</literal>" in by_command["WAIT FOR DIGIT"].extra
        assert by_command["GET VARIABLE KOVAR"].data == "한국어 값"
        assert by_command["GET FULL VARIABLE ${NOT_SET_VAR}"] == AgiReply(200, "1", "")
        assert by_command["GET VARIABLE NOT_SET_VAR"] == AgiReply(200, "0")
        assert by_command["FROBNICATE THE WIDGET"].code == 510
        assert by_command["EXEC NoSuchApplication foo"].result == "-2"
        assert by_command["HANGUP"] == AgiReply(200, "1")
    if scenario == "hangup-during-agi":
        first_dead = sent.index("WAIT FOR DIGIT 1000")
        assert replies[first_dead].code == 511
        assert hung_up_after[first_dead] and not hung_up_after[first_dead - 1]
        assert by_command["GET VARIABLE CHANNEL(state)"].data == "Up"  # still allowed when dead
        assert by_command['STREAM FILE beep ""'].code == 511
        assert by_command['VERBOSE "after hangup" 1'] == AgiReply(200, "1")
