"""The IVR's "where is my request?" answer: the ``service_request_status`` lookup handler.

The caller keys in a tracking number; the engine reads back the number (SAY DIGITS) and the
status with the menu's own ``status-open``/``status-closed`` prompts, recorded in every
language. The full sentence in the caller's language (with the service name and the
department's notes, which have no recorded prompt) goes to the call log and the Asterisk
console. A number that is not a service request falls back to the engine's built-in contact
lookup (a call's own tracking number still gets an answer).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from ivr.engine import lookups
from ivr.languages import load_languages
from ivr.open311 import texts
from ivr.open311.formats import as_utc
from ivr.open311.service import find_request

HANDLER_NAME = "service_request_status"


async def service_request_status(request: lookups.LookupRequest) -> lookups.Spoken:
    digits = "".join(ch for ch in request.digits if ch.isdigit())
    sr = await find_request(request.db, digits)
    registry = load_languages(request.settings.agi.menus_dir)
    if sr is None:
        fallback = await lookups.contact_status(request)
        if any(p.value == "lookup-not-found" for p in fallback.parts):
            fallback.text = texts.spoken_not_found(registry, request.language, digits)
        return fallback
    language = texts.lang(registry, request.language)
    name = registry.service_name(language, sr.service_code, sr.service_name)
    expected = (as_utc(sr.expected_datetime).astimezone(ZoneInfo(request.settings.timezone))
                if sr.expected_datetime else None)
    text = texts.spoken_status(registry, language, name, sr.service_request_id, sr.status, sr.status_notes, expected)
    return lookups.Spoken(text, [lookups.Part("prompt", "lookup-number"),
                                 lookups.Part("digits", sr.service_request_id),
                                 lookups.Part("prompt", f"status-{sr.status}")])


def register() -> None:
    lookups.register(HANDLER_NAME, service_request_status)
