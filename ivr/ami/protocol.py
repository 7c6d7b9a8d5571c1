"""AMI framing as Asterisk 22 speaks it, and the framed capture format of ``asterisk-captures``.

AMI is CRLF: ``Key: Value\\r\\n`` lines, a blank line ends a message. The banner
``Asterisk Call Manager/11.0.0\\r\\n`` comes first and is not a message. Events carry no id and
(unless ``timestampevents`` is on) no time, which is why ingestion builds its own identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EOL = b"\r\n"
END = b"\r\n\r\n"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"

Fields = dict[str, str]


def parse_message(raw: bytes | str) -> Fields:
    """One message (without the blank line) to a dict; a repeated key keeps the last value."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    fields: Fields = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
        elif line.endswith(":"):  # "UserField:" after a strip, or an empty value
            fields[line[:-1]] = ""
    return fields


def encode_message(pairs: list[tuple[str, str]] | Fields) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(f"{k}: {v}".encode() + EOL for k, v in items) + EOL


def split_messages(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete messages (without their terminator) and the unfinished rest."""
    parts = data.split(END)
    return [p for p in parts[:-1]], parts[-1]


@dataclass
class Chunk:
    direction: str  # "A>S" (Asterisk to us) or "S>A"
    at: str
    data: bytes


_HEADER = re.compile(rb"^@@ (\S+) (\S+) (\d+)")


def load_dialog(path: Path) -> list[Chunk]:
    """Read a framed ``ami.dialog.log``: ``@@ dir time nbytes`` + exactly nbytes + ``\\n``."""
    raw = path.read_bytes()
    chunks: list[Chunk] = []
    i = 0
    while i < len(raw):
        j = raw.index(b"\n", i)
        line = raw[i:j]
        if line.startswith(b"## ") or not line:
            i = j + 1
            continue
        m = _HEADER.match(line)
        if not m:
            raise ValueError(f"{path}: bad frame header at byte {i}: {line[:60]!r}")
        n = int(m[3])
        chunks.append(Chunk(m[1].decode(), m[2].decode(), raw[j + 1 : j + 1 + n]))
        i = j + 1 + n + 1
    return chunks


def unsolicited_chunks(chunks: list[Chunk]) -> list[bytes]:
    """What Asterisk sent on its own (events), in the captured TCP chunking.

    Drops the banner, the responses to the recorder's actions and every message carrying the
    recorder's ActionID (event-list items), keeping the chunk boundaries of the rest.
    """
    stream = b"".join(c.data for c in chunks if c.direction == "A>S")
    bounds: list[int] = []
    pos = 0
    for c in chunks:
        if c.direction == "A>S":
            pos += len(c.data)
            bounds.append(pos)
    if stream.startswith(BANNER):
        start = len(BANNER)
    else:
        start = 0
    keep = bytearray()
    kept_bounds: list[int] = []
    offset = start
    bi = 0
    while bi < len(bounds) and bounds[bi] <= start:
        bi += 1
    while offset < len(stream):
        end = stream.find(END, offset)
        end = len(stream) if end < 0 else end + len(END)
        message = stream[offset:end]
        fields = parse_message(message.rstrip(b"\r\n"))
        dropped = "Response" in fields or "ActionID" in fields
        if not dropped:
            keep += message
        # chunk boundaries that fall inside or at the end of this message
        while bi < len(bounds) and bounds[bi] <= end:
            if not dropped:
                cut = len(keep) - (end - bounds[bi])
                if not kept_bounds or cut > kept_bounds[-1]:
                    kept_bounds.append(cut)
            bi += 1
        offset = end
    if not kept_bounds or kept_bounds[-1] != len(keep):
        kept_bounds.append(len(keep))
    out: list[bytes] = []
    prev = 0
    for b in kept_bounds:
        if b > prev:
            out.append(bytes(keep[prev:b]))
            prev = b
    return out


def event_messages(chunks: list[bytes]) -> list[Fields]:
    messages, _ = split_messages(b"".join(chunks))
    return [parse_message(m) for m in messages if m]


def retarget(chunks: list[bytes], replacements: dict[str, str]) -> list[bytes]:
    """The same captured call with other ids (Uniqueid, Linkedid, channel names): many calls from one."""
    out = []
    for chunk in chunks:
        for old, new in replacements.items():
            chunk = chunk.replace(old.encode(), new.encode())
        out.append(chunk)
    return out
