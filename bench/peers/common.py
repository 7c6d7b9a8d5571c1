"""What the peer servers share: the command sequence they send, read from a JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The default Korean menu walked to a queue, as the project's FastAGI server sends it; the
# benchmark overwrites this with the sequence it recorded from the project's server in the
# same run, so the peers send exactly the same commands.
DEFAULT_COMMANDS = [
    "ANSWER",
    "GET VARIABLE CHANNEL(linkedid)",
    'SET VARIABLE CHANNEL(language) "ko"',
    'GET DATA "dasan/ko/welcome" 5000 1',
    'GET DATA "dasan/ko/main-menu" 5000 1',
    'STREAM FILE "dasan/ko/transport" ""',
    'GET DATA "dasan/ko/transport-menu" 5000 1',
    'SET VARIABLE LANG "ko"',
    'SET VARIABLE TOPIC "transport"',
    'SET VARIABLE CONTACT_ID "1"',
    'SET VARIABLE QUEUE "general-ko"',
    'SET VARIABLE IVR_RESULT "queue"',
]


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--commands", type=Path, help="JSON list of AGI command lines to send per call")
    parser.add_argument("--db", help="database URL: also keep the contact record (thread-per-call peer)")
    parser.add_argument("--steps", type=int, default=3, help="menu steps committed per call (with --db)")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"], help="event loop (asyncio peers)")
    return parser.parse_args()


def load_commands(path: Path | None) -> list[bytes]:
    lines = json.loads(path.read_text(encoding="utf-8")) if path else DEFAULT_COMMANDS
    return [(line.rstrip("\n") + "\n").encode() for line in lines]
