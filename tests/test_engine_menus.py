"""Every menu path of the default menus, in all six languages, over real FastAGI sockets.

Each call is a scripted caller speaking AGI as Asterisk 22 does; the tests check what the
caller heard, the channel variables the dialplan gets and the contact record in the database
(SQLite and PostgreSQL), including timeouts, wrong keys, repeat, hang-up at every step and
the night routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr import records
from ivr.bus import MemoryBus
from ivr.datafolder import DEFAULT_QUEUES
from ivr.db import Database
from ivr.db.models import CallbackRequest, Channel, Contact, ContactEvent
from ivr.engine import lookups
from tests.support.ivr_harness import IvrHarness

SEOUL = ZoneInfo("Asia/Seoul")
DAY = datetime(2026, 11, 25, 10, 0, tzinfo=SEOUL)  # a Wednesday morning: every line open
NIGHT = datetime(2026, 11, 25, 23, 30, tzinfo=SEOUL)  # foreign-language lines closed
LANG_PROMPTS = [f"{lang}/dasan/lang-{lang}" for lang in ("en", "zh", "ja", "vi", "mn")]
QUEUE_OF = {"ko": "general-ko", "en": "en", "zh": "zh", "ja": "ja", "vi": "vi", "mn": "mn"}
BRANCH = {"ko": "", "en": "9 1", "zh": "9 2", "ja": "9 3", "vi": "9 4", "mn": "9 5"}
BRANCH_PATH = {"ko": [], **{lang: ["main:9", f"languages:{key}"] for lang, key in
                            (("en", 1), ("zh", 2), ("ja", 3), ("vi", 4), ("mn", 5))}}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per back-end for the whole module (migrating costs ~2 s);
    every call has its own Linkedid and contact, so the tests do not see each other."""
    from conftest import migrated_database

    yield from migrated_database(request, tmp_path_factory.mktemp("ivr"))


@pytest.fixture
async def db(module_db_url: str) -> AsyncIterator[Database]:
    database = Database(module_db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def ivr(db: Database) -> AsyncIterator[IvrHarness]:
    harness = await IvrHarness(db, MemoryBus(), now=DAY).start()
    yield harness
    await harness.stop()


async def contact(db: Database, contact_id: str | int) -> Contact:
    async with db.session() as session:
        return (await session.execute(select(Contact).where(Contact.id == int(contact_id)))).scalar_one()


async def contact_of_call(db: Database, linkedid: str) -> Contact:
    async with db.session() as session:
        return (await session.execute(select(Contact).where(Contact.call_id == linkedid))).scalar_one()


# key sequence after the language branch -> (kind, topic, path after the branch, last prompt heard)
PATHS = {
    "1 1": ("answer", "transport", ["main:1", "transport:1", "answer:transport-lost"], "dasan/goodbye"),
    "1 2": ("queue", "transport", ["main:1", "transport:2"], "dasan/transfer"),
    "2 1 3": ("queue", "welfare", ["main:2", "waste:1", "answer:waste-bulky", "main:3"], "dasan/transfer"),
    "2 2": ("queue", "waste", ["main:2", "waste:2"], "dasan/transfer"),
    "3": ("queue", "welfare", ["main:3"], "dasan/transfer"),
    "4": ("queue", "tax", ["main:4"], "dasan/transfer"),
    "5": ("queue", "report", ["main:5"], "dasan/transfer"),
    "0": ("queue", "counsellor", ["main:0"], "dasan/transfer"),
    "6 999999999999#": ("lookup", "status", ["main:6", "status:999999999999"], "dasan/goodbye"),
}


@pytest.mark.parametrize("language", list(BRANCH))
async def test_every_path_in_every_language(ivr: IvrHarness, language: str) -> None:
    for keys, (kind, topic, path, last) in PATHS.items():
        log = await ivr.dial(f"{BRANCH[language]} {keys}", callerid="010-5555-0101")
        v = log.variables
        assert v["LANG"] == language and v["CHANNEL(language)"] == language, keys
        assert v["TOPIC"] == topic, keys
        assert log.heard[-1] == last, (keys, log.heard)
        assert not log.hung_up
        row = await contact(ivr.db, v["CONTACT_ID"])
        expected_path = BRANCH_PATH[language] + path
        if kind == "queue":
            assert v["IVR_RESULT"] == "queue" and v["QUEUE"] == QUEUE_OF[language], keys
            expected_path.append(f"queue:{QUEUE_OF[language]}")
            assert row.queue == QUEUE_OF[language]
        else:
            assert v["IVR_RESULT"] == "hangup" and "QUEUE" not in v, keys
            assert row.outcome == "self_service"
        assert row.ivr_path == " > ".join(expected_path), keys
        assert row.language == language and row.topic == topic
        assert row.call_id == v["CHANNEL(linkedid)"]  # the Linkedid, via GET FULL VARIABLE
        if kind == "lookup":
            assert log.heard[-2] == "dasan/lookup-not-found"
        if language != "ko":
            # the language menu plays each line in its own language; the caller presses the
            # key during the first one (barge-in) and the main menu follows in that language
            assert log.heard[1:3] == ["en/dasan/lang-en", "dasan/main-menu"]
            assert log.heard_language[2] == language


async def test_contact_row_per_call_with_citizen_and_linkedid(ivr: IvrHarness) -> None:
    log = await ivr.dial("3", callerid="+82 10-1234-5678", linkedid="1795599999.42")
    row = await contact(ivr.db, log.variables["CONTACT_ID"])
    assert row.call_id == "1795599999.42" and row.channel == Channel.voice
    async with ivr.db.session() as session:
        from ivr.db.models import Citizen

        citizen = (await session.execute(select(Citizen).where(Citizen.id == row.citizen_id))).scalar_one()
        event = (await session.execute(select(ContactEvent).where(ContactEvent.contact_id == row.id))).scalar_one()
    assert citizen.identity == records.normalize_phone("+82 10-1234-5678")
    again = await ivr.dial("4", callerid="+82 10-1234-5678", linkedid="1795599999.44")
    assert (await contact(ivr.db, again.variables["CONTACT_ID"])).citizen_id == row.citizen_id  # one citizen
    assert event.kind == "ivr_finished" and event.data["queue"] == "general-ko"
    # A withheld number still gets a contact, without a citizen.
    anon = await ivr.dial("3", callerid="anonymous", linkedid="1795599999.43")
    assert (await contact(ivr.db, anon.variables["CONTACT_ID"])).citizen_id is None


@pytest.mark.parametrize("language", list(BRANCH))
async def test_timeouts_wrong_keys_and_repeat(ivr: IvrHarness, language: str) -> None:
    branch, queue = BRANCH[language], QUEUE_OF[language]
    before = " > ".join(BRANCH_PATH[language] + [""])  # the path up to this language's main menu
    menus_before = 1 if branch else 0  # the Korean main menu heard before the 9 branch

    async def walk(keys: str) -> tuple[dict[str, str], list[str], str]:
        log = await ivr.dial(f"{branch} {keys}")
        assert log.variables["LANG"] == language
        row = await contact(ivr.db, log.variables["CONTACT_ID"])
        return log.variables, log.heard, row.ivr_path

    # three timeouts: the counsellor, in this language's queue
    v, heard, path = await walk("T T T")
    assert (v["TOPIC"], v["QUEUE"]) == ("counsellor", queue)
    assert heard.count("dasan/main-menu") == menus_before + 3 and "dasan/invalid" not in heard
    assert path == f"{before}main:timeout > main:timeout > main:timeout > queue:{queue}"
    # three wrong keys: "invalid" after the first two, then the counsellor
    v, heard, path = await walk("7 8 7")
    assert heard.count("dasan/invalid") == 2 and v["TOPIC"] == "counsellor"
    assert path == f"{before}main:invalid(7) > main:invalid(8) > main:invalid(7) > queue:{queue}"
    # two failures, then a good key: no counsellor
    v, heard, path = await walk("T 7 4")
    assert v["TOPIC"] == "tax" and path == f"{before}main:timeout > main:invalid(7) > main:4 > queue:{queue}"
    # star repeats without counting as a failure
    v, heard, path = await walk("* * * 5")
    assert heard.count("dasan/main-menu") == menus_before + 4 and v["TOPIC"] == "report"
    assert path == f"{before}main:* > main:* > main:* > main:5 > queue:{queue}"
    # failures in a submenu
    v, heard, path = await walk("1 T 9 T")
    assert heard.count("dasan/transport-menu") == 3 and heard.count("dasan/invalid") == 1
    assert (v["TOPIC"], v["QUEUE"]) == ("counsellor", queue)
    assert path == f"{before}main:1 > transport:timeout > transport:invalid(9) > transport:timeout > queue:{queue}"


async def test_wrong_key_and_timeout_in_the_language_menu(ivr: IvrHarness) -> None:
    # 7 is no escape digit during the language lines, so it is refused at the end of the menu
    log = await ivr.dial("9 7 2 4")
    assert (log.variables["LANG"], log.variables["QUEUE"]) == ("zh", "zh")
    assert log.heard.count("dasan/invalid") == 1
    row = await contact(ivr.db, log.variables["CONTACT_ID"])
    assert row.ivr_path == "main:9 > languages:invalid(7) > languages:2 > main:4 > queue:zh"
    # three timeouts in the language menu: a (Korean) counsellor
    log = await ivr.dial("9 T T T")
    assert (log.variables["LANG"], log.variables["QUEUE"]) == ("ko", "general-ko")


async def test_back_to_korean_from_the_language_menu(ivr: IvrHarness) -> None:
    log = await ivr.dial("9 1 9 0 4")
    assert log.variables["LANG"] == "ko" and log.variables["QUEUE"] == "general-ko"
    assert log.heard[3:5] == ["en/dasan/lang-en", "dasan/main-menu"] and log.heard_language[4] == "ko"
    row = await contact(ivr.db, log.variables["CONTACT_ID"])
    assert row.language == "ko" and row.ivr_path.startswith("main:9 > languages:1 > main:9 > languages:0 > main:4")


@pytest.mark.parametrize("language", list(BRANCH))
async def test_hang_up_at_each_step(ivr: IvrHarness, language: str) -> None:
    keys = f"{BRANCH[language]} 2 1 2 2".split()
    # a hang-up before each key, during the self-service answer and during the transfer prompt
    for cut in range(len(keys) + 1):
        script = " ".join([*keys[:cut], "H"])
        log = await ivr.dial(script)
        assert log.hung_up, script
        v = log.variables
        assert "IVR_RESULT" not in v and "QUEUE" not in v, script
        assert "CONTACT_ID" not in v, script  # nothing is sent to a hung-up channel
        row = await contact_of_call(ivr.db, v["CHANNEL(linkedid)"])
        assert row.ivr_path.endswith("hangup"), script
        # the path so far was committed as the caller went
        steps = [s for s in row.ivr_path.split(" > ") if ":" in s and not s.startswith("answer")]
        if cut < len(keys):
            assert row.hangup_side == "caller" and row.outcome == "ivr_hangup", script
            assert len(steps) == cut, (script, row.ivr_path)
        else:  # in the transfer prompt: the queue was chosen, the caller lost before reaching it
            assert (row.hangup_side, row.outcome) == ("caller", "abandoned") and row.queue, script
            assert steps[cut:] == [f"queue:{row.queue}"], (script, row.ivr_path)
        call = ivr.call_for(log)
        assert call.result == "caller_hangup"


async def test_hang_up_before_anything_still_writes_a_record(ivr: IvrHarness) -> None:
    log = await ivr.dial("H")
    row = await contact_of_call(ivr.db, log.variables["CHANNEL(linkedid)"])
    assert row.ivr_path == "hangup" and row.hangup_side == "caller"


@pytest.mark.parametrize("language", ["en", "zh", "ja", "vi"])
async def test_night_callback(ivr: IvrHarness, language: str) -> None:
    ivr.now = NIGHT
    log = await ivr.dial(f"{BRANCH[language]} 3", callerid="01099998888")
    v = log.variables
    assert v["IVR_RESULT"] == "hangup" and v["NIGHT_ROUTE"] == "callback" and "QUEUE" not in v
    assert log.heard[-1] == "dasan/night-callback"
    async with ivr.db.session() as session:
        request = (await session.execute(select(CallbackRequest).where(
            CallbackRequest.contact_id == int(v["CONTACT_ID"])))).scalar_one()
    assert (request.phone, request.queue, request.language) == ("+821099998888", language, language)
    assert request.contact_id == int(v["CONTACT_ID"]) and request.status == "waiting"
    row = await contact(ivr.db, v["CONTACT_ID"])
    assert row.outcome == "night_callback" and row.ivr_path.endswith(f"night:{language}:callback")


async def test_night_sms_for_mongolian(ivr: IvrHarness) -> None:
    ivr.now = NIGHT
    bus = ivr.bus
    log = await ivr.dial("9 5 0", callerid="01077776666")
    v = log.variables
    assert (v["IVR_RESULT"], v["NIGHT_ROUTE"], v["LANG"]) == ("hangup", "sms", "mn")
    jobs = await bus.consume("sms.outbound", "test", "t1", block=1.0)
    assert len(jobs) == 1 and jobs[0].data == {"to": "+821077776666", "body": "120 Дасан: бид тантай холбогдох болно",
                        "contact_id": int(v["CONTACT_ID"])}
    assert log.heard[-1] == "dasan/night-sms"


async def test_korean_line_open_at_night_and_withheld_number_gets_a_message(ivr: IvrHarness) -> None:
    ivr.now = NIGHT
    log = await ivr.dial("3")
    assert log.variables["QUEUE"] == "general-ko"  # 24 hours
    log = await ivr.dial("9 1 3", callerid="anonymous")
    assert log.variables["NIGHT_ROUTE"] == "message" and log.heard[-1] == "dasan/night-closed"
    async with ivr.db.session() as session:
        assert (await session.execute(select(CallbackRequest).where(
            CallbackRequest.contact_id == int(log.variables["CONTACT_ID"])))).first() is None


async def test_night_message_and_voicemail_routes(db: Database, tmp_path: Path) -> None:
    queues = (DEFAULT_QUEUES / "queues.yaml").read_text()
    queues = queues.replace("""  general-ko:
    description: 일반 상담 (Korean, 24 hours)
    language: ko
    hours: always""", """  general-ko:
    description: 일반 상담 (office hours in this test)
    language: ko
    hours: office
    night_route: {kind: voicemail}""").replace("night_route: {kind: callback}\n    penalty_rules",
                                                "night_route: {kind: message}\n    penalty_rules")
    zh = """    language: zh
    hours: weekdays
    night_route: {kind: callback}"""
    assert zh in queues
    queues = queues.replace(zh, zh.replace("{kind: callback}", "{kind: queue, queue: general-wide}"))
    (tmp_path / "queues.yaml").write_text(queues)
    harness = await IvrHarness(db, MemoryBus(), queues_dir=tmp_path, now=NIGHT).start()
    try:
        log = await harness.dial("4")
        assert (log.variables["IVR_RESULT"], log.variables["NIGHT_ROUTE"]) == ("night", "voicemail")
        log = await harness.dial("9 1 4")
        assert (log.variables["IVR_RESULT"], log.variables["NIGHT_ROUTE"]) == ("hangup", "message")
        assert log.heard[-1] == "dasan/night-closed"
        # A night route to another queue: the caller is queued there, with the call's path.
        log = await harness.dial("9 2 4")
        assert (log.variables["IVR_RESULT"], log.variables["QUEUE"]) == ("queue", "general-wide")
        assert "NIGHT_ROUTE" not in log.variables
        assert (await contact(db, log.variables["CONTACT_ID"])).queue == "general-wide"
        # An SMS night route cannot text a withheld number: the caller hears the closed message.
        log = await harness.dial("9 5 4", callerid="anonymous")
        assert (log.variables["NIGHT_ROUTE"], log.heard[-1]) == ("message", "dasan/night-closed")
        harness.now = DAY
        log = await harness.dial("9 1 4")
        assert log.variables["IVR_RESULT"] == "queue" and log.variables["QUEUE"] == "en"
    finally:
        await harness.stop()


async def test_status_lookup_builtin_fallback_reads_the_contact(ivr: IvrHarness,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # as before any other module (Open311) registers a handler
    monkeypatch.delitem(lookups._REGISTRY, "service_request_status", raising=False)
    async with ivr.db.transaction() as session:
        earlier = await records.open_contact(session, Channel.voice, language="ko")
    number = earlier.tracking_number
    assert number
    log = await ivr.dial(f"9 1 6 {number}#")
    assert log.heard[-4:] == ["dasan/lookup-number", f"digits:{number}", "dasan/status-open", "dasan/goodbye"]
    assert ivr.call_for(log).said == [f"{number}: open"]
    assert any(c.startswith("VERBOSE") and number in c for c in log.commands)


async def test_lookup_uses_a_registered_handler(ivr: IvrHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[lookups.LookupRequest] = []

    async def handler(request: lookups.LookupRequest) -> str:
        seen.append(request)
        return f"접수번호 {request.digits}번, 처리 중입니다."

    monkeypatch.setitem(lookups._REGISTRY, "service_request_status", handler)
    log = await ivr.dial("6 2611250001#")
    assert seen[0].digits == "2611250001" and seen[0].language == "ko"
    assert log.heard[-3:] == ["dasan/lookup-number", "digits:2611250001", "dasan/goodbye"]
    # UTF-8 text goes to the Asterisk console untouched
    assert any("처리 중입니다" in c for c in log.commands if c.startswith("VERBOSE"))

    async def broken(request: lookups.LookupRequest) -> str:
        raise RuntimeError("database down")

    monkeypatch.setitem(lookups._REGISTRY, "service_request_status", broken)
    log = await ivr.dial("6 1#")
    assert log.heard[-2:] == ["dasan/lookup-not-found", "dasan/goodbye"]


async def test_lookup_timeouts_go_to_a_counsellor(ivr: IvrHarness) -> None:
    log = await ivr.dial("6 T T T")
    assert log.variables["QUEUE"] == "general-ko" and log.variables["TOPIC"] == "counsellor"


async def test_survey_stores_satisfaction(ivr: IvrHarness) -> None:
    first = await ivr.dial("0")
    contact_id = first.variables["CONTACT_ID"]
    log = await ivr.dial("9 4", route="survey", variables={"CONTACT_ID": contact_id})
    assert log.heard == ["dasan/survey-question", "dasan/invalid", "dasan/survey-question", "dasan/survey-thanks"]
    assert log.variables["IVR_RESULT"] == "hangup"
    assert (await contact(ivr.db, contact_id)).satisfaction == 4
    log = await ivr.dial("T 5", route="survey", variables={"CONTACT_ID": contact_id})
    assert (await contact(ivr.db, contact_id)).satisfaction == 5
    log = await ivr.dial("T T T", route="survey", variables={"CONTACT_ID": contact_id})
    assert log.heard == ["dasan/survey-question"] * 3
    # no CONTACT_ID: thanked, nothing stored, no error
    log = await ivr.dial("3", route="survey")
    assert log.heard[-1] == "dasan/survey-thanks"


async def test_survey_reads_the_calls_linkedid_and_hands_the_score_to_the_dialplan(
        ivr: IvrHarness, caplog: pytest.LogCaptureFixture) -> None:
    """After a transfer the channel's own uniqueid is not the call's Linkedid: the contact is
    the Linkedid's. The score is also set as SURVEY_SCORE (the dialplan reports it to the AMI
    bridge); a score for a contact nobody knows is logged with the id it came with."""
    async with ivr.db.transaction() as session:
        written = await records.open_contact(session, Channel.voice, call_id="1795599999.50")
    log = await ivr.dial("4", route="survey", linkedid="1795599999.51",  # the channel's uniqueid
                         variables={"CHANNEL(linkedid)": "1795599999.50"})
    assert (await contact(ivr.db, written.id)).satisfaction == 4
    assert log.variables["SURVEY_SCORE"] == "4" and log.variables["IVR_RESULT"] == "hangup"
    assert [c.rsplit(" ", 1)[1] for c in log.commands if c.startswith("GET DATA")] == ["1"]  # one digit
    assert "unknown contact" not in caplog.text
    await ivr.dial("3", route="survey", variables={"CONTACT_ID": "999999"})
    assert "survey score 3 for unknown contact '999999'" in caplog.text


async def test_survey_without_contact_id_finds_the_call_by_its_linkedid(ivr: IvrHarness) -> None:
    """The IVR was down when the call came: the dialplan's fallback queued it, the AMI bridge
    wrote its contact under the Linkedid and no CONTACT_ID was set; the score is still stored."""
    async with ivr.db.transaction() as session:
        written = await records.open_contact(session, Channel.voice, call_id="1795599999.45", language="ko")
    log = await ivr.dial("4", route="survey", linkedid="1795599999.45")
    assert log.variables["IVR_RESULT"] == "hangup"
    stored = await contact(ivr.db, written.id)
    # a survey follows a counsellor's answer: the outcome the AMI bridge missed is "answered"
    assert (stored.satisfaction, stored.outcome) == (4, "answered")


async def test_callback_route_keeps_the_place_in_line(ivr: IvrHarness) -> None:
    first = await ivr.dial("9 1 0", callerid="01012121212")
    log = await ivr.dial("", route="callback", callerid="01012121212", language="en",
                         variables={"CALLBACK_QUEUE": "en", "CONTACT_ID": first.variables["CONTACT_ID"], "LANG": "en"})
    assert log.variables["IVR_RESULT"] == "hangup" and log.heard == ["dasan/callback-registered"]
    async with ivr.db.session() as session:
        request = (await session.execute(select(CallbackRequest).where(
            CallbackRequest.phone == "+821012121212"))).scalar_one()
    assert (request.queue, request.language, request.phone) == ("en", "en", "+821012121212")
    assert request.contact_id == int(first.variables["CONTACT_ID"])
    # withheld number: nothing to call back, the dialplan puts the caller back in the queue
    log = await ivr.dial("", route="callback", callerid="anonymous", variables={"CALLBACK_QUEUE": "en"})
    assert "IVR_RESULT" not in log.variables
    # a queue this site does not have: no request either, back in line
    log = await ivr.dial("", route="callback", callerid="01034343434", variables={"CALLBACK_QUEUE": "no-such-queue"})
    assert "IVR_RESULT" not in log.variables and log.heard == []
    # without CALLBACK_QUEUE the queue the caller waits in; an unknown language is Korean
    log = await ivr.dial("", route="callback", callerid="01056565656",
                         variables={"QUEUE": "en", "CONTACT_ID": "none", "LANG": "xx"})
    assert log.variables["IVR_RESULT"] == "hangup"
    async with ivr.db.session() as session:
        requests = {r.phone: r for r in (await session.execute(select(CallbackRequest).where(
            CallbackRequest.phone.in_(["+821012121212", "+821034343434", "+821056565656"])))).scalars()}
    assert set(requests) == {"+821012121212", "+821056565656"}  # none for the unknown queue
    fallback = requests["+821056565656"]
    assert (fallback.queue, fallback.language, fallback.contact_id) == ("en", "ko", None)
    # The dialplan's fallback queued the call (no CONTACT_ID): its Linkedid finds the contact the
    # AMI bridge wrote, read from CHANNEL(linkedid) or else from the AGI environment's uniqueid;
    # without LANG the channel's language counts.
    async with ivr.db.transaction() as session:
        by_channel = await records.open_contact(session, Channel.voice, call_id="1795599999.47")
        by_env = await records.open_contact(session, Channel.voice, call_id="1795599999.48")
    await ivr.dial("", route="callback", callerid="01078787878", language="en", linkedid="1795599999.49",
                   variables={"QUEUE": "en", "CHANNEL(linkedid)": "1795599999.47"})  # uniqueid is another
    await ivr.dial("", route="callback", callerid="01079797979", language="en", linkedid="1795599999.48",
                   variables={"QUEUE": "en", "CHANNEL(linkedid)": ""})
    async with ivr.db.session() as session:
        found = {r.phone: (r.contact_id, r.language) for r in (await session.execute(select(CallbackRequest).where(
            CallbackRequest.phone.in_(["+821078787878", "+821079797979"])))).scalars()}
    assert found == {"+821078787878": (by_channel.id, "en"), "+821079797979": (by_env.id, "en")}
