"""Helpers for tests of the Open311 API: the project's GeoReport v2 JSON Schemas
(tests/data/open311) and XML-to-data conversion."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.support.data import OPEN311_SCHEMAS


def schema_validator(name: str) -> Draft7Validator:
    """A validator for one of the schemas (services.json, requests.json, ...), its $refs resolved."""
    registry: Registry[Any] = Registry()
    for path in OPEN311_SCHEMAS.glob("*.json"):
        registry = registry.with_resource(path.name, Resource.from_contents(
            json.loads(path.read_text()), default_specification=DRAFT7))
    schema = json.loads((OPEN311_SCHEMAS / name).read_text())
    return Draft7Validator(schema, registry=registry, format_checker=FormatChecker())


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
