"""Per-session SIP credentials for citizens' browsers (the design is defended in docs/webrtc.md).

There is no open SIP registration. Asterisk has a fixed pool of citizen endpoints per kind
(``webvideo-NNN`` reaches only the video queue, ``webvoice-NNN`` only the voice entry); their
passwords are not in pjsip.conf but in astdb, where this service puts one for one session:

1. The /call page carries a one-time form token (:class:`PageTokens`): signed with the site's
   secret key, valid for ``page_token_ttl_seconds``, good for one mint. An expired or replayed
   token is refused and logged.
2. Minting (:class:`CredentialIssuer`) is rate limited per client address, leases the least
   recently used slot of the kind, draws a fresh password and an expiry
   (``credential_ttl_seconds``), and the caller pushes both to Asterisk
   (:mod:`ivr.webrtc.asterisk_push`).
3. Asterisk authenticates the INVITE against that password; the dialplan
   (``dasan-web-admit``) refuses an expired one and deletes the password as the call starts,
   so the same credential cannot start a second call (a replay fails SIP authentication).

State lives in this process (one web process mints; see docs/webrtc.md for several).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ivr.config import WebrtcSettings
from ivr.web.limits import RateLimiter
from ivr.webrtc.slots import Kind, slot_names

log = logging.getLogger("dasan.webrtc")

MAX_SPENT_TOKENS = 200_000


class CredentialRefused(Exception):
    """A request for a credential that must not get one; ``reason`` is a stable word."""

    def __init__(self, reason: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Credential:
    kind: Kind
    username: str  # the endpoint (slot) name, also the SIP auth user
    password: str
    issued_at: float  # epoch seconds
    expires_at: float


class PageTokens:
    """One-time tokens for the /call page: ``<id>.<issued>.<signature>``.

    Stateless to issue (an HMAC of id and time with the site's secret); spent ids are kept
    until they would have expired anyway, so memory stays bounded by the issue rate.
    """

    def __init__(self, secret: str, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"dasan-webcall-page:" + secret.encode()).digest()
        self.ttl = ttl_seconds
        self.clock = clock
        self._spent: OrderedDict[str, float] = OrderedDict()  # id -> expiry, oldest first

    def _sign(self, token_id: str, issued: int) -> str:
        mac = hmac.new(self._key, f"{token_id}.{issued}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def issue(self) -> str:
        token_id = secrets.token_urlsafe(12)
        issued = int(self.clock())
        return f"{token_id}.{issued}.{self._sign(token_id, issued)}"

    def redeem(self, token: str) -> None:
        """Spend ``token``; raises :class:`CredentialRefused` (invalid, expired, replayed)."""
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or not parts[1].isdigit() or len(token) > 200:
            raise CredentialRefused("invalid", "the page token is malformed; reload the page")
        token_id, issued_text, signature = parts
        issued = int(issued_text)
        if not hmac.compare_digest(signature, self._sign(token_id, issued)):
            raise CredentialRefused("invalid", "the page token is not ours; reload the page")
        now = self.clock()
        self._forget(now)
        if now > issued + self.ttl or issued > now + 60:
            raise CredentialRefused("expired", "the page has expired; reload it to call")
        if token_id in self._spent:
            raise CredentialRefused("replayed", "this page token was already used; reload the page")
        self._spent[token_id] = issued + self.ttl
        if len(self._spent) > MAX_SPENT_TOKENS:
            self._spent.popitem(last=False)

    def _forget(self, now: float) -> None:
        while self._spent:
            token_id, expiry = next(iter(self._spent.items()))
            if expiry >= now:
                break
            del self._spent[token_id]


@dataclass(frozen=True)
class Issued:
    """What is remembered of a minted credential (never its password): enough for the page
    that holds the password to answer the survey of that call afterwards."""

    kind: Kind
    username: str
    issued_at: float


SURVEY_HOURS = 6.0  # how long after minting the page may still answer the survey
MAX_ISSUED = 100_000


class CredentialIssuer:
    """Leases citizen endpoints and draws their one-session passwords."""

    def __init__(self, settings: WebrtcSettings, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = float(settings.credential_ttl_seconds)
        self.clock = clock
        self.limiter = RateLimiter(settings.mint_per_minute, clock=monotonic)
        self.issued: OrderedDict[str, Issued] = OrderedDict()  # sha256(password) -> the credential
        self.slots: dict[Kind, OrderedDict[str, float]] = {  # slot -> lease expiry, least recently leased first
            "video": OrderedDict((name, 0.0) for name in slot_names("video", settings.video_slots)),
            "voice": OrderedDict((name, 0.0) for name in slot_names("voice", settings.voice_slots)),
        }

    def mint(self, kind: Kind, address: str) -> Credential:
        """A credential for one call of ``kind``; raises :class:`CredentialRefused` (rate
        limited, or every slot leased to a credential not yet expired)."""
        if kind not in self.slots:
            raise CredentialRefused("invalid", f"kind: one of {', '.join(self.slots)}")
        wait = self.limiter.take((address, "webcall-mint"))
        if wait > 0:
            raise CredentialRefused("rate_limited", "too many calls from this address; try again shortly",
                                    retry_after=wait)
        now = self.clock()
        pool = self.slots[kind]
        slot, lease_end = next(iter(pool.items()))
        if lease_end > now:
            raise CredentialRefused("busy", "every line is being set up right now; try again shortly",
                                    retry_after=lease_end - now)
        pool.move_to_end(slot)
        pool[slot] = now + self.ttl
        credential = Credential(kind=kind, username=slot, password=secrets.token_urlsafe(24),
                                issued_at=now, expires_at=now + self.ttl)
        self.issued[_digest(credential.password)] = Issued(kind, slot, now)
        while self.issued and (len(self.issued) > MAX_ISSUED
                               or next(iter(self.issued.values())).issued_at < now - SURVEY_HOURS * 3600):
            self.issued.popitem(last=False)
        return credential

    def redeem_survey(self, username: str, password: str) -> Issued:
        """The credential a survey answer comes with; good once, within ``SURVEY_HOURS``."""
        found = self.issued.get(_digest(password))
        if found is None or found.username != username:
            raise CredentialRefused("invalid", "this call cannot be rated (unknown or already rated)")
        if found.issued_at < self.clock() - SURVEY_HOURS * 3600:
            raise CredentialRefused("expired", "this call is too old to rate")
        del self.issued[_digest(password)]
        return found

    def release(self, credential: Credential) -> None:
        """Give the slot back at once (its password could not be pushed to Asterisk)."""
        self.issued.pop(_digest(credential.password), None)
        pool = self.slots[credential.kind]
        if pool.get(credential.username) == credential.expires_at:
            pool[credential.username] = 0.0
            pool.move_to_end(credential.username, last=False)


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def refusal_logged(reason: str, address: str, detail: str) -> None:
    log.warning("webcall credential refused (%s) for %s: %s", reason, address, detail)
