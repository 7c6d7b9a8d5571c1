"""How long a provider's message id may be: the longest whose timeline keys still fit.

An inbound message is keyed ``message:<provider>:<id>`` and each delivery status
``status:<provider>:<id>:<status>`` in ``contact_events.external_id``; the id itself is kept in
``messages.provider_message_id``. A webhook refuses a longer id with a 400 naming the field,
instead of a database error (PostgreSQL enforces the lengths) after part of the work is done.
"""

from __future__ import annotations

from ivr.db.models import EXTERNAL_ID_LENGTH, MESSAGE_STATUS_LENGTH, PROVIDER_MESSAGE_ID_LENGTH

LONGEST_NETWORK = 16  # /webhooks/sns/{network}: [a-z0-9_-]{1,16}


def longest_message_id(provider: str) -> int:
    """The longest id of ``provider`` whose message and status keys fit ``external_id``."""
    status_key = len(f"status:{provider}::") + MESSAGE_STATUS_LENGTH
    message_key = len(f"message:{provider}:")
    return min(PROVIDER_MESSAGE_ID_LENGTH, EXTERNAL_ID_LENGTH - max(status_key, message_key))


def message_key(provider: str, message_id: str) -> str:
    return f"message:{provider}:{message_id}"


def status_key(provider: str, message_id: str, status: str) -> str:
    return f"status:{provider}:{message_id}:{status}"
