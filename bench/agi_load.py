"""A load generator that plays Asterisk 22 to an AGI server: many calls, measured from our side.

Each simulated call does what Asterisk does (see tests/data/asterisk-captures/): it sends the
AGI environment block in two chunks (LF only) and answers every command with the reply Asterisk
22 gives. The replies are the project's own scripted caller's (``ivr.agi.caller``: keys from a
script at GET DATA / STREAM FILE, variables it was told to set, ``HANGUP`` handling, ``510``
for unknown commands); the call ends when the server closes.

Command latency is taken with monotonic clocks on this side: from the moment the reply to the
previous command (or the end of the environment block) is written, to the moment the next
command line arrives. The caller's own "think time" (paced runs: 1-3 s per prompt, as a person
listening) is therefore outside the latency; only the server's reaction is inside.

Two transports: TCP (FastAGI) and pipes to a process (process AGI, as Asterisk runs
``AGI(script)``: environment on stdin, commands on stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ivr.agi.caller import ScriptedCaller, environment

# The environment Asterisk 22 sent for a PJSIP call (answered/agi.log), split where it split.
_ENV_HEAD = (
    "agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1:{port}/{script}\n"
    "agi_channel: PJSIP/caller-{chan:08x}\nagi_language: ko\nagi_type: PJSIP\nagi_uniqueid: {uid}\n"
    "agi_version: 22-git-69535d4837\nagi_callerid: {caller}\nagi_calleridname: {caller}\n"
    "agi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 120\n"
    "agi_rdnis: unknown\nagi_context: from-caller\n"
)
_ENV_TAIL = ("agi_extension: 120\nagi_priority: 4\nagi_enhanced: 0.0\nagi_accountcode: \n"
             "agi_threadid: {thread}\n\n")
# Process AGI: no agi_network lines, agi_request is the script path.
_PROC_HEAD = (
    "agi_request: {script}\nagi_channel: PJSIP/caller-{chan:08x}\nagi_language: ko\nagi_type: PJSIP\n"
    "agi_uniqueid: {uid}\nagi_version: 22-git-69535d4837\nagi_callerid: {caller}\n"
    "agi_calleridname: {caller}\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\n"
    "agi_callingtns: 0\nagi_dnid: 120\nagi_rdnis: unknown\nagi_context: from-caller\n"
)

# Commands during which a person listens or types: paced runs wait before replying to these.
_PROMPTS = ("STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT", "SAY ",
            "EXEC PLAYBACK", "EXEC BACKGROUND", "EXEC READ", "RECORD FILE")
_counter = itertools.count(1)
_EPOCH = int(time.time())


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class CallResult:
    ok: bool = False
    started: float = 0.0
    ended: float = 0.0
    commands: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    error: str = ""


class Caller:
    """The Asterisk side of one call, transport-neutral (``send`` writes bytes), measured.

    What Asterisk answers is the project's own scripted caller (``ivr.agi.caller.ScriptedCaller``,
    written against the captures): this class only adds the clocks, the pacing and a cheap,
    callback-driven transport so thousands of calls fit in one process.
    """

    def __init__(self, digits: Sequence[str], pace: tuple[float, float] | None, keep_commands: bool,
                 loop: asyncio.AbstractEventLoop, linkedid: str | None = None) -> None:
        n = next(_counter)
        self.uid = linkedid or f"{_EPOCH}.{n}"  # a given Linkedid: the call another feed also reports
        self.caller = f"0101{n % 10_000_000:07d}"
        self.chan = n
        # The script: the keys, then the caller stays on (the server ends the call).
        self.script = ScriptedCaller(" ".join(digits), linkedid=self.uid, callerid=self.caller, then="timeout")
        self.pace = pace
        self.keep = keep_commands
        self.loop = loop
        self.result = CallResult(started=time.monotonic())
        self.result.variables = self.script.log.variables
        self.send: Callable[[bytes], None] = lambda data: None
        self.close: Callable[[], None] = lambda: None
        self.mark = 0.0
        self.buffer = b""
        self.done: asyncio.Future[CallResult] = loop.create_future()

    def env(self, head: str, script: str, port: int) -> tuple[bytes, bytes]:
        if head is _ENV_HEAD:  # FastAGI: exactly the project's scripted caller's environment
            first, second = environment(script, "ko", self.caller, self.uid, f"PJSIP/caller-{self.chan:08x}",
                                        f"127.0.0.1:{port}")
            return first, second
        values = {"script": script, "port": port, "chan": self.chan, "uid": self.uid, "caller": self.caller,
                  "thread": 140208382412480 + self.chan}
        return head.format(**values).encode(), _ENV_TAIL.format(**values).encode()

    def started(self) -> None:
        self.mark = time.monotonic()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self._command(line.decode("utf-8", "replace").rstrip("\r"))

    def _command(self, line: str) -> None:
        now = time.monotonic()
        if not line.strip():
            return
        self.result.latencies.append(now - self.mark)
        if self.keep:
            self.result.commands.append(line)
        script = self.script
        script.log.commands.append(line)
        if script.silent:
            return
        announce = script.dead and not script.hangup_sent
        reply = script._reply(line)  # the project's caller decides what Asterisk says
        if reply is None:
            return
        if reply == "close":
            self.close()
            return
        assert isinstance(reply, bytes)
        if announce:  # Asterisk's channel watcher writes HANGUP before the next reply
            script.hangup_sent = True
            reply = b"HANGUP\n" + reply
        delay = random.uniform(*self.pace) if self.pace and line[:24].upper().startswith(_PROMPTS) else 0.0
        if delay:
            self.loop.call_later(delay, self._answer, reply)
        else:
            self._answer(reply)

    def _answer(self, reply: bytes) -> None:
        if self.done.done():
            return
        self.send(reply)
        self.mark = time.monotonic()
        if self.script.log.agi_hangup:
            # What Asterisk does after an AGI-initiated HANGUP: a bare HANGUP line, then close.
            self.send(b"HANGUP\n")
            self.close()

    def finish(self, error: str = "") -> None:
        if self.done.done():
            return
        self.result.ended = time.monotonic()
        self.result.error = error
        # A call is complete when the server ended it (closed or hung up) without an error.
        self.result.ok = not error and bool(self.result.latencies)
        self.done.set_result(self.result)


class _TcpCall(asyncio.Protocol):
    def __init__(self, caller: Caller, script: str, port: int) -> None:
        self.caller, self.script, self.port = caller, script, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.caller.send = transport.write
        self.caller.close = transport.close
        head, tail = self.caller.env(_ENV_HEAD, self.script, self.port)
        transport.write(head)
        transport.write(tail)
        self.caller.started()

    def data_received(self, data: bytes) -> None:
        self.caller.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.caller.finish(f"{type(exc).__name__}: {exc}" if exc else "")


async def tcp_call(host: str, port: int, script: str, digits: Sequence[str], pace: tuple[float, float] | None = None,
                   keep_commands: bool = False, timeout: float = 120, deadline: float | None = None,
                   linkedid: str | None = None) -> CallResult:
    """One FastAGI call; gives up (``timeout`` error, latencies so far kept) after ``timeout``
    seconds or at the monotonic ``deadline``, whichever comes first."""
    if deadline is not None:
        timeout = max(0.01, min(timeout, deadline - time.monotonic()))
    loop = asyncio.get_running_loop()
    caller = Caller(digits, pace, keep_commands, loop, linkedid)
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _TcpCall(caller, script, port), host, port), timeout)
    except (OSError, TimeoutError) as exc:
        caller.finish(f"connect: {type(exc).__name__}: {exc}")
        return await caller.done
    try:
        return await asyncio.wait_for(asyncio.shield(caller.done), timeout)
    except TimeoutError:
        transport.abort()
        caller.finish("timeout")
        return await caller.done


class _PipeCall(asyncio.SubprocessProtocol):
    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.stderr = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        self.caller.send = lambda data: None if stdin.is_closing() else stdin.write(data)
        self.caller.close = stdin.close

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.caller.feed(data)
        else:
            self.stderr = (self.stderr + data)[-2000:]

    def process_exited(self) -> None:
        code = self.transport.get_returncode()
        self.caller.finish("" if code == 0 else f"exit {code}: {self.stderr.decode(errors='replace')[-300:]}")


async def process_call(argv: Sequence[str], digits: Sequence[str], pace: tuple[float, float] | None = None,
                       keep_commands: bool = False, env: dict[str, str] | None = None,
                       timeout: float = 120) -> CallResult:
    """One process-AGI call: start ``argv`` as Asterisk would and talk to it over its pipes."""
    loop = asyncio.get_running_loop()
    caller = Caller(digits, pace, keep_commands, loop)
    transport, _ = await loop.subprocess_exec(lambda: _PipeCall(caller), *argv, env={**os.environ, **(env or {})})
    head, tail = caller.env(_PROC_HEAD, argv[-1], 0)
    caller.send(head)
    caller.send(tail)
    caller.started()
    try:
        return await asyncio.wait_for(asyncio.shield(caller.done), timeout)
    except TimeoutError:
        transport.kill()
        caller.finish("timeout")
        return await caller.done
    finally:
        if transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                transport.kill()
        transport.close()


@dataclass
class RunStats:
    calls: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    commands_per_call: float = 0.0
    peak_concurrency: int = 0
    late: int = 0  # saturated runs: calls completed after the window (not in calls/s)
    errors: list[str] = field(default_factory=list)
    results: list[CallResult] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def _collect(stats: RunStats, result: CallResult, keep_results: bool) -> None:
    # Latencies of unfinished calls count too: dropping the slowest calls would flatter p99.
    stats.latencies.extend(result.latencies)
    if result.ok:
        stats.calls += 1
    else:
        stats.failed += 1
        if len(stats.errors) < 5:
            stats.errors.append(result.error)
    if keep_results:
        stats.results.append(result)


async def saturated(make_call: Callable[[], asyncio.Task[CallResult]], concurrency: int, duration: float,
                    keep_results: bool = False) -> RunStats:
    """Keep ``concurrency`` calls going back to back for ``duration`` seconds.

    Throughput counts the calls that completed inside the window; calls still running at the
    end are waited for (their latencies count, their completion does not).
    """
    stats = RunStats()
    stop_at = 0.0
    in_window = 0
    active = 0
    commands = 0

    async def lane(delay: float) -> None:
        nonlocal in_window, active, commands
        await asyncio.sleep(delay)
        while time.monotonic() < stop_at:
            active += 1
            stats.peak_concurrency = max(stats.peak_concurrency, active)
            result = await make_call()
            active -= 1
            if result.ok and result.ended <= stop_at:
                in_window += 1
            commands += len(result.latencies)
            _collect(stats, result, keep_results)
            if not result.ok:
                await asyncio.sleep(0.05)  # a refusing server is not hammered in a tight loop

    start = time.monotonic()
    stop_at = start + duration
    # Ramp the lanes up over a moment so the listen backlog is not the thing measured.
    ramp = min(1.0, duration / 10)
    await asyncio.gather(*(lane(ramp * i / concurrency) for i in range(concurrency)))
    stats.seconds = duration
    stats.commands_per_call = commands / max(1, stats.calls + stats.failed)
    stats.late = stats.calls - in_window
    stats.calls = in_window
    return stats


async def paced(make_call: Callable[[], asyncio.Task[CallResult]], calls: int, arrival_seconds: float,
                at_peak: Callable[[], None] | None = None, keep_results: bool = False) -> RunStats:
    """``calls`` calls arriving evenly over ``arrival_seconds``; ``at_peak`` runs once when all are up."""
    stats = RunStats()
    active = 0
    started = 0
    commands = 0
    peak_seen = asyncio.Event()

    async def one(delay: float) -> None:
        nonlocal active, started, commands
        await asyncio.sleep(delay)
        active += 1
        started += 1
        stats.peak_concurrency = max(stats.peak_concurrency, active)
        task = make_call()
        if started == calls:
            peak_seen.set()
        result = await task
        active -= 1
        commands += len(result.latencies)
        _collect(stats, result, keep_results)

    async def sampler() -> None:
        await peak_seen.wait()
        await asyncio.sleep(0.5)  # every call has connected and is inside its first prompts
        if at_peak is not None:
            at_peak()

    start = time.monotonic()
    sample = asyncio.create_task(sampler())
    await asyncio.gather(*(one(arrival_seconds * i / calls) for i in range(calls)))
    sample.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sample
    stats.seconds = time.monotonic() - start
    stats.commands_per_call = commands / max(1, stats.calls + stats.failed)
    return stats
