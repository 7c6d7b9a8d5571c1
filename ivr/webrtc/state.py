"""What the browser-call handlers share on the web app: page tokens and the credential issuer
(their state is in the counselling database, shared with the other web processes and nodes)."""

from __future__ import annotations

from aiohttp import web

from ivr.config import Settings
from ivr.db import Database
from ivr.webrtc.credentials import CredentialIssuer, PageTokens
from ivr.webrtc.site_settings import SiteWebrtc


class WebcallState:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.tokens = PageTokens(db, settings.web.secret_key, settings.webrtc.page_token_ttl_seconds)
        self.issuer = CredentialIssuer(db, settings.webrtc)
        self.site = SiteWebrtc(settings)  # the admin console's edits, saved by any web process


STATE_KEY = web.AppKey("webcall", WebcallState)


def webcall_state(request: web.Request) -> WebcallState:
    state = request.app[STATE_KEY]
    state.site.refresh()
    return state
