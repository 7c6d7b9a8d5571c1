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
    assert list(zip(sent, replies, strict=True)) == EXPECTED_REPLIES[(scenario, conn)]
    if scenario == "hangup-during-agi":
        first_dead = sent.index("WAIT FOR DIGIT 1000")
        assert hung_up_after[first_dead] and not hung_up_after[first_dead - 1]


def test_every_replayed_connection_has_its_expected_replies() -> None:
    assert len(_all_connections()) == 8
    assert set(_all_connections()) == set(EXPECTED_REPLIES)


# What Asterisk 22 answered on each recorded connection, read off agi.rx.raw by hand (known
# answers, not parse_reply's output): the replay must parse exactly these, in this order.
OK0, OK1 = AgiReply(200, "0"), AgiReply(200, "1")
DEAD = AgiReply(511, extra="Command Not Permitted on a dead channel or intercept routine")
QUICK_ROUTE = [('VERBOSE "quick route to queue" 1', OK1), ("SET VARIABLE QUEUE general-ko", OK1)]
GET_DATA_USAGE = AgiReply(520, extra=(
    "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
    "Returns the digits received from the channel at the other end."))
WAIT_FOR_DIGIT_USAGE = AgiReply(520, extra=(
    "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a DTMF"
    " digit. Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no digit"
    " is received in the timeout, or the numerical value of the ascii of the digit if one is"
    " received. Use <literal>-1</literal> for the <replaceable>timeout</replaceable> value if"
    " you desire the call to block indefinitely."))


def _fastagi_env(get_data: tuple[str, AgiReply], wait: tuple[str, AgiReply],
                 language: str, callerid: str) -> list[tuple[str, AgiReply]]:
    return [
        ("ANSWER", OK0), get_data, wait,
        ('STREAM FILE hello-world "0123456789#*"', AgiReply(200, "0", endpos=11234)),
        ('SAY DIGITS 123 ""', OK0),
        ("GET VARIABLE NOT_SET_VAR", OK0),
        ("GET FULL VARIABLE ${NOT_SET_VAR}", AgiReply(200, "1", "")),
        ('SET VARIABLE MYVAR "hello world"', OK1),
        ("GET VARIABLE MYVAR", AgiReply(200, "1", "hello world")),
        ("GET FULL VARIABLE ${MYVAR}", AgiReply(200, "1", "hello world")),
        ("GET FULL VARIABLE ${CHANNEL(language)}-${CALLERID(num)}",
         AgiReply(200, "1", f"{language}-{callerid}")),
        ("GET VARIABLE CHANNEL(language)", AgiReply(200, "1", language)),
        ("EXEC Playback beep", OK0),
        ("EXEC NoSuchApplication foo", AgiReply(200, "-2")),
        ("FROBNICATE THE WIDGET", AgiReply(510, extra="Invalid or unknown command")),
        ("GET DATA", GET_DATA_USAGE),
        ("WAIT FOR DIGIT", WAIT_FOR_DIGIT_USAGE),
        ('VERBOSE "안녕하세요 고객센터입니다" 1', OK1),
        ('SET VARIABLE KOVAR "한국어 값"', OK1),
        ("GET VARIABLE KOVAR", AgiReply(200, "1", "한국어 값")),
        ("CHANNEL STATUS", AgiReply(200, "6")),
        ("HANGUP", OK1),
    ]


def _hangup_during_agi(first: tuple[str, AgiReply]) -> list[tuple[str, AgiReply]]:
    return [
        ("ANSWER", OK0), first,
        ("WAIT FOR DIGIT 1000", DEAD),  # the unsolicited HANGUP line came first
        ("GET VARIABLE CHANNEL(state)", AgiReply(200, "1", "Up")),  # still allowed when dead
        ("SET VARIABLE FOO bar", OK1),
        ('STREAM FILE beep ""', DEAD),
        ('VERBOSE "after hangup" 1', OK1),
        ("HANGUP", DEAD),
    ]


EXPECTED_REPLIES: dict[tuple[str, int], list[tuple[str, AgiReply]]] = {
    ("abandoned", 1): QUICK_ROUTE,
    ("agent-actions", 4): QUICK_ROUTE,
    ("agent-actions", 5): QUICK_ROUTE,
    ("answered", 1): [
        ("ANSWER", OK0),
        ('VERBOSE "answered scenario: main menu" 1', OK1),
        ('STREAM FILE hello-world ""', AgiReply(200, "0", endpos=11234)),
        ("GET DATA beep 8000 1", OK1),
        ("SET VARIABLE QUEUE general-ko", OK1),
    ],
    # A PJSIP caller that pressed 1, then 2 (WAIT FOR DIGIT answers the digit's ASCII code).
    ("fastagi-env", 6): _fastagi_env(("GET DATA beep 7000 1", OK1),
                                     ("WAIT FOR DIGIT 6000", AgiReply(200, str(ord("2")))), "ko", "sipp"),
    # A Local channel that pressed nothing.
    ("fastagi-env", 7): _fastagi_env(("GET DATA beep 1500 1", AgiReply(200, "", "timeout")),
                                     ("WAIT FOR DIGIT 1000", OK0), "en", "5550100"),
    ("hangup-during-agi", 2): _hangup_during_agi(('STREAM FILE demo-congrats "#"',
                                                  AgiReply(200, "-1", endpos=36160))),
    ("hangup-during-agi", 3): _hangup_during_agi(("WAIT FOR DIGIT 15000", AgiReply(200, "-1"))),
}
