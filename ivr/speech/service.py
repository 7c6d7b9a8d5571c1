"""``transcribe`` service: ``speech.workers`` transcription workers inside ``dasan up``."""

from __future__ import annotations

import asyncio
import contextlib

from ivr.context import AppContext
from ivr.speech.audiosocket import AudioSocketServer, live_store
from ivr.speech.worker import TranscriptionWorker, consumer_name, recover_unfinished


class TranscribeService:
    name = "transcribe"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.workers: list[TranscriptionWorker] = []
        self.live: AudioSocketServer | None = None

    async def start(self) -> list[str]:
        speech = self.ctx.settings.speech
        if not speech.enabled or speech.workers == 0:
            return ["disabled (speech.enabled / speech.workers)"]
        if self.ctx.settings.bus.backend == "memory":
            await recover_unfinished(self.ctx.db, self.ctx.bus)
        for i in range(speech.workers):
            worker = TranscriptionWorker(self.ctx.db, self.ctx.bus, self.ctx.settings, name=consumer_name(i))
            self.workers.append(worker)
            self.tasks.append(asyncio.create_task(worker.run(self.stop_event), name=f"transcribe-{i}"))
        notes = []
        language = "ko" if "ko" in speech.models else next(iter(speech.models), None)
        if speech.live_listen and language is None:
            notes.append("live AudioSocket off: no speech model configured")
        elif speech.live_listen and language is not None:  # live partials (ivr.speech.audiosocket)
            host, _, port = speech.live_listen.rpartition(":")
            self.live = AudioSocketServer(live_store(speech), self.ctx.bus.publish, language,
                                          chunk_seconds=speech.live_chunk_ms / 1000)
            bound = await self.live.start(host or "127.0.0.1", int(port))
            notes.append(f"live AudioSocket on {host or '127.0.0.1'}:{bound}")
        plural = "worker" if speech.workers == 1 else "workers"
        models = ", ".join(sorted(speech.models)) or "none"
        # `dasan up` prints it after the service name: "dasan: transcribe  1 worker, models: ko".
        return [f"{speech.workers} {plural}, models: {models}", *notes]

    async def stop(self) -> None:
        # A job in progress is cancelled and stays pending in the group: another worker (or
        # this one after a restart) takes it over, so stopping never loses a recording.
        self.stop_event.set()
        if self.live is not None:
            await self.live.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
