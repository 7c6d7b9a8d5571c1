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

The state (spent page tokens, leases, minted credentials' hashes, recent mints per address)
is kept in the counselling database (:mod:`ivr.webrtc.models`), so every web process and every
dasan node mints from the same pool, refuses the same replays and counts the same limit. Each
decision is one conditional statement (an insert that a second one collides with, an update or
delete whose row count says who won), so two nodes racing never both win. Times are wall-clock
epoch seconds (nodes keep their clocks in sync with NTP).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ivr.config import WebrtcSettings
from ivr.db import Database
from ivr.webrtc.models import EndpointLease, IssuedCredential, RecentMint, SpentPageToken
from ivr.webrtc.slots import KINDS, Kind, slot_names

log = logging.getLogger("dasan.webrtc")

RATE_WINDOW = 60.0  # seconds: mint_per_minute counts the mints of the last minute
LEASE_TRIES = 8  # another node took the slot we chose: choose again (bounded)


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

    Stateless to issue (an HMAC of id and time with the site's secret, which every node shares);
    a spent id is a row in ``webcall_spent_tokens`` until it would have expired anyway.
    """

    def __init__(self, db: Database, secret: str, ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._key = hashlib.sha256(b"dasan-webcall-page:" + secret.encode()).digest()
        self.ttl = ttl_seconds
        self.clock = clock

    def _sign(self, token_id: str, issued: int) -> str:
        mac = hmac.new(self._key, f"{token_id}.{issued}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def issue(self) -> str:
        token_id = secrets.token_urlsafe(12)
        issued = int(self.clock())
        return f"{token_id}.{issued}.{self._sign(token_id, issued)}"

    async def redeem(self, token: str) -> None:
        """Spend ``token``; raises :class:`CredentialRefused` (invalid, expired, replayed)."""
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or not parts[1].isdigit() or len(token) > 200 or not 0 < len(parts[0]) <= 40:
            raise CredentialRefused("invalid", "the page token is malformed; reload the page")
        token_id, issued_text, signature = parts
        issued = int(issued_text)
        if not hmac.compare_digest(signature, self._sign(token_id, issued)):
            raise CredentialRefused("invalid", "the page token is not ours; reload the page")
        now = self.clock()
        if now > issued + self.ttl or issued > now + 60:
            raise CredentialRefused("expired", "the page has expired; reload it to call")
        try:
            async with self.db.transaction() as session:
                await session.execute(delete(SpentPageToken).where(SpentPageToken.expires_at < now))
                session.add(SpentPageToken(token_id=token_id, expires_at=issued + self.ttl))
        except IntegrityError:
            raise CredentialRefused("replayed", "this page token was already used; reload the page") from None

    async def spent_count(self) -> int:
        async with self.db.session() as session:
            return int((await session.execute(select(func.count()).select_from(SpentPageToken))).scalar_one())


@dataclass(frozen=True)
class Issued:
    """What is remembered of a minted credential (never its password): enough for the page
    that holds the password to answer the survey of that call afterwards."""

    kind: Kind
    username: str
    issued_at: float


SURVEY_HOURS = 6.0  # how long after minting the page may still answer the survey


class CredentialIssuer:
    """Leases citizen endpoints and draws their one-session passwords."""

    def __init__(self, db: Database, settings: WebrtcSettings, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settings = settings  # read at each mint: an admin's edit of the pool sizes applies at once
        self.clock = clock
        self._seeded: set[tuple[str, ...]] = set()

    @property
    def ttl(self) -> float:
        return float(self.settings.credential_ttl_seconds)

    def _slots(self, kind: Kind) -> list[str]:
        count = self.settings.video_slots if kind == "video" else self.settings.voice_slots
        return slot_names(kind, count)

    async def mint(self, kind: Kind, address: str) -> Credential:
        """A credential for one call of ``kind``; raises :class:`CredentialRefused` (rate
        limited, or every slot leased to a credential not yet expired)."""
        if kind not in KINDS:
            raise CredentialRefused("invalid", f"kind: one of {', '.join(KINDS)}")
        await self._take_rate(address[:64])
        names = self._slots(kind)
        await self._seed(kind, names)
        for _ in range(LEASE_TRIES):
            now = self.clock()
            async with self.db.transaction() as session:
                free = (await session.execute(
                    select(EndpointLease.slot).where(EndpointLease.slot.in_(names), EndpointLease.leased_until <= now)
                    .order_by(EndpointLease.leased_at, EndpointLease.slot).limit(1))).scalar_one_or_none()
                if free is None:
                    soonest = (await session.execute(select(func.min(EndpointLease.leased_until))
                                                     .where(EndpointLease.slot.in_(names)))).scalar_one()
                    raise CredentialRefused("busy", "every line is being set up right now; try again shortly",
                                            retry_after=max(0.0, float(soonest or now) - now))
                credential = Credential(kind=kind, username=free, password=secrets.token_urlsafe(24),
                                        issued_at=now, expires_at=now + self.ttl)
                won = await session.execute(
                    update(EndpointLease).where(EndpointLease.slot == free, EndpointLease.leased_until <= now)
                    .values(leased_until=credential.expires_at, leased_at=now))
                if _rowcount(won) != 1:
                    continue  # another node leased it between our select and update
                await session.execute(delete(IssuedCredential)
                                      .where(IssuedCredential.issued_at < now - SURVEY_HOURS * 3600))
                session.add(IssuedCredential(password_sha=_digest(credential.password), kind=kind,
                                             username=free, issued_at=now))
            return credential
        raise CredentialRefused("busy", "every line is being set up right now; try again shortly", retry_after=1.0)

    async def _take_rate(self, address: str) -> None:
        """Count this mint for ``address``; refuse it (and count nothing) over ``mint_per_minute``
        in the last minute. The mint is committed before counting, so of two nodes minting at
        once for the same address at least the later sees both: never more than the limit."""
        now = self.clock()
        limit = self.settings.mint_per_minute
        async with self.db.transaction() as session:
            await session.execute(delete(RecentMint).where(RecentMint.at < now - RATE_WINDOW))
            mine = RecentMint(address=address, at=now)
            session.add(mine)
            await session.flush()
            mine_id = mine.id
        async with self.db.transaction() as session:
            others = list((await session.execute(
                select(RecentMint.at).where(RecentMint.address == address, RecentMint.at > now - RATE_WINDOW,
                                            RecentMint.id != mine_id).order_by(RecentMint.at))).scalars())
            if len(others) < limit:
                return
            await session.execute(delete(RecentMint).where(RecentMint.id == mine_id))
        # A place frees when enough of the others have left the window.
        wait = others[len(others) - limit] + RATE_WINDOW - now
        raise CredentialRefused("rate_limited", "too many calls from this address; try again shortly",
                                retry_after=max(1.0, wait))

    async def _seed(self, kind: Kind, names: list[str]) -> None:
        """The pool's rows exist (a new slot starts free, never leased)."""
        key = (kind, *names)
        if key in self._seeded:
            return
        async with self.db.transaction() as session:
            insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
            await session.execute(insert(EndpointLease).values(
                [{"slot": name, "kind": kind, "leased_until": 0.0, "leased_at": 0.0} for name in names])
                .on_conflict_do_nothing(index_elements=["slot"]))
        self._seeded.add(key)

    async def redeem_survey(self, username: str, password: str) -> Issued:
        """The credential a survey answer comes with; good once, within ``SURVEY_HOURS``."""
        digest = _digest(password)
        async with self.db.transaction() as session:
            found = await session.get(IssuedCredential, digest)
            if found is None or found.username != username:
                raise CredentialRefused("invalid", "this call cannot be rated (unknown or already rated)")
            issued = Issued(cast(Kind, found.kind), found.username, found.issued_at)
            gone = await session.execute(delete(IssuedCredential).where(IssuedCredential.password_sha == digest))
            if _rowcount(gone) != 1:  # answered on another node meanwhile
                raise CredentialRefused("invalid", "this call cannot be rated (unknown or already rated)")
        if issued.issued_at < self.clock() - SURVEY_HOURS * 3600:
            raise CredentialRefused("expired", "this call is too old to rate")
        return issued

    async def release(self, credential: Credential) -> None:
        """Give the slot back at once (its password could not be pushed to Asterisk)."""
        async with self.db.transaction() as session:
            await session.execute(delete(IssuedCredential)
                                  .where(IssuedCredential.password_sha == _digest(credential.password)))
            await session.execute(update(EndpointLease).where(
                EndpointLease.slot == credential.username, EndpointLease.leased_until == credential.expires_at)
                .values(leased_until=0.0, leased_at=0.0))

    async def leases(self, kind: Kind) -> dict[str, float]:
        """slot -> until when it is leased (0: never or given back), for the pool of ``kind``."""
        async with self.db.session() as session:
            rows = (await session.execute(select(EndpointLease.slot, EndpointLease.leased_until)
                                          .where(EndpointLease.slot.in_(self._slots(kind))))).all()
        return {slot: until for slot, until in rows}


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def refusal_logged(reason: str, address: str, detail: str) -> None:
    log.warning("webcall credential refused (%s) for %s: %s", reason, address, detail)
