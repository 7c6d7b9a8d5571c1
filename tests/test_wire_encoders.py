"""The two gates to Asterisk, byte for byte: every AMI action (ivr.ami.wire) and every AGI
argument (ivr.agi.wire). Expected bytes are written out by hand from the protocols (AMI:
``Key: Value`` CRLF lines, a blank line ends the action; AGI: res_agi.c's ``parse_args``)."""

from __future__ import annotations

import pytest

from ivr.agi.wire import MAX_ARGS, UnsafeAgiValue, agi_arg, agi_line, agi_word, parse_args
from ivr.ami.wire import UnsafeAmiValue, ami_value, check_action, encode_action


def test_an_action_is_its_headers_with_our_action_id_after_the_action_line() -> None:
    action = {"Action": "Originate", "ActionID": "theirs", "Channel": "Local/1@x", "Variable": ["A=1", "B=2"],
              "Async": "true", "Timeout": 30000}
    assert encode_action(action, "bridge-7") == (
        b"Action: Originate\r\nActionID: bridge-7\r\nChannel: Local/1@x\r\nVariable: A=1\r\nVariable: B=2\r\n"
        b"Async: true\r\nTimeout: 30000\r\n\r\n")
    assert encode_action({"Username": "dasan", "Secret": "s3cret"}, "9") == \
        b"Username: dasan\r\nSecret: s3cret\r\nActionID: 9\r\n\r\n"


def test_values_are_text_and_numbers_become_their_digits() -> None:
    assert ami_value("일반 상담") == "일반 상담"
    assert ami_value(1234) == "1234"
    check_action({"Action": "QueueAdd", "Penalty": 0, "Paused": False, "Variable": ("X=1", "Y=2")})


@pytest.mark.parametrize(("action", "message"), [
    ({"Action": "QueuePause", "Reason": "lunch\r\nAction: Originate"}, "Reason: line breaks"),
    ({"Action": "Originate", "Variable": ["A=1", "B=2\nC=3"]}, "Variable: line breaks"),
    ({"Action": "Command", "Command": "core show version\x00"}, "Command: line breaks"),
    ({"Action": "Ping", "Bad Key": "x"}, "AMI header name 'Bad Key' is not a plain name"),
    ({"Action": "Ping", "X\r\nAction": "Originate"}, "is not a plain name"),
    ({"Action": "Ping", 7: "x"}, "AMI header name 7 is not a plain name"),
    # A name is checked whole: Python's "$" also matches before a final line break.
    ({"Action": "Ping", "Reason\n": "x"}, "AMI header name 'Reason\\n' is not a plain name"),
    ({"Action\n": "Ping"}, "is not a plain name"),
])
def test_an_action_that_would_add_lines_is_refused_naming_the_header(action: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UnsafeAmiValue) as refused:
        encode_action(action, "1")
    assert message in str(refused.value)


def test_a_value_checked_alone_is_named_value_and_an_action_id_is_checked_too() -> None:
    with pytest.raises(UnsafeAmiValue, match=r"^value: line breaks"):
        ami_value("a\nb")
    with pytest.raises(UnsafeAmiValue, match=r"^ActionID: line breaks"):
        encode_action({"Action": "Ping"}, "1\r\nAction: Originate")


@pytest.mark.parametrize(("value", "sent"), [
    ("hello-world", '"hello-world"'),
    ("say hi", '"say hi"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("c:\\temp", '"c:\\\\temp"'),
    ("", '""'),
])
def test_an_agi_argument_is_quoted_and_asterisk_reads_it_back_whole(value: str, sent: str) -> None:
    assert agi_arg(value) == sent
    assert parse_args(f"STREAM FILE {sent} \"\"") == ["STREAM", "FILE", value, ""]


@pytest.mark.parametrize("value", ["a\nEXEC System reboot", "a\rb", "a\x00b"])
def test_line_breaks_and_nul_never_reach_the_agi_wire(value: str) -> None:
    with pytest.raises(UnsafeAgiValue, match=r"^AGI argument: line breaks and NUL cannot be sent"):
        agi_arg(value)
    with pytest.raises(UnsafeAgiValue, match=r"^AGI command: line breaks and NUL cannot be sent"):
        agi_line(f"VERBOSE {value} 1")
    assert agi_line("VERBOSE \"ok\" 1") == "VERBOSE \"ok\" 1"


def test_a_refusal_quotes_at_most_sixty_characters_of_the_value() -> None:
    long = "x" * 100 + "\n"
    with pytest.raises(UnsafeAgiValue) as refused:
        agi_arg(long)
    assert str(refused.value) == f"AGI argument: line breaks and NUL cannot be sent to Asterisk: {'x' * 60!r}"
    with pytest.raises(UnsafeAgiValue) as refused:
        agi_word("y y" * 40)
    assert str(refused.value) == f"AGI word {('y y' * 40)[:60]!r} is not a plain name or number"


def test_words_are_plain_names_or_numbers() -> None:
    assert agi_word("CHANNEL(language)") == "CHANNEL(language)"
    assert agi_word(5000) == "5000"
    assert agi_word("0123456789#*") == "0123456789#*"
    for bad in ("two words", "a\"b", "x;y", "", "a\nb", "CHANNEL(language)\n", "5000\n"):
        with pytest.raises(UnsafeAgiValue, match="is not a plain name or number"):
            agi_word(bad)


@pytest.mark.parametrize(("line", "args"), [
    # Read off res_agi.c's parse_args: whitespace separates, runs of it count once ...
    ("a  b\tc", ["a", "b", "c"]),
    ("EXEC Playback XYZ", ["EXEC", "Playback", "XYZ"]),
    # ... a backslash makes the next character literal (a space, a quote, a backslash) ...
    ("a\\ b", ["a b"]),
    ('\\"x', ['"x']),
    ("x\\\\y", ["x\\y"]),
    # ... a quote toggles quoting; only after whitespace does it start an argument ...
    ('ab"cd ef"gh', ["abcd efgh"]),
    ('"" ""', ["", ""]),
    ('"a b"c', ["a bc"]),
    ("", []),
    ("   ", []),
])
def test_parse_args_reads_like_asterisk(line: str, args: list[str]) -> None:
    assert parse_args(line) == args


def test_parse_args_truncates_at_asterisks_limit() -> None:
    words = [f"w{i}" for i in range(MAX_ARGS + 5)]
    assert parse_args(" ".join(words)) == words[: MAX_ARGS - 1]  # "Too many arguments, truncating"
    assert MAX_ARGS == 128  # res_agi.c
