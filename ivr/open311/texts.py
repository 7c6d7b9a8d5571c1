"""What the citizen reads (SMS) or hears (IVR) about a service request, in their language.

The texts are the language registry's ``replies`` (``ivr.languages``, ``languages.yaml``
beside the menus): a site adds a language's replies there, with no code change. A language
without replies reads the registry's first language.
"""

from __future__ import annotations

from datetime import datetime

from ivr.languages import Languages, Replies


def lang(registry: Languages, language: str | None) -> str:
    """The language whose replies a citizen speaking ``language`` gets."""
    return registry.replies_language(language)


def _with_notes(text: str, notes: str | None) -> str:
    return f"{text} {notes.strip()}" if notes and notes.strip() else text


def _status_word(replies: Replies, status: str) -> str:
    return replies.closed if status == "closed" else replies.open


def _expected(replies: Replies, status: str, expected: datetime | None) -> str:
    if expected is None or status != "open":
        return ""
    return replies.expected.format(date=expected.date().isoformat())


def received_sms(registry: Languages, language: str, site: str, service: str, request_id: str) -> str:
    return registry.replies(language).received.format(site=site, service=service, id=request_id)


def status_sms(registry: Languages, language: str, site: str, service: str, request_id: str, status: str,
               notes: str | None, expected: datetime | None) -> str:
    replies = registry.replies(language)
    text = replies.updated.format(site=site, service=service, id=request_id, status=_status_word(replies, status))
    return _with_notes(text + _expected(replies, status, expected), notes)


def spoken_status(registry: Languages, language: str, service: str, request_id: str, status: str,
                  notes: str | None, expected: datetime | None) -> str:
    replies = registry.replies(language)
    text = replies.spoken.format(id=" ".join(request_id), service=service, status=_status_word(replies, status))
    return _with_notes(text + _expected(replies, status, expected), notes)


def spoken_not_found(registry: Languages, language: str, request_id: str) -> str:
    return registry.replies(language).not_found.format(id=" ".join(request_id))
