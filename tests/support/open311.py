"""Helpers for tests of the Open311 API: a real server on an ephemeral port, the published
GeoReport v2 JSON schemas, and XML-to-data conversion."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from ivr.config import PROJECT_ROOT
from ivr.context import AppContext

SCHEMA_DIR = PROJECT_ROOT / "tests" / "data" / "open311"


def schema_validator(name: str) -> Draft7Validator:
    """A validator for one of the published schemas (services.json, request.json, ...)."""
    registry: Registry[Any] = Registry()
    for path in SCHEMA_DIR.glob("*.json"):
        if path.name == "swagger.json":
            continue
        registry = registry.with_resource(path.name, Resource.from_contents(
            json.loads(path.read_text()), default_specification=DRAFT7))
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return Draft7Validator(schema, registry=registry, format_checker=FormatChecker())


@asynccontextmanager
async def serve(ctx: AppContext) -> AsyncIterator[str]:
    """The whole dasan web application on 127.0.0.1:<free port>; yields its base URL."""
    from ivr.web.app import create_app

    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def xml_to_data(element: ET.Element) -> Any:
    """An element with children -> dict (or list when the children repeat one name)."""
    children = list(element)
    if not children:
        return element.text
    names = [c.tag for c in children]
    if (len(children) > 1 and len(set(names)) == 1) or element.tag in (
            "services", "service_requests", "attributes", "values", "endpoints", "formats", "errors"):
        return [xml_to_data(c) for c in children]
    return {c.tag: xml_to_data(c) for c in children}
