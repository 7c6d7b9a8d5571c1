"""GeoReport v2 API over real HTTP: every endpoint, filter, format and error case, with the
JSON answers validated against the project's GeoReport v2 schemas (tests/data/open311/)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from sqlalchemy import insert, select

from ivr import records
from ivr.bus import MemoryBus
from ivr.config import Settings
from ivr.context import AppContext
from ivr.db import Database
from ivr.db.models import Channel
from ivr.open311.keys import create_key, revoke_key
from ivr.open311.models import ServiceRequest
from ivr.web.auth import create_user
from tests.support.open311 import schema_validator, xml_to_data
from tests.support.web import serve

SERVICES = schema_validator("services.json")
DEFINITION = schema_validator("service-definition.json")
REQUESTS = schema_validator("requests.json")
CREATED = schema_validator("created.json")
TOKEN = schema_validator("token.json")
ERRORS = schema_validator("errors.json")
DISCOVERY = schema_validator("discovery.json")
V2 = "/open311/v2"


def assert_valid(validator: Any, doc: Any) -> None:
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


class Api:
    def __init__(self, ctx: AppContext, base: str, http: aiohttp.ClientSession, submit: str, dept: str):
        self.ctx, self.base, self.http, self.submit_key, self.dept_key = ctx, base, http, submit, dept

    async def get(self, path: str, **params: Any) -> tuple[int, str, Any]:
        async with self.http.get(self.base + path, params=params) as resp:
            body = await resp.read()
            return resp.status, resp.headers["Content-Type"], _decode(resp.headers["Content-Type"], body)

    async def post(self, path: str, data: Any, **kw: Any) -> tuple[int, str, Any]:
        async with self.http.post(self.base + path, data=data, **kw) as resp:
            body = await resp.read()
            return resp.status, resp.headers["Content-Type"], _decode(resp.headers["Content-Type"], body)

    async def create(self, service_code: str = "street_condition", fmt: str = "json", **fields: Any) -> Any:
        data = {"api_key": self.submit_key, "service_code": service_code, "lat": "37.5665",
                "long": "126.9780", **fields}
        status, _, doc = await self.post(f"{V2}/requests.{fmt}", data)
        assert status == 200, doc
        if fmt == "json":
            assert_valid(CREATED, doc)
        return doc


def _decode(content_type: str, body: bytes) -> Any:
    import json

    if content_type.startswith("application/json"):
        return json.loads(body)
    if content_type.startswith("text/xml"):
        assert body.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
        return ET.fromstring(body)
    return body


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings()
    settings.data_dir = tmp_path / "var"
    settings.database.url = db_url
    settings.timezone = "Asia/Seoul"
    ctx = AppContext(settings, Database(db_url), MemoryBus())
    submit = await create_key(ctx.db, "test-client", "submit")
    dept = await create_key(ctx.db, "roads", "update", agency="Road Management Division")
    async with serve(ctx) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        settings.web.public_url = base
        yield Api(ctx, base, http, submit, dept)
    await ctx.db.dispose()


def errors_of(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, ET.Element):
        assert doc.tag == "errors"
        return [{"code": int(e.findtext("code") or 0), "description": e.findtext("description")} for e in doc]
    assert isinstance(doc, list) and doc and set(doc[0]) == {"code", "description"}
    assert_valid(ERRORS, doc)
    return doc


async def test_discovery_json_and_xml(api: Api) -> None:
    status, ctype, doc = await api.get(f"{V2}/discovery.json")
    assert status == 200 and ctype == "application/json; charset=utf-8"
    assert_valid(DISCOVERY, doc)
    endpoint = doc["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == api.base + V2
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    assert endpoint["type"] == "production"
    assert datetime.fromisoformat(doc["changeset"]).tzinfo is not None
    assert doc["contact"] and doc["key_service"]
    status, ctype, root = await api.get(f"{V2}/discovery.xml")
    assert status == 200 and ctype == "text/xml; charset=utf-8"
    assert root.tag == "discovery"
    assert [f.text for f in root.find("endpoints/endpoint/formats")] == ["text/xml", "application/json"]
    assert root.findtext("endpoints/endpoint/url") == endpoint["url"]


async def test_services_and_definitions(api: Api) -> None:
    status, _, services = await api.get(f"{V2}/services.json")
    assert status == 200
    assert_valid(SERVICES, services)
    by_code = {s["service_code"]: s for s in services}
    assert {"noise", "street_condition", "illegal_parking", "waste", "street_light"} <= set(by_code)
    assert by_code["noise"]["metadata"] is True and by_code["street_light"]["metadata"] is False
    assert by_code["waste"]["type"] == "batch"
    _, _, root = await api.get(f"{V2}/services.xml")
    assert root.tag == "services" and all(child.tag == "service" for child in root)
    assert [s.findtext("service_code") for s in root] == [s["service_code"] for s in services]
    assert root.find("service/metadata").text in ("true", "false")

    for code in by_code:
        status, _, definition = await api.get(f"{V2}/services/{code}.json")
        assert status == 200
        assert_valid(DEFINITION, definition)
        assert definition["service_code"] == code
    _, _, definition = await api.get(f"{V2}/services/street_condition.json")
    orders = [a["order"] for a in definition["attributes"]]
    assert orders == sorted(orders)
    assert definition["attributes"][0]["variable"] is False  # an instruction, not a question
    _, _, root = await api.get(f"{V2}/services/noise.xml")
    assert root.tag == "service_definition" and root.findtext("service_code") == "noise"
    attribute = root.find("attributes/attribute")
    assert attribute.findtext("code") == "noise_type" and attribute.findtext("required") == "true"
    assert [v.findtext("key") for v in attribute.find("values")] == ["music", "banging", "construction", "other"]
    # XML carries the same data as JSON.
    _, _, noise = await api.get(f"{V2}/services/noise.json")
    as_data = xml_to_data(root)
    assert [a["code"] for a in as_data["attributes"]] == [a["code"] for a in noise["attributes"]]

    for fmt in ("json", "xml"):
        status, _, doc = await api.get(f"{V2}/services/nope.{fmt}")
        assert status == 404 and errors_of(doc)[0]["code"] == 404
        assert "nope" in errors_of(doc)[0]["description"]


async def test_format_and_jurisdiction_errors(api: Api) -> None:
    status, _, doc = await api.get(f"{V2}/services.csv")
    assert status == 404 and "json or .xml" in errors_of(doc)[0]["description"]
    status, _, doc = await api.get(f"{V2}/services.json", jurisdiction_id="seoul.go.kr")
    assert status == 200
    for fmt in ("json", "xml"):
        status, _, doc = await api.get(f"{V2}/requests.{fmt}", jurisdiction_id="nyc.gov")
        assert status == 404 and errors_of(doc)[0]["description"] == "jurisdiction_id nyc.gov was not found"


async def test_post_request_json_xml_and_get_it_back(api: Api) -> None:
    created = await api.create(
        "noise", **{"attribute[noise_type]": "music", "attribute[ongoing]": "yes"},
        description="윗집에서 밤늦게 음악", address_string="서울 중구 세종대로 110",
        phone="010-1234-5678", email="citizen@example.org", first_name="길동", last_name="홍",
        device_id="dev-1", account_id="acct-9")
    assert len(created) == 1
    srid = created[0]["service_request_id"]
    assert re.fullmatch(r"\d{12}", srid)
    assert created[0]["service_notice"] and created[0]["account_id"] == "acct-9"
    assert "token" not in created[0]

    status, _, got = await api.get(f"{V2}/requests/{srid}.json")
    assert status == 200
    assert_valid(REQUESTS, got)
    (one,) = got
    assert one["service_request_id"] == srid and one["status"] == "open" and one["service_code"] == "noise"
    assert one["address"] == "서울 중구 세종대로 110" and one["description"] == "윗집에서 밤늦게 음악"
    assert one["lat"] == pytest.approx(37.5665) and one["agency_responsible"] == "Environment Division"
    assert one["requested_datetime"].endswith("+09:00")
    for private in ("phone", "email", "first_name", "last_name", "device_id", "account_id"):
        assert private not in one
    # The phone became a citizen, and the citizen got the tracking number by SMS.
    jobs = await api.ctx.bus.consume("sms.outbound", "t", "t", count=10, block=0.1)
    assert [j.data["to"] for j in jobs] == ["+821012345678"]
    assert srid in jobs[0].data["body"] and "소음 신고" in jobs[0].data["body"]

    status, ctype, root = await api.get(f"{V2}/requests/{srid}.xml")
    assert ctype.startswith("text/xml") and root.tag == "service_requests"
    request_el = root.find("request")
    assert request_el.findtext("service_request_id") == srid
    assert request_el.findtext("status_notes") == "" and request_el.find("expected_datetime") is not None
    assert xml_to_data(root)[0]["description"] == one["description"]

    status, _, root = await api.post(f"{V2}/requests.xml", {
        "api_key": api.submit_key, "service_code": "street_light", "address_id": "ADDR-11"})
    assert status == 200 and root.tag == "service_requests"
    assert re.fullmatch(r"\d{12}", root.findtext("request/service_request_id"))
    assert root.find("request/account_id") is not None

    for fmt in ("json", "xml"):
        status, _, doc = await api.get(f"{V2}/requests/999999999999.{fmt}")
        assert status == 404 and errors_of(doc)[0]["code"] == 404


async def test_batch_service_answers_with_token(api: Api) -> None:
    created = await api.create("waste", **{"attribute[waste_type][]": ["food", "bulky"]})
    assert "service_request_id" not in created[0]
    token = created[0]["token"]
    status, _, doc = await api.get(f"{V2}/tokens/{token}.json")
    assert_valid(TOKEN, doc)
    assert status == 200 and doc[0]["token"] == token and re.fullmatch(r"\d{12}", doc[0]["service_request_id"])
    _, _, got = await api.get(f"{V2}/requests/{doc[0]['service_request_id']}.json")
    assert_valid(REQUESTS, got)
    async with api.ctx.db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(ServiceRequest.token == token))).scalar_one()
    assert sr.attributes == {"waste_type": ["food", "bulky"]}
    status, _, root = await api.get(f"{V2}/tokens/{token}.xml")
    assert root.findtext("request/token") == token
    for fmt in ("json", "xml"):
        status, _, doc = await api.get(f"{V2}/tokens/nope.{fmt}")
        assert status == 404 and errors_of(doc)[0]["code"] == 404


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_post_request_errors(api: Api, fmt: str) -> None:
    base = {"service_code": "illegal_parking", "lat": "37.5", "long": "127.0",
            "attribute[violation]": "hydrant"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**base}, 403, "api_key"),
        ({**base, "api_key": "wrong"}, 403, "api_key"),
        ({**base, "api_key": api.dept_key}, 403, "api_key"),  # an update-only key cannot submit
        ({"api_key": api.submit_key, "lat": "1", "long": "1"}, 400, "service_code was not provided"),
        ({**base, "api_key": api.submit_key, "service_code": "nope"}, 404, "service_code nope was not found"),
        ({"api_key": api.submit_key, "service_code": "illegal_parking", "attribute[violation]": "hydrant"},
         400, "location is required"),
        ({**base, "api_key": api.submit_key, "long": ""}, 400, "lat and long must be given together"),
        ({**base, "api_key": api.submit_key, "lat": "91"}, 400, "lat must be between"),
        ({**base, "api_key": api.submit_key, "long": "east"}, 400, "long must be a number"),
        ({**base, "api_key": api.submit_key, "attribute[violation]": ""}, 400, "attribute[violation] is required"),
        ({**base, "api_key": api.submit_key, "attribute[violation]": "tree"}, 400, "not one of"),
        ({**base, "api_key": api.submit_key, "attribute[colour]": "red"}, 400, "attribute[colour] is not"),
        ({**base, "api_key": api.submit_key, "attribute[seen_at]": "yesterday"}, 400, "W3C date-time"),
        ({**base, "api_key": api.submit_key, "description": "x" * 4001}, 400, "longer than 4000"),
        ({**base, "api_key": api.submit_key, "media_url": "file:///etc/passwd"}, 400, "media_url"),
    ]
    for data, code, words in cases:
        status, ctype, doc = await api.post(f"{V2}/requests.{fmt}", data)
        assert status == code, (data, doc)
        assert ctype.startswith("text/xml" if fmt == "xml" else "application/json")
        (error,) = errors_of(doc)
        assert error["code"] == code and words in error["description"], (data, error)
    broken = (b'--x\r\nContent-Disposition: form-data; name="\xc3\xb4\x03"\r\n\r\nv\r\n--x--\r\n')
    status, _, doc = await api.post(f"{V2}/requests.{fmt}", broken,
                                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and "not a readable form" in errors_of(doc)[0]["description"]
    async with api.ctx.db.session() as session:
        assert (await session.execute(select(ServiceRequest))).first() is None  # nothing half-made
    # The same request with everything right goes through, with the optional datetime attribute.
    created = await api.create("illegal_parking", **{
        "attribute[violation]": "hydrant", "attribute[plate]": "12가3456",
        "attribute[seen_at]": "2026-11-25T08:00:00+09:00"})
    assert re.fullmatch(r"\d{12}", created[0]["service_request_id"])


async def _insert_request(db: Database, srid: str, code: str, status: str, requested: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(insert(ServiceRequest).values(
            service_request_id=srid, token=f"t{srid}", service_code=code, service_name=code,
            status=status, requested_datetime=requested, updated_datetime=requested, attributes={},
            source="api", language="ko"))


async def test_get_requests_filters_and_limits(api: Api) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [("100000000001", "noise", "open", now - timedelta(days=1)),
            ("100000000002", "noise", "closed", now - timedelta(days=10)),
            ("100000000003", "waste", "open", now - timedelta(days=20)),
            ("100000000004", "waste", "closed", now - timedelta(days=100)),
            ("100000000005", "street_light", "closed", now - timedelta(hours=2))]
    for row in rows:
        await _insert_request(api.ctx.db, *row)

    async def ids(**params: Any) -> list[str]:
        status, _, doc = await api.get(f"{V2}/requests.json", **params)
        assert status == 200, doc
        assert_valid(REQUESTS, doc)
        return [d["service_request_id"] for d in doc]

    # Default: the last 90 days, newest first.
    assert await ids() == ["100000000005", "100000000001", "100000000002", "100000000003"]
    assert await ids(service_code="noise") == ["100000000001", "100000000002"]
    assert await ids(status="closed") == ["100000000005", "100000000002"]
    assert await ids(status="open,closed", service_code="waste") == ["100000000003"]
    assert await ids(service_code="noise,street_light", status="open") == ["100000000001"]
    # A list of ids overrides every other argument (even the 90-day window).
    assert await ids(service_request_id="100000000004,100000000001", status="open") == [
        "100000000001", "100000000004"]
    start = (now - timedelta(days=15)).isoformat()
    end = (now - timedelta(days=5)).isoformat()
    assert await ids(start_date=start, end_date=end) == ["100000000002"]
    assert await ids(end_date=(now - timedelta(days=95)).isoformat()) == ["100000000004"]
    # Local time without an offset is the site's time (Asia/Seoul).
    local_start = (now - timedelta(days=15)).astimezone().astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Seoul")).replace(tzinfo=None).isoformat()
    assert await ids(start_date=local_start) == ["100000000005", "100000000001", "100000000002"]
    # An unescaped '+' offset arrives as a space and is still understood.
    async with api.http.get(f"{api.base}{V2}/requests.json?start_date="
                            + (now - timedelta(days=15)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")) as r:
        assert r.status == 200 and len(await r.json()) == 3

    for params, words in [({"status": "pending"}, "status must be open or closed"),
                          ({"start_date": "last week"}, "start_date must be a W3C date-time"),
                          ({"start_date": end, "end_date": start}, "start_date is after end_date"),
                          ({"start_date": (now - timedelta(days=100)).isoformat(), "end_date": now.isoformat()},
                           "may not span more than 90 days")]:
        for fmt in ("json", "xml"):
            status, _, doc = await api.get(f"{V2}/requests.{fmt}", **params)
            assert status == 400 and words in errors_of(doc)[0]["description"], (params, doc)

    _, _, root = await api.get(f"{V2}/requests.xml", status="closed")
    assert [r.findtext("service_request_id") for r in root] == ["100000000005", "100000000002"]


async def test_get_requests_returns_at_most_1000(api: Api) -> None:
    now = datetime.now(UTC)
    async with api.ctx.db.transaction() as session:
        await session.execute(insert(ServiceRequest), [
            {"service_request_id": f"2{i:011d}", "token": f"k{i}", "service_code": "noise",
             "service_name": "Noise", "status": "open", "attributes": {}, "source": "api", "language": "ko",
             "requested_datetime": now - timedelta(seconds=i), "updated_datetime": now}
            for i in range(1005)])
    status, _, doc = await api.get(f"{V2}/requests.json")
    assert status == 200 and len(doc) == 1000
    assert doc[0]["service_request_id"] == "200000000000"  # newest first
    assert doc[-1]["service_request_id"] == f"2{999:011d}"


async def test_department_status_update_notifies_citizen(api: Api) -> None:
    created = await api.create("street_condition", phone="+82 10-5555-0101", locale="en")
    srid = created[0]["service_request_id"]
    await api.ctx.bus.consume("sms.outbound", "t", "t", count=10, block=0.1)  # the "received" SMS
    path = f"/api/open311/requests/{srid}/status"
    headers = {"X-Api-Key": api.dept_key}

    status, _, doc = await api.post(path, {"status": "open"})
    assert status == 401  # neither a key nor a signed-in user
    status, _, doc = await api.post(path, {"status": "open"}, headers={"X-Api-Key": api.submit_key})
    assert status == 403 and errors_of(doc)[0]["code"] == 403
    for body, code, words in [({"status": "done"}, 400, "status must be open or closed"),
                              ({"status": "open", "expected_datetime": "soon"}, 400, "expected_datetime")]:
        status, _, doc = await api.post(path, body, headers=headers)
        assert status == code and words in errors_of(doc)[0]["description"]
    status, _, doc = await api.post("/api/open311/requests/123/status", {"status": "open"}, headers=headers)
    assert status == 404

    status, _, doc = await api.post(path, None, json={
        "status": "open", "status_notes": "Crew scheduled", "expected_datetime": "2026-12-01T10:00:00+09:00"},
        headers=headers)
    assert status == 200 and doc["expected_datetime"] == "2026-12-01T10:00:00+09:00"
    assert doc["agency_responsible"] == "Road Management Division"
    status, _, doc = await api.post(path, {"status": "closed", "status_notes": "Pothole filled",
                                           "agency_responsible": "Jung-gu Road Team"}, headers=headers)
    assert status == 200
    _, _, got = await api.get(f"{V2}/requests/{srid}.json")
    assert_valid(REQUESTS, got)
    assert got[0]["status"] == "closed" and got[0]["status_notes"] == "Pothole filled"
    assert got[0]["agency_responsible"] == "Jung-gu Road Team"
    assert got[0]["updated_datetime"] >= got[0]["requested_datetime"]
    jobs = await api.ctx.bus.consume("sms.outbound", "t", "t", count=10, block=0.1)
    bodies = [j.data["body"] for j in jobs]
    assert [j.data["to"] for j in jobs] == ["+821055550101"] * 2
    assert "open, being handled" in bodies[0] and "Expected by 2026-12-01" in bodies[0]
    assert "closed, completed" in bodies[1] and "Pothole filled" in bodies[1] and srid in bodies[1]
    _, _, closed = await api.get(f"{V2}/requests.json", status="closed")
    assert [d["service_request_id"] for d in closed] == [srid]
    # A revoked key is refused.
    assert await revoke_key(api.ctx.db, "roads")
    status, _, doc = await api.post(path, {"status": "open"}, headers=headers)
    assert status == 403


async def test_agent_files_request_from_a_call(api: Api) -> None:
    async with api.ctx.db.transaction() as session:
        citizen = await records.get_or_create_citizen(session, "phone", "+82-10-7777-0000")
        contact = await records.open_contact(session, Channel.voice, citizen, call_id="1700000000.1",
                                             language="vi")
    await create_user(api.ctx, "agent1", "pw-agent-1", "agent")
    async with api.http.post(api.base + "/api/login", json={"username": "agent1", "password": "pw-agent-1"}) as r:
        csrf = (await r.json())["csrf_token"]
    path = f"/api/open311/contacts/{contact.id}/requests"
    body = {"service_code": "illegal_parking", "address_string": "Sejong-daero 110",
            "attributes": {"violation": "crosswalk"}}
    status, _, doc = await api.post(path, None, json=body)
    assert status == 403  # no CSRF token
    status, _, doc = await api.post(path, None, json={**body, "attributes": {}}, headers={"X-CSRF-Token": csrf})
    assert status == 400 and "attribute[violation] is required" in errors_of(doc)[0]["description"]
    status, _, doc = await api.post(path, None, json=body, headers={"X-CSRF-Token": csrf})
    assert status == 201
    srid = doc["service_request_id"]
    jobs = await api.ctx.bus.consume("sms.outbound", "t", "t", count=10, block=0.1)
    assert [j.data["to"] for j in jobs] == ["+821077770000"]
    assert srid in jobs[0].data["body"] and "Mã số" in jobs[0].data["body"]  # the caller's language
    async with api.ctx.db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(
            ServiceRequest.service_request_id == srid))).scalar_one()
        assert (sr.contact_id, sr.source, sr.language) == (contact.id, "call", "vi")
    status, _, doc = await api.post("/api/open311/contacts/999999/requests", None, json=body,
                                    headers={"X-CSRF-Token": csrf})
    assert status == 404


async def test_openapi_lists_open311_paths(api: Api) -> None:
    _, _, doc = await api.get("/openapi.json")
    for path in ("/open311/v2/services.{fmt}", "/open311/v2/requests.{fmt}",
                 "/open311/v2/requests/{service_request_id}.{fmt}", "/open311/v2/tokens/{token}.{fmt}",
                 "/open311/v2/discovery.{fmt}", "/api/open311/requests/{service_request_id}/status"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/open311/v2/requests.{fmt}"]) == {"get", "post"}
