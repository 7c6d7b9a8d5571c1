"""The IVR engine: walks a ``MenuSet`` over any ``Channel`` and keeps the contact record.

Routes (FastAGI script names, docs/contracts.md):
- ``main``: the caller's side of 120 (menus, 120+9 language branch, hours, night routes,
  self-service, lookups); sets QUEUE, LANG, TOPIC, CONTACT_ID, IVR_RESULT, NIGHT_ROUTE;
- ``survey``: after the counsellor hangs up, 1-5, stored on CONTACT_ID's contact;
- ``callback``: a waiting caller asked to be called back (CALLBACK_QUEUE).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ivr.bus import Bus
from ivr.config import Settings
from ivr.contracts import IvrResult, Stream, Var
from ivr.db import Database
from ivr.engine import lookups
from ivr.engine.channel import Channel, ChannelHangup, LinkLost
from ivr.engine.menu import HANGUP, AnswerNode, LookupNode, MenuNode, MenuSet, QueueNode
from ivr.engine.record import ContactHandle, ContactWriter, caller_number
from ivr.knowledge.speech import article_sound
from ivr.queues import QueueConfig
from ivr.webrtc.slots import contact_channel

log = logging.getLogger("dasan.ivr")
SMS_STREAM = Stream.SMS_OUTBOUND
T = TypeVar("T")
END = ""  # node name meaning "give the call back to the dialplan"


@dataclass
class Call:
    """What the engine knows about one call; also what ``dasan call`` and tests inspect."""

    language: str
    phone: str = ""
    call_id: str = ""
    contact_id: int | None = None
    contact: ContactHandle | None = field(default=None, repr=False)  # the record being written
    path: list[str] = field(default_factory=list)
    topic: str | None = None
    queue: str | None = None
    result: str = ""  # queue | hangup | night | caller_hangup
    night_route: str = ""
    callback_id: int | None = None
    said: list[str] = field(default_factory=list)  # lookup answers read out (text)
    transferring: bool = False  # the queue is chosen, the transfer prompt plays: not in the queue yet


class IvrEngine:
    def __init__(self, menus: MenuSet, queues: QueueConfig, db: Database, bus: Bus,
                 clock: Callable[[], datetime | None] = lambda: None, writer: ContactWriter | None = None,
                 settings: Settings | None = None) -> None:
        self.menus = menus
        self.queues = queues
        self.db = db
        self.bus = bus
        self.clock = clock  # None: now (tests pin a night time)
        self.writer = writer or ContactWriter(db)  # shared by the engines of one process (one group commit)
        self.settings = settings or Settings()  # the site's, for lookup handlers (data folder, time zone)

    # -- route "main" ------------------------------------------------------------------

    async def main(self, ch: Channel) -> Call:
        env = ch.env
        language = env.get("agi_language", "")
        call = Call(language if language in self.menus.languages else self.menus.languages[0],
                    phone=caller_number(env))
        try:
            await ch.answer()
            call.call_id = (await ch.get_variable("CHANNEL(linkedid)") or env.get("agi_uniqueid", "")
                            or f"ivr-{uuid.uuid4().hex}")
            # Queued, not awaited: the caller hears the menu while the contact is committed.
            call.contact = self.writer.open(call.call_id, call.phone, call.language,
                                            contact_channel(env.get("agi_channel", "")))  # a browser: web_voice
            await ch.set_variable(Var.LANG, call.language)
            node = self.menus.start
            while node != END:
                node = await self._node(ch, call, node)
        except LinkLost as exc:
            await self._link_lost(call, exc)
        except ChannelHangup as exc:
            if call.transferring:
                await self._lost_in_transfer(call)
                return call
            if call.result:
                return call  # hung up during the last prompt: the decision already stands
            call.result = "caller_hangup"
            call.path.append("hangup")
            log.debug("caller hung up in the IVR: %s", exc)
            if call.contact is not None:
                await self._safe(call, "hang-up", self.writer.finish(
                    call.contact, {"result": "caller_hangup"}, ivr_path=self._path(call),
                    hangup_side="caller", outcome="ivr_hangup", ended_at=datetime.now(UTC)))  # the call's end
                call.contact_id = call.contact.id
        return call

    async def _link_lost(self, call: Call, exc: LinkLost) -> None:
        """Asterisk went away mid-call without a hang-up (its node died, or the network): the
        IVR's path is kept, the call's end and outcome are left open for whoever knows them
        (the AMI bridge's resync, or the cluster watch's ``lost_with_node``)."""
        log.warning("connection to Asterisk lost in the IVR (call %s): %s", call.call_id, exc)
        if call.result and not call.transferring:
            return  # the IVR's decision already stands
        call.result = call.result or "link_lost"
        call.path.append("link_lost")
        if call.contact is not None:
            await self._safe(call, "link lost", self.writer.finish(
                call.contact, {"result": "link_lost"}, ivr_path=self._path(call)))
            call.contact_id = call.contact.id

    async def _lost_in_transfer(self, call: Call) -> None:
        """The caller hung up after the IVR chose the queue but before the dialplan could queue
        them: an abandoned call of that queue (it counts in the queue's abandonment figures),
        lost in the transfer prompt, as the timeline says."""
        queue = call.queue or ""
        if call.path[-1:] != [f"queue:{queue}"]:
            call.path.append(f"queue:{queue}")
        call.path.append("hangup")
        call.result = "caller_hangup"
        log.debug("call %s: caller hung up in the transfer prompt to %s", call.call_id, queue)
        if call.contact is not None:
            await self._safe(call, "hang-up", self.writer.abandoned(
                call.contact, "transfer_prompt", queue, ivr_path=self._path(call)))
            call.contact_id = call.contact.id

    async def _tell_contact(self, ch: Channel, call: Call) -> None:
        """CONTACT_ID for the dialplan (the survey stores its score there), once the contact is
        committed; with the database away the call goes on without it."""
        if call.contact is not None:
            call.contact_id = await self._safe(call, "contact", call.contact.opened)
        if call.contact_id is not None:
            await ch.set_variable(Var.CONTACT_ID, str(call.contact_id))

    async def _safe(self, call: Call, what: str, write: Awaitable[T]) -> T | None:
        """A record write that must not stop the call: with the database down the caller still
        gets the menus and the right queue (the record is lost, and the log says so)."""
        try:
            return await write
        except Exception:
            log.exception("call %s: %s not recorded", call.call_id, what)
            return None

    def _path(self, call: Call) -> str:
        return " > ".join(call.path)

    async def _step(self, call: Call, entry: str, **fields: Any) -> None:
        call.path.append(entry)
        if call.contact is not None:
            self.writer.step(call.contact, ivr_path=self._path(call), **fields)

    async def _node(self, ch: Channel, call: Call, name: str) -> str:
        node = self.menus.nodes[name]
        if isinstance(node, MenuNode):
            return await self._menu(ch, call, name, node)
        if isinstance(node, QueueNode):
            return await self._queue(ch, call, name, node)
        if isinstance(node, AnswerNode):
            return await self._answer(ch, call, name, node)
        return await self._lookup(ch, call, name, node)

    async def _ask(self, ch: Channel, prompts: list[str], escape: str, timeout: float, max_digits: int) -> str:
        """Play prompts (barge-in allowed) then read digits after the last one."""
        for prompt in prompts[:-1]:
            digit = await ch.play(self.menus.sound(prompt), escape)
            if digit:
                if max_digits == 1:
                    return digit
                rest = await ch.read_digits("", timeout, max_digits - 1)
                return digit + rest
        return await ch.read_digits(self.menus.sound(prompts[-1]), timeout, max_digits)

    async def _menu(self, ch: Channel, call: Call, name: str, node: MenuNode) -> str:
        timeout = node.timeout_seconds or self.menus.timeout_seconds
        limit = node.max_failures or self.menus.max_failures
        escape = "".join(sorted(node.options)) + "*"
        failures = 0
        while True:
            digits = await self._ask(ch, node.prompt, escape, timeout, 1)
            digit = digits[:1]
            if digit == "*":
                await self._step(call, f"{name}:*")
                continue
            option = node.option(digit) if digit else None
            if option is not None:
                fields: dict[str, Any] = {}
                if option.language and option.language != call.language:
                    call.language = option.language
                    fields["language"] = call.language
                    await ch.set_variable("CHANNEL(language)", call.language)
                    await ch.set_variable(Var.LANG, call.language)
                await self._step(call, f"{name}:{digit}", **fields)
                return option.goto
            failures += 1
            await self._step(call, f"{name}:{'invalid(' + digit + ')' if digit else 'timeout'}")
            if failures >= limit:
                return node.on_failure or self.menus.on_failure
            if digit:
                await ch.play(self.menus.sound("invalid"))

    async def _queue(self, ch: Channel, call: Call, name: str, node: QueueNode) -> str:
        queue = node.queue or self.menus.queues[call.language]
        call.topic, call.queue = node.topic, queue
        await ch.set_variable(Var.TOPIC, node.topic)
        if self.queues.is_open(queue, self.clock()):
            return await self._to_queue(ch, call, name, node.prompt, queue)
        return await self._night(ch, call, name, queue)

    async def _to_queue(self, ch: Channel, call: Call, name: str, prompts: list[str], queue: str) -> str:
        # The record is committed while the caller hears the transfer prompt, and durable
        # before the dialplan sees the decision (QUEUE, IVR_RESULT): a server killed after
        # that point has lost nothing of a call it handed back.
        # (A caller who hangs up during the prompt is recorded as such over it: path, outcome.)
        finished = None
        if call.contact is not None:
            finished = self.writer.finish(call.contact, {"result": "queue", "queue": queue},
                                          ivr_path=" > ".join([*call.path, f"queue:{queue}"]), topic=call.topic,
                                          queue=queue, language=call.language)
        call.transferring = True
        for prompt in [*prompts, "transfer"]:
            await ch.play(self.menus.sound(prompt))
        call.result = "queue"
        call.path.append(f"queue:{queue}")
        if finished is not None:
            await self._safe(call, "queue", finished)
        await ch.set_variable(Var.QUEUE, queue)
        await ch.set_variable(Var.IVR_RESULT, IvrResult.QUEUE)
        await self._tell_contact(ch, call)
        return END

    async def _night(self, ch: Channel, call: Call, name: str, queue: str) -> str:
        route = self.queues.queues[queue].night_route
        kind = route.kind
        if kind == "queue" and route.queue:
            return await self._to_queue(ch, call, name, [], route.queue)
        if kind in ("callback", "sms") and not call.phone:
            kind = "message"  # a withheld number can be neither called back nor texted
        call.night_route = kind
        call.path.append(f"night:{queue}:{kind}")
        fields = {"ivr_path": self._path(call), "topic": call.topic, "queue": queue,
                  "language": call.language, "outcome": f"night_{kind}"}
        result = "night" if kind == "voicemail" else "hangup"
        outcome = {"result": result, "night_route": kind, "queue": queue}
        callback = ({"phone": call.phone, "queue": queue, "language": call.language}
                    if kind == "callback" else None)
        # Durable first (the callback row, the SMS job), then tell the caller. If that fails the
        # call ends undecided and the dialplan queues the caller (never a false promise).
        if call.contact is not None:
            call.callback_id = await self.writer.finish(call.contact, outcome, callback, **fields)
            await self._tell_contact(ch, call)
        elif callback is not None:
            call.callback_id = await self.writer.callback(None, **callback)
        if kind == "sms":
            body = route.sms_text.get(call.language) or self.menus.night_sms.get(call.language) or ""
            await self.bus.enqueue(SMS_STREAM, {"to": call.phone, "body": body, "contact_id": call.contact_id})
        prompt = {"callback": "night-callback", "sms": "night-sms"}.get(kind, "night-closed")
        await ch.set_variable(Var.NIGHT_ROUTE, kind)
        await ch.set_variable(Var.IVR_RESULT, result)
        call.result = result
        await ch.play(self.menus.sound(prompt))
        return END

    async def _answer(self, ch: Channel, call: Call, name: str, node: AnswerNode) -> str:
        if node.topic:
            call.topic = node.topic
            await ch.set_variable(Var.TOPIC, node.topic)
        await self._step(call, f"answer:{name}", **({"topic": node.topic} if node.topic else {}))
        for prompt in node.prompt:
            await ch.play(self.menus.sound(prompt))
        if node.article:
            await ch.play(article_sound(self.menus.sound_folder, node.article))
        if node.then != HANGUP:
            return node.then
        return await self._goodbye(ch, call, "self_service")

    async def _goodbye(self, ch: Channel, call: Call, outcome: str) -> str:
        call.result = "hangup"
        finished = None
        if call.contact is not None:
            finished = self.writer.finish(call.contact, {"result": "hangup", "outcome": outcome},
                                          ivr_path=self._path(call), outcome=outcome, topic=call.topic,
                                          language=call.language)
        await ch.play(self.menus.sound("goodbye"))
        if finished is not None:  # durable before the dialplan sees the decision
            await self._safe(call, "goodbye", finished)
        await ch.set_variable(Var.IVR_RESULT, IvrResult.HANGUP)
        await self._tell_contact(ch, call)
        return END

    async def _lookup(self, ch: Channel, call: Call, name: str, node: LookupNode) -> str:
        if node.topic:
            call.topic = node.topic
            await ch.set_variable(Var.TOPIC, node.topic)
        timeout = node.timeout_seconds or self.menus.timeout_seconds
        failures = 0
        while True:
            digits = (await self._ask(ch, node.prompt, "0123456789", timeout, node.max_digits)).strip("#*")
            if digits:
                break
            failures += 1
            await self._step(call, f"{name}:timeout")
            if failures >= self.menus.max_failures:
                return self.menus.on_failure
        handler = lookups.get(node.handler)
        if call.contact is not None:  # a lookup may note itself on the contact: it must exist
            call.contact_id = await self._safe(call, "contact", call.contact.opened)
        request = lookups.LookupRequest(digits, call.language, self.db, call.contact_id, self.settings)
        try:
            if handler is None:
                raise LookupError(f"no lookup handler {node.handler!r}")
            spoken = lookups.as_spoken(await handler(request))
        except Exception:
            log.exception("lookup %s failed", node.handler)
            spoken = lookups.Spoken("lookup failed", [lookups.Part("prompt", "lookup-not-found")])
        await self._step(call, f"{name}:{digits}", **({"topic": node.topic} if node.topic else {}))
        call.said.append(spoken.text)
        await ch.verbose(f"dasan lookup {node.handler}: {spoken.text}")
        for part in spoken.parts:
            if part.kind == "digits":
                await ch.say_digits(part.value)
            elif part.kind == "alpha":
                await ch.say_alpha(part.value)
            elif part.value in self.menus.prompts:
                await ch.play(self.menus.sound(part.value))
            else:
                await ch.play(part.value)  # a sound the handler owns (e.g. "dasan/status-xyz")
        if node.then != HANGUP:
            return node.then
        return await self._goodbye(ch, call, "self_service")

    # -- route "survey" ------------------------------------------------------------------

    async def survey(self, ch: Channel) -> int | None:
        """Play the question, read 1-5 (three tries), store it on CONTACT_ID's contact."""
        try:
            raw_id = await ch.get_variable(Var.CONTACT_ID)
            contact_id = int(raw_id) if raw_id.isdigit() else None
            # No CONTACT_ID: the IVR was down when the call came (the dialplan's fallback queued
            # it and the AMI bridge wrote the contact): the call's Linkedid finds it.
            call_id = "" if contact_id is not None else (
                await ch.get_variable("CHANNEL(linkedid)") or ch.env.get("agi_uniqueid", ""))
            for _ in range(self.menus.max_failures):
                digit = await ch.read_digits(self.menus.sound("survey-question"), self.menus.timeout_seconds, 1)
                if digit and digit in "12345":
                    score = int(digit)
                    # The dialplan hands it to the AMI bridge too (UserEvent DasanSurvey): a
                    # score our store misses (the contact not written yet, the IVR killed now)
                    # is still kept.
                    await ch.set_variable(Var.SURVEY_SCORE, digit)
                    if not await self.writer.satisfaction(contact_id, score, call_id):
                        log.warning("survey score %s for unknown contact %r", score, raw_id)
                    await ch.play(self.menus.sound("survey-thanks"))
                    await ch.set_variable(Var.IVR_RESULT, IvrResult.HANGUP)
                    return score
                if digit:
                    await ch.play(self.menus.sound("invalid"))
            await ch.set_variable(Var.IVR_RESULT, IvrResult.HANGUP)
        except ChannelHangup:
            pass
        return None

    # -- route "callback" ----------------------------------------------------------------

    async def callback(self, ch: Channel) -> int | None:
        """A caller waiting in a queue asked to be called back: keep their place (callback_requests)."""
        try:
            phone = caller_number(ch.env)
            queue = await ch.get_variable(Var.CALLBACK_QUEUE) or await ch.get_variable(Var.QUEUE)
            if not phone or queue not in self.queues.queues:
                return None  # IVR_RESULT stays empty: the dialplan puts the caller back in line
            raw_id = await ch.get_variable(Var.CONTACT_ID)
            contact_id = int(raw_id) if raw_id.isdigit() else None
            # No CONTACT_ID (the dialplan's fallback queued the call): the Linkedid finds its contact.
            call_id = "" if contact_id is not None else (
                await ch.get_variable("CHANNEL(linkedid)") or ch.env.get("agi_uniqueid", ""))
            language = await ch.get_variable(Var.LANG) or ch.env.get("agi_language", "ko")
            request_id = await self.writer.callback(contact_id, phone, queue,
                                                    language if language in self.menus.languages else "ko", call_id)
            await ch.set_variable(Var.IVR_RESULT, IvrResult.HANGUP)
            await ch.play(self.menus.sound("callback-registered"))
            return request_id
        except ChannelHangup:
            return None
