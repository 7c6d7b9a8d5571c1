"""SMS/MMS intake (issue #23): a question stays a counselling inquiry; a clear report is filed
only after the citizen confirms by reply. The rules (ivr/open311/intake.yaml) on a table of
real-looking messages, then the whole path through the ``messages.inbound`` consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ivr.context import AppContext
from ivr.db.models import ContactEvent
from ivr.open311.catalog import DEFAULT_PATH, load_catalog
from ivr.open311.intake import load_rules, read_message
from ivr.yamlfile import DataError
from tests.test_open311_inbound import PHOTO, ctx, requests_of, run_jobs, sms_sent, store_message

__all__ = ["ctx"]  # the fixture, shared with test_open311_inbound

RULES = load_rules()
CATALOG = load_catalog(DEFAULT_PATH)

# (message, has a photo, expected reading, service or None)
TABLE: list[tuple[str, bool, str, str | None]] = [
    # questions: an agent answers them, even when they name a service
    ("쓰레기 수거 요일이 궁금합니다", False, "inquiry", None),
    ("쓰레기 언제 가져가나요", False, "inquiry", None),
    ("음식물 쓰레기는 어디에 버려야 하나요?", False, "inquiry", None),
    ("불법주차 과태료는 얼마인가요?", False, "inquiry", None),
    ("가로등 고장은 어디에 신고하나요?", False, "inquiry", None),
    ("버스 막차 시간이 궁금해요", False, "inquiry", None),
    ("도로 공사 언제 끝나요?", False, "inquiry", None),
    ("소음 기준이 몇 데시벨인지 알려주세요", False, "inquiry", None),
    ("When is trash collected on my street?", False, "inquiry", None),
    ("How do I report a pothole?", False, "inquiry", None),
    ("Is parking allowed here on Sundays", False, "inquiry", None),
    # complaints and chat without a report: also for an agent
    ("소음 때문에 너무 힘들어요", False, "inquiry", None),
    ("지난번 상담 감사했습니다", False, "inquiry", None),
    ("The noise upstairs is driving me crazy", False, "inquiry", None),
    ("안녕하세요", False, "inquiry", None),
    # reports: a report word, a report phrase, a #keyword or a photo
    ("쓰레기가 길에 무단으로 버려져 있어요", False, "report", "waste"),
    ("light 가로등이 꺼졌어요", False, "report", "street_light"),
    ("세종대로 앞 가로등이 깜빡이다가 꺼졌습니다", False, "report", "street_light"),
    ("#noise 3층에서 파티 중", False, "report", "noise"),
    ("아파트 정문 앞 도로가 패여서 위험해요", False, "report", "street_condition"),
    ("parking 37.5665, 126.9780 blocking hydrant", False, "report", "illegal_parking"),
    ("Trash dumped behind the market on Jong-ro", False, "report", "waste"),
    ("Huge pothole on Sejong-daero, please fix", False, "report", "street_condition"),
    ("세종대로 110 앞 도로가 패였어요", True, "report", "street_condition"),
    ("", True, "report", "street_condition"),  # a photo alone: the catalogue's photo_service
    # mixed: a report phrase outweighs the question that follows it; a photo is a report
    ("아파트 앞 불법주차 신고합니다. 언제 단속 나오나요?", False, "report", "illegal_parking"),
    ("I want to report trash on the corner. When will it be picked up?", False, "report", "waste"),
    ("이거 어디에 신고해야 하나요?", True, "report", "street_condition"),
    # a report word, but no service named: nothing to file, an agent takes it
    ("우리집 수도가 새고 있어요", False, "inquiry", None),
    # replies to our question
    ("예", False, "confirm", None),
    ("네 접수해 주세요", False, "confirm", None),
    ("YES", False, "confirm", None),
    ("아니요", False, "decline", None),
    ("no thanks", False, "decline", None),
    ("네 그런데 언제 처리되나요 궁금합니다", False, "inquiry", None),  # too long for a bare reply
]


@pytest.mark.parametrize(("body", "photo", "kind", "service"), TABLE)
def test_reading_of_real_looking_messages(body: str, photo: bool, kind: str, service: str | None) -> None:
    reading = read_message(RULES, CATALOG, body, photo)
    assert (reading.kind, reading.service and reading.service.service_code) == (kind, service), reading.why


def test_a_broken_rules_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "intake.yaml"
    bad.write_text(DEFAULT_RULES_TEXT.replace("reply_max_words: 4", "reply_max_words: many"))
    with pytest.raises(DataError, match=r"intake.yaml:\d+: reply_max_words"):
        load_rules(bad)


DEFAULT_RULES_TEXT = (Path(__file__).resolve().parent.parent / "ivr" / "open311" / "intake.yaml").read_text()


async def _timeline(ctx: AppContext, kind: str) -> list[dict[str, Any]]:
    async with ctx.db.session() as s:
        return [e.data for e in (await s.execute(select(ContactEvent).where(ContactEvent.kind == kind)
                                                 .order_by(ContactEvent.id))).scalars()]


async def test_question_is_left_to_agents_and_report_waits_for_the_citizens_yes(ctx: AppContext) -> None:
    question = await store_message(ctx, "010-7000-0001", "쓰레기 수거 요일이 궁금합니다")
    report = await store_message(ctx, "010-7000-0002", "쓰레기가 길에 무단으로 버려져 있어요")
    await run_jobs(ctx, [question, report])
    assert await requests_of(ctx) == []  # neither is filed yet
    (ask,) = await sms_sent(ctx)  # the question gets no "received" SMS, the report a question
    assert ask["to"] == "+821070000002" and "'예'" in ask["body"] and "쓰레기 신고" in ask["body"]
    assert "접수되었습니다" not in ask["body"]
    # The citizen confirms: the request is filed from the report (its text and source_ref).
    yes = await store_message(ctx, "010-7000-0002", "예")
    await run_jobs(ctx, [yes, yes])  # a replayed reply files nothing twice
    (sr,) = await requests_of(ctx)
    assert (sr.service_code, sr.source, sr.source_ref) == ("waste", "sms", f"message:{report['message_id']}")
    assert sr.description == "쓰레기가 길에 무단으로 버려져 있어요" and sr.contact_id == report["contact_id"]
    (received,) = await sms_sent(ctx)
    assert sr.service_request_id in received["body"] and "접수되었습니다" in received["body"]
    assert [a["answer"] for a in await _timeline(ctx, "open311.answered")] == ["confirm"]
    # A later "yes" answers nothing: an ordinary message for the agents.
    await run_jobs(ctx, [await store_message(ctx, "010-7000-0002", "네")])
    assert len(await requests_of(ctx)) == 1 and await sms_sent(ctx) == []


async def test_declined_report_and_photo_report_in_english(ctx: AppContext) -> None:
    report = await store_message(ctx, "010-7000-0003", "아파트 앞 불법주차 신고합니다. 언제 단속 나오나요?")
    photo = await store_message(ctx, "010-7000-0004", "Huge pothole here", PHOTO, language="en")
    await run_jobs(ctx, [report, photo])
    asks = await sms_sent(ctx)
    assert [a["to"] for a in asks] == ["+821070000003", "+821070000004"]
    assert "Reply YES" in asks[1]["body"] and "street condition report" in asks[1]["body"]
    no = await store_message(ctx, "010-7000-0003", "아니요")
    yes = await store_message(ctx, "010-7000-0004", "yes", language="en")
    await run_jobs(ctx, [no, yes])
    (sr,) = await requests_of(ctx)
    assert (sr.service_code, sr.source, sr.media_path) == ("street_condition", "mms", photo["media"][0]["path"])
    declined, received = await sms_sent(ctx)
    assert declined["to"] == "+821070000003" and "하지 않았습니다" in declined["body"]
    assert received["to"] == "+821070000004" and sr.service_request_id in received["body"]
    assert sorted(a["answer"] for a in await _timeline(ctx, "open311.answered")) == ["confirm", "decline"]
