"""An AMI server that speaks like Asterisk 22 and replays recorded events (tests, demos).

It sends the real banner, answers Login/Ping/Logoff/QueueStatus/CoreShowChannels/QueueAdd/
QueueRemove/QueuePause/Originate/Reload/Command the way the captures in
``asterisk-captures/agent-actions`` show (ActionID right after Response, EventList framing,
the same error texts), and plays captured event chunks byte for byte. It keeps the state
those events imply (channels, queue callers, members) so a resync after a reconnect sees
what a real Asterisk would report at that moment. An ``Originate`` of a ``Local/`` channel is
played as Asterisk 22 plays it, with the outcome ``originate_results`` asks for (the agent
leg, then the citizen's: answered, busy, no answer, congestion, unavailable, no trunk; see
``_local_originate``; checked against a real Asterisk 22 by tests/test_callbacks_asterisk.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from ivr.ami.protocol import BANNER, END, Fields, encode_message, parse_message, split_messages

_TRACKED = {  # the events _track reads
    b"Newchannel", b"Newexten", b"BridgeEnter", b"BridgeLeave", b"Hangup", b"QueueCallerJoin", b"QueueCallerLeave",
    b"QueueCallerAbandon", b"QueueMemberAdded", b"QueueMemberStatus", b"QueueMemberPause", b"QueueMemberRemoved",
}
_MEMBER_FIELDS = ("Queue", "MemberName", "Interface", "StateInterface", "Membership", "Penalty", "CallsTaken",
                  "LastCall", "LastPause", "LoginTime", "InCall", "Status", "Paused", "PausedReason",
                  "Ringinuse", "Wrapuptime")


class AmiPeer:
    def __init__(self, username: str = "dasan", secret: str = "change-me") -> None:
        self.username, self.secret = username, secret
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.logged_in: list[asyncio.StreamWriter] = []
        self.actions: list[Fields] = []
        self.logins = 0
        self.channels: dict[str, Fields] = {}
        self.entries: dict[str, tuple[Fields, float]] = {}
        self.members: dict[tuple[str, str], Fields] = {}
        self.queues: set[str] = {"general-ko"}
        # What the next Originates meet (see _local_originate; "HOLD": never a result, kept in
        # ``held``); empty: "Success".
        self.originate_results: list[str] = []
        self.held: list[Fields] = []
        self.variables: list[list[str]] = []  # each Originate's Variable headers, in order
        self.originates = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.login_event = asyncio.Event()
        self.refuse_logins = False  # answer Login with "Authentication failed" (a wrong secret)
        # Asterisk just restarted: app_queue is not loaded yet, so this many QueueStatus
        # actions get the reply an unknown action gets (as seen from a real Asterisk 22).
        self.queue_module_loading = 0
        # Actions (lower case) this manager user may not send: Asterisk answers "Permission
        # denied" without running them (main/manager.c process_message, a missing write class
        # in manager.conf, e.g. no "originate").
        self.denied: set[str] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def drop(self) -> None:
        """Cut every client connection (as if Asterisk restarted or the network failed)."""
        for w in self.writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.writers.clear()
        self.logged_in.clear()
        self.login_event.clear()

    def restart(self) -> None:
        """Asterisk restarted: connections cut, calls gone, dynamic members forgotten."""
        self.drop()
        self.channels.clear()
        self.entries.clear()
        self.members.clear()

    async def wait_login(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.logins < count or not self.logged_in:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no login #{count} (have {self.logins})")
            await asyncio.sleep(0.01)

    # -- playing events --
    async def play(self, chunks: Iterable[bytes]) -> None:
        """Send captured chunks to every logged-in client, tracking the state they imply."""
        for n, chunk in enumerate(chunks, 1):
            self._track(chunk)
            for w in list(self.logged_in):
                w.write(chunk)
            if n % 32 == 0:  # drain now and then: flow control without a syscall per chunk
                await self._drain()
        await self._drain()

    async def _drain(self) -> None:
        for w in list(self.logged_in):
            with contextlib.suppress(ConnectionError):
                await w.drain()

    async def emit(self, fields: Fields | list[tuple[str, str]]) -> None:
        await self.play([encode_message(fields)])

    def _track(self, chunk: bytes) -> None:
        messages, _ = split_messages(chunk)
        for raw in messages:
            # Most events change nothing tracked here: skip them unparsed, so replaying a flood
            # of calls (bench/ami_feed.py) takes little of the CPU the bridge is measured on.
            if raw.startswith(b"Event: "):
                end = raw.find(b"\r\n")
                if (raw[7:] if end < 0 else raw[7:end]) not in _TRACKED:
                    continue
            e = parse_message(raw)
            name = e.get("Event")
            uid = e.get("Uniqueid", "")
            if name == "Newchannel":
                self.channels[uid] = {**e, "Application": "", "ApplicationData": "", "BridgeId": ""}
            elif name == "Newexten" and uid in self.channels:
                self.channels[uid].update(Application=e.get("Application", ""), ApplicationData=e.get("AppData", ""))
            elif name == "BridgeEnter" and uid in self.channels:
                self.channels[uid]["BridgeId"] = e.get("BridgeUniqueid", "")
            elif name == "BridgeLeave" and uid in self.channels:
                self.channels[uid]["BridgeId"] = ""
            elif name == "Hangup":
                self.channels.pop(uid, None)
                self.entries.pop(uid, None)
            elif name == "QueueCallerJoin":
                self.entries[uid] = (e, time.monotonic())
            elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
                self.entries.pop(uid, None)
            elif name in ("QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause"):
                self.members[(e.get("Queue", ""), e.get("Interface", ""))] = {k: e.get(k, "") for k in _MEMBER_FIELDS}
            elif name == "QueueMemberRemoved":
                self.members.pop((e.get("Queue", ""), e.get("Interface", "")), None)

    # -- the AMI session --
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(BANNER)
        authed = False
        try:
            while True:
                raw = await reader.readuntil(END)
                action = parse_message(raw[: -len(END)])
                self.actions.append(action)
                name = action.get("Action", "").lower()
                aid = action.get("ActionID", "")
                if name == "login":
                    # the bridge's user, and the short sessions' <user>-system (manager.conf)
                    if (not self.refuse_logins and action.get("Username") in (self.username, f"{self.username}-system")
                            and action.get("Secret") == self.secret):
                        authed = True
                        self.logins += 1
                        writer.write(_response("Success", aid, Message="Authentication accepted")
                                     + encode_message([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                                       ("Uptime", "182"), ("LastReload", "182"),
                                                       ("Status", "Fully Booted")]))
                        self.logged_in.append(writer)
                        self.login_event.set()
                    else:
                        writer.write(_response("Error", aid, Message="Authentication failed"))
                elif not authed or name in self.denied:
                    writer.write(_response("Error", aid, Message="Permission denied"))
                else:
                    writer.write(self._answer(name, aid, action))
                    if name == "logoff":
                        await writer.drain()
                        break
                await writer.drain()
                if name == "originate" and authed and name not in self.denied:
                    # Variable may repeat (one header per variable): keep them all.
                    variables = [line[len("Variable: "):] for line in raw.decode("utf-8", "replace").split("\r\n")
                                 if line.startswith("Variable: ")]
                    self.variables.append(variables)
                    self._originate_later(writer, aid, action, variables)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self.logged_in:
                self.logged_in.remove(writer)
            if writer in self.writers:
                self.writers.remove(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, name: str, aid: str, a: Fields) -> bytes:
        if name == "ping":
            return _response("Success", aid, Ping="Pong", Timestamp=f"{time.time():.6f}")
        if name == "logoff":
            return _response("Goodbye", aid, Message="Thanks for all the fish.")
        if name == "queuestatus" and self.queue_module_loading > 0:
            self.queue_module_loading -= 1
            return _response("Error", aid, Message="Invalid/unknown command: QueueStatus. Use Action: "
                             "ListCommands to show available commands.")
        if name == "queuestatus":
            return self._queue_status(aid)
        if name == "coreshowchannels":
            items = [encode_message([("Event", "CoreShowChannel"), ("ActionID", aid),
                                     *((k, v) for k, v in ch.items() if k not in ("Event", "Privilege", "AppData",
                                                                                  "Extension"))])
                     for ch in self.channels.values()]
            return (_response("Success", aid, EventList="start", Message="Channels will follow") + b"".join(items)
                    + encode_message([("Event", "CoreShowChannelsComplete"), ("ActionID", aid),
                                      ("EventList", "Complete"), ("ListItems", str(len(items)))]))
        if name == "queueadd":
            return self._queue_add(aid, a)
        if name == "queueremove":
            key = (a.get("Queue", ""), a.get("Interface", ""))
            if key[0] not in self.queues:
                return _response("Error", aid, Message="Unable to remove interface from queue: No such queue")
            member = self.members.pop(key, None)
            if member is None:
                return _response("Error", aid, Message="Unable to remove interface: Not there")
            self.logged_in_write(_member_event("QueueMemberRemoved", member))
            return _response("Success", aid, Message="Removed interface from queue")
        if name == "queuepause":
            found = [m for (q, i), m in self.members.items() if i == a.get("Interface")
                     and (not a.get("Queue") or q == a.get("Queue"))]
            if not found:
                return _response("Error", aid, Message="Interface not found")
            paused = a.get("Paused", "").lower() in ("true", "1", "yes")
            events = b""
            for m in found:
                m.update(Paused="1" if paused else "0", PausedReason=a.get("Reason", "") if paused else "",
                         LastPause=str(int(time.time())))
                events += _member_event("QueueMemberPause", m)
            self.logged_in_write(events)
            return _response("Success", aid, Message=f"Interface {'paused' if paused else 'unpaused'} successfully")
        if name == "originate":
            if not a.get("Exten") and not a.get("Application"):
                return _response("Error", aid, Message="Originate with 'Exten' requires 'Context' and 'Priority'")
            return _response("Success", aid, Message="Originate successfully queued")
        if name == "reload":
            self.logged_in_write(encode_message([("Event", "Reload"), ("Privilege", "system,all"),
                                                 ("Module", a.get("Module", "app_queue")), ("Status", "0")]))
            return _response("Success", aid, Message="Module Reloaded")
        if name == "command":
            return _response("Success", aid, Message="Command output follows", Output="")
        return _response("Error", aid, Message=f"Invalid/unknown command: {a.get('Action', '')}. Use Action: "
                         "ListCommands to show available commands.")

    def logged_in_write(self, data: bytes) -> None:
        # Events follow the response on the wire; queue them after the current reply.
        loop = asyncio.get_running_loop()
        def write() -> None:
            for w in list(self.logged_in):
                w.write(data)

        loop.call_soon(write)

    def _queue_add(self, aid: str, a: Fields) -> bytes:
        if not a.get("Interface"):
            return _response("Error", aid, Message="'Interface' not specified.")
        queue = a.get("Queue", "")
        if queue not in self.queues:
            return _response("Error", aid, Message="Unable to add interface to queue: No such queue")
        key = (queue, a["Interface"])
        if key in self.members:
            return _response("Error", aid, Message="Unable to add interface: Already there")
        paused = a.get("Paused", "").lower() in ("true", "1", "yes")
        member = {"Queue": queue, "MemberName": a.get("MemberName", a["Interface"]), "Interface": a["Interface"],
                  "StateInterface": a.get("StateInterface", a["Interface"]), "Membership": "dynamic",
                  "Penalty": a.get("Penalty", "0"), "CallsTaken": "0", "LastCall": "0", "LastPause": "0",
                  "LoginTime": str(int(time.time())), "InCall": "0", "Status": "1", "Paused": "1" if paused else "0",
                  "PausedReason": a.get("Reason", "") if paused else "", "Ringinuse": "1", "Wrapuptime": "0"}
        self.members[key] = member
        self.logged_in_write(_member_event("QueueMemberAdded", member))
        return _response("Success", aid, Message="Added interface to queue")

    def _queue_status(self, aid: str) -> bytes:
        items: list[bytes] = []
        now = time.monotonic()
        for queue in sorted(self.queues):
            waiting = [(e, t) for e, t in self.entries.values() if e.get("Queue") == queue]
            items.append(encode_message([("Event", "QueueParams"), ("Queue", queue), ("Max", "0"),
                                         ("Strategy", "rrmemory"), ("Calls", str(len(waiting))), ("Holdtime", "0"),
                                         ("TalkTime", "0"), ("Completed", "0"), ("Abandoned", "0"),
                                         ("ServiceLevel", "0"), ("ServicelevelPerf", "0.0"),
                                         ("ServicelevelPerf2", "0.0"), ("Weight", "0"), ("ActionID", aid)]))
            for (q, _i), m in self.members.items():
                if q == queue:
                    items.append(encode_message(
                        [("Event", "QueueMember"), ("Queue", q), ("Name", m["MemberName"]), ("Location", m["Interface"]),
                         *((k, m[k]) for k in _MEMBER_FIELDS[3:] if k != "Ringinuse"), ("ActionID", aid)]))
            for pos, (e, t) in enumerate(sorted(waiting, key=lambda w: w[1]), 1):
                items.append(encode_message(
                    [("Event", "QueueEntry"), ("Queue", queue), ("Position", str(pos)), ("Channel", e.get("Channel", "")),
                     ("Uniqueid", e.get("Uniqueid", "")), ("CallerIDNum", e.get("CallerIDNum", "")),
                     ("CallerIDName", e.get("CallerIDName", "")), ("ConnectedLineNum", "unknown"),
                     ("ConnectedLineName", "unknown"), ("Wait", str(int(now - t))), ("Priority", "0"),
                     ("ActionID", aid)]))
        return (_response("Success", aid, EventList="start", Message="Queue status will follow") + b"".join(items)
                + encode_message([("Event", "QueueStatusComplete"), ("ActionID", aid), ("EventList", "Complete"),
                                  ("ListItems", str(len(items)))]))

    def _originate_later(self, writer: asyncio.StreamWriter, aid: str, a: Fields, variables: list[str]) -> None:
        if not a.get("Exten") and not a.get("Application"):
            return
        result = self.originate_results.pop(0) if self.originate_results else "Success"
        if result == "HOLD":  # queued, then nothing: the dialer waits on it (e.g. to be killed meanwhile)
            self.held.append(a)
            return
        if a.get("Channel", "").startswith("Local/") and a.get("Exten"):
            task = asyncio.ensure_future(self._local_originate(aid, a, variables, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return

        def send() -> None:
            if writer in self.logged_in:
                writer.write(_originate_response(aid, a, "Success" if result == "Success" else "Failure",
                                                 a.get("Channel", ""), 4 if result == "Success" else 0))

        asyncio.get_running_loop().call_later(0.05, send)

    async def _local_originate(self, aid: str, a: Fields, variables: list[str], result: str) -> None:
        """``Originate Channel=Local/<queue>@<ctx> Context=<out> Exten=<number> Async=true`` as
        Asterisk 22 plays it (main/manager.c fast_originate, main/pbx.c pbx_outgoing_attempt,
        main/core_unreal.c, main/dial.c, apps/app_dial.c):

        - ``ast_unreal_new_channels``: ``;1`` gets Uniqueid = ChannelId, ``;2`` gets
          ChannelId + ";2", both Linkedid = ChannelId; the Originate's variables are set on
          ``;1`` (``ast_set_variables``: one VarSet each);
        - ``;2`` runs ``Queue(<queue>)``; the originate's own ast_dial publishes DialBegin and
          DialEnd with only Dest* fields (DestUniqueid = ChannelId);
        - a counsellor answers: ``;1`` is answered, OriginateResponse Success Reason 4 (carrying
          the ActionID), then ``;1`` runs ``<number>@<out>``: ``Dial(PJSIP/<number>@trunk)``
          publishes DialBegin/DialEnd with the caller ``;1`` and DialStatus ANSWER, BUSY,
          NOANSWER, CONGESTION or CHANUNAVAIL; the trunk leg hangs up with the cause
          (17 User busy, 19 No answer, 34 congestion, 1 unallocated);
        - nobody answers in the queue: ``;2`` leaves, ``;1`` is hung up, DialEnd (Dest only),
          OriginateResponse Failure Reason 0 with Uniqueid = ChannelId (``in->channelid``).

        ``result``: "Success"/"ANSWER", "Failure" (no counsellor), "BUSY", "NOANSWER",
        "CONGESTION", "CHANUNAVAIL", or "NOTRUNK" (the out context hangs up with cause 34).
        """
        self.originates += 1
        n = self.originates
        queue, _, context = a.get("Channel", "")[len("Local/"):].partition("@")
        context = context.split("/", 1)[0]  # options (/n) are not part of the channel's name
        cid = a.get("ChannelId") or f"{time.time():.0f}.{900 + 2 * n}"
        caller = a.get("CallerID", "")
        name = f"Local/{queue}@{context}-{n:08x}"
        one = _chan(f"{name};1", cid, cid, caller, context, queue)
        two = _chan(f"{name};2", cid + ";2", cid, caller, context, queue)
        step = 0.005
        out: list[list[tuple[str, str]]] = [
            [("Event", "Newchannel"), ("Privilege", "call,all"), *one.items()],
            [("Event", "Newchannel"), ("Privilege", "call,all"), *two.items()],
        ]
        for var in variables:
            key, _, value = var.partition("=")
            out.append([("Event", "VarSet"), ("Privilege", "dialplan,all"), *one.items(), ("Variable", key),
                        ("Value", value)])
        out.append([("Event", "DialBegin"), ("Privilege", "call,all"), *_prefixed("Dest", one),
                    ("DialString", a.get("Channel", "")[len("Local/"):])])
        two.update(ChannelState="4", ChannelStateDesc="Ring", Priority="1")
        out.append([("Event", "QueueCallerJoin"), ("Privilege", "agent,all"), *two.items(), ("Queue", queue),
                    ("Position", "1"), ("Count", "1")])
        await self._send_all(out)
        await asyncio.sleep(step)
        member = next((m for (q, _i), m in self.members.items() if q == queue), None)
        if result == "Failure" or member is None:
            await self._send_all([
                [("Event", "QueueCallerLeave"), ("Privilege", "agent,all"), *two.items(), ("Queue", queue),
                 ("Position", "1"), ("Count", "0")],
                _hangup(two, 16), _dial_end(None, one, "CANCEL"), _hangup(one, 16)])
            await self._send_all([_fields(_originate_response(aid, a, "Failure", a.get("Channel", ""), 0,
                                                              uniqueid=cid))])
            return
        agent = _chan(f"{member['Interface']}-{n:08x}", f"{time.time():.0f}.{901 + 2 * n}", cid, queue,
                      "from-agent", queue)
        agent.update(ChannelState="6", ChannelStateDesc="Up")
        two.update(ChannelState="6", ChannelStateDesc="Up")
        one.update(ChannelState="6", ChannelStateDesc="Up")
        agent_fields = [*_prefixed("Dest", agent), ("Queue", queue), ("Interface", member["Interface"]),
                        ("MemberName", member["MemberName"])]
        await self._send_all([
            [("Event", "AgentCalled"), ("Privilege", "agent,all"), *two.items(), *agent_fields],
            [("Event", "QueueCallerLeave"), ("Privilege", "agent,all"), *two.items(), ("Queue", queue),
             ("Position", "1"), ("Count", "0")],
            [("Event", "AgentConnect"), ("Privilege", "agent,all"), *two.items(), *agent_fields,
             ("HoldTime", "1"), ("RingTime", "1")],
            _dial_end(None, one, "ANSWER"),
            _fields(_originate_response(aid, a, "Success", one["Channel"], 4, uniqueid=cid)),
        ])
        await asyncio.sleep(step)
        number = a.get("Exten", "")
        one.update(Context=a.get("Context", ""), Exten=number, Priority="1")
        trunk = _chan(f"PJSIP/trunk-{n:08x}", f"{time.time():.0f}.{902 + 2 * n}", cid, caller,
                      a.get("Context", ""), number)
        if result == "NOTRUNK":
            await self._send_all([_hangup(one, 34)])
        else:
            status = "ANSWER" if result in ("Success", "ANSWER") else result
            await self._send_all([
                [("Event", "Newchannel"), ("Privilege", "call,all"), *trunk.items()],
                [("Event", "DialBegin"), ("Privilege", "call,all"), *one.items(), *_prefixed("Dest", trunk),
                 ("DialString", f"{number}@trunk")],
            ])
            await asyncio.sleep(step)
            if status == "ANSWER":
                trunk.update(ChannelState="6", ChannelStateDesc="Up")
                await self._send_all([_dial_end(one, trunk, "ANSWER")])
                await asyncio.sleep(step)
                await self._send_all([_hangup(trunk, 16), _hangup(one, 16)])
            else:
                cause = {"BUSY": 17, "NOANSWER": 19, "CONGESTION": 34, "CHANUNAVAIL": 1}.get(status, 16)
                await self._send_all([_dial_end(one, trunk, status), _hangup(trunk, cause), _hangup(one, 16)])
        await self._send_all([
            [("Event", "AgentComplete"), ("Privilege", "agent,all"), *two.items(), *agent_fields,
             ("HoldTime", "1"), ("TalkTime", "1"), ("Reason", "caller")],
            _hangup(agent, 16), _hangup(two, 16)])

    async def _send_all(self, events: list[list[tuple[str, str]]]) -> None:
        await self.play([b"".join(encode_message(e) for e in events)])


def _chan(name: str, uniqueid: str, linkedid: str, caller: str, context: str, exten: str) -> dict[str, str]:
    """A channel snapshot's fields in the order Asterisk writes them."""
    return {"Channel": name, "ChannelState": "0", "ChannelStateDesc": "Down", "CallerIDNum": caller or "<unknown>",
            "CallerIDName": "<unknown>", "ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>",
            "Language": "en", "AccountCode": "", "Context": context, "Exten": exten, "Priority": "1",
            "Uniqueid": uniqueid, "Linkedid": linkedid}


def _prefixed(prefix: str, chan: dict[str, str]) -> list[tuple[str, str]]:
    return [(prefix + k, v) for k, v in chan.items()]


def _dial_end(caller: dict[str, str] | None, peer: dict[str, str], status: str) -> list[tuple[str, str]]:
    # main/manager_channels.c channel_dial_cb: the caller's fields (none for an Originate's own
    # dial), the peer's with "Dest", then DialStatus.
    return [("Event", "DialEnd"), ("Privilege", "call,all"), *(caller or {}).items(), *_prefixed("Dest", peer),
            ("DialStatus", status)]


_CAUSES = {1: "Unallocated (unassigned) number", 16: "Normal Clearing", 17: "User busy",
           19: "User alerting, no answer", 34: "Circuit/channel congestion"}


def _hangup(chan: dict[str, str], cause: int) -> list[tuple[str, str]]:
    return [("Event", "Hangup"), ("Privilege", "call,all"), *chan.items(), ("Cause", str(cause)),
            ("Cause-txt", _CAUSES.get(cause, "Unknown"))]


def _originate_response(aid: str, a: Fields, result: str, channel: str, reason: int,
                        uniqueid: str | None = None) -> bytes:
    # main/manager.c fast_originate: Uniqueid is the channel's, else the ChannelId asked for.
    return encode_message([
        ("Event", "OriginateResponse"), ("Privilege", "call,all"), ("ActionID", aid), ("Response", result),
        ("Channel", channel), ("Context", a.get("Context", "")), ("Exten", a.get("Exten", "")),
        ("Reason", str(reason)), ("Uniqueid", uniqueid or a.get("ChannelId") or "<unknown>"),
        ("CallerIDNum", a.get("CallerID") or "<unknown>"), ("CallerIDName", "<unknown>")])


def _fields(raw: bytes) -> list[tuple[str, str]]:
    return list(parse_message(raw[: -len(END)]).items())


def _response(status: str, aid: str, **fields: Any) -> bytes:
    pairs = [("Response", status)]
    if aid:
        pairs.append(("ActionID", aid))
    pairs.extend((k, str(v)) for k, v in fields.items())
    return encode_message(pairs)


def _member_event(name: str, m: Fields) -> bytes:
    return encode_message([("Event", name), ("Privilege", "agent,all"), *((k, m[k]) for k in _MEMBER_FIELDS)])
