"""Webhook signatures against known answers, not against the function that makes them.

Twilio's vectors are the ones its documentation and its helper libraries publish
(https://www.twilio.com/docs/usage/security#validating-requests; twilio-python's
tests/unit/test_request_validator.py): auth token ``12345``, the request posted to
``https://mycompany.com/myapp.php?foo=1&bar=2``. The generic HMAC-SHA256 vector is RFC 4231's
test case 2 (key "Jefe").
"""

from __future__ import annotations

import pytest

from ivr.messaging.providers.generic import generic_signature, verify_generic
from ivr.messaging.providers.twilio import twilio_signature, verify_twilio

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
          ("To", "+18005551212"), ("Caller", "+14158675309")]
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
# Twilio signs the URL exactly as it posted to it: the same request with an explicit port.
EXPECTED_PORT_443 = "kvajT1Ptam85bY51eRf/AJRuM3w="
EXPECTED_HTTP_PORT_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4="
# A repeated parameter: names sorted, then the values of one name sorted too.
DUPLICATES = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
EXPECTED_DUPLICATES = "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_documentation_vector() -> None:
    assert twilio_signature(TOKEN, URL, PARAMS) == EXPECTED


def test_twilio_signature_does_not_depend_on_the_order_parameters_arrive_in() -> None:
    assert twilio_signature(TOKEN, URL, list(reversed(PARAMS))) == EXPECTED


def test_twilio_vectors_with_explicit_ports() -> None:
    assert twilio_signature(TOKEN, URL.replace(".com", ".com:443"), PARAMS) == EXPECTED_PORT_443
    http_80 = URL.replace(".com", ".com:80").replace("https", "http")
    assert twilio_signature(TOKEN, http_80, PARAMS) == EXPECTED_HTTP_PORT_80


def test_twilio_repeated_parameter_vector() -> None:
    assert twilio_signature(TOKEN, URL, DUPLICATES) == EXPECTED_DUPLICATES
    assert twilio_signature(TOKEN, URL, list(reversed(DUPLICATES))) == EXPECTED_DUPLICATES


def test_twilio_signature_without_parameters_covers_the_url_alone() -> None:
    # HMAC-SHA1("12345", URL) computed independently with openssl:
    # printf %s "$URL" | openssl dgst -sha1 -hmac 12345 -binary | base64
    assert twilio_signature(TOKEN, URL, []) == URL_ONLY


@pytest.mark.parametrize(("urls", "header", "ok"), [
    ([URL], EXPECTED, True),
    ([URL], f"  {EXPECTED}\n", True),  # stray whitespace around the header value
    (["https://proxy.internal/sms", URL], EXPECTED, True),  # one of the URLs matches
    (["https://proxy.internal/sms"], EXPECTED, False),
    ([URL], EXPECTED_PORT_443, False),
    ([URL], EXPECTED[:-2] + "A=", False),
    ([URL], "", False),
    ([URL], None, False),
    ([], EXPECTED, False),
])
def test_verify_twilio(urls: list[str], header: str | None, ok: bool) -> None:
    assert verify_twilio(TOKEN, urls, PARAMS, header) is ok


def test_verify_twilio_rejects_a_changed_parameter_or_token() -> None:
    changed = [(name, "9999" if name == "Digits" else value) for name, value in PARAMS]
    assert not verify_twilio(TOKEN, [URL], changed, EXPECTED)
    assert not verify_twilio("54321", [URL], PARAMS, EXPECTED)


URL_ONLY = "zYQTYrRWXE7LtzbG4PfP7/bkkGo="


# RFC 4231 test case 2: HMAC-SHA256 with key "Jefe" over "what do ya want for nothing?".
RFC4231_KEY = "Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_generic_signature_rfc4231_vector() -> None:
    assert generic_signature(RFC4231_KEY, RFC4231_DATA) == "sha256=" + RFC4231_MAC


@pytest.mark.parametrize(("header", "ok"), [
    ("sha256=" + RFC4231_MAC, True),
    (" sha256=" + RFC4231_MAC + "\r\n", True),
    (RFC4231_MAC, False),  # the "sha256=" prefix is part of the value
    ("sha1=" + RFC4231_MAC, False),
    ("sha256=" + RFC4231_MAC[:-1] + "4", False),
    ("", False),
    (None, False),
])
def test_verify_generic(header: str | None, ok: bool) -> None:
    assert verify_generic(RFC4231_KEY, RFC4231_DATA, header) is ok
