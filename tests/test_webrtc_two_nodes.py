"""Citizens' credential state shared by two dasan nodes (issue #20): two web apps
(``create_app``) on one PostgreSQL, each on its own socket. A page token spent on one is a
replay on the other (refused, logged, audited), the per-address limit counts the mints of both,
expiry is the same on both, an endpoint leased by one is not leased by the other, and a
credential's survey answer is taken once whichever node it reaches."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from ivr.config import Settings
from ivr.context import AppContext
from ivr.db.models import AuditLog, Contact
from ivr.records import NewCall, ensure_call_contacts, record_event
from ivr.web.app import create_app
from ivr.webrtc.credentials import CredentialRefused
from ivr.webrtc.state import STATE_KEY, WebcallState


@dataclass
class Node:
    client: TestClient
    ctx: AppContext

    @property
    def state(self) -> WebcallState:
        app = self.client.app
        assert app is not None
        return app[STATE_KEY]

    async def page_token(self) -> str:
        response = await self.client.get("/call?lang=en")
        assert response.status == 200
        html = await response.text()
        start = html.index('data-token="') + len('data-token="')
        return html[start:html.index('"', start)]

    async def mint(self, token: str, kind: str = "video") -> tuple[int, dict[str, object]]:
        response = await self.client.post("/api/webcall/credentials", json={"kind": kind, "token": token})
        return response.status, await response.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def nodes(settings: Settings, pg_url: str) -> AsyncIterator[tuple[Node, Node]]:
    settings.database.url = pg_url
    settings.webrtc.enabled = True
    settings.webrtc.mint_per_minute = 2
    settings.webrtc.video_slots = 1
    settings.ami.port = _free_port()  # nothing listens: pushing to Asterisk fails as when it is down
    settings.asterisk.ami_timeout = 2
    started: list[Node] = []
    try:
        for name in ("a", "b"):
            node_settings = settings.model_copy(deep=True)  # same secret key and database, own process state
            node_settings.data_dir = settings.data_dir.parent / f"node-{name}"
            ctx = await AppContext.create(node_settings)
            client = TestClient(TestServer(create_app(ctx), host="127.0.0.1"))
            await client.start_server()
            started.append(Node(client, ctx))
        assert started[0].client.port != started[1].client.port
        yield started[0], started[1]
    finally:
        for node in started:
            await node.client.close()
            await node.ctx.close()


async def refusals(node: Node) -> list[str]:
    async with node.ctx.db.session() as session:
        rows = (await session.execute(select(AuditLog).where(AuditLog.action == "webcall_refused")
                                      .order_by(AuditLog.id))).scalars()
        return [str(row.data["reason"]) for row in rows]


async def test_a_page_token_used_on_one_node_is_a_replay_on_the_other(
        nodes: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    a, b = nodes
    caplog.set_level(logging.WARNING, "dasan.webrtc")
    token = await a.page_token()
    status, body = await a.mint(token)
    assert (status, body["reason"]) == (503, "unavailable")  # the token was good; Asterisk is down
    status, body = await b.mint(token)
    assert (status, body["reason"]) == (409, "replayed") and "password" not in body
    assert "refused (replayed)" in caplog.text
    assert await refusals(a) == ["replayed"]  # one audit trail: both nodes write the same database


async def test_the_per_address_limit_counts_the_mints_of_both_nodes(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    first = await a.mint(await a.page_token(), "voice")
    second = await b.mint(await b.page_token(), "voice")
    assert [first[0], second[0]] == [503, 503]  # two mints allowed (mint_per_minute 2), one on each
    for node in (a, b):
        status, body = await node.mint(await node.page_token(), "voice")
        assert (status, body["reason"]) == (429, "rate_limited")
    assert await refusals(b) == ["rate_limited", "rate_limited"]


async def test_expiry_is_the_same_on_both_nodes(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    token = await a.page_token()
    later = b.state.tokens.clock() + b.state.tokens.ttl + 1
    b.state.tokens.clock = lambda: later  # node B reads the token after its lifetime
    status, body = await b.mint(token)
    assert (status, body["reason"]) == (403, "expired")
    # An endpoint leased on A (video_slots: 1) is busy on B until A's credential expires.
    credential = await a.state.issuer.mint("video", "192.0.2.1")
    with pytest.raises(CredentialRefused) as info:
        await b.state.issuer.mint("video", "192.0.2.2")
    assert info.value.reason == "busy" and 0 < info.value.retry_after <= credential.expires_at - credential.issued_at
    b.state.issuer.clock = lambda: credential.expires_at + 1
    again = await b.state.issuer.mint("video", "192.0.2.2")
    assert again.username == credential.username and again.password != credential.password


async def test_a_credential_minted_on_one_node_rates_its_call_once_on_either(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    credential = await a.state.issuer.mint("video", "192.0.2.7")
    async with a.ctx.db.transaction() as session:  # the call it made, as the AMI bridge records it
        contacts = await ensure_call_contacts(session, [NewCall("1800000000.9", "", "ko", "video")])
        contact_id = contacts["1800000000.9"][0]
        await record_event(session, contact_id, "queue_join", "ami", external_id="t:queue_join",
                           data={"channel": f"PJSIP/{credential.username}-0000000a"},
                           at=datetime.now(UTC) + timedelta(seconds=1))
    answer = {"username": credential.username, "password": credential.password, "score": 5}
    first = await b.client.post("/api/webcall/survey", json=answer)
    assert first.status == 200 and (await first.json())["saved"] is True
    replay = await a.client.post("/api/webcall/survey", json={**answer, "score": 1})
    assert replay.status == 403 and (await replay.json())["reason"] == "invalid"
    async with a.ctx.db.session() as session:
        assert (await session.get(Contact, contact_id)).satisfaction == 5  # type: ignore[union-attr]
