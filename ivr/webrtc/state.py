"""What the browser-call handlers share on the web app: page tokens and the credential issuer."""

from __future__ import annotations

from aiohttp import web

from ivr.config import Settings
from ivr.webrtc.credentials import CredentialIssuer, PageTokens


class WebcallState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = PageTokens(settings.web.secret_key, settings.webrtc.page_token_ttl_seconds)
        self.issuer = CredentialIssuer(settings.webrtc)


STATE_KEY = web.AppKey("webcall", WebcallState)


def webcall_state(request: web.Request) -> WebcallState:
    return request.app[STATE_KEY]
