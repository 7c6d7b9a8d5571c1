"""The Open311 GeoReport v2 API under ``/open311/v2/`` (JSON and XML), the department
status-update endpoint and the agent console's "file a request for this contact" endpoint.

URL forms follow the spec: ``services.json``, ``services/{code}.xml``, ``requests.json``,
``requests/{id}.json``, ``tokens/{token}.json``, ``discovery.json``; errors come back in the
spec's ``errors`` document with the HTTP status of the first error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from ivr.context import AppContext
from ivr.open311 import formats, keys
from ivr.open311.formats import Open311Error, error_response, render
from ivr.open311.models import ServiceRequest
from ivr.open311.service import NewRequest, Open311, parse_datetime
from ivr.web import auth
from ivr.web.errors import ERROR_FORMS
from ivr.web.openapi import add_paths
from ivr.web.params import parse_db_id

log = logging.getLogger("dasan.open311")
OPEN311_KEY = web.AppKey("open311", Open311)
PREFIX = "/open311/v2"
MAX_REQUESTS = 1000
# A POST with ``phone`` makes the city text that number: at most this many such requests per
# number and per API key in an hour (more would let a client pump SMS to any number).
TEXTS_PER_NUMBER_HOUR = 3
TEXTS_PER_KEY_HOUR = 60
# Requests that came in by SMS/MMS, a call or a chat hold a citizen's own words: the public
# listing never publishes them (the record keeps them for agents and departments).
PRIVATE_SOURCES = ("sms", "mms", "call", "chat", "console")
MAX_SPAN = timedelta(days=90)
_ATTRIBUTE = re.compile(r"^attribute\[([^\]]+)\](\[\])?$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _desk(request: web.Request) -> Open311:
    return request.app[OPEN311_KEY]


def spec_errors(handler: Handler) -> Handler:
    """Unsupported formats, a foreign jurisdiction and ``Open311Error`` become spec errors."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        fmt = request.match_info.get("fmt", "json")
        try:
            if fmt not in formats.FORMATS:
                raise Open311Error(404, f"format {fmt!r} is not served; use .json or .xml")
            jurisdiction = request.query.get("jurisdiction_id")
            if jurisdiction and jurisdiction != _desk(request).catalog.jurisdiction_id:
                raise Open311Error(404, f"jurisdiction_id {jurisdiction} was not found")
            return await handler(request)
        except Open311Error as exc:
            return error_response(fmt, [exc])
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # e.g. 413 (body over web.max_body_bytes) while reading the form: same error format.
            return error_response(fmt, [Open311Error(exc.status, exc.text or exc.reason)])
        except Exception:
            log.exception("open311 %s %s failed", request.method, request.path)
            return error_response(fmt, [Open311Error(500, "internal error; the request was not processed")])

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


# -- discovery and services ---------------------------------------------------------------

@spec_errors
async def discovery(request: web.Request) -> web.Response:
    desk = _desk(request)
    doc = formats.discovery_doc(desk.catalog, desk.base_url, desk.tz)
    return render(request.match_info["fmt"], "discovery", None, doc)


@spec_errors
async def list_services(request: web.Request) -> web.Response:
    """The service list; with ``?lang=<code>`` (our extension, used by the /call page's report
    form) each ``service_name`` is the service's name in that language from the language
    registry (else its fallback's, else the first language's, else the catalogue's)."""
    desk = _desk(request)
    docs = [formats.service_doc(s) for s in desk.catalog.services]
    lang = request.query.get("lang")
    if lang:
        registry = desk.languages
        for doc in docs:
            doc["service_name"] = registry.service_name(lang, doc["service_code"], doc["service_name"])
    return render(request.match_info["fmt"], "services", "service", docs)


@spec_errors
async def service_definition(request: web.Request) -> web.Response:
    code = request.match_info["service_code"]
    service = _desk(request).catalog.get(code)
    if service is None:
        raise Open311Error(404, f"service_code {code} was not found")
    return render(request.match_info["fmt"], "service_definition", None, formats.definition_doc(service))


# -- requests -------------------------------------------------------------------------------

def _attributes(params: MultiDict[str] | MultiDictProxy[Any]) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for name, value in params.items():
        found = _ATTRIBUTE.match(name)
        if not found or not isinstance(value, str):
            continue
        code, multi = found.group(1), found.group(2)
        if multi:
            current = out.setdefault(code, [])
            if isinstance(current, list):
                current.append(value)
        else:
            out[code] = value
    return out


@spec_errors
async def post_request(request: web.Request) -> web.Response:
    desk = _desk(request)
    params: MultiDict[Any] = MultiDict(request.query)
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await _form(request)
        for name in set(form.keys()):
            params.popall(name, None)
        params.extend(form)

    def one(name: str) -> str | None:
        value = params.get(name)
        return value if isinstance(value, str) else None

    api_key = await keys.authenticate(desk.ctx.db, one("api_key"), "submit")
    if api_key is None:
        raise Open311Error(403, "api_key was not provided or is not valid for creating requests")
    if one("phone"):
        await _check_text_limits(desk, api_key.id, one("phone") or "")
    new = NewRequest(
        service_code=(one("service_code") or "").strip(),
        lat=one("lat"), long=one("long"), address_string=one("address_string"),
        address_id=one("address_id"), zipcode=one("zipcode"), description=one("description"),
        media_url=one("media_url"), attributes=_attributes(params), email=one("email"),
        device_id=one("device_id"), account_id=one("account_id"), first_name=one("first_name"),
        last_name=one("last_name"), phone=one("phone"), language=one("locale"),
    )
    async with desk.ctx.db.transaction() as session:
        sr, _ = await desk.create(session, new, source="api", api_key=api_key)
    await desk.notify_received(sr)
    service = desk.catalog.get(sr.service_code)
    doc: dict[str, Any]
    if service is not None and service.type != "realtime":
        # Batch services answer with a token (GET tokens/{token} gives the id), as the spec says.
        doc = {"token": sr.token}
    else:
        doc = {"service_request_id": sr.service_request_id}
    doc.update(service_notice=sr.service_notice, account_id=sr.account_id)
    return render(request.match_info["fmt"], "service_requests", "request", [doc])


async def _check_text_limits(desk: Open311, key_id: int, phone: str) -> None:
    """Open311Error 429 when this number or this key had its texts for the hour."""
    from sqlalchemy import func

    from ivr import records

    since = datetime.now(UTC) - timedelta(hours=1)
    recent = select(func.count()).select_from(ServiceRequest).where(
        ServiceRequest.requested_datetime >= since, ServiceRequest.phone.is_not(None))
    async with desk.ctx.db.session() as session:
        by_number = (await session.execute(recent.where(
            ServiceRequest.phone == records.normalize_phone(phone)))).scalar_one()
        by_key = (await session.execute(recent.where(ServiceRequest.api_key_id == key_id))).scalar_one()
    if by_number >= TEXTS_PER_NUMBER_HOUR:
        raise Open311Error(429, f"this phone number already has {TEXTS_PER_NUMBER_HOUR} requests in the last hour; "
                                "try again later or leave out phone")
    if by_key >= TEXTS_PER_KEY_HOUR:
        raise Open311Error(429, f"this api_key already sent {TEXTS_PER_KEY_HOUR} requests with a phone number "
                                "in the last hour; try again later")


def public_doc(sr: ServiceRequest, tz: Any) -> dict[str, Any]:
    """``formats.request_doc`` for the public listing: a citizen's own words are withheld."""
    doc = formats.request_doc(sr, tz)
    if sr.source in PRIVATE_SOURCES:
        doc["description"] = None
    return doc


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    try:
        return await request.post()
    except web.HTTPException:
        raise
    except Exception:  # a malformed multipart or urlencoded body
        raise Open311Error(400, "the request body is not a readable form") from None


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@spec_errors
async def get_requests(request: web.Request) -> web.Response:
    desk = _desk(request)
    q = request.query
    stmt = select(ServiceRequest)
    ids = _split(q.get("service_request_id"))
    if ids:
        # The spec: a list of ids overrides every other argument.
        stmt = stmt.where(ServiceRequest.service_request_id.in_(ids[:MAX_REQUESTS]))
    else:
        codes = _split(q.get("service_code"))
        if codes:
            stmt = stmt.where(ServiceRequest.service_code.in_(codes))
        statuses = [s for v in q.getall("status", []) for s in _split(v)]
        wrong = [s for s in statuses if s not in ("open", "closed")]
        if wrong:
            raise Open311Error(400, f"status must be open or closed, got {', '.join(wrong)}")
        if statuses:
            stmt = stmt.where(ServiceRequest.status.in_(statuses))
        start = parse_datetime(q["start_date"], "start_date", desk.tz) if q.get("start_date") else None
        end = parse_datetime(q["end_date"], "end_date", desk.tz) if q.get("end_date") else None
        if start is not None and end is not None:
            if start > end:
                raise Open311Error(400, "start_date is after end_date")
            if end - start > MAX_SPAN:
                raise Open311Error(400, "start_date and end_date may not span more than 90 days")
        elif start is not None:
            end = start + MAX_SPAN
        elif end is not None:
            start = end - MAX_SPAN
        else:
            end = datetime.now(UTC)
            start = end - MAX_SPAN
        stmt = stmt.where(ServiceRequest.requested_datetime >= start,
                          ServiceRequest.requested_datetime <= end)
    stmt = stmt.order_by(ServiceRequest.requested_datetime.desc(), ServiceRequest.id.desc()).limit(MAX_REQUESTS)
    async with desk.ctx.db.session() as session:
        rows = list((await session.execute(stmt)).scalars())
    docs = [public_doc(sr, desk.tz) for sr in rows]
    return render(request.match_info["fmt"], "service_requests", "request", docs)


async def _one_request(desk: Open311, column: InstrumentedAttribute[str], value: str) -> ServiceRequest:
    """The request whose ``column`` (a unique one) is ``value``, or the spec's 404."""
    async with desk.ctx.db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(column == value))).scalar_one_or_none()
    if sr is None:
        raise Open311Error(404, f"{column.key} {value} was not found")
    return sr


@spec_errors
async def get_request(request: web.Request) -> web.Response:
    desk = _desk(request)
    sr = await _one_request(desk, ServiceRequest.service_request_id, request.match_info["service_request_id"])
    return render(request.match_info["fmt"], "service_requests", "request", [public_doc(sr, desk.tz)])


@spec_errors
async def get_token(request: web.Request) -> web.Response:
    sr = await _one_request(_desk(request), ServiceRequest.token, request.match_info["token"])
    return render(request.match_info["fmt"], "service_requests", "request",
                  [{"service_request_id": sr.service_request_id, "token": sr.token}])


async def get_media(request: web.Request) -> web.StreamResponse:
    """The photo of an MMS-made request: ``media_url`` points here (unguessable key)."""
    desk = _desk(request)
    key = request.match_info["name"].split(".", 1)[0]
    async with desk.ctx.db.session() as session:
        sr = (await session.execute(select(ServiceRequest).where(
            ServiceRequest.media_key == key))).scalar_one_or_none()
    path = desk.media_file(sr) if sr is not None else None
    if sr is None or path is None or not path.is_file():
        raise web.HTTPNotFound(text='{"error": "no such media"}', content_type="application/json")
    from ivr.messaging.media import media_headers

    return web.FileResponse(path, headers=media_headers(sr.media_content_type))


# -- department status updates and the agent console ------------------------------------------

async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise Open311Error(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Open311Error(400, "the body must be a JSON object")
        return data
    return {k: v for k, v in (await _form(request)).items() if isinstance(v, str)}


async def _update(request: web.Request, by: str, agency: str | None) -> web.Response:
    desk = _desk(request)
    try:
        body = await _body(request)
        sr = await desk.update_status(
            request.match_info["service_request_id"], str(body.get("status", "")),
            status_notes=body.get("status_notes"),
            agency_responsible=body.get("agency_responsible") or agency,
            expected_datetime=body.get("expected_datetime"), by=by)
    except Open311Error as exc:
        return error_response("json", [exc])
    return web.json_response(formats.request_doc(sr, desk.tz))


@auth.requires("agent", "supervisor")
async def _update_by_user(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    return await _update(request, user.username if user else "", None)


async def update_status(request: web.Request) -> web.StreamResponse:
    """POST /api/open311/requests/{id}/status: a department (API key with scope ``update``, in
    ``X-Api-Key`` or ``api_key``) or a signed-in agent/supervisor changes the status."""
    given = request.headers.get("X-Api-Key") or request.query.get("api_key")
    if given is None and request.content_type == "application/x-www-form-urlencoded":
        try:
            value = (await _form(request)).get("api_key")
        except Open311Error as exc:
            return error_response("json", [exc])
        given = value if isinstance(value, str) else None
    if given is None:
        return await _update_by_user(request)
    key = await keys.authenticate(_desk(request).ctx.db, given, "update")
    if key is None:
        return error_response("json", [Open311Error(403, "api_key is not valid for status updates")])
    return await _update(request, key.name, key.agency)


@auth.requires("agent", "supervisor")
async def file_for_contact(request: web.Request) -> web.StreamResponse:
    """POST /api/open311/contacts/{contact_id}/requests: the record form files a request; the
    answer carries the service_request_id the agent reads out to the caller."""
    desk = _desk(request)
    user = auth.current_user(request)
    try:
        body = await _body(request)
        raw_attrs = body.get("attributes") or {}
        if not isinstance(raw_attrs, dict):
            raise Open311Error(400, "attributes must be an object of code: value")
        new = NewRequest(
            service_code=str(body.get("service_code") or ""),
            lat=body.get("lat"), long=body.get("long"), address_string=body.get("address_string"),
            address_id=body.get("address_id"), description=body.get("description"),
            attributes={str(k): v if isinstance(v, list) else str(v) for k, v in raw_attrs.items()},
        )
        contact_id = parse_db_id(request.match_info["contact_id"])
        if contact_id is None:  # more digits than any id: no such contact (not a database error)
            raise Open311Error(404, "contact was not found")
        sr = await desk.create_from_contact(contact_id, new, by=user.username if user else "",
                                            notify=bool(body.get("notify", True)))
    except Open311Error as exc:
        return error_response("json", [exc])
    return web.json_response(formats.request_doc(sr, desk.tz), status=201)


# -- wiring -------------------------------------------------------------------------------------

def _fmt_path(path: str) -> str:
    return f"{PREFIX}{path}.{{fmt:[A-Za-z0-9]+}}"


def _error_form(request: web.Request, status: int, message: str) -> web.StreamResponse:
    """Errors raised before or around a handler (404/405 of the router, 413 and a multipart
    body without a boundary from ivr.web.limits, 429) in the spec's errors document too."""
    return error_response("xml" if request.path.endswith(".xml") else "json", [Open311Error(status, message)])


def setup(app: web.Application, ctx: AppContext) -> None:
    app.setdefault(ERROR_FORMS, {})["/open311/"] = _error_form
    app[OPEN311_KEY] = desk = Open311(ctx)
    desk.catalog  # noqa: B018  (load now: a broken catalogue stops start-up with file:line)
    r = app.router
    r.add_get(_fmt_path("/discovery"), discovery)
    r.add_get(_fmt_path("/services"), list_services)
    r.add_get(f"{PREFIX}/services/{{service_code:[^/]+?}}.{{fmt:[A-Za-z0-9]+}}", service_definition)
    r.add_post(_fmt_path("/requests"), post_request)
    r.add_get(_fmt_path("/requests"), get_requests)
    r.add_get(f"{PREFIX}/requests/{{service_request_id:[^/]+?}}.{{fmt:[A-Za-z0-9]+}}", get_request)
    r.add_get(f"{PREFIX}/tokens/{{token:[^/]+?}}.{{fmt:[A-Za-z0-9]+}}", get_token)
    r.add_get(f"{PREFIX}/media/{{name}}", get_media)
    r.add_post("/api/open311/requests/{service_request_id}/status", update_status)
    r.add_post("/api/open311/contacts/{contact_id:\\d+}/requests", file_for_contact)
    add_paths(app, openapi_paths())


def openapi_paths() -> dict[str, Any]:
    fmt = {"name": "fmt", "in": "path", "required": True, "schema": {"enum": ["json", "xml"]}}
    jur = {"name": "jurisdiction_id", "in": "query", "schema": {"type": "string"}}

    def op(summary: str, *params: dict[str, Any], method: str = "get", **extra: Any) -> dict[str, Any]:
        return {method: {"summary": summary, "tags": ["open311"], "parameters": [fmt, jur, *params],
                         "responses": {"200": {"description": "GeoReport v2 document"},
                                       "400": {"description": "errors document"},
                                       "403": {"description": "errors document"},
                                       "404": {"description": "errors document"}}, **extra}}

    def path_param(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}

    def query(name: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": {"type": "string"}}

    requests_ops = op("GeoReport v2: query service requests (90-day window, at most 1000)",
                      query("service_request_id"), query("service_code"), query("start_date"),
                      query("end_date"), query("status"))
    requests_ops.update(op("GeoReport v2: create a service request (api_key, location, attribute[code])",
                           method="post", requestBody={"content": {"application/x-www-form-urlencoded": {
                               "schema": {"type": "object", "required": ["api_key", "service_code"]}}}}))
    return {
        f"{PREFIX}/discovery.{{fmt}}": op("GeoReport v2 service discovery"),
        f"{PREFIX}/services.{{fmt}}": op("GeoReport v2: list services"),
        f"{PREFIX}/services/{{service_code}}.{{fmt}}": op("GeoReport v2: service definition",
                                                          path_param("service_code")),
        f"{PREFIX}/requests.{{fmt}}": requests_ops,
        f"{PREFIX}/requests/{{service_request_id}}.{{fmt}}": op("GeoReport v2: one service request",
                                                                path_param("service_request_id")),
        f"{PREFIX}/tokens/{{token}}.{{fmt}}": op("GeoReport v2: service_request_id for a token",
                                                 path_param("token")),
        f"{PREFIX}/media/{{name}}": {"get": {"summary": "Photo of an MMS-made request", "tags": ["open311"],
                                             "parameters": [path_param("name")],
                                             "responses": {"200": {"description": "the image"},
                                                           "404": {"description": "no such media"}}}},
        "/api/open311/requests/{service_request_id}/status": {"post": {
            "summary": "Department status update (status, status_notes, agency_responsible, expected_datetime); "
                       "notifies the citizen by SMS",
            "tags": ["open311"], "parameters": [path_param("service_request_id")],
            "security": [{"session": []}, {"open311_key": []}],
            "responses": {"200": {"description": "the updated request"},
                          "400": {"description": "bad input"}, "403": {"description": "bad key"},
                          "404": {"description": "unknown request"}}}},
        "/api/open311/contacts/{contact_id}/requests": {"post": {
            "summary": "File a service request for a contact (agent record form)",
            "tags": ["open311"], "parameters": [path_param("contact_id")], "security": [{"session": []}],
            "responses": {"201": {"description": "the new request with its service_request_id"},
                          "400": {"description": "bad input"}, "404": {"description": "unknown contact"}}}},
    }
