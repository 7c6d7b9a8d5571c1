"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.support.schemathesis_hooks``): sign every
fuzzed webhook request with the secret in ``DASAN_FUZZ_WEBHOOK_SECRET``, so the fuzzer gets
past the signature check into the handlers. Signing happens on the prepared request (a
``requests`` auth object), i.e. over the exact bytes and URL that are sent."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl

import requests
import schemathesis

from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from ivr.messaging.providers.twilio import TWILIO_HEADER, twilio_signature


class SignWebhook(requests.auth.AuthBase):
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
        if "/webhooks/twilio/" in (request.url or ""):
            params = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            request.headers[TWILIO_HEADER] = twilio_signature(self.secret, request.url or "", params)
        else:
            request.headers[GENERIC_HEADER] = generic_signature(self.secret, raw)
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    secret = os.environ.get("DASAN_FUZZ_WEBHOOK_SECRET")
    # Half of the cases keep whatever signature was generated (forged): both paths get fuzzed.
    if secret and case.path.startswith("/webhooks/") and hash(repr(case.body)) % 2 == 0:
        kwargs["auth"] = SignWebhook(secret)
