"""GeoReport v2 documents as JSON and XML, and the spec's error format.

Every document is built once as plain data (lists of dicts); ``render`` turns it into JSON
or into the spec's XML (root element, one child element per item, empty element for null).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from aiohttp import web

from ivr.open311.catalog import Catalog, Service
from ivr.open311.models import ServiceRequest

JSON_TYPE = "application/json"
XML_TYPE = "text/xml"
FORMATS = ("json", "xml")
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"


class Open311Error(Exception):
    """An error the API reports in the spec's format: HTTP status ``code`` and a description."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def as_utc(value: datetime) -> datetime:
    # SQLite gives back naive datetimes; everything is stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    """W3C date-time with an offset, as the spec requires (naive values are UTC)."""
    if value is None:
        return None
    return as_utc(value).astimezone(tz).isoformat(timespec="seconds")


# -- documents as plain data -------------------------------------------------------------

def service_doc(service: Service) -> dict[str, Any]:
    return {
        "service_code": service.service_code,
        "service_name": service.service_name,
        "description": service.description,
        "metadata": service.metadata,
        "type": service.type,
        "keywords": ", ".join(service.keywords) or None,
        "group": service.group,
    }


def definition_doc(service: Service) -> dict[str, Any]:
    attributes = []
    for attr in sorted(service.attributes, key=lambda a: (a.order is None, a.order or 0)):
        doc: dict[str, Any] = {
            "variable": attr.variable,
            "code": attr.code,
            "datatype": attr.datatype,
            "required": attr.required,
            "datatype_description": attr.datatype_description,
            "order": attr.order,
            "description": attr.description,
        }
        if attr.values:
            doc["values"] = [{"key": v.key, "name": v.name} for v in attr.values]
        attributes.append(doc)
    return {"service_code": service.service_code, "attributes": attributes}


def request_doc(sr: ServiceRequest, tz: ZoneInfo) -> dict[str, Any]:
    # Personal data (phone, email, names, device/account ids) is never published.
    return {
        "service_request_id": sr.service_request_id,
        "status": sr.status,
        "status_notes": sr.status_notes,
        "service_name": sr.service_name,
        "service_code": sr.service_code,
        "description": sr.description,
        "agency_responsible": sr.agency_responsible,
        "service_notice": sr.service_notice,
        "requested_datetime": iso(sr.requested_datetime, tz),
        "updated_datetime": iso(sr.updated_datetime, tz),
        "expected_datetime": iso(sr.expected_datetime, tz),
        "address": sr.address,
        "address_id": sr.address_id,
        "zipcode": sr.zipcode,
        "lat": sr.lat,
        "long": sr.long,
        "media_url": sr.media_url,
    }


def discovery_doc(catalog: Catalog, base_url: str, tz: ZoneInfo) -> dict[str, Any]:
    changeset = iso(catalog.changeset, tz)
    return {
        "changeset": changeset,
        "contact": catalog.contact,
        "key_service": catalog.key_service,
        "endpoints": [{
            "specification": SPEC_URL,
            "url": base_url,
            "changeset": changeset,
            "type": "production",
            "formats": [XML_TYPE, JSON_TYPE],
        }],
    }


# -- rendering ------------------------------------------------------------------------------

def _xml_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xml_fill(parent: ET.Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        child = ET.SubElement(parent, key)
        if isinstance(value, dict):
            _xml_fill(child, value)
        elif isinstance(value, list):
            # Plural container, singular items: attributes/attribute, values/value, formats/format.
            item_name = key[:-1] if key.endswith("s") else "item"
            for item in value:
                element = ET.SubElement(child, item_name)
                if isinstance(item, dict):
                    _xml_fill(element, item)
                else:
                    element.text = _xml_value(item)
        else:
            child.text = _xml_value(value)


def to_xml(root: str, item: str | None, data: Sequence[dict[str, Any]] | dict[str, Any]) -> bytes:
    top = ET.Element(root)
    if isinstance(data, dict):
        _xml_fill(top, data)
    else:
        for entry in data:
            _xml_fill(ET.SubElement(top, item or "item"), entry)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8", xml_declaration=False)


def render(fmt: str, root: str, item: str | None, data: Any, status: int = 200) -> web.Response:
    if fmt == "xml":
        return web.Response(body=to_xml(root, item, data), status=status,
                            content_type=XML_TYPE, charset="utf-8")
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type=JSON_TYPE, charset="utf-8")


def error_response(fmt: str, errors: list[Open311Error]) -> web.Response:
    data = [{"code": e.code, "description": e.description} for e in errors]
    return render(fmt if fmt in FORMATS else "json", "errors", "error", data, status=errors[0].code)
