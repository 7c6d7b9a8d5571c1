"""``transcribe`` service: ``speech.workers`` transcription workers inside ``dasan up``."""

from __future__ import annotations

import asyncio
import contextlib

from ivr.context import AppContext
from ivr.speech.worker import TranscriptionWorker, consumer_name, recover_unfinished


class TranscribeService:
    name = "transcribe"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.workers: list[TranscriptionWorker] = []

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
        plural = "worker" if speech.workers == 1 else "workers"
        models = ", ".join(sorted(speech.models)) or "none"
        # `dasan up` prints it after the service name: "dasan: transcribe  1 worker, models: ko".
        return [f"{speech.workers} {plural}, models: {models}"]

    async def stop(self) -> None:
        # A job in progress is cancelled and stays pending in the group: another worker (or
        # this one after a restart) takes it over, so stopping never loses a recording.
        self.stop_event.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
