"""The bridge against a real Asterisk (runs whenever an ``asterisk`` binary is installed).

A throw-away Asterisk runs from a temporary directory with its own asterisk.conf,
manager.conf (127.0.0.1, ephemeral port), queues.conf (every queue of queues.yaml) and a
dialplan whose extension 100 answers and joins general-ko for a few seconds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.ami.models import AgentState
from ivr.ami.service import AmiBridge
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Contact
from ivr.queues import load_queues
from tests.support.ami_harness import wait_for
from tests.support.asterisk import ASTERISK, running, write_config

pytestmark = [
    pytest.mark.asterisk,
    pytest.mark.skipif(ASTERISK is None, reason="no asterisk binary installed (PATH or /usr/sbin/asterisk)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def asterisk(tmp_path: Path, settings: Settings) -> Iterator[int]:
    port = _free_port()
    qconf = load_queues(settings.queues_dir)
    conf = write_config(tmp_path, (
        "res_pjproject.so", "res_sorcery_astdb.so", "res_sorcery_config.so", "res_sorcery_memory.so",
        "res_pjsip.so", "chan_pjsip.so", "chan_local.so", "app_queue.so", "app_dial.so", "app_playback.so",
        "pbx_config.so", "func_channel.so", "bridge_simple.so", "bridge_native_rtp.so",
        "res_musiconhold.so", "app_mixmonitor.so", "app_stack.so", "func_strings.so"), {
        "manager.conf": f"[general]\nenabled = yes\nport = {port}\nbindaddr = 127.0.0.1\n\n"
                        f"[{settings.ami.username}]\nsecret = {settings.ami.secret}\ndeny = 0.0.0.0/0.0.0.0\n"
                        "permit = 127.0.0.1/255.255.255.255\nread = all\nwrite = all\n",
        "queues.conf": "[general]\npersistentmembers = no\n\n"
                       + "".join(f"[{name}]\nstrategy = rrmemory\ntimeout = 2\njoinempty = yes\nleavewhenempty = no\n\n"
                                 for name in qconf.queues),
        "extensions.conf": "[general]\nstatic = yes\nwriteprotect = yes\n\n[dasan-test]\n"
                           "exten => 100,1,Answer()\n same => n,Queue(general-ko,,,,4)\n same => n,Hangup()\n",
        "pjsip.conf": "[agent1001]\ntype = endpoint\ncontext = dasan-test\ndisallow = all\nallow = ulaw\n",
        "musiconhold.conf": "", "logger.conf": "", "cdr.conf": ""})

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    with running(conf, listening):
        yield port


async def test_real_asterisk_agent_login_and_queue_call(settings: Settings, asterisk: int) -> None:
    settings.ami.port = asterisk
    settings.ami.enabled = True
    ctx = AppContext(settings, Database(settings.database_url), MemoryBus())
    bridge = AmiBridge(ctx, metrics_interval=0.05, callbacks=False)
    await bridge.start()
    try:
        await asyncio.wait_for(bridge.conn.logged_in.wait(), 30)
        await wait_for(lambda: bridge.resyncs >= 1, 30)
        result = await bridge.control.login("kim.minji")
        assert result.queues == ["en", "general-ko", "general-wide"]

        async def kim() -> AgentState | None:
            async with ctx.db.session() as s:
                return await s.get(AgentState, "kim.minji")

        for _ in range(300):
            state = await kim()
            if state is not None and len(state.queues) == 3:
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.queues == {"en": 2, "general-ko": 0, "general-wide": 0}
        # A call into the queue: Local/100 answers and waits in general-ko for 4 s.
        reply = await bridge.conn.send({"Action": "Originate", "Channel": "Local/100@dasan-test",
                                        "Application": "Wait", "Data": "8", "Async": "true"}, timeout=30)
        assert isinstance(reply, list)
        for _ in range(400):
            async with ctx.db.session() as s:
                contact = (await s.execute(select(Contact).where(Contact.queue == "general-ko"))).scalar_one_or_none()
            if contact is not None and contact.ended_at is not None:
                break
            await asyncio.sleep(0.05)
        assert contact is not None and contact.ended_at is not None
        assert contact.call_id  # Linkedid of the Local channel pair
        await bridge.control.logout("kim.minji")
    finally:
        await bridge.stop()
        await ctx.db.dispose()
