"""Webhook signatures: the generic provider's HMAC-SHA256 and Twilio's X-Twilio-Signature.

Generic: ``X-Dasan-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` (the form GitHub
and many gateways use). Twilio: base64 HMAC-SHA1 with the auth token over the full URL the
request was sent to followed by every POST parameter, sorted by name (then value), as
name+value (https://www.twilio.com/docs/usage/security#validating-requests); known answers
in tests/test_messaging_signatures.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

GENERIC_HEADER = "X-Dasan-Signature"
TWILIO_HEADER = "X-Twilio-Signature"


def generic_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_generic(secret: str, body: bytes, header: str | None) -> bool:
    # An empty secret is one everybody knows: nothing signed with it is believed.
    return bool(secret) and bool(header) and hmac.compare_digest(generic_signature(secret, body), str(header).strip())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    # Sorted by name, and a repeated name's values sorted too (as Twilio's helper libraries do):
    # the order a form arrives in must not matter.
    payload = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, urls: Iterable[str], params: list[tuple[str, str]],
                  header: str | None) -> bool:
    """True when the signature matches one of ``urls`` (public URL and the URL as received:
    behind a proxy the address Twilio posted to is the public one)."""
    if not header or not auth_token:
        return False
    return any(hmac.compare_digest(twilio_signature(auth_token, url, params), header.strip())
               for url in urls)
