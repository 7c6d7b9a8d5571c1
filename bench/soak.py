"""``make soak``: a compressed day of 120 with faults, without Asterisk, on PostgreSQL and Redis.

Built from the project's own parts, each service a real ``dasan up --only <name>`` process:
- calls: the project's scripted FastAGI caller (``ivr.agi.caller``) walks a mix of menu paths
  against the IVR server; for each call the AMI peer (``tests/support/ami_peer.py``) replays
  the recorded Asterisk 22 traffic (``tests/data/asterisk-captures``: channel, queue, agent
  answer, hang-up, Cdr) retargeted to the call, as Asterisk would send it to the AMI bridge;
  answered calls take the survey (the IVR's survey route, or when it cannot run the
  dialplan's own reading: ``UserEvent DasanSurvey``); a call the IVR could not take goes the
  dialplan's fallback way (``UserEvent DasanFallback``, Cdr ``UserField: fallback``);
- video calls (sign language: the AMI only) and foreign-language calls (120 + 9);
- signed SMS webhooks to the web service: questions, complaints and reports; a citizen who is
  asked to confirm a report answers "예" (the request is filed on it); web chats over the
  citizen's WebSocket;
- faults at fixed times: kill -9 of the IVR server, of the AMI bridge and of the open311
  consumer (each started again a few seconds later), and a restart of a private Redis
  (never the shared one).

Afterwards it checks: one contact per call, none doubled, none without an outcome, every
message and chat line stored once, every confirmed report filed once, every survey score
stored; and prints a table (counts, lost, doubled, CPU per service). Exit status 1 when a
check fails. Mix and volumes are parameters: ``python -m bench.soak --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import yaml

from bench.measure import cpu_seconds
from bench.report import machine, put_block
from ivr.agi.caller import ScriptedCaller
from ivr.ami.protocol import encode_message, retarget
from ivr.db import Database
from ivr.messaging.providers.generic import GENERIC_HEADER, generic_signature
from tests.support.ami_harness import capture_chunks
from tests.support.ami_peer import AmiPeer
from tests.test_fault_kit import Dasan, OwnRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
DOC_INTRO = """\
`bench/soak.py` (written by `make soak`; `make bench` keeps this section). No Asterisk: the
project's scripted FastAGI caller walks a mix of menu paths against the IVR server, and for
each call an AmiPeer replays the recorded Asterisk 22 traffic (queue, agent answer, hang-up,
Cdr) to the AMI bridge; answered calls take the survey; signed SMS webhooks (questions,
complaints, reports whose senders answer the confirmation with "예") and web chats go to
the web service. At fixed times the IVR server, the AMI bridge and the open311 consumer are
killed with SIGKILL and started again, and Redis is restarted. Checked afterwards from the
database: one contact per call, none doubled, none without outcome or end, every message and
chat line stored once, every confirmed report filed once, every survey score stored.
`unobserved`: calls whose whole queue part fell into the AMI bridge's outage (no event and
no Cdr reached it; the resync closed them). A video call never meets the IVR: if all of its
AMI traffic went by while the bridge was down, nothing of it reaches the project (AMI keeps no
backlog, the Cdr went by too); such calls are counted on their own row, not as lost: a gap
only Asterisk's own CDR store could close. CPU: user + system seconds of each service's
processes over the run (a killed process's last sample, taken every 0.5 s)."""
PG_ADMIN = os.environ.get("DASAN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "soak-webhook-secret"
AMI_USER, AMI_SECRET = "soak", "soak-ami-secret-120"
SERVICES = ("web", "agi", "ami", "open311", "messaging")
# A real (tiny) JPEG: the sidecar checks a photo's magic number.
PHOTO = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")

# Menu paths (ivr/menus/main.yaml) and their share of the calls the IVR answers.
PATHS: list[tuple[str, str, float]] = [
    ("transport counsellor", "1 2", 0.16), ("waste counsellor", "2 2", 0.12), ("welfare", "3", 0.12),
    ("tax", "4", 0.08), ("report", "5", 0.08), ("counsellor", "0", 0.16),
    ("lost property (self-service)", "1 1", 0.10), ("status lookup", "6 123456789012#", 0.06),
    ("hang-up in the menu", "H", 0.08), ("no key three times", "T T T", 0.04),
]
FOREIGN = "9 1 0"  # English, then a counsellor
ABANDON_SHARE = 0.15  # of the queued calls
SMS_MIX: list[tuple[str, float, list[str]]] = [
    ("question", 0.45, ["쓰레기 수거 요일이 궁금합니다", "버스 막차 시간이 궁금해요", "여권 발급은 어디서 하나요?",
                        "When is trash collected on my street?", "불법주차 과태료는 얼마인가요?"]),
    ("complaint", 0.20, ["소음 때문에 너무 힘들어요", "민원 처리가 너무 늦어요", "The noise upstairs is driving me crazy"]),
    ("report", 0.25, ["쓰레기가 길에 무단으로 버려져 있어요", "light 가로등이 꺼졌어요", "아파트 앞 불법주차 신고합니다",
                      "Huge pothole on Sejong-daero, please fix"]),
    ("photo report", 0.10, ["세종대로 앞 도로가 패였어요", ""]),
]
CHAT_LINES = ["안녕하세요, 문의드립니다", "버스 노선이 바뀌었나요?", "470번 버스입니다", "감사합니다"]


@dataclass
class Mix:
    calls: int = 22_000  # a day of 120
    sms: int = 2_545
    video: int = 65
    foreign: int = 87
    chats: int = 200
    scale: float = 0.1
    minutes: float = 6.0

    def count(self, per_day: int) -> int:
        return max(1, round(per_day * self.scale))


@dataclass
class CallRecord:
    call_id: str
    kind: str
    path: str = ""
    outcome: str = ""  # what the driver saw: queue, ivr, fallback
    survey: int | None = None  # the digit the caller pressed
    error: str = ""
    ami_seen: bool = False  # some of its AMI traffic went out while the bridge was logged in


@dataclass
class Tally:
    calls: list[CallRecord] = field(default_factory=list)
    sms_sent: dict[str, str] = field(default_factory=dict)  # provider message id -> kind
    sms_retries: int = 0
    reports_confirmed: set[str] = field(default_factory=set)  # report message ids confirmed by a yes
    reports_unasked: set[str] = field(default_factory=set)  # no question came in time: no yes sent
    chat_lines: dict[str, int] = field(default_factory=dict)  # token -> lines sent
    faults: list[tuple[float, str]] = field(default_factory=list)


# -- the recorded Asterisk traffic, cut into the parts of a call ------------------------------

_SESSION = (b"Event: SuccessfulAuth", b"Event: FullyBooted", b"Event: QueueMemberAdded", b"Event: QueueMemberRemoved")


def _messages(chunks: list[bytes]) -> list[bytes]:
    out = []
    for chunk in chunks:
        for m in chunk.split(b"\r\n\r\n"):
            if m.strip() and not m.startswith(_SESSION):
                out.append(m + b"\r\n\r\n")
    return out


def _split(messages: list[bytes], needle: bytes) -> tuple[list[bytes], list[bytes]]:
    at = next(i for i, m in enumerate(messages) if needle in m)
    return messages[:at], messages[at:]


@dataclass
class Templates:
    head: list[bytes]  # the channel until the IVR is done (Newchannel, AGI)
    answered_queue: list[bytes]  # MixMonitor, queue, agent answers, talks and hangs up
    answered_end: list[bytes]  # the caller's Hangup and the Cdr (after the survey)
    abandoned_queue: list[bytes]  # MixMonitor, queue, abandon, Hangup, Cdr
    ivr_end: list[bytes]  # the caller's Hangup and a Cdr of a call that ended in the IVR

    @classmethod
    def load(cls) -> Templates:
        answered = _messages(capture_chunks("answered"))
        head, rest = _split(answered, b"MIXMONITOR")
        queue, end = _split(rest, b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/caller")
        abandoned = _messages(capture_chunks("abandoned"))
        _, abandoned_queue = _split(abandoned, b"MIXMONITOR")
        hangup = next(m for m in end if m.startswith(b"Event: Hangup"))
        cdr = next(m for m in end if m.startswith(b"Event: Cdr"))
        cdr = (cdr.replace(b"DestinationChannel: PJSIP/agent1001-00000009", b"DestinationChannel: ")
               .replace(b"LastApplication: Queue", b"LastApplication: AGI")
               .replace(b"LastData: general-ko,t,,,60", b"LastData: agi://127.0.0.1/main"))
        return cls(head, queue, end, abandoned_queue, [hangup, cdr])


def _ids(n: int, call_id: str, queue: str, abandoned: bool = False) -> dict[str, str]:
    if abandoned:
        return {"1795593184.10": call_id, "caller-0000000a": f"caller-{2 * n:08x}", "general-ko": queue}
    epoch, _ = call_id.split(".")
    agent_leg = f"{int(epoch) + 1}.{n}"  # a Uniqueid no caller has
    return {"1795593159.8": call_id, "1795593165.9": agent_leg, "caller-00000008": f"caller-{2 * n:08x}",
            "agent1001-00000009": f"agent1001-{2 * n + 1:08x}", "0cb2ccb1-b01e-4419-bc6c-5e02cd1eaeab":
            str(uuid.UUID(int=n)), "general-ko": queue}


def _user_event(name: str, call_id: str, n: int, **headers: str) -> bytes:
    """What Asterisk 22 sends for the dialplan's UserEvent(name,Header: value,...)."""
    return encode_message([
        ("Event", "UserEvent"), ("Privilege", "user,all"), ("Channel", f"PJSIP/caller-{2 * n:08x}"),
        ("ChannelState", "6"), ("ChannelStateDesc", "Up"), ("CallerIDNum", "sipp"), ("CallerIDName", "sipp"),
        ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"), ("Language", "ko"),
        ("AccountCode", ""), ("Context", "dasan-queue"), ("Exten", "s"), ("Priority", "1"), ("Uniqueid", call_id),
        ("Linkedid", call_id), ("UserEvent", name), *headers.items()])


# -- the run ---------------------------------------------------------------------------------

class Soak:
    def __init__(self, mix: Mix, seed: int, hours: str = "open") -> None:
        self.mix, self.random = mix, random.Random(seed)
        self.hours = hours
        self.tally = Tally()
        self.folder = Path(tempfile.mkdtemp(prefix="dasan-soak-"))
        self.db_name = f"dasan_soak_{uuid.uuid4().hex[:10]}"
        self.db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + self.db_name
        self.redis = OwnRedis(self.folder)
        self.peer = AmiPeer(AMI_USER, AMI_SECRET)
        self.templates = Templates.load()
        self.services: dict[str, Dasan] = {}
        self.cpu: dict[str, dict[int, float]] = {name: {} for name in (*SERVICES, "redis")}
        self.web_port, self.agi_port = free_port(), free_port()
        self.epoch = int(time.time())
        self.start = 0.0
        self.down: set[str] = set()
        self.keep = False
        self.load_seconds = self.settle_seconds = 0.0
        self.driver_errors: list[str] = []

    # -- set-up and tear-down --
    async def setup(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        await Database(self.db_url).aupgrade()
        self.redis.start()
        ami_port = await self.peer.start()
        self.peer.queues |= {"general-ko", "en", "zh", "ja", "vi", "mn", "sign-video"}
        env = {"DASAN__DATABASE__URL": self.db_url, "DASAN__DATA_DIR": str(self.folder / "var"),
               "DASAN__RECORDINGS__DIR": str(self.folder / "recordings"), "DASAN__SPEECH__ENABLED": "false",
               "DASAN_CONFIG": "/dev/null", "DASAN__WEB__PORT": str(self.web_port),
               "DASAN__AGI__PORT": str(self.agi_port), "DASAN__AMI__PORT": str(ami_port),
               "DASAN__AMI__USERNAME": AMI_USER, "DASAN__AMI__SECRET": AMI_SECRET,
               "DASAN__AMI__RECONNECT_MAX_SECONDS": "1", "DASAN__SMS__WEBHOOK_SECRET": SECRET,
               "DASAN__BUS__BACKEND": "redis", "DASAN__BUS__REDIS_URL": self.redis.url,
               "DASAN__BUS__PREFIX": "soak"}
        if self.hours == "open":
            env["DASAN__QUEUES_DIR"] = str(self.open_queues())
        for name in SERVICES:
            self.services[name] = Dasan([name], env, ROOT)
            await asyncio.to_thread(self.services[name].start)
        await self.peer.wait_login(1, timeout=30)

    def open_queues(self) -> Path:
        """The shipped queues with every line open and no holidays: the day's mix then reaches
        counsellors whatever the wall-clock hour the soak runs at (at night the foreign-language
        and video lines would send those calls to the night route instead)."""
        folder = self.folder / "queues"
        shutil.copytree(ROOT / "ivr" / "defaults" / "queues", folder)
        data = yaml.safe_load((folder / "queues.yaml").read_text(encoding="utf-8"))
        data["schedules"] = {name: {"always": True} for name in data["schedules"]}
        data["holidays"] = []
        (folder / "queues.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return folder

    async def teardown(self) -> None:
        for service in self.services.values():
            await asyncio.to_thread(service.stop)
        await self.peer.close()
        self.redis.stop(signal.SIGKILL)
        if self.keep:
            print(f"database kept: {self.db_name}")
            return
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.folder, ignore_errors=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    async def sample_cpu(self) -> None:
        """CPU of every service process (a killed one's last sample counts), every half second."""
        while True:
            for name, service in self.services.items():
                if service.proc is not None and service.proc.poll() is None:
                    self.cpu[name][service.proc.pid] = cpu_seconds(service.proc.pid)
            if self.redis.proc is not None and self.redis.proc.poll() is None:
                self.cpu["redis"][self.redis.proc.pid] = cpu_seconds(self.redis.proc.pid)
            await asyncio.sleep(0.5)

    # -- faults --
    async def kill_and_restart(self, name: str, down_for: float) -> None:
        service = self.services[name]
        if service.proc is not None:
            self.cpu[name][service.proc.pid] = cpu_seconds(service.proc.pid)
        service.kill9()
        self.down.add(name)
        self.tally.faults.append((self.elapsed(), f"kill -9 {name}"))
        await asyncio.sleep(down_for)
        await asyncio.to_thread(service.start)
        self.down.discard(name)
        self.tally.faults.append((self.elapsed(), f"{name} started again"))

    async def restart_redis(self, down_for: float) -> None:
        self.tally.faults.append((self.elapsed(), "Redis stopped"))
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.redis.start)
        self.tally.faults.append((self.elapsed(), "Redis started again (append-only file)"))

    async def faults(self, duration: float) -> None:
        plan: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.2, lambda: self.kill_and_restart("agi", 5)),
            (0.4, lambda: self.kill_and_restart("ami", 6)),
            (0.6, lambda: self.kill_and_restart("open311", 5)),
            (0.8, lambda: self.restart_redis(3)),
        ]
        for share, action in plan:
            await asyncio.sleep(max(0.0, share * duration - self.elapsed()))
            await action()

    # -- calls --
    async def play(self, record: CallRecord, chunks: list[bytes]) -> None:
        record.ami_seen = record.ami_seen or bool(self.peer.logged_in)
        await self.peer.play(chunks)

    async def call(self, n: int, kind: str) -> None:
        call_id = f"{self.epoch}.{n}"
        record = CallRecord(call_id, kind)
        self.tally.calls.append(record)
        rnd = self.random
        try:
            if kind == "video":  # a browser's sign-language call: straight to the video queue
                await self.play(record, retarget(self.templates.head, _ids(n, call_id, "sign-video")))
                await self._queue(n, call_id, "sign-video", record, fallback=False, contact_id="")
                return
            await self.play(record, retarget(self.templates.head, _ids(n, call_id, "general-ko")))
            if kind == "foreign":
                record.path, script = "120 + 9 (English)", FOREIGN
            else:
                record.path, script, _ = rnd.choices(PATHS, [p[2] for p in PATHS])[0]
            caller = ScriptedCaller(script, linkedid=call_id, callerid=f"010{n:08d}", then="timeout", delay=0.05)
            variables: dict[str, str] = {}
            hung_up = False
            try:
                log = await caller.call("127.0.0.1", self.agi_port, timeout=60)
                variables, hung_up = log.variables, log.hung_up
            except (OSError, TimeoutError) as exc:
                record.error = f"IVR: {type(exc).__name__}"
            queue = variables.get("QUEUE", "")
            result = variables.get("IVR_RESULT", "")
            if hung_up or result in ("hangup", "night"):
                record.outcome = "ivr"
                await asyncio.sleep(rnd.uniform(0.2, 1.0))
                await self.play(record, retarget(self.templates.ivr_end, _ids(n, call_id, "general-ko")))
                return
            fallback = not (result == "queue" and queue)  # the dialplan: AGI failed or decided nothing
            if fallback:
                queue = "general-ko"
                await self.play(record, [_user_event("DasanFallback", call_id, n, AgiStatus="SUCCESS")])
            record.outcome = "fallback" if fallback else "queue"
            await self._queue(n, call_id, queue, record, fallback, variables.get("CONTACT_ID", ""))
        except Exception as exc:  # a driver bug must show in the table, not stop the day
            record.error = f"{type(exc).__name__}: {exc}"

    async def _queue(self, n: int, call_id: str, queue: str, record: CallRecord, fallback: bool,
                     contact_id: str) -> None:
        rnd, ids = self.random, _ids(n, call_id, queue)
        if rnd.random() < ABANDON_SHARE:
            await asyncio.sleep(rnd.uniform(1, 5))
            chunks = retarget(self.templates.abandoned_queue, _ids(n, call_id, queue, abandoned=True))
            if fallback:
                chunks = [c.replace(b"UserField: \r\n", b"UserField: fallback\r\n") for c in chunks]
            await self.play(record, chunks)
            record.outcome += " abandoned"
            return
        queued = self.templates.answered_queue
        connect, complete = _at(queued, b"Event: AgentConnect"), _at(queued, b"Event: HangupRequest")
        await self.play(record, retarget(queued[:connect], ids))  # joins the queue, an agent is offered it
        await asyncio.sleep(rnd.uniform(0.5, 3))
        await self.play(record, retarget(queued[connect:complete], ids))  # the agent answers: they talk
        await asyncio.sleep(rnd.uniform(1, 6))
        await self.play(record, retarget(queued[complete:], ids))  # the agent hangs up
        # The agent hung up: the survey (the IVR's route; the dialplan's own reading if it cannot).
        score = rnd.randint(1, 5)
        record.survey = score
        surveyed, pressed = False, ""
        try:
            survey = ScriptedCaller(str(score), route="survey", linkedid=call_id, then="timeout",
                                    variables={"CONTACT_ID": contact_id} if contact_id else None)
            log = await survey.call("127.0.0.1", self.agi_port, timeout=30)
            surveyed, pressed = log.variables.get("IVR_RESULT") == "hangup", log.variables.get("SURVEY_SCORE", "")
        except (OSError, TimeoutError):
            pass
        if not surveyed:  # the dialplan reads the digit itself
            pressed = str(score)
            record.outcome += " survey-by-dialplan"
        if pressed:  # the dialplan hands the digit to the AMI bridge as well
            await self.play(record, [_user_event("DasanSurvey", call_id, n, Score=pressed, ContactId=contact_id)])
        end = retarget(self.templates.answered_end, ids)
        if fallback:
            end = [c.replace(b"UserField: \r\n", b"UserField: fallback\r\n") for c in end]
        await self.play(record, end)

    # -- messages --
    async def post_sms(self, http: aiohttp.ClientSession, payload: dict[str, Any]) -> None:
        """Like a provider: retried until the webhook answers 200 (a retry must not store twice)."""
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", GENERIC_HEADER: generic_signature(SECRET, raw)}
        for attempt in range(120):
            try:
                async with http.post(f"http://127.0.0.1:{self.web_port}/webhooks/sms", data=raw,
                                     headers=headers) as resp:
                    await resp.read()
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.tally.sms_retries += 1
            await asyncio.sleep(min(0.5 * (attempt + 1), 3))
        raise RuntimeError(f"webhook never took {payload['message_id']}")

    async def sms(self, http: aiohttp.ClientSession, n: int) -> None:
        kind, _, bodies = self.random.choices(SMS_MIX, [m[1] for m in SMS_MIX])[0]
        body = self.random.choice(bodies)
        sender = f"+8210{7000_0000 + n:08d}"
        message_id = f"soak-sms-{n}"
        payload: dict[str, Any] = {"message_id": message_id, "from": sender, "to": "120", "body": body}
        if kind == "photo report":
            payload["media"] = [{"content_type": "image/jpeg", "data": base64.b64encode(PHOTO).decode()}]
        self.tally.sms_sent[message_id] = kind
        await self.post_sms(http, payload)
        if kind not in ("report", "photo report"):
            return
        # The citizen reads the question and answers "예" (only once it was asked).
        if not await self._asked(message_id, timeout=150):
            self.tally.reports_unasked.add(message_id)
            return
        await asyncio.sleep(self.random.uniform(0.5, 3))
        reply = f"soak-sms-{n}-yes"
        self.tally.sms_sent[reply] = "yes"
        await self.post_sms(http, {"message_id": reply, "from": sender, "to": "120", "body": "예"})
        self.tally.reports_confirmed.add(message_id)

    async def _asked(self, provider_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        sql = ("SELECT 1 FROM contact_events e JOIN messages m ON e.external_id = 'open311:proposed:' || m.id "
               "WHERE m.provider_message_id = %s")
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._query, sql, (provider_id,)):
                return True
            await asyncio.sleep(1.0)
        return False

    async def chat(self, http: aiohttp.ClientSession, n: int) -> None:
        base = f"http://127.0.0.1:{self.web_port}"
        lines = CHAT_LINES[: self.random.randint(2, len(CHAT_LINES))]
        token = None
        sent = 0
        for _attempt in range(30):
            try:
                async with http.ws_connect(f"{base}/chat/ws", headers={"Origin": base}) as ws:
                    await ws.send_json({"type": "hello", "language": "ko", **({"token": token} if token else {})})
                    while True:
                        frame = await ws.receive_json(timeout=20)
                        if frame.get("type") == "welcome":
                            token = frame["token"]
                            break
                    sent = max(0, sent - 1)  # after a reconnect the page sends its last line again
                    while sent < len(lines):
                        await ws.send_json({"type": "message", "id": f"soak-chat-{n}-{sent}", "body": lines[sent]})
                        sent += 1
                        self.tally.chat_lines[token] = sent
                        await asyncio.sleep(self.random.uniform(0.5, 2))
                    return
            except (aiohttp.ClientError, TimeoutError, TypeError, ValueError, KeyError):
                await asyncio.sleep(1)  # the web service or Redis away: the citizen's page reconnects
        raise RuntimeError(f"chat {n} never got through")

    # -- the day --
    async def run(self) -> None:
        mix, rnd = self.mix, self.random
        duration = mix.minutes * 60
        ivr_calls = mix.count(mix.calls) - mix.count(mix.video) - mix.count(mix.foreign)
        kinds = ["ivr"] * ivr_calls + ["video"] * mix.count(mix.video) + ["foreign"] * mix.count(mix.foreign)
        rnd.shuffle(kinds)
        work: list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]] = []
        for n, kind in enumerate(kinds):
            work.append((rnd.uniform(0, duration * 0.9), lambda n=n, kind=kind: self.call(n, kind)))  # type: ignore[misc]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for n in range(mix.count(mix.sms)):
                work.append((rnd.uniform(0, duration * 0.85), lambda n=n: self.sms(http, n)))  # type: ignore[misc]
            for n in range(mix.count(mix.chats)):
                work.append((rnd.uniform(0, duration * 0.85), lambda n=n: self.chat(http, n)))  # type: ignore[misc]
            work.sort(key=lambda w: w[0])
            self.start = time.monotonic()
            sampler = asyncio.create_task(self.sample_cpu())
            faults = asyncio.create_task(self.faults(duration))
            tasks: list[asyncio.Task[None]] = []
            for at, job in work:
                await asyncio.sleep(max(0.0, at - self.elapsed()))
                tasks.append(asyncio.create_task(job()))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await faults
            self.driver_errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
            self.load_seconds = self.elapsed()
            await self.settle()
            self.settle_seconds = self.elapsed() - self.load_seconds
            sampler.cancel()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db_name) as conn:
            return conn.execute(sql, params).fetchall()

    async def settle(self, timeout: float = 180) -> None:
        """Until every call has its outcome, every confirmed report its request and the
        numbers stop changing (the services finish what is queued)."""
        ids = [c.call_id for c in self.tally.calls]
        deadline, last, stable = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline:
            now = await asyncio.to_thread(self._query, (
                "SELECT (SELECT count(*) FROM contacts WHERE call_id = ANY(%s) AND outcome IS NOT NULL),"
                " (SELECT count(*) FROM open311_requests), (SELECT count(*) FROM messages),"
                " (SELECT count(*) FROM contact_events)"), (ids,))
            done = now[0][0] == len(ids) and now[0][1] >= len(self.tally.reports_confirmed)
            stable = stable + 1 if now == last else 0
            if done and stable >= 3:
                return
            last = now
            await asyncio.sleep(1.0)

    # -- the checks and the table --
    def report(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        t = self.tally
        ids = [c.call_id for c in t.calls]
        rows = self._query("SELECT call_id, outcome, satisfaction, ivr_fallback, ended_at IS NOT NULL "
                           "FROM contacts WHERE call_id = ANY(%s)", (ids,))
        per_call = Counter(r[0] for r in rows)
        by_call = {r[0]: r for r in rows}
        stray = self._query("SELECT count(*) FROM contacts WHERE channel NOT IN ('sms', 'mms', 'chat', 'sns') "
                            "AND (call_id IS NULL OR NOT call_id = ANY(%s))", (ids,))[0][0]
        # A call that never met the IVR (video) and whose AMI traffic all went by while the
        # bridge was down leaves nothing the project can see (AMI keeps no backlog): counted
        # on its own row, not hidden among the lost.
        unobservable = {c.call_id for c in t.calls if c.kind == "video" and not c.ami_seen}
        lost_calls = [c for c in ids if c not in per_call and c not in unobservable]
        unseen = [c for c in ids if c not in per_call and c in unobservable]
        doubled_calls = [c for c, k in per_call.items() if k > 1]
        no_outcome = [r[0] for r in rows if r[1] is None]
        open_calls = [r[0] for r in rows if not r[4]]
        outcomes = Counter(r[1] for r in rows)
        surveyed = [c for c in t.calls if c.survey is not None]
        score_lost = [c.call_id for c in surveyed if c.call_id in by_call and by_call[c.call_id][2] != c.survey]
        fallback_calls = [c for c in t.calls if c.outcome.startswith("fallback")]
        unmarked = [c.call_id for c in fallback_calls if c.call_id in by_call and not by_call[c.call_id][3]]
        messages = self._query("SELECT provider_message_id, count(*) FROM messages WHERE direction = 'in' "
                               "AND provider_message_id LIKE 'soak-sms-%%' GROUP BY 1")
        stored = dict(messages)
        sms_lost = [m for m in t.sms_sent if m not in stored]
        sms_doubled = [m for m, k in stored.items() if k > 1]
        requests = self._query("SELECT source_ref, count(*) FROM open311_requests GROUP BY 1")
        report_ids = dict(self._query("SELECT 'message:' || id, provider_message_id FROM messages "
                                      "WHERE provider_message_id = ANY(%s)", (list(t.reports_confirmed),)))
        filed = {report_ids.get(ref): k for ref, k in requests}
        requests_lost = [m for m in t.reports_confirmed if m not in filed]
        requests_doubled = [m for m, k in filed.items() if k > 1]
        requests_unasked = [m for m in filed if m not in t.reports_confirmed]
        chat_stored = dict(self._query("SELECT c.token, count(*) FROM messages m JOIN chat_conversations c "
                                       "ON c.contact_id = m.contact_id WHERE m.direction = 'in' "
                                       "AND m.channel = 'chat' GROUP BY 1"))
        chat_sent = sum(t.chat_lines.values())
        chat_lost = sum(max(0, n - chat_stored.get(tok, 0)) for tok, n in t.chat_lines.items())
        chat_doubled = sum(max(0, k - t.chat_lines.get(tok, 0)) for tok, k in chat_stored.items())
        call_errors = Counter(c.error.split(":")[0] for c in t.calls if c.error)
        table = [
            ("calls (IVR + video + foreign)", f"{len(ids):,}", f"{len(per_call):,} contacts"),
            ("  lost (no contact) / doubled / stray", f"{len(lost_calls)} / {len(doubled_calls)} / {stray}", ""),
            ("  video calls wholly inside the AMI bridge's outage", f"{len(unobservable)}",
             f"{len(unseen)} without a contact (no IVR part; AMI keeps no backlog)"),
            ("  without outcome / left open", f"{len(no_outcome)} / {len(open_calls)}",
             ", ".join(f"{k} {v}" for k, v in outcomes.most_common())),
            ("  through the dialplan's fallback", f"{len(fallback_calls)}", f"{len(unmarked)} not marked"),
            ("  survey scores pressed / not stored", f"{len(surveyed)} / {len(score_lost)}",
             f"{sum(1 for c in surveyed if 'survey-by-dialplan' in c.outcome)} read by the dialplan"),
            ("SMS webhooks (incl. 'yes' replies)", f"{len(t.sms_sent):,}", f"{t.sms_retries} provider retries"),
            ("  lost / doubled", f"{len(sms_lost)} / {len(sms_doubled)}",
             ", ".join(f"{k} {v}" for k, v in Counter(t.sms_sent.values()).most_common())),
            ("  reports confirmed / requests filed", f"{len(t.reports_confirmed)} / {len(filed)}",
             f"lost {len(requests_lost)}, doubled {len(requests_doubled)}, without a yes {len(requests_unasked)}"),
            ("web chats / lines", f"{len(t.chat_lines)} / {chat_sent}", f"lost {chat_lost}, doubled {chat_doubled}"),
        ]
        failures = []
        for label, bad in (("calls without a contact", lost_calls), ("calls with two contacts", doubled_calls),
                           ("contacts without an outcome", no_outcome), ("calls left open", open_calls),
                           ("survey scores not stored", score_lost), ("fallback calls not marked", unmarked),
                           ("SMS lost", sms_lost), ("SMS doubled", sms_doubled),
                           ("confirmed reports without a request", requests_lost),
                           ("requests doubled", requests_doubled), ("requests nobody confirmed", requests_unasked),
                           ("reports never asked", sorted(t.reports_unasked))):
            if bad:
                seen = {c.call_id: f"{c.path or c.kind}: {c.outcome}" for c in t.calls}
                examples = [f"{b} ({seen[b]})" if b in seen else str(b) for b in list(bad)[:3]]
                failures.append(f"{label}: {len(bad)} (e.g. {', '.join(examples)})")
        if stray:
            failures.append(f"contacts of no call: {stray}")
        if chat_lost or chat_doubled:
            failures.append(f"chat lines lost {chat_lost}, doubled {chat_doubled}")
        if self.driver_errors or call_errors.get("IVR", 0) > len(fallback_calls):
            failures.append(f"driver errors: {self.driver_errors[:3]} {dict(call_errors)}")
        return table, failures

    def cpu_table(self) -> list[tuple[str, str, str]]:
        driver = resource.getrusage(resource.RUSAGE_SELF)
        rows = [(f"CPU {name}", f"{sum(per_pid.values()):.1f} s", f"{len(per_pid)} process(es)")
                for name, per_pid in self.cpu.items()]
        rows.append(("CPU soak driver (callers, AMI peer, webhooks)", f"{driver.ru_utime + driver.ru_stime:.1f} s",
                     "this process"))
        return rows


def _at(messages: list[bytes], start: bytes) -> int:
    return next(i for i, m in enumerate(messages) if m.startswith(start))


def summary(mix: Mix, soak: Soak, table: list[tuple[str, str, str]], failures: list[str]) -> str:
    out = [f"A day of 120 at {mix.scale:g} scale ({mix.count(mix.calls):,} calls incl. {mix.count(mix.video)} video and "
           f"{mix.count(mix.foreign)} foreign-language, {mix.count(mix.sms):,} SMS, {mix.count(mix.chats)} web chats) "
           f"in {soak.load_seconds / 60:.1f} min plus {soak.settle_seconds:.0f} s settling; PostgreSQL, a private Redis, "
           f"{len(SERVICES)} services as `dasan up --only` processes; "
           f"{'every line open all day' if soak.hours == 'open' else 'the shipped opening hours at the time of the run'}; "
           f"{machine()}.", "",
           "Faults: " + "; ".join(f"{at:.0f} s {what}" for at, what in soak.tally.faults) + ".", "",
           "| what | count | detail |", "| --- | --- | --- |"]
    out += [f"| {what} | {count} | {detail} |" for what, count, detail in [*table, *soak.cpu_table()]]
    out += ["", "Result: " + ("**PASS** (0 lost, 0 doubled, 0 incomplete)" if not failures else "**FAIL**")]
    out += [f"- {failure}" for failure in failures]
    return "\n".join(out)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1, help="share of a day's volume (default 0.1)")
    parser.add_argument("--minutes", type=float, default=6.0, help="the day compressed into this many minutes")
    parser.add_argument("--calls", type=int, default=22_000, help="calls a day")
    parser.add_argument("--sms", type=int, default=2_545, help="SMS a day")
    parser.add_argument("--video", type=int, default=65, help="video (sign language) calls a day")
    parser.add_argument("--foreign", type=int, default=87, help="foreign-language calls a day")
    parser.add_argument("--chats", type=int, default=200, help="web chats a day")
    parser.add_argument("--seed", type=int, default=120)
    parser.add_argument("--hours", choices=("open", "site"), default="open",
                        help="open: every line open all day (default, the same run at any hour); "
                             "site: the shipped opening hours at the wall-clock time")
    parser.add_argument("--doc", action="store_true", help=f"put the table into {DOC.name} (make soak does)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed) to look into")
    parser.add_argument("--detail", action="store_true", help="print each call's path and what the driver saw")
    args = parser.parse_args()
    mix = Mix(args.calls, args.sms, args.video, args.foreign, args.chats, args.scale, args.minutes)
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soak = Soak(mix, args.seed, args.hours)
    soak.keep = args.keep
    try:
        await soak.setup()
        await soak.run()
        table, failures = await asyncio.to_thread(soak.report)
        text = summary(mix, soak, table, failures)
        print("\n" + text)
        if args.doc:
            put_block(DOC, "soak", f"## Soak: a compressed day with faults (`make soak`)\n\n{DOC_INTRO}\n\n{text}")
            print(f"\nwrote the soak section of {DOC}")
        if args.detail:
            for c in soak.tally.calls:
                print(f"{c.call_id} {c.kind} {c.path!r} {c.outcome} survey={c.survey} {c.error}")
    finally:
        await soak.teardown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
