"""Tracking-number lookups: what the IVR says in each language, ids, and the CLI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr import records
from ivr.bus import MemoryBus
from ivr.cli import main
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Channel
from ivr.languages import load_languages
from ivr.open311 import texts
from ivr.open311.service import NewRequest, Open311


@pytest.fixture
async def desk(db_url: str, tmp_path: Path) -> AsyncIterator[Open311]:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = db_url
    ctx = AppContext(settings, Database(db_url), MemoryBus())
    yield Open311(ctx)
    await ctx.db.dispose()


async def test_spoken_status_in_every_language(desk: Open311) -> None:
    async with desk.ctx.db.transaction() as session:
        contact = await records.open_contact(session, Channel.voice, language="ko")
        sr, created = await desk.create(session, NewRequest("street_light", address_string="Jongno 1"),
                                        source="call", contact=contact)
        second, _ = await desk.create(session, NewRequest("noise", address_string="Jongno 1",
                                                          attributes={"noise_type": "music"}),
                                      source="call", contact=contact)
    # The first request of a contact keeps the contact's tracking number; later ones get their own.
    assert created and sr.service_request_id == contact.tracking_number
    assert re.fullmatch(r"\d{12}", second.service_request_id) and second.service_request_id != sr.service_request_id
    spaced = " ".join(sr.service_request_id)
    said = {lang: await desk.status_text(sr.service_request_id, lang) for lang in load_languages().codes}
    assert said["ko"] == f"접수번호 {spaced}번, 가로등 고장 신고의 처리 상태는 처리 중입니다."
    assert said["en"] == f"Tracking number {spaced}, street light report, is open, being handled."
    assert "路灯故障报告" in said["zh"] and "处理中" in said["zh"]
    assert "街灯の故障の通報" in said["ja"] and "対応中" in said["ja"]
    assert "đang xử lý" in said["vi"] and "шийдвэрлэгдэж байна" in said["mn"]

    await desk.update_status(sr.service_request_id, "closed", status_notes="Lamp replaced", notify=False)
    closed = await desk.status_text(sr.service_request_id, "ja")
    assert "対応完了" in closed and closed.endswith("Lamp replaced")
    await desk.update_status(sr.service_request_id, "open", expected_datetime="2026-12-24T09:00:00+09:00",
                             notify=False)
    assert "예상 처리일은 2026-12-24입니다." in await desk.status_text(sr.service_request_id, "ko")
    assert "소음 신고" in await desk.status_text(second.service_request_id, "ko")
    assert await desk.status_text("123", "mn") == "1 2 3 дугаар олдсонгүй. Дугаараа шалгаад дахин оруулна уу."
    assert await desk.status_text("", "xx") == texts.spoken_not_found(load_languages(), "ko", "")


def test_cli_keys_catalogue_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASAN__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DASAN__DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    assert main(["open311", "check"]) == 0
    assert "5 services OK" in capsys.readouterr().out
    assert main(["open311", "key", "create", "roads", "--scopes", "update", "--agency", "Roads"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert len(key) >= 30
    assert main(["open311", "key", "create", "x", "--scopes", "delete"]) == 2
    assert main(["open311", "key", "revoke", "roads"]) == 0
    assert main(["open311", "key", "revoke", "nobody"]) == 1
    assert main(["open311", "status", "111111111111", "--language", "en"]) == 0
    assert "could not find tracking number 1 1 1" in capsys.readouterr().out
    # A broken catalogue in the data folder is refused with file:line.
    (tmp_path / "open311").mkdir()
    (tmp_path / "open311" / "services.yaml").write_text(
        "jurisdiction_id: x\nservices:\n  - service_code: a\n    service_name: A\n    type: instant\n")
    assert main(["open311", "check"]) == 2
    err = capsys.readouterr().err
    assert "services.yaml:5: services.0.type" in err
